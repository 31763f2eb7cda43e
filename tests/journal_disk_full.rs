//! A full disk under the journal, on a real small file system (a 1 MiB
//! tmpfs the test mounts; root only): writes fail with ENOSPC, are counted
//! and retried, nothing unwritten is acknowledged, `Block` stops the
//! writer, `Reject` refuses, and everything resumes when space returns.
//!
//! Where tmpfs cannot be mounted the test says so and checks the same
//! path through the journal's own size cap (`max_bytes`), which fails a
//! write the same way but cannot give the space back; `.ci/run` sets
//! `TELERING_REQUIRE_TMPFS=1`, making a failed mount an error.

#![cfg(feature = "mqtt")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{mqtt_str, packet};
use telering::journal::JournalConfig;
use telering::mqtt::{Server, ServerConfig, TEMPERATURE};
use telering::ring::PublishError;
use telering::{Engine, OverflowPolicy, SendError, TopicConfig};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(Self { dir });
        }
        assert!(
            std::env::var_os("TELERING_REQUIRE_TMPFS").is_none(),
            "TELERING_REQUIRE_TMPFS is set, but mounting a tmpfs failed"
        );
        eprintln!("cannot mount a tmpfs here (not root?): using the journal's size cap instead");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system up: a ballast file as large as it will go.
    fn fill(&self) -> PathBuf {
        let ballast = self.path().join("ballast");
        let mut f = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![0x55u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        ballast
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_full_disk_blocks_or_rejects_and_resumes_when_space_returns() {
    let fs = Tmpfs::mount("1m");
    let cap_dir = tempfile::tempdir().unwrap();
    let (dir, cap) = match &fs {
        Some(fs) => (fs.path().join("data"), None),
        // 8 KiB of segments: the two headers and a few batches.
        None => (cap_dir.path().join("data"), Some(8 * 1024)),
    };
    let mut cfg = JournalConfig::new(&dir);
    cfg.max_bytes = cap;
    let e: Engine<u64> = Engine::with_journal(cfg).unwrap();
    e.create_topic("b", TopicConfig::new(1, 1024).journaled(true))
        .unwrap();
    e.create_topic(
        "r",
        TopicConfig::new(1, 1024)
            .policy(OverflowPolicy::Reject)
            .journaled(true),
    )
    .unwrap();
    let ballast = fs.as_ref().map(|fs| fs.fill());
    let mut b = e.producer("b").unwrap();
    let mut r = e.producer("r").unwrap();
    // Block: the ring takes records until the journaller's gate, stuck on
    // the full disk, holds it a ring behind.
    let wb = b.partition_writer(0).unwrap();
    let mut accepted = 0u64;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match wb.try_publish(accepted) {
            Ok(_) => accepted += 1,
            Err(PublishError::Full(_)) if Instant::now() > deadline => break,
            Err(PublishError::Full(_)) => {
                // Full for good only once the journal has failed.
                if e.journal_stats().unwrap().write_errors > 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(PublishError::Closed(_)) => panic!("closed"),
        }
    }
    let logs = e.journal_logs("b").unwrap().unwrap();
    let s = e.journal_stats().unwrap();
    assert!(s.write_errors > 0, "{s:?}");
    assert!(accepted >= 1024, "the ring holds a lap: {accepted}");
    assert!(logs[0].durable() < accepted, "nothing unwritten is durable");
    // Reject: refused at once once its ring is full of unwritten records.
    let mut sent = 0u64;
    let mut refused = 0u64;
    for i in 0..3000u64 {
        match r.send_to(0, i) {
            Ok(_) => sent += 1,
            Err(SendError::Full(_)) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        refused > 0 && sent >= 1024,
        "sent {sent}, refused {refused}"
    );
    assert_eq!(e.rejected("r").unwrap(), refused);
    let rlog = e.journal_logs("r").unwrap().unwrap()[0].clone();
    assert!(rlog.durable() < sent);
    let Some(ballast) = ballast else {
        // The cap cannot be raised: the refusal half is what can be shown.
        return;
    };
    // Space returns: the journal catches up within its retry interval, and
    // the writer goes on.
    std::fs::remove_file(&ballast).unwrap();
    wait_for("the journal to catch up", 10, || {
        logs[0].durable() == accepted && rlog.durable() == sent
    });
    for i in 0..5000u64 {
        b.send_to(0, accepted + i).unwrap();
    }
    drop((b, r));
    e.close();
    let total = accepted + 5000;
    let e: Engine<u64> = Engine::with_journal(JournalConfig::new(&dir)).unwrap();
    e.create_topic("b", TopicConfig::new(1, 1024).journaled(true))
        .unwrap();
    assert_eq!(e.offsets("b").unwrap()[0].latest, total);
    let mut c = e
        .consumer(telering::ConsumerConfig::cluster("check"))
        .unwrap();
    c.subscribe(&["b"]).unwrap();
    let mut next = 0;
    while next < total {
        let batch = c.poll(4096, Duration::from_secs(1)).unwrap();
        assert!(!batch.is_empty(), "stalled at {next}");
        for rec in batch.iter() {
            assert_eq!((rec.offset, rec.value), (next, next));
            next += 1;
        }
    }
}

fn connect(id: &str) -> Vec<u8> {
    let mut b = Vec::new();
    mqtt_str(b"MQTT", &mut b);
    b.extend_from_slice(&[4, 0x02, 0, 60]);
    mqtt_str(id.as_bytes(), &mut b);
    packet(0x10, &b)
}

fn publish_qos1(topic: &str, pkid: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    mqtt_str(topic.as_bytes(), &mut b);
    b.extend_from_slice(&pkid.to_be_bytes());
    b.extend_from_slice(payload);
    packet(0x32, &b)
}

/// Reads what arrived within `wait`: the PUBACK packet ids, in order.
fn pubacks(s: &mut TcpStream, buf: &mut Vec<u8>, wait: Duration) -> Vec<u16> {
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let end = Instant::now() + wait;
    let mut chunk = [0u8; 4096];
    while Instant::now() < end {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
    }
    let mut ids = Vec::new();
    let mut i = 0;
    while buf.len() >= i + 4 {
        assert_eq!(&buf[i..i + 2], &[0x40, 0x02], "PUBACK");
        ids.push(u16::from_be_bytes([buf[i + 2], buf[i + 3]]));
        i += 4;
    }
    buf.drain(..i);
    ids
}

/// Over MQTT: while the disk is full no PUBACK leaves, and once space
/// returns every message is acknowledged, and each acknowledged one is in
/// the journal after a restart.
#[test]
fn no_puback_while_the_journal_cannot_write() {
    let Some(fs) = Tmpfs::mount("1m") else {
        return; // the size cap cannot be lifted: covered by the test above
    };
    let dir = fs.path().join("data");
    let mut cfg = ServerConfig::default();
    cfg.mqtt.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.ingest.shards = 2;
    cfg.ingest.partitions = 2;
    cfg.ingest.capacity = 4096;
    cfg.journal.dir = Some(dir.clone());
    let server = Server::start(cfg.clone()).unwrap();
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.write_all(&connect("full-disk")).unwrap();
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
    let mut buf = Vec::new();
    // With room: acknowledged.
    for id in 1..=10u16 {
        s.write_all(&publish_qos1("sensors/d1/temperature", id, b"21.5"))
            .unwrap();
    }
    let first = pubacks(&mut s, &mut buf, Duration::from_millis(500));
    assert_eq!(first, (1..=10).collect::<Vec<_>>());
    let ballast = fs.fill();
    // Full: more than the segment's last page can take (each batch of one
    // record is 56 bytes), so the journal soon fails and the acks stop.
    for id in 11..=600u16 {
        s.write_all(&publish_qos1("sensors/d1/temperature", id, b"22.5"))
            .unwrap();
    }
    let during = pubacks(&mut s, &mut buf, Duration::from_millis(1500));
    let j = server.journal_stats().unwrap();
    assert!(j.write_errors > 0, "{j:?}");
    assert!(
        during.len() < 590,
        "{} of 590 acknowledged on a full disk",
        during.len()
    );
    // Every acknowledged one is durable; the rest wait in the ring.
    let logs = server.engine().journal_logs(TEMPERATURE).unwrap().unwrap();
    let durable: u64 = logs.iter().map(|l| l.durable()).sum();
    assert!(durable >= 10 + during.len() as u64);
    std::fs::remove_file(&ballast).unwrap();
    let after = pubacks(&mut s, &mut buf, Duration::from_secs(3));
    let mut all: Vec<u16> = during.clone();
    all.extend(&after);
    assert_eq!(
        all,
        (11..=600).collect::<Vec<_>>(),
        "every message, in order"
    );
    drop(s);
    let summary = server.shutdown();
    assert_eq!(summary.records, 600);
    // The engine of the first server is closed when its last handle goes.
    drop(logs);
    let server = Server::start(cfg).unwrap();
    assert_eq!(server.journal_stats().unwrap().recovered, 600);
    server.shutdown();
}
