//! Zero heap allocations per record on the journaled publish path: the
//! producer's publish and the journaller's pass that writes the record
//! (encode, batch, `write`, gate, `durable`), counted by a global allocator
//! over every thread of this test binary (it holds only this test, so only
//! the producer and the journaller run while it counts).

#![cfg(feature = "journal")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use telering::journal::{FsyncPolicy, JournalConfig};
use telering::{DeviceId, Engine, Reading, TopicConfig};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Publishes `n` records one at a time and waits until the journal holds
/// them; returns the allocations made meanwhile by any thread.
fn journaled(e: &Engine<Reading>, p: &mut telering::Producer<Reading>, from: u64, n: u64) -> u64 {
    let log = e.journal_logs("temperature").unwrap().unwrap()[0].clone();
    let dev = DeviceId::new("dev-1").unwrap();
    let before = ALLOCS.load(Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    for i in from..from + n {
        p.send_to(0, Reading::new(dev, i, 20.0, 50.0)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.durable() < from + n && Instant::now() < deadline {
        std::hint::spin_loop();
    }
    COUNTING.store(false, Ordering::Relaxed);
    assert_eq!(log.durable(), from + n, "the journal took them all");
    ALLOCS.load(Ordering::Relaxed) - before
}

#[test]
fn journaled_publish_allocates_nothing_per_record() {
    // The counter counts.
    COUNTING.store(true, Ordering::Relaxed);
    let v = std::hint::black_box(vec![1u8; 64]);
    COUNTING.store(false, Ordering::Relaxed);
    assert!(ALLOCS.load(Ordering::Relaxed) >= 1 && v.len() == 64);
    let dir = tempfile::tempdir().unwrap();
    for fsync in [
        FsyncPolicy::Never,
        FsyncPolicy::Interval(Duration::from_millis(10)),
    ] {
        let sub = dir
            .path()
            .join(format!("{fsync:?}").replace(['(', ')', ' '], "_"));
        let mut cfg = JournalConfig::new(&sub).fsync(fsync);
        // No periodic offsets file while counting (no group commits anyway).
        cfg.offsets_interval = Duration::from_secs(3600);
        let e: Engine<Reading> = Engine::with_journal(cfg).unwrap();
        e.create_topic("temperature", TopicConfig::new(1, 4096).journaled(true))
            .unwrap();
        let mut p = e.producer("temperature").unwrap();
        // Warm up: buffers reach their size, the journaller has parked once.
        journaled(&e, &mut p, 0, 10_000);
        std::thread::sleep(Duration::from_millis(100));
        let small = journaled(&e, &mut p, 10_000, 20_000);
        let large = journaled(&e, &mut p, 30_000, 200_000);
        eprintln!("{fsync:?}: {small} allocations for 20 000 records, {large} for 200 000");
        // Ten times the records, the same (small, constant) count: parking
        // and waking can allocate a little, records nothing.
        assert!(
            large <= 32 && small <= 32,
            "{fsync:?}: {small} allocations for 20 000 records, {large} for 200 000"
        );
        drop(p);
        e.close();
    }
}
