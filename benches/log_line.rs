//! The line `serve` logs for each request (SPEC §3), as deploy/ configures it (`LOG_FORMAT=json`,
//! level info), written to nowhere: what formatting the line costs a request.
//! Run with `cargo bench --bench log_line`.
use std::{hint::black_box, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use kubevirt_net_webhook::{
    admission::{Endpoint, Facts},
    cmd::json_log::{JsonLines, JsonLinesFields},
    server::log_admission,
};

// The allocator the server runs with (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn log_line(c: &mut Criterion) {
    // `cmd::init_tracing` for LOG_FORMAT=json, but scoped to this thread and into a sink.
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .with_ansi(false)
        .fmt_fields(JsonLinesFields::new())
        .event_format(JsonLines::default())
        .finish();
    // The seed scenario's CREATE, as the load test sends it.
    let facts = Facts {
        kind: "VirtualMachine".into(),
        namespace: "default".into(),
        name: "ubuntu-rulai-multus-vm".into(),
        operation: "CREATE",
        dry_run: false,
    };
    let uid = "705ab4f5-6393-11e8-b7cc-42010a800002";
    let latency = Duration::from_micros(173);
    tracing::subscriber::with_default(subscriber, || {
        c.bench_function("admission log line, json", |b| {
            b.iter(|| {
                log_admission(
                    black_box(Endpoint::Mutate),
                    black_box(uid),
                    black_box(&facts),
                    true,
                    latency,
                )
            })
        });
    });
}

criterion_group!(benches, log_line);
criterion_main!(benches);
