//! A guest read straight from the JSON text of a request, in the pass that reads the
//! AdmissionReview (issue #19): no `serde_json::Value` tree of the object is built, walked
//! and dropped.
//!
//! It must read only what the tree path ([`Vm::from_object`] over kube's `DynamicObject`)
//! reads, and read it the same:
//! - every value it does not keep is checked as strictly as a `Value` checks it ([`AnyJson`]:
//!   nesting depth, escapes, numbers in range), because the tree checks the whole object;
//!   serde's derived decoders skip unknown fields without these checks, so the view's types
//!   are decoded here by [`Strict`] instead;
//! - anything unusual is an error: `null` or an array where an object is read, a key given
//!   twice, a part missing. The caller then reads the body the tree's way, which answers it
//!   as always (its error messages included).
//!
//! So this path may refuse more than the tree, never accept more or read differently;
//! `tests/fuzz.rs` and the admission tests hold both to one answer.
use std::{borrow::Cow, collections::BTreeMap, fmt, marker::PhantomData};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{
    Deserialize, Deserializer,
    de::{
        self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor,
        value::{BorrowedStrDeserializer, StringDeserializer, UnitDeserializer},
    },
};

use super::{
    Annotations, Borrowed, CloudInitSource, Devices, Domain, Interface, ListShape, Lists, Multus,
    Named, Network, Vm, VmiSpec, Volume,
};
use crate::model::{
    annotations,
    kinds::{Kind, Layout},
};

/// Any JSON value, checked as strictly as decoding it into a `serde_json::Value` (nesting
/// depth, escapes, numbers in range) but not built. `IgnoredAny` would not do: serde_json
/// skips it with a pass that checks none of these, so a body the `Value` refuses would pass.
pub struct AnyJson;

impl<'de> Deserialize<'de> for AnyJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `deserialize_any` parses as `Value` does, and counts the depth it nests.
        d.deserialize_any(AnyJson)
    }
}

impl<'de> Visitor<'de> for AnyJson {
    type Value = AnyJson;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_i64<E>(self, _: i64) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_u64<E>(self, _: u64) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_f64<E>(self, _: f64) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_str<E>(self, _: &str) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_unit<E>(self) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyJson, A::Error> {
        while seq.next_element::<AnyJson>()?.is_some() {}
        Ok(AnyJson)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyJson, A::Error> {
        while map.next_key::<AnyJson>()?.is_some() {
            map.next_value::<AnyJson>()?;
        }
        Ok(AnyJson)
    }
}

/// Decoding that checks what it skips as a `Value` would, and accepts a value only in the
/// form the derived decoder of the tree path reads it from (an object as a map, not a list).
pub trait Strict<'de>: Sized {
    fn strict<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

struct Seed<T>(PhantomData<T>);

impl<'de, T: Strict<'de>> DeserializeSeed<'de> for Seed<T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        T::strict(d)
    }
}

/// Types with nothing to skip inside: their own decoder is already as strict as a `Value`.
macro_rules! strict_as_derived {
    ($($ty:ty),*) => {
        $(impl<'de> Strict<'de> for $ty {
            fn strict<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <$ty>::deserialize(d)
            }
        })*
    };
}

strict_as_derived!(bool, BTreeMap<String, String>, Time);

/// `ObjectMeta` as the tree path decodes it (k8s-openapi's decoder), except
/// `managedFields`: checked here ([`ManagedFieldsEntry`]) and given to k8s-openapi as
/// `null`, so left out. Nothing reads them, and an object from the API server carries a
/// `fieldsV1` tree per field manager, the largest part of its metadata (issue #19).
impl<'de> Strict<'de> for ObjectMeta {
    fn strict<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ObjectMeta::deserialize(WithoutManagedFields(d))
    }
}

/// A decoder that hands k8s-openapi's `ObjectMeta` visitor a map without `managedFields`.
struct WithoutManagedFields<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for WithoutManagedFields<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(MetaVisitor(visitor))
    }

    // What k8s-openapi's decoder asks for.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_struct(name, fields, MetaVisitor(visitor))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The `ObjectMeta` visitor, given the map through [`MetaMap`]; anything else as it was.
struct MetaVisitor<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for MetaVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(MetaMap {
            map,
            managed_fields: false,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(seq)
    }
}

/// The metadata's map, with the value of `managedFields` checked and replaced by `null`.
struct MetaMap<A> {
    map: A,
    /// The key just read is `managedFields`.
    managed_fields: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for MetaMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let Some(Borrowed(key)) = self.map.next_key()? else {
            return Ok(None);
        };
        self.managed_fields = key == "managedFields";
        match key {
            Cow::Borrowed(key) => seed.deserialize(BorrowedStrDeserializer::new(key)),
            Cow::Owned(key) => seed.deserialize(StringDeserializer::new(key)),
        }
        .map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        if self.managed_fields {
            self.map
                .next_value_seed(Seed::<Option<Vec<ManagedFieldsEntry<'de>>>>(PhantomData))?;
            seed.deserialize(UnitDeserializer::new())
        } else {
            self.map.next_value_seed(seed)
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// An entry of `managedFields`, decoded only to be checked: each field as the type that
/// k8s-openapi decodes it into, `fieldsV1` as any JSON value (k8s-openapi keeps a `Value`).
#[allow(dead_code)] // read for the checks alone
struct ManagedFieldsEntry<'a> {
    api_version: Option<Cow<'a, str>>,
    fields_type: Option<Cow<'a, str>>,
    fields_v1: Option<IgnoredAny>,
    manager: Option<Cow<'a, str>>,
    operation: Option<Cow<'a, str>>,
    subresource: Option<Cow<'a, str>>,
    time: Option<Time>,
}

impl<'de> Strict<'de> for Cow<'de, str> {
    fn strict<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Borrowed::deserialize(d)?.0)
    }
}

/// A field read only for its presence (`bridge: {}`): checked, not built.
impl<'de> Strict<'de> for IgnoredAny {
    fn strict<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        AnyJson::deserialize(d).map(|_| IgnoredAny)
    }
}

impl<'de, T: Strict<'de>> Strict<'de> for Option<T> {
    fn strict<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Strict<'de>> Visitor<'de> for V<T> {
            type Value = Option<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an optional value")
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                T::strict(d).map(Some)
            }
        }
        d.deserialize_option(V(PhantomData))
    }
}

impl<'de, T: Strict<'de>> Strict<'de> for Vec<T> {
    fn strict<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Strict<'de>> Visitor<'de> for V<T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element_seed(Seed(PhantomData))? {
                    out.push(item);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

impl<'de, T: Strict<'de>> Strict<'de> for Box<T> {
    fn strict<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::strict(d).map(Box::new)
    }
}

/// Reads one field's value into its slot; a key given twice is an error (the tree keeps the
/// last, so it is left to the tree).
fn put<'de, T: Strict<'de>, A: MapAccess<'de>>(
    slot: &mut Option<T>,
    map: &mut A,
    key: &'static str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(key));
    }
    *slot = Some(map.next_value_seed(Seed(PhantomData))?);
    Ok(())
}

/// A field without a default, as a derived decoder has it: missing is an error.
fn required<T, E: de::Error>(slot: Option<T>, key: &'static str) -> Result<T, E> {
    slot.ok_or_else(|| E::missing_field(key))
}

/// A field with a default (or an `Option`): missing is the default.
fn default<T: Default, E>(slot: Option<T>, _: &'static str) -> Result<T, E> {
    Ok(slot.unwrap_or_default())
}

/// A field read with `null_as_default`: missing and `null` are the default.
fn nullable<T: Default, E>(slot: Option<Option<T>>, _: &'static str) -> Result<T, E> {
    Ok(slot.flatten().unwrap_or_default())
}

/// A field whose presence matters: kept as it was found.
fn kept<T, E>(slot: Option<T>, _: &'static str) -> Result<Option<T>, E> {
    Ok(slot)
}

/// [`Strict`] for a struct read from a map, field by field as its derived decoder reads
/// it; every other key is checked ([`AnyJson`]) and skipped. `static` for a struct that
/// borrows nothing.
macro_rules! strict_struct {
    (static $name:ident { $($body:tt)* }) => {
        strict_struct!(@impl $name, $name, $($body)*);
    };
    ($name:ident { $($body:tt)* }) => {
        strict_struct!(@impl $name, $name<'de>, $($body)*);
    };
    (@impl $name:ident, $ty:ty, $($field:ident: $key:literal => $how:ident),* $(,)?) => {
        impl<'de> Strict<'de> for $ty {
            fn strict<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str(concat!("an object (", stringify!($name), ")"))
                    }
                    fn visit_map<A: MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<Self::Value, A::Error> {
                        $(let mut $field = None;)*
                        while let Some(key) = map.next_key::<Borrowed<'de>>()? {
                            match key.0.as_ref() {
                                $($key => put(&mut $field, &mut map, $key)?,)*
                                _ => {
                                    map.next_value::<AnyJson>()?;
                                }
                            }
                        }
                        Ok($name { $($field: $how($field, $key)?,)* })
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}

strict_struct!(Interface {
    name: "name" => required,
    mac_address: "macAddress" => default,
    state: "state" => default,
    bridge: "bridge" => default,
    masquerade: "masquerade" => default,
    sriov: "sriov" => default,
    binding: "binding" => default,
});
strict_struct!(Named { name: "name" => required });
strict_struct!(ManagedFieldsEntry {
    api_version: "apiVersion" => default,
    fields_type: "fieldsType" => default,
    fields_v1: "fieldsV1" => default,
    manager: "manager" => default,
    operation: "operation" => default,
    subresource: "subresource" => default,
    time: "time" => default,
});
strict_struct!(Network {
    name: "name" => required,
    pod: "pod" => default,
    multus: "multus" => default,
});
strict_struct!(Multus { network_name: "networkName" => required });
strict_struct!(Volume {
    name: "name" => required,
    cloud_init_no_cloud: "cloudInitNoCloud" => default,
    cloud_init_config_drive: "cloudInitConfigDrive" => default,
});
strict_struct!(CloudInitSource {
    user_data: "userData" => default,
    user_data_base64: "userDataBase64" => default,
    user_data_secret_ref: "userDataSecretRef" => default,
    network_data: "networkData" => default,
    network_data_base64: "networkDataBase64" => default,
    network_data_secret_ref: "networkDataSecretRef" => default,
});
strict_struct!(Devices {
    interfaces: "interfaces" => nullable,
    disks: "disks" => default,
});

/// `domain`, keeping whether `devices` is there (for the disks' patch path).
struct DomainText<'a> {
    devices: Option<Devices<'a>>,
}
strict_struct!(DomainText { devices: "devices" => kept });

/// A VMI spec, keeping which of the lists' parents are there (for patch paths).
struct SpecText<'a> {
    domain: Option<DomainText<'a>>,
    networks: Option<Option<Vec<Network<'a>>>>,
    volumes: Option<Option<Vec<Volume<'a>>>>,
}
strict_struct!(SpecText {
    domain: "domain" => kept,
    networks: "networks" => kept,
    volumes: "volumes" => kept,
});

/// The metadata of a template, as far as it is read: its annotations.
struct MetaText {
    annotations: Option<BTreeMap<String, String>>,
}
strict_struct!(static MetaText { annotations: "annotations" => default });

/// What `spec` holds for any of the kinds (their keys do not overlap): a VMI's spec; a
/// VM's run fields and template; a pool's VM template. Reading all of them for every kind
/// keeps this pass free of the request's kind; one the kind does not read is still checked.
struct SpecNode<'a> {
    vmi: SpecText<'a>,
    running: Option<bool>,
    run_strategy: Option<Cow<'a, str>>,
    template: Option<TemplateNode<'a>>,
    virtual_machine_template: Option<Box<PoolTemplateNode<'a>>>,
}

/// `spec.template` of a VM or VMI ReplicaSet.
struct TemplateNode<'a> {
    metadata: Option<MetaText>,
    spec: Option<SpecText<'a>>,
}
strict_struct!(TemplateNode {
    metadata: "metadata" => kept,
    spec: "spec" => kept,
});

/// `spec.virtualMachineTemplate` of a pool: a VM's metadata and spec.
struct PoolTemplateNode<'a> {
    metadata: Option<MetaText>,
    spec: Option<SpecNode<'a>>,
}
strict_struct!(PoolTemplateNode {
    metadata: "metadata" => kept,
    spec: "spec" => kept,
});

/// The keys of a VMI spec and of a VM spec in one map.
struct SpecFields<'a> {
    domain: Option<DomainText<'a>>,
    networks: Option<Option<Vec<Network<'a>>>>,
    volumes: Option<Option<Vec<Volume<'a>>>>,
    running: Option<bool>,
    run_strategy: Option<Cow<'a, str>>,
    template: Option<TemplateNode<'a>>,
    virtual_machine_template: Option<Box<PoolTemplateNode<'a>>>,
}
strict_struct!(SpecFields {
    domain: "domain" => kept,
    networks: "networks" => kept,
    volumes: "volumes" => kept,
    running: "running" => default,
    run_strategy: "runStrategy" => default,
    template: "template" => kept,
    virtual_machine_template: "virtualMachineTemplate" => kept,
});

impl<'de> Strict<'de> for SpecNode<'de> {
    fn strict<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = SpecFields::strict(d)?;
        Ok(SpecNode {
            vmi: SpecText {
                domain: f.domain,
                networks: f.networks,
                volumes: f.volumes,
            },
            running: f.running,
            run_strategy: f.run_strategy,
            template: f.template,
            virtual_machine_template: f.virtual_machine_template,
        })
    }
}

struct StatusNode {
    created: Option<bool>,
}
strict_struct!(static StatusNode { created: "created" => default });

/// An object of a request as this path reads it: its metadata as the tree path types it
/// (without `managedFields`, see [`Strict`] for `ObjectMeta`), and the parts of `spec` and
/// `status` a guest view needs.
pub struct ObjectText<'a> {
    // Checked to be strings (not `null`), as the tree path reads them; not needed after.
    _api_version: Option<Cow<'a, str>>,
    _kind: Option<Cow<'a, str>>,
    metadata: Option<ObjectMeta>,
    spec: Option<SpecNode<'a>>,
    status: Option<StatusNode>,
}
strict_struct!(ObjectText {
    _api_version: "apiVersion" => kept,
    _kind: "kind" => kept,
    metadata: "metadata" => default,
    spec: "spec" => kept,
    status: "status" => kept,
});

impl<'de> Deserialize<'de> for ObjectText<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::strict(d)
    }
}

/// Why an object read in one pass is left to the tree path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unread {
    /// The kind's VMI spec (or a template around it) is not in the object.
    #[error("the object has no VMI spec where its kind keeps it")]
    NoSpec,
}

/// An object read in one pass: its metadata (without `managedFields`) and the guest view
/// of it.
pub struct Guest<'a> {
    pub metadata: ObjectMeta,
    pub vm: Vm<'a>,
}

impl<'a> ObjectText<'a> {
    /// The guest of a `kind` object: what [`Vm::from_object`] reads from the same object.
    pub fn into_guest(self, kind: Kind) -> Result<Guest<'a>, Unread> {
        let ObjectText {
            metadata,
            spec,
            status,
            ..
        } = self;
        let layout = kind.layout();
        let metadata = metadata.unwrap_or_default();
        let node = spec.ok_or(Unread::NoSpec)?;
        // The kind's template metadata (vm_meta, pod_meta) and VMI spec, and a VM's run
        // fields.
        type Meta = Option<Option<BTreeMap<String, String>>>;
        let (vm_meta, pod_meta, vmi, run): (Meta, Meta, _, _) = match kind {
            Kind::VirtualMachineInstance => (None, None, node.vmi, None),
            Kind::VirtualMachine | Kind::VirtualMachineInstanceReplicaSet => {
                let template = node.template.ok_or(Unread::NoSpec)?;
                let meta = template.metadata.map(|m| m.annotations);
                let vmi = template.spec.ok_or(Unread::NoSpec)?;
                if kind == Kind::VirtualMachine {
                    (None, meta, vmi, Some((node.running, node.run_strategy)))
                } else {
                    (meta.clone(), meta, vmi, None)
                }
            }
            Kind::VirtualMachinePool => {
                let vm_template = node.virtual_machine_template.ok_or(Unread::NoSpec)?;
                let vm_meta = vm_template.metadata.map(|m| m.annotations);
                let vm_spec = vm_template.spec.ok_or(Unread::NoSpec)?;
                let template = vm_spec.template.ok_or(Unread::NoSpec)?;
                let pod_meta = template.metadata.map(|m| m.annotations);
                let vmi = template.spec.ok_or(Unread::NoSpec)?;
                (vm_meta, pod_meta, vmi, None)
            }
        };
        let (annotations, has_annotations) = match layout.vm_meta {
            "/metadata" => own_annotations(&metadata, |k| k.starts_with(annotations::PREFIX)),
            _ => template_annotations(vm_meta, |k| k.starts_with(annotations::PREFIX)),
        };
        let (pod_annotations, _) = match layout.pod_meta {
            "/metadata" => own_annotations(&metadata, |k| k == annotations::MULTUS_NETWORKS),
            _ => template_annotations(pod_meta, |k| k == annotations::MULTUS_NETWORKS),
        };
        let created =
            kind == Kind::VirtualMachine && status.and_then(|s| s.created).unwrap_or(false);
        let (running, run_strategy) = run.unwrap_or_default();
        let (spec, lists) = vmi_spec(vmi, layout);
        let vm = Vm {
            kind,
            layout,
            name: metadata.name.clone().filter(|n| !n.is_empty()),
            generate_name: metadata.generate_name.clone(),
            namespace: metadata.namespace.clone(),
            annotations,
            has_annotations,
            pod_annotations,
            owners: super::owners(&metadata),
            created,
            halted: super::halted(running, run_strategy.as_deref()),
            deleting: metadata.deletion_timestamp.is_some(),
            lists,
            spec,
        };
        Ok(Guest { metadata, vm })
    }
}

/// The annotations kept from the object's own metadata (copied: the metadata moves into
/// the [`Guest`] beside the view).
fn own_annotations<'a>(meta: &ObjectMeta, keep: fn(&str) -> bool) -> (Annotations<'a>, bool) {
    let kept = meta.annotations.iter().flatten().filter(|(k, _)| keep(k));
    (
        kept.map(|(k, v)| (Cow::Owned(k.clone()), Cow::Owned(v.clone())))
            .collect(),
        meta.annotations.is_some(),
    )
}

/// The annotations kept from a template's metadata (`None`: no metadata).
fn template_annotations<'a>(
    meta: Option<Option<BTreeMap<String, String>>>,
    keep: fn(&str) -> bool,
) -> (Annotations<'a>, bool) {
    let map = meta.flatten();
    let has = map.is_some();
    let kept = map.into_iter().flatten().filter(|(k, _)| keep(k));
    (
        kept.map(|(k, v)| (Cow::Owned(k), Cow::Owned(v))).collect(),
        has,
    )
}

/// The VMI spec and the shape of the lists the engine appends to.
fn vmi_spec(text: SpecText<'_>, layout: Layout) -> (VmiSpec<'_>, Lists) {
    // The spec itself is an object here, and so is every parent above it.
    let spec_depth = layout.spec.matches('/').count();
    let domain_there = text.domain.is_some();
    let devices = text.domain.and_then(|d| d.devices);
    let devices_there = devices.is_some();
    let volumes = text.volumes.flatten();
    let lists = Lists {
        volumes: ListShape {
            is_array: volumes.is_some(),
            objects: spec_depth,
        },
        disks: ListShape {
            is_array: devices.as_ref().is_some_and(|d| d.disks.is_some()),
            objects: spec_depth + usize::from(domain_there) + usize::from(devices_there),
        },
    };
    let spec = VmiSpec {
        domain: Domain {
            devices: devices.unwrap_or_default(),
        },
        networks: text.networks.flatten().unwrap_or_default(),
        volumes: volumes.unwrap_or_default(),
    };
    (spec, lists)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(meta: &str) -> serde_json::Result<ObjectMeta> {
        ObjectMeta::strict(&mut serde_json::Deserializer::from_str(meta))
    }

    /// The metadata read in one pass is k8s-openapi's with the managed fields left out, and
    /// what k8s-openapi refuses in the managed fields is refused here too.
    #[test]
    fn metadata_is_k8s_openapis_without_managed_fields() {
        let entry = r#"{"apiVersion":"kubevirt.io/v1","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{".":{},"f:running":{}}},"manager":"kubectl","operation":"Update","subresource":"status","time":"2026-11-01T10:00:00Z","other":[1]}"#;
        for key in ["managedFields", r"managed\u0046ields"] {
            let meta = format!(
                r#"{{"name":"a","namespace":"ns","labels":{{"k":"v"}},"annotations":{{"a\u0062":"\"x\""}},"ownerReferences":[{{"apiVersion":"v1","kind":"K","name":"o","uid":"u"}}],"finalizers":["f"],"creationTimestamp":"2026-11-01T10:00:00Z","generation":3,"resourceVersion":"7","uid":"x","{key}":[{entry},{{}}],"unknown":1}}"#
            );
            let theirs: ObjectMeta = serde_json::from_str(&meta).unwrap();
            assert_eq!(theirs.managed_fields.as_ref().map(Vec::len), Some(2));
            assert_eq!(
                ours(&meta).unwrap(),
                ObjectMeta {
                    managed_fields: None,
                    ..theirs
                },
                "{meta}"
            );
        }
        for bad in [
            r#"{"managedFields":{}}"#,
            r#"{"managedFields":[[]]}"#,
            r#"{"managedFields":[{"time":"yesterday"}]}"#,
            r#"{"managedFields":[{"manager":5}]}"#,
            r#"{"managedFields":[{"fieldsV1":1e400}]}"#,
            r#"{"managedFields":[{"fieldsV1":"\ud800"}]}"#,
        ] {
            assert!(serde_json::from_str::<ObjectMeta>(bad).is_err(), "{bad}");
            assert!(ours(bad).is_err(), "{bad}");
        }
        for good in [
            r#"{"managedFields":null}"#,
            r#"{"managedFields":[]}"#,
            r#"{"managedFields":[{}]}"#,
            r#"{"managedFields":[{"fieldsV1":null,"time":null}]}"#,
        ] {
            assert!(serde_json::from_str::<ObjectMeta>(good).is_ok(), "{good}");
            assert_eq!(ours(good).unwrap(), ObjectMeta::default(), "{good}");
        }
    }
}
