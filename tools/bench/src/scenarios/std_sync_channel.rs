//! std `sync_channel`, the standard library's bounded channel: blocking
//! `send`/`recv`.

use std::time::Duration;

use telering::Reading;

use super::{check_each, job, rec, run_pinned, template, Pins, CAPACITY};

/// std `sync_channel(64 Ki)`: blocking `send`/`recv`.
pub fn std_sync_channel(n: u64, pins: &Pins) -> Duration {
    let tmpl = template();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Reading>(CAPACITY);
    let (t, sums) = run_pinned(
        pins,
        vec![
            job(move || {
                for i in 0..n {
                    tx.send(rec(&tmpl, i)).expect("receiver alive");
                }
                0u64
            }),
            job(move || {
                let mut sum = 0u64;
                for _ in 0..n {
                    sum = sum.wrapping_add(rx.recv().expect("sender alive").ts_us);
                }
                sum
            }),
        ],
    );
    check_each("std sync_channel", n, &sums[1..]);
    t
}
