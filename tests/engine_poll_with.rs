//! `Consumer::poll_with`, the zero-copy poll: the same records, offsets and
//! missed counts as `poll` on every layout and policy; runs read in place
//! hold the writer back until the next poll commits them; a run that wraps
//! comes as two slices; records read back from the journal come as runs too.

use std::time::Duration;

use telering::{ConsumerConfig, Engine, OverflowPolicy, SendError, SlotLayout, TopicConfig};

const T: Duration = Duration::from_millis(20);

type Seen = Vec<(u32, u64, u64)>;

fn engine(parts: u32, cap: usize, policy: OverflowPolicy, layout: SlotLayout) -> Engine<u64> {
    let e = Engine::new();
    e.create_topic(
        "t",
        TopicConfig::new(parts, cap).policy(policy).layout(layout),
    )
    .unwrap();
    e
}

/// Reads with `poll_with` until `tries` polls pass: records and missed.
fn drain_with(c: &mut telering::Consumer<u64>, max: usize, tries: usize) -> (Seen, u64) {
    let (mut got, mut missed) = (Vec::new(), 0);
    for _ in 0..tries {
        c.poll_with(max, Duration::ZERO, |runs| {
            missed += runs.missed();
            let mut n = 0;
            for run in runs {
                for (i, v) in run.records.iter().enumerate() {
                    got.push((run.partition, run.base_offset + i as u64, *v));
                }
                n += run.records.len();
            }
            assert_eq!(n, runs.len());
        })
        .unwrap();
    }
    (got, missed)
}

fn drain(c: &mut telering::Consumer<u64>, max: usize, tries: usize) -> (Seen, u64) {
    let (mut got, mut missed) = (Vec::new(), 0);
    for _ in 0..tries {
        let b = c.poll(max, Duration::ZERO).unwrap();
        missed += b.missed();
        got.extend(b.iter().map(|r| (r.partition, r.offset, r.value)));
    }
    (got, missed)
}

/// Two engines, the same publishes and reads in the same rhythm: one read
/// with `poll`, one with `poll_with`. Same records of each partition in
/// the same order, same missed counts (`Overwrite` laps the readers on purpose).
#[test]
fn poll_with_sees_what_poll_sees_on_every_layout_and_policy() {
    let cases = [
        (OverflowPolicy::Block, SlotLayout::Packed),
        (OverflowPolicy::Reject, SlotLayout::Packed),
        (OverflowPolicy::Block, SlotLayout::Marked),
        (OverflowPolicy::Overwrite, SlotLayout::Packed),
    ];
    // One partition takes the member's short path, three the round-robin.
    for (parts, (policy, layout)) in [1u32, 3].into_iter().flat_map(|p| cases.map(|c| (p, c))) {
        for mode in ["cluster", "broadcast"] {
            let cfg = || match mode {
                "cluster" => ConsumerConfig::cluster("g"),
                _ => ConsumerConfig::broadcast("g"),
            };
            let (a, b) = (
                engine(parts, 16, policy, layout),
                engine(parts, 16, policy, layout),
            );
            let mut ca = a.consumer(cfg()).unwrap();
            let mut cb = b.consumer(cfg()).unwrap();
            ca.subscribe(&["t"]).unwrap();
            cb.subscribe(&["t"]).unwrap();
            let (mut pa, mut pb) = (a.producer("t").unwrap(), b.producer("t").unwrap());
            let (mut got_a, mut got_b) = ((Vec::new(), 0), (Vec::new(), 0));
            let mut next = 0u64;
            for round in 0..40u64 {
                // Under Overwrite, some rounds publish more than a lap.
                let n = if policy == OverflowPolicy::Overwrite && round % 5 == 0 {
                    70
                } else {
                    round % 13 + 1
                };
                for _ in 0..n {
                    let part = (next % parts as u64) as u32;
                    let ra = pa
                        .send_to(part, next)
                        .map(|_| ())
                        .map_err(|e| e.into_inner());
                    let rb = pb
                        .send_to(part, next)
                        .map(|_| ())
                        .map_err(|e| e.into_inner());
                    assert_eq!(ra, rb, "{policy:?} {layout:?}");
                    next += 1;
                }
                let max = (round % 7 + 1) as usize * 5;
                let (r, m) = drain(&mut ca, max, 2);
                got_a.0.extend(r);
                got_a.1 += m;
                let (r, m) = drain_with(&mut cb, max, 2);
                got_b.0.extend(r);
                got_b.1 += m;
            }
            let (r, m) = drain(&mut ca, 1000, 3);
            got_a.0.extend(r);
            got_a.1 += m;
            let (r, m) = drain_with(&mut cb, 1000, 3);
            got_b.0.extend(r);
            got_b.1 += m;
            // The same records of each partition, in the same order (how
            // partitions interleave within a poll is not part of the API).
            let by_partition = |got: &Seen| {
                let mut v = got.clone();
                v.sort_by_key(|r| r.0);
                v
            };
            assert_eq!(
                (by_partition(&got_a.0), got_a.1),
                (by_partition(&got_b.0), got_b.1),
                "{parts} partitions, {policy:?} {layout:?} {mode}"
            );
            assert!(!got_b.0.is_empty());
            if policy == OverflowPolicy::Overwrite {
                assert!(got_b.1 > 0, "the readers were lapped");
            }
            // Every record is its offset's: value order per partition.
            for p in 0..parts {
                let offs: Vec<u64> = got_b.0.iter().filter(|r| r.0 == p).map(|r| r.1).collect();
                assert!(offs.windows(2).all(|w| w[0] < w[1]), "{offs:?}");
            }
            assert_eq!(cb.delivered(), got_b.0.len() as u64);
            assert_eq!(cb.missed(), got_b.1);
        }
    }
}

/// Records lent in place keep their slots until the next poll commits
/// them: a full `Reject` partition refuses the writer while the closure
/// reads, and after it, and takes records again once the next poll has
/// committed.
#[test]
fn lent_records_hold_the_writer_back_until_the_next_poll() {
    let e = Engine::new();
    e.create_topic("t", TopicConfig::new(1, 8).policy(OverflowPolicy::Reject))
        .unwrap();
    let mut c = e.consumer(ConsumerConfig::cluster("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    let mut p = e.producer("t").unwrap();
    for i in 0..8u64 {
        p.send_to(0, i).unwrap();
    }
    c.poll_with(8, T, |runs| {
        assert_eq!(runs.len(), 8);
        let run = runs.iter().next().unwrap();
        assert_eq!((run.base_offset, run.records.len()), (0, 8));
        assert!(matches!(p.send_to(0, 100), Err(SendError::Full(100))));
        // The slot the writer wanted is unchanged.
        assert_eq!(run.records, [0, 1, 2, 3, 4, 5, 6, 7]);
    })
    .unwrap();
    assert!(matches!(p.send_to(0, 101), Err(SendError::Full(101))));
    // The next poll commits the 8 first (auto-commit): room again.
    let n = c.poll_with(8, Duration::ZERO, |runs| runs.len()).unwrap();
    assert_eq!(n, 0);
    for i in 8..16u64 {
        p.send_to(0, i).unwrap();
    }
    assert_eq!(c.committed("t", 0).unwrap(), 8);
}

/// A run that crosses the end of the slot array comes as two slices with
/// the right base offsets.
#[test]
fn a_run_that_wraps_comes_as_two_slices() {
    let e = Engine::new();
    e.create_topic("t", TopicConfig::new(1, 8).policy(OverflowPolicy::Block))
        .unwrap();
    let mut c = e.consumer(ConsumerConfig::cluster("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    let mut p = e.producer("t").unwrap();
    for i in 0..6u64 {
        p.send_to(0, i * 10).unwrap();
    }
    assert_eq!(c.poll_with(8, T, |r| r.len()).unwrap(), 6);
    // Commit the 6, then 6 more: offsets 6..12 sit in slots 6, 7, 0..4.
    c.commit();
    for i in 6..12u64 {
        p.send_to(0, i * 10).unwrap();
    }
    let runs: Vec<(u64, Vec<u64>)> = c
        .poll_with(8, T, |runs| {
            runs.iter()
                .map(|r| (r.base_offset, r.records.to_vec()))
                .collect()
        })
        .unwrap();
    assert_eq!(runs, vec![(6, vec![60, 70]), (8, vec![80, 90, 100, 110])]);
}

/// Older than the ring: `poll_with` reads the journal back as runs too,
/// then joins the ring, with no gap or duplicate.
#[cfg(feature = "journal")]
#[test]
fn records_read_back_from_the_journal_come_as_runs() {
    use telering::journal::JournalConfig;
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::with_journal(JournalConfig::new(dir.path()).segment_bytes(4096)).unwrap();
    e.create_topic(
        "t",
        TopicConfig::new(1, 16)
            .policy(OverflowPolicy::Block)
            .journaled(true),
    )
    .unwrap();
    let mut p = e.producer("t").unwrap();
    let mut c = e.consumer(ConsumerConfig::cluster("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    let mut seen = 0;
    for i in 0..500u64 {
        p.send_to(0, i).unwrap();
        if i % 8 == 7 {
            seen += c
                .poll_with(16, Duration::from_millis(100), |r| r.len())
                .unwrap();
        }
    }
    while seen < 500 {
        seen += c
            .poll_with(16, Duration::from_millis(100), |r| r.len())
            .unwrap();
    }
    c.seek("t", 0, 3).unwrap();
    let mut next = 3;
    while next < 500 {
        c.poll_with(100, Duration::from_millis(500), |runs| {
            assert!(!runs.is_empty(), "stalled at {next}");
            for run in runs {
                assert_eq!(run.base_offset, next);
                for v in run.records {
                    assert_eq!(*v, next);
                    next += 1;
                }
            }
        })
        .unwrap();
    }
    assert_eq!(next, 500);
}
