//! crossbeam-queue `ArrayQueue`, the bounded MPMC queue: `push`/`pop` with
//! spinning, popped by one or two consumers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use telering::Reading;

use super::{check_total, job, rec, run_pinned, template, Idle, Job, Pins, CAPACITY};

/// crossbeam `ArrayQueue` (MPMC, 64 Ki): `push`/`pop` with spinning.
pub fn array_queue_single(n: u64, pins: &Pins) -> Duration {
    array_queue_run(n, pins, 1)
}

/// One `ArrayQueue` popped by two consumers.
pub fn array_queue_cluster(n: u64, pins: &Pins) -> Duration {
    array_queue_run(n, pins, 2)
}

fn array_queue_run(n: u64, pins: &Pins, consumers: usize) -> Duration {
    let tmpl = template();
    let idle = Idle::for_threads(pins, consumers + 1);
    let q = crossbeam_queue::ArrayQueue::<Reading>::new(CAPACITY);
    let finished = AtomicBool::new(false);
    let (q, finished) = (&q, &finished);
    let mut jobs: Vec<Job<'_, u64>> = vec![job(move || {
        let idler = idle.idler();
        for i in 0..n {
            let mut v = rec(&tmpl, i);
            while let Err(back) = q.push(v) {
                v = back;
                idler.idle();
            }
            idler.reset();
        }
        // Release: every push happens before a consumer sees the flag.
        finished.store(true, Ordering::Release);
        0
    })];
    for _ in 0..consumers {
        jobs.push(job(move || {
            let idler = idle.idler();
            let mut sum = 0u64;
            loop {
                match q.pop() {
                    Some(v) => {
                        sum = sum.wrapping_add(v.ts_us);
                        idler.reset();
                    }
                    None if finished.load(Ordering::Acquire) && q.is_empty() => break,
                    None => idler.idle(),
                }
            }
            sum
        }));
    }
    let (t, sums) = run_pinned(pins, jobs);
    check_total("crossbeam ArrayQueue", n, &sums[1..]);
    t
}
