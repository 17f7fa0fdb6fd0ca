//! Address pools (SPEC §2.10): a NIC on a NAD with an address pool
//! (`kubevirt-net-webhook.io/address-pool`) and without a requested address (§2.5) gets one
//! from the pool, derived from the VM's identity like its MAC, and written into the VM's
//! annotation `kubevirt-net-webhook.io/networks`, where every other rule (cloud-init §2.4,
//! the checks of §2.5, the cache) reads it as a requested address.
//!
//! - Each family of the pool is its own pool: a pool with IPv4 and IPv6 ranges gives one
//!   address of each (IPv4 first), or none when one family has no free address.
//! - `"dhcp"` as the annotation's value for a network asks for no address at all.
//! - On UPDATE, a pool address the stored object (`oldObject`) had for the network is kept.
//! - Shared templates (VMI replica sets, VM pools) get none: their replicas do when created.
//!   A guest without a name (`generateName`) has no identity yet and gets none (warning).
//! - `/validate` denies a VM that needs a pool address when the pool has none left.
use std::{collections::BTreeMap, net::IpAddr};

use foldhash::HashSet;
use ipnet::IpNet;
use serde_json::{Map, Value, json};

use super::{
    Ctx, Ops, addresses,
    patch::pointer,
    violations::{Findings, Rule},
};
use crate::{
    inventory::{Inventory, VmName},
    model::{
        annotations::{self, AddressRequest},
        identity::Identity,
        pool::{self, Block, Family, Pool, Span, from_u128, to_u128},
    },
};

/// How many derived attempts before the scan for the next free address (SPEC §2.10).
pub const ATTEMPTS: u32 = 16;

/// What the allocator may not hand out besides the subnet's network and broadcast addresses.
pub trait Occupancy {
    /// Whether `value` is taken: held by another VM on the NAD, a gateway, or an address
    /// this VM uses on another network.
    fn taken(&self, value: u128) -> bool;

    /// For a taken `value`: the last address of a stretch of taken addresses starting at it
    /// (`value` itself when unknown). Only makes the scan faster; never changes its result.
    fn taken_through(&self, value: u128) -> u128 {
        value
    }
}

/// The pool index the digest of one attempt points at: its first 8 bytes, big-endian,
/// modulo the pool size.
pub fn index(digest: &[u8; 32], size: u128) -> u128 {
    let head: [u8; 8] = digest[..8].try_into().expect("8 bytes");
    u128::from(u64::from_be_bytes(head)) % size
}

/// The address of `block` for `identity`: attempts `n = 0..16` while the address is taken,
/// a network or broadcast address; then the next free address after the last attempt's, in
/// pool order, wrapping around. `None` when the pool has no free address. A pure function of
/// the identity, the pool and what is taken. Returns the range and the address.
pub fn allocate(
    block: &Block,
    identity: &Identity<'_>,
    occupancy: &impl Occupancy,
) -> Option<(usize, u128)> {
    let size = block.size();
    if size == 0 {
        return None;
    }
    let free =
        |span: &Span, v: u128| !block.is_network_or_broadcast(span, v) && !occupancy.taken(v);
    let mut last = 0;
    for n in 0..ATTEMPTS {
        last = index(&identity.digest(n), size);
        let (s, v) = block.at(last)?;
        if free(&block.spans[s], v) {
            return Some((s, v));
        }
    }
    // Every other position once, from the one after the last attempt.
    let mut left = size - 1;
    let mut i = if last + 1 == size { 0 } else { last + 1 };
    while left > 0 {
        let (s, v) = block.at(i)?;
        let span = &block.spans[s];
        if free(span, v) {
            return Some((s, v));
        }
        let through = if block.is_network_or_broadcast(span, v) {
            v
        } else {
            occupancy.taken_through(v).clamp(v, span.last)
        };
        let step = (through - v).saturating_add(1).min(left);
        left -= step;
        i = if step >= size - i {
            step - (size - i)
        } else {
            i + step
        };
    }
    None
}

/// What the pool gives one network of the VM.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// The addresses to write, one per family of the pool, IPv4 first (kept from the stored
    /// object, or new).
    Assigned {
        addresses: Vec<IpNet>,
        /// Those kept from the stored object although the pool no longer holds them.
        outside: Vec<IpNet>,
    },
    /// The pool of one family has no free address.
    Full {
        family: Family,
        size: u128,
        ranges: String,
    },
    /// The pool annotation cannot be read: nothing is allocated from it.
    BadPool(pool::Error),
    /// The guest has no name yet.
    Anonymous,
}

/// One network of the VM on a pool NAD that has no requested address.
#[derive(Debug)]
struct Need {
    network: String,
    nad: String,
    outcome: Outcome,
}

/// What is taken around one allocation, read from the inventory.
struct Around<'a> {
    inventory: &'a Inventory,
    nad: &'a str,
    me: VmName<'a>,
    family: Family,
    /// Gateways and this VM's other addresses, of `family`.
    blocked: HashSet<u128>,
    /// What this VM holds on the NAD according to the cache: free for it.
    own: Vec<u128>,
}

impl Occupancy for Around<'_> {
    fn taken(&self, value: u128) -> bool {
        self.blocked.contains(&value)
            || self
                .inventory
                .address_user(self.nad, from_u128(value, self.family), self.me)
                .is_some()
    }

    fn taken_through(&self, value: u128) -> u128 {
        if self.blocked.contains(&value) {
            return value;
        }
        let Some(last) = self
            .inventory
            .held_through(self.nad, from_u128(value, self.family))
        else {
            return value;
        };
        let last = to_u128(last);
        // This VM's own addresses inside the stretch are free for it: stop before them.
        self.own
            .iter()
            .filter(|o| **o > value && **o <= last)
            .map(|o| o - 1)
            .min()
            .unwrap_or(last)
    }
}

/// The networks of the VM that take an address from a pool, and what each gets.
fn plan(ctx: &Ctx<'_>) -> Vec<Need> {
    let old = ctx.old.as_ref();
    if ctx.vm.kind.is_shared_template() {
        return Vec::new();
    }
    // An annotation that cannot be read is denied by /validate (§2.5); nothing to merge.
    let Ok(requests) = addresses::annotation_requests(ctx) else {
        return Vec::new();
    };
    let old_requests: BTreeMap<String, AddressRequest> = old
        .and_then(|o| o.annotation(annotations::NETWORKS))
        .and_then(|t| annotations::parse_networks(t).ok())
        .unwrap_or_default();
    // This VM's addresses: requested ones, and the stored ones a network may keep.
    let mut mine: HashSet<IpAddr> = requests
        .values()
        .flat_map(|r| r.addresses.iter().map(IpNet::addr))
        .collect();
    for (network, old) in &old_requests {
        if !requests.contains_key(network) {
            mine.extend(old.addresses.iter().map(IpNet::addr));
        }
    }
    let mut needs = Vec::new();
    for net in ctx.vm.networks() {
        let Some(r) = net.nad_ref(ctx.namespace) else {
            continue;
        };
        // A NAD the VM may not use, or that does not exist, has no pool for it (§2.7).
        let Some(nad) = ctx.nad(r) else {
            continue;
        };
        let Some(parsed) = nad.address_pool() else {
            continue;
        };
        let request = requests.get(net.name.as_ref());
        if request.is_some_and(|r| r.dhcp || !r.addresses.is_empty()) {
            continue;
        }
        let need = |outcome| Need {
            network: net.name.to_string(),
            nad: r.to_string(),
            outcome,
        };
        let pool = match parsed {
            Ok(pool) => pool,
            Err(e) => {
                needs.push(need(Outcome::BadPool(e)));
                continue;
            }
        };
        let Some(vm_name) = ctx.vm.name.as_deref() else {
            needs.push(need(Outcome::Anonymous));
            continue;
        };
        let identity = Identity {
            salt: &ctx.config.cluster_salt,
            namespace: ctx.namespace,
            vm: vm_name,
            network: &net.name,
        };
        let kept_from: Vec<IpNet> = old_requests
            .get(net.name.as_ref())
            .filter(|o| !o.dhcp)
            .map(|o| o.addresses.clone())
            .unwrap_or_default();
        let mut gateways: Vec<IpAddr> = nad.ipam.gateways.clone();
        gateways.extend(request.and_then(|r| r.gateway));
        let outcome = assign_network(
            ctx,
            &r.to_string(),
            &pool,
            &identity,
            &kept_from,
            &gateways,
            &mine,
        );
        if let Outcome::Assigned { addresses, .. } = &outcome {
            mine.extend(addresses.iter().map(IpNet::addr));
        }
        needs.push(need(outcome));
    }
    needs
}

/// The addresses of one network: per family of the pool, the stored object's pool address,
/// or a free one.
fn assign_network(
    ctx: &Ctx<'_>,
    nad: &str,
    pool: &Pool,
    identity: &Identity<'_>,
    kept_from: &[IpNet],
    gateways: &[IpAddr],
    mine: &HashSet<IpAddr>,
) -> Outcome {
    let me = ctx.me();
    let mut addresses = Vec::new();
    let mut outside = Vec::new();
    for block in pool.blocks() {
        if let Some(old) = kept_from.iter().find(|a| block.span_of(a.addr()).is_some()) {
            addresses.push(*old);
            continue;
        }
        // The NAD's owner shrank or moved the pool under a stored VM: a new address would
        // change the guest's address at its next boot, so it keeps the one it has.
        if let Some(old) = kept_from
            .iter()
            .find(|a| Family::of(a.addr()) == block.family)
        {
            addresses.push(*old);
            outside.push(*old);
            continue;
        }
        let family = block.family;
        let of_family = |ip: &&IpAddr| Family::of(**ip) == family;
        let around = Around {
            inventory: ctx.inventory,
            nad,
            me,
            family,
            blocked: gateways
                .iter()
                .chain(mine.iter())
                .chain(addresses.iter().map(IpNet::addr).collect::<Vec<_>>().iter())
                .filter(of_family)
                .map(|ip| to_u128(*ip))
                .collect(),
            own: ctx
                .inventory
                .addresses_of(nad, me)
                .iter()
                .filter(of_family)
                .map(|ip| to_u128(*ip))
                .collect(),
        };
        match allocate(block, identity, &around) {
            Some((s, v)) => addresses.push(block.net(&block.spans[s], v)),
            None => {
                return Outcome::Full {
                    family,
                    size: block.size(),
                    ranges: block.describe(),
                };
            }
        }
    }
    Outcome::Assigned { addresses, outside }
}

/// The annotation text with `assigned` merged in: a network without an entry gets the
/// address (or `{"addresses": [...]}` for two), an object entry without addresses gets
/// `addresses`; every other key is kept.
fn merged(current: Option<&str>, assigned: &[(&str, &[IpNet])]) -> String {
    let mut map: Map<String, Value> = current
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default();
    for (network, addresses) in assigned {
        let list: Vec<Value> = addresses.iter().map(|a| json!(a.to_string())).collect();
        match map.get_mut(*network) {
            Some(Value::Object(entry)) => {
                entry.insert("addresses".into(), Value::Array(list));
            }
            _ => {
                let value = match list.as_slice() {
                    [one] => one.clone(),
                    _ => json!({ "addresses": list }),
                };
                map.insert(network.to_string(), value);
            }
        }
    }
    Value::Object(map).to_string()
}

/// `/mutate`: writes the pool addresses into the annotation, in the object and in `ctx` (so
/// that the cloud-init rule, which runs next, configures them).
pub(super) fn assign(ctx: &mut Ctx<'_>, ops: &mut Ops, warnings: &mut Vec<String>) {
    let needs = plan(ctx);
    let mut assigned: Vec<(&str, &[IpNet])> = Vec::new();
    let mut listed = Vec::new();
    let mut anonymous = Vec::new();
    let mut bad_pools: Vec<(&str, String)> = Vec::new();
    for need in &needs {
        match &need.outcome {
            Outcome::Assigned { addresses, outside } => {
                if !outside.is_empty() {
                    let list: Vec<String> = outside.iter().map(ToString::to_string).collect();
                    warnings.push(format!(
                        "network {:?} keeps {} from the stored object although the address pool of NetworkAttachmentDefinition {} no longer holds it: the guest's address does not change under it. To move it into the pool, remove the network's entry from annotation {} while the VM is stopped",
                        need.network,
                        list.join(" "),
                        need.nad,
                        annotations::NETWORKS
                    ));
                }
                assigned.push((&need.network, addresses));
                let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                listed.push(format!(
                    "{}={} (NetworkAttachmentDefinition {})",
                    need.network,
                    list.join(" "),
                    need.nad
                ));
            }
            Outcome::Full {
                family,
                size,
                ranges,
            } => warnings.push(format!(
                "no address from the pool for network {:?}: the {family} pool of NetworkAttachmentDefinition {} ({ranges}, {size} addresses) has none free",
                need.network, need.nad
            )),
            Outcome::BadPool(e) => {
                if !bad_pools.iter().any(|(nad, _)| *nad == need.nad) {
                    bad_pools.push((&need.nad, e.to_string()));
                }
            }
            Outcome::Anonymous => anonymous.push(need.network.as_str()),
        }
    }
    for (nad, e) in bad_pools {
        warnings.push(format!(
            "NetworkAttachmentDefinition {nad}: annotation {}: {e}; no address is assigned from it until its owner fixes it",
            annotations::ADDRESS_POOL
        ));
    }
    if !anonymous.is_empty() {
        warnings.push(format!(
            "no pool address for network {}: the VM has generateName and no name yet, so it has no identity to derive a stable address from; give it a name",
            anonymous.join(", ")
        ));
    }
    if assigned.is_empty() {
        return;
    }
    let text = merged(ctx.vm.annotation(annotations::NETWORKS), &assigned);
    let meta = ctx.vm.layout.vm_meta;
    let key = annotations::NETWORKS;
    if ctx.vm.annotations.contains_key(key) {
        ops.replace(pointer(meta, ["annotations", key]), text.as_str());
    } else if ctx.vm.has_annotations {
        ops.add(pointer(meta, ["annotations", key]), text.as_str());
    } else {
        ops.add(pointer(meta, ["annotations"]), &json!({ key: text }));
    }
    ctx.set_networks_annotation(text);
    ctx.vm.to_mut().has_annotations = true;
    warnings.push(format!(
        "set addresses from the address pool in annotation {key}: {}",
        listed.join(", ")
    ));
}

/// `/validate`: denies a VM that needs a pool address when the pool has none left.
pub(super) fn check(ctx: &Ctx<'_>, verdict: &mut Findings<'_>) {
    if ctx.mutation_disabled() {
        return; // no pool address is assigned; the NIC uses DHCP
    }
    for need in plan(ctx) {
        if let Outcome::Full {
            family,
            size,
            ranges,
        } = need.outcome
        {
            verdict.deny(Rule::PoolFull, format!("network {:?} on NAD {}", need.network, need.nad), format!(
                "network {network:?}: the address pool of NetworkAttachmentDefinition {nad} is full: its {family} pool ({ranges}) has {size} addresses and none is free (each is held by another VM, or is the subnet's network, broadcast or gateway address). Ask the NAD's owner to grow the pool by adding a range to its annotation {pool_key}, free an address by deleting a VM that holds one, or set {network:?} to an address or to \"dhcp\" in annotation {networks}",
                network = need.network,
                nad = need.nad,
                pool_key = annotations::ADDRESS_POOL,
                networks = annotations::NETWORKS,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foldhash::HashSetExt;

    /// Taken addresses as a set; `runs` also reports stretches (the accelerated scan).
    struct Set {
        taken: HashSet<u128>,
        runs: bool,
    }

    impl Occupancy for Set {
        fn taken(&self, v: u128) -> bool {
            self.taken.contains(&v)
        }
        fn taken_through(&self, v: u128) -> u128 {
            if !self.runs {
                return v;
            }
            let mut last = v;
            while self.taken.contains(&(last + 1)) {
                last += 1;
            }
            last
        }
    }

    fn block(text: &str) -> Block {
        Pool::parse(text, &[]).unwrap().v4.unwrap()
    }

    const ID: Identity<'static> = Identity {
        salt: "",
        namespace: "ns",
        vm: "vm",
        network: "ext",
    };

    #[test]
    fn the_first_attempt_is_the_digest_modulo_the_size() {
        use sha2::{Digest, Sha256};
        let b = block("10.0.0.0/24");
        let d = Sha256::digest(b"\0ns\0vm\0ext");
        let head = u64::from_be_bytes(d[..8].try_into().unwrap());
        let expected = u128::from(u32::from("10.0.0.0".parse::<std::net::Ipv4Addr>().unwrap()))
            + u128::from(head % 256);
        let none = Set {
            taken: HashSet::new(),
            runs: false,
        };
        let got = allocate(&b, &ID, &none).unwrap().1;
        // Unless it hit the network or broadcast address, which this identity does not.
        assert_eq!(got, expected);
    }

    #[test]
    fn a_full_pool_gives_nothing_and_the_last_free_address_is_found() {
        let b = block("10.0.0.0/28");
        let base = to_u128("10.0.0.0".parse().unwrap());
        for runs in [false, true] {
            // Hosts .1 to .14; all but .9 taken.
            let mut taken: HashSet<u128> = (1..15).map(|h| base + h).collect();
            taken.remove(&(base + 9));
            let set = Set { taken, runs };
            assert_eq!(allocate(&b, &ID, &set), Some((0, base + 9)), "runs={runs}");
            let mut set = set;
            set.taken.insert(base + 9);
            assert_eq!(allocate(&b, &ID, &set), None, "runs={runs}");
        }
    }

    #[test]
    fn merging_keeps_what_is_there() {
        let a: IpNet = "10.0.0.5/24".parse().unwrap();
        let b: IpNet = "fd00::5/64".parse().unwrap();
        assert_eq!(merged(None, &[("ext", &[a])]), r#"{"ext":"10.0.0.5/24"}"#);
        assert_eq!(
            merged(
                Some(r#"{"other": "10.1.0.1/24", "ext": {"gateway": "10.0.0.1"}}"#),
                &[("ext", &[a, b])]
            ),
            r#"{"ext":{"addresses":["10.0.0.5/24","fd00::5/64"],"gateway":"10.0.0.1"},"other":"10.1.0.1/24"}"#
        );
        assert_eq!(
            merged(Some("{}"), &[("x", &[a, b])]),
            r#"{"x":{"addresses":["10.0.0.5/24","fd00::5/64"]}}"#
        );
    }
}
