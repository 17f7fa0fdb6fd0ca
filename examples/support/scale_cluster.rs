//! A cluster of N VMs "like real ones", for the scale examples (`audit_scale`: as files;
//! `apiserver_scale`: stored in a real kube-apiserver). Include it by path next to
//! `tests/support/fixtures.rs`, which it uses as `crate::fixtures`:
//!
//! ```text
//! #[path = "../tests/support/fixtures.rs"]
//! mod fixtures;
//! #[path = "support/scale_cluster.rs"]
//! mod scale_cluster;
//! ```
//!
//! VM `i` is `tenant-NN/vm-IIIIII` (`NN` = `i % namespaces`), as `kubectl get vm -o yaml`
//! shows a running one. The NADs every VM uses are in the shared `infra` namespace: `front`
//! (bridge, 10.0.0.0/8), `back` (bridge, 172.16.0.0/12) and `legacy` (macvlan). Each VM has 3
//! NICs: the pod network (masquerade) and two bridge NICs on `front` and `back`, every one
//! with its MAC, and an address on each bridge NIC requested through
//! `kubevirt-net-webhook.io/networks`; all unique, except for ten violations planted in seven
//! VMs ([`PLANTED`]):
//!
//! - an address held on `front` by two VMs (2 rows, `address-conflict`),
//! - an address held on `back` by three VMs (3 rows),
//! - a MAC on `front` used by two VMs (2 rows, `mac-conflict`),
//! - three VMs with their `back` NIC on `legacy`, the macvlan NAD (3 rows, `bridge-binding`).
//!
//! With 100 namespaces (both examples' default) each planted VM is in a namespace of its own.
#![allow(dead_code)]

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::fixtures;

/// The VMs' layout: how many, over how many namespaces.
#[derive(Debug, Clone, Copy)]
pub struct Cluster {
    /// At least 100 (the planted VMs are among the first 100).
    pub vms: usize,
    pub namespaces: usize,
}

/// What is planted in VM `i`, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plant {
    /// Requests `front` address of VM `.0`.
    FrontAddressOf(usize),
    /// Requests `back` address of VM `.0`.
    BackAddressOf(usize),
    /// Uses the `front` MAC of VM `.0`.
    FrontMacOf(usize),
    /// Its `back` NIC is on the macvlan NAD.
    Macvlan,
}

/// The planted violations: (VM, what); with 100 namespaces each VM is in its own.
pub const PLANTED: [(usize, Plant); 7] = [
    (77, Plant::FrontAddressOf(3)),
    (41, Plant::BackAddressOf(10)),
    (92, Plant::BackAddressOf(10)),
    (58, Plant::FrontMacOf(25)),
    (5, Plant::Macvlan),
    (50, Plant::Macvlan),
    (95, Plant::Macvlan),
];

/// An audit row as expected: (namespace, name, rule, the other holders its message names).
pub type Row = (String, String, &'static str, Vec<String>);

pub fn name(i: usize) -> String {
    format!("vm-{i:06}")
}

/// A MAC `02:<nic>:<i as 3 bytes>:<1>`-like, unique per (nic, i); locally administered, unicast.
pub fn mac(nic: u8, i: usize) -> String {
    format!(
        "02:{nic:02x}:{:02x}:{:02x}:{:02x}:01",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

/// VM `i`'s own address on `front` (10.0.0.0/8) and `back` (172.16.0.0/12).
pub fn front_address(i: usize) -> String {
    let h = i + 256;
    format!("10.{}.{}.{}/8", h >> 16, (h >> 8) & 0xff, h & 0xff)
}

pub fn back_address(i: usize) -> String {
    let h = i + 256;
    format!("172.{}.{}.{}/12", 16 + (h >> 16), (h >> 8) & 0xff, h & 0xff)
}

pub fn plant(i: usize) -> Option<Plant> {
    PLANTED
        .iter()
        .find(|(vm, _)| *vm == i)
        .map(|(_, plant)| *plant)
}

/// The NADs every VM uses, in `infra`.
pub fn nads() -> Vec<Value> {
    let bridge = |name: &str, subnet: &str, gateway: &str| {
        fixtures::nad_object(
            "infra",
            name,
            &json!({"cniVersion": "0.3.1", "name": name, "type": "bridge", "bridge": format!("br-{name}"),
                "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet, "gateway": gateway}]]}})
            .to_string(),
        )
    };
    vec![
        bridge("front", "10.0.0.0/8", "10.0.0.1"),
        bridge("back", "172.16.0.0/12", "172.16.0.1"),
        fixtures::nad_object(
            "infra",
            "legacy",
            r#"{"cniVersion":"0.3.1","name":"legacy","type":"macvlan","master":"eth1","mode":"bridge"}"#,
        ),
    ]
}

impl Cluster {
    pub fn namespace(&self, i: usize) -> String {
        format!("tenant-{:02}", i % self.namespaces)
    }

    /// The VMs of namespace number `n`, in order.
    pub fn of_namespace(&self, n: usize) -> impl Iterator<Item = usize> + use<> {
        (n..self.vms).step_by(self.namespaces)
    }

    /// The rows `audit -A` must print for these VMs.
    pub fn expected_rows(&self) -> BTreeSet<Row> {
        let holders = |vms: &[usize]| -> Vec<(usize, Vec<String>)> {
            vms.iter()
                .map(|&me| {
                    let others = vms
                        .iter()
                        .filter(|&&o| o != me)
                        .map(|&o| format!("VM {}/{}", self.namespace(o), name(o)))
                        .collect();
                    (me, others)
                })
                .collect()
        };
        let mut rows = BTreeSet::new();
        for (group, rule) in [
            (&[3, 77][..], "address-conflict"),
            (&[10, 41, 92][..], "address-conflict"),
            (&[25, 58][..], "mac-conflict"),
        ] {
            for (me, others) in holders(group) {
                rows.insert((self.namespace(me), name(me), rule, others));
            }
        }
        for i in [5, 50, 95] {
            rows.insert((self.namespace(i), name(i), "bridge-binding", Vec::new()));
        }
        rows
    }

    /// The summary line `audit` ends its stderr with for these VMs.
    pub fn expected_summary(&self) -> String {
        let rows = self.expected_rows().len();
        format!(
            "{} objects audited, {rows} with violations, {rows} violations",
            self.vms
        )
    }

    /// Checks what `audit -A -o json` printed on stdout: exactly the planted rows, each
    /// conflict's message naming every other holder.
    pub fn check_rows(&self, stdout: &[u8]) -> Result<(), String> {
        let expected = self.expected_rows();
        let rows: Vec<Value> = serde_json::from_slice(stdout)
            .map_err(|e| format!("stdout is not a JSON list: {e}"))?;
        let mut got = BTreeSet::new();
        for row in &rows {
            let field = |k: &str| row[k].as_str().unwrap_or("").to_string();
            let rule = expected
                .iter()
                .map(|(_, _, rule, _)| *rule)
                .find(|r| *r == field("rule"))
                .ok_or_else(|| format!("unexpected row: {row}"))?;
            let (ns, name) = (field("namespace"), field("name"));
            // The message names every other holder, and only those that are expected.
            let others = expected
                .iter()
                .find(|(n, m, r, _)| *n == ns && *m == name && *r == rule)
                .map(|(_, _, _, others)| others.clone())
                .ok_or_else(|| format!("unexpected row: {row}"))?;
            let message = field("message");
            if let Some(missing) = others.iter().find(|o| !message.contains(o.as_str())) {
                return Err(format!(
                    "{ns}/{name}: the message does not name {missing}: {message}"
                ));
            }
            if field("kind") != "VirtualMachine" {
                return Err(format!("unexpected kind: {row}"));
            }
            got.insert((ns, name, rule, others));
        }
        if rows.len() != expected.len() || got != expected {
            return Err(format!(
                "expected {} rows {expected:?}, got {} rows:\n{}",
                expected.len(),
                rows.len(),
                String::from_utf8_lossy(stdout)
            ));
        }
        Ok(())
    }

    /// VM `i` as a client creates it: [`vm`](Self::vm) without what the API server sets
    /// itself, and without its status (written through the status subresource).
    pub fn vm_to_create(&self, i: usize) -> Value {
        let mut vm = self.vm(i);
        let meta = vm["metadata"].as_object_mut().unwrap();
        for field in ["resourceVersion", "uid", "creationTimestamp", "generation"] {
            meta.remove(field);
        }
        vm.as_object_mut().unwrap().remove("status");
        vm
    }

    /// VM `i` as `kubectl get vm -o yaml` shows a running one (managedFields left out, as
    /// kubectl does by default).
    pub fn vm(&self, i: usize) -> Value {
        let plant = plant(i);
        let (ns, name) = (self.namespace(i), name(i));
        let front_mac = match plant {
            Some(Plant::FrontMacOf(other)) => mac(0x10, other),
            _ => mac(0x10, i),
        };
        let front = match plant {
            Some(Plant::FrontAddressOf(other)) => front_address(other),
            _ => front_address(i),
        };
        let back = match plant {
            Some(Plant::BackAddressOf(other)) => back_address(other),
            _ => back_address(i),
        };
        let mut requests = json!({"front": front});
        let back_nad = if plant == Some(Plant::Macvlan) {
            "infra/legacy" // a macvlan NAD takes no address request here: only the binding is wrong
        } else {
            requests["back"] = json!(back);
            "infra/back"
        };
        json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": {
                "annotations": {
                    "kubevirt-net-webhook.io/networks": requests.to_string(),
                    "kubevirt.io/latest-observed-api-version": "v1",
                    "kubevirt.io/storage-observed-api-version": "v1",
                },
                "creationTimestamp": "2026-11-02T10:00:00Z",
                "finalizers": ["kubevirt.io/virtualMachineControllerFinalize"],
                "generation": 1,
                "labels": {"app": format!("app-{}", i % 37), "tier": "backend"},
                "name": name,
                "namespace": ns,
                "resourceVersion": format!("{}", 100_000 + i),
                "uid": format!("6b0f1c2e-0000-4000-8000-{i:012}"),
            },
            "spec": {
                "dataVolumeTemplates": [{
                    "metadata": {"name": format!("{name}-root")},
                    "spec": {
                        "sourceRef": {"kind": "DataSource", "name": "fedora", "namespace": "kubevirt-os-images"},
                        "storage": {"resources": {"requests": {"storage": "30Gi"}}},
                    },
                }],
                "runStrategy": "Always",
                "template": {
                    "metadata": {"labels": {"kubevirt.io/domain": name, "kubevirt.io/size": "medium"}},
                    "spec": {
                        "domain": {
                            "cpu": {"cores": 2, "sockets": 1, "threads": 1},
                            "devices": {
                                "disks": [
                                    {"disk": {"bus": "virtio"}, "name": "rootdisk"},
                                    {"disk": {"bus": "virtio"}, "name": "cloudinitdisk"},
                                ],
                                "interfaces": [
                                    {"macAddress": mac(0x00, i), "masquerade": {}, "model": "virtio", "name": "default"},
                                    {"bridge": {}, "macAddress": front_mac, "model": "virtio", "name": "front"},
                                    {"bridge": {}, "macAddress": mac(0x20, i), "model": "virtio", "name": "back"},
                                ],
                                "rng": {},
                            },
                            "features": {"acpi": {}, "smm": {"enabled": true}},
                            "firmware": {"bootloader": {"efi": {"secureBoot": false}}},
                            "machine": {"type": "q35"},
                            "memory": {"guest": "4Gi"},
                        },
                        "networks": [
                            {"name": "default", "pod": {}},
                            {"multus": {"networkName": "infra/front"}, "name": "front"},
                            {"multus": {"networkName": back_nad}, "name": "back"},
                        ],
                        "terminationGracePeriodSeconds": 180,
                        "volumes": [
                            {"dataVolume": {"name": format!("{name}-root")}, "name": "rootdisk"},
                            {"cloudInitNoCloud": {"userData": "#cloud-config\nuser: fedora\nssh_authorized_keys:\n  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz0bench0key0bench0key0bench0key0bench0 ops@example\n"}, "name": "cloudinitdisk"},
                        ],
                    },
                },
            },
            "status": {
                "conditions": [
                    {"lastProbeTime": null, "lastTransitionTime": "2026-11-02T10:01:12Z", "status": "True", "type": "Ready"},
                    {"lastProbeTime": null, "lastTransitionTime": null, "status": "True", "type": "LiveMigratable"},
                ],
                "created": true,
                "desiredGeneration": 1,
                "observedGeneration": 1,
                "printableStatus": "Running",
                "ready": true,
                "runStrategy": "Always",
                "volumeSnapshotStatuses": [
                    {"enabled": true, "name": "rootdisk"},
                    {"enabled": false, "name": "cloudinitdisk", "reason": "Snapshot is not supported for this volumeSource type [cloudinitdisk]"},
                ],
            },
        })
    }
}
