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
/// Outside loom this is `std::cell::UnsafeCell`. Under loom, slots written and
/// read under the gated policies (`Block`, `Reject`) use loom's tracked cell, so
/// loom reports any read that is not ordered after the write of the same slot
/// and any overwrite not ordered after the last read. Under `Overwrite` the
/// writer may legitimately overwrite a slot a reader is copying (the copy is
/// then discarded by lap validation), which loom's cell would flag, so that
/// policy uses an untracked cell and the loom tests check the values instead.
pub(crate) mod cell {
    #[cfg(not(loom))]
    #[derive(Debug)]
    pub(crate) struct SlotCell<T>(std::cell::UnsafeCell<T>);

    #[cfg(not(loom))]
    impl<T> SlotCell<T> {
        pub(crate) fn new(v: T) -> Self {
            Self(std::cell::UnsafeCell::new(v))
        }
        #[inline(always)]
        pub(crate) fn write_ptr(&self, _tracked: bool) -> *mut T {
            self.0.get()
        }
        #[inline(always)]
        pub(crate) fn read_ptr(&self, _tracked: bool) -> *const T {
            self.0.get()
        }
    }

    #[cfg(loom)]
    #[derive(Debug)]
    pub(crate) struct SlotCell<T> {
        tracked: loom::cell::UnsafeCell<T>,
        racy: std::cell::UnsafeCell<T>,
    }

    #[cfg(loom)]
    impl<T: Copy> SlotCell<T> {
        pub(crate) fn new(v: T) -> Self {
            Self {
                tracked: loom::cell::UnsafeCell::new(v),
                racy: std::cell::UnsafeCell::new(v),
            }
        }
        pub(crate) fn write_ptr(&self, tracked: bool) -> *mut T {
            if tracked {
                // Loom checks the causality of this access when it is taken.
                // SAFETY: the caller holds the slot exclusively by the ring protocol;
                // the pointer does not outlive the write it is taken for.
                unsafe { self.tracked.get_mut().deref() as *mut T }
            } else {
                self.racy.get()
            }
        }
        pub(crate) fn read_ptr(&self, tracked: bool) -> *const T {
            if tracked {
                // SAFETY: as for `write_ptr`; loom validates the claim.
                unsafe { self.tracked.get().deref() as *const T }
            } else {
                self.racy.get()
            }
        }
    }
}
