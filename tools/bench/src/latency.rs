//! One-way latency at a fixed publish rate, with coordinated-omission
//! correction, recorded in HdrHistograms.
//!
//! The producer (role 0) and the consumer (role 1) share one `Instant` base.
//! The producer gives message `i` the scheduled send time `t0 + i / rate`
//! (ns since the base), waits until that time, and writes it into the
//! record's `ts_us` field (here: ns since the base, not µs since the epoch).
//! The consumer records `now - scheduled`. A producer held back (a full
//! queue, a descheduled thread) sends late but keeps the scheduled times, so
//! the stall shows up in every message it delayed: no coordinated omission.
//! Each sample also contains up to one clock read at each end (see the
//! `clock` floor).

use std::fmt::Write as _;
use std::hint::spin_loop;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;
use telering::ring::{self, OverflowPolicy, SlotLayout};
use telering::{ConsumerConfig, Engine, Reading, TopicConfig, WaitStrategy};

use crate::scenarios::{job, run_pinned, template, Pins, CAPACITY, READ_MAX};

/// Highest latency the histograms track: 60 s, in ns.
const HIGHEST_NS: u64 = 60_000_000_000;

/// A system measured for latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatSystem {
    /// The harness alone: the scheduled time handed over in one atomic (an
    /// ideal zero-cost queue; messages a stall overwrote are counted as
    /// delivered at the next one).
    Base,
    /// telering ring: `spsc` + `Reader::wait(strategy)` + `read_with`.
    Ring(WaitStrategy),
    /// telering ring polled without `Reader::wait`: `read_with` in a spin
    /// loop (isolates the cost of the wait call).
    RingPoll,
    /// telering ring with the marked slot layout (`SlotLayout::Marked`, for
    /// record-at-a-time traffic): `Reader::wait(strategy)` + `read_with`.
    RingMarked(WaitStrategy),
    /// telering engine: `send_to` + `Consumer::poll_with` with the strategy.
    Engine(WaitStrategy),
    /// rtrb `push` / spinning `pop`.
    Rtrb,
    /// disruptor `publish` / handler, `BusySpinWithSpinLoopHint` (every
    /// spinning loop here uses the CPU spin hint).
    Disruptor,
    /// crossbeam-channel `bounded` `send` / blocking `recv`.
    Channel,
}

impl LatSystem {
    /// Every system, in the order they are run.
    pub fn all() -> Vec<Self> {
        vec![
            Self::Base,
            Self::Ring(WaitStrategy::BusySpin),
            Self::Ring(WaitStrategy::SpinYield),
            Self::Ring(WaitStrategy::Park),
            Self::RingPoll,
            Self::RingMarked(WaitStrategy::BusySpin),
            Self::Engine(WaitStrategy::BusySpin),
            Self::Engine(WaitStrategy::Park),
            Self::Disruptor,
            Self::Rtrb,
            Self::Channel,
        ]
    }

    /// Name for tables, files and the plot.
    pub fn name(&self) -> String {
        match self {
            Self::Base => "base (atomic handoff)".to_owned(),
            Self::Ring(w) => format!("telering ring {w:?}"),
            Self::RingPoll => "telering ring read_with poll".to_owned(),
            Self::RingMarked(w) => format!("telering ring marked {w:?}"),
            Self::Engine(w) => format!("telering engine {w:?}"),
            Self::Rtrb => "rtrb (spin pop)".to_owned(),
            Self::Disruptor => "disruptor BusySpin+hint".to_owned(),
            Self::Channel => "crossbeam-channel (recv)".to_owned(),
        }
    }

    /// File-name friendly name.
    pub fn slug(&self) -> String {
        let mut s = String::new();
        for c in self.name().chars() {
            if c.is_ascii_alphanumeric() {
                s.push(c.to_ascii_lowercase());
            } else if !s.ends_with('-') {
                s.push('-');
            }
        }
        s.trim_matches('-').to_owned()
    }
}

/// How to run a latency measurement.
#[derive(Debug, Clone, Copy)]
pub struct LatConfig {
    /// Messages per second.
    pub rate: f64,
    /// Messages sent.
    pub count: u64,
    /// Scheduled messages at the start not recorded (warm-up).
    pub warmup: u64,
    /// Messages sent back to back before the schedule, not recorded: one lap
    /// of the queue, so every system's buffer is faulted in and warm (rtrb's
    /// and telering's slots are mapped lazily, disruptor's and crossbeam's
    /// are initialised up front).
    pub prefill: u64,
    /// Rounds per system (each runs `count` messages; reported, not used by [`run`]).
    pub rounds: u32,
}

/// One system's latency histogram (ns).
#[derive(Debug, Clone)]
pub struct LatResult {
    /// The system.
    pub system: LatSystem,
    /// One-way latency from the scheduled send time, ns.
    pub hist: Histogram<u64>,
}

impl LatResult {
    /// Latency at percentile `p` (0..=100), ns.
    pub fn at(&self, p: f64) -> u64 {
        self.hist.value_at_percentile(p)
    }
}

/// The percentiles reported.
pub const PERCENTILES: [(f64, &str); 5] = [
    (50.0, "p50"),
    (90.0, "p90"),
    (99.0, "p99"),
    (99.9, "p99.9"),
    (99.99, "p99.99"),
];

fn new_hist() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("histogram bounds");
    // Touch every bucket once, so the counts array is faulted in now rather
    // than during the measurement.
    let mut v = 1;
    while v < HIGHEST_NS {
        h.saturating_record(v);
        v = h.next_non_equivalent(v);
    }
    h.reset();
    h
}

#[inline]
fn now_ns(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

/// Consumer side: records `now - scheduled` after the warm-up.
struct Recorder {
    base: Instant,
    hist: Histogram<u64>,
    seen: u64,
    warmup: u64,
}

impl Recorder {
    fn new(base: Instant, cfg: &LatConfig) -> Self {
        Self {
            base,
            hist: new_hist(),
            seen: 0,
            warmup: cfg.warmup,
        }
    }

    /// Records one message; `scheduled == 0` marks a prefill message.
    #[inline]
    fn record(&mut self, scheduled: u64) {
        if scheduled == PREFILL {
            return;
        }
        let now = now_ns(self.base);
        if self.seen >= self.warmup {
            self.hist.saturating_record(now.saturating_sub(scheduled));
        }
        self.seen += 1;
    }
}

/// `ts_us` of the prefill messages (the scheduled times are never 0).
const PREFILL: u64 = 0;

/// Producer side: first `cfg.prefill` messages back to back (`ts_us` =
/// [`PREFILL`]), then message `i` at `t0 + i / rate` with that time in
/// `ts_us`, spinning until it is due (and sending at once when late).
fn produce(base: Instant, cfg: &LatConfig, mut send: impl FnMut(Reading)) {
    let tmpl = template();
    for _ in 0..cfg.prefill {
        send(Reading {
            ts_us: PREFILL,
            ..tmpl
        });
    }
    let period = 1e9 / cfg.rate;
    // A little head start so the consumer is surely polling.
    let t0 = now_ns(base) + 20_000;
    for i in 0..cfg.count {
        let due = t0 + (i as f64 * period) as u64;
        while now_ns(base) < due {
            spin_loop();
        }
        send(Reading { ts_us: due, ..tmpl });
    }
}

/// Runs one system at the configured rate; producer on role 0, consumer on
/// role 1.
pub fn run(system: LatSystem, cfg: &LatConfig, pins: &Pins) -> LatResult {
    let base = Instant::now();
    let n = cfg.count;
    // One atomic has no buffer to warm up.
    let base_cfg = LatConfig { prefill: 0, ..*cfg };
    let cfg = if system == LatSystem::Base {
        &base_cfg
    } else {
        cfg
    };
    let hist = match system {
        LatSystem::Base => {
            let cell = CachePadded::new(AtomicU64::new(0));
            let finished = AtomicBool::new(false);
            let (cell, finished) = (&cell, &finished);
            let (_, mut out) = run_pinned(
                pins,
                vec![
                    job(move || {
                        produce(base, cfg, |r| cell.store(r.ts_us, Ordering::Release));
                        finished.store(true, Ordering::Release);
                        None
                    }),
                    job(move || {
                        let mut rec = Recorder::new(base, cfg);
                        let period = 1e9 / cfg.rate;
                        let mut last = 0;
                        loop {
                            let v = cell.load(Ordering::Acquire);
                            if v != last {
                                // One atomic holds only the latest message: a
                                // stall overwrites the ones before it. Count
                                // them as an ideal queue would deliver them
                                // (all now), so the tails stay comparable.
                                if last != 0 {
                                    let skipped = ((v - last) as f64 / period).round() as u64;
                                    for j in (1..skipped).rev() {
                                        rec.record(v - (j as f64 * period) as u64);
                                    }
                                }
                                rec.record(v);
                                last = v;
                            } else if finished.load(Ordering::Acquire)
                                && cell.load(Ordering::Acquire) == last
                            {
                                break;
                            } else {
                                spin_loop();
                            }
                        }
                        Some(rec.hist)
                    }),
                ],
            );
            out.pop().flatten()
        }
        // The ring with `Reader::wait` (`Ring(w)`), or polled with
        // `read_with` alone in a spin loop (`RingPoll`).
        LatSystem::Ring(_) | LatSystem::RingPoll | LatSystem::RingMarked(_) => {
            let (wait, layout) = match system {
                LatSystem::Ring(w) => (Some(w), SlotLayout::Packed),
                LatSystem::RingMarked(w) => (Some(w), SlotLayout::Marked),
                _ => (None, SlotLayout::Packed),
            };
            let (mut w, mut r) =
                ring::spsc_with::<Reading>(CAPACITY, OverflowPolicy::Block, layout)
                    .expect("ring capacity");
            let (_, mut out) = run_pinned(
                pins,
                vec![
                    job(move || {
                        produce(base, cfg, |v| {
                            w.publish(v).expect("telering publish");
                        });
                        None
                    }),
                    job(move || {
                        let mut rec = Recorder::new(base, cfg);
                        while rec.seen < n {
                            match wait {
                                Some(wait) => {
                                    if r.wait(wait, None) {
                                        r.read_with(READ_MAX, |_, v| rec.record(v.ts_us));
                                    }
                                }
                                None => {
                                    if r.read_with(READ_MAX, |_, v| rec.record(v.ts_us)) == 0 {
                                        spin_loop();
                                    }
                                }
                            }
                        }
                        Some(rec.hist)
                    }),
                ],
            );
            out.pop().flatten()
        }
        LatSystem::Engine(wait) => {
            let engine: Engine<Reading> = Engine::new();
            engine
                .create_topic(
                    "latency",
                    TopicConfig::new(1, CAPACITY).policy(OverflowPolicy::Block),
                )
                .expect("create topic");
            let mut producer = engine.producer("latency").expect("producer");
            let mut consumer = engine
                .consumer(ConsumerConfig::cluster("latency").wait(wait))
                .expect("consumer");
            consumer.subscribe(&["latency"]).expect("subscribe");
            let (_, mut out) = run_pinned(
                pins,
                vec![
                    job(move || {
                        produce(base, cfg, |v| {
                            producer.send_to(0, v).expect("engine send_to");
                        });
                        None
                    }),
                    job(move || {
                        let mut rec = Recorder::new(base, cfg);
                        while rec.seen < n {
                            consumer
                                .poll_with(READ_MAX, Duration::from_millis(100), |runs| {
                                    for run in runs {
                                        for r in run.records {
                                            rec.record(r.ts_us);
                                        }
                                    }
                                })
                                .expect("poll");
                        }
                        consumer.close();
                        Some(rec.hist)
                    }),
                ],
            );
            out.pop().flatten()
        }
        LatSystem::Rtrb => {
            let (mut p, mut c) = rtrb::RingBuffer::<Reading>::new(CAPACITY);
            let (_, mut out) = run_pinned(
                pins,
                vec![
                    job(move || {
                        produce(base, cfg, |v| {
                            let mut v = v;
                            while let Err(rtrb::PushError::Full(back)) = p.push(v) {
                                v = back;
                                spin_loop();
                            }
                        });
                        None
                    }),
                    job(move || {
                        let mut rec = Recorder::new(base, cfg);
                        while rec.seen < n {
                            match c.pop() {
                                Ok(v) => rec.record(v.ts_us),
                                Err(_) => spin_loop(),
                            }
                        }
                        Some(rec.hist)
                    }),
                ],
            );
            out.pop().flatten()
        }
        LatSystem::Channel => {
            let (tx, rx) = crossbeam_channel::bounded::<Reading>(CAPACITY);
            let (_, mut out) = run_pinned(
                pins,
                vec![
                    job(move || {
                        produce(base, cfg, |v| tx.send(v).expect("receiver alive"));
                        None
                    }),
                    job(move || {
                        let mut rec = Recorder::new(base, cfg);
                        while let Ok(v) = rx.recv() {
                            rec.record(v.ts_us);
                        }
                        Some(rec.hist)
                    }),
                ],
            );
            out.pop().flatten()
        }
        LatSystem::Disruptor => disruptor_latency(base, cfg, pins),
    };
    LatResult {
        system,
        hist: hist.expect("consumer returned its histogram"),
    }
}

fn disruptor_latency(base: Instant, cfg: &LatConfig, pins: &Pins) -> Option<Histogram<u64>> {
    use disruptor::Producer as _;
    let barrier = Arc::new(Barrier::new(2));
    let out: Arc<Mutex<Option<Histogram<u64>>>> = Arc::default();
    let last = (cfg.prefill + cfg.count).max(1) as i64 - 1;
    let init = {
        let (pins, barrier, cfg) = (pins.clone(), barrier.clone(), *cfg);
        // Pinned here, in the handler thread: the builder's `pin_at_core`
        // re-reads the core list and panics from a pinned thread.
        move || {
            pins.pin(1);
            barrier.wait();
            Recorder::new(base, &cfg)
        }
    };
    let handler = {
        let out = out.clone();
        move |rec: &mut Recorder, e: &Reading, seq: i64, _end_of_batch: bool| {
            rec.record(e.ts_us);
            if seq == last {
                *out.lock().expect("result") = Some(std::mem::replace(&mut rec.hist, new_hist()));
            }
        }
    };
    let tmpl = template();
    let mut producer = disruptor::build_single_producer(
        CAPACITY,
        move || tmpl,
        disruptor::BusySpinWithSpinLoopHint,
    )
    .handle_events_and_state_with(handler, init)
    .build();
    std::thread::scope(|s| {
        s.spawn(|| {
            pins.pin(0);
            barrier.wait();
            produce(base, cfg, |v| producer.publish(|e| *e = v));
            drop(producer); // waits for the handler to finish
        });
    });
    let h = out.lock().expect("result").take();
    h
}

/// Writes `hist` (ns) as HdrHistogram's classic percentile distribution
/// (`outputPercentileDistribution`, 5 ticks per half distance, values in ns),
/// readable by HdrHistogram's plotter.
pub fn write_hgrm(path: &Path, hist: &Histogram<u64>) -> io::Result<()> {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in hist.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64;
        if q < 1.0 {
            let _ = writeln!(
                s,
                "{value:12.3} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(s, "{value:12.3} {q:2.12} {total:10}");
        }
    }
    let sub_buckets = (2.0 * 10f64.powi(i32::from(hist.sigfig())))
        .log2()
        .ceil()
        .exp2() as u64;
    let _ = writeln!(
        s,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        hist.mean(),
        hist.stdev()
    );
    let _ = writeln!(
        s,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        hist.max() as f64,
        hist.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        hist.buckets(),
        sub_buckets
    );
    std::fs::write(path, s)
}
