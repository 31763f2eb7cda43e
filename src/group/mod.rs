//! Consumer groups: membership, partition assignment and committed offsets.
//!
//! A group is either
//! - **cluster**: each partition of the subscribed topics is owned by exactly
//!   one live member at a time, so each record goes to one member; or
//! - **broadcast**: every member reads every partition of its topics.
//!
//! # Offsets and gates
//!
//! In a cluster group the *committed offset* of a partition (the next offset
//! to read) is the group's gate in that partition's ring: under `Block` the
//! writer waits for it, so records not yet committed are never overwritten and
//! a new owner can always resume from it (at-least-once). The gate is attached
//! while at least one member subscribes to the topic. When no member does (the
//! group is empty), the gate is detached and the committed offset parked in
//! the group: writers are no longer held back by a group nobody reads. When a
//! member subscribes again, the gate is re-attached at the committed offset,
//! or, if the writer has since reused those slots, at the oldest protected
//! offset, and the gap is reported to the new owner as missed records.
//!
//! A broadcast member has its own gate per partition (its own committed
//! position), attached when it subscribes and detached when it leaves.
//!
//! # Rebalancing
//!
//! Membership changes (join, subscribe, leave, close, crash) run under the
//! group's mutex, recompute the assignment and bump the generation. Members
//! compare the generation (one `Acquire` load) at each poll and, when it moved,
//! release the partitions they lost (committing first if auto-commit is on)
//! and take the ones they gained. A partition moves only after its previous
//! owner released it, so ownership is exclusive. A member that crashes (its
//! consumer is dropped without `close`) releases without committing, so the
//! records it had polled are delivered again to the next owner.

mod assign;
mod config;
pub mod consumer;

use crossbeam_utils::CachePadded;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::ConsumerError;
use crate::ring::{GateId, Ring};
use crate::sync::Arc;
use crate::topic::{Topic, TopicId, TopicPartition};

pub use config::{ConsumerConfig, OffsetReset};
pub use consumer::{Batch, Consumer, Record, Run, RunIter, Runs, MAX_POLL_RECORDS};

/// How a group shares records among its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupMode {
    /// Each record goes to one member (partitions divided among members).
    #[default]
    Cluster,
    /// Every member sees every record.
    Broadcast,
}

/// Delivery counters of one member, written only by that member on every
/// poll. Aligned to 128 bytes (two lines, for the adjacent-line prefetcher)
/// so that members polling on other cores never share its line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct MemberStats {
    pub(crate) delivered: AtomicU64,
    pub(crate) missed: AtomicU64,
}

impl MemberStats {
    #[inline]
    pub(crate) fn add(&self, delivered: u64, missed: u64) {
        // Single writer: a load and a store, no read-modify-write needed.
        if delivered > 0 {
            let d = &self.delivered;
            d.store(d.load(Ordering::Relaxed) + delivered, Ordering::Relaxed);
        }
        if missed > 0 {
            let m = &self.missed;
            m.store(m.load(Ordering::Relaxed) + missed, Ordering::Relaxed);
        }
    }
}

/// Totals of a group: live members plus those that left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupStats {
    /// Records handed to members by `poll`.
    pub delivered: u64,
    /// Records reported missed (lapped under `Overwrite`, or lost while the
    /// group had no members).
    pub missed: u64,
    /// Live members.
    pub members: usize,
    /// Rebalances so far.
    pub generation: u64,
}

pub(crate) struct MemberEntry {
    pub(crate) subscription: Vec<TopicId>,
    pub(crate) assignment: Vec<TopicPartition>,
    pub(crate) stats: std::sync::Arc<MemberStats>,
}

/// No offset committed yet (a [`Committed`] value).
pub(crate) const NO_COMMIT: u64 = u64::MAX;

/// A committed offset, shared by the group and the member that owns the
/// partition now (which alone stores it, on every poll with auto-commit);
/// [`NO_COMMIT`] before the first. Cache-padded: the committed offsets of
/// partitions read on other cores never share a line with it.
pub(crate) type Committed = std::sync::Arc<CachePadded<AtomicU64>>;

/// A new [`Committed`] holding `offset`.
pub(crate) fn committed(offset: u64) -> Committed {
    std::sync::Arc::new(CachePadded::new(AtomicU64::new(offset)))
}

/// Cluster-group state of one partition.
pub(crate) struct GroupPartition<T> {
    pub(crate) ring: Arc<Ring<T>>,
    pub(crate) gate: Option<GateId>,
    /// The committed offset. Equal to the gate's position, except while
    /// the owner reads records older than the ring from the journal: the
    /// gate then waits at the ring's oldest record and the commit trails.
    pub(crate) committed: Committed,
    pub(crate) owner: Option<u64>,
    /// Records lost while the gate was detached, for the next owner to report.
    pub(crate) missed_at_join: u64,
}

pub(crate) struct GroupState<T> {
    pub(crate) members: BTreeMap<u64, MemberEntry>,
    pub(crate) parts: HashMap<TopicPartition, GroupPartition<T>>,
    pub(crate) left_delivered: u64,
    pub(crate) left_missed: u64,
    /// Offsets committed by an earlier run (the journal), by topic name and
    /// partition: where a partition starts the first time the group reads it.
    pub(crate) stored: HashMap<(String, u32), u64>,
}

/// A consumer group.
pub(crate) struct Group<T> {
    pub(crate) mode: GroupMode,
    pub(crate) generation: AtomicU64,
    /// Next member id; ids are unique within the group.
    pub(crate) next_member: AtomicU64,
    pub(crate) state: Mutex<GroupState<T>>,
}

/// Where a new reader of partition `p` of `topic` starts when there is no
/// committed offset: the oldest record (in the journal, for a journaled
/// topic) or the next one.
pub(crate) fn reset_position<T: Copy + Send>(
    topic: &Topic<T>,
    p: usize,
    reset: OffsetReset,
) -> u64 {
    let ring = &topic.partitions[p];
    match reset {
        OffsetReset::Earliest => topic.earliest(p, ring),
        OffsetReset::Latest => ring.published(),
    }
}

/// The committed offsets of every cluster group of an engine, by name (the
/// journal saves them).
#[cfg(feature = "journal")]
pub(crate) fn commits_of<T: Copy + Send>(
    topics: &crate::topic::TopicRegistry<T>,
    groups: &Mutex<HashMap<String, std::sync::Arc<Group<T>>>>,
) -> crate::journal::Commits {
    let groups: Vec<_> = {
        let g = groups.lock().unwrap_or_else(|e| e.into_inner());
        g.iter().map(|(n, g)| (n.clone(), g.clone())).collect()
    };
    let mut out = crate::journal::Commits::new();
    for (name, g) in groups {
        if g.mode != GroupMode::Cluster {
            continue;
        }
        let st = g.lock();
        for (tp, gp) in &st.parts {
            let c = gp.committed.load(Ordering::Relaxed);
            if c == NO_COMMIT {
                continue;
            }
            out.entry(name.clone())
                .or_default()
                .entry(topics.name(tp.topic).to_string())
                .or_default()
                .insert(tp.partition, c);
        }
    }
    out
}

impl<T: Copy + Send> Group<T> {
    pub(crate) fn new(mode: GroupMode, stored: HashMap<(String, u32), u64>) -> Self {
        Self {
            mode,
            generation: AtomicU64::new(0),
            next_member: AtomicU64::new(1),
            state: Mutex::new(GroupState {
                members: BTreeMap::new(),
                parts: HashMap::new(),
                left_delivered: 0,
                left_missed: 0,
                stored,
            }),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, GroupState<T>> {
        // A member that panicked while holding the lock left the state
        // consistent (every mutation below completes or returns early).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stats(&self) -> GroupStats {
        let st = self.lock();
        let mut s = GroupStats {
            delivered: st.left_delivered,
            missed: st.left_missed,
            members: st.members.len(),
            generation: self.generation.load(Ordering::Relaxed),
        };
        for m in st.members.values() {
            s.delivered += m.stats.delivered.load(Ordering::Relaxed);
            s.missed += m.stats.missed.load(Ordering::Relaxed);
        }
        s
    }

    /// Cluster mode: re-attach or detach gates for the union of subscriptions,
    /// recompute the assignment and bump the generation. Under the lock.
    pub(crate) fn rebalance(
        &self,
        st: &mut GroupState<T>,
        topics: &[std::sync::Arc<Topic<T>>],
        reset: OffsetReset,
    ) -> Result<(), ConsumerError> {
        debug_assert_eq!(self.mode, GroupMode::Cluster);
        let union: BTreeSet<TopicId> = st
            .members
            .values()
            .flat_map(|m| m.subscription.iter().copied())
            .collect();
        // Detach the gates of topics nobody reads any more (the committed
        // offset stays in `committed`).
        for (tp, gp) in st.parts.iter_mut() {
            if !union.contains(&tp.topic) {
                if let Some(gate) = gp.gate.take() {
                    gp.ring.detach_gate(gate);
                }
            }
        }
        // Attach gates for the topics read now.
        for &tid in &union {
            let topic = &topics[tid.0 as usize];
            for (p, ring) in topic.partitions.iter().enumerate() {
                let tp = TopicPartition {
                    topic: tid,
                    partition: p as u32,
                };
                let stored = st.stored.get(&(topic.name.to_string(), p as u32)).copied();
                let gp = st.parts.entry(tp).or_insert_with(|| GroupPartition {
                    ring: ring.clone(),
                    gate: None,
                    committed: committed(stored.unwrap_or(NO_COMMIT)),
                    owner: None,
                    missed_at_join: 0,
                });
                if gp.gate.is_some() {
                    continue;
                }
                let known = gp.committed.load(Ordering::Relaxed);
                let want = if known == NO_COMMIT {
                    reset_position(topic, p, reset)
                } else if known > ring.published() {
                    // A commit saved past the journal's end (a power loss
                    // took the last interval of records, not the offsets
                    // file): resume at the end, as Kafka does past the log.
                    tracing::warn!(
                        topic = %topic.name,
                        partition = p,
                        committed = known,
                        end = ring.published(),
                        "committed offset past the end of the partition; resuming at the end"
                    );
                    ring.published()
                } else {
                    known
                };
                let (gate, start) =
                    ring.attach_gate(want)
                        .ok_or_else(|| ConsumerError::TooManyReaders {
                            topic: topic.name.to_string(),
                            max: ring.max_gates(),
                        })?;
                // Under Overwrite the writer ignores gates; the reader learns
                // of laps when it reads, so only the gated gap is counted here.
                // What the ring no longer holds the journal may: the owner
                // then reads it back from there ([`Topic::earliest`]).
                let start = start.max(want);
                let resume = match topic.replayable_from(p) {
                    Some(from) => want.max(from).min(start),
                    None => start,
                };
                if known != NO_COMMIT {
                    gp.missed_at_join += resume - want;
                }
                gp.committed.store(resume, Ordering::Relaxed);
                gp.gate = Some(gate);
            }
        }
        assign::round_robin(st, &union, topics);
        // Release: members that see the new generation (Acquire) see the new
        // assignment too (they read it under the mutex anyway).
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }
}
