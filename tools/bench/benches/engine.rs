//! Engine-API throughput against peer queues, criterion.
//!
//! Groups:
//! - `publish_to_poll`: one topic with one partition and one cluster-group
//!   member, `Producer::send_to` (one record) and `send_batch_with` (256,
//!   written in place) to the zero-copy `Consumer::poll_with`, next to the
//!   bare ring (`ring::spsc`) it is built on and the peers of the same SPSC
//!   scenarios (disruptor, rtrb, crossbeam, std);
//! - `broadcast_1to2`: a broadcast group of two members (both read every
//!   record) against disruptor with two handlers, two rtrb rings and two
//!   crossbeam channels fed by the producer;
//! - `cluster_1to2`: a cluster group of two members over two partitions
//!   (each record to one member) against disruptor handlers sharding by
//!   sequence, two rtrb rings, one crossbeam channel with two receivers and
//!   one `ArrayQueue` with two consumers.
//!
//! Same record (32-byte `Reading`), capacity (64 Ki) and pinning as
//! `benches/ring.rs`. With more busy threads than cores (3 on a 2-core
//! machine) every system waits spin-then-yield and the run is oversubscribed:
//! the figures then measure the scheduler as much as the queue.
//!
//! `cargo bench -p telering-bench --bench engine` (about a minute and a half).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod common;

use common::bench_scenario;
use telering_bench::scenarios::{self, Pins};

fn engine(c: &mut Criterion) {
    // The core list first, before any thread is pinned.
    let pins = Pins::take();
    eprintln!("pinning: {}", pins.describe(3));
    let all = scenarios::all();
    let find = |id: &str| {
        all.iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("scenario {id}"))
    };

    // publish-to-poll: the SPSC scenarios, engine API beside ring and peers.
    let single = find("spsc_single");
    let batch = find("spsc_batch");
    let mut group = c.benchmark_group("publish_to_poll");
    group.throughput(Throughput::Elements(1));
    for (label, s) in [("single", single), ("batch256", batch)] {
        for system in &s.systems {
            group.bench_function(format!("{}/{label}", system.name), |b| {
                b.iter_custom(|records| (system.run)(records, &pins))
            });
        }
    }
    group.finish();

    for id in ["broadcast_1to2", "cluster_1to2"] {
        bench_scenario(c, &pins, find(id));
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = engine
}
criterion_main!(benches);
