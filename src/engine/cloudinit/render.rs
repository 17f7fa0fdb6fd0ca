//! Rendering the guest's network config: netplan v2 for NoCloud, OpenStack
//! `network_data.json` for ConfigDrive. Compact, because KubeVirt allows 2048 bytes inline.
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Value, json};

use crate::{
    engine::addresses::StaticConfig,
    model::text::{push_decimal, push_ip, push_net},
};

/// How one NIC is configured in the guest.
#[derive(Debug, Clone, PartialEq)]
pub enum NicConfig {
    /// The pod network: DHCP.
    Pod,
    /// A secondary network without a requested address: DHCP, not waited for.
    Dhcp,
    Static(StaticConfig),
}

/// One guest NIC.
#[derive(Debug, Clone, PartialEq)]
pub struct Nic {
    pub guest_name: String,
    pub mac: String,
    pub config: NicConfig,
}

pub(super) fn quote(s: &str) -> String {
    // A JSON string is a YAML double-quoted scalar; quoting keeps MACs from YAML 1.1's
    // base-60 integers.
    serde_json::to_string(s).expect("strings serialize")
}

/// [`quote`], appended to `out`: MACs and plain names need no escaping and skip the
/// serializer.
fn push_quoted(out: &mut String, s: &str) {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&quote(s));
    }
}

/// Something [`quoted_list`] writes: the items are addresses, whose text needs no escaping.
trait Address {
    fn push_to(&self, out: &mut String);
}

impl Address for IpAddr {
    fn push_to(&self, out: &mut String) {
        push_ip(out, *self);
    }
}

impl Address for IpNet {
    fn push_to(&self, out: &mut String) {
        push_net(out, self);
    }
}

/// `["a", "b"]` into `out`.
fn quoted_list(out: &mut String, items: &[impl Address]) {
    out.push('[');
    for (k, item) in items.iter().enumerate() {
        if k > 0 {
            out.push_str(", ");
        }
        out.push('"');
        item.push_to(out);
        out.push('"');
    }
    out.push(']');
}

/// Netplan v2 with one flow mapping per NIC: compact enough for 20 NICs in 2 KiB, and a
/// line per NIC still reads well.
/// `marker` is the first line: the comment that says whose config this is.
pub fn render_netplan(nics: &[Nic], marker: &str) -> String {
    // Written straight into one string, by pieces: this runs on every /mutate.
    let mut out = String::with_capacity(marker.len() + 32 + 192 * nics.len());
    out.push_str(marker);
    out.push_str("\nversion: 2\nethernets:\n");
    for nic in nics {
        let name = &nic.guest_name;
        out.push_str("  ");
        out.push_str(name);
        out.push_str(": {match: {macaddress: ");
        push_quoted(&mut out, &nic.mac);
        out.push_str("}, set-name: ");
        out.push_str(name);
        match &nic.config {
            NicConfig::Pod => out.push_str(", dhcp4: true"),
            NicConfig::Dhcp => out.push_str(", dhcp4: true, optional: true"),
            NicConfig::Static(c) => {
                out.push_str(", addresses: ");
                quoted_list(&mut out, &c.addresses);
                let mut routes = c.routes.iter().filter_map(|r| Some((r, r.via?)));
                if let Some(first) = routes.next() {
                    out.push_str(", routes: [");
                    for (k, (r, via)) in std::iter::once(first).chain(routes).enumerate() {
                        out.push_str(if k == 0 { "{to: \"" } else { ", {to: \"" });
                        push_net(&mut out, &r.to);
                        out.push_str("\", via: \"");
                        push_ip(&mut out, via);
                        out.push('"');
                        if let Some(m) = r.metric {
                            out.push_str(", metric: ");
                            push_decimal(&mut out, u64::from(m));
                        }
                        out.push('}');
                    }
                    out.push(']');
                }
                match (c.nameservers.is_empty(), c.search.is_empty()) {
                    (true, true) => {}
                    (no_servers, no_search) => {
                        out.push_str(", nameservers: {");
                        if !no_servers {
                            out.push_str("addresses: ");
                            quoted_list(&mut out, &c.nameservers);
                        }
                        if !no_search {
                            out.push_str(if no_servers {
                                "search: ["
                            } else {
                                ", search: ["
                            });
                            for (k, domain) in c.search.iter().enumerate() {
                                if k > 0 {
                                    out.push_str(", ");
                                }
                                push_quoted(&mut out, domain);
                            }
                            out.push(']');
                        }
                        out.push('}');
                    }
                }
                if let Some(mtu) = c.mtu {
                    out.push_str(", mtu: ");
                    push_decimal(&mut out, u64::from(mtu));
                }
            }
        }
        out.push_str("}\n");
    }
    out
}

fn netmask(net: &IpNet) -> String {
    net.netmask().to_string()
}

/// OpenStack `network_data.json`, as cloud-init's ConfigDrive datasource reads it.
pub fn render_network_data_json(nics: &[Nic]) -> String {
    let mut links = Vec::new();
    let mut networks = Vec::new();
    for nic in nics {
        let mut link = json!({
            "id": nic.guest_name, "name": nic.guest_name, "type": "phy",
            "ethernet_mac_address": nic.mac,
        });
        match &nic.config {
            NicConfig::Pod | NicConfig::Dhcp => networks.push(json!({
                "id": format!("network{}", networks.len()), "link": nic.guest_name, "type": "ipv4_dhcp",
            })),
            NicConfig::Static(c) => {
                if let Some(mtu) = c.mtu {
                    link["mtu"] = json!(mtu);
                }
                for addr in &c.addresses {
                    let v4 = matches!(addr, IpNet::V4(_));
                    let routes: Vec<Value> = c
                        .routes
                        .iter()
                        .filter(|r| matches!(r.to, IpNet::V4(_)) == v4)
                        .filter_map(|r| {
                            let via = r.via?;
                            let mut route = json!({"network": r.to.network().to_string(), "netmask": netmask(&r.to), "gateway": via.to_string()});
                            if let Some(m) = r.metric {
                                route["metric"] = json!(m);
                            }
                            Some(route)
                        })
                        .collect();
                    let mut network = json!({
                        "id": format!("network{}", networks.len()), "link": nic.guest_name,
                        "type": if v4 { "ipv4" } else { "ipv6" },
                        "ip_address": addr.addr().to_string(), "netmask": netmask(addr),
                    });
                    if !routes.is_empty() {
                        network["routes"] = Value::Array(routes);
                    }
                    if !c.nameservers.is_empty() {
                        network["dns_nameservers"] = json!(c.nameservers.iter().map(ToString::to_string).collect::<Vec<_>>());
                    }
                    if !c.search.is_empty() {
                        network["dns_search"] = json!(c.search);
                    }
                    networks.push(network);
                }
            }
        }
        links.push(link);
    }
    json!({"links": links, "networks": networks, "services": []}).to_string()
}

/// The length of `s` as [`quote`] writes it: serde_json escapes `"`, `\\` and control
/// characters only (`\n`-style in 2 bytes where JSON has a short form, else `\u00XX`).
fn quoted_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Longest text of an address (`255.255.255.255`; IPv6 at most eight groups of four).
fn ip_len(v4: bool) -> usize {
    if v4 { 15 } else { 39 }
}

/// Longest text of a CIDR of that family.
fn net_len(v4: bool) -> usize {
    ip_len(v4) + 4
}

/// Bytes every renderer may spend on one NIC besides its MAC, its guest name and its static
/// settings: keys, quotes, separators, a `networkN` id, the line break.
const NIC_FRAME: usize = 128;
/// The same for one address, and everything written with it, of a static NIC.
const ADDRESS_FRAME: usize = 128;
/// The same for one route (a `u32` metric included).
const ROUTE_FRAME: usize = 64;
/// Longest guest NIC name (IFNAMSIZ - 1): as-is names and derived ones both fit in it.
const GUEST_NAME_LEN: usize = 15;

/// An upper bound of the bytes any renderer ([`render_netplan`], [`super::v1::render_v1`],
/// [`render_network_data_json`]) writes for a NIC with `mac` and `config`, whatever its guest
/// name: enough to know a config fits inline without rendering it. ConfigDrive repeats
/// routes and DNS with every address, so the bound does too.
pub fn nic_bound(mac: &str, config: &NicConfig) -> usize {
    let frame = NIC_FRAME + 4 * GUEST_NAME_LEN + quoted_len(mac);
    let NicConfig::Static(c) = config else {
        return frame;
    };
    let routes: usize = c
        .routes
        .iter()
        .map(|r| {
            let v4 = matches!(r.to, IpNet::V4(_));
            ROUTE_FRAME + net_len(v4) + 2 * ip_len(v4) + r.via.map_or(0, |v| ip_len(v.is_ipv4()))
        })
        .sum();
    let dns: usize = c
        .nameservers
        .iter()
        .map(|a| 4 + ip_len(a.is_ipv4()))
        .sum::<usize>()
        + c.search.iter().map(|s| 2 + quoted_len(s)).sum::<usize>();
    let per_address = |a: &IpNet| {
        let v4 = matches!(a, IpNet::V4(_));
        ADDRESS_FRAME + GUEST_NAME_LEN + net_len(v4) + ip_len(v4) + routes + dns
    };
    // Without addresses, netplan and v1 still write the routes and DNS once: count them as
    // one IPv6 address would carry them.
    let addresses = c.addresses.iter().map(per_address).sum::<usize>();
    frame + 16 /* mtu */ + addresses.max(per_address(&IpNet::V6(Default::default())))
}

/// An upper bound of the bytes of the whole config for NICs bounded by `nics` (the sum of
/// their [`nic_bound`]s), under the marker [`managed::marker`](super::managed::marker) of an
/// identity of `identity_len` bytes.
pub fn config_bound(identity_len: usize, nics: usize) -> usize {
    // `{"links": [], "networks": [], "services": []}`, the header lines of v1 and v2, and the
    // ` for ` and `/` of the marker.
    super::managed::MARKER.len() + identity_len + 64 + nics
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::annotations::GuestRoute;

    fn nic(name: &str, mac: &str, config: NicConfig) -> Nic {
        Nic {
            guest_name: name.into(),
            mac: mac.into(),
            config,
        }
    }

    /// Every field netplan gets, byte for byte (guests and the `net-convert` tests read
    /// this text; the MAC of a managed config is matched against it on day two).
    #[test]
    fn netplan_text_is_exact() {
        let full = StaticConfig {
            addresses: vec![
                "10.0.0.5/24".parse().unwrap(),
                "fd00::5/64".parse().unwrap(),
            ],
            routes: vec![
                GuestRoute {
                    to: "0.0.0.0/0".parse().unwrap(),
                    via: Some("10.0.0.1".parse().unwrap()),
                    metric: None,
                },
                GuestRoute {
                    to: "10.9.0.0/16".parse().unwrap(),
                    via: None,
                    metric: Some(5),
                },
                GuestRoute {
                    to: "10.8.0.0/16".parse().unwrap(),
                    via: Some("10.0.0.254".parse().unwrap()),
                    metric: Some(100),
                },
            ],
            nameservers: vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()],
            search: vec!["a.example".into(), "b\"c".into()],
            mtu: Some(9000),
        };
        let search_only = StaticConfig {
            addresses: vec!["10.1.0.5/24".parse().unwrap()],
            routes: vec![GuestRoute {
                to: "10.9.0.0/16".parse().unwrap(),
                via: None,
                metric: None,
            }],
            search: vec!["x".into()],
            ..Default::default()
        };
        let servers_only = StaticConfig {
            addresses: vec!["10.2.0.5/24".parse().unwrap()],
            nameservers: vec!["10.2.0.2".parse().unwrap()],
            ..Default::default()
        };
        let text = render_netplan(
            &[
                nic("default", "02:00:00:00:00:01", NicConfig::Pod),
                nic("dhcp", "02:00:00:00:00:02", NicConfig::Dhcp),
                nic("full", "02:00:00:00:00:03", NicConfig::Static(full)),
                nic("so", "02:00:00:00:00:04", NicConfig::Static(search_only)),
                nic("ns", "02:00:00:00:00:05", NicConfig::Static(servers_only)),
            ],
            "# marker",
        );
        assert_eq!(
            text,
            r#"# marker
version: 2
ethernets:
  default: {match: {macaddress: "02:00:00:00:00:01"}, set-name: default, dhcp4: true}
  dhcp: {match: {macaddress: "02:00:00:00:00:02"}, set-name: dhcp, dhcp4: true, optional: true}
  full: {match: {macaddress: "02:00:00:00:00:03"}, set-name: full, addresses: ["10.0.0.5/24", "fd00::5/64"], routes: [{to: "0.0.0.0/0", via: "10.0.0.1"}, {to: "10.8.0.0/16", via: "10.0.0.254", metric: 100}], nameservers: {addresses: ["10.0.0.2", "fd00::2"], search: ["a.example", "b\"c"]}, mtu: 9000}
  so: {match: {macaddress: "02:00:00:00:00:04"}, set-name: so, addresses: ["10.1.0.5/24"], nameservers: {search: ["x"]}}
  ns: {match: {macaddress: "02:00:00:00:00:05"}, set-name: ns, addresses: ["10.2.0.5/24"], nameservers: {addresses: ["10.2.0.2"]}}
"#
        );
    }

    mod bound {
        use std::net::IpAddr;

        use proptest::prelude::*;

        use super::*;
        use crate::engine::cloudinit::{managed::marker, v1::render_v1};

        fn ip() -> impl Strategy<Value = IpAddr> {
            prop_oneof![
                any::<[u8; 4]>().prop_map(IpAddr::from),
                any::<[u16; 8]>().prop_map(IpAddr::from),
            ]
        }

        fn net() -> impl Strategy<Value = IpNet> {
            (ip(), any::<u8>())
                .prop_map(|(a, p)| IpNet::new(a, p % (if a.is_ipv4() { 33 } else { 129 })).unwrap())
        }

        fn config() -> impl Strategy<Value = NicConfig> {
            let route = (
                net(),
                proptest::option::of(ip()),
                proptest::option::of(any::<u32>()),
            )
                .prop_map(|(to, via, metric)| GuestRoute { to, via, metric });
            let static_config = (
                proptest::collection::vec(net(), 0..4),
                proptest::collection::vec(route, 0..4),
                proptest::collection::vec(ip(), 0..3),
                // Any text, control characters and quotes included: the bound counts escapes.
                proptest::collection::vec(any::<String>(), 0..3),
                proptest::option::of(any::<u16>()),
            )
                .prop_map(
                    |(addresses, routes, nameservers, search, mtu)| StaticConfig {
                        addresses,
                        routes,
                        nameservers,
                        search,
                        mtu,
                    },
                );
            prop_oneof![
                Just(NicConfig::Pod),
                Just(NicConfig::Dhcp),
                static_config.prop_map(NicConfig::Static),
            ]
        }

        fn nics() -> impl Strategy<Value = Vec<Nic>> {
            // Guest names are at most 15 bytes (guest_names); MACs are whatever the user wrote.
            let nic = ("[a-z0-9_-]{1,15}", any::<String>(), config()).prop_map(
                |(guest_name, mac, config)| Nic {
                    guest_name,
                    mac,
                    config,
                },
            );
            proptest::collection::vec(nic, 0..6)
        }

        proptest! {
            /// The shortcut for plain text writes what the serializer writes.
            #[test]
            fn push_quoted_writes_what_quote_writes(s in prop_oneof![any::<String>(), "[0-9a-fA-F:._-]{0,20}"]) {
                let mut out = String::new();
                push_quoted(&mut out, &s);
                prop_assert_eq!(out, quote(&s));
            }

            /// The bound `/validate` trusts instead of rendering is never below what any
            /// renderer writes.
            #[test]
            fn is_never_below_any_rendering(
                nics in nics(),
                namespace in "[a-z0-9-]{1,63}",
                name in "[a-z0-9.-]{0,253}",
            ) {
                let bound = config_bound(
                    namespace.len() + name.len(),
                    nics.iter().map(|n| nic_bound(&n.mac, &n.config)).sum(),
                );
                let marker = marker(&namespace, &name);
                for text in [
                    render_netplan(&nics, &marker),
                    render_v1(&nics, &marker),
                    render_network_data_json(&nics),
                ] {
                    prop_assert!(text.len() <= bound, "{} > {bound}:\n{text}", text.len());
                }
            }
        }

        /// Tight enough to spare a common VM the rendering: the bench's three NICs, one of
        /// them with an address, a gateway and DNS, stay well under the inline limit.
        #[test]
        fn lets_a_common_vm_skip_rendering() {
            let mac = "02:00:00:00:00:01";
            let config = StaticConfig {
                addresses: vec!["10.1.0.5/24".parse().unwrap()],
                routes: vec![GuestRoute {
                    to: "0.0.0.0/0".parse().unwrap(),
                    via: Some("10.1.0.1".parse().unwrap()),
                    metric: None,
                }],
                nameservers: vec!["10.1.0.2".parse().unwrap()],
                search: vec!["example.com".into()],
                mtu: None,
            };
            let nics = nic_bound(mac, &NicConfig::Pod)
                + nic_bound(mac, &NicConfig::Dhcp)
                + nic_bound(mac, &NicConfig::Static(config));
            let bound = config_bound(20, nics);
            assert!(bound < crate::engine::cloudinit::INLINE_LIMIT, "{bound}");
        }
    }
}
