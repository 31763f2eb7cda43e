//! The ring core: one fixed-capacity, single-writer ring per partition.
//!
//! The algorithm is the LMAX Disruptor's single-producer sequencer (Thompson,
//! Farley et al., "Disruptor: High performance alternative to bounded queues
//! for exchanging data between concurrent threads", 2011) with an Aeron-style
//! lapping check for the `Overwrite` policy (the broadcast receiver of Aeron's
//! `agrona`): a reader copies records out, then checks the writer's claim to
//! learn whether any of them were overwritten while it copied.
//!
//! # Counters
//!
//! Offsets are `u64` and never wrap in practice (584 years at 1 G records/s).
//! A record with offset `o` lives in slot `o & mask`. A ring starts at
//! offset 0, or at `start` ([`Ring::starting_at`], for a partition whose
//! older records are in its journal); every counter starts there, and no
//! gate or read position is ever below it.
//!
//! - `published` (cache-padded): records `[0, published)` have been written
//!   and are visible. Only the writer stores it, with `Release`, once per batch
//!   (packed layout) or once per 128 records or once a lap (marked
//!   layout, where each slot's mark says whether its record is written:
//!   [`SlotLayout`]). [`Ring::published`] is exact in both layouts.
//! - `claim` (cache-padded, `Overwrite` only): end of the batch the writer is
//!   writing. `claim >= published`; records below `claim - capacity` may be
//!   overwritten at any moment.
//! - `limit` (cache-padded): the highest end the writer may claim without
//!   re-reading the gates; announced for the join handshake (see [`gate`]).
//! - gates (each cache-padded): reader positions that hold the writer back
//!   under `Block` and `Reject`.
//!
//! The writer keeps a private copy of its next offset and of its limit; a
//! reader keeps a private copy of the last `published` it saw. Each side reads
//! the other's shared counter only when its copy runs out.
//!
//! # Invariants
//!
//! 1. Exactly one [`Writer`] exists per ring (it is not `Clone`; taking it
//!    twice is an error), so the writer-owned counters have one writer.
//! 2. `published` and `claim` only grow; `published <= claim <= published + capacity`.
//! 3. Gated policies: `claim <= min(active gates) + capacity` whenever a gate
//!    is active, so a slot is written only after every active gate has passed
//!    the record it held. Gates only move forward, except through the join
//!    handshake ([`gate`]), which never moves a gate below `limit - capacity`.
//! 4. A reader reads offset `o` only if `o < published` it loaded with
//!    `Acquire`, or (marked layout) it loaded `o`'s mark as `o + 1` with
//!    `Acquire`; under the gated policies also `o >=` its own gate.
//! 5. `Overwrite`: a copied record with offset `o` is delivered only if, after
//!    the copy, `o >= claim - capacity`; every record skipped is counted as
//!    missed, so delivered + missed = published for every reader. In one
//!    read call the missed records always precede the delivered ones.
//!
//! # `Overwrite` copies
//!
//! Under `Overwrite` a slot can be overwritten while a reader copies it, so
//! both sides copy with byte-wise atomic memcpy (`atomic-memcpy`, C++ P1478):
//! the race is then not undefined behaviour and the seqlock fences
//! synchronise. The copy goes through integers, so a record type used under
//! `Overwrite` must not contain padding bytes ([`crate::Reading`] has none).

mod gate;
mod slots;
mod spsc;
mod wait;
mod writer;

use std::fmt;
use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use crate::sync::{fence, AtomicBool, AtomicU64, Ordering};

pub(crate) use gate::GateId;
use gate::Gates;
pub use slots::SlotLayout;
use slots::{Storage, LAZY_PUBLISH};
pub use spsc::{spsc, spsc_with, Reader};
pub use wait::WaitStrategy;
pub(crate) use wait::{wait_until, Waiters, Wakeable};
pub use writer::{BatchError, PublishError, Writer};

/// What the writer does when the slowest gating reader is a full ring behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// Wait for the slowest gating consumer; nothing is lost.
    #[default]
    Block,
    /// Fail at once and hand the record back (peak shaving); counted.
    Reject,
    /// Never wait; lapped readers learn how many records they missed.
    Overwrite,
}

/// Invalid ring parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    /// Capacity zero.
    #[error("ring capacity must be at least 1 (got 0)")]
    Zero,
    /// Capacity not a power of two.
    #[error("ring capacity must be a power of two (got {0}; try {next})", next = .0.next_power_of_two())]
    NotPowerOfTwo(usize),
    /// Capacity too large to allocate sensibly.
    #[error("ring capacity {0} is larger than the maximum {max}", max = MAX_CAPACITY)]
    TooLarge(usize),
    /// The marked slot layout was asked for with the `Overwrite` policy.
    #[error("the marked slot layout works with the Block and Reject policies only, not Overwrite")]
    MarkedOverwrite,
}

/// Largest capacity accepted (2^30 slots).
pub const MAX_CAPACITY: usize = 1 << 30;

/// Records copied per `Overwrite` read before validation (a stack buffer).
const OVERWRITE_CHUNK: usize = 64;

/// Default number of gate slots per ring.
pub const DEFAULT_MAX_GATES: usize = 64;

/// A reader's private position in one ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pos: u64,
    cached_published: u64,
}

impl Cursor {
    /// A cursor at `pos`.
    pub fn at(pos: u64) -> Self {
        Self {
            pos,
            cached_published: pos,
        }
    }

    /// Next offset this cursor reads.
    pub fn position(&self) -> u64 {
        self.pos
    }
}

/// Result of one read call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadOutcome {
    /// Records handed over.
    pub read: usize,
    /// Records skipped because the writer lapped this reader (`Overwrite`).
    pub missed: u64,
}

/// One partition's ring. Shared by its [`Writer`] and its readers.
pub struct Ring<T> {
    published: CachePadded<AtomicU64>,
    claim: CachePadded<AtomicU64>,
    limit: CachePadded<AtomicU64>,
    slots: Storage<T>,
    mask: u64,
    capacity: u64,
    policy: OverflowPolicy,
    gates: Gates,
    waiters: Waiters,
    closed: AtomicBool,
    writer_taken: AtomicBool,
    rejected: AtomicU64,
    /// The first offset this ring ever holds (a journaled partition's ring
    /// continues where its journal ends); nothing below it is in the slots.
    start: u64,
}

// The ring hands `T` values from the writer thread to reader threads (so
// `T: Send`), by copy (`T: Copy`). Slot access is coordinated by the protocol
// in the module docs: a slot is written only by the unique writer and read
// only after the `Acquire` load of `published` that covers it, and under the
// gated policies never while a gate still needs it.
// SAFETY: readers never obtain `&mut T`, and a reader's copy taken while the
// writer overwrote the slot (`Overwrite` only) is discarded before use.
unsafe impl<T: Copy + Send> Sync for Ring<T> {}
// SAFETY: the ring owns `T` values; moving it between threads moves them.
unsafe impl<T: Copy + Send> Send for Ring<T> {}

impl<T> fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity)
            .field("policy", &self.policy)
            .field("published", &self.published.load(Ordering::Relaxed))
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Checks a capacity: non-zero, a power of two, at most [`MAX_CAPACITY`].
pub fn check_capacity(capacity: usize) -> Result<(), CapacityError> {
    if capacity == 0 {
        Err(CapacityError::Zero)
    } else if !capacity.is_power_of_two() {
        Err(CapacityError::NotPowerOfTwo(capacity))
    } else if capacity > MAX_CAPACITY {
        Err(CapacityError::TooLarge(capacity))
    } else {
        Ok(())
    }
}

/// Checks a ring's parameters: the capacity ([`check_capacity`]), and that
/// the marked layout is not asked for with `Overwrite`.
pub fn check_params(
    capacity: usize,
    policy: OverflowPolicy,
    layout: SlotLayout,
) -> Result<(), CapacityError> {
    check_capacity(capacity)?;
    if layout == SlotLayout::Marked && policy == OverflowPolicy::Overwrite {
        return Err(CapacityError::MarkedOverwrite);
    }
    Ok(())
}

impl<T: Copy + Send> Ring<T> {
    /// A packed ring of `capacity` slots (a power of two) with `max_gates`
    /// gate slots.
    pub fn new(
        capacity: usize,
        policy: OverflowPolicy,
        max_gates: usize,
    ) -> Result<Self, CapacityError> {
        Self::with_layout(capacity, policy, max_gates, SlotLayout::Packed)
    }

    /// A ring with the given slot layout ([`SlotLayout::Marked`] only with
    /// the `Block` and `Reject` policies).
    pub fn with_layout(
        capacity: usize,
        policy: OverflowPolicy,
        max_gates: usize,
        layout: SlotLayout,
    ) -> Result<Self, CapacityError> {
        Self::starting_at(capacity, policy, max_gates, layout, 0)
    }

    /// A ring whose first record gets offset `start` (a partition whose
    /// earlier records are kept elsewhere, such as its journal).
    pub fn starting_at(
        capacity: usize,
        policy: OverflowPolicy,
        max_gates: usize,
        layout: SlotLayout,
        start: u64,
    ) -> Result<Self, CapacityError> {
        check_params(capacity, policy, layout)?;
        let slots = Storage::new(capacity, layout).ok_or(CapacityError::TooLarge(capacity))?;
        Ok(Self {
            published: CachePadded::new(AtomicU64::new(start)),
            claim: CachePadded::new(AtomicU64::new(start)),
            limit: CachePadded::new(AtomicU64::new(start)),
            slots,
            mask: capacity as u64 - 1,
            capacity: capacity as u64,
            policy,
            gates: Gates::new(max_gates),
            waiters: Waiters::default(),
            closed: AtomicBool::new(false),
            writer_taken: AtomicBool::new(false),
            rejected: AtomicU64::new(0),
            start,
        })
    }

    /// The first offset this ring holds ([`Ring::starting_at`]; 0 otherwise).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Slot count.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The overflow policy.
    pub fn policy(&self) -> OverflowPolicy {
        self.policy
    }

    /// The slot layout.
    pub fn layout(&self) -> SlotLayout {
        self.slots.layout()
    }

    /// Records published so far (= the next offset to be written).
    #[inline]
    pub fn published(&self) -> u64 {
        // Acquire: a caller that goes on to read records below this value
        // must see their contents (pairs with the writer's Release store).
        let stored = self.published.load(Ordering::Acquire);
        match self.slots {
            Storage::Packed(_) => stored,
            // The stored cursor lags by less than a lap; the marks past it
            // say which records are written (also Acquire).
            Storage::Marked(_) => self.published_marked(stored),
        }
    }

    #[cold]
    #[inline(never)]
    fn published_marked(&self, stored: u64) -> u64 {
        self.scan_marks(stored, stored + self.capacity)
    }

    /// Oldest offset still held in the ring.
    pub fn earliest(&self) -> u64 {
        let published = self.published();
        let reach = match self.policy {
            OverflowPolicy::Overwrite => self.claim.load(Ordering::Relaxed),
            _ => published,
        };
        reach.saturating_sub(self.capacity).max(self.start)
    }

    /// Records handed back as `Full` under [`OverflowPolicy::Reject`].
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Whether [`Ring::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes the ring: later publishes fail, and every waiting reader and
    /// writer wakes up. Records already published can still be read.
    pub fn close(&self) {
        // SeqCst: readers register as parked and then check `closed` after a
        // SeqCst fence (wait module); this store and the load of `parked`
        // inside `wake_all`'s lock form the same Dekker pair as a publish.
        self.closed.store(true, Ordering::SeqCst);
        self.waiters.wake_all();
    }

    /// Takes the unique writer. `None` if it was taken before.
    pub fn writer(this: &crate::sync::Arc<Self>) -> Option<Writer<T>> {
        // AcqRel: exactly one caller wins the flag.
        if this.writer_taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(Writer::new(this.clone()))
    }

    /// Reads up to `max` records at `cur`, pushing `map(offset, record)` onto
    /// `out`. The caller must hold the position as a gate or otherwise keep
    /// the gated invariant (see [`Ring::copy_slot`]).
    ///
    /// Takes everything available up to `max` with one load of `published`
    /// when the cached value runs out.
    #[inline]
    pub(crate) fn read_into<R>(
        &self,
        cur: &mut Cursor,
        max: usize,
        out: &mut Vec<R>,
        mut map: impl FnMut(u64, T) -> R,
    ) -> ReadOutcome {
        // Use the cached cursor while it covers the request; otherwise take
        // everything published now.
        // (Saturating: under `Overwrite` a lap skip can move the position
        // past the cursor last loaded.)
        if cur.cached_published.saturating_sub(cur.pos) < max as u64 {
            self.refresh(cur, max);
            if cur.cached_published <= cur.pos {
                return ReadOutcome::default();
            }
        }
        if self.policy == OverflowPolicy::Overwrite {
            return self.read_overwrite(cur, max, out, map);
        }
        let n = (cur.cached_published - cur.pos).min(max as u64);
        out.reserve(n as usize);
        // SAFETY: the run is below cached_published (an Acquire load) and the
        // caller keeps the gated invariant, so every slot holds its record,
        // whole, until the caller's gate moves past it.
        unsafe { self.visit_run(cur.pos, n as usize, |offset, v| out.push(map(offset, *v))) };
        cur.pos += n;
        ReadOutcome {
            read: n as usize,
            missed: 0,
        }
    }

    /// Moves `cur.cached_published` up to what is published now: one load of
    /// `published` (packed layout), or the marks from the cached end up to
    /// `cur.pos + max` (marked layout; the shared cursor is not touched).
    #[inline(always)]
    fn refresh(&self, cur: &mut Cursor, max: usize) {
        match self.slots {
            // Acquire: as in `published`.
            Storage::Packed(_) => cur.cached_published = self.published.load(Ordering::Acquire),
            Storage::Marked(_) => {
                let from = cur.cached_published.max(cur.pos);
                // No more than a lap can be published past `pos`.
                let to = cur.pos + (max as u64).min(self.capacity);
                cur.cached_published = self.scan_marks(from, to);
            }
        }
    }

    /// `Overwrite` read: copy, then validate against the writer's claim, in
    /// chunks of [`OVERWRITE_CHUNK`] until `max` or the loaded cursor.
    fn read_overwrite<R>(
        &self,
        cur: &mut Cursor,
        max: usize,
        out: &mut Vec<R>,
        mut map: impl FnMut(u64, T) -> R,
    ) -> ReadOutcome {
        let mut outcome = ReadOutcome::default();
        let mut copies = [MaybeUninit::<T>::uninit(); OVERWRITE_CHUNK];
        loop {
            // Relaxed is enough: this is only an early skip; the validation
            // below is what guarantees correctness.
            let oldest = self
                .claim
                .load(Ordering::Relaxed)
                .saturating_sub(self.capacity)
                .max(self.start);
            if cur.pos < oldest {
                if outcome.read > 0 {
                    // Report the lap at the next call, so that in one call
                    // the missed records always come before the delivered.
                    return outcome;
                }
                outcome.missed += oldest - cur.pos;
                cur.pos = oldest;
            }
            let start = cur.pos;
            let want = (max - outcome.read).min(OVERWRITE_CHUNK) as u64;
            let n = cur.cached_published.saturating_sub(start).min(want);
            if n == 0 {
                return outcome;
            }
            for (i, offset) in (start..start + n).enumerate() {
                // SAFETY: offset < published (Acquire); validated below.
                copies[i] = unsafe { self.copy_slot(offset) };
            }
            // Acquire fence: pairs with the writer's Release fence after it
            // stores `claim`. If any byte we copied came from a newer batch,
            // the claim of that batch is visible to the load below (seqlock).
            fence(Ordering::Acquire);
            let valid_from = self
                .claim
                .load(Ordering::Relaxed)
                .saturating_sub(self.capacity);
            let torn = valid_from.saturating_sub(start).min(n);
            if torn > 0 && outcome.read > 0 {
                // As above: leave the lap for the next call.
                return outcome;
            }
            outcome.missed += torn;
            for i in torn..n {
                // SAFETY: the claim seen after the copies shows the writer had
                // not started to reuse this slot, so the copy is a whole record
                // that was published (invariant 5).
                let v = unsafe { copies[i as usize].assume_init() };
                out.push(map(start + i, v));
            }
            outcome.read += (n - torn) as usize;
            cur.pos = start + n;
            if outcome.read >= max {
                return outcome;
            }
        }
    }

    /// Calls `f` on up to `max` records at `cur` without copying them out.
    /// Only for the gated policies; under `Overwrite` it reads nothing.
    ///
    /// # Safety
    /// The caller must keep invariant 3 for the records read: its position is
    /// a gate of this ring (or the writer otherwise cannot reach them).
    #[inline]
    pub(crate) unsafe fn read_ref(
        &self,
        cur: &mut Cursor,
        max: usize,
        f: impl FnMut(u64, &T),
    ) -> usize {
        if self.policy == OverflowPolicy::Overwrite {
            return 0;
        }
        if let Storage::Marked(_) = self.slots {
            // SAFETY: forwarded from the caller (its gate is at `cur.pos`).
            let n = unsafe { self.visit_marked(cur.pos, max, f) };
            cur.pos += n as u64;
            cur.cached_published = cur.cached_published.max(cur.pos);
            return n;
        }
        if cur.cached_published.saturating_sub(cur.pos) < max as u64 {
            self.refresh(cur, max);
        }
        let n = cur.cached_published.saturating_sub(cur.pos).min(max as u64);
        // SAFETY: the run is below published (Acquire) and the caller's gate
        // keeps the writer off these slots while `f` runs.
        unsafe { self.visit_run(cur.pos, n as usize, f) };
        cur.pos += n;
        n as usize
    }

    /// Takes up to `max` records at `cur` for reading in place, as one run
    /// `(base, n)` of consecutive offsets (possibly empty), and moves the
    /// cursor past them. `None` when this ring's records cannot be lent in
    /// place: the marked layout (records are not contiguous), `Overwrite`
    /// (a slot may be overwritten while borrowed; copy with
    /// [`Ring::read_into`] instead), and loom builds (slots are separate
    /// tracked cells).
    ///
    /// Nothing is read here: the caller reads the run with
    /// [`Ring::run_slices`] while its gate, still below `base`, keeps the
    /// writer off those slots.
    #[inline]
    pub(crate) fn take_run(&self, cur: &mut Cursor, max: usize) -> Option<(u64, usize)> {
        if cfg!(loom)
            || self.policy == OverflowPolicy::Overwrite
            || !matches!(self.slots, Storage::Packed(_))
        {
            return None;
        }
        if cur.cached_published.saturating_sub(cur.pos) < max as u64 {
            self.refresh(cur, max);
        }
        let n = cur.cached_published.saturating_sub(cur.pos).min(max as u64);
        let base = cur.pos;
        cur.pos += n;
        Some((base, n as usize))
    }

    /// The records of `[base, base + n)` as at most two slices (the run
    /// wraps around the end of the slot array at most once).
    ///
    /// # Safety
    /// The run was taken by [`Ring::take_run`] (packed layout, gated
    /// policy: so `n <= capacity` and every offset is published), and the
    /// caller's gate stays at or below `base` for as long as the slices live
    /// (invariant 3: the writer cannot reuse a slot the gate has not passed).
    #[cfg(not(loom))]
    #[inline]
    pub(crate) unsafe fn run_slices(&self, base: u64, n: usize) -> (&[T], &[T]) {
        let Storage::Packed(slots) = &self.slots else {
            unreachable!("take_run lends packed rings only")
        };
        let (idx, first, second) = self.stretches(base, n);
        let ptr = crate::sync::cell::base_ptr(slots).cast_const();
        // SAFETY: slots idx..idx + first lie inside the array and hold
        // published, initialised records the writer cannot touch while the
        // caller's gate is below them (the caller's contract).
        let a = unsafe { std::slice::from_raw_parts(ptr.add(idx), first) };
        // SAFETY: as above, for slots 0..second.
        let b = unsafe { std::slice::from_raw_parts(ptr, second) };
        (a, b)
    }

    /// Under loom no run is lent ([`Ring::take_run`] says `None`).
    #[cfg(loom)]
    pub(crate) unsafe fn run_slices(&self, _base: u64, _n: usize) -> (&[T], &[T]) {
        unreachable!("take_run lends no run under loom")
    }

    // ----- gates -----

    /// Attaches a gate at `pos` (clamped to what is still protectable) and
    /// returns it with the position it really starts at. `None` when all gate
    /// slots are taken.
    pub(crate) fn attach_gate(&self, pos: u64) -> Option<(GateId, u64)> {
        let id = self.gates.attach(pos)?;
        let start = self.validate_gate(id, pos, true).unwrap_or(pos);
        Some((id, start))
    }

    /// Second half of the join handshake (module docs of `gate`). With
    /// `bump`, moves the gate up to the first protected offset and returns it;
    /// without, restores `fallback` semantics by returning `Err(earliest)`.
    pub(crate) fn validate_gate(&self, id: GateId, pos: u64, bump: bool) -> Result<u64, u64> {
        if self.policy == OverflowPolicy::Overwrite {
            return Ok(pos.max(self.start));
        }
        let mut pos = pos;
        loop {
            // SeqCst: second half of the join handshake (gate module docs).
            let limit = self.limit.load(Ordering::SeqCst);
            // Nothing below `start` was ever in the slots.
            let protected_from = limit.saturating_sub(self.capacity).max(self.start);
            if pos >= protected_from {
                return Ok(pos);
            }
            if !bump {
                return Err(protected_from);
            }
            pos = protected_from;
            self.gates.store_handshake(id, pos);
        }
    }

    /// Moves a gate to `pos`, possibly backwards (seek). Fails with the first
    /// protected offset if records from `pos` on may already be reused.
    pub(crate) fn rewind_gate(&self, id: GateId, pos: u64) -> Result<(), u64> {
        let old = self.gates.get(id);
        if pos >= old {
            self.gates.advance(id, pos);
            return Ok(());
        }
        self.gates.store_handshake(id, pos);
        match self.validate_gate(id, pos, false) {
            Ok(_) => Ok(()),
            Err(earliest) => {
                self.gates.advance(id, old);
                Err(earliest.max(self.earliest()))
            }
        }
    }

    #[inline]
    pub(crate) fn advance_gate(&self, id: GateId, pos: u64) {
        self.gates.advance(id, pos);
    }

    #[inline]
    pub(crate) fn gate_position(&self, id: GateId) -> u64 {
        self.gates.get(id)
    }

    pub(crate) fn detach_gate(&self, id: GateId) {
        self.gates.detach(id);
    }

    /// Number of gate slots.
    pub fn max_gates(&self) -> usize {
        self.gates.capacity()
    }

    pub(crate) fn waiters(&self) -> &Waiters {
        &self.waiters
    }

    /// Whether a reader at `pos` has something to do (data or close).
    /// In the marked layout this polls the slot at `pos` first, which is the
    /// line the writer fills next, and reads the lazily stored `published`
    /// (rarely written, so a cache hit) only as a fallback.
    #[inline]
    pub(crate) fn ready(&self, pos: u64) -> bool {
        self.is_marked(pos)
            || self.published.load(Ordering::Relaxed) > pos
            || self.closed.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_checked() {
        assert_eq!(check_capacity(0), Err(CapacityError::Zero));
        assert_eq!(check_capacity(12), Err(CapacityError::NotPowerOfTwo(12)));
        assert!(check_capacity(16).is_ok());
        assert!(spsc::<u64>(3, OverflowPolicy::Block).is_err());
        let msg = CapacityError::NotPowerOfTwo(12).to_string();
        assert!(msg.contains("try 16"), "{msg}");
    }

    #[test]
    fn slots_are_aligned_to_line_pairs_and_zero_sized_records_work() {
        for layout in [SlotLayout::Packed, SlotLayout::Marked] {
            let r = Ring::<crate::Reading>::with_layout(1024, OverflowPolicy::Block, 1, layout)
                .unwrap();
            assert_eq!(r.layout(), layout);
            let (addr, len) = r.slots.addr_and_len();
            assert_eq!(addr % crate::sync::cell::SLOTS_ALIGN, 0);
            assert_eq!(len, 1024);
            let (mut w, mut rd) = spsc_with::<()>(4, OverflowPolicy::Block, layout).unwrap();
            w.publish_slice(&[(), (), ()]).unwrap();
            let mut out = Vec::new();
            assert_eq!(rd.read_into(10, &mut out).read, 3);
            assert_eq!(out.len(), 3);
        }
    }

    #[test]
    fn marked_layout_refuses_overwrite() {
        assert_eq!(
            Ring::<u64>::with_layout(8, OverflowPolicy::Overwrite, 1, SlotLayout::Marked).err(),
            Some(CapacityError::MarkedOverwrite)
        );
        assert!(Ring::<u64>::with_layout(8, OverflowPolicy::Reject, 1, SlotLayout::Marked).is_ok());
    }

    #[test]
    fn marked_published_is_exact_while_the_cursor_lags() {
        let (mut w, mut r) =
            spsc_with::<u64>(1024, OverflowPolicy::Block, SlotLayout::Marked).unwrap();
        let ring = crate::sync::Arc::clone(&r.ring);
        for i in 0..5 {
            assert_eq!(w.publish(i).unwrap(), i);
        }
        // The stored cursor has not moved (5 < LAZY_PUBLISH), the marks have.
        assert_eq!(ring.published.load(Ordering::Relaxed), 0);
        assert_eq!(ring.published(), 5);
        assert!(ring.ready(4) && !ring.ready(5));
        let mut out = Vec::new();
        assert_eq!(r.read_into(3, &mut out).read, 3);
        assert_eq!(r.read_with(10, |o, v| assert_eq!(o, *v)), 2);
        assert_eq!(out, [0, 1, 2]);
        // Crossing a multiple of LAZY_PUBLISH stores the cursor.
        let values: Vec<u64> = (5..LAZY_PUBLISH + 10).collect();
        w.publish_slice(&values).unwrap();
        assert_eq!(ring.published.load(Ordering::Relaxed), LAZY_PUBLISH + 10);
        w.publish(LAZY_PUBLISH + 10).unwrap();
        assert_eq!(ring.published(), LAZY_PUBLISH + 11);
        // On a ring smaller than LAZY_PUBLISH the cursor is stored once a
        // lap, so the marks past it have not been overwritten yet.
        let (mut w4, mut r4) =
            spsc_with::<u64>(4, OverflowPolicy::Block, SlotLayout::Marked).unwrap();
        for i in 0..11 {
            w4.publish(i).unwrap();
            assert_eq!(r4.ring().published(), i + 1);
            assert_eq!(r4.read_with(4, |o, v| assert_eq!(o, *v)), 1);
        }
        // A writer taken again continues exactly where the last one stopped.
        drop(w);
        assert_eq!(ring.published.load(Ordering::Relaxed), LAZY_PUBLISH + 11);
        let mut w = Ring::writer(&ring).unwrap();
        assert_eq!(w.publish(0).unwrap(), LAZY_PUBLISH + 11);
    }

    #[test]
    fn marked_spsc_threaded_in_order_mixed_single_and_batches() {
        for policy in [OverflowPolicy::Block, OverflowPolicy::Reject] {
            let (mut w, mut r) = spsc_with::<u64>(64, policy, SlotLayout::Marked).unwrap();
            const N: u64 = 200_000;
            let t = std::thread::spawn(move || {
                let mut i = 0;
                while i < N {
                    if i % 3 == 0 {
                        let k = (N - i).min(37);
                        match w.publish_with(k as usize, |j| i + j as u64) {
                            Ok(got) => i += got as u64,
                            Err(BatchError::Full { .. }) => std::thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    } else {
                        match w.publish(i) {
                            Ok(o) => {
                                assert_eq!(o, i);
                                i += 1;
                            }
                            Err(PublishError::Full(_)) => std::thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            });
            let mut next = 0u64;
            let mut out = Vec::new();
            while next < N {
                out.clear();
                let got = if next.is_multiple_of(2) {
                    r.read_into(50, &mut out).read
                } else {
                    r.read_with(50, |o, v| {
                        assert_eq!(o, *v);
                        out.push(*v);
                    })
                };
                assert_eq!(got, out.len());
                for v in &out {
                    assert_eq!(*v, next);
                    next += 1;
                }
                if got == 0 {
                    r.wait(WaitStrategy::SpinYield, None);
                }
            }
            t.join().unwrap();
            assert_eq!(r.ring().published(), N);
        }
    }

    #[test]
    fn writer_is_unique() {
        let ring = crate::sync::Arc::new(Ring::<u64>::new(8, OverflowPolicy::Block, 1).unwrap());
        let w = Ring::writer(&ring).unwrap();
        assert!(Ring::writer(&ring).is_none());
        drop(w);
        assert!(Ring::writer(&ring).is_some());
    }

    #[test]
    fn spsc_block_threaded_in_order() {
        let (mut w, mut r) = spsc::<u64>(64, OverflowPolicy::Block).unwrap();
        const N: u64 = 200_000;
        let t = std::thread::spawn(move || {
            let mut i = 0;
            while i < N {
                if i % 3 == 0 {
                    let batch: Vec<u64> = (i..(i + 5).min(N)).collect();
                    w.publish_slice(&batch).unwrap();
                    i += batch.len() as u64;
                } else {
                    assert_eq!(w.publish(i).unwrap(), i);
                    i += 1;
                }
            }
        });
        let mut out = Vec::new();
        let mut next = 0;
        while next < N {
            out.clear();
            r.wait(WaitStrategy::SpinYield, None);
            r.read_into(17, &mut out);
            for v in &out {
                assert_eq!(*v, next);
                next += 1;
            }
        }
        t.join().unwrap();
        assert_eq!(r.missed(), 0);
    }

    #[test]
    fn reject_hands_back_and_counts() {
        let (mut w, mut r) = spsc::<u32>(4, OverflowPolicy::Reject).unwrap();
        for i in 0..4 {
            w.publish(i).unwrap();
        }
        assert_eq!(w.publish(9), Err(PublishError::Full(9)));
        assert_eq!(
            w.publish_slice(&[1, 2]),
            Err(BatchError::Full { accepted: 0 })
        );
        assert_eq!(w.ring().rejected(), 3);
        let mut out = Vec::new();
        r.read_into(2, &mut out);
        assert_eq!(
            w.publish_slice(&[5, 6, 7]),
            Err(BatchError::Full { accepted: 2 })
        );
        assert_eq!(w.ring().rejected(), 4);
        r.read_into(10, &mut out);
        assert_eq!(out, vec![0, 1, 2, 3, 5, 6]);
    }

    #[test]
    fn try_publish_never_waits_and_counts_only_rejects() {
        for layout in [SlotLayout::Packed, SlotLayout::Marked] {
            let (mut w, mut r) = spsc_with::<u32>(4, OverflowPolicy::Block, layout).unwrap();
            for i in 0..4 {
                assert_eq!(w.try_publish(i), Ok(u64::from(i)));
            }
            // Block: full hands the record back, not counted as rejected.
            assert_eq!(w.try_publish(9), Err(PublishError::Full(9)));
            assert_eq!(w.ring().rejected(), 0);
            let mut out = Vec::new();
            r.read_into(1, &mut out);
            assert_eq!(w.try_publish(4), Ok(4));
            assert_eq!(w.try_publish(5), Err(PublishError::Full(5)));
            r.read_into(10, &mut out);
            assert_eq!(out, vec![0, 1, 2, 3, 4]);
            w.ring().close();
            assert_eq!(w.try_publish(6), Err(PublishError::Closed(6)));
        }
        // Reject: `try_publish` is `publish`, so a refusal counts.
        let (mut w, _r) = spsc::<u32>(2, OverflowPolicy::Reject).unwrap();
        w.try_publish(0).unwrap();
        w.try_publish(1).unwrap();
        assert_eq!(w.try_publish(2), Err(PublishError::Full(2)));
        assert_eq!(w.ring().rejected(), 1);
    }

    #[test]
    fn overwrite_reports_exact_misses() {
        let (mut w, mut r) = spsc::<u64>(8, OverflowPolicy::Overwrite).unwrap();
        for i in 0..20 {
            w.publish(i).unwrap();
        }
        let mut out = Vec::new();
        let o = r.read_into(100, &mut out);
        assert_eq!(o.missed, 12);
        assert_eq!(out, (12..20).collect::<Vec<_>>());
        assert_eq!(r.position(), 20);
    }

    #[test]
    fn close_wakes_parked_reader_and_stops_writer() {
        let (mut w, mut r) = spsc::<u64>(8, OverflowPolicy::Block).unwrap();
        let t = std::thread::spawn(move || r.wait(WaitStrategy::Park, None));
        std::thread::sleep(std::time::Duration::from_millis(50));
        w.ring().close();
        assert!(t.join().unwrap());
        assert_eq!(w.publish(1), Err(PublishError::Closed(1)));
    }
}
