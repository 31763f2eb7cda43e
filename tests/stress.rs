//! Multi-threaded stress tests over real threads: one writer thread per
//! partition, consumer groups of several member threads with mixed wait
//! strategies, membership churn and crashes, and closing the engine under
//! parked readers and a blocked writer.
//!
//! Every record encodes its partition and offset, so each delivery is checked
//! against the value that must be at that offset. The machine may have few
//! cores, so thread counts stay modest, and nothing asserts on timing: the
//! deadlines below only turn a hang into a failure.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use telering::ring::{BatchError, PublishError, Writer};
use telering::{
    Consumer, ConsumerConfig, ConsumerError, Engine, OverflowPolicy, SendError, SlotLayout,
    TopicConfig, WaitStrategy,
};

const TOPIC: &str = "t";
const PARTITIONS: u32 = 4;
/// Longest a test may stall before it is declared hung (liveness, not timing).
const HANG: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(5);

/// The value at `offset` of `partition`.
fn enc(partition: u32, offset: u64) -> u64 {
    (u64::from(partition) << 40) | offset
}

/// A 32-byte record whose four words all derive from (partition, offset), so
/// a torn or stale copy under `Overwrite` cannot pass for a valid one.
type Wide = [u64; 4];

fn wide(partition: u32, offset: u64) -> Wide {
    let e = enc(partition, offset);
    [e, !e, e.rotate_left(17), e ^ 0x5a5a_5a5a_5a5a_5a5a]
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn alive(deadline: Instant, what: &str) {
    assert!(Instant::now() < deadline, "stalled: {what}");
}

/// Publishes offsets `0..n` of one partition, mixing single publishes and
/// batches of up to 48.
fn produce<T: Copy + Send>(mut w: Writer<T>, p: u32, n: u64, make: fn(u32, u64) -> T) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(p + 1));
    let mut o = 0;
    while o < n {
        let k = (rng.below(48) + 1).min(n - o);
        if k == 1 || rng.below(3) == 0 {
            let at = w.publish(make(p, o)).expect("publish");
            assert_eq!(at, o, "writer of {p}: offsets are sequential");
            o += 1;
        } else {
            let batch: Vec<T> = (o..o + k).map(|x| make(p, x)).collect();
            let first = w.publish_slice(&batch).expect("publish_slice");
            assert_eq!(first, o, "writer of {p}: batch offsets are sequential");
            o += k;
        }
    }
}

fn spawn_producers<T: Copy + Send + 'static>(
    engine: &Engine<T>,
    per_partition: u64,
    make: fn(u32, u64) -> T,
) -> Vec<thread::JoinHandle<()>> {
    let writers = engine.producer(TOPIC).unwrap().into_partition_writers();
    assert_eq!(writers.len(), PARTITIONS as usize);
    writers
        .into_iter()
        .enumerate()
        .map(|(p, w)| {
            thread::Builder::new()
                .name(format!("writer-{p}"))
                .spawn(move || produce(w, p as u32, per_partition, make))
                .unwrap()
        })
        .collect()
}

/// What a member saw: every delivery as (partition, offset), in order, and
/// the records it was told it missed.
#[derive(Default)]
struct Seen {
    name: String,
    got: Vec<(u32, u64)>,
    missed: u64,
}

impl Seen {
    /// Offsets of each partition strictly increase within this member's life.
    fn check_order(&self) {
        let mut last = [None::<u64>; PARTITIONS as usize];
        for &(p, o) in &self.got {
            if let Some(prev) = last[p as usize] {
                assert!(o > prev, "{}: {p}/{o} after {p}/{prev}", self.name);
            }
            last[p as usize] = Some(o);
        }
    }
}

/// A member thread: polls, checks each value with `check`, and stops once
/// `stop()` says so; then closes gracefully.
fn member<T: Copy + Send + 'static>(
    name: String,
    mut c: Consumer<T>,
    check: fn(u32, u64, &T) -> bool,
    stop: impl Fn(&Seen, &Consumer<T>) -> bool + Send + 'static,
    on_batch: impl Fn(u64, u64) + Send + 'static,
) -> thread::JoinHandle<Seen> {
    thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let deadline = Instant::now() + HANG;
            let mut seen = Seen {
                name,
                ..Seen::default()
            };
            while !stop(&seen, &c) {
                alive(deadline, &seen.name);
                let b = c.poll(256, POLL).unwrap();
                for r in b.iter() {
                    assert!(
                        check(r.partition, r.offset, &r.value),
                        "{}: corrupt value at {}/{}",
                        seen.name,
                        r.partition,
                        r.offset
                    );
                    seen.got.push((r.partition, r.offset));
                }
                seen.missed += b.missed();
                on_batch(b.len() as u64, b.missed());
            }
            c.close();
            seen
        })
        .unwrap()
}

fn check_u64(p: u32, o: u64, v: &u64) -> bool {
    *v == enc(p, o)
}

fn check_wide(p: u32, o: u64, v: &Wide) -> bool {
    *v == wide(p, o)
}

/// Counts of each (partition, offset) over several members.
fn tally(seen: &[&Seen], per_partition: u64) -> Vec<Vec<u32>> {
    let mut counts = vec![vec![0u32; per_partition as usize]; PARTITIONS as usize];
    for s in seen {
        for &(p, o) in &s.got {
            counts[p as usize][o as usize] += 1;
        }
    }
    counts
}

/// (a) Block: 4 writer threads, a cluster group of 3 members and a broadcast
/// group of 2, all wait strategies. Exactly once per cluster group, every
/// record to every broadcast member, in order per partition.
#[test]
fn block_cluster_and_broadcast_exactly_once() {
    const PER: u64 = 50_000;
    let total = PER * u64::from(PARTITIONS);
    let engine: Engine<u64> = Engine::new();
    engine
        .create_topic(TOPIC, TopicConfig::new(PARTITIONS, 1024))
        .unwrap();
    // Every member subscribes before the first publish: the groups gate the
    // writers from offset 0.
    let group_done = Arc::new(AtomicU64::new(0));
    let mut cluster = Vec::new();
    for (i, wait) in [
        WaitStrategy::BusySpin,
        WaitStrategy::SpinYield,
        WaitStrategy::Park,
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = engine
            .consumer(ConsumerConfig::cluster("cluster").wait(wait))
            .unwrap();
        c.subscribe(&[TOPIC]).unwrap();
        let (done, done2) = (group_done.clone(), group_done.clone());
        cluster.push(member(
            format!("cluster-{i}-{wait:?}"),
            c,
            check_u64,
            move |_, _| done.load(Ordering::Relaxed) >= total,
            move |n, missed| {
                assert_eq!(missed, 0, "nothing is missed under Block");
                done2.fetch_add(n, Ordering::Relaxed);
            },
        ));
    }
    let mut broadcast = Vec::new();
    for (i, wait) in [WaitStrategy::Park, WaitStrategy::SpinYield]
        .into_iter()
        .enumerate()
    {
        let mut c = engine
            .consumer(ConsumerConfig::broadcast("broadcast").wait(wait))
            .unwrap();
        c.subscribe(&[TOPIC]).unwrap();
        broadcast.push(member(
            format!("broadcast-{i}-{wait:?}"),
            c,
            check_u64,
            move |s, _| s.got.len() as u64 >= total,
            |_, missed| assert_eq!(missed, 0, "nothing is missed under Block"),
        ));
    }
    for w in spawn_producers(&engine, PER, enc) {
        w.join().unwrap();
    }
    let cluster: Vec<Seen> = cluster.into_iter().map(|h| h.join().unwrap()).collect();
    let broadcast: Vec<Seen> = broadcast.into_iter().map(|h| h.join().unwrap()).collect();

    assert_eq!(engine.published(TOPIC).unwrap(), total);
    for s in &cluster {
        s.check_order();
    }
    let counts = tally(&cluster.iter().collect::<Vec<_>>(), PER);
    for (p, c) in counts.iter().enumerate() {
        if let Some(o) = c.iter().position(|&n| n != 1) {
            panic!("cluster group: {p}/{o} delivered {} times", c[o]);
        }
    }
    for s in &broadcast {
        let mut next = [0u64; PARTITIONS as usize];
        for &(p, o) in &s.got {
            assert_eq!(
                o, next[p as usize],
                "{}: partition {p} out of order",
                s.name
            );
            next[p as usize] += 1;
        }
        assert_eq!(next, [PER; PARTITIONS as usize], "{}", s.name);
    }
    let g = engine.group_stats("cluster").unwrap();
    assert_eq!((g.delivered, g.missed, g.members), (total, 0, 0));
    let b = engine.group_stats("broadcast").unwrap();
    assert_eq!((b.delivered, b.missed, b.members), (2 * total, 0, 0));
}

/// (b) Overwrite: the same topology on a small ring, so readers are lapped
/// all the time. Every delivered value is intact and matches its offset;
/// each broadcast member's delivered + missed == published; so is the cluster
/// group's (graceful hand-overs only).
#[test]
fn overwrite_lapped_readers_account_for_everything() {
    const PER: u64 = 50_000;
    let total = PER * u64::from(PARTITIONS);
    let engine: Engine<Wide> = Engine::new();
    engine
        .create_topic(
            TOPIC,
            TopicConfig::new(PARTITIONS, 64).policy(OverflowPolicy::Overwrite),
        )
        .unwrap();
    let group_done = Arc::new(AtomicU64::new(0));
    let mut cluster = Vec::new();
    for (i, wait) in [
        WaitStrategy::SpinYield,
        WaitStrategy::Park,
        WaitStrategy::BusySpin,
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = engine
            .consumer(ConsumerConfig::cluster("cluster").wait(wait))
            .unwrap();
        c.subscribe(&[TOPIC]).unwrap();
        let (done, done2) = (group_done.clone(), group_done.clone());
        cluster.push(member(
            format!("cluster-{i}-{wait:?}"),
            c,
            check_wide,
            move |_, _| done.load(Ordering::Relaxed) >= total,
            move |n, missed| {
                done2.fetch_add(n + missed, Ordering::Relaxed);
            },
        ));
    }
    let mut broadcast = Vec::new();
    let writers_done = Arc::new(AtomicBool::new(false));
    for (i, wait) in [WaitStrategy::Park, WaitStrategy::BusySpin]
        .into_iter()
        .enumerate()
    {
        let writers_done = writers_done.clone();
        let mut c = engine
            .consumer(ConsumerConfig::broadcast("broadcast").wait(wait))
            .unwrap();
        c.subscribe(&[TOPIC]).unwrap();
        broadcast.push(member(
            format!("broadcast-{i}-{wait:?}"),
            c,
            check_wide,
            // Stop at the end of every partition once the writers are done
            // (then check the count, rather than wait for it).
            move |_, c| writers_done.load(Ordering::Acquire) && c.lag() == 0,
            |_, _| {},
        ));
    }
    for w in spawn_producers(&engine, PER, wide) {
        w.join().unwrap();
    }
    writers_done.store(true, Ordering::Release);
    let cluster: Vec<Seen> = cluster.into_iter().map(|h| h.join().unwrap()).collect();
    let broadcast: Vec<Seen> = broadcast.into_iter().map(|h| h.join().unwrap()).collect();

    assert_eq!(engine.published(TOPIC).unwrap(), total);
    for s in cluster.iter().chain(&broadcast) {
        s.check_order();
    }
    for s in &broadcast {
        assert_eq!(
            s.got.len() as u64 + s.missed,
            total,
            "{}: delivered + missed == published",
            s.name
        );
        // The ends of the partitions are never lapped once writers stop.
        let mut last = [None::<u64>; PARTITIONS as usize];
        for &(p, o) in &s.got {
            last[p as usize] = Some(o);
        }
        assert_eq!(last, [Some(PER - 1); PARTITIONS as usize], "{}", s.name);
    }
    let counts = tally(&cluster.iter().collect::<Vec<_>>(), PER);
    assert!(
        counts.iter().flatten().all(|&n| n <= 1),
        "cluster group: a record delivered twice without a crash"
    );
    let g = engine.group_stats("cluster").unwrap();
    assert_eq!(
        g.delivered + g.missed,
        total,
        "cluster group: delivered + missed == published ({g:?})"
    );
    let b = engine.group_stats("broadcast").unwrap();
    assert_eq!(b.delivered + b.missed, 2 * total, "broadcast group ({b:?})");
}

/// (c) Block, marked slots, while cluster members join, leave gracefully and crash: every
/// record is delivered at least once, in order within each member's life.
/// An anchor member stays throughout, so the group always gates the writers.
#[test]
fn churn_and_crashes_deliver_at_least_once() {
    const PER: u64 = 50_000;
    let total = PER * u64::from(PARTITIONS);
    let engine: Engine<u64> = Engine::new();
    engine
        // Marked slots: the packed layout is stressed by (a); here joins,
        // hand-overs and crashes run against per-slot marks and a lazily
        // stored cursor.
        .create_topic(
            TOPIC,
            TopicConfig::new(PARTITIONS, 256).layout(SlotLayout::Marked),
        )
        .unwrap();
    let counts: Arc<Vec<Vec<AtomicU32>>> = Arc::new(
        (0..PARTITIONS)
            .map(|_| (0..PER).map(|_| AtomicU32::new(0)).collect())
            .collect(),
    );
    let distinct = Arc::new(AtomicU64::new(0));
    let crashes = Arc::new(AtomicU64::new(0));
    let record = {
        let (counts, distinct) = (counts.clone(), distinct.clone());
        move |p: u32, o: u64| {
            if counts[p as usize][o as usize].fetch_add(1, Ordering::Relaxed) == 0 {
                distinct.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    // One poll: checks values, records deliveries.
    fn poll_once(c: &mut Consumer<u64>, seen: &mut Seen, record: &impl Fn(u32, u64)) {
        let b = c.poll(128, Duration::from_millis(2)).unwrap();
        assert_eq!(
            b.missed(),
            0,
            "{}: nothing is missed under Block",
            seen.name
        );
        for r in b.iter() {
            assert_eq!(r.value, enc(r.partition, r.offset), "{}", seen.name);
            seen.got.push((r.partition, r.offset));
            record(r.partition, r.offset);
        }
    }

    let mut anchor = engine
        .consumer(ConsumerConfig::cluster("cluster").wait(WaitStrategy::Park))
        .unwrap();
    anchor.subscribe(&[TOPIC]).unwrap();
    let anchor = thread::spawn({
        let (distinct, record) = (distinct.clone(), record.clone());
        move || {
            let deadline = Instant::now() + HANG;
            let mut seen = Seen {
                name: "anchor".into(),
                ..Seen::default()
            };
            while distinct.load(Ordering::Relaxed) < total {
                alive(deadline, "anchor");
                poll_once(&mut anchor, &mut seen, &record);
            }
            anchor.close();
            vec![seen]
        }
    });
    let churners: Vec<_> = (0..2u64)
        .map(|t| {
            let engine = engine.clone();
            let (distinct, crashes, record) = (distinct.clone(), crashes.clone(), record.clone());
            thread::spawn(move || {
                let deadline = Instant::now() + HANG;
                let mut rng = Rng(0xdead_beef + t);
                let mut stints = Vec::new();
                let waits = [
                    WaitStrategy::Park,
                    WaitStrategy::SpinYield,
                    WaitStrategy::BusySpin,
                ];
                let mut stint = 0;
                while distinct.load(Ordering::Relaxed) < total {
                    alive(deadline, "churn");
                    stint += 1;
                    let wait = waits[(stint + t as usize) % 3];
                    let mut c = engine
                        .consumer(ConsumerConfig::cluster("cluster").wait(wait))
                        .unwrap();
                    c.subscribe(&[TOPIC]).unwrap();
                    let mut seen = Seen {
                        name: format!("churn-{t}-{stint}-{wait:?}"),
                        ..Seen::default()
                    };
                    for _ in 0..rng.below(12) + 1 {
                        poll_once(&mut c, &mut seen, &record);
                    }
                    // Every fourth stint of the first churner crashes.
                    if t == 0 && stint % 4 == 2 {
                        crashes.fetch_add(1, Ordering::Relaxed);
                        drop(c);
                    } else {
                        c.close();
                    }
                    stints.push(seen);
                }
                stints
            })
        })
        .collect();
    for w in spawn_producers(&engine, PER, enc) {
        w.join().unwrap();
    }
    let mut all: Vec<Seen> = anchor.join().unwrap();
    for h in churners {
        all.extend(h.join().unwrap());
    }
    assert!(
        crashes.load(Ordering::Relaxed) >= 1,
        "the schedule should include a crash"
    );
    for s in &all {
        s.check_order();
    }
    for (p, c) in counts.iter().enumerate() {
        if let Some(o) = c.iter().position(|n| n.load(Ordering::Relaxed) == 0) {
            panic!("{p}/{o} never delivered");
        }
    }
    let delivered: u64 = all.iter().map(|s| s.got.len() as u64).sum();
    assert!(delivered >= total);
    let g = engine.group_stats("cluster").unwrap();
    assert_eq!((g.delivered, g.missed), (delivered, 0), "{g:?}");
}

/// (d) Closing the engine wakes everybody: members parked in `poll` with a
/// long timeout get `EngineClosed` once drained, and writers blocked on a
/// full ring (`Writer::publish`, `Writer::publish_slice`, `Producer::send_to`)
/// get `Closed` with the record handed back. A group whose member
/// never polls holds the writers back; it can still read what was published.
#[test]
fn close_wakes_parked_readers_and_blocked_writers() {
    const CAP: usize = 16;
    let engine: Engine<u64> = Engine::new();
    engine
        .create_topic(TOPIC, TopicConfig::new(2, CAP))
        .unwrap();
    // A second topic, written through the `Producer` API.
    engine.create_topic("u", TopicConfig::new(1, CAP)).unwrap();
    // The slow group never polls before the close: each ring fills up.
    let mut slow = engine.consumer(ConsumerConfig::cluster("slow")).unwrap();
    slow.subscribe(&[TOPIC, "u"]).unwrap();
    let delivered = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel::<(String, Result<u64, String>)>();
    let mut handles = Vec::new();
    let mut readers = Vec::new();
    for cfg in [
        ConsumerConfig::cluster("fast"),
        ConsumerConfig::cluster("fast"),
        ConsumerConfig::broadcast("watch"),
    ] {
        let mut c = engine.consumer(cfg.wait(WaitStrategy::Park)).unwrap();
        c.subscribe(&[TOPIC]).unwrap();
        readers.push(c);
    }
    for (i, mut c) in readers.into_iter().enumerate() {
        let (tx, delivered) = (tx.clone(), delivered.clone());
        let name = format!("reader-{i}");
        handles.push(thread::spawn(move || {
            let mut n = 0;
            let res = loop {
                match c.poll(64, Duration::from_secs(3600)) {
                    Ok(b) => {
                        for r in b.iter() {
                            assert_eq!(r.value, enc(r.partition, r.offset));
                        }
                        n += b.len() as u64;
                        delivered.fetch_add(b.len() as u64, Ordering::Relaxed);
                    }
                    Err(ConsumerError::EngineClosed) => break Ok(n),
                    Err(other) => break Err(format!("{other:?}")),
                }
            };
            let _ = tx.send((name, res));
        }));
    }
    let mut writers = engine.producer(TOPIC).unwrap().into_partition_writers();
    let mut w1 = writers.pop().unwrap();
    let mut w0 = writers.pop().unwrap();
    handles.push(thread::spawn({
        let tx = tx.clone();
        move || {
            // Single publishes into partition 0 until the close.
            let mut o = 0;
            let res = loop {
                match w0.publish(enc(0, o)) {
                    Ok(at) => {
                        assert_eq!(at, o);
                        o += 1;
                    }
                    Err(PublishError::Closed(v)) => {
                        assert_eq!(v, enc(0, o), "Closed hands the record back");
                        break Ok(o);
                    }
                    Err(other) => break Err(format!("{other:?}")),
                }
            };
            let _ = tx.send(("writer-0".into(), res));
        }
    }));
    handles.push(thread::spawn({
        let tx = tx.clone();
        move || {
            // One batch of three rings' worth into partition 1.
            let batch: Vec<u64> = (0..3 * CAP as u64).map(|o| enc(1, o)).collect();
            let res = match w1.publish_slice(&batch) {
                Err(BatchError::Closed { accepted }) => Ok(accepted as u64),
                other => Err(format!("{other:?}")),
            };
            let _ = tx.send(("writer-1".into(), res));
        }
    }));
    let mut producer = engine.producer("u").unwrap();
    handles.push(thread::spawn({
        let tx = tx.clone();
        move || {
            // Producer::send_to into the single partition of "u".
            let mut o = 0;
            let res = loop {
                match producer.send_to(0, enc(0, o)) {
                    Ok(sent) => {
                        assert_eq!((sent.partition, sent.offset), (0, o));
                        o += 1;
                    }
                    Err(SendError::Closed(v)) => {
                        assert_eq!(v, enc(0, o), "Closed hands the record back");
                        break Ok(o);
                    }
                    Err(other) => break Err(format!("{other:?}")),
                }
            };
            let _ = tx.send(("producer-u".into(), res));
        }
    }));
    drop(tx);
    // Wait until all rings are full and the fast readers have read it all
    // (2 fast cluster members share 2 * CAP, the broadcast member reads 2 * CAP).
    let deadline = Instant::now() + HANG;
    while engine.published(TOPIC).unwrap() < 2 * CAP as u64
        || engine.published("u").unwrap() < CAP as u64
        || delivered.load(Ordering::Relaxed) < 4 * CAP as u64
    {
        alive(deadline, "filling the rings");
        thread::sleep(Duration::from_millis(1));
    }
    // Give the writers and readers time to block and park (not asserted).
    thread::sleep(Duration::from_millis(200));
    assert_eq!(engine.published(TOPIC).unwrap(), 2 * CAP as u64);
    engine.close();
    // Everybody returns: a watchdog on the join, not a timing assertion.
    let mut results = Vec::new();
    for _ in 0..handles.len() {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(r) => results.push(r),
            Err(_) => panic!(
                "not everybody returned within 30 s of the close (or a thread panicked; \
                 see above): got only {results:?}"
            ),
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    let get = |name: &str| {
        results
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .1
            .clone()
    };
    let fast = get("reader-0").unwrap() + get("reader-1").unwrap();
    assert_eq!(
        fast,
        2 * CAP as u64,
        "fast cluster group read everything once"
    );
    assert_eq!(get("reader-2"), Ok(2 * CAP as u64), "broadcast member");
    assert_eq!(get("writer-0"), Ok(CAP as u64), "blocked single publish");
    assert_eq!(get("writer-1"), Ok(CAP as u64), "blocked batch");
    assert_eq!(
        get("producer-u"),
        Ok(CAP as u64),
        "blocked Producer::send_to"
    );
    // The slow group still reads what was published, then learns of the close.
    let mut n = 0;
    loop {
        match slow.poll(64, Duration::from_secs(3600)) {
            Ok(b) => n += b.len(),
            Err(ConsumerError::EngineClosed) => break,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(n, 3 * CAP);
    assert!(matches!(
        engine.producer(TOPIC),
        Err(telering::EngineError::Closed)
    ));
}
