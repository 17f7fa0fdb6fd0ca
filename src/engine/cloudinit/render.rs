//! Rendering the guest's network config: netplan v2 for NoCloud, OpenStack
//! `network_data.json` for ConfigDrive. Compact, because KubeVirt allows 2048 bytes inline.
use std::fmt::Write as _;

use ipnet::IpNet;
use serde_json::{Value, json};

use crate::engine::addresses::StaticConfig;

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

fn quote(s: &str) -> String {
    // A JSON string is a YAML double-quoted scalar; quoting keeps MACs from YAML 1.1's
    // base-60 integers.
    serde_json::to_string(s).expect("strings serialize")
}

fn quoted_list<T: ToString>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(|i| quote(&i.to_string())).collect();
    format!("[{}]", items.join(", "))
}

/// Netplan v2 with one flow mapping per NIC: compact enough for 20 NICs in 2 KiB, and a
/// line per NIC still reads well.
/// `marker` is the first line: the comment that says whose config this is.
pub fn render_netplan(nics: &[Nic], marker: &str) -> String {
    let mut out = format!("{marker}\nversion: 2\nethernets:\n");
    for nic in nics {
        let name = &nic.guest_name;
        let mut fields = vec![
            format!("match: {{macaddress: {}}}", quote(&nic.mac)),
            format!("set-name: {name}"),
        ];
        match &nic.config {
            NicConfig::Pod => fields.push("dhcp4: true".into()),
            NicConfig::Dhcp => fields.extend(["dhcp4: true".into(), "optional: true".into()]),
            NicConfig::Static(c) => {
                fields.push(format!("addresses: {}", quoted_list(&c.addresses)));
                let routes: Vec<String> = c
                    .routes
                    .iter()
                    .filter_map(|r| {
                        let via = r.via?;
                        let metric = r
                            .metric
                            .map(|m| format!(", metric: {m}"))
                            .unwrap_or_default();
                        Some(format!(
                            "{{to: {}, via: {}{metric}}}",
                            quote(&r.to.to_string()),
                            quote(&via.to_string())
                        ))
                    })
                    .collect();
                if !routes.is_empty() {
                    fields.push(format!("routes: [{}]", routes.join(", ")));
                }
                let mut ns = Vec::new();
                if !c.nameservers.is_empty() {
                    ns.push(format!("addresses: {}", quoted_list(&c.nameservers)));
                }
                if !c.search.is_empty() {
                    ns.push(format!("search: {}", quoted_list(&c.search)));
                }
                if !ns.is_empty() {
                    fields.push(format!("nameservers: {{{}}}", ns.join(", ")));
                }
                if let Some(mtu) = c.mtu {
                    fields.push(format!("mtu: {mtu}"));
                }
            }
        }
        let _ = writeln!(out, "  {name}: {{{}}}", fields.join(", "));
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
