//! Cloud-init network config matching every NIC by MAC (SPEC §2.4): netplan v2 for NoCloud,
//! OpenStack `network_data.json` for ConfigDrive.
use std::fmt::Write as _;

use ipnet::IpNet;
use serde_json::{Value, json};

use super::{
    Ctx, Ops, Verdict,
    addresses::{self, StaticConfig},
    guest_names::guest_names,
};
use crate::{
    annotations::{self, NetworkDataMode},
    vm::{CloudInitKind, DISKS, VOLUMES, VOLUMES_FIELD},
};

/// First line of netplan config the webhook wrote: it may rewrite such config, never the user's.
pub const MARKER: &str = "# managed by kubevirt-net-webhook";
/// KubeVirt's limit for inline cloud-init data.
pub const INLINE_LIMIT: usize = 2048;
/// User-data of a volume the webhook creates: cloud-init ignores network config without
/// user-data, and applies changed network config at the next boot only when asked (SPEC §2.9;
/// the NoCloud instance-id KubeVirt gives never changes).
pub const USER_DATA: &str =
    "#cloud-config\nupdates:\n  network:\n    when: [boot-new-instance, boot]\n";
const VOLUME_NAME: &str = "cloudinitdisk";

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
pub fn render_netplan(nics: &[Nic]) -> String {
    let mut out = format!("{MARKER}\nversion: 2\nethernets:\n");
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

/// Where the config would go, and what is there now.
#[derive(Debug)]
enum Target {
    /// The first cloud-init volume, at this index.
    Existing {
        index: usize,
        kind: CloudInitKind,
        has_user_data: bool,
        current: Option<String>,
    },
    /// No cloud-init volume: add one, and its disk.
    New,
}

/// What the engine decides about network config for a VM.
#[derive(Debug)]
enum Plan {
    /// Nothing to write (mode `never`, or `auto` without requested addresses).
    NotWanted,
    /// The annotation cannot be read; `/validate` says why.
    BadAnnotation,
    /// Some NICs have no MAC to match on.
    MissingMacs(Vec<String>),
    /// The first cloud-init volume has network config the user wrote.
    UserNetworkData {
        volume: String,
        field: &'static str,
    },
    TooLarge {
        bytes: usize,
    },
    Write {
        target: Target,
        data: String,
    },
}

struct Planned {
    /// Whether some NIC has a requested address.
    requested: bool,
    nics: Vec<Nic>,
    plan: Plan,
}

/// The guest NICs of the VM: every interface paired with a network, in interface order.
fn nics(
    ctx: &Ctx<'_>,
    requests: &std::collections::BTreeMap<String, annotations::AddressRequest>,
) -> (Vec<Nic>, Vec<String>) {
    let paired: Vec<_> = ctx
        .vm
        .interfaces()
        .iter()
        .filter_map(|i| ctx.vm.network(&i.name).map(|n| (i, n)))
        .collect();
    let names = guest_names(paired.iter().map(|(i, _)| i.name.as_str()));
    let mut missing = Vec::new();
    let nics = paired
        .iter()
        .zip(names)
        .filter_map(|((iface, net), guest_name)| {
            let Some(mac) = iface.mac_address.clone() else {
                missing.push(iface.name.clone());
                return None;
            };
            let config = match net.nad_ref(ctx.namespace) {
                None => NicConfig::Pod,
                Some((ns, name)) => {
                    match addresses::resolve(requests.get(&net.name), ctx.inventory.nad(ns, name)) {
                        Some(c) => NicConfig::Static(c),
                        None => NicConfig::Dhcp,
                    }
                }
            };
            Some(Nic {
                guest_name,
                mac,
                config,
            })
        })
        .collect();
    (nics, missing)
}

fn plan(ctx: &Ctx<'_>) -> Planned {
    let mode = NetworkDataMode::parse(ctx.vm.annotation(annotations::NETWORK_DATA))
        .unwrap_or(NetworkDataMode::Auto);
    let planned = |requested, nics, plan| Planned {
        requested,
        nics,
        plan,
    };
    if mode == NetworkDataMode::Never {
        return planned(false, vec![], Plan::NotWanted);
    }
    let Ok(requests) = addresses::annotation_requests(ctx) else {
        return planned(false, vec![], Plan::BadAnnotation);
    };
    let (nics, missing) = nics(ctx, &requests);
    let requested = nics
        .iter()
        .any(|n| matches!(n.config, NicConfig::Static(_)));
    let first = ctx.vm.first_cloud_init();
    let kind = first.map_or(CloudInitKind::NoCloud, |(_, _, kind, _)| kind);
    // Rendered once: it is both what would be written and how a ConfigDrive config (JSON, no
    // room for a marker) is recognised as the webhook's own.
    let data = missing.is_empty().then(|| match kind {
        CloudInitKind::NoCloud if super::netconfig_v1::needs_v1(&nics) => {
            super::netconfig_v1::render_v1(&nics)
        }
        CloudInitKind::NoCloud => render_netplan(&nics),
        CloudInitKind::ConfigDrive => render_network_data_json(&nics),
    });
    // The user's own network config always wins; it is worth a warning even when nothing was
    // requested, because it cannot match NICs by name reliably.
    if let Some((_, volume, kind, source)) = first {
        let field = if source.network_data_secret_ref.is_some() {
            Some("networkDataSecretRef")
        } else if source.network_data_base64.is_some() {
            Some("networkDataBase64")
        } else {
            match (&source.network_data, kind) {
                (Some(d), CloudInitKind::NoCloud) if !d.starts_with(MARKER) => Some("networkData"),
                (Some(d), CloudInitKind::ConfigDrive)
                    if data.as_ref().is_some_and(|rendered| rendered != d) =>
                {
                    Some("networkData")
                }
                _ => None,
            }
        };
        if let Some(field) = field {
            return planned(
                requested,
                nics,
                Plan::UserNetworkData {
                    volume: volume.name.clone(),
                    field,
                },
            );
        }
    }
    if mode == NetworkDataMode::Auto && !requested {
        return planned(requested, nics, Plan::NotWanted);
    }
    let Some(data) = data else {
        return planned(requested, nics, Plan::MissingMacs(missing));
    };
    let target = match first {
        Some((index, _, _, source)) => Target::Existing {
            index,
            kind,
            has_user_data: source.has_user_data(),
            current: source.network_data.clone(),
        },
        None => Target::New,
    };
    if data.len() > INLINE_LIMIT {
        return planned(requested, nics, Plan::TooLarge { bytes: data.len() });
    }
    planned(requested, nics, Plan::Write { target, data })
}

/// Appends `item` to the list at `path`, creating the list (and missing parents) if needed.
fn push_to_list(ops: &mut Ops, raw: &Value, path: &str, item: Value) {
    if raw.pointer(path).is_some_and(Value::is_array) {
        ops.add(format!("{path}/-"), item);
        return;
    }
    // Walk up to the deepest existing object and add the nested rest in one operation.
    let mut value = json!([item]);
    let mut at = path.to_string();
    while let Some((parent, key)) = at.rsplit_once('/') {
        if parent.is_empty() || raw.pointer(parent).is_some_and(Value::is_object) {
            break;
        }
        value = json!({ key: value });
        at = parent.to_string();
    }
    ops.add(at, value);
}

fn free_name(taken: &[&str]) -> String {
    (0..)
        .map(|n| {
            if n == 0 {
                VOLUME_NAME.to_string()
            } else {
                format!("{VOLUME_NAME}-{n}")
            }
        })
        .find(|n| !taken.contains(&n.as_str()))
        .expect("some name is free")
}

pub(super) fn write(ctx: &Ctx<'_>, ops: &mut Ops, warnings: &mut Vec<String>) {
    let Planned {
        requested,
        nics,
        plan,
    } = plan(ctx);
    let macs = || {
        nics.iter()
            .map(|n| format!("{}={}", n.guest_name, n.mac))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match plan {
        Plan::NotWanted | Plan::BadAnnotation => {}
        Plan::MissingMacs(names) => warnings.push(format!(
            "cloud-init network config not written: interfaces {} have no MAC address to match on",
            names.join(", ")
        )),
        Plan::UserNetworkData { volume, field } => warnings.push(format!(
            "left the network config you wrote in volume {volume:?} ({field}) untouched{}; match NICs by MAC, not by name: {}",
            if requested { ", so the requested addresses are not applied by the webhook" } else { "" },
            macs()
        )),
        Plan::TooLarge { bytes } => warnings.push(format!(
            "cloud-init network config not written: it takes {bytes} bytes and KubeVirt allows {INLINE_LIMIT} inline; put it in a Secret (networkDataSecretRef)"
        )),
        Plan::Write { target: Target::Existing { index, kind, has_user_data, current }, data } => {
            if current.as_deref() == Some(data.as_str()) {
                return;
            }
            let base = format!("{VOLUMES}/{index}/{}", kind.field());
            ops.add(format!("{base}/networkData"), Value::String(data));
            if !has_user_data {
                // cloud-init ignores network config from a datasource without user-data.
                ops.add(format!("{base}/userData"), Value::String(USER_DATA.into()));
            }
            warnings.push(format!(
                "wrote cloud-init network config to {VOLUMES_FIELD}[{index}].{}.networkData, matching NICs by MAC: {}",
                kind.field(),
                macs()
            ));
        }
        Plan::Write { target: Target::New, data } => {
            let spec = &ctx.vm.spec.template.spec;
            let disks = spec.domain.devices.disks.as_deref().unwrap_or_default();
            let mut taken: Vec<&str> = spec.volumes.iter().map(|v| v.name.as_str()).collect();
            let name = free_name(&taken);
            taken.push(&name);
            push_to_list(ops, ctx.raw, VOLUMES, json!({
                "name": name,
                "cloudInitNoCloud": {"userData": USER_DATA, "networkData": data},
            }));
            // A disk already named like the volume (declared without one) serves it.
            if !disks.iter().any(|d| d.name == name) {
                push_to_list(ops, ctx.raw, DISKS, json!({"name": name, "disk": {"bus": "virtio"}}));
            }
            warnings.push(format!(
                "added cloudInitNoCloud volume {name:?} and its disk with network config matching NICs by MAC: {}",
                macs()
            ));
        }
    }
}

pub(super) fn check(ctx: &Ctx<'_>, verdict: &mut Verdict) {
    if ctx.vm.annotation(annotations::MUTATE).map(str::trim) == Some("false") {
        return;
    }
    let Planned {
        requested, plan, ..
    } = plan(ctx);
    if let (true, Plan::TooLarge { bytes }) = (requested, plan) {
        verdict.denials.push(format!(
            "the requested addresses need {bytes} bytes of cloud-init network config and KubeVirt allows {INLINE_LIMIT} inline: put the network config in a Secret (networkDataSecretRef in {VOLUMES_FIELD}) yourself, or request fewer settings"
        ));
    }
}
