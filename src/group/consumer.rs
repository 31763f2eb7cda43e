//! The consumer: one member of a group, with Kafka's API.
//!
//! `subscribe` replaces the subscription (keeping the offsets of topics that
//! stay), `poll` returns a batch of records each carrying topic, partition
//! and offset, and `seek`, `commit` and `close` do what Kafka's do. With
//! auto-commit (the default) each `poll` first commits what the previous
//! `poll` returned, as Kafka's `enable.auto.commit` does.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{reset_position, Group, GroupMode, MemberEntry, MemberStats};
use crate::error::ConsumerError;
use crate::ring::{wait_until, Cursor, GateId, Ring, WaitStrategy, Wakeable};
use crate::sync::Arc;
use crate::topic::{TopicId, TopicPartition, TopicRegistry};

/// A record handed out by [`Consumer::poll`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record<T> {
    /// Topic it was published to.
    pub topic: TopicId,
    /// Partition within the topic.
    pub partition: u32,
    /// Offset within the partition.
    pub offset: u64,
    /// The record.
    pub value: T,
}

/// Where a reader starts when its group has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// Oldest record still held in the ring.
    #[default]
    Earliest,
    /// The next record published.
    Latest,
}

/// How to create a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Group name.
    pub group: String,
    /// Cluster or broadcast.
    pub mode: GroupMode,
    /// How `poll` waits when nothing is available.
    pub wait: WaitStrategy,
    /// Start position without a committed offset.
    pub offset_reset: OffsetReset,
    /// Commit on each `poll` what the previous `poll` returned.
    pub auto_commit: bool,
    /// Records a `poll` tries to gather before it returns (Kafka's
    /// `fetch.min.bytes`, counted in records); 1 returns whatever is there.
    pub fetch_min: usize,
    /// Longest a `poll` that has found records but fewer than `fetch_min`
    /// waits for more (Kafka's `fetch.max.wait.ms`).
    pub fetch_max_wait: Duration,
}

impl ConsumerConfig {
    /// A cluster-group member with the default settings (park, earliest,
    /// auto-commit).
    pub fn cluster(group: &str) -> Self {
        Self {
            group: group.to_owned(),
            mode: GroupMode::Cluster,
            wait: WaitStrategy::default(),
            offset_reset: OffsetReset::default(),
            auto_commit: true,
            fetch_min: 1,
            fetch_max_wait: Duration::ZERO,
        }
    }

    /// A broadcast-group member with the default settings.
    pub fn broadcast(group: &str) -> Self {
        Self {
            mode: GroupMode::Broadcast,
            ..Self::cluster(group)
        }
    }

    /// Sets the wait strategy.
    pub fn wait(mut self, wait: WaitStrategy) -> Self {
        self.wait = wait;
        self
    }

    /// Sets where to start without a committed offset.
    pub fn offset_reset(mut self, reset: OffsetReset) -> Self {
        self.offset_reset = reset;
        self
    }

    /// Turns auto-commit on or off.
    pub fn auto_commit(mut self, on: bool) -> Self {
        self.auto_commit = on;
        self
    }

    /// Lets `poll` gather up to `min` records (at most its `max`) for up to
    /// `max_wait` once the first record is there, as Kafka's
    /// `fetch.min.bytes` and `fetch.max.wait.ms` do. A poll that finds
    /// nothing still waits up to its timeout for the first record; gathering
    /// never makes it return later than its timeout.
    ///
    /// Fewer, larger batches cost less per record: a consumer of a trickle
    /// no longer wakes (and makes the producer wake it) for every record.
    /// While it gathers, a `Park` consumer sleeps without asking the
    /// producer for wake-ups. The defaults (`1`, zero) return at once.
    pub fn fetch(mut self, min: usize, max_wait: Duration) -> Self {
        self.fetch_min = min;
        self.fetch_max_wait = max_wait;
        self
    }
}

/// `now + d`, saturating at a point decades away: a timeout of
/// `Duration::MAX` means "wait as long as it takes", not a panic.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(1 << 30)))
        .unwrap_or(now)
}

/// Longest sleep of a `Park` consumer gathering records up to `fetch_min`.
const GATHER_SLICE: Duration = Duration::from_millis(1);

/// A partition this member reads now. Aligned to 128 bytes: its cursor is
/// written on every poll.
#[repr(align(128))]
struct Owned<T> {
    tp: TopicPartition,
    ring: Arc<Ring<T>>,
    cursor: Cursor,
    gate: GateId,
}

/// A batch returned by [`Consumer::poll`]; derefs to the records.
#[derive(Debug)]
pub struct Batch<'a, T> {
    records: &'a [Record<T>],
    missed: u64,
}

impl<T> Batch<'_, T> {
    /// Records skipped since the previous poll (lapped under `Overwrite`, or
    /// lost while the group had no members).
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// The records.
    pub fn records(&self) -> &[Record<T>] {
        self.records
    }
}

impl<T> std::ops::Deref for Batch<'_, T> {
    type Target = [Record<T>];
    fn deref(&self) -> &[Record<T>] {
        self.records
    }
}

/// Slice of waiting between checks for rebalances.
const REBALANCE_CHECK: Duration = Duration::from_millis(20);

/// Most records one [`Consumer::poll`] returns, whatever `max` asks for (as
/// Kafka's `max.poll.records`): the poll buffer is sized for `max` up front,
/// so a `max` of `usize::MAX` must not become an allocation of that size.
pub const MAX_POLL_RECORDS: usize = 1 << 16;

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

    /// Replaces the subscription with `topics` (Kafka semantics): offsets of
    /// topics that stay subscribed are kept. An unknown topic is an error and
    /// leaves the subscription unchanged.
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<(), ConsumerError> {
        if self.closed {
            return Err(ConsumerError::Closed);
        }
        let mut ids = Vec::with_capacity(topics.len());
        for name in topics {
            let id = self
                .topics
                .id(name)
                .ok_or_else(|| ConsumerError::UnknownTopic {
                    topic: (*name).to_owned(),
                    known: self.topics.names_joined(),
                })?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids.sort();
        match self.config.mode {
            GroupMode::Cluster => self.subscribe_cluster(ids),
            GroupMode::Broadcast => self.subscribe_broadcast(ids),
        }
    }

    fn subscribe_cluster(&mut self, ids: Vec<TopicId>) -> Result<(), ConsumerError> {
        let topics = self.topics.snapshot();
        let group = self.group.clone();
        let mut st = group.lock();
        let old = std::mem::replace(
            &mut st
                .members
                .get_mut(&self.id)
                .expect("member registered")
                .subscription,
            ids.clone(),
        );
        // Hand back (committing) the partitions of topics we leave while we
        // still hold the lock: the rebalance may detach their gates, and a
        // detached gate slot can be reused by another reader at once.
        let mut i = 0;
        while i < self.owned.len() {
            if ids.contains(&self.owned[i].tp.topic) {
                i += 1;
                continue;
            }
            let o = self.owned.swap_remove(i);
            if let Some(gp) = st.parts.get_mut(&o.tp) {
                if gp.owner == Some(self.id) {
                    gp.owner = None;
                }
            }
            self.release(o, self.config.auto_commit);
        }
        if let Err(e) = group.rebalance(&mut st, &topics, self.config.offset_reset) {
            st.members
                .get_mut(&self.id)
                .expect("member registered")
                .subscription = old;
            // Restore a consistent assignment for the old subscriptions.
            let _ = group.rebalance(&mut st, &topics, self.config.offset_reset);
            return Err(e);
        }
        drop(st);
        self.subscription = ids;
        self.sync_cluster(true);
        Ok(())
    }

    fn subscribe_broadcast(&mut self, ids: Vec<TopicId>) -> Result<(), ConsumerError> {
        let topics = self.topics.snapshot();
        // Attach gates for new topics first, so a failure changes nothing.
        let mut added = Vec::new();
        for &tid in ids.iter().filter(|t| !self.subscription.contains(t)) {
            let topic = &topics[tid.0 as usize];
            for (p, ring) in topic.partitions.iter().enumerate() {
                let start = reset_position(ring, self.config.offset_reset);
                match ring.attach_gate(start) {
                    Some((gate, start)) => added.push(Owned {
                        tp: TopicPartition {
                            topic: tid,
                            partition: p as u32,
                        },
                        ring: ring.clone(),
                        cursor: Cursor::at(start),
                        gate,
                    }),
                    None => {
                        for o in added {
                            o.ring.detach_gate(o.gate);
                        }
                        return Err(ConsumerError::TooManyReaders {
                            topic: topic.name.to_string(),
                            max: ring.max_gates(),
                        });
                    }
                }
            }
        }
        let mut i = 0;
        while i < self.owned.len() {
            if ids.contains(&self.owned[i].tp.topic) {
                i += 1;
            } else {
                let o = self.owned.swap_remove(i);
                self.release(o, false);
            }
        }
        for o in added {
            self.adopt(o);
        }
        self.owned.sort_by_key(|o| o.tp);
        self.group
            .lock()
            .members
            .get_mut(&self.id)
            .expect("member registered")
            .subscription = ids.clone();
        self.subscription = ids;
        Ok(())
    }

    fn adopt(&mut self, o: Owned<T>) {
        if self.config.wait == WaitStrategy::Park {
            o.ring.waiters().attach_parker();
        }
        self.owned.push(o);
    }

    /// Stops reading a partition. Cluster: hands it back to the group; with
    /// `commit`, first commits the position. Broadcast: detaches our gate.
    fn release(&mut self, o: Owned<T>, commit: bool) {
        if self.config.wait == WaitStrategy::Park {
            o.ring.waiters().detach_parker();
        }
        match self.config.mode {
            GroupMode::Broadcast => o.ring.detach_gate(o.gate),
            GroupMode::Cluster => {
                if commit {
                    Self::commit_one(&o);
                }
                // The caller holds the group lock (cluster release).
            }
        }
    }

    #[inline]
    fn commit_one(o: &Owned<T>) {
        if o.cursor.position() > o.ring.gate_position(o.gate) {
            o.ring.advance_gate(o.gate, o.cursor.position());
        }
    }

    /// Cluster: brings the assignment in line with the group's generation.
    /// `commit` says whether released partitions are committed first.
    #[cold]
    fn sync_cluster(&mut self, commit: bool) {
        let group = self.group.clone();
        let mut st = group.lock();
        self.generation = group.generation.load(Ordering::Acquire);
        let target = st
            .members
            .get(&self.id)
            .map(|m| m.assignment.clone())
            .unwrap_or_default();
        // Release what we lost.
        let mut i = 0;
        while i < self.owned.len() {
            if target.contains(&self.owned[i].tp) {
                i += 1;
                continue;
            }
            let o = self.owned.swap_remove(i);
            if let Some(gp) = st.parts.get_mut(&o.tp) {
                if gp.owner == Some(self.id) {
                    gp.owner = None;
                }
            }
            self.release(o, commit && self.config.auto_commit);
        }
        // Take what we gained, if its previous owner let go.
        self.pending.clear();
        let mut missed = 0;
        for tp in target {
            if self.owned.iter().any(|o| o.tp == tp) {
                continue;
            }
            let Some(gp) = st.parts.get_mut(&tp) else {
                continue;
            };
            match (gp.owner, gp.gate) {
                (None, Some(gate)) => {
                    gp.owner = Some(self.id);
                    missed += std::mem::take(&mut gp.missed_at_join);
                    let pos = gp.ring.gate_position(gate);
                    let o = Owned {
                        tp,
                        ring: gp.ring.clone(),
                        cursor: Cursor::at(pos),
                        gate,
                    };
                    if self.config.wait == WaitStrategy::Park {
                        o.ring.waiters().attach_parker();
                    }
                    self.owned.push(o);
                }
                _ => self.pending.push(tp),
            }
        }
        drop(st);
        self.owned.sort_by_key(|o| o.tp);
        // Counted now, so the group's totals stay exact even if this member
        // leaves before its next poll; the next batch reports it.
        self.stats.add(0, missed);
        self.pending_missed += missed;
    }

    /// Returns the records available now, up to `max`, waiting up to
    /// `timeout` (per the wait strategy) when there are none. An empty batch
    /// means the timeout passed. With [`ConsumerConfig::fetch`], a poll that
    /// finds fewer than `fetch_min` records gathers more for up to
    /// `fetch_max_wait` first. At most [`MAX_POLL_RECORDS`] come back per
    /// poll, however large `max` is.
    pub fn poll(&mut self, max: usize, timeout: Duration) -> Result<Batch<'_, T>, ConsumerError> {
        if self.closed {
            return Err(ConsumerError::Closed);
        }
        if max == 0 {
            return Err(ConsumerError::ZeroMax);
        }
        let max = max.min(MAX_POLL_RECORDS);
        if self.config.auto_commit {
            self.commit();
        }
        // The clock is read only once there is nothing to return, or too
        // little (`fetch_min`).
        let mut deadline: Option<Instant> = None;
        let mut gather_until: Option<Instant> = None;
        let fetch_min = self.config.fetch_min.clamp(1, max);
        self.buf.clear();
        if self.buf.capacity() < max {
            self.buf.reserve(max);
        }
        loop {
            // No rebalance while gathering: the records already taken must
            // be returned (and committed) by their owner of this generation.
            if self.config.mode == GroupMode::Cluster
                && self.buf.is_empty()
                && (!self.pending.is_empty()
                    // Acquire: pairs with the Release bump in `rebalance`.
                    || self.group.generation.load(Ordering::Acquire) != self.generation)
            {
                self.sync_cluster(true);
            }
            // Missed at a takeover is already in the stats (sync_cluster).
            let taken_over = std::mem::take(&mut self.pending_missed);
            let mut missed = 0;
            let k = self.owned.len();
            for i in 0..k {
                if self.buf.len() >= max {
                    break;
                }
                let o = &mut self.owned[(self.rr + i) % k];
                let tp = o.tp;
                let outcome = o.ring.read_into(
                    &mut o.cursor,
                    max - self.buf.len(),
                    &mut self.buf,
                    |offset, value| Record {
                        topic: tp.topic,
                        partition: tp.partition,
                        offset,
                        value,
                    },
                );
                missed += outcome.missed;
            }
            if k > 0 {
                self.rr = (self.rr + 1) % k;
            }
            if !self.buf.is_empty()
                && self.buf.len() < fetch_min
                && missed == 0
                && taken_over == 0
                && self.gather(&mut gather_until, deadline, timeout)
            {
                continue;
            }
            if !self.buf.is_empty() || missed > 0 || taken_over > 0 {
                self.stats.add(self.buf.len() as u64, missed);
                return Ok(Batch {
                    records: &self.buf,
                    missed: missed + taken_over,
                });
            }
            // Drained only once no assigned partition is still being handed
            // over by its previous owner.
            if self.topics.is_closed() && self.pending.is_empty() {
                return Err(ConsumerError::EngineClosed);
            }
            let now = Instant::now();
            let deadline = *deadline.get_or_insert(later(now, timeout));
            if now >= deadline {
                return Ok(Batch {
                    records: &self.buf,
                    missed: 0,
                });
            }
            let slice_end = deadline.min(now + REBALANCE_CHECK);
            if self.owned.is_empty() {
                std::thread::sleep(slice_end - now);
            } else {
                let owned = &self.owned;
                wait_until(
                    || {
                        owned
                            .iter()
                            .map(|o| (&*o.ring as &dyn Wakeable, o.cursor.position()))
                    },
                    self.config.wait,
                    Some(slice_end),
                );
            }
        }
    }

    /// One pause while `poll` gathers records up to `fetch_min`. Returns
    /// false once `fetch_max_wait` (or the poll's own deadline) has passed.
    fn gather(
        &self,
        until: &mut Option<Instant>,
        deadline: Option<Instant>,
        timeout: Duration,
    ) -> bool {
        let wait = self.config.fetch_max_wait;
        if wait.is_zero() || self.topics.is_closed() {
            return false;
        }
        let now = Instant::now();
        // Bounded by the poll's timeout, counted from when it started to
        // wait (or from now, when records were there at once).
        let end = *until
            .get_or_insert_with(|| later(now, wait).min(deadline.unwrap_or(later(now, timeout))));
        if now >= end {
            return false;
        }
        match self.config.wait {
            WaitStrategy::BusySpin => std::hint::spin_loop(),
            WaitStrategy::SpinYield => std::thread::yield_now(),
            // A plain sleep, not a registered park: the producer is not asked
            // to wake this thread for each record while it gathers. Short
            // slices let a `fetch_min` reached early return early.
            WaitStrategy::Park => std::thread::sleep((end - now).min(wait / 4).min(GATHER_SLICE)),
        }
        true
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
    /// `offset`. Offsets from the oldest held up to the next to be written
    /// are valid; others are an [`ConsumerError::OffsetOutOfRange`] naming the
    /// valid range. Seeking before the committed offset moves the committed
    /// offset back with it (the records must stay held for this reader).
    pub fn seek(&mut self, topic: &str, partition: u32, offset: u64) -> Result<(), ConsumerError> {
        if self.closed {
            return Err(ConsumerError::Closed);
        }
        let i = self.find_owned(topic, partition)?;
        let o = &mut self.owned[i];
        let latest = o.ring.published();
        let earliest = o.ring.earliest();
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
        if offset < o.ring.gate_position(o.gate) {
            o.ring
                .rewind_gate(o.gate, offset)
                .map_err(|e| out_of_range(e.min(latest)))?;
        }
        o.cursor = Cursor::at(offset);
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
        let o = &self.owned[i];
        Ok(o.ring.gate_position(o.gate))
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
