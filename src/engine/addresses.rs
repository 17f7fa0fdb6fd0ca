//! Requested guest addresses (SPEC §2.5): where they come from, what goes with them, and the
//! checks on them.
use std::{collections::BTreeMap, net::IpAddr};

use foldhash::{HashMap, HashMapExt};

use ipnet::IpNet;

use super::{
    Ctx,
    by_name::ByName,
    names::list,
    tenancy::{self, Access},
    violations::{Findings, Rule},
};
use crate::inventory::with_key;
use crate::model::{
    annotations::{self, AddressRequest, GuestRoute, NetworkDataMode},
    nad::Nad,
    vm::Network,
};

/// The static config one secondary NIC gets in the guest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StaticConfig {
    pub addresses: Vec<IpNet>,
    pub routes: Vec<GuestRoute>,
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub mtu: Option<u16>,
}

/// The annotation's requests (parsed once per decision), or the user-facing reason it
/// cannot be read.
pub(super) fn annotation_requests<'c>(
    ctx: &'c Ctx<'_>,
) -> Result<&'c BTreeMap<String, AddressRequest>, &'c annotations::Error> {
    ctx.requests.as_ref()
}

fn default_route(family_v4: bool) -> IpNet {
    if family_v4 { "0.0.0.0/0" } else { "::/0" }
        .parse()
        .expect("valid CIDR")
}

/// The static config of a Multus network, or `None` when no address is requested for it or
/// the annotation asks `"dhcp"` (the NIC then uses DHCP). Pool addresses (SPEC §2.10) are in
/// the annotation by the time this runs.
pub fn resolve(request: Option<&AddressRequest>, nad: Option<&Nad>) -> Option<StaticConfig> {
    if request.is_some_and(|r| r.dhcp) {
        return None; // `"dhcp"`: no address, not even the one the NAD pins
    }
    let ipam = nad.map(|n| &n.ipam);
    let addresses = match request {
        Some(r) if !r.addresses.is_empty() => r.addresses.clone(),
        _ => vec![ipam?.pinned?],
    };
    let has_family = |v4: bool| addresses.iter().any(|a| matches!(a, IpNet::V4(_)) == v4);
    let mut routes = match request.and_then(|r| r.routes.clone()) {
        Some(routes) => routes,
        // As the CNI plugin would route the pod: `gw`, else the IPAM gateway of the family.
        None => ipam
            .map(|ipam| {
                ipam.routes
                    .iter()
                    .filter(|r| has_family(matches!(r.dst, IpNet::V4(_))))
                    .map(|r| GuestRoute {
                        to: r.dst,
                        via: r.gw.or_else(|| ipam.gateway_for(&r.dst)),
                        metric: None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    if let Some(gw) = request.and_then(|r| r.gateway) {
        let to = default_route(gw.is_ipv4());
        if !routes.iter().any(|r| r.to == to) {
            routes.push(GuestRoute {
                to,
                via: Some(gw),
                metric: None,
            });
        }
    }
    Some(StaticConfig {
        addresses,
        routes,
        nameservers: request
            .and_then(|r| r.dns.clone())
            .or_else(|| ipam.map(|i| i.nameservers.clone()))
            .unwrap_or_default(),
        search: request
            .and_then(|r| r.search.clone())
            .or_else(|| ipam.map(|i| i.search.clone()))
            .unwrap_or_default(),
        mtu: request.and_then(|r| r.mtu),
    })
}

/// Whether `addr` names a host in its own prefix (not the network or IPv4 broadcast address).
fn is_host_address(addr: &IpNet) -> bool {
    match addr {
        IpNet::V4(n) if n.prefix_len() <= 30 => {
            n.addr() != n.network() && n.addr() != n.broadcast()
        }
        IpNet::V6(n) if n.prefix_len() <= 126 => n.addr() != n.network(),
        _ => true,
    }
}

pub(super) fn check(ctx: &Ctx<'_>, verdict: &mut Findings<'_>) {
    if let Err(e) = NetworkDataMode::parse(ctx.vm.annotation(annotations::NETWORK_DATA)) {
        verdict.deny(
            Rule::InvalidAnnotation,
            format!("annotation {}", annotations::NETWORK_DATA),
            e.to_string(),
        );
    }
    let none = BTreeMap::new();
    let requests = match annotation_requests(ctx) {
        Ok(r) => r,
        Err(e) => {
            verdict.deny(
                Rule::InvalidAnnotation,
                format!("annotation {}", annotations::NETWORKS),
                e.to_string(),
            );
            &none
        }
    };
    let at = |net: &str| format!("annotation {}, network {net:?}", annotations::NETWORKS);
    let networks = ByName::new(ctx.vm.networks().iter().map(|n| (n.name.as_ref(), n)));
    // Named once, however many keys name no network: a message must not grow with the
    // product of two lists.
    let unknown: Vec<String> = requests
        .keys()
        .filter(|k| !networks.contains(k))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        let known = ctx.vm.networks();
        let known = if known.is_empty() {
            "none".to_string()
        } else {
            known
                .iter()
                .take(20)
                .map(|n| n.name.as_ref())
                .collect::<Vec<_>>()
                .join(", ")
                + if known.len() > 20 { ", ..." } else { "" }
        };
        verdict.deny_each(Rule::UnknownNetwork, unknown, |unknown| {
            let (at, what) = match unknown {
                [one] => (at(one), "of that name".to_string()),
                many => (
                    format!("annotation {}", annotations::NETWORKS),
                    format!("named {}", list(many.iter())),
                ),
            };
            format!(
                "{at}: the VM has no network {what} (its networks: {known}); use the names in {}",
                ctx.vm.networks_field()
            )
        });
    }
    for name in requests.keys() {
        match networks.get(name) {
            None => {}
            // The pod network uses DHCP anyway.
            Some(n) if n.multus.is_none() && !requests[name].dhcp => verdict.deny(
                Rule::PodNetworkAddress,
                format!("network {name:?}"),
                format!(
                    "{}: addresses can only be requested for Multus networks; the pod network's address comes from the cluster",
                    at(name)
                ),
            ),
            Some(_) => {}
        }
    }
    let mut mine = HashMap::new();
    for net in ctx.vm.networks() {
        let Some(r) = net.nad_ref(ctx.namespace) else {
            continue;
        };
        let Access::Allowed(nad) = tenancy::access(ctx, r) else {
            continue; // denied by the tenant boundary; nothing of the NAD may show
        };
        let request = requests.get(net.name.as_ref());
        let Some(config) = resolve(request, nad) else {
            continue;
        };
        let from_annotation = request.is_some_and(|r| !r.addresses.is_empty());
        check_network(
            ctx,
            verdict,
            net,
            nad,
            request,
            &config,
            from_annotation,
            &mut mine,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn check_network<'n>(
    ctx: &Ctx<'_>,
    verdict: &mut Findings<'_>,
    net: &'n Network,
    nad: Option<&Nad>,
    request: Option<&AddressRequest>,
    config: &StaticConfig,
    from_annotation: bool,
    mine: &mut HashMap<IpAddr, &'n str>,
) {
    let Some(nad_ref) = net.nad_ref(ctx.namespace) else {
        return;
    };
    // Formatted only for a message: most addresses are fine.
    let at = || {
        if from_annotation {
            format!(
                "annotation {}, network {:?}",
                annotations::NETWORKS,
                net.name
            )
        } else {
            format!(
                "network {:?} (address pinned by NetworkAttachmentDefinition {nad_ref})",
                net.name
            )
        }
    };
    let subnets_of = |v4: bool| -> Vec<IpNet> {
        nad.map(|n| n.ipam.subnet_of_family(v4).copied().collect())
            .unwrap_or_default()
    };
    for addr in &config.addresses {
        let ip = addr.addr();
        if !is_host_address(addr) {
            verdict.deny(Rule::NotAHostAddress, format!("network {:?} address {addr}", net.name), format!(
                "{}: {addr} is the network or broadcast address of its subnet, not a host address; pick a host address such as {}",
                at(),
                addr.hosts().next().map_or("another".to_string(), |h| h.to_string())
            ));
        }
        let subnets = subnets_of(ip.is_ipv4());
        if from_annotation && !subnets.is_empty() {
            match subnets.iter().find(|s| s.contains(&ip)) {
                None => verdict.deny(Rule::AddressOutsideSubnet, format!("network {:?} address {addr}", net.name), format!(
                    "{}: {addr} is outside the subnet of NetworkAttachmentDefinition {nad_ref} ({}); request an address inside it",
                    at(),
                    subnets.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                )),
                Some(s) if s.prefix_len() != addr.prefix_len() => verdict.warnings.push(format!(
                    "{}: {addr} has prefix length /{} but NetworkAttachmentDefinition {nad_ref} uses {s}",
                    at(),
                    addr.prefix_len()
                )),
                Some(_) => {}
            }
        }
        if let Some(other) = mine.get(&ip) {
            verdict.deny(Rule::DuplicateAddress, format!("network {:?} address {ip}", net.name), format!(
                "{}: {ip} is also requested for network {other:?} of this VM; every NIC needs its own address",
                at()
            ));
        } else {
            mine.insert(ip, &net.name);
        }
        if ctx.vm.kind.is_shared_template() {
            continue; // no identity to conflict with; the template rule denies the address
        }
        let me = ctx.me();
        // A VM on a NAD that pins this address, and requests no other, takes it too.
        let pinned_here = nad
            .and_then(|n| n.ipam.pinned)
            .is_some_and(|p| p.addr() == ip);
        let other = with_key(nad_ref.namespace, nad_ref.name, |key| {
            ctx.inventory.address_user(key, ip, me).or_else(|| {
                if pinned_here {
                    ctx.inventory.pinned_user(key, me)
                } else {
                    None
                }
            })
        });
        if let Some(other) = other {
            verdict.deny(Rule::AddressConflict, format!("network {:?} address {ip} on NAD {nad_ref}", net.name), format!(
                "{}: {ip} is already requested by {} on NetworkAttachmentDefinition {nad_ref}; two guests with one address break both. Request a free address{}",
                at(),
                ctx.describe_other(other),
                if from_annotation { "" } else { " through the annotation, or give this VM its own NAD" }
            ));
        }
    }
    if let Some(gw) = request.and_then(|r| r.gateway) {
        let subnets = subnets_of(gw.is_ipv4());
        let (inside, scope) = if subnets.is_empty() {
            let own: Vec<IpNet> = config.addresses.iter().map(IpNet::trunc).collect();
            (
                own.iter().any(|s| s.contains(&gw)),
                "the subnets of the requested addresses",
            )
        } else {
            (
                subnets.iter().any(|s| s.contains(&gw)),
                "the NetworkAttachmentDefinition's subnet",
            )
        };
        if !inside {
            verdict.deny(Rule::GatewayOutsideSubnet, format!("network {:?} gateway {gw}", net.name), format!(
                "{}: gateway {gw} is outside {scope}, so the guest cannot reach it; use a gateway inside {}",
                at(),
                if subnets.is_empty() {
                    config.addresses.iter().map(|a| a.trunc().to_string()).collect::<Vec<_>>().join(", ")
                } else {
                    subnets.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                }
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_addresses() {
        for (a, host) in [
            ("10.0.0.0/24", false),
            ("10.0.0.255/24", false),
            ("10.0.0.1/24", true),
            ("10.0.0.0/31", true),
            ("10.0.0.7/32", true),
            ("fd00::/64", false),
            ("fd00::1/64", true),
        ] {
            assert_eq!(is_host_address(&a.parse().unwrap()), host, "{a}");
        }
    }

    #[test]
    fn nad_routes_use_the_family_gateway_and_annotation_gateway_adds_a_default() {
        let nad = Nad::from_config(
            "d",
            "n",
            r#"{"type":"bridge","ipam":{"type":"host-local","ranges":[[{"subnet":"192.168.1.0/24","rangeStart":"192.168.1.200","rangeEnd":"192.168.1.200","gateway":"192.168.1.1"}]],"routes":[{"dst":"0.0.0.0/0"},{"dst":"10.0.0.0/8","gw":"192.168.1.254"},{"dst":"fd00::/8"}],"dns":{"nameservers":["192.168.1.1"]}}}"#,
        );
        let c = resolve(None, Some(&nad)).unwrap();
        assert_eq!(
            c.addresses,
            vec!["192.168.1.200/24".parse::<IpNet>().unwrap()]
        );
        let routes: Vec<String> = c
            .routes
            .iter()
            .map(|r| format!("{} {:?}", r.to, r.via))
            .collect();
        assert_eq!(
            routes,
            [
                "0.0.0.0/0 Some(192.168.1.1)",
                "10.0.0.0/8 Some(192.168.1.254)"
            ],
            "the IPv6 route has no IPv6 address to use"
        );
        assert_eq!(
            c.nameservers,
            vec!["192.168.1.1".parse::<IpAddr>().unwrap()]
        );

        let no_routes = Nad::from_config(
            "d",
            "n",
            r#"{"type":"bridge","ipam":{"type":"static","addresses":[{"address":"10.1.0.5/24","gateway":"10.1.0.1"}]}}"#,
        );
        let c = resolve(None, Some(&no_routes)).unwrap();
        assert!(
            c.routes.is_empty(),
            "an IPAM gateway alone gives no default route, as in the pod"
        );

        let req = annotations::parse_networks(
            r#"{"x": {"addresses": ["10.1.0.9/24"], "gateway": "10.1.0.1"}}"#,
        )
        .unwrap();
        let c = resolve(req.get("x"), Some(&no_routes)).unwrap();
        assert_eq!(c.addresses, vec!["10.1.0.9/24".parse::<IpNet>().unwrap()]);
        assert_eq!(
            c.routes,
            vec![GuestRoute {
                to: "0.0.0.0/0".parse().unwrap(),
                via: Some("10.1.0.1".parse().unwrap()),
                metric: None
            }]
        );
    }

    #[test]
    fn no_request_and_no_pin_means_dhcp() {
        let nad = Nad::from_config(
            "d",
            "n",
            r#"{"type":"bridge","ipam":{"type":"host-local","subnet":"10.0.0.0/24"}}"#,
        );
        assert_eq!(resolve(None, Some(&nad)), None);
        assert_eq!(resolve(None, None), None);
    }
}
