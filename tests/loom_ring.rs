#![cfg(loom)]
//! Loom models of the ring core (`telering::ring`).
//!
//! Run with (see `.ci/loom.sh`):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
//!     cargo test --release --test loom_ring
//! ```
//!
//! Every record carries its own offset (`value == offset`), so each model
//! checks delivered values against that oracle: no gaps, no inversions, no
//! duplicates, and (under `Overwrite`) delivered + missed == published.
//!
//! Under loom every wait loop must yield, so the models either call
//! `loom::thread::yield_now()` themselves or wait with `SpinYield`/`Park`.

use loom::thread;
use telering::ring::{
    spsc, spsc_with, BatchError, OverflowPolicy, PublishError, ReadOutcome, Reader, SlotLayout,
    WaitStrategy,
};

/// Both slot layouts, for the models that run on each: the marked layout
/// publishes through per-slot marks (and a lazily stored cursor) instead of
/// the cursor alone, so its happens-before edges are different ones.
const LAYOUTS: [SlotLayout; 2] = [SlotLayout::Packed, SlotLayout::Marked];

/// Runs `f` under loom with a preemption bound of 2 unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise, and reports how many interleavings
/// were explored (visible with `--nocapture`).
fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    println!(
        "explored {} interleavings (preemption bound {:?})",
        runs.load(Ordering::Relaxed),
        builder.preemption_bound
    );
}

/// Reads with `read_into` until `n` records have been delivered in total,
/// yielding while nothing is available. Checks the offset oracle.
fn read_exactly(r: &mut Reader<u64>, n: usize, max: usize) -> Vec<u64> {
    let mut out = Vec::new();
    while out.len() < n {
        let before = out.len();
        let o = r.read_into(max, &mut out);
        assert_eq!(o.missed, 0, "gated policy must never skip");
        assert_eq!(o.read, out.len() - before);
        if o.read == 0 {
            thread::yield_now();
        }
    }
    for (i, v) in out.iter().enumerate() {
        assert_eq!(*v, i as u64, "record {i} carries the wrong offset: {out:?}");
    }
    out
}

/// 1. Single publishes under `Block`, capacity 2, 4 records: the writer wraps
///    around and must wait for the reader's gate.
#[test]
fn block_publish_read_wraps() {
    for layout in LAYOUTS {
        model(move || block_publish_read_wraps_in(layout));
    }
}

fn block_publish_read_wraps_in(layout: SlotLayout) {
    let (mut w, mut r) = spsc_with::<u64>(2, OverflowPolicy::Block, layout).unwrap();
    let writer = thread::spawn(move || {
        for i in 0..4 {
            assert_eq!(w.publish(i), Ok(i));
        }
        w
    });
    let out = read_exactly(&mut r, 4, 4);
    assert_eq!(out, [0, 1, 2, 3]);
    let w = writer.join().unwrap();
    assert_eq!(w.ring().published(), 4);
    assert_eq!(r.position(), 4);
    assert_eq!(r.missed(), 0);
}

/// 1b. `try_publish` under `Block`, capacity 2, 4 records: the writer never
///     waits inside the ring; a full ring hands the record back (not
///     counted as rejected) and the writer retries after yielding, as the
///     ingest shards do. The reader sees every record once, in order.
#[test]
fn block_try_publish_hands_back_and_wraps() {
    for layout in LAYOUTS {
        model(move || block_try_publish_in(layout));
    }
}

fn block_try_publish_in(layout: SlotLayout) {
    let (mut w, mut r) = spsc_with::<u64>(2, OverflowPolicy::Block, layout).unwrap();
    let writer = thread::spawn(move || {
        for i in 0..4 {
            let mut v = i;
            loop {
                match w.try_publish(v) {
                    Ok(o) => {
                        assert_eq!(o, i);
                        break;
                    }
                    Err(PublishError::Full(back)) => {
                        v = back;
                        thread::yield_now();
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
        }
        w
    });
    let out = read_exactly(&mut r, 4, 4);
    assert_eq!(out, [0, 1, 2, 3]);
    let w = writer.join().unwrap();
    assert_eq!(w.ring().published(), 4);
    assert_eq!(w.ring().rejected(), 0);
}

/// 2. Batch publishes (`publish_slice` split into one-ring claims, then
///    `publish_with`) wrapping around under `Block`.
#[test]
fn block_batch_publish_wraps() {
    for layout in LAYOUTS {
        model(move || block_batch_publish_wraps_in(layout));
    }
}

fn block_batch_publish_wraps_in(layout: SlotLayout) {
    let (mut w, mut r) = spsc_with::<u64>(2, OverflowPolicy::Block, layout).unwrap();
    let writer = thread::spawn(move || {
        // Three records on a two-slot ring: claims of 2 then 1.
        assert_eq!(w.publish_slice(&[0, 1, 2]), Ok(0));
        let first = w.next_offset();
        assert_eq!(first, 3);
        assert_eq!(w.publish_with(2, |i| first + i as u64), Ok(2));
        w
    });
    let out = read_exactly(&mut r, 5, 3);
    assert_eq!(out, [0, 1, 2, 3, 4]);
    let w = writer.join().unwrap();
    assert_eq!(w.ring().published(), 5);
    assert_eq!(w.ring().rejected(), 0);
}

/// 3. In-place `read_with` with wrap-around under `Block`: the writer must not
///    reuse a slot while the reader still holds a reference into it (loom's
///    tracked slot cell checks this).
#[test]
fn block_read_with_wraps() {
    for layout in LAYOUTS {
        model(move || block_read_with_wraps_in(layout));
    }
}

fn block_read_with_wraps_in(layout: SlotLayout) {
    let (mut w, mut r) = spsc_with::<u64>(2, OverflowPolicy::Block, layout).unwrap();
    let writer = thread::spawn(move || {
        for i in 0..4 {
            assert_eq!(w.publish(i), Ok(i));
        }
    });
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let n = r.read_with(2, |offset, v| {
            assert_eq!(*v, offset, "slot holds a record of another lap");
            seen.push(*v);
        });
        if n == 0 {
            thread::yield_now();
        }
    }
    assert_eq!(seen, [0, 1, 2, 3]);
    assert_eq!(r.position(), 4);
    writer.join().unwrap();
}

/// 3b. The in-place read of the consumer API (`Consumer::poll_with`) holds a
///     borrow of a slot while user code runs, and releases the slot only
///     after it: here the borrow is held across a yield (the writer, wanting
///     to wrap around a 2-slot ring, may run then) and the slot is read
///     again afterwards. The gate must not have let the writer reuse it: the
///     value is still the record of that offset.
#[test]
fn block_in_place_borrow_holds_the_slot_across_a_yield() {
    for layout in LAYOUTS {
        model(move || block_in_place_borrow_in(layout));
    }
}

fn block_in_place_borrow_in(layout: SlotLayout) {
    let (mut w, mut r) = spsc_with::<u64>(2, OverflowPolicy::Block, layout).unwrap();
    let writer = thread::spawn(move || {
        for i in 0..3 {
            assert_eq!(w.publish(i), Ok(i));
        }
    });
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let n = r.read_with(2, |offset, v| {
            let first = *v;
            thread::yield_now();
            // Read again through the same borrow, after the writer had the
            // chance to run.
            assert_eq!(*v, first, "slot of offset {offset} reused while borrowed");
            assert_eq!(first, offset, "slot holds a record of another lap");
            seen.push(first);
        });
        if n == 0 {
            thread::yield_now();
        }
    }
    assert_eq!(seen, [0, 1, 2]);
    writer.join().unwrap();
}

/// 4. `Reject`: every attempt is either accepted or rejected (and counted),
///    and the reader gets exactly the accepted records, in order.
#[test]
fn reject_accounts_every_attempt() {
    model(|| {
        let (mut w, mut r) = spsc::<u64>(2, OverflowPolicy::Reject).unwrap();
        let writer = thread::spawn(move || {
            let (mut accepted, mut rejected) = (0u64, 0u64);
            // Single publishes.
            for _ in 0..3 {
                let v = w.next_offset();
                match w.publish(v) {
                    Ok(offset) => {
                        assert_eq!(offset, v);
                        accepted += 1;
                    }
                    Err(PublishError::Full(back)) => {
                        assert_eq!(back, v, "rejected record not handed back");
                        rejected += 1;
                    }
                    Err(PublishError::Closed(_)) => panic!("ring is not closed"),
                }
            }
            // One batch of two: all, some or none may fit.
            let v = w.next_offset();
            match w.publish_slice(&[v, v + 1]) {
                Ok(first) => {
                    assert_eq!(first, v);
                    accepted += 2;
                }
                Err(BatchError::Full { accepted: a }) => {
                    assert!(a < 2);
                    accepted += a as u64;
                    rejected += 2 - a as u64;
                }
                Err(BatchError::Closed { .. }) => panic!("ring is not closed"),
            }
            (w, accepted, rejected)
        });
        // Read concurrently for a little while.
        let mut out = Vec::new();
        for _ in 0..2 {
            let before = out.len();
            let o = r.read_into(4, &mut out);
            assert_eq!(o.missed, 0);
            assert_eq!(o.read, out.len() - before);
            if o.read == 0 {
                thread::yield_now();
            }
        }
        let (w, accepted, rejected) = writer.join().unwrap();
        assert_eq!(accepted + rejected, 5, "attempts unaccounted for");
        assert!(accepted >= 2, "an empty two-slot ring takes two records");
        let ring = w.ring();
        assert_eq!(ring.rejected(), rejected);
        assert_eq!(ring.published(), accepted);
        // Drain: everything is published now.
        r.read_into(8, &mut out);
        assert_eq!(r.position(), accepted);
        let expected: Vec<u64> = (0..accepted).collect();
        assert_eq!(out, expected);
    });
}

/// 5. `Overwrite`, capacity 2: the writer never waits; the reader reads
///    concurrently. Every delivered value equals its offset, deliveries are
///    strictly increasing, and after the drain delivered + missed == 5.
#[test]
fn overwrite_delivered_plus_missed_is_published() {
    model(|| {
        const N: u64 = 5;
        let (mut w, mut r) = spsc::<u64>(2, OverflowPolicy::Overwrite).unwrap();
        let writer = thread::spawn(move || {
            for i in 0..N {
                assert_eq!(w.publish(i), Ok(i));
            }
            w
        });
        fn read_checked(r: &mut Reader<u64>, delivered: &mut Vec<u64>) -> ReadOutcome {
            let pos_before = r.position();
            let missed_before = r.missed();
            let base = delivered.len();
            let o = r.read_into(4, delivered);
            let pos_after = r.position();
            assert_eq!(o.read, delivered.len() - base);
            assert_eq!(r.missed() - missed_before, o.missed);
            assert_eq!(
                pos_before + o.missed + o.read as u64,
                pos_after,
                "position does not account for read + missed"
            );
            // The records handed over are exactly the offsets just below the
            // new position: no gaps, no stale (torn) values.
            let expected: Vec<u64> = (pos_after - o.read as u64..pos_after).collect();
            assert_eq!(
                &delivered[base..],
                &expected[..],
                "torn or misplaced record"
            );
            o
        }
        let mut delivered: Vec<u64> = Vec::new();
        for _ in 0..3 {
            let o = read_checked(&mut r, &mut delivered);
            if o.read == 0 && o.missed == 0 {
                thread::yield_now();
            }
        }
        let w = writer.join().unwrap();
        assert_eq!(w.ring().published(), N);
        // Drain: the writer is done, so one or two reads must reach the end.
        for _ in 0..4 {
            if r.position() == N {
                break;
            }
            read_checked(&mut r, &mut delivered);
        }
        assert!(
            delivered.windows(2).all(|p| p[0] < p[1]),
            "deliveries not strictly increasing: {delivered:?}"
        );
        assert_eq!(
            r.position(),
            N,
            "reader cannot reach the end after the writer finished \
             (delivered {delivered:?}, missed {})",
            r.missed()
        );
        assert_eq!(delivered.len() as u64 + r.missed(), N);
    });
}

/// 5b. `Overwrite` with batches (`publish_with`, two records per claim on a
///     two-slot ring): the reader is lapped by whole batches. Checks the
///     accounting only: positions move by exactly read + missed, and after
///     the writer is joined the reader reaches the end with
///     delivered + missed == 6. Values are not checked here (model 5 does),
///     so a torn copy cannot mask an accounting or liveness failure.
#[test]
fn overwrite_batches_reader_reaches_end() {
    model(|| {
        const N: u64 = 6;
        let (mut w, mut r) = spsc::<u64>(2, OverflowPolicy::Overwrite).unwrap();
        let writer = thread::spawn(move || {
            for b in 0..N / 2 {
                assert_eq!(w.publish_with(2, |i| 2 * b + i as u64), Ok(2));
            }
            w
        });
        let mut delivered = Vec::new();
        let mut trace = Vec::new();
        let mut step = |r: &mut Reader<u64>, delivered: &mut Vec<u64>| {
            let before = r.position();
            let base = delivered.len();
            let o = r.read_into(4, delivered);
            assert_eq!(o.read, delivered.len() - base);
            assert_eq!(before + o.missed + o.read as u64, r.position());
            trace.push((o.read, o.missed, r.position()));
            o
        };
        for _ in 0..3 {
            let o = step(&mut r, &mut delivered);
            if o.read == 0 && o.missed == 0 {
                thread::yield_now();
            }
        }
        let w = writer.join().unwrap();
        assert_eq!(w.ring().published(), N);
        for _ in 0..4 {
            if r.position() == N {
                break;
            }
            step(&mut r, &mut delivered);
        }
        assert_eq!(
            r.position(),
            N,
            "reader stuck after the writer finished; (read, missed, position) \
             per call: {trace:?}"
        );
        assert_eq!(delivered.len() as u64 + r.missed(), N);
    });
}

/// How many times the waking thread yields before it acts, swept by models 6
/// and 7.
///
/// Under loom a thread that yields is not scheduled again while another thread
/// can run, and after a yield its loads see the newest stores. If the waking
/// thread never yielded, it would always run to completion while the waiting
/// thread sits in its own yields (`Waiter::pause` yields three times under
/// loom before parking), so the waiter would never actually park and the
/// wake-up protocol would go unexplored. Sweeping 0..=5 yields puts the waker's
/// action before the waiter starts, during its spin phase, around its
/// registration, and after it has parked.
const WAKER_YIELDS: std::ops::RangeInclusive<usize> = 0..=5;

fn yield_times(n: usize) {
    for _ in 0..n {
        thread::yield_now();
    }
}

/// 6a. `close` wakes a reader parked in `wait(Park)`; the join completes
///     (under loom `park_timeout` is a plain park, so a lost wake-up is a
///     deadlock).
#[test]
fn close_wakes_parked_reader() {
    for yields in WAKER_YIELDS {
        model(move || {
            let (mut w, mut r) = spsc::<u64>(2, OverflowPolicy::Block).unwrap();
            let reader = thread::spawn(move || {
                let ready = r.wait(WaitStrategy::Park, None);
                let mut out = Vec::new();
                r.read_into(4, &mut out);
                (ready, out)
            });
            yield_times(yields);
            w.ring().close();
            let (ready, out) = reader.join().unwrap();
            assert!(ready, "wait must report the close");
            assert!(out.is_empty());
            assert_eq!(w.publish(7), Err(PublishError::Closed(7)));
        });
    }
}

/// 6b. A publish wakes a reader parked in `wait(Park)`, which then reads it.
#[test]
fn publish_wakes_parked_reader() {
    for (layout, yields) in LAYOUTS
        .into_iter()
        .flat_map(|l| WAKER_YIELDS.map(move |y| (l, y)))
    {
        model(move || {
            let (mut w, mut r) = spsc_with::<u64>(2, OverflowPolicy::Block, layout).unwrap();
            let reader = thread::spawn(move || {
                assert!(r.wait(WaitStrategy::Park, None));
                let mut out = Vec::new();
                r.read_into(4, &mut out);
                out
            });
            yield_times(yields);
            assert_eq!(w.publish(0), Ok(0));
            let out = reader.join().unwrap();
            assert_eq!(out, [0]);
        });
    }
}

/// 7. `close` wakes a writer blocked on a full ring under `Block` (the reader
///    never reads): it gets `Closed` with its record back.
#[test]
fn close_wakes_blocked_writer() {
    for yields in WAKER_YIELDS {
        model(move || {
            let (mut w, mut r) = spsc::<u64>(2, OverflowPolicy::Block).unwrap();
            let writer = thread::spawn(move || {
                let results: Vec<_> = (0..3).map(|i| w.publish(i)).collect();
                (w, results)
            });
            // The reader stays attached (its gate holds the writer) but never
            // reads while the writer runs.
            yield_times(yields);
            r.ring().close();
            let (_w, results) = writer.join().unwrap();
            // A prefix is accepted, then everything fails with Closed; the
            // third record can never fit on a two-slot ring nobody reads.
            let accepted = results.iter().take_while(|res| res.is_ok()).count();
            assert!(accepted <= 2, "{results:?}");
            for (i, res) in results.iter().enumerate() {
                if i < accepted {
                    assert_eq!(*res, Ok(i as u64));
                } else {
                    assert_eq!(*res, Err(PublishError::Closed(i as u64)));
                }
            }
            // Records published before the close are still readable.
            let mut out = Vec::new();
            r.read_into(4, &mut out);
            let expected: Vec<u64> = (0..accepted as u64).collect();
            assert_eq!(out, expected);
        });
    }
}
