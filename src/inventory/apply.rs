//! Watch events in, inventory changed: the pure part of the caches (SPEC §3). VM objects are
//! projected to their footprint and dropped at once, so 100,000 VMs cost megabytes, not
//! gigabytes. The server's watch loop ([`crate::server::cache`]) and the file loader
//! ([`super::files`]) both go through [`Applier`].
use std::collections::HashSet;

use kube::{
    api::{ApiResource, DynamicObject, GroupVersionKind},
    runtime::watcher::Event,
};

use super::{
    Inventory,
    entry::{Content, Entry},
};
use crate::model::kinds::Kind;

/// The cached resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cached {
    /// NetworkAttachmentDefinitions, whole (reduced to what the checks read).
    Nad,
    /// VirtualMachines, as footprints.
    Vm,
    /// Standalone VirtualMachineInstances, as footprints: they hold MACs and addresses too
    /// (a VMI KubeVirt made for a VM is left to its VM).
    Vmi,
}

impl Cached {
    /// The `kind` label of the cache metrics.
    pub fn label(self) -> &'static str {
        match self {
            Cached::Nad => "nad",
            Cached::Vm => "vm",
            Cached::Vmi => "vmi",
        }
    }

    pub fn api_resource(self) -> ApiResource {
        let (group, version, kind, plural) = match self {
            Cached::Nad => (NAD_GROUP, "v1", NAD_KIND, "network-attachment-definitions"),
            Cached::Vm | Cached::Vmi => {
                let k = self.guest_kind();
                (k.group(), k.version(), k.name(), k.resource())
            }
        };
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    }

    /// Whether a manifest (`apiVersion`, `kind`) is of this resource.
    pub fn matches(self, api_version: &str, kind: &str) -> bool {
        match self {
            Cached::Nad => kind == NAD_KIND && api_version.starts_with(&format!("{NAD_GROUP}/")),
            Cached::Vm | Cached::Vmi => {
                Kind::of_manifest(api_version, kind) == Some(self.guest_kind())
            }
        }
    }

    /// The guest kind of a guest cache (`Nad` has none; it is never asked).
    pub(crate) fn guest_kind(self) -> Kind {
        match self {
            Cached::Vmi => Kind::VirtualMachineInstance,
            _ => Kind::VirtualMachine,
        }
    }

    /// How many objects of this resource the inventory holds (VMs: those with a Multus NIC).
    pub fn count(self, inventory: &Inventory) -> usize {
        match self {
            Cached::Nad => inventory.nad_count(),
            Cached::Vm | Cached::Vmi => inventory.guest_count(self.guest_kind()),
        }
    }
}

/// The NetworkAttachmentDefinition API group and kind.
pub const NAD_GROUP: &str = "k8s.cni.cncf.io";
pub const NAD_KIND: &str = "NetworkAttachmentDefinition";

/// An object the cache cannot read; it is left out of (or removed from) the cache.
#[derive(Debug, thiserror::Error)]
#[error("{kind} {namespace}/{name}: {message}")]
pub struct Error {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub message: String,
}

/// Applies one resource's watch events to an [`Inventory`].
#[derive(Debug)]
pub struct Applier {
    cached: Cached,
    /// `namespace/name` of the objects listed since the last `Init`.
    relist: Option<HashSet<String>>,
    synced: bool,
}

impl Applier {
    pub fn new(cached: Cached) -> Self {
        Self {
            cached,
            relist: None,
            synced: false,
        }
    }

    /// An applier for a list started over after one that failed: synced if the cache was,
    /// since the cache keeps what it had.
    pub fn resumed(cached: Cached, synced: bool) -> Self {
        Self {
            synced,
            ..Self::new(cached)
        }
    }

    pub fn cached(&self) -> Cached {
        self.cached
    }

    /// True once a full list has been applied.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Applies one event. An object that cannot be read is removed from the cache (its old
    /// footprint is stale) and reported; the cache stays consistent either way.
    pub fn apply(
        &mut self,
        inventory: &mut Inventory,
        event: Event<DynamicObject>,
    ) -> Result<(), Error> {
        let read = |obj: DynamicObject| Entry::from_object(self.cached, &obj);
        let event = match event {
            Event::Init => Event::Init,
            Event::InitApply(obj) => Event::InitApply(read(obj)),
            Event::InitDone => Event::InitDone,
            Event::Apply(obj) => Event::Apply(read(obj)),
            Event::Delete(obj) => Event::Delete(read(obj)),
        };
        self.apply_entry(inventory, event)
    }

    /// [`Applier::apply`] for objects read already (list items are read straight from their
    /// JSON, [`Entry::from_json`]).
    pub fn apply_entry(
        &mut self,
        inventory: &mut Inventory,
        event: Event<Entry>,
    ) -> Result<(), Error> {
        match event {
            Event::Init => {
                self.relist = Some(HashSet::new());
                Ok(())
            }
            Event::InitApply(entry) => {
                if let Some(seen) = &mut self.relist {
                    seen.insert(format!("{}/{}", entry.namespace, entry.name));
                }
                self.upsert(inventory, entry)
            }
            Event::InitDone => {
                // Objects deleted while the watch was down are the ones the relist missed.
                if let Some(seen) = self.relist.take() {
                    let keep = |ns: &str, name: &str| seen.contains(&format!("{ns}/{name}"));
                    match self.cached {
                        Cached::Nad => inventory.retain_nads(keep),
                        Cached::Vm | Cached::Vmi => {
                            inventory.retain_guests(self.cached.guest_kind(), keep)
                        }
                    }
                }
                self.synced = true;
                Ok(())
            }
            Event::Apply(entry) => self.upsert(inventory, entry),
            Event::Delete(entry) => {
                self.remove(inventory, &entry.namespace, &entry.name);
                Ok(())
            }
        }
    }

    fn remove(&self, inventory: &mut Inventory, namespace: &str, name: &str) {
        match self.cached {
            Cached::Nad => inventory.remove_nad(namespace, name),
            Cached::Vm | Cached::Vmi => {
                inventory.remove_guest(self.cached.guest_kind(), namespace, name)
            }
        }
    }

    fn upsert(&self, inventory: &mut Inventory, entry: Entry) -> Result<(), Error> {
        let Entry {
            namespace,
            name,
            content,
        } = entry;
        match content {
            Ok(Content::Nad(nad)) => inventory.upsert_nad(*nad),
            Ok(Content::Guest(nics)) => {
                inventory.upsert_guest(self.cached.guest_kind(), &namespace, &name, nics)
            }
            Ok(Content::Nothing) => {}
            Err(message) => {
                self.remove(inventory, &namespace, &name);
                return Err(Error {
                    kind: self.cached.label(),
                    namespace,
                    name,
                    message,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use serde_json::Value;

    use super::*;
    use crate::{
        admission::{self, Endpoint},
        model::config::Config,
    };

    fn obj(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    fn nad(name: &str, cni: &str) -> DynamicObject {
        obj(json!({
            "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": "infra", "managedFields": [{"manager": "kubectl"}]},
            "spec": {"config": format!("{{\"cniVersion\":\"0.3.1\",\"type\":\"{cni}\"}}")}
        }))
    }

    fn vm(name: &str, mac: Option<&str>) -> Value {
        let mut iface = json!({"name": "ext", "bridge": {}});
        if let Some(mac) = mac {
            iface["macAddress"] = json!(mac);
        }
        json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": "t"},
            "spec": {"template": {"spec": {
                "domain": {"devices": {"interfaces": [iface]}},
                "networks": [{"name": "ext", "multus": {"networkName": "infra/ext"}}]}}}
        })
    }

    /// The /validate answer for `object`: (allowed, message).
    fn validate(inventory: &Inventory, object: &Value) -> (bool, String) {
        let answer = admission::Parsed::manifest(object, None).unwrap().answer(
            Endpoint::Validate,
            inventory,
            &Config::default(),
        );
        (answer.allowed(), answer.message().to_string())
    }

    #[test]
    fn nad_events_change_the_answers() {
        let mut inv = Inventory::new();
        let mut nads = Applier::new(Cached::Nad);
        let me = vm("me", None);
        assert!(validate(&inv, &me).0, "a missing NAD only warns");
        nads.apply(&mut inv, Event::Apply(nad("ext", "macvlan")))
            .unwrap();
        let (allowed, message) = validate(&inv, &me);
        assert!(!allowed && message.contains("macvlan"), "{message}");
        nads.apply(&mut inv, Event::Apply(nad("ext", "bridge")))
            .unwrap();
        assert!(validate(&inv, &me).0, "updated to a bridge NAD");
        nads.apply(&mut inv, Event::Apply(nad("ext", "ipvlan")))
            .unwrap();
        assert!(!validate(&inv, &me).0);
        nads.apply(&mut inv, Event::Delete(nad("ext", "ipvlan")))
            .unwrap();
        assert!(validate(&inv, &me).0, "deleted");
        assert_eq!(inv.nad_count(), 0);

        // A relist brings back what exists and drops what no longer does.
        nads.apply(&mut inv, Event::Apply(nad("stale", "bridge")))
            .unwrap();
        assert!(!nads.synced());
        for event in [
            Event::Init,
            Event::InitApply(nad("ext", "macvlan")),
            Event::InitDone,
        ] {
            nads.apply(&mut inv, event).unwrap();
        }
        assert!(nads.synced());
        assert!(!validate(&inv, &me).0);
        assert!(inv.nad("infra", "stale").is_none() && inv.nad_count() == 1);
        for event in [Event::Init, Event::InitDone] {
            nads.apply(&mut inv, event).unwrap();
        }
        assert!(validate(&inv, &me).0 && inv.nad_count() == 0);
    }

    /// `vm(name, mac)` as a VirtualMachineInstance; `owned`: one KubeVirt made for VM `name`.
    fn vmi(name: &str, mac: &str, owned: bool) -> DynamicObject {
        let vm = vm(name, Some(mac));
        let mut meta = vm["metadata"].clone();
        if owned {
            meta["ownerReferences"] = json!([{"apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachine", "name": name, "uid": "u", "controller": true}]);
        }
        obj(
            json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": meta, "spec": vm["spec"]["template"]["spec"]}),
        )
    }

    #[test]
    fn standalone_vmis_hold_their_macs_and_a_vms_own_vmi_is_left_to_it() {
        let mut inv = Inventory::new();
        Applier::new(Cached::Nad)
            .apply(&mut inv, Event::Apply(nad("ext", "bridge")))
            .unwrap();
        let mut vms = Applier::new(Cached::Vm);
        let mut vmis = Applier::new(Cached::Vmi);
        vms.apply(
            &mut inv,
            Event::Apply(obj(vm("web", Some("02:00:00:00:00:01")))),
        )
        .unwrap();
        // The VM's own VMI (same MAC) is not a second holder; the standalone one is.
        vmis.apply(
            &mut inv,
            Event::Apply(vmi("web", "02:00:00:00:00:01", true)),
        )
        .unwrap();
        vmis.apply(
            &mut inv,
            Event::Apply(vmi("lone", "02:00:00:00:00:02", false)),
        )
        .unwrap();
        assert_eq!((Cached::Vm.count(&inv), Cached::Vmi.count(&inv)), (1, 1));
        assert_eq!(inv.conflicts(), Default::default());
        let (allowed, message) = validate(&inv, &vm("later", Some("02:00:00:00:00:02")));
        assert!(!allowed && message.contains("\"lone\""), "{message}");
        // The VMIs' relist keeps the VMs, and the VMs' relist keeps the VMIs.
        for event in [Event::Init, Event::InitDone] {
            vmis.apply(&mut inv, event).unwrap();
        }
        assert_eq!((Cached::Vm.count(&inv), Cached::Vmi.count(&inv)), (1, 0));
        vmis.apply(
            &mut inv,
            Event::Apply(vmi("lone", "02:00:00:00:00:02", false)),
        )
        .unwrap();
        for event in [Event::Init, Event::InitDone] {
            vms.apply(&mut inv, event).unwrap();
        }
        assert_eq!((Cached::Vm.count(&inv), Cached::Vmi.count(&inv)), (0, 1));
        // A VMI deleted under the name of a VM leaves the VM's footprint alone.
        vms.apply(
            &mut inv,
            Event::Apply(obj(vm("lone", Some("02:00:00:00:00:03")))),
        )
        .unwrap();
        vmis.apply(
            &mut inv,
            Event::Delete(vmi("lone", "02:00:00:00:00:02", false)),
        )
        .unwrap();
        assert_eq!((Cached::Vm.count(&inv), Cached::Vmi.count(&inv)), (1, 0));
    }

    #[test]
    fn vm_events_change_the_conflict_answers() {
        let mut inv = Inventory::new();
        Applier::new(Cached::Nad)
            .apply(&mut inv, Event::Apply(nad("ext", "bridge")))
            .unwrap();
        let mut vms = Applier::new(Cached::Vm);
        let mac = "02:aa:00:00:00:01";
        let me = vm("me", Some(mac));
        assert!(validate(&inv, &me).0);

        vms.apply(&mut inv, Event::Apply(obj(vm("other", Some(mac)))))
            .unwrap();
        assert!(!validate(&inv, &me).0, "MAC held by another VM");
        vms.apply(
            &mut inv,
            Event::Apply(obj(vm("other", Some("02:aa:00:00:00:02")))),
        )
        .unwrap();
        assert!(validate(&inv, &me).0, "the other VM changed its MAC");
        vms.apply(&mut inv, Event::Apply(obj(vm("other", Some(mac)))))
            .unwrap();
        vms.apply(&mut inv, Event::Delete(obj(vm("other", Some(mac)))))
            .unwrap();
        assert!(validate(&inv, &me).0, "the other VM is gone");

        // Relist: `other` was deleted while the watch was down, `third` was created.
        vms.apply(&mut inv, Event::Apply(obj(vm("other", Some(mac)))))
            .unwrap();
        for event in [
            Event::Init,
            Event::InitApply(obj(vm("third", Some("02:aa:00:00:00:03")))),
            Event::InitDone,
        ] {
            vms.apply(&mut inv, event).unwrap();
        }
        assert!(validate(&inv, &me).0);
        assert_eq!(inv.vm_count(), 1);
        assert!(!validate(&inv, &vm("me", Some("02:aa:00:00:00:03"))).0);

        // An object that no longer decodes loses its stale footprint and is reported.
        let mut broken = vm("third", None);
        broken["spec"]["template"]["spec"]["networks"] = json!("not a list");
        let e = vms.apply(&mut inv, Event::Apply(obj(broken))).unwrap_err();
        assert!(e.to_string().contains("t/third"), "{e}");
        assert_eq!(inv.vm_count(), 0);
    }
}
