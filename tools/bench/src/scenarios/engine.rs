//! telering through the engine API: a topic of [`CAPACITY`]-slot partitions,
//! `Producer::send_to` or `send_batch_with` into a cluster or broadcast
//! consumer group whose members `Consumer::poll_with` (the zero-copy poll:
//! runs read in place).

use std::time::Duration;

use telering::ring::{OverflowPolicy, SlotLayout};
use telering::{ConsumerConfig, Engine, GroupMode, Reading, TopicConfig};

use super::{
    check_each, check_total, job, rec, run_pinned, share, template, Idle, Job, Pins, BATCH,
    CAPACITY, READ_MAX,
};

/// Engine, SPSC: `Producer::send_to` per record, one cluster member `poll`s.
pub fn engine_single(n: u64, pins: &Pins) -> Duration {
    engine_run(n, pins, GroupMode::Cluster, 1, false, SlotLayout::Packed)
}

/// Engine, SPSC: `Producer::send_batch_to` of 256 records.
pub fn engine_batch(n: u64, pins: &Pins) -> Duration {
    engine_run(n, pins, GroupMode::Cluster, 1, true, SlotLayout::Packed)
}

/// Engine, broadcast group of 2: one partition, both members read all.
pub fn engine_broadcast(n: u64, pins: &Pins) -> Duration {
    engine_run(n, pins, GroupMode::Broadcast, 2, false, SlotLayout::Packed)
}

/// Engine, cluster group of 2: two partitions, one per member; the producer
/// alternates partitions record by record.
pub fn engine_cluster(n: u64, pins: &Pins) -> Duration {
    engine_run(n, pins, GroupMode::Cluster, 2, false, SlotLayout::Packed)
}

/// [`engine_single`] on a topic with the marked slot layout.
pub fn engine_single_marked(n: u64, pins: &Pins) -> Duration {
    engine_run(n, pins, GroupMode::Cluster, 1, false, SlotLayout::Marked)
}

fn engine_run(
    n: u64,
    pins: &Pins,
    mode: GroupMode,
    members: usize,
    batch: bool,
    layout: SlotLayout,
) -> Duration {
    let partitions = if mode == GroupMode::Cluster {
        members
    } else {
        1
    };
    let wait = Idle::for_threads(pins, members + 1).telering();
    let engine: Engine<Reading> = Engine::new();
    engine
        .create_topic(
            "bench",
            TopicConfig::new(partitions as u32, CAPACITY)
                .policy(OverflowPolicy::Block)
                .layout(layout),
        )
        .expect("create topic");
    let mut producer = engine.producer("bench").expect("producer");
    let mut consumers: Vec<_> = (0..members)
        .map(|_| {
            let cfg = match mode {
                GroupMode::Cluster => ConsumerConfig::cluster("bench"),
                GroupMode::Broadcast => ConsumerConfig::broadcast("bench"),
            };
            let mut c = engine.consumer(cfg.wait(wait)).expect("consumer");
            c.subscribe(&["bench"]).expect("subscribe");
            c
        })
        .collect();
    // Settle the cluster assignment (hand-overs happen at poll) before timing.
    for _ in 0..2 {
        for c in consumers.iter_mut() {
            let _ = c.poll(1, Duration::ZERO).expect("poll");
        }
    }
    let expected: Vec<u64> = consumers
        .iter()
        .map(|c| match mode {
            GroupMode::Broadcast => n,
            GroupMode::Cluster => {
                let a = c.assignment();
                assert_eq!(a.len(), 1, "cluster member should own one partition: {a:?}");
                share(n, partitions, a[0].partition as usize)
            }
        })
        .collect();
    let tmpl = template();
    let mut jobs: Vec<Job<'_, u64>> = vec![job(move || {
        if batch {
            // Each record written once, in its slot (no source slice).
            let mut i = 0;
            while i < n {
                let k = (n - i).min(BATCH as u64) as usize;
                let sent = producer
                    .send_batch_with(0, k, |j| rec(&tmpl, i + j as u64))
                    .expect("engine send_batch_with");
                assert_eq!(sent, k, "Block takes the whole batch");
                i += k as u64;
            }
        } else {
            let mut p = 0u32;
            for i in 0..n {
                producer.send_to(p, rec(&tmpl, i)).expect("engine send_to");
                p += 1;
                if p as usize == partitions {
                    p = 0;
                }
            }
        }
        0
    })];
    // The members are lent to their threads and closed after timing.
    for (c, want) in consumers.iter_mut().zip(expected) {
        jobs.push(job(move || {
            let mut sum = 0u64;
            let mut got = 0u64;
            let mut empty = 0;
            while got < want {
                // The zero-copy poll: runs of the ring read in place.
                let n = c
                    .poll_with(READ_MAX, Duration::from_millis(500), |runs| {
                        for run in runs {
                            for r in run.records {
                                sum = sum.wrapping_add(r.ts_us);
                            }
                        }
                        runs.len()
                    })
                    .expect("poll");
                if n == 0 {
                    empty += 1;
                    assert!(
                        empty < 20,
                        "engine consumer stalled at {got} of {want} records"
                    );
                }
                got += n as u64;
            }
            sum
        }));
    }
    let (t, sums) = run_pinned(pins, jobs);
    for c in consumers {
        c.close();
    }
    if mode == GroupMode::Broadcast {
        check_each("telering-engine", n, &sums[1..]);
    } else {
        check_total("telering-engine", n, &sums[1..]);
    }
    t
}
