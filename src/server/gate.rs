//! Keeps costly admission decisions off the async workers and bounds what requests can cost.
//!
//! The decision (`admission::read` + `answer`) is synchronous CPU work. It runs on a small
//! pool of decision threads, so a slow one never stalls the async workers that serve probes,
//! metrics and other connections. Only a small body ([`INLINE_MAX_BYTES`], whose decision the
//! engine's caps keep short) arriving at a quiet worker with no other request pending, while
//! no cache writer holds the lock the decision reads under, is decided where it arrives:
//! there the two hops to a thread and back would cost more than the decision. On a single
//! core, where a thread could only take turns with the worker, every small body is decided
//! there, whatever the load ([`GateLimits::cores_beside`]). The decision threads run as batch
//! work for the kernel's scheduler (`SCHED_BATCH`), so that waking one never preempts the
//! async worker that queued its job. Three limits apply:
//!
//! - **Pending budget** (`--max-pending-mib`): before its body is read, each AdmissionReview
//!   reserves its `Content-Length` (at least [`MIN_CHARGE`], [`super::BODY_LIMIT`] when
//!   unknown) until it is answered. When the budget is spent the request is shed: HTTP 503
//!   with `Retry-After: 1`, without reading the body. This bounds the memory held by bodies.
//! - **Decision threads** (`--max-concurrent-decisions`): decisions running at once, so the
//!   memory of decoded objects and the threads in use stay bounded; others wait in a queue.
//!   A request whose decision has not started by its deadline is shed like above. Bodies of
//!   more than [`MAX_JSON_VALUES`] values are refused before decoding (code 413).
//! - **Deadline** (`--decision-timeout`, counted from the body's arrival): a decision still
//!   running then is answered at once with HTTP 200, `allowed: false` and status code 504,
//!   echoing the uid. The decision itself cannot be interrupted (it is synchronous); it keeps
//!   its thread until it returns, so slow decisions cannot pile up beyond the threads. A
//!   queued decision whose client went away, or whose deadline passed, is skipped.
//!
//! Why these answers: kube-apiserver calls webhooks with client-go's REST client, which
//! retries a 5xx carrying `Retry-After` within the webhook's `timeoutSeconds`, so a shed
//! request gets another chance a second later (often on another replica) instead of failing
//! the user's request at once. A deadline answer is an AdmissionReview denial because that is
//! what the API server relays verbatim ("admission webhook ... denied the request: ...",
//! code 504), whereas a bare 5xx becomes an opaque "failed calling webhook" and would be
//! retried although the same object would be just as slow again.
use std::{
    cell::Cell,
    collections::VecDeque,
    fmt,
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{
    Deserialize, Deserializer,
    de::{DeserializeSeed, MapAccess, SeqAccess, Visitor},
};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tracing::{info, warn};

use super::{BODY_LIMIT, log_lines, logfmt::Escaped, metrics::Metrics};
use crate::admission::Endpoint;

/// The smallest reservation, so that the budget also bounds the number of pending requests.
pub const MIN_CHARGE: usize = 16 * 1024;

/// Most JSON values (scalars, keys, arrays, objects) an AdmissionReview may hold. Decoding
/// takes ~70 bytes per value, so a 7 MiB body of tiny values would take 250 MB; this bounds a
/// decision to ~40 MB. The API server sends at most two objects of 3 MiB (its request limit),
/// and a real VM holds thousands of values, not a million.
pub const MAX_JSON_VALUES: usize = 500_000;

/// Largest body decided on an async worker (see [`Gate::decides_inline`]): a VM with its
/// last applied configuration and managed fields fits. The largest bench VM that fits (191
/// NICs, `admission mutate largest inline body` in benches/engine.rs) takes about 0.4 ms.
pub const INLINE_MAX_BYTES: usize = 16 * 1024;

/// Whether `body` holds more than `limit` JSON values, counted in one pass that builds
/// nothing and stops at the limit. Invalid JSON counts as not too many (the decision reports
/// it properly).
fn more_values_than(body: &[u8], limit: usize) -> bool {
    struct Count<'a>(&'a Cell<usize>);

    impl Count<'_> {
        /// Counts one value; the one beyond the limit stops the pass.
        fn tick<E: serde::de::Error>(&self) -> Result<(), E> {
            let left = self.0.get().saturating_sub(1);
            self.0.set(left);
            if left == 0 {
                Err(E::custom("too many values"))
            } else {
                Ok(())
            }
        }
    }

    impl<'de> DeserializeSeed<'de> for Count<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Count<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
            self.tick()
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
            self.tick()
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
            self.tick()
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
            self.tick()
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
            self.tick()
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
            self.tick()
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            self.tick()?;
            while seq.next_element_seed(Count(self.0))?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            self.tick()?;
            while map.next_key_seed(Count(self.0))?.is_some() {
                map.next_value_seed(Count(self.0))?;
            }
            Ok(())
        }
    }

    // Every JSON value takes at least two bytes (`0,`): a shorter body cannot have too many.
    if body.len() < 2 * limit {
        return false;
    }
    // Hits zero at value number limit + 1.
    let left = Cell::new(limit + 1);
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = Count(&left).deserialize(&mut de);
    left.get() == 0
}

/// Test seam: decisions for uids starting with `uid_prefix` block their thread `delay`
/// longer, as a pathologically slow engine would; each such uid is sent to `started` when
/// its decision begins.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct SlowDecisions {
    pub uid_prefix: String,
    pub delay: Duration,
    pub started: tokio::sync::mpsc::UnboundedSender<String>,
}

/// The limits of [`Gate`].
#[derive(Debug, Clone)]
pub struct GateLimits {
    pub pending_bytes: usize,
    pub concurrent_decisions: usize,
    pub decision_timeout: Duration,
    pub slow: Option<SlowDecisions>,
    /// Whether the decision threads have cores of their own beside the async workers. When
    /// they have not (one core: the deployment's CPU limit of 1), a thread can only take
    /// turns with the worker on the same core, so handing it a small decision adds the two
    /// hops and no parallelism: small bodies are then decided where they arrive, whatever
    /// the load (benches/README, "One core").
    pub cores_beside: bool,
}

/// Admission control for AdmissionReview requests; see the module documentation.
#[derive(Debug)]
pub struct Gate {
    /// In KiB, so that a 7 MiB body fits a `u32` permit count.
    budget: Arc<Semaphore>,
    /// The whole budget, to tell when a request is the only one pending.
    budget_kib: usize,
    /// The decision threads' queue; they end when it closes (the gate is dropped).
    jobs: Arc<Jobs>,
    timeout: Duration,
    slow: Option<SlowDecisions>,
    /// See [`GateLimits::cores_beside`].
    cores_beside: bool,
    metrics: Arc<Metrics>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.jobs.close();
    }
}

/// Budget held by one request until its decision has returned.
#[derive(Debug)]
pub struct Reservation(OwnedSemaphorePermit);

/// Enough of an AdmissionReview to answer it without deciding: read in one pass over the body
/// that allocates only these strings.
#[derive(Debug, Clone, Deserialize)]
struct Head {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    request: HeadRequest,
}

#[derive(Debug, Clone, Deserialize)]
struct HeadRequest {
    uid: String,
}

impl Head {
    fn peek(body: &[u8]) -> Option<Self> {
        let head: Head = serde_json::from_slice(body).ok()?;
        let known = matches!(
            head.api_version.as_str(),
            "admission.k8s.io/v1" | "admission.k8s.io/v1beta1"
        );
        (known && head.kind == "AdmissionReview").then_some(head)
    }
}

/// One queued decision.
type Job = Box<dyn FnOnce() + Send>;

/// A worker is quiet while its admission requests start at least this far apart on average
/// (fewer than 20,000 a second) and its inline decisions keep it busy at most half of that
/// time: then deciding inline costs it less than the hops to a decision thread and back. A
/// busier worker, whether its requests come fast or its inline decisions take long, hands
/// decisions to the threads, which puts the other cores to work beside it.
const QUIET_GAP: Duration = Duration::from_micros(50);

/// The longest gap counted, so that after an idle spell a burst is seen within about twenty
/// requests.
const MAX_GAP: Duration = Duration::from_millis(1);

/// One async worker's pace: the gap between the starts of its admission requests and the
/// time its inline decisions took, each smoothed over the last few requests.
#[derive(Debug, Clone, Copy, Default)]
struct Pace {
    last: Option<Instant>,
    gap: Duration,
    busy: Duration,
}

impl Pace {
    /// Records a request starting at `now`; whether the worker is quiet.
    fn record(&mut self, now: Instant) -> bool {
        let gap = self
            .last
            .map_or(MAX_GAP, |last| now.saturating_duration_since(last))
            .min(MAX_GAP);
        self.gap = if self.last.is_some() {
            (self.gap * 7 + gap) / 8
        } else {
            gap
        };
        self.busy = self.busy * 7 / 8;
        self.last = Some(now);
        self.gap >= QUIET_GAP && self.busy * 2 <= self.gap
    }

    /// Records that this request's decision took `took` on the worker.
    fn decided(&mut self, took: Duration) {
        self.busy += took.min(MAX_GAP) / 8;
    }
}

thread_local! {
    /// This async worker's pace (each worker runs its own requests' handlers).
    static PACE: Cell<Pace> = Cell::new(Pace::default());
}

/// Runs `f` on this worker's pace.
fn with_pace<R>(f: impl FnOnce(&mut Pace) -> R) -> R {
    PACE.with(|cell| {
        let mut pace = cell.get();
        let result = f(&mut pace);
        cell.set(pace);
        result
    })
}

/// The decision threads' queue: bounded, and waking exactly one idle thread per job, and
/// none when every thread is busy (a busy thread takes the next job without sleeping). A
/// channel's receiver shared behind a mutex would wake two threads per job: the one that
/// receives, and the next one waiting for the mutex, only for it to wait again.
struct Jobs {
    state: Mutex<Queue>,
    ready: Condvar,
    capacity: usize,
}

impl fmt::Debug for Jobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jobs")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

struct Queue {
    jobs: VecDeque<Job>,
    /// Threads waiting for a job and not yet woken: a push wakes one only if there is one,
    /// and takes it off the count. A woken decision thread (batch work) may wait a fraction
    /// of a millisecond for its turn to run; counted as idle until then, every push in the
    /// meantime woke it again, a system call each on the async worker (saturated, about
    /// 0.9 a request).
    idle: usize,
    /// Set when the gate is dropped: the threads end once the queue is empty.
    closed: bool,
}

impl Queue {
    /// Queues a job unless `capacity` are queued; whether to wake a thread for it.
    fn push(&mut self, job: Job, capacity: usize) -> Result<bool, Job> {
        if self.jobs.len() >= capacity {
            return Err(job);
        }
        self.jobs.push_back(job);
        let wake = self.idle > 0;
        if wake {
            self.idle -= 1;
        }
        Ok(wake)
    }
}

impl Jobs {
    /// Starts `threads` decision threads taking jobs from a queue of `capacity`.
    fn start(threads: usize, capacity: usize) -> Arc<Self> {
        let jobs = Arc::new(Self {
            state: Mutex::new(Queue {
                jobs: VecDeque::new(),
                idle: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            capacity,
        });
        for i in 0..threads.max(1) {
            let queue = jobs.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("decision-{i}"))
                .spawn(move || {
                    if let Err(error) = run_as_batch() {
                        info!(%error, "decision thread keeps the default scheduling policy");
                    }
                    // Answers back to back under load: their log lines go out together.
                    log_lines::gather();
                    while let Some((job, more)) = queue.next() {
                        // The last job of a run writes its line as it comes, before its
                        // answer, and the lines kept before it first.
                        log_lines::hold(more);
                        // A panic fails that request (its answer channel is dropped), not the
                        // thread.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                    log_lines::flush();
                });
            if let Err(e) = spawned {
                warn!(error = %e, "cannot start a decision thread");
            }
        }
        jobs
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Jobs run outside the lock (and unwind inside catch_unwind): nothing can poison it
        // half-way through a change.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a job, or gives it back when the queue is full.
    fn push(&self, job: Job) -> Result<(), Job> {
        let wake = self.lock().push(job, self.capacity)?;
        if wake {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// The next job, and whether more are waiting, waiting for one; `None` once the gate
    /// is gone and the queue is empty.
    fn next(&self) -> Option<(Job, bool)> {
        let mut queue = self.lock();
        loop {
            if let Some(job) = queue.jobs.pop_front() {
                return Some((job, !queue.jobs.is_empty()));
            }
            if queue.closed {
                return None;
            }
            // Out of work: this thread's log lines are written before it waits, outside the
            // lock.
            if log_lines::kept() {
                drop(queue);
                log_lines::flush();
                queue = self.lock();
                continue;
            }
            // Taken off the count by the push that wakes it. A spurious wake-up leaves its
            // count behind: one later push then wakes nobody, but no thread ever waits
            // uncounted, so no job waits for a thread that sleeps.
            queue.idle += 1;
            queue = self
                .ready
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// Marks the calling thread as batch work for Linux's scheduler (`SCHED_BATCH`): the same
/// share of the CPU, but its wake-ups do not preempt the thread running. A decision thread is
/// woken by the async worker that has just queued a job, most often on the same core; with
/// the default policy it preempted that worker, which still had answers to write and
/// connections to read (saturated, about once every three requests). As batch work it runs
/// when a core is free or the worker's turn ends.
/// benches/README, "Decision threads as batch work", has the figures.
#[cfg(target_os = "linux")]
fn run_as_batch() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` outlives the call, which only reads it; pid 0 is the calling thread.
    let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if set == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn run_as_batch() -> std::io::Result<()> {
    Ok(())
}

fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

impl Gate {
    pub fn new(limits: &GateLimits, metrics: Arc<Metrics>) -> Self {
        let budget = kib(limits.pending_bytes.max(BODY_LIMIT)) as usize;
        // The budget bounds pending requests; the queue never needs to hold more.
        let capacity = budget / kib(MIN_CHARGE) as usize;
        Self {
            budget: Arc::new(Semaphore::new(budget)),
            budget_kib: budget,
            jobs: Jobs::start(limits.concurrent_decisions, capacity),
            timeout: limits.decision_timeout,
            slow: limits.slow.clone(),
            cores_beside: limits.cores_beside,
            metrics,
        }
    }

    /// Ends the decision threads once the queued jobs are done, waiting up to `within` for
    /// them, so that the log lines they keep are written before the process exits. Each
    /// thread holds the queue until it ends, so the gate's is the last handle then.
    pub fn stop(&self, within: Duration) {
        self.jobs.close();
        let deadline = Instant::now() + within;
        while Arc::strong_count(&self.jobs) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// See [`GateLimits::cores_beside`].
    pub fn cores_beside(&self) -> bool {
        self.cores_beside
    }

    /// Reserves budget for a request with these headers, or `None` when it must be shed.
    pub fn reserve(&self, headers: &HeaderMap) -> Option<Reservation> {
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(BODY_LIMIT);
        let charge = kib(length.clamp(MIN_CHARGE, BODY_LIMIT));
        self.budget
            .clone()
            .try_acquire_many_owned(charge)
            .ok()
            .map(Reservation)
    }

    /// 503 with `Retry-After`, counted in `shed_total`.
    pub fn shed(&self, endpoint: Endpoint, why: &'static str) -> Response {
        self.metrics
            .shed
            .get_or_create(&super::metrics::EndpointLabels {
                endpoint: endpoint.as_str(),
            })
            .inc();
        warn!(
            endpoint = endpoint.as_str(),
            reason = why,
            "overloaded: shedding request"
        );
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("kubevirt-net-webhook is overloaded ({why}); retry\n"),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    }

    /// Queues `decide` for a decision thread and waits for it within the deadline, or runs
    /// it here when it is small and this worker quiet; see the module documentation.
    /// `unlocked`: whether `decide` could start now without waiting for a lock (a cache
    /// writer's); a worker never waits for one.
    pub async fn decide<F>(
        &self,
        endpoint: Endpoint,
        body: Bytes,
        reservation: Reservation,
        unlocked: bool,
        decide: F,
    ) -> Response
    where
        F: FnOnce(&[u8]) -> Response + Send + 'static,
    {
        let now = Instant::now();
        if self.decides_inline(now, &body, &reservation, unlocked) {
            let _held = reservation;
            let decided = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decide(&body)));
            with_pace(|pace| pace.decided(now.elapsed()));
            return decided.unwrap_or_else(|_| failed(endpoint));
        }
        let deadline = now + self.timeout;
        let (started_tx, mut started_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let slow = self.slow.clone();
        // The uid for a deadline answer is read from the body only when it is needed, not in
        // an extra pass over every body just in case.
        let kept = body.clone();
        let job: Job = Box::new(move || {
            let _held = reservation;
            // The handler is gone (client disconnected) or past its deadline: skip.
            if started_tx.is_closed() || Instant::now() >= deadline {
                return;
            }
            if started_tx.send(()).is_err() {
                return;
            }
            // Every value takes at least a byte: a shorter body needs no count.
            if body.len() > MAX_JSON_VALUES && more_values_than(&body, MAX_JSON_VALUES) {
                let _ = done_tx.send(too_complex(endpoint, Head::peek(&body)));
                return;
            }
            // The test seam reads the uid only when it is set.
            if let Some(slow) = slow
                && let Some(uid) = Head::peek(&body)
                    .map(|h| h.request.uid)
                    .filter(|uid| uid.starts_with(&slow.uid_prefix))
            {
                let _ = slow.started.send(uid);
                std::thread::sleep(slow.delay);
            }
            let _ = done_tx.send(decide(&body));
        });
        if self.jobs.push(job).is_err() {
            return self.shed(endpoint, "decision queue full");
        }
        match tokio::time::timeout_at(deadline.into(), done_rx).await {
            Ok(Ok(response)) => response,
            // Dropped unanswered before the deadline: the decision panicked.
            Ok(Err(_)) if Instant::now() < deadline => failed(endpoint),
            // Past the deadline: answered if it started (the uid is known), else shed.
            _ => match started_rx.try_recv() {
                Ok(()) => {
                    // Off the async workers: the body may be a few MiB.
                    let head = tokio::task::spawn_blocking(move || Head::peek(&kept))
                        .await
                        .ok()
                        .flatten();
                    self.timed_out(endpoint, head)
                }
                Err(_) => self.shed(endpoint, "no decision thread free before the deadline"),
            },
        }
    }

    /// Whether to decide on this async worker rather than queue for a decision thread: only
    /// a body small enough that the engine's caps bound its decision to about a millisecond
    /// at most, and, where the threads have cores beside the workers, only on a quiet worker
    /// ([`Pace`]) with no other request pending, so that it delays nobody. At low rates the
    /// two hops to a decision thread and back cost more CPU than such a decision
    /// (benches/README, "Against an independent floor"); under load the threads take the
    /// decisions off the workers, if they have cores to run them on. The test seam's
    /// decisions are slow by design, so with the seam set every decision goes to the threads.
    /// Every request is recorded in the pace, whatever the answer.
    fn decides_inline(
        &self,
        now: Instant,
        body: &[u8],
        reservation: &Reservation,
        unlocked: bool,
    ) -> bool {
        let quiet = with_pace(|pace| pace.record(now));
        let small = body.len() <= INLINE_MAX_BYTES && self.slow.is_none();
        unlocked && small && (!self.cores_beside || (quiet && self.alone(reservation)))
    }

    /// Whether no other request is pending.
    fn alone(&self, reservation: &Reservation) -> bool {
        self.budget.available_permits() + reservation.0.num_permits() >= self.budget_kib
    }

    fn timed_out(&self, endpoint: Endpoint, head: Option<Head>) -> Response {
        self.metrics
            .decision_timeouts
            .get_or_create(&super::metrics::EndpointLabels {
                endpoint: endpoint.as_str(),
            })
            .inc();
        let message = format!(
            "kubevirt-net-webhook could not decide within {}ms; try again",
            self.timeout.as_millis()
        );
        match head {
            Some(head) => {
                warn!(
                    endpoint = endpoint.as_str(),
                    uid = %Escaped(&head.request.uid),
                    timeout_ms = self.timeout.as_millis() as u64,
                    "decision deadline exceeded; answered allowed=false"
                );
                axum::Json(json!({
                    "apiVersion": head.api_version,
                    "kind": "AdmissionReview",
                    "response": {
                        "uid": head.request.uid,
                        "allowed": false,
                        "status": {"code": 504, "reason": "Timeout", "message": message},
                    }
                }))
                .into_response()
            }
            // Not an AdmissionReview we could answer (or the machine is starved).
            None => {
                warn!(
                    endpoint = endpoint.as_str(),
                    "decision deadline exceeded before the uid was read"
                );
                (StatusCode::GATEWAY_TIMEOUT, format!("{message}\n")).into_response()
            }
        }
    }
}

/// A decision that panicked: HTTP 500, the request fails alone.
fn failed(endpoint: Endpoint) -> Response {
    warn!(endpoint = endpoint.as_str(), "decision failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "decision failed\n").into_response()
}

/// The answer to an AdmissionReview with more than [`MAX_JSON_VALUES`] values: denied with
/// code 413 (HTTP 413 when it is not even an AdmissionReview we could answer).
fn too_complex(endpoint: Endpoint, head: Option<Head>) -> Response {
    let message = format!(
        "the AdmissionReview holds more than {MAX_JSON_VALUES} JSON values, the limit of kubevirt-net-webhook"
    );
    warn!(
        endpoint = endpoint.as_str(),
        uid = %head.as_ref().map(|h| Escaped(&h.request.uid).to_string()).unwrap_or_default(),
        limit = MAX_JSON_VALUES,
        "request too complex: refused without decoding it"
    );
    match head {
        Some(head) => axum::Json(json!({
            "apiVersion": head.api_version,
            "kind": "AdmissionReview",
            "response": {
                "uid": head.request.uid,
                "allowed": false,
                "status": {"code": 413, "reason": "RequestEntityTooLarge", "message": message},
            }
        }))
        .into_response(),
        None => (StatusCode::PAYLOAD_TOO_LARGE, format!("{message}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_counted_up_to_the_limit() {
        let zeros = |n: usize| format!("[{}0]", "0,".repeat(n - 2)); // n values with the array
        assert!(!more_values_than(zeros(1000).as_bytes(), 1000));
        assert!(more_values_than(zeros(1001).as_bytes(), 1000));
        let object = format!(
            "{{{}\"z\":0}}",
            (0..300)
                .map(|i| format!("\"k{i}\":[null,true,\"s\",1.5,-2],"))
                .collect::<String>()
        );
        // 1 object + 301 keys + 300 arrays of 5 + 1 value.
        assert!(!more_values_than(object.as_bytes(), 1 + 301 + 300 * 6 + 1));
        assert!(more_values_than(object.as_bytes(), 301 + 300 * 6 + 1));
        assert!(
            !more_values_than(&vec![b'['; 5000], 1000),
            "invalid JSON: not this check's job"
        );
    }

    /// Why a body no longer than the limit is not counted: each value takes a byte at least.
    #[test]
    fn values_never_outnumber_bytes() {
        for body in [
            "0".to_string(),
            format!("[{}0]", "0,".repeat(999)),
            format!("[{}[]]", "[],".repeat(999)),
            format!("{{{}\"\":0}}", "\"\":0,".repeat(999)),
            format!("{}{}", "[".repeat(100), "]".repeat(100)),
        ] {
            assert!(!more_values_than(body.as_bytes(), body.len()), "{body}");
            assert!(more_values_than(body.as_bytes(), body.len() / 3), "{body}");
        }
    }

    #[test]
    fn head_is_read_without_decoding_the_objects() {
        let body = br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1",
            "request":{"object":{"deep":[[[[1]]]]},"uid":"u-1\n"}}"#;
        let head = Head::peek(body).unwrap();
        assert_eq!(head.request.uid, "u-1\n");
        assert_eq!(head.api_version, "admission.k8s.io/v1beta1");
        assert!(
            Head::peek(br#"{"apiVersion":"v1","kind":"AdmissionReview","request":{"uid":"x"}}"#)
                .is_none()
        );
        assert!(Head::peek(b"{not json").is_none());
    }

    #[test]
    fn reservations_are_charged_by_content_length() {
        let gate = Gate::new(
            &GateLimits {
                pending_bytes: 8 << 20,
                concurrent_decisions: 1,
                decision_timeout: Duration::from_secs(1),
                slow: None,
                cores_beside: true,
            },
            Arc::default(),
        );
        let mut big = HeaderMap::new();
        big.insert(header::CONTENT_LENGTH, HeaderValue::from(7usize << 20));
        let held = gate.reserve(&big).expect("7 MiB fits 8 MiB");
        assert!(
            gate.reserve(&HeaderMap::new()).is_none(),
            "unknown length = 7 MiB"
        );
        let mut small = HeaderMap::new();
        small.insert(header::CONTENT_LENGTH, HeaderValue::from(100usize));
        let smalls: Vec<_> = std::iter::from_fn(|| gate.reserve(&small)).collect();
        assert_eq!(
            smalls.len(),
            (1 << 20) / MIN_CHARGE,
            "each small one costs 16 KiB"
        );
        drop(held);
        assert!(gate.reserve(&big).is_some());
    }

    fn gate(slow: Option<SlowDecisions>) -> Gate {
        gate_on(slow, true)
    }

    fn gate_on(slow: Option<SlowDecisions>, cores_beside: bool) -> Gate {
        Gate::new(
            &GateLimits {
                pending_bytes: 1 << 20,
                concurrent_decisions: 1,
                decision_timeout: Duration::from_secs(10),
                slow,
                cores_beside,
            },
            Arc::default(),
        )
    }

    fn length(bytes: usize) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes));
        headers
    }

    #[test]
    fn a_worker_is_quiet_until_its_requests_come_fast_and_again_after_a_pause() {
        let start = Instant::now();
        let at = |us: u64| start + Duration::from_micros(us);
        let mut pace = Pace::default();
        assert!(pace.record(start), "the first request");
        // 100,000 requests a second: busy within about twenty requests, and stays so.
        let busy_after = (1..100u64).find(|&n| !pace.record(at(10 * n))).unwrap();
        assert!(busy_after <= 25, "busy after {busy_after} requests");
        assert!((busy_after + 1..200).all(|n| !pace.record(at(10 * n))));
        // 5,000 requests a second, each decided inline in 30 µs: quiet again within a few
        // requests, and stays so.
        let mut quiet_at = |n: u64| {
            let quiet = pace.record(at(2_000 + 200 * n));
            pace.decided(Duration::from_micros(30));
            quiet
        };
        let quiet_after = (1..100u64).find(|&n| quiet_at(n)).unwrap();
        assert!(quiet_after <= 12, "quiet after {quiet_after} requests");
        assert!((quiet_after + 1..200).all(quiet_at));
        // Requests 250 µs apart whose inline decisions take 240 µs: busy, so that decisions
        // too long for the pace go to the threads.
        let mut pace = Pace::default();
        let busy_after = (0..100u64)
            .find(|&n| {
                let quiet = pace.record(at(250 * n));
                pace.decided(Duration::from_micros(240));
                !quiet
            })
            .unwrap();
        assert!(busy_after <= 16, "busy after {busy_after} requests");
        // An earlier reading than the last (the handler moved cores) counts as no gap, not a
        // panic.
        let mut pace = Pace::default();
        pace.record(at(1_000));
        pace.record(start);
        assert_eq!(pace.gap, MAX_GAP * 7 / 8);
    }

    /// A worker's pace whose last request is "later" than any now: no gap, busy.
    fn busy_pace() -> Pace {
        Pace {
            last: Some(Instant::now() + Duration::from_secs(3600)),
            gap: Duration::ZERO,
            busy: Duration::ZERO,
        }
    }

    #[test]
    fn which_decisions_are_made_inline() {
        let (started, _) = tokio::sync::mpsc::unbounded_channel();
        let seam = SlowDecisions {
            uid_prefix: "slow".into(),
            delay: Duration::ZERO,
            started,
        };
        let small = vec![b' '; INLINE_MAX_BYTES];
        let inline = |gate: &Gate, pace: Pace, body: &[u8], held: &Reservation, unlocked| {
            PACE.with(|p| p.set(pace));
            gate.decides_inline(Instant::now(), body, held, unlocked)
        };
        let quiet = Pace::default();
        for cores_beside in [true, false] {
            let gate = gate_on(None, cores_beside);
            let held = gate.reserve(&length(small.len())).unwrap();
            assert!(inline(&gate, quiet, &small, &held, true), "{cores_beside}");
            let large = [b' '; INLINE_MAX_BYTES + 1];
            assert!(!inline(&gate, quiet, &large, &held, true), "too large");
            assert!(
                !inline(&gate, quiet, &small, &held, false),
                "the lock is held"
            );
            // Only with cores for the threads beside the worker does the load matter.
            let other = gate.reserve(&length(100)).unwrap();
            assert_eq!(
                inline(&gate, quiet, &small, &held, true),
                !cores_beside,
                "another one pending, {cores_beside}"
            );
            drop(other);
            assert!(inline(&gate, quiet, &small, &held, true));
            assert_eq!(
                inline(&gate, busy_pace(), &small, &held, true),
                !cores_beside,
                "a busy worker, {cores_beside}"
            );
            let seamed = gate_on(Some(seam.clone()), cores_beside);
            let held = seamed.reserve(&length(small.len())).unwrap();
            assert!(
                !inline(&seamed, quiet, &small, &held, true),
                "the seam's are slow"
            );
        }
    }

    /// Where a decision runs: on the worker while it is quiet, on a decision thread once it
    /// is busy (on the worker still when the threads have no cores of their own); the answer
    /// is the same, and a panic is a 500 either way.
    #[tokio::test]
    async fn a_busy_worker_hands_decisions_to_the_threads() {
        async fn run(gate: &Gate, unlocked: bool, panics: bool) -> (StatusCode, String) {
            let body = Bytes::from_static(b"{}");
            let held = gate.reserve(&length(body.len())).unwrap();
            let response = gate
                .decide(Endpoint::Mutate, body, held, unlocked, move |body| {
                    assert!(!panics, "a decision panics");
                    let thread = std::thread::current().name().unwrap_or("").to_string();
                    (StatusCode::OK, format!("{thread} {}", body.len())).into_response()
                })
                .await;
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            (status, String::from_utf8(bytes.to_vec()).unwrap())
        }
        let gate = gate(None);
        let here = std::thread::current().name().unwrap_or("").to_string();
        PACE.with(|p| p.set(Pace::default()));
        assert_eq!(
            run(&gate, true, false).await,
            (StatusCode::OK, format!("{here} 2"))
        );
        assert_eq!(
            run(&gate, true, true).await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        // Quiet, but the cache's lock is held: the worker does not wait for it.
        PACE.with(|p| p.set(Pace::default()));
        assert_eq!(
            run(&gate, false, false).await,
            (StatusCode::OK, "decision-0 2".to_string())
        );
        let busy = busy_pace();
        PACE.with(|p| p.set(busy));
        assert_eq!(
            run(&gate, true, false).await,
            (StatusCode::OK, "decision-0 2".to_string())
        );
        PACE.with(|p| p.set(busy));
        assert_eq!(
            run(&gate, true, true).await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        // Without cores beside the worker, a busy one decides too.
        let one_core = gate_on(None, false);
        PACE.with(|p| p.set(busy));
        assert_eq!(
            run(&one_core, true, false).await,
            (StatusCode::OK, format!("{here} 2"))
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn decision_threads_run_as_batch_work_and_leave_the_callers_policy_alone() {
        // SAFETY (both calls): no arguments but the calling thread.
        let policy = || unsafe { libc::sched_getscheduler(0) };
        let callers = policy();
        let jobs = Jobs::start(2, 4);
        let (sent, got) = std::sync::mpsc::channel();
        for _ in 0..2 {
            let sent = sent.clone();
            assert!(
                jobs.push(Box::new(move || sent.send(policy()).unwrap()))
                    .is_ok()
            );
        }
        for _ in 0..2 {
            let got = got.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(got, libc::SCHED_BATCH, "a decision thread's policy");
        }
        assert_eq!(policy(), callers, "the thread that started them");
        jobs.close();
    }

    #[test]
    fn the_queue_is_bounded_runs_every_job_and_ends_its_threads_when_closed() {
        use std::sync::mpsc;
        let jobs = Jobs::start(1, 2);
        let (ran, done) = mpsc::channel();
        let (release, wait) = mpsc::channel::<()>();
        // The one thread is held by the first job; two more fill the queue.
        let (started, running) = mpsc::channel();
        let first = ran.clone();
        let pushed = jobs.push(Box::new(move || {
            started.send(()).unwrap();
            wait.recv().unwrap();
            first.send(0).unwrap();
        }));
        assert!(pushed.is_ok());
        running.recv().unwrap();
        for n in 1..=2 {
            let ran = ran.clone();
            assert!(jobs.push(Box::new(move || ran.send(n).unwrap())).is_ok());
        }
        assert!(jobs.push(Box::new(|| {})).is_err(), "a full queue refuses");
        release.send(()).unwrap();
        let order: Vec<i32> = (0..3).map(|_| done.recv().unwrap()).collect();
        assert_eq!(order, [0, 1, 2], "every job, in order");
        // A panicking job fails alone: the thread takes the next one.
        assert!(jobs.push(Box::new(|| panic!("a decision panics"))).is_ok());
        let after = ran.clone();
        assert!(jobs.push(Box::new(move || after.send(3).unwrap())).is_ok());
        assert_eq!(done.recv().unwrap(), 3);
        // Closed: the thread ends and drops the queue, so only this handle is left.
        jobs.close();
        drop(ran);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&jobs) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(Arc::strong_count(&jobs), 1, "the decision thread ended");
    }

    /// A push wakes an idle thread once: the pushes that come before that thread runs
    /// (here, while the test holds the queue's lock) do not wake it again.
    #[test]
    fn a_push_wakes_an_idle_thread_once() {
        use std::sync::mpsc;
        let jobs = Jobs::start(1, 4);
        let deadline = Instant::now() + Duration::from_secs(10);
        while jobs.lock().idle == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let (ran, done) = mpsc::channel();
        let job = |n: i32| -> Job {
            let ran = ran.clone();
            Box::new(move || ran.send(n).unwrap())
        };
        let mut queue = jobs.lock();
        assert_eq!(queue.idle, 1, "the thread waits for a job");
        assert!(
            matches!(queue.push(job(1), 4), Ok(true)),
            "the first wakes it"
        );
        assert!(
            matches!(queue.push(job(2), 4), Ok(false)),
            "it is woken already"
        );
        assert!(matches!(queue.push(job(3), 4), Ok(false)));
        drop(queue);
        jobs.ready.notify_one();
        let order: Vec<i32> = (0..3)
            .map(|_| done.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(order, [1, 2, 3], "one wake-up ran them all");
        jobs.close();
    }
}
