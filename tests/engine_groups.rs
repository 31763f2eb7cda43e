//! Consumer groups over the engine API: cluster division, broadcast, rebalance,
//! crash redelivery, seek and commit, and groups without members.

use std::collections::BTreeSet;
use std::time::Duration;

use telering::{
    ConsumerConfig, ConsumerError, Engine, EngineError, OffsetReset, OverflowPolicy, SlotLayout,
    TopicConfig, WaitStrategy,
};

const T: Duration = Duration::from_millis(20);

fn engine(partitions: u32, cap: usize, policy: OverflowPolicy) -> Engine<u64> {
    let e = Engine::new();
    e.create_topic("t", TopicConfig::new(partitions, cap).policy(policy))
        .unwrap();
    e
}

fn publish(e: &Engine<u64>, n: u64) {
    let mut p = e.producer("t").unwrap();
    for i in 0..n {
        let part = (i % u64::from(p.partitions())) as u32;
        p.send_to(part, i).unwrap();
    }
}

/// Polls until `n` records arrive or `tries` polls pass.
fn drain(c: &mut telering::Consumer<u64>, tries: usize) -> Vec<(u32, u64, u64)> {
    let mut got = Vec::new();
    for _ in 0..tries {
        let b = c.poll(64, T).unwrap();
        got.extend(b.iter().map(|r| (r.partition, r.offset, r.value)));
    }
    got
}

#[test]
fn cluster_members_split_partitions_and_see_each_record_once() {
    let e = engine(4, 64, OverflowPolicy::Block);
    let mut a = e.consumer(ConsumerConfig::cluster("g")).unwrap();
    let mut b = e.consumer(ConsumerConfig::cluster("g")).unwrap();
    a.subscribe(&["t"]).unwrap();
    b.subscribe(&["t"]).unwrap();
    publish(&e, 40);
    let ga = drain(&mut a, 5);
    let gb = drain(&mut b, 5);
    assert_eq!(a.assignment().len() + b.assignment().len(), 4);
    assert!(!a.assignment().is_empty() && !b.assignment().is_empty());
    let all: BTreeSet<u64> = ga.iter().chain(&gb).map(|r| r.2).collect();
    assert_eq!(ga.len() + gb.len(), 40, "each record exactly once");
    assert_eq!(all, (0..40).collect());
    let pa: BTreeSet<u32> = ga.iter().map(|r| r.0).collect();
    let pb: BTreeSet<u32> = gb.iter().map(|r| r.0).collect();
    assert!(pa.is_disjoint(&pb));
    assert_eq!(e.group_stats("g").unwrap().delivered, 40);
}

#[test]
fn broadcast_members_each_see_everything() {
    let e = engine(2, 64, OverflowPolicy::Block);
    let mut a = e.consumer(ConsumerConfig::broadcast("b")).unwrap();
    let mut b = e.consumer(ConsumerConfig::broadcast("b")).unwrap();
    a.subscribe(&["t"]).unwrap();
    b.subscribe(&["t"]).unwrap();
    publish(&e, 30);
    for c in [&mut a, &mut b] {
        let mut got: Vec<u64> = drain(c, 3).iter().map(|r| r.2).collect();
        got.sort();
        assert_eq!(got, (0..30).collect::<Vec<_>>());
    }
}

#[test]
fn leaving_member_hands_partitions_over_from_committed_offset() {
    let e = engine(2, 64, OverflowPolicy::Block);
    let mut a = e.consumer(ConsumerConfig::cluster("g")).unwrap();
    a.subscribe(&["t"]).unwrap();
    let mut b = e.consumer(ConsumerConfig::cluster("g")).unwrap();
    b.subscribe(&["t"]).unwrap();
    publish(&e, 20);
    // a reads its share, then closes (commits), b takes over the rest.
    let ga = drain(&mut a, 2);
    let gen_before = b.generation();
    a.close();
    let gb = drain(&mut b, 4);
    assert!(b.generation() > gen_before);
    assert_eq!(b.assignment().len(), 2);
    let mut all: Vec<u64> = ga.iter().chain(&gb).map(|r| r.2).collect();
    all.sort();
    assert_eq!(
        all,
        (0..20).collect::<Vec<_>>(),
        "graceful close: no redelivery"
    );
}

#[test]
fn crashed_member_records_are_redelivered() {
    let e = engine(1, 64, OverflowPolicy::Block);
    let mut a = e.consumer(ConsumerConfig::cluster("g")).unwrap();
    a.subscribe(&["t"]).unwrap();
    publish(&e, 10);
    let first = drain(&mut a, 1);
    assert_eq!(first.len(), 10);
    // Dropped without close: a crash. Nothing was committed.
    drop(a);
    let mut b = e.consumer(ConsumerConfig::cluster("g")).unwrap();
    b.subscribe(&["t"]).unwrap();
    let again = drain(&mut b, 1);
    assert_eq!(again, first, "at-least-once: uncommitted records come back");
}

#[test]
fn subscribe_replaces_and_keeps_offsets_of_kept_topics() {
    let e = engine(1, 64, OverflowPolicy::Block);
    e.create_topic("u", TopicConfig::new(1, 64)).unwrap();
    let mut c = e.consumer(ConsumerConfig::cluster("g")).unwrap();
    c.subscribe(&["t", "u"]).unwrap();
    publish(&e, 5);
    assert_eq!(drain(&mut c, 1).len(), 5);
    c.commit();
    c.subscribe(&["t"]).unwrap();
    assert_eq!(c.position("t", 0).unwrap(), 5);
    assert!(matches!(
        c.position("u", 0),
        Err(ConsumerError::NotAssigned { .. })
    ));
    assert!(matches!(
        c.subscribe(&["nope"]),
        Err(ConsumerError::UnknownTopic { .. })
    ));
    assert_eq!(c.assignment().len(), 1, "failed subscribe changes nothing");
}

#[test]
fn seek_and_offset_errors() {
    let e = engine(1, 8, OverflowPolicy::Overwrite);
    let mut c = e.consumer(ConsumerConfig::cluster("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    publish(&e, 20);
    // Ring holds offsets 12..20.
    match c.seek("t", 0, 3) {
        Err(ConsumerError::OffsetOutOfRange {
            earliest, latest, ..
        }) => {
            assert_eq!((earliest, latest), (12, 20));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        c.seek("t", 0, 21),
        Err(ConsumerError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        c.seek("t", 5, 0),
        Err(ConsumerError::NoSuchPartition { partitions: 1, .. })
    ));
    assert!(matches!(
        c.seek("x", 0, 0),
        Err(ConsumerError::UnknownTopic { .. })
    ));
    c.seek("t", 0, 15).unwrap();
    let got: Vec<u64> = drain(&mut c, 1).iter().map(|r| r.1).collect();
    assert_eq!(got, (15..20).collect::<Vec<_>>());
    c.seek("t", 0, 13).unwrap();
    assert_eq!(drain(&mut c, 1).len(), 7);
}

#[test]
fn overwrite_counts_missed_exactly() {
    let e = engine(1, 8, OverflowPolicy::Overwrite);
    let mut c = e.consumer(ConsumerConfig::cluster("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    publish(&e, 30);
    let got = drain(&mut c, 2);
    assert_eq!(got.len() as u64 + c.missed(), 30);
    assert_eq!(c.missed(), 22);
}

#[test]
fn reject_counts_and_hands_back() {
    let e = engine(1, 4, OverflowPolicy::Reject);
    let mut c = e.consumer(ConsumerConfig::cluster("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    let mut p = e.producer("t").unwrap();
    let mut accepted = 0;
    for i in 0..10u64 {
        match p.send_to(0, i) {
            Ok(_) => accepted += 1,
            Err(telering::SendError::Full(v)) => assert_eq!(v, i),
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(accepted, 4);
    assert_eq!(e.rejected("t").unwrap(), 6);
    assert_eq!(drain(&mut c, 1).len(), 4);
}

#[test]
fn group_without_members_does_not_block_and_reports_the_gap() {
    let e = engine(1, 8, OverflowPolicy::Block);
    let mut c = e.consumer(ConsumerConfig::cluster("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    publish(&e, 4);
    assert_eq!(drain(&mut c, 1).len(), 4);
    c.close(); // commits 4, then the group is empty
               // The writer is not held back by the empty group: 100 records into 8 slots.
    publish(&e, 100);
    let mut c = e.consumer(ConsumerConfig::cluster("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    let got = drain(&mut c, 2);
    let stats = e.group_stats("g").unwrap();
    // Everything published is delivered or reported missed, exactly.
    assert_eq!(stats.delivered + stats.missed, 104);
    assert!(c.missed() > 0);
    let offsets: Vec<u64> = got.iter().map(|r| r.1).collect();
    assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1));
    assert_eq!(*offsets.last().unwrap(), 103);
}

#[test]
fn block_waits_for_the_slowest_group() {
    let e = engine(1, 8, OverflowPolicy::Block);
    let mut slow = e.consumer(ConsumerConfig::cluster("slow")).unwrap();
    slow.subscribe(&["t"]).unwrap();
    let mut fast = e
        .consumer(ConsumerConfig::cluster("fast").wait(WaitStrategy::SpinYield))
        .unwrap();
    fast.subscribe(&["t"]).unwrap();
    let prod = std::thread::spawn({
        let e = e.clone();
        move || publish(&e, 100)
    });
    let mut fast_got = 0;
    let mut slow_got = 0;
    while slow_got < 100 {
        fast_got += fast.poll(64, T).unwrap().len();
        // The writer can never be more than a ring ahead of the slow group.
        let published = e.published("t").unwrap();
        assert!(
            published <= slow_got as u64 + 8 + 64,
            "{published} {slow_got}"
        );
        slow_got += slow.poll(3, T).unwrap().len();
    }
    prod.join().unwrap();
    fast_got += drain(&mut fast, 2).len();
    assert_eq!((fast_got, slow_got), (100, 100));
}

#[test]
fn bad_config_and_names_are_typed_errors() {
    let e: Engine<u64> = Engine::new();
    assert!(matches!(
        e.create_topic("z", TopicConfig::new(0, 8)),
        Err(EngineError::Config(_))
    ));
    assert!(matches!(
        e.create_topic("z", TopicConfig::new(1, 0)),
        Err(EngineError::Config(_))
    ));
    assert!(matches!(
        e.create_topic("z", TopicConfig::new(1, 12)),
        Err(EngineError::Config(_))
    ));
    assert!(matches!(
        e.create_topic("bad name", TopicConfig::new(1, 8)),
        Err(EngineError::Config(_))
    ));
    e.create_topic("z", TopicConfig::new(1, 8)).unwrap();
    assert_eq!(
        e.create_topic("z", TopicConfig::new(1, 8)),
        Err(EngineError::DuplicateTopic("z".into()))
    );
    assert!(matches!(
        e.producer("nope"),
        Err(EngineError::UnknownTopic { .. })
    ));
    let _p = e.producer("z").unwrap();
    assert!(matches!(
        e.producer("z"),
        Err(EngineError::ProducerTaken(_))
    ));
    let _c = e.consumer(ConsumerConfig::cluster("g")).unwrap();
    assert!(matches!(
        e.consumer(ConsumerConfig::broadcast("g")),
        Err(EngineError::GroupModeMismatch { .. })
    ));
    let mut p2 = {
        drop(_p);
        e.producer("z").unwrap()
    };
    assert!(matches!(
        p2.send_to(3, 1),
        Err(telering::SendError::NoSuchPartition { partitions: 1, .. })
    ));
    e.close();
    assert!(matches!(
        p2.send_to(0, 1),
        Err(telering::SendError::Closed(1))
    ));
    assert_eq!(
        e.create_topic("y", TopicConfig::new(1, 8)),
        Err(EngineError::Closed)
    );
}

#[test]
fn latest_reset_skips_old_records() {
    let e = engine(1, 64, OverflowPolicy::Block);
    publish(&e, 5);
    let mut c = e
        .consumer(ConsumerConfig::cluster("g").offset_reset(OffsetReset::Latest))
        .unwrap();
    c.subscribe(&["t"]).unwrap();
    assert!(drain(&mut c, 1).is_empty());
    let mut p = e.producer("t").unwrap();
    p.send_to(0, 99).unwrap();
    let got = drain(&mut c, 1);
    assert_eq!(got, vec![(0, 5, 99)]);
}

/// `fetch(min, max_wait)`: a poll that finds fewer than `min` records waits
/// for more (here published by another thread while it gathers), returns
/// with `min` once they are there, and with what it has once `max_wait` has
/// passed; records already there return at once without a clock wait.
#[test]
fn fetch_min_gathers_records_until_min_or_max_wait() {
    for wait in [WaitStrategy::Park, WaitStrategy::SpinYield] {
        let e = engine(1, 64, OverflowPolicy::Block);
        let cfg = ConsumerConfig::cluster("g")
            .wait(wait)
            .fetch(8, Duration::from_secs(30));
        let mut c = e.consumer(cfg).unwrap();
        c.subscribe(&["t"]).unwrap();
        let mut p = e.producer("t").unwrap();
        for i in 0..3 {
            p.send_to(0, i).unwrap();
        }
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            for i in 3..8 {
                p.send_to(0, i).unwrap();
            }
            p
        });
        let got: Vec<u64> = c
            .poll(64, Duration::from_secs(60))
            .unwrap()
            .iter()
            .map(|r| r.value)
            .collect();
        assert_eq!(
            got,
            (0..8).collect::<Vec<_>>(),
            "{wait:?}: gathered up to fetch_min"
        );
        let mut p = late.join().unwrap();

        // More than `min` already there: all of them, at once.
        for i in 8..20 {
            p.send_to(0, i).unwrap();
        }
        let got = c.poll(64, Duration::from_secs(60)).unwrap().len();
        assert_eq!(got, 12, "{wait:?}");
    }

    // Fewer than `min` and nobody publishing: what is there, after max_wait
    // (sleeps never end early, so the lower bound is exact).
    let e = engine(1, 64, OverflowPolicy::Block);
    let max_wait = Duration::from_millis(40);
    let mut c = e
        .consumer(ConsumerConfig::cluster("g").fetch(8, max_wait))
        .unwrap();
    c.subscribe(&["t"]).unwrap();
    publish(&e, 3);
    let t0 = std::time::Instant::now();
    assert_eq!(c.poll(64, Duration::from_secs(60)).unwrap().len(), 3);
    assert!(t0.elapsed() >= max_wait, "returned before fetch_max_wait");

    // The poll timeout bounds the gathering too: with a zero timeout a
    // consumer that would gather for 30 s returns what is there.
    let e = engine(1, 64, OverflowPolicy::Block);
    let mut c = e
        .consumer(ConsumerConfig::cluster("g").fetch(8, Duration::from_secs(30)))
        .unwrap();
    c.subscribe(&["t"]).unwrap();
    publish(&e, 2);
    let t0 = std::time::Instant::now();
    assert_eq!(c.poll(64, Duration::ZERO).unwrap().len(), 2);
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "gathered past a zero timeout"
    );
}

/// Durations at the limit (`Duration::MAX` as a poll timeout or as
/// `fetch_max_wait`) mean "as long as it takes", never an overflow panic.
#[test]
fn huge_timeouts_do_not_overflow() {
    let e = engine(1, 64, OverflowPolicy::Block);
    let mut c = e
        .consumer(ConsumerConfig::cluster("g").fetch(8, Duration::MAX))
        .unwrap();
    c.subscribe(&["t"]).unwrap();
    // Fewer than fetch_min and a zero poll timeout: returns what is there.
    publish(&e, 3);
    assert_eq!(c.poll(64, Duration::ZERO).unwrap().len(), 3);
    // Nothing there, an unbounded timeout: returns once records come.
    let e2 = e.clone();
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        let mut p = e2.producer("t").unwrap();
        for i in 0..8 {
            p.send_to(0, i).unwrap();
        }
    });
    assert_eq!(c.poll(64, Duration::MAX).unwrap().len(), 8);
    late.join().unwrap();
}

#[test]
fn huge_poll_max_is_bounded_on_both_layouts() {
    for layout in [SlotLayout::Packed, SlotLayout::Marked] {
        let e: Engine<u64> = Engine::new();
        e.create_topic("t", TopicConfig::new(2, 64).layout(layout))
            .unwrap();
        let mut c = e.consumer(ConsumerConfig::cluster("g")).unwrap();
        c.subscribe(&["t"]).unwrap();
        let mut p = e.producer("t").unwrap();
        for i in 0..100 {
            p.send_to((i % 2) as u32, i).unwrap();
        }
        // `max` far beyond anything a poll can return: the records there,
        // no overflow, no giant allocation.
        let mut got = 0;
        for _ in 0..10 {
            got += c.poll(usize::MAX, Duration::from_millis(50)).unwrap().len();
        }
        assert_eq!(got, 100, "{layout:?}");
    }
    let (mut w, mut r) =
        telering::ring::spsc_with::<u64>(8, OverflowPolicy::Block, SlotLayout::Marked).unwrap();
    w.publish_slice(&[1, 2, 3]).unwrap();
    let mut out = Vec::new();
    assert_eq!(r.read_into(usize::MAX, &mut out).read, 3);
    w.publish(4).unwrap();
    assert_eq!(r.read_with(usize::MAX, |_, _| {}), 1);
}
