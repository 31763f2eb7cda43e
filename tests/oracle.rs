//! A property-test oracle for the engine, in the style of Jepsen's queue
//! checker: random single-threaded schedules of publishes, batch publishes,
//! polls, seeks, commits, joins, graceful leaves and crashes, replayed against
//! a model of what every member and the group must have seen. Polls with an
//! odd `max` go through the zero-copy `poll_with`, so its in-place runs are
//! checked the same way, including when a `Reject` partition is full again
//! (its slots are released only at the next commit).
//!
//! Every published value is a fresh global sequence number, and the model
//! keeps the value of every `(partition, offset)`, so each delivery is checked
//! against exactly what was published there.
//!
//! The model also keeps, per partition, a lower bound of every gate (the
//! cluster group's committed offset and each broadcast member's position),
//! marked *exact* when the model knows it precisely. Under `Block` a publish is
//! only attempted when the lower bound leaves room, so a single-threaded
//! schedule never blocks; under `Reject` the exact bound says precisely when
//! `Full` is due.
//!
//! Checked after every step:
//! - each `(p, o)` carries the value published there (so every delivery of
//!   `(p, o)` carries the same value);
//! - per member and partition, offsets go up by exactly one between polls,
//!   except after a seek or a newly taken partition (which must start at the
//!   group's committed offset); under `Overwrite` a batch may skip records at
//!   the front of a partition, and the records skipped in a batch must equal
//!   its `missed()` exactly; under the gated policies the only gap allowed is
//!   a gate raised on re-attach, covered by reported missed records;
//! - cluster ownership is exclusive; a poll that returns less than `max`
//!   (and, under `Overwrite`, reports nothing missed) leaves nothing readable
//!   behind;
//! - seeks inside the window succeed (or, for rewinds below the committed
//!   offset, fail with a typed error), seeks outside fail with
//!   `OffsetOutOfRange` naming the window, never a panic;
//! - `position`/`committed`/`delivered`/`missed`/`group_stats`/`offsets`/
//!   `rejected` agree with the model.
//!
//! And at the end of a schedule, per profile:
//! - `ExactlyOnce` (`Block`/`Reject`, no crash, no seek, auto-commit): all
//!   members close, a final member drains, and every published record was
//!   delivered exactly once across the group;
//! - `Crashes` (crashes allowed, no seek): at least once;
//! - broadcast members (joined before any publish, never leaving) each saw
//!   every record exactly once under `Block`/`Reject`, and under `Overwrite`
//!   delivered + missed == published;
//! - `OverwriteSolo`: one cluster member that never leaves: delivered +
//!   missed == published;
//! - `Reject`: accepted + rejected == attempted and `engine.rejected` equals
//!   the number of `Full` errors;
//! - after `engine.close()` every drained member gets `EngineClosed` and the
//!   producer `Closed`.
//!
//! The journaled schedule (module `journaled`, its own smaller model) adds
//! `Restart` steps on a journaled `Block`/`Reject` topic: the engine is
//! closed and opened again on the same data directory. There nothing is
//! ever missed, every record stays readable (a fresh group from `Earliest`
//! reads the exact value at each `(p, o)`, from the journal then the ring),
//! offsets continue where they ended, and the cluster group resumes at
//! exactly the offsets it committed before the restart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

use proptest::prelude::*;
use telering::ring::{BatchError, SlotLayout};
use telering::topic::BatchSendError;
use telering::{
    Consumer, ConsumerConfig, ConsumerError, Engine, OverflowPolicy, Producer, Record, SendError,
    TopicConfig, TopicId, WaitStrategy,
};

const TOPIC: &str = "t";
const CLUSTER: &str = "g";
const BROADCAST: &str = "b";
const NOW: Duration = Duration::ZERO;

// ---------------------------------------------------------------------------
// Hang detection: a `Block` publish the model thinks has room but the engine
// does not would hang the single-threaded schedule forever. A watchdog turns
// that into a loud failure naming the step.

static PROGRESS: AtomicU64 = AtomicU64::new(0);
static LAST_STEP: Mutex<String> = Mutex::new(String::new());

fn step(what: impl FnOnce() -> String) {
    PROGRESS.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut s) = LAST_STEP.try_lock() {
        *s = what();
    }
}

fn start_watchdog() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::thread::spawn(|| {
            let mut last = PROGRESS.load(Ordering::Relaxed);
            let mut still = 0;
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let now = PROGRESS.load(Ordering::Relaxed);
                if now == last {
                    still += 1;
                    if still >= 60 {
                        let s = LAST_STEP.lock().map(|s| s.clone()).unwrap_or_default();
                        eprintln!("oracle: no progress for 60 s; stuck at {s}");
                        std::process::abort();
                    }
                } else {
                    still = 0;
                    last = now;
                }
            }
        });
    });
}

// ---------------------------------------------------------------------------
// Schedules.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    ExactlyOnce,
    Crashes,
    General,
    OverwriteSolo,
}

#[derive(Debug, Clone, Copy)]
enum SeekTarget {
    /// Somewhere in `[earliest, latest]`.
    InRange(u16),
    /// Below `earliest` (skipped while nothing has been overwritten).
    Below(u16),
    /// Above `latest`.
    Above(u16),
    /// A partition the member does not read now.
    Unassigned,
    /// A partition that does not exist.
    NoSuchPartition(u8),
    /// A topic that does not exist.
    UnknownTopic,
}

/// `poll(max)`, or for odd `max` the zero-copy `poll_with(max)` (its runs
/// turned into records here), so the model checks both paths alike.
fn poll_either<T: Copy + Send + 'static>(
    c: &mut Consumer<T>,
    max: usize,
) -> Result<(Vec<Record<T>>, u64), ConsumerError> {
    if max.is_multiple_of(2) {
        return c.poll(max, NOW).map(|b| (b.records().to_vec(), b.missed()));
    }
    c.poll_with(max, NOW, |runs| {
        let mut recs = Vec::with_capacity(runs.len());
        runs.for_each(|topic, partition, offset, value| {
            recs.push(Record {
                topic,
                partition,
                offset,
                value: *value,
            })
        });
        assert_eq!(recs.len(), runs.len());
        (recs, runs.missed())
    })
}

#[derive(Debug, Clone)]
enum Op {
    /// `n` single sends to a partition.
    Publish { p: u32, n: u8 },
    /// One batch send of `n` records.
    Batch { p: u32, n: u8 },
    /// A poll by any member (cluster then broadcast, by index).
    Poll { who: usize, max: usize },
    /// An explicit commit by any member.
    Commit { who: usize },
    /// A seek by any member.
    Seek {
        who: usize,
        p: u32,
        target: SeekTarget,
    },
    /// A new cluster member subscribes, and perhaps polls at once.
    Join {
        auto_commit: bool,
        wait: u8,
        then_poll: Option<usize>,
    },
    /// A cluster member closes gracefully.
    Leave { who: usize },
    /// A cluster member is dropped without closing (a crash).
    Crash { who: usize },
}

#[derive(Debug, Clone)]
struct Schedule {
    partitions: u32,
    capacity: usize,
    policy: OverflowPolicy,
    /// Slot layout (the marked one only under the gated policies).
    layout: SlotLayout,
    broadcast: usize,
    ops: Vec<Op>,
}

fn seek_target() -> impl Strategy<Value = SeekTarget> {
    prop_oneof![
        6 => any::<u16>().prop_map(SeekTarget::InRange),
        2 => any::<u16>().prop_map(SeekTarget::Below),
        2 => (0u16..4).prop_map(SeekTarget::Above),
        1 => Just(SeekTarget::Unassigned),
        1 => (0u8..3).prop_map(SeekTarget::NoSuchPartition),
        1 => Just(SeekTarget::UnknownTopic),
    ]
}

fn poll_max() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 1usize..=8, 1 => Just(64usize)]
}

fn op(profile: Profile) -> BoxedStrategy<Op> {
    let publish = (0u32..4, 1u8..=4).prop_map(|(p, n)| Op::Publish { p, n });
    let batch = (0u32..4, 1u8..=40).prop_map(|(p, n)| Op::Batch { p, n });
    let poll = (any::<usize>(), poll_max()).prop_map(|(who, max)| Op::Poll { who, max });
    let commit = any::<usize>().prop_map(|who| Op::Commit { who });
    let seek = (any::<usize>(), 0u32..4, seek_target()).prop_map(|(who, p, target)| Op::Seek {
        who,
        p,
        target,
    });
    let leave = any::<usize>().prop_map(|who| Op::Leave { who });
    let crash = any::<usize>().prop_map(|who| Op::Crash { who });
    // A joining member may leave or crash before its first poll.
    let join = (any::<bool>(), 0u8..3, prop::option::of(poll_max()).boxed()).prop_map(
        move |(ac, wait, then_poll)| Op::Join {
            auto_commit: ac || profile == Profile::ExactlyOnce,
            wait,
            then_poll,
        },
    );
    match profile {
        Profile::ExactlyOnce => prop_oneof![
            5 => publish, 2 => batch, 8 => poll, 1 => commit, 2 => join, 2 => leave,
        ]
        .boxed(),
        Profile::Crashes => prop_oneof![
            5 => publish, 2 => batch, 8 => poll, 1 => commit, 2 => join, 1 => leave,
            2 => crash,
        ]
        .boxed(),
        Profile::General => prop_oneof![
            5 => publish, 2 => batch, 8 => poll, 1 => commit, 3 => seek, 2 => join,
            1 => leave, 1 => crash,
        ]
        .boxed(),
        Profile::OverwriteSolo => prop_oneof![
            5 => publish, 3 => batch, 5 => poll, 1 => commit,
        ]
        .boxed(),
    }
}

fn schedule(profile: Profile, policies: &[OverflowPolicy]) -> impl Strategy<Value = Schedule> {
    (
        1u32..=4,
        2u32..=5,
        prop::sample::select(policies.to_vec()),
        any::<bool>(),
        0usize..=2,
        prop::collection::vec(op(profile), 0..160),
    )
        .prop_map(
            |(partitions, cap_log2, policy, marked, broadcast, ops)| Schedule {
                partitions,
                capacity: 1 << cap_log2,
                policy,
                layout: if marked && policy != OverflowPolicy::Overwrite {
                    SlotLayout::Marked
                } else {
                    SlotLayout::Packed
                },
                broadcast,
                ops,
            },
        )
}

// ---------------------------------------------------------------------------
// The model.

/// A position the model knows: exactly, or as a lower bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    at: u64,
    exact: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cluster,
    Broadcast,
}

struct Member {
    name: usize,
    c: Consumer<u64>,
    auto_commit: bool,
    /// Partitions read now, as last observed through `assignment()`.
    owned: BTreeSet<u32>,
    /// Model read position of each owned partition.
    cursor: BTreeMap<u32, Pos>,
    delivered: u64,
    missed: u64,
    seeked: bool,
    /// Broadcast only: the member's own gate per partition.
    gate: Vec<Pos>,
    /// Broadcast only: reported missed not yet matched by an observed gap.
    budget: u64,
    /// Broadcast only: deliveries per `(partition, offset)`.
    seen: HashMap<(u32, u64), u32>,
}

fn wait_of(i: u8) -> WaitStrategy {
    [
        WaitStrategy::BusySpin,
        WaitStrategy::SpinYield,
        WaitStrategy::Park,
    ][usize::from(i % 3)]
}

struct World {
    profile: Profile,
    policy: OverflowPolicy,
    gated: bool,
    parts: u32,
    cap: u64,
    engine: Engine<u64>,
    producer: Producer<u64>,
    tid: TopicId,
    /// Published values: `values[p][o]`.
    values: Vec<Vec<u64>>,
    seq: u64,
    attempted: u64,
    rejected: Vec<u64>,
    cluster: Vec<Member>,
    bcast: Vec<Member>,
    /// The cluster group's committed offset (gate, or parked while empty).
    committed: Vec<Pos>,
    /// Missed records reported to cluster members, not yet matched by gaps.
    group_budget: u64,
    /// The cluster group's missed counter when last read: the engine counts
    /// a takeover gap when the partition is taken over, even if no batch
    /// reports it (the member left first).
    cluster_engine_missed: u64,
    cluster_seen: HashMap<(u32, u64), u32>,
    cluster_delivered: u64,
    cluster_missed: u64,
    /// A publish was attempted while the cluster group had no members: its
    /// gate may come back above the parked offset (reported as missed).
    publish_while_empty: bool,
    next_name: usize,
}

impl World {
    fn new(s: &Schedule, profile: Profile) -> Self {
        let engine: Engine<u64> = Engine::new();
        let tid = engine
            .create_topic(
                TOPIC,
                TopicConfig::new(s.partitions, s.capacity)
                    .policy(s.policy)
                    .layout(s.layout),
            )
            .unwrap();
        let producer = engine.producer(TOPIC).unwrap();
        let gated = s.policy != OverflowPolicy::Overwrite;
        let mut w = World {
            profile,
            policy: s.policy,
            gated,
            parts: s.partitions,
            cap: s.capacity as u64,
            engine,
            producer,
            tid,
            values: vec![Vec::new(); s.partitions as usize],
            seq: 1_000,
            attempted: 0,
            rejected: vec![0; s.partitions as usize],
            cluster: Vec::new(),
            bcast: Vec::new(),
            committed: vec![Pos { at: 0, exact: true }; s.partitions as usize],
            group_budget: 0,
            cluster_engine_missed: 0,
            cluster_seen: HashMap::new(),
            cluster_delivered: 0,
            cluster_missed: 0,
            publish_while_empty: false,
            next_name: 0,
        };
        // The cluster group and the broadcast members exist before any publish.
        w.join(true, 2, None);
        for i in 0..s.broadcast {
            w.join_broadcast(i as u8);
        }
        w.check_global();
        w
    }

    fn published(&self, p: u32) -> u64 {
        self.values[p as usize].len() as u64
    }

    fn total(&self) -> u64 {
        self.values.iter().map(|v| v.len() as u64).sum()
    }

    fn new_member(&mut self, c: Consumer<u64>, auto_commit: bool) -> Member {
        self.next_name += 1;
        Member {
            name: self.next_name,
            c,
            auto_commit,
            owned: BTreeSet::new(),
            cursor: BTreeMap::new(),
            delivered: 0,
            missed: 0,
            seeked: false,
            gate: Vec::new(),
            budget: 0,
            seen: HashMap::new(),
        }
    }

    fn list(&mut self, k: Kind) -> &mut Vec<Member> {
        match k {
            Kind::Cluster => &mut self.cluster,
            Kind::Broadcast => &mut self.bcast,
        }
    }

    /// Member `who` over cluster members then broadcast members.
    fn pick(&self, who: usize) -> Option<(Kind, usize)> {
        let n = self.cluster.len() + self.bcast.len();
        if n == 0 {
            return None;
        }
        let i = who % n;
        Some(if i < self.cluster.len() {
            (Kind::Cluster, i)
        } else {
            (Kind::Broadcast, i - self.cluster.len())
        })
    }

    /// Lower bound of the slowest active gate of `p`, exact when the model
    /// knows it; `None` when no gate is active.
    fn min_gate(&self, p: u32) -> Option<Pos> {
        let mut gates: Vec<Pos> = self.bcast.iter().map(|b| b.gate[p as usize]).collect();
        if !self.cluster.is_empty() {
            gates.push(self.committed[p as usize]);
        }
        let at = gates.iter().map(|g| g.at).min()?;
        // Exact when an exactly known gate attains the minimum: the inexact
        // ones are really at or above their (larger or equal) bounds.
        let exact = gates.iter().any(|g| g.exact && g.at == at);
        Some(Pos { at, exact })
    }

    /// Records that fit into `p` now: a lower bound, or `None` for unbounded.
    fn room(&self, p: u32) -> Option<Pos> {
        self.min_gate(p).map(|g| Pos {
            at: (g.at + self.cap).saturating_sub(self.published(p)),
            exact: g.exact,
        })
    }

    fn next_value(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    // ----- producer side -----

    fn publish(&mut self, p: u32, n: u8) {
        let p = p % self.parts;
        for _ in 0..n {
            if self.cluster.is_empty() {
                if matches!(self.profile, Profile::ExactlyOnce | Profile::Crashes) {
                    return;
                }
                self.publish_while_empty = true;
            }
            let room = self.room(p);
            if self.policy == OverflowPolicy::Block && room.is_some_and(|r| r.at == 0) {
                return;
            }
            let v = self.next_value();
            self.attempted += 1;
            let expected_offset = self.published(p);
            step(|| format!("send_to({p}, {v}) room {room:?}"));
            match self.producer.send_to(p, v) {
                Ok(sent) => {
                    assert_eq!((sent.partition, sent.offset), (p, expected_offset));
                    if self.policy == OverflowPolicy::Reject {
                        assert!(
                            !room.is_some_and(|r| r.exact && r.at == 0),
                            "Reject accepted offset {expected_offset} of partition {p} \
                             although the slowest gate leaves no room"
                        );
                    }
                    self.values[p as usize].push(v);
                }
                Err(SendError::Full(back)) => {
                    assert_eq!(
                        self.policy,
                        OverflowPolicy::Reject,
                        "Full under {:?}",
                        self.policy
                    );
                    assert_eq!(back, v, "Full hands back the record");
                    assert!(
                        room.is_some_and(|r| r.at == 0),
                        "Reject refused partition {p} with room {room:?}"
                    );
                    self.rejected[p as usize] += 1;
                }
                Err(other) => panic!("send_to({p}): {other:?}"),
            }
        }
    }

    fn publish_batch(&mut self, p: u32, n: u8) {
        let p = p % self.parts;
        let mut n = u64::from(n);
        if self.cluster.is_empty() {
            if matches!(self.profile, Profile::ExactlyOnce | Profile::Crashes) {
                return;
            }
            self.publish_while_empty = true;
        }
        let room = self.room(p);
        if self.policy == OverflowPolicy::Block {
            if let Some(r) = room {
                n = n.min(r.at);
            }
            if n == 0 {
                return;
            }
        }
        let vals: Vec<u64> = (0..n).map(|_| self.next_value()).collect();
        self.attempted += n;
        let first = self.published(p);
        step(|| format!("send_batch_to({p}, {n} records) room {room:?}"));
        let accepted = match self.producer.send_batch_to(p, &vals) {
            Ok(off) => {
                assert_eq!(off, first, "batch starts at the next offset");
                n
            }
            Err(BatchSendError::Ring(BatchError::Full { accepted })) => {
                assert_eq!(self.policy, OverflowPolicy::Reject);
                accepted as u64
            }
            Err(other) => panic!("send_batch_to({p}): {other:?}"),
        };
        if self.policy == OverflowPolicy::Reject {
            if let Some(r) = room {
                assert!(
                    accepted >= n.min(r.at),
                    "Reject batch took {accepted} of {n} with room {r:?}"
                );
                if r.exact {
                    assert_eq!(accepted, n.min(r.at), "Reject batch with room {r:?}");
                }
            } else {
                assert_eq!(accepted, n, "Reject batch without any gate");
            }
            self.rejected[p as usize] += n - accepted;
        }
        self.values[p as usize].extend_from_slice(&vals[..accepted as usize]);
    }

    // ----- consumer side -----

    fn join(&mut self, auto_commit: bool, wait: u8, then_poll: Option<usize>) {
        let was_empty = self.cluster.is_empty();
        let cfg = ConsumerConfig::cluster(CLUSTER)
            .auto_commit(auto_commit)
            .wait(wait_of(wait));
        let mut c = self.engine.consumer(cfg).unwrap();
        step(|| "join cluster".into());
        c.subscribe(&[TOPIC]).unwrap();
        if was_empty && self.publish_while_empty {
            // The gate comes back at the parked offset or, if the writer has
            // moved past what it protects, higher (reported as missed).
            for c in &mut self.committed {
                c.exact = false;
            }
        }
        if was_empty {
            self.publish_while_empty = false;
        }
        let mut m = self.new_member(c, auto_commit);
        self.observe_assignment(Kind::Cluster, &mut m);
        if was_empty {
            assert_eq!(
                m.owned.len() as u32,
                self.parts,
                "a sole member reads everything"
            );
        }
        self.crosscheck(Kind::Cluster, &m);
        self.cluster.push(m);
        if let Some(max) = then_poll {
            self.poll(Kind::Cluster, self.cluster.len() - 1, max);
        }
    }

    fn join_broadcast(&mut self, wait: u8) {
        let mut c = self
            .engine
            .consumer(ConsumerConfig::broadcast(BROADCAST).wait(wait_of(wait)))
            .unwrap();
        c.subscribe(&[TOPIC]).unwrap();
        let mut m = self.new_member(c, true);
        let start = Pos { at: 0, exact: true };
        m.gate = vec![start; self.parts as usize];
        m.owned = (0..self.parts).collect();
        m.cursor = (0..self.parts).map(|p| (p, start)).collect();
        self.observe_assignment(Kind::Broadcast, &mut m);
        self.crosscheck(Kind::Broadcast, &m);
        self.bcast.push(m);
    }

    /// Brings `m.owned` in line with `assignment()`; a newly taken partition
    /// starts at the group's committed offset.
    fn observe_assignment(&self, k: Kind, m: &mut Member) {
        let now: BTreeSet<u32> =
            m.c.assignment()
                .iter()
                .map(|tp| {
                    assert_eq!(tp.topic, self.tid);
                    tp.partition
                })
                .collect();
        match k {
            Kind::Broadcast => {
                assert_eq!(now, (0..self.parts).collect(), "broadcast reads everything");
            }
            Kind::Cluster => {
                for p in m.owned.difference(&now) {
                    m.cursor.remove(p);
                }
                for &p in now.difference(&m.owned) {
                    m.cursor.insert(p, self.committed[p as usize]);
                }
            }
        }
        m.owned = now;
    }

    /// The model of `commit_one` for every owned partition: the gate moves up
    /// to the read position (the owner's gate never exceeds its position).
    fn commit_model(&mut self, k: Kind, m: &mut Member) {
        for &p in &m.owned {
            let cur = m.cursor[&p];
            let gate = match k {
                Kind::Cluster => &mut self.committed[p as usize],
                Kind::Broadcast => &mut m.gate[p as usize],
            };
            if cur.exact && gate.exact {
                assert!(
                    cur.at >= gate.at,
                    "model: member {} gate {gate:?} above position {cur:?} in {p}",
                    m.name
                );
            }
            *gate = Pos {
                at: cur.at.max(gate.at),
                exact: cur.exact,
            };
        }
    }

    /// `poll(max)` by a member, checked record by record. Returns whether it
    /// delivered or reported anything.
    fn poll(&mut self, k: Kind, i: usize, max: usize) -> bool {
        let mut m = self.list(k).remove(i);
        if m.auto_commit {
            self.commit_model(k, &mut m);
        }
        step(|| format!("poll({max}) by {:?} member {}", k, m.name));
        let (recs, missed) = match poll_either(&mut m.c, max) {
            Ok(got) => got,
            Err(e) => panic!("poll by member {}: {e:?}", m.name),
        };
        self.observe_assignment(k, &mut m);
        assert!(recs.len() <= max, "poll({max}) returned {}", recs.len());
        m.delivered += recs.len() as u64;
        m.missed += missed;
        // Positions before this batch (newly taken partitions start at the
        // group's committed offset).
        let before: BTreeMap<u32, u64> = m.cursor.iter().map(|(&p, c)| (p, c.at)).collect();
        let mut budget = match k {
            Kind::Cluster => {
                self.cluster_delivered += recs.len() as u64;
                self.cluster_missed += missed;
                let engine_missed = self.engine.group_stats(CLUSTER).unwrap().missed;
                let counted = engine_missed - self.cluster_engine_missed;
                self.cluster_engine_missed = engine_missed;
                if self.gated {
                    self.group_budget + counted
                } else {
                    self.group_budget
                }
            }
            Kind::Broadcast if self.gated => m.budget + missed,
            Kind::Broadcast => m.budget,
        };
        for r in &recs {
            assert_eq!(r.topic, self.tid);
            let p = r.partition;
            assert!(
                m.owned.contains(&p),
                "member {} got {p}/{} but reads {:?}",
                m.name,
                r.offset,
                m.owned
            );
            let vals = &self.values[p as usize];
            assert!(
                r.offset < vals.len() as u64,
                "member {} got unpublished offset {p}/{} (published {})",
                m.name,
                r.offset,
                vals.len()
            );
            assert_eq!(
                r.value, vals[r.offset as usize],
                "member {} got the wrong value at {p}/{}",
                m.name, r.offset
            );
            let pos = m
                .cursor
                .get_mut(&p)
                .expect("owned partitions have a cursor");
            assert!(
                r.offset >= pos.at,
                "member {} went back in {p}: got offset {} after position {pos:?}",
                m.name,
                r.offset
            );
            if r.offset > pos.at && !self.gated {
                // A lap: skipped records come before the delivered ones, so
                // only before the first record of the partition in a batch;
                // the total is checked against `missed` below.
                assert_eq!(
                    pos.at, before[&p],
                    "member {} skipped {p}/{}..{} in the middle of a batch",
                    m.name, pos.at, r.offset
                );
            }
            if r.offset > pos.at && self.gated {
                let gap = r.offset - pos.at;
                assert!(
                    !pos.exact,
                    "member {} skipped {p}/{}..{} silently (gated policy)",
                    m.name, pos.at, r.offset
                );
                assert!(
                    budget >= gap,
                    "member {} skipped {gap} records of {p} ({}..{}) but only {budget} \
                     were reported missed",
                    m.name,
                    pos.at,
                    r.offset
                );
                budget -= gap;
            }
            if self.gated && !pos.exact && k == Kind::Cluster {
                // Under a gate, a position is inexact only after taking a
                // partition over at a gate raised on re-attach; until the
                // first read it moved neither position nor gate, so both
                // were at this record's offset.
                let c = &mut self.committed[p as usize];
                assert!(
                    c.at <= r.offset,
                    "model: committed {c:?} above {}",
                    r.offset
                );
                *c = Pos {
                    at: r.offset,
                    exact: true,
                };
            }
            *pos = Pos {
                at: r.offset + 1,
                exact: true,
            };
            let seen = match k {
                Kind::Cluster => &mut self.cluster_seen,
                Kind::Broadcast => &mut m.seen,
            };
            *seen.entry((p, r.offset)).or_default() += 1;
        }
        match k {
            Kind::Cluster => self.group_budget = budget,
            Kind::Broadcast => m.budget = budget,
        }
        if !self.gated {
            // Overwrite: a partition may also be skipped without a record
            // delivered after the skip; the position says how far. Every
            // record skipped is reported, exactly.
            let mut skipped = 0;
            for &p in &m.owned {
                let real = m.c.position(TOPIC, p).unwrap();
                let first = recs.iter().find(|r| r.partition == p).map(|r| r.offset);
                let from = before[&p];
                skipped += match first {
                    Some(f) => {
                        assert_eq!(real, m.cursor[&p].at, "member {} position of {p}", m.name);
                        f - from
                    }
                    None => {
                        assert!(
                            from <= real && real <= self.published(p),
                            "member {} moved from {from} to {real} in {p} without a record",
                            m.name
                        );
                        real - from
                    }
                };
                m.cursor.insert(
                    p,
                    Pos {
                        at: real,
                        exact: true,
                    },
                );
            }
            assert_eq!(
                missed, skipped,
                "member {}: batch reports {missed} missed but skipped {skipped}",
                m.name
            );
        }
        assert_eq!(
            m.c.delivered(),
            m.delivered,
            "member {} delivered()",
            m.name
        );
        assert_eq!(m.c.missed(), m.missed, "member {} missed()", m.name);
        if recs.len() < max && (self.gated || missed == 0) {
            for &p in &m.owned {
                let pos = m.cursor[&p];
                if pos.exact {
                    assert_eq!(
                        pos.at,
                        self.published(p),
                        "member {}: poll({max}) returned {} records but left {p} behind",
                        m.name,
                        recs.len()
                    );
                }
            }
        }
        self.crosscheck(k, &m);
        self.list(k).insert(i, m);
        !recs.is_empty() || missed > 0
    }

    fn commit(&mut self, k: Kind, i: usize) {
        let mut m = self.list(k).remove(i);
        step(|| format!("commit by member {}", m.name));
        m.c.commit();
        self.commit_model(k, &mut m);
        self.crosscheck(k, &m);
        self.list(k).insert(i, m);
    }

    fn seek(&mut self, k: Kind, i: usize, p: u32, target: SeekTarget) {
        let mut m = self.list(k).remove(i);
        step(|| format!("seek {target:?} on {p} by member {}", m.name));
        let parts = self.parts;
        match target {
            SeekTarget::UnknownTopic => {
                assert!(matches!(
                    m.c.seek("nope", 0, 0),
                    Err(ConsumerError::UnknownTopic { .. })
                ));
            }
            SeekTarget::NoSuchPartition(x) => {
                let q = parts + u32::from(x);
                match m.c.seek(TOPIC, q, 0) {
                    Err(ConsumerError::NoSuchPartition {
                        partition,
                        partitions,
                        ..
                    }) => assert_eq!((partition, partitions), (q, parts)),
                    other => panic!("seek to partition {q} of {parts}: {other:?}"),
                }
            }
            SeekTarget::Unassigned => {
                if let Some(q) = (0..parts).find(|q| !m.owned.contains(q)) {
                    assert!(
                        matches!(
                            m.c.seek(TOPIC, q, self.published(q)),
                            Err(ConsumerError::NotAssigned { .. })
                        ),
                        "seek on a partition not read"
                    );
                }
            }
            SeekTarget::InRange(x) | SeekTarget::Below(x) | SeekTarget::Above(x) => {
                let p = p % parts;
                let latest = self.published(p);
                let earliest = latest.saturating_sub(self.cap);
                let x = u64::from(x);
                let s = match target {
                    SeekTarget::InRange(_) => earliest + x % (latest - earliest + 1),
                    SeekTarget::Below(_) if earliest > 0 => x % earliest,
                    SeekTarget::Below(_) => {
                        self.list(k).insert(i, m);
                        return;
                    }
                    _ => latest + 1 + x,
                };
                let res = m.c.seek(TOPIC, p, s);
                if !m.owned.contains(&p) {
                    assert!(
                        matches!(res, Err(ConsumerError::NotAssigned { .. })),
                        "seek on {p}, not read by member {}: {res:?}",
                        m.name
                    );
                } else if s > latest || s < earliest {
                    match res {
                        Err(ConsumerError::OffsetOutOfRange {
                            topic,
                            partition,
                            requested,
                            earliest: e,
                            latest: l,
                        }) => {
                            assert_eq!(topic, TOPIC);
                            assert_eq!((partition, requested), (p, s));
                            assert_eq!((e, l), (earliest, latest), "the window named");
                        }
                        other => panic!("seek {p}/{s} outside {earliest}..={latest}: {other:?}"),
                    }
                } else {
                    let pos = m.cursor[&p];
                    match res {
                        Ok(()) => {
                            m.seeked = true;
                            m.cursor.insert(p, Pos { at: s, exact: true });
                            let gate = match k {
                                Kind::Cluster => &mut self.committed[p as usize],
                                Kind::Broadcast => &mut m.gate[p as usize],
                            };
                            // Below the gate, the gate is rewound with the
                            // position; at or above it, it stays.
                            if s < gate.at {
                                *gate = Pos { at: s, exact: true };
                            }
                        }
                        Err(ConsumerError::OffsetOutOfRange {
                            requested,
                            earliest: e,
                            latest: l,
                            ..
                        }) => {
                            assert!(
                                self.gated,
                                "Overwrite refused a seek to {p}/{s} inside {earliest}..={latest}"
                            );
                            assert!(
                                !(pos.exact && s >= pos.at),
                                "seek to {p}/{s} at or after the position {pos:?} was refused"
                            );
                            assert_eq!((requested, l), (s, latest));
                            assert!(
                                e > s && e <= latest,
                                "refused rewind to {s} names earliest {e} (latest {latest})"
                            );
                        }
                        Err(other) => panic!("seek {p}/{s}: {other:?}"),
                    }
                }
            }
        }
        self.crosscheck(k, &m);
        self.list(k).insert(i, m);
    }

    fn leave(&mut self, i: usize, crash: bool) {
        let mut m = self.cluster.remove(i);
        step(|| {
            format!(
                "member {} {}",
                m.name,
                if crash { "crashes" } else { "closes" }
            )
        });
        if crash {
            drop(m.c);
        } else {
            if m.auto_commit {
                self.commit_model(Kind::Cluster, &mut m);
            }
            m.c.close();
        }
    }

    // ----- cross-checks -----

    /// The member's view through the public API agrees with the model.
    fn crosscheck(&self, k: Kind, m: &Member) {
        for &p in &m.owned {
            let pos = m.cursor[&p];
            let real = m.c.position(TOPIC, p).unwrap();
            if pos.exact {
                assert_eq!(real, pos.at, "member {} position of {p}", m.name);
            } else {
                assert!(
                    real >= pos.at,
                    "member {} position {real} < {pos:?}",
                    m.name
                );
            }
            let gate = match k {
                Kind::Cluster => self.committed[p as usize],
                Kind::Broadcast => m.gate[p as usize],
            };
            let committed = m.c.committed(TOPIC, p).unwrap();
            if gate.exact {
                assert_eq!(committed, gate.at, "member {} committed of {p}", m.name);
            } else {
                assert!(
                    committed >= gate.at,
                    "member {} committed {committed} < {gate:?}",
                    m.name
                );
            }
            assert!(
                committed <= real,
                "member {} committed {committed} > position {real}",
                m.name
            );
        }
    }

    fn check_global(&self) {
        let mut owners: BTreeMap<u32, usize> = BTreeMap::new();
        for m in &self.cluster {
            for &p in &m.owned {
                if let Some(other) = owners.insert(p, m.name) {
                    panic!(
                        "partition {p} read by members {other} and {} at once",
                        m.name
                    );
                }
            }
        }
        let g = self.engine.group_stats(CLUSTER).unwrap();
        assert_eq!(
            g.delivered, self.cluster_delivered,
            "cluster group delivered"
        );
        // A takeover gap is counted when the member takes the partition over,
        // which can be before (or without) the batch that reports it.
        assert!(
            g.missed >= self.cluster_missed,
            "cluster group missed {} < reported {}",
            g.missed,
            self.cluster_missed
        );
        assert_eq!(g.members, self.cluster.len());
        if !self.bcast.is_empty() {
            let b = self.engine.group_stats(BROADCAST).unwrap();
            assert_eq!(
                b.delivered,
                self.bcast.iter().map(|m| m.delivered).sum::<u64>()
            );
            assert_eq!(b.missed, self.bcast.iter().map(|m| m.missed).sum::<u64>());
            assert_eq!(b.members, self.bcast.len());
        }
        let offsets = self.engine.offsets(TOPIC).unwrap();
        for (p, o) in offsets.iter().enumerate() {
            let latest = self.values[p].len() as u64;
            assert_eq!(o.latest, latest, "latest of {p}");
            assert_eq!(
                o.earliest,
                latest.saturating_sub(self.cap),
                "earliest of {p}"
            );
            assert_eq!(o.rejected, self.rejected[p], "rejected of {p}");
        }
        assert_eq!(self.engine.published(TOPIC).unwrap(), self.total());
        assert_eq!(
            self.engine.rejected(TOPIC).unwrap(),
            self.rejected.iter().sum::<u64>()
        );
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Publish { p, n } => self.publish(*p, *n),
            Op::Batch { p, n } => self.publish_batch(*p, *n),
            Op::Poll { who, max } => {
                if let Some((k, i)) = self.pick(*who) {
                    self.poll(k, i, *max);
                }
            }
            Op::Commit { who } => {
                if let Some((k, i)) = self.pick(*who) {
                    self.commit(k, i);
                }
            }
            Op::Seek { who, p, target } => {
                if let Some((k, i)) = self.pick(*who) {
                    self.seek(k, i, *p, *target);
                }
            }
            Op::Join {
                auto_commit,
                wait,
                then_poll,
            } => self.join(*auto_commit, *wait, *then_poll),
            Op::Leave { who } | Op::Crash { who } => {
                if !self.cluster.is_empty() {
                    let i = who % self.cluster.len();
                    self.leave(i, matches!(op, Op::Crash { .. }));
                }
            }
        }
        self.check_global();
    }

    /// Polls every member round-robin until nothing moves and every partition
    /// has its owner.
    fn drain(&mut self) {
        for _ in 0..1000 {
            let mut busy = false;
            for i in 0..self.cluster.len() {
                busy |= self.poll(Kind::Cluster, i, 64);
            }
            for i in 0..self.bcast.len() {
                busy |= self.poll(Kind::Broadcast, i, 64);
            }
            self.check_global();
            let pending = self.cluster.iter().any(|m| m.c.has_pending());
            let owned: usize = self.cluster.iter().map(|m| m.owned.len()).sum();
            let covered = self.cluster.is_empty() || owned == self.parts as usize;
            if !busy && !pending && covered {
                return;
            }
        }
        panic!("drain did not settle");
    }

    fn finish(mut self) {
        self.drain();
        let total = self.total();
        for b in &self.bcast {
            if b.seeked {
                continue;
            }
            let who = format!("broadcast member {}", b.name);
            if self.gated {
                every(&self.values, &b.seen, false, &who);
                assert_eq!((b.delivered, b.missed), (total, 0), "{who}");
            } else {
                assert_eq!(b.delivered + b.missed, total, "{who}: delivered + missed");
                assert!(b.seen.values().all(|&n| n == 1), "{who}: duplicates");
            }
        }
        match self.profile {
            Profile::ExactlyOnce | Profile::Crashes => {
                while !self.cluster.is_empty() {
                    self.leave(0, false);
                    self.check_global();
                }
                self.join(true, 0, None);
                self.drain();
                self.leave(0, false);
                self.check_global();
                let exactly = self.profile == Profile::ExactlyOnce;
                every(&self.values, &self.cluster_seen, !exactly, "cluster group");
                assert_eq!(self.cluster_missed, 0, "nothing may be missed under a gate");
                if exactly {
                    assert_eq!(self.cluster_delivered, total, "exactly once in total");
                }
            }
            Profile::OverwriteSolo => {
                let m = &self.cluster[0];
                assert_eq!(
                    m.delivered + m.missed,
                    total,
                    "solo member: delivered + missed"
                );
                assert!(
                    self.cluster_seen.values().all(|&n| n == 1),
                    "solo member: duplicates"
                );
                let g = self.engine.group_stats(CLUSTER).unwrap();
                assert_eq!(g.delivered + g.missed, total);
            }
            Profile::General => {}
        }
        assert_eq!(
            self.attempted,
            total + self.rejected.iter().sum::<u64>(),
            "accepted + rejected == attempted"
        );
        // Close: drained members get EngineClosed, the producer Closed.
        self.engine.close();
        for m in self.cluster.iter_mut().chain(self.bcast.iter_mut()) {
            assert_eq!(
                m.c.poll(1, NOW).map(|b| b.len()),
                Err(ConsumerError::EngineClosed),
                "member {} after close",
                m.name
            );
        }
        assert_eq!(self.producer.send_to(0, 7), Err(SendError::Closed(7)));
    }
}

/// Checks that every published `(p, o)` was seen exactly once (or at least
/// once).
fn every(values: &[Vec<u64>], seen: &HashMap<(u32, u64), u32>, at_least: bool, who: &str) {
    for (p, vals) in values.iter().enumerate() {
        for o in 0..vals.len() as u64 {
            let n = seen.get(&(p as u32, o)).copied().unwrap_or(0);
            if at_least {
                assert!(n >= 1, "{who}: {p}/{o} never delivered");
            } else {
                assert_eq!(n, 1, "{who}: {p}/{o} delivered {n} times");
            }
        }
    }
}

fn run(s: Schedule, profile: Profile) {
    start_watchdog();
    let mut w = World::new(&s, profile);
    for op in &s.ops {
        w.apply(op);
    }
    w.finish();
}

const ALL: [OverflowPolicy; 3] = [
    OverflowPolicy::Block,
    OverflowPolicy::Reject,
    OverflowPolicy::Overwrite,
];
const GATED: [OverflowPolicy; 2] = [OverflowPolicy::Block, OverflowPolicy::Reject];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Block/Reject, cluster + broadcast, joins and graceful leaves only:
    /// every record delivered exactly once across the cluster group and to
    /// each broadcast member.
    #[test]
    fn exactly_once_without_crashes(s in schedule(Profile::ExactlyOnce, &GATED)) {
        run(s, Profile::ExactlyOnce);
    }

    /// Crashes allowed (no seeks): every record delivered at least once, and
    /// a crashed member's partitions resume at the committed offset.
    #[test]
    fn at_least_once_across_crashes(s in schedule(Profile::Crashes, &GATED)) {
        run(s, Profile::Crashes);
    }

    /// Everything, under every policy: value integrity, continuity, typed
    /// seek errors, reject counting, broadcast accounting.
    #[test]
    fn general_invariants(s in schedule(Profile::General, &ALL)) {
        run(s, Profile::General);
    }

    /// Overwrite with one cluster member that never leaves: delivered +
    /// missed == published, for it and for every broadcast member.
    #[test]
    fn overwrite_accounts_for_every_record(
        s in schedule(Profile::OverwriteSolo, &[OverflowPolicy::Overwrite])
    ) {
        run(s, Profile::OverwriteSolo);
    }
}

/// A shrunk schedule kept as a fixed case: under `Overwrite` a lapped member
/// whose cached view of the ring is stale skips ahead without delivering
/// anything, then leaves; its successors resume from where it skipped to.
#[test]
fn overwrite_skip_without_a_record_then_hand_over() {
    let join = |auto_commit| Op::Join {
        auto_commit,
        wait: 0,
        then_poll: Some(1),
    };
    let ops = vec![
        join(false),
        join(true),
        Op::Crash { who: 0 },
        Op::Leave { who: 0 },
        Op::Publish { p: 0, n: 3 },
        Op::Poll { who: 0, max: 1 },
        join(false),
        Op::Batch { p: 0, n: 16 },
        Op::Poll { who: 0, max: 1 },
        Op::Leave { who: 0 },
        Op::Poll { who: 0, max: 1 },
        Op::Leave { who: 0 },
        join(false),
    ];
    let s = Schedule {
        partitions: 1,
        capacity: 16,
        policy: OverflowPolicy::Overwrite,
        layout: SlotLayout::Packed,
        broadcast: 1,
        ops,
    };
    run(s, Profile::General);
}

/// Regression: records a re-joining cluster member learns it missed (the
/// writer moved on while the group was empty) stay in the group's accounting
/// when that member leaves or crashes before its first `poll`.
#[test]
fn missed_records_stay_counted_when_a_member_leaves_before_polling() {
    let e: Engine<u64> = Engine::new();
    e.create_topic(TOPIC, TopicConfig::new(1, 8)).unwrap();
    let mut p = e.producer(TOPIC).unwrap();
    let a = {
        let mut a = e.consumer(ConsumerConfig::cluster(CLUSTER)).unwrap();
        a.subscribe(&[TOPIC]).unwrap();
        a
    };
    a.close(); // commits 0; the group is empty, its gate parked at 0
    for i in 0..20 {
        p.send_to(0, i).unwrap(); // nobody gates: 0..12 are overwritten
    }
    let mut b = e.consumer(ConsumerConfig::cluster(CLUSTER)).unwrap();
    b.subscribe(&[TOPIC]).unwrap(); // gate back at 12: 12 records missed
    b.close(); // ... but b leaves before a poll could report them
    let mut c = e.consumer(ConsumerConfig::cluster(CLUSTER)).unwrap();
    c.subscribe(&[TOPIC]).unwrap();
    let batch = c.poll(64, NOW).unwrap();
    let got: Vec<u64> = batch.iter().map(|r| r.offset).collect();
    assert_eq!(got, (12..20).collect::<Vec<_>>());
    let stats = e.group_stats(CLUSTER).unwrap();
    assert_eq!(
        stats.delivered + stats.missed,
        20,
        "every published record is delivered or reported missed ({stats:?})"
    );
}

/// Regression: after `Engine::close`, `poll` does not report `EngineClosed`
/// ("every assigned partition is drained") while an assigned partition is
/// still being handed over by its previous owner.
#[test]
fn engine_closed_waits_for_a_pending_handover() {
    let e: Engine<u64> = Engine::new();
    e.create_topic(TOPIC, TopicConfig::new(2, 8)).unwrap();
    let mut p = e.producer(TOPIC).unwrap();
    let mut a = e.consumer(ConsumerConfig::cluster(CLUSTER)).unwrap();
    a.subscribe(&[TOPIC]).unwrap();
    let mut b = e.consumer(ConsumerConfig::cluster(CLUSTER)).unwrap();
    b.subscribe(&[TOPIC]).unwrap(); // b is assigned partition 1, still held by a
    for i in 0..4u32 {
        p.send_to(i % 2, u64::from(i)).unwrap();
    }
    e.close();
    // Each member polls, round-robin, b first, until it gets EngineClosed.
    let mut delivered = 0;
    let mut members = [(b, false), (a, false)];
    for _ in 0..100 {
        for (c, done) in members.iter_mut().filter(|(_, done)| !*done) {
            match c.poll(64, NOW) {
                Ok(batch) => delivered += batch.len(),
                Err(ConsumerError::EngineClosed) => *done = true,
                Err(other) => panic!("{other:?}"),
            }
        }
    }
    assert!(
        members.iter().all(|(_, done)| *done),
        "EngineClosed never came"
    );
    assert_eq!(
        delivered, 4,
        "b was told its partitions were drained while partition 1 was pending"
    );
}

// ---------------------------------------------------------------------------
// The journaled schedule: a journaled topic (`Block` or `Reject`), one
// cluster group, and `Restart` steps that close the engine and open it
// again on the same data directory.

/// A smaller model than [`World`], for a journaled topic. The journal keeps
/// every record, so nothing is ever missed: a member reads each partition
/// contiguously from the group's committed offset (from the journal while
/// the ring no longer holds it), and the model knows every committed offset
/// exactly, across restarts too. After every publish the test waits until
/// the journal has made everything durable, so the journaller's own gate
/// never limits the writer and reading back never waits for it.
///
/// Checked after every step, besides value integrity and continuity:
/// - `missed` is always 0, a poll that returns nothing leaves nothing
///   readable behind, `position`/`committed`/`group_stats`/`offsets`
///   (`earliest` is 0: the journal holds everything; `ring_earliest` is
///   where this run's ring starts or what it still holds)/`rejected` and
///   the journal's `durable`/`written` counters agree with the model;
/// - `Block`: a publish is attempted only when the group's gate (at or
///   above the committed offset, and never below the ring's start) leaves
///   room; `Reject`: `Full` only when that lower bound leaves no room, and
///   never an accept when the model knows the gate exactly and it leaves no
///   room;
/// - seeks back to any offset from 0 succeed (the journal holds it), seeks
///   past the latest fail naming the window `0..=latest`.
///
/// At each restart (every member closes, or crashes, first):
/// - `close` has written everything, the old producer gets `Closed`, the
///   directory can be opened again at once;
/// - the journal recovers exactly the records published, the offsets
///   continue where they ended, a fresh group from `Earliest` reads the
///   exact value published at every `(p, o)`;
/// - the cluster group resumes at exactly the offsets it had committed
///   (they are saved at close), checked as the members rejoin.
///
/// At the end: a restart, a drain, and every record delivered to the cluster
/// group at least once; exactly once when the schedule had no crash, no
/// member without auto-commit and no seek back.
#[cfg(feature = "journal")]
mod journaled {
    use super::*;

    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Instant;

    use telering::journal::{FsyncPolicy, JournalConfig, LogShared};
    use telering::OffsetReset;

    #[derive(Debug, Clone)]
    enum JOp {
        Publish {
            p: u32,
            n: u8,
        },
        Batch {
            p: u32,
            n: u8,
        },
        Poll {
            who: usize,
            max: usize,
        },
        Commit {
            who: usize,
        },
        /// A seek back to `x % (position + 1)`, or (`None`) past the latest.
        Seek {
            who: usize,
            p: u32,
            back: Option<u16>,
        },
        Join {
            auto_commit: bool,
            wait: u8,
            then_poll: Option<usize>,
        },
        Leave {
            who: usize,
        },
        Crash {
            who: usize,
        },
        /// Every member closes (or crashes), the engine closes and is
        /// opened again on the same directory; as many members rejoin.
        Restart {
            crash_members: bool,
        },
    }

    #[derive(Debug, Clone)]
    struct JSchedule {
        partitions: u32,
        capacity: usize,
        policy: OverflowPolicy,
        layout: SlotLayout,
        fsync: FsyncPolicy,
        segment_bytes: u64,
        batch_records: usize,
        ops: Vec<JOp>,
    }

    fn jop() -> impl Strategy<Value = JOp> {
        let publish = (0u32..3, 1u8..=4).prop_map(|(p, n)| JOp::Publish { p, n });
        let batch = (0u32..3, 1u8..=40).prop_map(|(p, n)| JOp::Batch { p, n });
        let poll = (any::<usize>(), poll_max()).prop_map(|(who, max)| JOp::Poll { who, max });
        let commit = any::<usize>().prop_map(|who| JOp::Commit { who });
        let seek = (
            any::<usize>(),
            0u32..3,
            prop_oneof![4 => any::<u16>().prop_map(Some), 1 => Just(None)],
        )
            .prop_map(|(who, p, back)| JOp::Seek { who, p, back });
        let join = (any::<bool>(), 0u8..3, prop::option::of(poll_max())).prop_map(
            |(auto_commit, wait, then_poll)| JOp::Join {
                auto_commit,
                wait,
                then_poll,
            },
        );
        let leave = any::<usize>().prop_map(|who| JOp::Leave { who });
        let crash = any::<usize>().prop_map(|who| JOp::Crash { who });
        let restart = any::<bool>().prop_map(|crash_members| JOp::Restart { crash_members });
        prop_oneof![
            5 => publish, 2 => batch, 8 => poll, 1 => commit, 2 => seek, 2 => join,
            1 => leave, 1 => crash, 1 => restart,
        ]
    }

    fn jschedule() -> impl Strategy<Value = JSchedule> {
        (
            1u32..=3,
            2u32..=5,
            prop::sample::select(GATED.to_vec()),
            any::<bool>(),
            prop_oneof![
                3 => Just(FsyncPolicy::Never),
                3 => Just(FsyncPolicy::Interval(Duration::from_millis(10))),
                1 => Just(FsyncPolicy::Always),
            ],
            prop::sample::select(vec![4096u64, 64 << 20]),
            prop::sample::select(vec![1usize, 3, 4096]),
            prop::collection::vec(jop(), 0..120),
        )
            .prop_map(
                |(
                    partitions,
                    cap_log2,
                    policy,
                    marked,
                    fsync,
                    segment_bytes,
                    batch_records,
                    ops,
                )| {
                    JSchedule {
                        partitions,
                        capacity: 1 << cap_log2,
                        policy,
                        layout: if marked {
                            SlotLayout::Marked
                        } else {
                            SlotLayout::Packed
                        },
                        fsync,
                        segment_bytes,
                        batch_records,
                        ops,
                    }
                },
            )
    }

    struct JMember {
        name: usize,
        c: Consumer<u64>,
        auto_commit: bool,
        owned: BTreeSet<u32>,
        /// Exact read position of each owned partition.
        cursor: BTreeMap<u32, u64>,
        delivered: u64,
    }

    struct JWorld {
        journal: JournalConfig,
        topic: TopicConfig,
        parts: u32,
        cap: u64,
        policy: OverflowPolicy,
        engine: Engine<u64>,
        producer: Producer<u64>,
        tid: TopicId,
        logs: Vec<Arc<LogShared>>,
        /// Published values, over every run: `values[p][o]`.
        values: Vec<Vec<u64>>,
        seq: u64,
        /// Where this run's rings started (what was recovered).
        start: Vec<u64>,
        /// Records the journal recovered when this run opened it.
        recovered: u64,
        /// The cluster group's committed offsets, exact.
        committed: Vec<u64>,
        /// Whether the group's gate is known to be exactly
        /// [`JWorld::gate_floor`] (it is never below it).
        gate_exact: Vec<bool>,
        /// `Full` per partition in this run (the counters are not kept).
        rejected: Vec<u64>,
        attempted: u64,
        rejected_total: u64,
        cluster: Vec<JMember>,
        /// Delivered to the cluster group in this run.
        run_delivered: u64,
        /// Deliveries to the cluster group per `(p, o)`, over every run.
        seen: HashMap<(u32, u64), u32>,
        /// No crash, no member without auto-commit, no seek back so far.
        exactly: bool,
        next_name: usize,
        audits: usize,
        restarts: usize,
        /// Removed last, after the engine.
        _dir: tempfile::TempDir,
    }

    fn open(journal: &JournalConfig, topic: TopicConfig) -> (Engine<u64>, TopicId) {
        let engine = Engine::with_journal(journal.clone()).expect("the journal opens");
        let tid = engine
            .create_topic(TOPIC, topic)
            .expect("the topic recovers");
        (engine, tid)
    }

    impl JWorld {
        fn new(s: &JSchedule) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let mut journal = JournalConfig::new(dir.path())
                .fsync(s.fsync)
                .segment_bytes(s.segment_bytes);
            journal.batch_records = s.batch_records;
            let topic = TopicConfig::new(s.partitions, s.capacity)
                .policy(s.policy)
                .layout(s.layout)
                .journaled(true);
            let (engine, tid) = open(&journal, topic);
            let logs = engine.journal_logs(TOPIC).unwrap().expect("journaled");
            let producer = engine.producer(TOPIC).unwrap();
            let n = s.partitions as usize;
            let mut w = JWorld {
                journal,
                topic,
                parts: s.partitions,
                cap: s.capacity as u64,
                policy: s.policy,
                engine,
                producer,
                tid,
                logs,
                values: vec![Vec::new(); n],
                seq: 1_000,
                start: vec![0; n],
                recovered: 0,
                committed: vec![0; n],
                gate_exact: vec![true; n],
                rejected: vec![0; n],
                attempted: 0,
                rejected_total: 0,
                cluster: Vec::new(),
                run_delivered: 0,
                seen: HashMap::new(),
                exactly: true,
                next_name: 0,
                audits: 0,
                restarts: 0,
                _dir: dir,
            };
            // The group exists (and has committed 0) before any publish.
            w.join(true, 2, None);
            w.check_global();
            w
        }

        fn dir(&self) -> PathBuf {
            self.journal.dir.clone()
        }

        fn published(&self, p: u32) -> u64 {
            self.values[p as usize].len() as u64
        }

        fn total(&self) -> u64 {
            self.values.iter().map(|v| v.len() as u64).sum()
        }

        /// The lowest the group's gate can be: at or above the committed
        /// offset, and never below the ring's start.
        fn gate_floor(&self, p: u32) -> u64 {
            self.committed[p as usize].max(self.start[p as usize])
        }

        /// Records that fit into `p` now, at least; exact when the model
        /// knows every gate. The journaller's gate is at `published` (the
        /// journal is settled after every publish), but it is the one gate
        /// that moves on another thread: see [`JWorld::publish_batch`].
        fn room(&self, p: u32) -> Pos {
            let published = self.published(p);
            if self.cluster.is_empty() {
                return Pos {
                    at: self.cap,
                    exact: true,
                };
            }
            Pos {
                at: (self.gate_floor(p) + self.cap).saturating_sub(published),
                exact: self.gate_exact[p as usize],
            }
        }

        /// Waits until the journal has made everything published durable.
        fn settle(&self) {
            let deadline = Instant::now() + Duration::from_secs(20);
            for p in 0..self.parts {
                let want = self.published(p);
                let log = &self.logs[p as usize];
                while log.durable() < want {
                    assert!(
                        Instant::now() < deadline,
                        "the journal never made {p} durable up to {want} (durable {}, written {})",
                        log.durable(),
                        log.written()
                    );
                    std::thread::yield_now();
                }
                assert_eq!(log.durable(), want, "durable of {p}");
                assert_eq!(log.written(), want, "written of {p}");
            }
        }

        fn next_value(&mut self) -> u64 {
            self.seq += 1;
            self.seq
        }

        // ----- producer side -----

        fn publish(&mut self, p: u32, n: u8) {
            let p = p % self.parts;
            for _ in 0..n {
                let room = self.room(p);
                if self.policy == OverflowPolicy::Block && room.at == 0 {
                    return;
                }
                let v = self.next_value();
                self.attempted += 1;
                let expected = self.published(p);
                step(|| format!("journaled send_to({p}, {v}) room {room:?}"));
                match self.producer.send_to(p, v) {
                    Ok(sent) => {
                        assert_eq!((sent.partition, sent.offset), (p, expected));
                        assert!(
                            !(self.policy == OverflowPolicy::Reject && room.exact && room.at == 0),
                            "Reject accepted offset {expected} of {p} although the gate leaves \
                             no room"
                        );
                        self.values[p as usize].push(v);
                    }
                    Err(SendError::Full(back)) => {
                        assert_eq!(self.policy, OverflowPolicy::Reject, "Full under Block");
                        assert_eq!(back, v, "Full hands back the record");
                        assert_eq!(room.at, 0, "Reject refused {p} with room {room:?}");
                        self.rejected[p as usize] += 1;
                        self.rejected_total += 1;
                    }
                    Err(other) => panic!("send_to({p}): {other:?}"),
                }
                self.settle();
            }
        }

        fn publish_batch(&mut self, p: u32, n: u8) {
            let p = p % self.parts;
            let mut n = u64::from(n);
            let room = self.room(p);
            if self.policy == OverflowPolicy::Block {
                n = n.min(room.at);
                if n == 0 {
                    return;
                }
            }
            let vals: Vec<u64> = (0..n).map(|_| self.next_value()).collect();
            self.attempted += n;
            let first = self.published(p);
            step(|| format!("journaled send_batch_to({p}, {n} records) room {room:?}"));
            let accepted = match self.producer.send_batch_to(p, &vals) {
                Ok(off) => {
                    assert_eq!(off, first, "batch starts at the next offset");
                    n
                }
                Err(BatchSendError::Ring(BatchError::Full { accepted })) => {
                    assert_eq!(self.policy, OverflowPolicy::Reject);
                    accepted as u64
                }
                Err(other) => panic!("send_batch_to({p}): {other:?}"),
            };
            if self.policy == OverflowPolicy::Reject {
                assert!(
                    accepted >= n.min(room.at),
                    "Reject batch took {accepted} of {n} with room {room:?}"
                );
                // With no member the journaller's gate is the only one, and
                // it moves on the journaller's thread. A batch longer than
                // the room is claimed a ring at a time (`publish_slice`),
                // re-reading the gates before each claim; between two claims
                // the journaller may write the records of the first and move
                // its gate, so more than `room` may fit (never fewer). With a
                // member the group's gate is the lowest (the journaller's is
                // at `published`) and moves only on this thread, so the room
                // it leaves stays exact for the whole batch.
                let exact = room.exact && !(self.cluster.is_empty() && n > room.at);
                if exact {
                    assert_eq!(accepted, n.min(room.at), "Reject batch with room {room:?}");
                }
                self.rejected[p as usize] += n - accepted;
                self.rejected_total += n - accepted;
            }
            self.values[p as usize].extend_from_slice(&vals[..accepted as usize]);
            self.settle();
        }

        // ----- consumer side -----

        fn join(&mut self, auto_commit: bool, wait: u8, then_poll: Option<usize>) {
            let was_empty = self.cluster.is_empty();
            self.exactly &= auto_commit;
            let cfg = ConsumerConfig::cluster(CLUSTER)
                .auto_commit(auto_commit)
                .wait(wait_of(wait));
            let mut c = self.engine.consumer(cfg).unwrap();
            step(|| "journaled join".into());
            c.subscribe(&[TOPIC]).unwrap();
            if was_empty {
                // The gate is attached again at the committed offset, or
                // where the ring still protects records (from the ring's
                // start up to what was published): exactly the floor when
                // nothing was published in this run or the group had read
                // everything.
                for p in 0..self.parts {
                    let published = self.published(p);
                    self.gate_exact[p as usize] = published == self.start[p as usize]
                        || self.committed[p as usize] == published;
                }
            }
            self.next_name += 1;
            let mut m = JMember {
                name: self.next_name,
                c,
                auto_commit,
                owned: BTreeSet::new(),
                cursor: BTreeMap::new(),
                delivered: 0,
            };
            self.observe_assignment(&mut m);
            if was_empty {
                assert_eq!(
                    m.owned.len() as u32,
                    self.parts,
                    "a sole member reads everything"
                );
            }
            self.crosscheck(&m);
            self.cluster.push(m);
            if let Some(max) = then_poll {
                self.poll(self.cluster.len() - 1, max);
            }
        }

        /// A newly taken partition starts at the group's committed offset.
        fn observe_assignment(&self, m: &mut JMember) {
            let now: BTreeSet<u32> =
                m.c.assignment()
                    .iter()
                    .map(|tp| {
                        assert_eq!(tp.topic, self.tid);
                        tp.partition
                    })
                    .collect();
            for p in m.owned.difference(&now) {
                m.cursor.remove(p);
            }
            for &p in now.difference(&m.owned) {
                m.cursor.insert(p, self.committed[p as usize]);
            }
            m.owned = now;
        }

        /// `commit_one` for every owned partition: the committed offset and
        /// the gate move up to the position.
        fn commit_model(&mut self, m: &JMember) {
            for &p in &m.owned {
                let cur = m.cursor[&p];
                let i = p as usize;
                assert!(
                    cur >= self.committed[i],
                    "model: member {} position {cur} below committed {} in {p}",
                    m.name,
                    self.committed[i]
                );
                self.committed[i] = cur;
                // The gate never passes what was published: a commit of
                // everything puts it exactly there.
                if cur == self.published(p) {
                    self.gate_exact[i] = true;
                }
            }
        }

        fn poll(&mut self, i: usize, max: usize) -> bool {
            let mut m = self.cluster.remove(i);
            if m.auto_commit {
                self.commit_model(&m);
            }
            step(|| format!("journaled poll({max}) by member {}", m.name));
            let (recs, missed) = match poll_either(&mut m.c, max) {
                Ok(got) => got,
                Err(e) => panic!("poll by member {}: {e:?}", m.name),
            };
            self.observe_assignment(&mut m);
            assert_eq!(missed, 0, "member {}: the journal keeps everything", m.name);
            assert!(recs.len() <= max, "poll({max}) returned {}", recs.len());
            for r in &recs {
                assert_eq!(r.topic, self.tid);
                let p = r.partition;
                assert!(
                    m.owned.contains(&p),
                    "member {} got {p}/{} but reads {:?}",
                    m.name,
                    r.offset,
                    m.owned
                );
                let vals = &self.values[p as usize];
                assert!(
                    r.offset < vals.len() as u64,
                    "member {} got unpublished offset {p}/{} (published {})",
                    m.name,
                    r.offset,
                    vals.len()
                );
                assert_eq!(
                    r.value, vals[r.offset as usize],
                    "member {} got the wrong value at {p}/{} (restart {})",
                    m.name, r.offset, self.restarts
                );
                let pos = m
                    .cursor
                    .get_mut(&p)
                    .expect("owned partitions have a cursor");
                assert_eq!(
                    r.offset, *pos,
                    "member {} read {p}/{} at position {pos}",
                    m.name, r.offset
                );
                *pos += 1;
                *self.seen.entry((p, r.offset)).or_default() += 1;
            }
            m.delivered += recs.len() as u64;
            self.run_delivered += recs.len() as u64;
            assert_eq!(
                m.c.delivered(),
                m.delivered,
                "member {} delivered()",
                m.name
            );
            assert_eq!(m.c.missed(), 0, "member {} missed()", m.name);
            if recs.is_empty() {
                for &p in &m.owned {
                    assert_eq!(
                        m.cursor[&p],
                        self.published(p),
                        "member {}: an empty poll left {p} behind",
                        m.name
                    );
                }
            }
            self.crosscheck(&m);
            self.cluster.insert(i, m);
            !recs.is_empty()
        }

        fn commit(&mut self, i: usize) {
            let mut m = self.cluster.remove(i);
            step(|| format!("journaled commit by member {}", m.name));
            m.c.commit();
            self.commit_model(&m);
            self.crosscheck(&m);
            self.cluster.insert(i, m);
        }

        fn seek(&mut self, i: usize, p: u32, back: Option<u16>) {
            let mut m = self.cluster.remove(i);
            let p = p % self.parts;
            step(|| format!("journaled seek {back:?} on {p} by member {}", m.name));
            let latest = self.published(p);
            if !m.owned.contains(&p) {
                let res = m.c.seek(TOPIC, p, 0);
                assert!(
                    matches!(res, Err(ConsumerError::NotAssigned { .. })),
                    "seek on {p}, not read by member {}: {res:?}",
                    m.name
                );
            } else if let Some(x) = back {
                let cur = m.cursor[&p];
                let to = u64::from(x) % (cur + 1);
                let res = m.c.seek(TOPIC, p, to);
                assert_eq!(
                    res,
                    Ok(()),
                    "seek back to {p}/{to} (position {cur}, ring from {}) must read the journal",
                    self.engine.offsets(TOPIC).unwrap()[p as usize].ring_earliest
                );
                let i = p as usize;
                if !(self.gate_exact[i] && to >= self.gate_floor(p)) {
                    self.gate_exact[i] = false;
                }
                self.committed[i] = self.committed[i].min(to);
                self.exactly &= to == cur;
                m.cursor.insert(p, to);
            } else {
                let to = latest + 1;
                match m.c.seek(TOPIC, p, to) {
                    Err(ConsumerError::OffsetOutOfRange {
                        topic,
                        partition,
                        requested,
                        earliest,
                        latest: l,
                    }) => {
                        assert_eq!(topic, TOPIC);
                        assert_eq!((partition, requested), (p, to));
                        assert_eq!((earliest, l), (0, latest), "the window named");
                    }
                    other => panic!("seek {p}/{to} past the latest {latest}: {other:?}"),
                }
            }
            self.crosscheck(&m);
            self.cluster.insert(i, m);
        }

        fn leave(&mut self, i: usize, crash: bool) {
            let m = self.cluster.remove(i);
            step(|| format!("journaled member {} leaves (crash: {crash})", m.name));
            if crash {
                self.exactly = false;
                drop(m.c);
            } else {
                if m.auto_commit {
                    self.commit_model(&m);
                }
                m.c.close();
            }
        }

        // ----- restart -----

        /// A fresh group from the earliest reads every published record with
        /// its value, each partition contiguously from 0.
        fn audit(&mut self) {
            self.audits += 1;
            let group = format!("audit-{}", self.audits);
            step(|| format!("journaled {group} (restart {})", self.restarts));
            let mut c = self
                .engine
                .consumer(
                    ConsumerConfig::cluster(&group)
                        .offset_reset(OffsetReset::Earliest)
                        .wait(WaitStrategy::SpinYield),
                )
                .unwrap();
            c.subscribe(&[TOPIC]).unwrap();
            let mut next = vec![0u64; self.parts as usize];
            let mut got = 0;
            while got < self.total() {
                let b = c.poll(64, NOW).unwrap();
                assert_eq!(b.missed(), 0, "{group}");
                assert!(
                    !b.is_empty(),
                    "{group}: read {got} of {} records, then nothing (at {next:?})",
                    self.total()
                );
                for r in b.iter() {
                    let p = r.partition as usize;
                    assert_eq!(r.offset, next[p], "{group}: partition {p}");
                    assert_eq!(
                        r.value, self.values[p][r.offset as usize],
                        "{group}: the value at {p}/{} (restart {})",
                        r.offset, self.restarts
                    );
                    next[p] += 1;
                    got += 1;
                }
            }
            assert!(
                c.poll(64, NOW).unwrap().is_empty(),
                "{group}: more than published"
            );
            c.close();
        }

        fn restart(&mut self, crash_members: bool) {
            self.restarts += 1;
            step(|| format!("journaled restart {}", self.restarts));
            let rejoin: Vec<bool> = self.cluster.iter().map(|m| m.auto_commit).collect();
            while !self.cluster.is_empty() {
                self.leave(0, crash_members);
            }
            self.check_global();
            self.engine.close();
            let s = self.engine.journal_stats().unwrap();
            assert_eq!(s.recovered, self.recovered, "{s:?}");
            assert_eq!(s.written, self.total() - self.recovered, "{s:?}");
            assert_eq!(
                (s.truncated, s.abandoned, s.write_errors),
                (0, 0, 0),
                "{s:?}"
            );
            assert_eq!(self.producer.send_to(0, 7), Err(SendError::Closed(7)));
            // Closed: the directory can be opened again while the old handle
            // still exists.
            let (engine, tid) = open(&self.journal, self.topic);
            drop(std::mem::replace(&mut self.engine, engine));
            assert_eq!(tid, self.tid);
            let s = self.engine.journal_stats().unwrap();
            assert_eq!(
                (s.recovered, s.truncated),
                (self.total(), 0),
                "recovery in {}",
                self.dir().display()
            );
            self.recovered = self.total();
            self.logs = self.engine.journal_logs(TOPIC).unwrap().expect("journaled");
            self.producer = self.engine.producer(TOPIC).unwrap();
            for p in 0..self.parts {
                self.start[p as usize] = self.published(p);
                self.rejected[p as usize] = 0;
            }
            self.run_delivered = 0;
            self.settle();
            self.check_global();
            self.audit();
            self.check_global();
            // The group resumes at its committed offsets: `join` checks the
            // new members' positions and committed offsets against them.
            for ac in rejoin {
                self.join(ac, 2, None);
            }
        }

        // ----- cross-checks -----

        fn crosscheck(&self, m: &JMember) {
            for &p in &m.owned {
                let real = m.c.position(TOPIC, p).unwrap();
                assert_eq!(real, m.cursor[&p], "member {} position of {p}", m.name);
                let committed = m.c.committed(TOPIC, p).unwrap();
                assert_eq!(
                    committed, self.committed[p as usize],
                    "member {} committed of {p} (restart {})",
                    m.name, self.restarts
                );
            }
        }

        fn check_global(&self) {
            let mut owners: BTreeMap<u32, usize> = BTreeMap::new();
            for m in &self.cluster {
                for &p in &m.owned {
                    if let Some(other) = owners.insert(p, m.name) {
                        panic!(
                            "partition {p} read by members {other} and {} at once",
                            m.name
                        );
                    }
                }
            }
            if let Some(g) = self.engine.group_stats(CLUSTER) {
                assert_eq!(g.delivered, self.run_delivered, "cluster group delivered");
                assert_eq!(g.missed, 0, "cluster group missed");
                assert_eq!(g.members, self.cluster.len());
            } else {
                assert!(self.cluster.is_empty() && self.run_delivered == 0);
            }
            let offsets = self.engine.offsets(TOPIC).unwrap();
            for (p, o) in offsets.iter().enumerate() {
                let latest = self.values[p].len() as u64;
                assert_eq!(o.latest, latest, "latest of {p}");
                assert_eq!(o.earliest, 0, "earliest of {p}: the journal has everything");
                assert_eq!(
                    o.ring_earliest,
                    latest.saturating_sub(self.cap).max(self.start[p]),
                    "ring_earliest of {p}"
                );
                assert_eq!(o.rejected, self.rejected[p], "rejected of {p}");
                assert_eq!(self.logs[p].durable(), latest, "durable of {p}");
            }
            assert_eq!(self.engine.published(TOPIC).unwrap(), self.total());
            let s = self.engine.journal_stats().unwrap();
            assert_eq!(s.written, self.total() - self.recovered, "{s:?}");
        }

        fn apply(&mut self, op: &JOp) {
            let pick =
                |w: &Self, who: usize| (!w.cluster.is_empty()).then(|| who % w.cluster.len());
            match op {
                JOp::Publish { p, n } => self.publish(*p, *n),
                JOp::Batch { p, n } => self.publish_batch(*p, *n),
                JOp::Poll { who, max } => {
                    if let Some(i) = pick(self, *who) {
                        self.poll(i, *max);
                    }
                }
                JOp::Commit { who } => {
                    if let Some(i) = pick(self, *who) {
                        self.commit(i);
                    }
                }
                JOp::Seek { who, p, back } => {
                    if let Some(i) = pick(self, *who) {
                        self.seek(i, *p, *back);
                    }
                }
                JOp::Join {
                    auto_commit,
                    wait,
                    then_poll,
                } => self.join(*auto_commit, *wait, *then_poll),
                JOp::Leave { who } | JOp::Crash { who } => {
                    if let Some(i) = pick(self, *who) {
                        self.leave(i, matches!(op, JOp::Crash { .. }));
                    }
                }
                JOp::Restart { crash_members } => self.restart(*crash_members),
            }
            self.check_global();
        }

        fn drain(&mut self) {
            for _ in 0..1000 {
                let mut busy = false;
                for i in 0..self.cluster.len() {
                    busy |= self.poll(i, 64);
                }
                self.check_global();
                let pending = self.cluster.iter().any(|m| m.c.has_pending());
                let owned: usize = self.cluster.iter().map(|m| m.owned.len()).sum();
                let covered = self.cluster.is_empty() || owned == self.parts as usize;
                if !busy && !pending && covered {
                    return;
                }
            }
            panic!("drain did not settle");
        }

        fn finish(mut self) {
            self.drain();
            self.audit();
            self.restart(false);
            self.drain();
            while !self.cluster.is_empty() {
                self.leave(0, false);
                self.check_global();
            }
            self.join(true, 0, None);
            self.drain();
            for (p, vals) in self.values.iter().enumerate() {
                for o in 0..vals.len() as u64 {
                    let n = self.seen.get(&(p as u32, o)).copied().unwrap_or(0);
                    if self.exactly {
                        assert_eq!(n, 1, "cluster group: {p}/{o} delivered {n} times");
                    } else {
                        assert!(n >= 1, "cluster group: {p}/{o} never delivered");
                    }
                }
            }
            assert_eq!(
                self.attempted,
                self.total() + self.rejected_total,
                "accepted + rejected == attempted"
            );
            self.engine.close();
            let mut m = self.cluster.pop().unwrap();
            assert_eq!(
                m.c.poll(1, NOW).map(|b| b.len()),
                Err(ConsumerError::EngineClosed),
                "member {} after close",
                m.name
            );
            assert_eq!(self.producer.send_to(0, 7), Err(SendError::Closed(7)));
        }
    }

    fn run(s: JSchedule) {
        start_watchdog();
        let mut w = JWorld::new(&s);
        for op in &s.ops {
            w.apply(op);
        }
        w.finish();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        /// A journaled Block/Reject topic with restarts: value integrity
        /// and continuity across the journal and the ring, exact committed
        /// offsets across restarts, everything recovered, at least once
        /// (exactly once without crashes, manual commits or seeks back).
        #[test]
        fn journaled_restarts_keep_records_offsets_and_commits(s in jschedule()) {
            run(s);
        }
    }

    /// A fixed schedule: the group is empty while records are published,
    /// then restarts twice, a member without auto-commit seeks back below
    /// the ring, so it reads the journal, then the ring.
    #[test]
    fn journaled_fixed_schedule_reads_back_across_restarts() {
        let ops = vec![
            JOp::Batch { p: 0, n: 20 },
            JOp::Poll { who: 0, max: 8 },
            JOp::Leave { who: 0 },
            JOp::Batch { p: 0, n: 40 },
            JOp::Publish { p: 1, n: 3 },
            JOp::Restart {
                crash_members: false,
            },
            JOp::Join {
                auto_commit: false,
                wait: 1,
                then_poll: Some(5),
            },
            JOp::Batch { p: 0, n: 10 },
            JOp::Poll { who: 0, max: 64 },
            JOp::Seek {
                who: 0,
                p: 0,
                back: Some(3),
            },
            JOp::Poll { who: 0, max: 64 },
            JOp::Commit { who: 0 },
            JOp::Restart {
                crash_members: true,
            },
            JOp::Poll { who: 0, max: 64 },
        ];
        for policy in GATED {
            run(JSchedule {
                partitions: 2,
                capacity: 8,
                policy,
                layout: SlotLayout::Packed,
                fsync: FsyncPolicy::Never,
                segment_bytes: 4096,
                batch_records: 3,
                ops: ops.clone(),
            });
        }
    }
}
