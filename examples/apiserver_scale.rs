//! `serve` and `audit -A` against a real kube-apiserver holding N VMs (issue #22): how long
//! `serve` takes to become ready (its caches listed through the API server), compared with
//! the fastest the API server can hand over every VM (the "floor").
//!
//! ```text
//! cargo build --release
//! cargo run --release --example apiserver_scale                       # 100,000 VMs, 3 runs
//! cargo run --release --example apiserver_scale -- --vms 10000 --runs 1
//! cargo run --release --example apiserver_scale -- --serve-arg=--some-flag --serve-arg=VALUE
//! cargo run --release --example apiserver_scale -- --json             # the figures as JSON
//! cargo run --release --example apiserver_scale -- --apiserver-arg=--feature-gates=DetectCacheInconsistency=false
//! cargo run --release --example apiserver_scale -- --vms 20000 --hold # load, then wait
//! ```
//!
//! Starts etcd and kube-apiserver (the harness of `tests/apiserver.rs`,
//! `tests/support/apiserver.rs`: binaries of `tests/apiserver/build.sh`, files in a temporary
//! directory removed at exit, every process killed at exit, on panic or on Ctrl-C), then
//! stores the VMs of `examples/support/scale_cluster.rs` through it, spread over
//! `--namespaces` namespaces (3 NICs each, MACs and address requests, ten planted
//! violations), and the three NADs they use. No webhook is registered. Creates run
//! `--concurrency` at once (kube-rs, HTTP/1.1, the admin user, exempt from API Priority and
//! Fairness); each VM's `status` (a running VM's) is then written through its status
//! subresource (`--no-status`: left out), so the stored VMs are what KubeVirt keeps.
//!
//! kube-apiserver loads with its watch cache off (`--watch-cache=false`), then is restarted
//! with it on (the default) before anything is measured. With the cache on during the load,
//! its event history (up to 102,400 events, each VM's object before and after its status
//! write) held about twice the VMs decoded: 3.6 GB of RSS at 10,000 VMs, more than this
//! machine has at 100,000. Restarted, it holds each VM once, as an API server that has run a
//! while does: still about 15 GiB of RSS at 100,000 VMs, and 23 GiB (all this machine has)
//! during the second run, Go's collector letting the heap grow to twice what is live. So it
//! is restarted with `GOMEMLIMIT=16GiB` (`--apiserver-memory-limit`), which makes it collect
//! sooner instead; at 12 GiB, about what is live, it spent both cores collecting and every
//! list took minutes. The first unpaged list after the restart waits for the cache to fill; it is
//! printed, not counted.
//!
//! The etcd of `tests/apiserver/build.sh` is Debian's 3.4.23, which sends no progress
//! notifications: kube-apiserver then serves lists without a resourceVersion (`serve`'s and
//! `audit`'s pages) from etcd, each page decoded anew, not from its watch cache as with a
//! production etcd (3.5.13 and later). The output says which it was.
//!
//! Then `--runs` times, in turns, each start after a floor of its own:
//!
//! - **floor**: one `GET /apis/kubevirt.io/v1/virtualmachines?resourceVersion=0` (no limit:
//!   the whole list from the API server's watch cache), the body read and dropped chunk by
//!   chunk; wall time from sending the request to its last byte, and the bytes. kube-rs asks
//!   for no compression, and neither does `serve`.
//! - **serve**: the release binary `serve` (next to this example's directory:
//!   `target/release/`) with `KUBECONFIG` set to the API server's, a certificate, free ports
//!   and `--serve-arg`s, its admin `/readyz` polled every 50 ms: the time from spawning it to
//!   the first 200 (NAD, VM and VMI caches listed and watching), its RSS (VmRSS) and peak RSS
//!   (VmHWM) then, and its cache's VM and NAD counts from `/metrics`, which must be N and 3.
//!   Then SIGTERM, and its exit awaited. Not ready within `--ready-timeout` (300 s) is a
//!   failed run, not a hang.
//! - **pages** (`--pages`): `serve` as above with `--list-mode pages`, the mode it falls back
//!   to when the API server refuses or cuts off the unpaged list.
//! - **audit**: `/usr/bin/time -f '%e %M' kubevirt-net-webhook audit -A -o json` with the same
//!   kubeconfig: wall time and peak RSS. It must exit 1 with exactly the planted rows and the
//!   summary line counting N objects (`--skip-audit`: not run).
//!
//! and each one's ratio to a floor measured just before it (three floors a run: the API
//! server's pace drifts on this machine; one run's floor took 1.65× the one of the run before,
//! minutes apart). Prints one row per run and the medians
//! (`--json`: a JSON document instead), after the load's rate and the RSS of kube-apiserver and
//! etcd after loading and at the end. Also the 1-minute load average at the start of each
//! run: on this 2-core machine, anything else running shows in every figure. And what
//! kube-apiserver did from just before each floor to the end of its start, from its
//! `/metrics` (`ApiServerWork`): how many times it compared its watch cache of VMs with etcd
//! (the `DetectCacheInconsistency` check of 1.34+, every 5 to 7.5 minutes per resource, which
//! reads and digests every VM from etcd on the same cores), how many VMs it read from etcd
//! for lists, and its CPU seconds: a start slowed by the API server, not by the webhook,
//! shows there. `--apiserver-arg=--feature-gates=DetectCacheInconsistency=false` turns the
//! check off.
//! Exits 1 if a measurement failed.
//!
//! `--hold` stops after loading: prints the kubeconfig and URL, and keeps the API server until
//! Ctrl-C, to try `serve` or curl against it by hand.
use std::{
    io::Write as _,
    net::SocketAddr,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use clap::Parser;
use futures::{StreamExt as _, stream};
use http_body_util::BodyExt as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

#[path = "../tests/support/apiserver.rs"]
mod apiserver;
#[path = "../tests/support/fixtures.rs"]
mod fixtures;
#[path = "support/scale_cluster.rs"]
mod scale_cluster;

use apiserver::{ApiServer, Process, free_port, http_get, tail};
use scale_cluster::{Cluster, nads};

/// Stores N VMs in a real kube-apiserver; times `serve` to ready and `audit -A` against the
/// floor (one unpaged list from the watch cache).
#[derive(Debug, Parser)]
struct Args {
    /// Stored VMs in all (at least 100: the planted violations).
    #[arg(long, default_value_t = 100_000)]
    vms: usize,
    /// Namespaces the VMs spread over: VM i is in tenant-{i % namespaces}.
    #[arg(long, default_value_t = 100)]
    namespaces: usize,
    /// Runs of floor, serve and audit, in turns.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// After loading, print the kubeconfig and URL and wait for Ctrl-C (no runs).
    #[arg(long)]
    hold: bool,
    /// Leave `audit -A` out of the runs.
    #[arg(long)]
    skip_audit: bool,
    /// Also time `serve --list-mode pages` in each run: what a replica falls back to when
    /// the API server refuses the unpaged list (pages of `--list-page-size`, 5,000 unless a
    /// `--serve-arg` says otherwise).
    #[arg(long)]
    pages: bool,
    /// An argument for `serve` (repeatable), after the ones this sets (certificate, ports,
    /// `--shutdown-delay 0s`); e.g. `--serve-arg=--flag --serve-arg=value`.
    #[arg(long = "serve-arg", value_name = "ARG", allow_hyphen_values = true)]
    serve_args: Vec<String>,
    /// Print the figures as one JSON document instead of a table.
    #[arg(long)]
    json: bool,
    /// Create requests in flight while loading.
    #[arg(long, default_value_t = 48)]
    concurrency: usize,
    /// Store the VMs without their status.
    #[arg(long)]
    no_status: bool,
    /// Seconds `serve` has to become ready before its run counts as failed.
    #[arg(long, default_value_t = 300)]
    ready_timeout: u64,
    /// Seconds `audit` has before its run counts as failed.
    #[arg(long, default_value_t = 600)]
    audit_timeout: u64,
    /// GOMEMLIMIT of kube-apiserver once restarted for the runs (`off`: none). Without one,
    /// at 100,000 VMs its RSS went from 15 GiB (watch cache filled) to 23 GiB, all this
    /// machine has, during the second run: Go's collector lets the heap reach twice what is
    /// live before it collects. Too close to what is live (12 GiB), it collects all the time.
    #[arg(long, value_name = "BYTES", default_value = "16GiB")]
    apiserver_memory_limit: String,
    /// An argument for kube-apiserver once restarted for the runs (repeatable), e.g.
    /// `--apiserver-arg=--feature-gates=DetectCacheInconsistency=false`: the check that
    /// compares each resource's watch cache with etcd every 5 to 7.5 minutes, which at
    /// 100,000 VMs reads and digests all of them again on the same cores.
    #[arg(long = "apiserver-arg", value_name = "ARG", allow_hyphen_values = true)]
    apiserver_args: Vec<String>,
    /// Copy the logs (kube-apiserver, etcd, each serve run) here at the end.
    #[arg(long, value_name = "DIR")]
    keep_logs: Option<PathBuf>,
    /// The binary to run. Default: `kubevirt-net-webhook` in the directory above this
    /// example's (`target/release/`).
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
}

fn vm_resource() -> ApiResource {
    ApiResource {
        group: "kubevirt.io".into(),
        version: "v1".into(),
        api_version: "kubevirt.io/v1".into(),
        kind: "VirtualMachine".into(),
        plural: "virtualmachines".into(),
    }
}

fn nad_resource() -> ApiResource {
    ApiResource {
        group: "k8s.cni.cncf.io".into(),
        version: "v1".into(),
        api_version: "k8s.cni.cncf.io/v1".into(),
        kind: "NetworkAttachmentDefinition".into(),
        plural: "network-attachment-definitions".into(),
    }
}

const MIB: f64 = (1 << 20) as f64;

/// VmRSS and VmHWM of a process, in MiB.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss: f64,
    peak: f64,
}

impl Memory {
    fn of(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<f64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            let kib: f64 = line[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            Some(kib / 1024.0)
        };
        Some(Self {
            rss: field("VmRSS:")?,
            peak: field("VmHWM:")?,
        })
    }

    fn json(&self) -> Value {
        json!({"rss_mib": round1(self.rss), "peak_mib": round1(self.peak)})
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `etcd --version`'s version, of the etcd the harness runs.
fn etcd_version() -> String {
    apiserver::binaries()
        .ok()
        .and_then(|dir| {
            Command::new(dir.join("etcd"))
                .arg("--version")
                .output()
                .ok()
        })
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("etcd Version: ").map(str::to_string))
        })
        .unwrap_or_else(|| "(unknown version)".into())
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Retries a request that failed for a reason that may pass (timeouts, 429, 5xx, the
/// connection); `done_if_exists`: a 409 after a retried create means the first one landed.
async fn with_retries<T, F, Fut>(
    what: &str,
    done_if_exists: bool,
    f: F,
) -> Result<Option<T>, String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(Some(v)),
            Err(kube::Error::Api(e)) if e.code == 409 && done_if_exists && attempt > 0 => {
                return Ok(None);
            }
            Err(e) if attempt < 5 => {
                let retry = match &e {
                    kube::Error::Api(s) => s.code == 429 || s.code >= 500,
                    _ => true,
                };
                if !retry {
                    return Err(format!("{what}: {e}"));
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            Err(e) => return Err(format!("{what}: {e} (after {attempt} retries)")),
        }
    }
}

/// What loading took.
struct Load {
    seconds: f64,
    /// Seconds of the creates alone (the status writes follow).
    create_seconds: f64,
    requests: usize,
}

/// Creates the namespaces, the NADs and the VMs (then their status), `concurrency` requests
/// in flight.
async fn load(
    client: &Client,
    cluster: &Cluster,
    concurrency: usize,
    status: bool,
) -> Result<Load, String> {
    let started = Instant::now();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names = (0..cluster.namespaces)
        .map(|n| cluster.namespace(n))
        .chain(["infra".to_string()]);
    for name in names {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .map_err(|e| format!("namespace {name}: {e}"))?;
    }
    let nad_api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "infra", &nad_resource());
    for nad in nads() {
        nad_api
            .create(
                &PostParams::default(),
                &serde_json::from_value(nad).unwrap(),
            )
            .await
            .map_err(|e| format!("NAD: {e}"))?;
    }

    let done = AtomicUsize::new(0);
    let step = (cluster.vms / 10).max(1);
    let progress = |phase: &str, started: Instant| {
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(step) {
            let s = started.elapsed().as_secs_f64();
            eprintln!(
                "  {phase}: {n}/{} in {s:.1} s ({:.0}/s)",
                cluster.vms,
                n as f64 / s
            );
        }
    };
    let resource = vm_resource();
    let creates = Instant::now();
    let mut results = stream::iter(0..cluster.vms)
        .map(|i| {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &cluster.namespace(i), &resource);
            let object: DynamicObject = serde_json::from_value(cluster.vm_to_create(i)).unwrap();
            let progress = &progress;
            async move {
                let what = format!("create VM {}", scale_cluster::name(i));
                let params = PostParams::default();
                with_retries(&what, true, || api.create(&params, &object)).await?;
                progress("created", creates);
                Ok::<_, String>(())
            }
        })
        .buffer_unordered(concurrency);
    while let Some(result) = results.next().await {
        result?;
    }
    drop(results);
    let create_seconds = creates.elapsed().as_secs_f64();
    let mut requests = cluster.vms;
    if status {
        done.store(0, Ordering::Relaxed);
        let statuses = Instant::now();
        let mut results = stream::iter(0..cluster.vms)
            .map(|i| {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), &cluster.namespace(i), &resource);
                let patch = json!({"status": cluster.vm(i)["status"]});
                let progress = &progress;
                async move {
                    let name = scale_cluster::name(i);
                    let what = format!("status of VM {name}");
                    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
                    with_retries(&what, false, || api.patch_status(&name, &params, &patch)).await?;
                    progress("status written", statuses);
                    Ok::<_, String>(())
                }
            })
            .buffer_unordered(concurrency);
        while let Some(result) = results.next().await {
            result?;
        }
        requests += cluster.vms;
    }
    Ok(Load {
        seconds: started.elapsed().as_secs_f64(),
        create_seconds,
        requests,
    })
}

/// The VMs stored, by the API server's count (one object and `remainingItemCount`).
async fn count_vms(client: &Client) -> Result<u64, String> {
    let request = hyper::Request::get("/apis/kubevirt.io/v1/virtualmachines?limit=1")
        .body(Vec::new())
        .unwrap();
    let list: Value = client.request(request).await.map_err(|e| e.to_string())?;
    let items = list["items"].as_array().map_or(0, Vec::len) as u64;
    Ok(items + list["metadata"]["remainingItemCount"].as_u64().unwrap_or(0))
}

/// What kube-apiserver did, from its `/metrics`: counters read before a floor and after the
/// start that follows it, so that a slow start can be told from a slow API server.
#[derive(Debug, Clone, Copy, Default)]
struct ApiServerWork {
    /// Times it compared its watch cache of VMs with etcd
    /// (`apiserver_storage_consistency_checks_total`, any outcome): each check reads and
    /// digests every VM from etcd on the same cores.
    vm_cache_checks: f64,
    /// VMs it read from etcd to serve lists (`apiserver_storage_list_fetched_objects_total`),
    /// not from its watch cache: a page served so is decoded anew.
    vms_from_etcd: f64,
    /// Its CPU time (`process_cpu_seconds_total`).
    cpu_seconds: f64,
}

impl ApiServerWork {
    async fn read(client: &Client) -> Result<Self, String> {
        let request = hyper::Request::get("/metrics").body(Vec::new()).unwrap();
        let text = client
            .request_text(request)
            .await
            .map_err(|e| e.to_string())?;
        let sum = |name: &str, labels: &[&str]| -> f64 {
            (text.lines())
                .filter(|l| {
                    l.strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with(['{', ' ']))
                })
                .filter(|l| labels.iter().all(|label| l.contains(label)))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let vms = [r#"group="kubevirt.io""#, r#"resource="virtualmachines""#];
        Ok(Self {
            vm_cache_checks: sum("apiserver_storage_consistency_checks_total", &vms),
            vms_from_etcd: sum("apiserver_storage_list_fetched_objects_total", &vms),
            cpu_seconds: sum("process_cpu_seconds_total", &[]),
        })
    }

    /// What happened between `before` and `self`.
    fn since(self, before: Self) -> Self {
        Self {
            vm_cache_checks: self.vm_cache_checks - before.vm_cache_checks,
            vms_from_etcd: self.vms_from_etcd - before.vms_from_etcd,
            cpu_seconds: self.cpu_seconds - before.cpu_seconds,
        }
    }

    fn json(&self) -> Value {
        json!({"vm_cache_checks": self.vm_cache_checks, "vms_from_etcd": self.vms_from_etcd,
            "cpu_seconds": round1(self.cpu_seconds)})
    }
}

/// Measures the floor, then runs `start` (a start of `serve`, or `audit`), and returns both
/// with kube-apiserver's work from just before the floor to the end of the start. The floor
/// comes again before each start: the API server's pace drifts within a run (its collector,
/// near its memory limit), and a start is compared with what it could hand over at that time.
fn floored<T>(
    runtime: &tokio::runtime::Runtime,
    client: &Client,
    what: &str,
    start: impl FnOnce() -> T,
) -> (Result<Floor, String>, T, Option<ApiServerWork>) {
    let before = runtime.block_on(ApiServerWork::read(client));
    let floor = runtime.block_on(floor(client));
    match &floor {
        Ok(f) => eprintln!(
            "  floor before {what}: {:.2} s, {:.1} MiB",
            f.seconds,
            f.bytes as f64 / MIB
        ),
        Err(e) => eprintln!("  floor before {what} FAILED: {e}"),
    }
    let started = start();
    let work = match (before, runtime.block_on(ApiServerWork::read(client))) {
        (Ok(before), Ok(now)) => {
            let during = now.since(before);
            eprintln!(
                "  kube-apiserver meanwhile: {} consistency checks of VMs, {} VMs read from \
                 etcd, {:.1} s of CPU",
                during.vm_cache_checks, during.vms_from_etcd, during.cpu_seconds
            );
            Some(during)
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("  kube-apiserver's /metrics not read: {e}");
            None
        }
    };
    (floor, started, work)
}

/// One unpaged list of every VM from the watch cache, the body counted and dropped.
struct Floor {
    seconds: f64,
    bytes: u64,
}

async fn floor(client: &Client) -> Result<Floor, String> {
    let request = hyper::Request::get("/apis/kubevirt.io/v1/virtualmachines?resourceVersion=0")
        .body(kube::client::Body::empty())
        .unwrap();
    let started = Instant::now();
    let response = client.send(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let mut body = response.into_body();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("after {bytes} bytes: {e}"))?;
        if let Some(data) = frame.data_ref() {
            bytes += data.len() as u64;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if status != hyper::StatusCode::OK {
        return Err(format!("HTTP {status} ({bytes} bytes)"));
    }
    Ok(Floor { seconds, bytes })
}

/// `serve` from spawn to ready.
struct Serve {
    seconds: f64,
    memory: Memory,
    /// Its exit after SIGTERM, or why it is not clean.
    stop: Result<(), String>,
}

/// The cache's object count for `kind` from serve's `/metrics`.
fn cached(admin: SocketAddr, kind: &str) -> Option<u64> {
    let prefix = format!("kubevirt_net_webhook_cache_objects{{kind=\"{kind}\"}} ");
    let (_, metrics) = http_get(admin, "/metrics");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

fn serve_once(
    api: &ApiServer,
    bin: &Path,
    extra: &[String],
    dir: &Path,
    cluster: &Cluster,
    timeout: Duration,
) -> Result<Serve, String> {
    std::fs::create_dir_all(dir).unwrap();
    let (crt, key) = api.pki.serving(dir, "tls");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut command = Command::new(bin);
    command
        .arg("serve")
        .arg("--tls-cert")
        .arg(&crt)
        .arg("--tls-key")
        .arg(&key)
        .arg(format!("--listen={addr}"))
        .arg(format!("--admin-listen={admin}"))
        .args(["--shutdown-delay", "0s"])
        .args(extra)
        .env("KUBECONFIG", &api.kubeconfig)
        // As deploy/ runs it: freed memory goes back to the system at once.
        .env("MIMALLOC_PURGE_DELAY", "0");
    let started = Instant::now();
    let mut serve = Process::spawn("serve", command, dir, "serve.log");
    loop {
        if http_get(admin, "/readyz").0 == 200 {
            break;
        }
        if let Some(status) = serve.exited() {
            return Err(format!(
                "exited ({status}) before ready; its log:\n{}",
                tail(&serve.log, 20)
            ));
        }
        if started.elapsed() > timeout {
            let memory = Memory::of(serve.pid()).unwrap_or_default();
            let vms = cached(admin, "vm");
            serve.terminate(Duration::from_secs(10));
            return Err(format!(
                "not ready after {} s (RSS {:.0} MiB, peak {:.0} MiB, VMs cached: {vms:?}); its log:\n{}",
                timeout.as_secs(),
                memory.rss,
                memory.peak,
                tail(&serve.log, 20)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let seconds = started.elapsed().as_secs_f64();
    let memory = Memory::of(serve.pid()).ok_or("serve's /proc entry is gone")?;
    let (vms, nads) = (cached(admin, "vm"), cached(admin, "nad"));
    let stop = match serve.terminate(Duration::from_secs(30)) {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(format!("exited {status} after SIGTERM")),
        None => Err("still running 30 s after SIGTERM (killed)".into()),
    };
    if vms != Some(cluster.vms as u64) || nads != Some(3) {
        return Err(format!(
            "ready with {vms:?} VMs and {nads:?} NADs cached, not {} and 3",
            cluster.vms
        ));
    }
    Ok(Serve {
        seconds,
        memory,
        stop,
    })
}

/// `audit -A -o json`: wall time and peak RSS.
struct Audit {
    seconds: f64,
    peak_mib: f64,
}

fn audit_once(
    api: &ApiServer,
    bin: &Path,
    dir: &Path,
    cluster: &Cluster,
    timeout: Duration,
) -> Result<Audit, String> {
    std::fs::create_dir_all(dir).unwrap();
    let (times, out, err) = (dir.join("time"), dir.join("stdout"), dir.join("stderr"));
    let file = |p: &Path| std::fs::File::create(p).unwrap();
    let started = Instant::now();
    // Its own process group: on a timeout, `time` and `audit` go together.
    let mut child = Command::new("/usr/bin/time")
        .args(["-f", "%e %M", "-o"])
        .arg(&times)
        .arg(bin)
        .args(["audit", "-A", "-o", "json"])
        .env("KUBECONFIG", &api.kubeconfig)
        .stdin(Stdio::null())
        .stdout(file(&out))
        .stderr(file(&err))
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run /usr/bin/time (apt-get install -y time): {e}"))?;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            return Err(format!("not done after {} s", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    // GNU time writes "Command exited with non-zero status 1" first, the figures last.
    let text = std::fs::read_to_string(&times).map_err(|e| format!("{}: {e}", times.display()))?;
    let figures: Vec<&str> = text
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let [wall, peak] = figures[..] else {
        return Err(format!("unexpected /usr/bin/time output: {text:?}"));
    };
    let audit = Audit {
        seconds: wall.parse().map_err(|e| format!("{wall:?}: {e}"))?,
        peak_mib: peak.parse::<f64>().map_err(|e| format!("{peak:?}: {e}"))? / 1024.0,
    };
    if status.code() != Some(1) {
        return Err(format!(
            "exited {:?}, not 1 (violations found); stderr:\n{stderr}",
            status.code()
        ));
    }
    let summary = cluster.expected_summary();
    if stderr.trim_end() != summary {
        return Err(format!("stderr is not {summary:?}:\n{stderr}"));
    }
    cluster.check_rows(&std::fs::read(&out).unwrap_or_default())?;
    Ok(audit)
}

/// A floor measured just before a start.
type Floored<T> = (Result<Floor, String>, Result<T, String>);

/// One run's figures (or why a measurement failed).
struct Run {
    loadavg: f64,
    /// The floor just before `serve`.
    floor: Result<Floor, String>,
    serve: Result<Serve, String>,
    /// `serve --list-mode pages` (`--pages`), with the floor just before it.
    pages: Option<Floored<Serve>>,
    /// `audit -A`, with the floor just before it.
    audit: Option<Floored<Audit>>,
    /// kube-apiserver's work from just before each floor to the end of its start (serve,
    /// pages, audit); `None` when not run or not read.
    work: [Option<ApiServerWork>; 3],
}

fn seconds(floor: &Result<Floor, String>) -> Option<f64> {
    floor.as_ref().ok().map(|f| f.seconds)
}

impl Run {
    fn floor_seconds(&self) -> Option<f64> {
        seconds(&self.floor)
    }

    fn pages(&self) -> Option<(f64, &Serve)> {
        let (floor, pages) = self.pages.as_ref()?;
        Some((seconds(floor)?, pages.as_ref().ok()?))
    }

    fn audit(&self) -> Option<(f64, &Audit)> {
        let (floor, audit) = self.audit.as_ref()?;
        Some((seconds(floor)?, audit.as_ref().ok()?))
    }

    fn json(&self, number: usize) -> Value {
        let failed = |e: &String| json!({"ok": false, "error": e});
        let floor = |floor: &Result<Floor, String>| match floor {
            Ok(f) => json!({"ok": true, "seconds": round3(f.seconds), "bytes": f.bytes}),
            Err(e) => failed(e),
        };
        let ratio = |s: f64, floor: &Result<Floor, String>| seconds(floor).map(|f| round3(s / f));
        let serve = |serve: &Result<Serve, String>, before: &Result<Floor, String>| match serve {
            Ok(s) => json!({"ok": true, "ready_seconds": round3(s.seconds),
                "floor": floor(before), "vs_floor": ratio(s.seconds, before),
                "rss_mib": round1(s.memory.rss), "peak_mib": round1(s.memory.peak),
                "stop": match &s.stop { Ok(()) => "clean".to_string(), Err(e) => e.clone() }}),
            Err(e) => failed(e),
        };
        json!({
            "run": number,
            "loadavg_1m": self.loadavg,
            "serve": serve(&self.serve, &self.floor),
            "pages": self.pages.as_ref().map(|(before, pages)| serve(pages, before)),
            "audit": match &self.audit {
                None => Value::Null,
                Some((before, Ok(a))) => json!({"ok": true, "seconds": a.seconds,
                    "floor": floor(before), "vs_floor": ratio(a.seconds, before),
                    "peak_mib": round1(a.peak_mib)}),
                Some((_, Err(e))) => failed(e),
            },
            "kube_apiserver": {"serve": self.work[0].map(|w| w.json()),
                "pages": self.work[1].map(|w| w.json()), "audit": self.work[2].map(|w| w.json())},
        })
    }
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

fn cell(x: Option<f64>, decimals: usize) -> String {
    x.map_or("—".into(), |x| format!("{x:.decimals$}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.vms < 100 || args.namespaces == 0 || args.runs == 0 || args.concurrency == 0 {
        eprintln!("--vms must be at least 100; --namespaces, --runs and --concurrency at least 1");
        return ExitCode::FAILURE;
    }
    let cluster = Cluster {
        vms: args.vms,
        namespaces: args.namespaces,
    };
    let bin = args.bin.clone().unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("this example's path");
        // target/release/examples/apiserver_scale -> target/release/kubevirt-net-webhook
        exe.parent()
            .and_then(Path::parent)
            .expect("target/<profile>/examples")
            .join("kubevirt-net-webhook")
    });
    if !args.hold && !bin.is_file() {
        eprintln!(
            "{}: not found; run `cargo build --release` first",
            bin.display()
        );
        return ExitCode::FAILURE;
    }
    if !args.hold && !args.skip_audit && !Path::new("/usr/bin/time").is_file() {
        eprintln!("/usr/bin/time: not found (apt-get install -y time), or pass --skip-audit");
        return ExitCode::FAILURE;
    }
    // Loading without the watch cache: see the top of this file.
    let Some(mut api) = ApiServer::start_with(&["--watch-cache=false"]) else {
        return ExitCode::FAILURE;
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let client = runtime.block_on(api.client());

    eprintln!(
        "loading {} VMs in {} namespaces ({} requests in flight{})",
        cluster.vms,
        cluster.namespaces,
        args.concurrency,
        if args.no_status {
            ", no status"
        } else {
            ", then their status"
        }
    );
    let load = match runtime.block_on(load(&client, &cluster, args.concurrency, !args.no_status)) {
        Ok(load) => load,
        Err(e) => {
            eprintln!("loading failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let etcd_db = std::fs::metadata(api.dir.path().join("etcd/member/snap/db"))
        .map(|m| m.len() as f64 / MIB)
        .unwrap_or(f64::NAN);
    let loaded = [
        Memory::of(api.apiserver.pid()).unwrap_or_default(),
        Memory::of(api.etcd.pid()).unwrap_or_default(),
    ];
    eprintln!(
        "loaded {} VMs in {:.1} s: {:.0} creates/s ({:.1} s), {:.0} requests/s in all; \
         etcd db {etcd_db:.0} MiB; RSS (peak) kube-apiserver {:.0} ({:.0}) MiB, etcd {:.0} ({:.0}) MiB",
        cluster.vms,
        load.seconds,
        cluster.vms as f64 / load.create_seconds,
        load.create_seconds,
        load.requests as f64 / load.seconds,
        loaded[0].rss,
        loaded[0].peak,
        loaded[1].rss,
        loaded[1].peak,
    );
    drop(client);
    let gomemlimit = (args.apiserver_memory_limit != "off")
        .then_some(("GOMEMLIMIT", args.apiserver_memory_limit.as_str()));
    let apiserver_args: Vec<&str> = args.apiserver_args.iter().map(String::as_str).collect();
    api.restart_apiserver(&apiserver_args, gomemlimit.as_slice());
    let client = runtime.block_on(api.client());
    // The VM resource is served a moment after /readyz (the CRD's handler is set up on its
    // first request, its watch cache filled from etcd then).
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        match runtime.block_on(count_vms(&client)) {
            Ok(n) if n == cluster.vms as u64 => break,
            other if Instant::now() > until => {
                eprintln!("the API server counts {other:?} VMs, not {}", cluster.vms);
                return ExitCode::FAILURE;
            }
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    }
    // It waits for the watch cache to fill, which may outlast kube-apiserver's request
    // timeout (60 s): tried again until it succeeds.
    let filling = Instant::now();
    let warm_up = loop {
        match runtime.block_on(floor(&client)) {
            Ok(f) => break f,
            Err(e) if filling.elapsed() < Duration::from_secs(900) => {
                eprintln!("first unpaged list: {e}; again");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => {
                eprintln!("the first unpaged list of every VM failed for 900 s: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let fill_seconds = filling.elapsed().as_secs_f64();
    let restarted = [
        Memory::of(api.apiserver.pid()).unwrap_or_default(),
        Memory::of(api.etcd.pid()).unwrap_or_default(),
    ];
    eprintln!(
        "watch cache filled; first unpaged list (not counted): {fill_seconds:.2} s, {:.1} MiB; \
         RSS (peak) kube-apiserver {:.0} ({:.0}) MiB, etcd {:.0} ({:.0}) MiB",
        warm_up.bytes as f64 / MIB,
        restarted[0].rss,
        restarted[0].peak,
        restarted[1].rss,
        restarted[1].peak,
    );

    // etcd before 3.4.31 and 3.5.13 sends no progress notifications: kube-apiserver then
    // serves no consistent list (resourceVersion unset: serve's and audit's pages) from its
    // watch cache, but from etcd, each page decoded anew; a production etcd does.
    let etcd = etcd_version();
    let consistent_from = if std::fs::read_to_string(&api.apiserver.log)
        .unwrap_or_default()
        .contains("RequestWatchProgress feature is not supported")
    {
        "etcd"
    } else {
        "the watch cache"
    };
    eprintln!("etcd {etcd}: lists without resourceVersion are served from {consistent_from}");

    if args.hold {
        let (crt, key) = api.pki.serving(api.dir.path(), "serve");
        println!("kube-apiserver {} at {}", apiserver::version(), api.url);
        println!("export KUBECONFIG={}", api.kubeconfig.display());
        println!(
            "{} serve --tls-cert {} --tls-key {} --listen 127.0.0.1:{} --admin-listen 127.0.0.1:{}",
            bin.display(),
            crt.display(),
            key.display(),
            free_port(),
            free_port()
        );
        println!(
            "holding: Ctrl-C stops etcd and kube-apiserver and removes their files ({})",
            api.dir.path().display()
        );
        let _ = std::io::stdout().flush();
        let _ = runtime.block_on(tokio::signal::ctrl_c());
        eprintln!("stopping");
        return ExitCode::SUCCESS;
    }

    let scratch = api.dir.path().join("runs");
    let mut runs = Vec::new();
    for n in 1..=args.runs {
        let loadavg = loadavg();
        eprintln!("run {n}/{}: floor (load average {loadavg:.2})", args.runs);
        // One start of `serve` with `extra` arguments after the `--serve-arg`s, reported.
        let serve_run = |label: &str, extra: &[&str]| {
            eprintln!("run {n}/{}: serve {}", args.runs, extra.join(" "));
            let serve_args: Vec<String> = (args.serve_args.iter().map(String::as_str))
                .chain(extra.iter().copied())
                .map(String::from)
                .collect();
            let serve = serve_once(
                &api,
                &bin,
                &serve_args,
                &scratch.join(format!("{label}-{n}")),
                &cluster,
                Duration::from_secs(args.ready_timeout),
            );
            match &serve {
                Ok(s) => eprintln!(
                    "  {label}: ready in {:.2} s, RSS {:.0} MiB, peak {:.0} MiB{}",
                    s.seconds,
                    s.memory.rss,
                    s.memory.peak,
                    s.stop
                        .as_ref()
                        .err()
                        .map_or(String::new(), |e| format!("; {e}"))
                ),
                Err(e) => eprintln!("  {label} FAILED: {e}"),
            }
            serve
        };
        let (floor, serve, serve_work) =
            floored(&runtime, &client, "serve", || serve_run("serve", &[]));
        let pages = args.pages.then(|| {
            floored(&runtime, &client, "pages", || {
                serve_run("pages", &["--list-mode", "pages"])
            })
        });
        let audit = (!args.skip_audit).then(|| {
            floored(&runtime, &client, "audit", || {
                eprintln!("run {n}/{}: audit", args.runs);
                let audit = audit_once(
                    &api,
                    &bin,
                    &scratch.join(format!("audit-{n}")),
                    &cluster,
                    Duration::from_secs(args.audit_timeout),
                );
                match &audit {
                    Ok(a) => eprintln!("  audit: {:.2} s, peak {:.0} MiB", a.seconds, a.peak_mib),
                    Err(e) => eprintln!("  audit FAILED: {e}"),
                }
                audit
            })
        });
        runs.push(Run {
            loadavg,
            floor,
            serve,
            work: [
                serve_work,
                pages.as_ref().and_then(|p| p.2),
                audit.as_ref().and_then(|a| a.2),
            ],
            pages: pages.map(|(floor, pages, _)| (floor, pages)),
            audit: audit.map(|(floor, audit, _)| (floor, audit)),
        });
    }
    let end = [
        Memory::of(api.apiserver.pid()).unwrap_or_default(),
        Memory::of(api.etcd.pid()).unwrap_or_default(),
    ];
    if let Some(dir) = &args.keep_logs {
        std::fs::create_dir_all(dir).expect("--keep-logs directory");
        let mut logs = vec![api.apiserver.log.clone(), api.etcd.log.clone()];
        for n in 1..=args.runs {
            logs.push(scratch.join(format!("serve-{n}/serve.log")));
            if args.pages {
                logs.push(scratch.join(format!("pages-{n}/serve.log")));
            }
        }
        for log in logs {
            let name = log.strip_prefix(api.dir.path()).unwrap_or(&log);
            let to = dir.join(name.to_string_lossy().replace('/', "-"));
            let _ = std::fs::copy(&log, to);
        }
    }

    let ok = |f: &dyn Fn(&Run) -> Option<f64>| -> Vec<f64> { runs.iter().filter_map(f).collect() };
    let floor_s = ok(&|r| r.floor_seconds());
    let floor_mib = ok(&|r| r.floor.as_ref().ok().map(|f| f.bytes as f64 / MIB));
    let serve_s = ok(&|r| r.serve.as_ref().ok().map(|s| s.seconds));
    let serve_ratio = ok(&|r| Some(r.serve.as_ref().ok()?.seconds / r.floor_seconds()?));
    let serve_rss = ok(&|r| r.serve.as_ref().ok().map(|s| s.memory.rss));
    let serve_peak = ok(&|r| r.serve.as_ref().ok().map(|s| s.memory.peak));
    let pages_floor = ok(&|r| r.pages().map(|(f, _)| f));
    let pages_s = ok(&|r| r.pages().map(|(_, p)| p.seconds));
    let pages_ratio = ok(&|r| r.pages().map(|(f, p)| p.seconds / f));
    let pages_rss = ok(&|r| r.pages().map(|(_, p)| p.memory.rss));
    let audit_floor = ok(&|r| r.audit().map(|(f, _)| f));
    let audit_s = ok(&|r| r.audit().map(|(_, a)| a.seconds));
    let audit_ratio = ok(&|r| r.audit().map(|(f, a)| a.seconds / f));
    let audit_peak = ok(&|r| r.audit().map(|(_, a)| a.peak_mib));
    let failures: Vec<String> = runs
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            let mut f = Vec::new();
            let floors = [
                ("serve", Some(&r.floor)),
                ("pages", r.pages.as_ref().map(|p| &p.0)),
                ("audit", r.audit.as_ref().map(|a| &a.0)),
            ];
            for (before, floor) in floors {
                if let Some(Err(e)) = floor {
                    f.push(format!("run {}: floor before {before}: {e}", i + 1));
                }
            }
            let starts = [
                ("serve", Some(&r.serve)),
                ("pages", r.pages.as_ref().map(|p| &p.1)),
            ];
            for (label, start) in starts {
                // Not ready, or not stopped cleanly.
                if let Some(Err(e) | Ok(Serve { stop: Err(e), .. })) = start {
                    f.push(format!("run {}: {label}: {e}", i + 1));
                }
            }
            if let Some((_, Err(e))) = &r.audit {
                f.push(format!("run {}: audit: {e}", i + 1));
            }
            f
        })
        .collect();

    let bytes_per_vm = runs
        .iter()
        .find_map(|r| r.floor.as_ref().ok())
        .map(|f| f.bytes as f64 / cluster.vms as f64);
    if args.json {
        let doc = json!({
            "vms": cluster.vms,
            "namespaces": cluster.namespaces,
            "kube_apiserver_version": apiserver::version(),
            "kube_apiserver_gomemlimit": args.apiserver_memory_limit,
            "kube_apiserver_args": args.apiserver_args,
            "etcd_version": etcd,
            "consistent_lists_from": consistent_from,
            "status_stored": !args.no_status,
            "serve_args": args.serve_args,
            "bin": bin,
            "load": {
                "seconds": round1(load.seconds),
                "create_seconds": round1(load.create_seconds),
                "creates_per_second": (cluster.vms as f64 / load.create_seconds).round(),
                "requests": load.requests,
                "concurrency": args.concurrency,
            },
            "etcd_db_mib": round1(etcd_db),
            "list_bytes_per_vm": bytes_per_vm.map(f64::round),
            "first_list": {"seconds": round3(fill_seconds), "bytes": warm_up.bytes},
            "kube_apiserver": {"after_load": loaded[0].json(), "restarted": restarted[0].json(),
                "end": end[0].json()},
            "etcd": {"after_load": loaded[1].json(), "restarted": restarted[1].json(),
                "end": end[1].json()},
            "runs": runs.iter().enumerate().map(|(i, r)| r.json(i + 1)).collect::<Vec<_>>(),
            "median": {
                "floor_seconds": median(floor_s).map(round3),
                "floor_mib": median(floor_mib).map(round1),
                "serve_ready_seconds": median(serve_s).map(round3),
                "serve_vs_floor": median(serve_ratio).map(round3),
                "serve_rss_mib": median(serve_rss).map(round1),
                "serve_peak_mib": median(serve_peak).map(round1),
                "pages_floor_seconds": median(pages_floor).map(round3),
                "pages_ready_seconds": median(pages_s).map(round3),
                "pages_vs_floor": median(pages_ratio).map(round3),
                "pages_rss_mib": median(pages_rss).map(round1),
                "audit_floor_seconds": median(audit_floor).map(round3),
                "audit_seconds": median(audit_s).map(round3),
                "audit_vs_floor": median(audit_ratio).map(round3),
                "audit_peak_mib": median(audit_peak).map(round1),
            },
            "failures": failures,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap());
    } else {
        println!(
            "{} VMs in {} namespaces ({}), kube-apiserver {} (GOMEMLIMIT {}{}), etcd {etcd} \
             (lists without resourceVersion from {consistent_from}); serve {}{}",
            cluster.vms,
            cluster.namespaces,
            if args.no_status {
                "no status"
            } else {
                "with status"
            },
            apiserver::version(),
            args.apiserver_memory_limit,
            args.apiserver_args
                .iter()
                .map(|a| format!(" {a}"))
                .collect::<String>(),
            bin.display(),
            args.serve_args
                .iter()
                .map(|a| format!(" {a}"))
                .collect::<String>()
        );
        println!(
            "load: {:.1} s ({:.0} creates/s, {} in flight); etcd db {etcd_db:.0} MiB; \
             list {} bytes/VM",
            load.seconds,
            cluster.vms as f64 / load.create_seconds,
            args.concurrency,
            cell(bytes_per_vm, 0)
        );
        let mib = |m: &Memory| format!("{:.0} ({:.0})", m.rss, m.peak);
        println!(
            "RSS (peak) MiB after load (no watch cache) / restarted, watch cache filled / at end: \
             kube-apiserver {} / {} / {}, etcd {} / {} / {}",
            mib(&loaded[0]),
            mib(&restarted[0]),
            mib(&end[0]),
            mib(&loaded[1]),
            mib(&restarted[1]),
            mib(&end[1]),
        );
        println!("first unpaged list after the restart (not in the table): {fill_seconds:.2} s");
        println!(
            "| run | load avg | floor s | floor MiB | serve ready s | × floor | serve RSS MiB | serve peak MiB | floor s | pages ready s | × floor | pages RSS MiB | floor s | audit s | × floor | audit peak MiB |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (i, r) in runs.iter().enumerate() {
            let f = r.floor.as_ref().ok();
            let s = r.serve.as_ref().ok();
            let fs = r.floor_seconds();
            // A floor before a start, and the start's own cell.
            let before = |floor: Option<&Result<Floor, String>>| match floor {
                None => "–".to_string(),
                Some(Err(_)) => "FAILED".to_string(),
                Some(Ok(f)) => format!("{:.2}", f.seconds),
            };
            let done = |result: Option<Result<f64, &String>>| match result {
                None => "skipped".to_string(),
                Some(Err(_)) => "FAILED".to_string(),
                Some(Ok(s)) => format!("{s:.2}"),
            };
            let (p, a) = (r.pages(), r.audit());
            let pages = done(r.pages.as_ref().map(|(_, p)| p.as_ref().map(|p| p.seconds)));
            let audit = done(r.audit.as_ref().map(|(_, a)| a.as_ref().map(|a| a.seconds)));
            println!(
                "| {} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                i + 1,
                r.loadavg,
                f.map_or("FAILED".into(), |f| format!("{:.2}", f.seconds)),
                cell(f.map(|f| f.bytes as f64 / MIB), 1),
                s.map_or("FAILED".into(), |s| format!("{:.2}", s.seconds)),
                cell(s.and_then(|s| Some(s.seconds / fs?)), 2),
                cell(s.map(|s| s.memory.rss), 0),
                cell(s.map(|s| s.memory.peak), 0),
                before(r.pages.as_ref().map(|p| &p.0)),
                pages,
                cell(p.map(|(f, p)| p.seconds / f), 2),
                cell(p.map(|(_, p)| p.memory.rss), 0),
                before(r.audit.as_ref().map(|a| &a.0)),
                audit,
                cell(a.map(|(f, a)| a.seconds / f), 2),
                cell(a.map(|(_, a)| a.peak_mib), 0),
            );
        }
        println!(
            "| median | | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(median(floor_s), 2),
            cell(median(floor_mib), 1),
            cell(median(serve_s), 2),
            cell(median(serve_ratio), 2),
            cell(median(serve_rss), 0),
            cell(median(serve_peak), 0),
            cell(median(pages_floor), 2),
            cell(median(pages_s), 2),
            cell(median(pages_ratio), 2),
            cell(median(pages_rss), 0),
            cell(median(audit_floor), 2),
            cell(median(audit_s), 2),
            cell(median(audit_ratio), 2),
            cell(median(audit_peak), 0),
        );
        println!();
        println!(
            "kube-apiserver, from before each floor to the end of its start: consistency checks \
             of its VM cache, VMs it read from etcd for lists, its CPU seconds"
        );
        println!(
            "| run | serve: checks | from etcd | CPU s | pages: checks | from etcd | CPU s | audit: checks | from etcd | CPU s |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for (i, r) in runs.iter().enumerate() {
            let cells: Vec<String> = (r.work.iter())
                .flat_map(|w| match w {
                    Some(w) => [
                        format!("{}", w.vm_cache_checks),
                        format!("{}", w.vms_from_etcd),
                        format!("{:.0}", w.cpu_seconds),
                    ],
                    None => ["–".into(), "–".into(), "–".into()],
                })
                .collect();
            println!("| {} | {} |", i + 1, cells.join(" | "));
        }
        for f in &failures {
            println!("{f}");
        }
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
