//! Certificates, a TLS/HTTP client over hyper, and an in-process server.
#![allow(dead_code)] // each user (test binary, example) takes a different part

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use http_body_util::{BodyExt as _, Full};
use hyper::{Request, StatusCode, body::Bytes};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kubevirt_net_webhook::server::{ServeArgs, Server};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

/// The scenarios, also used as the server's `--nads`/`--vms`.
pub const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/cases");

/// A CA that issues serving certificates for `localhost`.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A serving certificate and its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Leaf {
    /// Writes `tls.crt` and `tls.key` into `dir`, as `serve --tls-cert/--tls-key` read them.
    pub fn write_to(&self, dir: &std::path::Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

impl Ca {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(vec![]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    pub fn leaf(&self) -> Leaf {
        let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        client_config(self.pem().as_bytes(), alpn)
    }
}

/// A TLS client trusting the CA certificates in `ca_pem`, offering `alpn`.
pub fn client_config(ca_pem: &[u8], alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS connection to `addr` (verified against the CA, name `localhost`).
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// The certificate the server presents to a new connection.
pub async fn peer_certificate(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<CertificateDer<'static>> {
    let stream = tls_connect(addr, config).await?;
    let (_, conn) = stream.get_ref();
    Ok(conn.peer_certificates().unwrap()[0].clone().into_owned())
}

/// One keep-alive HTTP connection, HTTP/1.1 or HTTP/2.
pub enum Http {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Http {
    /// HTTP/1.1 or HTTP/2 over TLS, as ALPN negotiates from `alpn`.
    pub async fn tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Self {
        let stream = tls_connect(addr, config).await.unwrap();
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Self::over(TokioIo::new(stream), h2).await
    }

    /// Plain HTTP/1.1 (the admin port).
    pub async fn plain(addr: SocketAddr) -> Self {
        Self::over(TokioIo::new(TcpStream::connect(addr).await.unwrap()), false).await
    }

    async fn over<IO>(io: IO, h2: bool) -> Self
    where
        IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        if h2 {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            Http::H2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Http::H1(sender)
        }
    }

    pub fn is_h2(&self) -> bool {
        matches!(self, Http::H2(_))
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Result<(StatusCode, Bytes), hyper::Error> {
        let mut builder = Request::builder().method(method).uri(path);
        if let Http::H1(_) = self {
            builder = builder.header("host", "localhost");
        } else {
            builder = builder.uri(format!("https://localhost{path}"));
        }
        let request = builder
            .header("content-type", "application/json")
            .body(Full::new(body.into()))
            .unwrap();
        let response = match self {
            Http::H1(s) => {
                s.ready().await?;
                s.send_request(request).await?
            }
            Http::H2(s) => {
                s.ready().await?;
                s.send_request(request).await?
            }
        };
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    pub async fn get(&mut self, path: &str) -> (StatusCode, String) {
        let (status, body) = self.send("GET", path, Bytes::new()).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// POSTs a JSON body; returns the status and the body (JSON when it parses).
    pub async fn post_json(
        &mut self,
        path: &str,
        body: &serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        let (status, bytes) = self
            .send("POST", path, body.to_string().into_bytes())
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }
}

/// A server running in-process on 127.0.0.1 with certificates from a fresh CA.
pub struct Running {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub ca: Ca,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Starts with `--nads`/`--vms` on the test cases; `adjust` can change any argument.
    pub async fn start(adjust: impl FnOnce(&mut ServeArgs, &Ca, &std::path::Path)) -> Self {
        let ca = Ca::new();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca.leaf().write_to(dir.path());
        let mut args = ServeArgs::new(cert, key);
        args.listen = "127.0.0.1:0".parse().unwrap();
        args.admin_listen = "127.0.0.1:0".parse().unwrap();
        args.nads = Some(PathBuf::from(CASES));
        args.vms = Some(PathBuf::from(CASES));
        args.shutdown_delay = Duration::ZERO;
        args.drain_timeout = Duration::from_secs(5);
        adjust(&mut args, &ca, dir.path());
        let server = Server::bind(args).await.unwrap();
        let (addr, admin) = (server.local_addr(), server.admin_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            admin,
            ca,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.ca.client_config(&[b"http/1.1"])
    }

    pub async fn http(&self) -> Http {
        Http::tls(self.addr, self.client_config()).await
    }

    /// GET /healthz over a new TLS connection and on the admin port.
    pub async fn assert_healthy(&self) {
        assert_eq!(self.http().await.get("/healthz").await.0, StatusCode::OK);
        assert_eq!(
            Http::plain(self.admin).await.get("/healthz").await.0,
            StatusCode::OK
        );
    }

    pub async fn metrics(&self) -> String {
        Http::plain(self.admin).await.get("/metrics").await.1
    }

    /// Starts the shutdown; `task` completes when drained.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
