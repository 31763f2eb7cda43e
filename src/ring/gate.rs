//! Gating sequences: the positions that hold the writer back.
//!
//! A gate is a reader-side position (a consumer group's committed offset in a
//! partition, or a broadcast member's own position). Under the gated overflow
//! policies (`Block`, `Reject`) the writer may write offset `w` only while
//! `w < min(gates) + capacity`, so a slot is never reused while a gate still
//! needs the record in it.
//!
//! # Joining and rewinding
//!
//! The writer caches the limit it computed from the gates and re-reads them
//! only when the cache runs out. A gate that appears (or moves back) below the
//! writer's cached basis would not be seen until the next refresh, so the
//! writer could overwrite the records the new gate is meant to protect. The two
//! sides therefore run a Dekker-style handshake, with `SeqCst` on both sides:
//!
//! - the writer, on refresh: scan gates, **store** the limit it may use, scan
//!   the gates **again**, and use the lower of the two results;
//! - the joiner: **store** its gate, then **load** the announced limit; if the
//!   limit reaches past `gate + capacity`, records below `limit - capacity` are
//!   not protected, so it moves its gate up to `limit - capacity` and checks
//!   again.
//!
//! In the single total order of `SeqCst` operations either the writer's second
//! scan sees the new gate (and its limit respects it) or the writer's limit
//! store precedes the joiner's load (and the joiner sees that limit). Gates that
//! only move forward need no handshake: a forward move can never make an
//! earlier limit unsafe.

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU64, AtomicUsize, Mutex, Ordering};

/// Value of a gate slot that is not in use.
pub(crate) const INACTIVE: u64 = u64::MAX;

/// Index of a gate slot in its ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GateId(pub(crate) usize);

/// The gate slots of one ring.
#[derive(Debug)]
pub(crate) struct Gates {
    slots: Box<[CachePadded<AtomicU64>]>,
    /// One past the highest slot ever used, so the writer scans a short prefix.
    hi: AtomicUsize,
    /// Which slots are taken. Only joins and leaves touch it (cold path).
    used: Mutex<Vec<bool>>,
}

impl Gates {
    pub(crate) fn new(max: usize) -> Self {
        let slots = (0..max)
            .map(|_| CachePadded::new(AtomicU64::new(INACTIVE)))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Self {
            slots,
            hi: AtomicUsize::new(0),
            used: Mutex::new(vec![false; max]),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The slowest active gate, if any.
    ///
    /// `SeqCst` loads: the second scan of the writer's refresh is one half of
    /// the join handshake (module docs). They also give `Acquire`, pairing with
    /// the `Release` store in [`Gates::advance`], so a reader's copies out of
    /// the slots below its gate happen before the writer reuses those slots.
    pub(crate) fn min(&self) -> Option<u64> {
        let hi = self.hi.load(Ordering::SeqCst);
        let mut min = INACTIVE;
        for slot in &self.slots[..hi] {
            min = min.min(slot.load(Ordering::SeqCst));
        }
        (min != INACTIVE).then_some(min)
    }

    /// Takes a free slot and stores `pos` in it with the join handshake's
    /// first step. The caller must then run [`super::Ring::validate_gate`].
    pub(crate) fn attach(&self, pos: u64) -> Option<GateId> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let idx = used.iter().position(|u| !u)?;
        used[idx] = true;
        // SeqCst: `hi` and the gate value are stores of the handshake; the
        // writer's second scan loads `hi` then the slot (module docs).
        self.hi.fetch_max(idx + 1, Ordering::SeqCst);
        self.slots[idx].store(pos, Ordering::SeqCst);
        Some(GateId(idx))
    }

    /// Releases a slot; the writer stops waiting for it at its next refresh.
    pub(crate) fn detach(&self, id: GateId) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        // Release: reads of slots done under this gate happen before the
        // writer, which loads gates with Acquire, reuses them.
        self.slots[id.0].store(INACTIVE, Ordering::Release);
        used[id.0] = false;
    }

    /// The gate's current position.
    #[inline]
    pub(crate) fn get(&self, id: GateId) -> u64 {
        self.slots[id.0].load(Ordering::Relaxed)
    }

    /// Moves a gate forward. `Release` pairs with the writer's `Acquire`
    /// scan: the reader's copies out of slots below `pos` happen before the
    /// writer overwrites them.
    #[inline]
    pub(crate) fn advance(&self, id: GateId, pos: u64) {
        debug_assert!(pos >= self.get(id), "gates only move forward here");
        self.slots[id.0].store(pos, Ordering::Release);
    }

    /// Stores a gate position as a step of the join handshake (may move back).
    pub(crate) fn store_handshake(&self, id: GateId, pos: u64) {
        // SeqCst: first half of the join handshake (module docs).
        self.slots[id.0].store(pos, Ordering::SeqCst);
    }
}
