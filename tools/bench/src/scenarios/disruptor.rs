//! disruptor, the LMAX design: a single-producer ring with one or two event
//! handlers, busy-spinning or, when oversubscribed, yielding ([`YieldWait`]).

use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use telering::Reading;

use super::{check_each, check_total, rec, template, Idle, Pins, BATCH, CAPACITY};

/// A disruptor wait strategy that yields the core (for oversubscribed runs;
/// the crate's own strategies are busy-spin and sleep).
#[derive(Debug, Clone, Copy)]
pub struct YieldWait;

impl disruptor::wait_strategies::WaitStrategy for YieldWait {
    #[inline]
    fn wait_for(&self, _sequence: disruptor::Sequence) {
        thread::yield_now();
    }
}

/// disruptor `publish` per record, one handler.
pub fn disruptor_single(n: u64, pins: &Pins) -> Duration {
    disruptor_run(n, pins, 1, false, false)
}

/// disruptor `batch_publish(256, ..)`, one handler.
pub fn disruptor_batch(n: u64, pins: &Pins) -> Duration {
    disruptor_run(n, pins, 1, false, true)
}

/// disruptor with two handlers: each sees every event.
pub fn disruptor_broadcast(n: u64, pins: &Pins) -> Duration {
    disruptor_run(n, pins, 2, false, false)
}

/// disruptor with two handlers that shard by sequence (`seq % 2 == id`), the
/// LMAX recipe for dividing work without a work queue.
pub fn disruptor_cluster(n: u64, pins: &Pins) -> Duration {
    disruptor_run(n, pins, 2, true, false)
}

fn disruptor_run(n: u64, pins: &Pins, handlers: usize, shard: bool, batch: bool) -> Duration {
    if Idle::for_threads(pins, handlers + 1) == Idle::Spin {
        disruptor_with(
            n,
            pins,
            handlers,
            shard,
            batch,
            disruptor::BusySpinWithSpinLoopHint,
        )
    } else {
        disruptor_with(n, pins, handlers, shard, batch, YieldWait)
    }
}

struct DState {
    start: Instant,
    sum: u64,
}

fn disruptor_with<W>(
    n: u64,
    pins: &Pins,
    handlers: usize,
    shard: bool,
    batch: bool,
    wait: W,
) -> Duration
where
    W: disruptor::wait_strategies::WaitStrategy + 'static,
{
    use disruptor::Producer as _;
    let n = n.max(1);
    let tmpl = template();
    let barrier = Arc::new(Barrier::new(handlers + 1));
    // (start, stop, sum) per handler.
    let done: Arc<Mutex<Vec<(Instant, Instant, u64)>>> = Arc::default();
    let last = (n - 1) as i64;
    let k = handlers as i64;
    // The handler threads pin themselves in their state initialiser: the
    // builder's `pin_at_core` re-reads the core list from the calling thread
    // and panics once that thread is pinned.
    let make = |id: usize| {
        let (pins, barrier, done) = (pins.clone(), barrier.clone(), done.clone());
        let init = move || {
            pins.pin(id + 1);
            barrier.wait();
            DState {
                start: Instant::now(),
                sum: 0,
            }
        };
        let handler = move |s: &mut DState, e: &Reading, seq: i64, _end_of_batch: bool| {
            if !shard || seq % k == id as i64 {
                s.sum = s.sum.wrapping_add(e.ts_us);
            }
            if seq == last {
                done.lock()
                    .expect("results")
                    .push((s.start, Instant::now(), s.sum));
            }
        };
        (handler, init)
    };
    let builder = disruptor::build_single_producer(CAPACITY, move || tmpl, wait);
    let (h0, i0) = make(0);
    let start = if handlers == 1 {
        let mut producer = builder.handle_events_and_state_with(h0, i0).build();
        drive_disruptor(pins, &barrier, n, batch, move |i, len| {
            if len == 1 {
                producer.publish(|e| *e = rec(&tmpl, i));
            } else {
                producer.batch_publish(len, |iter| {
                    for (j, e) in iter.enumerate() {
                        *e = rec(&tmpl, i + j as u64);
                    }
                });
            }
        })
    } else {
        assert_eq!(handlers, 2, "disruptor scenarios use 1 or 2 handlers");
        let (h1, i1) = make(1);
        let mut producer = builder
            .handle_events_and_state_with(h0, i0)
            .handle_events_and_state_with(h1, i1)
            .build();
        drive_disruptor(pins, &barrier, n, batch, move |i, len| {
            if len == 1 {
                producer.publish(|e| *e = rec(&tmpl, i));
            } else {
                producer.batch_publish(len, |iter| {
                    for (j, e) in iter.enumerate() {
                        *e = rec(&tmpl, i + j as u64);
                    }
                });
            }
        })
    };
    let done = done.lock().expect("results");
    assert_eq!(done.len(), handlers, "every disruptor handler finished");
    let sums: Vec<u64> = done.iter().map(|d| d.2).collect();
    if shard {
        check_total("disruptor", n, &sums);
    } else {
        check_each("disruptor", n, &sums);
    }
    let first = done
        .iter()
        .map(|d| d.0)
        .min()
        .map_or(start, |s| s.min(start));
    let stop = done.iter().map(|d| d.1).max().expect("handlers");
    stop - first
}

/// Runs the disruptor producer on a thread pinned as role 0: `publish(i, len)`
/// publishes records `i..i + len`. Dropping the closure drops the disruptor
/// producer, which waits until the handlers have processed everything.
fn drive_disruptor(
    pins: &Pins,
    barrier: &Barrier,
    n: u64,
    batch: bool,
    mut publish: impl FnMut(u64, usize) + Send,
) -> Instant {
    thread::scope(|s| {
        s.spawn(move || {
            pins.pin(0);
            barrier.wait();
            let start = Instant::now();
            let mut i = 0;
            while i < n {
                let len = if batch {
                    (n - i).min(BATCH as u64) as usize
                } else {
                    1
                };
                publish(i, len);
                i += len as u64;
            }
            drop(publish);
            start
        })
        .join()
        .expect("disruptor producer panicked")
    })
}
