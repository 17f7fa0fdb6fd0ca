//! Issue #12, "no tenant can take the webhook down": each attack from the issue, at a size
//! that hurt before, against the in-process server on 127.0.0.1. Every wait is bounded.
//! The attacks that need a file-descriptor limit or the log output run the real binary:
//! `hardening_process.rs`.
mod support;

use std::{
    future::Future,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use hyper::StatusCode;
use kubevirt_net_webhook::{manifests, server::gate::SlowDecisions};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::{Value, json};
use support::server::{CASES, Http, Running, tls_connect};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpStream,
    task::JoinSet,
};

/// What a normal request must be answered within, attack or not. Half the shortest wait an
/// attack here could impose (the 700 ms decision deadline below; the others are seconds), so a
/// request that waited for an attack still fails; well above the scheduling noise of a debug
/// build on a loaded 2-core CI machine (a new TLS connection's /healthz once took 105 ms).
const FAST: Duration = Duration::from_millis(350);

fn seed_vm() -> Value {
    manifests::read_path(&PathBuf::from(CASES).join("seed-wukong-static-ip.yaml"))
        .unwrap()
        .into_iter()
        .find(|d| d.kind() == "VirtualMachine")
        .unwrap()
        .value
}

fn review_for(uid: &str) -> Value {
    support::fixtures::admission_review(
        "admission.k8s.io/v1",
        uid,
        "CREATE",
        Some(&seed_vm()),
        None,
        false,
    )
}

async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    let started = Instant::now();
    match tokio::time::timeout(limit, fut).await {
        Ok(value) => value,
        Err(_) => panic!(
            "{what}: not answered within {limit:?} (gave up after {:?})",
            started.elapsed()
        ),
    }
}

/// Probes on both ports over new connections, and a `/mutate` on `keep`: all within [`FAST`].
async fn probes_are_fast(server: &Running, keep: &mut Http, uid: &str) {
    let (status, _) = within(FAST, "admin /healthz (new connection)", async {
        Http::plain(server.admin).await.get("/healthz").await
    })
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = within(FAST, "admin /readyz (new connection)", async {
        Http::plain(server.admin).await.get("/readyz").await
    })
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = within(FAST, "HTTPS /healthz (new TLS connection)", async {
        server.http().await.get("/healthz").await
    })
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, review) = within(
        FAST,
        "/mutate (keep-alive connection)",
        keep.post_json("/mutate", &review_for(uid)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{review}");
    assert_eq!(review["response"]["uid"], json!(uid));
    assert_eq!(review["response"]["allowed"], json!(true), "{review}");
}

/// Reads until the peer closes (EOF or a reset); returns when that happened.
async fn closed<S: AsyncRead + Unpin>(mut s: S) -> Instant {
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return Instant::now(),
            Ok(_) => {}
        }
    }
}

/// One HTTP/1.1 request with `Connection: close`: status, head and body as text.
async fn raw<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, String, String) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    s.flush().await.unwrap();
    let mut text = Vec::new();
    let _ = s.read_to_end(&mut text).await;
    let text = String::from_utf8_lossy(&text).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, head.to_string(), body.to_string())
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name_and_labels} not in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_while_everyone_else_is_served() {
    // Before: a connection that said nothing (TLS done, no request; or plain TCP to the admin
    // port) stayed open forever.
    const SILENT: usize = 300;
    let deadline = Duration::from_secs(4);
    let server = Running::start(|args, _, _| args.header_read_timeout = deadline).await;
    let mut keep = server.http().await;
    probes_are_fast(&server, &mut keep, "warm-up").await;

    let started = Instant::now();
    let config = server.client_config();
    let mut handshakes = JoinSet::new();
    for _ in 0..SILENT {
        let config = config.clone();
        let addr = server.addr;
        handshakes.spawn(async move { tls_connect(addr, config).await });
    }
    let mut silent_tls = Vec::new();
    while let Some(stream) = handshakes.join_next().await {
        silent_tls.push(stream.unwrap().expect("TLS handshake"));
    }
    let mut silent_tcp = Vec::new();
    for _ in 0..SILENT {
        silent_tcp.push(TcpStream::connect(server.admin).await.unwrap());
    }
    let opened = started.elapsed();
    assert!(
        opened + Duration::from_secs(1) < deadline,
        "opening took {opened:?}: too slow to test anything before the deadline"
    );

    // While all 600 are open: probes and admission requests stay fast.
    let mut rounds = 0;
    while started.elapsed() + Duration::from_millis(500) < deadline {
        probes_are_fast(&server, &mut keep, &format!("during-{rounds}")).await;
        rounds += 1;
    }
    assert!(rounds >= 3, "only {rounds} probe rounds");

    // Each silent connection is closed by the server: not before its deadline, soon after.
    let mut closing = JoinSet::new();
    for s in silent_tls {
        closing.spawn(closed(s));
    }
    for s in silent_tcp {
        closing.spawn(closed(s));
    }
    let all_closed = within(
        deadline + Duration::from_secs(3),
        "closing the silent connections",
        async {
            let mut times = Vec::new();
            while let Some(t) = closing.join_next().await {
                times.push(t.unwrap());
            }
            times
        },
    )
    .await;
    assert_eq!(all_closed.len(), 2 * SILENT);
    for at in &all_closed {
        let after = at.duration_since(started);
        assert!(
            after + Duration::from_millis(50) >= deadline,
            "a silent connection was closed after {after:?}, before the {deadline:?} deadline"
        );
    }
    probes_are_fast(&server, &mut keep, "after").await;
    let text = server.metrics().await;
    for port in ["webhook", "admin"] {
        assert_eq!(
            metric(
                &text,
                &format!(
                    "kubevirt_net_webhook_connections_closed_total{{port=\"{port}\",reason=\"first_request_timeout\"}}"
                )
            ),
            SILENT as f64
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_silent_connections_make_room() {
    // Before: no limit at all; a flood of connections exhausted file descriptors.
    let server = Running::start(|args, _, _| args.limits.max_connections = 20).await;
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(TcpStream::connect(server.admin).await.unwrap());
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // The newest connection is served: each accept beyond the limit evicts the oldest
    // connection that has not sent a request.
    let mut keep = server.http().await;
    for i in 0..5 {
        probes_are_fast(&server, &mut keep, &format!("limit-{i}")).await;
    }
    // A connection with a request in flight, or idle after one, is not evicted while silent
    // ones are there: `keep` still works after more silent connections.
    for _ in 0..30 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    probes_are_fast(&server, &mut keep, "limit-after").await;
    let text = server.metrics().await;
    for port in ["webhook", "admin"] {
        let evicted = metric(
            &text,
            &format!(
                "kubevirt_net_webhook_connections_closed_total{{port=\"{port}\",reason=\"evicted\"}}"
            ),
        );
        assert!(evicted >= 80.0, "{port}: {evicted} evicted");
        let open = metric(
            &text,
            &format!("kubevirt_net_webhook_connections_open{{port=\"{port}\"}}"),
        );
        assert!(open <= 20.0, "{port}: {open} open");
        assert!(
            metric(
                &text,
                &format!("kubevirt_net_webhook_connection_limit_reached_total{{port=\"{port}\"}}")
            ) >= 1.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_clock_starts_again_at_each_request() {
    // Requests closer together than the idle timeout keep a connection open; it closes one
    // idle timeout after the last of them, not after the first (a request's end re-arms the
    // driver only when its check would come too late).
    let idle = Duration::from_millis(800);
    let server = Running::start(|args, _, _| args.limits.idle_timeout = idle).await;
    let stream = tls_connect(server.addr, server.ca.client_config(&[b"http/1.1"]))
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut answered = Instant::now();
    for _ in 0..4 {
        let response = within(
            FAST,
            "a request on the kept connection",
            send.send_request(healthz_request()),
        )
        .await
        .expect("the connection is still open");
        assert_eq!(response.status(), 200);
        answered = Instant::now();
        tokio::time::sleep(idle * 5 / 8).await;
    }
    closed_after_idle(connection, answered, idle, "http/1.1").await;
}

/// A GET of `/healthz` for a hyper client connection.
fn healthz_request() -> hyper::Request<http_body_util::Empty<hyper::body::Bytes>> {
    hyper::Request::get("https://localhost/healthz")
        .header("host", "localhost")
        .body(http_body_util::Empty::new())
        .unwrap()
}

/// The connection task ends (the server closed it) an idle timeout after `answered`: not
/// before, and not more than two seconds after.
async fn closed_after_idle(
    connection: tokio::task::JoinHandle<()>,
    answered: Instant,
    idle: Duration,
    alpn: &str,
) {
    within(idle + Duration::from_secs(2), "idle close", connection)
        .await
        .unwrap();
    let after = answered.elapsed();
    assert!(
        after + Duration::from_millis(50) >= idle,
        "{alpn}: closed {after:?} after the last request, before the idle timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed() {
    let idle = Duration::from_millis(800);
    let server = Running::start(|args, _, _| args.limits.idle_timeout = idle).await;
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let stream = tls_connect(server.addr, server.ca.client_config(&[alpn]))
            .await
            .unwrap();
        let io = hyper_util::rt::TokioIo::new(stream);
        // The request handle is kept: dropping it would make the client close the connection.
        let (connection, _sender, answered): (_, Box<dyn std::any::Any + Send>, _) =
            if alpn == b"h2" {
                let (mut send, conn) =
                    hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                        .await
                        .unwrap();
                let connection = tokio::spawn(async move {
                    let _ = conn.await;
                });
                assert_eq!(
                    send.send_request(healthz_request()).await.unwrap().status(),
                    200
                );
                (connection, Box::new(send), Instant::now())
            } else {
                let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                let connection = tokio::spawn(async move {
                    let _ = conn.await;
                });
                assert_eq!(
                    send.send_request(healthz_request()).await.unwrap().status(),
                    200
                );
                (connection, Box::new(send), Instant::now())
            };
        // The connection task ends when the server closes (HTTP/2: after its GOAWAY).
        closed_after_idle(connection, answered, idle, &String::from_utf8_lossy(alpn)).await;
    }
    // The server counts a close once its side of the connection is done, which may come a
    // moment after the client saw it: wait for the count (bounded), then check it.
    let key =
        "kubevirt_net_webhook_connections_closed_total{port=\"webhook\",reason=\"idle_timeout\"}";
    let waited = Instant::now();
    let mut closed = metric(&server.metrics().await, key);
    while closed < 2.0 && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        closed = metric(&server.metrics().await, key);
    }
    assert_eq!(closed, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_decision_blocks_neither_probes_nor_other_requests() {
    // Before: the engine ran on the async workers; two slow requests froze the webhook port
    // and the admin /healthz for 26 s.
    let deadline = Duration::from_millis(700);
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let server = Running::start(|args, _, _| {
        args.limits.decision_timeout = deadline;
        args.limits.max_concurrent_decisions = 2;
        args.limits.slow_decisions = Some(SlowDecisions {
            uid_prefix: "slow-".into(),
            delay: Duration::from_secs(3),
            started: started_tx,
        });
    })
    .await;
    let mut keep = server.http().await;
    probes_are_fast(&server, &mut keep, "warm-up").await;

    let slow = |uid: &'static str| {
        let addr = server.addr;
        let config = server.client_config();
        tokio::spawn(async move {
            let mut http = Http::tls(addr, config).await;
            let sent = Instant::now();
            let answer = http.post_json("/mutate", &review_for(uid)).await;
            (sent.elapsed(), answer)
        })
    };
    let first = slow("slow-1");
    assert_eq!(
        within(Duration::from_secs(2), "slow-1 starts", started.recv())
            .await
            .unwrap(),
        "slow-1"
    );
    // One decision is stuck: probes and other decisions are not.
    for i in 0..5 {
        probes_are_fast(&server, &mut keep, &format!("beside-slow-{i}")).await;
    }
    // The stuck one is answered at its deadline: allowed=false, code 504, its uid.
    let (took, (status, review)) = within(Duration::from_secs(2), "slow-1", first)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{review}");
    let response = &review["response"];
    assert_eq!(response["uid"], json!("slow-1"));
    assert_eq!(response["allowed"], json!(false));
    assert_eq!(response["status"]["code"], json!(504), "{review}");
    assert!(
        took >= deadline && took < deadline + Duration::from_millis(400),
        "answered after {took:?}, deadline {deadline:?}"
    );

    // A second stuck decision takes the other slot (slow-1 still holds its thread).
    let second = slow("slow-2");
    assert_eq!(
        within(Duration::from_secs(2), "slow-2 starts", started.recv())
            .await
            .unwrap(),
        "slow-2"
    );
    // No slot frees up before a new request's deadline: it is shed, 503 with Retry-After.
    let mut stream = tls_connect(server.addr, server.client_config())
        .await
        .unwrap();
    let body = review_for("while-full").to_string();
    let sent = Instant::now();
    let (status, head, _) = raw(&mut stream, "POST", "/validate", body.as_bytes()).await;
    let took = sent.elapsed();
    assert_eq!(status, 503, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    assert!(took < deadline + Duration::from_millis(400), "{took:?}");
    // Probes still do not wait for the decisions.
    let (status, _) = within(FAST, "admin /healthz with both slots stuck", async {
        Http::plain(server.admin).await.get("/healthz").await
    })
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, (_, review)) = within(Duration::from_secs(2), "slow-2", second)
        .await
        .unwrap();
    assert_eq!(review["response"]["status"]["code"], json!(504));

    let text = server.metrics().await;
    assert_eq!(
        metric(
            &text,
            "kubevirt_net_webhook_decision_timeouts_total{endpoint=\"mutate\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            "kubevirt_net_webhook_shed_total{endpoint=\"validate\"}"
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_pending_budget_requests_are_shed_at_once() {
    // The budget is at least one 7 MiB body; a client announcing one holds all of it.
    let server = Running::start(|args, _, _| args.limits.max_pending_mib = 1).await;
    let mut hog = tls_connect(server.addr, server.client_config())
        .await
        .unwrap();
    hog.write_all(
        b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 7340032\r\n\r\n{\"apiVersion\"",
    )
    .await
    .unwrap();
    hog.flush().await.unwrap();
    let body = review_for("small").to_string();
    // The hog's headers travel on another connection: wait until its reservation shows.
    let shed_at = within(Duration::from_secs(5), "the budget taken", async {
        loop {
            let mut s = tls_connect(server.addr, server.client_config())
                .await
                .unwrap();
            let sent = Instant::now();
            let (status, head, _) = raw(&mut s, "POST", "/validate", body.as_bytes()).await;
            if status == 503 {
                return (sent.elapsed(), head);
            }
            assert_eq!(status, 200, "{head}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let (took, head) = shed_at;
    assert!(took < FAST, "shed after {took:?}: must be at once");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    // Probes are not subject to the budget.
    let (status, _) = within(FAST, "HTTPS /readyz", async {
        server.http().await.get("/readyz").await
    })
    .await;
    assert_eq!(status, StatusCode::OK);
    // The hog leaves: its budget comes back.
    drop(hog);
    within(Duration::from_secs(5), "the budget back", async {
        loop {
            let mut s = tls_connect(server.addr, server.client_config())
                .await
                .unwrap();
            let (status, _, _) = raw(&mut s, "POST", "/validate", body.as_bytes()).await;
            if status == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let text = server.metrics().await;
    assert!(
        metric(
            &text,
            "kubevirt_net_webhook_shed_total{endpoint=\"validate\"}"
        ) >= 1.0
    );
}

/// A CA for client certificates, and client configurations with and without one.
struct ClientCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl ClientCa {
    fn new() -> Self {
        let mut params = CertificateParams::new(vec![]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A TLS client trusting `server_ca`, presenting a client certificate from this CA.
    fn client(&self, server_ca: &support::server::Ca) -> Arc<rustls::ClientConfig> {
        let mut params = CertificateParams::new(vec!["kube-apiserver".to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(server_ca.pem().as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// Whether a TLS client gets an HTTP answer to GET /healthz.
async fn answered(server: &Running, config: Arc<rustls::ClientConfig>) -> bool {
    let Ok(mut stream) = tls_connect(server.addr, config).await else {
        return false;
    };
    // TLS 1.3: the server checks the client certificate after the client's handshake ends,
    // so a refusal shows on the first read.
    let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return false;
    }
    let mut text = Vec::new();
    let _ = within(
        Duration::from_secs(5),
        "an answer or a refusal",
        stream.read_to_end(&mut text),
    )
    .await;
    String::from_utf8_lossy(&text).starts_with("HTTP/1.1 200")
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_its_certificates_are_answered() {
    // Before: any TLS client that could reach the port was answered.
    let client_ca = ClientCa::new();
    let other_ca = ClientCa::new();
    let ca_pem = client_ca.issuer.pem();
    let server = Running::start(move |args, _, dir| {
        let path = dir.join("client-ca.crt");
        std::fs::write(&path, ca_pem).unwrap();
        args.limits.client_ca = Some(path);
    })
    .await;
    assert!(
        !answered(&server, server.client_config()).await,
        "no client certificate"
    );
    assert!(
        !answered(&server, other_ca.client(&server.ca)).await,
        "a certificate from another CA"
    );
    let trusted = client_ca.client(&server.ca);
    assert!(
        answered(&server, trusted.clone()).await,
        "a certificate from --client-ca"
    );
    let mut http = Http::tls(server.addr, trusted).await;
    let (status, review) = http.post_json("/mutate", &review_for("with-cert")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(review["response"]["uid"], json!("with-cert"));
    // Probes on the admin port need no certificate (kubelet has none).
    assert_eq!(
        Http::plain(server.admin).await.get("/readyz").await.0,
        StatusCode::OK
    );
    let text = server.metrics().await;
    assert_eq!(
        metric(
            &text,
            "kubevirt_net_webhook_connections_closed_total{port=\"webhook\",reason=\"tls_error\"}"
        ),
        2.0,
        "the two refused handshakes"
    );
}

fn client_with_versions(
    server: &Running,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(server.ca.pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

#[tokio::test]
async fn tls_min_version_1_3_refuses_a_tls_1_2_client() {
    use kubevirt_net_webhook::server::tls::MinVersion;
    let tls12 = [&rustls::version::TLS12];
    let tls13 = [&rustls::version::TLS13];
    let default = Running::start(|_, _, _| {}).await;
    assert!(
        answered(&default, client_with_versions(&default, &tls12)).await,
        "1.2 by default"
    );
    let strict = Running::start(|args, _, _| args.limits.tls_min_version = MinVersion::Tls13).await;
    assert!(
        tls_connect(strict.addr, client_with_versions(&strict, &tls12))
            .await
            .is_err(),
        "a TLS 1.2-only client must fail the handshake"
    );
    assert!(answered(&strict, client_with_versions(&strict, &tls13)).await);
}

#[tokio::test]
async fn a_body_of_millions_of_tiny_values_is_refused_before_decoding() {
    // Measured before: one 7 MiB AdmissionReview of `0,0,0,...` took 250 MB to decode (the
    // default memory limit was 256 MiB), two at once 520 MB.
    let server = Running::start(|_, _, _| {}).await;
    let zeros = "0,".repeat((7 << 20) / 2 - 1000);
    let body = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"many","kind":{{"group":"kubevirt.io","version":"v1","kind":"VirtualMachine"}},"operation":"CREATE","namespace":"default","object":{{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachine","metadata":{{"name":"big"}},"x":[{zeros}0]}}}}}}"#
    );
    assert!(body.len() <= 7 << 20);
    let mut stream = tls_connect(server.addr, server.client_config())
        .await
        .unwrap();
    let sent = Instant::now();
    let (status, head, text) = raw(&mut stream, "POST", "/validate", body.as_bytes()).await;
    let took = sent.elapsed();
    assert_eq!(status, 200, "{head}");
    let review: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(review["response"]["uid"], json!("many"));
    assert_eq!(review["response"]["allowed"], json!(false));
    assert_eq!(review["response"]["status"]["code"], json!(413), "{review}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    server.assert_healthy().await;
}
