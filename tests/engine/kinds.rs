//! Every object that puts a NIC into a guest (SPEC §2.8): VMIs, VMI replica sets and VM
//! pools get the VM's rules at their own spec paths.
use super::*;
use kubevirt_net_webhook::model::kinds::Kind;

/// Scenarios a VM is denied for, and one it is admitted with.
fn scenarios() -> Vec<(&'static str, Value, Inventory)> {
    let mut taken = inventory_with([bridge_nad(NS, "br")]);
    remember(
        &mut taken,
        &annotate(
            two_nic("other", "br"),
            "kubevirt-net-webhook.io/networks",
            r#"{"ext": "10.10.0.7/24"}"#,
        ),
    );
    vec![
        (
            "admitted",
            two_nic("v", "br"),
            inventory_with([bridge_nad(NS, "br")]),
        ),
        (
            "bridge on macvlan",
            two_nic("v", "mv"),
            inventory_with([macvlan_nad(NS, "mv")]),
        ),
        (
            "unpaired names",
            vm(
                "v",
                json!([{"name": "a", "bridge": {}}, {"name": "b", "bridge": {}}]),
                json!([{"name": "x", "multus": {"networkName": "br"}}]),
            ),
            inventory_with([bridge_nad(NS, "br")]),
        ),
        (
            "address taken",
            annotate(
                two_nic("v", "br"),
                "kubevirt-net-webhook.io/networks",
                r#"{"ext": "10.10.0.7/24"}"#,
            ),
            taken,
        ),
    ]
}

/// Denial messages with the kind's spec path written as the VM's.
fn as_vm_paths(verdict: &Verdict) -> Vec<String> {
    verdict
        .denials
        .iter()
        .map(|d| {
            d.message
                .replace("spec.domain", "spec.template.spec.domain")
                .replace("spec.networks", "spec.template.spec.networks")
        })
        .collect()
}

#[test]
fn a_vmi_is_denied_exactly_when_its_vm_is() {
    for (what, vm, inv) in scenarios() {
        let vmi = as_kind(&vm, Kind::VirtualMachineInstance);
        let (_, vm_out) = mutate(&vm, &inv);
        let (_, vmi_out) = mutate(&vmi, &inv);
        let (for_vm, for_vmi) = (validate(&vm_out, &inv), validate(&vmi_out, &inv));
        assert_eq!(for_vm.allowed(), for_vmi.allowed(), "{what}");
        let vm_messages: Vec<&str> = for_vm.denials.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(vm_messages, as_vm_paths(&for_vmi), "{what}");
    }
}

#[test]
fn a_vmi_is_mutated_at_its_own_paths() {
    let inv = inventory_with([bridge_nad(NS, "br")]);
    let vmi = annotate(
        as_kind(&two_nic("v", "br"), Kind::VirtualMachineInstance),
        "kubevirt-net-webhook.io/networks",
        r#"{"ext": "10.10.0.5/24"}"#,
    );
    let (m, out) = mutate(&vmi, &inv);
    let paths: Vec<String> = m.patch.0.iter().map(|op| op.path().to_string()).collect();
    assert!(
        paths.contains(&"/spec/domain/devices/interfaces/1/macAddress".to_string()),
        "{paths:?}"
    );
    let data = out["spec"]["volumes"][0]["cloudInitNoCloud"]["networkData"]
        .as_str()
        .unwrap();
    assert!(data.contains("10.10.0.5/24"), "{data}");
    // The MAC is the VM's: a VMI's identity is its own namespace/name.
    let (_, vm_out) = mutate(
        &annotate(
            two_nic("v", "br"),
            "kubevirt-net-webhook.io/networks",
            r#"{"ext": "10.10.0.5/24"}"#,
        ),
        &inv,
    );
    assert_eq!(
        out["spec"]["domain"]["devices"]["interfaces"][1]["macAddress"],
        iface(&vm_out, 1)["macAddress"]
    );
    assert!(
        support::schema::validate_object(&out).is_ok(),
        "{:?}",
        support::schema::validate_object(&out)
    );
}

#[test]
fn a_vmi_created_for_a_vm_passes_untouched() {
    let inv = inventory_with([macvlan_nad(NS, "mv")]);
    let mut vmi = as_kind(&two_nic("v", "mv"), Kind::VirtualMachineInstance);
    vmi["metadata"]["ownerReferences"] = json!([{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": "v", "uid": "1", "controller": true}]);
    let (m, _) = mutate(&vmi, &inv);
    assert!(m.patch.0.is_empty() && m.warnings.is_empty());
    assert!(validate(&vmi, &inv).allowed());
}

#[test]
fn templates_are_reconciled_but_get_no_mac_or_config() {
    let inv = inventory_with([bridge_nad(NS, "br")]);
    let named_after_nad = vm(
        "v",
        json!([{"name": "default", "masquerade": {}}, {"name": "br", "bridge": {}}]),
        json!([{"name": "default", "pod": {}}, {"name": "ext", "multus": {"networkName": "br"}}]),
    );
    for (kind, base) in [
        (
            Kind::VirtualMachineInstanceReplicaSet,
            "/spec/template/spec",
        ),
        (
            Kind::VirtualMachinePool,
            "/spec/virtualMachineTemplate/spec/template/spec",
        ),
    ] {
        let object = annotate(
            as_kind(&named_after_nad, kind),
            "kubevirt-net-webhook.io/network-data",
            "always",
        );
        let (m, out) = mutate(&object, &inv);
        let paths: Vec<String> = m.patch.0.iter().map(|op| op.path().to_string()).collect();
        assert_eq!(
            paths,
            [format!("{base}/domain/devices/interfaces/1/name")],
            "{kind:?}"
        );
        assert!(
            validate(&out, &inv).allowed(),
            "{kind:?}: {:?}",
            validate(&out, &inv)
        );
        assert!(
            support::schema::validate_object(&out).is_ok(),
            "{kind:?}: {:?}",
            support::schema::validate_object(&out)
        );
    }
}

#[test]
fn a_shared_template_may_not_claim_a_mac_or_an_address() {
    let pinned = nad(
        NS,
        "one",
        r#"{"type":"bridge","ipam":{"type":"static","addresses":[{"address":"10.30.0.7/24"}]}}"#,
    );
    let inv = inventory_with([bridge_nad(NS, "br"), pinned]);
    let mut with_mac = two_nic("v", "br");
    with_mac["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][1]["macAddress"] =
        json!("02:aa:bb:cc:dd:ee");
    let with_address = annotate(
        two_nic("v", "br"),
        "kubevirt-net-webhook.io/networks",
        r#"{"ext": "10.10.0.5/24"}"#,
    );
    for kind in [
        Kind::VirtualMachineInstanceReplicaSet,
        Kind::VirtualMachinePool,
    ] {
        denied_with(
            &validate(&as_kind(&with_mac, kind), &inv),
            &["02:aa:bb:cc:dd:ee", "shared by every replica", "macAddress"],
        );
        // The address itself and where it was written are named.
        let meta = match kind {
            Kind::VirtualMachinePool => "spec.virtualMachineTemplate.metadata.annotations",
            _ => "spec.template.metadata.annotations",
        };
        denied_with(
            &validate(&as_kind(&with_address, kind), &inv),
            &[
                "\"ext\"",
                "shared by every replica",
                "the same address 10.10.0.5/24 (in the template's annotation kubevirt-net-webhook.io/networks",
                meta,
            ],
        );
        denied_with(
            &validate(&as_kind(&two_nic("v", "one"), kind), &inv),
            &["10.30.0.7/24 (pinned by the IPAM of NetworkAttachmentDefinition team-a/one)"],
        );
    }
    // The rules of every kind apply too.
    let inv = inventory_with([macvlan_nad(NS, "mv")]);
    denied_with(
        &validate(
            &as_kind(&two_nic("v", "mv"), Kind::VirtualMachinePool),
            &inv,
        ),
        &[
            "macvlan",
            "spec.virtualMachineTemplate.spec.template.spec.domain.devices.interfaces[1]",
        ],
    );
}

#[test]
fn replica_set_vmis_have_no_identity_and_pool_vms_do() {
    let inv = inventory_with([bridge_nad(NS, "br")]);
    let mut vmi = as_kind(&two_nic("v", "br"), Kind::VirtualMachineInstance);
    vmi["metadata"] = json!({"generateName": "rs-", "namespace": NS,
        "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceReplicaSet", "name": "rs", "uid": "1"}]});
    let (m, _) = mutate(&vmi, &inv);
    assert!(m.patch.0.is_empty(), "{:?}", m.patch);
    assert!(
        m.warnings.iter().any(|w| w.contains("generateName")),
        "{:?}",
        m.warnings
    );
    let mut pool_vm = two_nic("pool-0", "br");
    pool_vm["metadata"]["ownerReferences"] = json!([{"apiVersion": "pool.kubevirt.io/v1beta1", "kind": "VirtualMachinePool", "name": "pool", "uid": "1"}]);
    let (_, out) = mutate(&pool_vm, &inv);
    assert_eq!(
        iface(&out, 1)["macAddress"],
        json!(mac::derive(&Config::default().mac_prefix, "", NS, "pool-0", "ext", 0).to_string())
    );
}
