//! Mutated MQTT byte streams into the endpoint's connection state machine,
//! over real loopback TCP, driven by proptest: sessions of valid packets
//! (CONNECT in 3.1, 3.1.1 or 5, PUBLISH at every QoS with good and bad
//! topics, PUBREL, SUBSCRIBE, PINGREQ, DISCONNECT), then bytes flipped,
//! cut, inserted or duplicated. Whatever arrives, the server answers or
//! closes (the client half-closes, so a server waiting for more bytes sees
//! EOF), no shard thread panics, the counters keep `received == accepted +
//! dead_lettered`, memory stays bounded, and a well-behaved client is still
//! served exactly afterwards.
//!
//! Cases: `PROPTEST_CASES` (default 400 here, so CI stays quick).
#![cfg(feature = "mqtt")]

mod common;
mod memory;

use common::{mqtt_str, packet};
use memory::rss_kib;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use telering::mqtt::{Server, ServerConfig};

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("telering-shard"))
            {
                PANICS.fetch_add(1, Ordering::Relaxed);
            }
            previous(info);
        }));
    });
    SERVER.get_or_init(|| {
        let mut cfg = ServerConfig::default();
        cfg.mqtt.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        cfg.mqtt.connect_timeout_ms = 2_000;
        cfg.mqtt.max_packet_size = 4096;
        cfg.ingest.max_payload = 1024;
        cfg.ingest.capacity = 1024;
        // Overwrite: nobody consumes here, and a full `Block` partition
        // would (rightly) stop the server reading.
        cfg.ingest.policy = telering::OverflowPolicy::Overwrite;
        cfg.ingest.shards = 2;
        Server::start(cfg).expect("server starts")
    })
}

#[derive(Debug, Clone, Copy)]
enum Proto {
    V31,
    V311,
    V5,
}

fn connect(proto: Proto, id: &str, will: bool) -> Vec<u8> {
    let mut b = Vec::new();
    let (name, level): (&[u8], u8) = match proto {
        Proto::V31 => (b"MQIsdp", 3),
        Proto::V311 => (b"MQTT", 4),
        Proto::V5 => (b"MQTT", 5),
    };
    mqtt_str(name, &mut b);
    b.push(level);
    b.push(if will { 0x06 } else { 0x02 });
    b.extend_from_slice(&[0, 30]);
    if matches!(proto, Proto::V5) {
        b.push(0); // no properties
    }
    mqtt_str(id.as_bytes(), &mut b);
    if will {
        if matches!(proto, Proto::V5) {
            b.push(0);
        }
        mqtt_str(b"sensors/will-dev/temperature", &mut b);
        mqtt_str(b"20.5", &mut b);
    }
    packet(0x10, &b)
}

#[derive(Debug, Clone)]
enum Op {
    Publish {
        qos: u8,
        pkid: u16,
        topic: usize,
        payload: usize,
        alias: Option<u16>,
    },
    PubRel(u16),
    Subscribe(u16),
    Ping,
    Disconnect,
    Garbage(Vec<u8>),
}

const TOPICS: &[&str] = &[
    "sensors/fz-1/temperature",
    "sensors/fz-2/humidity",
    "sensors/fz-3/reading",
    "sensors/+/temperature",
    "sensors/#",
    "",
    "other/topic",
    "sensors/a-very-very-long-device/temperature",
];
const PAYLOADS: &[&[u8]] = &[
    b"21.5",
    b"{\"temperature\": 20, \"humidity\": 40}",
    b"{\"ts\": 5, \"value\": 44}",
    b"NaN",
    b"warm",
    &[0xff, 0xfe],
    b"",
];

fn encode(proto: Proto, op: &Op) -> Vec<u8> {
    let v5 = matches!(proto, Proto::V5);
    match op {
        Op::Publish {
            qos,
            pkid,
            topic,
            payload,
            alias,
        } => {
            let mut b = Vec::new();
            mqtt_str(TOPICS[topic % TOPICS.len()].as_bytes(), &mut b);
            if *qos > 0 {
                b.extend_from_slice(&pkid.to_be_bytes());
            }
            if v5 {
                match alias {
                    Some(a) => {
                        b.push(3);
                        b.push(0x23);
                        b.extend_from_slice(&a.to_be_bytes());
                    }
                    None => b.push(0),
                }
            }
            b.extend_from_slice(PAYLOADS[payload % PAYLOADS.len()]);
            packet(0x30 | (qos << 1), &b)
        }
        Op::PubRel(id) => {
            let mut b = id.to_be_bytes().to_vec();
            if v5 {
                b.push(0);
            }
            packet(0x62, &b)
        }
        Op::Subscribe(id) => {
            let mut b = id.to_be_bytes().to_vec();
            if v5 {
                b.push(0);
            }
            mqtt_str(b"sensors/#", &mut b);
            b.push(1);
            packet(0x82, &b)
        }
        Op::Ping => vec![0xc0, 0],
        Op::Disconnect => vec![0xe0, 0],
        Op::Garbage(g) => g.clone(),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..3, 1u16..20, any::<usize>(), any::<usize>(), proptest::option::of(0u16..70))
            .prop_map(|(qos, pkid, topic, payload, alias)| Op::Publish { qos, pkid, topic, payload, alias }),
        1 => (1u16..20).prop_map(Op::PubRel),
        1 => (1u16..20).prop_map(Op::Subscribe),
        1 => Just(Op::Ping),
        1 => Just(Op::Disconnect),
        1 => proptest::collection::vec(any::<u8>(), 1..40).prop_map(Op::Garbage),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Cut(usize),
    Insert(usize, Vec<u8>),
    Repeat(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Cut),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..30).prop_map(|(i, n)| Mutation::Repeat(i, n)),
    ]
}

fn mutate(mut bytes: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        if bytes.is_empty() {
            break;
        }
        let n = bytes.len();
        match m {
            Mutation::Flip(i, b) => bytes[i % n] ^= b | 1,
            Mutation::Cut(i) => bytes.truncate(i % n),
            Mutation::Insert(i, b) => {
                let at = i % n;
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Repeat(i, len) => {
                let at = i % n;
                let end = (at + len).min(n);
                let chunk = bytes[at..end].to_vec();
                bytes.splice(end..end, chunk);
            }
        }
    }
    bytes
}

/// Sends `bytes`, half-closes, and reads until the server closes. Returns
/// false if the server neither closed nor answered within the deadline.
fn play(bytes: &[u8]) -> bool {
    let Ok(mut s) = TcpStream::connect(server().local_addr()) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server may close before reading everything: a failed write is fine.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

/// The server's counters once every message it read is counted as accepted
/// or dead-lettered, waiting up to 10 s. The other test of this file runs
/// beside the cases against the same server, and a snapshot taken while
/// the shard counts one of its messages sees it received but not yet
/// accepted (seen in CI: received 1, accepted 0, the first message of
/// `still_served`). A message never counted still fails the assertion.
fn settled_stats() -> telering::mqtt::IngestSnapshot {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = server().stats();
        if s.received == s.accepted + s.dead_lettered || Instant::now() >= deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A well-behaved QoS 1 publisher: every PUBACK back, and the counters
/// move by exactly one accepted message each.
fn still_served(tag: &str) {
    let before = server().stats();
    let mut s = TcpStream::connect(server().local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&connect(Proto::V311, &format!("check-{tag}"), false))
        .unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0x20, 2, 0, 0], "{tag}: CONNACK");
    for i in 1..=5u16 {
        s.write_all(&encode(
            Proto::V311,
            &Op::Publish {
                qos: 1,
                pkid: i,
                topic: 0,
                payload: 0,
                alias: None,
            },
        ))
        .unwrap();
        s.read_exact(&mut ack).unwrap();
        assert_eq!(ack, [0x40, 2, 0, i as u8], "{tag}: PUBACK {i}");
    }
    let after = server().stats();
    assert!(after.accepted >= before.accepted + 5, "{tag}: {after:?}");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(400),
        .. ProptestConfig::default()
    })]

    #[test]
    fn mutated_sessions_never_hang_panic_or_miscount(
        proto in prop_oneof![Just(Proto::V31), Just(Proto::V311), Just(Proto::V5)],
        id in "[a-z0-9/-]{0,12}",
        will in any::<bool>(),
        ops in proptest::collection::vec(op(), 0..12),
        mutations in proptest::collection::vec(mutation(), 0..4),
    ) {
        let rss_start = *START_RSS.get_or_init(rss_kib);
        let mut bytes = connect(proto, &id, will);
        for o in &ops {
            bytes.extend(encode(proto, o));
        }
        let bytes = mutate(bytes, &mutations);
        prop_assert!(play(&bytes), "the server neither answered nor closed: {bytes:02x?}");
        let s = settled_stats();
        prop_assert_eq!(s.received, s.accepted + s.dead_lettered, "{:?}", s);
        prop_assert_eq!(PANICS.load(Ordering::Relaxed), 0);
        prop_assert!(server().is_running());
        let n = CASES.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(100) {
            still_served(&n.to_string());
            // Connections come and go; what they leave behind must not
            // pile up (the rings are preallocated: growth is leaks).
            let rss = rss_kib();
            prop_assert!(rss < rss_start + 64 * 1024, "RSS {rss_start} -> {rss} KiB after {n} cases");
        }
    }
}

static CASES: AtomicUsize = AtomicUsize::new(0);
static START_RSS: OnceLock<u64> = OnceLock::new();

#[test]
fn a_client_is_served_after_garbage() {
    assert!(play(&[0xff; 64]));
    assert!(play(&[0x10, 0xff, 0xff, 0xff, 0xff, 0x7f]));
    still_served("garbage");
}
