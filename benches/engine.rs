//! Engine speed: `/mutate` + `/validate` decisions for a 3-NIC and a 20-NIC VM, and `/mutate`
//! allocating from a /16 address pool with 60,000 addresses taken (SPEC §2.10).
//! Run with `cargo bench --bench engine`.
use criterion::{Criterion, criterion_group, criterion_main};
use kubevirt_net_webhook::{
    engine::{self, Object, Request, pools},
    inventory::Inventory,
    model::{config::Config, identity::Identity, nad::Nad},
};

#[path = "../tests/support/fixtures.rs"]
mod fixtures;
use serde_json::{Value, json};
use std::hint::black_box;

// The allocator the server runs with (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Addresses held in the /16 pool.
const TAKEN: u32 = 60_000;

/// A VM with one NIC on a NAD whose pool is all of 10.50.0.0/16, and 60,000 other VMs holding
/// an address of it each: spread over the pool (`contiguous: false`, as allocations land),
/// or the first 60,000 hosts in a row (addresses handed out in order by some other tool).
/// For the row, the VM is one whose 16 attempts all hit taken addresses, so the allocation
/// has to find the next free address after a long taken stretch.
fn pool_vm(contiguous: bool) -> (Value, Inventory) {
    let mut inv = Inventory::new();
    let mut nad = Nad::from_config(
        "bench",
        "pool16",
        r#"{"cniVersion":"0.4.0","type":"bridge","bridge":"br0","ipam":{"type":"host-local","ranges":[[{"subnet":"10.50.0.0/16","gateway":"10.50.0.1"}]]}}"#,
    );
    nad.annotations.insert(
        "kubevirt-net-webhook.io/address-pool".into(),
        "10.50.0.0/16".into(),
    );
    inv.upsert_nad(nad);
    for n in 0..TAKEN {
        // 40,503 is odd, so n * 40,503 mod 2^16 visits every host once, in a scattered order.
        let host = if contiguous {
            n + 2
        } else {
            (n * 40_503 + 2) % 65_536
        };
        let address = format!("10.50.{}.{}/16", host / 256, host % 256);
        let other = json!({"metadata": {"name": format!("other-{n}"), "namespace": "bench",
            "annotations": {"kubevirt-net-webhook.io/networks": format!("{{\"ext\": \"{address}\"}}")}},
            "spec": {"template": {"spec": {"domain": {"devices": {"interfaces": [{"name": "ext", "bridge": {}, "macAddress": format!("02:00:00:01:{:02x}:{:02x}", n / 256, n % 256)}]}},
            "networks": [{"name": "ext", "multus": {"networkName": "pool16"}}]}}}});
        fixtures::remember(&mut inv, &other);
    }
    let name = (0..)
        .map(|k| format!("web-{k}"))
        .find(|name| {
            let id = Identity {
                salt: "",
                namespace: "bench",
                vm: name,
                network: "ext",
            };
            !contiguous
                || (0..pools::ATTEMPTS)
                    .all(|n| pools::index(&id.digest(n), 65_536) < u128::from(TAKEN) + 2)
        })
        .expect("some name");
    let vm = json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {"runStrategy": "Always", "template": {"spec": {
            "domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}}, {"name": "ext", "bridge": {}}]}},
            "networks": [{"name": "default", "pod": {}}, {"name": "ext", "multus": {"networkName": "pool16"}}],
        }}}
    });
    (vm, inv)
}

fn bench(c: &mut Criterion) {
    let config = Config::default();
    for (label, secondaries) in [("3-nic", 2), ("20-nic", 19)] {
        let (value, inv) = fixtures::bench_vm(secondaries);
        let object = fixtures::object(&value);
        let req = fixtures::bench_request(&object);
        c.bench_function(&format!("mutate {label}"), |b| {
            b.iter(|| engine::mutate_text(black_box(&req), &inv, &config).unwrap())
        });
        let mut mutated = value.clone();
        json_patch::patch(
            &mut mutated,
            &engine::mutate(&req, &inv, &config).unwrap().patch,
        )
        .unwrap();
        let mutated = fixtures::object(&mutated);
        let vreq = Request {
            object: Object::Tree(&mutated),
            ..req
        };
        c.bench_function(&format!("validate {label}"), |b| {
            b.iter(|| engine::validate(black_box(&vreq), &inv, &config).unwrap())
        });
    }
}

fn bench_pools(c: &mut Criterion) {
    let config = Config::default();
    for (label, contiguous) in [("spread", false), ("in a row", true)] {
        let (value, inv) = pool_vm(contiguous);
        let object = fixtures::object(&value);
        let req = fixtures::bench_request(&object);
        let m = engine::mutate(&req, &inv, &config).unwrap();
        assert!(
            m.warnings.iter().any(|w| w.contains("address pool")),
            "{:?}",
            m.warnings
        );
        c.bench_function(&format!("mutate pool /16, 60000 taken {label}"), |b| {
            b.iter(|| engine::mutate_text(black_box(&req), &inv, &config).unwrap())
        });
    }
}

/// One request's body read in one pass, decided and answered, as the server does.
fn whole_path(
    body: &[u8],
    endpoint: kubevirt_net_webhook::admission::Endpoint,
    inventory: &Inventory,
    config: &Config,
) -> Vec<u8> {
    kubevirt_net_webhook::admission::read(body)
        .unwrap()
        .answer(endpoint, inventory, config)
        .to_vec()
}

/// The whole admission path of one request as the server runs it, without the network: the
/// body read (in one pass), decided, and the response encoded. "decode only" is `parse`,
/// the tree reading that `review` uses and the server falls back to.
fn bench_admission(c: &mut Criterion) {
    use kubevirt_net_webhook::{
        admission::{self, Endpoint},
        server::gate::INLINE_MAX_BYTES,
    };
    let config = Config::default();
    let (value, inv) = fixtures::bench_vm(2);
    let body = fixtures::create_body(&value);
    for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
        c.bench_function(
            &format!(
                "admission {} 3-nic (decode, decide, encode)",
                endpoint.as_str()
            ),
            |b| b.iter(|| whole_path(black_box(&body), endpoint, &inv, &config)),
        );
    }
    c.bench_function("admission decode only 3-nic", |b| {
        b.iter(|| admission::parse(black_box(&body)).unwrap())
    });
    assert!(matches!(
        admission::read(&body).unwrap(),
        admission::Read::OnePass(_)
    ));
    c.bench_function("admission read only 3-nic (one pass)", |b| {
        b.iter(|| admission::read(black_box(&body)).unwrap())
    });
    // The same VM as the API server sends it after `kubectl apply` (managed fields and the
    // last applied configuration), which the bodies above leave out.
    let applied = fixtures::create_body(&fixtures::as_kubectl_applied(&value));
    assert!(matches!(
        admission::read(&applied).unwrap(),
        admission::Read::OnePass(_)
    ));
    c.bench_function(
        "admission read only 3-nic kubectl-applied (one pass)",
        |b| b.iter(|| admission::read(black_box(&applied)).unwrap()),
    );
    c.bench_function(
        "admission mutate 3-nic kubectl-applied (decode, decide, encode)",
        |b| b.iter(|| whole_path(black_box(&applied), Endpoint::Mutate, &inv, &config)),
    );
    // The largest body the server decides on an async worker (`gate::INLINE_MAX_BYTES`): the
    // bench VM with as many NICs as fit, for how long an inline decision can hold its worker.
    let size = |secondaries| fixtures::create_body(&fixtures::bench_vm(secondaries).0).len();
    // Names grow a digit at 10 and 100 NICs: a first guess, then one NIC at a time.
    let (two, three) = (size(2), size(3));
    let mut most = 2 + (INLINE_MAX_BYTES - two) / (three - two);
    while size(most) > INLINE_MAX_BYTES {
        most -= 1;
    }
    while size(most + 1) <= INLINE_MAX_BYTES {
        most += 1;
    }
    let (largest, largest_inv) = fixtures::bench_vm(most);
    let largest = fixtures::create_body(&largest);
    c.bench_function(
        &format!("admission mutate largest inline body, {} NICs", most + 1),
        |b| b.iter(|| whole_path(black_box(&largest), Endpoint::Mutate, &largest_inv, &config)),
    );
    // The response body of the `/mutate` answer (its patch holds a network config).
    let answer = admission::parse(&body)
        .unwrap()
        .answer(Endpoint::Mutate, &inv, &config);
    c.bench_function("admission encode only 3-nic mutate", |b| {
        b.iter(|| black_box(&answer).to_vec())
    });
}

/// Ratcheting's cost (SPEC §2.11): `/validate` of a 3-NIC VM's CREATE, of an UPDATE without a
/// violation (one evaluation, as a CREATE), and of an UPDATE of a VM stored with a violation
/// on each secondary NIC (the stored object judged too; both violations ratcheted).
fn bench_ratchet(c: &mut Criterion) {
    use kube::core::admission::Operation;
    let config = Config::default();
    let (value, inv) = fixtures::bench_vm(2);
    let create = fixtures::object(&value);
    let mut mutated = value.clone();
    let m = engine::mutate(&fixtures::bench_request(&create), &inv, &config).unwrap();
    json_patch::patch(&mut mutated, &m.patch).unwrap();
    let stored = fixtures::object(&mutated);
    let mut labelled = mutated.clone();
    labelled["metadata"]["labels"] = json!({"team": "web"});
    let labelled = fixtures::object(&labelled);
    // The same cluster with both NADs turned macvlan: the stored VM breaks the bridge rule.
    let mut legacy_inv = fixtures::bench_vm(2).1;
    for i in 1..=2 {
        legacy_inv.upsert_nad(Nad::from_config(
            "bench",
            &format!("nad{i}"),
            r#"{"type":"macvlan","master":"eth0"}"#,
        ));
    }
    let update = Request {
        operation: &Operation::Update,
        object: Object::Tree(&labelled),
        old_object: Some(Object::Tree(&stored)),
        ..fixtures::bench_request(&create)
    };
    let create_mutated = Request {
        object: Object::Tree(&stored),
        ..fixtures::bench_request(&create)
    };
    let ratcheted = engine::validate(&update, &legacy_inv, &config).unwrap();
    assert!(
        ratcheted.allowed() && ratcheted.ratcheted.len() == 2,
        "{ratcheted:?}"
    );
    for (label, req, inv) in [
        ("CREATE", &create_mutated, &inv),
        ("UPDATE, clean", &update, &inv),
        ("CREATE, 2 violations", &create_mutated, &legacy_inv),
        ("UPDATE, 2 violations ratcheted", &update, &legacy_inv),
    ] {
        c.bench_function(&format!("validate 3-nic {label}"), |b| {
            b.iter(|| engine::validate(black_box(req), inv, &config).unwrap())
        });
    }
}

/// The server's log line per request (SPEC §3), as `serve --log-format json` writes it, with
/// our formatter and with tracing-subscriber's stock JSON one, to a writer that drops it.
fn bench_log_line(c: &mut Criterion) {
    use kubevirt_net_webhook::{
        admission::{Endpoint, Facts},
        cmd::json_log,
        server::log_admission,
    };
    let facts = Facts {
        kind: "VirtualMachine".into(),
        namespace: "tenant-a".into(),
        name: "ubuntu-vm".into(),
        operation: "CREATE",
        dry_run: false,
    };
    let line = || {
        log_admission(
            Endpoint::Mutate,
            black_box("705ab4f5-6393-11e8-b7cc-42010a800002"),
            black_box(&facts),
            true,
            std::time::Duration::from_micros(12),
        )
    };
    let ours = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .fmt_fields(json_log::JsonLinesFields::new())
        .event_format(json_log::JsonLines::default())
        .finish();
    tracing::subscriber::with_default(ours, || {
        c.bench_function("log line admission ours", |b| b.iter(line));
    });
    let stock = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .json()
        .finish();
    tracing::subscriber::with_default(stock, || {
        c.bench_function("log line admission stock json", |b| b.iter(line));
    });
}

criterion_group!(
    benches,
    bench,
    bench_pools,
    bench_admission,
    bench_ratchet,
    bench_log_line
);
criterion_main!(benches);
