//! The spsc pair: [`spsc`] (or [`spsc_with`]) makes a ring with one gate and
//! hands out its [`Writer`] and the [`Reader`] that holds that gate.

use std::fmt;
use std::time::Instant;

use super::{
    wait_until, CapacityError, Cursor, GateId, OverflowPolicy, ReadOutcome, Ring, SlotLayout,
    WaitStrategy, Wakeable, Writer,
};

/// A single-producer single-consumer pair over one ring: the ring core used
/// directly, without topics or groups. The reader's position is the ring's
/// only gate.
pub fn spsc<T: Copy + Send>(
    capacity: usize,
    policy: OverflowPolicy,
) -> Result<(Writer<T>, Reader<T>), CapacityError> {
    spsc_with(capacity, policy, SlotLayout::Packed)
}

/// [`spsc`] with a chosen slot layout.
pub fn spsc_with<T: Copy + Send>(
    capacity: usize,
    policy: OverflowPolicy,
    layout: SlotLayout,
) -> Result<(Writer<T>, Reader<T>), CapacityError> {
    let ring = crate::sync::Arc::new(Ring::with_layout(capacity, policy, 1, layout)?);
    let writer = Ring::writer(&ring).expect("fresh ring has its writer");
    let (gate, start) = ring.attach_gate(0).expect("fresh ring has a gate slot");
    Ok((
        writer,
        Reader {
            ring,
            cursor: Cursor::at(start),
            gate,
            missed: 0,
            parker: false,
        },
    ))
}

/// The reading end of [`spsc`]. Aligned to 128 bytes, like [`Writer`]: its
/// cursor is written on every read.
#[repr(align(128))]
pub struct Reader<T: Copy + Send> {
    // `pub(super)`: the ring's unit tests reach the shared ring through it.
    pub(super) ring: crate::sync::Arc<Ring<T>>,
    cursor: Cursor,
    gate: GateId,
    missed: u64,
    parker: bool,
}

impl<T: Copy + Send> fmt::Debug for Reader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("position", &self.cursor.pos)
            .finish_non_exhaustive()
    }
}

impl<T: Copy + Send> Reader<T> {
    /// Reads every available record, up to `max`, into `out` (appending), and
    /// releases their slots with one gate store.
    #[inline]
    pub fn read_into(&mut self, max: usize, out: &mut Vec<T>) -> ReadOutcome {
        let outcome = self.ring.read_into(&mut self.cursor, max, out, |_, v| v);
        self.missed += outcome.missed;
        if outcome.read > 0 || outcome.missed > 0 {
            self.ring.advance_gate(self.gate, self.cursor.pos);
        }
        outcome
    }

    /// Calls `f(offset, &record)` on every available record, up to `max`, in
    /// place, then releases their slots with one gate store. Gated policies
    /// only; under `Overwrite` use [`Reader::read_into`].
    #[inline]
    pub fn read_with(&mut self, max: usize, f: impl FnMut(u64, &T)) -> usize {
        // SAFETY: our gate sits at `cursor.pos` and is advanced only after `f`
        // has returned for every record read.
        let n = unsafe { self.ring.read_ref(&mut self.cursor, max, f) };
        if n > 0 {
            self.ring.advance_gate(self.gate, self.cursor.pos);
        }
        n
    }

    /// Waits with `strategy` until a record is available, the ring is closed,
    /// or `deadline` passes. Returns whether a record is available.
    pub fn wait(&mut self, strategy: WaitStrategy, deadline: Option<Instant>) -> bool {
        if strategy == WaitStrategy::Park && !self.parker {
            self.ring.waiters().attach_parker();
            self.parker = true;
        }
        let ring = &*self.ring as &dyn Wakeable;
        let pos = self.cursor.pos;
        wait_until(|| std::iter::once((ring, pos)), strategy, deadline)
    }

    /// Next offset to read.
    pub fn position(&self) -> u64 {
        self.cursor.pos
    }

    /// Records skipped because the writer lapped this reader.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// The shared ring.
    pub fn ring(&self) -> &Ring<T> {
        &self.ring
    }
}

impl<T: Copy + Send> Drop for Reader<T> {
    fn drop(&mut self) {
        if self.parker {
            self.ring.waiters().detach_parker();
        }
        self.ring.detach_gate(self.gate);
    }
}
