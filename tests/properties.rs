//! Properties over generated VMs: the mutation applies, is idempotent, survives a re-apply of
//! the original manifest, and its output is a valid VirtualMachine; nothing panics on any input.
mod support;

use std::collections::BTreeSet;

use kubevirt_net_webhook::{
    admission::{self, Endpoint},
    engine::pools::{self, Occupancy},
    inventory::Inventory,
    model::{
        identity::Identity,
        nad::Nad,
        pool::{Family, Pool, from_u128, to_u128},
    },
};
use proptest::prelude::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::fixtures::{
    Ask, admission_review, inventory_with, networks_annotation, remember, two_nic, with_pool,
};

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
    // An address pool (SPEC §2.10), and one whose annotation is broken.
    for (name, pool) in [
        ("pool", "10.4.0.10-10.4.0.20, fd00:4::/120"),
        ("badpool", "10.4.0.x"),
    ] {
        inv.upsert_nad(with_pool(
            Nad::from_config(
                NS,
                name,
                r#"{"type":"bridge","ipam":{"type":"host-local","ranges":[[{"subnet":"10.4.0.0/24"}],[{"subnet":"fd00:4::/64"}]]}}"#,
            ),
            pool,
        ));
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
        "pool",
        "badpool",
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

// Address pools (SPEC §2.10) ----------------------------------------------------------------

/// A pool inside 10.9.0.0/24: up to 4 disjoint ranges and CIDRs, in random order.
fn pool_text() -> impl Strategy<Value = String> {
    prop::collection::vec((0u8..=255, 0u8..24, any::<bool>()), 1..5).prop_map(|parts| {
        let mut used = BTreeSet::new();
        let mut entries = Vec::new();
        for (start, len, cidr) in parts {
            let (first, last) = if cidr {
                let first = start & !7; // a /29
                (first, first + 7)
            } else {
                (start, start.saturating_add(len))
            };
            if (first..=last).any(|h| used.contains(&h)) {
                continue;
            }
            used.extend(first..=last);
            entries.push(if cidr {
                format!("10.9.0.{first}/29")
            } else if first == last {
                format!("10.9.0.{first}")
            } else {
                format!("10.9.0.{first}-10.9.0.{last}")
            });
        }
        entries.join(", ")
    })
}

/// Taken addresses; `runs` reports taken stretches, as the inventory does.
struct Taken {
    set: BTreeSet<u128>,
    runs: bool,
}

impl Occupancy for Taken {
    fn taken(&self, v: u128) -> bool {
        self.set.contains(&v)
    }
    fn taken_through(&self, v: u128) -> u128 {
        let mut last = v;
        while self.runs && self.set.contains(&(last + 1)) {
            last += 1;
        }
        last
    }
}

/// SPEC §2.10 written out naively: every address of the pool in order, 16 attempts, then a
/// walk one address at a time.
fn reference(text: &str, vm: &str, taken: &BTreeSet<u128>) -> Option<u128> {
    let mut all = Vec::new();
    for entry in text.split(',').map(str::trim) {
        let host = |s: &str| s.trim_start_matches("10.9.0.").parse::<u128>().unwrap();
        let (first, last) = match entry.split_once('-') {
            Some((a, b)) => (host(a), host(b)),
            None => match entry.split_once('/') {
                Some((a, _)) => (host(a), host(a) + 7),
                None => (host(entry), host(entry)),
            },
        };
        all.extend(first..=last);
    }
    let base = to_u128("10.9.0.0".parse().unwrap());
    let free = |h: u128| h != 0 && h != 255 && !taken.contains(&(base + h));
    let size = all.len() as u64;
    let mut last = 0;
    for n in 0..16u32 {
        let mut input = format!("\0prop\0{vm}\0ext").into_bytes();
        if n > 0 {
            input.extend(format!("\0{n}").as_bytes());
        }
        let d = Sha256::digest(&input);
        last = (u64::from_be_bytes(d[..8].try_into().unwrap()) % size) as usize;
        if free(all[last]) {
            return Some(base + all[last]);
        }
    }
    (1..all.len())
        .map(|k| all[(last + k) % all.len()])
        .find(|h| free(*h))
        .map(|h| base + h)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Allocation is a pure function of (identity, pool, taken set), follows the SPEC's
    /// algorithm, never hands out a taken, network or broadcast address, and finds nothing
    /// only when nothing is free.
    #[test]
    fn allocation_is_a_pure_function_inside_the_pool(
        text in pool_text(),
        vm in "[a-z][a-z0-9-]{0,10}",
        hosts in prop::collection::btree_set(0u8..=255, 0..240),
    ) {
        let subnet = ["10.9.0.0/24".parse().unwrap()];
        let pool = Pool::parse(&text, &subnet).unwrap();
        let block = pool.block(Family::V4).unwrap();
        let base = to_u128("10.9.0.0".parse().unwrap());
        let set: BTreeSet<u128> = hosts.iter().map(|h| base + u128::from(*h)).collect();
        let id = Identity { salt: "", namespace: "prop", vm: &vm, network: "ext" };
        let plain = Taken { set: set.clone(), runs: false };
        let fast = Taken { set: set.clone(), runs: true };
        let got = pools::allocate(block, &id, &plain).map(|(_, v)| v);
        prop_assert_eq!(got, pools::allocate(block, &id, &plain).map(|(_, v)| v));
        prop_assert_eq!(got, pools::allocate(block, &id, &fast).map(|(_, v)| v), "skipping stretches changes nothing");
        prop_assert_eq!(got, reference(&text, &vm, &set), "pool {}", text);
        match got {
            Some(v) => {
                let ip = from_u128(v, Family::V4);
                prop_assert!(pool.contains(ip), "{} not in {}", ip, text);
                prop_assert!(!set.contains(&v));
                prop_assert!(v != base && v != base + 255, "network or broadcast: {}", ip);
            }
            None => prop_assert!(block.spans.iter().all(|s| (s.first..=s.last).all(|v| set.contains(&v) || v == base || v == base + 255))),
        }
    }

    /// VMs admitted one after another (the cache updated in between, as `review` and the
    /// server's cache do) never share an address; once the pool is used up, every further
    /// VM is denied, and the gateway is never handed out.
    #[test]
    fn vms_never_share_a_pool_address_and_a_full_pool_is_denied(
        text in pool_text(),
        names in prop::collection::btree_set("[a-z][a-z0-9]{0,6}", 1..12),
    ) {
        let nad = with_pool(
            Nad::from_config("prop", "br", r#"{"type":"bridge","ipam":{"type":"host-local","ranges":[[{"subnet":"10.9.0.0/24","gateway":"10.9.0.1"}]]}}"#),
            &text,
        );
        let mut inv = inventory_with([nad]);
        let block = Pool::parse(&text, &["10.9.0.0/24".parse().unwrap()]).unwrap().v4.unwrap();
        let free = block.spans.iter().map(|s| (s.first..=s.last).filter(|v| {
            let h = v & 0xff;
            h != 0 && h != 1 && h != 255
        }).count()).sum::<usize>();
        let mut given = BTreeSet::new();
        for name in &names {
            let mut v = two_nic(name, "br");
            v["metadata"]["namespace"] = json!("prop");
            let ask = Ask::new(&inv);
            let (_, out) = ask.mutate(&v);
            let verdict = ask.validate(&out);
            match networks_annotation(&out).and_then(|a| a["ext"].as_str().map(String::from)) {
                Some(address) => {
                    prop_assert!(verdict.allowed(), "{:?}", verdict);
                    let ip: std::net::IpAddr = address.trim_end_matches("/24").parse().unwrap();
                    prop_assert!(block.span_of(ip).is_some(), "{} outside {}", ip, text);
                    prop_assert!(!["10.9.0.0", "10.9.0.1", "10.9.0.255"].contains(&ip.to_string().as_str()));
                    prop_assert!(given.insert(ip), "{} given twice", ip);
                    remember(&mut inv, &out);
                }
                None => {
                    prop_assert!(!verdict.allowed() && verdict.message().contains("is full"), "{:?}", verdict);
                    prop_assert_eq!(given.len(), free, "denied before the pool was used up");
                }
            }
        }
        prop_assert_eq!(given.len(), names.len().min(free), "never over-allocated");
    }
}
