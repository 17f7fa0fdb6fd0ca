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
}

fn client_config(ca_pem: &[u8], h2: bool) -> Arc<rustls::ClientConfig> {
    common::client_config(ca_pem, &[if h2 { b"h2" } else { b"http/1.1" }])
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(dir) = &args.write_certs {
        let ca = common::Ca::new();
        let leaf = ca.leaf();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
        std::fs::write(dir.join("tls.crt"), &leaf.cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), &leaf.key_pem).unwrap();
        println!("wrote {}/{{ca.crt,tls.crt,tls.key}}", dir.display());
        return std::process::ExitCode::SUCCESS;
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

    let sent = Arc::new(AtomicU64::new(0));
    let limit = args.requests.unwrap_or(u64::MAX);
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (config, body, sent) = (config.clone(), body.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut http = Http::tls(addr, config).await;
            let (mut latencies, mut failures) = (Vec::new(), 0u64);
            while Instant::now() < deadline && sent.fetch_add(1, Ordering::Relaxed) < limit {
                let t = Instant::now();
                match http.send("POST", "/mutate", body.clone()).await {
                    Ok((StatusCode::OK, _)) => latencies.push(t.elapsed()),
                    _ => failures += 1,
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for task in tasks {
        let (l, f) = task.await.unwrap();
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{} requests ({} failed) in {:.2}s over {} {} connections: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        failures,
        elapsed.as_secs_f64(),
        args.connections,
        if args.h2 { "HTTP/2" } else { "HTTP/1.1" },
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(1.0),
    );
    if failures > 0 {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    }
}
