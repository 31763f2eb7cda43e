//! Ping-pong latency: one-way latency through a queue as round trip / 2, the
//! way the core-to-core floor is measured ([`crate::floors`]), against a
//! floor measured the same way between its samples.
//!
//! Two pinned threads and two queues of the same system, one per direction:
//! the first thread sends a record and busy-waits for its echo, the second
//! echoes every record it gets. One-way latency = round trip / 2.
//!
//! The floor it is compared with is the same ping-pong through two bare
//! atomics, one per direction, as two queues have: each line is written by
//! one side only and read by the other, as a queue's lines are. Measured
//! here it is about 2× the single-line ping-pong of [`crate::floors`], where
//! each side reads and then writes the same line (most likely because the
//! CPU then hands the line over already writable, one transfer per leg
//! instead of a transfer and an invalidation); no queue has a line that both
//! sides write. Both floors are reported.
//!
//! The fixed-rate measurement ([`crate::latency`]) stamps every record with
//! the clock at both ends, which costs two clock reads per sample (tens of ns
//! on a VM) and the producer's spin to its due time; it is the right tool for
//! tails and coordinated omission, not for a floor-sized p50. Here the clock
//! is read once per [`PER_SAMPLE`] round trips, on one side only, so it adds
//! under a nanosecond to each one-way figure. Between two groups through the
//! queue the same two threads run a group through two bare atomics, so each
//! system carries its own floor, measured a moment apart on the same cores
//! (the hypervisor here moves the vCPUs between runs, which changes the
//! core-to-core latency several-fold). Each histogram sample is the
//! mean one-way latency of those round trips: the percentiles describe
//! groups of round trips, which smooths the tail (the tail belongs to the
//! fixed-rate table).

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;
use telering::ring::{self, OverflowPolicy, SlotLayout};
use telering::{Consumer, ConsumerConfig, Engine, Reading, TopicConfig, WaitStrategy};

use crate::scenarios::{job, run_pinned, template, Pins, CAPACITY};

/// Round trips per histogram sample (one clock read at each end of them).
pub const PER_SAMPLE: u64 = 64;

/// A system measured by ping-pong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingSystem {
    /// telering ring (`ring::spsc_with`), `publish` / `read_with` polled.
    Ring(SlotLayout),
    /// telering engine, `send_to` / `Consumer::poll_with` with `BusySpin`.
    Engine(SlotLayout),
    /// disruptor `publish` / `EventPoller::take(1)`, polled.
    Disruptor,
    /// rtrb `push` / `pop`, polled.
    Rtrb,
}

impl PingSystem {
    /// Every system, in the order they are run.
    pub fn all() -> Vec<Self> {
        vec![
            Self::Ring(SlotLayout::Packed),
            Self::Ring(SlotLayout::Marked),
            Self::Engine(SlotLayout::Packed),
            Self::Engine(SlotLayout::Marked),
            Self::Disruptor,
            Self::Rtrb,
        ]
    }

    /// Name for tables and JSON.
    pub fn name(&self) -> String {
        match self {
            Self::Ring(SlotLayout::Packed) => "telering ring".to_owned(),
            Self::Ring(SlotLayout::Marked) => "telering ring marked".to_owned(),
            Self::Engine(SlotLayout::Packed) => "telering engine".to_owned(),
            Self::Engine(SlotLayout::Marked) => "telering engine marked".to_owned(),
            Self::Disruptor => "disruptor".to_owned(),
            Self::Rtrb => "rtrb".to_owned(),
        }
    }

    /// Whether this is one of telering's rows.
    pub fn is_telering(&self) -> bool {
        matches!(self, Self::Ring(_) | Self::Engine(_))
    }
}

/// One system's ping-pong histogram: mean one-way ns per sample.
#[derive(Debug, Clone)]
pub struct PingResult {
    /// The system.
    pub system: PingSystem,
    /// One-way latency (round trip / 2), ns, one sample per [`PER_SAMPLE`]
    /// round trips.
    pub hist: Histogram<u64>,
    /// The floor measured between those samples on the same threads: two
    /// bare atomics, same method.
    pub floor: Histogram<u64>,
}

impl PingResult {
    /// One-way latency at percentile `p`, ns.
    pub fn at(&self, p: f64) -> u64 {
        self.hist.value_at_percentile(p)
    }

    /// The interleaved floor's median, ns.
    pub fn floor_p50(&self) -> u64 {
        self.floor.value_at_percentile(50.0)
    }

    /// p50 over the interleaved floor's p50.
    pub fn p50_over_floor(&self) -> f64 {
        self.at(50.0) as f64 / self.floor_p50() as f64
    }
}

/// Runs `samples` samples (after `warmup` unrecorded ones) of `system`.
pub fn run(system: PingSystem, samples: u64, warmup: u64, pins: &Pins) -> PingResult {
    let (hist, floor) = match system {
        PingSystem::Ring(layout) => {
            let spsc = || {
                ring::spsc_with::<Reading>(CAPACITY, OverflowPolicy::Block, layout)
                    .expect("ring capacity")
            };
            let ((mut wa, mut rb), (mut wb, mut ra)) = (spsc(), spsc());
            let tmpl = template();
            let send = move |w: &mut ring::Writer<Reading>, v: u64| {
                w.publish(Reading { ts_us: v, ..tmpl })
                    .expect("telering publish");
            };
            let recv = |r: &mut ring::Reader<Reading>| {
                let mut got = None;
                r.read_with(1, |_, v| got = Some(v.ts_us));
                got
            };
            pair(
                pins,
                samples,
                warmup,
                (move |v| send(&mut wa, v), move || recv(&mut ra)),
                (move |v| send(&mut wb, v), move || recv(&mut rb)),
            )
        }
        PingSystem::Engine(layout) => {
            let engine: Engine<Reading> = Engine::new();
            // One topic per direction, each with one cluster member.
            let end = |topic: &str| {
                engine
                    .create_topic(
                        topic,
                        TopicConfig::new(1, CAPACITY)
                            .policy(OverflowPolicy::Block)
                            .layout(layout),
                    )
                    .expect("create topic");
                let producer = engine.producer(topic).expect("producer");
                let mut consumer = engine
                    .consumer(ConsumerConfig::cluster(topic).wait(WaitStrategy::BusySpin))
                    .expect("consumer");
                consumer.subscribe(&[topic]).expect("subscribe");
                // Settle the assignment before timing.
                let _ = consumer.poll(1, Duration::ZERO).expect("poll");
                (producer, consumer)
            };
            let (mut p_ping, mut c_ping) = end("ping");
            let (mut p_pong, mut c_pong) = end("pong");
            let tmpl = template();
            // `poll_with` waits (busy-spinning) until the echo is there and
            // reads it in place.
            let recv = |c: &mut Consumer<Reading>| {
                c.poll_with(1, Duration::from_secs(10), |runs| {
                    runs.iter().next().map(|r| r.records[0].ts_us)
                })
                .expect("poll")
            };
            pair(
                pins,
                samples,
                warmup,
                (
                    move |v| {
                        p_ping
                            .send_to(0, Reading { ts_us: v, ..tmpl })
                            .expect("engine send_to");
                    },
                    move || recv(&mut c_pong),
                ),
                (
                    move |v| {
                        p_pong
                            .send_to(0, Reading { ts_us: v, ..tmpl })
                            .expect("engine send_to");
                    },
                    move || recv(&mut c_ping),
                ),
            )
        }
        PingSystem::Disruptor => {
            let tmpl = template();
            let build = || {
                let (poller, builder) = disruptor::build_single_producer(
                    CAPACITY,
                    move || tmpl,
                    disruptor::BusySpinWithSpinLoopHint,
                )
                .new_event_poller();
                (builder.build(), poller)
            };
            let ((mut pa, mut pb_poll), (mut pb, mut pa_poll)) = (build(), build());
            use disruptor::Producer as _;
            pair(
                pins,
                samples,
                warmup,
                (
                    move |v| pa.publish(|e| e.ts_us = v),
                    move || match pa_poll.take(1) {
                        Ok(mut g) => (&mut g).next().map(|e| e.ts_us),
                        Err(_) => None,
                    },
                ),
                (
                    move |v| pb.publish(|e| e.ts_us = v),
                    move || match pb_poll.take(1) {
                        Ok(mut g) => (&mut g).next().map(|e| e.ts_us),
                        Err(_) => None,
                    },
                ),
            )
        }
        PingSystem::Rtrb => {
            let ((mut pa, mut cb), (mut pb, mut ca)) = (
                rtrb::RingBuffer::<Reading>::new(CAPACITY),
                rtrb::RingBuffer::<Reading>::new(CAPACITY),
            );
            let tmpl = template();
            pair(
                pins,
                samples,
                warmup,
                (
                    move |v| {
                        pa.push(Reading { ts_us: v, ..tmpl })
                            .expect("rtrb has room: one record in flight");
                    },
                    move || ca.pop().ok().map(|r| r.ts_us),
                ),
                (
                    move |v| {
                        pb.push(Reading { ts_us: v, ..tmpl })
                            .expect("rtrb has room: one record in flight");
                    },
                    move || cb.pop().ok().map(|r| r.ts_us),
                ),
            )
        }
    };
    PingResult {
        system,
        hist,
        floor,
    }
}

/// A histogram for mean one-way latencies, 1 ns to 60 s, 3 digits.
fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Runs the ping-pong: side A (role 0) sends record `i` and waits for its
/// echo, timing each [`PER_SAMPLE`] round trips; side B (role 1) echoes.
/// `recv` returns `None` while nothing has arrived (the caller spins).
///
/// After each group through the queue the two threads run a group through
/// two bare atomics (the floor's method) and time it too, so every queue
/// sample has a floor sample taken a moment later on the same cores: the
/// ratio of the two histograms survives the hypervisor moving the vCPUs
/// between or during runs. Returns `(queue, floor)`.
fn pair<SA, RA, SB, RB>(
    pins: &Pins,
    samples: u64,
    warmup: u64,
    (mut send_a, mut recv_a): (SA, RA),
    (mut send_b, mut recv_b): (SB, RB),
) -> (Histogram<u64>, Histogram<u64>)
where
    SA: FnMut(u64) + Send,
    RA: FnMut() -> Option<u64> + Send,
    SB: FnMut(u64) + Send,
    RB: FnMut() -> Option<u64> + Send,
{
    // The floor's cells: a value is `sequence + 1`. Release/Acquire: a plain
    // handoff, as a queue's cursor pays.
    let (ab, ba) = (
        CachePadded::new(AtomicU64::new(0)),
        CachePadded::new(AtomicU64::new(0)),
    );
    let spin_until = |cell: &AtomicU64, want: u64| {
        while cell.load(Ordering::Acquire) != want {
            spin_loop();
        }
    };
    let (_, mut out) = run_pinned(
        pins,
        vec![
            job(|| {
                let (mut hist, mut floor) = (new_hist(), new_hist());
                let (mut seq, mut tick) = (0u64, 0u64);
                let one_way =
                    |start: Instant| (start.elapsed().as_nanos() as u64 / (2 * PER_SAMPLE)).max(1);
                for s in 0..samples + warmup {
                    let start = Instant::now();
                    for _ in 0..PER_SAMPLE {
                        send_a(seq);
                        let back = loop {
                            match recv_a() {
                                Some(v) => break v,
                                None => spin_loop(),
                            }
                        };
                        assert_eq!(back, seq, "the echo is of another record");
                        seq += 1;
                    }
                    let queue_ns = one_way(start);
                    let start = Instant::now();
                    for _ in 0..PER_SAMPLE {
                        tick += 1;
                        ab.store(tick, Ordering::Release);
                        spin_until(&ba, tick);
                    }
                    let floor_ns = one_way(start);
                    if s >= warmup {
                        hist.saturating_record(queue_ns);
                        floor.saturating_record(floor_ns);
                    }
                }
                Some((hist, floor))
            }),
            job(|| {
                let mut tick = 0u64;
                for _ in 0..samples + warmup {
                    for _ in 0..PER_SAMPLE {
                        let v = loop {
                            match recv_b() {
                                Some(v) => break v,
                                None => spin_loop(),
                            }
                        };
                        send_b(v);
                    }
                    for _ in 0..PER_SAMPLE {
                        tick += 1;
                        spin_until(&ab, tick);
                        ba.store(tick, Ordering::Release);
                    }
                }
                None
            }),
        ],
    );
    out.remove(0).expect("side A returns the histograms")
}
