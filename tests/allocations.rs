//! Heap allocations per decision, counted: the engine bench's 3-NIC VM (`fixtures::bench_vm`)
//! through `/mutate` and `/validate`, and through the whole admission path (body decoded,
//! decided, response encoded); and per request through the in-process server, from the TLS
//! records of the request to those of the response (issue #19). Unlike wall-clock time on a
//! shared machine, a count does not drift, so a change that adds allocations to the request
//! path fails here (issue #11).
//!
//! `cargo test --test allocations -- --nocapture` prints the counts.
use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use kubevirt_net_webhook::{
    admission::{self, Endpoint},
    cmd::json_log,
    engine::{self, Object, Request},
    model::config::Config,
};

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/server.rs"]
mod server;

/// Counts the allocations (and reallocations) of the thread that is counting.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
    /// Whether this thread is the in-process server's: unknown, asking, yes, no.
    static SERVER_THREAD: Cell<Thread> = const { Cell::new(Thread::Unknown) };
}

#[derive(Clone, Copy, PartialEq)]
enum Thread {
    Unknown,
    Asking,
    Server,
    Other,
}

/// The in-process server's runtime names its threads this; decision threads are `decision-N`.
const SERVER_THREADS: &str = "server-under-test";
/// Allocations on the server's threads while `SERVER_COUNTING` is on.
static SERVER_COUNT: AtomicU64 = AtomicU64::new(0);
static SERVER_COUNTING: AtomicBool = AtomicBool::new(false);

fn bump() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
    if SERVER_COUNTING.load(Ordering::Relaxed) && on_a_server_thread() {
        SERVER_COUNT.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads the thread's name once; allocations made while reading it (the first
/// `thread::current()`) are not counted, instead of recursing.
fn on_a_server_thread() -> bool {
    SERVER_THREAD
        .try_with(|state| match state.get() {
            Thread::Server => true,
            Thread::Other | Thread::Asking => false,
            Thread::Unknown => {
                state.set(Thread::Asking);
                let server = std::thread::current()
                    .name()
                    .is_some_and(|n| n == SERVER_THREADS || n.starts_with("decision-"));
                state.set(if server {
                    Thread::Server
                } else {
                    Thread::Other
                });
                server
            }
        })
        .unwrap_or(false)
}

// SAFETY: every call is passed on to `System` unchanged; the counters are thread-local cells.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The allocations `f` makes on this thread (its result dropped inside the count).
fn allocations<T>(f: impl FnOnce() -> T) -> u64 {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|on| on.set(true));
    drop(std::hint::black_box(f()));
    COUNTING.with(|on| on.set(false));
    COUNT.with(Cell::get)
}

/// The budgets: the counts measured when they were set, with a little room. Lower them
/// when a change saves allocations; raising one needs a reason in the commit.
/// `/mutate` is the decision with its patch written (`engine::mutate_text`).
const MUTATE: u64 = 75;
const VALIDATE: u64 = 36;
const ADMISSION_MUTATE: u64 = 127;
/// The same with the managed fields and last applied configuration that `kubectl apply`
/// leaves on the object.
const ADMISSION_MUTATE_APPLIED: u64 = 134;
/// Per request through the server, on a keep-alive HTTP/1.1 connection over TLS, logging a
/// JSON line as deploy/ does.
const SERVER_MUTATE: u64 = 125;
const SERVER_VALIDATE: u64 = 139;

#[test]
fn a_decision_stays_within_its_allocation_budget() {
    let config = Config::default();
    let (value, inv) = fixtures::bench_vm(2);
    let object = fixtures::object(&value);
    let req = fixtures::bench_request(&object);
    let mutation = engine::mutate(&req, &inv, &config).unwrap();
    assert!(!mutation.patch.0.is_empty(), "the bench VM is mutated");
    let mut mutated = value.clone();
    json_patch::patch(&mut mutated, &mutation.patch).unwrap();
    let mutated = fixtures::object(&mutated);
    let vreq = Request {
        object: Object::Tree(&mutated),
        ..req
    };
    assert!(engine::validate(&vreq, &inv, &config).unwrap().allowed());
    let body = fixtures::create_body(&value);

    let mutate = allocations(|| engine::mutate_text(&req, &inv, &config).unwrap());
    let validate = allocations(|| engine::validate(&vreq, &inv, &config).unwrap());
    // The whole `/mutate` path of a body, as the server reads it: in one pass.
    let admission_path = |body: &[u8]| {
        assert!(matches!(
            admission::read(body).unwrap(),
            admission::Read::OnePass(_)
        ));
        allocations(|| {
            admission::read(body)
                .unwrap()
                .answer(Endpoint::Mutate, &inv, &config)
                .to_vec()
        })
    };
    let whole = admission_path(&body);
    // The same VM as the API server sends it after `kubectl apply`: managed fields and the
    // last applied configuration, read but not built.
    let applied = admission_path(&fixtures::create_body(&fixtures::as_kubectl_applied(
        &value,
    )));
    println!(
        "allocations: mutate {mutate}, validate {validate}, admission /mutate {whole}, kubectl-applied {applied}"
    );
    assert!(mutate > 0 && validate > 0, "the counter counts");
    for (what, count, budget) in [
        ("/mutate decision", mutate, MUTATE),
        ("/validate decision", validate, VALIDATE),
        ("/mutate admission path", whole, ADMISSION_MUTATE),
        (
            "/mutate admission path (kubectl-applied)",
            applied,
            ADMISSION_MUTATE_APPLIED,
        ),
    ] {
        assert!(
            count <= budget,
            "a {what} allocates {count} times, over its budget of {budget}"
        );
    }
}

/// The whole request path in the server: what its threads allocate per request, from the TLS
/// records of a request on a kept-alive connection to those of its answer (the seed scenario's
/// 3-NIC VM, as `examples/loadtest.rs` sends it), with the JSON request log of deploy/ written
/// to nowhere. The client runs on this thread, which is not counted.
#[test]
fn a_request_through_the_server_stays_within_its_allocation_budget() {
    const REQUESTS: u64 = 500;
    // `--log-format json`, as deploy/ runs the server.
    tracing_subscriber::fmt()
        .fmt_fields(json_log::JsonLinesFields::new())
        .event_format(json_log::JsonLines::default())
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SERVER_THREADS)
        .enable_all()
        .build()
        .unwrap();
    let running = runtime.block_on(server::Running::start(|_, _, _| {}));
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = fixtures::seed_create_body("load");
    let mut counts = Vec::new();
    client.block_on(async {
        let mut http = running.http().await;
        for path in ["/mutate", "/validate"] {
            let mut ask = async || {
                let (status, answer) = http.send("POST", path, body.clone()).await.unwrap();
                assert_eq!(status, 200);
                answer
            };
            // Warm: connection buffers grown, metric series created.
            let answer = ask().await;
            let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
            // What the path does for the seed VM: a patch, or a denial.
            match path {
                "/mutate" => assert!(answer["response"]["patch"].is_string(), "{answer}"),
                _ => assert_eq!(answer["response"]["allowed"], false, "{answer}"),
            }
            for _ in 0..50 {
                ask().await;
            }
            SERVER_COUNT.store(0, Ordering::Relaxed);
            SERVER_COUNTING.store(true, Ordering::Relaxed);
            for _ in 0..REQUESTS {
                ask().await;
            }
            SERVER_COUNTING.store(false, Ordering::Relaxed);
            counts.push(SERVER_COUNT.load(Ordering::Relaxed) / REQUESTS);
        }
    });
    let (mutate, validate) = (counts[0], counts[1]);
    println!("allocations per request through the server: /mutate {mutate}, /validate {validate}");
    assert!(
        mutate > 0 && validate > 0,
        "the counter counts the server's threads"
    );
    for (what, count, budget) in [
        ("/mutate", mutate, SERVER_MUTATE),
        ("/validate", validate, SERVER_VALIDATE),
    ] {
        assert!(
            count <= budget,
            "a {what} request through the server allocates {count} times, over its budget of {budget}"
        );
    }
}
