//! Properties over generated VMs: the mutation applies, is idempotent, survives a re-apply of
//! the original manifest, and its output is a valid VirtualMachine; nothing panics on any input.
mod support;

use kubevirt_net_webhook::{
    admission::{self, Endpoint},
    inventory::Inventory,
    model::nad::Nad,
};
use proptest::prelude::*;
use serde_json::{Value, json};
use support::fixtures::{Ask, admission_review};

const NS: &str = "prop";

fn inventory() -> Inventory {
    let mut inv = Inventory::new();
    for (ns, name, config) in [
        (
            NS,
            "br",
            r#"{"type":"bridge","ipam":{"type":"host-local","ranges":[[{"subnet":"10.1.0.0/24"}]],"routes":[{"dst":"0.0.0.0/0"}]}}"#,
        ),
        (
            NS,
            "mv",
            r#"{"plugins":[{"type":"macvlan","ipam":{"type":"static","addresses":[{"address":"10.2.0.9/24","gateway":"10.2.0.1"}]}}]}"#,
        ),
        (
            "infra",
            "pinned",
            r#"{"type":"bridge","ipam":{"type":"host-local","ranges":[[{"subnet":"10.3.0.0/24","rangeStart":"10.3.0.7","rangeEnd":"10.3.0.7"}]],"dns":{"nameservers":["10.3.0.1"]}}}"#,
        ),
        (NS, "empty", ""),
        (NS, "broken", "{nope"),
    ] {
        inv.upsert_nad(Nad::from_config(ns, name, config));
    }
    inv
}

fn network_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("default".to_string()),
        Just("ext".to_string()),
        Just("eth1".to_string()),
        Just("Storage.Net".to_string()),
        Just("a-very-long-network-name".to_string()),
        "[a-z][a-z0-9-]{0,8}",
    ]
}

fn nad_ref() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "br",
        "mv",
        "infra/pinned",
        "empty",
        "broken",
        "missing",
        "prop/br",
    ])
    .prop_map(String::from)
}

fn binding() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!({"bridge": {}}),
        json!({"masquerade": {}}),
        json!({"sriov": {}}),
        json!({"binding": {"name": "macvtap"}}),
        json!({"slirp": {}}),
    ])
}

fn mac() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        6 => Just(None),
        1 => "02(:[0-9a-f]{2}){5}".prop_map(Some),
        1 => prop::sample::select(vec!["zz", "02:00:00:00:00:00", "01:00:5e:00:00:01"]).prop_map(|s| Some(s.to_string())),
    ]
}

fn volume() -> impl Strategy<Value = Option<Value>> {
    prop::sample::select(vec![
        None,
        Some(json!({"name": "ci", "cloudInitNoCloud": {"userData": "#cloud-config"}})),
        Some(json!({"name": "ci", "cloudInitNoCloud": {}})),
        Some(
            json!({"name": "ci", "cloudInitNoCloud": {"userData": "#cloud-config", "networkData": "version: 2\n"}}),
        ),
        Some(json!({"name": "ci", "cloudInitConfigDrive": {"userData": "#cloud-config"}})),
        Some(json!({"name": "ci", "cloudInitNoCloud": {"networkDataSecretRef": {"name": "s"}}})),
    ])
}

fn annotations(nets: Vec<String>) -> impl Strategy<Value = serde_json::Map<String, Value>> {
    let first = nets.first().cloned().unwrap_or_else(|| "x".into());
    let requests = prop_oneof![
        Just(None),
        (1u8..250).prop_map(move |h| Some(json!({ first.clone(): format!("10.1.0.{h}/24") }).to_string())),
        Just(Some("{not json".to_string())),
        Just(Some(r#"{"ext": {"addresses": ["fd00::5/64", "10.1.0.5/24"], "gateway": "10.1.0.1", "dns": ["10.1.0.2"]}}"#.to_string())),
    ];
    let mode = prop::sample::select(vec![
        None,
        Some("auto"),
        Some("always"),
        Some("never"),
        Some("bogus"),
    ]);
    let opt_out = prop::sample::select(vec![None, Some("false"), Some("true")]);
    (requests, mode, opt_out).prop_map(|(r, m, o)| {
        let mut a = serde_json::Map::new();
        if let Some(r) = r {
            a.insert("kubevirt-net-webhook.io/networks".into(), json!(r));
        }
        if let Some(m) = m {
            a.insert("kubevirt-net-webhook.io/network-data".into(), json!(m));
        }
        if let Some(o) = o {
            a.insert("kubevirt-net-webhook.io/mutate".into(), json!(o));
        }
        a
    })
}

/// A VM with up to 6 networks; interfaces named after the network, after its NAD, or at random.
fn vm() -> impl Strategy<Value = Value> {
    prop::collection::vec((network_name(), any::<bool>(), nad_ref(), 0u8..4, binding(), mac()), 0..6)
        .prop_flat_map(|nets| {
            let names: Vec<String> = nets.iter().map(|n| n.0.clone()).collect();
            (Just(nets), annotations(names), volume(), any::<bool>(), any::<bool>())
        })
        .prop_map(|(nets, annotations, volume, named, multus_annotation)| {
            let mut interfaces = Vec::new();
            let mut networks = Vec::new();
            let mut seen = std::collections::BTreeSet::new();
            let mut has_pod = false;
            for (name, pod, nad, naming, binding, mac) in nets {
                if !seen.insert(name.clone()) {
                    continue;
                }
                let is_pod = pod && !has_pod;
                has_pod |= is_pod;
                networks.push(if is_pod { json!({"name": name, "pod": {}}) } else { json!({"name": name, "multus": {"networkName": nad}}) });
                let iface_name = match naming {
                    0 | 1 => name.clone(),
                    2 => nad.rsplit('/').next().unwrap().to_string(),
                    _ => format!("nic{}", interfaces.len()),
                };
                let mut iface = binding;
                iface["name"] = json!(iface_name);
                if let Some(m) = mac {
                    iface["macAddress"] = json!(m);
                }
                interfaces.push(iface);
            }
            let mut metadata = json!({"namespace": NS, "annotations": annotations});
            if named {
                metadata["name"] = json!("vm-1");
            } else {
                metadata["generateName"] = json!("vm-");
            }
            let mut template = json!({"spec": {"domain": {"devices": {"interfaces": interfaces, "disks": [{"name": "root", "disk": {"bus": "virtio"}}]}}, "networks": networks, "volumes": [{"name": "root", "containerDisk": {"image": "x"}}]}});
            if let Some(v) = volume {
                template["spec"]["volumes"].as_array_mut().unwrap().push(v);
            }
            if multus_annotation {
                template["metadata"] = json!({"annotations": {"k8s.v1.cni.cncf.io/networks": "br"}});
            }
            json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": metadata, "spec": {"runStrategy": "Halted", "template": template}})
        })
}

/// The object `/mutate` makes of `object` (a CREATE, or an UPDATE from `old`).
fn apply(object: &Value, old: Option<&Value>, inv: &Inventory) -> Value {
    Ask::new(inv).mutate_update(object, old).1
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutation_is_valid_idempotent_and_reapply_stable(input in vm(), running in any::<bool>()) {
        let inv = inventory();
        prop_assert!(support::schema::validate_vm(&input).is_ok(), "generator made an invalid VM: {:?}", support::schema::validate_vm(&input));
        let once = apply(&input, None, &inv);
        if let Err(errors) = support::schema::validate_vm(&once) {
            prop_assert!(false, "output fails the CRD schema: {errors:?}\n{once:#}");
        }
        let (again, _) = Ask::new(&inv).mutate_update(&once, Some(&once));
        prop_assert!(again.patch.0.is_empty(), "second mutation is not empty: {:?}", again.patch);
        // `kubectl apply` of the original manifest: lists come back without what we added;
        // also once the VM runs (SPEC §2.9), when the config is kept as stored.
        let (input, once) = if running {
            let started = |mut v: Value| {
                v["spec"]["runStrategy"] = json!("Always");
                v["status"] = json!({"created": true});
                v
            };
            (started(input), started(once))
        } else {
            (input, once)
        };
        let reapplied = apply(&input, Some(&once), &inv);
        prop_assert_eq!(&reapplied, &once);
        // Validation never fails to decide.
        Ask::new(&inv).validate(&once);
    }

    #[test]
    fn arbitrary_json_never_panics(doc in arbitrary_json(), at in prop::sample::select(vec![
        "", "/spec", "/spec/template", "/spec/template/spec", "/spec/template/spec/domain/devices/interfaces",
        "/spec/template/spec/networks", "/spec/template/spec/volumes", "/metadata/annotations",
    ])) {
        let inv = inventory();
        let mut object = json!({"metadata": {"name": "x"}, "spec": {"template": {"spec": {"domain": {"devices": {}}}}}});
        if at.is_empty() {
            object = doc;
        } else if let Some(slot) = object.pointer_mut(at) {
            *slot = doc;
        } else {
            let (parent, key) = at.rsplit_once('/').unwrap();
            if let Some(Value::Object(map)) = object.pointer_mut(parent) {
                map.insert(key.to_string(), doc);
            }
        }
        // The whole path: decode, decide, answer, as the server does for a body.
        if let Value::Object(map) = &mut object {
            map.insert("apiVersion".into(), json!("kubevirt.io/v1"));
            map.insert("kind".into(), json!("VirtualMachine"));
        }
        let body = admission_review("admission.k8s.io/v1", "prop-uid", "CREATE", Some(&object), None, false);
        for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
            let answer = admission::parse(body.to_string().as_bytes())
                .expect("an AdmissionReview with a uid is answered")
                .answer(endpoint, &inv, &Default::default());
            prop_assert_eq!(answer.uid(), "prop-uid");
            let mut out = object.clone();
            prop_assert!(json_patch::patch(&mut out, &answer.patch()).is_ok());
        }
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z0-9/:. -]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "name",
                    "macAddress",
                    "bridge",
                    "multus",
                    "networkName",
                    "pod",
                    "cloudInitNoCloud",
                    "networkData",
                    "userData",
                    "annotations",
                    "x"
                ])
                .prop_map(String::from),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
