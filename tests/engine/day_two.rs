//! Day two (SPEC §2.9): the real sequences of a VM's life, each step an UPDATE as the API
//! server delivers it (object + oldObject, with `status` as KubeVirt writes it).
use super::*;
use kubevirt_net_webhook::engine::Mutation;

const NETWORKS: &str = "kubevirt-net-webhook.io/networks";

/// The NADs of these tests: `br` and `br2`, both bridges on 10.10.0.0/24.
fn inv() -> Inventory {
    inventory_with([bridge_nad(NS, "br"), bridge_nad(NS, "br2")])
}

/// A VM that asks for 10.10.0.5 on `ext`.
fn web() -> Value {
    annotate(two_nic("web", "br"), NETWORKS, r#"{"ext": "10.10.0.5/24"}"#)
}

/// KubeVirt's status writes (the status subresource, which the webhook is not asked about).
fn started(mut v: Value) -> Value {
    v["status"] = json!({"created": true, "ready": true, "printableStatus": "Running"});
    v
}

fn stopped(mut v: Value) -> Value {
    v["status"] = json!({"printableStatus": "Stopped"});
    v
}

fn run_strategy(mut v: Value, strategy: &str) -> Value {
    v["spec"]["runStrategy"] = json!(strategy);
    v
}

fn spec(v: &mut Value) -> &mut Value {
    &mut v["spec"]["template"]["spec"]
}

fn hotplug(mut v: Value, name: &str, nad: &str) -> Value {
    spec(&mut v)["domain"]["devices"]["interfaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": name, "bridge": {}}));
    spec(&mut v)["networks"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": name, "multus": {"networkName": nad}}));
    v
}

/// An UPDATE of `old` to `new`: the mutation and the object stored after it.
fn update(new: &Value, old: &Value) -> (Mutation, Value) {
    let inv = inv();
    let (m, out) = Ask::new(&inv).mutate_update(new, Some(old));
    let verdict = Ask::new(&inv).validate_update(&out, Some(old));
    assert!(verdict.allowed(), "{verdict:?}");
    (m, out)
}

fn paths(m: &Mutation) -> Vec<String> {
    m.patch.0.iter().map(|op| op.path().to_string()).collect()
}

fn touches_volumes(m: &Mutation) -> bool {
    paths(m)
        .iter()
        .any(|p| p.contains("/volumes") || p.contains("/disks"))
}

fn data(v: &Value) -> String {
    network_data(v).expect("network config written")
}

#[test]
fn hotplug_stop_unplug_and_removal() {
    let inv = inv();
    let (_, created) = mutate(&web(), &inv);
    let running = started(created);

    // Hot-plug a bridge NIC into the running VM: its MAC, and nothing in the volume.
    let (m, plugged) = update(&hotplug(running.clone(), "hot", "br2"), &running);
    assert_eq!(
        paths(&m),
        ["/spec/template/spec/domain/devices/interfaces/2/macAddress"]
    );
    let hot_mac = iface(&plugged, 2)["macAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!data(&plugged).contains(&hot_mac));
    assert!(
        m.warnings.iter().any(
            |w| w.contains("not updated while the VM runs") && w.contains("new interfaces hot")
        ),
        "{:?}",
        m.warnings
    );

    // The UPDATE that stops it brings the config up to date (status still says created).
    let (m, halted) = update(&run_strategy(plugged.clone(), "Halted"), &plugged);
    assert!(touches_volumes(&m), "{:?}", paths(&m));
    assert!(data(&halted).contains(&hot_mac), "{}", data(&halted));
    let (again, _) = update(&halted, &halted);
    assert!(again.patch.0.is_empty(), "{:?}", again.patch);

    // Started again, the NIC is hot-unplugged: KubeVirt's state: absent, then its removal.
    let running = started(run_strategy(stopped(halted), "Always"));
    let mut unplug = running.clone();
    spec(&mut unplug)["domain"]["devices"]["interfaces"][2]["state"] = json!("absent");
    let (m, unplugged) = update(&unplug, &running);
    assert!(!touches_volumes(&m), "{:?}", paths(&m));
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("unplugged interfaces hot")),
        "{:?}",
        m.warnings
    );
    let mut removed = unplugged.clone();
    spec(&mut removed)["domain"]["devices"]["interfaces"]
        .as_array_mut()
        .unwrap()
        .remove(2);
    spec(&mut removed)["networks"]
        .as_array_mut()
        .unwrap()
        .remove(2);
    let (m, removed) = update(&removed, &unplugged);
    assert!(!touches_volumes(&m), "{:?}", paths(&m));

    // Stopped, the config loses the NIC.
    let (_, halted) = update(&run_strategy(removed.clone(), "Halted"), &removed);
    assert!(!data(&halted).contains(&hot_mac), "{}", data(&halted));
    assert!(support::schema::validate_vm(&halted).is_ok());
}

#[test]
fn an_absent_interface_is_left_out_of_a_stopped_vms_config() {
    let (_, created) = mutate(&hotplug(web(), "hot", "br2"), &inv());
    let hot_mac = iface(&created, 2)["macAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(data(&created).contains(&hot_mac));
    let mut unplug = created.clone();
    spec(&mut unplug)["domain"]["devices"]["interfaces"][2]["state"] = json!("absent");
    let (_, out) = update(&unplug, &created);
    assert!(!data(&out).contains(&hot_mac), "{}", data(&out));
}

#[test]
fn address_edits_wait_for_the_stop() {
    let (_, created) = mutate(&web(), &inv());
    let running = started(created);
    let edited = annotate(running.clone(), NETWORKS, r#"{"ext": "10.10.0.9/24"}"#);
    let (m, out) = update(&edited, &running);
    assert!(
        m.patch.0.is_empty(),
        "no volume op on a running VM: {:?}",
        m.patch
    );
    assert!(data(&out).contains("10.10.0.5/24"));
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("RestartRequired") && w.contains("next stopped")),
        "{:?}",
        m.warnings
    );
    let stopped_vm = stopped(run_strategy(out, "Halted"));
    let edited = annotate(stopped_vm.clone(), NETWORKS, r#"{"ext": "10.10.0.9/24"}"#);
    let (m, out) = update(&edited, &stopped_vm);
    assert!(touches_volumes(&m));
    assert!(data(&out).contains("10.10.0.9/24") && !data(&out).contains("10.10.0.5/24"));
}

#[test]
fn reapplying_the_manifest_to_a_running_vm_changes_nothing() {
    let (_, created) = mutate(&web(), &inv());
    let running = started(created);
    // `kubectl apply` of the original manifest: lists replaced whole, status as stored.
    let reapplied = started(web());
    let (_, out) = update(&reapplied, &running);
    assert_eq!(out, running);
}

#[test]
fn a_nad_swap_keeps_the_mac() {
    let (_, created) = mutate(&web(), &inv());
    let mac = iface(&created, 1)["macAddress"].clone();
    let mut swapped = created.clone();
    spec(&mut swapped)["networks"][1]["multus"]["networkName"] = json!("br2");
    let (_, out) = update(&swapped, &created);
    assert_eq!(iface(&out, 1)["macAddress"], mac);
    // The same swap in a re-applied manifest, without the MAC.
    let mut manifest = web();
    spec(&mut manifest)["networks"][1]["multus"]["networkName"] = json!("br2");
    let (_, out) = update(&started(manifest), &started(created));
    assert_eq!(iface(&out, 1)["macAddress"], mac);
}

#[test]
fn a_clone_gets_its_own_config_and_a_restore_keeps_it() {
    let (_, original) = mutate(&web(), &inv());
    assert!(data(&original).starts_with("# managed by kubevirt-net-webhook for team-a/web\n"));
    // A VirtualMachineClone: the spec and annotations copied, MACs not.
    let mut clone = original.clone();
    clone["metadata"]["name"] = json!("web-clone");
    for i in 0..2 {
        spec(&mut clone)["domain"]["devices"]["interfaces"][i]
            .as_object_mut()
            .unwrap()
            .remove("macAddress");
    }
    let mut cluster = inv();
    remember(&mut cluster, &original);
    let (_, cloned) = mutate(&clone, &cluster);
    let clone_mac = iface(&cloned, 1)["macAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(json!(clone_mac), iface(&original, 1)["macAddress"]);
    assert!(data(&cloned).starts_with("# managed by kubevirt-net-webhook for team-a/web-clone\n"));
    assert!(data(&cloned).contains(&clone_mac));
    // The copied address is a conflict, as any copied static address.
    denied_with(
        &validate(&cloned, &cluster),
        &["10.10.0.5", "VM \"web\" in this namespace"],
    );

    // A restore into the same name (the VM deleted, then re-created from a backup): kept.
    let (m, restored) = mutate(&original, &inv());
    assert!(m.patch.0.is_empty(), "{:?}", m.patch);
    assert_eq!(restored, original);
}

#[test]
fn config_drive_config_stays_the_webhooks_after_an_address_change() {
    let mut v = web();
    spec(&mut v)["volumes"] = json!([{"name": "cd", "cloudInitConfigDrive": {"userData": "#cloud-config\npackages: [nginx]\n"}}]);
    let (_, created) = mutate(&v, &inv());
    let annotation =
        created["metadata"]["annotations"]["kubevirt-net-webhook.io/managed-network-data"]
            .as_str()
            .expect("digest annotation")
            .to_string();
    assert!(annotation.starts_with("team-a/web sha256:"), "{annotation}");
    // Stopped, an address edit rewrites it (it used to be taken for the user's).
    let edited = annotate(created.clone(), NETWORKS, r#"{"ext": "10.10.0.9/24"}"#);
    let (m, out) = update(&edited, &created);
    assert!(data(&out).contains("10.10.0.9"), "{}", data(&out));
    assert!(
        m.warnings.iter().any(|w| w.contains("updates:")),
        "the user's user-data lacks `updates`: {:?}",
        m.warnings
    );
    // A JSON the user edited is theirs.
    let mut theirs = out.clone();
    spec(&mut theirs)["volumes"][0]["cloudInitConfigDrive"]["networkData"] =
        json!(r#"{"links": [], "networks": [], "services": []}"#);
    let (m, kept) = update(&theirs, &out);
    assert_eq!(kept, theirs);
    assert!(
        m.warnings.iter().any(|w| w.contains("untouched")),
        "{:?}",
        m.warnings
    );
}

#[test]
fn the_webhooks_user_data_asks_cloud_init_to_apply_network_changes_at_boot() {
    let (_, created) = mutate(&web(), &inv());
    let user_data =
        created["spec"]["template"]["spec"]["volumes"][0]["cloudInitNoCloud"]["userData"]
            .as_str()
            .unwrap();
    assert!(user_data.starts_with("#cloud-config\n"));
    assert!(user_data.contains("updates:\n  network:\n    when: [boot-new-instance, boot]"));
    // A VM written by an earlier version (plain `#cloud-config`) is upgraded when its config
    // is next rewritten.
    let mut legacy = created.clone();
    spec(&mut legacy)["volumes"][0]["cloudInitNoCloud"]["userData"] = json!("#cloud-config");
    let edited = annotate(legacy.clone(), NETWORKS, r#"{"ext": "10.10.0.9/24"}"#);
    let (_, out) = update(&edited, &legacy);
    assert_eq!(
        out["spec"]["template"]["spec"]["volumes"][0]["cloudInitNoCloud"]["userData"],
        json!(user_data)
    );
}

#[test]
fn unknown_bindings_and_sources_pass_through() {
    let v = vm(
        "web",
        json!([{"name": "default", "passtBinding": {}}, {"name": "gpu", "sriov": {}}, {"name": "ext", "bridge": {}}]),
        json!([{"name": "default", "pod": {}}, {"name": "gpu", "resourceClaim": {"claimName": "c", "requestName": "r"}}, {"name": "ext", "multus": {"networkName": "br"}}]),
    );
    let v = annotate(v, NETWORKS, r#"{"ext": "10.10.0.5/24"}"#);
    let (m, out) = mutate(&v, &inv());
    assert_eq!(
        paths(&m)
            .iter()
            .filter(|p| p.ends_with("macAddress"))
            .collect::<Vec<_>>(),
        ["/spec/template/spec/domain/devices/interfaces/2/macAddress"],
        "only the Multus bridge NIC gets a MAC"
    );
    let config = data(&out);
    assert!(
        config.contains("10.10.0.5/24") && !config.contains("default-"),
        "{config}"
    );
    assert!(validate(&out, &inv()).allowed());
}

#[test]
fn a_user_mac_starting_with_fe_is_warned_about() {
    let mut v = web();
    spec(&mut v)["domain"]["devices"]["interfaces"][1]["macAddress"] = json!("fe:54:00:12:34:56");
    let verdict = validate(&v, &inv());
    assert!(verdict.allowed());
    assert!(
        verdict
            .warnings
            .iter()
            .any(|w| w.contains("fe:54:00:12:34:56") && w.contains("tap")),
        "{verdict:?}"
    );
}
