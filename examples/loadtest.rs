//! Load generator for `/mutate` (or `/validate`) over TLS with keep-alive connections, loopback
//! only.
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
//! Prints requests/s and latency percentiles; exits 1 if any request failed. It sends the seed
//! scenario's CREATE to `/mutate`; `--endpoint validate` loads `/validate`, and `--case FILE`
//! sends the VM of another manifest (deploy/pgo-build.sh trains on every test case so).
//!
//! `--rate N` sends N requests/s in all (open loop: latency counts from when a request was
//! due, so a stall shows as the wait it caused).
//!
//! `--compare` measures four webhooks, each a process of its own started here on loopback:
//! the independent floor (`examples/floor.rs`: axum + axum-server/rustls, reads only the uid,
//! allows; no code of this project's server), the empty webhook on this project's stack
//! (`server::baseline_router`: the same TLS, connections and axum as `serve`; like the floor
//! it reads only the uid, borrowed, and allows; run by this binary itself), and
//! `kubevirt-net-webhook serve` (`--nads`/`--vms` from the test cases, no cluster) for
//! `/mutate` and for `/validate`. Each is loaded saturated, then at `--rate` (default 5,000
//! req/s), in turns whose order rotates every round; the server process's CPU time (utime +
//! stime of `/proc/PID/stat`) is divided by the requests answered, at the fixed rate and
//! saturated, and saturated also by the run's time: the cores the server kept busy, which on
//! a machine shared with the load generator is as much a part of its saturation as what each
//! request cost it; beside it, the cores that stayed idle (`/proc/stat`, the whole machine),
//! which neither the server nor the load generator used. It prints a Markdown table: medians
//! over the rounds, and ratios to the floor that are the medians of the rounds' own ratios.
//! The floor and the webhook are the binaries beside this one:
//!
//! ```text
//! cargo build --release --bin kubevirt-net-webhook --example floor --example loadtest
//! target/release/examples/loadtest --compare --duration 5s --rounds 5 2>/dev/null
//! ```
//!
//! To measure a change, give `--webhook-bin` once per build (`--endpoints mutate` to load
//! only `/mutate`): every build is loaded in the same rounds against the same floor, and the
//! table adds each column's ratio to the first build's, the median of the rounds' own
//! ratios. Two runs of one build minutes apart differ by more than most cuts make.
//!
//! The servers of this project log as `deploy/` runs them (JSON at info, a line per request,
//! on stderr, which they share with this program: send it to /dev/null or a file); the floor
//! does not log.
#[path = "../tests/support/server.rs"]
mod common;
#[path = "../tests/support/fixtures.rs"]
mod fixtures;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use common::{CASES, Http, Running};
use hyper::{StatusCode, body::Bytes};
use kubevirt_net_webhook::server::ServeArgs;

// The allocator the server runs with (src/main.rs): the in-process servers use it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bounded load on /mutate (or /validate) over TLS.
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
    /// Measure /mutate and /validate against the independent floor and the empty webhook on
    /// the same stack, each a process of its own, in turns (--rate defaults to 5000).
    #[arg(long)]
    compare: bool,
    /// Turns of each measurement with --compare (the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// With --compare, the webhook binary to measure (default: kubevirt-net-webhook in the
    /// directory above this example's). Repeat it to measure several builds in the same
    /// rounds, each against the same floor: a cut's effect, without the machine's drift
    /// between two runs.
    #[arg(long, value_name = "FILE")]
    webhook_bin: Vec<PathBuf>,
    /// With --compare, the webhook's endpoints to load (each a column per binary).
    #[arg(long, value_delimiter = ',', default_value = "mutate,validate")]
    endpoints: Vec<Endpoint>,
    /// Without --compare, the endpoint to load.
    #[arg(long, default_value = "mutate", conflicts_with = "compare")]
    endpoint: Endpoint,
    /// Without --compare, send the CREATE of the VirtualMachine in this manifest (e.g. one of
    /// tests/data/cases) instead of the seed scenario's.
    #[arg(long, value_name = "FILE", conflicts_with = "compare")]
    case: Option<PathBuf>,
    /// Log as `deploy/` does (JSON lines at info, one per request, to stderr) for the servers
    /// of this project that this program starts; `plain`, or `none` to measure without logs.
    #[arg(long, default_value = "json")]
    logs: String,
    /// Internal to --compare: serve the empty webhook of this project's stack on ADDR with
    /// DIR/tls.crt and DIR/tls.key, until killed.
    #[arg(long, hide = true, num_args = 2, value_names = ["ADDR", "DIR"])]
    serve_empty: Option<Vec<String>>,
}

/// A webhook endpoint to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Endpoint {
    Mutate,
    Validate,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Mutate => "/mutate",
            Endpoint::Validate => "/validate",
        }
    }
}

/// What one run measured.
struct Stats {
    latencies: Vec<Duration>,
    failures: u64,
    elapsed: Duration,
    /// CPU time of the server process while loaded, when its pid was given.
    cpu: Option<Duration>,
    /// Idle time of the whole machine over the same window, when the pid was given.
    idle: Option<Duration>,
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

    /// The server's CPU time over the run's time: how many cores it kept busy.
    fn cores(&self) -> f64 {
        self.cpu
            .map_or(f64::NAN, |c| c.as_secs_f64() / self.elapsed.as_secs_f64())
    }

    /// The machine's idle time over the run's time: the cores that nothing ran on, neither
    /// the server nor this load generator.
    fn idle_cores(&self) -> f64 {
        self.idle
            .map_or(f64::NAN, |i| i.as_secs_f64() / self.elapsed.as_secs_f64())
    }

    /// The server's CPU time per answered request, in microseconds.
    fn cpu_us_per_request(&self) -> f64 {
        self.cpu.map_or(f64::NAN, |c| {
            c.as_secs_f64() * 1e6 / self.latencies.len().max(1) as f64
        })
    }
}

/// CPU time (user + system, all threads) that process `pid` has used so far: fields 14 and
/// 15 of `/proc/PID/stat`, in clock ticks of 1/100 s (USER_HZ, which Linux fixes at 100 for
/// what it reports to user space).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Idle time of the whole machine so far: the idle and iowait fields of `/proc/stat`'s `cpu`
/// line (all CPUs), in the same ticks of 1/100 s.
fn machine_idle() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    Some(Duration::from_millis(
        (fields.get(3)? + fields.get(4)?) * 10,
    ))
}

/// What to load and how: `connections` keep-alive connections posting `body` for `duration`
/// (at most `limit` requests), as fast as answers come or at `rate` requests/s in all.
#[derive(Clone)]
struct Load {
    config: Arc<rustls::ClientConfig>,
    body: Bytes,
    connections: usize,
    duration: Duration,
    limit: u64,
    rate: Option<f64>,
}

/// Loads `path` of `addr` as `load` says. With `pid`, also measures that process's CPU time
/// from when the connections are open to when the last answer came.
async fn run(addr: SocketAddr, path: &'static str, load: &Load, pid: Option<u32>) -> Stats {
    let Load {
        ref config,
        ref body,
        connections,
        duration,
        limit,
        rate,
    } = *load;
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(Http::tls(addr, config.clone()).await);
    }
    let cpu_before = pid.map(cpu_time);
    let idle_before = pid.and_then(|_| machine_idle());
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
                match http.send("POST", path, body.clone()).await {
                    Ok((StatusCode::OK, _)) => latencies.push(t.elapsed()),
                    _ => failures += 1,
                }
                due = match interval {
                    Some(d) => due + d,
                    None => Instant::now(),
                };
            }
            // The connection is returned, to be closed after the CPU time is read.
            (latencies, failures, http)
        }));
    }
    let mut stats = Stats {
        latencies: Vec::new(),
        failures: 0,
        elapsed: Duration::ZERO,
        cpu: None,
        idle: None,
    };
    let mut open = Vec::new();
    for task in tasks {
        let (l, f, http) = task.await.unwrap();
        stats.latencies.extend(l);
        stats.failures += f;
        open.push(http);
    }
    if let (Some(pid), Some(before)) = (pid, cpu_before) {
        stats.cpu = Some(cpu_time(pid).saturating_sub(before));
    }
    if let (Some(before), Some(after)) = (idle_before, machine_idle()) {
        stats.idle = Some(after.saturating_sub(before));
    }
    drop(open);
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

/// The median; of an even count, the mean of the two middle values.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// How a column names its build: the file name, or the whole path when two builds share it.
fn build_name(bin: &Path, all: &[PathBuf]) -> String {
    let file = |p: &Path| p.file_name().unwrap_or_default().to_os_string();
    if all.iter().filter(|b| file(b) == file(bin)).count() > 1 {
        bin.display().to_string()
    } else {
        file(bin).to_string_lossy().into_owned()
    }
}

/// A server of `--compare`: a process of its own, killed when dropped.
struct Server {
    name: String,
    /// Where its requests go.
    path: &'static str,
    addr: SocketAddr,
    process: std::process::Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Server {
    /// Starts `command`, which serves HTTPS on `addr`, and waits until `path` answers 200.
    async fn start(
        name: String,
        path: &'static str,
        addr: SocketAddr,
        mut command: Command,
        load: &Load,
    ) -> Result<Self, String> {
        let process = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("{name}: cannot start {:?}: {e}", command.get_program()))?;
        let mut server = Server {
            name,
            path,
            addr,
            process,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = server.process.try_wait().unwrap() {
                return Err(format!("{}: exited ({status})", server.name));
            }
            if common::tls_connect(addr, load.config.clone()).await.is_ok() {
                let mut http = Http::tls(addr, load.config.clone()).await;
                if let Ok((StatusCode::OK, _)) = http.send("POST", path, load.body.clone()).await {
                    return Ok(server);
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{}: no answer on {addr}{path} within 60 s",
                    server.name
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A free port on loopback (bound, then released for the server to take).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
}

/// `1234567.8` as `1,234,568`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `--compare`: the independent floor, the empty webhook on this stack, `/mutate` and
/// `/validate`, each a process, in turns, saturated and at a fixed rate.
async fn compare(args: &Args, body: Bytes) -> std::process::ExitCode {
    let exe = std::env::current_exe().unwrap();
    let examples = exe.parent().unwrap();
    let floor_bin = examples.join("floor");
    let mut webhook_bins = args.webhook_bin.clone();
    if webhook_bins.is_empty() {
        webhook_bins.push(
            examples
                .parent()
                .unwrap_or(Path::new("."))
                .join("kubevirt-net-webhook"),
        );
    }
    for bin in std::iter::once(&floor_bin).chain(&webhook_bins) {
        if !bin.is_file() {
            eprintln!(
                "{} is missing: build it beside this program, e.g. `cargo build --release --bin \
                 kubevirt-net-webhook --example floor --example loadtest`, then run \
                 target/release/examples/loadtest --compare",
                bin.display()
            );
            return std::process::ExitCode::from(2);
        }
    }
    let ca = common::Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf().write_to(dir.path());
    let rate = args.rate.unwrap_or(5_000.0);
    let saturated = Load {
        config: client_config(ca.pem().as_bytes(), args.h2),
        body,
        connections: args.connections,
        duration: args.duration,
        limit: u64::MAX,
        rate: None,
    };
    let fixed = Load {
        rate: Some(rate),
        ..saturated.clone()
    };

    let mut floor = Command::new(&floor_bin);
    let floor_addr = free_addr();
    floor.arg("--listen").arg(floor_addr.to_string());
    floor
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key);
    let mut empty = Command::new(&exe);
    let empty_addr = free_addr();
    empty
        .arg("--serve-empty")
        .arg(empty_addr.to_string())
        .arg(dir.path());
    empty.arg("--logs").arg(&args.logs);
    let webhook = |bin: &Path, addr: SocketAddr| {
        let mut c = Command::new(bin);
        match args.logs.as_str() {
            "json" | "plain" => c.arg("--log-format").arg(&args.logs),
            _ => c.env("RUST_LOG", "off"),
        };
        c.arg("serve").arg("--listen").arg(addr.to_string());
        c.arg("--admin-listen").arg(free_addr().to_string());
        c.arg("--tls-cert").arg(&cert).arg("--tls-key").arg(&key);
        c.args(["--nads", CASES, "--vms", CASES]);
        c
    };
    // Columns: the floor, the same-stack empty, then each binary's endpoints. With several
    // binaries a column is named by its binary's file name too.
    let mut columns = vec![
        (
            "independent floor".to_string(),
            "/mutate",
            floor,
            floor_addr,
        ),
        ("same-stack empty".to_string(), "/mutate", empty, empty_addr),
    ];
    for bin in &webhook_bins {
        for endpoint in &args.endpoints {
            let path = endpoint.path();
            let name = match webhook_bins.len() {
                1 => format!("`{path}`"),
                _ => format!("`{path}` {}", build_name(bin, &webhook_bins)),
            };
            let addr = free_addr();
            columns.push((name, path, webhook(bin, addr), addr));
        }
    }
    let names: Vec<String> = columns.iter().map(|c| c.0.clone()).collect();
    let mut servers = Vec::new();
    for (name, path, command, addr) in columns {
        match Server::start(name, path, addr, command, &saturated).await {
            Ok(server) => servers.push(server),
            Err(e) => {
                eprintln!("{e}");
                return std::process::ExitCode::from(2);
            }
        }
    }

    // Per column and round: saturation req/s; at the fixed rate CPU µs/request, p50, p99;
    // saturated, CPU µs/request, the cores the server kept busy and the machine's idle cores.
    // Saturation is the cores over the CPU per request: on a machine shared with the load
    // generator the cores say how much of it the server won, the CPU what each request cost
    // it; the idle cores, what nobody won.
    let n = servers.len();
    let mut results: Vec<[Vec<f64>; 7]> = (0..n).map(|_| Default::default()).collect();
    let mut failures = 0;
    for round in 0..args.rounds {
        // The order rotates, so that a drift of the machine within a round favours none.
        for k in 0..n {
            let which = (k + round) % n;
            let server = &servers[which];
            let sat = run(
                server.addr,
                server.path,
                &saturated,
                Some(server.process.id()),
            )
            .await;
            let fix = run(server.addr, server.path, &fixed, Some(server.process.id())).await;
            failures += sat.failures + fix.failures;
            println!(
                "round {round} {:>17}: saturated {:>7.0} req/s (p50 {:.2} ms, p99 {:.2} ms, CPU {:.1} µs/request on {:.2} cores); at {rate:.0} req/s: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, CPU {:.1} µs/request",
                server.name,
                sat.throughput(),
                sat.percentile_ms(0.5),
                sat.percentile_ms(0.99),
                sat.cpu_us_per_request(),
                sat.cores(),
                fix.throughput(),
                fix.percentile_ms(0.5),
                fix.percentile_ms(0.99),
                fix.cpu_us_per_request(),
            );
            let r = &mut results[which];
            r[0].push(sat.throughput());
            r[1].push(fix.cpu_us_per_request());
            r[2].push(fix.percentile_ms(0.5));
            r[3].push(fix.percentile_ms(0.99));
            r[4].push(sat.cpu_us_per_request());
            r[5].push(sat.cores());
            r[6].push(sat.idle_cores());
        }
    }
    drop(servers);

    // A ratio is the median of the rounds' own ratios: the machine's speed drifts (other
    // tenants), and a drift between rounds cancels out of a ratio taken within one round.
    let m = |c: usize, i: usize| median(results[c][i].clone());
    let ratio = |c: usize, to: usize, i: usize| {
        median(
            (0..args.rounds)
                .map(|r| results[c][i][r] / results[to][i][r])
                .collect(),
        )
    };
    let row = |label: String, cell: &dyn Fn(usize) -> String| {
        let cells: Vec<String> = (0..n).map(cell).collect();
        println!("| {label} | {} |", cells.join(" | "));
    };
    let rate_text = thousands(rate);
    println!("| | {} |", names.join(" | "));
    println!("|---|{}", "---|".repeat(n));
    row("saturation".into(), &|c| {
        format!("{} req/s", thousands(m(c, 0)))
    });
    row("saturation, ratio to the floor".into(), &|c| {
        format!("{:.2}", ratio(c, 0, 0))
    });
    row(format!("CPU per request at {rate_text} req/s"), &|c| {
        format!("{:.1} µs", m(c, 1))
    });
    row("CPU, ratio to the floor".into(), &|c| {
        format!("{:.2}", ratio(c, 0, 1))
    });
    row(format!("p50 at {rate_text} req/s"), &|c| {
        format!("{:.2} ms", m(c, 2))
    });
    row(format!("p99 at {rate_text} req/s"), &|c| {
        format!("{:.2} ms", m(c, 3))
    });
    row("p99, ratio to the floor".into(), &|c| {
        format!("{:.2}", ratio(c, 0, 3))
    });
    row("CPU per request, saturated".into(), &|c| {
        format!("{:.1} µs", m(c, 4))
    });
    row(
        "CPU per request saturated, ratio to the floor".into(),
        &|c| format!("{:.2}", ratio(c, 0, 4)),
    );
    row("cores the server kept busy, saturated".into(), &|c| {
        format!("{:.2}", m(c, 5))
    });
    row("idle cores of the machine, saturated".into(), &|c| {
        format!("{:.2}", m(c, 6))
    });
    row("saturation, ratio to the same-stack empty".into(), &|c| {
        if c == 0 {
            "–".into()
        } else {
            format!("{:.2}", ratio(c, 1, 0))
        }
    });
    if webhook_bins.len() > 1 {
        // The same endpoint of the first binary: what a change did, round by round.
        let first = |c: usize| (c >= 2).then(|| 2 + (c - 2) % args.endpoints.len());
        for (label, i) in [("CPU", 1), ("saturation", 0), ("p99", 3)] {
            row(
                format!("{label}, ratio to the first binary's"),
                &|c| match first(c) {
                    Some(to) => format!("{:.3}", ratio(c, to, i)),
                    None => "–".into(),
                },
            );
        }
    }
    println!(
        "(medians of {} rounds, {} connections, {:?} saturated and {:?} at {rate_text} req/s per server and round, {}; CPU: the server process's user + system time over the requests answered; cores: that time over the run's; idle cores: the machine's idle time over the run's)",
        args.rounds,
        args.connections,
        args.duration,
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
    if let Some(serve_empty) = &args.serve_empty {
        // --compare's same-stack empty webhook: `serve` with only the router swapped.
        let dir = PathBuf::from(&serve_empty[1]);
        let mut serve = ServeArgs::new(dir.join("tls.crt"), dir.join("tls.key"));
        serve.listen = serve_empty[0].parse().expect("--serve-empty ADDR DIR");
        serve.admin_listen = "127.0.0.1:0".parse().unwrap();
        serve.nads = Some(PathBuf::from(CASES));
        serve.vms = Some(PathBuf::from(CASES));
        serve.limits.baseline = true;
        return match kubevirt_net_webhook::server::serve(serve).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cannot serve: {e}");
                std::process::ExitCode::from(1)
            }
        };
    }
    if let Some(dir) = &args.write_certs {
        let ca = common::Ca::new();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
        ca.leaf().write_to(dir);
        println!("wrote {}/{{ca.crt,tls.crt,tls.key}}", dir.display());
        return std::process::ExitCode::SUCCESS;
    }
    let body = Bytes::from(match &args.case {
        Some(path) => fixtures::case_create_body(path, "load"),
        None => fixtures::seed_create_body("load"),
    });
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

    let load = Load {
        config,
        body,
        connections: args.connections,
        duration: args.duration,
        limit: args.requests.unwrap_or(u64::MAX),
        rate: args.rate,
    };
    let stats = run(addr, args.endpoint.path(), &load, None).await;
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
