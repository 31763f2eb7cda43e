//! The ingest stage: validate → partition hand-off → verdict, on shards.
//!
//! Any source of MQTT messages (the endpoint's connections; later an
//! upstream broker subscription) hands each message to the [`Shard`] its
//! thread runs, and learns when the engine has it.
//!
//! # Data path
//!
//! The server runs `S` shard threads, each a single-threaded tokio runtime.
//! Partition `p` of `temperature` and `humidity` is owned by shard
//! `p % S`: that shard holds the partition's one [`Writer`] for both topics
//! (a `reading` message's two records share a partition, since both are
//! keyed by the device). Shard `i` also owns partition `i` of `dead_letter`.
//!
//! A message read on shard `A` is validated there ([`Shard::validate`]):
//! a refusal is counted and dead-lettered at once, on `A`'s own
//! `dead_letter` partition. Each record of an accepted message goes to the
//! shard that owns its partition ([`Shard::publish`]):
//! - owned by `A`: [`Writer::try_publish`] on the spot; the verdict is known
//!   before the next packet is read;
//! - owned by `B`: pushed into the hand-off ring `A → B`, one of the `S·(S−1)`
//!   single-writer rings between shard pairs (telering's own
//!   [`ring::spsc`](crate::ring::spsc), the Seastar/Redpanda shared-nothing
//!   shape). `B`'s forwarder task publishes it and, if `A` asked for it,
//!   pushes a verdict into the ring `B → A`; `A`'s forwarder hands the
//!   verdict to the connection's mailbox.
//!
//! No thread sees every message, no lock is taken per message, and each
//! partition keeps exactly one writer. Connections are served by the shard
//! that accepted them; a device publishing its own id from a connection on
//! the shard that owns its partition crosses no thread at all.
//!
//! # Ownership
//!
//! - partition writers and the outgoing hand-off writers: [`Shard`], on its
//!   thread (`RefCell`, never borrowed across an `await`);
//! - incoming hand-off readers, outgoing verdict writers: the shard's
//!   forwarder task;
//! - counters: one [`stats::ShardStats`] block per shard, written by that
//!   shard only.
//!
//! # Backpressure and acknowledgements
//!
//! Nothing waits inside a shard. A full `Block` partition (or a full
//! hand-off ring) makes [`Shard::publish`] answer [`Step::Busy`] with the
//! message's progress kept; the connection stops reading its socket and
//! retries shortly, so TCP pushes back on exactly the devices that feed the
//! full partition. A forwarder whose partition is full stops draining the
//! ring it came from, which fills, which makes the senders' shards busy in
//! turn. Every buffer on the way is bounded: hand-off rings, the forwarder's
//! batch, each connection's in-flight window.
//!
//! A verdict reaches the source only after the record is in its partition
//! ring (or was refused by a `Reject` topic, or the engine closed), so an
//! acknowledgement sent on it means "in the engine".

mod stats;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::Notify;

pub use stats::{IngestSnapshot, IngestStats};

use super::dead_letter::DeadLetter;
use super::validate::{validate_with, Limits, Metric, Reason};
use crate::journal::LogShared;
use crate::record::{now_us, partition_for};
use crate::ring::{self, OverflowPolicy, PublishError, Reader, Writer};
use crate::Reading;

/// Slots of each hand-off ring (and of each verdict ring) between two
/// shards: `2·S·(S−1)` rings of this many slots in all.
pub const HANDOFF_CAPACITY: usize = 1024;
/// Records a forwarder takes from one hand-off ring at a time.
const FORWARD_BATCH: usize = 256;

/// The engine topic a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum TopicKind {
    Temperature = 0,
    Humidity = 1,
}

/// What happened to a message, as the source reports it to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every record is in its partition.
    Accepted,
    /// A `Reject` topic was full: the record was counted and dropped.
    QuotaExceeded,
    /// Validation refused it: dead-lettered with this reason.
    Refused(Reason),
    /// The engine closed before the record got in: nothing was kept.
    Closed,
}

impl Outcome {
    /// The outcome of a message whose records had outcomes `self` and `o`.
    pub(crate) fn and(self, o: Outcome) -> Outcome {
        match (self, o) {
            (Outcome::Closed, _) | (_, Outcome::Closed) => Outcome::Closed,
            (Outcome::QuotaExceeded, _) | (_, Outcome::QuotaExceeded) => Outcome::QuotaExceeded,
            (a, _) => a,
        }
    }

    /// The outcome of a forwarded record, as its verdict carries it (a
    /// forwarded record is never refused: validation ran at the source).
    fn code(self) -> u8 {
        match self {
            Outcome::Accepted => 0,
            Outcome::QuotaExceeded => 1,
            Outcome::Closed | Outcome::Refused(_) => 2,
        }
    }

    fn from_code(c: u8) -> Outcome {
        match c {
            0 => Outcome::Accepted,
            1 => Outcome::QuotaExceeded,
            _ => Outcome::Closed,
        }
    }
}

/// Who waits for a forwarded record's verdict: a connection (its id on the
/// source shard) and its message token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) conn: u64,
    pub(crate) token: u64,
}

/// One engine record of an accepted message.
#[derive(Debug, Clone, Copy)]
struct Target {
    topic: TopicKind,
    partition: u32,
}

/// An accepted message on its way into the engine: its targets, how far
/// publishing got, and the outcome so far.
#[derive(Debug, Clone)]
pub(crate) struct Routed {
    reading: Reading,
    targets: [Option<Target>; 2],
    next: usize,
    outcome: Outcome,
    /// Targets handed to other shards, whose verdicts come later.
    forwarded: u8,
    via: Option<usize>,
}

/// The result of [`Shard::publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Every target was published here or handed off: `outcome` is the
    /// local part, `forwarded` verdicts are still to come; `via` is the
    /// shard it was handed to, if any (a message's targets share one
    /// partition, so there is at most one).
    Done {
        outcome: Outcome,
        forwarded: u8,
        via: Option<usize>,
    },
    /// A partition or hand-off ring is full: call again later with the same
    /// [`Routed`] (its progress is kept).
    Busy,
}

/// A record crossing from the shard that read it to the owner of its
/// partition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Forward {
    reading: Reading,
    conn: u64,
    token: u64,
    partition: u32,
    topic: TopicKind,
    /// Whether the source waits for a verdict.
    ticket: bool,
    /// Not a record: a marker that answers once everything the source sent
    /// before it on this ring is published (see [`Shard::barrier`]).
    barrier: bool,
}

/// A forwarded record's outcome on its way back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VerdictMsg {
    conn: u64,
    token: u64,
    outcome: u8,
}

/// Where a connection's verdicts land: its queue of `(token, outcome)` and
/// the notification that wakes it.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    pub(crate) verdicts: RefCell<std::collections::VecDeque<(u64, Outcome)>>,
    pub(crate) notify: Notify,
}

/// Connections of one shard, by slot; an id is `generation << 32 | slot`,
/// so a verdict for a closed connection never reaches the slot's next user.
#[derive(Default)]
struct Slots {
    entries: Vec<(u32, Option<Rc<Mailbox>>)>,
    free: Vec<u32>,
}

impl Slots {
    fn insert(&mut self, mb: Rc<Mailbox>) -> u64 {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.entries.push((0, None));
                (self.entries.len() - 1) as u32
            }
        };
        let e = &mut self.entries[slot as usize];
        e.0 = e.0.wrapping_add(1);
        e.1 = Some(mb);
        (u64::from(e.0) << 32) | u64::from(slot)
    }

    fn get(&self, id: u64) -> Option<&Rc<Mailbox>> {
        let (gen, slot) = ((id >> 32) as u32, id as u32);
        match self.entries.get(slot as usize) {
            Some((g, Some(mb))) if *g == gen => Some(mb),
            _ => None,
        }
    }

    fn remove(&mut self, id: u64) {
        let (gen, slot) = ((id >> 32) as u32, id as u32);
        if let Some(e) = self.entries.get_mut(slot as usize) {
            if e.0 == gen && e.1.take().is_some() {
                self.free.push(slot);
            }
        }
    }
}

/// Everything one shard thread needs, built on the starting thread and
/// moved in ([`Shards::new`]).
pub(crate) struct ShardSeed {
    index: usize,
    shards: usize,
    partitions: u32,
    limits: Limits,
    temperature: Vec<Option<Writer<Reading>>>,
    humidity: Vec<Option<Writer<Reading>>>,
    dead: Writer<DeadLetter>,
    out_fwd: Vec<Option<Writer<Forward>>>,
    in_fwd: Vec<Option<Reader<Forward>>>,
    out_verdict: Vec<Option<Writer<VerdictMsg>>>,
    in_verdict: Vec<Option<Reader<VerdictMsg>>>,
    wake: Arc<[Notify]>,
    stats: Arc<IngestStats>,
    journal: Option<[Vec<Arc<LogShared>>; 2]>,
}

/// The seeds of every shard, wired to each other.
pub(crate) struct Shards {
    pub(crate) seeds: Vec<ShardSeed>,
    pub(crate) stats: Arc<IngestStats>,
    /// Wakes each shard's forwarder (the journal's progress hook uses it).
    pub(crate) wake: Arc<[Notify]>,
}

impl Shards {
    /// Splits the producers' partition writers over `shards` shards and
    /// builds the hand-off rings between every pair. With `journal` (the
    /// logs of `temperature` and `humidity`), a QoS 1 or 2 verdict waits
    /// until the journal has the record.
    pub(crate) fn new(
        shards: usize,
        temperature: crate::Producer<Reading>,
        humidity: crate::Producer<Reading>,
        dead: crate::Producer<DeadLetter>,
        limits: Limits,
        journal: Option<[Vec<Arc<LogShared>>; 2]>,
    ) -> Self {
        assert!(shards >= 1, "at least one shard");
        let partitions = temperature.partitions();
        debug_assert_eq!(partitions, humidity.partitions());
        debug_assert_eq!(dead.partitions() as usize, shards);
        let stats = Arc::new(IngestStats::new(shards));
        let wake: Arc<[Notify]> = (0..shards).map(|_| Notify::new()).collect();
        let split = |p: crate::Producer<Reading>| {
            let mut per: Vec<Vec<Option<Writer<Reading>>>> = (0..shards)
                .map(|_| (0..partitions).map(|_| None).collect())
                .collect();
            for (i, w) in p.into_partition_writers().into_iter().enumerate() {
                per[i % shards][i] = Some(w);
            }
            per
        };
        let mut temp = split(temperature);
        let mut hum = split(humidity);
        let mut dead = dead.into_partition_writers();
        let mut seeds: Vec<ShardSeed> = Vec::with_capacity(shards);
        for i in (0..shards).rev() {
            seeds.push(ShardSeed {
                index: i,
                shards,
                partitions,
                limits,
                temperature: temp.pop().expect("one per shard"),
                humidity: hum.pop().expect("one per shard"),
                dead: dead.pop().expect("one dead_letter partition per shard"),
                out_fwd: (0..shards).map(|_| None).collect(),
                in_fwd: (0..shards).map(|_| None).collect(),
                out_verdict: (0..shards).map(|_| None).collect(),
                in_verdict: (0..shards).map(|_| None).collect(),
                wake: wake.clone(),
                stats: stats.clone(),
                journal: journal.clone(),
            });
        }
        seeds.reverse();
        for a in 0..shards {
            for b in 0..shards {
                if a == b {
                    continue;
                }
                // Block, driven with `try_publish`: a full ring is handed
                // back, never counted as a rejection.
                let (w, r) = ring::spsc::<Forward>(HANDOFF_CAPACITY, OverflowPolicy::Block)
                    .expect("valid hand-off capacity");
                seeds[a].out_fwd[b] = Some(w);
                seeds[b].in_fwd[a] = Some(r);
                let (w, r) = ring::spsc::<VerdictMsg>(HANDOFF_CAPACITY, OverflowPolicy::Block)
                    .expect("valid hand-off capacity");
                seeds[b].out_verdict[a] = Some(w);
                seeds[a].in_verdict[b] = Some(r);
            }
        }
        Self { seeds, stats, wake }
    }
}

/// The partition writers and hand-off senders of one shard.
struct Core {
    temperature: Vec<Option<Writer<Reading>>>,
    humidity: Vec<Option<Writer<Reading>>>,
    dead: Writer<DeadLetter>,
    out_fwd: Vec<Option<Writer<Forward>>>,
    conns: Slots,
    durability: Option<Durability>,
}

/// The ingest stage as seen from one shard thread. `!Send`: it lives on its
/// thread, shared by that thread's tasks through `Rc`.
pub(crate) struct Shard {
    index: usize,
    shards: usize,
    partitions: u32,
    limits: Limits,
    core: RefCell<Core>,
    /// Shards whose forwarder has work from this one since the last
    /// [`Shard::wake_peers`].
    pending_wake: RefCell<Vec<bool>>,
    any_wake: Cell<bool>,
    wake: Arc<[Notify]>,
    stats: Arc<IngestStats>,
}

/// What the forwarder task of a shard owns.
pub(crate) struct Forwarder {
    in_fwd: Vec<Option<Reader<Forward>>>,
    out_verdict: Vec<Option<Writer<VerdictMsg>>>,
    in_verdict: Vec<Option<Reader<VerdictMsg>>>,
    /// Per source shard: records read but not yet published (their
    /// partition was full), oldest first.
    held: Vec<std::collections::VecDeque<Forward>>,
    /// Per source shard: verdicts whose ring was full.
    held_verdicts: Vec<std::collections::VecDeque<VerdictMsg>>,
    buf: Vec<Forward>,
    vbuf: Vec<VerdictMsg>,
    /// Shards to wake after releasing journaled verdicts (reused).
    wake_src: Vec<bool>,
}

impl ShardSeed {
    /// Splits into the shard and its forwarder, on the shard's thread.
    pub(crate) fn into_parts(self) -> (Rc<Shard>, Forwarder) {
        let n = self.shards;
        let shard = Rc::new(Shard {
            index: self.index,
            shards: n,
            partitions: self.partitions,
            limits: self.limits,
            core: RefCell::new(Core {
                temperature: self.temperature,
                humidity: self.humidity,
                dead: self.dead,
                out_fwd: self.out_fwd,
                conns: Slots::default(),
                durability: self.journal.map(Durability::new),
            }),
            pending_wake: RefCell::new(vec![false; n]),
            any_wake: Cell::new(false),
            wake: self.wake,
            stats: self.stats,
        });
        let fwd = Forwarder {
            in_fwd: self.in_fwd,
            out_verdict: self.out_verdict,
            in_verdict: self.in_verdict,
            held: (0..n).map(|_| Default::default()).collect(),
            held_verdicts: (0..n).map(|_| Default::default()).collect(),
            buf: Vec::with_capacity(FORWARD_BATCH),
            vbuf: Vec::with_capacity(FORWARD_BATCH),
            wake_src: Vec::with_capacity(n),
        };
        (shard, fwd)
    }
}

/// Publishes one record; `Ok` with its outcome and, if it got in, its
/// offset; `Err` when a `Block` partition is full.
fn publish_one(
    w: &mut Writer<Reading>,
    r: Reading,
    stats: &stats::ShardStats,
) -> Result<(Outcome, Option<u64>), Reading> {
    match w.try_publish(r) {
        Ok(offset) => {
            stats.record();
            Ok((Outcome::Accepted, Some(offset)))
        }
        Err(PublishError::Full(r)) if w.ring().policy() == OverflowPolicy::Block => Err(r),
        Err(PublishError::Full(_)) => {
            stats.rejected();
            Ok((Outcome::QuotaExceeded, None))
        }
        Err(PublishError::Closed(_)) => Ok((Outcome::Closed, None)),
    }
}

/// A record in its partition whose verdict waits until the journal holds
/// it ([`LogShared::durable`]).
#[derive(Debug, Clone, Copy)]
struct Awaiting {
    offset: u64,
    conn: u64,
    token: u64,
    /// The shard whose connection waits (this one, or the one that handed
    /// the record over).
    src: usize,
}

/// The journaled partitions of this shard and the verdicts waiting for
/// them: one queue per owned partition and topic, in offset order (this
/// shard is the partition's only writer). Bounded by the connections'
/// in-flight windows.
struct Durability {
    logs: [Vec<Arc<LogShared>>; 2],
    waiting: Vec<std::collections::VecDeque<Awaiting>>,
    count: usize,
}

impl Durability {
    fn new(logs: [Vec<Arc<LogShared>>; 2]) -> Self {
        let n = logs[0].len() * 2;
        Self {
            logs,
            waiting: (0..n).map(|_| Default::default()).collect(),
            count: 0,
        }
    }

    fn push(&mut self, topic: TopicKind, partition: u32, a: Awaiting) {
        let i = topic as usize * self.logs[0].len() + partition as usize;
        self.waiting[i].push_back(a);
        self.count += 1;
    }
}

impl Shard {
    /// This shard's index.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// The shard that owns the partition of `key` (a device id).
    pub(crate) fn home_of(&self, key: &[u8]) -> usize {
        partition_for(key, self.partitions) as usize % self.shards
    }

    fn stats(&self) -> &stats::ShardStats {
        self.stats.shard(self.index)
    }

    /// Registers a connection's mailbox; returns its id for [`Ticket`]s.
    pub(crate) fn register(&self, mb: Rc<Mailbox>) -> u64 {
        self.core.borrow_mut().conns.insert(mb)
    }

    /// Forgets a connection; verdicts still on their way are dropped.
    pub(crate) fn unregister(&self, id: u64) {
        self.core.borrow_mut().conns.remove(id);
    }

    /// Counts a QoS 2 retransmission that is not ingested again.
    pub(crate) fn count_duplicate(&self) {
        self.stats().duplicate();
    }

    /// Counts a message read on this shard (and whether it is a will).
    fn count_received(&self, will: bool) {
        let st = self.stats();
        st.received();
        if will {
            st.will();
        }
    }

    /// Counts and dead-letters a refused message.
    fn dead_letter(&self, topic: &[u8], payload: &[u8], reason: Reason) {
        self.stats().dead_lettered(reason);
        tracing::debug!(reason = reason.code(), topic = %String::from_utf8_lossy(topic), "dead letter");
        // `dead_letter` is an Overwrite topic: this never waits. A closed
        // engine only loses the copy, the count is kept.
        let _ = self.core.borrow_mut().dead.try_publish(DeadLetter::new(
            reason,
            topic,
            payload,
            now_us(),
        ));
    }

    /// Counts and dead-letters a message refused before validation (the
    /// ACL): `reason` says why.
    pub(crate) fn refuse(&self, topic: &[u8], payload: &[u8], will: bool, reason: Reason) {
        self.count_received(will);
        self.dead_letter(topic, payload, reason);
    }

    /// Validates a message read on this shard. Counts it; a refusal is
    /// dead-lettered here and returned as its reason.
    pub(crate) fn validate(
        &self,
        topic: &[u8],
        payload: &[u8],
        will: bool,
    ) -> Result<Routed, Reason> {
        self.count_received(will);
        match validate_with(topic, payload, &self.limits, now_us) {
            Ok(a) => {
                self.stats().accepted();
                let partition = partition_for(a.reading.device.as_bytes(), self.partitions);
                let t = |topic| Some(Target { topic, partition });
                let targets = match a.metric {
                    Metric::Temperature => [t(TopicKind::Temperature), None],
                    Metric::Humidity => [t(TopicKind::Humidity), None],
                    Metric::Reading => [t(TopicKind::Temperature), t(TopicKind::Humidity)],
                };
                Ok(Routed {
                    reading: a.reading,
                    targets,
                    next: 0,
                    outcome: Outcome::Accepted,
                    forwarded: 0,
                    via: None,
                })
            }
            Err(reason) => {
                self.dead_letter(topic, payload, reason);
                Err(reason)
            }
        }
    }

    /// Publishes the remaining targets of `m`, here or by hand-off. With a
    /// `ticket`, forwarded targets report their verdict to it.
    pub(crate) fn publish(&self, m: &mut Routed, ticket: Option<Ticket>) -> Step {
        let mut core = self.core.borrow_mut();
        let st = self.stats.shard(self.index);
        while m.next < m.targets.len() {
            let Some(t) = m.targets[m.next] else {
                m.next += 1;
                continue;
            };
            let owner = t.partition as usize % self.shards;
            if owner == self.index {
                let w = match t.topic {
                    TopicKind::Temperature => &mut core.temperature[t.partition as usize],
                    TopicKind::Humidity => &mut core.humidity[t.partition as usize],
                };
                let w = w.as_mut().expect("an owned partition has its writer here");
                match publish_one(w, m.reading, st) {
                    Ok((o, offset)) => {
                        m.outcome = m.outcome.and(o);
                        // Journaled: the acknowledgement waits for the journal.
                        if let (Some(offset), Some(t_), Some(d)) =
                            (offset, ticket, core.durability.as_mut())
                        {
                            d.push(
                                t.topic,
                                t.partition,
                                Awaiting {
                                    offset,
                                    conn: t_.conn,
                                    token: t_.token,
                                    src: self.index,
                                },
                            );
                            m.forwarded += 1;
                        }
                    }
                    Err(_) => return Step::Busy,
                }
            } else {
                let f = Forward {
                    reading: m.reading,
                    conn: ticket.map_or(0, |t| t.conn),
                    token: ticket.map_or(0, |t| t.token),
                    partition: t.partition,
                    topic: t.topic,
                    ticket: ticket.is_some(),
                    barrier: false,
                };
                let w = core.out_fwd[owner]
                    .as_mut()
                    .expect("a hand-off ring to every other shard");
                match w.try_publish(f) {
                    Ok(_) => {
                        st.forwarded();
                        m.via = Some(owner);
                        if ticket.is_some() {
                            m.forwarded += 1;
                        }
                        self.pending_wake.borrow_mut()[owner] = true;
                        self.any_wake.set(true);
                    }
                    Err(PublishError::Full(_)) => {
                        // Wake the owner now: it may be asleep on a full ring.
                        self.wake[owner].notify_one();
                        return Step::Busy;
                    }
                    Err(PublishError::Closed(_)) => m.outcome = m.outcome.and(Outcome::Closed),
                }
            }
            m.next += 1;
        }
        Step::Done {
            outcome: m.outcome,
            forwarded: m.forwarded,
            via: m.via,
        }
    }

    /// Sends a barrier to shard `to`: its verdict (always `Accepted`)
    /// reaches `ticket` once every record this shard handed to `to` before
    /// it is published. A connection ends with one barrier per shard it
    /// handed records to, so a device's next connection cannot overtake
    /// its last one. False: the ring is full, try again.
    pub(crate) fn barrier(&self, to: usize, ticket: Ticket) -> bool {
        let f = Forward {
            // The record slot of a barrier carries nothing.
            reading: Reading::new(
                crate::DeviceId::new("-").expect("a one-byte id is valid"),
                0,
                f32::NAN,
                f32::NAN,
            ),
            conn: ticket.conn,
            token: ticket.token,
            partition: 0,
            topic: TopicKind::Temperature,
            ticket: true,
            barrier: true,
        };
        let mut core = self.core.borrow_mut();
        let w = core.out_fwd[to]
            .as_mut()
            .expect("a hand-off ring to every other shard");
        if w.try_publish(f).is_err() {
            self.wake[to].notify_one();
            return false;
        }
        self.pending_wake.borrow_mut()[to] = true;
        self.any_wake.set(true);
        true
    }

    /// Gives up the records of `m` not published yet (a shutdown ran out
    /// of time while their partition was full): counted as abandoned; the
    /// message was never acknowledged.
    pub(crate) fn abandon(&self, m: &Routed) {
        let left = m.targets[m.next.min(m.targets.len())..]
            .iter()
            .flatten()
            .count();
        self.stats().abandoned(left as u64);
    }

    /// Wakes the forwarders of the shards this one handed records to since
    /// the last call: once per batch of packets, not per record.
    pub(crate) fn wake_peers(&self) {
        if !self.any_wake.replace(false) {
            return;
        }
        let mut p = self.pending_wake.borrow_mut();
        for (i, w) in p.iter_mut().enumerate() {
            if std::mem::take(w) {
                self.wake[i].notify_one();
            }
        }
    }

    /// Resolves when another shard may have sent this one work.
    pub(crate) async fn woken(&self) {
        self.wake[self.index].notified().await;
    }

    /// Wakes this shard's forwarder (e.g. to notice a stop).
    pub(crate) fn wake_self(&self) {
        self.wake[self.index].notify_one();
    }
}

impl Forwarder {
    /// One pass over every incoming ring: delivers verdicts to the
    /// connections of this shard and publishes forwarded records into the
    /// partitions it owns. Returns (work done, records held back by a full
    /// partition).
    pub(crate) fn pass(&mut self, shard: &Shard) -> (bool, bool) {
        let mut did = self.release_durable(shard);
        let mut held_any = false;
        let st = shard.stats.shard(shard.index);
        for src in 0..shard.shards {
            if src == shard.index {
                continue;
            }
            // Verdicts for our connections.
            if let Some(r) = self.in_verdict[src].as_mut() {
                self.vbuf.clear();
                r.read_into(FORWARD_BATCH, &mut self.vbuf);
                if !self.vbuf.is_empty() {
                    did = true;
                    let core = shard.core.borrow();
                    for v in &self.vbuf {
                        if let Some(mb) = core.conns.get(v.conn) {
                            mb.verdicts
                                .borrow_mut()
                                .push_back((v.token, Outcome::from_code(v.outcome)));
                            mb.notify.notify_one();
                        }
                    }
                }
            }
            // Verdicts held back by a full ring go first.
            let vout = self.out_verdict[src].as_mut().expect("verdict ring");
            while let Some(v) = self.held_verdicts[src].front() {
                if vout.try_publish(*v).is_err() {
                    break;
                }
                self.held_verdicts[src].pop_front();
                did = true;
            }
            // Records for our partitions: what was held back, then new ones
            // (only while no verdict is held, so held verdicts stay bounded).
            if self.held[src].is_empty() && self.held_verdicts[src].is_empty() {
                if let Some(r) = self.in_fwd[src].as_mut() {
                    self.buf.clear();
                    r.read_into(FORWARD_BATCH, &mut self.buf);
                    self.held[src].extend(self.buf.iter().copied());
                }
            }
            let mut core = shard.core.borrow_mut();
            let mut sent_verdict = false;
            while let Some(f) = self.held[src].front().copied() {
                let (outcome, offset) = if f.barrier {
                    (Outcome::Accepted, None)
                } else {
                    let w = match f.topic {
                        TopicKind::Temperature => &mut core.temperature[f.partition as usize],
                        TopicKind::Humidity => &mut core.humidity[f.partition as usize],
                    };
                    let w = w.as_mut().expect("forwarded to the owner");
                    match publish_one(w, f.reading, st) {
                        Ok(r) => r,
                        Err(_) => break,
                    }
                };
                self.held[src].pop_front();
                did = true;
                if let (true, Some(offset), Some(d)) = (f.ticket, offset, core.durability.as_mut())
                {
                    // Journaled: the verdict goes once the journal has it.
                    d.push(
                        f.topic,
                        f.partition,
                        Awaiting {
                            offset,
                            conn: f.conn,
                            token: f.token,
                            src,
                        },
                    );
                } else if f.ticket {
                    let v = VerdictMsg {
                        conn: f.conn,
                        token: f.token,
                        outcome: outcome.code(),
                    };
                    if !self.held_verdicts[src].is_empty() || vout.try_publish(v).is_err() {
                        self.held_verdicts[src].push_back(v);
                    }
                    sent_verdict = true;
                }
            }
            drop(core);
            if sent_verdict {
                shard.wake[src].notify_one();
            }
            held_any |= !self.held[src].is_empty() || !self.held_verdicts[src].is_empty();
        }
        (did, held_any)
    }

    /// Sends the verdicts of the records the journal now holds: to this
    /// shard's connections, or back to the shard that handed them over.
    /// Returns whether any went.
    fn release_durable(&mut self, shard: &Shard) -> bool {
        let mut core = shard.core.borrow_mut();
        let core = &mut *core;
        let Some(d) = core.durability.as_mut() else {
            return false;
        };
        if d.count == 0 {
            return false;
        }
        let partitions = d.logs[0].len();
        let mut sent = false;
        let woke = &mut self.wake_src;
        woke.clear();
        woke.resize(shard.shards, false);
        for (i, q) in d.waiting.iter_mut().enumerate() {
            let Some(first) = q.front() else { continue };
            let durable = d.logs[i / partitions][i % partitions].durable();
            if first.offset >= durable {
                continue;
            }
            while let Some(a) = q.front().copied() {
                if a.offset >= durable {
                    break;
                }
                q.pop_front();
                d.count -= 1;
                sent = true;
                if a.src == shard.index {
                    if let Some(mb) = core.conns.get(a.conn) {
                        mb.verdicts
                            .borrow_mut()
                            .push_back((a.token, Outcome::Accepted));
                        mb.notify.notify_one();
                    }
                } else {
                    let v = VerdictMsg {
                        conn: a.conn,
                        token: a.token,
                        outcome: Outcome::Accepted.code(),
                    };
                    let vout = self.out_verdict[a.src].as_mut().expect("verdict ring");
                    if !self.held_verdicts[a.src].is_empty() || vout.try_publish(v).is_err() {
                        self.held_verdicts[a.src].push_back(v);
                    }
                    woke[a.src] = true;
                }
            }
        }
        for (src, w) in woke.iter().enumerate() {
            if *w {
                shard.wake[src].notify_one();
            }
        }
        sent
    }

    /// Whether verdicts wait for the journal.
    pub(crate) fn awaiting_journal(&self, shard: &Shard) -> bool {
        shard
            .core
            .borrow()
            .durability
            .as_ref()
            .is_some_and(|d| d.count > 0)
    }

    /// Gives up what is held back (a shutdown ran out of time while a
    /// partition was full): records counted as abandoned, verdicts dropped
    /// (their connections are gone).
    pub(crate) fn abandon(&mut self, shard: &Shard) {
        let n: usize = self
            .held
            .iter_mut()
            .map(|h| h.drain(..).filter(|f| !f.barrier).count())
            .sum();
        shard.stats().abandoned(n as u64);
        for h in &mut self.held_verdicts {
            h.clear();
        }
        // In the engine, but their connections are gone: no one to tell.
        if let Some(d) = shard.core.borrow_mut().durability.as_mut() {
            d.waiting.iter_mut().for_each(|q| q.clear());
            d.count = 0;
        }
    }

    /// Whether every incoming ring is empty and nothing is held back.
    pub(crate) fn idle(&self) -> bool {
        self.held.iter().all(|h| h.is_empty())
            && self.held_verdicts.iter().all(|h| h.is_empty())
            && self
                .in_fwd
                .iter()
                .flatten()
                .all(|r| r.ring().published() == r.position())
            && self
                .in_verdict
                .iter()
                .flatten()
                .all(|r| r.ring().published() == r.position())
    }
}
