//! `certs/install.sh` against a fake kubectl that records what the script asks of the
//! cluster. `kubectl create ... --dry-run=client` (pure client-side YAML generation) is
//! passed to the real kubectl, so the Secret the test inspects is the one kubectl makes;
//! a missing kubectl therefore fails these tests (install Debian's kubernetes-client).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kubevirt-net-webhook");

/// Answers like a cluster holding the namespace and both webhook configurations of
/// deploy/ (the validating one with two webhooks, to cover every-entry patching).
const FAKE_KUBECTL: &str = r#"#!/usr/bin/env bash
set -euo pipefail
printf '%s\n' "$*" >>"$FAKE_DIR/calls.log"
ns=""
if [[ "$1" == "-n" ]]; then ns=$2; shift 2; fi
case "$1" in
  create) exec "$REAL_KUBECTL" -n "$ns" "$@" ;;
  apply) cat >"$FAKE_DIR/applied.yaml" ;;
  patch) printf '%s' "${@: -1}" >"$FAKE_DIR/patch-$2.json" ;;
  get)
    if [[ "$2" == namespace ]]; then
      [[ "$3" == "$FAKE_NAMESPACE" ]] || { echo "namespaces \"$3\" not found" >&2; exit 1; }
      echo "namespace/$3"
    elif [[ "$2" == secret ]]; then
      [[ -f "$FAKE_DIR/old-ca.b64" ]] || { echo "secrets \"$3\" not found" >&2; exit 1; }
      cat "$FAKE_DIR/old-ca.b64"
    elif [[ "$*" == *jsonpath* && "$2" == mutatingwebhookconfiguration ]]; then
      printf 'mutate.kubevirt-net-webhook.io\n'
    elif [[ "$*" == *jsonpath* ]]; then
      printf 'validate.kubevirt-net-webhook.io\nvalidate2.kubevirt-net-webhook.io\n'
    else
      echo "$2/$3"
    fi ;;
  *) echo "fake kubectl: unexpected $*" >&2; exit 3 ;;
esac
"#;

struct Fake {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    kubectl: PathBuf,
}

fn real_kubectl() -> String {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    if let Err(e) = Command::new(&kubectl)
        .args(["version", "--client"])
        .output()
    {
        panic!(
            "cannot run `{kubectl}` ({e}); install kubectl (Debian package kubernetes-client) \
             to test certs/install.sh; CI installs it"
        );
    }
    kubectl
}

fn fake() -> Fake {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let kubectl = dir.join("kubectl");
    std::fs::write(&kubectl, FAKE_KUBECTL).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    Fake {
        _tmp: tmp,
        dir,
        kubectl,
    }
}

fn install(fake: &Fake, namespace_in_cluster: &str) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/install.sh");
    Command::new("bash")
        .arg(script)
        .args(["--bin", BIN])
        .env("KUBECTL", &fake.kubectl)
        .env("REAL_KUBECTL", real_kubectl())
        .env("FAKE_DIR", &fake.dir)
        .env("FAKE_NAMESPACE", namespace_in_cluster)
        // Client-side generation must not need a cluster or a kubeconfig.
        .env("KUBECONFIG", fake.dir.join("no-kubeconfig"))
        .output()
        .expect("run bash")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn decode(b64: &str) -> String {
    String::from_utf8(B64.decode(b64).expect("base64")).expect("utf-8 PEM")
}

/// The caBundle each webhook got, after checking the patch guards every entry by name.
fn ca_bundles(fake: &Fake, kind: &str, names: &[&str]) -> Vec<String> {
    let patch: Value = serde_json::from_str(&read(&fake.dir.join(format!("patch-{kind}.json"))))
        .expect("patch is JSON");
    let ops = patch.as_array().expect("JSON patch is a list");
    assert_eq!(ops.len(), names.len() * 2, "{kind}: {patch}");
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let test = &ops[2 * i];
            let add = &ops[2 * i + 1];
            assert_eq!(test["op"], "test");
            assert_eq!(test["path"], format!("/webhooks/{i}/name"));
            assert_eq!(test["value"], *name);
            assert_eq!(add["op"], "add");
            assert_eq!(add["path"], format!("/webhooks/{i}/clientConfig/caBundle"));
            decode(add["value"].as_str().expect("caBundle string"))
        })
        .collect()
}

fn applied_secret(fake: &Fake) -> Value {
    let yaml = read(&fake.dir.join("applied.yaml"));
    serde_yaml_ng::from_str(&yaml).expect("applied YAML")
}

#[test]
fn installs_secret_and_patches_every_webhook() {
    let fake = fake();
    let out = install(&fake, "kubevirt-net-webhook");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "install.sh failed: {stderr}");

    let secret = applied_secret(&fake);
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(secret["metadata"]["name"], "kubevirt-net-webhook-tls");
    assert_eq!(secret["metadata"]["namespace"], "kubevirt-net-webhook");
    let data = &secret["data"];
    let ca = decode(data["ca.crt"].as_str().expect("ca.crt"));
    assert!(decode(data["tls.crt"].as_str().expect("tls.crt")).contains("BEGIN CERTIFICATE"));
    assert!(decode(data["tls.key"].as_str().expect("tls.key")).contains("BEGIN PRIVATE KEY"));
    assert!(ca.contains("BEGIN CERTIFICATE"));

    // No earlier Secret: the bundle is exactly the new CA, in every webhook.
    let mutating = ca_bundles(
        &fake,
        "mutatingwebhookconfiguration",
        &["mutate.kubevirt-net-webhook.io"],
    );
    let validating = ca_bundles(
        &fake,
        "validatingwebhookconfiguration",
        &[
            "validate.kubevirt-net-webhook.io",
            "validate2.kubevirt-net-webhook.io",
        ],
    );
    for bundle in mutating.iter().chain(&validating) {
        assert_eq!(bundle, &ca);
    }

    let calls = read(&fake.dir.join("calls.log"));
    let apply = calls
        .lines()
        .find(|l| l.starts_with("apply"))
        .expect("an apply call");
    assert!(
        apply.contains("--server-side"),
        "client-side apply would copy tls.key into an annotation: {apply}"
    );
    // The caBundle is patched before the Secret changes, so the new certificate is
    // trusted by the time pods serve it.
    let first_patch = calls.lines().position(|l| l.starts_with("patch")).unwrap();
    let first_apply = calls.lines().position(|l| l.starts_with("apply")).unwrap();
    assert!(first_patch < first_apply, "{calls}");
}

#[test]
fn rotation_keeps_the_previous_ca_trusted() {
    let fake = fake();
    let old_ca = "-----BEGIN CERTIFICATE-----\nb2xk\n-----END CERTIFICATE-----\n";
    std::fs::write(fake.dir.join("old-ca.b64"), B64.encode(old_ca)).unwrap();
    let out = install(&fake, "kubevirt-net-webhook");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_ca = decode(applied_secret(&fake)["data"]["ca.crt"].as_str().unwrap());
    let bundle = &ca_bundles(
        &fake,
        "mutatingwebhookconfiguration",
        &["mutate.kubevirt-net-webhook.io"],
    )[0];
    assert_eq!(bundle, &format!("{new_ca}{old_ca}"));
}

#[test]
fn stops_before_touching_anything_when_deploy_is_not_applied() {
    let fake = fake();
    let out = install(&fake, "some-other-namespace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("kubectl apply -k deploy/"), "{stderr}");
    assert!(!fake.dir.join("applied.yaml").exists());
    assert!(
        !fake
            .dir
            .join("patch-mutatingwebhookconfiguration.json")
            .exists()
    );
}
