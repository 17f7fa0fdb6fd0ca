//! The engine's view of the cluster: NADs, and for every VM only what conflict checks need
//! (MACs and requested addresses per NAD). Pure data: [`apply`] fills it from watch events
//! (the server) and [`files`] through the same path from manifests (`serve --nads/--vms`,
//! `review`).
pub mod apply;
pub mod entry;
pub mod files;

use std::{
    collections::{BTreeMap, BTreeSet, hash_map::Entry},
    fmt,
    net::IpAddr,
    sync::Arc,
};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use kube::core::DynamicObject;

use crate::model::{
    annotations,
    kinds::{self, Kind},
    mac::Mac,
    nad::{Nad, NadRef},
    vm::{self, Interface, Network, Vm},
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
    footprint_of(
        vm.networks(),
        vm.interfaces(),
        vm.annotation(annotations::NETWORKS),
        namespace,
    )
}

/// [`footprint`] from the parts it reads: the VMI spec's networks and interfaces, and the
/// webhook's networks annotation.
pub fn footprint_of(
    networks: &[Network],
    interfaces: &[Interface],
    networks_annotation: Option<&str>,
    namespace: &str,
) -> Vec<NicPrint> {
    let requests = networks_annotation
        .and_then(|t| annotations::parse_networks(t).ok())
        .unwrap_or_default();
    networks
        .iter()
        .filter_map(|net| {
            let nad = net.nad_ref(namespace)?;
            let mac = interfaces
                .iter()
                .find(|i| i.name == net.name)
                .and_then(|i| i.mac_address.as_deref())
                .and_then(Mac::parse);
            let request = requests.get(net.name.as_ref());
            let addresses: Vec<IpAddr> = request
                .map(|r| r.addresses.iter().map(|a| a.addr()).collect())
                .unwrap_or_default();
            Some(NicPrint {
                nad: nad.to_string(),
                mac,
                // `"dhcp"` asks for no address, the pinned one included.
                wants_pinned: addresses.is_empty() && !request.is_some_and(|r| r.dhcp),
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

/// What [`Owners::add`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Added {
    /// The key had no owner.
    New,
    /// The key had other owners: it is shared now.
    Shared,
    /// `id` owned the key already.
    Already,
}

impl<K: std::hash::Hash + Eq + Clone> Owners<K> {
    fn add(&mut self, k: K, id: u32) -> Added {
        match self.first.entry(k) {
            Entry::Vacant(e) => {
                e.insert(id);
                Added::New
            }
            Entry::Occupied(e) if *e.get() == id => Added::Already,
            Entry::Occupied(e) => {
                let more = self.more.entry(e.key().clone()).or_default();
                if more.contains(&id) {
                    Added::Already
                } else {
                    more.push(id);
                    Added::Shared
                }
            }
        }
    }

    /// Removes `id` from the owners of `k`; true when `k` has no owner left.
    fn remove(&mut self, k: &K, id: u32) -> bool {
        let Some(first) = self.first.get_mut(k) else {
            return false;
        };
        let Some(more) = self.more.get_mut(k) else {
            if *first == id {
                self.first.remove(k);
                return true;
            }
            return false;
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
        false
    }

    /// Every owner of `k`, oldest first.
    fn all(&self, k: &K) -> impl Iterator<Item = u32> + '_ {
        self.first
            .get(k)
            .copied()
            .into_iter()
            .chain(self.more.get(k).into_iter().flatten().copied())
    }

    /// How many keys have more than one owner.
    fn shared(&self) -> usize {
        self.more.len()
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

/// One NIC as the cache keeps it: 32 bytes (a MAC as 6 bytes, not `Mac`'s 16 with its tag).
#[derive(Debug)]
struct Nic {
    addresses: Box<[IpAddr]>,
    net: u32,
    mac: Option<[u8; 6]>,
    wants_pinned: bool,
}

#[derive(Debug)]
struct Slot {
    key: Arc<str>,
    nics: Box<[Nic]>,
    /// A VM, or a standalone VMI (one KubeVirt made for a VM is the VM's).
    kind: Kind,
}

/// The addresses held on one NAD as stretches of two or more consecutive addresses
/// (first → last), so that the next free address after a long taken stretch is found in one
/// step (SPEC §2.10: a nearly full pool). A lone address costs nothing here (the owner index
/// knows it); a filled stretch costs one entry.
#[derive(Debug, Default)]
struct Runs {
    v4: BTreeMap<u32, u32>,
    v6: BTreeMap<u128, u128>,
}

/// An address as a number one can step from.
trait Point: Ord + Copy {
    fn succ(self) -> Option<Self>;
    fn pred(self) -> Option<Self>;
}

impl Point for u32 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

impl Point for u128 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

/// The stretch of `runs` holding `x`: `(first, last)`.
fn run_of<T: Point>(runs: &BTreeMap<T, T>, x: T) -> Option<(T, T)> {
    runs.range(..=x)
        .next_back()
        .filter(|(_, last)| **last >= x)
        .map(|(first, last)| (*first, *last))
}

/// `x` has just become held (`held` tells which addresses are, `x` included): joins it with
/// the held addresses on either side.
fn run_insert<T: Point>(runs: &mut BTreeMap<T, T>, x: T, held: impl Fn(T) -> bool) {
    let first = match x.pred().filter(|p| held(*p)) {
        Some(p) => run_of(runs, p).map_or(p, |(first, _)| first),
        None => x,
    };
    let last = match x.succ().filter(|n| held(*n)) {
        Some(n) => runs.remove(&n).unwrap_or(n),
        None => x,
    };
    if first != last {
        runs.insert(first, last);
    }
}

/// `x` is no longer held: splits its stretch, dropping pieces of one address.
fn run_remove<T: Point>(runs: &mut BTreeMap<T, T>, x: T) {
    let Some((first, last)) = run_of(runs, x) else {
        return;
    };
    runs.remove(&first);
    if let Some(p) = x.pred().filter(|p| *p > first) {
        runs.insert(first, p);
    }
    if let Some(n) = x.succ().filter(|n| *n < last) {
        runs.insert(n, last);
    }
}

impl Runs {
    fn insert(&mut self, ip: IpAddr, held: impl Fn(IpAddr) -> bool) {
        match ip {
            IpAddr::V4(a) => run_insert(&mut self.v4, u32::from(a), |x| held(IpAddr::V4(x.into()))),
            IpAddr::V6(a) => {
                run_insert(&mut self.v6, u128::from(a), |x| held(IpAddr::V6(x.into())))
            }
        }
    }

    fn remove(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => run_remove(&mut self.v4, u32::from(a)),
            IpAddr::V6(a) => run_remove(&mut self.v6, u128::from(a)),
        }
    }

    /// The last address of the stretch holding `ip`, if it is in one.
    fn last_of(&self, ip: IpAddr) -> Option<IpAddr> {
        match ip {
            IpAddr::V4(a) => run_of(&self.v4, u32::from(a)).map(|(_, l)| IpAddr::V4(l.into())),
            IpAddr::V6(a) => run_of(&self.v6, u128::from(a)).map(|(_, l)| IpAddr::V6(l.into())),
        }
    }

    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

/// The owners of each address on each NAD, IPv4 and IPv6 apart: an IPv4 entry takes 12
/// bytes, not the 28 of a key holding an `IpAddr`.
#[derive(Debug, Default)]
struct AddressOwners {
    v4: Owners<(u32, u32)>,
    v6: Owners<(u32, [u8; 16])>,
}

impl AddressOwners {
    fn add(&mut self, net: u32, ip: IpAddr, id: u32) -> Added {
        match ip {
            IpAddr::V4(a) => self.v4.add((net, a.into()), id),
            IpAddr::V6(a) => self.v6.add((net, a.octets()), id),
        }
    }

    fn remove(&mut self, net: u32, ip: IpAddr, id: u32) -> bool {
        match ip {
            IpAddr::V4(a) => self.v4.remove(&(net, a.into()), id),
            IpAddr::V6(a) => self.v6.remove(&(net, a.octets()), id),
        }
    }

    fn other_than(&self, net: u32, ip: IpAddr, me: Option<u32>) -> Option<u32> {
        match ip {
            IpAddr::V4(a) => self.v4.other_than(&(net, a.into()), me),
            IpAddr::V6(a) => self.v6.other_than(&(net, a.octets()), me),
        }
    }

    fn held(&self, net: u32, ip: IpAddr) -> bool {
        self.other_than(net, ip, None).is_some()
    }

    fn all(&self, net: u32, ip: IpAddr) -> Vec<u32> {
        match ip {
            IpAddr::V4(a) => self.v4.all(&(net, a.into())).collect(),
            IpAddr::V6(a) => self.v6.all(&(net, a.octets())).collect(),
        }
    }

    fn shared(&self) -> usize {
        self.v4.shared() + self.v6.shared()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        [self.v4.first.is_empty(), self.v4.more.is_empty()]
            .into_iter()
            .chain([self.v6.first.is_empty(), self.v6.more.is_empty()])
            .all(|e| e)
    }
}

/// What two VMs hold at once on one NAD (SPEC §2.10: two replicas admitting in the same
/// instant). For the operator's log, so it names both VMs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub kind: ConflictKind,
    /// `namespace/name` of the NAD.
    pub nad: String,
    /// The MAC or address.
    pub value: String,
    /// `namespace/name` of the VM that just claimed it.
    pub vm: String,
    /// `namespace/name` of a VM that held it already.
    pub other: String,
}

/// What a [`Conflict`] is about; the `kind` label of `kubevirt_net_webhook_conflicts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConflictKind {
    Mac,
    Address,
}

impl ConflictKind {
    pub fn label(self) -> &'static str {
        match self {
            ConflictKind::Mac => "mac",
            ConflictKind::Address => "address",
        }
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ConflictKind::Mac => "MAC",
            ConflictKind::Address => "address",
        };
        write!(
            f,
            "{what} {} on NetworkAttachmentDefinition {} is held by VM {} and VM {}; change one of them (a VM's webhook-assigned value is in its spec or its annotation kubevirt-net-webhook.io/networks)",
            self.value, self.nad, self.vm, self.other
        )
    }
}

/// How many MACs and addresses more than one VM holds on one NAD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConflictCounts {
    pub macs: usize,
    pub addresses: usize,
}

/// A MAC or address of one VM on one NAD, to tell a new conflict from a known one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Claim {
    Mac(u32, [u8; 6]),
    Address(u32, IpAddr),
}

/// NADs and VM footprints, indexed for the checks of one admission request.
#[derive(Debug, Default)]
pub struct Inventory {
    /// By namespace, then name: a lookup needs no `namespace/name` string built first (it
    /// runs several times per request).
    nads: HashMap<String, HashMap<String, Nad>>,
    net_ids: HashMap<Arc<str>, u32>,
    /// The inverse of `net_ids`.
    net_names: Vec<Arc<str>>,
    vms: Vec<Option<Slot>>,
    free: Vec<u32>,
    ids: HashMap<Arc<str>, u32>,
    macs: Owners<(u32, [u8; 6])>,
    addresses: AddressOwners,
    /// Per NAD, the stretches of consecutive addresses held.
    runs: HashMap<u32, Runs>,
    /// Guests held: VMs, and standalone VMIs (for [`Inventory::guest_count`]).
    guests: [usize; 2],
    /// Per NAD, the VMs with a NIC that requested no address (they take a pinned one).
    /// Ordered by id: adding, removing and finding another VM are logarithmic, however many
    /// VMs share the NAD.
    pinned: HashMap<u32, BTreeSet<u32>>,
    /// New conflicts since the last [`Inventory::take_conflicts`], when recording.
    conflict_log: Option<Vec<Conflict>>,
}

/// Where [`Inventory::guest_count`] counts a guest of `kind`: VMs, or standalone VMIs.
fn guest_slot(kind: Kind) -> usize {
    usize::from(kind != Kind::VirtualMachine)
}

/// A MAC index key: 6 bytes instead of `Mac`'s u64 keep an entry at 16 bytes, not 24.
fn mac_key(net: u32, mac: Mac) -> (u32, [u8; 6]) {
    let b = mac.0.to_be_bytes();
    (net, [b[2], b[3], b[4], b[5], b[6], b[7]])
}

fn mac_bytes(mac: Mac) -> [u8; 6] {
    mac_key(0, mac).1
}

fn mac_of(bytes: [u8; 6]) -> Mac {
    Mac(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// Runs `f` on `namespace/name` (the form [`key`] writes), built on the stack: lookups run
/// several times per request and need the key only for the moment of the lookup.
pub fn with_key<R>(namespace: &str, name: &str, f: impl FnOnce(&str) -> R) -> R {
    // Kubernetes names are at most 253 bytes and namespaces 63, so this fits any real key.
    let mut buf = [0u8; 320];
    let len = namespace.len() + 1 + name.len();
    let Some(out) = buf.get_mut(..len) else {
        return f(&key(namespace, name));
    };
    let (ns, rest) = out.split_at_mut(namespace.len());
    ns.copy_from_slice(namespace.as_bytes());
    rest[0] = b'/';
    rest[1..].copy_from_slice(name.as_bytes());
    match std::str::from_utf8(out) {
        Ok(key) => f(key),
        // Two strs joined by an ASCII byte are UTF-8; the heap key is only the fallback.
        Err(_) => f(&key(namespace, name)),
    }
}

fn key(namespace: &str, name: &str) -> String {
    // Built on every lookup of the requesting VM: plain concatenation, not the formatter.
    let mut key = String::with_capacity(namespace.len() + 1 + name.len());
    key.push_str(namespace);
    key.push('/');
    key.push_str(name);
    key
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
        self.nads
            .entry(nad.namespace.clone())
            .or_default()
            .insert(nad.name.clone(), nad);
    }

    pub fn remove_nad(&mut self, namespace: &str, name: &str) {
        if let Some(names) = self.nads.get_mut(namespace) {
            names.remove(name);
            if names.is_empty() {
                self.nads.remove(namespace);
            }
        }
    }

    pub fn nad(&self, namespace: &str, name: &str) -> Option<&Nad> {
        self.nads.get(namespace)?.get(name)
    }

    pub fn nad_count(&self) -> usize {
        self.nads.values().map(HashMap::len).sum()
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
        if let entry::Content::Guest(nics) = entry::guest_content(kind, obj, namespace)? {
            let name = obj.metadata.name.as_deref().unwrap_or_default();
            self.upsert_guest(kind, namespace, name, nics);
        }
        Ok(())
    }

    /// Adds or replaces a VM's footprint.
    pub fn upsert_vm(&mut self, namespace: &str, name: &str, nics: Vec<NicPrint>) {
        self.upsert_guest(Kind::VirtualMachine, namespace, name, nics);
    }

    /// Adds or replaces the footprint of a VM or of a standalone VMI. Both are keyed by
    /// namespace and name; where a VM and a standalone VMI share one (a stopped VM next to a
    /// VMI someone created by hand), the VM's footprint is kept.
    pub fn upsert_guest(&mut self, kind: Kind, namespace: &str, name: &str, nics: Vec<NicPrint>) {
        if kind != Kind::VirtualMachine
            && self.kind_at(namespace, name) == Some(Kind::VirtualMachine)
        {
            return;
        }
        // What the VM held before is no new conflict when it holds it again.
        let known: Option<HashSet<Claim>> = self
            .conflict_log
            .is_some()
            .then(|| self.claims_of(namespace, name));
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
                    mac: p.mac.map(mac_bytes),
                    addresses: p.addresses.into(),
                    wants_pinned: p.wants_pinned,
                }
            })
            .collect();
        let mut shared = Vec::new();
        for nic in nics.iter() {
            if let Some(mac) = nic.mac
                && self.macs.add((nic.net, mac), id) == Added::Shared
            {
                shared.push(Claim::Mac(nic.net, mac));
            }
            for a in nic.addresses.iter() {
                match self.addresses.add(nic.net, *a, id) {
                    Added::New => {
                        let owners = &self.addresses;
                        self.runs
                            .entry(nic.net)
                            .or_default()
                            .insert(*a, |x| owners.held(nic.net, x));
                    }
                    Added::Shared => shared.push(Claim::Address(nic.net, *a)),
                    Added::Already => {}
                }
            }
            if nic.wants_pinned {
                self.pinned.entry(nic.net).or_default().insert(id);
            }
        }
        self.ids.insert(key.clone(), id);
        self.guests[guest_slot(kind)] += 1;
        self.vms[id as usize] = Some(Slot { key, nics, kind });
        if let Some(known) = known {
            for claim in shared.into_iter().filter(|c| !known.contains(c)) {
                self.log_conflict(claim, id);
            }
        }
    }

    pub fn remove_vm(&mut self, namespace: &str, name: &str) {
        let Some(id) = self.ids.remove(key(namespace, name).as_str()) else {
            return;
        };
        let Some(slot) = self.vms[id as usize].take() else {
            return;
        };
        self.guests[guest_slot(slot.kind)] -= 1;
        for nic in slot.nics.iter() {
            if let Some(mac) = nic.mac {
                self.macs.remove(&(nic.net, mac), id);
            }
            for a in nic.addresses.iter() {
                if self.addresses.remove(nic.net, *a, id)
                    && let Entry::Occupied(mut runs) = self.runs.entry(nic.net)
                {
                    runs.get_mut().remove(*a);
                    if runs.get().is_empty() {
                        runs.remove();
                    }
                }
            }
            if nic.wants_pinned
                && let Entry::Occupied(mut set) = self.pinned.entry(nic.net)
            {
                set.get_mut().remove(&id);
                if set.get().is_empty() {
                    set.remove();
                }
            }
        }
        self.free.push(id);
    }

    /// Keeps only the NADs for which `keep(namespace, name)` holds: a relist drops the gone.
    pub fn retain_nads(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.nads.retain(|_, names| {
            names.retain(|_, nad| keep(&nad.namespace, &nad.name));
            !names.is_empty()
        });
    }

    /// The kind of the guest held at `namespace/name`, if any.
    fn kind_at(&self, namespace: &str, name: &str) -> Option<Kind> {
        let id = with_key(namespace, name, |k| self.ids.get(k).copied())?;
        self.vms[id as usize].as_ref().map(|slot| slot.kind)
    }

    /// Removes the footprint at `namespace/name` if it is of `kind`: a standalone VMI's
    /// deletion leaves a VM of the same name alone.
    pub fn remove_guest(&mut self, kind: Kind, namespace: &str, name: &str) {
        if self.kind_at(namespace, name) == Some(kind) {
            self.remove_vm(namespace, name);
        }
    }

    /// How many guests of `kind` are held (with at least one Multus NIC).
    pub fn guest_count(&self, kind: Kind) -> usize {
        self.guests[guest_slot(kind)]
    }

    /// Keeps only the VMs for which `keep(namespace, name)` holds: a relist drops the gone.
    pub fn retain_vms(&mut self, keep: impl FnMut(&str, &str) -> bool) {
        self.retain_guests(Kind::VirtualMachine, keep);
    }

    /// Keeps only the guests of `kind` for which `keep(namespace, name)` holds; the others'
    /// footprints are untouched (each kind has its own watch and relist).
    pub fn retain_guests(&mut self, kind: Kind, mut keep: impl FnMut(&str, &str) -> bool) {
        let gone: Vec<Arc<str>> = self
            .ids
            .iter()
            .filter(|(k, id)| {
                let (namespace, name) = split_key(k);
                self.vms[**id as usize]
                    .as_ref()
                    .is_some_and(|slot| slot.kind == kind)
                    && !keep(namespace, name)
            })
            .map(|(k, _)| k.clone())
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
        let id = self.net_names.len() as u32;
        let name: Arc<str> = nad.into();
        self.net_ids.insert(name.clone(), id);
        self.net_names.push(name);
        id
    }

    fn id_of(&self, me: VmName<'_>) -> Option<u32> {
        with_key(me.namespace, me.name, |k| self.ids.get(k).copied())
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
        let net = self.net_ids.get(nad)?;
        self.addresses
            .other_than(*net, address, self.id_of(me))
            .map(|id| self.name_of(id))
    }

    /// Another VM on `nad` that requested no address, and so takes the NAD's pinned one.
    pub fn pinned_user(&self, nad: &str, me: VmName<'_>) -> Option<VmName<'_>> {
        let net = self.net_ids.get(nad)?;
        let me = self.id_of(me);
        let other = self.pinned.get(net)?.iter().find(|id| Some(**id) != me)?;
        Some(self.name_of(*other))
    }

    /// Every VM whose NIC on `nad` has `mac`, oldest claim first. For `audit`, whose reader
    /// is an administrator: an admission answer names one other VM ([`Self::mac_user`]).
    pub fn mac_holders(&self, nad: &str, mac: Mac) -> Vec<VmName<'_>> {
        let Some(net) = self.net_ids.get(nad) else {
            return Vec::new();
        };
        self.macs
            .all(&mac_key(*net, mac))
            .map(|id| self.name_of(id))
            .collect()
    }

    /// Every VM that requested `address` on `nad`, oldest claim first (for `audit`).
    pub fn address_holders(&self, nad: &str, address: IpAddr) -> Vec<VmName<'_>> {
        let Some(net) = self.net_ids.get(nad) else {
            return Vec::new();
        };
        self.addresses
            .all(*net, address)
            .into_iter()
            .map(|id| self.name_of(id))
            .collect()
    }

    /// Every VM on `nad` that requested no address, and so takes the NAD's pinned one (for
    /// `audit`).
    pub fn pinned_holders(&self, nad: &str) -> Vec<VmName<'_>> {
        let Some(ids) = self.net_ids.get(nad).and_then(|net| self.pinned.get(net)) else {
            return Vec::new();
        };
        ids.iter().map(|id| self.name_of(*id)).collect()
    }

    /// When some VM holds `address` on `nad`: the last address of the stretch of
    /// consecutive addresses held there that starts at or before it (SPEC §2.10: the next
    /// free pool address is after it). Any VM counts, `me` included.
    pub fn held_through(&self, nad: &str, address: IpAddr) -> Option<IpAddr> {
        let net = self.net_ids.get(nad)?;
        if !self.addresses.held(*net, address) {
            return None;
        }
        Some(
            self.runs
                .get(net)
                .and_then(|r| r.last_of(address))
                .unwrap_or(address),
        )
    }

    /// The addresses `me` holds on `nad` (the cache's view of it, before this request).
    pub fn addresses_of(&self, nad: &str, me: VmName<'_>) -> Vec<IpAddr> {
        let (Some(net), Some(id)) = (self.net_ids.get(nad), self.id_of(me)) else {
            return Vec::new();
        };
        self.vms[id as usize]
            .iter()
            .flat_map(|slot| slot.nics.iter())
            .filter(|nic| nic.net == *net)
            .flat_map(|nic| nic.addresses.iter().copied())
            .collect()
    }

    /// The guests that hold something another guest holds too: a MAC or an address on one
    /// NAD, or a NAD's pinned address (by asking for no address, or by requesting it). The
    /// validating answers of these name each other; every other guest's answer is the same
    /// whichever other guests the inventory holds (`audit` judges in one pass, and judges
    /// these again once every guest is in).
    pub fn sharers(&self) -> Vec<(Kind, VmName<'_>)> {
        let pinned_of = |net: u32| {
            let (namespace, name) = split_key(&self.net_names[net as usize]);
            self.nad(namespace, name)
                .and_then(|n| n.ipam.pinned)
                .map(|p| p.addr())
        };
        let mut found = Vec::new();
        for (id, slot) in self.vms.iter().enumerate() {
            let Some(slot) = slot else { continue };
            let me = Some(id as u32);
            let shares = slot.nics.iter().any(|nic| {
                let others_want_pinned = || {
                    self.pinned
                        .get(&nic.net)
                        .is_some_and(|ids| ids.iter().any(|o| Some(*o) != me))
                };
                nic.mac
                    .is_some_and(|m| self.macs.other_than(&(nic.net, m), me).is_some())
                    || nic
                        .addresses
                        .iter()
                        .any(|ip| self.addresses.other_than(nic.net, *ip, me).is_some())
                    || pinned_of(nic.net).is_some_and(|p| {
                        (nic.wants_pinned
                            && (others_want_pinned()
                                || self.addresses.other_than(nic.net, p, me).is_some()))
                            || (nic.addresses.contains(&p) && others_want_pinned())
                    })
            });
            if shares {
                found.push((slot.kind, self.name_of(id as u32)));
            }
        }
        found
    }

    /// How many MACs and addresses more than one VM holds on one NAD
    /// (`kubevirt_net_webhook_conflicts`).
    pub fn conflicts(&self) -> ConflictCounts {
        ConflictCounts {
            macs: self.macs.shared(),
            addresses: self.addresses.shared(),
        }
    }

    /// Starts recording each new conflict (one per pair of VMs, when the second claims what
    /// the first holds) for [`Inventory::take_conflicts`]. The server's caches do; a
    /// `review` run, which denies conflicts instead, does not.
    pub fn record_conflicts(&mut self) {
        self.conflict_log.get_or_insert_with(Vec::new);
    }

    /// The conflicts recorded since the last call.
    pub fn take_conflicts(&mut self) -> Vec<Conflict> {
        self.conflict_log
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The MACs and addresses VM `namespace/name` holds now.
    fn claims_of(&self, namespace: &str, name: &str) -> HashSet<Claim> {
        let Some(id) = self.ids.get(key(namespace, name).as_str()) else {
            return HashSet::new();
        };
        self.vms[*id as usize]
            .iter()
            .flat_map(|slot| slot.nics.iter())
            .flat_map(|nic| {
                let mac = nic.mac.map(|m| Claim::Mac(nic.net, m));
                mac.into_iter().chain(
                    nic.addresses
                        .iter()
                        .map(move |a| Claim::Address(nic.net, *a)),
                )
            })
            .collect()
    }

    /// Records one conflict per other VM holding `claim`, now that `id` holds it too.
    fn log_conflict(&mut self, claim: Claim, id: u32) {
        let (kind, net, value, others): (_, _, _, Vec<u32>) = match claim {
            Claim::Mac(net, bytes) => (
                ConflictKind::Mac,
                net,
                mac_of(bytes).to_string(),
                self.macs.all(&(net, bytes)).collect(),
            ),
            Claim::Address(net, a) => (
                ConflictKind::Address,
                net,
                a.to_string(),
                self.addresses.all(net, a),
            ),
        };
        let name = |id: u32| {
            let n = self.name_of(id);
            key(n.namespace, n.name)
        };
        let conflicts: Vec<Conflict> = others
            .into_iter()
            .filter(|o| *o != id)
            .map(|other| Conflict {
                kind,
                nad: self.net_names[net as usize].to_string(),
                value: value.clone(),
                vm: name(id),
                other: name(other),
            })
            .collect();
        if let Some(log) = &mut self.conflict_log {
            log.extend(conflicts);
        }
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
    fn holders_are_every_vm_holding_a_value() {
        let mut inv = Inventory::new();
        let mac = Mac::parse("02:00:00:00:00:01").unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        inv.upsert_vm(
            "a",
            "p",
            vec![nic("x/n", Some("02:00:00:00:00:01"), &["10.0.0.1"])],
        );
        inv.upsert_vm(
            "b",
            "q",
            vec![nic("x/n", Some("02:00:00:00:00:01"), &["10.0.0.1"])],
        );
        inv.upsert_vm("c", "r", vec![nic("x/n", None, &[])]);
        inv.upsert_vm(
            "c",
            "s",
            vec![nic("x/m", Some("02:00:00:00:00:01"), &["10.0.0.1"])],
        );
        let vm = |namespace, name| VmName { namespace, name };
        let both = vec![vm("a", "p"), vm("b", "q")];
        assert_eq!(inv.mac_holders("x/n", mac), both);
        assert_eq!(inv.address_holders("x/n", ip), both);
        assert_eq!(inv.pinned_holders("x/n"), vec![vm("c", "r")]);
        assert_eq!(inv.mac_holders("x/m", mac), vec![vm("c", "s")]);
        assert!(inv.mac_holders("x/none", mac).is_empty());
        assert!(inv.address_holders("x/none", ip).is_empty());
        assert!(inv.pinned_holders("x/m").is_empty());
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
        assert!(inv.addresses.is_empty());
        assert!(inv.pinned.is_empty() && inv.runs.is_empty());
    }

    #[test]
    fn runs_join_and_split() {
        let mut held = BTreeSet::new();
        let mut runs = BTreeMap::new();
        let mut hold = |runs: &mut BTreeMap<u32, u32>, x: u32| {
            held.insert(x);
            let h = held.clone();
            run_insert(runs, x, |y| h.contains(&y));
        };
        for x in [5u32, 7, 1, 9] {
            hold(&mut runs, x);
        }
        assert!(runs.is_empty(), "lone addresses cost nothing: {runs:?}");
        hold(&mut runs, 6);
        hold(&mut runs, 2);
        assert_eq!(runs, BTreeMap::from([(1, 2), (5, 7)]));
        hold(&mut runs, 8);
        assert_eq!(runs, BTreeMap::from([(1, 2), (5, 9)]));
        run_remove(&mut runs, 7);
        assert_eq!(runs, BTreeMap::from([(1, 2), (5, 6), (8, 9)]));
        run_remove(&mut runs, 5);
        run_remove(&mut runs, 9);
        run_remove(&mut runs, 3);
        assert_eq!(runs, BTreeMap::from([(1, 2)]));
        run_remove(&mut runs, 1);
        assert!(runs.is_empty());
        let mut edge = BTreeMap::new();
        let all = |_: u32| true;
        run_insert(&mut edge, u32::MAX, all);
        run_insert(&mut edge, 0u32, |y| y == 0);
        assert_eq!(edge, BTreeMap::from([(u32::MAX - 1, u32::MAX)]));
        run_remove(&mut edge, u32::MAX);
        assert!(edge.is_empty());
    }

    #[test]
    fn held_stretches_follow_the_owners() {
        let mut inv = Inventory::new();
        for (name, a) in [("p", "10.0.0.5"), ("q", "10.0.0.6"), ("r", "10.0.0.7")] {
            inv.upsert_vm("b", name, vec![nic("x/n", None, &[a])]);
        }
        inv.upsert_vm("b", "s", vec![nic("x/n", None, &["10.0.0.6", "fd00::1"])]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            inv.held_through("x/n", ip("10.0.0.5")),
            Some(ip("10.0.0.7"))
        );
        assert_eq!(inv.held_through("x/n", ip("10.0.0.4")), None);
        assert_eq!(inv.held_through("x/m", ip("10.0.0.5")), None);
        assert_eq!(inv.held_through("x/n", ip("fd00::1")), Some(ip("fd00::1")));
        // 10.0.0.6 is held by two VMs: it stays held while one of them holds it.
        inv.remove_vm("b", "q");
        assert_eq!(
            inv.held_through("x/n", ip("10.0.0.5")),
            Some(ip("10.0.0.7"))
        );
        inv.remove_vm("b", "s");
        assert_eq!(
            inv.held_through("x/n", ip("10.0.0.5")),
            Some(ip("10.0.0.5"))
        );
        assert_eq!(
            inv.held_through("x/n", ip("10.0.0.7")),
            Some(ip("10.0.0.7"))
        );
        let me = VmName {
            namespace: "b",
            name: "r",
        };
        assert_eq!(inv.addresses_of("x/n", me), vec![ip("10.0.0.7")]);
        assert!(inv.addresses_of("x/m", me).is_empty());
    }

    #[test]
    fn a_nad_shared_by_many_vms_without_addresses_names_one_other() {
        let mut inv = Inventory::new();
        let n = 5_000;
        for i in 0..n {
            inv.upsert_vm("b", &format!("v{i}"), vec![nic("x/n", None, &[])]);
        }
        let vm = |name| VmName {
            namespace: "b",
            name,
        };
        assert_eq!(inv.pinned_user("x/n", ME), Some(vm("v0")));
        assert_eq!(inv.pinned_user("x/n", vm("v0")), Some(vm("v1")));
        // Removing from the front, over and over (what a list index makes quadratic).
        for i in 0..n - 1 {
            inv.remove_vm("b", &format!("v{i}"));
        }
        let last = format!("v{}", n - 1);
        assert_eq!(inv.pinned_user("x/n", ME), Some(vm(last.as_str())));
        assert_eq!(inv.pinned_user("x/n", vm(last.as_str())), None);
        inv.remove_vm("b", &last);
        assert!(inv.pinned.is_empty());
    }

    /// `sharers` is exactly the guests for which one of the engine's questions (another
    /// holder of my MAC, of my address, of my NAD's pinned address) has an answer.
    #[test]
    fn sharers_are_the_guests_whose_questions_find_another() {
        let mut inv = Inventory::new();
        inv.upsert_nad(Nad::from_config(
            "x",
            "pin",
            r#"{"type": "bridge", "ipam": {"type": "static", "addresses": [{"address": "10.9.0.5/24"}]}}"#,
        ));
        assert!(inv.nad("x", "pin").unwrap().ipam.pinned.is_some());
        let mac = |m| Some(m);
        inv.upsert_vm(
            "a",
            "mac1",
            vec![nic("x/n", mac("02:00:00:00:00:01"), &["10.0.0.1"])],
        );
        inv.upsert_vm(
            "b",
            "mac2",
            vec![nic("x/n", mac("02:00:00:00:00:01"), &["10.0.0.2"])],
        );
        // The same MAC on another NAD is no conflict.
        inv.upsert_vm(
            "a",
            "othernad",
            vec![nic("x/m", mac("02:00:00:00:00:01"), &["10.0.0.1"])],
        );
        inv.upsert_vm("a", "ip1", vec![nic("x/n", None, &["10.0.0.7"])]);
        inv.upsert_vm(
            "c",
            "ip2",
            vec![nic("x/n", None, &["10.0.0.7", "10.0.0.8"])],
        );
        inv.upsert_vm(
            "a",
            "alone",
            vec![nic("x/n", mac("02:00:00:00:00:09"), &["10.0.0.9"])],
        );
        // Two guests asking for no address on the pinned NAD, and one requesting its address.
        inv.upsert_vm("p", "wants1", vec![nic("x/pin", None, &[])]);
        inv.upsert_vm("p", "wants2", vec![nic("x/pin", None, &[])]);
        inv.upsert_vm("p", "explicit", vec![nic("x/pin", None, &["10.9.0.5"])]);
        // Asking for no address on a NAD that pins none is nothing shared.
        inv.upsert_vm("q", "free1", vec![nic("x/n", None, &[])]);
        inv.upsert_vm("q", "free2", vec![nic("x/n", None, &[])]);
        let mut found: Vec<String> = inv
            .sharers()
            .into_iter()
            .map(|(_, w)| format!("{}/{}", w.namespace, w.name))
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                "a/ip1",
                "a/mac1",
                "b/mac2",
                "c/ip2",
                "p/explicit",
                "p/wants1",
                "p/wants2"
            ]
        );
        // The engine's questions agree, one by one.
        let who = |ns, name| VmName {
            namespace: ns,
            name,
        };
        let m1 = Mac::parse("02:00:00:00:00:01").unwrap();
        assert!(inv.mac_user("x/n", m1, who("a", "mac1")).is_some());
        assert!(inv.mac_user("x/m", m1, who("a", "othernad")).is_none());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(
            inv.address_user("x/n", ip("10.0.0.9"), who("a", "alone"))
                .is_none()
        );
        assert!(inv.pinned_user("x/pin", who("p", "explicit")).is_some());
        assert!(
            inv.pinned_user("x/n", who("q", "free1")).is_some(),
            "asked, but the NAD pins nothing"
        );
        // Alone on the pinned NAD: nothing shared.
        inv.remove_vm("p", "wants2");
        inv.remove_vm("p", "explicit");
        assert!(!inv.sharers().iter().any(|(_, w)| w.namespace == "p"));
    }

    #[test]
    fn dhcp_takes_no_pinned_address() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "v", "namespace": "t", "annotations": {annotations::NETWORKS: "{\"ext\": \"dhcp\"}"}},
            "spec": {"template": {"spec": {
                "domain": {"devices": {"interfaces": [{"name": "ext", "bridge": {}}]}},
                "networks": [{"name": "ext", "multus": {"networkName": "n"}}]}}}
        })).unwrap();
        let mut inv = Inventory::new();
        inv.upsert_vm_object(Kind::VirtualMachine, &obj, "t")
            .unwrap();
        assert_eq!(inv.vm_count(), 1);
        assert_eq!(inv.pinned_user("t/n", ME), None);
    }

    #[test]
    fn conflicts_are_counted_and_each_new_pair_recorded_once() {
        let mut inv = Inventory::new();
        inv.record_conflicts();
        let mac = Some("02:00:00:00:00:01");
        inv.upsert_vm("a", "p", vec![nic("x/n", mac, &["10.0.0.5"])]);
        inv.upsert_vm("b", "q", vec![nic("x/n", None, &["10.0.0.5"])]);
        assert_eq!(
            inv.conflicts(),
            ConflictCounts {
                macs: 0,
                addresses: 1
            }
        );
        let logged = inv.take_conflicts();
        assert_eq!(
            logged,
            vec![Conflict {
                kind: ConflictKind::Address,
                nad: "x/n".into(),
                value: "10.0.0.5".into(),
                vm: "b/q".into(),
                other: "a/p".into(),
            }]
        );
        let line = logged[0].to_string();
        assert!(
            line.contains("10.0.0.5")
                && line.contains("x/n")
                && line.contains("b/q")
                && line.contains("a/p"),
            "{line}"
        );
        // An update of either VM that keeps the address is no new conflict.
        inv.upsert_vm("b", "q", vec![nic("x/n", None, &["10.0.0.5"])]);
        inv.upsert_vm("a", "p", vec![nic("x/n", mac, &["10.0.0.5"])]);
        assert!(inv.take_conflicts().is_empty());
        // A third holder conflicts with both; a MAC conflict is its own kind.
        inv.upsert_vm("c", "r", vec![nic("x/n", mac, &["10.0.0.5"])]);
        let logged = inv.take_conflicts();
        assert_eq!(logged.len(), 3, "{logged:?}");
        assert_eq!(
            logged
                .iter()
                .filter(|c| c.kind == ConflictKind::Mac)
                .count(),
            1
        );
        assert_eq!(
            inv.conflicts(),
            ConflictCounts {
                macs: 1,
                addresses: 1
            }
        );
        inv.remove_vm("c", "r");
        inv.remove_vm("a", "p");
        assert_eq!(inv.conflicts(), ConflictCounts::default());
        // Without recording, nothing piles up.
        let mut quiet = Inventory::new();
        quiet.upsert_vm("a", "p", vec![nic("x/n", None, &["10.0.0.5"])]);
        quiet.upsert_vm("b", "q", vec![nic("x/n", None, &["10.0.0.5"])]);
        assert_eq!(quiet.conflicts().addresses, 1);
        assert!(quiet.take_conflicts().is_empty() && quiet.conflict_log.is_none());
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
