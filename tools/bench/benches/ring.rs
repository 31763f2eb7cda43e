//! Ring-core throughput against peer queues, criterion.
//!
//! Groups (peers side by side in each, as rtrb's `performance-comparison`):
//! - `base`: the harness alone (two pinned threads, one atomic, no queue);
//! - `spsc_single`: one record per publish — telering `Writer::publish`,
//!   disruptor `publish`, rtrb `push`/`pop`, crossbeam-channel `bounded`,
//!   crossbeam `ArrayQueue`, std `sync_channel`;
//! - `spsc_batch`: 256 records per publish — telering `publish_with`,
//!   disruptor `batch_publish`, rtrb chunks.
//!
//! Every system carries the 32-byte `telering::Reading` through 64 Ki slots
//! with the producer and the consumer pinned to different cores (core list
//! taken once, first). Cross-thread work is timed with `iter_custom` and a
//! `Barrier`; one criterion iteration is one record.
//!
//! `cargo bench -p telering-bench --bench ring` (about a minute and a half);
//! `cargo bench -p telering-bench --bench ring -- --quick` or
//! `-- spsc_single` to narrow it. The same scenarios without criterion:
//! `cargo run --release -p telering-bench`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

mod common;

use common::bench_scenario;
use telering_bench::scenarios::{self, Kind, Pins};

fn ring(c: &mut Criterion) {
    // The core list first, before any thread is pinned (the benches pin only
    // the threads they spawn; criterion's own thread stays unpinned).
    let pins = Pins::take();
    eprintln!("pinning: {}", pins.describe(2));
    bench_scenario(c, &pins, &scenarios::base());
    for s in scenarios::all().iter().filter(|s| s.id.starts_with("spsc")) {
        // The ring core and its peers; the engine rows are in benches/engine.rs.
        bench_scenario(c, &pins, &s.only(|sys| sys.kind != Kind::Engine));
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = ring
}
criterion_main!(benches);
