//! End to end against a real kube-apiserver and etcd (issue #21; the harness is
//! `tests/support/apiserver.rs`): what only a real API server does — calling the webhooks as
//! `deploy/` registers them (rules, namespace selectors, matchConditions), storing what they
//! return, and kubectl printing their warnings and denials.
//!
//! Needs the binaries of `tests/apiserver/build.sh` (`KNW_APISERVER_DIR`, else its cache) and
//! kubectl; `KNW_SKIP_APISERVER=1` skips when the binaries are missing. One API server and one
//! `serve` are shared by the steps of [`end_to_end`], run in turn, each in its own namespace;
//! a failed step is reported and the others still run.
mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};
use support::apiserver::{ApiServer, Webhook, is_running};
use support::webhook::{BIN, case, read_yaml, write_yaml};
// `scale_cluster` reaches the fixtures as `crate::fixtures`.
use support::fixtures;

#[path = "../examples/support/scale_cluster.rs"]
mod scale_cluster;

const VALIDATE: &str = "validate.kubevirt-net-webhook.io";
/// The NAD and VM of the seed notes: the interface named after the NAD is renamed.
const RENAMED: &str = "seed-wukong-static-ip.yaml";
/// A macvlan NAD under the bridge binding: denied.
const DENIED: &str = "macvlan-bridge-denied.yaml";

// Fields drop in order: serve stops before the API server it watches.
struct Env {
    webhook: Webhook,
    api: ApiServer,
    dir: tempfile::TempDir,
}

impl Env {
    /// The documents of a case moved to namespace `ns`: its NADs and its other objects.
    fn case_in(&self, name: &str, ns: &str) -> (Vec<Value>, Vec<Value>) {
        let mut docs = read_yaml(&case(name));
        for d in &mut docs {
            d["metadata"]["namespace"] = json!(ns);
        }
        docs.into_iter()
            .partition(|d| d["kind"] == "NetworkAttachmentDefinition")
    }

    /// Writes `docs` as `dir/ns-name.yaml`.
    fn file(&self, ns: &str, name: &str, docs: &[Value]) -> PathBuf {
        let name = name.trim_end_matches(".yaml");
        write_yaml(self.dir.path(), &format!("{ns}-{name}.yaml"), docs)
    }

    /// Applies the NADs of a case in `ns`, waits until `serve` has them, and returns the
    /// file of its VMs (not applied).
    fn prepare(&self, name: &str, ns: &str) -> PathBuf {
        let (nads, vms) = self.case_in(name, ns);
        let file = self.file(ns, &format!("nads-{name}"), &nads);
        self.api
            .kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
        let total = self
            .api
            .kubectl_ok(&["get", "network-attachment-definitions", "-A", "-o", "name"])
            .lines()
            .count();
        self.webhook.wait_nads(total as u64);
        self.file(ns, name, &vms)
    }

    /// `kubectl get KIND NAME -n NS -o json`.
    fn get(&self, kind: &str, ns: &str, name: &str) -> Value {
        let out = self
            .api
            .kubectl_ok(&["get", kind, name, "-n", ns, "-o", "json"]);
        serde_json::from_str(&out).unwrap()
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The interfaces' names and whether each has a MAC.
fn interfaces(spec: &Value) -> Vec<(String, bool)> {
    spec["domain"]["devices"]["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["macAddress"].is_string(),
            )
        })
        .collect()
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

/// Creates `vm` through kube-rs; the API server's error if it refuses.
fn create_with_kube(env: &Env, ns: &str, vm: &Value) -> Result<DynamicObject, kube::Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let api: Api<DynamicObject> =
            Api::namespaced_with(env.api.client().await, ns, &vm_resource());
        api.create(
            &PostParams::default(),
            &serde_json::from_value(vm.clone()).unwrap(),
        )
        .await
    })
}

#[test]
fn end_to_end() {
    let Some(api) = ApiServer::start() else {
        return;
    };
    let webhook = Webhook::start(&api, BIN);
    let env = Env {
        webhook,
        api,
        dir: tempfile::tempdir().unwrap(),
    };
    webhooks_are_called(&env);
    legacy_vm_lives_on(&env);

    type Step = fn(&Env, &str);
    let steps: [(&str, Step); 8] = [
        ("create-prints-warnings", create_prints_warnings),
        ("denial-as-kubectl-prints-it", denial_as_kubectl_prints_it),
        ("dry-run-equals-apply", dry_run_equals_apply),
        ("reapply-keeps-generation", reapply_keeps_generation),
        ("review-piped-to-kubectl", review_piped_to_kubectl),
        ("vmi-create", vmi_create),
        ("namespace-opt-out", namespace_opt_out),
        ("warn-label", warn_label),
    ];
    let mut failed = Vec::new();
    for (name, step) in steps {
        env.api.kubectl_ok(&["create", "namespace", name]);
        let started = Instant::now();
        // The panic message is printed by the hook; the steps after still run.
        let result = catch_unwind(AssertUnwindSafe(|| step(&env, name)));
        let took = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => eprintln!("step {name}: ok ({took:.1} s)"),
            Err(_) => {
                eprintln!("step {name}: FAILED ({took:.1} s)");
                failed.push(name);
            }
        }
    }
    // After every step: what the steps left stored, audited.
    if let Err(e) = catch_unwind(AssertUnwindSafe(|| audit_everything(&env))) {
        failed.push("audit-everything");
        drop(e);
    }
    assert!(failed.is_empty(), "failed steps: {failed:?}");
}

/// `audit -A` reads what the steps left stored through the real API server's paged lists:
/// the VMs stored past the webhook (opt-out namespaces, the warn label) are reported, the
/// VMs the webhook admitted are not; `-o report` is accepted by the API server against the
/// OpenReports CRD.
fn audit_everything(env: &Env) {
    let audit = |output: &str| {
        Command::new(BIN)
            .args(["audit", "-A", "-o", output])
            .env("KUBECONFIG", &env.api.kubeconfig)
            .output()
            .unwrap()
    };
    let out = audit("json");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let reported = |ns: &str, rule: &str| {
        rows.iter()
            .any(|r| r["namespace"] == ns && r["name"] == "ubuntu-vm" && r["rule"] == rule)
    };
    for ns in [
        "namespace-opt-out-ignored",
        "kubevirt-net-webhook",
        "warn-label-warned",
    ] {
        assert!(
            reported(ns, "bridge-binding"),
            "{ns} not reported: {rows:#?}"
        );
    }
    for clean in [
        "create-prints-warnings",
        "dry-run-equals-apply",
        "vmi-create",
    ] {
        assert!(
            !rows.iter().any(|r| r["namespace"] == clean),
            "{clean} reported: {rows:#?}"
        );
    }
    let out = audit("report");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let applied = env
        .api
        .kubectl_stdin(&["apply", "-f", "-"], Some(&out.stdout));
    assert!(applied.status.success(), "{}", stderr(&applied));
    let report: Value = serde_json::from_str(&env.api.kubectl_ok(&[
        "get",
        "reports.openreports.io",
        "kubevirt-net-webhook",
        "-n",
        "warn-label-warned",
        "-o",
        "json",
    ]))
    .unwrap();
    assert!(
        report["results"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["rule"] == "bridge-binding")),
        "{report:#}"
    );
    eprintln!("audit-everything: ok ({} rows)", rows.len());
}

/// The proof that the API server calls our webhooks: without them registered, a bridge
/// binding on a macvlan NAD is stored as sent; with them, the same VM is denied, with our
/// message.
fn webhooks_are_called(env: &Env) {
    let ns = "webhooks-are-called";
    env.api.kubectl_ok(&["create", "namespace", ns]);
    let vms = env.prepare(DENIED, ns);
    let out = env.api.kubectl(&["create", "-f", vms.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "without webhooks the VM is stored: {}",
        stderr(&out)
    );
    let stored = env.get("vm", ns, "ubuntu-vm");
    assert_eq!(
        interfaces(&stored["spec"]["template"]["spec"]),
        [("default".into(), false), ("external".into(), false)],
        "stored as sent, without MACs"
    );

    // The probe that waits for the registration is a dry run of another VM of that kind.
    let mut probe = read_yaml(&vms).remove(0);
    probe["metadata"]["name"] = json!("probe");
    let probe = env.file(ns, "probe", &[probe]);
    env.api.register_webhooks(&env.webhook, &probe);

    let mut again = read_yaml(&vms).remove(0);
    again["metadata"]["name"] = json!("ubuntu-vm-again");
    let error = create_with_kube(env, ns, &again).expect_err("denied once the webhooks are in");
    let kube::Error::Api(status) = error else {
        panic!("not an API error: {error}")
    };
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert!(
        status.message.starts_with(&format!(
            "admission webhook \"{VALIDATE}\" denied the request: "
        )) && status.message.contains("macvlan"),
        "{}",
        status.message
    );
    eprintln!("webhooks-are-called: ok ({})", status.message);
}

/// `kubevirt_net_webhook_requests` of `endpoint` and `operation`, summed, from serve's
/// admin port.
fn requests(env: &Env, endpoint: &str, operation: &str) -> u64 {
    let (status, text) = env.webhook.admin_get("/metrics");
    assert_eq!(status, 200);
    let labels = [
        format!("endpoint=\"{endpoint}\""),
        format!("operation=\"{operation}\""),
    ];
    text.lines()
        .filter(|l| l.starts_with("kubevirt_net_webhook_requests_total{"))
        .filter(|l| labels.iter().all(|label| l.contains(label.as_str())))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The VM stored before the webhooks (by [`webhooks_are_called`]: a bridge binding on a
/// macvlan NAD) lives on (SPEC §2.11): labelled without the webhook even being asked
/// (matchConditions), started and stopped with a warning, refused a new violation, and
/// deleted through its finalizer.
fn legacy_vm_lives_on(env: &Env) {
    let ns = "webhooks-are-called";
    let vm = ["vm", "ubuntu-vm", "-n", ns];
    // kubectl VERB vm NAME -n NS ARGS...
    let with = |args: &[&str]| -> Vec<String> {
        args[..1]
            .iter()
            .chain(vm.iter())
            .chain(&args[1..])
            .map(|a| a.to_string())
            .collect()
    };
    let run = |args: &[&str]| {
        let args = with(args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env.api.kubectl(&args)
    };
    let updates = || requests(env, "validate", "UPDATE");

    let before = updates();
    let out = run(&["label", "team=db"]);
    assert!(out.status.success(), "label: {}", stderr(&out));
    let out = run(&[
        "patch",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    assert!(out.status.success(), "finalizer: {}", stderr(&out));
    assert_eq!(
        updates(),
        before,
        "a label and a finalizer are kept from the webhook by matchConditions"
    );

    for strategy in ["Always", "Halted"] {
        let patch = format!(r#"{{"spec":{{"runStrategy":"{strategy}"}}}}"#);
        let out = run(&["patch", "--type=merge", "-p", &patch]);
        let err = stderr(&out);
        assert!(out.status.success(), "runStrategy {strategy}: {err}");
        assert!(
            err.contains(
                "Warning: already there before this update, so not enforced until it is fixed [bridge-binding]"
            ),
            "runStrategy {strategy}: {err}"
        );
    }
    assert!(
        updates() > before,
        "the runStrategy updates reached /validate"
    );

    // A violation the update brings is still denied, and named alone.
    let out = run(&[
        "patch",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/spec/template/spec/domain/devices/interfaces/0/macAddress","value":"03:00:00:00:00:01"}]"#,
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "a multicast MAC was stored: {err}");
    assert!(
        err.contains("multicast") && !err.contains("denied the request: interface \"external\""),
        "{err}"
    );

    let out = run(&["delete", "--wait=false"]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    let out = run(&[
        "patch",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert!(out.status.success(), "finalizer removal: {}", stderr(&out));
    let get = run(&["get"]);
    assert!(
        stderr(&get).contains("NotFound"),
        "still there: {}",
        stderr(&get)
    );
    eprintln!("legacy-vm-lives-on: ok");
}

/// A namespace labelled `kubevirt-net-webhook.io/enforcement: warn` is routed to
/// `/validate/warn`: what `/validate` denies is stored, with the denial as a warning.
fn warn_label(env: &Env, step: &str) {
    let ns = format!("{step}-warned");
    let namespace = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ns, "labels": {"kubevirt-net-webhook.io/enforcement": "warn"}},
    });
    let file = env.file(step, "namespace", &[namespace]);
    env.api
        .kubectl_ok(&["create", "-f", file.to_str().unwrap()]);
    let vms = env.prepare(DENIED, &ns);
    let out = env.api.kubectl(&["apply", "-f", vms.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("Warning: not enforced (enforcement: warn), would be denied [bridge-binding]: interface \"external\""),
        "{err}"
    );
    assert!(requests(env, "validate/warn", "CREATE") >= 1);
    // The same VM in an unlabelled namespace is denied: the label made the difference.
    let vms = env.prepare(DENIED, step);
    let out = env.api.kubectl(&["apply", "-f", vms.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", stderr(&out));
}

/// kubectl prints the mutating webhook's warnings; the VM is stored mutated.
fn create_prints_warnings(env: &Env, ns: &str) {
    let vms = env.prepare(RENAMED, ns);
    let out = env.api.kubectl(&["apply", "-f", vms.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.lines().any(|l| l.starts_with(
            "Warning: renamed interface \"ubuntu-rulai-multus-external-nad\" to \"external\""
        )),
        "kubectl printed no rename warning:\n{err}"
    );
    let stored = env.get("vm", ns, "ubuntu-rulai-multus-vm");
    assert_eq!(
        interfaces(&stored["spec"]["template"]["spec"]),
        [("default".into(), true), ("external".into(), true)]
    );
}

/// A denial as kubectl prints it: the mutating webhook's warnings (they are sent back with a
/// request denied later), then the error naming the webhook, the interface, the NAD and its
/// CNI type; nothing stored.
fn denial_as_kubectl_prints_it(env: &Env, ns: &str) {
    let vms = env.prepare(DENIED, ns);
    let out = env.api.kubectl(&["apply", "-f", vms.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success(), "applied:\n{err}");
    let expected = format!(
        "Error from server (Forbidden): error when creating \"{}\": admission webhook \
         \"{VALIDATE}\" denied the request: interface \"external\" \
         (spec.template.spec.domain.devices.interfaces[1]) uses the bridge binding on \
         NetworkAttachmentDefinition {ns}/ubuntu-vm-external-nad, whose CNI type is \"macvlan\"",
        vms.display()
    );
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines.last().is_some_and(|l| l.starts_with(&expected)),
        "expected a last line starting with\n{expected}\ngot:\n{err}"
    );
    assert!(
        lines[0].starts_with("Warning: set stable MAC addresses"),
        "{err}"
    );
    let get = env.api.kubectl(&["get", "vm", "ubuntu-vm", "-n", ns]);
    assert!(stderr(&get).contains("NotFound"), "{}", stderr(&get));
}

/// `--dry-run=server` shows what a real apply stores, and stores nothing.
fn dry_run_equals_apply(env: &Env, ns: &str) {
    let vms = env.prepare(RENAMED, ns);
    let file = vms.to_str().unwrap();
    let dry: Value = serde_json::from_str(&env.api.kubectl_ok(&[
        "apply",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        file,
    ]))
    .unwrap();
    let get = env
        .api
        .kubectl(&["get", "vm", "ubuntu-rulai-multus-vm", "-n", ns]);
    assert!(stderr(&get).contains("NotFound"), "the dry run stored it");
    let real: Value =
        serde_json::from_str(&env.api.kubectl_ok(&["apply", "-o", "json", "-f", file])).unwrap();
    assert_eq!(
        interfaces(&dry["spec"]["template"]["spec"]),
        [("default".into(), true), ("external".into(), true)],
        "the dry run is mutated"
    );
    assert_eq!(dry["spec"], real["spec"]);
}

/// Applying the same manifest again (client-side, then server-side) sends the unmutated
/// spec back; the webhook's answer restores the stored spec, so `generation` stays.
fn reapply_keeps_generation(env: &Env, ns: &str) {
    let vms = env.prepare(RENAMED, ns);
    let file = vms.to_str().unwrap();
    env.api.kubectl_ok(&["apply", "-f", file]);
    let first = env.get("vm", ns, "ubuntu-rulai-multus-vm");
    assert_eq!(first["metadata"]["generation"], 1);
    env.api.kubectl_ok(&["apply", "-f", file]);
    env.api
        .kubectl_ok(&["apply", "--server-side", "--force-conflicts", "-f", file]);
    let after = env.get("vm", ns, "ubuntu-rulai-multus-vm");
    assert_eq!(after["spec"], first["spec"]);
    assert_eq!(after["metadata"]["generation"], 1, "{after:#}");
}

/// `review -f x.yaml | kubectl apply -f -`: kubectl reads review's YAML as review meant it,
/// and the API server stores it as review printed it.
fn review_piped_to_kubectl(env: &Env, ns: &str) {
    env.prepare(RENAMED, ns);
    let (nads, vms) = env.case_in(RENAMED, ns);
    let all: Vec<Value> = nads.into_iter().chain(vms).collect();
    let input = env.file(ns, "review-input", &all);
    let review = Command::new(BIN)
        .args(["review", "-f"])
        .arg(&input)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(review.status.success(), "review failed");
    let out = env
        .api
        .kubectl_stdin(&["apply", "-f", "-"], Some(&review.stdout));
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: Value = serde_yaml_ng::from_slice(&review.stdout).unwrap();
    let stored = env.get("vm", ns, "ubuntu-rulai-multus-vm");
    assert_eq!(stored["spec"], printed["spec"]);
}

/// A VirtualMachineInstance is mutated at CREATE like a VM's template.
fn vmi_create(env: &Env, ns: &str) {
    let vms = env.prepare(RENAMED, ns);
    let vm = read_yaml(&vms).remove(0);
    let vmi = json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "vmi", "namespace": ns},
        "spec": vm["spec"]["template"]["spec"],
    });
    let file = env.file(ns, "vmi", &[vmi]);
    let out = env.api.kubectl(&["create", "-f", file.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Warning: renamed interface"), "{err}");
    let stored = env.get("vmi", ns, "vmi");
    assert_eq!(
        interfaces(&stored["spec"]),
        [("default".into(), true), ("external".into(), true)]
    );
    // serve watches standalone VMIs: a later VM cannot take what this one holds.
    let until = Instant::now() + std::time::Duration::from_secs(20);
    while env.webhook.cached("vmi") < 1 {
        assert!(
            Instant::now() < until,
            "the standalone VMI never reached the cache"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The namespace selectors of deploy/ as the API server applies them: a namespace labelled
/// `kubevirt-net-webhook.io/ignore` and the webhook's own namespace are not sent to the
/// webhook, so what it would deny is stored untouched.
fn namespace_opt_out(env: &Env, step: &str) {
    let ignored = format!("{step}-ignored");
    // Labelled at creation: the API server's namespace cache may lag behind a later label.
    let namespace = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ignored, "labels": {"kubevirt-net-webhook.io/ignore": "true"}},
    });
    let file = env.file(step, "namespace", &[namespace]);
    env.api
        .kubectl_ok(&["create", "-f", file.to_str().unwrap()]);
    env.api
        .kubectl_ok(&["create", "namespace", "kubevirt-net-webhook"]);
    for ns in [ignored.as_str(), "kubevirt-net-webhook"] {
        let vms = env.prepare(DENIED, ns);
        let out = env.api.kubectl(&["apply", "-f", vms.to_str().unwrap()]);
        assert!(out.status.success(), "{ns}: {}", stderr(&out));
        let stored = env.get("vm", ns, "ubuntu-vm");
        assert_eq!(
            interfaces(&stored["spec"]["template"]["spec"]),
            [("default".into(), false), ("external".into(), false)],
            "{ns}: mutated"
        );
    }
}

/// Both list modes over more VMs than one page, on the real API server: the first page of
/// `--list-mode pages --list-page-size 500`
/// (`resourceVersion=1&resourceVersionMatch=NotOlderThan&limit=500`) is
/// cut to its limit, as Kubernetes 1.34+ serve it from the watch cache (at `resourceVersion=0`
/// the limit is ignored), and its continue tokens lead through every VM; `serve` in either
/// mode caches them all without falling back; `audit -A` finds exactly the planted rows.
#[test]
fn list_modes_over_several_pages() {
    let Some(api) = ApiServer::start() else {
        return;
    };
    let cluster = scale_cluster::Cluster {
        vms: 1_100,
        namespaces: 4,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime.block_on(api.client());
    for n in 0..cluster.namespaces {
        api.kubectl_ok(&["create", "namespace", &cluster.namespace(n)]);
    }
    api.kubectl_ok(&["create", "namespace", "infra"]);
    let nads = Value::Array(scale_cluster::nads());
    let list = json!({"apiVersion": "v1", "kind": "List", "items": nads});
    let created = api.kubectl_stdin(&["create", "-f", "-"], Some(list.to_string().as_bytes()));
    assert!(created.status.success(), "{}", stderr(&created));
    runtime.block_on(async {
        use futures::{StreamExt as _, stream};
        let resource = vm_resource();
        let mut creates = stream::iter(0..cluster.vms)
            .map(|i| {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), &cluster.namespace(i), &resource);
                let vm: DynamicObject = serde_json::from_value(cluster.vm_to_create(i)).unwrap();
                async move { api.create(&PostParams::default(), &vm).await }
            })
            .buffer_unordered(16);
        while let Some(result) = creates.next().await {
            result.expect("VM created");
        }
    });

    // The pages as `serve --list-mode pages --list-page-size 500` asks for them.
    let mut names = std::collections::BTreeSet::new();
    let mut query = "limit=500&resourceVersion=1&resourceVersionMatch=NotOlderThan".to_string();
    let mut pages = Vec::new();
    loop {
        let page: Value = serde_json::from_str(&api.kubectl_ok(&[
            "get",
            "--raw",
            &format!("/apis/kubevirt.io/v1/virtualmachines?{query}"),
        ]))
        .unwrap();
        let items = page["items"].as_array().unwrap();
        pages.push(items.len());
        names.extend(items.iter().map(|vm| {
            format!(
                "{}/{}",
                vm["metadata"]["namespace"].as_str().unwrap(),
                vm["metadata"]["name"].as_str().unwrap()
            )
        }));
        match page["metadata"]["continue"].as_str() {
            Some(token) if !token.is_empty() => query = format!("limit=500&continue={token}"),
            _ => break,
        }
    }
    assert_eq!(pages, [500, 500, 100]);
    assert_eq!(names.len(), cluster.vms);

    for mode in ["snapshot", "pages"] {
        let webhook =
            Webhook::start_with(&api, BIN, &["--list-mode", mode, "--list-page-size", "500"]);
        assert_eq!(webhook.cached("vm"), cluster.vms as u64, "{mode}");
        assert_eq!(webhook.cached("nad"), 3, "{mode}");
        let (_, metrics) = webhook.admin_get("/metrics");
        assert!(
            metrics.contains("kubevirt_net_webhook_cache_list_fallbacks_total{kind=\"vm\"} 0"),
            "{mode}: fell back:\n{}",
            std::fs::read_to_string(&webhook.process.log).unwrap_or_default()
        );
    }

    let out = Command::new(BIN)
        .args(["audit", "-A", "-o", "json"])
        .env("KUBECONFIG", &api.kubeconfig)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim_end(), cluster.expected_summary());
    cluster.check_rows(&out.stdout).unwrap();
}

/// The harness leaves nothing behind: after a drop, in a panicking test too, etcd,
/// kube-apiserver and serve are gone (reaped) and their directories removed.
#[test]
fn nothing_left_running() {
    let mut seen = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let Some(api) = ApiServer::start() else {
            return;
        };
        let webhook = Webhook::start(&api, BIN);
        let mut pids = api.pids();
        pids.push(webhook.process.pid());
        seen = Some((
            pids,
            api.dir.path().to_owned(),
            webhook.dir.path().to_owned(),
        ));
        panic!("a test failing with the API server up");
    }));
    let Some((pids, api_dir, webhook_dir)) = seen else {
        // Skipped, or failed to start: that failure is the test's.
        return result.unwrap_or_else(|e| std::panic::resume_unwind(e));
    };
    assert!(result.is_err());
    for pid in pids {
        assert!(!is_running(pid), "process {pid} still running");
    }
    assert!(!api_dir.exists() && !webhook_dir.exists());
}
