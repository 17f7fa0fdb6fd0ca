//! `certs`: a CA and a serving certificate for clusters without cert-manager (SPEC §5).
//!
//! The certificates are built in memory by [`generate`] (pure apart from key generation and
//! the clock) and written by [`write_bundle`]; [`run`] ties both to the command line.
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

/// File name of the CA certificate (the webhook configurations' `caBundle`).
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the serving certificate.
pub const TLS_CERT_FILE: &str = "tls.crt";
/// File name of the serving certificate's private key.
pub const TLS_KEY_FILE: &str = "tls.key";

/// Validity of the CA: long, because rotating it means re-patching every `caBundle`.
const CA_VALIDITY_DAYS: u32 = 3650;
/// Default validity of the serving certificate.
pub const DEFAULT_SERVING_DAYS: u32 = 365;
/// Certificates start this long in the past so that nodes with a slightly slow clock accept
/// them right away.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);
const DAY: u64 = 24 * 3600;

/// Arguments of `kubevirt-net-webhook certs`.
#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service (a DNS-1035 label, e.g. kubevirt-net-webhook).
    #[arg(long)]
    pub service: String,
    /// Namespace of the webhook's Service (a DNS-1123 label).
    #[arg(long)]
    pub namespace: String,
    /// Directory to write ca.crt, tls.crt and tls.key into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Validity of the serving certificate in days (the CA is valid for 10 years).
    #[arg(long, default_value_t = DEFAULT_SERVING_DAYS, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Overwrite ca.crt, tls.crt and tls.key if they already exist.
    #[arg(long)]
    pub force: bool,
}

/// What can go wrong while making or writing the certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// A Service name or namespace that Kubernetes would not accept, so no DNS name built
    /// from it could ever match the Service.
    #[error("invalid {what} {value:?}: not a {rule}: {reason}")]
    InvalidName {
        /// `--service` or `--namespace`.
        what: &'static str,
        /// The naming rule Kubernetes applies to it.
        rule: &'static str,
        /// The rejected value.
        value: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// `--days` outside what the serving certificate may have.
    #[error("invalid --days {0}: must be between 1 and {CA_VALIDITY_DAYS} (the CA's lifetime)")]
    InvalidDays(u32),
    /// rcgen could not generate a key or sign a certificate.
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// The output directory could not be created.
    #[error("creating directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An output file is already there and `--force` was not given.
    #[error("{} already exists; refusing to overwrite it (use --force to replace the certificates)", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// An output file could not be written.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A CA and a serving certificate signed by it, all PEM.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The CA certificate.
    pub ca_cert_pem: String,
    /// The serving certificate.
    pub tls_cert_pem: String,
    /// The serving certificate's private key (PKCS#8).
    pub tls_key_pem: String,
}

/// Checks a DNS-1123 label (namespace names): 1–63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn validate_dns1123_label(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > 63 {
        return Err(format!(
            "must be at most 63 characters, got {}",
            value.len()
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "only lowercase letters, digits and '-' are allowed, found {c:?}"
        ));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// Checks a DNS-1035 label, which Kubernetes requires for Service names: a DNS-1123 label
/// that starts with a letter.
pub fn validate_dns1035_label(value: &str) -> Result<(), String> {
    validate_dns1123_label(value)?;
    if !value.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a letter".into());
    }
    Ok(())
}

/// The DNS names clients may use for the Service; the API server uses `NAME.NS.svc`.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
        service.to_string(),
    ]
}

/// Validates the names and days, then generates a fresh CA and a serving certificate
/// (ECDSA P-256) for the Service, valid from `now` (minus a little clock skew).
pub fn generate(
    service: &str,
    namespace: &str,
    serving_days: u32,
    now: SystemTime,
) -> Result<Bundle, CertsError> {
    validate_dns1035_label(service).map_err(|reason| CertsError::InvalidName {
        what: "--service",
        rule: "DNS-1035 label",
        value: service.to_string(),
        reason,
    })?;
    validate_dns1123_label(namespace).map_err(|reason| CertsError::InvalidName {
        what: "--namespace",
        rule: "DNS-1123 label",
        value: namespace.to_string(),
        reason,
    })?;
    if serving_days == 0 || serving_days > CA_VALIDITY_DAYS {
        return Err(CertsError::InvalidDays(serving_days));
    }

    // rcgen takes `time::OffsetDateTime`, which this crate does not depend on directly:
    // build it from the epoch and a std Duration instead.
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch.saturating_sub(CLOCK_SKEW);
    let valid_for = |days: u32| Duration::from_secs(u64::from(days) * DAY);

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("{service}.{namespace} webhook CA"),
    );
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = not_before + valid_for(CA_VALIDITY_DAYS);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let tls_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let names = service_dns_names(service, namespace);
    let mut tls_params = CertificateParams::new(names.clone())?;
    tls_params.distinguished_name = rcgen::DistinguishedName::new();
    tls_params
        .distinguished_name
        .push(DnType::CommonName, names[0].clone());
    tls_params.is_ca = IsCa::ExplicitNoCa;
    // ECDSA keys sign; keyEncipherment only makes sense for RSA key exchange.
    tls_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    tls_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    tls_params.use_authority_key_identifier_extension = true;
    tls_params.not_before = not_before;
    tls_params.not_after = not_before + valid_for(serving_days);
    let tls_cert = tls_params.signed_by(&tls_key, &issuer)?;

    Ok(Bundle {
        ca_cert_pem: ca_cert.pem(),
        tls_cert_pem: tls_cert.pem(),
        tls_key_pem: tls_key.serialize_pem(),
    })
}

/// Writes the bundle into `dir` (created if missing). Without `force`, refuses before
/// writing anything if any of the three files exists. Each file is written to a temporary
/// name and renamed, so a reader never sees half a file and `tls.key` is never readable by
/// others, even for an instant.
pub fn write_bundle(dir: &Path, bundle: &Bundle, force: bool) -> Result<(), CertsError> {
    fs::create_dir_all(dir).map_err(|source| CertsError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let files = [
        (TLS_KEY_FILE, bundle.tls_key_pem.as_str(), 0o600),
        (TLS_CERT_FILE, bundle.tls_cert_pem.as_str(), 0o644),
        (CA_CERT_FILE, bundle.ca_cert_pem.as_str(), 0o644),
    ];
    if !force {
        for (name, _, _) in &files {
            let path = dir.join(name);
            // symlink_metadata: a dangling symlink is still something we would clobber.
            if fs::symlink_metadata(&path).is_ok() {
                return Err(CertsError::AlreadyExists { path });
            }
        }
    }
    for (name, contents, mode) in files {
        write_file(&dir.join(name), contents, mode)?;
    }
    Ok(())
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), CertsError> {
    let err = |source| CertsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = options.open(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Writes the certificates.
pub fn run(args: &CertsArgs) -> Result<(), CertsError> {
    let bundle = generate(&args.service, &args.namespace, args.days, SystemTime::now())?;
    write_bundle(&args.out, &bundle, args.force)?;
    eprintln!(
        "wrote {CA_CERT_FILE}, {TLS_CERT_FILE} and {TLS_KEY_FILE} to {} for {}",
        args.out.display(),
        service_dns_names(&args.service, &args.namespace)[..2].join(" and ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    #[test]
    fn dns1123_labels() {
        for ok in [
            "a",
            "kubevirt-net-webhook",
            "0abc",
            "a-b-1",
            &"a".repeat(63),
        ] {
            assert!(validate_dns1123_label(ok).is_ok(), "{ok}");
        }
        for bad in ["", "A", "a_b", "a.b", "-a", "a-", "ü", &"a".repeat(64)] {
            assert!(validate_dns1123_label(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dns1035_needs_leading_letter() {
        assert!(validate_dns1035_label("webhook").is_ok());
        let err = validate_dns1035_label("1webhook").unwrap_err();
        assert!(err.contains("start with a letter"), "{err}");
    }

    #[test]
    fn rejects_bad_names_and_days_before_generating() {
        let now = SystemTime::now();
        let err = generate("Bad_Name", "ns", 365, now).unwrap_err();
        assert!(
            matches!(
                &err,
                CertsError::InvalidName {
                    what: "--service",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("\"Bad_Name\""), "{err}");
        let err = generate("svc", "ns.with.dots", 365, now).unwrap_err();
        assert!(
            matches!(
                &err,
                CertsError::InvalidName {
                    what: "--namespace",
                    ..
                }
            ),
            "{err}"
        );
        assert!(matches!(
            generate("svc", "ns", 0, now),
            Err(CertsError::InvalidDays(0))
        ));
        assert!(matches!(
            generate("svc", "ns", CA_VALIDITY_DAYS + 1, now),
            Err(CertsError::InvalidDays(_))
        ));
    }

    #[test]
    fn bundle_parses_and_names_the_service() {
        let bundle = generate("hook", "tenant", 30, SystemTime::now()).unwrap();
        let ca = CertificateDer::from_pem_slice(bundle.ca_cert_pem.as_bytes()).unwrap();
        let leaf = CertificateDer::from_pem_slice(bundle.tls_cert_pem.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(bundle.tls_key_pem.as_bytes()).unwrap();
        assert!(matches!(key, PrivateKeyDer::Pkcs8(_)));
        assert_ne!(ca.as_ref(), leaf.as_ref());
        // DNS names appear verbatim (IA5String) in the DER of the SAN extension.
        let der = leaf.as_ref();
        for name in ["hook.tenant.svc", "hook.tenant.svc.cluster.local"] {
            assert!(
                der.windows(name.len()).any(|w| w == name.as_bytes()),
                "{name} missing from the serving certificate"
            );
        }
    }

    #[test]
    fn key_matches_certificate() {
        let bundle = generate("hook", "tenant", 30, SystemTime::now()).unwrap();
        let key = KeyPair::from_pem(&bundle.tls_key_pem).unwrap();
        let leaf = CertificateDer::from_pem_slice(bundle.tls_cert_pem.as_bytes()).unwrap();
        // The uncompressed P-256 point is embedded in the certificate's SubjectPublicKeyInfo.
        let public = key.public_key_raw();
        assert_eq!(public.len(), 65);
        assert!(leaf.as_ref().windows(public.len()).any(|w| w == public));
    }

    #[test]
    fn write_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested/certs");
        let bundle = generate("hook", "tenant", 30, SystemTime::now()).unwrap();
        write_bundle(&out, &bundle, false).unwrap();
        let first = fs::read_to_string(out.join(TLS_CERT_FILE)).unwrap();
        assert_eq!(first, bundle.tls_cert_pem);

        let other = generate("hook", "tenant", 30, SystemTime::now()).unwrap();
        let err = write_bundle(&out, &other, false).unwrap_err();
        assert!(matches!(err, CertsError::AlreadyExists { .. }), "{err}");
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(fs::read_to_string(out.join(TLS_CERT_FILE)).unwrap(), first);

        write_bundle(&out, &other, true).unwrap();
        assert_eq!(
            fs::read_to_string(out.join(TLS_CERT_FILE)).unwrap(),
            other.tls_cert_pem
        );
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(&out).unwrap().count(), 3);
    }

    #[cfg(unix)]
    #[test]
    fn key_is_private_even_after_force() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join(TLS_KEY_FILE);
        fs::write(&key_path, "old").unwrap();
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o644)).unwrap();
        let bundle = generate("hook", "tenant", 30, SystemTime::now()).unwrap();
        write_bundle(dir.path(), &bundle, true).unwrap();
        let mode = fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
