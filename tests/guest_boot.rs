//! Guest truth: a real Debian bookworm guest (cloud-init 22.4) boots under qemu (TCG) with the
//! cloud-init disk KubeVirt would attach for the VM the webhook mutated (`review -o json`), one
//! virtio NIC per VM interface with the webhook's MACs. The guest prints `ip -j link/addr/
//! route`, `ip -6 -j route` and systemd-resolved's DNS, then powers off; every NIC must carry
//! its name, its addresses (on no other NIC), its routes and its DNS. Each scenario runs with
//! several of cloud-init's renderers. See tests/support/boot.rs for the harness and
//! tests/support/guest-image/ for the guest.
//!
//! The first run builds the guest (about 3 minutes, cached afterwards); each boot takes about a
//! minute. Needs root and `qemu-system-x86 qemu-utils debootstrap xorriso e2fsprogs` (.ci/run
//! installs them). Run alone with `cargo test --locked --test guest_boot`.
mod support;

use std::path::PathBuf;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::boot::{BootNic, ExpectNic, Guest, Renderer, Report, Seed};
use support::webhook::{case, interfaces, mac, read_yaml, review_json, vms, write_yaml};

/// The guest name of a network whose name is not usable as is (SPEC §2.4): lowercased, other
/// characters as `-`, cut to 10, then `-` and 4 hex digits of SHA-256 of the name.
fn derived_guest_name(network: &str) -> String {
    let base: String = network
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(10)
        .collect();
    let digest = Sha256::digest(network.as_bytes());
    format!("{base}-{:02x}{:02x}", digest[0], digest[1])
}

/// One VM, mutated by the webhook, ready to boot.
struct Scenario {
    vm: Value,
    seed: Seed,
    nics: Vec<BootNic>,
}

impl Scenario {
    /// Runs `review` on the documents and takes the (one) VM it prints.
    fn review(dir: &tempfile::TempDir, name: &str, docs: &[Value]) -> Scenario {
        let file = write_yaml(dir.path(), name, docs);
        Self::from_files(&[file])
    }

    fn from_files(files: &[PathBuf]) -> Scenario {
        let out = vms(&review_json(files));
        assert_eq!(out.len(), 1, "one VM expected: {out:#?}");
        let vm = out.into_iter().next().unwrap();
        let seed = Seed::from_vm(&vm).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            seed.network_config().is_some(),
            "the webhook wrote no network config: {vm:#}"
        );
        let nics = interfaces(&vm)
            .into_iter()
            .map(|(iface, pod)| BootNic {
                mac: mac(&vm, &iface),
                pod,
            })
            .collect();
        Scenario { vm, seed, nics }
    }

    fn mac(&self, iface: &str) -> String {
        mac(&self.vm, iface)
    }

    fn boot(&self, guest: &Guest, renderer: Renderer) -> Report {
        guest
            .boot(renderer, &self.nics, &self.seed)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

fn check(report: &Report, renderer: Renderer, what: &str, nics: &[ExpectNic<'_>]) {
    let mut nics = nics.to_vec();
    if renderer == Renderer::Eni {
        for nic in &mut nics {
            check_eni_dns(report, what, nic);
            (nic.dns, nic.search) = (&[], &[]);
        }
    }
    if let Err(e) = report.check(&nics) {
        panic!(
            "{what}, renderer {}: {e}\nnetwork config given:\n{}",
            renderer.name(),
            report.section("rendered")
        );
    }
}

/// DNS of a static NIC on an eni guest. Debian 12's ifupdown passes `dns-nameservers` to
/// systemd-resolved through /etc/network/if-up.d/resolved, which writes its state as
/// `"DNS"="..."`; sh does not read that as an assignment, so static DNS never reaches
/// resolved (the journal says `.../ifupdown-inet-IFACE: DNS=...: not found`; reported as
/// canonical/cloud-init#4255). So: resolved has the servers, or the guest was given them in
/// the NIC's own stanza and lost them to exactly that bug.
fn check_eni_dns(report: &Report, what: &str, nic: &ExpectNic<'_>) {
    if nic.dns.is_empty() && nic.search.is_empty() {
        return;
    }
    let dns = report.dns(nic.name);
    if nic.dns.iter().all(|d| dns.iter().any(|x| x == d)) {
        return;
    }
    let stanza = eni_stanza(report.section("rendered"), nic.name);
    let line = |key: &str| {
        stanza
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(key)
                    .map(|v| v.split_whitespace().collect::<Vec<_>>())
            })
            .unwrap_or_default()
    };
    let (servers, search) = (line("dns-nameservers "), line("dns-search "));
    let journal = report.section("network-journal");
    let lost = format!("ifupdown-inet-{}: DNS=", nic.name);
    assert!(
        nic.dns.iter().all(|d| servers.contains(d))
            && nic.search.iter().all(|d| search.contains(d))
            && journal.contains(&lost),
        "{what}, renderer eni: DNS {:?} / search {:?} of {} neither in resolved ({dns:?}) nor \
         explained by the ifupdown hook bug (stanza: {stanza:?}; journal line {lost:?} expected)\n{}",
        nic.dns,
        nic.search,
        nic.name,
        report.describe()
    );
}

/// The `iface NAME inet ...` stanzas of cloud-init's /etc/network/interfaces.d file.
fn eni_stanza(rendered: &str, name: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in rendered.lines() {
        if !line.starts_with(char::is_whitespace) {
            inside = line.starts_with(&format!("iface {name} inet"));
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn guest(name: &str) -> Guest {
    Guest::new(name).unwrap_or_else(|e| panic!("{e}"))
}

/// The seed scenario's files with the VM changed by `edit`.
fn seed_case_with(edit: impl FnOnce(&mut Value)) -> Vec<Value> {
    let mut docs = read_yaml(&case("seed-wukong-static-ip.yaml"));
    let vm = docs
        .iter_mut()
        .find(|d| d["kind"] == "VirtualMachine")
        .unwrap();
    edit(vm);
    docs
}

fn set_annotation(vm: &mut Value, value: &str) {
    vm["metadata"]["annotations"] = json!({ "kubevirt-net-webhook.io/networks": value });
}

// ---------------------------------------------------------------------------------------
// The seed scenario: pod NIC + `external` (NAD-pinned 192.168.1.200/24 via 192.168.1.1)

fn check_seed_case(report: &Report, renderer: Renderer, s: &Scenario) {
    let pod = derived_guest_name("default");
    let ext = s.mac("external");
    let pod_mac = s.mac("default");
    check(
        report,
        renderer,
        "seed scenario",
        &[
            ExpectNic {
                mac: &pod_mac,
                name: &pod,
                ..Default::default()
            },
            ExpectNic {
                mac: &ext,
                name: "external",
                addresses: &["192.168.1.200/24"],
                routes: &[("default", "192.168.1.1")],
                dns: &["192.168.1.1", "114.114.114.114"],
                ..Default::default()
            },
        ],
    );
}

/// The seed scenario with netplan, then day two on the same disk: the address is changed,
/// the webhook writes new network config and keeps the instance-id, and its user-data
/// (`updates: network: when: [boot-new-instance, boot]`) makes cloud-init apply it.
#[test]
fn seed_case_netplan_then_day_two_applies_the_new_address() {
    let s = Scenario::from_files(&[case("seed-wukong-static-ip.yaml")]);
    let user_data: Value = serde_yaml_ng::from_str(s.seed.user_data()).unwrap_or_default();
    assert!(
        s.seed.user_data().starts_with("#cloud-config\n")
            && user_data["updates"]["network"]["when"] == json!(["boot-new-instance", "boot"]),
        "the webhook's user-data asks for network updates on every boot: {:?}",
        s.seed.user_data()
    );
    let g = guest("seed-netplan-day-two");
    let first = s.boot(&g, Renderer::Netplan);
    check_seed_case(&first, Renderer::Netplan, &s);

    let dir = tempfile::tempdir().unwrap();
    let changed = Scenario::review(
        &dir,
        "day-two.yaml",
        &seed_case_with(|vm| {
            set_annotation(
                vm,
                r#"{"external": {"addresses": ["192.168.1.201/24"], "gateway": "192.168.1.1"}}"#,
            )
        }),
    );
    assert_eq!(changed.nics[1].mac, s.nics[1].mac, "MACs are stable");
    assert_ne!(changed.seed.network_config(), s.seed.network_config());
    assert_eq!(changed.seed.user_data(), s.seed.user_data());
    let second = changed.boot(&g, Renderer::Netplan);
    let ext = second.link_name(&s.mac("external")).unwrap_or_default();
    check(
        &second,
        Renderer::Netplan,
        "day two",
        &[ExpectNic {
            mac: &s.mac("external"),
            name: "external",
            addresses: &["192.168.1.201/24"],
            routes: &[("default", "192.168.1.1")],
            ..Default::default()
        }],
    );
    assert!(
        !second
            .addresses(&ext)
            .contains(&"192.168.1.200/24".to_string()),
        "the old address is gone:\n{}",
        second.describe()
    );
}

/// The same day two with user-data the user wrote (no `updates`): cloud-init
/// keeps the first boot's network config, so the new address does not land (the webhook warns
/// about exactly this, SPEC §2.9).
/// User-data of the user's own, without `updates` (a bare `#cloud-config` is what earlier
/// versions of the webhook wrote, and is upgraded).
const USER_WRITTEN: &str = "#cloud-config\nhostname: plain\n";

#[test]
fn day_two_without_updates_keeps_the_old_address() {
    let add_volume = |vm: &mut Value| {
        let spec = &mut vm["spec"]["template"]["spec"];
        spec["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "cloudinitdisk", "cloudInitNoCloud": {"userData": USER_WRITTEN}}));
        spec["domain"]["devices"]["disks"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "cloudinitdisk", "disk": {"bus": "virtio"}}));
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Scenario::review(&dir, "plain.yaml", &seed_case_with(add_volume));
    assert_eq!(s.seed.user_data(), USER_WRITTEN);
    let g = guest("day-two-without-updates");
    let first = s.boot(&g, Renderer::Netplan);
    check_seed_case(&first, Renderer::Netplan, &s);

    let changed = Scenario::review(
        &dir,
        "plain-day-two.yaml",
        &seed_case_with(|vm| {
            add_volume(vm);
            set_annotation(vm, r#"{"external": "192.168.1.201/24"}"#);
        }),
    );
    assert_ne!(changed.seed.network_config(), s.seed.network_config());
    let second = changed.boot(&g, Renderer::Netplan);
    let ext = second
        .link_name(&s.mac("external"))
        .unwrap_or_else(|| panic!("no external NIC:\n{}", second.describe()));
    let have = second.addresses(&ext);
    assert!(
        have.contains(&"192.168.1.200/24".to_string())
            && !have.contains(&"192.168.1.201/24".to_string()),
        "without `updates`, cloud-init keeps the first config: {have:?}\n{}",
        second.describe()
    );
}

#[test]
fn seed_case_eni() {
    let s = Scenario::from_files(&[case("seed-wukong-static-ip.yaml")]);
    let g = guest("seed-eni");
    check_seed_case(&s.boot(&g, Renderer::Eni), Renderer::Eni, &s);
}

// ---------------------------------------------------------------------------------------
// Dual stack with IPv6 default and extra routes (network config v1)

const DUAL_STACK: &str = r#"{"storage": {
    "addresses": ["10.50.0.10/24", "fd00:50::10/64"], "gateway": "fd00:50::1",
    "dns": ["10.50.0.2", "fd00:50::2"], "search": ["storage.internal"],
    "routes": [{"to": "0.0.0.0/0", "via": "10.50.0.1"}, {"to": "10.0.0.0/8", "via": "10.50.0.254"},
               {"to": "fd00:99::/48", "via": "fd00:50::fe"}]}}"#;

fn dual_stack(renderer: Renderer) {
    let mut docs = read_yaml(&case("dual-stack-annotation.yaml"));
    let vm = docs
        .iter_mut()
        .find(|d| d["kind"] == "VirtualMachine")
        .unwrap();
    set_annotation(vm, DUAL_STACK);
    let dir = tempfile::tempdir().unwrap();
    let s = Scenario::review(&dir, "dual.yaml", &docs);
    let config = s.seed.network_config().unwrap();
    let version = serde_yaml_ng::from_str::<Value>(config).unwrap_or_default()["version"].clone();
    assert_eq!(
        version,
        json!(1),
        "IPv6 routes are written as network config v1:\n{config}"
    );
    let g = guest(&format!("dual-stack-{}", renderer.name()));
    let report = s.boot(&g, renderer);
    let (pod_mac, storage_mac) = (s.mac("default"), s.mac("storage"));
    let pod = derived_guest_name("default");
    check(
        &report,
        renderer,
        "dual stack",
        &[
            ExpectNic {
                mac: &pod_mac,
                name: &pod,
                ..Default::default()
            },
            ExpectNic {
                mac: &storage_mac,
                name: "storage",
                addresses: &["10.50.0.10/24", "fd00:50::10/64"],
                routes: &[
                    ("default", "10.50.0.1"),
                    ("10.0.0.0/8", "10.50.0.254"),
                    ("::/0", "fd00:50::1"),
                    ("fd00:99::/48", "fd00:50::fe"),
                ],
                dns: &["10.50.0.2", "fd00:50::2"],
                search: &["storage.internal"],
            },
        ],
    );
}

#[test]
fn dual_stack_v1_netplan() {
    dual_stack(Renderer::Netplan);
}

#[test]
fn dual_stack_v1_eni() {
    dual_stack(Renderer::Eni);
}

#[test]
fn dual_stack_v1_networkd() {
    dual_stack(Renderer::Networkd);
}

// ---------------------------------------------------------------------------------------
// ConfigDrive: network_data.json on a `config-2` disk

fn config_drive(renderer: Renderer) {
    let docs = seed_case_with(|vm| {
        set_annotation(
            vm,
            r#"{"external": {"addresses": ["192.168.1.200/24", "fd00:1::200/64"], "gateway": "192.168.1.1",
                 "routes": [{"to": "::/0", "via": "fd00:1::1"}, {"to": "fd00:99::/48", "via": "fd00:1::fe"}]}}"#,
        );
        vm["spec"]["template"]["spec"]["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "cd", "cloudInitConfigDrive": {"userData": "#cloud-config"}}));
        vm["spec"]["template"]["spec"]["domain"]["devices"]["disks"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "cd", "disk": {"bus": "virtio"}}));
    });
    let dir = tempfile::tempdir().unwrap();
    let s = Scenario::review(&dir, "config-drive.yaml", &docs);
    assert!(matches!(s.seed, Seed::ConfigDrive { .. }), "{:?}", s.seed);
    let g = guest(&format!("config-drive-{}", renderer.name()));
    let report = s.boot(&g, renderer);
    assert!(
        report.section("cloud-init-status").contains("ConfigDrive"),
        "read from the config drive: {}",
        report.section("cloud-init-status")
    );
    let (pod_mac, ext_mac) = (s.mac("default"), s.mac("external"));
    let pod = derived_guest_name("default");
    check(
        &report,
        renderer,
        "config drive",
        &[
            ExpectNic {
                mac: &pod_mac,
                name: &pod,
                ..Default::default()
            },
            ExpectNic {
                mac: &ext_mac,
                name: "external",
                addresses: &["192.168.1.200/24", "fd00:1::200/64"],
                routes: &[
                    ("default", "192.168.1.1"),
                    ("::/0", "fd00:1::1"),
                    ("fd00:99::/48", "fd00:1::fe"),
                ],
                dns: &["192.168.1.1", "114.114.114.114"],
                ..Default::default()
            },
        ],
    );
}

#[test]
fn config_drive_netplan() {
    config_drive(Renderer::Netplan);
}

#[test]
fn config_drive_eni() {
    config_drive(Renderer::Eni);
}
