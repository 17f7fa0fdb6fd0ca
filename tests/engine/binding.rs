//! Binding/CNI compatibility and missing NADs (SPEC §2.2).
use super::*;

#[test]
fn bridge_on_ipvlan_conflist_is_denied_and_other_bindings_are_not() {
    let ipvlan = Nad::from_config(
        NS,
        "iv",
        r#"{"cniVersion":"0.4.0","plugins":[{"type":"ipvlan","master":"eth0"},{"type":"tuning"}]}"#,
    );
    let inv = inventory_with(vec![ipvlan]);
    denied_with(
        &validate(&two_nic("v", "iv"), &inv),
        &["\"ext\"", "team-a/iv", "\"ipvlan\"", "macvtap", "SR-IOV"],
    );
    let plugin = vm(
        "v",
        json!([{"name": "ext", "binding": {"name": "macvtap"}}]),
        json!([{"name": "ext", "multus": {"networkName": "iv"}}]),
    );
    assert!(validate(&plugin, &inv).allowed());
}

#[test]
fn incompatible_list_and_missing_nad_policy_come_from_config() {
    let inv = inventory_with(vec![bridge_nad(NS, "br")]);
    assert!(validate(&two_nic("v", "br"), &inv).allowed());
    let strict = Config {
        incompatible_bridge_cnis: vec!["bridge".into()],
        ..Config::default()
    };
    denied_with(
        &Ask::with_config(&inv, strict.clone()).validate(&two_nic("v", "br")),
        &["\"bridge\""],
    );

    let missing = two_nic("v", "nope");
    let warn = validate(&missing, &inv);
    assert!(
        warn.allowed()
            && warn
                .warnings
                .iter()
                .any(|w| w.contains("team-a/nope") && w.contains("does not exist"))
    );
    let deny = Config {
        missing_network_attachment: MissingNad::Deny,
        ..Config::default()
    };
    denied_with(
        &Ask::with_config(&inv, deny.clone()).validate(&missing),
        &["team-a/nope", "does not exist"],
    );
}

#[test]
fn empty_and_unreadable_nad_configs() {
    let inv = inventory_with(vec![
        Nad::from_config(NS, "empty", ""),
        Nad::from_config(NS, "broken", "{oops"),
    ]);
    assert!(validate(&two_nic("v", "empty"), &inv).allowed());
    let v = validate(&two_nic("v", "broken"), &inv);
    assert!(
        v.allowed() && v.warnings.iter().any(|w| w.contains("cannot read")),
        "{v:?}"
    );
}
