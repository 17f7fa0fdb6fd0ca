//! Rendering `deploy/` with `kubectl kustomize`, shared by `tests/deploy.rs` and
//! `tests/monitoring.rs`.
//!
//! Needs `kubectl` (any kubectl >= 1.21, whose embedded kustomize is v4+; Debian's
//! `kubernetes-client` package provides kubectl). A missing kubectl fails the tests: a
//! skipped check of the manifests is how a broken install ships. `KUBECTL` overrides the
//! command. A kubectl too old for this kustomization format (Debian bookworm's 1.20 embeds
//! kustomize v2) falls back to [`render_fallback`], which understands exactly the subset of
//! kustomize the base and its plain overlays use (not components or generators);
//! `fallback_renderer_agrees_with_kubectl` in `tests/deploy.rs` keeps it honest.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::{Value, json};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn kubectl() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

pub fn parse_docs(text: &str, origin: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| {
            Value::deserialize(doc).unwrap_or_else(|e| panic!("{origin}: invalid YAML: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// Whether kubectl embeds a kustomize that reads `resources:` directories and `patches:`
/// (v4+). kubectl prints a `Kustomize Version` line since 1.21, which is when it got v4.
pub fn kubectl_has_modern_kustomize() -> bool {
    match Command::new(kubectl())
        .args(["version", "--client"])
        .output()
    {
        Ok(o) => String::from_utf8_lossy(&o.stdout).contains("Kustomize Version"),
        Err(e) => panic!("{}", missing_kubectl(&e)),
    }
}

pub fn missing_kubectl(e: &std::io::Error) -> String {
    format!(
        "cannot run `{}` ({e}). Install kubectl >= 1.21 (Debian package kubernetes-client, \
         or any kubectl) to test deploy/; CI installs it.",
        kubectl()
    )
}

/// Renders `deploy/<rel>` with kubectl (or, for a kubectl too old, the fallback).
pub fn render(rel: &str) -> Vec<Value> {
    let dir = repo().join(rel);
    let output = match Command::new(kubectl()).arg("kustomize").arg(&dir).output() {
        Ok(output) => output,
        Err(e) => panic!("{}", missing_kubectl(&e)),
    };
    if output.status.success() {
        return parse_docs(&String::from_utf8_lossy(&output.stdout), rel);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if kubectl_has_modern_kustomize() {
        panic!("`kubectl kustomize {rel}` failed:\n{stderr}");
    }
    eprintln!(
        "note: this kubectl embeds a kustomize older than v4 and cannot render {rel} \
         ({}); using the test's own renderer. Users need kubectl >= 1.21.",
        stderr.lines().next().unwrap_or_default()
    );
    render_fallback(&dir)
}

/// Kinds the `namespace:` field of a kustomization leaves alone.
pub const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "CustomResourceDefinition",
    "PriorityClass",
    "ClusterIssuer",
];

/// A kustomize subset: `resources` (files and directories), `patches` given by `path`
/// (strategic-merge patches that only add map fields, applied as JSON merge patches) and
/// `namespace`. Anything else fails loudly rather than rendering something different.
pub fn render_fallback(dir: &Path) -> Vec<Value> {
    let file = dir.join("kustomization.yaml");
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let k: Value = serde_yaml_ng::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", file.display()));
    let known = ["apiVersion", "kind", "namespace", "resources", "patches"];
    for key in k.as_object().expect("kustomization is a map").keys() {
        assert!(
            known.contains(&key.as_str()),
            "{}: the fallback renderer does not support `{key}`; extend it or use kubectl >= 1.21",
            file.display()
        );
    }
    let mut objects = Vec::new();
    for entry in k["resources"].as_array().into_iter().flatten() {
        let path = dir.join(entry.as_str().expect("resource is a string"));
        if path.is_dir() {
            objects.extend(render_fallback(&path));
        } else {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            objects.extend(parse_docs(&text, &path.display().to_string()));
        }
    }
    for patch_ref in k["patches"].as_array().into_iter().flatten() {
        let rel = patch_ref["path"]
            .as_str()
            .expect("the fallback renderer supports only `patches: [{path: FILE}]`");
        let path = dir.join(rel);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        for patch in parse_docs(&text, rel) {
            let target = objects
                .iter_mut()
                .find(|o| o["kind"] == patch["kind"] && name(o) == name(&patch))
                .unwrap_or_else(|| panic!("{rel}: patch matches no resource"));
            merge(target, &patch);
        }
    }
    if let Some(ns) = k["namespace"].as_str() {
        for o in &mut objects {
            let kind = o["kind"].as_str().unwrap_or_default();
            if !CLUSTER_SCOPED.contains(&kind) {
                o["metadata"]["namespace"] = json!(ns);
            }
        }
    }
    objects
}

/// JSON merge patch (RFC 7396) minus deletion, which the patches here never need.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (key, value) in p {
                merge(t.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

pub fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}
