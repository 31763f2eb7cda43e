//! Slot storage and access: one slot, or a run of consecutive offsets.
//!
//! # Layouts
//!
//! A ring stores its records in one of two layouts ([`SlotLayout`]), chosen
//! when it is created:
//!
//! - **Packed**: records back to back, nothing else. A run of `n <= capacity`
//!   records from offset `start` occupies at most two contiguous stretches of
//!   the array: from slot `start & mask` to the end, then from slot 0. The
//!   writer fills a run with one tight loop (or one `memcpy`) per stretch and
//!   readers see each stretch as a plain `&[T]`, so per-record work is just
//!   the record itself. Readers learn what is published from the shared
//!   `published` cursor.
//! - **Marked**: each slot carries a mark next to its record
//!   ([`MarkedCell`]): `offset + 1` once that offset is written, stored with
//!   `Release` after the record. A reader polls the mark of the slot it wants
//!   next, not the shared cursor, so when the writer goes record by record the
//!   reader's poll and its read of the record touch the same cache line, and
//!   the writer's cursor line is not bounced between cores on every record.
//!   The writer then stores `published` only once every [`LAZY_PUBLISH`]
//!   records or once a lap, whichever is shorter (and at every batch that
//!   crosses such a boundary); [`Ring::published`] adds the marked records
//!   past it, which are less than a lap away, so their marks are still there. The cost: a bigger
//!   slot (40 bytes for a 32-byte record) and a mark store per record, so
//!   batches move more bytes than in the packed layout.
//!
//! Marks are unambiguous because offsets never repeat: a slot's mark is the
//! offset of the last record written there, plus one, and only grows.
//!
//! Under loom the slots are loom's tracked cells, not one array, so runs go
//! slot by slot there.
//!
//! Callers guarantee the protocol of the module docs of [`super`]: the writer
//! touches only claimed, unpublished offsets (invariant 3), readers only
//! published ones their gate protects (invariant 4).

use std::mem::MaybeUninit;

#[cfg(not(loom))]
use crate::sync::cell::base_ptr;
use crate::sync::cell::{MarkedCell, SlotCell, Slots};
use crate::sync::Ordering;

use super::{OverflowPolicy, Ring};

/// How a ring lays out its slots (module docs of `ring::slots`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlotLayout {
    /// Records back to back; readers poll the shared `published` cursor.
    /// Best for batches: runs are copied with `memcpy` and read as slices.
    #[default]
    Packed,
    /// Each record next to a mark with its offset; readers poll the mark of
    /// the next slot. Best for record-at-a-time traffic (lower latency, fewer
    /// cache-line transfers per record). `Block` and `Reject` only.
    Marked,
}

/// Marked rings store `published` once per this many records, or once per
/// lap if the ring is smaller (a power of two).
pub(super) const LAZY_PUBLISH: u64 = 128;

/// The slot array in one of the two layouts.
pub(super) enum Storage<T> {
    Packed(Slots<SlotCell<T>>),
    Marked(Slots<MarkedCell<T>>),
}

impl<T: Copy> Storage<T> {
    pub(super) fn new(capacity: usize, layout: SlotLayout) -> Option<Self> {
        Some(match layout {
            SlotLayout::Packed => Storage::Packed(Slots::new(capacity)?),
            SlotLayout::Marked => Storage::Marked(Slots::new(capacity)?),
        })
    }

    pub(super) fn layout(&self) -> SlotLayout {
        match self {
            Storage::Packed(_) => SlotLayout::Packed,
            Storage::Marked(_) => SlotLayout::Marked,
        }
    }

    #[cfg(all(test, not(loom)))]
    pub(super) fn addr_and_len(&self) -> (usize, usize) {
        match self {
            Storage::Packed(s) => (s.as_ptr() as usize, s.len()),
            Storage::Marked(s) => (s.as_ptr() as usize, s.len()),
        }
    }
}

impl<T: Copy + Send> Ring<T> {
    /// The packed cell holding offset `offset`.
    #[inline(always)]
    fn packed(slots: &Slots<SlotCell<T>>, mask: u64, offset: u64) -> &SlotCell<T> {
        let idx = (offset & mask) as usize;
        debug_assert!(idx < slots.len());
        // SAFETY: idx <= mask < slots.len().
        unsafe { slots.get_unchecked(idx) }
    }

    /// The marked cell holding offset `offset`.
    #[inline(always)]
    fn marked(slots: &Slots<MarkedCell<T>>, mask: u64, offset: u64) -> &MarkedCell<T> {
        let idx = (offset & mask) as usize;
        debug_assert!(idx < slots.len());
        // SAFETY: idx <= mask < slots.len().
        unsafe { slots.get_unchecked(idx) }
    }

    /// `(first slot, length of the first stretch, length of the second)` of
    /// the run `[start, start + n)`.
    #[cfg(not(loom))]
    #[inline(always)]
    pub(super) fn stretches(&self, start: u64, n: usize) -> (usize, usize, usize) {
        debug_assert!(n as u64 <= self.capacity);
        let idx = (start & self.mask) as usize;
        let first = n.min(self.capacity as usize - idx);
        (idx, first, n - first)
    }

    /// Writes one record (any policy).
    ///
    /// # Safety
    /// `offset` is claimed by the ring's unique writer and not yet published.
    #[inline(always)]
    pub(super) unsafe fn write_one(&self, offset: u64, value: T) {
        match &self.slots {
            Storage::Packed(slots) => {
                let slot = Self::packed(slots, self.mask, offset);
                if self.policy == OverflowPolicy::Overwrite {
                    // SAFETY: only the writer writes slots (invariant 1);
                    // readers may copy this slot concurrently, byte-wise
                    // atomically, and validate their copy (invariant 5).
                    unsafe { slot.racy_write(value) };
                } else {
                    // SAFETY: the claim guarantees no reader reads this slot
                    // now (invariant 3), and the caller is the only writer
                    // (invariant 1).
                    unsafe { (*slot.write_ptr()).write(value) };
                }
            }
            Storage::Marked(slots) => {
                // SAFETY: as for a packed slot under the gated policies (a
                // marked ring is never `Overwrite`).
                unsafe { Self::write_marked(slots, self.mask, offset, value) };
            }
        }
    }

    /// Writes one record and then its mark.
    ///
    /// # Safety
    /// As [`Ring::write_one`].
    #[inline(always)]
    unsafe fn write_marked(slots: &Slots<MarkedCell<T>>, mask: u64, offset: u64, value: T) {
        let slot = Self::marked(slots, mask, offset);
        // SAFETY: the claim guarantees no reader reads this slot now (its
        // mark still shows an older offset and every gate is past that one),
        // and the caller is the only writer (invariant 1).
        unsafe { (*slot.cell.write_ptr()).write(value) };
        // Release: the record written above happens before any reader's
        // Acquire load that sees this mark.
        slot.mark.store(offset + 1, Ordering::Release);
    }

    /// Writes `fill(i)` at offset `start + i` for every `i < n`; gated
    /// policies only (under `Overwrite` use [`Ring::write_one`]).
    ///
    /// # Safety
    /// As [`Ring::write_one`], for every offset of the run; `n <= capacity`.
    #[inline(always)]
    pub(super) unsafe fn fill_run(&self, start: u64, n: usize, mut fill: impl FnMut(usize) -> T) {
        debug_assert!(self.policy != OverflowPolicy::Overwrite);
        match &self.slots {
            #[cfg(not(loom))]
            Storage::Packed(slots) => {
                let (idx, first, second) = self.stretches(start, n);
                let base = base_ptr(slots);
                // Slots idx..idx + first and 0..second lie inside the array
                // (idx + first <= capacity, second <= idx) and hold claimed,
                // unpublished offsets that no reader touches (invariant 3).
                // SAFETY: as just said, for both stretches.
                unsafe {
                    let a = base.add(idx);
                    for i in 0..first {
                        a.add(i).write(fill(i));
                    }
                    for i in 0..second {
                        base.add(i).write(fill(first + i));
                    }
                }
            }
            #[cfg(loom)]
            Storage::Packed(slots) => {
                for i in 0..n {
                    let slot = Self::packed(slots, self.mask, start + i as u64);
                    // SAFETY: as above, slot by slot; loom checks each access.
                    unsafe { (*slot.write_ptr()).write(fill(i)) };
                }
            }
            Storage::Marked(slots) => {
                for i in 0..n {
                    // SAFETY: forwarded from the caller, offset by offset.
                    unsafe { Self::write_marked(slots, self.mask, start + i as u64, fill(i)) };
                }
            }
        }
    }

    /// Copies `src` to offsets `start..start + src.len()`; gated policies only.
    ///
    /// # Safety
    /// As [`Ring::fill_run`].
    #[inline(always)]
    pub(super) unsafe fn copy_run_in(&self, start: u64, src: &[T]) {
        debug_assert!(self.policy != OverflowPolicy::Overwrite);
        #[cfg(not(loom))]
        if let Storage::Packed(slots) = &self.slots {
            let (idx, first, second) = self.stretches(start, src.len());
            let base = base_ptr(slots);
            // SAFETY: as in `fill_run`; `src` is a caller's slice and cannot
            // overlap the ring's own slots.
            unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), base.add(idx), first);
                std::ptr::copy_nonoverlapping(src.as_ptr().add(first), base, second);
            }
            return;
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.fill_run(start, src.len(), |i| src[i]) };
    }

    /// Copies the record at `offset` out of its slot.
    ///
    /// # Safety
    /// The record must be published (`offset < published` loaded with
    /// `Acquire`, or its mark seen with `Acquire`) and, under the gated
    /// policies, protected by one of the caller's gates or positions as
    /// invariant 3 requires. Under `Overwrite` the copy may be torn: the
    /// caller must validate it (invariant 5) before treating it as a `T`,
    /// which is why it is returned as `MaybeUninit`.
    #[inline(always)]
    pub(super) unsafe fn copy_slot(&self, offset: u64) -> MaybeUninit<T> {
        match &self.slots {
            Storage::Packed(slots) => {
                let slot = Self::packed(slots, self.mask, offset);
                if self.policy == OverflowPolicy::Overwrite {
                    // SAFETY: the slot was written by a publish (offset <
                    // published); the copy is byte-wise atomic and validated
                    // by the caller.
                    unsafe { slot.racy_read() }
                } else {
                    // SAFETY: the caller guarantees the slot holds the
                    // published record and that the writer cannot touch it.
                    unsafe { *slot.read_ptr() }
                }
            }
            Storage::Marked(slots) => {
                let slot = Self::marked(slots, self.mask, offset);
                // SAFETY: as for a packed slot under the gated policies.
                unsafe { *slot.cell.read_ptr() }
            }
        }
    }

    /// Whether the record at `offset` is marked as written (marked layout
    /// only; always `false` for a packed ring).
    #[inline(always)]
    pub(super) fn is_marked(&self, offset: u64) -> bool {
        match &self.slots {
            Storage::Packed(_) => false,
            Storage::Marked(slots) => Self::marked(slots, self.mask, offset).holds(offset),
        }
    }

    /// The first offset in `[from, to)` whose record is not marked as
    /// written, or `to` (marked layout; a packed ring returns `from`).
    /// Every offset below the result is published, as `published` loaded
    /// with `Acquire` would say: each mark is loaded with `Acquire`.
    #[inline(always)]
    pub(super) fn scan_marks(&self, from: u64, to: u64) -> u64 {
        let Storage::Marked(slots) = &self.slots else {
            return from;
        };
        let mut pos = from;
        while pos < to && Self::marked(slots, self.mask, pos).holds(pos) {
            pos += 1;
        }
        pos
    }

    /// Marked layout: calls `f(offset, &record)` for the records from
    /// `start` on, up to `max` of them, while their marks show them written;
    /// returns how many. One pass: each slot's mark and record are read
    /// together. A packed ring visits nothing.
    ///
    /// # Safety
    /// The caller's gate protects every offset from `start` on until this
    /// returns (invariants 3 and 4); gated policies only.
    #[inline(always)]
    pub(super) unsafe fn visit_marked(
        &self,
        start: u64,
        max: usize,
        mut f: impl FnMut(u64, &T),
    ) -> usize {
        let Storage::Marked(slots) = &self.slots else {
            return 0;
        };
        // No more than a lap can be published past `start`.
        let end = start + (max as u64).min(self.capacity);
        let mut pos = start;
        while pos < end {
            let slot = Self::marked(slots, self.mask, pos);
            if !slot.holds(pos) {
                break;
            }
            // SAFETY: the mark shows the record of `pos` written (and it was
            // written before the mark); the caller's gate keeps the writer
            // off the slot until this returns.
            f(pos, unsafe { (*slot.cell.read_ptr()).assume_init_ref() });
            pos += 1;
        }
        (pos - start) as usize
    }

    /// Calls `f(offset, &record)` for every offset of `[start, start + n)`;
    /// gated policies only.
    ///
    /// # Safety
    /// Every offset of the run is published (`Acquire`) and protected by the
    /// caller's gate until this returns (invariants 3 and 4); `n <= capacity`.
    #[inline(always)]
    pub(super) unsafe fn visit_run(&self, start: u64, n: usize, mut f: impl FnMut(u64, &T)) {
        debug_assert!(self.policy != OverflowPolicy::Overwrite);
        match &self.slots {
            #[cfg(not(loom))]
            Storage::Packed(slots) => {
                let (idx, first, second) = self.stretches(start, n);
                let base = base_ptr(slots).cast_const();
                // Both stretches lie inside the array (see `fill_run`) and
                // hold published, initialised records that the writer cannot
                // touch while the caller's gate is below them (until this
                // returns).
                // SAFETY: as just said, for slots idx..idx + first.
                let a = unsafe { std::slice::from_raw_parts(base.add(idx), first) };
                // SAFETY: as just said, for slots 0..second.
                let b = unsafe { std::slice::from_raw_parts(base, second) };
                // Two plain loops, not a chain, so each vectorises on its own.
                for (i, v) in a.iter().enumerate() {
                    f(start + i as u64, v);
                }
                let wrapped = start + first as u64;
                for (i, v) in b.iter().enumerate() {
                    f(wrapped + i as u64, v);
                }
            }
            #[cfg(loom)]
            Storage::Packed(slots) => {
                for offset in start..start + n as u64 {
                    let slot = Self::packed(slots, self.mask, offset);
                    // SAFETY: as above, slot by slot; loom checks each access.
                    f(offset, unsafe { (*slot.read_ptr()).assume_init_ref() });
                }
            }
            Storage::Marked(slots) => {
                for offset in start..start + n as u64 {
                    let slot = Self::marked(slots, self.mask, offset);
                    // SAFETY: the record is published and protected (caller);
                    // it was written before its mark, so it is initialised.
                    f(offset, unsafe { (*slot.cell.read_ptr()).assume_init_ref() });
                }
            }
        }
    }
}
