//! cloud-init network config version 1 for NoCloud, written instead of netplan v2 when some
//! NIC has an IPv6 route (SPEC §2.4).
//!
//! cloud-init 22.4–25.1 mishandle IPv6 routes given in netplan v2: 22.4 turns `::/0` into
//! `::/64` in its eni, sysconfig, networkd and NetworkManager renderers (v2 routes are
//! normalised twice and a prefix of 0 is lost the second time), NetworkManager ≤ 23.4 puts
//! every v2 route of a dual-stack NIC under `[ipv4]`, and eni ≤ 25.1 writes IPv6 routes into
//! the `inet` stanza. Version 1 has one subnet per address, each carrying its own routes, so
//! every renderer binds an IPv6 route to the IPv6 side of the right NIC.
//!
//! Form, chosen against every renderer of `cloud-init devel net-convert` (tests/guest.rs) and
//! real boots (tests/guest_boot.rs):
//! - one `type: physical` entry per NIC, with `name` (the guest name, which every renderer
//!   uses as the device name) and `mac_address`;
//! - `type: static` for IPv6 too (NetworkManager 22.4 maps `static6` to `method=auto`);
//! - every route, default ones included, is `{destination: CIDR, gateway}` on the first subnet
//!   of its family, never a subnet `gateway`: ifupdown applies a subnet `gateway` with
//!   `ip route add default`, which fails the whole stanza (skipping its routes) when the pod
//!   NIC's DHCP lease put a default route in first, while cloud-init's eni route lines
//!   (`route add ... || true`) add theirs beside it; and netplan would get the deprecated
//!   `gateway4`/`gateway6`;
//! - DNS as `dns_nameservers`/`dns_search` of the NIC's first subnet, which binds it to the
//!   NIC in every renderer (a global `type: nameserver` is not per NIC in all of them).
//!
//! Version 1 has no `optional`: a secondary NIC on DHCP is waited for by netplan guests.
use std::fmt::Write as _;

use ipnet::IpNet;

use super::render::{Nic, NicConfig, quote};
use crate::{engine::addresses::StaticConfig, model::annotations::GuestRoute};

fn quoted_list<T: ToString>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(|i| quote(&i.to_string())).collect();
    format!("[{}]", items.join(", "))
}

fn is_v6(net: &IpNet) -> bool {
    matches!(net, IpNet::V6(_))
}

/// A route that is written at all (netplan v2 and v1 need a next hop) and touches IPv6.
fn is_v6_route(r: &GuestRoute) -> bool {
    r.via.is_some_and(|via| via.is_ipv6() || is_v6(&r.to))
}

/// Whether the NoCloud config must be version 1: some NIC has an IPv6 route (a default route
/// from an IPv6 gateway, or an explicit one).
pub fn needs_v1(nics: &[Nic]) -> bool {
    nics.iter().any(|nic| match &nic.config {
        NicConfig::Static(c) => c.routes.iter().any(is_v6_route),
        NicConfig::Pod | NicConfig::Dhcp => false,
    })
}

/// The subnets of a NIC with static config: one per address, in order.
fn static_subnets(c: &StaticConfig) -> Vec<String> {
    let mut fields: Vec<Vec<String>> = c
        .addresses
        .iter()
        .map(|a| {
            vec![
                "type: static".into(),
                format!("address: {}", quote(&a.to_string())),
            ]
        })
        .collect();
    let mut routes: Vec<Vec<String>> = vec![Vec::new(); fields.len()];
    for r in &c.routes {
        let Some(via) = r.via else { continue };
        // The first subnet of the route's family, else the first one.
        let i = c
            .addresses
            .iter()
            .position(|a| is_v6(a) == is_v6(&r.to))
            .unwrap_or(0);
        let metric = r
            .metric
            .map(|m| format!(", metric: {m}"))
            .unwrap_or_default();
        if let Some(list) = routes.get_mut(i) {
            list.push(format!(
                "{{destination: {}, gateway: {}{metric}}}",
                quote(&r.to.to_string()),
                quote(&via.to_string())
            ));
        }
    }
    if let Some(first) = fields.first_mut() {
        if !c.nameservers.is_empty() {
            first.push(format!("dns_nameservers: {}", quoted_list(&c.nameservers)));
        }
        if !c.search.is_empty() {
            first.push(format!("dns_search: {}", quoted_list(&c.search)));
        }
    }
    fields
        .into_iter()
        .zip(routes)
        .map(|(mut f, routes)| {
            if !routes.is_empty() {
                f.push(format!("routes: [{}]", routes.join(", ")));
            }
            format!("{{{}}}", f.join(", "))
        })
        .collect()
}

/// Network config v1 with one flow mapping per NIC; `marker` is the first line (the
/// comment that says whose config this is, as in netplan v2).
pub fn render_v1(nics: &[Nic], marker: &str) -> String {
    let mut out = format!("{marker}\nversion: 1\nconfig:\n");
    for nic in nics {
        let mut fields = vec![
            "type: physical".to_string(),
            format!("name: {}", nic.guest_name),
            format!("mac_address: {}", quote(&nic.mac)),
        ];
        let subnets = match &nic.config {
            NicConfig::Pod | NicConfig::Dhcp => vec!["{type: dhcp4}".to_string()],
            NicConfig::Static(c) => {
                if let Some(mtu) = c.mtu {
                    fields.push(format!("mtu: {mtu}"));
                }
                static_subnets(c)
            }
        };
        fields.push(format!("subnets: [{}]", subnets.join(", ")));
        let _ = writeln!(out, "- {{{}}}", fields.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cloudinit::managed::{MARKER, marker};
    use serde_json::{Value, json};

    fn route(to: &str, via: &str, metric: Option<u32>) -> GuestRoute {
        GuestRoute {
            to: to.parse().unwrap(),
            via: Some(via.parse().unwrap()),
            metric,
        }
    }

    fn nic(name: &str, mac: &str, config: NicConfig) -> Nic {
        Nic {
            guest_name: name.into(),
            mac: mac.into(),
            config,
        }
    }

    fn dual_stack() -> Vec<Nic> {
        vec![
            nic("default-37a8", "02:f4:e6:01:d9:7a", NicConfig::Pod),
            nic(
                "storage",
                "02:ea:f8:67:43:2b",
                NicConfig::Static(StaticConfig {
                    addresses: vec![
                        "10.50.0.10/24".parse().unwrap(),
                        "fd00:50::10/64".parse().unwrap(),
                    ],
                    routes: vec![
                        route("10.0.0.0/8", "10.50.0.254", None),
                        route("fd00:99::/48", "fd00:50::fe", Some(50)),
                        route("0.0.0.0/0", "10.50.0.1", None),
                        route("::/0", "fd00:50::1", None),
                    ],
                    nameservers: vec!["10.50.0.2".parse().unwrap()],
                    search: vec!["storage.internal".into()],
                    mtu: Some(1400),
                }),
            ),
            nic("spare", "02:ea:f8:67:43:2c", NicConfig::Dhcp),
        ]
    }

    /// The YAML, read back (YAML 1.2 core; the MACs are quoted, so 1.1 readers agree).
    fn parsed(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    #[test]
    fn needs_v1_only_for_ipv6_routes() {
        assert!(needs_v1(&dual_stack()));
        let v4_only = |routes| {
            vec![nic(
                "ext",
                "02:00:00:00:00:01",
                NicConfig::Static(StaticConfig {
                    addresses: vec![
                        "192.168.1.200/24".parse().unwrap(),
                        "fd00:1::200/64".parse().unwrap(),
                    ],
                    routes,
                    ..StaticConfig::default()
                }),
            )]
        };
        // An IPv6 address alone, or IPv4 routes, keep netplan v2.
        assert!(!needs_v1(&v4_only(vec![route(
            "0.0.0.0/0",
            "192.168.1.1",
            None
        )])));
        assert!(!needs_v1(&v4_only(vec![])));
        // A route without a next hop is not written, so it does not count.
        let no_via = GuestRoute {
            to: "fd00:9::/64".parse().unwrap(),
            via: None,
            metric: None,
        };
        assert!(!needs_v1(&v4_only(vec![no_via])));
        assert!(needs_v1(&v4_only(vec![route("::/0", "fd00:1::1", None)])));
        assert!(!needs_v1(&[nic("p", "02:00:00:00:00:02", NicConfig::Pod)]));
    }

    #[test]
    fn renders_one_subnet_per_address_with_its_own_routes() {
        let text = render_v1(&dual_stack(), &marker("ns", "vm"));
        assert!(text.starts_with(MARKER), "{text}");
        // One line per NIC after the header.
        assert_eq!(text.lines().count(), 3 + 3, "{text}");
        let doc = parsed(&text);
        assert_eq!(doc["version"], 1);
        let config = doc["config"].as_array().unwrap();
        assert_eq!(
            config[0],
            json!({"type": "physical", "name": "default-37a8", "mac_address": "02:f4:e6:01:d9:7a", "subnets": [{"type": "dhcp4"}]})
        );
        assert_eq!(
            config[1],
            json!({"type": "physical", "name": "storage", "mac_address": "02:ea:f8:67:43:2b", "mtu": 1400, "subnets": [
                {"type": "static", "address": "10.50.0.10/24",
                 "dns_nameservers": ["10.50.0.2"], "dns_search": ["storage.internal"],
                 "routes": [{"destination": "10.0.0.0/8", "gateway": "10.50.0.254"},
                            {"destination": "0.0.0.0/0", "gateway": "10.50.0.1"}]},
                {"type": "static", "address": "fd00:50::10/64",
                 "routes": [{"destination": "fd00:99::/48", "gateway": "fd00:50::fe", "metric": 50},
                            {"destination": "::/0", "gateway": "fd00:50::1"}]}]})
        );
        assert_eq!(config[2]["subnets"], json!([{"type": "dhcp4"}]));
    }

    #[test]
    fn routes_go_to_the_first_subnet_of_their_family_in_order() {
        let nics = vec![nic(
            "ext",
            "02:00:00:00:00:01",
            NicConfig::Static(StaticConfig {
                addresses: vec![
                    "192.168.1.200/24".parse().unwrap(),
                    "fd00:1::200/64".parse().unwrap(),
                    "fd00:2::200/64".parse().unwrap(),
                ],
                routes: vec![
                    route("::/0", "fd00:1::1", Some(10)),
                    route("::/0", "fd00:1::2", None),
                    route("0.0.0.0/0", "192.168.1.1", None),
                ],
                ..StaticConfig::default()
            }),
        )];
        let doc = parsed(&render_v1(&nics, &marker("ns", "vm")));
        let subnets = doc["config"][0]["subnets"].as_array().unwrap().clone();
        assert_eq!(
            subnets[0]["routes"],
            json!([{"destination": "0.0.0.0/0", "gateway": "192.168.1.1"}])
        );
        assert_eq!(
            subnets[1]["routes"],
            json!([{"destination": "::/0", "gateway": "fd00:1::1", "metric": 10},
                   {"destination": "::/0", "gateway": "fd00:1::2"}])
        );
        assert!(subnets[2].get("routes").is_none());
        // Never a subnet gateway (see the module docs).
        assert!(subnets.iter().all(|s| s.get("gateway").is_none()));
    }

    #[test]
    fn a_route_of_a_family_without_address_goes_on_the_first_subnet() {
        let nics = vec![nic(
            "ext",
            "02:00:00:00:00:01",
            NicConfig::Static(StaticConfig {
                addresses: vec!["192.168.1.200/24".parse().unwrap()],
                routes: vec![route("fd00:9::/64", "fd00:1::1", None)],
                ..StaticConfig::default()
            }),
        )];
        let doc = parsed(&render_v1(&nics, &marker("ns", "vm")));
        assert_eq!(
            doc["config"][0]["subnets"][0]["routes"],
            json!([{"destination": "fd00:9::/64", "gateway": "fd00:1::1"}])
        );
    }

    #[test]
    fn twenty_nics_fit_the_inline_limit() {
        let nics: Vec<Nic> = (0..20)
            .map(|i| {
                nic(
                    &format!("net{i}"),
                    &format!("02:aa:bb:cc:dd:{i:02x}"),
                    NicConfig::Dhcp,
                )
            })
            .collect();
        let text = render_v1(&nics, &marker("ns", "vm"));
        assert!(
            text.len() <= super::super::INLINE_LIMIT,
            "{} bytes",
            text.len()
        );
        assert_eq!(parsed(&text)["config"].as_array().unwrap().len(), 20);
    }
}
