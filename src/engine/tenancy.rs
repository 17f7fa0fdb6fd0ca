//! The tenant boundary on NAD references (SPEC §2.7). With `nadNamespaceIsolation`, a VM may
//! use a NAD of its own namespace, of `globalNadNamespaces`, or one whose owner shares it
//! (annotation `kubevirt-net-webhook.io/shared-with`). A forbidden NAD is invisible to every
//! other rule ([`super::Ctx::nad`]): nothing the webhook says or writes depends on whether it
//! exists or what it holds.
use super::{
    Ctx,
    violations::{Findings, Rule},
};
use crate::model::{annotations, nad::Nad, nad::NadRef};

/// What a VM may know of the NAD behind one reference.
#[derive(Debug, Clone, Copy)]
pub(super) enum Access<'a> {
    /// The VM may use it; `None` when it does not exist.
    Allowed(Option<&'a Nad>),
    /// The tenant boundary forbids it, whether it exists or not.
    Forbidden,
}

/// Whether `nad`'s owner shares it with `namespace` (`*` for every namespace).
fn shared_with(nad: &Nad, namespace: &str) -> bool {
    nad.annotations
        .get(annotations::SHARED_WITH)
        .is_some_and(|list| {
            list.split(',')
                .map(str::trim)
                .any(|entry| entry == "*" || entry == namespace)
        })
}

pub(super) fn access<'a>(ctx: &Ctx<'a>, r: NadRef<'_>) -> Access<'a> {
    let nad = ctx.inventory.nad(r.namespace, r.name);
    let config = ctx.config;
    let open = !config.nad_namespace_isolation
        || r.namespace == ctx.namespace
        || config
            .global_nad_namespaces
            .iter()
            .any(|g| g == r.namespace);
    match nad {
        _ if open => Access::Allowed(nad),
        Some(n) if shared_with(n, ctx.namespace) => Access::Allowed(Some(n)),
        // The same answer whether the NAD exists or not: no oracle.
        _ => Access::Forbidden,
    }
}

/// Denies every reference the boundary forbids, naming the interface, the reference and
/// the fix.
pub(super) fn check(ctx: &Ctx<'_>, verdict: &mut Findings<'_>) {
    if !ctx.config.nad_namespace_isolation {
        return;
    }
    let field = ctx.vm.interfaces_field();
    for net in ctx.vm.networks() {
        let Some(r) = net.nad_ref(ctx.namespace) else {
            continue;
        };
        if !matches!(access(ctx, r), Access::Forbidden) {
            continue;
        }
        let at = match ctx.vm.interfaces().iter().position(|i| i.name == net.name) {
            Some(i) => format!("interface {:?} ({field}[{i}])", net.name),
            None => format!("network {:?} ({})", net.name, ctx.vm.networks_field()),
        };
        let globals = ctx.config.global_nad_namespaces.join(", ");
        verdict.deny(Rule::ForeignNad, format!("network {:?} on NAD {r}", net.name), format!(
            "{at} references NetworkAttachmentDefinition {r}, which VMs in namespace {ns:?} may not use: with nadNamespaceIsolation, a VM may use NADs of its own namespace, of the global namespaces ({globals}), or NADs whose owner lists the namespace in annotation {key}. Use a NAD in namespace {ns:?}, or ask the owner of {r} to share it",
            ns = ctx.namespace,
            key = annotations::SHARED_WITH,
        ));
    }
}
