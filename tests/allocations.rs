//! Heap allocations per decision, counted: the engine bench's 3-NIC VM (`fixtures::bench_vm`)
//! through `/mutate` and `/validate`, and through the whole admission path (body decoded,
//! decided, response encoded). Unlike wall-clock time on a shared machine, a count does not
//! drift, so a change that adds allocations to the request path fails here (issue #11).
//!
//! `cargo test --test allocations -- --nocapture` prints the counts.
use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

use kubevirt_net_webhook::{
    admission::{self, Endpoint},
    engine::{self, Request},
    model::config::Config,
};

#[path = "support/fixtures.rs"]
mod fixtures;

/// Counts the allocations (and reallocations) of the thread that is counting.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: every call is passed on to `System` unchanged; the counters are thread-local cells.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The allocations `f` makes on this thread (its result dropped inside the count).
fn allocations<T>(f: impl FnOnce() -> T) -> u64 {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|on| on.set(true));
    drop(std::hint::black_box(f()));
    COUNTING.with(|on| on.set(false));
    COUNT.with(Cell::get)
}

/// The budgets: the counts measured when they were set, with a little room. Lower them
/// when a change saves allocations; raising one needs a reason in the commit.
const MUTATE: u64 = 100;
const VALIDATE: u64 = 36;
const ADMISSION_MUTATE: u64 = 228;

#[test]
fn a_decision_stays_within_its_allocation_budget() {
    let config = Config::default();
    let (value, inv) = fixtures::bench_vm(2);
    let object = fixtures::object(&value);
    let req = fixtures::bench_request(&object);
    let mutation = engine::mutate(&req, &inv, &config).unwrap();
    assert!(!mutation.patch.0.is_empty(), "the bench VM is mutated");
    let mut mutated = value.clone();
    json_patch::patch(&mut mutated, &mutation.patch).unwrap();
    let mutated = fixtures::object(&mutated);
    let vreq = Request {
        object: &mutated,
        ..req
    };
    assert!(engine::validate(&vreq, &inv, &config).unwrap().allowed());
    let body = fixtures::create_body(&value);

    let mutate = allocations(|| engine::mutate(&req, &inv, &config).unwrap());
    let validate = allocations(|| engine::validate(&vreq, &inv, &config).unwrap());
    let whole = allocations(|| {
        admission::parse(&body)
            .unwrap()
            .answer(Endpoint::Mutate, &inv, &config)
            .to_vec()
    });
    println!("allocations: mutate {mutate}, validate {validate}, admission /mutate {whole}");
    assert!(mutate > 0 && validate > 0, "the counter counts");
    for (what, count, budget) in [
        ("/mutate decision", mutate, MUTATE),
        ("/validate decision", validate, VALIDATE),
        ("/mutate admission path", whole, ADMISSION_MUTATE),
    ] {
        assert!(
            count <= budget,
            "a {what} allocates {count} times, over its budget of {budget}"
        );
    }
}
