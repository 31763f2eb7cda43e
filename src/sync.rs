//! Synchronisation primitives, swapped for `loom`'s under `cfg(loom)`.
//!
//! Every atomic the ring protocol relies on is imported from here, so the loom
//! model tests (`tests/loom_ring.rs`) explore the real code, not a copy of it.
//! This follows crossbeam's `primitive` module.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex};

/// Thread parking, yielding and handles.
pub(crate) mod thread {
    #[cfg(loom)]
    pub(crate) use loom::thread::{current, park, yield_now, Thread};
    #[cfg(not(loom))]
    pub(crate) use std::thread::{current, park_timeout, yield_now, Thread};

    /// Under loom there is no clock: parking with a timeout is modelled as a
    /// plain park, which makes loom prove that a wake-up always arrives.
    #[cfg(loom)]
    pub(crate) fn park_timeout(_dur: std::time::Duration) {
        park();
    }
}

/// Slot storage.
///
/// Two access paths:
/// - *tracked* (`write_ptr`/`read_ptr`), used under the gated policies
///   (`Block`, `Reject`), where the protocol guarantees a slot is never read
///   and written at once. Under loom this is loom's cell, so loom reports any
///   access that is not ordered by the protocol.
/// - *racy* (`racy_write`/`racy_read`), used under `Overwrite`, where the
///   writer may overwrite a slot while a reader copies it and the reader
///   discards torn copies (seqlock). The copies are byte-wise atomic
///   (`atomic-memcpy`, C++ P1478), so the race is not undefined behaviour and
///   the fences of the seqlock synchronise. Under loom the slot is a run of
///   loom `AtomicU64` words, so loom explores stale and torn copies too.
pub(crate) mod cell {
    use std::mem::MaybeUninit;

    /// `repr(transparent)`: a slice of slots has the layout of a slice of
    /// `T`, so runs of slots can be copied and read as plain slices
    /// ([`base_ptr`]).
    #[cfg(not(loom))]
    #[derive(Debug)]
    #[repr(transparent)]
    pub(crate) struct SlotCell<T>(std::cell::UnsafeCell<MaybeUninit<T>>);

    /// Alignment of a ring's slot array: two cache lines (the adjacent-line
    /// prefetcher pairs them), so records whose size divides it never
    /// straddle a line, and the array shares no line with another object.
    #[cfg(not(loom))]
    pub(crate) const SLOTS_ALIGN: usize = 128;

    /// A cell type a slot array can hold.
    ///
    /// # Safety
    /// The all-zero bit pattern is a valid, empty cell, and if `ZEROED` is
    /// `false` any bit pattern is (outside loom the array is allocated, zeroed
    /// or not, and never initialised cell by cell).
    pub(crate) unsafe trait Cell {
        /// Whether a fresh cell must be zeroed (`false`: any bytes will do).
        #[cfg_attr(loom, allow(dead_code))]
        const ZEROED: bool;
        /// An empty cell (used under loom, where cells are real objects).
        #[cfg(loom)]
        fn empty() -> Self;
    }

    // SAFETY: `MaybeUninit<T>` may hold any bytes, zeros included.
    unsafe impl<T: Copy> Cell for SlotCell<T> {
        const ZEROED: bool = false;
        #[cfg(loom)]
        fn empty() -> Self {
            SlotCell::new()
        }
    }

    /// A slot of the *marked* layout: the record with the offset it holds.
    ///
    /// `mark` is `offset + 1` once the record with that offset is written (0:
    /// never written), stored by the writer with `Release` after the record.
    /// A reader that loads `mark == offset + 1` with `Acquire` may read the
    /// record, and it finds both in the same cache line (or pair of lines).
    #[repr(C)]
    #[derive(Debug)]
    pub(crate) struct MarkedCell<T> {
        pub(crate) mark: super::AtomicU64,
        pub(crate) cell: SlotCell<T>,
    }

    impl<T> MarkedCell<T> {
        /// Whether this slot holds the record of `offset`, written whole.
        #[inline(always)]
        pub(crate) fn holds(&self, offset: u64) -> bool {
            // Acquire: pairs with the writer's Release store of the mark
            // (made after the record), so a caller that goes on to read the
            // record sees all of it.
            self.mark.load(super::Ordering::Acquire) == offset + 1
        }
    }

    // SAFETY: a zero mark means "never written", and the record cell may
    // hold any bytes.
    unsafe impl<T: Copy> Cell for MarkedCell<T> {
        const ZEROED: bool = true;
        #[cfg(loom)]
        fn empty() -> Self {
            MarkedCell {
                mark: super::AtomicU64::new(0),
                cell: SlotCell::new(),
            }
        }
    }

    /// A ring's slot array, allocated aligned to [`SLOTS_ALIGN`].
    /// (A boxed slice gets whatever the allocator returns: glibc's large
    /// blocks start 16 bytes into a page, so every other 32-byte record would
    /// span two cache lines, and copying it in or out would touch both.)
    #[cfg(not(loom))]
    pub(crate) struct Slots<C> {
        ptr: std::ptr::NonNull<C>,
        len: usize,
    }

    #[cfg(not(loom))]
    impl<C> Slots<C> {
        fn layout(len: usize) -> Option<std::alloc::Layout> {
            std::alloc::Layout::array::<C>(len)
                .ok()?
                .align_to(SLOTS_ALIGN)
                .ok()
        }
    }

    #[cfg(not(loom))]
    impl<C: Cell> Slots<C> {
        /// `len` empty cells; `None` if the size overflows.
        pub(crate) fn new(len: usize) -> Option<Self> {
            let layout = Self::layout(len)?;
            let ptr = if layout.size() == 0 {
                std::ptr::NonNull::dangling()
            } else {
                // SAFETY: the layout has a non-zero size. Zeroed where the
                // cell type asks for it (all zeros is an empty `Cell`); a
                // packed slot holds `MaybeUninit<T>`, which needs nothing.
                let raw = unsafe {
                    if C::ZEROED {
                        std::alloc::alloc_zeroed(layout)
                    } else {
                        std::alloc::alloc(layout)
                    }
                };
                match std::ptr::NonNull::new(raw.cast::<C>()) {
                    Some(p) => p,
                    None => std::alloc::handle_alloc_error(layout),
                }
            };
            Some(Self { ptr, len })
        }
    }

    #[cfg(not(loom))]
    impl<C> std::ops::Deref for Slots<C> {
        type Target = [C];
        #[inline(always)]
        fn deref(&self) -> &[C] {
            // SAFETY: `ptr` points to `len` cells allocated by `new` (or is
            // dangling and well aligned for a zero-sized layout), valid for
            // as long as `self`; their bytes are a valid `C` (`Cell`).
            unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
        }
    }

    #[cfg(not(loom))]
    impl<C> Drop for Slots<C> {
        fn drop(&mut self) {
            // Cells hold `T: Copy` records and atomics: nothing to drop.
            if let Some(layout) = Self::layout(self.len).filter(|l| l.size() > 0) {
                // SAFETY: allocated in `new` with this very layout.
                unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast(), layout) };
            }
        }
    }

    /// Under loom the slots are a boxed slice of loom cells.
    #[cfg(loom)]
    pub(crate) struct Slots<C>(Box<[C]>);

    #[cfg(loom)]
    impl<C: Cell> Slots<C> {
        pub(crate) fn new(len: usize) -> Option<Self> {
            Some(Self((0..len).map(|_| C::empty()).collect()))
        }
    }

    #[cfg(loom)]
    impl<C> std::ops::Deref for Slots<C> {
        type Target = [C];
        fn deref(&self) -> &[C] {
            &self.0
        }
    }

    /// The first slot's value as a raw pointer with the provenance of the
    /// whole slice. The slots are contiguous `T`s (`SlotCell` is transparent)
    /// and sit in `UnsafeCell`s, so writing through the pointer is allowed;
    /// when is the ring protocol's business.
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn base_ptr<T>(slots: &[SlotCell<T>]) -> *mut T {
        std::cell::UnsafeCell::raw_get(
            slots
                .as_ptr()
                .cast::<std::cell::UnsafeCell<MaybeUninit<T>>>(),
        )
        .cast::<T>()
    }

    #[cfg(not(loom))]
    impl<T: Copy> SlotCell<T> {
        #[inline(always)]
        pub(crate) fn write_ptr(&self) -> *mut MaybeUninit<T> {
            self.0.get()
        }
        #[inline(always)]
        pub(crate) fn read_ptr(&self) -> *const MaybeUninit<T> {
            self.0.get()
        }
        /// # Safety
        /// Only the ring's single writer calls this; `T` has no padding bytes.
        #[inline(always)]
        pub(crate) unsafe fn racy_write(&self, v: T) {
            // SAFETY: the pointer is valid and aligned for T; concurrent
            // readers use `racy_read`, so all accesses are atomic.
            unsafe {
                atomic_memcpy::atomic_store(
                    self.0.get().cast::<T>(),
                    v,
                    std::sync::atomic::Ordering::Relaxed,
                )
            }
        }
        /// # Safety
        /// The slot was written at least once with `racy_write`; the result
        /// may be torn and must be validated before it is assumed init.
        #[inline(always)]
        pub(crate) unsafe fn racy_read(&self) -> MaybeUninit<T> {
            // SAFETY: valid, aligned pointer; all concurrent writes are atomic.
            unsafe {
                atomic_memcpy::atomic_load(
                    self.0.get().cast::<T>(),
                    std::sync::atomic::Ordering::Relaxed,
                )
            }
        }
    }

    #[cfg(loom)]
    #[derive(Debug)]
    pub(crate) struct SlotCell<T> {
        tracked: loom::cell::UnsafeCell<MaybeUninit<T>>,
        words: Box<[loom::sync::atomic::AtomicU64]>,
    }

    #[cfg(loom)]
    impl<T: Copy> SlotCell<T> {
        pub(crate) fn new() -> Self {
            // The loom models use plain integer records; the word view needs
            // a size that is a multiple of 8 and no padding.
            assert!(std::mem::size_of::<T>() % 8 == 0 && std::mem::align_of::<T>() <= 8);
            let n = std::mem::size_of::<T>() / 8;
            Self {
                tracked: loom::cell::UnsafeCell::new(MaybeUninit::uninit()),
                words: (0..n)
                    .map(|_| loom::sync::atomic::AtomicU64::new(0))
                    .collect(),
            }
        }
        pub(crate) fn write_ptr(&self) -> *mut MaybeUninit<T> {
            // Loom checks the causality of this access when it is taken.
            // SAFETY: the ring protocol gives the writer exclusive access.
            unsafe { self.tracked.get_mut().deref() as *mut MaybeUninit<T> }
        }
        pub(crate) fn read_ptr(&self) -> *const MaybeUninit<T> {
            // SAFETY: as for `write_ptr`; loom validates the claim.
            unsafe { self.tracked.get().deref() as *const MaybeUninit<T> }
        }
        pub(crate) unsafe fn racy_write(&self, v: T) {
            let src = (&v as *const T).cast::<u64>();
            for (i, w) in self.words.iter().enumerate() {
                // SAFETY: i < size_of::<T>() / 8; unaligned read of T's bytes.
                let x = unsafe { src.add(i).read_unaligned() };
                w.store(x, std::sync::atomic::Ordering::Relaxed);
            }
        }
        pub(crate) unsafe fn racy_read(&self) -> MaybeUninit<T> {
            let mut out = MaybeUninit::<T>::uninit();
            let dst = out.as_mut_ptr().cast::<u64>();
            for (i, w) in self.words.iter().enumerate() {
                let x = w.load(std::sync::atomic::Ordering::Relaxed);
                // SAFETY: i < size_of::<T>() / 8; unaligned write into `out`.
                unsafe { dst.add(i).write_unaligned(x) };
            }
            out
        }
    }
}
