//! Opting out (SPEC §2.6), and VMs the rules have nothing to say about.
use super::*;

#[test]
fn mutate_false_skips_mutation_but_not_validation() {
    let inv = inventory_with(vec![Nad::from_config(
        NS,
        "mv",
        r#"{"type":"macvlan","master":"eth0"}"#,
    )]);
    let v = annotate(
        two_nic("v", "mv"),
        "kubevirt-net-webhook.io/mutate",
        "false",
    );
    let (m, _) = mutate(&v, &inv);
    assert!(m.patch.0.is_empty() && m.warnings.is_empty());
    denied_with(&validate(&v, &inv), &["macvlan"]);
}

#[test]
fn vm_without_networks_is_untouched() {
    let v = vm("plain", json!([]), json!([]));
    let (m, _) = mutate(&v, &Inventory::new());
    assert!(m.patch.0.is_empty());
    assert!(validate(&v, &Inventory::new()).allowed());
    let mut bare = v.clone();
    bare["spec"]["template"]["spec"] = json!({"domain": {"devices": {}}});
    assert!(mutate(&bare, &Inventory::new()).0.patch.0.is_empty());
}

#[test]
fn mac_command_agrees_with_the_engine() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubevirt-net-webhook"))
        .args(["mac", NS, "web", "ext"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let (_, mutated) = mutate(&two_nic("web", "br"), &Inventory::new());
    assert_eq!(
        printed.trim(),
        iface(&mutated, 1)["macAddress"].as_str().unwrap()
    );
    assert!(Mac::parse(printed.trim()).is_some());
}
