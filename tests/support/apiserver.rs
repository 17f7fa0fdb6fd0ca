//! A real kube-apiserver and etcd on loopback, the way controller-runtime's envtest runs them
//! (issue #21), and `kubevirt-net-webhook serve` registered with it.
//!
//! - [`binaries`]: where `tests/apiserver/build.sh` put kube-apiserver and etcd:
//!   `KNW_APISERVER_DIR`, else its cache directory. Missing binaries fail the test, telling to
//!   run the script, unless `KNW_SKIP_APISERVER=1` (then [`ApiServer::start`] returns `None`).
//! - [`ApiServer`]: etcd and kube-apiserver on 127.0.0.1 with free ports, certificates from a
//!   fresh CA, a static admin token in group `system:masters` and a kubeconfig for it, the
//!   ServiceAccount admission plugin off (no controller manager makes the tokens), the CRDs of
//!   `tests/data/crds/` established.
//! - [`Webhook`]: `serve` as a child process watching that API server (`KUBECONFIG`), ready
//!   once its caches synced through real watches; [`ApiServer::register_webhooks`] registers
//!   it with the webhook configurations `kubectl kustomize deploy/` renders, `clientConfig`
//!   pointed at it (`url` and `caBundle`), every other field kept.
//!
//! Every process runs in its own process group, killed (and reaped) on drop, panicking or
//! not; a watchdog shell per process kills its group if the test process dies without
//! dropping (SIGKILL, abort), when the pipe it reads from closes, and removes its temporary
//! directory. Temporary directories (certificates, etcd's data, logs) go with the drop; the
//! logs' tails are printed first when a test panics.
//!
//! Self-contained (no `super::`), so that an example can include it by path:
//! `examples/apiserver_scale.rs` does, and runs the release binary itself ([`Process`],
//! [`http_get`], [`Pki::serving`]).
#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::{Value, json};

const GO_MOD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apiserver/go.mod");
const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// A cold start takes a few seconds; this bounds a broken one.
const START_TIMEOUT: Duration = Duration::from_secs(90);
const TOKEN: &str = "kubevirt-net-webhook-test-admin";

/// The Kubernetes release `tests/apiserver/go.mod` requires (and build.sh builds).
pub fn version() -> String {
    let text = std::fs::read_to_string(GO_MOD).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("require k8s.io/kubernetes "))
        .expect("a `require k8s.io/kubernetes vX` line in tests/apiserver/go.mod")
        .trim()
        .to_string()
}

/// The directory holding `kube-apiserver` and `etcd`, or why there is none.
pub fn binaries() -> Result<PathBuf, String> {
    let dir = match std::env::var_os("KNW_APISERVER_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
                .ok_or("neither XDG_CACHE_HOME nor HOME is set")?;
            cache.join(format!("kubevirt-net-webhook/apiserver-{}", version()))
        }
    };
    for bin in ["kube-apiserver", "etcd"] {
        if !dir.join(bin).exists() {
            return Err(format!("no {bin} in {}", dir.display()));
        }
    }
    Ok(dir)
}

/// A CA and the certificates issued by it (rcgen, as `certs` does).
pub struct Pki {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(vec![]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A serving certificate for 127.0.0.1 (the URL the API server calls) and localhost,
    /// written as `dir/name.crt` and `dir/name.key`.
    pub fn serving(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (crt_path, key_path) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&crt_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (crt_path, key_path)
    }
}

/// A free port on 127.0.0.1 (free when asked: the process that takes it binds it later).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The last `lines` lines of a file (empty if it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether a process with this pid exists (a reaped child's pid is gone from /proc).
pub fn is_running(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A child process in its own process group, output to `log`; the group is killed on drop.
pub struct Process {
    pub name: &'static str,
    pub log: PathBuf,
    child: Child,
    /// `sh` killing the group once its stdin closes: the end of the test process.
    watchdog: Child,
}

impl Process {
    /// Starts `command` with its output appended to `dir/log`; `dir` is removed with the
    /// process if the test process dies without dropping it.
    pub fn spawn(name: &'static str, mut command: Command, dir: &Path, log: &str) -> Self {
        let log = dir.join(log);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({command:?}): {e}"));
        // Ignores the signals a terminal sends the whole foreground group (Ctrl-C), so it
        // outlives the test process and does its one job; the group id is the pid. `env`:
        // dash's own `kill` takes no negative pid.
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "trap '' INT HUP TERM; read -r _; env kill -KILL -- -{} 2>/dev/null; rm -rf \"$0\"",
                child.id()
            ))
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self {
            name,
            log,
            child,
            watchdog,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills its process group (SIGKILL) and reaps it; what a drop does first. Quiet when
    /// there is no group left (a process that exited by itself, such as a stopped `serve`).
    pub fn kill(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }

    /// Its exit status, if it has exited (reaped then).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM to the process (not its group), then waits up to `grace` for it to exit: its
    /// exit status, or `None` if it still runs (the drop kills it).
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let until = Instant::now() + grace;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Panics with the log's tail if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}); its log:\n{}",
                self.name,
                tail(&self.log, 40)
            );
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        self.kill();
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        // Neither server forks, so the group is empty now; say so loudly if not (a panic
        // here, maybe during unwinding, would abort).
        let left = Command::new("kill")
            .args(["-0", "--", &group])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if left {
            eprintln!(
                "LEFTOVER: process group {group} of {} still exists",
                self.name
            );
        }
    }
}

/// etcd and kube-apiserver, with an admin kubeconfig.
pub struct ApiServer {
    pub url: String,
    pub kubeconfig: PathBuf,
    pub pki: Pki,
    // Declared before `dir`: the processes stop before their files are removed.
    pub apiserver: Process,
    pub etcd: Process,
    pub dir: tempfile::TempDir,
    /// kube-apiserver's flags, less [`start_with`](Self::start_with)'s extra ones: what
    /// [`restart_apiserver`](Self::restart_apiserver) starts it with again.
    apiserver_command: Vec<std::ffi::OsString>,
}

impl ApiServer {
    /// Starts etcd and kube-apiserver, waits for `/readyz` and for the CRDs to be
    /// established. `None` (with a note) when the binaries are missing and
    /// `KNW_SKIP_APISERVER=1`; a panic saying how to build them otherwise.
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// [`start`](Self::start) with these flags added to kube-apiserver's.
    pub fn start_with(apiserver_args: &[&str]) -> Option<Self> {
        let bin = match binaries() {
            Ok(dir) => dir,
            Err(why) if std::env::var("KNW_SKIP_APISERVER").as_deref() == Ok("1") => {
                eprintln!("SKIPPED: {why}; KNW_SKIP_APISERVER=1 skips the API server tests");
                return None;
            }
            Err(why) => panic!(
                "{why}: run tests/apiserver/build.sh (it builds kube-apiserver {} and gets \
                 etcd, once) and set KNW_APISERVER_DIR to the directory it prints, or set \
                 KNW_SKIP_APISERVER=1 to skip these tests",
                version()
            ),
        };
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("knw-apiserver-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let pki = Pki::new();
        let (crt, key) = pki.serving(d, "apiserver");
        std::fs::write(d.join("ca.crt"), pki.ca_pem()).unwrap();
        // The service-account token signer: kube-apiserver refuses to start without one.
        let sa = KeyPair::generate().unwrap();
        std::fs::write(d.join("sa.key"), sa.serialize_pem()).unwrap();
        std::fs::write(d.join("sa.pub"), sa.public_key_pem()).unwrap();
        std::fs::write(
            d.join("tokens.csv"),
            format!("{TOKEN},admin,admin,\"system:masters\"\n"),
        )
        .unwrap();

        let (client, peer, secure) = (free_port(), free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut etcd = Command::new(bin.join("etcd"));
        etcd.arg("--name=test")
            .arg(format!("--data-dir={}", d.join("etcd").display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"));
        let etcd = Process::spawn("etcd", etcd, d, "etcd.log");

        let p = |name: &str| d.join(name).display().to_string();
        let mut apiserver = Command::new(bin.join("kube-apiserver"));
        apiserver
            .arg(format!("--etcd-servers={etcd_url}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={secure}"))
            .arg(format!("--cert-dir={}", p("apiserver-certs")))
            .arg(format!("--tls-cert-file={}", crt.display()))
            .arg(format!("--tls-private-key-file={}", key.display()))
            .arg(format!("--token-auth-file={}", p("tokens.csv")))
            .arg("--authorization-mode=RBAC")
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!("--service-account-key-file={}", p("sa.pub")))
            .arg(format!(
                "--service-account-signing-key-file={}",
                p("sa.key")
            ))
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg("--allow-privileged=true")
            // The `kubernetes` Service's endpoints cannot be a loopback address: without this
            // the reconciler logs that error every few seconds.
            .arg("--endpoint-reconciler-type=none");
        let apiserver_command: Vec<_> = std::iter::once(apiserver.get_program())
            .chain(apiserver.get_args())
            .map(ToOwned::to_owned)
            .collect();
        apiserver.args(apiserver_args);
        let apiserver = Process::spawn("kube-apiserver", apiserver, d, "apiserver.log");

        let url = format!("https://127.0.0.1:{secure}");
        let kubeconfig = d.join("kubeconfig");
        let ca_data = base64::engine::general_purpose::STANDARD.encode(pki.ca_pem());
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {
                "server": url, "certificate-authority-data": ca_data}}],
            "users": [{"name": "admin", "user": {"token": TOKEN}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
            "current-context": "test",
        });
        // JSON is YAML: kubectl and kube-rs read it as a kubeconfig.
        std::fs::write(&kubeconfig, config.to_string()).unwrap();

        let mut api = Self {
            url,
            kubeconfig,
            pki,
            apiserver,
            etcd,
            dir,
            apiserver_command,
        };
        api.wait_ready();
        eprintln!(
            "kube-apiserver {} ready at {} in {:.1} s",
            version(),
            api.url,
            started.elapsed().as_secs_f64()
        );
        api.apply_crds();
        Some(api)
    }

    /// Stops kube-apiserver and starts it again on the same port and etcd, with these flags
    /// added to the usual ones (not [`start_with`](Self::start_with)'s) and these environment
    /// variables set, and waits for `/readyz`. Its log goes on in the same file. What it held
    /// in memory (watch caches and their event histories) is gone: it lists everything from
    /// etcd again.
    pub fn restart_apiserver(&mut self, apiserver_args: &[&str], env: &[(&str, &str)]) {
        let started = Instant::now();
        // Stopped (and reaped) first: the new one binds the same port.
        self.apiserver.kill();
        let mut command = Command::new(&self.apiserver_command[0]);
        command
            .args(&self.apiserver_command[1..])
            .args(apiserver_args)
            .envs(env.iter().copied());
        self.apiserver =
            Process::spawn("kube-apiserver", command, self.dir.path(), "apiserver.log");
        self.wait_ready();
        eprintln!(
            "kube-apiserver restarted in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }

    fn wait_ready(&mut self) {
        let until = Instant::now() + START_TIMEOUT;
        loop {
            self.etcd.assert_alive();
            self.apiserver.assert_alive();
            let out = self.kubectl(&["get", "--raw", "/readyz"]);
            if out.status.success() {
                return;
            }
            if Instant::now() > until {
                panic!(
                    "kube-apiserver not ready after {START_TIMEOUT:?}: {}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    tail(&self.apiserver.log, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The repository's copy of the KubeVirt and Multus CRDs (the same as
    /// `../shared/testdata/crds/`), created and established.
    fn apply_crds(&self) {
        let crds = Path::new(REPO).join("tests/data/crds");
        // `create`, not `apply`: the VM CRD is larger than the last-applied annotation allows.
        self.kubectl_ok(&["create", "-f", crds.to_str().unwrap()]);
        self.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ]);
    }

    /// `kubectl --kubeconfig ... ARGS`.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    /// `kubectl --kubeconfig ... ARGS` with `input` on stdin.
    pub fn kubectl_stdin(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut child = Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run kubectl ({e}); install it (Debian package kubernetes-client)")
            });
        if let Some(input) = input {
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Like [`kubectl`](Self::kubectl), panicking with stderr on failure; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A kube-rs client for this API server, from the kubeconfig.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// The webhook configurations of `kubectl kustomize deploy/`, each webhook's
    /// `clientConfig.service` replaced by `url` (same path) to `webhook` and the test CA as
    /// `caBundle`; every other field (rules, selectors, matchConditions, policies) kept, so
    /// the API server checks them.
    pub fn webhook_configurations(&self, webhook: &Webhook) -> Vec<Value> {
        let out = Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()))
            .arg("kustomize")
            .arg(Path::new(REPO).join("deploy"))
            .output()
            .expect("run kubectl kustomize");
        assert!(
            out.status.success(),
            "kubectl kustomize deploy/ failed (kubectl >= 1.21 needed):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let ca = base64::engine::general_purpose::STANDARD.encode(self.pki.ca_pem());
        let mut configs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
            .filter(|d| {
                matches!(
                    d["kind"].as_str(),
                    Some("MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration")
                )
            })
            .collect();
        assert!(
            !configs.is_empty(),
            "deploy/ renders no webhook configuration"
        );
        for config in &mut configs {
            for hook in config["webhooks"].as_array_mut().unwrap() {
                let path = hook["clientConfig"]["service"]["path"]
                    .as_str()
                    .unwrap_or("/")
                    .to_string();
                hook["clientConfig"] = json!({
                    "url": format!("https://{}{path}", webhook.addr),
                    "caBundle": ca,
                });
            }
        }
        configs
    }

    /// Registers `webhook` (see [`webhook_configurations`](Self::webhook_configurations)),
    /// then waits until the API server calls it: its configurations take effect a moment
    /// after they are stored. `denied` is a manifest the mutating webhook warns about and the
    /// validating webhook denies: both configurations are in effect when kubectl prints both.
    pub fn register_webhooks(&self, webhook: &Webhook, denied: &Path) {
        let configs = self.webhook_configurations(webhook);
        let list = json!({"apiVersion": "v1", "kind": "List", "items": configs});
        let out = self.kubectl_stdin(&["apply", "-f", "-"], Some(list.to_string().as_bytes()));
        assert!(
            out.status.success(),
            "the API server refused deploy/'s webhook configurations:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.kubectl(&["create", "--dry-run=server", "-f", denied.to_str().unwrap()]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.starts_with("Warning: ") && stderr.contains("denied the request") {
                return;
            }
            assert!(
                Instant::now() < until,
                "the webhooks are not called 30 s after registration; last answer: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The pids of etcd and kube-apiserver.
    pub fn pids(&self) -> Vec<u32> {
        vec![self.etcd.pid(), self.apiserver.pid()]
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for p in [&self.etcd, &self.apiserver] {
                eprintln!("--- {} log (tail) ---\n{}", p.name, tail(&p.log, 30));
            }
        }
    }
}

/// `kubevirt-net-webhook serve` watching an [`ApiServer`] (no `--nads`/`--vms`).
pub struct Webhook {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub process: Process,
    pub dir: tempfile::TempDir,
}

impl Webhook {
    /// Starts `serve` of `bin` (the tests': `support::webhook::BIN`) with the API server's
    /// kubeconfig and waits for its `/readyz`: the NAD and VM caches have listed and watch.
    pub fn start(api: &ApiServer, bin: &str) -> Self {
        Self::start_with(api, bin, &[])
    }

    /// [`start`](Self::start), with these arguments of `serve` added.
    pub fn start_with(api: &ApiServer, bin: &str, serve_args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("knw-serve-")
            .tempdir()
            .unwrap();
        let (crt, key) = api.pki.serving(dir.path(), "tls");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut serve = Command::new(bin);
        serve
            .arg("serve")
            .arg("--tls-cert")
            .arg(&crt)
            .arg("--tls-key")
            .arg(&key)
            .arg(format!("--listen={addr}"))
            .arg(format!("--admin-listen={admin}"))
            .args(["--shutdown-delay", "0s", "--log-format", "plain"])
            .args(serve_args)
            .env("KUBECONFIG", &api.kubeconfig)
            .env("RUST_LOG", "info");
        let mut webhook = Self {
            addr,
            admin,
            process: Process::spawn("serve", serve, dir.path(), "serve.log"),
            dir,
        };
        let until = Instant::now() + Duration::from_secs(30);
        while webhook.admin_get("/readyz").0 != 200 {
            webhook.process.assert_alive();
            assert!(
                Instant::now() < until,
                "serve not ready after 30 s:\n{}",
                tail(&webhook.process.log, 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        webhook
    }

    /// GET on the plain-HTTP admin port: status (0 when not listening yet) and body.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path)
    }

    /// The cache's object count for `kind` (`nad` or `vm`), from `/metrics`.
    pub fn cached(&self, kind: &str) -> u64 {
        let prefix = format!("kubevirt_net_webhook_cache_objects{{kind=\"{kind}\"}} ");
        let (_, metrics) = self.admin_get("/metrics");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{metrics}"))
    }

    /// Waits until the cache holds `n` NADs: the watch has delivered what was just applied.
    pub fn wait_nads(&self, n: u64) {
        let until = Instant::now() + Duration::from_secs(20);
        while self.cached("nad") != n {
            assert!(
                Instant::now() < until,
                "serve's cache holds {} NADs, not {n}, after 20 s",
                self.cached("nad")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- serve log (tail) ---\n{}", tail(&self.process.log, 30));
        }
    }
}

/// A plain-HTTP/1.1 GET: status (0 when nothing listens or the answer does not come within
/// 10 s) and body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    if stream.write_all(request.as_bytes()).is_err()
        || stream.read_to_string(&mut response).is_err()
    {
        return (0, String::new());
    }
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}
