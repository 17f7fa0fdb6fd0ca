//! One test (at least) per rule of SPEC §2, straight against the engine.
use kubevirt_net_webhook::{
    config::{Config, MissingNad},
    engine::{self, Mutation, Operation, Request, Verdict},
    inventory::Inventory,
    mac::{self, Mac},
    nad::Nad,
};
use serde_json::{Value, json};

const NS: &str = "team-a";

fn vm(name: &str, interfaces: Value, networks: Value) -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"runStrategy": "Always", "template": {"spec": {
            "domain": {"memory": {"guest": "1Gi"}, "devices": {"interfaces": interfaces}},
            "networks": networks,
        }}}
    })
}

/// default (masquerade, pod) + `ext` (bridge) on NAD `nad`.
fn two_nic(name: &str, nad: &str) -> Value {
    vm(
        name,
        json!([{"name": "default", "masquerade": {}}, {"name": "ext", "bridge": {}}]),
        json!([{"name": "default", "pod": {}}, {"name": "ext", "multus": {"networkName": nad}}]),
    )
}

fn annotate(mut v: Value, key: &str, value: &str) -> Value {
    v["metadata"]["annotations"][key] = json!(value);
    v
}

fn bridge_nad(ns: &str, name: &str) -> Nad {
    Nad::from_config(
        ns,
        name,
        r#"{"cniVersion":"0.3.1","type":"bridge","bridge":"br1","ipam":{"type":"host-local","ranges":[[{"subnet":"10.10.0.0/24","gateway":"10.10.0.1"}]],"routes":[{"dst":"0.0.0.0/0"}]}}"#,
    )
}

fn inventory_with(nads: Vec<Nad>) -> Inventory {
    let mut inv = Inventory::new();
    for n in nads {
        inv.upsert_nad(n);
    }
    inv
}

fn req(object: &Value) -> Request<'_> {
    Request {
        operation: Operation::Create,
        namespace: NS,
        object,
        old_object: None,
    }
}

fn mutate_with(object: &Value, inv: &Inventory, config: &Config) -> (Mutation, Value) {
    let m = engine::mutate(&req(object), inv, config).expect("mutates");
    let mut out = object.clone();
    json_patch::patch(&mut out, &m.patch).expect("patch applies");
    (m, out)
}

fn mutate(object: &Value, inv: &Inventory) -> (Mutation, Value) {
    mutate_with(object, inv, &Config::default())
}

fn validate_with(object: &Value, inv: &Inventory, config: &Config) -> Verdict {
    engine::validate(&req(object), inv, config).expect("validates")
}

fn validate(object: &Value, inv: &Inventory) -> Verdict {
    validate_with(object, inv, &Config::default())
}

fn iface(v: &Value, i: usize) -> &Value {
    &v["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][i]
}

fn network_data(v: &Value) -> Option<String> {
    v.pointer("/spec/template/spec/volumes")?
        .as_array()?
        .iter()
        .find_map(|vol| {
            vol.get("cloudInitNoCloud")
                .or(vol.get("cloudInitConfigDrive"))
        })?
        .get("networkData")?
        .as_str()
        .map(String::from)
}

fn denied_with(v: &Verdict, needles: &[&str]) {
    assert!(!v.allowed(), "expected a denial containing {needles:?}");
    let msg = v.message();
    for n in needles {
        assert!(msg.contains(n), "missing {n:?} in: {msg}");
    }
}

// §2.1 name reconciliation

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

// §2.2 binding/CNI compatibility

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
        &validate_with(&two_nic("v", "br"), &inv, &strict),
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
        &validate_with(&missing, &inv, &deny),
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

// §2.3 deterministic MACs

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
    inv.upsert_vm_object(&other, "default").unwrap();
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
    let (_, out) = mutate_with(&two_nic("web", "br"), &Inventory::new(), &config);
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
    let r = Request {
        operation: Operation::Update,
        namespace: NS,
        object: &new,
        old_object: Some(&old),
    };
    let m = engine::mutate(&r, &Inventory::new(), &Config::default()).unwrap();
    let mut out = new.clone();
    json_patch::patch(&mut out, &m.patch).unwrap();
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
    inv.upsert_vm_object(&theirs, "default").unwrap();
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
    inv.upsert_vm_object(&neighbour, "default").unwrap();
    inv.remove_vm("secret-tenant", "secret-vm");
    denied_with(
        &validate(&mine, &inv),
        &["VM \"neighbour\" in this namespace"],
    );
    // The VM itself (an UPDATE) is not a conflict.
    inv.remove_vm(NS, "neighbour");
    inv.upsert_vm_object(&mine, "default").unwrap();
    assert!(validate(&mine, &inv).allowed());
}

// §2.5 requested addresses

fn with_request(name: &str, nad: &str, request: &str) -> Value {
    annotate(
        two_nic(name, nad),
        "kubevirt-net-webhook.io/networks",
        request,
    )
}

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
    inv.upsert_vm_object(&theirs, "default").unwrap();
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
    inv.upsert_vm_object(&two_nic("first", "one"), "default")
        .unwrap();
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

// §2.4 cloud-init network config

#[test]
fn config_drive_gets_network_data_json() {
    let inv = inventory_with(vec![bridge_nad(NS, "br")]);
    let mut v = with_request("v", "br", r#"{"ext": "10.10.0.5/24"}"#);
    v["spec"]["template"]["spec"]["volumes"] =
        json!([{"name": "cd", "cloudInitConfigDrive": {"userDataBase64": "I2Nsb3VkLWNvbmZpZwo="}}]);
    let (_, out) = mutate(&v, &inv);
    let data: Value = serde_json::from_str(&network_data(&out).expect("written")).expect("JSON");
    let ext_mac = iface(&out, 1)["macAddress"].clone();
    let link = data["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ethernet_mac_address"] == ext_mac)
        .unwrap();
    assert_eq!(link["name"], "ext");
    let net = data["networks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["link"] == link["id"])
        .unwrap();
    assert_eq!(
        (
            net["type"].as_str(),
            net["ip_address"].as_str(),
            net["netmask"].as_str()
        ),
        (Some("ipv4"), Some("10.10.0.5"), Some("255.255.255.0"))
    );
    assert_eq!(
        net["routes"][0],
        json!({"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.10.0.1"})
    );
    assert!(
        out["spec"]["template"]["spec"]["volumes"][0]["cloudInitConfigDrive"]
            .get("userData")
            .is_none(),
        "user data exists already"
    );
    // Idempotent: the JSON is recognised as the webhook's own.
    let (again, _) = mutate(&out, &inv);
    assert!(again.patch.0.is_empty(), "{:?}", again.patch);
}

#[test]
fn existing_volume_without_user_data_gets_one() {
    let inv = inventory_with(vec![bridge_nad(NS, "br")]);
    let mut v = with_request("v", "br", r#"{"ext": "10.10.0.5/24"}"#);
    v["spec"]["template"]["spec"]["volumes"] = json!([{"name": "ci", "cloudInitNoCloud": {}}]);
    let (_, out) = mutate(&v, &inv);
    assert_eq!(
        out["spec"]["template"]["spec"]["volumes"][0]["cloudInitNoCloud"]["userData"],
        engine::cloudinit::USER_DATA
    );
    assert!(
        out["spec"]["template"]["spec"]["domain"]["devices"]
            .get("disks")
            .is_none(),
        "no disk added for an existing volume"
    );
}

#[test]
fn user_network_data_in_any_form_is_never_overwritten() {
    let inv = inventory_with(vec![bridge_nad(NS, "br")]);
    for source in [
        json!({"networkDataSecretRef": {"name": "s"}, "userData": "#cloud-config"}),
        json!({"networkDataBase64": "dmVyc2lvbjogMgo=", "userData": "#cloud-config"}),
        json!({"networkData": "version: 2\n", "userData": "#cloud-config"}),
    ] {
        let mut v = with_request("v", "br", r#"{"ext": "10.10.0.5/24"}"#);
        v["spec"]["template"]["spec"]["volumes"] =
            json!([{"name": "ci", "cloudInitNoCloud": source.clone()}]);
        let (m, out) = mutate(&v, &inv);
        assert_eq!(
            out["spec"]["template"]["spec"]["volumes"][0]["cloudInitNoCloud"],
            source
        );
        assert!(
            m.warnings
                .iter()
                .any(|w| w.contains("untouched")
                    && w.contains("requested addresses are not applied")),
            "{:?}",
            m.warnings
        );
    }
}

#[test]
fn only_the_first_cloud_init_volume_is_used() {
    let inv = inventory_with(vec![bridge_nad(NS, "br")]);
    let mut v = with_request("v", "br", r#"{"ext": "10.10.0.5/24"}"#);
    v["spec"]["template"]["spec"]["volumes"] = json!([
        {"name": "root", "containerDisk": {"image": "x"}},
        {"name": "first", "cloudInitConfigDrive": {"userData": "#cloud-config"}},
        {"name": "second", "cloudInitNoCloud": {"userData": "#cloud-config"}},
    ]);
    let (_, out) = mutate(&v, &inv);
    assert!(
        out["spec"]["template"]["spec"]["volumes"][1]["cloudInitConfigDrive"]
            .get("networkData")
            .is_some()
    );
    assert!(
        out["spec"]["template"]["spec"]["volumes"][2]["cloudInitNoCloud"]
            .get("networkData")
            .is_none()
    );
}

#[test]
fn network_data_modes() {
    let inv = inventory_with(vec![bridge_nad(NS, "br")]);
    let (_, auto) = mutate(&two_nic("v", "br"), &inv);
    assert_eq!(
        network_data(&auto),
        None,
        "auto writes nothing without a requested address"
    );
    let (_, always) = mutate(
        &annotate(
            two_nic("v", "br"),
            "kubevirt-net-webhook.io/network-data",
            "always",
        ),
        &inv,
    );
    let data = network_data(&always).expect("always writes");
    assert!(data.contains("dhcp4: true, optional: true"), "{data}");
    let never = annotate(
        with_request("v", "br", r#"{"ext": "10.10.0.5/24"}"#),
        "kubevirt-net-webhook.io/network-data",
        "never",
    );
    let (_, out) = mutate(&never, &inv);
    assert_eq!(network_data(&out), None);
}

#[test]
fn derived_guest_names_for_unusable_network_names() {
    let inv = inventory_with(vec![bridge_nad(NS, "br")]);
    let v = vm(
        "v",
        json!([{"name": "default", "masquerade": {}}, {"name": "Storage.Net-Very-Long", "bridge": {}}]),
        json!([{"name": "default", "pod": {}}, {"name": "Storage.Net-Very-Long", "multus": {"networkName": "br"}}]),
    );
    let v = annotate(
        v,
        "kubevirt-net-webhook.io/networks",
        r#"{"Storage.Net-Very-Long": "10.10.0.9/24"}"#,
    );
    let (_, out) = mutate(&v, &inv);
    let data: Value = serde_yaml_ng::from_str(&network_data(&out).unwrap()).unwrap();
    let names: Vec<&String> = data["ethernets"].as_object().unwrap().keys().collect();
    assert_eq!(names.len(), 2);
    for n in names {
        assert!(
            n.len() <= 15 && (n.starts_with("default-") || n.starts_with("storage-ne-")),
            "{n}"
        );
        assert_eq!(data["ethernets"][n]["set-name"], json!(n));
    }
}

#[test]
fn twenty_nics_too_large_is_left_alone_and_denied() {
    let mut inv = Inventory::new();
    let mut interfaces = vec![json!({"name": "default", "masquerade": {}})];
    let mut networks = vec![json!({"name": "default", "pod": {}})];
    let mut requests = serde_json::Map::new();
    for i in 1..20 {
        inv.upsert_nad(bridge_nad(NS, &format!("nad{i}")));
        interfaces.push(json!({"name": format!("net{i}"), "bridge": {}}));
        networks
            .push(json!({"name": format!("net{i}"), "multus": {"networkName": format!("nad{i}")}}));
        requests.insert(format!("net{i}"), json!({"addresses": [format!("10.10.0.{}/24", i + 10)], "dns": ["10.10.0.2"], "search": ["example.internal"]}));
    }
    let v = annotate(
        vm("big", json!(interfaces), json!(networks)),
        "kubevirt-net-webhook.io/networks",
        &Value::Object(requests).to_string(),
    );
    let (m, out) = mutate(&v, &inv);
    assert_eq!(network_data(&out), None);
    assert!(
        m.warnings.iter().any(|w| w.contains("2048")),
        "{:?}",
        m.warnings
    );
    denied_with(&validate(&out, &inv), &["2048", "networkDataSecretRef"]);
    // All twenty NICs still get MACs.
    assert_eq!(
        out["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i.get("macAddress").is_some())
            .count(),
        20
    );
    // Twenty DHCP NICs fit.
    let always = annotate(
        vm("big", json!(interfaces), json!(networks)),
        "kubevirt-net-webhook.io/network-data",
        "always",
    );
    let (_, out) = mutate(&always, &inv);
    assert!(network_data(&out).is_some_and(|d| d.len() <= 2048));
}

// §2.6 opting out; no networks

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
    assert!(
        engine::mutate(&req(&bare), &Inventory::new(), &Config::default())
            .unwrap()
            .patch
            .0
            .is_empty()
    );
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
