//! The journaller thread: the gating reader that writes every journaled
//! partition's records to its log (module docs of [`super`]).
//!
//! One pass takes, for each partition, what was published past the
//! journaller's cursor (at most `batch_records`), reading it in place under
//! the journaller's own gate, encodes it into one batch and appends it with
//! one `write`. Only then does the gate move. With `Interval` and `Never`
//! `durable` moves with it and the progress hooks run once per pass; with
//! `Always` the [`syncer`](super::syncer) moves it after its sync. No sync
//! and no offsets save ever runs on this thread. An idle journaller parks on
//! the rings like a consumer.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::format::{begin_batch, seal_batch, Codec, BATCH_HEADER};
use super::syncer::Syncer;
use super::{Counters, FsyncPolicy, JournalConfig, PartitionLog, ProgressHook, RETRY};
use crate::record::now_us;
use crate::ring::{wait_until, Cursor, GateId, Ring, WaitStrategy, Wakeable};

/// One journaled partition, as the journaller drives it.
pub(crate) struct JournalPart<T> {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    pub(crate) ring: Arc<Ring<T>>,
    pub(crate) gate: GateId,
    pub(crate) log: PartitionLog,
    pub(crate) cursor: Cursor,
    retry_at: Option<Instant>,
    /// Its index in the syncer.
    sync_idx: usize,
}

impl<T: Copy + Send> JournalPart<T> {
    /// A partition whose ring starts where `log` ends, with the
    /// journaller's gate attached at that offset.
    pub(crate) fn new(
        topic: Arc<str>,
        partition: u32,
        ring: Arc<Ring<T>>,
        gate: GateId,
        log: PartitionLog,
    ) -> Self {
        let cursor = Cursor::at(log.next());
        ring.waiters().attach_parker();
        Self {
            topic,
            partition,
            ring,
            gate,
            log,
            cursor,
            retry_at: None,
            sync_idx: usize::MAX,
        }
    }

    fn drained(&self) -> bool {
        self.cursor.position() >= self.ring.published()
    }
}

/// Everything the journaller thread owns.
pub(crate) struct Journaller<T> {
    pub(crate) config: JournalConfig,
    pub(crate) codec: Codec<T>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) hooks: Arc<Mutex<Vec<ProgressHook>>>,
    pub(crate) inbox: Arc<Mutex<Vec<JournalPart<T>>>>,
    /// Whether the engine was closed.
    pub(crate) closed: Box<dyn Fn() -> bool + Send>,
    /// Syncs and saves the offsets, on its own thread.
    pub(crate) syncer: Syncer,
}

struct Run<T> {
    parts: Vec<JournalPart<T>>,
    buf: Vec<u8>,
    hooks: Vec<ProgressHook>,
    next_retention: Instant,
    last_error_log: Option<Instant>,
}

impl<T: Copy + Send + 'static> Journaller<T> {
    /// Runs until the engine is closed and every published record is
    /// written (or `close_timeout` passed while writes kept failing).
    pub(crate) fn run(self) {
        let now = Instant::now();
        let mut run = Run {
            parts: Vec::new(),
            buf: Vec::with_capacity(BATCH_HEADER + self.config.batch_records * self.codec.size),
            hooks: Vec::new(),
            next_retention: now,
            last_error_log: None,
        };
        let mut closing_since: Option<Instant> = None;
        let mut busy_before = false;
        loop {
            let closed = (self.closed)();
            self.take_inbox(&mut run);
            // What was written is durable (`Interval`, `Never`) and its
            // hooks have run before any wait below.
            let (wrote, durable, full) = self.pass(&mut run);
            if durable {
                for h in &run.hooks {
                    h();
                }
            }
            let now = Instant::now();
            if now >= run.next_retention {
                self.retain(&mut run);
                run.next_retention = now + Duration::from_secs(1);
            }
            if closed {
                let since = *closing_since.get_or_insert(now);
                let drained = run.parts.iter().all(|p| p.drained());
                if drained || now.duration_since(since) >= self.config.close_timeout {
                    self.finish(run, drained);
                    return;
                }
                if !wrote {
                    std::thread::sleep(RETRY.min(Duration::from_millis(10)));
                }
                continue;
            }
            if wrote {
                if busy_before && !full && !self.config.linger.is_zero() {
                    // Records keep coming, a few at a time: let the next
                    // batch gather (`JournalConfig::linger`).
                    std::thread::sleep(self.config.linger);
                } else {
                    // Natural batching that adapts to load: where other
                    // threads want this core (the endpoint's shards,
                    // consumers), they run now and the next pass finds
                    // more records; on an idle core this returns at once.
                    std::thread::yield_now();
                }
            }
            busy_before = wrote;
            if !wrote {
                let mut deadline = run.next_retention;
                if let Some(r) = run.parts.iter().filter_map(|p| p.retry_at).min() {
                    deadline = deadline.min(r);
                }
                // New partitions and the close are noticed within this
                // (100 wake-ups a second when idle: no measurable CPU).
                deadline = deadline.min(now + Duration::from_millis(10));
                let parts = &run.parts;
                wait_until(
                    || {
                        parts
                            .iter()
                            .filter(|p| p.retry_at.is_none())
                            .map(|p| (&*p.ring as &dyn Wakeable, p.cursor.position()))
                    },
                    WaitStrategy::Park,
                    Some(deadline),
                );
            }
        }
    }

    fn take_inbox(&self, run: &mut Run<T>) {
        let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
        for mut p in inbox.drain(..) {
            p.sync_idx =
                self.syncer
                    .add(p.log.shared().clone(), p.log.file().clone(), p.log.next());
            run.parts.push(p);
        }
        drop(inbox);
        let hooks = self.hooks.lock().unwrap_or_else(|e| e.into_inner());
        if hooks.len() != run.hooks.len() {
            run.hooks = hooks.clone();
        }
    }

    /// One pass over every partition. Returns (something was written,
    /// `durable` moved somewhere, some partition filled a whole batch).
    fn pass(&self, run: &mut Run<T>) -> (bool, bool, bool) {
        let now = Instant::now();
        let ts = now_us();
        let mut wrote = false;
        let mut full = false;
        let size = self.codec.size;
        let encode = self.codec.encode;
        for p in run.parts.iter_mut() {
            if p.retry_at.is_some_and(|r| now < r) {
                continue;
            }
            p.retry_at = None;
            let mut cur = p.cursor;
            let buf = &mut run.buf;
            begin_batch(buf, cur.position(), ts);
            // SAFETY: the journaller's gate sits at `p.cursor`, and it moves
            // only below, after the batch is written, so the writer cannot
            // reuse these slots while they are read (ring invariant 3).
            let n = unsafe {
                p.ring
                    .read_ref(&mut cur, self.config.batch_records, |_, v| {
                        let at = buf.len();
                        buf.resize(at + size, 0);
                        encode(v, &mut buf[at..]);
                    })
            };
            if n == 0 {
                continue;
            }
            full |= n == self.config.batch_records;
            seal_batch(buf, 0, n as u32);
            let over_cap = self.config.max_bytes.is_some_and(|m| {
                self.counters.bytes.load(Ordering::Relaxed) + buf.len() as u64 > m
            });
            let result = if over_cap {
                Err(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "the journal's max_bytes is reached",
                ))
            } else {
                p.log.append(buf, n as u64, ts)
            };
            match result {
                Ok(()) => {
                    Counters::add(&self.counters.bytes, buf.len() as u64);
                    Counters::add(&self.counters.written, n as u64);
                    Counters::add(&self.counters.batches, 1);
                    p.cursor = cur;
                    p.ring.advance_gate(p.gate, cur.position());
                    wrote = true;
                    self.syncer.wrote(p.sync_idx, p.log.next());
                    match p.log.roll_if_full(self.config.segment_bytes) {
                        Ok(Some(old)) => self.syncer.rolled(p.sync_idx, old, p.log.file().clone()),
                        Ok(None) => {}
                        Err(e) => self.failed(&mut run.last_error_log, &format!("{e}")),
                    }
                }
                Err(e) => {
                    p.retry_at = Some(now + RETRY);
                    let what = format!(
                        "cannot write {n} records of {}/{}: {e}",
                        p.topic, p.partition
                    );
                    self.failed(&mut run.last_error_log, &what);
                }
            }
        }
        // `Always`: the syncer moves `durable` after its sync.
        let durable = match self.config.fsync {
            FsyncPolicy::Always => false,
            FsyncPolicy::Interval(_) | FsyncPolicy::Never => publish_all(run),
        };
        (wrote, durable, full)
    }

    fn failed(&self, last_log: &mut Option<Instant>, what: &str) {
        Counters::add(&self.counters.write_errors, 1);
        let now = Instant::now();
        if last_log.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
            tracing::error!("journal: {what} (retrying every {} ms)", RETRY.as_millis());
            *last_log = Some(now);
        }
    }

    fn retain(&self, run: &mut Run<T>) {
        if self.config.retention_bytes.is_none() && self.config.retention.is_none() {
            return;
        }
        let min_us = self
            .config
            .retention
            .map(|age| now_us().saturating_sub(age.as_micros() as u64));
        for p in run.parts.iter_mut() {
            let before = p.log.bytes;
            p.log
                .retain(self.config.retention_bytes, min_us, &self.counters.deleted);
            self.counters
                .bytes
                .fetch_sub(before - p.log.bytes, Ordering::Relaxed);
        }
    }

    /// The end at close: count what is given up, sync and save the offsets
    /// (the syncer), wake whoever waits.
    fn finish(self, mut run: Run<T>, drained: bool) {
        if !drained {
            let left: u64 = run
                .parts
                .iter()
                .map(|p| p.ring.published() - p.cursor.position())
                .sum();
            Counters::add(&self.counters.abandoned, left);
            tracing::error!(
                "journal: closing with {left} records that could not be written (never acknowledged)"
            );
        }
        if self.config.fsync != FsyncPolicy::Always {
            publish_all(&mut run);
        }
        // Under `Always` its last sync moves `durable`.
        self.syncer.stop();
        for p in &run.parts {
            p.ring.waiters().detach_parker();
        }
        for h in &run.hooks {
            h();
        }
    }
}

/// Moves `durable` up to `written` wherever it lags (`Interval`, `Never`).
fn publish_all<T>(run: &mut Run<T>) -> bool {
    let mut moved = false;
    for p in &run.parts {
        if p.log.shared().durable() < p.log.next() {
            p.log.publish_durable();
            moved = true;
        }
    }
    moved
}
