//! Binding/CNI compatibility and NAD existence (SPEC §2.2).
use super::{
    Ctx,
    by_name::ByName,
    tenancy::{self, Access},
    violations::{Findings, Rule},
};
use crate::model::{config::MissingNad, nad::NadRef, vm::Binding};

pub(super) fn check(ctx: &Ctx<'_>, verdict: &mut Findings<'_>) {
    let by_name = ByName::new(
        ctx.vm
            .interfaces()
            .iter()
            .enumerate()
            .map(|(i, iface)| (iface.name.as_ref(), i)),
    );
    for net in ctx.vm.networks() {
        let Some(r) = net.nad_ref(ctx.namespace) else {
            continue;
        };
        let NadRef {
            namespace: ns,
            name,
        } = r;
        let Access::Allowed(nad) = tenancy::access(ctx, r) else {
            continue; // denied by the tenant boundary, whatever the NAD holds
        };
        let Some(nad) = nad else {
            let message = format!(
                "network {:?} references NetworkAttachmentDefinition {ns}/{name}, which does not exist; create it or fix multus.networkName",
                net.name
            );
            match ctx.config.missing_network_attachment {
                MissingNad::Warn => verdict.warnings.push(message),
                MissingNad::Deny => verdict.deny(
                    Rule::MissingNad,
                    format!("network {:?} on NAD {ns}/{name}", net.name),
                    message,
                ),
            }
            continue;
        };
        if let Some(error) = &nad.config_error {
            verdict.warnings.push(format!(
                "NetworkAttachmentDefinition {ns}/{name} (network {:?}) has a config the webhook cannot read ({error}); its binding and addresses were not checked",
                net.name
            ));
            continue;
        }
        let Some(cni) = nad.main_type.as_deref() else {
            continue;
        };
        let incompatible = ctx.config.incompatible_bridge_cnis.iter().any(|t| t == cni);
        for i in by_name.all(&net.name) {
            let iface = &ctx.vm.interfaces()[i];
            if iface.binding() == Binding::Bridge && incompatible {
                verdict.deny(Rule::BridgeBinding, format!("interface {:?} on NAD {ns}/{name}", iface.name), format!(
                    "interface {:?} ({}[{i}]) uses the bridge binding on NetworkAttachmentDefinition {ns}/{name}, whose CNI type is {cni:?}: the bridge binding moves the pod interface's MAC into the guest, and {cni} needs the pod interface to keep it, so the VM would get no traffic. Use a bridge- or OVS-CNI NAD with the bridge binding, or the macvtap binding plugin (binding: {{name: macvtap}}) with a macvtap NAD, or SR-IOV (sriov: {{}}) with an SR-IOV NAD",
                    iface.name,
                    ctx.vm.interfaces_field()
                ));
            }
        }
    }
}
