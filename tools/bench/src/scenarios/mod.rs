//! Throughput scenarios shared by the criterion benches (`benches/ring.rs`,
//! `benches/engine.rs`) and the quick comparison tool (`src/main.rs`).
//!
//! Every system moves the 32-byte [`Reading`] through a queue of
//! [`CAPACITY`] (64 Ki) slots, with the producer and the consumers pinned the
//! same way ([`Pins`]). A run function has the shape
//! `fn(records, &Pins) -> Duration`: it builds the queue and its threads
//! untimed, releases them together with one [`Barrier`], and returns the time
//! from the earliest thread's start to the latest thread's finish (the scheme
//! of rtrb's `performance-comparison`), so criterion's `iter_custom` can call
//! it directly.
//!
//! Each consumer sums the `ts_us` field of what it reads (the producer writes
//! the record's index there) and the sums are checked at the end: a queue that
//! loses, duplicates or tears a record fails loudly instead of looking fast.
//!
//! When there are more busy threads than cores (broadcast and cluster with two
//! consumers on a 2-core machine), every waiting loop switches from a pure spin
//! to spin-then-yield ([`Idle::Yield`]; telering `SpinYield`; a yielding
//! disruptor wait strategy), again the same way for every system.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use core_affinity::CoreId;
use crossbeam_utils::{Backoff, CachePadded};
use telering::ring::{self, OverflowPolicy, SlotLayout};
use telering::{ConsumerConfig, DeviceId, Engine, GroupMode, Reading, TopicConfig, WaitStrategy};

/// Slots per queue, for every system.
pub const CAPACITY: usize = 64 * 1024;
/// Records per batch in the batched scenarios.
pub const BATCH: usize = 256;
/// Most records a batch-reading consumer takes per call.
pub const READ_MAX: usize = 4096;

// ----- pinning -----

/// The cores this process may use, read once before any thread is pinned
/// (`core_affinity::get_core_ids()` only returns the cores the *calling*
/// thread may use, so asking again from a pinned thread would see one).
///
/// Role 0 is the producer, role `i` the `i`-th consumer; roles wrap around
/// the core list when there are more threads than cores.
#[derive(Debug, Clone)]
pub struct Pins {
    cores: Vec<CoreId>,
    available: usize,
}

impl Pins {
    /// Reads the core list. Call it once, first thing, from an unpinned thread.
    pub fn take() -> Self {
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let available = if cores.is_empty() {
            thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            cores.len()
        };
        Self { cores, available }
    }

    /// Number of cores available to this process.
    pub fn cores(&self) -> usize {
        self.available
    }

    /// Whether threads are pinned (at least two known cores).
    pub fn enabled(&self) -> bool {
        self.cores.len() >= 2
    }

    /// Whether `threads` busy threads are more than the cores.
    pub fn oversubscribed(&self, threads: usize) -> bool {
        threads > self.available
    }

    /// The core of `role`, if pinning is on.
    pub fn core_of(&self, role: usize) -> Option<usize> {
        self.enabled()
            .then(|| self.cores[role % self.cores.len()].id)
    }

    /// Pins the calling thread as `role`. Returns the core, or `None` when
    /// unpinned.
    pub fn pin(&self, role: usize) -> Option<usize> {
        if !self.enabled() {
            return None;
        }
        let core = self.cores[role % self.cores.len()];
        core_affinity::set_for_current(core).then_some(core.id)
    }

    /// One line: cores and how `threads` threads are placed.
    pub fn describe(&self, threads: usize) -> String {
        if !self.enabled() {
            return format!(
                "{} core(s): fewer than 2 known cores, threads run unpinned",
                self.available
            );
        }
        let placement: Vec<String> = (0..threads)
            .map(|r| {
                let who = if r == 0 {
                    "producer".to_owned()
                } else {
                    format!("consumer{r}")
                };
                format!("{who}→core {}", self.core_of(r).unwrap_or(0))
            })
            .collect();
        format!(
            "{} cores; {}{}",
            self.available,
            placement.join(", "),
            if self.oversubscribed(threads) {
                " (oversubscribed: threads share cores, waits spin then yield)"
            } else {
                ""
            }
        )
    }
}

// ----- waiting -----

/// How a hand-written loop waits for its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Spin with a CPU hint (one thread per core).
    Spin,
    /// Spin, then yield the core (oversubscribed).
    Yield,
}

impl Idle {
    /// `Spin` if `threads` fit on the cores, else `Yield`.
    pub fn for_threads(pins: &Pins, threads: usize) -> Self {
        if pins.oversubscribed(threads) {
            Self::Yield
        } else {
            Self::Spin
        }
    }

    /// telering's matching wait strategy.
    pub fn telering(self) -> WaitStrategy {
        match self {
            Self::Spin => WaitStrategy::BusySpin,
            Self::Yield => WaitStrategy::SpinYield,
        }
    }

    fn idler(self) -> Idler {
        Idler {
            idle: self,
            backoff: Backoff::new(),
        }
    }
}

struct Idler {
    idle: Idle,
    backoff: Backoff,
}

impl Idler {
    #[inline]
    fn idle(&self) {
        match self.idle {
            Idle::Spin => spin_loop(),
            Idle::Yield => self.backoff.snooze(),
        }
    }

    #[inline]
    fn reset(&self) {
        if self.idle == Idle::Yield {
            self.backoff.reset();
        }
    }
}

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

// ----- records and checks -----

/// The record every system carries; `ts_us` is set per record.
pub fn template() -> Reading {
    Reading::new(
        DeviceId::new("greenhouse-0007").expect("valid device id"),
        0,
        21.5,
        48.0,
    )
}

#[inline(always)]
fn rec(tmpl: &Reading, i: u64) -> Reading {
    Reading { ts_us: i, ..*tmpl }
}

/// Sum of `0..n`, wrapping like the consumers' sums.
fn expected_sum(n: u64) -> u64 {
    (u128::from(n) * u128::from(n.saturating_sub(1)) / 2) as u64
}

/// Every consumer saw every record (broadcast, SPSC).
fn check_each(system: &str, n: u64, sums: &[u64]) {
    for (i, &s) in sums.iter().enumerate() {
        assert_eq!(
            s,
            expected_sum(n),
            "{system}: consumer {i} read wrong records (checksum mismatch over {n} records)"
        );
    }
}

/// The consumers together saw every record once (cluster).
fn check_total(system: &str, n: u64, sums: &[u64]) {
    let total = sums.iter().fold(0u64, |a, &s| a.wrapping_add(s));
    assert_eq!(
        total,
        expected_sum(n),
        "{system}: consumers together read wrong records (checksum mismatch over {n} records)"
    );
}

/// Records with `i % k == j` among `0..n`.
fn share(n: u64, k: usize, j: usize) -> u64 {
    let (k, j) = (k as u64, j as u64);
    n / k + u64::from(n % k > j)
}

// ----- harness -----

/// A thread's work: returns a checksum (or any result).
pub type Job<'a, R> = Box<dyn FnOnce() -> R + Send + 'a>;

/// Boxes a thread's work in its own cache-padded allocation. The closure
/// holds the thread's queue handle (cursors, cached positions) and stays on
/// the heap while it runs; without the padding the producer's and the
/// consumer's state could share a cache line, depending on where the
/// allocator put them, and add false sharing to one system and not another.
pub fn job<'a, R, F: FnOnce() -> R + Send + 'a>(f: F) -> Job<'a, R> {
    let f = CachePadded::new(f);
    Box::new(move || CachePadded::into_inner(f)())
}

/// Runs `jobs[i]` on a thread pinned as role `i` (0 = producer), releases
/// them together with one [`Barrier`], and returns the span from the earliest
/// start to the latest finish with every job's result.
pub fn run_pinned<'a, R: Send + 'a>(pins: &Pins, jobs: Vec<Job<'a, R>>) -> (Duration, Vec<R>) {
    let barrier = Barrier::new(jobs.len());
    let out: Vec<(Instant, Instant, R)> = thread::scope(|s| {
        let handles: Vec<_> = jobs
            .into_iter()
            .enumerate()
            .map(|(role, job)| {
                let barrier = &barrier;
                s.spawn(move || {
                    pins.pin(role);
                    barrier.wait();
                    let start = Instant::now();
                    let r = job();
                    (start, Instant::now(), r)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("benchmark thread panicked"))
            .collect()
    });
    let start = out.iter().map(|o| o.0).min().expect("at least one job");
    let stop = out.iter().map(|o| o.1).max().expect("at least one job");
    (stop - start, out.into_iter().map(|o| o.2).collect())
}

// ----- the harness itself -----

/// `base`: the harness with no queue. The producer stores its counter into
/// one cache-padded atomic per "record"; the consumer spins until it sees the
/// last value. Measures thread start skew, the barrier and one cache line
/// bouncing: an upper bound no queue can beat in this harness.
pub fn base_handoff(n: u64, pins: &Pins) -> Duration {
    let cell = CachePadded::new(AtomicU64::new(0));
    let idle = Idle::for_threads(pins, 2);
    let (t, _) = run_pinned(
        pins,
        vec![
            job(|| {
                for i in 1..=n {
                    cell.store(i, Ordering::Release);
                }
                0u64
            }),
            job(|| {
                let idler = idle.idler();
                while cell.load(Ordering::Acquire) != n {
                    idler.idle();
                }
                0
            }),
        ],
    );
    t
}

// ----- telering: ring core -----

/// telering ring, one `Writer::publish` per record; the reader takes what is
/// available in place (`Reader::read_with`, up to [`READ_MAX`]).
pub fn telering_single(n: u64, pins: &Pins) -> Duration {
    telering_spsc(n, pins, false, SlotLayout::Packed)
}

/// telering ring, `Writer::publish_with(256, ..)` per batch.
pub fn telering_batch(n: u64, pins: &Pins) -> Duration {
    telering_spsc(n, pins, true, SlotLayout::Packed)
}

/// [`telering_single`] on a ring with the marked slot layout.
pub fn telering_single_marked(n: u64, pins: &Pins) -> Duration {
    telering_spsc(n, pins, false, SlotLayout::Marked)
}

/// [`telering_batch`] on a ring with the marked slot layout.
pub fn telering_batch_marked(n: u64, pins: &Pins) -> Duration {
    telering_spsc(n, pins, true, SlotLayout::Marked)
}

fn telering_spsc(n: u64, pins: &Pins, batch: bool, layout: SlotLayout) -> Duration {
    let (mut w, mut r) =
        ring::spsc_with::<Reading>(CAPACITY, OverflowPolicy::Block, layout).expect("ring capacity");
    let tmpl = template();
    let idle = Idle::for_threads(pins, 2);
    let (t, sums) = run_pinned(
        pins,
        vec![
            job(move || {
                if batch {
                    let mut i = 0;
                    while i < n {
                        let k = (n - i).min(BATCH as u64) as usize;
                        let got = w
                            .publish_with(k, |j| rec(&tmpl, i + j as u64))
                            .expect("telering publish_with");
                        i += got as u64;
                    }
                } else {
                    for i in 0..n {
                        w.publish(rec(&tmpl, i)).expect("telering publish");
                    }
                }
                0u64
            }),
            job(move || {
                let idler = idle.idler();
                let mut sum = 0u64;
                let mut got = 0u64;
                while got < n {
                    let k = r.read_with(READ_MAX, |_, v| sum = sum.wrapping_add(v.ts_us));
                    if k == 0 {
                        idler.idle();
                    } else {
                        got += k as u64;
                        idler.reset();
                    }
                }
                sum
            }),
        ],
    );
    check_each("telering", n, &sums[1..]);
    t
}

// ----- telering: engine API -----

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
            let mut buf = [tmpl; BATCH];
            let mut i = 0;
            while i < n {
                let k = (n - i).min(BATCH as u64) as usize;
                for (j, slot) in buf[..k].iter_mut().enumerate() {
                    *slot = rec(&tmpl, i + j as u64);
                }
                producer
                    .send_batch_to(0, &buf[..k])
                    .expect("engine send_batch_to");
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
                let b = c.poll(READ_MAX, Duration::from_millis(500)).expect("poll");
                if b.is_empty() {
                    empty += 1;
                    assert!(
                        empty < 20,
                        "engine consumer stalled at {got} of {want} records"
                    );
                }
                for r in b.iter() {
                    sum = sum.wrapping_add(r.value.ts_us);
                }
                got += b.len() as u64;
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

// ----- disruptor -----

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

// ----- rtrb -----

/// rtrb `push`/`pop`, one record at a time.
pub fn rtrb_single(n: u64, pins: &Pins) -> Duration {
    rtrb_run(n, pins, 1, true, false)
}

/// rtrb chunks: `write_chunk_uninit(256).fill_from_iter(..)`, and the reader
/// takes what is available in place with `read_chunk`.
pub fn rtrb_chunks(n: u64, pins: &Pins) -> Duration {
    rtrb_run(n, pins, 1, true, true)
}

/// Two rtrb rings; the producer pushes every record into both.
pub fn rtrb_broadcast(n: u64, pins: &Pins) -> Duration {
    rtrb_run(n, pins, 2, true, false)
}

/// Two rtrb rings; the producer alternates between them (partitions).
pub fn rtrb_cluster(n: u64, pins: &Pins) -> Duration {
    rtrb_run(n, pins, 2, false, false)
}

fn rtrb_run(n: u64, pins: &Pins, rings: usize, every: bool, chunks: bool) -> Duration {
    let idle = Idle::for_threads(pins, rings + 1);
    let tmpl = template();
    let (mut producers, consumers): (Vec<_>, Vec<_>) = (0..rings)
        .map(|_| rtrb::RingBuffer::<Reading>::new(CAPACITY))
        .unzip();
    let mut jobs: Vec<Job<'_, u64>> = vec![job(move || {
        let idler = idle.idler();
        let push = |p: &mut rtrb::Producer<Reading>, v: Reading| {
            let mut v = v;
            loop {
                match p.push(v) {
                    Ok(()) => break,
                    Err(rtrb::PushError::Full(back)) => {
                        v = back;
                        idler.idle();
                    }
                }
            }
            idler.reset();
        };
        if chunks {
            let p = &mut producers[0];
            let mut i = 0;
            while i < n {
                let k = (n - i).min(BATCH as u64) as usize;
                match p.write_chunk_uninit(k) {
                    Ok(chunk) => {
                        chunk.fill_from_iter((i..i + k as u64).map(|x| rec(&tmpl, x)));
                        i += k as u64;
                        idler.reset();
                    }
                    Err(_) => idler.idle(),
                }
            }
        } else if every {
            for i in 0..n {
                let v = rec(&tmpl, i);
                for p in producers.iter_mut() {
                    push(p, v);
                }
            }
        } else {
            let mut j = 0;
            for i in 0..n {
                push(&mut producers[j], rec(&tmpl, i));
                j += 1;
                if j == rings {
                    j = 0;
                }
            }
        }
        0
    })];
    for (j, mut c) in consumers.into_iter().enumerate() {
        let want = if every { n } else { share(n, rings, j) };
        jobs.push(job(move || {
            let idler = idle.idler();
            let mut sum = 0u64;
            let mut got = 0u64;
            if chunks {
                while got < want {
                    let avail = c.slots().min(READ_MAX);
                    if avail == 0 {
                        idler.idle();
                        continue;
                    }
                    let chunk = c.read_chunk(avail).expect("slots() were available");
                    let (a, b) = chunk.as_slices();
                    for v in a.iter().chain(b) {
                        sum = sum.wrapping_add(v.ts_us);
                    }
                    got += avail as u64;
                    chunk.commit_all();
                    idler.reset();
                }
            } else {
                while got < want {
                    match c.pop() {
                        Ok(v) => {
                            sum = sum.wrapping_add(v.ts_us);
                            got += 1;
                            idler.reset();
                        }
                        Err(_) => idler.idle(),
                    }
                }
            }
            sum
        }));
    }
    let (t, sums) = run_pinned(pins, jobs);
    if every {
        check_each("rtrb", n, &sums[1..]);
    } else {
        check_total("rtrb", n, &sums[1..]);
    }
    t
}

// ----- crossbeam-channel -----

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

// ----- crossbeam ArrayQueue -----

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

// ----- std -----

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

// ----- registry -----

/// Which layer of the comparison a system is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// telering's ring core (`ring::spsc`).
    Ring,
    /// telering through the engine API (topics, producer, consumer groups).
    Engine,
    /// Another queue.
    Peer,
    /// The harness alone.
    Base,
}

/// One system in a scenario.
#[derive(Debug, Clone, Copy)]
pub struct System {
    /// Short name (criterion bench id, table row, JSON key).
    pub name: &'static str,
    /// What it calls.
    pub api: &'static str,
    /// Layer.
    pub kind: Kind,
    /// Moves `records` records and returns the elapsed time.
    pub run: fn(u64, &Pins) -> Duration,
}

/// A comparison: systems doing the same work.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Id (criterion group, JSON key).
    pub id: &'static str,
    /// One line for people.
    pub title: &'static str,
    /// Busy threads (producer + consumers).
    pub threads: usize,
    /// The systems.
    pub systems: Vec<System>,
}

impl Scenario {
    /// The scenario with only the systems `keep` accepts.
    pub fn only(&self, keep: impl Fn(&System) -> bool) -> Self {
        Self {
            systems: self.systems.iter().copied().filter(|s| keep(s)).collect(),
            ..self.clone()
        }
    }
}

const fn sys(
    name: &'static str,
    api: &'static str,
    kind: Kind,
    run: fn(u64, &Pins) -> Duration,
) -> System {
    System {
        name,
        api,
        kind,
        run,
    }
}

/// The harness alone.
pub fn base() -> Scenario {
    Scenario {
        id: "base",
        title: "harness only: one atomic counter handed between the two pinned threads, no queue",
        threads: 2,
        systems: vec![sys(
            "base",
            "AtomicU64 store / spin until last",
            Kind::Base,
            base_handoff,
        )],
    }
}

/// Every comparison, in the order they are run and printed.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            id: "spsc_single",
            title: "SPSC, one record per publish",
            threads: 2,
            systems: vec![
                sys(
                    "telering",
                    "Writer::publish / Reader::read_with",
                    Kind::Ring,
                    telering_single,
                ),
                sys(
                    "telering-marked",
                    "marked layout: Writer::publish / Reader::read_with",
                    Kind::Ring,
                    telering_single_marked,
                ),
                sys(
                    "telering-engine",
                    "Producer::send_to / Consumer::poll",
                    Kind::Engine,
                    engine_single,
                ),
                sys(
                    "telering-engine-marked",
                    "marked layout: send_to / poll",
                    Kind::Engine,
                    engine_single_marked,
                ),
                sys(
                    "disruptor",
                    "publish / handler",
                    Kind::Peer,
                    disruptor_single,
                ),
                sys("rtrb", "push / pop", Kind::Peer, rtrb_single),
                sys(
                    "crossbeam-channel",
                    "bounded send / recv",
                    Kind::Peer,
                    channel_single,
                ),
                sys(
                    "crossbeam-ArrayQueue",
                    "push / pop",
                    Kind::Peer,
                    array_queue_single,
                ),
                sys(
                    "std-sync_channel",
                    "send / recv",
                    Kind::Peer,
                    std_sync_channel,
                ),
            ],
        },
        Scenario {
            id: "spsc_batch",
            title: "SPSC, batches of 256 records (queues with a batch API)",
            threads: 2,
            systems: vec![
                sys(
                    "telering",
                    "Writer::publish_with(256) / Reader::read_with",
                    Kind::Ring,
                    telering_batch,
                ),
                sys(
                    "telering-marked",
                    "marked layout: publish_with(256) / read_with",
                    Kind::Ring,
                    telering_batch_marked,
                ),
                sys(
                    "telering-engine",
                    "Producer::send_batch_to(256) / Consumer::poll",
                    Kind::Engine,
                    engine_batch,
                ),
                sys(
                    "disruptor",
                    "batch_publish(256) / handler",
                    Kind::Peer,
                    disruptor_batch,
                ),
                sys(
                    "rtrb",
                    "write_chunk_uninit(256) / read_chunk",
                    Kind::Peer,
                    rtrb_chunks,
                ),
            ],
        },
        Scenario {
            id: "broadcast_1to2",
            title: "broadcast 1→2, every consumer reads every record",
            threads: 3,
            systems: vec![
                sys(
                    "telering-engine",
                    "broadcast group of 2, send_to / poll",
                    Kind::Engine,
                    engine_broadcast,
                ),
                sys("disruptor", "2 handlers", Kind::Peer, disruptor_broadcast),
                sys("rtrb", "2 rings, push to both", Kind::Peer, rtrb_broadcast),
                sys(
                    "crossbeam-channel",
                    "2 channels, send to both",
                    Kind::Peer,
                    channel_broadcast,
                ),
            ],
        },
        Scenario {
            id: "cluster_1to2",
            title: "cluster 1→2, each record to one consumer",
            threads: 3,
            systems: vec![
                sys(
                    "telering-engine",
                    "cluster group of 2, 2 partitions, send_to / poll",
                    Kind::Engine,
                    engine_cluster,
                ),
                sys(
                    "disruptor",
                    "2 handlers, seq % 2",
                    Kind::Peer,
                    disruptor_cluster,
                ),
                sys("rtrb", "2 rings, alternate", Kind::Peer, rtrb_cluster),
                sys(
                    "crossbeam-channel",
                    "1 channel, 2 receivers",
                    Kind::Peer,
                    channel_cluster,
                ),
                sys(
                    "crossbeam-ArrayQueue",
                    "1 queue, 2 poppers",
                    Kind::Peer,
                    array_queue_cluster,
                ),
            ],
        },
    ]
}
