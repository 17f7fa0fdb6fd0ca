//! One admission path (SPEC §4): the running server (over TLS) and `review -o review` answer
//! the same AdmissionReviews with the same bytes, for every kind of question a cluster asks.
mod support;

use std::{path::Path, process::Command};

use base64::Engine as _;
use hyper::StatusCode;
use kubevirt_net_webhook::manifests;
use serde_json::{Value, json};
use support::{
    fixtures::admission_review,
    server::{CASES, Http, Running},
};

/// The server's answers: /mutate, then /validate with the mutated object, as kube-apiserver
/// asks them.
async fn server_answers(http: &mut Http, review: &Value) -> (Value, Value) {
    server_answers_at(http, review, "/validate").await
}

/// [`server_answers`] with `validate` as the validating endpoint.
async fn server_answers_at(http: &mut Http, review: &Value, validate: &str) -> (Value, Value) {
    let (status, mutate) = http.post_json("/mutate", review).await;
    assert_eq!(status, StatusCode::OK, "{mutate}");
    let mut validate_request = review.clone();
    if let (Some(patch), Some(object)) = (
        mutate["response"]["patch"].as_str(),
        validate_request.pointer_mut("/request/object"),
    ) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(object, &patch).unwrap();
    }
    let (status, validate) = http.post_json(validate, &validate_request).await;
    assert_eq!(status, StatusCode::OK, "{validate}");
    (mutate, validate)
}

/// `review -o review`'s answers for one AdmissionReview file, with the server's context.
fn review_answers(dir: &Path, review: &Value) -> (Value, Value) {
    review_answers_with(dir, review, &[])
}

/// [`review_answers`] with more arguments.
fn review_answers_with(dir: &Path, review: &Value, extra: &[&str]) -> (Value, Value) {
    let file = dir.join("review.json");
    std::fs::write(&file, review.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kubevirt-net-webhook"))
        .args(["review", "-o", "review", "--nads", CASES, "--vms", CASES])
        .args(extra)
        .arg("-f")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "review failed: {stderr}"
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let [mutate, validate] = lines.as_slice() else {
        panic!("two answers expected, got {lines:?}; {stderr}");
    };
    (mutate.clone(), validate.clone())
}

fn case_vms() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(CASES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        for doc in manifests::read_path(&file).unwrap() {
            if doc.kind() == "VirtualMachine" {
                out.push((doc.origin.clone(), doc.value));
            }
        }
    }
    assert!(out.len() >= 5, "cases missing under {CASES}");
    out
}

/// The object the API server stores after /mutate.
fn stored(answer: &Value, object: &Value) -> Value {
    let mut stored = object.clone();
    if let Some(patch) = answer["response"]["patch"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut stored, &patch).unwrap();
    }
    stored
}

#[tokio::test]
async fn server_and_review_give_the_same_answers() {
    let server = Running::start(|_, _, _| {}).await;
    let mut http = server.http().await;
    let dir = tempfile::tempdir().unwrap();
    let mut asked = 0;
    let mut seen_patch = false;
    for (origin, vm) in case_vms() {
        let v1 = "admission.k8s.io/v1";
        let create = admission_review(v1, "c", "CREATE", Some(&vm), None, false);
        let (first, _) = server_answers(&mut http, &create).await;
        let stored = stored(&first, &vm);
        seen_patch |= first["response"]["patch"].is_string();
        let mut other_group = vm.clone();
        other_group["apiVersion"] = json!("vmoperator.vmware.com/v1alpha3");
        let questions = [
            ("v1 CREATE", create.clone()),
            (
                "v1beta1 CREATE",
                admission_review(
                    "admission.k8s.io/v1beta1",
                    "b",
                    "CREATE",
                    Some(&vm),
                    None,
                    false,
                ),
            ),
            (
                "dry-run CREATE",
                admission_review(v1, "d", "CREATE", Some(&vm), None, true),
            ),
            (
                "UPDATE re-applying the manifest",
                admission_review(v1, "r", "UPDATE", Some(&vm), Some(&stored), false),
            ),
            (
                "UPDATE of the stored object",
                admission_review(v1, "s", "UPDATE", Some(&stored), Some(&stored), false),
            ),
            (
                "DELETE",
                admission_review(v1, "x", "DELETE", None, Some(&stored), false),
            ),
            (
                "another group's VirtualMachine",
                admission_review(v1, "o", "CREATE", Some(&other_group), None, false),
            ),
        ];
        for (what, question) in questions {
            let from_server = server_answers(&mut http, &question).await;
            let from_review = review_answers(dir.path(), &question);
            assert_eq!(from_server, from_review, "{origin}: {what}");
            assert_eq!(
                from_server.0["apiVersion"], question["apiVersion"],
                "{origin}: {what}: answered in the version asked"
            );
            asked += 1;
        }
    }
    assert!(seen_patch, "some case is mutated, so patches are compared");
    assert!(asked >= 35, "{asked}");
}

#[tokio::test]
async fn every_kind_is_answered_alike_by_server_and_review() {
    use kubevirt_net_webhook::model::kinds::Kind;
    let server = Running::start(|_, _, _| {}).await;
    let mut http = server.http().await;
    let dir = tempfile::tempdir().unwrap();
    let mut mutated_vmis = 0;
    for (origin, vm) in case_vms() {
        for kind in [
            Kind::VirtualMachineInstance,
            Kind::VirtualMachineInstanceReplicaSet,
            Kind::VirtualMachinePool,
        ] {
            let object = support::fixtures::as_kind(&vm, kind);
            let question = admission_review(
                "admission.k8s.io/v1",
                "k",
                "CREATE",
                Some(&object),
                None,
                false,
            );
            let from_server = server_answers(&mut http, &question).await;
            assert_eq!(
                from_server,
                review_answers(dir.path(), &question),
                "{origin} as {kind:?}"
            );
            if kind == Kind::VirtualMachineInstance
                && from_server.0["response"]["patch"].is_string()
            {
                mutated_vmis += 1;
            }
        }
    }
    assert!(mutated_vmis >= 3, "VMIs get MACs: {mutated_vmis}");
}

/// `/validate/warn` and `review --enforcement warn` give the same answers (SPEC §2.11), and
/// some case is one that `/validate` denies, so the warning path is compared.
#[tokio::test]
async fn warn_endpoint_and_review_enforcement_warn_agree() {
    let server = Running::start(|_, _, _| {}).await;
    let mut http = server.http().await;
    let dir = tempfile::tempdir().unwrap();
    let mut warned = 0;
    for (origin, vm) in case_vms() {
        let create = admission_review("admission.k8s.io/v1", "w", "CREATE", Some(&vm), None, false);
        let from_server = server_answers_at(&mut http, &create, "/validate/warn").await;
        let from_review = review_answers_with(dir.path(), &create, &["--enforcement", "warn"]);
        assert_eq!(from_server, from_review, "{origin}");
        assert_eq!(from_server.1["response"]["allowed"], true, "{origin}");
        let (_, denied) = server_answers(&mut http, &create).await;
        if denied["response"]["allowed"] == false {
            warned += 1;
        }
    }
    assert!(warned >= 1, "no case is denied by /validate");
}
