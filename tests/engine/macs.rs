//! Deterministic MAC addresses (SPEC §2.3).
use super::*;

#[test]
fn macs_follow_the_spec_derivation_and_skip_collisions() {
    let v = two_nic("web", "br");
    let mut inv = inventory_with(vec![bridge_nad(NS, "br")]);
    let (_, out) = mutate(&v, &inv);
    let prefix = Config::default().mac_prefix;
    let expected = mac::derive(&prefix, "", NS, "web", "ext", 0);
    assert_eq!(iface(&out, 1)["macAddress"], expected.to_string());
    assert_eq!(
        iface(&out, 0)["macAddress"],
        mac::derive(&prefix, "", NS, "web", "default", 0).to_string()
    );

    // Another VM on the same NAD holds the first attempt: the second one is used.
    let mut other = two_nic("other", "br");
    other["metadata"]["namespace"] = json!("team-b");
    other["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][1]["macAddress"] =
        json!(expected.to_string());
    other["spec"]["template"]["spec"]["networks"][1]["multus"]["networkName"] = json!("team-a/br");
    remember(&mut inv, &other);
    let (_, out) = mutate(&v, &inv);
    assert_eq!(
        iface(&out, 1)["macAddress"],
        mac::derive(&prefix, "", NS, "web", "ext", 1).to_string()
    );
    // On another NAD that MAC is free.
    let (_, out) = mutate(&two_nic("web", "elsewhere"), &inv);
    assert_eq!(iface(&out, 1)["macAddress"], expected.to_string());
}

#[test]
fn salt_and_prefix_change_the_mac() {
    let config = Config {
        mac_prefix: "0a:58".parse().unwrap(),
        cluster_salt: "prod".into(),
        ..Config::default()
    };
    let (_, out) =
        Ask::with_config(&Inventory::new(), config.clone()).mutate(&two_nic("web", "br"));
    let got = iface(&out, 1)["macAddress"].as_str().unwrap().to_string();
    assert!(got.starts_with("0a:58:"));
    assert_eq!(
        got,
        mac::derive(&config.mac_prefix, "prod", NS, "web", "ext", 0).to_string()
    );
}

#[test]
fn update_keeps_old_mac_and_user_mac_is_kept() {
    let mut old = two_nic("web", "br");
    old["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][1]["macAddress"] =
        json!("02:11:22:33:44:55");
    let new = two_nic("web", "br");
    let (_, out) = Ask::new(&Inventory::new()).mutate_update(&new, Some(&old));
    assert_eq!(iface(&out, 1)["macAddress"], "02:11:22:33:44:55");
    // A MAC the user set is never changed.
    let (m, _) = mutate(&old, &Inventory::new());
    assert!(
        !m.patch
            .0
            .iter()
            .any(|op| *op.path() == "/spec/template/spec/domain/devices/interfaces/1/macAddress")
    );
}

#[test]
fn generate_name_gets_no_mac_and_a_warning() {
    let mut v = two_nic("x", "br");
    v["metadata"] = json!({"generateName": "web-", "namespace": NS});
    let (m, out) = mutate(&v, &Inventory::new());
    assert!(iface(&out, 1).get("macAddress").is_none());
    assert!(m.warnings.iter().any(|w| w.contains("generateName")));
}

#[test]
fn bindings_without_a_mac_get_none() {
    let v = vm(
        "v",
        json!([{"name": "default", "slirp": {}}]),
        json!([{"name": "default", "pod": {}}]),
    );
    let (m, _) = mutate(&v, &Inventory::new());
    assert!(m.patch.0.is_empty());
}

#[test]
fn bad_macs_are_denied() {
    for (mac, needle) in [
        ("02:11:22:33:44", "is not a MAC address"),
        ("01:00:5e:00:00:01", "multicast"),
        ("00:00:00:00:00:00", "all zeros"),
        ("02:00:00:00:00:00", "reserved"),
    ] {
        let mut v = two_nic("v", "br");
        v["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][1]["macAddress"] =
            json!(mac);
        denied_with(
            &validate(&v, &Inventory::new()),
            &[needle, "interfaces[1].macAddress", "\"ext\""],
        );
    }
    let mut v = two_nic("v", "br");
    for i in 0..2 {
        v["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][i]["macAddress"] =
            json!("02:aa:aa:aa:aa:aa");
    }
    denied_with(
        &validate(&v, &Inventory::new()),
        &["also the MAC of interface \"default\""],
    );
}

#[test]
fn mac_conflicts_across_vms_do_not_leak_other_tenants() {
    let mut inv = Inventory::new();
    let mut mine = two_nic("mine", "shared/br");
    mine["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][1]["macAddress"] =
        json!("02:aa:bb:cc:dd:ee");
    let mut theirs = mine.clone();
    theirs["metadata"] = json!({"name": "secret-vm", "namespace": "secret-tenant"});
    remember(&mut inv, &theirs);
    let v = validate(&mine, &inv);
    denied_with(
        &v,
        &[
            "02:aa:bb:cc:dd:ee",
            "a VM in another namespace",
            "shared/br",
        ],
    );
    assert!(!v.message().contains("secret"), "{}", v.message());
    // Same namespace: naming the VM helps and reveals nothing.
    let mut neighbour = mine.clone();
    neighbour["metadata"]["name"] = json!("neighbour");
    remember(&mut inv, &neighbour);
    inv.remove_vm("secret-tenant", "secret-vm");
    denied_with(
        &validate(&mine, &inv),
        &["VM \"neighbour\" in this namespace"],
    );
    // The VM itself (an UPDATE) is not a conflict.
    inv.remove_vm(NS, "neighbour");
    remember(&mut inv, &mine);
    assert!(validate(&mine, &inv).allowed());
}
