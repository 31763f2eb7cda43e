//! The machine's floors, measured in the same run as the queues: what moving
//! a cache line between two cores costs (one-way latency), how fast one core
//! copies a ring-sized buffer (bandwidth), how fast an ideal streaming
//! transfer moves records between the two pinned cores (the batched SPSC
//! scenario's job with no queue around it: [`stream`]), and what reading the
//! clock costs (every latency sample pays for one `Instant::now()` at each
//! end).

use std::cell::UnsafeCell;
use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use telering::Reading;

use crate::scenarios::{job, run_pinned, template, Idle, Pins, BATCH, CAPACITY};

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
    /// The ideal streaming transfer ([`stream`]), M records/s: the best of
    /// the runs at the start and those beside the batched scenario.
    pub stream_mrps: f64,
    /// Median of all those runs, M records/s.
    pub stream_median_mrps: f64,
    /// Each run's rate at the start, M records/s.
    pub stream_runs: Vec<f64>,
    /// Records per run at the start.
    pub stream_records: u64,
    /// Runs measured later, one per repetition of the throughput scenarios
    /// beside the batched SPSC rows (same machine state as they), M records/s
    /// ([`Floors::add_stream_run`]).
    pub stream_beside: Vec<f64>,
    /// Records per run beside the batched rows (as many as the longest row).
    pub stream_beside_records: u64,
    /// Cost of one `Instant::now()`, ns (best of the runs).
    pub clock_ns: f64,
}

/// Measures the floors: `quick` shortens every run. Runs stop early after
/// about a second each when the machine is so busy that they crawl.
pub fn measure(pins: &Pins, quick: bool) -> Floors {
    let (runs, round_trips, copies, streamed) = if quick {
        (3, 20_000, 50, 1 << 23)
    } else {
        (7, 100_000, 200, 1 << 26)
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
    // One untimed run first: it faults in the threads' stacks and warms the
    // caches, as the throughput scenarios' calibration run does.
    stream(BATCH as u64 * 64, pins);
    let stream_runs = timed(&|| streamed as f64 / stream(streamed, pins).as_secs_f64() / 1e6);
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
        stream_mrps: stream_runs.iter().copied().fold(0.0, f64::max),
        stream_median_mrps: median(&mut stream_runs.clone()),
        stream_runs,
        stream_records: streamed,
        stream_beside: Vec::new(),
        stream_beside_records: 0,
        clock_ns,
    }
}

impl Floors {
    /// Adds a run of the streaming floor measured later, beside the batched
    /// SPSC rows: `records` moved at `mrps` M records/s. The best and the
    /// median then cover every run.
    pub fn add_stream_run(&mut self, records: u64, mrps: f64) {
        self.stream_beside.push(mrps);
        self.stream_beside_records = records;
        let mut all: Vec<f64> = self
            .stream_runs
            .iter()
            .chain(&self.stream_beside)
            .copied()
            .collect();
        self.stream_mrps = all.iter().copied().fold(0.0, f64::max);
        self.stream_median_mrps = median(&mut all);
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

/// Blocks of [`BATCH`] records in the streaming floor's buffer: as many
/// records in all as the telering ring of the batched scenario has slots.
const STREAM_BLOCKS: usize = CAPACITY / BATCH;

/// The streaming floor's buffer: a ring of [`STREAM_BLOCKS`] blocks,
/// written by the producer and read by the consumer.
struct Blocks(Box<[UnsafeCell<Block>]>);

/// [`BATCH`] records, starting on a cache line (two: 128 bytes, the unit of
/// the adjacent-line prefetcher, as `CachePadded`), as a ring's slots would.
#[repr(C, align(128))]
struct Block([Reading; BATCH]);

// The producer writes block `b` (at index `b % STREAM_BLOCKS`) only once the
// consumer has counted block `b - STREAM_BLOCKS`, the previous user of that
// index, as read (`consumed > b - STREAM_BLOCKS`, loaded with Acquire after
// the consumer's Release store), and the consumer reads block `b` only once
// the producer has counted it as written (`published > b`, Acquire after
// Release). Those pairs also order each access after the other side's last
// one. `Reading` is plain `Copy` data, so sharing it between threads is sound.
// SAFETY: as just said, the two threads never touch one block at once.
unsafe impl Sync for Blocks {}

/// The ideal streaming transfer between the two pinned cores (roles 0 and
/// 1, pinned like every scenario): the batched SPSC scenario's job with no
/// queue around it. The producer writes [`BATCH`]-record blocks of the same
/// `Reading` into a ring of blocks with as many records as the telering ring
/// has slots, and bumps ONE shared counter (Release) per block; the consumer
/// spins on it (Acquire), sums the `ts_us` of every record of each block, as
/// the scenarios' consumers do, and bumps its own counter per block so that
/// the producer never overwrites an unread block. Each side keeps the last
/// value it read of the other's counter and loads it again only when it runs
/// out, the best a ring can do. The buffer is faulted in before the clock
/// starts. Returns the time to move `n` records (the last block may be
/// short) in the scenarios' harness ([`run_pinned`]); the consumer's sum is
/// checked.
pub fn stream(n: u64, pins: &Pins) -> Duration {
    let tmpl = template();
    let blocks = Blocks(
        (0..STREAM_BLOCKS)
            .map(|_| UnsafeCell::new(Block([tmpl; BATCH])))
            .collect(),
    );
    let published = CachePadded::new(AtomicU64::new(0));
    let consumed = CachePadded::new(AtomicU64::new(0));
    let total = n.div_ceil(BATCH as u64);
    let ring = STREAM_BLOCKS as u64;
    let idle = Idle::for_threads(pins, 2);
    let wait = |backoff: &crossbeam_utils::Backoff| match idle {
        Idle::Spin => spin_loop(),
        Idle::Yield => backoff.snooze(),
    };
    // Records in block `b`: BATCH, or what is left for the last one.
    let len = |b: u64| (n - b * BATCH as u64).min(BATCH as u64) as usize;
    let (blocks, published, consumed) = (&blocks, &published, &consumed);
    let (t, sums) = run_pinned(
        pins,
        vec![
            job(move || {
                let backoff = crossbeam_utils::Backoff::new();
                // Blocks below this may be written: consumed + ring, as last read.
                let mut free = ring;
                for b in 0..total {
                    while b >= free {
                        // Acquire: pairs with the consumer's Release store, so
                        // its reads of the block about to be overwritten are
                        // done before the writes below.
                        free = consumed.load(Ordering::Acquire) + ring;
                        if b >= free {
                            wait(&backoff);
                        }
                    }
                    backoff.reset();
                    // `b < consumed + ring`: the consumer is done with block
                    // `b - ring`, the last one at this index, and reads block
                    // `b` only after `published` passes `b` (below).
                    // SAFETY: so this is the only reference to the block.
                    let block = unsafe { &mut *blocks.0[(b % ring) as usize].get() };
                    let base = b * BATCH as u64;
                    for (j, slot) in block.0[..len(b)].iter_mut().enumerate() {
                        *slot = Reading {
                            ts_us: base + j as u64,
                            ..tmpl
                        };
                    }
                    // Release: the block's records are visible to the consumer
                    // once it sees the new count (its Acquire load).
                    published.store(b + 1, Ordering::Release);
                }
                0u64
            }),
            job(move || {
                let backoff = crossbeam_utils::Backoff::new();
                // Blocks below this are written: `published`, as last read.
                let mut ready = 0;
                let mut sum = 0u64;
                for b in 0..total {
                    while b >= ready {
                        // Acquire: pairs with the producer's Release store, so
                        // the block's records are written before the reads below.
                        ready = published.load(Ordering::Acquire);
                        if b >= ready {
                            wait(&backoff);
                        }
                    }
                    backoff.reset();
                    // `b < published`: the producer has written this block and
                    // writes its index again only after `consumed` passes `b`
                    // (below).
                    // SAFETY: so the block is not being written now.
                    let block = unsafe { &*blocks.0[(b % ring) as usize].get() };
                    for r in &block.0[..len(b)] {
                        sum = sum.wrapping_add(r.ts_us);
                    }
                    // Release: the reads above are done before the producer,
                    // seeing the new count (its Acquire load), overwrites the block.
                    consumed.store(b + 1, Ordering::Release);
                }
                sum
            }),
        ],
    );
    let want = (u128::from(n) * u128::from(n.saturating_sub(1)) / 2) as u64;
    assert_eq!(
        sums[1], want,
        "stream floor: the consumer read wrong records (checksum mismatch over {n} records)"
    );
    t
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
