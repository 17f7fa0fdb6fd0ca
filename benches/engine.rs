//! Engine speed: `/mutate` + `/validate` decisions for a 3-NIC and a 20-NIC VM.
//! Run with `cargo bench --bench engine`.
use criterion::{Criterion, criterion_group, criterion_main};
use kube::core::admission::Operation;
use kubevirt_net_webhook::{
    engine::{self, Request},
    inventory::Inventory,
    model::{config::Config, kinds::Kind, nad::Nad},
};

#[path = "../tests/support/fixtures.rs"]
mod fixtures;
use serde_json::{Value, json};
use std::hint::black_box;

/// A VM with the pod network plus `secondaries` bridge NICs, one of them with a static address.
fn vm(secondaries: usize) -> (Value, Inventory) {
    let mut inv = Inventory::new();
    let mut interfaces = vec![json!({"name": "default", "masquerade": {}})];
    let mut networks = vec![json!({"name": "default", "pod": {}})];
    for i in 1..=secondaries {
        inv.upsert_nad(Nad::from_config("bench", &format!("nad{i}"), r#"{"cniVersion":"0.4.0","type":"bridge","bridge":"br0","ipam":{"type":"host-local","ranges":[[{"subnet":"10.0.0.0/16","gateway":"10.0.0.1"}]],"routes":[{"dst":"0.0.0.0/0"}]}}"#));
        // Interfaces named after their NAD, as in the seed notes: every one is renamed.
        interfaces.push(json!({"name": format!("nad{i}"), "bridge": {}}));
        networks
            .push(json!({"name": format!("net{i}"), "multus": {"networkName": format!("nad{i}")}}));
    }
    // A populated cluster: 10,000 other VMs on the same NADs.
    for n in 0..10_000 {
        let other = json!({"metadata": {"name": format!("other-{n}"), "namespace": "bench",
            "annotations": {"kubevirt-net-webhook.io/networks": format!("{{\"net1\": \"10.0.{}.{}/16\"}}", 100 + n / 250, n % 250 + 2)}},
            "spec": {"template": {"spec": {"domain": {"devices": {"interfaces": [{"name": "net1", "bridge": {}, "macAddress": format!("02:00:00:00:{:02x}:{:02x}", n / 256, n % 256)}]}},
            "networks": [{"name": "net1", "multus": {"networkName": "nad1"}}]}}}});
        fixtures::remember(&mut inv, &other);
    }
    let vm = json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "web-0", "namespace": "bench", "annotations": {"kubevirt-net-webhook.io/networks": "{\"net1\": {\"addresses\": [\"10.0.5.10/16\"], \"dns\": [\"10.0.0.2\"]}}"}},
        "spec": {"runStrategy": "Always", "template": {"spec": {
            "domain": {"devices": {"interfaces": interfaces, "disks": [{"name": "root", "disk": {"bus": "virtio"}}]}},
            "networks": networks,
            "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:40"}}],
        }}}
    });
    (vm, inv)
}

fn bench(c: &mut Criterion) {
    let config = Config::default();
    for (label, secondaries) in [("3-nic", 2), ("20-nic", 19)] {
        let (value, inv) = vm(secondaries);
        let object = fixtures::object(&value);
        let req = Request {
            kind: Kind::VirtualMachine,
            operation: &Operation::Create,
            namespace: "bench",
            object: &object,
            old_object: None,
        };
        c.bench_function(&format!("mutate {label}"), |b| {
            b.iter(|| engine::mutate(black_box(&req), &inv, &config).unwrap())
        });
        let mut mutated = value.clone();
        json_patch::patch(
            &mut mutated,
            &engine::mutate(&req, &inv, &config).unwrap().patch,
        )
        .unwrap();
        let mutated = fixtures::object(&mutated);
        let vreq = Request {
            object: &mutated,
            ..req
        };
        c.bench_function(&format!("validate {label}"), |b| {
            b.iter(|| engine::validate(black_box(&vreq), &inv, &config).unwrap())
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
