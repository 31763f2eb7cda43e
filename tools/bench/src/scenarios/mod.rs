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
//!
//! Each system has its module (`ring`, `engine`, `disruptor`, `rtrb`,
//! `crossbeam_channel`, `array_queue`, `std_sync_channel`); their run
//! functions are re-exported here. This module holds what they share (pinning,
//! waiting, records and checks, [`run_pinned`]), the harness alone
//! ([`base_handoff`]) and the registry of scenarios ([`all`]).

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use core_affinity::CoreId;
use crossbeam_utils::{Backoff, CachePadded};
use telering::{DeviceId, Reading, WaitStrategy};

mod array_queue;
mod crossbeam_channel;
mod disruptor;
mod engine;
mod ring;
mod rtrb;
mod std_sync_channel;

pub use self::array_queue::{array_queue_cluster, array_queue_single};
pub use self::crossbeam_channel::{channel_broadcast, channel_cluster, channel_single};
pub use self::disruptor::{
    disruptor_batch, disruptor_broadcast, disruptor_cluster, disruptor_single, YieldWait,
};
pub use self::engine::{
    engine_batch, engine_broadcast, engine_cluster, engine_single, engine_single_marked,
};
pub use self::ring::{
    telering_batch, telering_batch_marked, telering_single, telering_single_marked,
};
pub use self::rtrb::{rtrb_broadcast, rtrb_chunks, rtrb_cluster, rtrb_single};
pub use self::std_sync_channel::std_sync_channel;

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
                    "Producer::send_to / Consumer::poll_with",
                    Kind::Engine,
                    engine_single,
                ),
                sys(
                    "telering-engine-marked",
                    "marked layout: send_to / poll_with",
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
                    "Producer::send_batch_with(256) / Consumer::poll_with",
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
                    "broadcast group of 2, send_to / poll_with",
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
                    "cluster group of 2, 2 partitions, send_to / poll_with",
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
