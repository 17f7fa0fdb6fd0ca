//! Interface/network name reconciliation (SPEC §2.1).
use super::*;

#[test]
fn interface_named_after_nad_is_renamed_also_with_namespace() {
    let v = vm(
        "v",
        json!([{"name": "default", "masquerade": {}}, {"name": "storage-nad", "bridge": {}}, {"name": "lan-nad", "bridge": {}}]),
        json!([{"name": "default", "pod": {}}, {"name": "storage", "multus": {"networkName": "infra/storage-nad"}}, {"name": "lan", "multus": {"networkName": "lan-nad"}}]),
    );
    let (m, out) = mutate(&v, &Inventory::new());
    assert_eq!(iface(&out, 1)["name"], "storage");
    assert_eq!(iface(&out, 2)["name"], "lan");
    assert!(m.warnings.iter().any(|w| {
        w.contains(r#"renamed interface "storage-nad" to "storage" to match its network"#)
    }));
    assert!(validate(&out, &Inventory::new()).denials.is_empty());
}

#[test]
fn last_unpaired_pair_is_renamed_but_ambiguous_ones_are_denied() {
    let one = vm(
        "v",
        json!([{"name": "default", "masquerade": {}}, {"name": "nic1", "bridge": {}}]),
        json!([{"name": "default", "pod": {}}, {"name": "ext", "multus": {"networkName": "n"}}]),
    );
    let (_, out) = mutate(&one, &Inventory::new());
    assert_eq!(iface(&out, 1)["name"], "ext");

    let two = vm(
        "v",
        json!([{"name": "nic1", "bridge": {}}, {"name": "nic2", "bridge": {}}]),
        json!([{"name": "a", "multus": {"networkName": "n1"}}, {"name": "b", "multus": {"networkName": "n2"}}]),
    );
    let (m, out) = mutate(&two, &Inventory::new());
    assert!(
        m.patch
            .0
            .iter()
            .all(|op| !op.path().to_string().ends_with("/name")),
        "no guessing between two pairs"
    );
    denied_with(
        &validate(&out, &Inventory::new()),
        &["\"nic1\"", "\"nic2\"", "\"a\"", "\"b\""],
    );
}

#[test]
fn duplicate_names_are_denied() {
    let v = vm(
        "v",
        json!([{"name": "a", "bridge": {}}, {"name": "a", "bridge": {}}]),
        json!([{"name": "a", "multus": {"networkName": "n"}}]),
    );
    denied_with(
        &validate(&v, &Inventory::new()),
        &["interface name \"a\" is used more than once"],
    );
}

#[test]
fn redundant_multus_annotation_is_removed_and_foreign_one_kept() {
    let mut v = two_nic("v", "infra/ext-nad");
    v["spec"]["template"]["metadata"] =
        json!({"annotations": {"k8s.v1.cni.cncf.io/networks": "infra/ext-nad@eth1", "keep": "me"}});
    let (m, out) = mutate(&v, &Inventory::new());
    assert_eq!(
        out["spec"]["template"]["metadata"]["annotations"],
        json!({"keep": "me"})
    );
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("removed annotation k8s.v1.cni.cncf.io/networks"))
    );

    v["spec"]["template"]["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"] =
        json!(r#"[{"name": "ext-nad", "namespace": "infra"}, {"name": "other"}]"#);
    let (m, out) = mutate(&v, &Inventory::new());
    assert!(
        out["spec"]["template"]["metadata"]["annotations"]
            .get("k8s.v1.cni.cncf.io/networks")
            .is_some()
    );
    assert!(m.warnings.iter().any(|w| w.contains("not declared")));
}
