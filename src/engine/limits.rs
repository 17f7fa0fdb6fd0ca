//! A hard cap on what one request may make the engine do (a hostile tenant writes the
//! request): far above what KubeVirt runs, and a clear denial beyond. With the rules linear
//! (or `n log n`) in the size of the VM, these bound the time and memory of every decision.
use super::{
    Ctx,
    violations::{Findings, Rule},
};
use crate::model::annotations;

/// Interfaces, networks, volumes and disks each; KubeVirt guests hot-plug at most a few
/// dozen NICs (PCI slots), so this is only ever hit on purpose.
pub const MAX_DEVICES: usize = 256;
/// Entries of the `kubevirt-net-webhook.io/networks` annotation: one per network at most.
pub const MAX_REQUESTS: usize = MAX_DEVICES;
/// Addresses, routes, DNS servers and search domains of one network's request.
pub const MAX_PER_REQUEST: usize = 64;

/// What exceeds the caps, in words for the user; `None` when the request is within them.
pub(super) fn exceeded(ctx: &Ctx<'_>) -> Option<String> {
    let spec = &ctx.vm.spec;
    let mut over = Vec::new();
    // Field names are formatted only for a request beyond the caps.
    for (what, count, field) in [
        (
            "interfaces",
            spec.domain.devices.interfaces.len(),
            crate::model::vm::INTERFACES,
        ),
        ("networks", spec.networks.len(), crate::model::vm::NETWORKS),
        ("volumes", spec.volumes.len(), crate::model::vm::VOLUMES),
        (
            "disks",
            spec.domain.devices.disks.as_ref().map_or(0, Vec::len),
            crate::model::vm::DISKS,
        ),
    ] {
        if count > MAX_DEVICES {
            let field = ctx.vm.spec_field(field);
            over.push(format!("{count} {what} in {field} (at most {MAX_DEVICES})"));
        }
    }
    if let Ok(requests) = super::addresses::annotation_requests(ctx) {
        if requests.len() > MAX_REQUESTS {
            over.push(format!(
                "{} entries in annotation {} (at most {MAX_REQUESTS})",
                requests.len(),
                annotations::NETWORKS
            ));
        }
        for (network, r) in requests {
            let largest = [
                r.addresses.len(),
                r.routes.as_ref().map_or(0, Vec::len),
                r.dns.as_ref().map_or(0, Vec::len),
                r.search.as_ref().map_or(0, Vec::len),
            ]
            .into_iter()
            .max()
            .unwrap_or(0);
            if largest > MAX_PER_REQUEST {
                over.push(format!(
                    "{largest} items in one list of annotation {}, network {network:?} (at most {MAX_PER_REQUEST})",
                    annotations::NETWORKS
                ));
                break;
            }
        }
    }
    (!over.is_empty()).then(|| over.join("; "))
}

/// Denies a request beyond the caps; the other rules are not run on it.
pub(super) fn check(ctx: &Ctx<'_>, verdict: &mut Findings<'_>) -> bool {
    match exceeded(ctx) {
        None => true,
        Some(what) => {
            verdict.deny(
                Rule::TooLarge,
                ctx.vm.kind.name().to_string(),
                format!(
                    "the {} is larger than the webhook reviews: {what}; split it, or remove what it does not use",
                    ctx.vm.kind.name()
                ),
            );
            false
        }
    }
}
