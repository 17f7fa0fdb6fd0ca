//! Memory and time to fill the VM cache with N VMs (default 100,000), through the same
//! event-application path as the cluster watch (`inventory::apply::Applier`, `InitApply`
//! events).
//!
//! ```text
//! cargo run --release --example inventory_memory -- 100000
//! cargo run --release --example inventory_memory -- 100000 one-nad   # every VM on one NAD
//! cargo run --release --example inventory_memory -- 100000 pools     # every NIC a pool address
//! ```
//!
//! A counting global allocator measures the heap the inventory keeps after every input
//! object is dropped; the generated objects are built one at a time, as a watch decodes them.
use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use kube::{api::DynamicObject, runtime::watcher::Event};
use kubevirt_net_webhook::{
    admission::{self, Endpoint},
    inventory::{
        Inventory,
        apply::{Applier, Cached},
    },
    model::config::Config,
};

#[path = "../tests/support/fixtures.rs"]
mod fixtures;
use serde_json::json;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now =
                LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed) + layout.size() as isize;
            PEAK.fetch_max(now as usize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            let now = LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            ) + new_size as isize
                - layout.size() as isize;
            PEAK.fetch_max(now as usize, Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// NADs the VMs spread over; `one-nad` as second argument puts every VM on one NAD
/// without requested addresses (the worst case for the index of VMs taking a pinned address).
static NADS: AtomicUsize = AtomicUsize::new(40);

/// `pools` as second argument: every NIC holds an address, scattered over its NAD's /8 as
/// pool allocations land (SPEC §2.10), instead of every 4th VM.
static POOLS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// VM `i`: 1–3 Multus NICs with MACs, every 4th with annotation addresses, every 10th
/// with an extra NIC without a MAC (takes the NAD's pinned address).
fn vm(i: usize) -> serde_json::Value {
    let namespace = format!("tenant-{}", i % 500);
    let nics = 1 + i % 3;
    let mut interfaces = vec![json!({"name": "default", "masquerade": {}})];
    let mut networks = vec![json!({"name": "default", "pod": {}})];
    let mut requests = serde_json::Map::new();
    for n in 0..nics {
        let name = format!("net{n}");
        let nad = (i * 7 + n) % NADS.load(Ordering::Relaxed);
        let mac = format!(
            "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            n,
            (i >> 24) & 0xff,
            (i >> 16) & 0xff,
            (i >> 8) & 0xff,
            i & 0xff
        );
        let mut iface = json!({"name": name, "bridge": {}});
        if !(i.is_multiple_of(10) && n == nics - 1) {
            iface["macAddress"] = json!(mac);
        }
        interfaces.push(iface);
        networks.push(json!({"name": name, "multus": {"networkName": format!("infra/nad-{nad}")}}));
        if POOLS.load(Ordering::Relaxed) {
            // An odd multiplier visits every host of the /8 once, in a scattered order.
            let host = (i * 3 + n).wrapping_mul(40_503) % (1 << 24);
            requests.insert(
                name,
                json!(format!(
                    "10.{}.{}.{}/8",
                    host >> 16,
                    (host >> 8) & 0xff,
                    host & 0xff
                )),
            );
        } else if i.is_multiple_of(4) && NADS.load(Ordering::Relaxed) > 1 {
            requests.insert(
                name,
                json!(format!("10.{}.{}.{}/8", n, (i >> 8) & 0xff, i & 0xff)),
            );
        }
    }
    let mut annotations = serde_json::Map::new();
    if !requests.is_empty() {
        annotations.insert(
            "kubevirt-net-webhook.io/networks".into(),
            json!(serde_json::Value::Object(requests).to_string()),
        );
    }
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": format!("vm-{i}"), "namespace": namespace,
                     "uid": format!("00000000-0000-0000-0000-{i:012}"),
                     "resourceVersion": format!("{}", 1000 + i),
                     "annotations": annotations,
                     "labels": {"app": "db", "tier": "backend"}},
        "spec": {"runStrategy": "Always", "template": {
            "metadata": {"labels": {"kubevirt.io/vm": format!("vm-{i}")}},
            "spec": {
                "domain": {"memory": {"guest": "2Gi"}, "cpu": {"cores": 2},
                           "devices": {"interfaces": interfaces,
                                       "disks": [{"name": "root", "disk": {"bus": "virtio"}}]}},
                "networks": networks,
                "volumes": [{"name": "root", "dataVolume": {"name": format!("vm-{i}-root")}}]}}},
        "status": {"printableStatus": "Running", "ready": true}
    })
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("count"))
        .unwrap_or(100_000);
    match std::env::args().nth(2).as_deref() {
        Some("one-nad") => NADS.store(1, Ordering::Relaxed),
        Some("pools") => POOLS.store(true, Ordering::Relaxed),
        _ => {}
    }
    let mut inventory = Inventory::new();
    let mut applier = Applier::new(Cached::Vm);
    let before = live();
    let started = Instant::now();
    let mut applying = Duration::ZERO;
    applier.apply(&mut inventory, Event::Init).unwrap();
    for i in 0..count {
        // What the watcher hands over: a decoded object, dropped right after projection.
        let obj: DynamicObject = serde_json::from_value(vm(i)).unwrap();
        let t = Instant::now();
        applier
            .apply(&mut inventory, Event::InitApply(obj))
            .unwrap();
        applying += t.elapsed();
    }
    let t = Instant::now();
    applier.apply(&mut inventory, Event::InitDone).unwrap();
    applying += t.elapsed();
    let total = started.elapsed();
    assert!(applier.synced());
    let retained = live() - before;
    let peak = PEAK.load(Ordering::Relaxed) as isize - before;

    // One admission against the full inventory: conflicts are looked up, not scanned.
    let mut probe = vm(count + 1);
    probe["metadata"]["name"] = json!("probe");
    let body = fixtures::admission_review(
        "admission.k8s.io/v1",
        "p",
        "CREATE",
        Some(&probe),
        None,
        false,
    )
    .to_string();
    let config = Config::default();
    let ask = || {
        admission::parse(body.as_bytes()).map(|p| p.answer(Endpoint::Validate, &inventory, &config))
    };
    let reply = ask().unwrap();
    let t = Instant::now();
    for _ in 0..1000 {
        ask().unwrap();
    }
    let lookup = t.elapsed() / 1000;

    println!(
        "VMs cached:            {} (of {count})",
        inventory.vm_count()
    );
    println!(
        "heap retained:         {retained} bytes = {:.0} bytes/VM",
        retained as f64 / count as f64
    );
    println!(
        "peak heap while filling: {:.1} MiB",
        peak as f64 / (1 << 20) as f64
    );
    println!(
        "time to synced:        {:.2} s (decode + apply), {:.2} s applying",
        total.as_secs_f64(),
        applying.as_secs_f64()
    );
    println!(
        "one /validate against it: {:.3} ms (mean of 1000) (allowed={})",
        lookup.as_secs_f64() * 1000.0,
        reply.allowed()
    );
}
