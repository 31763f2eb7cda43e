//! Polling: the records a member reads, in batches, with the gathering of
//! [`ConsumerConfig::fetch`](crate::ConsumerConfig::fetch) and the
//! per-poll limit [`MAX_POLL_RECORDS`].

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Consumer;
use crate::error::ConsumerError;
use crate::group::GroupMode;
use crate::ring::{wait_until, WaitStrategy, Wakeable};
use crate::topic::TopicId;

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

/// `now + d`, saturating at a point decades away: a timeout of
/// `Duration::MAX` means "wait as long as it takes", not a panic.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(1 << 30)))
        .unwrap_or(now)
}

/// What one [`Consumer::wait_step`] says.
pub(super) enum Waited {
    /// Look for records again.
    Again,
    /// The poll's time is up: return what there is (nothing).
    TimedOut,
}

/// Spins a poll that found nothing makes before it reads the clock, each
/// followed by a look for records (`poll_with`'s short path, else
/// [`Consumer::spin_for_records`]): well under a microsecond.
pub(super) const SPINS_BEFORE_WAIT: u32 = 64;

/// Longest sleep of a `Park` consumer gathering records up to `fetch_min`.
const GATHER_SLICE: Duration = Duration::from_millis(1);

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

impl<T: Copy + Send + 'static> super::Owned<T> {
    /// One step of reading older records back from the journal: first tries
    /// to move the gate back to the cursor (then the ring has the records
    /// and `None` says to read it), else reads up to `max` records below
    /// the gate from the journal into `out`. `Some(missed)`: records that
    /// retention deleted before they could be read.
    #[cold]
    pub(super) fn replay(
        &mut self,
        max: usize,
        out: &mut Vec<Record<T>>,
    ) -> Result<Option<u64>, ConsumerError> {
        let pos = self.cursor.position();
        let Err(_) = self.ring.rewind_gate(self.gate, pos) else {
            self.replaying = false;
            return Ok(None);
        };
        #[cfg(feature = "journal")]
        if let Some((log, codec)) = self.log.as_mut() {
            let gate = self.ring.gate_position(self.gate);
            let tp = self.tp;
            let n = log
                .read(codec, pos, max, gate, |offset, value| {
                    out.push(Record {
                        topic: tp.topic,
                        partition: tp.partition,
                        offset,
                        value,
                    })
                })
                .map_err(|e| ConsumerError::Journal(std::sync::Arc::new(e)))?;
            let mut lost = 0;
            let mut next = pos + n as u64;
            let earliest = log.shared().earliest();
            if n == 0 && next < earliest {
                lost = earliest.min(gate) - next;
                next += lost;
            }
            self.cursor = crate::ring::Cursor::at(next);
            if next >= gate {
                self.replaying = false;
            }
            return Ok(Some(lost));
        }
        // Not journaled: nothing older than the ring exists.
        #[cfg(not(feature = "journal"))]
        let _ = (max, out);
        self.replaying = false;
        let lost = self.ring.gate_position(self.gate).saturating_sub(pos);
        self.cursor = crate::ring::Cursor::at(pos + lost);
        Ok(Some(lost))
    }
}

/// Slice of waiting between checks for rebalances.
const REBALANCE_CHECK: Duration = Duration::from_millis(20);

/// Most records one [`Consumer::poll`] returns, whatever `max` asks for (as
/// Kafka's `max.poll.records`): the poll buffer is sized for `max` up front,
/// so a `max` of `usize::MAX` must not become an allocation of that size.
pub const MAX_POLL_RECORDS: usize = 1 << 16;

impl<T: Copy + Send + 'static> Consumer<T> {
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
        let mut spun = false;
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
            // Round-robin start, without a division per poll.
            if self.rr >= k {
                self.rr = 0;
            }
            let mut at = self.rr;
            for _ in 0..k {
                if self.buf.len() >= max {
                    break;
                }
                let o = &mut self.owned[at];
                at = if at + 1 == k { 0 } else { at + 1 };
                let tp = o.tp;
                if o.replaying {
                    let room = max - self.buf.len();
                    match o.replay(room, &mut self.buf) {
                        Ok(Some(lost)) => {
                            missed += lost;
                            continue;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            self.stats.add(self.buf.len() as u64, missed);
                            return Err(e);
                        }
                    }
                }
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
            self.rr += 1;
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
            match self.wait_step(&mut deadline, &mut spun, timeout)? {
                Waited::Again => {}
                Waited::TimedOut => {
                    return Ok(Batch {
                        records: &self.buf,
                        missed: 0,
                    })
                }
            }
        }
    }

    /// One step of waiting for a poll that found nothing: an error once the
    /// engine is closed and drained; `TimedOut` at once for a zero timeout,
    /// or once the deadline (set at the first wait) has passed; otherwise a
    /// brief spin (once per poll) or a wait of at most [`REBALANCE_CHECK`],
    /// after which the caller looks again.
    pub(super) fn wait_step(
        &self,
        deadline: &mut Option<Instant>,
        spun: &mut bool,
        timeout: Duration,
    ) -> Result<Waited, ConsumerError> {
        // Drained only once no assigned partition is still being handed
        // over by its previous owner.
        if self.topics.is_closed() && self.pending.is_empty() {
            return Err(ConsumerError::EngineClosed);
        }
        // A poll that may not wait returns without reading the clock.
        if timeout.is_zero() {
            return Ok(Waited::TimedOut);
        }
        // Once per poll (a closed ring also reads as ready).
        if !*spun {
            *spun = true;
            if self.spin_for_records() {
                return Ok(Waited::Again);
            }
        }
        let now = Instant::now();
        let deadline = *deadline.get_or_insert(later(now, timeout));
        if now >= deadline {
            return Ok(Waited::TimedOut);
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
        Ok(Waited::Again)
    }

    /// Before a poll that found nothing reads the clock and starts to
    /// wait: a few spins watching the owned partitions. A record that
    /// arrives within them (the common case of a consumer keeping up) is
    /// taken without any clock read or wait set-up.
    #[inline]
    pub(super) fn spin_for_records(&self) -> bool {
        for _ in 0..SPINS_BEFORE_WAIT {
            if self.owned.iter().any(|o| o.ring.ready(o.cursor.position())) {
                return true;
            }
            std::hint::spin_loop();
        }
        false
    }

    /// One pause while `poll` gathers records up to `fetch_min`. Returns
    /// false once `fetch_max_wait` (or the poll's own deadline) has passed.
    pub(super) fn gather(
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
}
