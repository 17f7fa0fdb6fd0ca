//! Deterministic MAC addresses (SPEC §2.3).
use foldhash::{HashMap, HashMapExt, HashSet};

use super::{
    Ctx, Ops, patch,
    violations::{Findings, Rule},
};
use crate::inventory::with_key;
use crate::model::{
    mac::{self, Mac},
    vm::{INTERFACES, Source},
};

/// Gives every MAC-carrying interface without `macAddress` one: its old one on UPDATE, else the
/// derived one that no other VM on the same NAD (and no other NIC of this VM) uses.
pub(super) fn assign(ctx: &mut Ctx<'_>, ops: &mut Ops, warnings: &mut Vec<String>) {
    let mut used: HashSet<Mac> = ctx
        .vm
        .interfaces()
        .iter()
        .filter_map(|i| i.mac_address.as_deref().and_then(Mac::parse))
        .collect();
    // `name=mac, ...` for the warning, written as MACs are assigned.
    let mut assigned = String::new();
    let mut anonymous = Vec::new();
    // Kept by interface name, so that a NAD swap or a re-applied manifest keeps the MAC.
    let old_macs: HashMap<&str, &str> = ctx
        .old
        .as_ref()
        .map(|o| {
            o.interfaces()
                .iter()
                .filter_map(|oi| Some((oi.name.as_ref(), oi.mac_address.as_deref()?)))
                .collect()
        })
        .unwrap_or_default();
    let base = ctx.vm.spec_pointer(INTERFACES);
    for i in 0..ctx.vm.interfaces().len() {
        let iface = &ctx.vm.interfaces()[i];
        // Unknown bindings and network sources pass through untouched (SPEC §2.9).
        let source = ctx.vm.network(&iface.name).map(|n| n.source());
        if iface.mac_address.is_some()
            || !iface.binding().carries_mac()
            || !matches!(source, Some(Source::Pod | Source::Multus))
        {
            continue;
        }
        let kept = old_macs.get(iface.name.as_ref()).map(|m| m.to_string());
        let mac = match (kept, ctx.vm.name.as_deref()) {
            (Some(kept), _) => {
                if let Some(m) = Mac::parse(&kept) {
                    used.insert(m);
                }
                kept
            }
            (None, Some(vm_name)) => {
                // Other VMs on a NAD this VM may not use must not shape its MAC (SPEC §2.7).
                let nad = ctx.nad_of(&iface.name).filter(|r| !ctx.forbidden(*r));
                let me = ctx.me();
                let derived = mac::derive_free(
                    &ctx.config.mac_prefix,
                    &ctx.config.cluster_salt,
                    ctx.namespace,
                    vm_name,
                    &iface.name,
                    |m| {
                        used.contains(&m)
                            || nad.is_some_and(|r| {
                                with_key(r.namespace, r.name, |nad| {
                                    ctx.inventory.mac_user(nad, m, me).is_some()
                                })
                            })
                    },
                );
                used.insert(derived);
                derived.text()
            }
            (None, None) => {
                anonymous.push(iface.name.clone());
                continue;
            }
        };
        if !assigned.is_empty() {
            assigned.push_str(", ");
        }
        assigned.push_str(&iface.name);
        assigned.push('=');
        assigned.push_str(&mac);
        ops.add(patch::item(&base, i, "macAddress"), mac.as_str());
        ctx.vm.to_mut().spec.domain.devices.interfaces[i].mac_address = Some(mac.into());
    }
    if !assigned.is_empty() {
        warnings.push(format!(
            "set stable MAC addresses (macAddress) so the guest's network config keeps matching: {assigned}"
        ));
    }
    if !anonymous.is_empty() {
        warnings.push(format!(
            "no MAC address set for {}: the VM has generateName and no name yet, so it has no identity to derive a stable MAC from; give it a name",
            anonymous.join(", ")
        ));
    }
}

/// Denies malformed, multicast, all-zero and reserved MACs, and MACs used twice.
pub(super) fn check(ctx: &Ctx<'_>, verdict: &mut Findings<'_>) {
    let mut seen: HashMap<Mac, &str> = HashMap::new();
    let field = ctx.vm.interfaces_field();
    for (i, iface) in ctx.vm.interfaces().iter().enumerate() {
        let Some(text) = iface.mac_address.as_deref() else {
            continue;
        };
        // Formatted only for a message: most MACs are fine.
        let at = || format!("interface {:?} ({field}[{i}].macAddress)", iface.name);
        let Some(mac) = Mac::parse(text) else {
            verdict.deny(Rule::InvalidMac, format!("interface {:?} MAC {text:?}", iface.name), format!(
                "{}: {text:?} is not a MAC address; write six hex bytes like 02:1a:2b:3c:4d:5e, or remove it to get a stable generated one",
                at()
            ));
            continue;
        };
        if let Some(why) = mac.unusable() {
            verdict.deny(Rule::UnusableMac, format!("interface {:?} MAC {mac}", iface.name), format!(
                "{}: {mac} {why}; use a unicast, locally administered MAC like 02:1a:2b:3c:4d:5e, or remove it to get a generated one",
                at()
            ));
            continue;
        }
        if mac.0 >> 40 == 0xfe {
            // KubeVirt accepts it, but libvirt gives its tap devices fe:… MACs.
            verdict.warnings.push(format!(
                "{}: {mac} starts with fe, which libvirt reserves for the host side of tap devices; the guest may get no traffic. Use a MAC starting with 02, or remove it to get a generated one",
                at()
            ));
        }
        if let Some(other) = seen.get(&mac) {
            verdict.deny(
                Rule::DuplicateMac,
                format!("interface {:?} MAC {mac}", iface.name),
                format!(
                    "{}: {mac} is also the MAC of interface {other:?}; every NIC needs its own",
                    at()
                ),
            );
        } else {
            seen.insert(mac, &iface.name);
        }
        if let Some(nad) = ctx.nad_of(&iface.name).filter(|r| !ctx.forbidden(*r)) {
            let other = with_key(nad.namespace, nad.name, |k| {
                ctx.inventory.mac_user(k, mac, ctx.me())
            });
            if let Some(other) = other {
                verdict.deny(Rule::MacConflict, format!("interface {:?} MAC {mac} on NAD {nad}", iface.name), format!(
                    "{}: {mac} is already used by {} on NetworkAttachmentDefinition {nad}; two NICs with one MAC on one network break both. Pick another or remove macAddress to get a generated one",
                    at(),
                    ctx.describe_other(other)
                ));
            }
        }
    }
}
