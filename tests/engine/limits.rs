//! What a hostile tenant can make one request cost (issue: hardening): every rule is linear
//! in the VM's size, a hard cap denies beyond it, and messages stay bounded, whatever the
//! request holds.
use super::*;

/// A VM with `n` interfaces and `n` networks, none of which pair.
fn unpaired(n: usize) -> Value {
    let interfaces: Vec<Value> = (0..n)
        .map(|i| json!({"name": format!("nic-{i}"), "bridge": {}}))
        .collect();
    let networks: Vec<Value> = (0..n)
        .map(|i| json!({"name": format!("net-{i}"), "multus": {"networkName": format!("nad-{i}")}}))
        .collect();
    vm("big", json!(interfaces), json!(networks))
}

#[test]
fn beyond_the_cap_a_short_denial_and_no_mutation() {
    let v = unpaired(2_000);
    let verdict = validate(&v, &Inventory::new());
    denied_with(
        &verdict,
        &["2000 interfaces", "at most 256", "2000 networks"],
    );
    assert_eq!(verdict.denials.len(), 1);
    assert!(
        verdict.message().len() < 1_000,
        "{}",
        verdict.message().len()
    );
    let (m, _) = mutate(&v, &Inventory::new());
    assert!(m.patch.0.is_empty());
    assert!(
        m.warnings.iter().any(|w| w.contains("not mutated")),
        "{:?}",
        m.warnings
    );
}

#[test]
fn at_the_cap_messages_list_a_bounded_number_of_names() {
    let v = unpaired(256);
    let verdict = validate(&v, &Inventory::new());
    denied_with(&verdict, &["\"nic-0\"", "and 236 more", "\"net-19\""]);
    assert!(!verdict.message().contains("\"nic-20\""));
    assert!(
        verdict.message().len() < 4_000,
        "{}",
        verdict.message().len()
    );
    // Every interface named after its NAD: one lookup each, all renamed.
    let mut named = v.clone();
    for i in 0..256 {
        named["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][i]["name"] =
            json!(format!("nad-{i}"));
    }
    let (m, out) = mutate(&named, &Inventory::new());
    assert_eq!(
        m.patch
            .0
            .iter()
            .filter(|op| op.path().as_str().ends_with("/name"))
            .count(),
        256
    );
    assert!(validate(&out, &Inventory::new()).allowed());
}

/// The verdict on a VM whose networks annotation has `n` keys, none naming a network.
fn with_unknown_keys(n: usize) -> Verdict {
    let keys: serde_json::Map<String, Value> = (0..n)
        .map(|i| (format!("nope-{i}"), json!("10.10.0.5/24")))
        .collect();
    let v = annotate(
        two_nic("v", "br"),
        "kubevirt-net-webhook.io/networks",
        &Value::Object(keys).to_string(),
    );
    validate(&v, &inventory_with([bridge_nad(NS, "br")]))
}

#[test]
fn unknown_annotation_keys_are_named_once_and_bounded() {
    let verdict = with_unknown_keys(10_000);
    denied_with(&verdict, &["10000 entries", "at most 256"]);
    assert!(
        verdict.message().len() < 1_000,
        "{}",
        verdict.message().len()
    );
    // Within the cap, the unknown keys are one denial listing a bounded number of them.
    let verdict = with_unknown_keys(200);
    denied_with(&verdict, &["no network", "and 180 more"]);
    assert!(
        verdict.message().len() < 2_000,
        "{}",
        verdict.message().len()
    );
}

#[test]
fn long_lists_in_one_request_are_capped() {
    let addresses: Vec<String> = (1..=100).map(|i| format!("10.10.0.{i}/24")).collect();
    let v = annotate(
        two_nic("v", "br"),
        "kubevirt-net-webhook.io/networks",
        &json!({"ext": {"addresses": addresses}}).to_string(),
    );
    denied_with(
        &validate(&v, &inventory_with([bridge_nad(NS, "br")])),
        &["100 items", "\"ext\"", "at most 64"],
    );
}
