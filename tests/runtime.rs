//! The pinned runtime with real threads: panic isolation, drain, pinning
//! wrap-around, and idle parked consumers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use telering::runtime::{PinPlan, Runtime, RuntimeError, Shutdown};
use telering::{ConsumerConfig, Engine, OverflowPolicy, Record, TopicConfig, WaitStrategy};

fn engine(partitions: u32) -> Engine<u64> {
    let e = Engine::new();
    e.create_topic(
        "t",
        TopicConfig::new(partitions, 256).policy(OverflowPolicy::Block),
    )
    .unwrap();
    e
}

type Seen = Arc<Mutex<HashMap<u64, u32>>>;

fn counter(seen: &Seen) -> impl FnMut(&Record<u64>) + Send + 'static {
    let seen = seen.clone();
    move |r| *seen.lock().unwrap().entry(r.value).or_default() += 1
}

#[test]
fn drain_delivers_everything_and_reports_per_group() {
    let e = engine(4);
    let cluster: Seen = Arc::default();
    let bcast: Seen = Arc::default();
    let rt = Runtime::builder(&e)
        .member(ConsumerConfig::cluster("c"), &["t"], counter(&cluster))
        .member(
            ConsumerConfig::cluster("c").wait(WaitStrategy::SpinYield),
            &["t"],
            counter(&cluster),
        )
        .member(ConsumerConfig::broadcast("b"), &["t"], counter(&bcast))
        .start()
        .unwrap();
    let mut p = e.producer("t").unwrap();
    for i in 0..20_000u64 {
        p.send_to((i % 4) as u32, i).unwrap();
    }
    let report = rt.shutdown(Shutdown::Drain);
    assert_eq!(report.groups["c"].handled, 20_000);
    assert_eq!(report.groups["b"].handled, 20_000);
    assert_eq!(
        report.handled(),
        [("b".to_owned(), 20_000), ("c".to_owned(), 20_000)].into()
    );
    assert_eq!(
        report.missed(),
        [("b".to_owned(), 0), ("c".to_owned(), 0)].into()
    );
    assert_eq!(report.panics(), 0);
    assert_eq!(report.members.len(), 3);
    for seen in [&cluster, &bcast] {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 20_000);
        assert!(seen.values().all(|&n| n == 1));
    }
}

#[test]
fn panicking_handler_takes_down_only_its_member_and_loses_nothing() {
    let e = engine(2);
    let seen: Seen = Arc::default();
    let mut calls = 0u32;
    let crashy = {
        let seen = seen.clone();
        move |r: &Record<u64>| {
            calls += 1;
            if calls == 50 {
                panic!("sensor decoder bug");
            }
            *seen.lock().unwrap().entry(r.value).or_default() += 1;
        }
    };
    let rt = Runtime::builder(&e)
        .member(ConsumerConfig::cluster("c"), &["t"], crashy)
        .member(ConsumerConfig::cluster("c"), &["t"], counter(&seen))
        .start()
        .unwrap();
    let mut p = e.producer("t").unwrap();
    for i in 0..10_000u64 {
        p.send_to((i % 2) as u32, i).unwrap();
    }
    // Wait for the crash to happen before draining.
    let t0 = Instant::now();
    while rt.running() == 2 && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = rt.shutdown(Shutdown::Drain);
    let panicked: Vec<_> = report
        .members
        .iter()
        .filter_map(|m| m.panicked.as_deref())
        .collect();
    assert_eq!(panicked, vec!["sensor decoder bug"]);
    let seen = seen.lock().unwrap();
    // At-least-once: every record handled, some possibly twice.
    assert_eq!(seen.len(), 10_000, "no record lost");
    assert!(report.groups["c"].handled >= 10_000);
    assert_eq!(report.groups["c"].panics, 1);
}

#[test]
fn more_threads_than_cores_wraps_around() {
    let cores = core_affinity::get_core_ids().map_or(0, |c| c.len());
    let threads = cores.max(1) * 2 + 1;
    let plan = PinPlan::new(threads, true);
    assert_eq!(plan.assignment.len(), threads);
    if cores > 0 {
        assert!(plan.wrapped);
        assert!(plan.describe().contains("wrapped"));
    }
    let e = engine(1);
    let mut b = Runtime::builder(&e);
    for _ in 0..threads {
        b = b.member(ConsumerConfig::broadcast("b"), &["t"], |_: &Record<u64>| {});
    }
    let rt = b.start().unwrap();
    assert_eq!(rt.pinning().wrapped, cores > 0);
    let report = rt.shutdown(Shutdown::Stop);
    assert_eq!(report.members.len(), threads);
    if cores > 0 {
        assert!(report.members.iter().all(|m| m.core.is_some()));
    }
    let off = PinPlan::new(3, false);
    assert!(off.assignment.iter().all(Option::is_none));
}

#[test]
fn bad_member_config_is_reported_at_start() {
    let e = engine(1);
    let err = Runtime::builder(&e)
        .member(
            ConsumerConfig::cluster("c"),
            &["nope"],
            |_: &Record<u64>| {},
        )
        .start()
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::Subscribe { index: 0, .. }),
        "{err}"
    );
    let err = Runtime::builder(&e).batch(0).start().unwrap_err();
    assert!(matches!(err, RuntimeError::ZeroBatch));
}

/// CPU time (user + system, in clock ticks) of this process's threads whose
/// name starts with `prefix`, from /proc.
fn thread_ticks(prefix: &str) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the name.
        total += fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    }
    total
}

#[test]
fn idle_parked_consumer_uses_almost_no_cpu() {
    let e = engine(1);
    let rt = Runtime::builder(&e)
        .pinning(false)
        .poll_timeout(Duration::from_secs(1))
        .member(
            ConsumerConfig::cluster("idle").wait(WaitStrategy::Park),
            &["t"],
            |_: &Record<u64>| {},
        )
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let before = thread_ticks("telering-idle");
    std::thread::sleep(Duration::from_secs(1));
    let used = thread_ticks("telering-idle") - before;
    // 100 ticks = one core for the whole second; a spinning consumer shows
    // ~100. Parked, it should show ~0.
    assert!(used <= 5, "idle parked consumer used {used} ticks in 1 s");
    // It still wakes up for a record.
    let mut p = e.producer("t").unwrap();
    p.send_to(0, 7).unwrap();
    let report = rt.shutdown(Shutdown::Drain);
    assert_eq!(report.groups["idle"].handled, 1);
}

/// `on_batch_start` precedes the records of every non-empty batch with the
/// batch's length: the announced lengths add up to the records handled, and
/// each record arrives inside an announced batch.
#[test]
fn batch_start_announces_every_batch() {
    #[derive(Default)]
    struct Log {
        announced: u64,
        left_in_batch: usize,
        records: u64,
        outside: u64,
    }
    struct H(Arc<Mutex<Log>>);
    impl telering::runtime::Handler<u64> for H {
        fn on_batch_start(&mut self, len: usize) {
            let mut l = self.0.lock().unwrap();
            assert_eq!(l.left_in_batch, 0, "a batch started before the last ended");
            l.announced += len as u64;
            l.left_in_batch = len;
        }
        fn on_record(&mut self, _r: &Record<u64>) {
            let mut l = self.0.lock().unwrap();
            l.records += 1;
            if l.left_in_batch == 0 {
                l.outside += 1;
            } else {
                l.left_in_batch -= 1;
            }
        }
    }
    let e = engine(2);
    let log: Arc<Mutex<Log>> = Arc::default();
    let rt = Runtime::builder(&e)
        .batch(64)
        .member(
            ConsumerConfig::broadcast("b").fetch(32, Duration::from_millis(1)),
            &["t"],
            H(log.clone()),
        )
        .start()
        .unwrap();
    let mut p = e.producer("t").unwrap();
    for i in 0..10_000u64 {
        p.send_to((i % 2) as u32, i).unwrap();
    }
    let report = rt.shutdown(Shutdown::Drain);
    assert_eq!(report.groups["b"].handled, 10_000);
    let l = log.lock().unwrap();
    assert_eq!(l.records, 10_000);
    assert_eq!(l.announced, 10_000);
    assert_eq!(l.outside, 0);
}
