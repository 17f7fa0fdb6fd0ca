//! A cluster that already has VMs (SPEC §2.11): the UPDATEs the API server sends for a VM
//! stored before the webhook (start, stop, a label, KubeVirt's own writes, finalizer removal
//! on delete) go through whatever that VM already breaks; what an UPDATE adds is denied, and
//! named alone; enforcement `warn` and `/validate/warn` warn instead of denying.
use super::*;
use kubevirt_net_webhook::{
    admission::{AUDIT_ANNOTATION, Action, Answer, Endpoint},
    engine::Rule,
    model::config::Enforcement,
};

/// One stored VM that breaks one rule today, with the cluster and configuration around it.
struct Legacy {
    what: &'static str,
    rule: Rule,
    vm: Value,
    inventory: Inventory,
    config: Config,
}

/// A VM of `team-b` holding `request` on `team-a/br`: the other side of a conflict.
fn holder(request: &str) -> Value {
    with_request("holder", "br", request)
}

fn legacy_vms() -> Vec<Legacy> {
    let conflicts = || {
        let mut inv = inventory_with([bridge_nad(NS, "br")]);
        let mut holder = holder(r#"{"ext": "10.10.0.9/24"}"#);
        holder["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][1]["macAddress"] =
            json!("02:aa:00:00:00:01");
        remember(&mut inv, &holder);
        inv
    };
    let mut taken_mac = two_nic("legacy", "br");
    taken_mac["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][1]["macAddress"] =
        json!("02:aa:00:00:00:01");
    let mut full = inventory_with([pool_nad(NS, "br", "10.10.0.50")]);
    remember(&mut full, &holder(r#"{"ext": "10.10.0.50/24"}"#));
    let isolated = Config {
        nad_namespace_isolation: true,
        ..Config::default()
    };
    vec![
        Legacy {
            what: "bridge binding on a macvlan NAD",
            rule: Rule::BridgeBinding,
            vm: two_nic("legacy", "mv"),
            inventory: inventory_with([macvlan_nad(NS, "mv")]),
            config: Config::default(),
        },
        Legacy {
            what: "an address another VM holds",
            rule: Rule::AddressConflict,
            vm: with_request("legacy", "br", r#"{"ext": "10.10.0.9/24"}"#),
            inventory: conflicts(),
            config: Config::default(),
        },
        Legacy {
            what: "a MAC another VM uses",
            rule: Rule::MacConflict,
            vm: taken_mac,
            inventory: conflicts(),
            config: Config::default(),
        },
        Legacy {
            what: "another tenant's NAD under isolation",
            rule: Rule::ForeignNad,
            vm: two_nic("legacy", "team-b/br"),
            inventory: inventory_with([bridge_nad("team-b", "br")]),
            config: isolated,
        },
        Legacy {
            what: "a full pool",
            rule: Rule::PoolFull,
            vm: two_nic("legacy", "br"),
            inventory: full,
            config: Config::default(),
        },
        Legacy {
            what: "an address outside the NAD's subnet",
            rule: Rule::AddressOutsideSubnet,
            vm: with_request("legacy", "br", r#"{"ext": "192.168.7.7/24"}"#),
            inventory: inventory_with([bridge_nad(NS, "br")]),
            config: Config::default(),
        },
    ]
}

/// `vm` with one more bridge NIC, `name`, on NAD `nad`.
fn add_bridge_nic(vm: &mut Value, name: &str, nad: &str) {
    let spec = &mut vm["spec"]["template"]["spec"];
    spec["domain"]["devices"]["interfaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": name, "bridge": {}}));
    spec["networks"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": name, "multus": {"networkName": nad}}));
}

/// What the API server does with an UPDATE: `/mutate`, its patch applied, then `/validate`
/// (or `endpoint`) on the result, both with the stored object as `oldObject`.
fn update(ask: &Ask<'_>, endpoint: Endpoint, new: &Value, old: &Value) -> (Value, Answer) {
    let mutation = ask.admit(Endpoint::Mutate, new, Some(old));
    assert!(mutation.allowed(), "/mutate never denies: {mutation:?}");
    let mut mutated = new.clone();
    json_patch::patch(&mut mutated, &mutation.patch()).expect("the patch applies");
    let answer = ask.admit(endpoint, &mutated, Some(old));
    (mutated, answer)
}

/// The UPDATEs of a VM's life that change nothing the webhook checks: name and object.
fn life_updates(stored: &Value) -> Vec<(&'static str, Value, Value)> {
    let mut halted = stored.clone();
    halted["spec"]["runStrategy"] = json!("Halted");
    let mut running = stored.clone();
    running["status"] = json!({"created": true, "ready": true});
    let mut stopping = running.clone();
    stopping["spec"]["runStrategy"] = json!("Halted");
    let mut labelled = running.clone();
    labelled["metadata"]["labels"] = json!({"team": "db"});
    let kubevirt_write = annotate(
        running.clone(),
        "kubevirt.io/latest-observed-api-version",
        "v1",
    );
    let mut deleting = running.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-12-03T10:00:00Z");
    deleting["metadata"]["finalizers"] = json!(["kubevirt.io/virtualMachineControllerFinalize"]);
    let mut finalized = deleting.clone();
    finalized["metadata"]["finalizers"] = json!([]);
    vec![
        ("virtctl start", halted.clone(), stored.clone()),
        ("virtctl stop", running.clone(), stopping),
        ("a label", running.clone(), labelled),
        ("KubeVirt's annotation", running, kubevirt_write),
        ("finalizer removal", deleting, finalized),
    ]
}

#[test]
fn every_legacy_violation_is_new_on_create() {
    for legacy in legacy_vms() {
        let ask = Ask::with_config(&legacy.inventory, legacy.config.clone());
        let (_, out) = ask.mutate(&legacy.vm);
        let verdict = ask.validate(&out);
        assert!(!verdict.allowed(), "{}: {verdict:?}", legacy.what);
        assert!(
            verdict.denials.iter().any(|d| d.rule == legacy.rule),
            "{}: {verdict:?}",
            legacy.what
        );
    }
}

#[test]
fn a_vm_stored_before_the_webhook_can_be_started_stopped_labelled_and_deleted() {
    for legacy in legacy_vms() {
        let ask = Ask::with_config(&legacy.inventory, legacy.config.clone());
        for (what, old, new) in life_updates(&legacy.vm) {
            let (_, answer) = update(&ask, Endpoint::Validate, &new, &old);
            let at = format!("{} / {what}", legacy.what);
            assert!(answer.allowed(), "{at}: {}", answer.message());
            if what == "finalizer removal" {
                // Let through untouched: no rule runs on an object being deleted.
                assert!(
                    answer.warnings().is_empty(),
                    "{at}: {:?}",
                    answer.warnings()
                );
                assert!(answer.violations.is_empty(), "{at}");
                continue;
            }
            let tag = format!("[{}]", legacy.rule.id());
            assert!(
                answer
                    .warnings()
                    .iter()
                    .any(|w| w.starts_with("already there before this update") && w.contains(&tag)),
                "{at}: {:?}",
                answer.warnings()
            );
            assert!(
                answer.violations.contains(&(legacy.rule, Action::Ratchet)),
                "{at}: {:?}",
                answer.violations
            );
            let audit = &answer.response().audit_annotations[AUDIT_ANNOTATION];
            assert!(audit.contains(r#""action":"ratchet""#), "{at}: {audit}");
        }
    }
}

#[test]
fn an_object_being_deleted_is_neither_mutated_nor_denied() {
    let inv = inventory_with([macvlan_nad(NS, "mv")]);
    let mut vm = two_nic("going", "mv");
    vm["metadata"]["deletionTimestamp"] = json!("2026-12-03T10:00:00Z");
    let ask = Ask::new(&inv);
    let (m, _) = ask.mutate_update(&vm, Some(&vm));
    assert!(m.patch.0.is_empty(), "{m:?}");
    assert!(ask.validate_update(&vm, Some(&vm)).allowed());
    // The same VM without the timestamp is denied: the test can fail.
    let mut alive = vm.clone();
    alive["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("deletionTimestamp");
    assert!(!ask.validate(&alive).allowed());
}

#[test]
fn an_update_that_adds_a_violation_is_denied_and_names_only_the_new_one() {
    let mut inv = inventory_with([macvlan_nad(NS, "mv"), bridge_nad(NS, "br")]);
    remember(&mut inv, &holder(r#"{"ext": "10.10.0.9/24"}"#));
    let ask = Ask::new(&inv);
    // Stored: bridge binding on macvlan ("ext"). The update adds a second NIC whose address
    // another VM holds.
    let stored = two_nic("legacy", "mv");
    let mut new = annotate(
        stored.clone(),
        "kubevirt-net-webhook.io/networks",
        r#"{"more": "10.10.0.9/24"}"#,
    );
    add_bridge_nic(&mut new, "more", "br");
    let (_, answer) = update(&ask, Endpoint::Validate, &new, &stored);
    assert!(!answer.allowed());
    let message = answer.message();
    assert!(message.contains("10.10.0.9"), "{message}");
    assert!(!message.contains("bridge binding"), "{message}");
    assert!(
        answer
            .warnings()
            .iter()
            .any(|w| w.contains("[bridge-binding]")),
        "{:?}",
        answer.warnings()
    );
    assert!(
        answer
            .violations
            .contains(&(Rule::AddressConflict, Action::Deny))
    );
    assert!(
        answer
            .violations
            .contains(&(Rule::BridgeBinding, Action::Ratchet))
    );
}

#[test]
fn moving_a_violation_to_another_subject_is_new() {
    // The bridge binding moves from one macvlan NAD to another: not the violation stored.
    let inv = inventory_with([macvlan_nad(NS, "mv"), macvlan_nad(NS, "mv2")]);
    let ask = Ask::new(&inv);
    let stored = two_nic("legacy", "mv");
    let (_, answer) = update(&ask, Endpoint::Validate, &two_nic("legacy", "mv2"), &stored);
    assert!(!answer.allowed());
    assert!(
        answer.message().contains("team-a/mv2"),
        "{}",
        answer.message()
    );
}

#[test]
fn an_update_that_fixes_one_violation_is_allowed_while_another_stays() {
    let inv = inventory_with([macvlan_nad(NS, "mv"), bridge_nad(NS, "br")]);
    let ask = Ask::new(&inv);
    // Stored: "ext" bridge-on-macvlan, and "lan" with an address outside its subnet.
    let mut stored = annotate(
        two_nic("legacy", "mv"),
        "kubevirt-net-webhook.io/networks",
        r#"{"lan": "192.168.7.7/24"}"#,
    );
    add_bridge_nic(&mut stored, "lan", "br");
    let fixed = annotate(
        stored.clone(),
        "kubevirt-net-webhook.io/networks",
        r#"{"lan": "10.10.0.7/24"}"#,
    );
    let (_, answer) = update(&ask, Endpoint::Validate, &fixed, &stored);
    assert!(answer.allowed(), "{}", answer.message());
    assert_eq!(answer.violations, [(Rule::BridgeBinding, Action::Ratchet)]);
}

#[test]
fn a_nad_changed_to_macvlan_under_a_stored_vm_does_not_block_it() {
    // Admitted on a bridge NAD; its owner later changed the NAD's type to macvlan.
    let vm = two_nic("running", "net");
    let (_, stored) = mutate(&vm, &inventory_with([bridge_nad(NS, "net")]));
    let now = inventory_with([macvlan_nad(NS, "net")]);
    let ask = Ask::new(&now);
    let mut labelled = stored.clone();
    labelled["metadata"]["labels"] = json!({"x": "y"});
    let (_, answer) = update(&ask, Endpoint::Validate, &labelled, &stored);
    assert!(answer.allowed(), "{}", answer.message());
    assert!(
        answer
            .violations
            .contains(&(Rule::BridgeBinding, Action::Ratchet))
    );
}

#[test]
fn warn_enforcement_and_the_warn_endpoint_allow_with_the_denial_as_a_warning() {
    let inv = inventory_with([macvlan_nad(NS, "mv")]);
    let vm = two_nic("new", "mv");
    let denied = Ask::new(&inv).admit(Endpoint::Validate, &vm, None);
    assert!(!denied.allowed());
    let warned = Ask::new(&inv).admit(Endpoint::ValidateWarn, &vm, None);
    let by_config = Ask::with_config(
        &inv,
        Config {
            enforcement: Enforcement::Warn,
            ..Config::default()
        },
    )
    .admit(Endpoint::Validate, &vm, None);
    for answer in [&warned, &by_config] {
        assert!(answer.allowed());
        assert!(
            answer.warnings().iter().any(|w| w.starts_with(
                "not enforced (enforcement: warn), would be denied [bridge-binding]: "
            ) && w.ends_with(denied.message())),
            "{:?}",
            answer.warnings()
        );
        assert_eq!(answer.violations, [(Rule::BridgeBinding, Action::Warn)]);
        let audit: Value =
            serde_json::from_str(&answer.response().audit_annotations[AUDIT_ANNOTATION]).unwrap();
        assert_eq!(
            audit,
            json!([{"rule": "bridge-binding", "action": "warn",
                "subject": "interface \"ext\" on NAD team-a/mv"}])
        );
    }
    assert_eq!(denied.violations, [(Rule::BridgeBinding, Action::Deny)]);
    // Mutation is the same in both modes.
    let warn_config = Config {
        enforcement: Enforcement::Warn,
        ..Config::default()
    };
    assert_eq!(
        Ask::new(&inv).admit(Endpoint::Mutate, &vm, None).patch(),
        Ask::with_config(&inv, warn_config)
            .admit(Endpoint::Mutate, &vm, None)
            .patch()
    );
}

#[test]
fn the_stored_object_is_judged_only_when_the_update_has_a_violation() {
    // An UPDATE with no violation allows whatever the stored object was: nothing ratcheted,
    // nothing to say.
    let inv = inventory_with([bridge_nad(NS, "br")]);
    let ask = Ask::new(&inv);
    let (_, good) = ask.mutate(&two_nic("v", "br"));
    let verdict = ask.validate_update(&good, Some(&two_nic("v", "garbage/x")));
    assert!(
        verdict.allowed() && verdict.ratcheted.is_empty(),
        "{verdict:?}"
    );
}
