//! Address pools (SPEC §2.10).
use std::{collections::BTreeSet, net::Ipv4Addr};

use super::*;
use kubevirt_net_webhook::{
    admission::{self, Endpoint},
    inventory::ConflictCounts,
    model::kinds::Kind,
};
use sha2::{Digest, Sha256};

const NETWORKS: &str = "kubevirt-net-webhook.io/networks";

/// The pool index of attempt `n` for `vm`'s network `ext`, computed from the SPEC formula.
fn index(namespace: &str, vm: &str, n: u32, size: u64) -> u64 {
    let mut input = format!("\0{namespace}\0{vm}\0ext").into_bytes();
    if n > 0 {
        input.extend(format!("\0{n}").as_bytes());
    }
    let d = Sha256::digest(&input);
    u64::from_be_bytes(d[..8].try_into().unwrap()) % size
}

/// The address at `index` of a pool that is one range starting at `first`.
fn at(first: &str, index: u64) -> String {
    let first: Ipv4Addr = first.parse().unwrap();
    Ipv4Addr::from(u32::from(first) + index as u32).to_string()
}

/// The address the annotation of `v` holds for `ext` (string form).
fn ext_address(v: &Value) -> Option<String> {
    networks_annotation(v)?["ext"].as_str().map(String::from)
}

/// Mutates `v`, asserts the output is admitted and a valid VirtualMachine, and returns it.
fn admitted(inv: &Inventory, v: &Value) -> (engine::Mutation, Value) {
    let (m, out) = mutate(v, inv);
    let verdict = validate(&out, inv);
    assert!(verdict.allowed(), "{verdict:?}\n{out:#}");
    if let Err(e) = support::schema::validate_vm(&out) {
        panic!("output fails the CRD schema: {e:?}\n{out:#}");
    }
    (m, out)
}

use kubevirt_net_webhook::engine;

#[test]
fn a_nic_without_an_address_gets_the_derived_pool_address_everywhere() {
    let inv = inventory_with([pool_nad(NS, "br", "10.10.0.100-10.10.0.199")]);
    let (m, out) = admitted(&inv, &two_nic("web", "br"));
    let expected = format!("{}/24", at("10.10.0.100", index(NS, "web", 0, 100)));
    assert_eq!(ext_address(&out).as_deref(), Some(expected.as_str()));
    // Written as an annotation the VM keeps, and configured in the guest by MAC.
    assert!(
        m.patch
            .0
            .iter()
            .any(|op| op.path().as_str() == "/metadata/annotations"),
        "{:?}",
        m.patch
    );
    let data = network_data(&out).expect("network config written");
    assert!(
        data.contains(&format!("addresses: [\"{expected}\"]")),
        "{data}"
    );
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains(&expected) && w.contains("team-a/br")),
        "{:?}",
        m.warnings
    );
    // The pod NIC keeps DHCP.
    assert!(data.contains("dhcp4: true"), "{data}");
}

#[test]
fn the_annotation_is_merged_whatever_is_there() {
    let inv = inventory_with([pool_nad(NS, "br", "10.10.0.100-10.10.0.199")]);
    let expected = format!("{}/24", at("10.10.0.100", index(NS, "web", 0, 100)));
    // No annotations at all, annotations without ours, ours without this network.
    let bare = two_nic("web", "br");
    let other = annotate(two_nic("web", "br"), "team", "blue");
    let mode = annotate(
        two_nic("web", "br"),
        "kubevirt-net-webhook.io/network-data",
        "always",
    );
    for (what, v) in [("bare", bare), ("other annotation", other), ("mode", mode)] {
        let (_, out) = admitted(&inv, &v);
        assert_eq!(ext_address(&out), Some(expected.clone()), "{what}");
        for (k, val) in v["metadata"]["annotations"]
            .as_object()
            .into_iter()
            .flatten()
        {
            assert_eq!(&out["metadata"]["annotations"][k], val, "{what}: {k} kept");
        }
    }
    // An entry with settings but no address gets `addresses`, the rest stays.
    let settings = with_request(
        "web",
        "br",
        r#"{"ext": {"gateway": "10.10.0.1", "dns": ["10.10.0.2"]}}"#,
    );
    let (m, out) = admitted(&inv, &settings);
    assert!(
        m.patch.0.iter().any(|op| matches!(op, json_patch::PatchOperation::Replace(r) if r.path.as_str() == "/metadata/annotations/kubevirt-net-webhook.io~1networks")),
        "{:?}",
        m.patch
    );
    assert_eq!(
        networks_annotation(&out).unwrap(),
        json!({"ext": {"addresses": [expected], "gateway": "10.10.0.1", "dns": ["10.10.0.2"]}})
    );
    let data = network_data(&out).unwrap();
    assert!(
        data.contains(r#"{to: "0.0.0.0/0", via: "10.10.0.1"}"#),
        "{data}"
    );
    assert!(
        data.contains(r#"nameservers: {addresses: ["10.10.0.2"]}"#),
        "{data}"
    );
}

#[test]
fn mutating_again_reapplying_and_dry_run_change_nothing() {
    let mut inv = inventory_with([pool_nad(NS, "br", "10.10.0.100-10.10.0.199")]);
    let manifest = two_nic("web", "br");
    let (_, stored) = admitted(&inv, &manifest);
    let ask = Ask::new(&inv);
    let (again, _) = ask.mutate_update(&stored, Some(&stored));
    assert!(again.patch.0.is_empty(), "{:?}", again.patch);
    let (again, _) = ask.mutate(&stored);
    assert!(
        again.patch.0.is_empty(),
        "as a CREATE too: {:?}",
        again.patch
    );
    // `kubectl apply` of the manifest again: the annotation comes back from oldObject.
    let (_, reapplied) = ask.mutate_update(&manifest, Some(&stored));
    assert_eq!(reapplied, stored);
    // Once the cache holds the VM, its own address is no conflict.
    remember(&mut inv, &stored);
    let (_, reapplied) = Ask::new(&inv).mutate_update(&manifest, Some(&stored));
    assert_eq!(reapplied, stored);
    assert!(
        Ask::new(&inv)
            .validate_update(&reapplied, Some(&stored))
            .allowed()
    );
    // Dry-run gets the same answer.
    let patch = |dry_run| {
        let body = admission_review(
            "admission.k8s.io/v1",
            "u",
            "CREATE",
            Some(&manifest),
            None,
            dry_run,
        );
        let answer = admission::parse(body.to_string().as_bytes())
            .unwrap()
            .answer(Endpoint::Mutate, &inv, &Config::default());
        serde_json::to_string(&answer.patch()).unwrap()
    };
    assert_eq!(patch(true), patch(false));
}

#[test]
fn update_keeps_the_stored_pool_address_when_a_new_derivation_would_differ() {
    let mut inv = inventory_with([pool_nad(NS, "br", "10.10.0.100-10.10.0.199")]);
    let first = format!("{}/24", at("10.10.0.100", index(NS, "web", 0, 100)));
    let mut holder = in_namespace(
        with_request("holder", "br", &format!(r#"{{"ext": "{first}"}}"#)),
        "team-b",
    );
    holder["spec"]["template"]["spec"]["networks"][1]["multus"]["networkName"] = json!("team-a/br");
    remember(&mut inv, &holder);
    let (_, stored) = admitted(&inv, &two_nic("web", "br"));
    let second = format!("{}/24", at("10.10.0.100", index(NS, "web", 1, 100)));
    assert_ne!(first, second, "choose names whose attempts differ");
    assert_eq!(
        ext_address(&stored),
        Some(second.clone()),
        "attempt 0 is taken"
    );
    // The holder is gone: a fresh CREATE would get attempt 0, the UPDATE keeps attempt 1.
    inv.remove_vm("team-b", "holder");
    let (_, fresh) = mutate(&two_nic("web", "br"), &inv);
    assert_eq!(ext_address(&fresh), Some(first));
    let (_, updated) = Ask::new(&inv).mutate_update(&two_nic("web", "br"), Some(&stored));
    assert_eq!(ext_address(&updated), Some(second));
    // `"dhcp"` on UPDATE gives the address up.
    let dhcp = with_request("web", "br", r#"{"ext": "dhcp"}"#);
    let (_, out) = Ask::new(&inv).mutate_update(&dhcp, Some(&stored));
    assert_eq!(networks_annotation(&out).unwrap(), json!({"ext": "dhcp"}));
}

#[test]
fn update_keeps_a_stored_address_the_shrunk_pool_no_longer_holds() {
    // Admitted from .100-.199; then the NAD's owner moved the pool to .200-.209.
    let old_pool = inventory_with([pool_nad(NS, "br", "10.10.0.100-10.10.0.199")]);
    let (_, stored) = admitted(&old_pool, &two_nic("web", "br"));
    let kept = ext_address(&stored).unwrap();
    let moved = inventory_with([pool_nad(NS, "br", "10.10.0.200-10.10.0.209")]);
    // The manifest applied again (without the annotation the webhook wrote).
    let (m, updated) = Ask::new(&moved).mutate_update(&two_nic("web", "br"), Some(&stored));
    assert_eq!(ext_address(&updated), Some(kept.clone()));
    assert!(
        m.warnings.iter().any(|w| w.contains(&format!(
            "network \"ext\" keeps {kept} from the stored object although the address pool"
        ))),
        "{:?}",
        m.warnings
    );
    assert!(
        Ask::new(&moved)
            .validate_update(&updated, Some(&stored))
            .allowed()
    );
    // A new VM gets an address of the new pool: the pool itself did change.
    let (_, fresh) = mutate(&two_nic("web", "br"), &moved);
    assert!(ext_address(&fresh).unwrap().starts_with("10.10.0.20"));
}

#[test]
fn addresses_of_other_vms_on_the_nad_are_skipped_in_order() {
    let mut inv = inventory_with([pool_nad(NS, "br", "10.10.0.100-10.10.0.199")]);
    let attempt = |n| format!("{}/24", at("10.10.0.100", index(NS, "web", n, 100)));
    // Another tenant's VM holds the first two attempts.
    let mut other = in_namespace(
        with_request(
            "hidden",
            "team-a/br",
            &format!(r#"{{"ext": {{"addresses": ["{}"]}}}}"#, attempt(0)),
        ),
        "team-b",
    );
    remember(&mut inv, &other);
    other["metadata"]["name"] = json!("hidden-2");
    other["metadata"]["annotations"][NETWORKS] = json!(format!(r#"{{"ext": "{}"}}"#, attempt(1)));
    remember(&mut inv, &other);
    let (m, out) = admitted(&inv, &two_nic("web", "br"));
    assert_eq!(ext_address(&out), Some(attempt(2)));
    let said = format!("{:?}", m.warnings);
    assert!(
        !said.contains("hidden") && !said.contains("team-b"),
        "{said}"
    );
    // The same address on another NAD is another network.
    inv.upsert_nad(pool_nad(NS, "br2", "10.10.0.100-10.10.0.199"));
    let (_, out) = admitted(&inv, &two_nic("web", "br2"));
    assert_eq!(ext_address(&out), Some(attempt(0)));
}

#[test]
fn network_broadcast_and_gateway_addresses_are_never_given() {
    // A /30: network .0, gateway .1, broadcast .3 — only .2 is a guest address.
    let nad = with_pool(
        Nad::from_config(
            NS,
            "tiny",
            r#"{"type":"bridge","ipam":{"type":"host-local","ranges":[[{"subnet":"10.20.0.0/30","gateway":"10.20.0.1"}]]}}"#,
        ),
        "10.20.0.0/30",
    );
    let mut inv = inventory_with([nad]);
    for name in ["a", "b", "c", "d", "e"] {
        let (_, out) = mutate(&two_nic(name, "tiny"), &inv);
        assert_eq!(ext_address(&out).as_deref(), Some("10.20.0.2/30"), "{name}");
    }
    let (_, first) = admitted(&inv, &two_nic("a", "tiny"));
    remember(&mut inv, &first);
    // The pool is full now: not over-allocated, denied with its size and how to grow it.
    let (m, out) = mutate(&two_nic("b", "tiny"), &inv);
    assert_eq!(networks_annotation(&out), None);
    assert!(
        m.warnings.iter().any(|w| w.contains("none free")),
        "{:?}",
        m.warnings
    );
    denied_with(
        &validate(&out, &inv),
        &[
            "network \"ext\"",
            "team-a/tiny is full",
            "IPv4 pool (10.20.0.0/30) has 4 addresses",
            "kubevirt-net-webhook.io/address-pool",
            "\"dhcp\"",
        ],
    );
    // An annotation gateway is not handed out either.
    let nad = with_pool(
        Nad::from_config(NS, "plain", r#"{"type":"bridge"}"#),
        "10.40.0.0/30",
    );
    let inv = inventory_with([nad]);
    let v = with_request("a", "plain", r#"{"ext": {"gateway": "10.40.0.2"}}"#);
    let (_, out) = mutate(&v, &inv);
    assert_eq!(
        networks_annotation(&out).unwrap()["ext"]["addresses"],
        json!(["10.40.0.1/30"])
    );
}

#[test]
fn a_full_pool_is_denied_without_naming_other_tenants() {
    let mut inv = inventory_with([pool_nad("infra", "br", "10.10.0.10-10.10.0.12")]);
    let mut got = BTreeSet::new();
    for i in 0..3 {
        let v = in_namespace(two_nic(&format!("vm-{i}"), "infra/br"), "tenant-x");
        let (_, out) = mutate(&v, &inv);
        assert!(validate(&out, &inv).allowed());
        got.insert(ext_address(&out).unwrap());
        remember(&mut inv, &out);
    }
    assert_eq!(
        got,
        BTreeSet::from(["10.10.0.10/24", "10.10.0.11/24", "10.10.0.12/24"].map(String::from))
    );
    let (_, out) = mutate(&two_nic("late", "infra/br"), &inv);
    let verdict = validate(&out, &inv);
    denied_with(
        &verdict,
        &[
            "infra/br is full",
            "10.10.0.10-10.10.0.12",
            "has 3 addresses",
        ],
    );
    assert!(!verdict.message().contains("tenant-x") && !verdict.message().contains("vm-0"));
    // "dhcp" or an own address gets past it.
    for request in [r#"{"ext": "dhcp"}"#, r#"{"ext": "10.10.0.50/24"}"#] {
        let (_, out) = mutate(&with_request("late", "infra/br", request), &inv);
        assert!(validate(&out, &inv).allowed(), "{request}");
    }
}

#[test]
fn dhcp_and_requested_addresses_take_nothing_from_the_pool() {
    let pinned = with_pool(
        nad(
            NS,
            "pinned",
            r#"{"type":"bridge","ipam":{"type":"static","addresses":[{"address":"10.30.0.7/24"}]}}"#,
        ),
        "10.30.0.100-10.30.0.110",
    );
    let inv = inventory_with([pool_nad(NS, "br", "10.10.0.100-10.10.0.199"), pinned]);
    let (m, out) = admitted(&inv, &with_request("web", "br", r#"{"ext": "dhcp"}"#));
    assert!(
        !m.patch
            .0
            .iter()
            .any(|op| op.path().as_str().starts_with("/metadata")),
        "{:?}",
        m.patch
    );
    assert_eq!(
        network_data(&out),
        None,
        "nothing requested: no network config in auto mode"
    );
    // "dhcp" also turns down the address a NAD pins.
    let always = annotate(
        with_request("web", "pinned", r#"{"ext": "dhcp"}"#),
        "kubevirt-net-webhook.io/network-data",
        "always",
    );
    let (_, out) = admitted(&inv, &always);
    let data = network_data(&out).unwrap();
    assert!(
        !data.contains("10.30.0.7") && data.contains("optional: true"),
        "{data}"
    );
    // A requested address wins over the pool, inside the pool or not.
    for request in [
        r#"{"ext": "10.10.0.150/24"}"#,
        r#"{"ext": "10.10.0.20/24"}"#,
    ] {
        let v = with_request("web", "br", request);
        let (_, out) = admitted(&inv, &v);
        assert_eq!(out["metadata"]["annotations"], v["metadata"]["annotations"]);
    }
}

#[test]
fn dual_stack_pools_give_one_address_per_family() {
    let nad = with_pool(
        Nad::from_config(NS, "ds", r#"{"type":"bridge"}"#),
        "fd00:30::/64, 10.30.0.0/24",
    );
    let inv = inventory_with([nad]);
    let (_, out) = admitted(&inv, &two_nic("web", "ds"));
    let addresses = networks_annotation(&out).unwrap()["ext"]["addresses"].clone();
    let list: Vec<&str> = addresses
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(
        list[0].starts_with("10.30.0.") && list[0].ends_with("/24"),
        "{list:?}"
    );
    assert!(
        list[1].starts_with("fd00:30::") && list[1].ends_with("/64"),
        "{list:?}"
    );
    let v6_index = {
        let d = Sha256::digest(format!("\0{NS}\0web\0ext").as_bytes());
        u64::from_be_bytes(d[..8].try_into().unwrap())
    };
    let expected_v6 = std::net::Ipv6Addr::from(
        u128::from("fd00:30::".parse::<std::net::Ipv6Addr>().unwrap()) + u128::from(v6_index),
    );
    assert_eq!(
        list[1],
        format!("{expected_v6}/64"),
        "size 2^64: the index is the digest"
    );
    let data = network_data(&out).unwrap();
    assert!(data.contains(list[0]) && data.contains(list[1]), "{data}");
}

#[test]
fn two_nics_of_one_vm_on_one_pool_get_two_addresses() {
    let inv = inventory_with([pool_nad(NS, "br", "10.10.0.100-10.10.0.101")]);
    let v = vm(
        "web",
        json!([{"name": "a", "bridge": {}}, {"name": "b", "bridge": {}}]),
        json!([{"name": "a", "multus": {"networkName": "br"}}, {"name": "b", "multus": {"networkName": "br"}}]),
    );
    let (_, out) = admitted(&inv, &v);
    let ann = networks_annotation(&out).unwrap();
    let mut got = vec![ann["a"].as_str().unwrap(), ann["b"].as_str().unwrap()];
    got.sort();
    assert_eq!(got, ["10.10.0.100/24", "10.10.0.101/24"]);
}

#[test]
fn a_malformed_pool_warns_naming_the_nad_and_allocates_nothing() {
    for (pool, needle) in [
        ("10.10.0.300", "\"10.10.0.300\""),
        ("10.20.0.0/24", "not inside"),
        ("10.10.0.9-10.10.0.1", "lower address first"),
        ("", "is empty"),
    ] {
        let inv = inventory_with([pool_nad(NS, "br", pool)]);
        let (m, out) = admitted(&inv, &two_nic("web", "br"));
        assert_eq!(networks_annotation(&out), None, "{pool}");
        let w = m.warnings.join("\n");
        assert!(
            w.contains("NetworkAttachmentDefinition team-a/br")
                && w.contains("kubevirt-net-webhook.io/address-pool")
                && w.contains(needle),
            "{pool}: {w}"
        );
    }
}

#[test]
fn guests_without_identity_and_shared_templates_get_none() {
    let inv = inventory_with([pool_nad(NS, "br", "10.10.0.100-10.10.0.199")]);
    let mut anonymous = two_nic("x", "br");
    anonymous["metadata"] = json!({"generateName": "web-", "namespace": NS});
    let (m, out) = mutate(&anonymous, &inv);
    assert_eq!(networks_annotation(&out), None);
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("no pool address") && w.contains("generateName")),
        "{:?}",
        m.warnings
    );
    assert!(validate(&out, &inv).allowed());
    for kind in [
        Kind::VirtualMachinePool,
        Kind::VirtualMachineInstanceReplicaSet,
    ] {
        let template = as_kind(&two_nic("tpl", "br"), kind);
        let (m, out) = mutate(&template, &inv);
        assert!(
            !m.patch
                .0
                .iter()
                .any(|op| op.path().as_str().contains("annotations")),
            "{kind:?}: {:?}",
            m.patch
        );
        assert!(validate(&out, &inv).allowed(), "{kind:?}");
    }
    // A VMI with a name is a guest of its own: the annotation goes on its metadata.
    let vmi = as_kind(&two_nic("solo", "br"), Kind::VirtualMachineInstance);
    let (_, out) = mutate(&vmi, &inv);
    let expected = format!("{}/24", at("10.10.0.100", index(NS, "solo", 0, 100)));
    assert_eq!(ext_address(&out), Some(expected));
}

#[test]
fn a_pool_on_a_forbidden_nad_is_invisible() {
    let config = Config {
        nad_namespace_isolation: true,
        ..Config::default()
    };
    let v = two_nic("web", "tenant-b/br");
    let answer = |inv: &Inventory| {
        let ask = Ask::with_config(inv, config.clone());
        let (m, out) = ask.mutate(&v);
        format!("{:?} {:?} {:?}", m.patch, m.warnings, ask.validate(&out))
    };
    let with = answer(&inventory_with([pool_nad(
        "tenant-b",
        "br",
        "10.10.0.100-10.10.0.101",
    )]));
    let bad = answer(&inventory_with([pool_nad("tenant-b", "br", "bogus")]));
    let without = answer(&Inventory::new());
    assert_eq!(with, without);
    assert_eq!(bad, without);
    assert!(!with.contains("10.10.0.10"), "{with}");
}

#[test]
fn vms_admitted_one_after_another_never_share_an_address() {
    let mut inv = inventory_with([pool_nad(NS, "br", "10.10.0.100-10.10.0.139")]);
    let mut seen = BTreeSet::new();
    for i in 0..40 {
        let (_, out) = admitted(&inv, &two_nic(&format!("vm-{i}"), "br"));
        let a = ext_address(&out).unwrap();
        let host: u8 = a
            .trim_start_matches("10.10.0.")
            .trim_end_matches("/24")
            .parse()
            .unwrap();
        assert!((100..=139).contains(&host), "{a}");
        assert!(seen.insert(a.clone()), "{a} given twice");
        remember(&mut inv, &out);
    }
    let (_, out) = mutate(&two_nic("vm-40", "br"), &inv);
    denied_with(&validate(&out, &inv), &["is full", "has 40 addresses"]);
}

#[test]
fn review_gives_several_vms_of_one_input_distinct_addresses() {
    use kubevirt_net_webhook::cmd::review::{Output, ReviewArgs, review};
    let dir = tempfile::tempdir().unwrap();
    let mut docs = vec![
        json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "br", "namespace": NS, "annotations": {"kubevirt-net-webhook.io/address-pool": "10.10.0.100-10.10.0.104"}},
            "spec": {"config": r#"{"type":"bridge","ipam":{"type":"host-local","subnet":"10.10.0.0/24"}}"#}}),
    ];
    for i in 0..6 {
        docs.push(two_nic(&format!("vm-{i}"), "br"));
    }
    let text: Vec<String> = docs
        .iter()
        .map(|d| serde_json::to_string(d).unwrap())
        .collect();
    std::fs::write(dir.path().join("all.yaml"), text.join("\n---\n")).unwrap();
    let args = ReviewArgs {
        files: vec![dir.path().join("all.yaml")],
        nads: None,
        vms: None,
        config: None,
        enforcement: None,
        output: Output::Json,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let summary = review(&args, &mut out, &mut err).unwrap();
    let err = String::from_utf8(err).unwrap();
    assert_eq!((summary.allowed, summary.denied), (5, 1), "{err}");
    assert!(
        err.contains("is full") && err.contains("has 5 addresses"),
        "{err}"
    );
    let list: Value = serde_json::from_slice(&out).unwrap();
    let got: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(ext_address)
        .collect();
    let distinct: BTreeSet<&String> = got.iter().collect();
    assert_eq!((got.len(), distinct.len()), (5, 5), "{got:?}");
}

#[test]
fn two_replicas_racing_admit_both_and_the_caches_count_the_conflict() {
    let nad = || pool_nad(NS, "br", "10.10.0.50");
    // Each replica's cache has not seen the other's VM yet.
    let (mut replica_a, mut replica_b) = (inventory_with([nad()]), inventory_with([nad()]));
    let (_, one) = admitted(&replica_a, &two_nic("one", "br"));
    let (_, two) = admitted(&replica_b, &two_nic("two", "br"));
    assert_eq!(ext_address(&one), ext_address(&two));
    for inv in [&mut replica_a, &mut replica_b] {
        assert_eq!(inv.conflicts(), ConflictCounts::default());
        remember(inv, &one);
        remember(inv, &two);
        assert_eq!(
            inv.conflicts(),
            ConflictCounts {
                macs: 0,
                addresses: 1
            }
        );
    }
    // Both were admitted: a change to either that keeps the address is not blocked by the
    // conflict it did not bring (SPEC §2.11), but it is still said, and counted above.
    let verdict = Ask::new(&replica_a).validate_update(&one, Some(&one));
    assert!(verdict.allowed(), "{verdict:?}");
    assert_eq!(verdict.ratcheted.len(), 1, "{verdict:?}");
    assert!(
        verdict.ratcheted[0]
            .message
            .contains("10.10.0.50 is already requested by VM \"two\" in this namespace"),
        "{verdict:?}"
    );
}

#[test]
fn the_scan_past_a_taken_stretch_stops_at_what_the_vm_itself_holds() {
    // .100, .101 and .103 are another VM's; .102 is this VM's own in the cache (a network
    // it had before): the stretch .100-.103 is held, but .102 is free for this VM.
    let mut inv = inventory_with([pool_nad(NS, "br", "10.10.0.100-10.10.0.103")]);
    let mut other = in_namespace(
        with_request(
            "other",
            "team-a/br",
            r#"{"ext": {"addresses": ["10.10.0.100/24", "10.10.0.101/24", "10.10.0.103/24"]}}"#,
        ),
        "team-b",
    );
    other["metadata"]["name"] = json!("other");
    remember(&mut inv, &other);
    // A name whose 16 attempts all hit the other VM's addresses, so the scan decides.
    let name = (0..10_000)
        .map(|k| format!("web-{k}"))
        .find(|name| (0..16).all(|n| index(NS, name, n, 4) != 2))
        .expect("a name");
    let before = vm(
        &name,
        json!([{"name": "ext", "bridge": {}}, {"name": "old", "bridge": {}}]),
        json!([{"name": "ext", "multus": {"networkName": "br"}}, {"name": "old", "multus": {"networkName": "br"}}]),
    );
    remember(
        &mut inv,
        &annotate(
            before,
            NETWORKS,
            r#"{"old": "10.10.0.102/24", "ext": "dhcp"}"#,
        ),
    );
    let (_, out) = admitted(&inv, &two_nic(&name, "br"));
    assert_eq!(ext_address(&out).as_deref(), Some("10.10.0.102/24"));
}
