//! The webhook's configuration (`--config FILE`, SPEC §3): the same for every replica, so that
//! all of them give the same answers.
use std::{fmt, path::Path, str::FromStr};

use serde::{Deserialize, Deserializer};

/// Errors found while reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The YAML is malformed, has an unknown key, or a key has a bad value.
    #[error("config file {path}: {message}")]
    Invalid { path: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to do when a VM references a NetworkAttachmentDefinition that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissingNad {
    /// Admit the VM with a warning (the NAD may be created later).
    #[default]
    Warn,
    /// Deny the VM.
    Deny,
}

/// What `/validate` does with a violation (SPEC §2.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// Deny the request.
    #[default]
    Deny,
    /// Allow it, with the denial's message as a warning: a policy rolled out gradually.
    Warn,
}

impl FromStr for Enforcement {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "deny" => Ok(Self::Deny),
            "warn" => Ok(Self::Warn),
            _ => Err(format!("enforcement {s:?} must be \"deny\" or \"warn\"")),
        }
    }
}

/// Configuration keys (camelCase in YAML, as in SPEC §3).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// First 1–3 bytes of every generated MAC.
    pub mac_prefix: MacPrefix,
    /// Mixed into every MAC derivation, so that clusters sharing an L2 domain can differ.
    pub cluster_salt: String,
    /// Main CNI plugin types that cannot carry a `bridge` binding.
    #[serde(rename = "incompatibleBridgeCNIs")]
    pub incompatible_bridge_cnis: Vec<String>,
    /// Warn or deny on a missing NAD.
    pub missing_network_attachment: MissingNad,
    /// A VM may reference only NADs of its own namespace, of `globalNadNamespaces`, or shared
    /// with its namespace (SPEC §2.7), as Multus' `namespaceIsolation`.
    pub nad_namespace_isolation: bool,
    /// Namespaces whose NADs every VM may use when `nadNamespaceIsolation` is on.
    pub global_nad_namespaces: Vec<String>,
    /// Deny violations, or only warn about them (SPEC §2.11); the namespace label
    /// `kubevirt-net-webhook.io/enforcement: warn` asks for `warn` per namespace.
    pub enforcement: Enforcement,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mac_prefix: MacPrefix::default(),
            cluster_salt: String::new(),
            incompatible_bridge_cnis: vec!["macvlan".into(), "ipvlan".into()],
            missing_network_attachment: MissingNad::Warn,
            nad_namespace_isolation: false,
            global_nad_namespaces: vec!["default".into()],
            enforcement: Enforcement::Deny,
        }
    }
}

impl Config {
    /// Parses a YAML document; the message names the offending key.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml_ng::from_str(text).map_err(|e| Error::Invalid {
            path: origin.to_string(),
            message: e.to_string(),
        })
    }

    /// Reads `path`, or returns the defaults when no file is given.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_yaml(&text, &shown)
    }
}

/// A validated MAC prefix: 1 to 3 bytes, unicast, locally administered, first byte not `fe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacPrefix(Vec<u8>);

impl MacPrefix {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Default for MacPrefix {
    fn default() -> Self {
        Self(vec![0x02])
    }
}

impl fmt::Display for MacPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|b| format!("{b:02x}")).collect();
        f.write_str(&parts.join(":"))
    }
}

impl FromStr for MacPrefix {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bytes = s
            .split([':', '-'])
            .map(|part| {
                if part.len() == 2 {
                    u8::from_str_radix(part, 16).ok()
                } else {
                    None
                }
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| {
                format!("macPrefix {s:?} must be 1 to 3 hex bytes separated by ':', like \"02\" or \"02:5a\"")
            })?;
        if bytes.is_empty() || bytes.len() > 3 {
            return Err(format!("macPrefix {s:?} must have 1 to 3 bytes"));
        }
        let first = bytes[0];
        if first & 0x01 != 0 {
            return Err(format!(
                "macPrefix {s:?} is multicast (lowest bit of the first byte is set); use e.g. \"02\""
            ));
        }
        if first & 0x02 == 0 {
            return Err(format!(
                "macPrefix {s:?} is not locally administered (second-lowest bit of the first byte is clear); use e.g. \"02\""
            ));
        }
        if first == 0xfe {
            // libvirt gives tap devices fe:xx MACs; a guest NIC with one confuses the bridge.
            return Err(format!(
                "macPrefix {s:?} must not start with fe (libvirt uses it for tap devices)"
            ));
        }
        Ok(Self(bytes))
    }
}

impl<'de> Deserialize<'de> for MacPrefix {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::from_yaml("", "x").unwrap();
        assert_eq!(c.mac_prefix.bytes(), &[0x02]);
        assert_eq!(c.incompatible_bridge_cnis, ["macvlan", "ipvlan"]);
        assert_eq!(c.missing_network_attachment, MissingNad::Warn);
        assert!(!c.nad_namespace_isolation);
        assert_eq!(c.global_nad_namespaces, ["default"]);
    }

    #[test]
    fn full_config() {
        let c = Config::from_yaml(
            "macPrefix: \"0a:58\"\nclusterSalt: prod\nincompatibleBridgeCNIs: [macvlan]\nmissingNetworkAttachment: deny\nnadNamespaceIsolation: true\nglobalNadNamespaces: [infra, default]\n",
            "x",
        )
        .unwrap();
        assert_eq!(c.mac_prefix.bytes(), &[0x0a, 0x58]);
        assert_eq!(c.cluster_salt, "prod");
        assert_eq!(c.incompatible_bridge_cnis, ["macvlan"]);
        assert_eq!(c.missing_network_attachment, MissingNad::Deny);
        assert!(c.nad_namespace_isolation);
        assert_eq!(c.global_nad_namespaces, ["infra", "default"]);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_yaml("macprefix: \"02\"\n", "cfg.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("macprefix") && e.contains("cfg.yaml"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        for (yaml, needle) in [
            ("macPrefix: \"03\"", "multicast"),
            ("macPrefix: \"00\"", "locally administered"),
            ("macPrefix: \"fe\"", "fe"),
            ("macPrefix: \"02:00:00:00\"", "1 to 3"),
            ("macPrefix: \"zz\"", "hex"),
            (
                "missingNetworkAttachment: maybe",
                "missingNetworkAttachment",
            ),
            ("nadNamespaceIsolation: sometimes", "nadNamespaceIsolation"),
            ("globalNadNamespaces: infra", "globalNadNamespaces"),
        ] {
            let e = Config::from_yaml(yaml, "c").unwrap_err().to_string();
            assert!(e.contains(needle), "{yaml}: {e}");
        }
    }
}
