//! `kubevirt-net-webhook audit` as an administrator runs it (SPEC §4.1): on files, its rows,
//! output formats and exit codes; its Reports valid against the OpenReports CRD; and the
//! cluster path's connection errors (the paged listing itself is tested against a mocked API
//! server in `src/cmd/audit/cluster.rs`).
mod support;

use std::{
    path::Path,
    process::{Command, Output},
};

use serde_json::Value;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kubevirt-net-webhook"));
    // No cluster around unless a test gives one: neither in-cluster nor ~/.kube/config.
    c.env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("KUBECONFIG")
        .env("HOME", "/nonexistent");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `args` (with `env`), expecting exit code 2 with a one-line reason and no panic;
/// returns it.
fn fails(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{cmd:?}: {err}");
    assert!(
        !err.contains("panicked") && err.starts_with("error: ") && err.lines().count() == 1,
        "{cmd:?}: {err}"
    );
    err
}

const NADS: &str = r#"apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: br, namespace: infra}
spec:
  config: '{"type":"bridge","ipam":{"type":"host-local","subnet":"10.0.0.0/24"}}'
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: mv, namespace: infra}
spec:
  config: '{"type":"macvlan","ipam":{"type":"host-local","subnet":"10.0.0.0/24"}}'
"#;

fn vm(namespace: &str, name: &str, nad: &str, address: &str) -> String {
    format!(
        r#"apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: {name}
  namespace: {namespace}
  uid: 0f0e0d0c-0000-4000-8000-{name:0>12}
  annotations:
    kubevirt-net-webhook.io/networks: '{{"ext": "{address}"}}'
spec:
  template:
    spec:
      domain:
        devices:
          interfaces: [{{name: ext, bridge: {{}}}}]
      networks: [{{name: ext, multus: {{networkName: infra/{nad}}}}}]
"#
    )
}

/// A standalone VMI (and, with `owner`, one a VM owns) with a MAC on `infra/br`.
fn vmi(namespace: &str, name: &str, mac: &str, owner: Option<&str>) -> String {
    let owner = owner.map_or(String::new(), |o| {
        format!("  ownerReferences: [{{apiVersion: kubevirt.io/v1, kind: VirtualMachine, name: {o}, uid: u-{o}, controller: true}}]\n")
    });
    format!(
        r#"apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: {name}
  namespace: {namespace}
{owner}spec:
  domain:
    devices:
      interfaces: [{{name: ext, bridge: {{}}, macAddress: "{mac}"}}]
  networks: [{{name: ext, multus: {{networkName: infra/br}}}}]
"#
    )
}

fn vm_with_mac(namespace: &str, name: &str, mac: &str) -> String {
    format!(
        r#"apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  template:
    spec:
      domain:
        devices:
          interfaces: [{{name: ext, bridge: {{}}, macAddress: "{mac}"}}]
      networks: [{{name: ext, multus: {{networkName: infra/br}}}}]
"#
    )
}

struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    /// A dump of a cluster: NADs apart (`--nads`), the guests in one multi-document file.
    fn new(guests: &[String]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nads.yaml"), NADS).unwrap();
        std::fs::write(dir.path().join("guests.yaml"), guests.join("---\n")).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn audit(&self, extra: &[&str]) -> Output {
        let (guests, nads) = (self.path("guests.yaml"), self.path("nads.yaml"));
        let mut args = vec!["audit", "-f", &guests, "--nads", &nads];
        args.extend_from_slice(extra);
        run(&args)
    }
}

/// A bridge on macvlan, two VMs of two namespaces on one address, a clean VM, a standalone
/// VMI sharing a VM's MAC, and a VMI its VM owns (the VM's, not judged apart).
fn legacy_cluster() -> Cluster {
    Cluster::new(&[
        vm("team-b", "legacy", "mv", "10.0.0.7/24"),
        vm("team-a", "db", "br", "10.0.0.5/24"),
        vm("team-b", "web", "br", "10.0.0.5/24"),
        vm("team-c", "clean", "br", "10.0.0.9/24"),
        vm_with_mac("team-d", "mac-vm", "02:00:00:00:00:0d"),
        vmi("team-e", "mac-vmi", "02:00:00:00:00:0d", None),
        vmi("team-c", "clean", "02:00:00:00:00:0c", Some("clean")),
    ])
}

#[test]
fn table_names_every_violation_and_every_holder() {
    let cluster = legacy_cluster();
    let o = cluster.audit(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NAMESPACE") && lines[0].ends_with("MESSAGE"));
    let cells = |l: &str| {
        l.split_whitespace()
            .take(4)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let rows: Vec<Vec<String>> = lines[1..].iter().map(|l| cells(l)).collect();
    assert_eq!(
        rows,
        [
            ["team-a", "VirtualMachine", "db", "address-conflict"],
            ["team-b", "VirtualMachine", "legacy", "bridge-binding"],
            ["team-b", "VirtualMachine", "web", "address-conflict"],
            ["team-d", "VirtualMachine", "mac-vm", "mac-conflict"],
            [
                "team-e",
                "VirtualMachineInstance",
                "mac-vmi",
                "mac-conflict"
            ],
        ]
        .map(|r| r.map(str::to_string).to_vec())
    );
    // Each holder names the other, namespace included; nothing is hidden from the admin.
    assert!(lines[1].contains("VM team-b/web"), "{}", lines[1]);
    assert!(lines[3].contains("VM team-a/db"), "{}", lines[3]);
    assert!(lines[4].contains("VMI team-e/mac-vmi"), "{}", lines[4]);
    assert!(lines[5].contains("VM team-d/mac-vm"), "{}", lines[5]);
    assert!(!out.contains("another namespace"), "{out}");
    // Aligned: the kind column starts at the same place on every line.
    let at: Vec<usize> = lines
        .iter()
        .map(|l| l.find("VirtualMachine").or_else(|| l.find("KIND")).unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] == w[1]), "{out}");
    // The VMI its VM owns is not counted apart.
    assert_eq!(
        stderr(&o),
        "6 objects audited, 5 with violations, 5 violations\n"
    );
}

#[test]
fn a_clean_cluster_exits_0_with_no_rows() {
    let cluster = Cluster::new(&[
        vm("team-c", "clean", "br", "10.0.0.9/24"),
        vm("team-c", "other", "br", "10.0.0.10/24"),
    ]);
    let o = cluster.audit(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    let o = cluster.audit(&["-o", "json"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        serde_json::from_slice::<Value>(&o.stdout).unwrap(),
        Value::Array(vec![])
    );
    // -n narrows what is reported, not the cluster view: team-b's VM still conflicts with
    // team-a's.
    let cluster = legacy_cluster();
    let o = cluster.audit(&["-n", "team-c"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = cluster.audit(&["-n", "team-a", "-o", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
}

#[test]
fn json_lists_the_rows_with_their_subjects() {
    let o = legacy_cluster().audit(&["-o", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let rows: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.len(), 5);
    let legacy = rows.iter().find(|r| r["name"] == "legacy").unwrap();
    assert_eq!(legacy["namespace"], "team-b");
    assert_eq!(legacy["kind"], "VirtualMachine");
    assert_eq!(legacy["rule"], "bridge-binding");
    assert_eq!(legacy["subject"], "interface \"ext\" on NAD infra/mv");
    assert!(legacy["message"].as_str().unwrap().contains("macvlan"));
    let db = rows.iter().find(|r| r["name"] == "db").unwrap();
    assert!(
        db["message"].as_str().unwrap().contains("VM team-b/web"),
        "{db}"
    );
    for row in &rows {
        let keys: Vec<&String> = row.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["kind", "message", "name", "namespace", "rule", "subject"],
            "{row}"
        );
    }
}

fn report_schema() -> support::schema::Schema {
    let (schema, info) = support::schema::Schema::from_crd_file(
        &support::data("crds/openreports-report-crd.yaml"),
        "v1alpha1",
    );
    assert_eq!(
        (info.group.as_str(), info.kind.as_str()),
        ("openreports.io", "Report")
    );
    schema
}

fn validate_report(schema: &support::schema::Schema, report: &Value) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    support::schema::validate_root(schema, report, &mut errs);
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

#[test]
fn reports_are_valid_openreports_one_per_namespace() {
    let o = legacy_cluster().audit(&["-o", "report"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let reports = support::schema::yaml_documents(&stdout(&o)).unwrap();
    let namespaces: Vec<&str> = reports
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap())
        .collect();
    // team-c is clean and still gets a Report: re-applying replaces an old one.
    assert_eq!(
        namespaces,
        ["team-a", "team-b", "team-c", "team-d", "team-e"]
    );
    let schema = report_schema();
    for report in &reports {
        if let Err(errors) = validate_report(&schema, report) {
            panic!("a Report fails the CRD schema: {errors:?}\n{report:#}");
        }
        assert_eq!(report["apiVersion"], "openreports.io/v1alpha1");
        assert_eq!(report["kind"], "Report");
        assert_eq!(report["metadata"]["name"], "kubevirt-net-webhook");
        assert_eq!(report["source"], "kubevirt-net-webhook");
        let results = report["results"].as_array().unwrap();
        assert_eq!(report["summary"]["fail"], results.len());
        for result in results {
            assert_eq!(result["policy"], "kubevirt-net-webhook");
            assert_eq!(result["source"], "kubevirt-net-webhook");
            assert_eq!(result["result"], "fail");
            let resource = &result["resources"][0];
            assert_eq!(resource["namespace"], report["metadata"]["namespace"]);
            for field in ["apiVersion", "kind", "name"] {
                assert!(resource[field].is_string(), "{result}");
            }
        }
    }
    let team_b = &reports[1];
    let rules: Vec<&str> = team_b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["bridge-binding", "address-conflict"]);
    let legacy = &team_b["results"][0]["resources"][0];
    assert_eq!(legacy["uid"], "0f0e0d0c-0000-4000-8000-000000legacy");
    assert_eq!(legacy["apiVersion"], "kubevirt.io/v1");
    assert_eq!(team_b["summary"]["pass"], 0);
    assert_eq!(reports[2]["summary"]["pass"], 1);
    assert_eq!(reports[2]["results"], Value::Array(vec![]));
}

#[test]
fn the_report_check_can_fail() {
    let o = legacy_cluster().audit(&["-o", "report"]);
    let mut report = support::schema::yaml_documents(&stdout(&o))
        .unwrap()
        .remove(0);
    let schema = report_schema();
    assert!(validate_report(&schema, &report).is_ok());
    report["results"][0]["result"] = "failed".into();
    assert!(validate_report(&schema, &report).is_err());
    report["results"][0]["result"] = "fail".into();
    report["results"][0]["resource"] = Value::Null;
    assert!(validate_report(&schema, &report).is_err());
}

#[test]
fn input_and_usage_errors_exit_2() {
    let cluster = legacy_cluster();
    let guests = cluster.path("guests.yaml");
    fails(bin().args(["audit", "-f", "/nonexistent/vms.yaml"]));
    let bad = cluster.path("bad.yaml");
    std::fs::write(&bad, "macPrefix: nope\n").unwrap();
    fails(bin().args(["audit", "-f", &guests, "--config", &bad]));
    // Usage errors are clap's (several lines), with its exit code 2.
    for args in [
        vec!["audit", "-n", "a", "-A", "-f", guests.as_str()],
        vec!["audit", "--nads", guests.as_str()],
        vec!["audit", "-o", "yaml", "-f", guests.as_str()],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
    // A guest that does not decode names its file and object.
    let broken = cluster.path("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: x, namespace: t}\nspec: {template: {spec: {networks: 5}}}\n",
    )
    .unwrap();
    let err = fails(bin().args(["audit", "-f", &broken]));
    assert!(err.contains("broken.yaml") && err.contains("t/x"), "{err}");
}

fn kubeconfig(dir: &Path, server: &str) -> String {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"{server}\", insecure-skip-tls-verify: true}}\nusers:\n- name: u\n  user: {{token: t}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u, namespace: lab}}\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn no_cluster_exits_2_with_a_one_line_reason() {
    // No kubeconfig and not in a cluster.
    let err = fails(bin().args(["audit", "-A"]));
    assert!(
        err.contains("cannot configure the Kubernetes client"),
        "{err}"
    );
    // A kubeconfig path that does not exist.
    let err = fails(bin().args(["audit", "--kubeconfig", "/nonexistent/kubeconfig"]));
    assert!(err.contains("/nonexistent/kubeconfig"), "{err}");
    let err = fails(
        bin()
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .args(["audit", "-A"]),
    );
    assert!(err.contains("cannot configure"), "{err}");
    // A server nobody listens on.
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), "https://127.0.0.1:1");
    let started = std::time::Instant::now();
    let err = fails(bin().env("KUBECONFIG", &config).args(["audit", "-A"]));
    assert!(
        err.contains("cannot list") && err.contains("127.0.0.1:1"),
        "{err}"
    );
    assert!(
        started.elapsed().as_secs() < 30,
        "took {:?}",
        started.elapsed()
    );
    // A context that is not in the kubeconfig.
    let err = fails(
        bin()
            .env("KUBECONFIG", &config)
            .args(["audit", "--context", "nope"]),
    );
    assert!(err.contains("nope"), "{err}");
}
