//! `kubevirt-net-webhook serve` (SPEC §3): HTTPS in front of [`crate::admission`],
//! with certificate hot reload, watch-backed caches, metrics and graceful shutdown.
//!
//! [`Server::bind`] loads everything and binds both ports (tests bind `127.0.0.1:0` and read
//! the addresses back); [`Server::run`] serves until a shutdown future completes.
pub mod cache;
pub mod conn;
pub mod gate;
pub mod log_lines;
pub mod logfmt;
pub mod metrics;
pub mod tls;

use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, FromRequest as _, Request, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tracing::{error, info, warn};

use crate::cluster::Mode;
use crate::{
    admission::{self, Endpoint},
    inventory::{self, Inventory, apply::Cached},
    model::config::{self, Config},
};
use conn::Phase;
use gate::{Gate, GateLimits};
use logfmt::Escaped;
use metrics::Metrics;
use tls::{CertReloader, MinVersion, Reload};

/// Largest AdmissionReview accepted: two 3 MiB objects plus overhead (SPEC §3).
pub const BODY_LIMIT: usize = 7 * 1024 * 1024;

/// Arguments of `kubevirt-net-webhook serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// HTTPS address for /mutate, /validate, /healthz and /readyz.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Plain-HTTP address for /metrics, /healthz and /readyz.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// Serving certificate chain (PEM); reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: PathBuf,
    /// Private key of the serving certificate (PEM); reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    pub tls_key: PathBuf,
    /// Webhook configuration file (YAML). A bad file stops the server at start.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Read NetworkAttachmentDefinitions from this directory (or file) instead of the cluster.
    #[arg(long, value_name = "DIR")]
    pub nads: Option<PathBuf>,
    /// Read the cluster's VMs from this directory (or file) instead of the cluster.
    #[arg(long, value_name = "DIR")]
    pub vms: Option<PathBuf>,
    /// Time from accepting a connection (TLS handshake included) to its first request's
    /// headers, on both ports; also the limit for each later HTTP/1.1 request's headers.
    /// A connection that stays silent is closed then.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Time to receive a whole request and answer it (408 after that).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Connection, decision and TLS client limits (boxed: `serve` has many flags).
    #[command(flatten)]
    pub limits: Box<ServeLimits>,
    /// After SIGTERM, keep serving (while not ready) this long, so that the Service stops
    /// sending requests before the listener closes.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// Then wait at most this long for in-flight requests to finish.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// How often the certificate files are re-read, besides watching their directories.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub cert_poll_interval: Duration,
    /// How the caches list the cluster: `snapshot` is one list from the API server's watch
    /// cache, decoded as it streams (the fastest start); if the API server refuses it or
    /// cuts it off, the cache lists in `pages` from then on. `pages` (from the watch cache on
    /// Kubernetes 1.34+, else from etcd) skips the attempt, for API servers known to cut
    /// long lists short.
    #[arg(long, value_name = "MODE", value_enum, default_value_t = Mode::Snapshot)]
    pub list_mode: Mode,
    /// Objects per page when the caches list in pages. Each page is a request the API server
    /// answers before the next is asked for, so fewer, larger pages start faster; the
    /// webhook decodes a page as it streams, whatever its size.
    #[arg(long, value_name = "N", default_value_t = crate::cluster::PAGE,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub list_page_size: u32,
}

/// The hardening flags of `serve`: how long and how many, and who may connect.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeLimits {
    /// A keep-alive connection without a request this long is closed (HTTP/2: GOAWAY). Keep
    /// it above the clients' own idle timeout (kube-apiserver, like Go: 90s), so that they
    /// close first and never send a request on a connection being closed.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Open connections per port at most. At the limit, the oldest connection that has not
    /// sent a request yet (else the one idle longest) is closed to make room; if every
    /// connection has a request in flight, accepting waits. Lowered at start to fit the
    /// file descriptor limit (`ulimit -n`: two ports plus 64 spare), with a warning.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_connections: u32,
    /// An AdmissionReview still undecided this long after its body arrived is answered
    /// allowed=false with code 504 (a request that could not even start is shed with 503).
    /// Keep it well below the webhooks' timeoutSeconds, so that the API server gets this
    /// answer rather than timing out itself.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub decision_timeout: Duration,
    /// Decision threads: decisions running at once. Others wait in a queue; one not started
    /// by its decision timeout is shed (503).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub max_concurrent_decisions: usize,
    /// AdmissionReview bodies held at once (reading, waiting or being decided), in MiB; each
    /// counts its Content-Length (at least 16 KiB; 7 MiB when unknown). Beyond it a request
    /// is shed at once: HTTP 503 with Retry-After: 1, counted in shed_total.
    #[arg(long, value_name = "MIB", default_value_t = 16)]
    pub max_pending_mib: usize,
    /// Lowest TLS version accepted on the HTTPS port.
    #[arg(long, value_name = "VERSION", value_enum, default_value_t = MinVersion::Tls12)]
    pub tls_min_version: MinVersion,
    /// Answer only TLS clients presenting a certificate issued by a CA in this PEM file
    /// (kube-apiserver configured with an admission kubeConfigFile client certificate).
    /// Read at start; not reloaded.
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    #[doc(hidden)]
    #[arg(skip)]
    pub slow_decisions: Option<gate::SlowDecisions>,
    /// Serve the empty webhook instead (the yardstick of `examples/loadtest.rs --compare`).
    #[doc(hidden)]
    #[arg(skip)]
    pub baseline: bool,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(120),
            max_connections: 1000,
            decision_timeout: Duration::from_secs(2),
            max_concurrent_decisions: 2,
            max_pending_mib: 16,
            tls_min_version: MinVersion::Tls12,
            client_ca: None,
            slow_decisions: None,
            baseline: false,
        }
    }
}

impl ServeArgs {
    /// The defaults, for the given certificate files (tests and embedding).
    pub fn new(tls_cert: PathBuf, tls_key: PathBuf) -> Self {
        Self {
            listen: ([0, 0, 0, 0], 8443).into(),
            admin_listen: ([0, 0, 0, 0], 9090).into(),
            tls_cert,
            tls_key,
            config: None,
            nads: None,
            vms: None,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            limits: Box::default(),
            shutdown_delay: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(20),
            cert_poll_interval: Duration::from_secs(5),
            list_mode: Mode::Snapshot,
            list_page_size: crate::cluster::PAGE,
        }
    }
}

/// Parses `500ms`, `10s`, `2m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 10s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: unit must be ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is bad (the message names the key).
    #[error(transparent)]
    Config(#[from] config::Error),
    /// `--nads`/`--vms` could not be read.
    #[error(transparent)]
    Files(#[from] inventory::files::Error),
    /// No Kubernetes client could be built (neither in-cluster nor kubeconfig).
    #[error("cannot reach the Kubernetes API (needed without --nads/--vms): {0}")]
    Kube(#[from] kube::Error),
    /// A listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The TLS configuration could not be built (e.g. a bad `--client-ca`).
    #[error(transparent)]
    Tls(#[from] tls::ConfigError),
}

/// What request handlers, probes and cache watchers share.
#[derive(Debug)]
pub struct Shared {
    inventory: RwLock<Inventory>,
    config: Config,
    metrics: Arc<Metrics>,
    cert: Arc<tls::CertResolver>,
    gate: Gate,
    nads_synced: AtomicBool,
    vms_synced: AtomicBool,
    vmis_synced: AtomicBool,
    shutting_down: AtomicBool,
}

impl Shared {
    /// A certificate is loaded, every cache has synced, and shutdown has not begun.
    pub fn ready(&self) -> bool {
        self.cert.is_loaded()
            && self.nads_synced.load(Ordering::Acquire)
            && self.vms_synced.load(Ordering::Acquire)
            && self.vmis_synced.load(Ordering::Acquire)
            && !self.shutting_down.load(Ordering::Acquire)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn synced_flag(&self, cached: Cached) -> &AtomicBool {
        match cached {
            Cached::Nad => &self.nads_synced,
            Cached::Vm => &self.vms_synced,
            Cached::Vmi => &self.vmis_synced,
        }
    }

    /// Answers one AdmissionReview body: 200 with the review, or 400 when it is not one.
    fn admit(&self, endpoint: Endpoint, body: &[u8]) -> Response {
        let started = Instant::now();
        let _in_flight = self.metrics.in_flight_guard();
        // Parsing (up to 7 MiB) needs no cluster view: only the decision takes the lock,
        // which is sync and microseconds and never held across an await.
        let result = admission::read(body).map(|read| {
            let inventory = self
                .inventory
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            read.answer(endpoint, &inventory, &self.config)
        });
        let elapsed = started.elapsed();
        match result {
            Err(e) => {
                warn!(endpoint = endpoint.as_str(), error = %e, "body is not an AdmissionReview");
                (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
            }
            Ok(answer) => {
                let facts = &answer.facts;
                self.metrics.observe_request(
                    endpoint,
                    facts.operation,
                    answer.allowed(),
                    facts.dry_run,
                    elapsed.as_secs_f64(),
                );
                self.metrics.observe_violations(&answer.violations);
                log_admission(endpoint, answer.uid(), facts, answer.allowed(), elapsed);
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    answer.to_vec(),
                )
                    .into_response()
            }
        }
    }
}

/// The line logged for each answered AdmissionReview (SPEC §3), at info.
pub fn log_admission(
    endpoint: Endpoint,
    uid: &str,
    facts: &admission::Facts,
    allowed: bool,
    elapsed: Duration,
) {
    // Client-chosen strings: escaped and cut (see logfmt).
    info!(
        uid = %Escaped(uid),
        kind = %Escaped(&facts.kind),
        namespace = %Escaped(&facts.namespace),
        name = %Escaped(&facts.name),
        operation = facts.operation,
        dry_run = facts.dry_run,
        allowed,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        endpoint = endpoint.as_str(),
        "admission"
    );
}

impl cache::Sink for Shared {
    fn inventory(&self) -> &RwLock<Inventory> {
        &self.inventory
    }

    fn cache_changed(&self, kind: Cached, objects: usize, synced: bool) {
        self.synced_flag(kind).store(synced, Ordering::Release);
        self.metrics.set_cache(kind.label(), objects, synced);
    }

    fn conflicts_changed(&self, counts: inventory::ConflictCounts) {
        self.metrics.set_conflicts(counts);
    }

    fn listed(&self, kind: Cached, _mode: crate::cluster::Mode, elapsed: std::time::Duration) {
        self.metrics
            .set_list_seconds(kind.label(), elapsed.as_secs_f64());
    }

    fn fell_back(&self, kind: Cached) {
        self.metrics.list_fell_back(kind.label());
    }
}

/// A server with its ports bound and its background tasks (caches, certificate) running.
pub struct Server {
    args: ServeArgs,
    shared: Arc<Shared>,
    listener: TcpListener,
    admin_listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listen", &self.listener.local_addr().ok())
            .field("admin_listen", &self.admin_listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

impl Server {
    /// Loads the configuration, files and certificate, starts the cluster watches, and binds
    /// both ports. A certificate that cannot be loaded yet is retried (the server is not
    /// ready meanwhile); everything else that is wrong stops it here.
    pub async fn bind(args: ServeArgs) -> Result<Self, Error> {
        let config = Config::load(args.config.as_deref())?;
        let metrics = Arc::new(Metrics::new());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let reloader = Arc::new(CertReloader::new(
            args.tls_cert.clone(),
            args.tls_key.clone(),
            provider.clone(),
            metrics.clone(),
        ));
        if let Reload::Rejected(e) = reloader.reload() {
            error!(error = %e, "no serving certificate yet; not ready until one loads");
        }
        let mut inventory = Inventory::new();
        inventory.record_conflicts();
        if let Some(path) = &args.nads {
            inventory::files::load_path(Cached::Nad, path, &mut inventory)?;
        }
        if let Some(path) = &args.vms {
            // The cluster's guests: VMs, and the standalone VMIs among them.
            inventory::files::load_path(Cached::Vm, path, &mut inventory)?;
            inventory::files::load_path(Cached::Vmi, path, &mut inventory)?;
        }
        let shared = Arc::new(Shared {
            config,
            metrics: metrics.clone(),
            cert: reloader.resolver(),
            gate: Gate::new(
                &GateLimits {
                    pending_bytes: args.limits.max_pending_mib.saturating_mul(1 << 20),
                    concurrent_decisions: args.limits.max_concurrent_decisions,
                    decision_timeout: args.limits.decision_timeout,
                    slow: args.limits.slow_decisions.clone(),
                    cores_beside: cores_beside(
                        cores(),
                        tokio::runtime::Handle::current().metrics().num_workers(),
                    ),
                },
                metrics.clone(),
            ),
            nads_synced: AtomicBool::new(args.nads.is_some()),
            vms_synced: AtomicBool::new(args.vms.is_some()),
            vmis_synced: AtomicBool::new(args.vms.is_some()),
            shutting_down: AtomicBool::new(false),
            inventory: RwLock::new(inventory),
        });
        {
            let inventory = shared
                .inventory
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            for (kind, from_files) in [
                (Cached::Nad, args.nads.is_some()),
                (Cached::Vm, args.vms.is_some()),
                (Cached::Vmi, args.vms.is_some()),
            ] {
                metrics.set_cache(kind.label(), kind.count(&inventory), from_files);
                // From zero, so that an alert sees the first fallback.
                let _ = metrics
                    .cache_list_fallbacks
                    .get_or_create(&metrics::KindLabels { kind: kind.label() });
            }
            metrics.set_conflicts(inventory.conflicts());
        }
        cache::log_conflicts(
            &shared
                .inventory
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take_conflicts(),
        );
        let tls = tls::server_config(
            provider,
            reloader.resolver(),
            args.limits.tls_min_version,
            args.limits.client_ca.as_deref(),
        )?;
        let listener = bind(args.listen).await?;
        let admin_listener = bind(args.admin_listen).await?;

        let mut tasks = vec![tokio::spawn(reloader.watch(args.cert_poll_interval))];
        let watched: Vec<Cached> = [
            (Cached::Nad, &args.nads),
            (Cached::Vm, &args.vms),
            (Cached::Vmi, &args.vms),
        ]
        .into_iter()
        .filter(|(_, files)| files.is_none())
        .map(|(kind, _)| kind)
        .collect();
        if !watched.is_empty() {
            let client = kube::Client::try_default().await?;
            for kind in watched {
                let sink: Arc<dyn cache::Sink> = shared.clone();
                tasks.push(tokio::spawn(cache::watch(
                    client.clone(),
                    kind,
                    args.list_mode,
                    args.list_page_size,
                    sink,
                )));
            }
        }
        Ok(Self {
            args,
            shared,
            listener,
            admin_listener,
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
            tasks,
        })
    }

    /// The bound HTTPS address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.args.listen)
    }

    /// The bound admin (plain HTTP) address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .unwrap_or(self.args.admin_listen)
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves until `shutdown` completes, then stops being ready, keeps serving for
    /// `--shutdown-delay`, stops accepting and drains in-flight requests (at most
    /// `--drain-timeout`).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let Self {
            args,
            shared,
            listener,
            admin_listener,
            tls,
            tasks,
        } = self;
        let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
        let soft_limit = conn::nofile_soft_limit();
        let max_connections = conn::fit_to_fd_limit(args.limits.max_connections, 2, soft_limit);
        if max_connections < args.limits.max_connections {
            warn!(
                requested = args.limits.max_connections,
                used = max_connections,
                nofile = soft_limit,
                "--max-connections lowered to fit the file descriptor limit (ulimit -n)"
            );
        }
        let limits = conn::Limits {
            first_request: args.header_read_timeout,
            idle: args.limits.idle_timeout,
            max_connections,
        };
        let https = tokio::spawn(conn::serve(
            conn::Endpoint {
                name: "webhook",
                listener,
                tls: Some(tls),
                router: if args.limits.baseline {
                    baseline_router(args.request_timeout)
                } else {
                    webhook_router(shared.clone(), args.request_timeout)
                },
                limits,
                metrics: shared.metrics.clone(),
            },
            phase_rx.clone(),
        ));
        let admin = tokio::spawn(conn::serve(
            conn::Endpoint {
                name: "admin",
                listener: admin_listener,
                tls: None,
                router: admin_router(shared.clone(), args.request_timeout),
                limits,
                metrics: shared.metrics.clone(),
            },
            phase_rx,
        ));
        // How it sized itself under the CPU limit it sees.
        info!(
            listen = %args.listen,
            admin_listen = %args.admin_listen,
            client_auth = args.limits.client_ca.is_some(),
            async_workers = tokio::runtime::Handle::current().metrics().num_workers(),
            decision_threads = args.limits.max_concurrent_decisions,
            inline_under_load = !shared.gate.cores_beside(),
            "serving"
        );
        shutdown.await;
        shared.shutting_down.store(true, Ordering::Release);
        info!(
            delay_s = args.shutdown_delay.as_secs_f64(),
            "shutting down: not ready, still serving"
        );
        tokio::time::sleep(args.shutdown_delay).await;
        let _ = phase_tx.send(Phase::Draining);
        let drained = async {
            let _ = tokio::join!(https, admin);
        };
        tokio::pin!(drained);
        if tokio::time::timeout(args.drain_timeout, &mut drained)
            .await
            .is_err()
        {
            warn!("drain timeout; closing remaining connections");
            let _ = phase_tx.send(Phase::Closed);
            drained.await;
        }
        for task in tasks {
            task.abort();
        }
        // The decision threads write the log lines they keep (server::log_lines) as they end.
        let stopping = shared.clone();
        let _ =
            tokio::task::spawn_blocking(move || stopping.gate.stop(Duration::from_secs(1))).await;
        info!("stopped");
    }
}

/// The cores this process may use: its CPU limit or affinity, as `available_parallelism`
/// reads them (at least one).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How many async workers `serve` runs on `cores` (the process's share of the machine, as
/// `available_parallelism` reads it from cgroups) beside `decisions` decision threads: the
/// cores the decision threads leave, but at least half of them and at least one. More would
/// compete with the decision threads for the cores: on 2 cores a second worker cost more CPU
/// per request than it saved (benches/README, "Inline decisions on one async worker").
pub fn async_workers(cores: usize, decisions: usize) -> usize {
    cores.saturating_sub(decisions.min(cores / 2)).max(1)
}

/// Whether the decision threads have cores of their own beside `workers` async workers on
/// `cores` cores (see [`GateLimits::cores_beside`]).
pub fn cores_beside(cores: usize, workers: usize) -> bool {
    cores > workers
}

/// Binds and serves until SIGTERM or SIGINT.
pub async fn serve(args: ServeArgs) -> Result<(), Error> {
    let server = Server::bind(args).await?;
    server.run(shutdown_signal()).await;
    Ok(())
}

/// Completes on SIGTERM (kubelet) or SIGINT (a terminal).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!(signal = "SIGINT", "received"),
        _ = term => info!(signal = "SIGTERM", "received"),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.ready() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn mutate(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    admit_off_thread(shared, Endpoint::Mutate, request).await
}

async fn validate(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    admit_off_thread(shared, Endpoint::Validate, request).await
}

async fn validate_warn(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    admit_off_thread(shared, Endpoint::ValidateWarn, request).await
}

/// Reserves room for the request (or sheds it), reads the body, then runs [`Shared::admit`]
/// on a decision thread within the decision deadline, or inline when it is cheap (see
/// [`gate`]).
async fn admit_off_thread(shared: Arc<Shared>, endpoint: Endpoint, request: Request) -> Response {
    let Some(reservation) = shared.gate.reserve(request.headers()) else {
        return shared.gate.shed(endpoint, "too many pending requests");
    };
    // 413 beyond BODY_LIMIT (DefaultBodyLimit), 400 on a broken body.
    let body = match Bytes::from_request(request, &()).await {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    // A cache writer holds the lock for a batch of a relist: decide on a thread then, so that
    // the async worker never waits for it.
    let unlocked = shared.inventory.try_read().is_ok();
    let decider = shared.clone();
    shared
        .gate
        .decide(endpoint, body, reservation, unlocked, move |body| {
            decider.admit(endpoint, body)
        })
        .await
}

async fn metrics_text(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
        .into_response()
}

fn timeout_layer(request_timeout: Duration) -> tower_http::timeout::TimeoutLayer {
    tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        request_timeout,
    )
}

/// The HTTPS routes. Unknown paths get 404, wrong methods 405 (axum's routing).
pub fn webhook_router(shared: Arc<Shared>, request_timeout: Duration) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .route("/validate/warn", post(validate_warn))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Covers reading the body too: the extractor runs inside the timed future.
        .layer(timeout_layer(request_timeout))
        .with_state(shared)
}

/// The empty webhook on the same stack (TLS, connections, axum, body limit, timeout): reads
/// only the request's uid, borrowed from the body, and allows, as the independent floor of
/// `examples/floor.rs` does, so that the two differ in the stack alone. What `/mutate` costs
/// beyond it is what the webhook itself costs (`examples/loadtest.rs --compare`).
pub fn baseline_router(request_timeout: Duration) -> Router {
    #[derive(serde::Deserialize)]
    struct Review<'a> {
        #[serde(borrow)]
        request: ReviewRequest<'a>,
    }
    #[derive(serde::Deserialize)]
    struct ReviewRequest<'a> {
        uid: &'a str,
    }
    async fn echo(body: Bytes) -> Response {
        let review = serde_json::from_slice::<Review>(&body);
        let uid = review.as_ref().map_or("", |r| r.request.uid);
        axum::Json(serde_json::json!({"apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview", "response": {"uid": uid, "allowed": true}}))
        .into_response()
    }
    Router::new()
        .route("/mutate", post(echo))
        .route("/validate", post(echo))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(timeout_layer(request_timeout))
}

/// The admin routes.
pub fn admin_router(shared: Arc<Shared>, request_timeout: Duration) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(timeout_layer(request_timeout))
        .with_state(shared)
}

#[cfg(test)]
mod tests {
    #[test]
    fn async_workers_leave_the_decision_threads_cores_but_keep_half() {
        let workers = |cores| super::async_workers(cores, 2);
        assert_eq!([1, 2, 3, 4, 8].map(workers), [1, 1, 2, 2, 6]);
        assert_eq!(super::async_workers(8, 16), 4);
        assert_eq!(super::async_workers(4, 0), 4);
        // With the default two decision threads, only one core leaves them none of their own.
        let beside = |cores| super::cores_beside(cores, workers(cores));
        assert_eq!([1, 2, 3, 4, 8].map(beside), [false, true, true, true, true]);
    }

    use axum::body::Body;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    /// The empty webhook of `loadtest --compare` answers as the floor does: the uid back,
    /// allowed, whatever else the review holds.
    #[tokio::test]
    async fn the_empty_webhook_echoes_the_uid_and_allows() {
        let body = serde_json::json!({"apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview", "request": {"uid": "u-7", "object": {"a": [1, 2]}}});
        let request = axum::http::Request::post("/mutate")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = baseline_router(Duration::from_secs(1))
            .oneshot(request)
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            answer,
            serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": "u-7", "allowed": true}})
        );
    }
}
