//! Interface/network name reconciliation (SPEC §2.1).
use std::collections::BTreeSet;

use serde_json::Value;

use super::{Ctx, Ops, Verdict};
use crate::{
    annotations,
    vm::{INTERFACES, INTERFACES_FIELD, NETWORKS_FIELD, pointer_token, split_nad_ref},
};

/// Interfaces (by index) and networks (by name) that have no partner of the same name.
fn unpaired(ctx: &Ctx<'_>) -> (Vec<usize>, Vec<String>) {
    let ifaces = ctx.vm.interfaces();
    let nets = ctx.vm.networks();
    let lonely_ifaces = (0..ifaces.len())
        .filter(|&i| !nets.iter().any(|n| n.name == ifaces[i].name))
        .collect();
    let lonely_nets = nets
        .iter()
        .filter(|n| !ifaces.iter().any(|i| i.name == n.name))
        .map(|n| n.name.clone())
        .collect();
    (lonely_ifaces, lonely_nets)
}

/// Renames unpaired interfaces to their network: by NAD name, then the last one left.
pub(super) fn reconcile(ctx: &mut Ctx<'_>, ops: &mut Ops, warnings: &mut Vec<String>) {
    let (mut lonely_ifaces, mut lonely_nets) = unpaired(ctx);
    let mut renames: Vec<(usize, String)> = Vec::new();
    // Rule 2: the interface is named after the NAD of exactly one unpaired network.
    lonely_ifaces.retain(|&i| {
        let iface = &ctx.vm.interfaces()[i].name;
        let matches: Vec<&String> = lonely_nets
            .iter()
            .filter(|n| {
                ctx.vm
                    .network(n)
                    .and_then(|n| n.multus.as_ref())
                    .is_some_and(|m| {
                        m.network_name == *iface || split_nad_ref(&m.network_name, "").1 == iface
                    })
            })
            .collect();
        match matches.as_slice() {
            [net] => {
                let net = (*net).clone();
                lonely_nets.retain(|n| *n != net);
                renames.push((i, net));
                false
            }
            _ => true,
        }
    });
    // Rule 3: one of each left over can only belong together.
    if let ([i], [net]) = (lonely_ifaces.as_slice(), lonely_nets.as_slice()) {
        renames.push((*i, net.clone()));
    }
    for (i, network) in renames {
        let iface = &mut ctx.vm.spec.template.spec.domain.devices.interfaces[i];
        warnings.push(format!(
            "renamed interface {:?} to {network:?} to match its network ({INTERFACES_FIELD}[{i}].name)",
            iface.name
        ));
        iface.name = network.clone();
        ops.replace(format!("{INTERFACES}/{i}/name"), Value::String(network));
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
    let Some(text) = ctx.vm.spec.template.metadata.annotations.get(key) else {
        return;
    };
    let declared: BTreeSet<(&str, &str)> = ctx
        .vm
        .networks()
        .iter()
        .filter_map(|n| n.nad_ref(ctx.namespace))
        .collect();
    let entries = annotations::parse_multus_networks(text).unwrap_or_default();
    let all_declared = !entries.is_empty()
        && entries.iter().all(|(ns, name)| {
            declared.contains(&(ns.as_deref().unwrap_or(ctx.namespace), name.as_str()))
        });
    if all_declared {
        ops.remove(format!(
            "/spec/template/metadata/annotations/{}",
            pointer_token(key)
        ));
        warnings.push(format!(
            "removed annotation {key} from spec.template.metadata: KubeVirt derives it from {NETWORKS_FIELD} and overwrites a manual one"
        ));
    } else {
        warnings.push(format!(
            "annotation {key} on spec.template.metadata lists networks not declared in {NETWORKS_FIELD}; KubeVirt overwrites it on the launcher pod, so declare each network as a Multus network instead"
        ));
    }
}

/// Denies interfaces without a network, networks without an interface, and duplicate names.
pub(super) fn check(ctx: &Ctx<'_>, verdict: &mut Verdict) {
    let (lonely_ifaces, lonely_nets) = unpaired(ctx);
    if !lonely_ifaces.is_empty() || !lonely_nets.is_empty() {
        let mut parts = Vec::new();
        if !lonely_ifaces.is_empty() {
            let names: Vec<String> = lonely_ifaces
                .iter()
                .map(|&i| format!("{:?}", ctx.vm.interfaces()[i].name))
                .collect();
            parts.push(format!(
                "interfaces without a network of the same name in {NETWORKS_FIELD}: {}",
                names.join(", ")
            ));
        }
        if !lonely_nets.is_empty() {
            let names: Vec<String> = lonely_nets.iter().map(|n| format!("{n:?}")).collect();
            parts.push(format!(
                "networks without an interface of the same name in {INTERFACES_FIELD}: {}",
                names.join(", ")
            ));
        }
        verdict.denials.push(format!(
            "{}; every interface must have a network with the same name: rename the interface to its network's name (not the NAD's)",
            parts.join("; ")
        ));
    }
    for (what, names) in [
        (
            "interface",
            ctx.vm
                .interfaces()
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>(),
        ),
        (
            "network",
            ctx.vm.networks().iter().map(|n| n.name.as_str()).collect(),
        ),
    ] {
        let mut seen = BTreeSet::new();
        let dups: BTreeSet<&str> = names.into_iter().filter(|n| !seen.insert(*n)).collect();
        for d in dups {
            verdict.denials.push(format!(
                "{what} name {d:?} is used more than once; names must be unique"
            ));
        }
    }
}
