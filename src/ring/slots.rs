//! Slot access: one slot, or a run of consecutive offsets.
//!
//! A run of `n <= capacity` records from offset `start` occupies at most two
//! contiguous stretches of the slot array: from slot `start & mask` to the end
//! of the array, then from slot 0. Under the gated policies the writer fills a
//! run with one tight loop (or one `memcpy`) per stretch and readers see each
//! stretch as a plain `&[T]`, so per-record work is just the record itself:
//! no index masking, no policy test, no bounds check. Under loom the slots are
//! loom's tracked cells, not one array, so runs go slot by slot there.
//!
//! Callers guarantee the protocol of the module docs of [`super`]: the writer
//! touches only claimed, unpublished offsets (invariant 3), readers only
//! published ones their gate protects (invariant 4).

use std::mem::MaybeUninit;

#[cfg(not(loom))]
use crate::sync::cell::base_ptr;
use crate::sync::cell::SlotCell;

use super::{OverflowPolicy, Ring};

impl<T: Copy + Send> Ring<T> {
    /// The cell holding offset `offset`.
    #[inline(always)]
    fn slot(&self, offset: u64) -> &SlotCell<T> {
        let idx = (offset & self.mask) as usize;
        debug_assert!(idx < self.slots.len());
        // SAFETY: idx <= mask < slots.len().
        unsafe { self.slots.get_unchecked(idx) }
    }

    /// `(first slot, length of the first stretch, length of the second)` of
    /// the run `[start, start + n)`.
    #[cfg(not(loom))]
    #[inline(always)]
    fn stretches(&self, start: u64, n: usize) -> (usize, usize, usize) {
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
        let slot = self.slot(offset);
        if self.policy == OverflowPolicy::Overwrite {
            // SAFETY: only the writer writes slots (invariant 1); readers may
            // copy this slot concurrently, byte-wise atomically, and validate
            // their copy (invariant 5).
            unsafe { slot.racy_write(value) };
        } else {
            // SAFETY: the claim guarantees no reader reads this slot now
            // (invariant 3), and the caller is the only writer (invariant 1).
            unsafe { (*slot.write_ptr()).write(value) };
        }
    }

    /// Writes `fill(i)` at offset `start + i` for every `i < n`; gated
    /// policies only (under `Overwrite` use [`Ring::write_one`]).
    ///
    /// # Safety
    /// As [`Ring::write_one`], for every offset of the run; `n <= capacity`.
    #[inline(always)]
    pub(super) unsafe fn fill_run(&self, start: u64, n: usize, mut fill: impl FnMut(usize) -> T) {
        debug_assert!(self.policy != OverflowPolicy::Overwrite);
        #[cfg(not(loom))]
        {
            let (idx, first, second) = self.stretches(start, n);
            let base = base_ptr(&self.slots);
            // SAFETY: slots idx..idx + first and 0..second lie inside the
            // array (idx + first <= capacity, second <= idx) and hold claimed,
            // unpublished offsets that no reader touches (invariant 3).
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
        for i in 0..n {
            // SAFETY: as above, slot by slot; loom checks each access.
            unsafe { (*self.slot(start + i as u64).write_ptr()).write(fill(i)) };
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
        {
            let (idx, first, second) = self.stretches(start, src.len());
            let base = base_ptr(&self.slots);
            // SAFETY: as in `fill_run`; `src` is a caller's slice and cannot
            // overlap the ring's own slots.
            unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), base.add(idx), first);
                std::ptr::copy_nonoverlapping(src.as_ptr().add(first), base, second);
            }
        }
        #[cfg(loom)]
        // SAFETY: forwarded from the caller.
        unsafe {
            self.fill_run(start, src.len(), |i| src[i])
        };
    }

    /// Copies the record at `offset` out of its slot.
    ///
    /// # Safety
    /// The record must be published (`offset < published` loaded with
    /// `Acquire`) and, under the gated policies, protected by one of the
    /// caller's gates or positions as invariant 3 requires. Under `Overwrite`
    /// the copy may be torn: the caller must validate it (invariant 5) before
    /// treating it as a `T`, which is why it is returned as `MaybeUninit`.
    #[inline(always)]
    pub(super) unsafe fn copy_slot(&self, offset: u64) -> MaybeUninit<T> {
        let slot = self.slot(offset);
        if self.policy == OverflowPolicy::Overwrite {
            // SAFETY: the slot was written by a publish (offset < published);
            // the copy is byte-wise atomic and validated by the caller.
            unsafe { slot.racy_read() }
        } else {
            // SAFETY: the caller guarantees the slot holds the published
            // record and that the writer cannot touch it during the read.
            unsafe { *slot.read_ptr() }
        }
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
        #[cfg(not(loom))]
        {
            let (idx, first, second) = self.stretches(start, n);
            let base = base_ptr(&self.slots).cast_const();
            // Both stretches lie inside the array (see `fill_run`) and hold
            // published, initialised records that the writer cannot touch
            // while the caller's gate is below them (until this returns).
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
        for offset in start..start + n as u64 {
            // SAFETY: as above, slot by slot; loom checks each access.
            f(offset, unsafe {
                (*self.slot(offset).read_ptr()).assume_init_ref()
            });
        }
    }
}
