//! Membership: subscribing, and taking and handing back partitions as the
//! group rebalances (cluster) or as the subscription changes (broadcast).

use std::sync::atomic::Ordering;

use super::{Consumer, Owned};
use crate::error::ConsumerError;
use crate::group::{reset_position, GroupMode, NO_COMMIT};
use crate::ring::WaitStrategy;
use crate::topic::{TopicId, TopicPartition};

impl<T: Copy + Send + 'static> Consumer<T> {
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

    pub(super) fn subscribe_cluster(&mut self, ids: Vec<TopicId>) -> Result<(), ConsumerError> {
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

    pub(super) fn subscribe_broadcast(&mut self, ids: Vec<TopicId>) -> Result<(), ConsumerError> {
        let topics = self.topics.snapshot();
        // Attach gates for new topics first, so a failure changes nothing.
        let mut added = Vec::new();
        for &tid in ids.iter().filter(|t| !self.subscription.contains(t)) {
            let topic = &topics[tid.0 as usize];
            for (p, ring) in topic.partitions.iter().enumerate() {
                let want = reset_position(topic, p, self.config.offset_reset);
                match ring.attach_gate(want) {
                    Some((gate, start)) => {
                        // Older than the ring: read from the journal first.
                        let pos = match topic.replayable_from(p) {
                            Some(from) => want.max(from).min(start),
                            None => start,
                        };
                        let committed = crate::group::committed(pos);
                        let tp = TopicPartition {
                            topic: tid,
                            partition: p as u32,
                        };
                        added.push(Owned::new(tp, topic, gate, pos, committed));
                    }
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

    pub(super) fn adopt(&mut self, o: Owned<T>) {
        if self.config.wait == WaitStrategy::Park {
            o.ring.waiters().attach_parker();
        }
        self.owned.push(o);
    }

    /// Stops reading a partition. Cluster: hands it back to the group; with
    /// `commit`, first commits the position. Broadcast: detaches our gate.
    pub(super) fn release(&mut self, o: Owned<T>, commit: bool) {
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
    pub(super) fn commit_one(o: &Owned<T>) {
        let pos = o.cursor.position();
        // Only this member stores it while it owns the partition.
        let c = o.committed.load(Ordering::Relaxed);
        if c == NO_COMMIT || pos > c {
            o.committed.store(pos, Ordering::Relaxed);
        }
        // While replaying from the journal the gate is ahead of the cursor
        // and stays where it is.
        if pos > o.ring.gate_position(o.gate) {
            o.ring.advance_gate(o.gate, pos);
        }
    }

    /// Cluster: brings the assignment in line with the group's generation.
    /// `commit` says whether released partitions are committed first.
    #[cold]
    pub(super) fn sync_cluster(&mut self, commit: bool) {
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
        let topics = self.topics.snapshot();
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
                    let committed = gp.committed.load(Ordering::Relaxed);
                    let pos = if committed == NO_COMMIT {
                        gp.ring.gate_position(gate)
                    } else {
                        committed
                    };
                    let topic = &topics[tp.topic.0 as usize];
                    let o = Owned::new(tp, topic, gate, pos, gp.committed.clone());
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
}
