//! Interface/network name reconciliation (SPEC §2.1).
use std::collections::BTreeSet;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::{
    Ctx, Ops,
    by_name::ByName,
    patch::{self, pointer},
    violations::{Findings, Rule},
};
use crate::model::{annotations, kinds::Layout, nad::NadRef, vm::INTERFACES};

/// At most this many names are listed in one message; the rest are counted.
const LISTED: usize = 20;

/// Already quoted items as [`list`] writes them: bounded, whatever the VM holds.
fn list_quoted(items: &[&str]) -> String {
    let mut shown: Vec<&str> = items.iter().take(LISTED).copied().collect();
    let more = format!("and {} more", items.len().saturating_sub(LISTED));
    if items.len() > LISTED {
        shown.push(&more);
    }
    shown.join(", ")
}

/// `"a", "b" and 3 more`: bounded, whatever the VM holds.
pub(super) fn list<S: std::fmt::Debug>(items: impl ExactSizeIterator<Item = S>) -> String {
    let total = items.len();
    let mut shown: Vec<String> = items.take(LISTED).map(|i| format!("{i:?}")).collect();
    if total > LISTED {
        shown.push(format!("and {} more", total - LISTED));
    }
    shown.join(", ")
}

/// The names of the interfaces and of the networks.
fn names<'v>(ctx: &'v Ctx<'_>) -> (ByName<'v, ()>, ByName<'v, ()>) {
    (
        ByName::new(ctx.vm.interfaces().iter().map(|i| (i.name.as_ref(), ()))),
        ByName::new(ctx.vm.networks().iter().map(|n| (n.name.as_ref(), ()))),
    )
}

/// Interfaces (by index) and networks (by index) that have no partner of the same name.
fn unpaired(ctx: &Ctx<'_>) -> (Vec<usize>, Vec<usize>) {
    let (iface_names, net_names) = names(ctx);
    unpaired_of(ctx, &iface_names, &net_names)
}

fn unpaired_of(
    ctx: &Ctx<'_>,
    iface_names: &ByName<'_, ()>,
    net_names: &ByName<'_, ()>,
) -> (Vec<usize>, Vec<usize>) {
    let ifaces = ctx.vm.interfaces();
    let nets = ctx.vm.networks();
    let lonely_ifaces = (0..ifaces.len())
        .filter(|&i| !net_names.contains(ifaces[i].name.as_ref()))
        .collect();
    let lonely_nets = (0..nets.len())
        .filter(|&n| !iface_names.contains(nets[n].name.as_ref()))
        .collect();
    (lonely_ifaces, lonely_nets)
}

/// Renames unpaired interfaces to their network: by NAD name, then the last one left.
pub(super) fn reconcile(ctx: &mut Ctx<'_>, ops: &mut Ops, warnings: &mut Vec<String>) {
    let (mut lonely_ifaces, lonely_nets) = unpaired(ctx);
    let nets = ctx.vm.networks();
    // Rule 2: the interface is named after the NAD (`name` or `namespace/name`) of exactly one
    // unpaired network. Indexed by both spellings, so each interface is one lookup.
    let mut by_nad: HashMap<&str, Vec<usize>> = HashMap::new();
    for &n in &lonely_nets {
        if let Some(m) = &nets[n].multus {
            let full = m.network_name.as_ref();
            let short = NadRef::resolve(full, "").name;
            by_nad.entry(full).or_default().push(n);
            if short != full {
                by_nad.entry(short).or_default().push(n);
            }
        }
    }
    let mut taken: HashSet<usize> = HashSet::new();
    let mut renames: Vec<(usize, usize)> = Vec::new();
    lonely_ifaces.retain(|&i| {
        let iface = ctx.vm.interfaces()[i].name.as_ref();
        let mut matches = by_nad
            .get(iface)
            .into_iter()
            .flatten()
            .filter(|n| !taken.contains(n));
        match (matches.next(), matches.next()) {
            (Some(&n), None) => {
                taken.insert(n);
                renames.push((i, n));
                false
            }
            _ => true,
        }
    });
    // Rule 3: one of each left over can only belong together.
    let left: Vec<usize> = lonely_nets
        .into_iter()
        .filter(|n| !taken.contains(n))
        .collect();
    if let ([i], [n]) = (lonely_ifaces.as_slice(), left.as_slice()) {
        renames.push((*i, *n));
    }
    let field = ctx.vm.interfaces_field();
    let base = ctx.vm.spec_pointer(INTERFACES);
    for (i, n) in renames {
        let network = ctx.vm.networks()[n].name.clone();
        let iface = &mut ctx.vm.to_mut().spec.domain.devices.interfaces[i];
        warnings.push(format!(
            "renamed interface {:?} to {network:?} to match its network ({field}[{i}].name)",
            iface.name
        ));
        ops.replace(patch::item(&base, i, "name"), network.as_ref());
        iface.name = network;
    }
}

/// Removes a manual Multus annotation on the template that only repeats the VM's networks:
/// KubeVirt writes that annotation on the launcher pod itself and overwrites a manual one.
pub(super) fn drop_redundant_multus_annotation(
    ctx: &Ctx<'_>,
    ops: &mut Ops,
    warnings: &mut Vec<String>,
) {
    let key = annotations::MULTUS_NETWORKS;
    let Some(text) = ctx.vm.pod_annotations.get(key) else {
        return;
    };
    let declared: BTreeSet<(&str, &str)> = ctx
        .vm
        .networks()
        .iter()
        .filter_map(|n| n.nad_ref(ctx.namespace))
        .map(|r| (r.namespace, r.name))
        .collect();
    let entries = annotations::parse_multus_networks(text).unwrap_or_default();
    let all_declared = !entries.is_empty()
        && entries.iter().all(|(ns, name)| {
            declared.contains(&(ns.as_deref().unwrap_or(ctx.namespace), name.as_str()))
        });
    let meta = Layout::field(ctx.vm.layout.pod_meta);
    let networks = ctx.vm.networks_field();
    if all_declared {
        ops.remove(pointer(ctx.vm.layout.pod_meta, ["annotations", key]));
        warnings.push(format!(
            "removed annotation {key} from {meta}: KubeVirt derives it from {networks} and overwrites a manual one"
        ));
    } else {
        warnings.push(format!(
            "annotation {key} on {meta} lists networks not declared in {networks}; KubeVirt overwrites it on the launcher pod, so declare each network as a Multus network instead"
        ));
    }
}

/// Denies interfaces without a network, networks without an interface, and duplicate names.
pub(super) fn check(ctx: &Ctx<'_>, verdict: &mut Findings<'_>) {
    let (iface_names, net_names) = names(ctx);
    let (lonely_ifaces, lonely_nets) = unpaired_of(ctx, &iface_names, &net_names);
    if !lonely_ifaces.is_empty() || !lonely_nets.is_empty() {
        // One item per name, so that a name the stored object had unpaired too is ratcheted
        // apart from the new ones (SPEC §2.11).
        let items = lonely_ifaces
            .iter()
            .map(|&i| format!("interface {:?}", ctx.vm.interfaces()[i].name))
            .chain(
                lonely_nets
                    .iter()
                    .map(|&n| format!("network {:?}", ctx.vm.networks()[n].name)),
            )
            .collect();
        verdict.deny_each(Rule::UnpairedName, items, |items| {
            let named = |prefix: &str| -> Vec<&str> {
                items
                    .iter()
                    .filter_map(|i| i.strip_prefix(prefix))
                    .collect()
            };
            let (ifaces, nets) = (named("interface "), named("network "));
            let mut parts = Vec::new();
            if !ifaces.is_empty() {
                parts.push(format!(
                    "interfaces without a network of the same name in {}: {}",
                    ctx.vm.networks_field(),
                    list_quoted(&ifaces)
                ));
            }
            if !nets.is_empty() {
                parts.push(format!(
                    "networks without an interface of the same name in {}: {}",
                    ctx.vm.interfaces_field(),
                    list_quoted(&nets)
                ));
            }
            format!(
                "{}; every interface must have a network with the same name: rename the interface to its network's name (not the NAD's)",
                parts.join("; ")
            )
        });
    }
    for (what, names) in [("interface", &iface_names), ("network", &net_names)] {
        let dups: Vec<&str> = names.repeated().collect();
        for d in dups.iter().take(LISTED) {
            verdict.deny(
                Rule::DuplicateName,
                format!("{what} {d:?}"),
                format!("{what} name {d:?} is used more than once; names must be unique"),
            );
        }
        if dups.len() > LISTED {
            verdict.deny(
                Rule::DuplicateName,
                format!("{} more {what} names", dups.len() - LISTED),
                format!(
                    "and {} more {what} names are used more than once",
                    dups.len() - LISTED
                ),
            );
        }
    }
}
