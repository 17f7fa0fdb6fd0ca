//! Cloud-init network config (SPEC §2.4).
use super::*;

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
        kubevirt_net_webhook::engine::cloudinit::USER_DATA
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

/// `/validate` knows most configs fit from a bound, without rendering them: around the limit
/// its answer must still be the rendering's. The VM grows a search domain at a time, across
/// 2048 bytes; each step is denied exactly when `/mutate` finds the config too large.
#[test]
fn size_denial_agrees_with_the_rendering_across_the_limit() {
    let inv = inventory_with(vec![bridge_nad(NS, "br")]);
    let (mut fits, mut too_large) = (0, 0);
    // At most 64 items per list (limits): long domains, so that 60 of them cross the limit.
    for domains in 0..60 {
        let search: Vec<String> = (0..domains)
            .map(|d| format!("d{d:02}.{}.example", "x".repeat(24)))
            .collect();
        let request = json!({"ext": {"addresses": ["10.10.0.5/24"], "search": search}});
        let v = with_request("v", "br", &request.to_string());
        let (m, out) = mutate(&v, &inv);
        let not_written = m.warnings.iter().any(|w| w.contains("2048"));
        assert_eq!(
            network_data(&out).is_none(),
            not_written,
            "{:?}",
            m.warnings
        );
        let denied = !validate(&out, &inv).allowed();
        assert_eq!(denied, not_written, "{domains} domains: {:?}", m.warnings);
        if not_written {
            too_large += 1
        } else {
            fits += 1
        }
    }
    // The sweep crossed the limit.
    assert!(
        fits > 0 && too_large > 0,
        "{fits} fit, {too_large} too large"
    );
}
