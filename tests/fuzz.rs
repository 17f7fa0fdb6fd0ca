//! Fuzzing the whole decode + engine + response path, as the server runs it for a body:
//! `admission::parse` then `Parsed::answer` for both endpoints. Inputs are AdmissionReviews
//! built from a dictionary of KubeVirt, Multus and webhook fields and values, from the test
//! cases, and byte-level mutations of both. Properties: no panic; every body that parses is
//! answered with its uid; every patch applies to the object it was made for.
//!
//! It runs for `FUZZ_SECONDS` (default 5; `.ci/run` gives it more) from seed `FUZZ_SEED`
//! (default fixed, so a failure is reproducible), and prints how many inputs it ran.
mod support;

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::Path,
    time::{Duration, Instant},
};

use kubevirt_net_webhook::{
    admission::{self, Endpoint},
    inventory::{Inventory, files},
    manifests,
    model::config::Config,
};
use serde_json::{Map, Value, json};

/// xorshift64*: small, fast, and the same sequence for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "generateName",
    "annotations",
    "labels",
    "ownerReferences",
    "spec",
    "template",
    "domain",
    "devices",
    "interfaces",
    "networks",
    "volumes",
    "disks",
    "macAddress",
    "bridge",
    "masquerade",
    "sriov",
    "binding",
    "passtBinding",
    "state",
    "pod",
    "multus",
    "networkName",
    "resourceClaim",
    "cloudInitNoCloud",
    "cloudInitConfigDrive",
    "userData",
    "userDataBase64",
    "networkData",
    "networkDataBase64",
    "networkDataSecretRef",
    "runStrategy",
    "running",
    "status",
    "created",
    "virtualMachineTemplate",
    "replicas",
    "selector",
    "disk",
    "bus",
    "kubevirt-net-webhook.io/networks",
    "kubevirt-net-webhook.io/network-data",
    "kubevirt-net-webhook.io/mutate",
    "kubevirt-net-webhook.io/managed-network-data",
    "k8s.v1.cni.cncf.io/networks",
    "addresses",
    "gateway",
    "dns",
    "search",
    "routes",
    "to",
    "via",
    "metric",
    "mtu",
    "x",
];

const STRINGS: &[&str] = &[
    "",
    "default",
    "ext",
    "br",
    "infra/br",
    "team-a/br",
    "mv",
    "missing",
    "eth0",
    "02:00:00:00:00:00",
    "02:aa:bb:cc:dd:ee",
    "fe:00:00:00:00:01",
    "01:00:5e:00:00:01",
    "zz",
    "10.10.0.5/24",
    "10.10.0.0/24",
    "fd00::5/64",
    "::/0",
    "0.0.0.0/0",
    "10.10.0.1",
    "dhcp",
    "absent",
    "Halted",
    "Always",
    "always",
    "never",
    "auto",
    "false",
    "#cloud-config",
    "# managed by kubevirt-net-webhook for team-a/v",
    "{\"ext\": \"10.10.0.5/24\"}",
    "{",
    "[{\"name\": \"br\"}]",
    "kubevirt.io/v1",
    "pool.kubevirt.io/v1beta1",
    "VirtualMachine",
    "VirtualMachineInstance",
    "VirtualMachinePool",
    "VirtualMachineInstanceReplicaSet",
    "team-a/v sha256:00",
    "\u{0}",
    "é",
    "a/b/c",
];

/// A random JSON value drawn from the dictionary, at most `depth` deep.
fn value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth == 0 { 6 } else { 9 }) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => json!(rng.next() as i64 % 100_000),
        3..=5 => json!(*rng.pick(STRINGS)),
        6 | 7 => {
            let n = rng.below(5);
            let mut map = Map::new();
            for _ in 0..n {
                map.insert(rng.pick(KEYS).to_string(), value(rng, depth - 1));
            }
            Value::Object(map)
        }
        _ => Value::Array((0..rng.below(4)).map(|_| value(rng, depth - 1)).collect()),
    }
}

/// The JSON pointers of every node of `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                pointers(
                    child,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// Changes one node of `v`, chosen uniformly among all: a new scalar from the dictionary
/// (most often), a small new tree, removed, or grown by a key or a copied item.
fn mutate_value(rng: &mut Rng, v: &mut Value) {
    let mut all = Vec::new();
    pointers(v, String::new(), &mut all);
    let at = rng.pick(&all).clone();
    let scalar = rng.chance(70);
    let fresh = if scalar { value(rng, 0) } else { value(rng, 3) };
    match rng.below(10) {
        0 if !at.is_empty() => {
            let (parent, key) = at.rsplit_once('/').expect("a child pointer");
            match v.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(&key.replace("~1", "/").replace("~0", "~"));
                }
                Some(Value::Array(items)) => {
                    if let Ok(i) = key.parse::<usize>()
                        && i < items.len()
                    {
                        items.remove(i);
                    }
                }
                _ => {}
            }
        }
        1 => match v.pointer_mut(&at) {
            Some(Value::Object(map)) => {
                map.insert(rng.pick(KEYS).to_string(), fresh);
            }
            Some(Value::Array(items)) if !items.is_empty() => {
                let copy = items[rng.below(items.len())].clone();
                items.push(copy);
            }
            _ => {}
        },
        _ => {
            if let Some(slot) = v.pointer_mut(&at) {
                *slot = fresh;
            }
        }
    }
}

fn review(rng: &mut Rng, object: Value, old: Option<Value>) -> Value {
    let operation = *rng.pick(&["CREATE", "CREATE", "UPDATE", "DELETE", "CONNECT"]);
    let version = *rng.pick(&admission::VERSIONS);
    support::fixtures::admission_review(
        version,
        "fuzz-uid",
        operation,
        Some(&object),
        old.as_ref(),
        rng.chance(20),
    )
}

/// Flips, inserts or deletes a few bytes of `body`.
fn mutate_bytes(rng: &mut Rng, body: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        if body.is_empty() {
            return;
        }
        let at = rng.below(body.len());
        match rng.below(3) {
            0 => body[at] = rng.next() as u8,
            1 => body.insert(at, *rng.pick(b"{}[]\",:0\\")),
            _ => {
                body.remove(at);
            }
        }
    }
}

fn seeds() -> (Vec<Value>, Inventory) {
    let docs = manifests::read_path(&support::data("cases")).expect("the cases");
    let mut inventory = Inventory::new();
    files::add_documents(files_nad(), &docs, &mut inventory).expect("the cases' NADs");
    let vms: Vec<Value> = docs
        .iter()
        .filter(|d| d.kind() == "VirtualMachine")
        .map(|d| d.value.clone())
        .collect();
    let mut seeds = vms.clone();
    // As the API server sends them after `kubectl apply`: with managed fields.
    seeds.extend(vms.iter().map(support::fixtures::as_kubectl_applied));
    for vm in &vms {
        for kind in kubevirt_net_webhook::model::kinds::Kind::ALL {
            seeds.push(support::fixtures::as_kind(vm, kind));
        }
    }
    (seeds, inventory)
}

fn files_nad() -> kubevirt_net_webhook::inventory::apply::Cached {
    kubevirt_net_webhook::inventory::apply::Cached::Nad
}

/// One input through the path; `Err` describes a broken property. `Ok(true)`: the server's
/// one-pass reading (`admission::read`) read it.
fn run_one(
    body: &[u8],
    object: Option<&Value>,
    inventory: &Inventory,
    config: &Config,
) -> Result<bool, String> {
    let read = admission::read(body);
    let Ok(parsed) = admission::parse(body) else {
        // Not an AdmissionReview: the server answers 400, whichever way it reads.
        return match read {
            Ok(_) => Err("read accepts a body that parse refuses".to_string()),
            Err(_) => Ok(false),
        };
    };
    let read = read.map_err(|e| format!("read refuses a body that parse accepts: {e}"))?;
    for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
        let answer = parsed.answer(endpoint, inventory, config);
        // The server reads in one pass where it can: the same answer, byte for byte, and
        // the same facts and violations for its logs and metrics.
        let served = read.answer(endpoint, inventory, config);
        if served.to_vec() != answer.to_vec()
            || format!("{:?}{:?}", served.facts, served.violations)
                != format!("{:?}{:?}", answer.facts, answer.violations)
        {
            return Err(format!(
                "read and parse answer differently on {endpoint:?}:\n{}\n{}",
                String::from_utf8_lossy(&served.to_vec()),
                String::from_utf8_lossy(&answer.to_vec())
            ));
        }
        let review: Value = serde_json::from_slice(&answer.to_vec()).map_err(|e| e.to_string())?;
        if review["response"]["uid"].as_str() != Some(answer.uid()) || answer.uid().is_empty() {
            return Err(format!("uid not echoed: {review}"));
        }
        if let Some(object) = object {
            let mut patched = object.clone();
            json_patch::patch(&mut patched, &answer.patch())
                .map_err(|e| format!("the patch does not apply: {e}"))?;
        }
    }
    Ok(matches!(read, admission::Read::OnePass(_)))
}

#[test]
fn the_admission_path_survives_whatever_it_is_sent() {
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe);
    let mut rng = Rng(seed | 1);
    let (seeds, inventory) = seeds();
    let configs = [
        Config::default(),
        Config {
            nad_namespace_isolation: true,
            ..Config::default()
        },
    ];
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut executions, mut parsed_bodies, mut one_pass) = (0u64, 0u64, 0u64);
    while Instant::now() < deadline {
        for _ in 0..64 {
            let mut object = rng.pick(&seeds).clone();
            for _ in 0..rng.below(4) {
                mutate_value(&mut rng, &mut object);
            }
            if rng.chance(5) {
                object = value(&mut rng, 6);
            }
            let old = rng.chance(30).then(|| rng.pick(&seeds).clone());
            let mut body = review(&mut rng, object.clone(), old)
                .to_string()
                .into_bytes();
            let bytes_mutated = rng.chance(15);
            if bytes_mutated {
                mutate_bytes(&mut rng, &mut body);
            }
            let config = rng.pick(&configs);
            let object_for_patch = (!bytes_mutated).then_some(&object);
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                run_one(&body, object_for_patch, &inventory, config)
            }));
            match outcome {
                Ok(Ok(read_in_one_pass)) => one_pass += u64::from(read_in_one_pass),
                Ok(Err(broken)) => panic!(
                    "property broken after {executions} inputs (FUZZ_SEED={seed}): {broken}\ninput: {}",
                    String::from_utf8_lossy(&body)
                ),
                Err(_) => panic!(
                    "panic after {executions} inputs (FUZZ_SEED={seed}); input: {}",
                    String::from_utf8_lossy(&body)
                ),
            }
            parsed_bodies += u64::from(admission::parse(&body).is_ok());
            executions += 1;
        }
    }
    let summary = format!(
        "fuzz: {executions} executions in {seconds} s ({parsed_bodies} answered as AdmissionReviews, {one_pass} of them read in one pass), 0 crashes, seed {seed}"
    );
    println!("{summary}");
    // A passing test's output is captured: `.ci/run` prints this file after the tests.
    let _ = std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-summary.txt"),
        format!("{summary}\n"),
    );
    assert!(executions > 100, "{executions}");
    assert!(
        parsed_bodies * 2 > executions,
        "most inputs must reach the engine"
    );
    // Both readings must be exercised, or their equality above proves nothing.
    assert!(
        one_pass * 10 > parsed_bodies && one_pass < parsed_bodies,
        "{one_pass} of {parsed_bodies} read in one pass"
    );
}
