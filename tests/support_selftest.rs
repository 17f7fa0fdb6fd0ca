//! Self-tests of tests/support: the schema validator accepts real objects and rejects broken
//! ones, and the guest renderers really run and really bind addresses to MACs.

mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
//TMP use support::guest::{self, InputKind, OutputKind, RenderedTree, Route};
use support::schema::{self, validate_vm, yaml_documents};

fn testdata(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata")
        .join(sub)
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

fn vms_in(dir: &Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for f in yaml_files(dir) {
        let text = std::fs::read_to_string(&f).unwrap();
        let docs = yaml_documents(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for (i, d) in docs.into_iter().enumerate() {
            if d["kind"] == "VirtualMachine" {
                out.push((format!("{}#{i}", f.display()), d));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// schema

#[test]
fn schema_loads_and_knows_interfaces() {
    let s = schema::vm_schema();
    let iface = s.properties.as_ref().unwrap()["spec"]
        .properties
        .as_ref()
        .unwrap()["template"]
        .properties
        .as_ref()
        .unwrap()["spec"]
        .properties
        .as_ref()
        .unwrap()["domain"]
        .properties
        .as_ref()
        .unwrap()["devices"]
        .properties
        .as_ref()
        .unwrap()["interfaces"]
        .items
        .as_ref()
        .unwrap();
    let props = iface.properties.as_ref().unwrap();
    assert!(props.contains_key("macAddress"));
    assert!(!props.contains_key("macaddress"));
}

#[test]
fn kubevirt_example_vms_validate() {
    let vms = vms_in(&testdata("kubevirt-examples"));
    assert!(
        vms.len() >= 5,
        "expected several example VMs, found {}",
        vms.len()
    );
    for (name, vm) in vms {
        if let Err(e) = validate_vm(&vm) {
            panic!("{name} does not validate:\n{}", e.join("\n"));
        }
    }
}

#[test]
fn case_vms_validate() {
    let vms = vms_in(&testdata("cases"));
    assert!(
        vms.len() >= 5,
        "expected a VM per case, found {}",
        vms.len()
    );
    for (name, vm) in vms {
        if let Err(e) = validate_vm(&vm) {
            panic!("{name} does not validate:\n{}", e.join("\n"));
        }
    }
}

/// A valid VM with two interfaces and a cloudInitNoCloud volume.
fn valid_vm() -> Value {
    let vm = json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {
            "name": "vm1",
            "namespace": "default",
            "annotations": {"kubevirt-net-webhook.io/network-data": "auto"},
            "labels": {"app": "x"}
        },
        "spec": {
            "runStrategy": "Always",
            "template": {
                "metadata": {"labels": {"kubevirt.io/vm": "vm1"}},
                "spec": {
                    "domain": {
                        "cpu": {"cores": 2},
                        "memory": {"guest": "2Gi"},
                        "devices": {
                            "disks": [
                                {"name": "rootdisk", "disk": {"bus": "virtio"}},
                                {"name": "cloudinitdisk", "disk": {"bus": "virtio"}}
                            ],
                            "interfaces": [
                                {"name": "default", "masquerade": {}, "macAddress": "02:00:00:00:00:01"},
                                {"name": "external", "bridge": {}, "macAddress": "02:00:00:00:00:02"}
                            ]
                        }
                    },
                    "networks": [
                        {"name": "default", "pod": {}},
                        {"name": "external", "multus": {"networkName": "nad"}}
                    ],
                    "volumes": [
                        {"name": "rootdisk", "containerDisk": {"image": "quay.io/containerdisks/ubuntu:22.04"}},
                        {"name": "cloudinitdisk", "cloudInitNoCloud": {
                            "userData": "#cloud-config",
                            "networkData": "version: 2\n"
                        }}
                    ]
                }
            }
        }
    });
    validate_vm(&vm).unwrap_or_else(|e| panic!("base VM invalid: {e:?}"));
    vm
}

/// Applies `f` to a valid VM and returns the violations, which must not be empty.
fn violations(f: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut vm = valid_vm();
    f(&mut vm);
    match validate_vm(&vm) {
        Ok(()) => panic!("mutated VM unexpectedly validates: {vm:#}"),
        Err(e) => e,
    }
}

fn assert_has(errs: &[String], expected: &str) {
    assert!(
        errs.iter().any(|e| e == expected),
        "expected violation {expected:?}, got {errs:#?}"
    );
}

const TSPEC: &str = "/spec/template/spec";

#[test]
fn misspelled_mac_address_is_rejected() {
    let errs = violations(|vm| {
        let i = vm
            .pointer_mut(&format!("{TSPEC}/domain/devices/interfaces/1"))
            .unwrap()
            .as_object_mut()
            .unwrap();
        let mac = i.remove("macAddress").unwrap();
        i.insert("macaddress".into(), mac);
    });
    assert_eq!(
        errs,
        vec!["spec.template.spec.domain.devices.interfaces[1].macaddress: unknown field"]
    );
}

#[test]
fn wrong_types_are_rejected() {
    // disk.bus is a string in the schema.
    let errs = violations(|vm| {
        *vm.pointer_mut(&format!("{TSPEC}/domain/devices/disks/0/disk/bus"))
            .unwrap() = json!(5);
    });
    assert_has(
        &errs,
        "spec.template.spec.domain.devices.disks[0].disk.bus: expected string, got integer",
    );
    // cpu.cores is an integer (format int64... or int32): a string is wrong.
    let errs = violations(|vm| {
        *vm.pointer_mut(&format!("{TSPEC}/domain/cpu/cores"))
            .unwrap() = json!("2");
    });
    assert_has(
        &errs,
        "spec.template.spec.domain.cpu.cores: expected integer, got string",
    );
    // memory.guest is int-or-string: a boolean is wrong.
    let errs = violations(|vm| {
        *vm.pointer_mut(&format!("{TSPEC}/domain/memory/guest"))
            .unwrap() = json!(true);
    });
    assert_has(
        &errs,
        "spec.template.spec.domain.memory.guest: expected integer or string, got boolean",
    );
    // interfaces is an array.
    let errs = violations(|vm| {
        *vm.pointer_mut(&format!("{TSPEC}/domain/devices/interfaces"))
            .unwrap() = json!({});
    });
    assert_has(
        &errs,
        "spec.template.spec.domain.devices.interfaces: expected array, got object",
    );
}

#[test]
fn unknown_key_in_cloud_init_volume_is_rejected() {
    let errs = violations(|vm| {
        vm.pointer_mut(&format!("{TSPEC}/volumes/1/cloudInitNoCloud"))
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert("networkdata".into(), json!("version: 2\n"));
    });
    assert_eq!(
        errs,
        vec!["spec.template.spec.volumes[1].cloudInitNoCloud.networkdata: unknown field"]
    );
}

#[test]
fn non_string_annotation_and_label_are_rejected() {
    let errs = violations(|vm| {
        vm["metadata"]["annotations"]["kubevirt-net-webhook.io/network-data"] = json!(true);
        vm["metadata"]["labels"]["replicas"] = json!(3);
    });
    assert_has(
        &errs,
        "metadata.annotations[\"kubevirt-net-webhook.io/network-data\"]: expected string, got boolean",
    );
    assert_has(
        &errs,
        "metadata.labels.replicas: expected string, got integer",
    );
    let errs = violations(|vm| vm["metadata"]["annotations"] = json!(["a"]));
    assert_has(
        &errs,
        "metadata.annotations: expected map of string to string, got array",
    );
}

#[test]
fn other_violations_are_rejected() {
    // Required field missing: interfaces need a name.
    let errs = violations(|vm| {
        vm.pointer_mut(&format!("{TSPEC}/domain/devices/interfaces/0"))
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove("name");
    });
    assert_has(
        &errs,
        "spec.template.spec.domain.devices.interfaces[0].name: required field missing",
    );
    // Enum: domain.rebootPolicy is Reboot|Terminate (runStrategy has no enum in the schema).
    let errs = violations(|vm| {
        vm.pointer_mut(&format!("{TSPEC}/domain"))
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert("rebootPolicy".into(), json!("Sometimes"));
    });
    assert_eq!(
        errs,
        vec![
            "spec.template.spec.domain.rebootPolicy: \"Sometimes\" is not one of [\"Reboot\", \"Terminate\"]"
        ]
    );
    // Null where not nullable.
    let errs = violations(|vm| {
        *vm.pointer_mut(&format!("{TSPEC}/domain/devices/interfaces/0/macAddress"))
            .unwrap() = Value::Null;
    });
    assert!(
        errs[0].starts_with("spec.template.spec.domain.devices.interfaces[0].macAddress: null"),
        "{errs:?}"
    );
    // apiVersion / kind / unknown top-level field / unknown ObjectMeta field.
    let errs = violations(|vm| {
        vm["apiVersion"] = json!("kubevirt.io/v2");
        vm["kind"] = json!("VirtualMachineInstance");
        vm["extra"] = json!(1);
        vm["metadata"]["annotation"] = json!({});
    });
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert_has(&errs, "extra: unknown field");
    assert_has(
        &errs,
        "metadata.annotation: unknown field (not an ObjectMeta field)",
    );
    // int32 range.
    let errs = violations(|vm| {
        vm.pointer_mut(TSPEC)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert("terminationGracePeriodSeconds".into(), json!(1.5));
    });
    assert_has(
        &errs,
        "spec.template.spec.terminationGracePeriodSeconds: expected integer, got number",
    );
}

#[test]
fn preserve_unknown_fields_are_accepted() {
    // spec.template.metadata preserves unknown fields.
    let mut vm = valid_vm();
    vm["spec"]["template"]["metadata"]["whatever"] = json!({"x": 1});
    validate_vm(&vm).unwrap();
}
