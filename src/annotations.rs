//! The annotations the webhook reads (SPEC §2.1, §2.4, §2.5, §2.6) and their parsers.
use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

/// Requested guest addresses per VM network (SPEC §2.5).
pub const NETWORKS: &str = "kubevirt-net-webhook.io/networks";
/// When to write cloud-init network config: `auto`, `always`, `never` (SPEC §2.4).
pub const NETWORK_DATA: &str = "kubevirt-net-webhook.io/network-data";
/// `"false"` skips mutation; validation still applies (SPEC §2.6).
pub const MUTATE: &str = "kubevirt-net-webhook.io/mutate";
/// Multus' own pod annotation, which KubeVirt writes on the launcher pod itself.
pub const MULTUS_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

/// The `network-data` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkDataMode {
    Auto,
    Always,
    Never,
}

impl NetworkDataMode {
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim) {
            None | Some("auto") | Some("") => Ok(Self::Auto),
            Some("always") => Ok(Self::Always),
            Some("never") => Ok(Self::Never),
            Some(other) => Err(format!(
                "annotation {NETWORK_DATA}: {other:?} is not one of auto, always, never"
            )),
        }
    }
}

/// What the annotation asks for one network.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AddressRequest {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    #[serde(default)]
    addresses: Vec<String>,
    gateway: Option<String>,
    dns: Option<Vec<String>>,
    search: Option<Vec<String>>,
    routes: Option<Vec<RawRoute>>,
    mtu: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    to: String,
    via: Option<String>,
    metric: Option<u32>,
}

/// Parses the `kubevirt-net-webhook.io/networks` annotation. Errors are sentences for the user.
pub fn parse_networks(text: &str) -> Result<BTreeMap<String, AddressRequest>, String> {
    let prefix = format!("annotation {NETWORKS}");
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("{prefix} is not valid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err(format!(
            "{prefix} must be a JSON object keyed by VM network name, like {{\"external\": \"192.168.1.200/24\"}}"
        ));
    };
    let mut out = BTreeMap::new();
    for (network, v) in map {
        let at = format!("{prefix}, network {network:?}");
        let request = match v {
            Value::String(s) => AddressRequest {
                addresses: vec![cidr(&s, &at)?],
                ..Default::default()
            },
            Value::Object(_) => {
                let raw: RawRequest = serde_path_to_error::deserialize(v)
                    .map_err(|e| format!("{at}: {}: {}", e.path(), e.inner()))?;
                request_from_raw(raw, &at)?
            }
            _ => {
                return Err(format!(
                    "{at}: must be an address in CIDR notation or an object with \"addresses\""
                ));
            }
        };
        out.insert(network, request);
    }
    Ok(out)
}

fn request_from_raw(raw: RawRequest, at: &str) -> Result<AddressRequest, String> {
    let ip = |s: &str, what: &str| -> Result<IpAddr, String> {
        s.trim()
            .parse()
            .map_err(|_| format!("{at}: {what} {s:?} is not an IP address"))
    };
    let mtu = raw
        .mtu
        .map(|m| {
            u16::try_from(m)
                .ok()
                .filter(|m| *m >= 68)
                .ok_or_else(|| format!("{at}: mtu {m} is outside 68..65535"))
        })
        .transpose()?;
    Ok(AddressRequest {
        addresses: raw
            .addresses
            .iter()
            .map(|s| cidr(s, at))
            .collect::<Result<_, _>>()?,
        gateway: raw.gateway.as_deref().map(|g| ip(g, "gateway")).transpose()?,
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
                        let to = r.to.trim().parse::<IpNet>().map_err(|_| {
                            format!(
                                "{at}: route to {:?} must be a CIDR (write 0.0.0.0/0 or ::/0 for a default route)",
                                r.to
                            )
                        })?;
                        Ok(GuestRoute {
                            to: to.trunc(),
                            via: r.via.as_deref().map(|v| ip(v, "route via")).transpose()?,
                            metric: r.metric,
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()
            })
            .transpose()?,
        mtu,
    })
}

fn cidr(s: &str, at: &str) -> Result<IpNet, String> {
    s.trim().parse::<IpNet>().map_err(|_| {
        if s.trim().parse::<IpAddr>().is_ok() {
            format!("{at}: address {s:?} needs a prefix length, like \"{s}/24\"")
        } else {
            format!("{at}: address {s:?} is not in CIDR notation (like 192.168.1.200/24)")
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
            let e = parse_networks(text).unwrap_err();
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
        assert_eq!(NetworkDataMode::parse(None), Ok(NetworkDataMode::Auto));
        assert_eq!(
            NetworkDataMode::parse(Some("always")),
            Ok(NetworkDataMode::Always)
        );
        assert!(NetworkDataMode::parse(Some("sometimes")).is_err());
    }
}
