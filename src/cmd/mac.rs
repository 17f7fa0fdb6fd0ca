//! `kubevirt-net-webhook mac NAMESPACE VM NETWORK`: the MAC the algorithm of SPEC §2.3 gives.
use crate::model::{
    config::{self, Config},
    mac::{self, Mac},
};

/// Arguments of `kubevirt-net-webhook mac`.
#[derive(Debug, clap::Args)]
pub struct MacArgs {
    /// The VM's namespace.
    pub namespace: String,
    /// The VM's name.
    pub vm: String,
    /// The VM network's name (spec.template.spec.networks[].name).
    pub network: String,
    /// Webhook configuration file (YAML), for macPrefix and clusterSalt.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

impl MacArgs {
    /// The first derivation attempt; the webhook moves on only when a VM already has it.
    pub fn run(&self) -> Result<Mac, config::Error> {
        let config = Config::load(self.config.as_deref())?;
        Ok(mac::derive(
            &config.mac_prefix,
            &config.cluster_salt,
            &self.namespace,
            &self.vm,
            &self.network,
            0,
        ))
    }
}
