//! The engine's view of the cluster: NADs, and for every VM only what conflict checks need
//! (MACs and requested addresses per NAD). Pure data: the server fills it from watches, the
//! `review` command from files.
use std::{collections::HashMap, net::IpAddr, sync::Arc};

use serde_json::Value;

use crate::{
    annotations,
    mac::Mac,
    nad::Nad,
    vm::{VirtualMachine, split_nad_ref},
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
pub fn footprint(vm: &VirtualMachine, namespace: &str) -> Vec<NicPrint> {
    let requests = vm
        .annotation(annotations::NETWORKS)
        .and_then(|t| annotations::parse_networks(t).ok())
        .unwrap_or_default();
    vm.networks()
        .iter()
        .filter_map(|net| {
            let (ns, name) = net.nad_ref(namespace)?;
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
                nad: format!("{ns}/{name}"),
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

/// One or more VMs holding the same MAC or address; almost always one.
#[derive(Debug, Clone)]
enum Owners {
    One(u32),
    Many(Vec<u32>),
}

impl Owners {
    fn add(&mut self, id: u32) {
        match self {
            Owners::One(o) if *o == id => {}
            Owners::One(o) => *self = Owners::Many(vec![*o, id]),
            Owners::Many(v) if !v.contains(&id) => v.push(id),
            Owners::Many(_) => {}
        }
    }

    /// Removes `id`; true when nobody is left.
    fn remove(&mut self, id: u32) -> bool {
        match self {
            Owners::One(o) => *o == id,
            Owners::Many(v) => {
                v.retain(|o| *o != id);
                let empty = v.is_empty();
                if let [only] = v[..] {
                    *self = Owners::One(only);
                }
                empty
            }
        }
    }

    fn other_than(&self, id: Option<u32>) -> Option<u32> {
        match self {
            Owners::One(o) => (Some(*o) != id).then_some(*o),
            Owners::Many(v) => v.iter().copied().find(|o| Some(*o) != id),
        }
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
    macs: HashMap<(u32, Mac), Owners>,
    addresses: HashMap<(u32, IpAddr), Owners>,
    pinned: HashMap<u32, Owners>,
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
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

    /// Adds or replaces a VM object; `default_namespace` applies when it has none.
    pub fn upsert_vm_object(&mut self, obj: &Value, default_namespace: &str) -> Result<(), String> {
        let vm = VirtualMachine::from_value(obj).map_err(|e| e.to_string())?;
        let namespace = vm
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(default_namespace);
        let Some(name) = vm.metadata.name.as_deref() else {
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
                add_owner(&mut self.macs, (nic.net, mac), id);
            }
            for a in nic.addresses.iter() {
                add_owner(&mut self.addresses, (nic.net, *a), id);
            }
            if nic.wants_pinned {
                add_owner(&mut self.pinned, nic.net, id);
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
                remove_owner(&mut self.macs, (nic.net, mac), id);
            }
            for a in nic.addresses.iter() {
                remove_owner(&mut self.addresses, (nic.net, *a), id);
            }
            if nic.wants_pinned {
                remove_owner(&mut self.pinned, nic.net, id);
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
                let (namespace, name) = split_nad_ref(k, "");
                !keep(namespace, name)
            })
            .cloned()
            .collect();
        for k in gone {
            let (namespace, name) = split_nad_ref(&k, "");
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
        let (namespace, name) = split_nad_ref(key, "");
        VmName { namespace, name }
    }

    fn lookup<K: std::hash::Hash + Eq>(
        &self,
        index: &HashMap<K, Owners>,
        k: Option<K>,
        me: VmName<'_>,
    ) -> Option<VmName<'_>> {
        let owners = index.get(&k?)?;
        owners.other_than(self.id_of(me)).map(|id| self.name_of(id))
    }

    /// Another VM whose NIC on `nad` (`namespace/name`) has `mac`.
    pub fn mac_user(&self, nad: &str, mac: Mac, me: VmName<'_>) -> Option<VmName<'_>> {
        let net = self.net_ids.get(nad).copied();
        self.lookup(&self.macs, net.map(|n| (n, mac)), me)
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

fn add_owner<K: std::hash::Hash + Eq>(index: &mut HashMap<K, Owners>, k: K, id: u32) {
    index
        .entry(k)
        .and_modify(|o| o.add(id))
        .or_insert(Owners::One(id));
}

fn remove_owner<K: std::hash::Hash + Eq>(index: &mut HashMap<K, Owners>, k: K, id: u32) {
    if let std::collections::hash_map::Entry::Occupied(mut e) = index.entry(k)
        && e.get_mut().remove(id)
    {
        e.remove();
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
    fn footprint_of_a_vm_object() {
        let obj = serde_json::json!({
            "metadata": {"name": "v", "namespace": "t", "annotations": {annotations::NETWORKS: "{\"ext\": \"10.0.0.5/24\"}"}},
            "spec": {"template": {"spec": {
                "domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}}, {"name": "ext", "bridge": {}, "macAddress": "02:aa:bb:cc:dd:ee"}]}},
                "networks": [{"name": "default", "pod": {}}, {"name": "ext", "multus": {"networkName": "infra/ext-nad"}}]}}}
        });
        let mut inv = Inventory::new();
        inv.upsert_vm_object(&obj, "default").unwrap();
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
