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
        pub(crate) fn new() -> Self {
            Self(std::cell::UnsafeCell::new(MaybeUninit::uninit()))
        }
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
