//! Requested addresses (SPEC §2.5).
use super::*;

#[test]
fn annotation_errors_are_denied() {
    let inv = inventory_with(vec![bridge_nad(NS, "br")]);
    for (request, needles) in [
        ("{not json", vec!["not valid JSON"]),
        (
            r#"{"nope": "10.10.0.5/24"}"#,
            vec!["\"nope\"", "no network of that name", "default, ext"],
        ),
        (
            r#"{"default": "10.10.0.5/24"}"#,
            vec!["only be requested for Multus networks"],
        ),
        (
            r#"{"ext": "10.20.0.5/24"}"#,
            vec!["outside the subnet", "10.10.0.0/24"],
        ),
        (r#"{"ext": "10.10.0.0/24"}"#, vec!["not a host address"]),
        (r#"{"ext": "10.10.0.255/24"}"#, vec!["not a host address"]),
        (
            r#"{"ext": {"addresses": ["10.10.0.5/24"], "gateway": "10.99.0.1"}}"#,
            vec!["gateway 10.99.0.1 is outside"],
        ),
        (
            r#"{"ext": {"addresses": ["10.10.0.5/24"], "routes": [{"to": "default"}]}}"#,
            vec!["0.0.0.0/0"],
        ),
    ] {
        denied_with(&validate(&with_request("v", "br", request), &inv), &needles);
    }
    let bad_mode = annotate(
        two_nic("v", "br"),
        "kubevirt-net-webhook.io/network-data",
        "sometimes",
    );
    denied_with(&validate(&bad_mode, &inv), &["auto, always, never"]);
}

#[test]
fn gateway_without_known_subnet_must_be_on_link() {
    let inv = inventory_with(vec![Nad::from_config(NS, "plain", r#"{"type":"bridge"}"#)]);
    let ok = with_request(
        "v",
        "plain",
        r#"{"ext": {"addresses": ["192.168.5.10/24"], "gateway": "192.168.5.1"}}"#,
    );
    assert!(validate(&ok, &inv).allowed());
    let bad = with_request(
        "v",
        "plain",
        r#"{"ext": {"addresses": ["192.168.5.10/24"], "gateway": "192.168.6.1"}}"#,
    );
    denied_with(
        &validate(&bad, &inv),
        &["gateway 192.168.6.1", "192.168.5.0/24"],
    );
}

#[test]
fn duplicate_addresses_on_a_nad_are_denied_without_naming_other_tenants() {
    let mut inv = inventory_with(vec![bridge_nad("infra", "br")]);
    let mut theirs = with_request("hidden", "infra/br", r#"{"ext": "10.10.0.5/24"}"#);
    theirs["metadata"]["namespace"] = json!("other-tenant");
    remember(&mut inv, &theirs);
    let mine = with_request("mine", "infra/br", r#"{"ext": "10.10.0.5/24"}"#);
    let v = validate(&mine, &inv);
    denied_with(
        &v,
        &[
            "10.10.0.5",
            "already requested by a VM in another namespace",
            "infra/br",
        ],
    );
    assert!(!v.message().contains("hidden") && !v.message().contains("other-tenant"));
    assert!(
        validate(
            &with_request("mine", "infra/br", r#"{"ext": "10.10.0.6/24"}"#),
            &inv
        )
        .allowed()
    );
    // Same address on another NAD is another network.
    inv.upsert_nad(bridge_nad("infra", "br2"));
    assert!(
        validate(
            &with_request("mine", "infra/br2", r#"{"ext": "10.10.0.5/24"}"#),
            &inv
        )
        .allowed()
    );
}

#[test]
fn a_nad_pinning_one_address_serves_one_vm() {
    let pinned = Nad::from_config(
        NS,
        "one",
        r#"{"type":"bridge","ipam":{"type":"static","addresses":[{"address":"10.30.0.7/24","gateway":"10.30.0.1"}]}}"#,
    );
    let mut inv = inventory_with(vec![pinned]);
    assert!(validate(&two_nic("first", "one"), &inv).allowed());
    remember(&mut inv, &two_nic("first", "one"));
    denied_with(
        &validate(&two_nic("second", "one"), &inv),
        &["10.30.0.7", "VM \"first\" in this namespace", "its own NAD"],
    );
}

#[test]
fn annotation_gateway_gives_default_route_and_dual_stack_works() {
    let inv = inventory_with(vec![Nad::from_config(NS, "plain", r#"{"type":"bridge"}"#)]);
    let v = with_request(
        "v",
        "plain",
        r#"{"ext": {"addresses": ["192.168.5.10/24", "fd00:5::10/64"], "gateway": "192.168.5.1", "mtu": 9000}}"#,
    );
    let (_, out) = mutate(&v, &inv);
    let data = network_data(&out).expect("written");
    assert!(
        data.contains(r#"routes: [{to: "0.0.0.0/0", via: "192.168.5.1"}]"#),
        "{data}"
    );
    assert!(
        data.contains(r#"addresses: ["192.168.5.10/24", "fd00:5::10/64"]"#),
        "{data}"
    );
    assert!(data.contains("mtu: 9000"));
    assert!(!data.contains("gateway4") && !data.contains("to: default"));
    assert!(validate(&out, &inv).allowed());
}
