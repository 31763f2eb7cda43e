//! The consumer: one member of a group, with Kafka's API.
//!
//! `subscribe` replaces the subscription (keeping the offsets of topics that
//! stay), `poll` returns a batch of records each carrying topic, partition
//! and offset, and `seek`, `commit` and `close` do what Kafka's do. With
//! auto-commit (the default) each `poll` first commits what the previous
//! `poll` returned, as Kafka's `enable.auto.commit` does.
//!
//! - this file: the member itself, its lifecycle (join, close, drop) and its
//!   offsets (`commit`, `seek`, `position`, `lag`);
//! - [`membership`]: `subscribe`, and partitions taken and handed back;
//! - [`poll`]: `poll`, the batch it returns and the fetch gathering;
//! - [`runs`]: `poll_with`, which lends the records in place instead.

mod membership;
mod poll;
mod runs;

pub use poll::{Batch, Record, MAX_POLL_RECORDS};
pub use runs::{Run, RunIter, Runs};

use std::sync::atomic::Ordering;

use super::{Committed, ConsumerConfig, Group, GroupMode, MemberEntry, MemberStats};
use crate::error::ConsumerError;
use crate::ring::{Cursor, GateId, Ring};
use crate::sync::Arc;
use crate::topic::{Topic, TopicId, TopicPartition, TopicRegistry};

/// A partition this member reads now. Aligned to 128 bytes: its cursor is
/// written on every poll.
///
/// Normally the cursor is at or past the gate and records come from the
/// ring. While `replaying`, the cursor is below what the ring holds and
/// records come from the journal ([`poll`]); the gate waits where the ring
/// starts to hold them, and each poll first tries to move it back to the
/// cursor (the join handshake), which ends the replay.
#[repr(align(128))]
struct Owned<T: Copy + Send + 'static> {
    tp: TopicPartition,
    ring: Arc<Ring<T>>,
    cursor: Cursor,
    gate: GateId,
    committed: Committed,
    replaying: bool,
    #[cfg(feature = "journal")]
    log: Option<(crate::journal::LogReader, crate::journal::Codec<T>)>,
}

impl<T: Copy + Send + 'static> Owned<T> {
    /// Reads partition `tp` of `topic` from `pos` on, holding `gate`.
    fn new(
        tp: TopicPartition,
        topic: &Topic<T>,
        gate: GateId,
        pos: u64,
        committed: Committed,
    ) -> Self {
        let ring = topic.partitions[tp.partition as usize].clone();
        let replaying = pos < ring.gate_position(gate);
        Self {
            tp,
            cursor: Cursor::at(pos),
            gate,
            committed,
            replaying,
            #[cfg(feature = "journal")]
            log: topic.journal.as_ref().map(|j| {
                (
                    crate::journal::LogReader::new(j.logs[tp.partition as usize].clone()),
                    j.codec,
                )
            }),
            ring,
        }
    }
}

/// One member of a consumer group. `Send`; use it from one thread at a time.
///
/// Dropping it without [`Consumer::close`] is treated as a crash: it leaves
/// the group without committing, so its last polled records are delivered
/// again to whoever takes its partitions (at-least-once).
pub struct Consumer<T: Copy + Send + 'static> {
    topics: std::sync::Arc<TopicRegistry<T>>,
    group: std::sync::Arc<Group<T>>,
    config: ConsumerConfig,
    id: u64,
    generation: u64,
    subscription: Vec<TopicId>,
    owned: Vec<Owned<T>>,
    /// Cluster: assigned partitions still held by their previous owner.
    pending: Vec<TopicPartition>,
    buf: Vec<Record<T>>,
    /// The runs of the last `poll_with`, and the records it copied.
    runs: Vec<runs::RunDesc>,
    scratch: Vec<T>,
    stats: std::sync::Arc<MemberStats>,
    rr: usize,
    closed: bool,
    /// Missed records learnt outside `poll` (taking over a partition).
    pending_missed: u64,
}

impl<T: Copy + Send + 'static> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("group", &self.config.group)
            .field("member", &self.id)
            .field("assignment", &self.assignment())
            .finish_non_exhaustive()
    }
}

impl<T: Copy + Send + 'static> Consumer<T> {
    pub(crate) fn join(
        topics: std::sync::Arc<TopicRegistry<T>>,
        group: std::sync::Arc<Group<T>>,
        config: ConsumerConfig,
    ) -> Self {
        let id = group.next_member.fetch_add(1, Ordering::Relaxed);
        let stats = std::sync::Arc::new(MemberStats::default());
        group.lock().members.insert(
            id,
            MemberEntry {
                subscription: Vec::new(),
                assignment: Vec::new(),
                stats: stats.clone(),
            },
        );
        Self {
            topics,
            group,
            config,
            id,
            generation: u64::MAX,
            subscription: Vec::new(),
            owned: Vec::new(),
            pending: Vec::new(),
            buf: Vec::new(),
            runs: Vec::new(),
            scratch: Vec::new(),
            stats,
            rr: 0,
            closed: false,
            pending_missed: 0,
        }
    }

    /// This member's id (unique in its group).
    pub fn member_id(&self) -> u64 {
        self.id
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.config.group
    }

    /// The group's mode.
    pub fn mode(&self) -> GroupMode {
        self.config.mode
    }

    /// The generation this member last synced to.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Records delivered to this member.
    pub fn delivered(&self) -> u64 {
        self.stats.delivered.load(Ordering::Relaxed)
    }

    /// Records this member was told it missed.
    pub fn missed(&self) -> u64 {
        self.stats.missed.load(Ordering::Relaxed)
    }

    /// The partitions this member reads now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        let mut v: Vec<_> = self.owned.iter().map(|o| o.tp).collect();
        v.sort();
        v
    }

    /// Commits the position of every partition read now: everything returned
    /// by `poll` so far counts as processed.
    pub fn commit(&mut self) {
        for o in &self.owned {
            Self::commit_one(o);
        }
    }

    fn find_owned(&self, topic: &str, partition: u32) -> Result<usize, ConsumerError> {
        let tid = self
            .topics
            .id(topic)
            .ok_or_else(|| ConsumerError::UnknownTopic {
                topic: topic.to_owned(),
                known: self.topics.names_joined(),
            })?;
        let partitions = self.topics.partition_count(tid);
        if partition >= partitions {
            return Err(ConsumerError::NoSuchPartition {
                topic: topic.to_owned(),
                partition,
                partitions,
            });
        }
        self.owned
            .iter()
            .position(|o| o.tp.topic == tid && o.tp.partition == partition)
            .ok_or_else(|| ConsumerError::NotAssigned {
                topic: topic.to_owned(),
                partition,
                assigned: self
                    .owned
                    .iter()
                    .map(|o| format!("{}/{}", self.topics.name(o.tp.topic), o.tp.partition))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Moves the read position of a partition this member reads to
    /// `offset`. Offsets from the oldest held (in the journal, for a
    /// journaled topic) up to the next to be written are valid; others are
    /// an [`ConsumerError::OffsetOutOfRange`] naming the valid range.
    /// Seeking before the committed offset moves the committed offset back
    /// with it (the records must stay readable for this reader).
    pub fn seek(&mut self, topic: &str, partition: u32, offset: u64) -> Result<(), ConsumerError> {
        if self.closed {
            return Err(ConsumerError::Closed);
        }
        let i = self.find_owned(topic, partition)?;
        let t = self.topics.snapshot()[self.owned[i].tp.topic.0 as usize].clone();
        let o = &mut self.owned[i];
        let latest = o.ring.published();
        let replayable = t.replayable_from(partition as usize);
        let earliest = replayable.map_or(o.ring.earliest(), |e| e.min(o.ring.earliest()));
        let out_of_range = |earliest: u64| ConsumerError::OffsetOutOfRange {
            topic: topic.to_owned(),
            partition,
            requested: offset,
            earliest,
            latest,
        };
        if offset > latest || offset < earliest {
            return Err(out_of_range(earliest));
        }
        let mut replaying = false;
        if offset < o.ring.gate_position(o.gate) {
            if let Err(floor) = o.ring.rewind_gate(o.gate, offset) {
                match replayable {
                    // Older than the ring: read it back from the journal.
                    Some(from) if offset >= from => replaying = true,
                    _ => return Err(out_of_range(floor.min(latest))),
                }
            }
        }
        if offset < o.committed.load(Ordering::Relaxed) {
            o.committed.store(offset, Ordering::Relaxed);
        }
        o.cursor = Cursor::at(offset);
        o.replaying = replaying;
        Ok(())
    }

    /// The next offset this member reads in a partition it reads now.
    pub fn position(&self, topic: &str, partition: u32) -> Result<u64, ConsumerError> {
        let i = self.find_owned(topic, partition)?;
        Ok(self.owned[i].cursor.position())
    }

    /// The committed offset (next to read) of a partition it reads now.
    pub fn committed(&self, topic: &str, partition: u32) -> Result<u64, ConsumerError> {
        let i = self.find_owned(topic, partition)?;
        let c = self.owned[i].committed.load(Ordering::Relaxed);
        Ok(if c == super::NO_COMMIT {
            self.owned[i].ring.gate_position(self.owned[i].gate)
        } else {
            c
        })
    }

    /// Records published but not yet read, over the partitions read now.
    pub fn lag(&self) -> u64 {
        self.owned
            .iter()
            .map(|o| o.ring.published().saturating_sub(o.cursor.position()))
            .sum()
    }

    /// Whether this member has assigned partitions it cannot read yet
    /// (their previous owner has not let go).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Leaves the group gracefully: commits (with auto-commit) and hands the
    /// partitions back. Further calls return [`ConsumerError::Closed`].
    pub fn close(mut self) {
        self.leave(self.config.auto_commit);
    }

    fn leave(&mut self, commit: bool) {
        if self.closed {
            return;
        }
        self.closed = true;
        let topics = self.topics.snapshot();
        let group = self.group.clone();
        let mut st = group.lock();
        let owned = std::mem::take(&mut self.owned);
        for o in owned {
            if let Some(gp) = st.parts.get_mut(&o.tp) {
                if gp.owner == Some(self.id) {
                    gp.owner = None;
                }
            }
            self.release(o, commit);
        }
        if let Some(m) = st.members.remove(&self.id) {
            st.left_delivered += m.stats.delivered.load(Ordering::Relaxed);
            st.left_missed += m.stats.missed.load(Ordering::Relaxed);
        }
        if group.mode == GroupMode::Cluster {
            // Cannot fail: leaving only detaches gates.
            let _ = group.rebalance(&mut st, &topics, self.config.offset_reset);
        }
    }
}

impl<T: Copy + Send + 'static> Drop for Consumer<T> {
    fn drop(&mut self) {
        // Not closed: a crash. Leave without committing (at-least-once).
        self.leave(false);
    }
}
