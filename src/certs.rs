//! `certs`: a CA and a serving certificate for clusters without cert-manager (SPEC §5).
//! Placeholder until implemented.

/// Arguments of `kubevirt-net-webhook certs`.
#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(long)]
    pub service: String,
    /// Namespace of the webhook's Service.
    #[arg(long)]
    pub namespace: String,
    /// Directory to write ca.crt, tls.crt and tls.key into.
    #[arg(long)]
    pub out: std::path::PathBuf,
}

/// Writes the certificates.
pub fn run(_args: &CertsArgs) -> anyhow::Result<()> {
    anyhow::bail!("certs is not implemented yet")
}
