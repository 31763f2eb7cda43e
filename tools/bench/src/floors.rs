//! The machine's floors, measured in the same run as the queues: what moving
//! a cache line between two cores costs (one-way latency), how fast one core
//! copies a ring-sized buffer (bandwidth), and what reading the clock costs
//! (every latency sample pays for one `Instant::now()` at each end).

use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_utils::CachePadded;

use crate::scenarios::{job, run_pinned, Idle, Pins, CAPACITY};

/// Bytes of one ring's records: 64 Ki slots × 32 bytes = 2 MiB.
pub const RING_BYTES: usize = CAPACITY * std::mem::size_of::<telering::Reading>();

/// The floors. Each is the best of several short runs (the lowest latency,
/// the highest bandwidth): on a shared machine noise only ever makes a run
/// slower, so the best run is the closest to the hardware, and comparing
/// telering's medians with it is the conservative direction.
#[derive(Debug, Clone)]
pub struct Floors {
    /// Core-to-core one-way latency, ns (best run).
    pub c2c_one_way_ns: f64,
    /// Median of the runs, ns.
    pub c2c_median_ns: f64,
    /// Each run's one-way latency, ns.
    pub c2c_runs: Vec<f64>,
    /// Round trips per run.
    pub c2c_round_trips: u64,
    /// memcpy bandwidth over a 2 MiB buffer, bytes copied per second (best run).
    pub memcpy_bytes_per_s: f64,
    /// Median of the runs, bytes/s.
    pub memcpy_median_bytes_per_s: f64,
    /// Each run's bandwidth, bytes/s.
    pub memcpy_runs: Vec<f64>,
    /// Cost of one `Instant::now()`, ns (best of the runs).
    pub clock_ns: f64,
}

/// Measures the floors: `quick` shortens every run. Runs stop early after
/// about a second each when the machine is so busy that they crawl.
pub fn measure(pins: &Pins, quick: bool) -> Floors {
    let (runs, round_trips, copies) = if quick {
        (3, 20_000, 50)
    } else {
        (7, 100_000, 200)
    };
    let budget = std::time::Duration::from_secs(1);
    let timed = |f: &dyn Fn() -> f64| {
        let start = Instant::now();
        let mut v = Vec::new();
        while v.len() < runs && (v.len() < 3 || start.elapsed() < budget) {
            v.push(f());
        }
        v
    };
    let c2c_runs = timed(&|| ping_pong(pins, round_trips));
    let memcpy_runs = timed(&|| memcpy(pins, copies));
    let clock_ns = (0..3)
        .map(|_| clock_cost(if quick { 100_000 } else { 1_000_000 }))
        .fold(f64::INFINITY, f64::min);
    Floors {
        c2c_one_way_ns: c2c_runs.iter().copied().fold(f64::INFINITY, f64::min),
        c2c_median_ns: median(&mut c2c_runs.clone()),
        c2c_runs,
        c2c_round_trips: round_trips,
        memcpy_bytes_per_s: memcpy_runs.iter().copied().fold(0.0, f64::max),
        memcpy_median_bytes_per_s: median(&mut memcpy_runs.clone()),
        memcpy_runs,
        clock_ns,
    }
}

/// A quick second core-to-core measurement (best of 3 short runs), to see
/// whether the vCPUs moved while the benchmark ran.
pub fn recheck_c2c(pins: &Pins) -> f64 {
    (0..3)
        .map(|_| ping_pong(pins, 20_000))
        .fold(f64::INFINITY, f64::min)
}

/// Median (sorts `v`).
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Pinned atomic ping-pong between roles 0 and 1 (different cores): one
/// cache-padded counter, each side waits for the other's value and answers.
/// Returns the one-way latency, ns = round trip / 2.
fn ping_pong(pins: &Pins, round_trips: u64) -> f64 {
    let cell = CachePadded::new(AtomicU64::new(0));
    let idle = Idle::for_threads(pins, 2);
    let wait_for = |want: u64| {
        let backoff = crossbeam_utils::Backoff::new();
        // Acquire/Release: a plain handoff of the counter; the ordering is
        // what a queue's cursor pays too.
        while cell.load(Ordering::Acquire) != want {
            match idle {
                Idle::Spin => spin_loop(),
                Idle::Yield => backoff.snooze(),
            }
        }
    };
    let (t, _) = run_pinned(
        pins,
        vec![
            job(|| {
                for i in 0..round_trips {
                    cell.store(2 * i + 1, Ordering::Release);
                    wait_for(2 * i + 2);
                }
                0u64
            }),
            job(|| {
                for i in 0..round_trips {
                    wait_for(2 * i + 1);
                    cell.store(2 * i + 2, Ordering::Release);
                }
                0
            }),
        ],
    );
    t.as_nanos() as f64 / (2 * round_trips) as f64
}

/// Copies a 2 MiB buffer `copies` times on the producer's core; bytes/s.
fn memcpy(pins: &Pins, copies: usize) -> f64 {
    let (_, mut out) = run_pinned(
        pins,
        vec![job(|| {
            let src = vec![0x5au8; RING_BYTES];
            let mut dst = vec![0u8; RING_BYTES];
            dst.copy_from_slice(&src); // fault the pages in, warm the caches
            let start = Instant::now();
            for _ in 0..copies {
                dst.copy_from_slice(black_box(&src));
                black_box(&mut dst);
            }
            (RING_BYTES * copies) as f64 / start.elapsed().as_secs_f64()
        })],
    );
    out.pop().expect("one job")
}

/// Mean cost of `Instant::now()`, ns.
fn clock_cost(calls: u32) -> f64 {
    let start = Instant::now();
    let mut last = start;
    for _ in 0..calls {
        last = black_box(Instant::now());
    }
    (last - start).as_nanos() as f64 / f64::from(calls)
}
