//! Every scenario in tests/data/cases behaves as the comment at its top says, through
//! the `review` command's code path.
use std::path::PathBuf;

use kubevirt_net_webhook::cmd::review::{self, Output, ReviewArgs, Summary};
use serde_json::Value;

fn case(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/cases")).join(name)
}

struct Run {
    summary: Summary,
    objects: Vec<Value>,
    stderr: String,
}

fn run(name: &str) -> Run {
    let args = ReviewArgs {
        files: vec![case(name)],
        nads: None,
        vms: None,
        config: None,
        enforcement: None,
        output: Output::Json,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let summary = review::review(&args, &mut out, &mut err).expect("review runs");
    let doc: Value = serde_json::from_slice(&out).expect("JSON output");
    let objects = match doc.get("kind").and_then(Value::as_str) {
        Some("List") => doc["items"].as_array().unwrap().clone(),
        _ => vec![doc],
    };
    Run {
        summary,
        objects,
        stderr: String::from_utf8(err).unwrap(),
    }
}

/// Runs a case that must be admitted.
fn run_allowed(name: &str) -> Run {
    let r = run(name);
    assert_eq!(
        r.summary,
        Summary {
            allowed: 1,
            denied: 0
        },
        "{}",
        r.stderr
    );
    r
}

fn interfaces(vm: &Value) -> &Vec<Value> {
    vm.pointer("/spec/template/spec/domain/devices/interfaces")
        .unwrap()
        .as_array()
        .unwrap()
}

fn mac_of(vm: &Value, iface: &str) -> String {
    interfaces(vm).iter().find(|i| i["name"] == iface).unwrap()["macAddress"]
        .as_str()
        .expect("has a MAC")
        .to_string()
}

fn volumes(vm: &Value) -> Vec<Value> {
    vm.pointer("/spec/template/spec/volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The netplan config in the first cloud-init volume, parsed.
fn netplan(vm: &Value) -> Value {
    let data = volumes(vm)
        .iter()
        .find_map(|v| {
            v.pointer("/cloudInitNoCloud/networkData")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .expect("networkData written");
    serde_yaml_ng::from_str(&data).expect("networkData is YAML")
}

/// The netplan entry whose `match.macaddress` is `mac`.
fn entry_for_mac<'a>(np: &'a Value, mac: &str) -> (&'a String, &'a Value) {
    np["ethernets"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, e)| e["match"]["macaddress"] == mac)
        .expect("an entry matches the MAC")
}

#[test]
fn seed_wukong_static_ip() {
    let r = run_allowed("seed-wukong-static-ip.yaml");
    let vm = &r.objects[0];
    assert!(
        r.stderr
            .contains(r#"renamed interface "ubuntu-rulai-multus-external-nad" to "external""#),
        "{}",
        r.stderr
    );
    assert_eq!(interfaces(vm)[1]["name"], "external");
    let (pod_mac, ext_mac) = (mac_of(vm, "default"), mac_of(vm, "external"));
    // A cloudInitNoCloud volume and its disk were added.
    let vols = volumes(vm);
    let ci = vols
        .iter()
        .find(|v| v.get("cloudInitNoCloud").is_some())
        .expect("cloud-init volume added");
    // User-data that makes cloud-init apply changed network config at the next boot (SPEC §2.9).
    let user_data = ci["cloudInitNoCloud"]["userData"].as_str().unwrap();
    assert!(user_data.starts_with("#cloud-config\n"), "{user_data:?}");
    let parsed: Value = serde_yaml_ng::from_str(user_data).unwrap();
    assert_eq!(
        parsed["updates"]["network"]["when"],
        serde_json::json!(["boot-new-instance", "boot"]),
        "{user_data:?}"
    );
    let disks = vm
        .pointer("/spec/template/spec/domain/devices/disks")
        .unwrap()
        .as_array()
        .unwrap();
    assert!(
        disks
            .iter()
            .any(|d| d["name"] == ci["name"] && d["disk"]["bus"] == "virtio")
    );
    let np = netplan(vm);
    let (_, pod) = entry_for_mac(&np, &pod_mac);
    assert_eq!(pod["dhcp4"], true);
    let (name, ext) = entry_for_mac(&np, &ext_mac);
    assert_eq!(name, "external");
    assert_eq!(ext["set-name"], "external");
    assert_eq!(ext["addresses"], serde_json::json!(["192.168.1.200/24"]));
    assert_eq!(
        ext["routes"],
        serde_json::json!([{"to": "0.0.0.0/0", "via": "192.168.1.1"}])
    );
    assert_eq!(ext["nameservers"]["addresses"][0], "192.168.1.1");
    assert!(ext.get("gateway4").is_none());
}

#[test]
fn macvlan_bridge_denied() {
    let r = run("macvlan-bridge-denied.yaml");
    assert_eq!(
        r.summary,
        Summary {
            allowed: 0,
            denied: 1
        }
    );
    let denial = r
        .stderr
        .lines()
        .find(|l| l.contains("denied:"))
        .expect("a denial line");
    for needle in [
        "\"external\"",
        "ubuntu-vm-external-nad",
        "\"macvlan\"",
        "OVS",
        "binding: {name: macvtap}",
        "SR-IOV",
    ] {
        assert!(denial.contains(needle), "missing {needle}: {denial}");
    }
}

#[test]
fn dual_stack_annotation() {
    let r = run_allowed("dual-stack-annotation.yaml");
    let vm = &r.objects[0];
    // Written into the existing volume: nothing added.
    assert_eq!(volumes(vm).len(), 2);
    assert_eq!(
        vm.pointer("/spec/template/spec/domain/devices/disks")
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(
        volumes(vm)[1]["cloudInitNoCloud"]["userData"]
            .as_str()
            .unwrap()
            .contains("ssh_authorized_keys")
    );
    let np = netplan(vm);
    let (_, storage) = entry_for_mac(&np, &mac_of(vm, "storage"));
    assert_eq!(
        storage["addresses"],
        serde_json::json!(["10.50.0.10/24", "fd00:50::10/64"])
    );
    assert_eq!(
        storage["routes"],
        serde_json::json!([{"to": "10.0.0.0/8", "via": "10.50.0.254"}])
    );
    assert_eq!(
        storage["nameservers"],
        serde_json::json!({"addresses": ["10.50.0.2"], "search": ["storage.internal"]})
    );
    let (_, pod) = entry_for_mac(&np, &mac_of(vm, "default"));
    assert_eq!(pod["dhcp4"], true);
    assert!(pod.get("addresses").is_none());
}

#[test]
fn sriov_and_macvtap() {
    let r = run_allowed("sriov-and-macvtap.yaml");
    let vm = &r.objects[0];
    for iface in ["default", "fast", "lan"] {
        assert!(mac_of(vm, iface).starts_with("02:"));
    }
    assert!(
        volumes(vm).is_empty(),
        "no cloud-init without requested addresses"
    );
}

#[test]
fn user_network_data_kept() {
    let input = std::fs::read_to_string(case("user-network-data-kept.yaml")).unwrap();
    let original = input.split("networkData: |\n").nth(1).unwrap();
    let r = run_allowed("user-network-data-kept.yaml");
    let vm = &r.objects[0];
    let data = volumes(vm)[1]["cloudInitNoCloud"]["networkData"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(data, "version: 2\nethernets:\n  eth1:\n    dhcp4: true\n");
    assert!(original.contains("eth1"));
    assert!(r.stderr.contains("untouched"), "{}", r.stderr);
    assert!(mac_of(vm, "default").starts_with("02:") && mac_of(vm, "ptp").starts_with("02:"));
}

#[test]
fn address_pool() {
    let r = run_allowed("address-pool.yaml");
    let vm = &r.objects[0];
    let annotations = &vm["metadata"]["annotations"];
    assert_eq!(annotations["team"], "green");
    let networks: Value = serde_json::from_str(
        annotations["kubevirt-net-webhook.io/networks"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let addresses: Vec<&str> = networks["app"]["addresses"]
        .as_array()
        .expect("one address per family")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let [v4, v6] = addresses[..] else {
        panic!("{addresses:?}")
    };
    let host: u8 = v4
        .strip_prefix("10.60.0.")
        .and_then(|h| h.strip_suffix("/24"))
        .unwrap()
        .parse()
        .unwrap();
    assert!((100..=149).contains(&host), "{v4}");
    assert!(v6.starts_with("fd00:60::1") && v6.ends_with("/64"), "{v6}");
    assert!(
        r.stderr.contains("address pool") && r.stderr.contains(v4),
        "{}",
        r.stderr
    );
    let np = netplan(vm);
    let (_, app) = entry_for_mac(&np, &mac_of(vm, "app"));
    assert_eq!(app["addresses"], serde_json::json!([v4, v6]));
    assert_eq!(
        app["routes"],
        serde_json::json!([{"to": "0.0.0.0/0", "via": "10.60.0.1"}])
    );
    let (_, pod) = entry_for_mac(&np, &mac_of(vm, "default"));
    assert_eq!(pod["dhcp4"], true);
}
