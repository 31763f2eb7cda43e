//! Zero heap allocations per record on publish and poll (`poll` and the
//! zero-copy `poll_with`), in steady state, counted by a wrapping global
//! allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use telering::ring::{spsc_with, OverflowPolicy, SlotLayout};
use telering::{ConsumerConfig, DeviceId, Engine, Reading, TopicConfig, WaitStrategy};

struct Counting;

thread_local! {
    /// Allocations made by this thread (so other test threads don't count).
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

fn reading(i: u64) -> Reading {
    let id = DeviceId::new("dev-1").unwrap();
    Reading::new(id, i, 20.0 + (i % 10) as f32, 50.0)
}

fn engine_round_trips(
    partitions: u32,
    policy: OverflowPolicy,
    wait: WaitStrategy,
    layout: SlotLayout,
    zero_copy: bool,
) -> (u64, u64) {
    let e: Engine<Reading> = Engine::new();
    e.create_topic(
        "temperature",
        TopicConfig::new(partitions, 1024)
            .policy(policy)
            .layout(layout),
    )
    .unwrap();
    let mut p = e.producer("temperature").unwrap();
    let mut cluster = e
        .consumer(ConsumerConfig::cluster("alerts").wait(wait))
        .unwrap();
    cluster.subscribe(&["temperature"]).unwrap();
    let mut bcast = e
        .consumer(
            // Gathers towards 100 records (only 80 come per round), so its
            // polls also go through the fetch_min wait.
            ConsumerConfig::broadcast("stats")
                .wait(wait)
                .fetch(100, Duration::from_micros(200)),
        )
        .unwrap();
    bcast.subscribe(&["temperature"]).unwrap();
    let batch = [reading(0); 16];
    let mut round = |i: u64| {
        for k in 0..64 {
            p.send(reading(i * 64 + k)).unwrap();
        }
        p.send_batch_to((i % partitions as u64) as u32, &batch)
            .unwrap();
        let mut got = 0;
        while got < 80 {
            got += if zero_copy {
                cluster
                    .poll_with(256, Duration::ZERO, |runs| {
                        runs.iter().map(|r| r.records.len()).sum::<usize>()
                    })
                    .unwrap()
            } else {
                cluster.poll(256, Duration::ZERO).unwrap().len()
            };
        }
        let mut got = 0;
        while got < 80 {
            got += if zero_copy {
                bcast
                    .poll_with(256, Duration::from_secs(1), |runs| {
                        let mut n = 0;
                        runs.for_each(|_, _, _, r| n += usize::from(r.temperature > -100.0));
                        n
                    })
                    .unwrap()
            } else {
                bcast.poll(256, Duration::from_secs(1)).unwrap().len()
            };
        }
    };
    // Warm-up: first polls size the batch buffers and sync the assignment.
    for i in 0..10 {
        round(i);
    }
    let before = allocs();
    for i in 10..1010 {
        round(i);
    }
    let records = 1000 * 80 * 2;
    (allocs() - before, records)
}

#[test]
fn engine_publish_and_poll_do_not_allocate() {
    for policy in [
        OverflowPolicy::Block,
        OverflowPolicy::Reject,
        OverflowPolicy::Overwrite,
    ] {
        for wait in [WaitStrategy::BusySpin, WaitStrategy::Park] {
            for layout in [SlotLayout::Packed, SlotLayout::Marked] {
                if layout == SlotLayout::Marked && policy == OverflowPolicy::Overwrite {
                    continue; // refused at topic creation
                }
                // One partition: the members' short path; four: the
                // round-robin pass.
                for (partitions, zero_copy) in [(1, true), (4, false), (4, true)] {
                    let (n, records) =
                        engine_round_trips(partitions, policy, wait, layout, zero_copy);
                    assert_eq!(
                        n, 0,
                        "{n} allocations over {records} records ({partitions} partitions, {policy:?}, {wait:?}, {layout:?}, poll_with {zero_copy})"
                    );
                }
            }
        }
    }
}

#[test]
fn ring_publish_and_read_do_not_allocate() {
    for layout in [SlotLayout::Packed, SlotLayout::Marked] {
        let (mut w, mut r) = spsc_with::<Reading>(1024, OverflowPolicy::Block, layout).unwrap();
        let mut out = Vec::with_capacity(512);
        let before = allocs();
        let mut read = 0;
        for i in 0..10_000u64 {
            w.publish(reading(i)).unwrap();
            if i % 100 == 0 {
                w.publish_with(8, |k| reading(k as u64)).unwrap();
            }
            if i % 256 == 0 {
                out.clear();
                read += r.read_into(512, &mut out).read;
                read += r.read_with(512, |_, _| {});
            }
        }
        assert_eq!(allocs() - before, 0, "{layout:?}");
        assert!(read > 9_000, "{layout:?}: only {read} records read");
    }
}

#[test]
fn the_counter_counts() {
    // Guard against a counter that never moves.
    let before = allocs();
    let v = std::hint::black_box(vec![1u8; 10]);
    assert!(allocs() > before);
    drop(v);
}
