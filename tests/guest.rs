//! The network config the webhook writes, rendered by the guest's real tools: every renderer
//! of `cloud-init devel net-convert`, and `netplan generate`. Each requested address must end
//! up bound to the NIC with the right MAC.
mod support;

use std::path::PathBuf;

use serde_json::{Value, json};
use support::guest::{self, InputKind, OutputKind, Route};
use support::webhook::{self, review_json};

/// The mutated VMs `review -o json` prints for `files`.
fn reviewed(files: Vec<PathBuf>) -> Vec<Value> {
    webhook::vms(&review_json(&files))
}

fn case(name: &str) -> PathBuf {
    webhook::case(name)
}

fn write_case(dir: &tempfile::TempDir, name: &str, docs: &[Value]) -> PathBuf {
    webhook::write_yaml(dir.path(), name, docs)
}

fn mac(vm: &Value, iface: &str) -> String {
    vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == iface)
        .unwrap()["macAddress"]
        .as_str()
        .unwrap()
        .to_string()
}

fn network_data(vm: &Value) -> (InputKind, String) {
    for v in vm["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
    {
        if let Some(d) = v
            .pointer("/cloudInitNoCloud/networkData")
            .and_then(Value::as_str)
        {
            return (InputKind::Netplan, d.to_string());
        }
        if let Some(d) = v
            .pointer("/cloudInitConfigDrive/networkData")
            .and_then(Value::as_str)
        {
            return (InputKind::OpenStackJson, d.to_string());
        }
    }
    panic!("no network data written");
}

/// What one NIC must look like in every renderer's output.
struct Expect<'a> {
    iface: &'a str,
    guest_name: Option<&'a str>,
    addresses: &'a [&'a str],
    routes: &'a [(&'a str, &'a str)],
    dns: &'a [&'a str],
    dhcp4: bool,
}

impl<'a> Expect<'a> {
    /// A NIC on DHCP whose guest name is not checked.
    fn dhcp(iface: &'a str) -> Self {
        Expect {
            iface,
            guest_name: None,
            addresses: &[],
            routes: &[],
            dns: &[],
            dhcp4: true,
        }
    }
}

fn check_all_renderers(vm: &Value, expectations: &[Expect<'_>]) {
    let (kind, data) = network_data(vm);
    for output in OutputKind::ALL {
        let tree = guest::net_convert(&data, kind, output)
            .unwrap_or_else(|e| panic!("{output:?}: {e}\n{data}"));
        let problems = tree.problems();
        assert!(
            problems.is_empty(),
            "{output:?}: {problems:?}\n{}",
            tree.all_text()
        );
        for e in expectations {
            let m = mac(vm, e.iface);
            let dev = tree.device(&m).unwrap_or_else(|| {
                panic!(
                    "{output:?}: no device for {} ({m}):\n{}",
                    e.iface,
                    tree.all_text()
                )
            });
            let mut want: Vec<String> = e.addresses.iter().map(|s| s.to_string()).collect();
            let mut got = dev.addresses.clone();
            want.sort();
            got.sort();
            assert_eq!(
                got, want,
                "{output:?} addresses of {}:\n{}",
                e.iface, dev.text
            );
            assert_eq!(
                dev.dhcp4, e.dhcp4,
                "{output:?} dhcp4 of {}:\n{}",
                e.iface, dev.text
            );
            for (to, via) in e.routes {
                assert!(
                    dev.routes.contains(&Route::new(to, via)),
                    "{output:?}: route {to} via {via} missing on {}:\n{}",
                    e.iface,
                    dev.text
                );
            }
            for ns in e.dns {
                assert!(
                    dev.dns.iter().any(|d| d == ns) || tree.all_text().contains(ns),
                    "{output:?}: dns {ns} missing for {}",
                    e.iface
                );
            }
            if let (Some(want), Some(got)) = (e.guest_name, dev.name.as_deref()) {
                assert_eq!(got, want, "{output:?} device name of {}", e.iface);
            }
        }
    }
    // Ubuntu: cloud-init writes netplan, netplan generates networkd config, no warnings.
    let generated =
        guest::ubuntu_pipeline(&data, kind).unwrap_or_else(|e| panic!("netplan pipeline: {e}"));
    for e in expectations {
        let dev = generated.device(&mac(vm, e.iface)).unwrap_or_else(|| {
            panic!(
                "netplan generate: no device for {}:\n{}",
                e.iface,
                generated.all_text()
            )
        });
        for a in e.addresses {
            assert!(
                dev.addresses.iter().any(|x| x == a),
                "netplan generate: {a} not on {}:\n{}",
                e.iface,
                dev.text
            );
        }
    }
    let version = serde_yaml_ng::from_str::<Value>(&data)
        .ok()
        .map(|d| d["version"].clone());
    if kind == InputKind::Netplan && version == Some(json!(2)) {
        // netplan itself (no cloud-init in between) takes the webhook's YAML under `network:`.
        let wrapped = format!(
            "network:\n{}",
            data.lines().map(|l| format!("  {l}\n")).collect::<String>()
        );
        guest::netplan_generate(&wrapped)
            .unwrap_or_else(|e| panic!("netplan generate on the webhook's YAML: {e}\n{wrapped}"));
    }
}

#[test]
fn seed_case_renders_everywhere() {
    let vm = &reviewed(vec![case("seed-wukong-static-ip.yaml")])[0];
    let pod_name = network_data(vm)
        .1
        .lines()
        .find(|l| l.trim_start().starts_with("default-"))
        .unwrap()
        .trim()
        .split(':')
        .next()
        .unwrap()
        .to_string();
    check_all_renderers(
        vm,
        &[
            Expect {
                iface: "default",
                guest_name: Some(&pod_name),
                addresses: &[],
                routes: &[],
                dns: &[],
                dhcp4: true,
            },
            Expect {
                iface: "external",
                guest_name: Some("external"),
                addresses: &["192.168.1.200/24"],
                routes: &[("0.0.0.0/0", "192.168.1.1")],
                dns: &["192.168.1.1", "114.114.114.114"],
                dhcp4: false,
            },
        ],
    );
}

#[test]
fn dual_stack_case_renders_everywhere() {
    let vm = &reviewed(vec![case("dual-stack-annotation.yaml")])[0];
    check_all_renderers(
        vm,
        &[
            Expect::dhcp("default"),
            Expect {
                iface: "storage",
                guest_name: Some("storage"),
                addresses: &["10.50.0.10/24", "fd00:50::10/64"],
                routes: &[("10.0.0.0/8", "10.50.0.254")],
                dns: &["10.50.0.2"],
                dhcp4: false,
            },
        ],
    );
}

/// Pool addresses (SPEC §2.10) reach the guest like requested ones: both families on the NIC
/// with the right MAC, with the NAD's default route.
#[test]
fn pool_case_renders_everywhere() {
    let vm = &reviewed(vec![case("address-pool.yaml")])[0];
    let networks: Value = serde_json::from_str(
        vm["metadata"]["annotations"]["kubevirt-net-webhook.io/networks"]
            .as_str()
            .expect("pool addresses stored on the VM"),
    )
    .unwrap();
    let addresses: Vec<&str> = networks["app"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(addresses.len(), 2, "{addresses:?}");
    check_all_renderers(
        vm,
        &[
            Expect::dhcp("default"),
            Expect {
                iface: "app",
                guest_name: Some("app"),
                addresses: &addresses,
                routes: &[("0.0.0.0/0", "10.60.0.1")],
                dns: &[],
                dhcp4: false,
            },
        ],
    );
}

fn nad(name: &str, config: &str) -> Value {
    json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition", "metadata": {"name": name, "namespace": "lab"}, "spec": {"config": config}})
}

fn lab_vm(volumes: Value, annotation: &str) -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "web", "namespace": "lab", "annotations": {"kubevirt-net-webhook.io/networks": annotation, "kubevirt-net-webhook.io/network-data": "always"}},
        "spec": {"runStrategy": "Always", "template": {"spec": {
            "domain": {"devices": {"interfaces": [
                {"name": "default", "masquerade": {}}, {"name": "front", "bridge": {}}, {"name": "back", "bridge": {}}, {"name": "spare", "bridge": {}}]}},
            "networks": [
                {"name": "default", "pod": {}},
                {"name": "front", "multus": {"networkName": "front-nad"}},
                {"name": "back", "multus": {"networkName": "back-nad"}},
                {"name": "spare", "multus": {"networkName": "front-nad"}}],
            "volumes": volumes,
        }}}
    })
}

/// Three kinds of NIC in one VM: pod, static dual-stack with gateway, static from a pinned
/// NAD, plus DHCP; in NoCloud (netplan) and ConfigDrive (network_data.json) form.
#[test]
fn mixed_nics_render_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let nads = [
        nad(
            "front-nad",
            r#"{"cniVersion":"0.4.0","type":"bridge","bridge":"br0","ipam":{"type":"host-local","ranges":[[{"subnet":"172.20.0.0/24","gateway":"172.20.0.1"}]]}}"#,
        ),
        nad(
            "back-nad",
            r#"{"cniVersion":"0.4.0","type":"bridge","bridge":"br1","ipam":{"type":"static","addresses":[{"address":"10.9.0.20/24","gateway":"10.9.0.1"}],"routes":[{"dst":"10.0.0.0/8"}],"dns":{"nameservers":["10.9.0.2"]}}}"#,
        ),
    ];
    let annotation = r#"{"front": {"addresses": ["172.20.0.50/24"], "gateway": "172.20.0.1", "dns": ["172.20.0.2"], "mtu": 1400}}"#;
    for volumes in [
        json!([]),
        json!([{"name": "cd", "cloudInitConfigDrive": {"userData": "#cloud-config"}}]),
    ] {
        let mut docs = nads.to_vec();
        docs.push(lab_vm(volumes, annotation));
        let vm = &reviewed(vec![write_case(&dir, "mixed.yaml", &docs)])[0];
        check_all_renderers(
            vm,
            &[
                Expect::dhcp("default"),
                Expect {
                    iface: "front",
                    guest_name: Some("front"),
                    addresses: &["172.20.0.50/24"],
                    routes: &[("0.0.0.0/0", "172.20.0.1")],
                    dns: &["172.20.0.2"],
                    dhcp4: false,
                },
                Expect {
                    iface: "back",
                    guest_name: Some("back"),
                    addresses: &["10.9.0.20/24"],
                    routes: &[("10.0.0.0/8", "10.9.0.1")],
                    dns: &["10.9.0.2"],
                    dhcp4: false,
                },
                Expect {
                    iface: "spare",
                    guest_name: Some("spare"),
                    addresses: &[],
                    routes: &[],
                    dns: &[],
                    dhcp4: true,
                },
            ],
        );
    }
}

#[test]
fn twenty_dhcp_nics_render_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut interfaces = vec![json!({"name": "default", "masquerade": {}})];
    let mut networks = vec![json!({"name": "default", "pod": {}})];
    for i in 1..20 {
        interfaces.push(json!({"name": format!("net{i}"), "bridge": {}}));
        networks.push(
            json!({"name": format!("net{i}"), "multus": {"networkName": format!("lab/nad{i}")}}),
        );
    }
    let vm = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "wide", "namespace": "lab", "annotations": {"kubevirt-net-webhook.io/network-data": "always"}},
        "spec": {"template": {"spec": {"domain": {"devices": {"interfaces": interfaces}}, "networks": networks}}}});
    let out = &reviewed(vec![write_case(&dir, "wide.yaml", &[vm])])[0];
    let names: Vec<String> = std::iter::once("default".to_string())
        .chain((1..20).map(|i| format!("net{i}")))
        .collect();
    let expectations: Vec<Expect<'_>> = names.iter().map(|n| Expect::dhcp(n)).collect();
    check_all_renderers(out, &expectations);
}

/// A dual-stack NIC with an IPv6 default route (the annotation's IPv6 `gateway`) and extra
/// IPv4 and IPv6 routes. NoCloud gets network config v1, ConfigDrive network_data.json; in
/// both, every renderer binds each route to that NIC, `::/0` stays `::/0`, and no route sits
/// in the other family's section (`check_all_renderers` checks `problems()`).
#[test]
fn ipv6_routes_render_everywhere_via_v1() {
    let dir = tempfile::tempdir().unwrap();
    let annotation = r#"{"storage": {"addresses": ["10.50.0.10/24", "fd00:50::10/64"], "gateway": "fd00:50::1", "dns": ["10.50.0.2", "fd00:50::2"], "search": ["storage.internal"], "routes": [{"to": "0.0.0.0/0", "via": "10.50.0.1"}, {"to": "10.0.0.0/8", "via": "10.50.0.254"}, {"to": "fd00:99::/48", "via": "fd00:50::fe", "metric": 50}]}}"#;
    let mut docs = webhook::read_yaml(&case("dual-stack-annotation.yaml"));
    let vm = docs
        .iter_mut()
        .find(|d| d["kind"] == "VirtualMachine")
        .unwrap();
    vm["metadata"]["annotations"]["kubevirt-net-webhook.io/networks"] = json!(annotation);
    let no_cloud = vm.clone();
    vm["spec"]["template"]["spec"]["volumes"][1] =
        json!({"name": "cloudinit", "cloudInitConfigDrive": {"userData": "#cloud-config"}});
    let config_drive = vm.clone();
    for (form, vm) in [("NoCloud", no_cloud), ("ConfigDrive", config_drive)] {
        let mut docs = docs.clone();
        *docs
            .iter_mut()
            .find(|d| d["kind"] == "VirtualMachine")
            .unwrap() = vm;
        let out = &reviewed(vec![write_case(&dir, "v6-routes.yaml", &docs)])[0];
        let (kind, data) = network_data(out);
        if form == "NoCloud" {
            let doc: Value = serde_yaml_ng::from_str(&data).unwrap();
            assert!(
                data.starts_with("# managed by kubevirt-net-webhook"),
                "{data}"
            );
            assert_eq!(doc["version"], 1, "{data}");
            assert!(data.len() < 2048, "{data}");
        } else {
            assert_eq!(kind, InputKind::OpenStackJson);
        }
        check_all_renderers(
            out,
            &[
                Expect::dhcp("default"),
                Expect {
                    iface: "storage",
                    guest_name: Some("storage"),
                    addresses: &["10.50.0.10/24", "fd00:50::10/64"],
                    routes: &[
                        ("0.0.0.0/0", "10.50.0.1"),
                        ("10.0.0.0/8", "10.50.0.254"),
                        ("::/0", "fd00:50::1"),
                        ("fd00:99::/48", "fd00:50::fe"),
                    ],
                    dns: &["10.50.0.2", "fd00:50::2"],
                    dhcp4: false,
                },
            ],
        );
    }
}

/// Netplan v2 stays the format while no NIC has an IPv6 route, also with IPv6 addresses.
#[test]
fn without_ipv6_routes_netplan_v2_stays() {
    for name in ["seed-wukong-static-ip.yaml", "dual-stack-annotation.yaml"] {
        let out = &reviewed(vec![case(name)])[0];
        let (kind, data) = network_data(out);
        assert_eq!(kind, InputKind::Netplan);
        let doc: Value = serde_yaml_ng::from_str(&data).unwrap();
        assert_eq!(doc["version"], 2, "{name}: {data}");
    }
}
