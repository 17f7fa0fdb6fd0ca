//! The webhook as CI pipelines run it: `kubevirt-net-webhook review -f FILE -o json`, a
//! stable interface (the crate's modules may move).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_kubevirt-net-webhook");

/// A file of `tests/data/cases/`.
pub fn case(name: &str) -> PathBuf {
    super::data("cases").join(name)
}

/// Writes `docs` as one multi-document YAML file `dir/name`.
pub fn write_yaml(dir: &Path, name: &str, docs: &[Value]) -> PathBuf {
    let path = dir.join(name);
    let text: Vec<String> = docs
        .iter()
        .map(|d| serde_yaml_ng::to_string(d).unwrap())
        .collect();
    std::fs::write(&path, text.join("---\n")).unwrap();
    path
}

/// The YAML documents of a file.
pub fn read_yaml(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|d| !d.is_null())
        .collect()
}

/// Runs `review -o json` on `files` and returns the objects it prints (the items of a
/// `List`, or the one object). Panics, with stderr, unless everything was allowed.
pub fn review_json(files: &[PathBuf]) -> Vec<Value> {
    let mut cmd = Command::new(BIN);
    cmd.arg("review");
    for f in files {
        cmd.arg("-f").arg(f);
    }
    let out = cmd
        .args(["-o", "json"])
        .output()
        .expect("run the webhook binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "review {files:?} exited with {}:\n{stderr}",
        out.status
    );
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("review printed no JSON ({e}):\n{stderr}"));
    match doc["kind"].as_str() {
        Some("List") => doc["items"].as_array().cloned().unwrap_or_default(),
        _ => vec![doc],
    }
}

/// The VirtualMachines among `objects`.
pub fn vms(objects: &[Value]) -> Vec<Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == "VirtualMachine")
        .cloned()
        .collect()
}

/// The MAC the webhook gave interface `iface`.
pub fn mac(vm: &Value, iface: &str) -> String {
    vm.pointer("/spec/template/spec/domain/devices/interfaces")
        .and_then(Value::as_array)
        .and_then(|ifs| ifs.iter().find(|i| i["name"] == iface))
        .and_then(|i| i["macAddress"].as_str())
        .unwrap_or_else(|| panic!("interface {iface} has no macAddress"))
        .to_string()
}

/// The names of the VM's interfaces, in order, with whether each is on the pod network.
pub fn interfaces(vm: &Value) -> Vec<(String, bool)> {
    let spec = &vm["spec"]["template"]["spec"];
    let pod_nets: Vec<&str> = spec["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n.get("pod").is_some())
        .filter_map(|n| n["name"].as_str())
        .collect();
    spec["domain"]["devices"]["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["name"].as_str())
        .map(|n| (n.to_string(), pod_nets.contains(&n)))
        .collect()
}
