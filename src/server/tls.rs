//! The serving certificate: read from PEM files and swapped without a restart when they
//! change. Kubelet rotates a Secret volume by re-pointing its `..data` symlink, which a watch
//! on the file paths misses after the first rotation, so the directories are watched AND the
//! files are polled; only a pair that parses and whose key matches the certificate is used.
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::Duration,
};

use rustls::{
    RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::metrics::Metrics;

/// Why a certificate/key pair was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate, or a malformed one.
    #[error("{path}: no valid PEM certificate: {message}")]
    Cert { path: String, message: String },
    /// The key file holds no PEM private key the crypto provider can use.
    #[error("{path}: no usable PEM private key: {message}")]
    Key { path: String, message: String },
    /// The key does not belong to the certificate (e.g. read mid-rotation, or a bad Secret).
    #[error("the private key in {key} does not match the certificate in {cert}: {message}")]
    Mismatch {
        cert: String,
        key: String,
        message: String,
    },
}

/// Why the TLS configuration could not be built (the server does not start).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--client-ca` could not be read.
    #[error("--client-ca {path}: {source}")]
    ClientCaRead {
        path: String,
        source: std::io::Error,
    },
    /// `--client-ca` holds no usable CA certificate.
    #[error("--client-ca {path}: {message}")]
    ClientCa { path: String, message: String },
    /// rustls refused the configuration.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The lowest TLS version the server accepts (`--tls-min-version`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[value(name = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[value(name = "1.3")]
    Tls13,
}

/// The rustls server configuration: the reloading certificate, HTTP/2 and HTTP/1.1 by ALPN,
/// TLS 1.2+ or 1.3 only, and, with `client_ca`, only clients presenting a certificate that
/// this CA issued (the API server with an admission `kubeConfigFile` client certificate).
pub fn server_config(
    provider: Arc<CryptoProvider>,
    resolver: Arc<CertResolver>,
    min_version: MinVersion,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, ConfigError> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder =
        ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let shown = path.display().to_string();
            let pem = std::fs::read(path).map_err(|source| ConfigError::ClientCaRead {
                path: shown.clone(),
                source,
            })?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| ConfigError::ClientCa {
                    path: shown.clone(),
                    message: e.to_string(),
                })?;
                roots.add(cert).map_err(|e| ConfigError::ClientCa {
                    path: shown.clone(),
                    message: e.to_string(),
                })?;
            }
            if roots.is_empty() {
                return Err(ConfigError::ClientCa {
                    path: shown,
                    message: "no CERTIFICATE block".into(),
                });
            }
            // Required, not optional: a client without a certificate fails the handshake.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ConfigError::ClientCa {
                    path: shown,
                    message: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A pair ready to serve, with the leaf's notAfter for the expiry metric.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// Unix seconds; `None` when the leaf's validity could not be read.
    pub not_after: Option<i64>,
}

/// Parses a PEM certificate chain and private key and checks that they belong together.
pub fn load_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &str,
    key_path: &str,
    provider: &CryptoProvider,
) -> Result<Loaded, Error> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Cert {
            path: cert_path.into(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(Error::Cert {
            path: cert_path.into(),
            message: "no CERTIFICATE block".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| Error::Key {
        path: key_path.into(),
        message: e.to_string(),
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| Error::Key {
            path: key_path.into(),
            message: e.to_string(),
        })?;
    let not_after = not_after(&chain[0]);
    let key = CertifiedKey::new(chain, signing_key);
    // Strict: a pair whose match cannot be shown is not served either.
    key.keys_match().map_err(|e| Error::Mismatch {
        cert: cert_path.into(),
        key: key_path.into(),
        message: e.to_string(),
    })?;
    Ok(Loaded {
        key: Arc::new(key),
        not_after,
    })
}

fn not_after(der: &CertificateDer<'_>) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Hands rustls the current certificate; `None` (no handshake) until one is loaded.
#[derive(Debug, Default)]
pub struct CertResolver {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl CertResolver {
    pub fn is_loaded(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn set(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(key);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What one reload attempt did.
#[derive(Debug)]
pub enum Reload {
    /// The files hold what was last tried.
    Unchanged,
    /// A new pair is served.
    Swapped,
    /// The files changed but do not form a valid pair; the previous pair stays.
    Rejected(Error),
}

/// Reloads the pair from `cert`/`key` into a [`CertResolver`].
#[derive(Debug)]
pub struct CertReloader {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    resolver: Arc<CertResolver>,
    metrics: Arc<Metrics>,
    /// Digest of the contents last tried, so that an unchanged bad pair is reported once.
    last_tried: Mutex<Option<[u8; 32]>>,
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })
}

impl CertReloader {
    pub fn new(
        cert: PathBuf,
        key: PathBuf,
        provider: Arc<CryptoProvider>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            cert,
            key,
            provider,
            resolver: Arc::default(),
            metrics,
            last_tried: Mutex::new(None),
        }
    }

    pub fn resolver(&self) -> Arc<CertResolver> {
        self.resolver.clone()
    }

    /// Reads both files and swaps the pair in when they changed and are valid.
    pub fn reload(&self) -> Reload {
        let (cert_pem, key_pem) = match read(&self.cert).and_then(|c| Ok((c, read(&self.key)?))) {
            Ok(pair) => pair,
            Err(e) => {
                // Missing files are retried on every poll but reported once per change.
                let digest = Sha256::digest(e.to_string().as_bytes()).into();
                return self.reject_once(digest, e);
            }
        };
        let mut hasher = Sha256::new();
        hasher.update((cert_pem.len() as u64).to_le_bytes());
        hasher.update(&cert_pem);
        hasher.update(&key_pem);
        let digest: [u8; 32] = hasher.finalize().into();
        if *self
            .last_tried
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            == Some(digest)
        {
            return Reload::Unchanged;
        }
        let cert_shown = self.cert.display().to_string();
        let key_shown = self.key.display().to_string();
        match load_pair(&cert_pem, &key_pem, &cert_shown, &key_shown, &self.provider) {
            Ok(loaded) => {
                *self
                    .last_tried
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(digest);
                self.resolver.set(loaded.key);
                self.metrics.certificate_reload(true);
                if let Some(t) = loaded.not_after {
                    self.metrics.certificate_expiry.set(t);
                }
                info!(cert = %cert_shown, not_after = loaded.not_after, "serving certificate loaded");
                Reload::Swapped
            }
            Err(e) => self.reject_once(digest, e),
        }
    }

    fn reject_once(&self, digest: [u8; 32], error: Error) -> Reload {
        let mut last = self
            .last_tried
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *last != Some(digest) {
            *last = Some(digest);
            self.metrics.certificate_reload(false);
            warn!(error = %error, kept_previous = self.resolver.is_loaded(), "serving certificate not loaded");
        }
        Reload::Rejected(error)
    }

    /// Reloads on every change in the files' directories and every `poll`; runs until dropped.
    pub async fn watch(self: Arc<Self>, poll: Duration) {
        let changed = Arc::new(tokio::sync::Notify::new());
        // The watcher lives as long as this task; if it cannot start, polling still works.
        let _watcher = self.start_notify(changed.clone());
        loop {
            tokio::select! {
                _ = changed.notified() => {
                    // A rotation touches several entries; let it finish before reading.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ = tokio::time::sleep(poll) => {}
            }
            let this = self.clone();
            // File reads and key parsing are blocking work.
            let _ = tokio::task::spawn_blocking(move || this.reload()).await;
        }
    }

    fn start_notify(
        &self,
        changed: Arc<tokio::sync::Notify>,
    ) -> Option<notify::RecommendedWatcher> {
        use notify::Watcher as _;
        let mut watcher =
            match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok() {
                    changed.notify_one();
                }
            }) {
                Ok(w) => w,
                Err(e) => {
                    warn!(error = %e, "cannot watch certificate directories; polling only");
                    return None;
                }
            };
        let mut dirs: Vec<PathBuf> = [&self.cert, &self.key]
            .iter()
            .map(|p| match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            })
            .collect();
        dirs.dedup();
        for dir in dirs {
            if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                warn!(dir = %dir.display(), error = %e, "cannot watch certificate directory; polling only");
            }
        }
        Some(watcher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    #[test]
    fn client_ca_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let resolver = Arc::new(CertResolver::default());
        let missing = dir.path().join("missing.crt");
        let e = server_config(
            provider(),
            resolver.clone(),
            MinVersion::Tls12,
            Some(&missing),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("missing.crt"), "{e}");
        let empty = dir.path().join("empty.crt");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = server_config(
            provider(),
            resolver.clone(),
            MinVersion::Tls13,
            Some(&empty),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("empty.crt") && e.contains("no CERTIFICATE"),
            "{e}"
        );
        let (cert, _) = pair();
        let good = dir.path().join("ca.crt");
        std::fs::write(&good, cert).unwrap();
        let config = server_config(provider(), resolver, MinVersion::Tls13, Some(&good)).unwrap();
        assert_eq!(config.alpn_protocols[0], b"h2");
    }

    #[test]
    fn a_matching_pair_loads_with_its_expiry() {
        let (cert, key) = pair();
        let l = load_pair(cert.as_bytes(), key.as_bytes(), "c", "k", &provider()).unwrap();
        assert!(l.not_after.unwrap() > 1_700_000_000);
    }

    #[test]
    fn bad_pairs_are_rejected_with_the_file_named() {
        let (cert, key) = pair();
        let (_, other_key) = pair();
        let p = provider();
        let e = load_pair(cert.as_bytes(), other_key.as_bytes(), "c.crt", "k.key", &p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not match") && e.contains("k.key"), "{e}");
        let e = load_pair(b"garbage", key.as_bytes(), "c.crt", "k", &p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.crt"), "{e}");
        let e = load_pair(cert.as_bytes(), cert.as_bytes(), "c", "k.key", &p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("k.key"), "{e}");
    }

    #[test]
    fn reload_keeps_the_old_pair_on_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let (cert, key) = pair();
        std::fs::write(&c, &cert).unwrap();
        std::fs::write(&k, &key).unwrap();
        let r = CertReloader::new(c.clone(), k.clone(), provider(), Arc::default());
        assert!(matches!(r.reload(), Reload::Swapped));
        assert!(matches!(r.reload(), Reload::Unchanged));
        let served = r.resolver.current.read().unwrap().clone().unwrap();
        let (cert2, _) = pair();
        std::fs::write(&c, &cert2).unwrap();
        assert!(matches!(
            r.reload(),
            Reload::Rejected(Error::Mismatch { .. })
        ));
        let still = r.resolver.current.read().unwrap().clone().unwrap();
        assert!(Arc::ptr_eq(&served, &still));
        // The same bad pair is not counted twice.
        assert!(matches!(r.reload(), Reload::Unchanged));
        let text = r.metrics.encode();
        assert!(
            text.contains("certificate_reloads_total{result=\"error\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("certificate_reloads_total{result=\"success\"} 1"),
            "{text}"
        );
    }
}
