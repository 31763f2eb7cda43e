//! The endpoint under pressure, over real loopback TCP:
//! - a `Block` topic whose consumer stalls: PUBACKs stop, the server stops
//!   reading (its memory stays flat), and once the consumer resumes every
//!   acknowledged message is delivered;
//! - `telering serve` stopped by SIGTERM while a QoS 1 fleet publishes at
//!   full speed: every message a device was told had arrived is counted
//!   and delivered.
#![cfg(feature = "mqtt")]

mod common;
mod memory;

use common::{mqtt_str, packet};
use memory::rss_kib;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use telering::mqtt::{Server, ServerConfig, HUMIDITY, TEMPERATURE};
use telering::{ConsumerConfig, OverflowPolicy};

/// An MQTT 3.1.1 CONNECT, clean session, keep-alive 60 s.
fn connect(id: &str) -> Vec<u8> {
    let mut b = Vec::new();
    mqtt_str(b"MQTT", &mut b);
    b.extend_from_slice(&[4, 0x02, 0, 60]);
    mqtt_str(id.as_bytes(), &mut b);
    packet(0x10, &b)
}

/// A QoS 1 PUBLISH.
fn publish_qos1(topic: &str, pkid: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    mqtt_str(topic.as_bytes(), &mut b);
    b.extend_from_slice(&pkid.to_be_bytes());
    b.extend_from_slice(payload);
    packet(0x32, &b)
}

/// Reads PUBACKs (after the CONNACK) and counts them until the socket
/// closes or `stop`.
fn count_pubacks(mut s: TcpStream, acked: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut connack = false;
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        let mut i = 0;
        while buf.len() >= i + 4 {
            if !connack {
                assert_eq!(&buf[i..i + 4], &[0x20, 0x02, 0x00, 0x00], "CONNACK");
                connack = true;
            } else {
                assert_eq!(&buf[i..i + 2], &[0x40, 0x02], "PUBACK");
                acked.fetch_add(1, Ordering::Relaxed);
            }
            i += 4;
        }
        buf.drain(..i);
    }
}

/// A `Block` topic with a consumer that stops reading: once the partitions
/// are full, PUBACKs stop and the server stops reading the socket (TCP
/// pushes back; the client's writes block), the server's memory stays
/// flat, and when the consumer resumes every message is acknowledged and
/// delivered exactly once.
#[test]
fn a_stalled_consumer_stops_the_pubacks_and_nothing_acknowledged_is_lost() {
    const CAPACITY: usize = 64;
    const PARTITIONS: u32 = 4;
    const N: u16 = 20_000;
    let mut cfg = ServerConfig::default();
    cfg.mqtt.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.ingest.capacity = CAPACITY;
    cfg.ingest.partitions = PARTITIONS;
    cfg.ingest.policy = OverflowPolicy::Block;
    cfg.ingest.shards = 2;
    let server = Server::start(cfg).unwrap();
    let engine = server.engine().clone();
    let mut consumer = engine.consumer(ConsumerConfig::cluster("slow")).unwrap();
    consumer.subscribe(&[TEMPERATURE, HUMIDITY]).unwrap();

    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(&connect("pressure")).unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (r, acked, stop) = (s.try_clone().unwrap(), acked.clone(), stop.clone());
        std::thread::spawn(move || count_pubacks(r, acked, stop))
    };
    let written = Arc::new(AtomicU64::new(0));
    // 900-byte messages (21.555…, or a JSON reading padded with spaces), so
    // that N of them are far more than the kernel's socket buffers hold.
    // Every 4th is a `reading`: two records, whose verdicts may come back
    // while the second still waits for room.
    let temperature = format!("21.{}", "5".repeat(897));
    let reading = format!(
        "{{\"temperature\": 21.5, \"humidity\": 40}}{}",
        " ".repeat(860)
    );
    let writer = {
        let written = written.clone();
        std::thread::spawn(move || {
            for i in 1..=N {
                let d = i % 16;
                let p = if i % 4 == 0 {
                    publish_qos1(&format!("sensors/d{d}/reading"), i, reading.as_bytes())
                } else {
                    publish_qos1(
                        &format!("sensors/d{d}/temperature"),
                        i,
                        temperature.as_bytes(),
                    )
                };
                if s.write_all(&p).is_err() {
                    return;
                }
                written.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // The consumer reads nothing: the partitions fill, then the PUBACKs stop.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = u64::MAX;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let a = acked.load(Ordering::Relaxed);
        if a == last {
            break;
        }
        assert!(Instant::now() < deadline, "PUBACKs never stopped ({a})");
        last = a;
    }
    let held = acked.load(Ordering::Relaxed);
    assert!(
        held <= (CAPACITY as u64) * u64::from(PARTITIONS),
        "{held} acknowledged with at most {} slots",
        CAPACITY * PARTITIONS as usize
    );
    let in_temperature = engine.published(TEMPERATURE).unwrap();
    assert!(
        held <= in_temperature && in_temperature <= (CAPACITY as u64) * u64::from(PARTITIONS),
        "{held} acknowledged, {in_temperature} in temperature"
    );
    // The server stopped reading: the client's writes block far short of N.
    let w1 = written.load(Ordering::Relaxed);
    let rss1 = rss_kib();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        written.load(Ordering::Relaxed),
        w1,
        "the server kept reading"
    );
    assert!(w1 < u64::from(N), "all {N} written: no backpressure");
    let rss2 = rss_kib();
    assert!(
        rss2 <= rss1 + 4 * 1024,
        "memory grew while stalled: {rss1} -> {rss2} KiB"
    );
    assert_eq!(acked.load(Ordering::Relaxed), held);

    // The consumer resumes: everything flows, every message is acknowledged
    // and delivered exactly once.
    let records = u64::from(N) + u64::from(N) / 4;
    let mut delivered = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered < records || acked.load(Ordering::Relaxed) < u64::from(N) {
        assert!(
            Instant::now() < deadline,
            "stuck: delivered {delivered}, acked {}",
            acked.load(Ordering::Relaxed)
        );
        delivered += consumer
            .poll(1024, Duration::from_millis(50))
            .unwrap()
            .len() as u64;
    }
    writer.join().unwrap();
    assert_eq!(delivered, records);
    assert_eq!(acked.load(Ordering::Relaxed), u64::from(N));
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let st = server.shutdown();
    assert_eq!(
        (st.received, st.accepted, st.records, st.rejected),
        (u64::from(N), u64::from(N), records, 0)
    );
    // 16 devices over 4 partitions on 2 shards from one connection: some
    // records crossed to the other shard, and their hand-off ring was full
    // too while the consumer stalled.
    assert!(st.forwarded > 0 && st.forwarded < records, "{st:?}");
}

/// `telering serve` gets SIGTERM while 8 QoS 1 devices publish as fast as
/// their PUBACKs come back. It stops reading, acknowledges what it read,
/// drains the consumers and prints its summary: every message a device
/// was told had arrived is counted as accepted and delivered to both
/// groups; nothing more was delivered than accepted.
#[test]
fn sigterm_under_load_loses_nothing_acknowledged() {
    const DEVICES: usize = 8;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_telering"))
        .args(["serve", "--mqtt", &port.to_string(), "--every", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(port).is_err() {
        assert!(Instant::now() < deadline, "the server never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for d in 0..DEVICES {
        let mut s = TcpStream::connect(port).unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(&connect(&format!("dev-{d}"))).unwrap();
        let (r, a, st) = (s.try_clone().unwrap(), acked.clone(), stop.clone());
        threads.push(std::thread::spawn(move || count_pubacks(r, a, st)));
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            let mut pkid = 0u16;
            while !stop.load(Ordering::Relaxed) {
                pkid = pkid % u16::MAX + 1;
                let p = publish_qos1(&format!("sensors/dev-{d}/temperature"), pkid, b"20");
                if s.write_all(&p).is_err() {
                    return;
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let before = acked.load(Ordering::Relaxed);
    assert!(before > 0, "nothing acknowledged before the SIGTERM");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = BufReader::new(child.stdout.take().unwrap());
    let last = out.lines().map_while(Result::ok).last().unwrap_or_default();
    assert!(child.wait().unwrap().success());
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let v: serde_json::Value = serde_json::from_str(&last).expect("last line is JSON");
    let acked = acked.load(Ordering::Relaxed);
    let accepted = v["accepted"].as_u64().unwrap();
    assert!(
        accepted >= acked,
        "devices got {acked} PUBACKs, the server counts {accepted} accepted"
    );
    assert_eq!(v["received"], v["accepted"]);
    assert_eq!(v["records"], v["accepted"]);
    assert_eq!(v["delivered"]["alerts"], v["records"]);
    assert_eq!(v["delivered"]["stats"], v["records"]);
    assert_eq!(v["dropped"], 0);
    eprintln!("SIGTERM under load: {acked} acknowledged, {accepted} accepted and delivered");
}

/// A shutdown while a consumer that never reads keeps a `Block` partition
/// full: connections and forwarders wait at most the drain timeout for
/// room, then give the records up, counted as `abandoned` (their messages
/// were never acknowledged). Every accepted record is accounted for:
/// `records + rejected + abandoned == accepted`.
#[test]
fn shutdown_with_a_stalled_consumer_is_bounded_and_counted() {
    let mut cfg = ServerConfig::default();
    cfg.mqtt.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.mqtt.drain_timeout_ms = 300;
    cfg.ingest.capacity = 2;
    cfg.ingest.partitions = 4;
    cfg.ingest.shards = 2;
    let server = Server::start(cfg).unwrap();
    let mut stalled = server
        .engine()
        .consumer(ConsumerConfig::cluster("stalled"))
        .unwrap();
    stalled.subscribe(&[TEMPERATURE]).unwrap();

    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.write_all(&connect("gateway")).unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (r, a, st) = (s.try_clone().unwrap(), acked.clone(), stop.clone());
        std::thread::spawn(move || count_pubacks(r, a, st))
    };
    // Far more than the 4 partitions × 2 slots (and the hand-off ring) hold.
    for i in 1..=3000u16 {
        let p = publish_qos1(&format!("sensors/g{}/temperature", i % 32), i, b"20");
        if s.write_all(&p).is_err() {
            break;
        }
        if i % 500 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let st = server.shutdown();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(st.abandoned > 0, "{st:?}");
    assert_eq!(
        st.records + st.rejected + st.abandoned,
        st.accepted,
        "{st:?}"
    );
    assert!(acked.load(Ordering::Relaxed) <= st.records, "{st:?}");
    drop(stalled);
}
