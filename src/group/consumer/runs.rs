//! Zero-copy polling: [`Consumer::poll_with`] lends the records where they
//! are, as runs of consecutive offsets of one partition, to a closure.
//!
//! # Where records are read
//!
//! - **In place** (packed layout, `Block` or `Reject`): a run is a slice of
//!   the partition's slot array (two, where it wraps around its end). The
//!   member's gate is still at or below the run, so the writer cannot reuse
//!   those slots (ring invariant 3) until the gate moves, and the gate moves
//!   only at a commit: the next `poll`/`poll_with` (auto-commit), `commit`
//!   or `close`, all of which take `&mut self`, so not before the closure
//!   has returned and its borrows have ended.
//! - **Copied** into the member's scratch buffer (reserved once, for `max`
//!   records): the marked layout (each record sits next to its mark, so
//!   records are not contiguous), `Overwrite` (a slot may be overwritten
//!   while it is read: the copy is validated first, as [`Consumer::poll`]
//!   does), records read back from the journal, and loom builds.
//!
//! Either way the closure sees slices, delivered and missed counts are
//! exact, and nothing is allocated per record: the run list and the scratch
//! buffer keep their capacity from poll to poll.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::poll::Waited;
use super::{Consumer, Owned};
use crate::error::ConsumerError;
use crate::group::GroupMode;
use crate::topic::TopicId;

/// Where a run's records are.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// In the ring of `owned[i]`, read in place.
    Ring(usize),
    /// In the scratch buffer, from this index.
    Scratch(usize),
}

/// One run found by a poll: `len` consecutive offsets from `base`.
#[derive(Debug, Clone, Copy)]
pub(super) struct RunDesc {
    topic: TopicId,
    partition: u32,
    base: u64,
    len: usize,
    source: Source,
}

/// Consecutive records of one partition: `records[i]` has offset
/// `base_offset + i`.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a, T> {
    /// Topic.
    pub topic: TopicId,
    /// Partition within the topic.
    pub partition: u32,
    /// Offset of `records[0]`.
    pub base_offset: u64,
    /// The records, in offset order.
    pub records: &'a [T],
}

/// What one [`Consumer::poll_with`] lends: runs of records, in the order
/// they were read, and the count of records missed before them.
pub struct Runs<'a, T: Copy + Send + 'static> {
    owned: &'a [Owned<T>],
    scratch: &'a [T],
    descs: &'a [RunDesc],
    len: usize,
    missed: u64,
}

impl<T: Copy + Send + 'static> std::fmt::Debug for Runs<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runs")
            .field("len", &self.len)
            .field("runs", &self.descs.len())
            .field("missed", &self.missed)
            .finish()
    }
}

impl<'a, T: Copy + Send + 'static> Runs<'a, T> {
    /// Records in all runs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no record (the timeout passed, or only missed
    /// records are reported).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Records skipped since the previous poll (lapped under `Overwrite`, or
    /// lost while the group had no members), as [`super::Batch::missed`].
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// The runs, each a slice with its partition and base offset. A run
    /// that wraps around the end of its ring comes as two.
    pub fn iter(&self) -> RunIter<'a, T> {
        RunIter {
            owned: self.owned,
            scratch: self.scratch,
            descs: self.descs.iter(),
            wrapped: None,
        }
    }

    /// Calls `f(offset, &record)` on every record, in order.
    pub fn for_each(&self, mut f: impl FnMut(TopicId, u32, u64, &T)) {
        for run in self.iter() {
            for (i, v) in run.records.iter().enumerate() {
                f(run.topic, run.partition, run.base_offset + i as u64, v);
            }
        }
    }
}

impl<'a, T: Copy + Send + 'static> IntoIterator for &Runs<'a, T> {
    type Item = Run<'a, T>;
    type IntoIter = RunIter<'a, T>;
    fn into_iter(self) -> RunIter<'a, T> {
        self.iter()
    }
}

/// Iterator over the [`Run`]s of a [`Runs`].
pub struct RunIter<'a, T: Copy + Send + 'static> {
    owned: &'a [Owned<T>],
    scratch: &'a [T],
    descs: std::slice::Iter<'a, RunDesc>,
    /// The second half of a run that wraps.
    wrapped: Option<Run<'a, T>>,
}

impl<T: Copy + Send + 'static> std::fmt::Debug for RunIter<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunIter")
            .field("left", &self.descs.len())
            .finish_non_exhaustive()
    }
}

impl<'a, T: Copy + Send + 'static> Iterator for RunIter<'a, T> {
    type Item = Run<'a, T>;

    #[inline]
    fn next(&mut self) -> Option<Run<'a, T>> {
        if let Some(w) = self.wrapped.take() {
            return Some(w);
        }
        let d = self.descs.next()?;
        let run = |base_offset, records| Run {
            topic: d.topic,
            partition: d.partition,
            base_offset,
            records,
        };
        match d.source {
            Source::Scratch(from) => Some(run(d.base, &self.scratch[from..from + d.len])),
            Source::Ring(i) => {
                // The run was taken with `take_run` from this ring by the
                // member that lent it; its gate moves only through `&mut`
                // methods of the member, which `'a` borrows (module docs).
                // SAFETY: so the gate stays at or below the run while `'a` lasts.
                let (a, b) = unsafe { self.owned[i].ring.run_slices(d.base, d.len) };
                if !b.is_empty() {
                    self.wrapped = Some(run(d.base + a.len() as u64, b));
                }
                Some(run(d.base, a))
            }
        }
    }
}

impl<T: Copy + Send + 'static> Owned<T> {
    /// Copies up to `room` records at the cursor onto `out` (validated
    /// under `Overwrite`): `(offset of the first, copied, missed)`. The
    /// records copied follow the missed ones and end at the cursor.
    #[inline]
    fn copy_run(&mut self, room: usize, out: &mut Vec<T>) -> (u64, usize, u64) {
        let got = self.ring.read_into(&mut self.cursor, room, out, |_, v| v);
        let base = self.cursor.position() - got.read as u64;
        (base, got.read, got.missed)
    }
}

impl<T: Copy + Send + 'static> Consumer<T> {
    /// Polls as [`Consumer::poll`] does, with the same waiting, gathering
    /// ([`crate::ConsumerConfig::fetch`]), auto-commit and counts, but lends
    /// the records to `f` where they are instead of copying each into a
    /// [`super::Record`]: as [`Runs`] of consecutive offsets of one
    /// partition, read in place from the ring where its layout allows
    /// (module docs of `group::consumer::runs`). Returns what `f` returns.
    ///
    /// The records lent count as delivered; they are committed, and their
    /// slots released to the writer, only by a later commit (the next poll
    /// with auto-commit), so never while `f` still borrows them. If `f`
    /// panics and the member is dropped without a commit, they are delivered
    /// again to whoever reads the partition next (at-least-once).
    pub fn poll_with<R>(
        &mut self,
        max: usize,
        timeout: Duration,
        f: impl FnOnce(&Runs<'_, T>) -> R,
    ) -> Result<R, ConsumerError> {
        if self.closed {
            return Err(ConsumerError::Closed);
        }
        if max == 0 {
            return Err(ConsumerError::ZeroMax);
        }
        let max = max.min(super::MAX_POLL_RECORDS);
        if self.config.auto_commit {
            self.commit();
        }
        let (len, missed) = match self.runs_at_once(max)? {
            Some(got) => got,
            // A consumer keeping up finds its next record within a few
            // spins: it is taken by the same short path, polled directly,
            // without the clock or the waiting loop.
            None if !timeout.is_zero() && self.short_path_open() => {
                match self.spin_at_once(max)? {
                    Some(got) => got,
                    None => self.gather_runs(max, timeout, true)?,
                }
            }
            None => self.gather_runs(max, timeout, false)?,
        };
        let runs = Runs {
            owned: &self.owned,
            scratch: &self.scratch,
            descs: &self.runs,
            len,
            missed,
        };
        Ok(f(&runs))
    }

    /// The common case first: no rebalance to follow, no gathering asked
    /// for, and records there already. One pass over the partitions;
    /// `None` when it found nothing (and took nothing), so the caller waits
    /// in [`Consumer::gather_runs`].
    #[inline(always)]
    fn runs_at_once(&mut self, max: usize) -> Result<Option<(usize, u64)>, ConsumerError> {
        if !self.short_path_open() {
            return Ok(None);
        }
        self.runs.clear();
        self.scratch.clear();
        if self.scratch.capacity() < max {
            self.scratch.reserve(max);
        }
        // One partition (a pinned member of its own partition): its run,
        // without the round-robin pass; lent in place, or copied where the
        // layout or policy needs it (as in `take_copied`).
        if let [o] = &mut self.owned[..] {
            if !o.replaying {
                let (base, n, missed, source) = match o.ring.take_run(&mut o.cursor, max) {
                    Some((base, n)) => (base, n, 0, Source::Ring(0)),
                    None => {
                        let (base, n, missed) = o.copy_run(max, &mut self.scratch);
                        (base, n, missed, Source::Scratch(0))
                    }
                };
                if n == 0 && missed == 0 {
                    return Ok(None);
                }
                if n > 0 {
                    self.runs.push(RunDesc {
                        topic: o.tp.topic,
                        partition: o.tp.partition,
                        base,
                        len: n,
                        source,
                    });
                }
                self.stats.add(n as u64, missed);
                return Ok(Some((n, missed)));
            }
        }
        let (total, missed) = self.take_round(max, 0)?;
        if total == 0 && missed == 0 {
            return Ok(None);
        }
        self.rr += 1;
        self.stats.add(total as u64, missed);
        Ok(Some((total, missed)))
    }

    /// Whether [`Consumer::runs_at_once`] may take records: no rebalance
    /// to follow, no records missed at a takeover to report, no gathering
    /// towards `fetch_min`.
    #[inline(always)]
    fn short_path_open(&self) -> bool {
        let settled = match self.config.mode {
            GroupMode::Broadcast => true,
            GroupMode::Cluster => {
                self.pending.is_empty()
                    // Acquire: pairs with the Release bump in `rebalance`.
                    && self.group.generation.load(Ordering::Acquire) == self.generation
            }
        };
        settled && self.pending_missed == 0 && self.config.fetch_min <= 1
    }

    /// A poll that found nothing: [`Consumer::runs_at_once`] again after
    /// each of a few spins, before the caller reads the clock and waits.
    /// Taking the run directly, rather than a readiness check followed by
    /// the take, is what a record arriving now waits for least: the bench
    /// tool's engine ping-pong came to 1.44–1.53× its two-atomic floor
    /// against 1.60–1.61× with the readiness check (interleaved runs).
    #[inline]
    fn spin_at_once(&mut self, max: usize) -> Result<Option<(usize, u64)>, ConsumerError> {
        for _ in 0..super::poll::SPINS_BEFORE_WAIT {
            std::hint::spin_loop();
            if let Some(got) = self.runs_at_once(max)? {
                return Ok(Some(got));
            }
        }
        Ok(None)
    }

    /// Finds the runs of one `poll_with`: `(records, missed)`. `spun`: the
    /// caller has spun for records already ([`Consumer::spin_at_once`]);
    /// otherwise the first wait spins first ([`Consumer::spin_for_records`]).
    fn gather_runs(
        &mut self,
        max: usize,
        timeout: Duration,
        mut spun: bool,
    ) -> Result<(usize, u64), ConsumerError> {
        let mut deadline: Option<Instant> = None;
        let mut gather_until: Option<Instant> = None;
        let fetch_min = self.config.fetch_min.clamp(1, max);
        self.runs.clear();
        self.scratch.clear();
        if self.scratch.capacity() < max {
            self.scratch.reserve(max);
        }
        let mut total = 0usize;
        let mut missed_total = 0u64;
        loop {
            // No rebalance once runs are taken: they must be committed by
            // their owner of this generation.
            if self.config.mode == GroupMode::Cluster
                && total == 0
                && missed_total == 0
                && (!self.pending.is_empty()
                    // Acquire: pairs with the Release bump in `rebalance`.
                    || self.group.generation.load(Ordering::Acquire) != self.generation)
            {
                self.sync_cluster(true);
            }
            // Missed at a takeover is already in the stats (sync_cluster).
            let taken_over = std::mem::take(&mut self.pending_missed);
            missed_total += taken_over;
            let (n, missed) = self.take_round(max, total)?;
            total += n;
            self.rr += 1;
            self.stats.add(0, missed);
            missed_total += missed;
            if total > 0
                && total < fetch_min
                && missed_total == 0
                && self.gather(&mut gather_until, deadline, timeout)
            {
                continue;
            }
            if total > 0 || missed_total > 0 {
                self.stats.add(total as u64, 0);
                return Ok((total, missed_total));
            }
            match self.wait_step(&mut deadline, &mut spun, timeout)? {
                Waited::Again => {}
                Waited::TimedOut => return Ok((0, 0)),
            }
        }
    }

    /// One pass over the owned partitions from the round-robin start,
    /// taking up to `max - taken` records: `(taken now, missed)`.
    #[inline]
    fn take_round(&mut self, max: usize, taken: usize) -> Result<(usize, u64), ConsumerError> {
        let k = self.owned.len();
        // Round-robin start, without a division per poll.
        if self.rr >= k {
            self.rr = 0;
        }
        let (mut total, mut missed) = (taken, 0);
        let mut i = self.rr;
        for _ in 0..k {
            if total >= max {
                break;
            }
            let (n, lost) = match self.take_from(i, max - total) {
                Ok(got) => got,
                // Hand over what was taken already (its cursors moved); the
                // error comes back at the next poll.
                Err(_) if !self.runs.is_empty() || missed > 0 => break,
                Err(e) => return Err(e),
            };
            total += n;
            missed += lost;
            i = if i + 1 == k { 0 } else { i + 1 };
        }
        Ok((total - taken, missed))
    }

    /// Takes up to `room` records of `owned[i]` as runs: `(taken, missed)`.
    /// In place when the ring lends them (the hot path, inlined); copied
    /// otherwise ([`Consumer::take_copied`]).
    #[inline]
    fn take_from(&mut self, i: usize, room: usize) -> Result<(usize, u64), ConsumerError> {
        let o = &mut self.owned[i];
        if !o.replaying {
            if let Some((base, n)) = o.ring.take_run(&mut o.cursor, room) {
                if n > 0 {
                    let tp = o.tp;
                    self.push_run(tp.topic, tp.partition, base, n, Source::Ring(i));
                }
                return Ok((n, 0));
            }
        }
        self.take_copied(i, room)
    }

    /// [`Consumer::take_from`] for what is not lent in place: records read
    /// back from the journal, and rings whose layout or policy needs a copy.
    #[inline(never)]
    fn take_copied(&mut self, i: usize, room: usize) -> Result<(usize, u64), ConsumerError> {
        let mut taken = 0;
        let mut missed = 0;
        let tp = self.owned[i].tp;
        if self.owned[i].replaying {
            self.buf.clear();
            match self.owned[i].replay(room, &mut self.buf) {
                Ok(Some(lost)) => {
                    missed += lost;
                    let from = self.scratch.len();
                    self.scratch.extend(self.buf.iter().map(|r| r.value));
                    if let Some(first) = self.buf.first() {
                        let (base, n) = (first.offset, self.buf.len());
                        self.push_run(tp.topic, tp.partition, base, n, Source::Scratch(from));
                    }
                    self.buf.clear();
                    // Still replaying, or the ring's turn at the next poll.
                    return Ok((self.scratch.len() - from, missed));
                }
                Ok(None) => {}
                Err(e) => {
                    self.stats.add(0, missed);
                    return Err(e);
                }
            }
        }
        let o = &mut self.owned[i];
        if let Some((base, n)) = o.ring.take_run(&mut o.cursor, room) {
            if n > 0 {
                self.push_run(tp.topic, tp.partition, base, n, Source::Ring(i));
                taken += n;
            }
            return Ok((taken, missed));
        }
        let from = self.scratch.len();
        let (base, n, lost) = o.copy_run(room, &mut self.scratch);
        missed += lost;
        if n > 0 {
            self.push_run(tp.topic, tp.partition, base, n, Source::Scratch(from));
            taken += n;
        }
        Ok((taken, missed))
    }

    /// Appends a run, merged into an earlier one it continues (a poll
    /// gathering towards `fetch_min` reads a partition several times), so
    /// the list holds about one run per partition.
    #[inline]
    fn push_run(&mut self, topic: TopicId, partition: u32, base: u64, len: usize, source: Source) {
        let last = self.runs.len().checked_sub(1);
        for (j, r) in self.runs.iter_mut().enumerate().rev() {
            if r.topic != topic || r.partition != partition {
                continue;
            }
            let continues = r.base + r.len as u64 == base;
            let same_place = match (r.source, source) {
                // In place: the ring's slots are contiguous in offsets (a
                // merged run stays within a lap of the gate).
                (Source::Ring(a), Source::Ring(b)) => a == b,
                // Copied: only if nothing was copied in between.
                (Source::Scratch(a), Source::Scratch(b)) => Some(j) == last && a + r.len == b,
                _ => false,
            };
            if continues && same_place {
                r.len += len;
                return;
            }
            // Only the latest run of a partition can be continued.
            break;
        }
        self.runs.push(RunDesc {
            topic,
            partition,
            base,
            len,
            source,
        });
    }
}
