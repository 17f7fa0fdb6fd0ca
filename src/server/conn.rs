//! The life of a client connection, the same on both ports:
//!
//! - **First request deadline**: from `accept` (the TLS handshake included) to the first
//!   request's headers, at most `--header-read-timeout`. A client that connects and says
//!   nothing, or finishes the handshake and says nothing, is closed then.
//! - **Idle timeout**: a keep-alive connection without a request in flight for
//!   `--idle-timeout` is closed (HTTP/2 with a GOAWAY, so the client retries elsewhere).
//! - **Connection cap**: at most `--max-connections` per port. At the cap, the oldest
//!   connection that has not sent a request yet is closed to make room, else the one idle
//!   longest; with neither (every connection has a request in flight), accepting pauses
//!   until one ends. So silent connections cannot lock out kubelet's probes or the API server.
//! - **Drain**: on shutdown, connections finish their requests and close; after the drain
//!   timeout the rest are dropped.
//!
//! The protocol comes from ALPN (`h2` or HTTP/1.1) on the HTTPS port and is HTTP/1.1 on the
//! admin port, so no connection waits in hyper-util's protocol sniffing, which has no timeout.
use std::{
    sync::{
        Arc, Mutex, PoisonError, Weak,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::{Notify, Semaphore, TryAcquireError, watch},
};
use tower::ServiceExt as _;
use tracing::{debug, warn};

use super::metrics::{Metrics, PortLabels};

/// Where the server is in its life; connections watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Serving,
    /// Stop accepting; finish the requests in flight, then close.
    Draining,
    /// Drop every connection now.
    Closed,
}

/// The per-connection limits of one port.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From accept (handshake included) to the first request's headers; also the HTTP/1.1
    /// header read timeout of later requests.
    pub first_request: Duration,
    /// A connection without a request in flight this long is closed.
    pub idle: Duration,
    /// Open connections at most.
    pub max_connections: u32,
}

/// File descriptors kept for everything but client connections (listeners, epoll, the
/// certificate watch, the Kubernetes client's connections, logs).
const RESERVED_FDS: u64 = 64;

/// The soft `RLIMIT_NOFILE` from `/proc/self/limits` (Linux), `None` when unknown or unlimited.
pub fn nofile_soft_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_nofile(&text)
}

fn parse_nofile(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `max_connections` per port for `ports` ports, lowered so that the connections cannot run
/// the process out of file descriptors (then `accept` fails for everyone, probes included).
pub fn fit_to_fd_limit(max_connections: u32, ports: u32, soft_limit: Option<u64>) -> u32 {
    match soft_limit {
        None => max_connections,
        Some(limit) => {
            let room = limit.saturating_sub(RESERVED_FDS) / u64::from(ports.max(1));
            max_connections
                .min(u32::try_from(room).unwrap_or(u32::MAX))
                .max(1)
        }
    }
}

/// How long a connection being closed (timeout, eviction) may take to flush its last bytes.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What one connection has done, shared by its driver, its requests and the port's evictor.
#[derive(Debug)]
struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    seen_request: AtomicBool,
    /// When the last request finished, in nanoseconds after `born`.
    last_done: AtomicU64,
    /// The port's idle timeout, in nanoseconds.
    idle_nanos: u64,
    /// When the driver looks next, in nanoseconds after `born` (`u64::MAX` until it arms).
    armed: AtomicU64,
    /// A request finished and the idle deadline it starts comes before `armed`: the driver
    /// re-arms. Only then, because waking the connection's own task after every request
    /// costs a second poll of the whole connection per request.
    done: Notify,
    evict: Notify,
}

/// What the driver does at a check.
enum Verdict {
    /// Check again then.
    Keep(Instant),
    /// Close, for this reason (the `reason` label of `connections_closed_total`).
    Close(&'static str),
}

impl Activity {
    fn new(idle: Duration) -> Self {
        Self {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            seen_request: AtomicBool::new(false),
            last_done: AtomicU64::new(0),
            idle_nanos: nanos(idle),
            armed: AtomicU64::new(u64::MAX),
            done: Notify::new(),
            evict: Notify::new(),
        }
    }

    fn start_request(self: &Arc<Self>) -> RequestGuard {
        self.seen_request.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard(self.clone())
    }

    /// The driver looks next at `at`.
    fn arm(&self, at: Instant) {
        let after_born = at.saturating_duration_since(self.born);
        self.armed.store(nanos(after_born), Ordering::SeqCst);
    }

    fn idle_since(&self) -> Instant {
        self.born + Duration::from_nanos(self.last_done.load(Ordering::Acquire))
    }

    /// `None` while a request is in flight, else since when the connection has been idle.
    fn idle(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(if self.seen_request.load(Ordering::Acquire) {
            self.idle_since()
        } else {
            self.born
        })
    }

    fn verdict(&self, now: Instant, limits: &Limits) -> Verdict {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            // The request timeout bounds the request; look again when it could be idle.
            return Verdict::Keep(now + limits.idle);
        }
        if !self.seen_request.load(Ordering::Acquire) {
            let deadline = self.born + limits.first_request;
            return if now >= deadline {
                Verdict::Close("first_request_timeout")
            } else {
                Verdict::Keep(deadline)
            };
        }
        let deadline = self.idle_since() + limits.idle;
        if now >= deadline {
            Verdict::Close("idle_timeout")
        } else {
            Verdict::Keep(deadline)
        }
    }
}

/// Counts a request as in flight until dropped (also when the client gives up).
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.0;
        let done = nanos(a.born.elapsed());
        // Written before the count drops, so that a check seeing 0 sees this time.
        a.last_done.store(done, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
        // A check armed at or before the new deadline finds the connection idle, or in
        // flight again, and re-arms from `last_done`: no wake-up needed. (The driver arms
        // before it waits; one that reads stale state and arms late is seen here.)
        if a.armed.load(Ordering::SeqCst) > done.saturating_add(a.idle_nanos) {
            a.done.notify_one();
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One listening port: its connection cap and the connections it may evict.
struct Port {
    name: &'static str,
    permits: Arc<Semaphore>,
    max: u32,
    /// Open connections in accept order (dead entries are swept now and then).
    connections: Mutex<Vec<Weak<Activity>>>,
    metrics: Arc<Metrics>,
}

impl Port {
    fn register(&self, idle: Duration) -> Arc<Activity> {
        let activity = Arc::new(Activity::new(idle));
        let mut list = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if list.len() >= 2 * self.max as usize {
            list.retain(|w| w.strong_count() > 0);
        }
        list.push(Arc::downgrade(&activity));
        activity
    }

    /// At the cap: closes the oldest connection without a request yet, else the one idle
    /// longest. Returns whether one was asked to close.
    fn evict_one(&self) -> bool {
        let mut list = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        list.retain(|w| w.strong_count() > 0);
        let live: Vec<Arc<Activity>> = list.iter().filter_map(Weak::upgrade).collect();
        let silent = live
            .iter()
            .find(|a| !a.seen_request.load(Ordering::Acquire) && a.idle().is_some());
        let victim = silent.or_else(|| {
            live.iter()
                .filter_map(|a| a.idle().map(|since| (since, a)))
                .min_by_key(|(since, _)| *since)
                .map(|(_, a)| a)
        });
        match victim {
            Some(a) => {
                a.evict.notify_one();
                // Not evicted twice: it leaves the list now.
                let target = Arc::as_ptr(a);
                list.retain(|w| w.as_ptr() != target);
                true
            }
            None => false,
        }
    }

    fn label(&self) -> PortLabels {
        PortLabels { port: self.name }
    }
}

/// Keeps `connections_open` right, also when a connection task is dropped.
struct OpenGuard(Arc<Port>);

impl OpenGuard {
    fn new(port: Arc<Port>) -> Self {
        port.metrics
            .connections_open
            .get_or_create(&port.label())
            .inc();
        Self(port)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0
            .metrics
            .connections_open
            .get_or_create(&self.0.label())
            .dec();
    }
}

/// What serves one port.
pub struct Endpoint {
    /// `webhook` or `admin`, the `port` label.
    pub name: &'static str,
    pub listener: TcpListener,
    /// TLS on the HTTPS port; `None` on the admin port.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub router: Router,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
}

fn builders(limits: &Limits) -> (auto::Builder<TokioExecutor>, auto::Builder<TokioExecutor>) {
    let mut h1 = auto::Builder::new(TokioExecutor::new()).http1_only();
    h1.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.first_request);
    let mut h2 = auto::Builder::new(TokioExecutor::new()).http2_only();
    h2.http2()
        .timer(TokioTimer::new())
        // Detects dead peers; live idle peers meet the idle timeout.
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10));
    (h1, h2)
}

/// Accepts connections until the phase leaves [`Phase::Serving`], then waits until every
/// connection has ended (the caller moves to [`Phase::Closed`] when draining takes too long).
pub async fn serve(endpoint: Endpoint, mut phase: watch::Receiver<Phase>) {
    let Endpoint {
        name,
        listener,
        tls,
        router,
        limits,
        metrics,
    } = endpoint;
    let max = limits.max_connections.max(1);
    let port = Arc::new(Port {
        name,
        permits: Arc::new(Semaphore::new(max as usize)),
        max,
        connections: Mutex::new(Vec::new()),
        metrics,
    });
    let (h1, h2) = builders(&limits);
    let (h1, h2) = (Arc::new(h1), Arc::new(h2));
    let serving = |p: &Phase| *p != Phase::Serving;
    loop {
        let permit = match port.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => {
                port.metrics
                    .connection_limit_reached
                    .get_or_create(&port.label())
                    .inc();
                let evicted = port.evict_one();
                debug!(port = name, evicted, "connection limit reached");
                tokio::select! {
                    _ = phase.wait_for(serving) => break,
                    permit = port.permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        let accepted = tokio::select! {
            _ = phase.wait_for(serving) => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(port = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let activity = port.register(limits.idle);
        let open = OpenGuard::new(port.clone());
        let (router, tls, phase) = (router.clone(), tls.clone(), phase.clone());
        let (h1, h2) = (h1.clone(), h2.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _open = open;
            let port = &_open.0;
            let closed = match tls {
                None => drive(tcp, &h1, router, &activity, &limits, phase).await,
                Some(acceptor) => {
                    let deadline = activity.born + limits.first_request;
                    let mut phase_rx = phase.clone();
                    let handshake = tokio::select! {
                        r = tokio::time::timeout_at(deadline.into(), acceptor.accept(tcp)) => r,
                        _ = activity.evict.notified() => {
                            port.metrics.connection_closed(port.name, "evicted");
                            return;
                        }
                        _ = phase_rx.wait_for(|p| *p != Phase::Serving) => return,
                    };
                    match handshake {
                        Ok(Ok(stream)) => {
                            let h2_alpn = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                            let builder = if h2_alpn { &h2 } else { &h1 };
                            drive(stream, builder, router, &activity, &limits, phase).await
                        }
                        Ok(Err(e)) => {
                            debug!(%peer, error = %e, "TLS handshake failed");
                            Some("tls_error")
                        }
                        Err(_) => {
                            debug!(%peer, "TLS handshake timed out");
                            Some("first_request_timeout")
                        }
                    }
                }
            };
            if let Some(reason) = closed {
                debug!(%peer, port = port.name, reason, "closing connection");
                port.metrics.connection_closed(port.name, reason);
            }
        });
    }
    drop(listener);
    // Every connection holds a permit: all of them back means all connections ended.
    let _ = port.permits.acquire_many(max).await;
    debug!(port = name, "connections drained");
}

/// Serves one connection until it ends, its limits close it, or the server stops. Returns
/// the reason when the server closed it for a limit.
async fn drive<IO>(
    io: IO,
    builder: &auto::Builder<TokioExecutor>,
    router: Router,
    activity: &Arc<Activity>,
    limits: &Limits,
    mut phase: watch::Receiver<Phase>,
) -> Option<&'static str>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let counted = activity.clone();
    let service = hyper::service::service_fn(move |request| {
        let guard = counted.start_request();
        let response = router.clone().oneshot(request);
        async move {
            let response = response.await;
            drop(guard);
            response
        }
    });
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut check_at = activity.born + limits.first_request;
    activity.arm(check_at);
    let reason = loop {
        let check = tokio::select! {
            result = connection.as_mut() => {
                return match result {
                    Ok(()) => None,
                    Err(e) => {
                        debug!(error = %e, "connection ended with an error");
                        // hyper's HTTP/1.1 header read timeout may fire just before ours.
                        let timeout = e
                            .downcast_ref::<hyper::Error>()
                            .is_some_and(hyper::Error::is_timeout);
                        match (timeout, activity.seen_request.load(Ordering::Acquire)) {
                            (false, _) => None,
                            (true, false) => Some("first_request_timeout"),
                            (true, true) => Some("header_timeout"),
                        }
                    }
                };
            }
            _ = tokio::time::sleep_until(check_at.into()) => true,
            _ = activity.done.notified() => true,
            _ = activity.evict.notified() => break Some("evicted"),
            _ = phase.wait_for(|p| *p != Phase::Serving) => break None,
        };
        if check {
            match activity.verdict(Instant::now(), limits) {
                Verdict::Keep(at) => {
                    check_at = at;
                    activity.arm(at);
                }
                Verdict::Close(reason) => break Some(reason),
            }
        }
    };
    // HTTP/1.1: close after the response in progress; HTTP/2: GOAWAY, finish open streams.
    connection.as_mut().graceful_shutdown();
    let grace = if reason.is_some() {
        CLOSE_GRACE
    } else {
        Duration::MAX // draining: until done, or until the server moves to Closed
    };
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = sleep_at_most(grace) => {}
        _ = phase.wait_for(|p| *p == Phase::Closed) => {}
    }
    reason
}

async fn sleep_at_most(d: Duration) {
    match Instant::now().checked_add(d) {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the driver was woken (a `notify_one` left its permit).
    async fn woken(a: &Activity) -> bool {
        tokio::time::timeout(Duration::ZERO, a.done.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_request_ending_wakes_the_driver_only_when_its_check_comes_too_late() {
        let idle = Duration::from_secs(1);
        let limits = Limits {
            first_request: Duration::from_secs(60),
            idle,
            max_connections: 1,
        };
        let a = Arc::new(Activity::new(idle));
        // The driver has not armed yet: woken, whatever it read.
        drop(a.start_request());
        assert!(woken(&a).await);
        // Armed at the first-request deadline, after the idle deadline: woken.
        a.arm(a.born + limits.first_request);
        drop(a.start_request());
        assert!(woken(&a).await);
        // Armed before the idle deadline (as while a request was in flight): not woken ...
        let armed = Instant::now() + idle / 2;
        a.arm(armed);
        drop(a.start_request());
        assert!(!woken(&a).await);
        // ... and the check then re-arms at the request's end plus the idle timeout.
        match a.verdict(armed, &limits) {
            Verdict::Keep(at) => {
                assert_eq!(at, a.idle_since() + idle);
                assert!(at > armed);
            }
            Verdict::Close(reason) => panic!("closed ({reason}) before the idle timeout"),
        }
        match a.verdict(a.idle_since() + idle, &limits) {
            Verdict::Keep(_) => panic!("kept past the idle timeout"),
            Verdict::Close(reason) => assert_eq!(reason, "idle_timeout"),
        }
        // A request in flight at the check: looked at again an idle timeout later.
        let _in_flight = a.start_request();
        let now = Instant::now();
        assert!(matches!(a.verdict(now, &limits), Verdict::Keep(at) if at == now + idle));
    }

    #[test]
    fn the_connection_cap_fits_the_descriptor_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_nofile(limits), Some(1024));
        assert_eq!(
            parse_nofile("Max open files  unlimited  unlimited  files\n"),
            None
        );
        assert_eq!(fit_to_fd_limit(1000, 2, Some(1024)), 480);
        assert_eq!(fit_to_fd_limit(1000, 2, Some(1_048_576)), 1000);
        assert_eq!(fit_to_fd_limit(1000, 2, None), 1000);
        assert_eq!(fit_to_fd_limit(1000, 2, Some(10)), 1);
    }
}
