//! The engine's view of the cluster: NADs, and for every VM only what conflict checks need
//! (MACs and requested addresses per NAD). Pure data: [`apply`] fills it from watch events
//! (the server) and [`files`] through the same path from manifests (`serve --nads/--vms`,
//! `review`).
pub mod apply;
pub mod files;

use std::{
    collections::{HashMap, hash_map::Entry},
    net::IpAddr,
    sync::Arc,
};

use kube::core::DynamicObject;

use crate::model::{
    annotations,
    kinds::{self, Kind},
    mac::Mac,
    nad::{Nad, NadRef},
    vm::{self, Vm},
};

/// What one VM NIC on a Multus network claims.
#[derive(Debug, Clone, PartialEq)]
pub struct NicPrint {
    /// `namespace/name` of the NAD.
    pub nad: String,
    pub mac: Option<Mac>,
    /// Addresses requested through the annotation.
    pub addresses: Vec<IpAddr>,
    /// No address requested: the NIC takes the NAD's pinned address, if the NAD pins one.
    pub wants_pinned: bool,
}

/// What a VM claims on Multus networks. Interfaces are paired with networks by name, so a VM
/// not yet mutated contributes what it has (user-set MACs, annotation addresses).
pub fn footprint(vm: &Vm, namespace: &str) -> Vec<NicPrint> {
    let requests = vm
        .annotation(annotations::NETWORKS)
        .and_then(|t| annotations::parse_networks(t).ok())
        .unwrap_or_default();
    vm.networks()
        .iter()
        .filter_map(|net| {
            let nad = net.nad_ref(namespace)?;
            let mac = vm
                .interfaces()
                .iter()
                .find(|i| i.name == net.name)
                .and_then(|i| i.mac_address.as_deref())
                .and_then(Mac::parse);
            let addresses: Vec<IpAddr> = requests
                .get(&net.name)
                .map(|r| r.addresses.iter().map(|a| a.addr()).collect())
                .unwrap_or_default();
            Some(NicPrint {
                nad: nad.to_string(),
                mac,
                wants_pinned: addresses.is_empty(),
                addresses,
            })
        })
        .collect()
}

/// A VM named in an answer; whether to show it is the caller's decision (tenancy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmName<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

/// The VMs holding each MAC or address, in the order they claimed it. Almost every key has
/// one owner, so that one is a plain `u32` beside the key (16 bytes a MAC entry instead of
/// 48 with an enum holding a `Vec`: the MAC index is the largest part of a 100,000-VM cache)
/// and the rare later owners of a shared key are kept aside.
#[derive(Debug)]
struct Owners<K> {
    first: HashMap<K, u32>,
    more: HashMap<K, Vec<u32>>,
}

impl<K> Default for Owners<K> {
    fn default() -> Self {
        Self {
            first: HashMap::new(),
            more: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> Owners<K> {
    fn add(&mut self, k: K, id: u32) {
        match self.first.entry(k) {
            Entry::Vacant(e) => {
                e.insert(id);
            }
            Entry::Occupied(e) if *e.get() == id => {}
            Entry::Occupied(e) => {
                let more = self.more.entry(e.key().clone()).or_default();
                if !more.contains(&id) {
                    more.push(id);
                }
            }
        }
    }

    fn remove(&mut self, k: &K, id: u32) {
        let Some(first) = self.first.get_mut(k) else {
            return;
        };
        let Some(more) = self.more.get_mut(k) else {
            if *first == id {
                self.first.remove(k);
            }
            return;
        };
        if *first == id {
            // The next oldest owner moves up, keeping the claim order.
            *first = more.remove(0);
        } else {
            more.retain(|o| *o != id);
        }
        if more.is_empty() {
            self.more.remove(k);
        }
    }

    /// The oldest owner of `k` that is not `me`.
    fn other_than(&self, k: &K, me: Option<u32>) -> Option<u32> {
        let first = *self.first.get(k)?;
        if Some(first) != me {
            return Some(first);
        }
        self.more.get(k)?.iter().copied().find(|o| Some(*o) != me)
    }
}

#[derive(Debug)]
struct Nic {
    net: u32,
    mac: Option<Mac>,
    addresses: Box<[IpAddr]>,
    wants_pinned: bool,
}

#[derive(Debug)]
struct Slot {
    key: Arc<str>,
    nics: Box<[Nic]>,
}

/// NADs and VM footprints, indexed for the checks of one admission request.
#[derive(Debug, Default)]
pub struct Inventory {
    nads: HashMap<String, Nad>,
    net_ids: HashMap<Box<str>, u32>,
    vms: Vec<Option<Slot>>,
    free: Vec<u32>,
    ids: HashMap<Arc<str>, u32>,
    macs: Owners<(u32, [u8; 6])>,
    addresses: Owners<(u32, IpAddr)>,
    pinned: Owners<u32>,
}

/// A MAC index key: 6 bytes instead of `Mac`'s u64 keep an entry at 16 bytes, not 24.
fn mac_key(net: u32, mac: Mac) -> (u32, [u8; 6]) {
    let b = mac.0.to_be_bytes();
    (net, [b[2], b[3], b[4], b[5], b[6], b[7]])
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The inverse of [`key`]: namespaces and names never hold `/`, so a NAD reference splits
/// the same way.
fn split_key(key: &str) -> (&str, &str) {
    let r = NadRef::resolve(key, kinds::DEFAULT_NAMESPACE);
    (r.namespace, r.name)
}

impl Inventory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn upsert_nad(&mut self, nad: Nad) {
        self.nads.insert(nad.key(), nad);
    }

    pub fn remove_nad(&mut self, namespace: &str, name: &str) {
        self.nads.remove(&key(namespace, name));
    }

    pub fn nad(&self, namespace: &str, name: &str) -> Option<&Nad> {
        self.nads.get(&key(namespace, name))
    }

    pub fn nad_count(&self) -> usize {
        self.nads.len()
    }

    /// VMs holding at least one Multus NIC (the others cannot conflict).
    pub fn vm_count(&self) -> usize {
        self.ids.len()
    }

    /// Adds or replaces a VM (or VMI) object; `namespace` is where it lives.
    pub fn upsert_vm_object(
        &mut self,
        kind: Kind,
        obj: &DynamicObject,
        namespace: &str,
    ) -> Result<(), vm::Error> {
        let vm = Vm::from_object(kind, obj)?;
        let Some(name) = vm.name.as_deref() else {
            return Ok(()); // no identity yet: nothing it claims can be attributed
        };
        self.upsert_vm(namespace, name, footprint(&vm, namespace));
        Ok(())
    }

    /// Adds or replaces a VM's footprint.
    pub fn upsert_vm(&mut self, namespace: &str, name: &str, nics: Vec<NicPrint>) {
        self.remove_vm(namespace, name);
        if nics.is_empty() {
            return;
        }
        let key: Arc<str> = key(namespace, name).into();
        let id = self.free.pop().unwrap_or_else(|| {
            self.vms.push(None);
            (self.vms.len() - 1) as u32
        });
        let nics: Box<[Nic]> = nics
            .into_iter()
            .map(|p| {
                let net = self.net_id(&p.nad);
                Nic {
                    net,
                    mac: p.mac,
                    addresses: p.addresses.into(),
                    wants_pinned: p.wants_pinned,
                }
            })
            .collect();
        for nic in nics.iter() {
            if let Some(mac) = nic.mac {
                self.macs.add(mac_key(nic.net, mac), id);
            }
            for a in nic.addresses.iter() {
                self.addresses.add((nic.net, *a), id);
            }
            if nic.wants_pinned {
                self.pinned.add(nic.net, id);
            }
        }
        self.ids.insert(key.clone(), id);
        self.vms[id as usize] = Some(Slot { key, nics });
    }

    pub fn remove_vm(&mut self, namespace: &str, name: &str) {
        let Some(id) = self.ids.remove(key(namespace, name).as_str()) else {
            return;
        };
        let Some(slot) = self.vms[id as usize].take() else {
            return;
        };
        for nic in slot.nics.iter() {
            if let Some(mac) = nic.mac {
                self.macs.remove(&mac_key(nic.net, mac), id);
            }
            for a in nic.addresses.iter() {
                self.addresses.remove(&(nic.net, *a), id);
            }
            if nic.wants_pinned {
                self.pinned.remove(&nic.net, id);
            }
        }
        self.free.push(id);
    }

    /// Keeps only the NADs for which `keep(namespace, name)` holds: a relist drops the gone.
    pub fn retain_nads(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.nads.retain(|_, nad| keep(&nad.namespace, &nad.name));
    }

    /// Keeps only the VMs for which `keep(namespace, name)` holds: a relist drops the gone.
    pub fn retain_vms(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        let gone: Vec<Arc<str>> = self
            .ids
            .keys()
            .filter(|k| {
                let (namespace, name) = split_key(k);
                !keep(namespace, name)
            })
            .cloned()
            .collect();
        for k in gone {
            let (namespace, name) = split_key(&k);
            self.remove_vm(namespace, name);
        }
    }

    fn net_id(&mut self, nad: &str) -> u32 {
        if let Some(id) = self.net_ids.get(nad) {
            return *id;
        }
        let id = self.net_ids.len() as u32;
        self.net_ids.insert(nad.into(), id);
        id
    }

    fn id_of(&self, me: VmName<'_>) -> Option<u32> {
        self.ids.get(key(me.namespace, me.name).as_str()).copied()
    }

    fn name_of(&self, id: u32) -> VmName<'_> {
        let key = &self.vms[id as usize]
            .as_ref()
            .expect("indexed VMs have slots")
            .key;
        let (namespace, name) = split_key(key);
        VmName { namespace, name }
    }

    fn lookup<K: std::hash::Hash + Eq + Clone>(
        &self,
        index: &Owners<K>,
        k: Option<K>,
        me: VmName<'_>,
    ) -> Option<VmName<'_>> {
        index
            .other_than(&k?, self.id_of(me))
            .map(|id| self.name_of(id))
    }

    /// Another VM whose NIC on `nad` (`namespace/name`) has `mac`.
    pub fn mac_user(&self, nad: &str, mac: Mac, me: VmName<'_>) -> Option<VmName<'_>> {
        let net = self.net_ids.get(nad).copied();
        self.lookup(&self.macs, net.map(|n| mac_key(n, mac)), me)
    }

    /// Another VM that requested `address` on `nad`.
    pub fn address_user(&self, nad: &str, address: IpAddr, me: VmName<'_>) -> Option<VmName<'_>> {
        let net = self.net_ids.get(nad).copied();
        self.lookup(&self.addresses, net.map(|n| (n, address)), me)
    }

    /// Another VM on `nad` that requested no address, and so takes the NAD's pinned one.
    pub fn pinned_user(&self, nad: &str, me: VmName<'_>) -> Option<VmName<'_>> {
        let net = self.net_ids.get(nad).copied();
        self.lookup(&self.pinned, net, me)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(nad: &str, mac: Option<&str>, addrs: &[&str]) -> NicPrint {
        NicPrint {
            nad: nad.into(),
            mac: mac.map(|m| Mac::parse(m).unwrap()),
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            wants_pinned: addrs.is_empty(),
        }
    }

    const ME: VmName<'static> = VmName {
        namespace: "a",
        name: "me",
    };

    #[test]
    fn other_vms_are_found_and_self_is_not() {
        let mut inv = Inventory::new();
        let mac = Mac::parse("02:00:00:00:00:01").unwrap();
        inv.upsert_vm(
            "a",
            "me",
            vec![nic("x/n", Some("02:00:00:00:00:01"), &["10.0.0.1"])],
        );
        assert_eq!(inv.mac_user("x/n", mac, ME), None);
        inv.upsert_vm(
            "b",
            "other",
            vec![nic("x/n", Some("02:00:00:00:00:01"), &["10.0.0.1"])],
        );
        let other = VmName {
            namespace: "b",
            name: "other",
        };
        assert_eq!(inv.mac_user("x/n", mac, ME), Some(other));
        assert_eq!(
            inv.address_user("x/n", "10.0.0.1".parse().unwrap(), ME),
            Some(other)
        );
        // Another NAD is another network.
        assert_eq!(inv.mac_user("x/m", mac, ME), None);
        inv.remove_vm("b", "other");
        assert_eq!(inv.mac_user("x/n", mac, ME), None);
        assert_eq!(
            inv.address_user("x/n", "10.0.0.1".parse().unwrap(), ME),
            None
        );
    }

    #[test]
    fn update_replaces_the_old_footprint() {
        let mut inv = Inventory::new();
        inv.upsert_vm("b", "o", vec![nic("x/n", Some("02:00:00:00:00:01"), &[])]);
        assert!(inv.pinned_user("x/n", ME).is_some());
        inv.upsert_vm(
            "b",
            "o",
            vec![nic("x/n", Some("02:00:00:00:00:02"), &["10.0.0.9"])],
        );
        assert!(inv.pinned_user("x/n", ME).is_none());
        assert!(
            inv.mac_user("x/n", Mac::parse("02:00:00:00:00:01").unwrap(), ME)
                .is_none()
        );
        assert!(
            inv.mac_user("x/n", Mac::parse("02:00:00:00:00:02").unwrap(), ME)
                .is_some()
        );
        inv.upsert_vm("b", "o", vec![]);
        assert_eq!(inv.vm_count(), 0);
    }

    #[test]
    fn shared_owners_survive_partial_removal() {
        let mut inv = Inventory::new();
        let m = Mac::parse("02:00:00:00:00:01").unwrap();
        for name in ["p", "q", "r"] {
            inv.upsert_vm("b", name, vec![nic("x/n", Some("02:00:00:00:00:01"), &[])]);
        }
        inv.remove_vm("b", "p");
        inv.remove_vm("b", "q");
        assert_eq!(
            inv.mac_user("x/n", m, ME),
            Some(VmName {
                namespace: "b",
                name: "r"
            })
        );
        assert_eq!(
            inv.mac_user(
                "x/n",
                m,
                VmName {
                    namespace: "b",
                    name: "r"
                }
            ),
            None
        );
    }

    #[test]
    fn retain_drops_what_a_relist_did_not_see() {
        let mut inv = Inventory::new();
        let m = Mac::parse("02:00:00:00:00:01").unwrap();
        inv.upsert_vm("b", "p", vec![nic("x/n", Some("02:00:00:00:00:01"), &[])]);
        inv.upsert_vm("b", "q", vec![nic("x/n", None, &["10.0.0.2"])]);
        inv.upsert_nad(Nad::from_config("x", "n", ""));
        inv.upsert_nad(Nad::from_config("x", "m", ""));
        inv.retain_vms(|ns, name| (ns, name) == ("b", "q"));
        inv.retain_nads(|ns, name| (ns, name) == ("x", "m"));
        assert_eq!((inv.vm_count(), inv.nad_count()), (1, 1));
        assert!(inv.mac_user("x/n", m, ME).is_none());
        assert!(
            inv.address_user("x/n", "10.0.0.2".parse().unwrap(), ME)
                .is_some()
        );
        assert!(inv.nad("x", "m").is_some() && inv.nad("x", "n").is_none());
    }

    #[test]
    fn shared_keys_name_the_oldest_other_owner() {
        let mut inv = Inventory::new();
        let m = Mac::parse("02:00:00:00:00:01").unwrap();
        let vm = |name| VmName {
            namespace: "b",
            name,
        };
        for name in ["p", "q", "r", "s"] {
            inv.upsert_vm(
                "b",
                name,
                vec![nic("x/n", Some("02:00:00:00:00:01"), &["10.0.0.1"])],
            );
        }
        assert_eq!(inv.mac_user("x/n", m, ME), Some(vm("p")));
        assert_eq!(inv.mac_user("x/n", m, vm("p")), Some(vm("q")));
        inv.remove_vm("b", "q"); // from the middle
        assert_eq!(inv.mac_user("x/n", m, vm("p")), Some(vm("r")));
        inv.remove_vm("b", "p"); // the first: the next oldest moves up
        assert_eq!(inv.mac_user("x/n", m, ME), Some(vm("r")));
        assert_eq!(inv.mac_user("x/n", m, vm("r")), Some(vm("s")));
        // Re-adding an owner does not duplicate it.
        inv.upsert_vm(
            "b",
            "r",
            vec![nic("x/n", Some("02:00:00:00:00:01"), &["10.0.0.1"])],
        );
        inv.remove_vm("b", "s");
        assert_eq!(inv.mac_user("x/n", m, vm("r")), None);
        assert_eq!(
            inv.address_user("x/n", "10.0.0.1".parse().unwrap(), ME),
            Some(vm("r"))
        );
        inv.remove_vm("b", "r");
        assert!(inv.macs.first.is_empty() && inv.macs.more.is_empty());
        assert!(inv.addresses.first.is_empty() && inv.addresses.more.is_empty());
        assert!(inv.pinned.first.is_empty() && inv.pinned.more.is_empty());
    }

    #[test]
    fn footprint_of_a_vm_object() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "v", "namespace": "t", "annotations": {annotations::NETWORKS: "{\"ext\": \"10.0.0.5/24\"}"}},
            "spec": {"template": {"spec": {
                "domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}}, {"name": "ext", "bridge": {}, "macAddress": "02:aa:bb:cc:dd:ee"}]}},
                "networks": [{"name": "default", "pod": {}}, {"name": "ext", "multus": {"networkName": "infra/ext-nad"}}]}}}
        })).unwrap();
        let mut inv = Inventory::new();
        inv.upsert_vm_object(Kind::VirtualMachine, &obj, "t")
            .unwrap();
        let who = inv.address_user("infra/ext-nad", "10.0.0.5".parse().unwrap(), ME);
        assert_eq!(
            who,
            Some(VmName {
                namespace: "t",
                name: "v"
            })
        );
        assert!(
            inv.mac_user(
                "infra/ext-nad",
                Mac::parse("02:aa:bb:cc:dd:ee").unwrap(),
                ME
            )
            .is_some()
        );
    }
}
