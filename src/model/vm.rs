//! A typed, read-only view of the parts of a guest the engine reads, whichever kind declares
//! it (SPEC §2.8): the VMI spec at the kind's [`Layout`], its metadata, its status.
//!
//! The engine reads through this view and writes JSON Patch operations against the original
//! JSON, so fields it does not know are never touched (or dropped).
use std::{borrow::Cow, collections::BTreeMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::DynamicObject;
use serde::{Deserialize, de::IgnoredAny};
use serde_json::Value;

use super::{
    annotations,
    kinds::{Kind, Layout},
    nad::NadRef,
};

/// Errors decoding a guest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field is missing or has the wrong type; `path` is the dotted path of the field.
    #[error("{path}: {message}")]
    Decode { path: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

mod one_pass;
pub use one_pass::{AnyJson, Guest, ObjectText, Unread};

/// A guest as the engine reads it.
#[derive(Debug, Clone)]
pub struct Vm<'a> {
    pub kind: Kind,
    pub layout: Layout,
    /// The object's own `metadata.name`; `None` for `generateName` objects.
    pub name: Option<String>,
    pub generate_name: Option<String>,
    /// The object's own `metadata.namespace`.
    pub namespace: Option<String>,
    /// The webhook's own annotations (`kubevirt-net-webhook.io/...`) at the layout's
    /// `vm_meta`.
    pub annotations: Annotations<'a>,
    /// Whether the `vm_meta` object has an `annotations` map (for patch paths).
    pub has_annotations: bool,
    /// Multus' annotation (`k8s.v1.cni.cncf.io/networks`) at the layout's `pod_meta`, if
    /// set.
    pub pod_annotations: Annotations<'a>,
    /// `(apiVersion, kind)` of the object's owners.
    pub owners: Vec<(String, String)>,
    /// `status.created`: a VM whose VMI exists (SPEC §2.9).
    pub created: bool,
    /// A VM spec that asks for the VM to be stopped (`runStrategy: Halted`, `running: false`).
    pub halted: bool,
    /// `metadata.deletionTimestamp` is set: the object is being deleted (SPEC §2.11).
    pub deleting: bool,
    /// Which parents of the lists the engine appends to are there, for its patch paths.
    pub lists: Lists,
    pub spec: VmiSpec<'a>,
}

/// The shape of the object around the lists the engine appends to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lists {
    /// The VMI spec's `volumes`.
    pub volumes: ListShape,
    /// The VMI spec's `domain.devices.disks`.
    pub disks: ListShape,
}

/// Whether a list is there, and how far its parents are: an append adds to the list, or
/// creates it (and the missing parents) under the deepest parent that is an object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListShape {
    /// The list is there as an array.
    pub is_array: bool,
    /// How many of the pointer's leading tokens name objects (at most all but the last).
    pub objects: usize,
}

impl ListShape {
    /// The shape of the list at `pointer` of `data`.
    fn at(data: &Value, pointer: &str) -> Self {
        let is_array = super::kinds::at(data, pointer).is_some_and(Value::is_array);
        // Each '/' but the first ends a parent.
        let parents = pointer
            .match_indices('/')
            .skip(1)
            .map(|(i, _)| &pointer[..i]);
        let objects = parents
            .take_while(|parent| super::kinds::at(data, parent).is_some_and(Value::is_object))
            .count();
        Self { is_array, objects }
    }
}

/// The pointer of one of the layout's lists.
fn list_pointer(layout: Layout, rest: &str) -> &'static str {
    let list = layout.lists.iter().find(|(r, _, _)| *r == rest);
    list.map(|(_, pointer, _)| *pointer)
        .expect("every layout names each list")
}

/// A VM spec asks for the VM to be stopped: `running: false` or `runStrategy: Halted`.
fn halted(running: Option<bool>, run_strategy: Option<&str>) -> bool {
    running == Some(false) || run_strategy == Some("Halted")
}

/// `(apiVersion, kind)` of an object's owners.
fn owners(meta: &ObjectMeta) -> Vec<(String, String)> {
    meta.owner_references
        .iter()
        .flatten()
        .map(|o| (o.api_version.clone(), o.kind.clone()))
        .collect()
}

/// Annotations the engine reads, borrowed from the object where its own metadata holds them.
pub type Annotations<'a> = BTreeMap<Cow<'a, str>, Cow<'a, str>>;

/// Metadata inside an object (a template's), as far as the engine reads it.
#[derive(Debug, Clone, Default, Deserialize)]
struct TemplateMeta {
    #[serde(default, deserialize_with = "null_as_default")]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Status {
    #[serde(default)]
    created: Option<bool>,
}

/// How a VM spec asks the VM to run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunSpec<'a> {
    #[serde(default)]
    running: Option<bool>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    run_strategy: Option<Cow<'a, str>>,
}

/// Decodes the value at `pointer` of `data` (missing or `null`: the default), naming the
/// field on error.
fn decode_at<'a, T: Deserialize<'a> + Default>(
    data: &'a Value,
    pointer: &str,
    required: bool,
) -> Result<T> {
    match super::kinds::at(data, pointer) {
        None | Some(Value::Null) if required => Err(Error::Decode {
            path: Layout::field(pointer),
            message: "missing field".into(),
        }),
        None | Some(Value::Null) => Ok(T::default()),
        // The plain decoder first (every request); the one that tracks the path only to
        // name the field of an error.
        Some(value) => T::deserialize(value).or_else(|_| {
            serde_path_to_error::deserialize(value).map_err(|e| {
                let field = Layout::field(pointer);
                Error::Decode {
                    path: match e.path().to_string().as_str() {
                        "." => field,
                        inner => format!("{field}.{inner}"),
                    },
                    message: e.inner().to_string(),
                }
            })
        }),
    }
}

impl<'a> Vm<'a> {
    /// Reads the guest of a `kind` object. The guest's strings are borrowed from it: a
    /// decision reads them, and copies only what it changes.
    pub fn from_object(kind: Kind, object: &'a DynamicObject) -> Result<Self> {
        let layout = kind.layout();
        let meta = &object.metadata;
        let data = &object.data;
        // `data` is the object without `metadata`; metadata pointers are read from it too,
        // except the object's own, which is typed already.
        // Only the annotations the engine reads are kept (borrowed from the object's own
        // metadata, copied from a template's): kubectl's last-applied-configuration alone
        // holds the whole manifest.
        let meta_at = |pointer: &str, keep: fn(&str) -> bool| -> Result<(Annotations<'a>, bool)> {
            if pointer == "/metadata" {
                let kept = meta.annotations.iter().flatten().filter(|(k, _)| keep(k));
                Ok((
                    kept.map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str())))
                        .collect(),
                    meta.annotations.is_some(),
                ))
            } else {
                let m: TemplateMeta = decode_at(data, pointer, false)?;
                let has = m.annotations.is_some();
                let kept = m.annotations.into_iter().flatten().filter(|(k, _)| keep(k));
                Ok((
                    kept.map(|(k, v)| (Cow::Owned(k), Cow::Owned(v))).collect(),
                    has,
                ))
            }
        };
        let (annotations, has_annotations) =
            meta_at(layout.vm_meta, |k| k.starts_with(annotations::PREFIX))?;
        let (pod_annotations, _) = meta_at(layout.pod_meta, |k| k == annotations::MULTUS_NETWORKS)?;
        let (status, run): (Status, RunSpec) = if kind == Kind::VirtualMachine {
            (
                decode_at(data, "/status", false)?,
                decode_at(data, "/spec", false)?,
            )
        } else {
            Default::default()
        };
        Ok(Self {
            kind,
            layout,
            name: meta.name.clone().filter(|n| !n.is_empty()),
            generate_name: meta.generate_name.clone(),
            namespace: meta.namespace.clone(),
            annotations,
            has_annotations,
            pod_annotations,
            owners: owners(meta),
            created: status.created.unwrap_or(false),
            halted: halted(run.running, run.run_strategy.as_deref()),
            deleting: meta.deletion_timestamp.is_some(),
            lists: Lists {
                volumes: ListShape::at(data, list_pointer(layout, VOLUMES)),
                disks: ListShape::at(data, list_pointer(layout, DISKS)),
            },
            spec: decode_at(data, layout.spec, true)?,
        })
    }

    /// The pointer of a list (or field) under the VMI spec, e.g. `domain/devices/interfaces`.
    pub fn spec_pointer(&self, rest: &str) -> Cow<'static, str> {
        match self.layout.lists.iter().find(|(r, _, _)| *r == rest) {
            Some((_, pointer, _)) => Cow::Borrowed(pointer),
            None => Cow::Owned(format!("{}/{rest}", self.layout.spec)),
        }
    }

    /// The dotted field name of a list under the VMI spec, for messages.
    pub fn spec_field(&self, rest: &str) -> Cow<'static, str> {
        match self.layout.lists.iter().find(|(r, _, _)| *r == rest) {
            Some((_, _, field)) => Cow::Borrowed(field),
            None => Cow::Owned(Layout::field(&self.spec_pointer(rest))),
        }
    }

    /// `spec.template.spec.domain.devices.interfaces` (for this kind).
    pub fn interfaces_field(&self) -> Cow<'static, str> {
        self.spec_field(INTERFACES)
    }

    /// `spec.template.spec.networks` (for this kind).
    pub fn networks_field(&self) -> Cow<'static, str> {
        self.spec_field(NETWORKS)
    }

    /// `spec.template.spec.volumes` (for this kind).
    pub fn volumes_field(&self) -> Cow<'static, str> {
        self.spec_field(VOLUMES)
    }
}

/// Paths under the VMI spec of the lists the engine patches.
pub const INTERFACES: &str = "domain/devices/interfaces";
pub const DISKS: &str = "domain/devices/disks";
pub const VOLUMES: &str = "volumes";
pub const NETWORKS: &str = "networks";

#[derive(Debug, Clone, Default, Deserialize)]
pub struct VmiSpec<'a> {
    #[serde(default, borrow)]
    pub domain: Domain<'a>,
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    pub networks: Vec<Network<'a>>,
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    pub volumes: Vec<Volume<'a>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Domain<'a> {
    #[serde(default, borrow)]
    pub devices: Devices<'a>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Devices<'a> {
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    pub interfaces: Vec<Interface<'a>>,
    /// Only names matter: the engine adds a disk for a volume it adds.
    #[serde(borrow)]
    pub disks: Option<Vec<Named<'a>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Named<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub mac_address: Option<Cow<'a, str>>,
    /// `absent` while KubeVirt hot-unplugs the interface (SPEC §2.9).
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub state: Option<Cow<'a, str>>,
    pub bridge: Option<IgnoredAny>,
    pub masquerade: Option<IgnoredAny>,
    pub sriov: Option<IgnoredAny>,
    #[serde(borrow)]
    pub binding: Option<Named<'a>>,
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

impl Interface<'_> {
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

impl Interface<'_> {
    /// Being hot-unplugged: the guest loses this NIC.
    pub fn is_absent(&self) -> bool {
        self.state.as_deref() == Some("absent")
    }
}

impl Binding<'_> {
    /// Bindings whose guest NIC carries a MAC the VM spec controls (SPEC §2.3).
    pub fn carries_mac(self) -> bool {
        !matches!(self, Binding::Other)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Network<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    pub pod: Option<IgnoredAny>,
    #[serde(borrow)]
    pub multus: Option<Multus<'a>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Multus<'a> {
    #[serde(borrow)]
    pub network_name: Cow<'a, str>,
}

/// Where a network comes from, as far as the engine cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The pod network.
    Pod,
    /// A Multus NetworkAttachmentDefinition.
    Multus,
    /// Anything else (`resourceClaim`, future sources): passed through untouched.
    Other,
}

impl Network<'_> {
    pub fn source(&self) -> Source {
        if self.multus.is_some() {
            Source::Multus
        } else if self.pod.is_some() {
            Source::Pod
        } else {
            Source::Other
        }
    }

    /// The NAD this network attaches to; `vm_namespace` is the default namespace.
    pub fn nad_ref<'r>(&'r self, vm_namespace: &'r str) -> Option<NadRef<'r>> {
        let multus = self.multus.as_ref()?;
        Some(NadRef::resolve(&multus.network_name, vm_namespace))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub cloud_init_no_cloud: Option<CloudInitSource<'a>>,
    #[serde(borrow)]
    pub cloud_init_config_drive: Option<CloudInitSource<'a>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudInitSource<'a> {
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub user_data: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub user_data_base64: Option<Cow<'a, str>>,
    pub user_data_secret_ref: Option<IgnoredAny>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub network_data: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub network_data_base64: Option<Cow<'a, str>>,
    pub network_data_secret_ref: Option<IgnoredAny>,
}

impl CloudInitSource<'_> {
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

impl<'a> Volume<'a> {
    pub fn cloud_init(&self) -> Option<(CloudInitKind, &CloudInitSource<'a>)> {
        if let Some(s) = &self.cloud_init_no_cloud {
            Some((CloudInitKind::NoCloud, s))
        } else {
            self.cloud_init_config_drive
                .as_ref()
                .map(|s| (CloudInitKind::ConfigDrive, s))
        }
    }
}

impl<'a> Vm<'a> {
    pub fn interfaces(&self) -> &[Interface<'a>] {
        &self.spec.domain.devices.interfaces
    }

    pub fn networks(&self) -> &[Network<'a>] {
        &self.spec.networks
    }

    pub fn network(&self, name: &str) -> Option<&Network<'a>> {
        self.networks().iter().find(|n| n.name == name)
    }

    /// The first cloud-init volume: KubeVirt reads only that one.
    pub fn first_cloud_init(
        &self,
    ) -> Option<(usize, &Volume<'a>, CloudInitKind, &CloudInitSource<'a>)> {
        self.spec
            .volumes
            .iter()
            .enumerate()
            .find_map(|(i, v)| v.cloud_init().map(|(k, s)| (i, v, k, s)))
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(AsRef::as_ref)
    }

    /// Whether an owner of the object is of `kind` (any version of `group`).
    pub fn owned_by(&self, kind: Kind) -> bool {
        self.owners
            .iter()
            .any(|(api_version, k)| Kind::of_manifest(api_version, k) == Some(kind))
    }
}

/// An optional string, borrowed from the object: serde borrows a `Cow` field on its own,
/// but copies one inside an `Option`.
pub(crate) fn borrowed<'de: 'a, 'a, D>(
    deserializer: D,
) -> std::result::Result<Option<Cow<'a, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<Borrowed<'a>>::deserialize(deserializer)?.map(|b| b.0))
}

/// A string borrowed from the input where it can be (it has no escapes).
#[derive(Deserialize)]
pub(crate) struct Borrowed<'a>(#[serde(borrow)] pub Cow<'a, str>);

/// Kubernetes clients send `null` for empty lists and maps now and then.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    /// Decodes a VirtualMachine with this spec: how it failed, if it did.
    fn vm(spec: Value) -> Result<()> {
        let o = object(
            json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "a"}, "spec": spec}),
        );
        Vm::from_object(Kind::VirtualMachine, &o).map(drop)
    }

    #[test]
    fn wrong_type_names_the_path() {
        let e = vm(
            json!({"template": {"spec": {"domain": {"devices": {"interfaces": [{"name": 5}]}}}}}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("spec.template.spec.domain.devices.interfaces[0].name"),
            "{e}"
        );
    }

    #[test]
    fn missing_template_is_an_error() {
        let e = vm(json!({})).unwrap_err().to_string();
        assert!(e.contains("spec.template.spec"), "{e}");
    }

    #[test]
    fn strings_are_borrowed_from_the_object() {
        let o = object(
            json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "a"},
            "spec": {"template": {"spec": {
                "domain": {"devices": {"interfaces": [{"name": "n", "bridge": {}, "macAddress": "02:00:00:00:00:01", "state": "absent"}]}},
                "networks": [{"name": "n", "multus": {"networkName": "nad"}}],
                "volumes": [{"name": "c", "cloudInitNoCloud": {"userData": "u", "networkData": "d"}}]}}}}),
        );
        let vm = Vm::from_object(Kind::VirtualMachine, &o).unwrap();
        let iface = &vm.interfaces()[0];
        let net = &vm.networks()[0];
        let (_, _, _, source) = vm.first_cloud_init().unwrap();
        for (what, text) in [
            ("name", Some(&iface.name)),
            ("macAddress", iface.mac_address.as_ref()),
            ("state", iface.state.as_ref()),
            ("network", Some(&net.name)),
            ("networkName", net.multus.as_ref().map(|m| &m.network_name)),
            ("userData", source.user_data.as_ref()),
            ("networkData", source.network_data.as_ref()),
        ] {
            assert!(matches!(text, Some(Cow::Borrowed(_))), "{what}: {text:?}");
        }
    }

    #[test]
    fn nulls_are_empty() {
        let v = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"annotations": null}, "spec": {"template": {"metadata": null, "spec": {"networks": null, "domain": {"devices": {"interfaces": null}}}}}});
        let o = object(v);
        let vm = Vm::from_object(Kind::VirtualMachine, &o).unwrap();
        assert!(vm.interfaces().is_empty() && vm.networks().is_empty());
        assert!(!vm.has_annotations);
    }

    #[test]
    fn each_kind_reads_its_own_layout() {
        let spec = json!({"networks": [{"name": "x", "multus": {"networkName": "n"}}]});
        let meta = json!({"annotations": {"kubevirt-net-webhook.io/mutate": "false", "kubectl.kubernetes.io/last-applied-configuration": "{}"}});
        for (kind, object) in [
            (
                Kind::VirtualMachineInstance,
                json!({"metadata": {"name": "i", "annotations": meta["annotations"]}, "spec": spec}),
            ),
            (
                Kind::VirtualMachineInstanceReplicaSet,
                json!({"metadata": {"name": "r"}, "spec": {"template": {"metadata": meta, "spec": spec}}}),
            ),
            (
                Kind::VirtualMachinePool,
                json!({"metadata": {"name": "p"}, "spec": {"virtualMachineTemplate": {"metadata": meta, "spec": {"template": {"spec": spec}}}}}),
            ),
        ] {
            let object: DynamicObject = serde_json::from_value(object).unwrap();
            let vm = Vm::from_object(kind, &object).unwrap();
            assert_eq!(vm.networks()[0].name, "x", "{kind:?}");
            assert_eq!(
                vm.annotation(annotations::MUTATE),
                Some("false"),
                "{kind:?}"
            );
            // Only the webhook's own annotations are read (and copied).
            assert_eq!(vm.annotations.len(), 1, "{kind:?}");
        }
    }

    #[test]
    fn running_and_owners() {
        let v = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "a", "ownerReferences": [{"apiVersion": "pool.kubevirt.io/v1beta1", "kind": "VirtualMachinePool", "name": "p", "uid": "u"}]}, "spec": {"template": {"spec": {}}}, "status": {"created": true}});
        let o = object(v);
        let vm = Vm::from_object(Kind::VirtualMachine, &o).unwrap();
        assert!(vm.created && !vm.halted);
        assert!(vm.owned_by(Kind::VirtualMachinePool));
        assert!(!vm.owned_by(Kind::VirtualMachine));
    }
}
