//! The annotations the webhook reads (SPEC §2.1, §2.4, §2.5, §2.6, §2.10) and their parsers.
use std::{borrow::Cow, collections::BTreeMap, net::IpAddr};

use super::text::parse_net;
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

/// Every annotation (and label) of the webhook starts with this.
pub const PREFIX: &str = "kubevirt-net-webhook.io/";
/// Requested guest addresses per VM network (SPEC §2.5).
pub const NETWORKS: &str = "kubevirt-net-webhook.io/networks";
/// When to write cloud-init network config: `auto`, `always`, `never` (SPEC §2.4).
pub const NETWORK_DATA: &str = "kubevirt-net-webhook.io/network-data";
/// `"false"` skips mutation; validation still applies (SPEC §2.6).
pub const MUTATE: &str = "kubevirt-net-webhook.io/mutate";
/// Namespace label: both webhooks skip the namespace (SPEC §2.6; used by `deploy/`).
pub const IGNORE: &str = "kubevirt-net-webhook.io/ignore";
/// NAD annotation: namespaces (comma-separated, `*` for all) that may use the NAD (SPEC §2.7).
pub const SHARED_WITH: &str = "kubevirt-net-webhook.io/shared-with";
/// NAD annotation: the address pool of the NAD (SPEC §2.10).
pub const ADDRESS_POOL: &str = "kubevirt-net-webhook.io/address-pool";
/// On a VM with a ConfigDrive volume: `NAMESPACE/NAME sha256:DIGEST` of the
/// `network_data.json` the webhook wrote (JSON has no room for a marker, SPEC §2.9).
pub const MANAGED_NETWORK_DATA: &str = "kubevirt-net-webhook.io/managed-network-data";
/// Multus' own pod annotation, which KubeVirt writes on the launcher pod itself.
pub const MULTUS_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

/// Why an annotation cannot be read. The texts are shown to users as denials.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The networks annotation is not JSON.
    #[error("annotation {NETWORKS} is not valid JSON: {0}")]
    NotJson(serde_json::Error),
    /// The networks annotation is JSON, but not an object.
    #[error(
        "annotation {NETWORKS} must be a JSON object keyed by VM network name, like {{\"external\": \"192.168.1.200/24\"}}"
    )]
    NotAnObject,
    /// One network's entry of the networks annotation is wrong.
    #[error("annotation {NETWORKS}, network {network:?}: {problem}")]
    Network { network: String, problem: Problem },
    /// The network-data annotation has an unknown mode.
    #[error("annotation {NETWORK_DATA}: {0:?} is not one of auto, always, never")]
    NetworkDataMode(String),
}

/// What is wrong with one network's entry of the networks annotation.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// Neither a string nor an object.
    #[error("must be an address in CIDR notation, \"dhcp\", or an object with \"addresses\"")]
    WrongType,
    /// A field of the object form is unknown or has the wrong type.
    #[error("{path}: {message}")]
    Field { path: String, message: String },
    /// An address without a prefix length.
    #[error("address {0:?} needs a prefix length, like \"{0}/24\"")]
    NoPrefix(String),
    /// An address that is not in CIDR notation.
    #[error("address {0:?} is not in CIDR notation (like 192.168.1.200/24), nor \"dhcp\"")]
    NotCidr(String),
    /// A gateway, DNS server or route `via` that is not an IP address.
    #[error("{what} {value:?} is not an IP address")]
    NotAnIp { what: &'static str, value: String },
    /// A route destination that is not a CIDR.
    #[error("route to {0:?} must be a CIDR (write 0.0.0.0/0 or ::/0 for a default route)")]
    RouteTo(String),
    /// An MTU out of range.
    #[error("mtu {0} is outside 68..65535")]
    Mtu(u32),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The `network-data` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkDataMode {
    Auto,
    Always,
    Never,
}

impl NetworkDataMode {
    pub fn parse(value: Option<&str>) -> Result<Self> {
        match value.map(str::trim) {
            None | Some("auto") | Some("") => Ok(Self::Auto),
            Some("always") => Ok(Self::Always),
            Some("never") => Ok(Self::Never),
            Some(other) => Err(Error::NetworkDataMode(other.to_string())),
        }
    }
}

/// The value that asks for no static address, and none from a pool (SPEC §2.10).
pub const DHCP: &str = "dhcp";

/// What the annotation asks for one network.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AddressRequest {
    /// `"dhcp"`: no address, no pool address; the guest NIC uses DHCP.
    pub dhcp: bool,
    pub addresses: Vec<IpNet>,
    pub gateway: Option<IpAddr>,
    pub dns: Option<Vec<IpAddr>>,
    pub search: Option<Vec<String>>,
    pub routes: Option<Vec<GuestRoute>>,
    pub mtu: Option<u16>,
}

/// A route in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestRoute {
    pub to: IpNet,
    pub via: Option<IpAddr>,
    pub metric: Option<u32>,
}

/// A string of the annotation, borrowed from its text where it has no escapes (serde
/// borrows a `Cow` field, but copies a bare `Cow` in a list or an `Option`).
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest<'a> {
    #[serde(default, borrow)]
    addresses: Vec<Text<'a>>,
    #[serde(borrow)]
    gateway: Option<Text<'a>>,
    #[serde(borrow)]
    dns: Option<Vec<Text<'a>>>,
    search: Option<Vec<String>>,
    #[serde(borrow)]
    routes: Option<Vec<RawRoute<'a>>>,
    mtu: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute<'a> {
    #[serde(borrow)]
    to: Text<'a>,
    #[serde(borrow)]
    via: Option<Text<'a>>,
    metric: Option<u32>,
}

/// Parses the `kubevirt-net-webhook.io/networks` annotation.
pub fn parse_networks(text: &str) -> Result<BTreeMap<String, AddressRequest>> {
    // Straight from the text first (every request). What that cannot read (bad JSON, a wrong
    // type, a duplicate field) is read again through a JSON tree, whose errors name the
    // problem; both read networks in the same (sorted) order and keep the last of a repeated
    // network.
    if let Ok(entries) = serde_json::from_str::<BTreeMap<String, Entry>>(text) {
        // Inserted one by one: collecting sorts a list of all entries first, and these are
        // sorted already.
        let mut out = BTreeMap::new();
        for (network, entry) in entries {
            match entry.into_request() {
                Ok(request) => out.insert(network, request),
                Err(problem) => return Err(Error::Network { network, problem }),
            };
        }
        return Ok(out);
    }
    parse_via_tree(text)
}

/// The annotation read through a JSON tree: slower, but every error names its problem.
fn parse_via_tree(text: &str) -> Result<BTreeMap<String, AddressRequest>> {
    let value: Value = serde_json::from_str(text).map_err(Error::NotJson)?;
    let Value::Object(map) = value else {
        return Err(Error::NotAnObject);
    };
    let mut out = BTreeMap::new();
    for (network, v) in map {
        match parse_request(v) {
            Ok(request) => out.insert(network, request),
            Err(problem) => return Err(Error::Network { network, problem }),
        };
    }
    Ok(out)
}

/// One network's entry as the text holds it: a string or an object.
enum Entry<'a> {
    Text(Cow<'a, str>),
    Object(RawRequest<'a>),
}

impl<'de> Deserialize<'de> for Entry<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Entry<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an object")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                s: &'de str,
            ) -> std::result::Result<Entry<'de>, E> {
                Ok(Entry::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<Entry<'de>, E> {
                Ok(Entry::Text(Cow::Owned(s.to_string())))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<Entry<'de>, A::Error> {
                RawRequest::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Entry::Object)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Entry<'_> {
    fn into_request(self) -> Result<AddressRequest, Problem> {
        match self {
            Entry::Text(s) => text_request(&s),
            Entry::Object(raw) => request_from_raw(raw),
        }
    }
}

/// `"dhcp"` or a single address.
fn text_request(s: &str) -> Result<AddressRequest, Problem> {
    if s.trim() == DHCP {
        return Ok(AddressRequest {
            dhcp: true,
            ..Default::default()
        });
    }
    Ok(AddressRequest {
        addresses: vec![cidr(s)?],
        ..Default::default()
    })
}

fn parse_request(v: Value) -> Result<AddressRequest, Problem> {
    match v {
        Value::String(s) => text_request(&s),
        Value::Object(_) => {
            // The plain decoder first (every request); the path-tracking one only to name
            // the field of an error.
            let raw = match RawRequest::deserialize(&v) {
                Ok(raw) => raw,
                Err(_) => serde_path_to_error::deserialize(&v).map_err(|e| Problem::Field {
                    path: e.path().to_string(),
                    message: e.inner().to_string(),
                })?,
            };
            request_from_raw(raw)
        }
        _ => Err(Problem::WrongType),
    }
}

fn ip(s: &str, what: &'static str) -> Result<IpAddr, Problem> {
    s.trim().parse().map_err(|_| Problem::NotAnIp {
        what,
        value: s.to_string(),
    })
}

fn request_from_raw(raw: RawRequest<'_>) -> Result<AddressRequest, Problem> {
    let mtu = raw
        .mtu
        .map(|m| {
            u16::try_from(m)
                .ok()
                .filter(|m| *m >= 68)
                .ok_or(Problem::Mtu(m))
        })
        .transpose()?;
    Ok(AddressRequest {
        dhcp: false,
        addresses: raw
            .addresses
            .iter()
            .map(|s| cidr(s))
            .collect::<Result<_, _>>()?,
        gateway: raw
            .gateway
            .as_deref()
            .map(|g| ip(g, "gateway"))
            .transpose()?,
        dns: raw
            .dns
            .map(|d| d.iter().map(|s| ip(s, "dns server")).collect())
            .transpose()?,
        search: raw.search,
        routes: raw
            .routes
            .map(|routes| {
                routes
                    .iter()
                    .map(|r| {
                        let to = parse_net(r.to.trim())
                            .ok_or_else(|| Problem::RouteTo(r.to.to_string()))?;
                        Ok(GuestRoute {
                            to: to.trunc(),
                            via: r.via.as_deref().map(|v| ip(v, "route via")).transpose()?,
                            metric: r.metric,
                        })
                    })
                    .collect::<Result<Vec<_>, Problem>>()
            })
            .transpose()?,
        mtu,
    })
}

fn cidr(s: &str) -> Result<IpNet, Problem> {
    parse_net(s.trim()).ok_or_else(|| {
        if s.trim().parse::<IpAddr>().is_ok() {
            Problem::NoPrefix(s.to_string())
        } else {
            Problem::NotCidr(s.to_string())
        }
    })
}

/// One entry of a `k8s.v1.cni.cncf.io/networks` annotation: `(namespace, name)`.
pub type MultusEntry = (Option<String>, String);

/// Parses Multus' networks annotation, in either its comma-separated or its JSON form.
pub fn parse_multus_networks(text: &str) -> Option<Vec<MultusEntry>> {
    let text = text.trim();
    if text.starts_with('[') {
        #[derive(Deserialize)]
        struct Entry {
            name: String,
            namespace: Option<String>,
        }
        let entries: Vec<Entry> = serde_json::from_str(text).ok()?;
        return Some(entries.into_iter().map(|e| (e.namespace, e.name)).collect());
    }
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| {
            // `namespace/name@interface`
            let entry = entry.split('@').next()?;
            Some(match entry.split_once('/') {
                Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
                None => (None, entry.to_string()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reading straight from the text and reading through a tree give the same requests and
    /// the same errors, for every form and every kind of mistake.
    #[test]
    fn both_readings_agree() {
        let texts = [
            r#"{}"#,
            r#"{"a": "10.0.0.5/24"}"#,
            r#"{"a": " dhcp "}"#,
            r#"{"a": "10.0.0.5"}"#,
            r#"{"a": "nonsense"}"#,
            r#"{"a": 5}"#,
            r#"{"a": null}"#,
            r#"{"a": ["10.0.0.5/24"]}"#,
            r#"{"b": "10.0.0.5/24", "a": 5}"#,
            r#"{"a": "10.0.0.5/24", "a": "10.0.0.6/24"}"#,
            r#"{"a": {"addresses": ["10.1.0.5/24", "fd00::5/64"], "gateway": "10.1.0.1", "dns": ["10.1.0.2"], "search": ["x"], "routes": [{"to": "10.0.0.0/8", "via": "10.1.0.254", "metric": 100}], "mtu": 9000}}"#,
            r#"{"a": {"addresses": ["10.1.0.5/24"], "addresses": ["10.1.0.6/24"]}}"#,
            r#"{"a": {"addresses": ["10.1.0.5/24"], "extra": 1}}"#,
            r#"{"a": {"addresses": "10.1.0.5/24"}}"#,
            r#"{"a": {"mtu": 10}}"#,
            r#"{"a": {"mtu": 1500.5}}"#,
            r#"{"a": {"gateway": "x"}}"#,
            r#"{"a": {"routes": [{"to": "x"}]}}"#,
            r#"{"a": {"routes": [{"to": "10.0.0.0/8", "via": "10.0.0.1", "via": "10.0.0.2"}]}}"#,
            r#"{"a": {"dns": ["10.0.0.1", 7]}}"#,
            r#"{"a": "10.0.0.5/24",}"#,
            r#"["a"]"#,
            r#"not json"#,
            "",
        ];
        for text in texts {
            let fast = parse_networks(text).map_err(|e| e.to_string());
            let tree = parse_via_tree(text).map_err(|e| e.to_string());
            assert_eq!(fast, tree, "{text}");
        }
    }

    #[test]
    fn string_and_object_forms() {
        let r = parse_networks(r#"{"a": "10.0.0.5/24", "b": {"addresses": ["10.1.0.5/24", "fd00::5/64"], "gateway": "10.1.0.1", "dns": ["10.1.0.2"], "search": ["x"], "routes": [{"to": "10.0.0.0/8", "via": "10.1.0.254", "metric": 100}], "mtu": 9000}}"#).unwrap();
        assert_eq!(
            r["a"].addresses,
            vec!["10.0.0.5/24".parse::<IpNet>().unwrap()]
        );
        let b = &r["b"];
        assert_eq!(b.addresses.len(), 2);
        assert_eq!(b.gateway, Some("10.1.0.1".parse().unwrap()));
        assert_eq!(b.routes.as_ref().unwrap()[0].metric, Some(100));
        assert_eq!(b.mtu, Some(9000));
        assert!(!b.dhcp && !r["a"].dhcp);
    }

    #[test]
    fn dhcp_asks_for_no_address() {
        let r = parse_networks(r#"{"a": "dhcp", "b": " dhcp "}"#).unwrap();
        assert!(r["a"].dhcp && r["a"].addresses.is_empty() && r["b"].dhcp);
        let e = parse_networks(r#"{"a": "DHCP"}"#).unwrap_err().to_string();
        assert!(e.contains("CIDR notation"), "{e}");
    }

    #[test]
    fn errors_name_what_is_wrong() {
        for (text, needle) in [
            ("{", "not valid JSON"),
            ("[]", "JSON object"),
            (r#"{"a": 5}"#, "CIDR"),
            (r#"{"a": "10.0.0.5"}"#, "prefix length"),
            (r#"{"a": "banana"}"#, "CIDR notation"),
            (r#"{"a": {"adresses": ["10.0.0.5/24"]}}"#, "adresses"),
            (r#"{"a": {"gateway": "x"}}"#, "gateway"),
            (
                r#"{"a": {"routes": [{"to": "default", "via": "10.0.0.1"}]}}"#,
                "0.0.0.0/0",
            ),
            (r#"{"a": {"mtu": 70000}}"#, "mtu"),
        ] {
            let e = parse_networks(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn multus_annotation_forms() {
        assert_eq!(
            parse_multus_networks("infra/a@eth1, b").unwrap(),
            vec![(Some("infra".into()), "a".into()), (None, "b".into())]
        );
        assert_eq!(
            parse_multus_networks(r#"[{"name": "a", "namespace": "x", "interface": "net1"}]"#)
                .unwrap(),
            vec![(Some("x".into()), "a".into())]
        );
        assert_eq!(parse_multus_networks("[{"), None);
    }

    #[test]
    fn network_data_modes() {
        assert_eq!(NetworkDataMode::parse(None).unwrap(), NetworkDataMode::Auto);
        assert_eq!(
            NetworkDataMode::parse(Some("always")).unwrap(),
            NetworkDataMode::Always
        );
        assert!(NetworkDataMode::parse(Some("sometimes")).is_err());
    }
}
