//! What one cluster object contributes to the inventory, decoded: a NAD, or a guest's
//! footprint. Two ways in, one result:
//!
//! - [`Entry::from_object`] reads an already decoded object (watch events, files), through
//!   the same [`Vm`] view the engine reads;
//! - [`Entry::from_json`] reads an object's JSON text (list items, by the ten thousand at
//!   start-up) straight into the footprint: only metadata, interfaces and networks are
//!   decoded, into the engine's own field types, and nothing else of the object is built.
//!   `tests` below hold the two to the same footprint.
use std::{borrow::Cow, marker::PhantomData};

use kube::api::DynamicObject;
use serde::{
    Deserialize,
    de::{IgnoredAny, MapAccess, Visitor},
};

use super::{NicPrint, apply::Cached, footprint_of};
use crate::model::{
    annotations,
    kinds::{self, Kind, Layout},
    nad::Nad,
    vm::{self, Interface, Network, Vm},
};

/// One object, read.
#[derive(Debug)]
pub struct Entry {
    /// The object's namespace (defaulted as for a manifest without one).
    pub namespace: String,
    pub name: String,
    /// What it holds; `Err`: it cannot be read, and the message says why.
    pub content: Result<Content, String>,
}

/// What an object holds.
#[derive(Debug, PartialEq)]
pub enum Content {
    Nad(Box<Nad>),
    /// A guest's footprint (empty: it holds nothing, and loses what it held).
    Guest(Vec<NicPrint>),
    /// Nothing to change: a guest without a name yet, or a VMI its VM holds for.
    Nothing,
}

impl Entry {
    /// Reads a decoded object of `cached`'s resource.
    pub fn from_object(cached: Cached, obj: &DynamicObject) -> Self {
        let namespace = kinds::namespace(None, obj.metadata.namespace.as_deref()).to_string();
        let content = match cached {
            Cached::Nad => Nad::from_object(obj)
                .map(|nad| Content::Nad(Box::new(nad)))
                .map_err(|e| e.to_string()),
            Cached::Vm | Cached::Vmi => {
                guest_content(cached.guest_kind(), obj, &namespace).map_err(|e| e.to_string())
            }
        };
        Self {
            name: obj.metadata.name.clone().unwrap_or_default(),
            namespace,
            content,
        }
    }

    /// Reads one object's JSON text. NADs (few, small) go through [`Entry::from_object`];
    /// guests are decoded only as far as their footprint needs.
    pub fn from_json(cached: Cached, json: &str) -> Self {
        match cached {
            Cached::Nad => match serde_json::from_str::<DynamicObject>(json) {
                Ok(obj) => Self::from_object(cached, &obj),
                Err(e) => unreadable(json, e.to_string()),
            },
            Cached::Vm => guest_from_json::<VmSpec>(json, Kind::VirtualMachine),
            Cached::Vmi => guest_from_json::<NicSpec>(json, Kind::VirtualMachineInstance),
        }
    }
}

/// A decoded guest's content: what it holds, or nothing if it has no name yet (nothing it
/// holds can be attributed) or is a VMI its VM holds for.
pub(crate) fn guest_content(
    kind: Kind,
    obj: &DynamicObject,
    namespace: &str,
) -> Result<Content, vm::Error> {
    let vm = Vm::from_object(kind, obj)?;
    if vm.name.is_none()
        || (kind == Kind::VirtualMachineInstance && vm.owned_by(Kind::VirtualMachine))
    {
        return Ok(Content::Nothing);
    }
    Ok(Content::Guest(super::footprint(&vm, namespace)))
}

/// An object whose text does not decode: named if its metadata can be read.
fn unreadable(json: &str, message: String) -> Entry {
    #[derive(Deserialize, Default)]
    struct Named {
        #[serde(default)]
        metadata: Meta,
    }
    #[derive(Deserialize, Default)]
    struct Meta {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        namespace: Option<String>,
    }
    let meta = serde_json::from_str::<Named>(json)
        .unwrap_or_default()
        .metadata;
    Entry {
        namespace: kinds::namespace(None, meta.namespace.as_deref()).to_string(),
        name: meta.name.unwrap_or_default(),
        content: Err(message),
    }
}

/// A guest object as far as its footprint goes; `S` is its kind's spec, down to the VMI spec.
#[derive(Deserialize)]
struct GuestDoc<'a, S> {
    #[serde(default, borrow)]
    metadata: GuestMeta<'a>,
    spec: Option<S>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GuestMeta<'a> {
    #[serde(default, borrow, deserialize_with = "vm::borrowed")]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "vm::borrowed")]
    namespace: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    annotations: Option<NetworksAnnotation<'a>>,
    #[serde(default, borrow, deserialize_with = "vm::null_as_default")]
    owner_references: Vec<Owner<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Owner<'a> {
    #[serde(borrow)]
    api_version: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
}

/// The VMI spec's NIC lists, the rest skipped.
#[derive(Deserialize, Default)]
struct NicSpec<'a> {
    #[serde(default, borrow)]
    domain: NicDomain<'a>,
    #[serde(default, borrow, deserialize_with = "vm::null_as_default")]
    networks: Vec<Network<'a>>,
}

#[derive(Deserialize, Default)]
struct NicDomain<'a> {
    #[serde(default, borrow)]
    devices: NicDevices<'a>,
}

#[derive(Deserialize, Default)]
struct NicDevices<'a> {
    #[serde(default, borrow, deserialize_with = "vm::null_as_default")]
    interfaces: Vec<Interface<'a>>,
}

/// A VirtualMachine's spec, down to its template's VMI spec.
#[derive(Deserialize, Default)]
struct VmSpec<'a> {
    #[serde(default, borrow)]
    template: Option<VmTemplate<'a>>,
}

#[derive(Deserialize, Default)]
struct VmTemplate<'a> {
    #[serde(default, borrow)]
    spec: Option<NicSpec<'a>>,
}

/// The spec types that lead to a VMI spec.
trait ToNics<'a> {
    fn nics(self) -> Option<NicSpec<'a>>;
}

impl<'a> ToNics<'a> for NicSpec<'a> {
    fn nics(self) -> Option<NicSpec<'a>> {
        Some(self)
    }
}

impl<'a> ToNics<'a> for VmSpec<'a> {
    fn nics(self) -> Option<NicSpec<'a>> {
        self.template?.spec
    }
}

fn guest_from_json<'a, S: Deserialize<'a> + ToNics<'a>>(json: &'a str, kind: Kind) -> Entry {
    let doc: GuestDoc<'a, S> = match serde_json::from_str(json) {
        Ok(doc) => doc,
        // The decoder that tracks paths, only to name the field of an error.
        Err(_) => {
            let message = match serde_path_to_error::deserialize::<_, GuestDoc<'a, S>>(
                &mut serde_json::Deserializer::from_str(json),
            ) {
                Err(e) => format!("{}: {}", e.path(), e.inner()),
                Ok(_) => "undecodable".to_string(),
            };
            return unreadable(json, message);
        }
    };
    let meta = doc.metadata;
    let namespace = kinds::namespace(None, meta.namespace.as_deref()).to_string();
    let name = meta.name.filter(|n| !n.is_empty());
    let content = match doc.spec.and_then(ToNics::nics) {
        None => Err(format!(
            "{}: missing field",
            Layout::field(kind.layout().spec)
        )),
        Some(_) if name.is_none() => Ok(Content::Nothing),
        Some(_)
            if kind == Kind::VirtualMachineInstance
                && meta.owner_references.iter().any(|o| {
                    Kind::of_manifest(&o.api_version, &o.kind) == Some(Kind::VirtualMachine)
                }) =>
        {
            Ok(Content::Nothing)
        }
        Some(spec) => Ok(Content::Guest(footprint_of(
            &spec.networks,
            &spec.domain.devices.interfaces,
            meta.annotations.as_ref().and_then(|a| a.0.as_deref()),
            &namespace,
        ))),
    };
    Entry {
        name: name.map(Cow::into_owned).unwrap_or_default(),
        namespace,
        content,
    }
}

/// `metadata.annotations`, of which only the webhook's networks annotation is kept (kubectl's
/// last-applied-configuration alone holds the whole object).
struct NetworksAnnotation<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for NetworksAnnotation<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keep<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Keep<'a> {
            type Value = NetworksAnnotation<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut kept = None;
                while let Some(key) = map.next_key::<vm::Borrowed<'a>>()? {
                    if key.0 == annotations::NETWORKS {
                        kept = Some(map.next_value::<vm::Borrowed<'a>>()?.0);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(NetworksAnnotation(kept))
            }
        }
        d.deserialize_map(Keep(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// Both readers, on one object: the same entry.
    fn both(cached: Cached, object: &Value) -> (Entry, Entry) {
        let text = serde_json::to_string(object).unwrap();
        let decoded: DynamicObject = serde_json::from_value(object.clone()).unwrap();
        (
            Entry::from_object(cached, &decoded),
            Entry::from_json(cached, &text),
        )
    }

    fn same(cached: Cached, object: &Value) -> Entry {
        let (full, compact) = both(cached, object);
        assert_eq!(
            (&full.namespace, &full.name, &full.content),
            (&compact.namespace, &compact.name, &compact.content),
            "{object}"
        );
        full
    }

    fn vm(annotations: Value, interfaces: Value, networks: Value) -> Value {
        json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "v", "namespace": "t", "annotations": annotations},
            "spec": {"running": true, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {
                "domain": {"devices": {"interfaces": interfaces, "disks": [{"name": "d"}]}},
                "networks": networks,
                "volumes": [{"name": "ci", "cloudInitNoCloud": {"userData": "#cloud-config\n"}}]}}}})
    }

    #[test]
    fn a_vm_reads_the_same_both_ways() {
        let object = vm(
            json!({annotations::NETWORKS: "{\"ext\": \"10.0.0.5/24\", \"dhcp\": \"dhcp\"}",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"huge\": \"\\\"quoted\\\"\"}"}),
            json!([{"name": "default", "masquerade": {}},
                {"name": "ext", "bridge": {}, "macAddress": "02:aa:bb:cc:dd:ee"},
                {"name": "dhcp", "bridge": {}},
                {"name": "other", "bridge": {}, "macAddress": "not a mac"}]),
            json!([{"name": "default", "pod": {}},
                {"name": "ext", "multus": {"networkName": "infra/ext"}},
                {"name": "dhcp", "multus": {"networkName": "local"}},
                {"name": "other", "multus": {"networkName": "infra/other"}}]),
        );
        let entry = same(Cached::Vm, &object);
        let Ok(Content::Guest(nics)) = &entry.content else {
            panic!("{entry:?}")
        };
        assert_eq!(nics.len(), 3, "{nics:?}");
        assert_eq!(
            nics[0].addresses,
            ["10.0.0.5".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(nics[1].nad, "t/local");
        assert!(!nics[1].wants_pinned && nics[2].mac.is_none());
    }

    #[test]
    fn escaped_strings_and_nulls_read_the_same() {
        // An escape in a string cannot be borrowed: it is copied, with the same value.
        let object = vm(
            json!({annotations::NETWORKS: "{\"e\\u0078t\": \"10.0.0.6/24\"}"}),
            json!([{"name": "e\u{78}t", "bridge": {}, "macAddress": "02:aa:bb:cc:dd:0\u{31}"}]),
            json!([{"name": "ext", "multus": {"networkName": "infra/ext"}}]),
        );
        let text = serde_json::to_string(&object)
            .unwrap()
            .replace("02:aa:bb:cc:dd:01", "02:aa:bb:cc:dd:0\\u0031");
        let compact = Entry::from_json(Cached::Vm, &text);
        assert_eq!(compact.content, same(Cached::Vm, &object).content);
        for nulls in [
            vm(Value::Null, Value::Null, Value::Null),
            json!({"metadata": {"name": "v", "namespace": "t", "ownerReferences": null},
                "spec": {"template": {"spec": {"domain": {"devices": {}}}}}}),
        ] {
            assert_eq!(same(Cached::Vm, &nulls).content, Ok(Content::Guest(vec![])));
        }
    }

    #[test]
    fn vmis_owned_by_a_vm_and_nameless_guests_hold_nothing() {
        let spec = json!({"domain": {"devices": {"interfaces": [{"name": "ext", "bridge": {}, "macAddress": "02:00:00:00:00:01"}]}},
            "networks": [{"name": "ext", "multus": {"networkName": "infra/ext"}}]});
        let owned = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": "v", "namespace": "t", "ownerReferences": [
                {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": "v", "uid": "u"}]},
            "spec": spec});
        assert_eq!(same(Cached::Vmi, &owned).content, Ok(Content::Nothing));
        let mut lone = owned.clone();
        lone["metadata"]["ownerReferences"] = json!([
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "uid": "u"}]);
        assert!(matches!(same(Cached::Vmi, &lone).content, Ok(Content::Guest(n)) if n.len() == 1));
        let mut nameless = lone.clone();
        nameless["metadata"] = json!({"generateName": "v-", "namespace": "t"});
        assert_eq!(same(Cached::Vmi, &nameless).content, Ok(Content::Nothing));
    }

    #[test]
    fn broken_objects_are_named_and_fail_both_ways() {
        for (cached, object) in [
            (Cached::Vm, vm(json!({}), json!("not a list"), json!([]))),
            (
                Cached::Vm,
                vm(json!({}), json!([]), json!([{"name": "x", "multus": {}}])),
            ),
            (
                Cached::Vm,
                json!({"metadata": {"name": "v", "namespace": "t"}, "spec": {"running": true}}),
            ),
            (
                Cached::Vmi,
                json!({"metadata": {"name": "v", "namespace": "t"}}),
            ),
            (
                Cached::Nad,
                json!({"metadata": {"name": "v", "namespace": "t"}, "spec": {"config": 5}}),
            ),
        ] {
            let (full, compact) = both(cached, &object);
            assert!(
                full.content.is_err() && compact.content.is_err(),
                "{object}"
            );
            assert_eq!(
                (compact.namespace.as_str(), compact.name.as_str()),
                ("t", "v")
            );
        }
        let text = r#"{"metadata": {"name": "v", "namespace": "t"}, "spec": {"template": {"spec": {"networks": [{"name": 5}]}}}}"#;
        let Err(message) = Entry::from_json(Cached::Vm, text).content else {
            panic!()
        };
        assert!(
            message.starts_with("spec.template.spec.networks[0].name"),
            "{message}"
        );
    }

    /// KubeVirt's own examples and our scenario files: every VM and VMI among them reads
    /// the same both ways.
    #[test]
    fn every_example_reads_the_same_both_ways() {
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let mut read = 0;
        for dir in ["kubevirt-examples", "cases"] {
            let docs = crate::manifests::read_path_with(
                &data.join(dir),
                &crate::manifests::Limits {
                    max_file_bytes: 1 << 24,
                    max_total_bytes: usize::MAX,
                },
            )
            .unwrap();
            for doc in docs {
                for cached in [Cached::Vm, Cached::Vmi] {
                    if cached.matches(doc.api_version(), doc.kind()) {
                        same(cached, &doc.value);
                        read += 1;
                    }
                }
            }
        }
        assert!(read >= 15, "only {read} guests read");
    }
}
