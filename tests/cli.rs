//! The `review` command as CI pipelines run it: exit codes, output formats, error messages.
mod support;

use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kubevirt-net-webhook"))
}

fn case(name: &str) -> String {
    support::data("cases").join(name).display().to_string()
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `args`, expecting exit code 2 with a message and no panic; returns stderr.
fn input_error(args: &[&str]) -> String {
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        !err.contains("panicked") && !err.trim().is_empty(),
        "{args:?}: {err}"
    );
    err
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

const NAD: &str = "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata: {name: br, namespace: lab}\nspec:\n  config: '{\"type\":\"bridge\",\"ipam\":{\"type\":\"host-local\",\"subnet\":\"10.0.0.0/24\"}}'\n";

fn vm_yaml(name: &str, address: &str) -> String {
    format!(
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n  namespace: lab\n  annotations:\n    kubevirt-net-webhook.io/networks: '{{\"ext\": \"{address}\"}}'\nspec:\n  template:\n    spec:\n      domain:\n        devices:\n          interfaces: [{{name: ext, bridge: {{}}}}]\n      networks: [{{name: ext, multus: {{networkName: br}}}}]\n"
    )
}

#[test]
fn exit_codes_follow_the_verdict() {
    let ok = run(&["review", "-f", &case("seed-wukong-static-ip.yaml")]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert!(stderr(&ok).ends_with("1 allowed, 0 denied\n"));
    let denied = run(&[
        "review",
        "-f",
        &case("macvlan-bridge-denied.yaml"),
        "-f",
        &case("sriov-and-macvtap.yaml"),
    ]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(stderr(&denied).contains("default/ubuntu-vm: denied:"));
    assert!(stderr(&denied).ends_with("1 allowed, 1 denied\n"));
}

#[test]
fn two_manifests_claiming_one_address_are_both_denied() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        &dir,
        "a.yaml",
        &format!("{NAD}---\n{}", vm_yaml("a", "10.0.0.5/24")),
    );
    let b = write(&dir, "b.yaml", &vm_yaml("b", "10.0.0.5/24"));
    let o = run(&["review", "-f", &a, "-f", &b]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("lab/a: denied:") && err.contains("lab/b: denied:"),
        "{err}"
    );
    assert!(err.contains("0 allowed, 2 denied"));
    // Against the cluster's VMs (--vms) instead.
    let cluster = tempfile::tempdir().unwrap();
    write(&cluster, "other.yaml", &vm_yaml("other", "10.0.0.6/24"));
    let c = write(
        &dir,
        "c.yaml",
        &format!("{NAD}---\n{}", vm_yaml("c", "10.0.0.6/24")),
    );
    let o = run(&[
        "review",
        "-f",
        &c,
        "--vms",
        &cluster.path().display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("VM \"other\" in this namespace"));
}

#[test]
fn input_errors_exit_2_naming_file_and_document() {
    let dir = tempfile::tempdir().unwrap();
    let broken = write(&dir, "broken.yaml", &format!("{NAD}---\nkind: [oops\n"));
    assert!(input_error(&["review", "-f", &broken]).contains("broken.yaml, document 2"));

    let typed = write(
        &dir,
        "typed.yaml",
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: t}\nspec:\n  template:\n    spec:\n      networks: {name: x}\n",
    );
    let err = input_error(&["review", "-f", &typed]);
    assert!(
        err.contains("typed.yaml, document 1") && err.contains("spec.template.spec.networks"),
        "{err}"
    );

    let no_template = write(
        &dir,
        "nt.yaml",
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: t}\nspec: {}\n",
    );
    assert!(input_error(&["review", "-f", &no_template]).contains("template"));

    let bad_nad = write(
        &dir,
        "nad.yaml",
        "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata: {name: n}\nspec: {config: 5}\n",
    );
    assert!(input_error(&["review", "-f", &bad_nad]).contains("spec.config"));

    assert!(
        input_error(&["review", "-f", "/does/not/exist.yaml"]).contains("/does/not/exist.yaml")
    );
    input_error(&[
        "review",
        "-f",
        &case("seed-wukong-static-ip.yaml"),
        "--bogus",
    ]);
    input_error(&["review"]);

    let bad_config = write(&dir, "config.yaml", "macPrefix: \"01\"\n");
    let err = input_error(&[
        "review",
        "-f",
        &case("seed-wukong-static-ip.yaml"),
        "--config",
        &bad_config,
    ]);
    assert!(
        err.contains("macPrefix") && err.contains("multicast"),
        "{err}"
    );
}

#[test]
fn stdin_and_admission_review_input() {
    let text = std::fs::read_to_string(case("seed-wukong-static-ip.yaml")).unwrap();
    let mut child = bin()
        .args(["review", "-f", "-", "-o", "patch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let patch: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        patch
            .as_array()
            .unwrap()
            .iter()
            .any(|op| op["path"] == "/spec/template/spec/domain/devices/interfaces/1/name")
    );

    // The same VM wrapped in an AdmissionReview answers with the caller's uid.
    let docs = kubevirt_net_webhook::manifests::parse_str(&text, "seed").unwrap();
    let vm = &docs
        .iter()
        .find(|d| d.kind() == "VirtualMachine")
        .unwrap()
        .value;
    let review = support::fixtures::admission_review(
        "admission.k8s.io/v1",
        "abc-123",
        "CREATE",
        Some(vm),
        None,
        true,
    );
    let dir = tempfile::tempdir().unwrap();
    let nad = docs
        .iter()
        .find(|d| d.kind() == "NetworkAttachmentDefinition")
        .unwrap();
    let f = write(
        &dir,
        "review.json",
        &format!("{}\n---\n{}", nad.value, review),
    );
    let o = run(&["review", "-f", &f, "-o", "review"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "one answer from /mutate, one from /validate"
    );
    assert_eq!(lines[0]["response"]["uid"], "abc-123");
    assert_eq!(lines[0]["response"]["patchType"], "JSONPatch");
    assert_eq!(lines[1]["response"]["allowed"], true);
}

#[test]
fn output_formats() {
    let yaml = run(&["review", "-f", &case("sriov-and-macvtap.yaml")]);
    let text = String::from_utf8(yaml.stdout).unwrap();
    assert!(text.contains("kind: VirtualMachine") && text.contains("macAddress:"));
    let json = run(&[
        "review",
        "-f",
        &case("sriov-and-macvtap.yaml"),
        "-f",
        &case("seed-wukong-static-ip.yaml"),
        "-o",
        "json",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["kind"], "List");
    assert_eq!(doc["items"].as_array().unwrap().len(), 2);
    let o = run(&["review", "-f", &case("sriov-and-macvtap.yaml"), "-o", "xml"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn mac_command() {
    let o = run(&["mac", "default", "ubuntu-vm", "external"]);
    assert_eq!(o.status.code(), Some(0));
    let mac = String::from_utf8(o.stdout).unwrap();
    assert!(
        mac.trim().starts_with("02:") && mac.trim().len() == 17,
        "{mac}"
    );
    assert_eq!(run(&["mac", "default"]).status.code(), Some(2));
}

/// Scalars a YAML 1.1 reader (kubectl's Go YAML, PyYAML) would type, were they not quoted.
const YAML_11_SCALARS: &[&str] = &[
    "yes",
    "no",
    "on",
    "off",
    "y",
    "n",
    "Y",
    "NO",
    "True",
    "~",
    "null",
    "Null",
    "012",
    "0x10",
    "0o17",
    "0b101",
    "1e3",
    "1_000",
    "190:20:30",
    ".inf",
    "-.Inf",
    ".nan",
    "=",
    "<<",
    "2026-12-01",
    "2001-12-14t21:59:43.10-05:00",
    "true",
    "false",
    "1.5",
    "+1",
    "",
];

#[test]
fn yaml_output_reads_back_unchanged_in_yaml_1_1() {
    let mut vm: serde_json::Value = serde_json::from_str(
        r#"{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "quoted", "namespace": "lab", "annotations": {}, "labels": {}},
            "spec": {"template": {"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}}]}},
                "networks": [{"name": "default", "pod": {}}]}}}}"#,
    )
    .unwrap();
    for (i, s) in YAML_11_SCALARS.iter().enumerate() {
        vm["metadata"]["annotations"][format!("example.com/a{i}")] = serde_json::json!(s);
        vm["metadata"]["labels"][format!("l{i}")] = serde_json::json!(s);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "vm.json", &vm.to_string());
    let o = run(&["review", "-f", &file]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // PyYAML implements YAML 1.1, as kubectl's Go YAML does; a typed value shows as
    // {"type": ...}, so it cannot pass for a string.
    let mut python = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml\n\
             def plain(o):\n    return {'type': type(o).__name__, 'value': str(o)}\n\
             print(json.dumps(yaml.safe_load(sys.stdin), default=plain))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with PyYAML (.ci/run installs python3-yaml)");
    python.stdin.take().unwrap().write_all(&o.stdout).unwrap();
    let read = python.wait_with_output().unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let back: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    for field in ["annotations", "labels"] {
        assert_eq!(
            back["metadata"][field],
            vm["metadata"][field],
            "{field} as a YAML 1.1 reader sees them; output was:\n{}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    assert_eq!(back["kind"], "VirtualMachine");
}
