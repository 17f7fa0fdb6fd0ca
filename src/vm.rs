//! A typed, read-only view of the parts of a KubeVirt `VirtualMachine` the engine reads.
//!
//! The engine reads through this view and writes JSON Patch operations against the original
//! JSON, so fields it does not know are never touched (or dropped).
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Errors decoding a VirtualMachine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field is missing or has the wrong type; `path` is the JSON path of the field.
    #[error("{path}: {message}")]
    Decode { path: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// JSON pointer prefixes of the lists the engine patches.
pub const INTERFACES: &str = "/spec/template/spec/domain/devices/interfaces";
pub const DISKS: &str = "/spec/template/spec/domain/devices/disks";
pub const VOLUMES: &str = "/spec/template/spec/volumes";
/// Human-readable forms of the same paths, for messages.
pub const INTERFACES_FIELD: &str = "spec.template.spec.domain.devices.interfaces";
pub const NETWORKS_FIELD: &str = "spec.template.spec.networks";
pub const VOLUMES_FIELD: &str = "spec.template.spec.volumes";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachine {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: VmSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: Option<String>,
    pub generate_name: Option<String>,
    pub namespace: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct VmSpec {
    pub template: Template,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Template {
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: TemplateMeta,
    pub spec: VmiSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TemplateMeta {
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct VmiSpec {
    #[serde(default)]
    pub domain: Domain,
    #[serde(default, deserialize_with = "null_as_default")]
    pub networks: Vec<Network>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Domain {
    #[serde(default)]
    pub devices: Devices,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Devices {
    #[serde(default, deserialize_with = "null_as_default")]
    pub interfaces: Vec<Interface>,
    /// Only names matter: the engine adds a disk for a volume it adds.
    pub disks: Option<Vec<Named>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Named {
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    pub mac_address: Option<String>,
    pub bridge: Option<Value>,
    pub masquerade: Option<Value>,
    pub sriov: Option<Value>,
    pub binding: Option<Named>,
}

/// The binding of an interface, as far as the engine cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding<'a> {
    Bridge,
    Masquerade,
    Sriov,
    /// A network binding plugin (`binding: {name: ...}`), e.g. `macvtap`, `passt`.
    Plugin(&'a str),
    /// Anything else (deprecated core bindings such as `slirp` or `macvtap: {}`).
    Other,
}

impl Interface {
    pub fn binding(&self) -> Binding<'_> {
        if self.bridge.is_some() {
            Binding::Bridge
        } else if self.masquerade.is_some() {
            Binding::Masquerade
        } else if self.sriov.is_some() {
            Binding::Sriov
        } else if let Some(b) = &self.binding {
            Binding::Plugin(&b.name)
        } else {
            Binding::Other
        }
    }
}

impl Binding<'_> {
    /// Bindings whose guest NIC carries a MAC the VM spec controls (SPEC §2.3).
    pub fn carries_mac(self) -> bool {
        !matches!(self, Binding::Other)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Network {
    pub name: String,
    pub pod: Option<Value>,
    pub multus: Option<Multus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Multus {
    pub network_name: String,
}

impl Network {
    /// The NAD this network attaches to, as `(namespace, name)`; `vm_namespace` is the default.
    pub fn nad_ref<'a>(&'a self, vm_namespace: &'a str) -> Option<(&'a str, &'a str)> {
        let multus = self.multus.as_ref()?;
        Some(split_nad_ref(&multus.network_name, vm_namespace))
    }
}

/// `name` or `namespace/name` → `(namespace, name)`.
pub fn split_nad_ref<'a>(reference: &'a str, default_namespace: &'a str) -> (&'a str, &'a str) {
    match reference.split_once('/') {
        Some((ns, name)) => (ns, name),
        None => (default_namespace, reference),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    pub cloud_init_no_cloud: Option<CloudInitSource>,
    pub cloud_init_config_drive: Option<CloudInitSource>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudInitSource {
    pub user_data: Option<String>,
    pub user_data_base64: Option<String>,
    pub user_data_secret_ref: Option<Value>,
    pub network_data: Option<String>,
    pub network_data_base64: Option<String>,
    pub network_data_secret_ref: Option<Value>,
}

impl CloudInitSource {
    pub fn has_user_data(&self) -> bool {
        self.user_data.is_some()
            || self.user_data_base64.is_some()
            || self.user_data_secret_ref.is_some()
    }
}

/// Which datasource a cloud-init volume feeds, which decides the network config format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudInitKind {
    /// `cloudInitNoCloud`: netplan v2 network config.
    NoCloud,
    /// `cloudInitConfigDrive`: OpenStack `network_data.json`.
    ConfigDrive,
}

impl CloudInitKind {
    pub fn field(self) -> &'static str {
        match self {
            Self::NoCloud => "cloudInitNoCloud",
            Self::ConfigDrive => "cloudInitConfigDrive",
        }
    }
}

impl Volume {
    pub fn cloud_init(&self) -> Option<(CloudInitKind, &CloudInitSource)> {
        if let Some(s) = &self.cloud_init_no_cloud {
            Some((CloudInitKind::NoCloud, s))
        } else {
            self.cloud_init_config_drive
                .as_ref()
                .map(|s| (CloudInitKind::ConfigDrive, s))
        }
    }
}

impl VirtualMachine {
    /// Decodes a VM from JSON, naming the field on error.
    pub fn from_value(value: &Value) -> Result<Self> {
        serde_path_to_error::deserialize(value).map_err(|e| Error::Decode {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }

    pub fn interfaces(&self) -> &[Interface] {
        &self.spec.template.spec.domain.devices.interfaces
    }

    pub fn networks(&self) -> &[Network] {
        &self.spec.template.spec.networks
    }

    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks().iter().find(|n| n.name == name)
    }

    /// The first cloud-init volume: KubeVirt reads only that one.
    pub fn first_cloud_init(&self) -> Option<(usize, &Volume, CloudInitKind, &CloudInitSource)> {
        self.spec
            .template
            .spec
            .volumes
            .iter()
            .enumerate()
            .find_map(|(i, v)| v.cloud_init().map(|(k, s)| (i, v, k, s)))
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata.annotations.get(key).map(String::as_str)
    }
}

/// Kubernetes clients send `null` for empty lists and maps now and then.
fn null_as_default<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Escapes one JSON Pointer token (RFC 6901): annotation keys contain `/`.
pub fn pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_type_names_the_path() {
        let v = json!({"spec": {"template": {"spec": {"domain": {"devices": {"interfaces": [{"name": 5}]}}}}}});
        let e = VirtualMachine::from_value(&v).unwrap_err().to_string();
        assert!(
            e.contains("spec.template.spec.domain.devices.interfaces[0].name"),
            "{e}"
        );
    }

    #[test]
    fn missing_template_is_an_error() {
        let e = VirtualMachine::from_value(&json!({"spec": {}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("template"), "{e}");
    }

    #[test]
    fn nulls_are_empty() {
        let v = json!({"metadata": {"annotations": null}, "spec": {"template": {"metadata": null, "spec": {"networks": null, "domain": {"devices": {"interfaces": null}}}}}});
        let vm = VirtualMachine::from_value(&v).unwrap();
        assert!(vm.interfaces().is_empty() && vm.networks().is_empty());
    }

    #[test]
    fn nad_refs() {
        assert_eq!(split_nad_ref("infra/storage", "blue"), ("infra", "storage"));
        assert_eq!(split_nad_ref("storage", "blue"), ("blue", "storage"));
    }

    #[test]
    fn pointer_escaping() {
        assert_eq!(
            pointer_token("k8s.v1.cni.cncf.io/networks"),
            "k8s.v1.cni.cncf.io~1networks"
        );
        assert_eq!(pointer_token("a~b"), "a~0b");
    }
}
