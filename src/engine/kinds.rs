//! Every object that puts a NIC into a guest (SPEC §2.8): what differs by kind. The rules
//! themselves are the same for all; a VMI that KubeVirt made for a VM was decided with its
//! VM, and a template shared by replicas may not claim what only one guest can hold.
use super::{
    Ctx, addresses,
    violations::{Findings, Rule},
};
use crate::model::{
    annotations,
    kinds::Kind,
    vm::{INTERFACES, Vm},
};

/// A VMI created by KubeVirt for a VM: its VM was admitted already.
pub(super) fn decided_with_its_vm(vm: &Vm) -> bool {
    vm.kind == Kind::VirtualMachineInstance && vm.owned_by(Kind::VirtualMachine)
}

/// Denies a MAC or a static address in a template every replica shares.
pub(super) fn check_shared_template(ctx: &Ctx<'_>, verdict: &mut Findings<'_>) {
    let kind = ctx.vm.kind;
    if !kind.is_shared_template() {
        return;
    }
    let replicas = match kind {
        Kind::VirtualMachinePool => {
            "each VM the pool creates gets its own stable MAC and pool address from the webhook"
        }
        _ => {
            "KubeVirt gives each VMI its own MAC; for stable MACs and addresses use a VirtualMachinePool"
        }
    };
    let field = ctx.vm.spec_field(INTERFACES);
    for (i, iface) in ctx.vm.interfaces().iter().enumerate() {
        if let Some(mac) = &iface.mac_address {
            verdict.deny(Rule::SharedTemplateMac, format!("interface {:?} MAC {mac}", iface.name), format!(
                "interface {:?} ({field}[{i}].macAddress): a {} template is shared by every replica, so each would claim {mac}; remove macAddress: {replicas}",
                iface.name,
                kind.name()
            ));
        }
    }
    let requests = addresses::annotation_requests(ctx).ok();
    for net in ctx.vm.networks() {
        let Some(r) = net.nad_ref(ctx.namespace) else {
            continue;
        };
        let request = requests.and_then(|r| r.get(net.name.as_ref()));
        let from_annotation = request.is_some_and(|r| !r.addresses.is_empty());
        let dhcp = request.is_some_and(|r| r.dhcp);
        let pinned = ctx.nad(r).and_then(|n| n.ipam.pinned).filter(|_| !dhcp);
        let (addresses, written): (Vec<String>, String) = match (request, pinned) {
            (Some(req), _) if from_annotation => (
                req.addresses.iter().map(ToString::to_string).collect(),
                // Dotted, as the user finds it in the manifest.
                format!(
                    "in the template's annotation {} ({}.annotations)",
                    annotations::NETWORKS,
                    ctx.vm
                        .layout
                        .vm_meta
                        .trim_start_matches('/')
                        .replace('/', ".")
                ),
            ),
            (_, Some(p)) => (
                vec![p.to_string()],
                format!("pinned by the IPAM of NetworkAttachmentDefinition {r}"),
            ),
            _ => continue,
        };
        verdict.deny(Rule::SharedTemplateAddress, format!("network {:?}", net.name), format!(
                "network {:?}: a {} template is shared by every replica, so each would claim the same address {} ({written}); {}",
                net.name,
                kind.name(),
                addresses.join(", "),
                match kind {
                    Kind::VirtualMachinePool => "give the NAD an address pool (annotation kubevirt-net-webhook.io/address-pool) instead, so each VM gets its own",
                    _ => "use a NAD whose IPAM hands out addresses, or a VirtualMachinePool with an address pool",
                }
            ));
    }
}
