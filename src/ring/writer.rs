//! The unique writer of a ring: single and batch publish under each policy.

use std::fmt;

use super::{OverflowPolicy, Ring, SlotLayout, LAZY_PUBLISH};
use crate::sync::{fence, thread, Arc, Ordering};

/// A single-record publish that did not happen; the record is handed back.
#[derive(PartialEq, Eq)]
pub enum PublishError<T> {
    /// `Reject` policy and the slowest gating reader is a full ring behind.
    Full(T),
    /// The ring was closed.
    Closed(T),
}

impl<T> PublishError<T> {
    /// The record that was not published.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(v) | Self::Closed(v) => v,
        }
    }
}

impl<T> fmt::Debug for PublishError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for PublishError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("ring is full (Reject policy): record handed back"),
            Self::Closed(_) => f.write_str("ring is closed: record handed back"),
        }
    }
}

impl<T> std::error::Error for PublishError<T> {}

/// A batch publish that stopped early. The first `accepted` records were
/// published; the rest were not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// `Reject` policy: only `accepted` records fitted; the rest were rejected
    /// and counted.
    #[error("ring is full (Reject policy): {accepted} of the batch published, the rest rejected")]
    Full {
        /// Records published before the ring filled.
        accepted: usize,
    },
    /// The ring was closed.
    #[error("ring is closed: {accepted} of the batch published")]
    Closed {
        /// Records published before the close.
        accepted: usize,
    },
}

enum ClaimFail {
    Full,
    Closed,
}

/// The one writer of a ring. `Send`, not `Clone`.
///
/// Its private cursor is written on every publish, so the handle is aligned
/// to 128 bytes (as `CachePadded` is) and never shares a cache line with
/// whatever sits next to it, such as the reader's handle.
#[repr(align(128))]
pub struct Writer<T: Copy + Send> {
    ring: Arc<Ring<T>>,
    /// Next offset to write; equals `ring.published()` between calls.
    next: u64,
    /// Cached end the writer may claim up to (see gate module docs).
    limit: u64,
    /// Whether the ring is marked (`published` is then stored lazily).
    marked: bool,
    /// Marked ring: `published` is stored when `end` crosses a multiple of
    /// `1 << lazy_shift` = min([`LAZY_PUBLISH`], capacity). Never more than
    /// a lap apart, so the marks past the stored cursor are all still there
    /// for [`Ring::published`] to find.
    lazy_shift: u32,
}

impl<T: Copy + Send> fmt::Debug for Writer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("next", &self.next)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<T: Copy + Send> Writer<T> {
    pub(super) fn new(ring: Arc<Ring<T>>) -> Self {
        // Exact in both layouts (the marked one adds the marks past the
        // lazily stored cursor).
        let next = ring.published();
        let marked = ring.layout() == SlotLayout::Marked;
        let lazy_shift = LAZY_PUBLISH.min(ring.capacity).trailing_zeros();
        Self {
            ring,
            next,
            limit: 0,
            marked,
            lazy_shift,
        }
    }

    /// The shared ring.
    pub fn ring(&self) -> &Ring<T> {
        &self.ring
    }

    /// The offset the next record will get.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// Publishes one record and returns its offset.
    ///
    /// Always inlined: called out of line, the record is passed through
    /// memory and copied again into the slot, and the reload stalls on store
    /// forwarding (measured: about half the single-record rate).
    #[inline(always)]
    pub fn publish(&mut self, value: T) -> Result<u64, PublishError<T>> {
        match self.claim(1) {
            Ok(_) => {}
            Err(ClaimFail::Full) => {
                self.count_rejected(1);
                return Err(PublishError::Full(value));
            }
            Err(ClaimFail::Closed) => return Err(PublishError::Closed(value)),
        }
        let offset = self.next;
        // SAFETY: `claim(1)` reserved `offset` for this writer (invariant 3).
        unsafe { self.ring.write_one(offset, value) };
        self.commit(offset + 1);
        Ok(offset)
    }

    /// Publishes one record if there is room now; never waits.
    ///
    /// Under `Block` a full ring hands the record back as `Full` without
    /// counting it as rejected: the caller (an ingest endpoint running many
    /// connections on one thread) waits elsewhere and tries again. Under
    /// `Reject` and `Overwrite` this is [`Writer::publish`].
    #[inline]
    pub fn try_publish(&mut self, value: T) -> Result<u64, PublishError<T>> {
        if self.ring.policy != OverflowPolicy::Block {
            return self.publish(value);
        }
        if self.ring.closed.load(Ordering::Relaxed) {
            return Err(PublishError::Closed(value));
        }
        let end = self.next + 1;
        if end > self.limit {
            self.refresh_limit(end);
            if end > self.limit {
                return Err(PublishError::Full(value));
            }
        }
        let offset = self.next;
        // SAFETY: `end <= limit`, so `offset` is within the claimable
        // window and reserved for this writer (invariant 3).
        unsafe { self.ring.write_one(offset, value) };
        self.commit(end);
        Ok(offset)
    }

    /// Publishes `values` in order, in claims of at most one ring's worth,
    /// each made visible with one release store. Returns the first offset.
    pub fn publish_slice(&mut self, values: &[T]) -> Result<u64, BatchError> {
        let first = self.next;
        let mut done = 0usize;
        while done < values.len() {
            let want = (values.len() - done).min(self.ring.capacity as usize);
            let got = match self.claim(want as u64) {
                Ok(got) => got as usize,
                Err(ClaimFail::Full) => {
                    self.count_rejected((values.len() - done) as u64);
                    return Err(BatchError::Full { accepted: done });
                }
                Err(ClaimFail::Closed) => return Err(BatchError::Closed { accepted: done }),
            };
            let run = &values[done..done + got];
            if self.ring.policy == OverflowPolicy::Overwrite {
                for (i, v) in run.iter().enumerate() {
                    // SAFETY: the claim reserved offsets next..next+got.
                    unsafe { self.ring.write_one(self.next + i as u64, *v) };
                }
            } else {
                // SAFETY: the claim reserved offsets next..next+got (<= capacity).
                unsafe { self.ring.copy_run_in(self.next, run) };
            }
            self.commit(self.next + got as u64);
            done += got;
        }
        Ok(first)
    }

    /// Claims `n` slots, fills slot `i` with `fill(i)`, and publishes them all
    /// with one release store (`n` at most the capacity). Under `Reject`, as
    /// many as fit are published and the count returned is smaller than `n`.
    pub fn publish_with(
        &mut self,
        n: usize,
        mut fill: impl FnMut(usize) -> T,
    ) -> Result<usize, BatchError> {
        let n = n.min(self.ring.capacity as usize);
        let got = match self.claim(n as u64) {
            Ok(got) => got as usize,
            Err(ClaimFail::Full) => {
                self.count_rejected(n as u64);
                return Err(BatchError::Full { accepted: 0 });
            }
            Err(ClaimFail::Closed) => return Err(BatchError::Closed { accepted: 0 }),
        };
        if self.ring.policy == OverflowPolicy::Overwrite {
            for i in 0..got {
                // SAFETY: the claim reserved offsets next..next+got.
                unsafe { self.ring.write_one(self.next + i as u64, fill(i)) };
            }
        } else {
            // SAFETY: the claim reserved offsets next..next+got (<= capacity).
            unsafe { self.ring.fill_run(self.next, got, fill) };
        }
        self.commit(self.next + got as u64);
        if got < n {
            self.count_rejected((n - got) as u64);
        }
        Ok(got)
    }

    fn count_rejected(&self, n: u64) {
        // Only this writer adds to the counter; Relaxed is enough for a count.
        let r = &self.ring.rejected;
        r.store(r.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// Reserves up to `n` slots starting at `self.next`. Returns how many (all
    /// `n` except under `Reject`, where it may be fewer but at least one).
    #[inline(always)]
    fn claim(&mut self, n: u64) -> Result<u64, ClaimFail> {
        debug_assert!(n >= 1 && n <= self.ring.capacity);
        let ring = &*self.ring;
        if ring.closed.load(Ordering::Relaxed) {
            return Err(ClaimFail::Closed);
        }
        let end = self.next + n;
        if ring.policy == OverflowPolicy::Overwrite {
            // Relaxed store, then a Release fence: the fence orders this claim
            // before the slot writes that follow, so a reader whose copy saw
            // any of them also sees this claim after its Acquire fence
            // (`Ring::read_overwrite`).
            ring.claim.store(end, Ordering::Relaxed);
            fence(Ordering::Release);
            return Ok(n);
        }
        if end <= self.limit {
            return Ok(n);
        }
        self.claim_slow(n)
    }

    #[cold]
    fn claim_slow(&mut self, n: u64) -> Result<u64, ClaimFail> {
        let end = self.next + n;
        let backoff = crossbeam_utils::Backoff::new();
        loop {
            self.refresh_limit(end);
            if end <= self.limit {
                return Ok(n);
            }
            if self.ring.policy == OverflowPolicy::Reject {
                let room = self.limit.saturating_sub(self.next);
                return if room == 0 {
                    Err(ClaimFail::Full)
                } else {
                    Ok(room)
                };
            }
            // Block: wait for the slowest gate, but never past a close.
            if self.ring.closed.load(Ordering::Acquire) {
                return Err(ClaimFail::Closed);
            }
            // Spin, then yield between checks (crossbeam's `Backoff`); a
            // blocked writer never sleeps, so it sees freed slots and a close
            // at its next check.
            if cfg!(loom) {
                thread::yield_now();
            } else {
                if backoff.is_completed() {
                    backoff.reset();
                }
                backoff.snooze();
            }
        }
    }

    /// Re-reads the gates and announces the new limit (gate module docs).
    fn refresh_limit(&mut self, end: u64) {
        let ring = &*self.ring;
        let cap = ring.capacity;
        // With no active gate nobody needs old records, but a group may join
        // at the oldest retained offset: move at most an eighth of a lap (or
        // the batch) ahead so such a join keeps most of the ring.
        let free_run = end.max(self.next + (cap / 8).max(1));
        let first = ring.gates.min().map_or(free_run, |m| m + cap);
        // SeqCst: the writer half of the join handshake; the second scan
        // below must not be reordered before this store.
        ring.limit.store(first, Ordering::SeqCst);
        let second = ring.gates.min().map_or(free_run, |m| m + cap);
        self.limit = first.min(second);
    }

    /// Makes `[.., end)` visible with one release store and wakes parkers.
    /// A marked ring's records are visible through their marks already; it
    /// stores `published` only when `end` crosses a multiple of
    /// min([`LAZY_PUBLISH`], capacity), so readers polling marks do not see
    /// the cursor's line change under them on every record.
    #[inline(always)]
    fn commit(&mut self, end: u64) {
        debug_assert!(end > self.next);
        if !self.marked || end >> self.lazy_shift != self.next >> self.lazy_shift {
            // Release: the slot writes above happen before any reader's
            // Acquire load of `published` that sees `end`.
            self.ring.published.store(end, Ordering::Release);
        }
        self.next = end;
        // The parking handshake needs the records visible before its fence:
        // they are, through `published` or through their marks (wait module
        // docs; `Ring::ready` checks both).
        self.ring.waiters.notify();
    }
}

impl<T: Copy + Send> Drop for Writer<T> {
    fn drop(&mut self) {
        if self.marked {
            // Leave the cursor exact for whoever looks next.
            // Release: as in `commit`.
            self.ring.published.store(self.next, Ordering::Release);
        }
        // Allow the writer to be taken again (e.g. by a new producer) after
        // this one is gone; the ring stays single-writer at any time.
        self.ring.writer_taken.store(false, Ordering::Release);
    }
}
