//! The journal on real files: restart and recovery, committed offsets
//! across restarts, reading back past the ring, torn tails, corruption,
//! incompatible files, the lock, retention, and a full disk.

#![cfg(feature = "journal")]

use std::path::Path;
use std::time::Duration;

use telering::journal::{FsyncPolicy, JournalConfig, JournalError};
use telering::{ConsumerConfig, Engine, EngineError, OffsetReset, OverflowPolicy, TopicConfig};

fn topic(partitions: u32, capacity: usize) -> TopicConfig {
    TopicConfig::new(partitions, capacity).journaled(true)
}

fn open(dir: &Path) -> Engine<u64> {
    Engine::with_journal(JournalConfig::new(dir)).expect("journal opens")
}

/// Reads everything `group` gets from `topic` until `want` records came or
/// a poll comes back empty.
fn drain(
    engine: &Engine<u64>,
    group: &str,
    want: usize,
    reset: OffsetReset,
) -> Vec<(u32, u64, u64)> {
    let mut c = engine
        .consumer(ConsumerConfig::cluster(group).offset_reset(reset))
        .unwrap();
    c.subscribe(&["t"]).unwrap();
    let mut got = Vec::new();
    while got.len() < want {
        let b = c.poll(1000, Duration::from_millis(500)).unwrap();
        if b.is_empty() {
            break;
        }
        assert_eq!(b.missed(), 0);
        got.extend(b.iter().map(|r| (r.partition, r.offset, r.value)));
    }
    c.close();
    got
}

#[test]
fn records_survive_a_restart_and_offsets_continue() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = open(dir.path());
        e.create_topic("t", topic(2, 64)).unwrap();
        let mut p = e.producer("t").unwrap();
        for i in 0..1000u64 {
            p.send_to((i % 2) as u32, i).unwrap();
        }
        e.close();
        let s = e.journal_stats().unwrap();
        assert_eq!((s.written, s.recovered, s.truncated), (1000, 0, 0));
    }
    let e = open(dir.path());
    e.create_topic("t", topic(2, 64)).unwrap();
    assert_eq!(e.journal_stats().unwrap().recovered, 1000);
    let offs = e.offsets("t").unwrap();
    assert_eq!(
        offs.iter().map(|o| o.latest).collect::<Vec<_>>(),
        [500, 500]
    );
    assert_eq!(offs.iter().map(|o| o.earliest).collect::<Vec<_>>(), [0, 0]);
    let mut p = e.producer("t").unwrap();
    assert_eq!(p.send_to(0, 1000).unwrap().offset, 500);
    // A new group from the earliest: the journal first, then the ring, with
    // no gap and no duplicate.
    let got = drain(&e, "g", 1001, OffsetReset::Earliest);
    assert_eq!(got.len(), 1001);
    for part in 0..2u32 {
        let offsets: Vec<u64> = got.iter().filter(|r| r.0 == part).map(|r| r.1).collect();
        let expect = if part == 0 { 501 } else { 500 };
        assert_eq!(offsets, (0..expect).collect::<Vec<_>>(), "partition {part}");
    }
    let mut values: Vec<u64> = got.iter().map(|r| r.2).collect();
    values.sort_unstable();
    assert_eq!(values, (0..=1000).collect::<Vec<_>>());
}

#[test]
fn a_group_resumes_from_its_commit_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = open(dir.path());
        e.create_topic("t", topic(1, 1024)).unwrap();
        let mut p = e.producer("t").unwrap();
        for i in 0..100u64 {
            p.send_to(0, i).unwrap();
        }
        let mut c = e.consumer(ConsumerConfig::cluster("g")).unwrap();
        c.subscribe(&["t"]).unwrap();
        let b = c.poll(40, Duration::from_secs(1)).unwrap();
        assert_eq!(b.len(), 40);
        c.commit();
        assert_eq!(c.committed("t", 0).unwrap(), 40);
        c.close();
        e.close();
    }
    let text = std::fs::read_to_string(dir.path().join("offsets.json")).unwrap();
    assert!(text.contains("\"g\""), "{text}");
    let e = open(dir.path());
    e.create_topic("t", topic(1, 1024)).unwrap();
    let got = drain(&e, "g", 100, OffsetReset::Earliest);
    assert_eq!(
        got.iter().map(|r| r.2).collect::<Vec<_>>(),
        (40..100).collect::<Vec<_>>()
    );
    // A group that never committed starts where its reset says.
    assert!(drain(&e, "other", 1, OffsetReset::Latest).is_empty());
}

#[test]
fn seek_reads_past_the_ring_from_the_journal_then_joins_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::with_journal(JournalConfig::new(dir.path()).segment_bytes(4096)).unwrap();
    e.create_topic("t", topic(1, 16)).unwrap();
    let mut p = e.producer("t").unwrap();
    let mut c = e.consumer(ConsumerConfig::cluster("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    let mut seen = 0u64;
    for i in 0..2000u64 {
        p.send_to(0, i).unwrap();
        if i % 8 == 7 {
            let b = c.poll(16, Duration::from_millis(100)).unwrap();
            seen += b.len() as u64;
        }
    }
    while seen < 2000 {
        seen += c.poll(16, Duration::from_millis(100)).unwrap().len() as u64;
    }
    let o = e.offsets("t").unwrap()[0];
    assert_eq!(o.earliest, 0);
    assert!(o.ring_earliest >= 2000 - 16, "{o:?}");
    // Several segments were written (4 KiB each; 2000 records of 8 bytes).
    let segs: Vec<_> = std::fs::read_dir(dir.path().join("topics/t/0"))
        .unwrap()
        .map(|f| {
            let f = f.unwrap();
            (f.file_name(), f.metadata().unwrap().len())
        })
        .collect();
    assert!(segs.len() >= 4, "{segs:?}");
    c.seek("t", 0, 10).unwrap();
    assert_eq!(c.committed("t", 0).unwrap(), 10);
    // The gate still holds the ring where the group had read (committed
    // 1992, auto-commit): 8 more fit while the consumer replays.
    for i in 2000..2008u64 {
        p.send_to(0, i).unwrap();
    }
    let mut next = 10;
    while next < 2008 {
        let b = c.poll(300, Duration::from_millis(500)).unwrap();
        assert!(!b.is_empty(), "stalled at {next}");
        for r in b.iter() {
            assert_eq!((r.offset, r.value), (next, next));
            next += 1;
        }
    }
    assert_eq!(c.lag(), 0);
    let err = c.seek("t", 0, 5000).unwrap_err();
    assert!(
        err.to_string().contains("valid offsets are 0..=2008"),
        "{err}"
    );
}

#[test]
fn a_torn_tail_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = open(dir.path());
        e.create_topic("t", topic(1, 64)).unwrap();
        let mut p = e.producer("t").unwrap();
        for i in 0..10u64 {
            p.send_to(0, i).unwrap();
        }
        e.close();
    }
    let seg = dir.path().join("topics/t/0/00000000000000000000.seg");
    let whole = std::fs::metadata(&seg).unwrap().len();
    // Half of a batch of 3 records starting at offset 10, as a crash mid-write leaves it.
    let mut torn = Vec::new();
    torn.extend_from_slice(&10u64.to_le_bytes());
    torn.extend_from_slice(&3u32.to_le_bytes());
    torn.extend_from_slice(&[0xAB; 20]);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&torn);
    std::fs::write(&seg, &bytes).unwrap();
    let e = open(dir.path());
    e.create_topic("t", topic(1, 64)).unwrap();
    let s = e.journal_stats().unwrap();
    assert_eq!((s.recovered, s.truncated), (10, 3));
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), whole);
    let mut p = e.producer("t").unwrap();
    assert_eq!(p.send_to(0, 10).unwrap().offset, 10);
    drop(p);
    e.close();
    let e = open(dir.path());
    e.create_topic("t", topic(1, 64)).unwrap();
    assert_eq!(e.journal_stats().unwrap().recovered, 11);
}

#[test]
fn corruption_before_the_end_is_an_error_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::<u64>::with_journal(JournalConfig::new(dir.path()).segment_bytes(4096))
            .unwrap();
        e.create_topic("t", topic(1, 64)).unwrap();
        let mut p = e.producer("t").unwrap();
        for i in 0..3000u64 {
            p.send_to(0, i).unwrap();
        }
        e.close();
    }
    let seg = dir.path().join("topics/t/0/00000000000000000000.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[32 + 24 + 5] ^= 0x40; // a record byte of the first batch
    std::fs::write(&seg, &bytes).unwrap();
    let e = open(dir.path());
    let err = e.create_topic("t", topic(1, 64)).unwrap_err();
    let EngineError::Journal(j) = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(
            &**j,
            JournalError::Corrupt {
                position: 32,
                offset: 0,
                ..
            }
        ),
        "{j}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("00000000000000000000.seg") && msg.contains("byte 32"),
        "{msg}"
    );
}

#[test]
fn incompatible_files_a_second_engine_and_an_unwritable_dir_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = open(dir.path());
        e.create_topic("t", topic(1, 64)).unwrap();
        // The same directory while it is open.
        let second = Engine::<u64>::with_journal(JournalConfig::new(dir.path())).unwrap_err();
        assert!(
            second.to_string().contains("in use by another telering"),
            "{second}"
        );
        e.producer("t").unwrap().send_to(0, 1).unwrap();
        e.close();
    }
    // Another record type.
    let e: Engine<telering::Reading> =
        Engine::with_journal(JournalConfig::new(dir.path())).unwrap();
    let err = e.create_topic("t", topic(1, 64)).unwrap_err().to_string();
    assert!(err.contains("another record type"), "{err}");
    drop(e);
    // Another format version.
    let seg = dir.path().join("topics/t/0/00000000000000000000.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[8] = 9;
    std::fs::write(&seg, &bytes).unwrap();
    let e = open(dir.path());
    let err = e.create_topic("t", topic(1, 64)).unwrap_err().to_string();
    assert!(err.contains("version 9"), "{err}");
    drop(e);
    // A data dir that cannot be created (its parent is a file).
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = Engine::<u64>::with_journal(JournalConfig::new(file.join("data"))).unwrap_err();
    assert!(err.to_string().contains("cannot create"), "{err}");
    // Journaled topics need a journal, and Block or Reject.
    let plain: Engine<u64> = Engine::new();
    assert_eq!(
        plain.create_topic("t", topic(1, 64)),
        Err(EngineError::NoJournal("t".into()))
    );
    let dir2 = tempfile::tempdir().unwrap();
    let e = open(dir2.path());
    let err = e
        .create_topic("o", topic(1, 64).policy(OverflowPolicy::Overwrite))
        .unwrap_err();
    assert!(err.to_string().contains("Block or Reject"), "{err}");
}

#[test]
fn retention_deletes_old_segments_and_the_range_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = JournalConfig::new(dir.path()).segment_bytes(4096);
    cfg.retention_bytes = Some(16 * 1024);
    let e = Engine::<u64>::with_journal(cfg).unwrap();
    e.create_topic("t", topic(1, 64)).unwrap();
    let mut p = e.producer("t").unwrap();
    for i in 0..20_000u64 {
        p.send_to(0, i).unwrap();
    }
    // Retention runs about once a second; the journal may still be
    // writing the last records during the first run.
    let kept = || -> u64 {
        std::fs::read_dir(dir.path().join("topics/t/0"))
            .unwrap()
            .map(|f| f.unwrap().metadata().unwrap().len())
            .sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let logs = e.journal_logs("t").unwrap().unwrap();
    while (logs[0].written() < 20_000 || kept() > 16 * 1024 + 4096)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let bytes = kept();
    assert!(bytes <= 16 * 1024 + 4096, "{bytes} bytes kept");
    let earliest = e.offsets("t").unwrap()[0].earliest;
    assert!(earliest > 10_000, "earliest {earliest}");
    let mut c = e.consumer(ConsumerConfig::cluster("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    let err = c.seek("t", 0, 5).unwrap_err().to_string();
    assert!(
        err.contains(&format!("valid offsets are {earliest}..=20000")),
        "{err}"
    );
    assert!(e.journal_stats().unwrap().deleted >= earliest);
}

#[test]
fn fsync_modes_all_keep_everything_and_always_syncs_per_group_commit() {
    for mode in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval(Duration::from_millis(5)),
        FsyncPolicy::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let e = Engine::<u64>::with_journal(JournalConfig::new(dir.path()).fsync(mode)).unwrap();
        e.create_topic("t", topic(1, 1024)).unwrap();
        let logs = e.journal_logs("t").unwrap().unwrap();
        let mut p = e.producer("t").unwrap();
        for i in 0..500u64 {
            p.send_to(0, i).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while logs[0].durable() < 500 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(logs[0].durable(), 500, "{mode:?}");
        assert!(logs[0].written() >= logs[0].durable());
        let s = e.journal_stats().unwrap();
        match mode {
            FsyncPolicy::Always => assert!(s.syncs >= 1 && s.syncs <= s.batches, "{s:?}"),
            FsyncPolicy::Never => assert_eq!(s.syncs, 0),
            FsyncPolicy::Interval(_) => {}
        }
        e.close();
        let e = open(dir.path());
        e.create_topic("t", topic(1, 1024)).unwrap();
        assert_eq!(e.journal_stats().unwrap().recovered, 500, "{mode:?}");
    }
}

#[test]
fn a_commit_saved_past_the_end_resumes_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = open(dir.path());
        e.create_topic("t", topic(1, 64)).unwrap();
        let mut p = e.producer("t").unwrap();
        for i in 0..10u64 {
            p.send_to(0, i).unwrap();
        }
        e.close();
    }
    // As if a power loss kept the offsets file but not the last records.
    std::fs::write(
        dir.path().join("offsets.json"),
        r#"{"version":1,"groups":{"g":{"t":{"0":25}}}}"#,
    )
    .unwrap();
    let e = open(dir.path());
    e.create_topic("t", topic(1, 64)).unwrap();
    let mut c = e.consumer(ConsumerConfig::cluster("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    assert_eq!(c.position("t", 0).unwrap(), 10);
    e.producer("t").unwrap().send_to(0, 10).unwrap();
    let b = c.poll(10, Duration::from_secs(1)).unwrap();
    assert_eq!(b.iter().map(|r| r.offset).collect::<Vec<_>>(), [10]);
    c.close();
    drop(e);
    // A damaged offsets file is a clear error, not a silent reset.
    std::fs::write(dir.path().join("offsets.json"), b"{ not json").unwrap();
    let err = Engine::<u64>::with_journal(JournalConfig::new(dir.path())).unwrap_err();
    assert!(err.to_string().contains("offsets.json"), "{err}");
}
