//! NetworkAttachmentDefinitions as the engine needs them: the main CNI plugin type and what
//! its IPAM would configure in the pod (SPEC §2.2, §2.5).
use std::{collections::BTreeMap, fmt, net::IpAddr};

use ipnet::IpNet;
use kube::core::DynamicObject;
use serde::Deserialize;
use serde_json::Value;

use super::pool::{self, Pool};
use super::text::parse_net;

/// Why a NAD object or its CNI config cannot be read. The texts are shown to users.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object has no `metadata.name`.
    #[error("metadata.name is missing")]
    NoName,
    /// `spec.config` is not a string.
    #[error("spec.config must be a string")]
    ConfigNotString,
    /// `spec.config` is not JSON.
    #[error("spec.config is not JSON: {0}")]
    NotJson(serde_json::Error),
    /// A conflist without plugins.
    #[error("spec.config has an empty plugins list")]
    EmptyPlugins,
    /// `plugins` is not a list.
    #[error("spec.config plugins must be a list")]
    PluginsNotList,
    /// The main plugin is not an object with a string `type`.
    #[error("spec.config main plugin: {0}")]
    MainPlugin(serde_json::Error),
    /// The IPAM section has the wrong shape.
    #[error("IPAM: {0}")]
    Ipam(serde_json::Error),
    /// An IPAM field that must be an IP address is not one.
    #[error("IPAM {what} {value:?} is not an IP address")]
    NotAnIp { what: &'static str, value: String },
    /// An IPAM field that must be a CIDR is not one.
    #[error("IPAM {what} {value:?} is not a CIDR")]
    NotACidr { what: &'static str, value: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A NAD as a VM network references it (`multus.networkName`): `name` in the VM's namespace,
/// or `namespace/name`. The one place that resolves such a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NadRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

impl<'a> NadRef<'a> {
    /// Resolves `reference` for a VM in `vm_namespace`.
    pub fn resolve(reference: &'a str, vm_namespace: &'a str) -> Self {
        // A byte scan: `split_once('/')` sets up a searcher, and every rule resolves references.
        match reference.bytes().position(|b| b == b'/') {
            Some(at) => Self {
                namespace: &reference[..at],
                name: &reference[at + 1..],
            },
            None => Self {
                namespace: vm_namespace,
                name: reference,
            },
        }
    }
}

impl fmt::Display for NadRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A NAD reduced to what the checks read. Parsing never fails: a config that cannot be read
/// is kept with its error, so that the webhook can say so instead of guessing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Nad {
    pub namespace: String,
    pub name: String,
    /// `type` of the config, or of the first plugin of a conflist; `None` for an empty config.
    pub main_type: Option<String>,
    pub ipam: Ipam,
    /// Why `spec.config` could not be read, if it could not.
    pub config_error: Option<String>,
    /// The NAD's annotations the webhook reads (`kubevirt-net-webhook.io/...`).
    pub annotations: BTreeMap<String, String>,
}

/// What the main plugin's IPAM would give the pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ipam {
    /// Subnets addresses come from (host-local ranges/subnet, static addresses, whereabouts).
    pub subnets: Vec<IpNet>,
    /// The one address the IPAM can hand out, when it pins exactly one.
    pub pinned: Option<IpNet>,
    /// The gateway of each family, as the plugin reports it in its result.
    pub gateways: Vec<IpAddr>,
    pub routes: Vec<Route>,
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
}

/// A CNI IPAM route (`{"dst": ..., "gw": ...}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
}

impl Ipam {
    /// The gateway the plugin uses for a route without `gw` to `dst`.
    pub fn gateway_for(&self, dst: &IpNet) -> Option<IpAddr> {
        self.gateways
            .iter()
            .copied()
            .find(|g| g.is_ipv4() == matches!(dst, IpNet::V4(_)))
    }

    /// The known subnets of one address family.
    pub fn subnet_of_family(&self, v4: bool) -> impl Iterator<Item = &IpNet> {
        self.subnets
            .iter()
            .filter(move |s| matches!(s, IpNet::V4(_)) == v4)
    }
}

impl Nad {
    /// The NAD's address pool (SPEC §2.10), if it declares one: annotation
    /// `kubevirt-net-webhook.io/address-pool`, checked against the IPAM's subnets.
    pub fn address_pool(&self) -> Option<Result<Pool, pool::Error>> {
        let text = self
            .annotations
            .get(crate::model::annotations::ADDRESS_POOL)?;
        Some(Pool::parse(text, &self.ipam.subnets))
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Reads a NAD object.
    pub fn from_object(obj: &DynamicObject) -> Result<Self> {
        let name = obj.metadata.name.as_deref().ok_or(Error::NoName)?;
        let namespace = crate::model::kinds::namespace(None, obj.metadata.namespace.as_deref());
        let config = match obj.data.pointer("/spec/config") {
            None | Some(Value::Null) => "",
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(Error::ConfigNotString),
        };
        let mut nad = Self::from_config(namespace, name, config);
        nad.annotations = obj
            .metadata
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| k.starts_with(crate::model::annotations::PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(nad)
    }

    /// Builds a NAD from its CNI config text.
    pub fn from_config(namespace: &str, name: &str, config: &str) -> Self {
        let mut nad = Nad {
            namespace: namespace.into(),
            name: name.into(),
            ..Default::default()
        };
        if config.trim().is_empty() {
            return nad;
        }
        match parse_config(config) {
            Ok((main_type, ipam)) => {
                nad.main_type = main_type;
                nad.ipam = ipam;
            }
            Err(e) => nad.config_error = Some(e.to_string()),
        }
        nad
    }
}

#[derive(Deserialize)]
struct Plugin {
    #[serde(rename = "type")]
    kind: Option<String>,
    ipam: Option<Value>,
}

fn parse_config(config: &str) -> Result<(Option<String>, Ipam)> {
    let value: Value = serde_json::from_str(config).map_err(Error::NotJson)?;
    // A conflist's first plugin is the one that creates the interface.
    let main = match value.get("plugins") {
        Some(Value::Array(plugins)) => plugins.first().cloned().ok_or(Error::EmptyPlugins)?,
        Some(_) => return Err(Error::PluginsNotList),
        None => value,
    };
    let plugin: Plugin = serde_json::from_value(main).map_err(Error::MainPlugin)?;
    let ipam = match plugin.ipam {
        Some(v) if v.is_object() => parse_ipam(&v)?,
        _ => Ipam::default(),
    };
    Ok((plugin.kind, ipam))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawIpam {
    #[serde(rename = "type")]
    kind: String,
    ranges: Vec<Vec<RawRange>>,
    #[serde(flatten)]
    legacy: RawRange,
    addresses: Vec<RawStatic>,
    routes: Vec<RawRoute>,
    dns: RawDns,
    /// whereabouts
    range: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
struct RawRange {
    subnet: Option<String>,
    range_start: Option<String>,
    range_end: Option<String>,
    gateway: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawStatic {
    address: String,
    gateway: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawRoute {
    dst: String,
    gw: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawDns {
    nameservers: Vec<String>,
    search: Vec<String>,
}

fn ip(s: &str, what: &'static str) -> Result<IpAddr> {
    s.trim().parse().map_err(|_| Error::NotAnIp {
        what,
        value: s.to_string(),
    })
}

fn net(s: &str, what: &'static str) -> Result<IpNet> {
    s.trim().parse().map_err(|_| Error::NotACidr {
        what,
        value: s.to_string(),
    })
}

fn parse_ipam(v: &Value) -> Result<Ipam> {
    let raw = RawIpam::deserialize(v).map_err(Error::Ipam)?;
    let mut ipam = Ipam::default();
    match raw.kind.as_str() {
        "host-local" => {
            let mut ranges: Vec<RawRange> = raw.ranges.iter().flatten().cloned().collect();
            if ranges.is_empty() && raw.legacy.subnet.is_some() {
                ranges.push(raw.legacy.clone());
            }
            for r in &ranges {
                let Some(subnet) = &r.subnet else { continue };
                let subnet = net(subnet, "subnet")?.trunc();
                ipam.subnets.push(subnet);
                // host-local defaults the gateway to the subnet's first address.
                let gw = match &r.gateway {
                    Some(g) => ip(g, "gateway")?,
                    None => first_host(&subnet),
                };
                if !ipam.gateways.iter().any(|g| g.is_ipv4() == gw.is_ipv4()) {
                    ipam.gateways.push(gw);
                }
            }
            if let [only] = ranges.as_slice()
                && let (Some(start), Some(end), Some(subnet)) =
                    (&only.range_start, &only.range_end, &only.subnet)
            {
                let (start, end) = (ip(start, "rangeStart")?, ip(end, "rangeEnd")?);
                if start == end {
                    let prefix = net(subnet, "subnet")?.prefix_len();
                    ipam.pinned = IpNet::new(start, prefix).ok();
                }
            }
        }
        "static" => {
            for a in &raw.addresses {
                let addr = net(&a.address, "address")?;
                ipam.subnets.push(addr.trunc());
                if let Some(g) = &a.gateway {
                    let gw = ip(g, "gateway")?;
                    if !ipam.gateways.iter().any(|x| x.is_ipv4() == gw.is_ipv4()) {
                        ipam.gateways.push(gw);
                    }
                }
            }
            if let [only] = raw.addresses.as_slice() {
                ipam.pinned = Some(net(&only.address, "address")?);
            }
        }
        "whereabouts" => {
            if let Some(range) = &raw.range {
                // whereabouts also accepts "start-end/prefix"; only the CIDR form names a subnet.
                if let Some(n) = parse_net(range) {
                    ipam.subnets.push(n.trunc());
                }
            }
        }
        _ => {}
    }
    for r in &raw.routes {
        ipam.routes.push(Route {
            dst: net(&r.dst, "route dst")?.trunc(),
            gw: r.gw.as_deref().map(|g| ip(g, "route gw")).transpose()?,
        });
    }
    ipam.nameservers = raw
        .dns
        .nameservers
        .iter()
        .map(|s| ip(s, "nameserver"))
        .collect::<Result<_, _>>()?;
    ipam.search = raw.dns.search;
    Ok(ipam)
}

fn first_host(subnet: &IpNet) -> IpAddr {
    match subnet {
        IpNet::V4(n) => IpAddr::V4((u32::from(n.network()).wrapping_add(1)).into()),
        IpNet::V6(n) => IpAddr::V6((u128::from(n.network()).wrapping_add(1)).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_main_plugin_is_the_first() {
        let nad = Nad::from_config(
            "default",
            "ext",
            r#"{"cniVersion":"0.3.1","plugins":[{"type":"macvlan","master":"ens160","ipam":{"type":"host-local","ranges":[[{"subnet":"192.168.1.0/24","rangeStart":"192.168.1.200","rangeEnd":"192.168.1.200"}]]}},{"type":"tuning"}]}"#,
        );
        assert_eq!(nad.main_type.as_deref(), Some("macvlan"));
        assert_eq!(nad.ipam.pinned, Some("192.168.1.200/24".parse().unwrap()));
        // Default host-local gateway: the subnet's first address.
        assert_eq!(
            nad.ipam.gateways,
            vec!["192.168.1.1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn empty_config_has_no_type() {
        let nad = Nad::from_config("a", "b", "");
        assert_eq!(nad.main_type, None);
        assert_eq!(nad.config_error, None);
    }

    #[test]
    fn broken_config_is_kept_with_its_error() {
        let nad = Nad::from_config("a", "b", "{not json");
        assert!(nad.config_error.unwrap().contains("not JSON"));
        let nad = Nad::from_config(
            "a",
            "b",
            r#"{"type":"bridge","ipam":{"type":"static","addresses":[{"address":"bogus"}]}}"#,
        );
        assert!(nad.config_error.unwrap().contains("bogus"));
    }

    #[test]
    fn host_local_range_not_pinned_when_wider() {
        let nad = Nad::from_config(
            "a",
            "b",
            r#"{"type":"bridge","ipam":{"type":"host-local","ranges":[[{"subnet":"10.0.0.0/24","rangeStart":"10.0.0.10","rangeEnd":"10.0.0.20","gateway":"10.0.0.254"}]]}}"#,
        );
        assert_eq!(nad.ipam.pinned, None);
        assert_eq!(
            nad.ipam.gateways,
            vec!["10.0.0.254".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            nad.ipam.subnets,
            vec!["10.0.0.0/24".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn legacy_host_local_and_two_ranges() {
        let legacy = Nad::from_config(
            "a",
            "b",
            r#"{"type":"ptp","ipam":{"type":"host-local","subnet":"10.1.1.0/24"}}"#,
        );
        assert_eq!(
            legacy.ipam.subnets,
            vec!["10.1.1.0/24".parse::<IpNet>().unwrap()]
        );
        assert_eq!(legacy.ipam.pinned, None);
        let legacy_pinned = Nad::from_config(
            "a",
            "b",
            r#"{"type":"bridge","ipam":{"type":"host-local","subnet":"10.1.1.0/24","rangeStart":"10.1.1.5","rangeEnd":"10.1.1.5"}}"#,
        );
        assert_eq!(
            legacy_pinned.ipam.pinned,
            Some("10.1.1.5/24".parse().unwrap())
        );
        let two = Nad::from_config(
            "a",
            "b",
            r#"{"type":"bridge","ipam":{"type":"host-local","ranges":[[{"subnet":"10.0.0.0/24","rangeStart":"10.0.0.5","rangeEnd":"10.0.0.5"}],[{"subnet":"fd00::/64","rangeStart":"fd00::5","rangeEnd":"fd00::5"}]]}}"#,
        );
        assert_eq!(two.ipam.pinned, None, "only a single range pins an address");
        assert_eq!(two.ipam.gateways.len(), 2);
    }

    #[test]
    fn static_ipam() {
        let nad = Nad::from_config(
            "a",
            "b",
            r#"{"type":"bridge","ipam":{"type":"static","addresses":[{"address":"10.10.0.5/24","gateway":"10.10.0.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.10.0.1"],"search":["lab"]}}}"#,
        );
        assert_eq!(nad.ipam.pinned, Some("10.10.0.5/24".parse().unwrap()));
        assert_eq!(
            nad.ipam.gateway_for(&"0.0.0.0/0".parse().unwrap()),
            Some("10.10.0.1".parse().unwrap())
        );
        assert_eq!(nad.ipam.gateway_for(&"::/0".parse().unwrap()), None);
        assert_eq!(nad.ipam.search, vec!["lab"]);
    }

    #[test]
    fn nad_object() {
        let obj = serde_json::from_value(serde_json::json!({"metadata": {"name": "n", "namespace": "x", "annotations": {"kubevirt-net-webhook.io/shared-with": "*", "other": "x"}}, "spec": {"config": "{\"type\":\"sriov\"}"}})).unwrap();
        let nad = Nad::from_object(&obj).unwrap();
        assert_eq!(
            nad.annotations.len(),
            1,
            "only the webhook's annotations are kept"
        );
        assert_eq!(
            (nad.key(), nad.main_type.as_deref()),
            ("x/n".to_string(), Some("sriov"))
        );
        let bad = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "n"}, "spec": {"config": 5}}),
        )
        .unwrap();
        assert!(Nad::from_object(&bad).is_err());
    }

    #[test]
    fn the_pool_is_read_from_the_annotation_within_the_subnet() {
        let mut nad = Nad::from_config(
            "a",
            "b",
            r#"{"type":"bridge","ipam":{"type":"host-local","subnet":"10.1.1.0/24"}}"#,
        );
        assert_eq!(nad.address_pool(), None);
        nad.annotations.insert(
            crate::model::annotations::ADDRESS_POOL.into(),
            "10.1.1.10-10.1.1.19".into(),
        );
        let pool = nad.address_pool().unwrap().unwrap();
        assert_eq!(pool.v4.unwrap().size(), 10);
        nad.annotations.insert(
            crate::model::annotations::ADDRESS_POOL.into(),
            "10.1.2.0/24".into(),
        );
        assert!(nad.address_pool().unwrap().is_err());
    }

    #[test]
    fn references_resolve_in_the_vm_namespace() {
        let r = NadRef::resolve("infra/storage", "blue");
        assert_eq!((r.namespace, r.name), ("infra", "storage"));
        assert_eq!(
            NadRef::resolve("storage", "blue").to_string(),
            "blue/storage"
        );
    }
}
