//! Load generator for `/mutate` over TLS with keep-alive connections, loopback only.
//!
//! Without `--addr` it starts the server in-process (certificates from a fresh CA, NADs and
//! VMs from the test cases). With `--addr` it loads a server started separately, e.g.:
//!
//! ```text
//! cargo run --release --example loadtest -- --write-certs /tmp/lt
//! kubevirt-net-webhook serve --tls-cert /tmp/lt/tls.crt --tls-key /tmp/lt/tls.key \
//!     --nads tests/data/cases --vms tests/data/cases --listen 127.0.0.1:8443 &
//! cargo run --release --example loadtest -- --addr 127.0.0.1:8443 --ca /tmp/lt/ca.crt
//! ```
//!
//! Prints requests/s and latency percentiles; exits 1 if any request failed.
//!
//! `--rate N` sends N requests/s in all (open loop: latency counts from when a request was
//! due, so a stall shows as the wait it caused). `--compare` starts this webhook and the empty
//! webhook on the same stack (`server::baseline_router`: TLS, connections, axum; reads the
//! AdmissionReview as JSON, echoes the uid, allows) in this process, measures both in turn,
//! saturated and at `--rate` (default 5,000 req/s), in turns whose order alternates, and
//! prints the ratios (each the median of the rounds' own ratios):
//!
//! ```text
//! cargo run --release --example loadtest -- --compare --duration 8s 2>/dev/null
//! ```
//!
//! The in-process servers log as `deploy/` runs them (JSON at info, a line per request, on
//! stderr: send it to /dev/null or a file).
#[path = "../tests/support/server.rs"]
mod common;
#[path = "../tests/support/fixtures.rs"]
mod fixtures;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use common::{CASES, Http, Running};
use hyper::{StatusCode, body::Bytes};
use kubevirt_net_webhook::manifests;

// The allocator the server runs with (src/main.rs): the in-process servers use it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bounded load on /mutate over TLS.
#[derive(Debug, Parser)]
struct Args {
    /// Keep-alive connections, each sending one request at a time.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Stop after this long.
    #[arg(long, default_value = "10s", value_parser = kubevirt_net_webhook::server::parse_duration)]
    duration: Duration,
    /// Stop after this many requests in all (whichever bound comes first).
    #[arg(long)]
    requests: Option<u64>,
    /// Use HTTP/2 (ALPN h2) instead of HTTP/1.1.
    #[arg(long)]
    h2: bool,
    /// A running server (loopback only); without it, one is started in-process.
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// The CA that signed the running server's certificate (PEM), with --addr.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Only write ca.crt, tls.crt (for localhost) and tls.key into DIR, then exit.
    #[arg(long, value_name = "DIR")]
    write_certs: Option<PathBuf>,
    /// Send this many requests per second in all, instead of as fast as answers come.
    #[arg(long)]
    rate: Option<f64>,
    /// Measure this webhook against the empty one on the same stack, in turns.
    #[arg(long)]
    compare: bool,
    /// Turns of each measurement with --compare (the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Log as `deploy/` does (JSON lines at info, one per request, to stderr) for the servers
    /// started in-process; `none` measures without logs.
    #[arg(long, default_value = "json")]
    logs: String,
}

/// What one run measured.
struct Stats {
    latencies: Vec<Duration>,
    failures: u64,
    elapsed: Duration,
}

impl Stats {
    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        let l = &self.latencies;
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }
}

/// Loads `addr` with `connections` keep-alive connections for `duration` (at most
/// `limit` requests), as fast as answers come or at `rate` requests/s in all.
async fn run(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    body: Bytes,
    connections: usize,
    duration: Duration,
    limit: u64,
    rate: Option<f64>,
) -> Stats {
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(Http::tls(addr, config.clone()).await);
    }
    let started = Instant::now();
    let deadline = started + duration;
    for (i, mut http) in clients.into_iter().enumerate() {
        let (body, sent) = (body.clone(), sent.clone());
        // Each connection's share of the rate, its first request offset to spread them.
        let interval = rate.map(|r| Duration::from_secs_f64(connections as f64 / r));
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut failures) = (Vec::new(), 0u64);
            let mut due = started
                + interval.map_or(Duration::ZERO, |d| d.mul_f64(i as f64 / connections as f64));
            while due < deadline && sent.fetch_add(1, Ordering::Relaxed) < limit {
                if interval.is_some() {
                    tokio::time::sleep_until(due.into()).await;
                }
                let t = if interval.is_some() {
                    due
                } else {
                    Instant::now()
                };
                match http.send("POST", "/mutate", body.clone()).await {
                    Ok((StatusCode::OK, _)) => latencies.push(t.elapsed()),
                    _ => failures += 1,
                }
                due = match interval {
                    Some(d) => due + d,
                    None => Instant::now(),
                };
            }
            (latencies, failures)
        }));
    }
    let mut stats = Stats {
        latencies: Vec::new(),
        failures: 0,
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        let (l, f) = task.await.unwrap();
        stats.latencies.extend(l);
        stats.failures += f;
    }
    stats.elapsed = started
        .elapsed()
        .min(duration.max(Duration::from_millis(1)) + Duration::from_secs(1));
    if rate.is_some() {
        stats.elapsed = duration;
    } else {
        stats.elapsed = started.elapsed();
    }
    stats.latencies.sort();
    stats
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `--compare`: this webhook and the empty one, in turns, saturated and at a fixed rate.
async fn compare(args: &Args, body: Bytes) -> std::process::ExitCode {
    let ours = Running::start(|_, _, _| {}).await;
    let empty = Running::start(|a, _, _| a.limits.baseline = true).await;
    let rate = args.rate.unwrap_or(5_000.0);
    let mut results: Vec<[Vec<f64>; 3]> = vec![Default::default(), Default::default()];
    let mut failures = 0;
    // Per round, the ratio of the two runs: the machine's speed drifts (other tenants), and
    // a drift between rounds cancels out of a ratio taken within one round.
    let mut ratios: [Vec<f64>; 3] = Default::default();
    for round in 0..args.rounds {
        // Who goes first alternates, so that a drift within a round favours neither.
        let order = if round % 2 == 0 {
            [(0, &empty), (1, &ours)]
        } else {
            [(1, &ours), (0, &empty)]
        };
        for (which, server) in order {
            let config = client_config(server.ca.pem().as_bytes(), args.h2);
            let saturated = run(
                server.addr,
                config.clone(),
                body.clone(),
                args.connections,
                args.duration,
                u64::MAX,
                None,
            )
            .await;
            let fixed = run(
                server.addr,
                config,
                body.clone(),
                args.connections,
                args.duration,
                u64::MAX,
                Some(rate),
            )
            .await;
            failures += saturated.failures + fixed.failures;
            let name = ["empty webhook", "/mutate"][which];
            println!(
                "round {round} {name:>13}: saturated {:>7.0} req/s (p50 {:.2} ms, p99 {:.2} ms); at {rate:.0} req/s: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
                saturated.throughput(),
                saturated.percentile_ms(0.5),
                saturated.percentile_ms(0.99),
                fixed.throughput(),
                fixed.percentile_ms(0.5),
                fixed.percentile_ms(0.99),
            );
            results[which][0].push(saturated.throughput());
            results[which][1].push(fixed.percentile_ms(0.5));
            results[which][2].push(fixed.percentile_ms(0.99));
        }
        for (i, r) in ratios.iter_mut().enumerate() {
            r.push(results[1][i][round] / results[0][i][round]);
        }
    }
    let m = |w: usize, i: usize| median(results[w][i].clone());
    let r = |i: usize| median(ratios[i].clone());
    println!("| | empty webhook | this webhook's /mutate | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| saturation throughput | {:.0} req/s | {:.0} req/s | {:.2} |",
        m(0, 0),
        m(1, 0),
        r(0)
    );
    println!(
        "| p50 at {rate:.0} req/s | {:.2} ms | {:.2} ms | {:.2} |",
        m(0, 1),
        m(1, 1),
        r(1)
    );
    println!(
        "| p99 at {rate:.0} req/s | {:.2} ms | {:.2} ms | {:.2} |",
        m(0, 2),
        m(1, 2),
        r(2)
    );
    println!(
        "(medians of {} rounds, {} connections, {:?} each, {}; a ratio is the median of the rounds' ratios)",
        args.rounds,
        args.connections,
        args.duration,
        if args.h2 { "HTTP/2" } else { "HTTP/1.1" }
    );
    if failures > 0 {
        eprintln!("{failures} requests failed");
        return std::process::ExitCode::from(1);
    }
    std::process::ExitCode::SUCCESS
}

fn client_config(ca_pem: &[u8], h2: bool) -> Arc<rustls::ClientConfig> {
    common::client_config(ca_pem, &[if h2 { b"h2" } else { b"http/1.1" }])
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match args.logs.as_str() {
        "json" => {
            kubevirt_net_webhook::cmd::init_tracing(kubevirt_net_webhook::cmd::LogFormat::Json)
        }
        "plain" => {
            kubevirt_net_webhook::cmd::init_tracing(kubevirt_net_webhook::cmd::LogFormat::Plain)
        }
        _ => {}
    }
    if let Some(dir) = &args.write_certs {
        let ca = common::Ca::new();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
        ca.leaf().write_to(dir);
        println!("wrote {}/{{ca.crt,tls.crt,tls.key}}", dir.display());
        return std::process::ExitCode::SUCCESS;
    }
    // The seed scenario: rename, two MACs, a cloud-init volume: the engine's longest path.
    let vm = manifests::read_path(&PathBuf::from(CASES).join("seed-wukong-static-ip.yaml"))
        .unwrap()
        .into_iter()
        .find(|d| d.kind() == "VirtualMachine")
        .unwrap()
        .value;
    let body = Bytes::from(
        fixtures::admission_review(
            "admission.k8s.io/v1",
            "load",
            "CREATE",
            Some(&vm),
            None,
            false,
        )
        .to_string(),
    );
    if args.compare {
        return compare(&args, body).await;
    }
    let (_server, addr, config) = match (args.addr, &args.ca) {
        (Some(addr), Some(ca)) => {
            assert!(addr.ip().is_loopback(), "loopback targets only");
            (
                None,
                addr,
                client_config(&std::fs::read(ca).unwrap(), args.h2),
            )
        }
        (Some(_), None) => panic!("--addr needs --ca"),
        (None, _) => {
            let server = Running::start(|_, _, _| {}).await;
            let config = client_config(server.ca.pem().as_bytes(), args.h2);
            let addr = server.addr;
            (Some(server), addr, config)
        }
    };

    let stats = run(
        addr,
        config,
        body,
        args.connections,
        args.duration,
        args.requests.unwrap_or(u64::MAX),
        args.rate,
    )
    .await;
    println!(
        "{} requests ({} failed) in {:.2}s over {} {} connections: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        stats.latencies.len(),
        stats.failures,
        stats.elapsed.as_secs_f64(),
        args.connections,
        if args.h2 { "HTTP/2" } else { "HTTP/1.1" },
        stats.throughput(),
        stats.percentile_ms(0.50),
        stats.percentile_ms(0.99),
        stats.percentile_ms(1.0),
    );
    if stats.failures > 0 {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    }
}
