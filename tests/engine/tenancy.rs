//! The tenant boundary on NAD references (SPEC §2.7).
use super::*;

/// `nadNamespaceIsolation: true`, global namespaces `["default"]`.
fn isolated() -> Config {
    Config {
        nad_namespace_isolation: true,
        ..Config::default()
    }
}

/// A macvlan NAD of `tenant-a` pinning one address, with DNS: plenty to leak.
fn secret_nad() -> Nad {
    nad(
        "tenant-a",
        "br-ext",
        r#"{"type":"macvlan","master":"eth0","ipam":{"type":"static","addresses":[{"address":"192.168.77.5/24","gateway":"192.168.77.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["192.168.77.53"]}}}"#,
    )
}

fn shared(mut nad: Nad, with: &str) -> Nad {
    nad.annotations.insert(
        "kubevirt-net-webhook.io/shared-with".into(),
        with.to_string(),
    );
    nad
}

/// What a tenant sees of one answer: every byte of mutation and verdict.
fn everything(inv: &Inventory, config: &Config, v: &Value) -> String {
    let ask = Ask::with_config(inv, config.clone());
    let (m, out) = ask.mutate(v);
    let verdict = ask.validate(&out);
    format!("{:?}\n{:?}\n{out}\n{verdict:?}", m.patch, m.warnings)
}

#[test]
fn without_isolation_any_namespace_may_be_referenced() {
    let inv = inventory_with([bridge_nad("infra", "br")]);
    assert!(validate(&two_nic("v", "infra/br"), &inv).allowed());
}

#[test]
fn a_forbidden_reference_is_denied_naming_interface_reference_and_fix() {
    let inv = inventory_with([secret_nad()]);
    let verdict = Ask::with_config(&inv, isolated()).validate(&two_nic("v", "tenant-a/br-ext"));
    denied_with(
        &verdict,
        &[
            "interface \"ext\" (spec.template.spec.domain.devices.interfaces[1])",
            "tenant-a/br-ext",
            "namespace \"team-a\" may not use",
            "kubevirt-net-webhook.io/shared-with",
        ],
    );
    assert_eq!(verdict.denials.len(), 1, "no macvlan denial: {verdict:?}");
}

#[test]
fn a_forbidden_nad_is_invisible_byte_for_byte() {
    let config = isolated();
    let v = annotate(
        two_nic("v", "tenant-a/br-ext"),
        "kubevirt-net-webhook.io/network-data",
        "always",
    );
    let missing = everything(&Inventory::new(), &config, &v);
    // The NAD exists, is macvlan, pins an address, has DNS, and another VM holds the MAC
    // this VM would derive first.
    let mut inv = inventory_with([secret_nad()]);
    let first = mac::derive(&config.mac_prefix, "", NS, "v", "ext", 0).to_string();
    let mut theirs = in_namespace(two_nic("secret-vm", "br-ext"), "tenant-a");
    theirs["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][1]["macAddress"] =
        json!(first);
    remember(&mut inv, &theirs);
    let existing = everything(&inv, &config, &v);
    assert_eq!(existing, missing);
    assert!(!existing.contains("192.168.77") && !existing.contains("macvlan"));
    assert!(
        existing.contains(&first),
        "the first derived MAC, regardless of tenant-a"
    );
}

#[test]
fn own_global_and_shared_namespaces_are_allowed() {
    let config = isolated();
    for (nad, reference) in [
        (bridge_nad(NS, "br"), "br"),
        (bridge_nad(NS, "br"), "team-a/br"),
        (bridge_nad("default", "br"), "default/br"),
        (
            shared(bridge_nad("infra", "br"), "team-b, team-a"),
            "infra/br",
        ),
        (shared(bridge_nad("infra", "br"), "*"), "infra/br"),
    ] {
        let inv = inventory_with([nad]);
        let verdict = Ask::with_config(&inv, config.clone()).validate(&two_nic("v", reference));
        assert!(verdict.allowed(), "{reference}: {verdict:?}");
    }
    let inv = inventory_with([shared(bridge_nad("infra", "br"), "team-b")]);
    let verdict = Ask::with_config(&inv, config.clone()).validate(&two_nic("v", "infra/br"));
    denied_with(&verdict, &["infra/br"]);
    let globals = Config {
        global_nad_namespaces: vec!["infra".into()],
        ..config
    };
    let verdict = Ask::with_config(&inv, globals.clone()).validate(&two_nic("v", "infra/br"));
    assert!(verdict.allowed(), "{verdict:?}");
    let inv = inventory_with([bridge_nad("default", "br")]);
    let verdict = Ask::with_config(&inv, globals).validate(&two_nic("v", "default/br"));
    denied_with(&verdict, &["default/br"]);
}

#[test]
fn a_shared_nad_gives_its_ipam_and_is_checked_as_usual() {
    let inv = inventory_with([shared(secret_nad(), "team-a")]);
    let ask = Ask::with_config(&inv, isolated());
    let (_, out) = ask.mutate(&two_nic("v", "tenant-a/br-ext"));
    assert!(network_data(&out).unwrap().contains("192.168.77.5/24"));
    denied_with(&ask.validate(&out), &["macvlan"]);
}

#[test]
fn opting_out_of_mutation_does_not_skip_the_boundary() {
    let inv = inventory_with([secret_nad()]);
    let v = annotate(
        two_nic("v", "tenant-a/br-ext"),
        "kubevirt-net-webhook.io/mutate",
        "false",
    );
    denied_with(
        &Ask::with_config(&inv, isolated()).validate(&v),
        &["tenant-a/br-ext"],
    );
}

#[test]
fn conflicts_across_namespaces_name_neither_the_vm_nor_its_namespace() {
    let inv = {
        let mut inv = inventory_with([bridge_nad("infra", "br")]);
        let theirs = annotate(
            in_namespace(two_nic("secret-db", "infra/br"), "tenant-b"),
            "kubevirt-net-webhook.io/networks",
            r#"{"ext": "10.10.0.9/24"}"#,
        );
        remember(&mut inv, &theirs);
        inv
    };
    let mine = annotate(
        two_nic("v", "infra/br"),
        "kubevirt-net-webhook.io/networks",
        r#"{"ext": "10.10.0.9/24"}"#,
    );
    let verdict = validate(&mine, &inv);
    denied_with(&verdict, &["10.10.0.9", "a VM in another namespace"]);
    assert!(
        !format!("{verdict:?}").contains("secret-db")
            && !format!("{verdict:?}").contains("tenant-b")
    );
}
