//! crossbeam-channel `bounded`: blocking `send`/`recv`; one channel per
//! consumer for broadcast, one channel shared by two receivers for cluster.

use std::time::Duration;

use telering::Reading;

use super::{check_each, check_total, job, rec, run_pinned, template, Job, Pins, CAPACITY};

/// crossbeam-channel `bounded(64 Ki)`: blocking `send`/`recv`.
pub fn channel_single(n: u64, pins: &Pins) -> Duration {
    channel_fanout(n, pins, 1)
}

/// Two bounded crossbeam channels; the producer sends every record to both.
pub fn channel_broadcast(n: u64, pins: &Pins) -> Duration {
    channel_fanout(n, pins, 2)
}

fn channel_fanout(n: u64, pins: &Pins, k: usize) -> Duration {
    let tmpl = template();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..k)
        .map(|_| crossbeam_channel::bounded::<Reading>(CAPACITY))
        .unzip();
    let mut jobs: Vec<Job<'_, u64>> = vec![job(move || {
        for i in 0..n {
            let v = rec(&tmpl, i);
            for tx in &txs {
                tx.send(v).expect("receiver alive");
            }
        }
        0
    })];
    for rx in rxs {
        jobs.push(job(move || {
            let mut sum = 0u64;
            for _ in 0..n {
                sum = sum.wrapping_add(rx.recv().expect("sender alive").ts_us);
            }
            sum
        }));
    }
    let (t, sums) = run_pinned(pins, jobs);
    check_each("crossbeam-channel", n, &sums[1..]);
    t
}

/// One bounded crossbeam channel read by two receivers (MPMC work sharing);
/// they stop when the sender is dropped.
pub fn channel_cluster(n: u64, pins: &Pins) -> Duration {
    let tmpl = template();
    let (tx, rx) = crossbeam_channel::bounded::<Reading>(CAPACITY);
    let mut jobs: Vec<Job<'_, u64>> = vec![job(move || {
        for i in 0..n {
            tx.send(rec(&tmpl, i)).expect("receiver alive");
        }
        0
    })];
    for _ in 0..2 {
        let rx = rx.clone();
        jobs.push(job(move || {
            let mut sum = 0u64;
            while let Ok(v) = rx.recv() {
                sum = sum.wrapping_add(v.ts_us);
            }
            sum
        }));
    }
    drop(rx);
    let (t, sums) = run_pinned(pins, jobs);
    check_total("crossbeam-channel", n, &sums[1..]);
    t
}
