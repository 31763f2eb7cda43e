//! Wait strategies and the parking protocol.
//!
//! A reader with nothing to read waits in one of three ways, chosen per
//! consumer: [`WaitStrategy::BusySpin`] (lowest latency, burns a core),
//! [`WaitStrategy::SpinYield`] (spins, then yields the core to other threads),
//! and [`WaitStrategy::Park`] (spins briefly, then sleeps in the kernel until
//! the writer wakes it: an idle consumer costs about 0 % CPU).
//!
//! [`wait_until`] is the wait itself, across any number of rings of any
//! record types (a consumer waits on all of its partitions at once, the spsc
//! reader on its one ring), each seen through [`Wakeable`].
//!
//! # No lost wake-ups
//!
//! Parking is a Dekker pair between the reader and the writer:
//!
//! - reader ([`wait_until`]): register in [`Waiters`] (`parked` count,
//!   `SeqCst`), then a `SeqCst` fence, then re-check the published cursor
//!   (and, in the marked slot layout, the mark of the slot it waits for) and
//!   the closed flag; park only if all still say "nothing to do";
//! - writer ([`Waiters::notify`]): store the published cursor or the slot's
//!   mark, `SeqCst` fence, then load `parked`; if non-zero, unpark every
//!   registered thread.
//!
//! Either the reader's re-check sees the new cursor, or the writer's load sees
//! the registration and unparks it (`unpark` before `park` is not lost: the
//! thread's token is kept). The writer pays for the fence only while at least
//! one parking reader is attached to the ring (`park_readers`), so busy-spin
//! pipelines never pay it. A reader that parks while it is still attaching
//! could in principle miss the very first wake-up, so parking is done in
//! slices of [`PARK_SLICE`] as a backstop; the slices cost a few wake-ups per
//! second at most.

use std::time::{Duration, Instant};

use super::Ring;
use crate::sync::thread::{self, Thread};
use crate::sync::{fence, AtomicUsize, Mutex, Ordering};

/// How a consumer waits when no record is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitStrategy {
    /// Re-check in a tight loop with a CPU spin hint. Lowest latency; uses a
    /// whole core while idle.
    BusySpin,
    /// Spin for a short while, then `yield` the thread between checks.
    SpinYield,
    /// Spin briefly, then park until the writer publishes (about 0 % CPU idle).
    #[default]
    Park,
}

/// Longest single park; a backstop against the attach race (module docs).
pub(crate) const PARK_SLICE: Duration = Duration::from_millis(50);

/// The parked readers of one ring.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    /// Readers with the `Park` strategy currently attached to this ring.
    park_readers: AtomicUsize,
    /// Readers registered as (about to be) parked.
    parked: AtomicUsize,
    threads: Mutex<Vec<(u64, Thread)>>,
}

impl Waiters {
    pub(crate) fn attach_parker(&self) {
        // SeqCst so the count is ordered with the registration that follows.
        self.park_readers.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn detach_parker(&self) {
        self.park_readers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Registers the current thread as about to park (reader side, step 1).
    pub(crate) fn register(&self, token: u64) {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        threads.push((token, thread::current()));
        // SeqCst: the reader half of the Dekker pair (module docs).
        self.parked.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn unregister(&self, token: u64) {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = threads.iter().position(|(t, _)| *t == token) {
            threads.swap_remove(i);
            self.parked.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Writer side, after storing the published cursor.
    #[inline]
    pub(crate) fn notify(&self) {
        if self.park_readers.load(Ordering::Relaxed) == 0 {
            return;
        }
        // SeqCst fence: the writer half of the Dekker pair; orders the
        // preceding cursor store before the load of `parked`.
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) != 0 {
            self.wake_all();
        }
    }

    /// Unparks every registered thread (close, or a publish with parkers).
    #[cold]
    pub(crate) fn wake_all(&self) {
        let threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        for (_, t) in threads.iter() {
            t.unpark();
        }
    }
}

/// Per-call waiting state: spins, then yields, then parks, by strategy.
#[derive(Debug)]
pub(crate) struct Waiter {
    strategy: WaitStrategy,
    step: u32,
}

/// Back-off steps that spin before `SpinYield` starts yielding.
const SPIN_LIMIT: u32 = 64;
/// Back-off steps that spin before `Park` yields: short (about 400 pause
/// instructions, a few µs), so that consumers of a steady trickle park
/// instead of burning the CPU the producers need.
const PARK_SPIN_LIMIT: u32 = 10;
/// Back-off steps before `Park` parks.
const YIELD_LIMIT: u32 = PARK_SPIN_LIMIT + 4;

/// What the caller of [`Waiter::pause`] should do next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pause {
    /// Re-check and call `pause` again.
    Again,
    /// Time to park (only for [`WaitStrategy::Park`]).
    Park,
}

impl Waiter {
    pub(crate) fn new(strategy: WaitStrategy) -> Self {
        Self { strategy, step: 0 }
    }

    pub(crate) fn reset(&mut self) {
        self.step = 0;
    }

    /// One back-off step.
    pub(crate) fn pause(&mut self) -> Pause {
        self.step = self.step.saturating_add(1);
        if cfg!(loom) {
            thread::yield_now();
            return if self.strategy == WaitStrategy::Park && self.step > 2 {
                Pause::Park
            } else {
                Pause::Again
            };
        }
        match self.strategy {
            WaitStrategy::BusySpin => std::hint::spin_loop(),
            WaitStrategy::SpinYield if self.step <= SPIN_LIMIT => {
                for _ in 0..(1u32 << self.step.min(6)) {
                    std::hint::spin_loop();
                }
            }
            WaitStrategy::SpinYield => thread::yield_now(),
            WaitStrategy::Park if self.step <= PARK_SPIN_LIMIT => {
                for _ in 0..(1u32 << self.step.min(6)) {
                    std::hint::spin_loop();
                }
            }
            WaitStrategy::Park if self.step <= YIELD_LIMIT => thread::yield_now(),
            WaitStrategy::Park => return Pause::Park,
        }
        Pause::Again
    }
}

/// Parks the current thread for at most `dur` (bounded by [`PARK_SLICE`]).
pub(crate) fn park_for(dur: Duration) {
    thread::park_timeout(dur.min(PARK_SLICE));
}

/// Object-safe view of a ring for waiting across rings of any record type.
#[doc(hidden)]
pub(crate) trait Wakeable {
    fn ready_at(&self, pos: u64) -> bool;
    fn waiters_ref(&self) -> &Waiters;
}

impl<T: Copy + Send> Wakeable for Ring<T> {
    fn ready_at(&self, pos: u64) -> bool {
        self.ready(pos)
    }
    fn waiters_ref(&self) -> &Waiters {
        &self.waiters
    }
}

static PARK_TOKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Waits until one of the `(ring, position)` pairs that `targets` yields has
/// a record past its position, or its ring is closed, or `deadline` passes.
/// Returns whether one is ready. `targets` is called for every check, so
/// waiting allocates nothing.
///
/// With [`WaitStrategy::Park`] the caller must have attached itself as a
/// parker ([`Waiters::attach_parker`]) to every ring first, so writers know to
/// check for sleepers.
pub(crate) fn wait_until<'a, I>(
    targets: impl Fn() -> I,
    strategy: WaitStrategy,
    deadline: Option<Instant>,
) -> bool
where
    I: Iterator<Item = (&'a dyn Wakeable, u64)>,
{
    let any_ready = || targets().any(|(r, p)| r.ready_at(p));
    let expired = || deadline.is_some_and(|d| Instant::now() >= d);
    let mut waiter = Waiter::new(strategy);
    // The clock is first read after 64 checks: callers read it just before
    // (to set the deadline), so a record arriving soon costs no clock read.
    let mut checks = 1u32;
    loop {
        if any_ready() {
            return true;
        }
        if checks.is_multiple_of(64) && expired() {
            return false;
        }
        checks = checks.wrapping_add(1);
        if waiter.pause() == Pause::Park {
            let token = PARK_TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for (r, _) in targets() {
                r.waiters_ref().register(token);
            }
            // SeqCst fence: reader half of the Dekker pair (wait module docs):
            // the registration is ordered before the re-check of the cursors.
            fence(Ordering::SeqCst);
            let ready = any_ready();
            if !ready {
                let left = match deadline {
                    Some(d) => d.saturating_duration_since(Instant::now()),
                    None => PARK_SLICE,
                };
                if !left.is_zero() {
                    park_for(left);
                }
            }
            for (r, _) in targets() {
                r.waiters_ref().unregister(token);
            }
            if ready {
                return true;
            }
            if expired() {
                return false;
            }
            waiter.reset();
        }
    }
}
