//! The MQTT endpoint against hostile clients: malformed and truncated
//! packets, packets a client must never send, and a storm of connects and
//! disconnects. After each attack a well-behaved `rumqttc` client publishes
//! valid messages at QoS 1 and every one of them must be ingested, exactly.
//!
//! The last tests are the defects that made telering replace its first
//! front end (rumqttd 0.20), each run against the endpoint telering owns:
//! a client id with `/` reused (rumqtt#1062 killed the listener), 200
//! resets right after CONNECT and client-sent CONNACKs (each leaked a
//! connection slot), and 900 clients ending with DISCONNECT while others
//! publish (a double disconnect dropped innocent clients). MQTT 3.1.1 and 5
//! share one port: `v4` and `v5` below are the same address.
#![cfg(feature = "mqtt")]

mod common;

use common::{mqtt_str, packet};

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use telering::mqtt::{IngestSnapshot, Server, ServerConfig};
use tokio::runtime::Runtime;

/// Deadline of any single wait; only ever reached when something is broken.
const DEADLINE: Duration = Duration::from_secs(20);
/// Valid messages published after each attack.
const N: u64 = 40;

// ---------------------------------------------------------------------------
// Panics on the endpoint's shard threads: none may happen.

static BROKER_PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_broker_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("telering-shard"))
            {
                BROKER_PANICS.fetch_add(1, Ordering::Relaxed);
            }
            previous(info);
        }));
    });
}

// ---------------------------------------------------------------------------
// Server fixture

struct Fixture {
    server: Option<Server>,
    v4: SocketAddr,
    v5: SocketAddr,
    rt: Runtime,
    /// Valid messages published so far: what `received` and `accepted` must be.
    published: u64,
    round: u32,
    name: &'static str,
}

impl Fixture {
    fn start(name: &'static str, max_connections: Option<usize>) -> Self {
        count_broker_panics();
        let mut cfg = ServerConfig::default();
        cfg.mqtt.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        cfg.ingest.capacity = 1024;
        if let Some(m) = max_connections {
            cfg.mqtt.max_connections = m;
        }
        let server =
            Server::start(cfg).unwrap_or_else(|e| panic!("{name}: cannot start the server: {e}"));
        // One port for every protocol version.
        let (v4, v5) = (server.local_addr(), server.local_addr());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        Self {
            server: Some(server),
            v4,
            v5,
            rt,
            published: 0,
            round: 0,
            name,
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("server running")
    }

    /// Checks the invariants that hold at any time.
    fn check_invariants(&self, s: &IngestSnapshot, after: &str) {
        let name = self.name;
        assert_eq!(
            s.received,
            s.accepted + s.dead_lettered,
            "{name}, after {after}: received != accepted + dead_lettered: {s:?}"
        );
        assert_eq!(
            s.dead_lettered, 0,
            "{name}, after {after}: nothing invalid was published, yet: {s:?}"
        );
        assert_eq!(s.rejected, 0, "{name}, after {after}: {s:?}");
    }

    /// A well-behaved client publishes `N` valid temperatures at QoS 1 (over
    /// MQTT 5 to the v5 listener if `v5`); all of them, and nothing else, must
    /// be ingested.
    fn verify(&mut self, after: &str, v5: bool) {
        self.round += 1;
        let name = self.name;
        let device = format!("ok-{}", self.round);
        let topic = format!("sensors/{device}/temperature");
        let msgs: Vec<(String, String)> = (0..N)
            .map(|i| (topic.clone(), format!("{}.5", i % 60)))
            .collect();
        let before = self.server().stats();
        self.check_invariants(&before, after);
        assert_eq!(
            (before.received, before.accepted),
            (self.published, self.published),
            "{name}: before verifying after {after}"
        );
        // A client refused before its CONNACK published nothing: it retries
        // (as devices do), under a fresh client id.
        let deadline = Instant::now() + DEADLINE;
        for attempt in 0.. {
            let id = format!("{name}-verify-{}-{attempt}", self.round);
            let result = if v5 {
                self.rt.block_on(publish_v5(self.v5, &id, &msgs))
            } else {
                self.rt.block_on(publish_v4(self.v4, &id, &msgs, false))
            };
            match result {
                Ok(()) => break,
                Err(Failure::BeforeConnAck(e)) if Instant::now() < deadline => {
                    if attempt < 3 {
                        eprintln!("{name}: refused before CONNACK, retrying: {e}");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("{name}: a valid client could not publish after {after}: {e:?}"),
            }
        }
        self.published += N;
        let want = self.published;
        let got = wait_stats(self.server(), |s| s.received >= want).unwrap_or_else(|s| {
            panic!("{name}: after {after}, received stayed below {want} for {DEADLINE:?}: {s:?}")
        });
        assert_eq!(got.received, want, "{name}, after {after}: {got:?}");
        assert_eq!(got.accepted, want, "{name}, after {after}: {got:?}");
        assert_eq!(got.records, want, "{name}, after {after}: {got:?}");
        self.check_invariants(&got, after);
        assert!(
            self.server().is_running(),
            "{name}: an ingest shard stopped after {after}"
        );
    }

    fn finish(mut self) {
        let want = self.published;
        let name = self.name;
        let last = self.server.take().expect("server running").shutdown();
        assert_eq!(
            (last.received, last.accepted, last.dead_lettered),
            (want, want, 0),
            "{name}: final counters {last:?}"
        );
        assert_eq!(
            BROKER_PANICS.load(Ordering::Relaxed),
            0,
            "{name}: a shard thread panicked"
        );
    }
}

/// Polls the counters until `done` or the deadline; `Err` carries the last.
fn wait_stats(
    server: &Server,
    done: impl Fn(&IngestSnapshot) -> bool,
) -> Result<IngestSnapshot, IngestSnapshot> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let s = server.stats();
        if done(&s) {
            return Ok(s);
        }
        if Instant::now() >= deadline {
            return Err(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------
// rumqttc clients

/// Why a client session failed.
#[derive(Debug)]
enum Failure {
    /// Before the CONNACK: nothing was published, retrying is safe.
    BeforeConnAck(String),
    /// After it: some messages may have reached the broker.
    AfterConnAck(String),
}

/// Connects, publishes `msgs` at QoS 1, waits for every PUBACK and
/// disconnects cleanly, waiting for the broker to close (or, if `abrupt`,
/// drops the socket without DISCONNECT).
async fn publish_v4(
    addr: SocketAddr,
    id: &str,
    msgs: &[(String, String)],
    abrupt: bool,
) -> Result<(), Failure> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true);
    let (client, mut ev) = AsyncClient::new(opts, msgs.len() + 8);
    for (topic, payload) in msgs {
        client
            .try_publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .map_err(|e| Failure::BeforeConnAck(format!("{id}: {e}")))?;
    }
    let (mut connected, mut acked, mut disconnecting) = (false, 0, false);
    let run = async {
        loop {
            if connected && acked == msgs.len() && !disconnecting {
                if abrupt {
                    return Ok(());
                }
                client
                    .try_disconnect()
                    .map_err(|e| Failure::AfterConnAck(format!("{id}: {e}")))?;
                disconnecting = true;
            }
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => connected = true,
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                // After DISCONNECT, wait for the broker to close the
                // connection: closing first makes rumqttd 0.20 disconnect
                // the connection id twice (see
                // `clean_disconnects_do_not_drop_other_clients`).
                Ok(_) => {}
                Err(_) if disconnecting => return Ok(()),
                Err(e) if !connected => return Err(Failure::BeforeConnAck(format!("{id}: {e}"))),
                Err(e) => {
                    return Err(Failure::AfterConnAck(format!(
                        "{id}: {e} ({acked} of {} acked)",
                        msgs.len()
                    )))
                }
            }
        }
    };
    match tokio::time::timeout(DEADLINE, run).await {
        Ok(r) => r,
        Err(_) => Err(Failure::AfterConnAck(format!(
            "{id}: no progress for {DEADLINE:?}"
        ))),
    }
}

/// [`publish_v4`] over MQTT 5 (always ending with a clean DISCONNECT).
async fn publish_v5(addr: SocketAddr, id: &str, msgs: &[(String, String)]) -> Result<(), Failure> {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_start(true);
    let (client, mut ev) = AsyncClient::new(opts, msgs.len() + 8);
    for (topic, payload) in msgs {
        client
            .try_publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .map_err(|e| Failure::BeforeConnAck(format!("{id}: {e}")))?;
    }
    let (mut connected, mut acked, mut disconnecting) = (false, 0, false);
    let run = async {
        loop {
            if connected && acked == msgs.len() && !disconnecting {
                client
                    .try_disconnect()
                    .map_err(|e| Failure::AfterConnAck(format!("{id}: {e}")))?;
                disconnecting = true;
            }
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => connected = true,
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                // After DISCONNECT, wait for the broker to close the
                // connection: closing first makes rumqttd 0.20 disconnect
                // the connection id twice (see
                // `clean_disconnects_do_not_drop_other_clients`).
                Ok(_) => {}
                Err(_) if disconnecting => return Ok(()),
                Err(e) if !connected => return Err(Failure::BeforeConnAck(format!("{id}: {e}"))),
                Err(e) => {
                    return Err(Failure::AfterConnAck(format!(
                        "{id}: {e} ({acked} of {} acked)",
                        msgs.len()
                    )))
                }
            }
        }
    };
    match tokio::time::timeout(DEADLINE, run).await {
        Ok(r) => r,
        Err(_) => Err(Failure::AfterConnAck(format!(
            "{id}: no progress for {DEADLINE:?}"
        ))),
    }
}

// ---------------------------------------------------------------------------
// Raw packets

/// CONNECT, clean session, keep-alive 60 s; MQTT 3.1.1 or 5.
fn connect_packet(client_id: &str, v5: bool) -> Vec<u8> {
    let mut body = vec![
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        if v5 { 5 } else { 4 },
        0x02,
        0,
        60,
    ];
    if v5 {
        body.push(0); // no properties
    }
    mqtt_str(client_id.as_bytes(), &mut body);
    packet(0x10, &body)
}

/// A CONNACK as a server sends it: MQTT 5 (no properties).
const CONNACK_V5: [u8; 5] = [0x20, 0x03, 0x00, 0x00, 0x00];
/// An UNSUBACK as a server sends it: MQTT 5 (pkid 1, no properties).
const UNSUBACK_V5: [u8; 5] = [0xB0, 0x03, 0x00, 0x01, 0x00];

fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, DEADLINE).expect("TCP connect to the broker");
    s.set_read_timeout(Some(DEADLINE)).expect("read timeout");
    s.set_write_timeout(Some(DEADLINE)).expect("write timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Reads one whole packet; `None` if the server closed the connection.
fn read_packet(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut first = [0u8; 1];
    s.read_exact(&mut first).ok()?;
    let mut p = vec![first[0]];
    let mut len = 0usize;
    let mut shift = 0;
    loop {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).ok()?;
        p.push(b[0]);
        len |= ((b[0] & 0x7F) as usize) << shift;
        shift += 7;
        if b[0] & 0x80 == 0 || shift > 21 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    p.extend_from_slice(&body);
    Some(p)
}

/// A raw MQTT session: CONNECT sent and a successful CONNACK read.
fn raw_session(addr: SocketAddr, client_id: &str, v5: bool) -> TcpStream {
    let mut s = raw(addr);
    s.write_all(&connect_packet(client_id, v5))
        .expect("send CONNECT");
    let ack = read_packet(&mut s)
        .unwrap_or_else(|| panic!("{client_id}: the broker closed the connection, no CONNACK"));
    assert_eq!(
        ack[0], 0x20,
        "{client_id}: expected CONNACK, got {ack:02x?}"
    );
    // v4: flags, return code; v5: flags, reason code, properties.
    let hdr = if ack[1] & 0x80 == 0 { 2 } else { 3 };
    assert_eq!(
        ack.get(hdr + 1),
        Some(&0),
        "{client_id}: CONNACK refused: {ack:02x?}"
    );
    s
}

/// The server must close the connection (EOF or reset) before the deadline;
/// whatever it sends first is discarded.
fn expect_closed(mut s: TcpStream, what: &str) {
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("the broker kept the connection open after {what}: {e}"),
        }
    }
}

/// Sends `bytes` and (if `closes`) waits for the server to hang up.
fn attack(addr: SocketAddr, bytes: &[u8], closes: bool, what: &str) {
    let mut s = raw(addr);
    // The server may hang up before reading everything: a failed write is fine.
    let _ = s.write_all(bytes);
    if closes {
        expect_closed(s, what);
    }
}

/// xorshift64: deterministic garbage without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn malformed_packets_on_the_v4_listener() {
    let mut f = Fixture::start("v4-malformed", None);
    let v4 = f.v4;
    f.verify("start", false);

    // Random garbage instead of CONNECT, 32 connections of 1..600 bytes.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..32 {
        let n = 1 + (rng.next() % 600) as usize;
        attack(v4, &rng.bytes(n), false, "random garbage");
    }
    f.verify("random garbage", false);

    // A truncated CONNECT, left half-open while a valid client publishes,
    // and another one closed at once.
    let connect = connect_packet("truncated", false);
    let mut half_open = raw(v4);
    half_open
        .write_all(&connect[..connect.len() / 2])
        .expect("send half a CONNECT");
    attack(v4, &connect[..5], false, "a truncated CONNECT");
    f.verify("a truncated CONNECT (still open)", false);
    drop(half_open);

    // Absurd remaining lengths: five length bytes (malformed) and the
    // largest legal one (256 MiB, over the packet limit).
    attack(
        v4,
        &[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
        true,
        "a 5-byte remaining length",
    );
    attack(
        v4,
        &[0x10, 0xFF, 0xFF, 0xFF, 0x7F],
        true,
        "a 256 MiB remaining length",
    );
    // Reserved packet types, a CONNECT of an unknown protocol level and a
    // PUBLISH before CONNECT (which must not be ingested).
    attack(v4, &[0x00, 0x00], true, "packet type 0");
    attack(v4, &[0xF0, 0x00], true, "packet type 15");
    let mut bad_level = connect_packet("bad-level", false);
    bad_level[8] = 42;
    attack(v4, &bad_level, true, "CONNECT with protocol level 42");
    let mut publish_body = Vec::new();
    let topic = b"sensors/sneaky/temperature";
    publish_body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    publish_body.extend_from_slice(topic);
    publish_body.extend_from_slice(b"21.5");
    let publish_qos0 = packet(0x30, &publish_body);
    attack(v4, &publish_qos0, true, "PUBLISH before CONNECT");
    f.verify("malformed fixed headers", false);

    // CONNECT, then garbage: random bytes of a reserved packet type, an
    // absurd length, a PUBLISH whose topic length overruns the packet.
    let mut s = raw_session(v4, "then-garbage-1", false);
    let mut garbage = vec![0x00];
    garbage.extend(rng.bytes(300));
    let _ = s.write_all(&garbage);
    expect_closed(s, "CONNECT then garbage");
    let mut s = raw_session(v4, "then-garbage-2", false);
    let _ = s.write_all(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
    expect_closed(s, "CONNECT then a 5-byte remaining length");
    let mut s = raw_session(v4, "then-garbage-3", false);
    let _ = s.write_all(&[0x32, 0x05, 0x00, 0x40, b'a', b'b', b'c']);
    expect_closed(s, "CONNECT then a PUBLISH with an overlong topic");
    // Packets only a server sends (ignored), then an unsolicited PUBACK
    // (the router disconnects). Waiting for the broker to close, rather than
    // closing first, avoids rumqttd 0.20's double disconnect (see
    // `clean_disconnects_do_not_drop_other_clients`).
    let mut s = raw_session(v4, "then-garbage-4", false);
    let _ = s.write_all(&[0x20, 0x02, 0x00, 0x00]); // CONNACK
    let _ = s.write_all(&[0x90, 0x03, 0x00, 0x01, 0x00]); // SUBACK
    let _ = s.write_all(&[0x40, 0x02, 0x12, 0x34]); // PUBACK, unknown pkid
    expect_closed(s, "CONNECT then CONNACK, SUBACK and an unsolicited PUBACK");
    let mut s = raw_session(v4, "then-garbage-5", false);
    let mut garbage = vec![0xF0];
    garbage.extend(rng.bytes(1000));
    let _ = s.write_all(&garbage);
    expect_closed(s, "CONNECT then a reserved packet type and garbage");
    f.verify("CONNECT followed by garbage", false);
    f.verify("CONNECT followed by garbage (v5 listener)", true);
    f.finish();
}

#[test]
fn client_sent_connack_on_the_v5_listener() {
    let mut f = Fixture::start("v5-connack", None);
    let v5 = f.v5;
    f.verify("start", true);
    let panics_before = BROKER_PANICS.load(Ordering::Relaxed);

    // CONNACK instead of CONNECT: rumqttd 0.20's v5 parser reaches an
    // `unreachable!()` in the connection's task.
    attack(v5, &CONNACK_V5, true, "CONNACK before CONNECT (v5)");
    f.verify("CONNACK before CONNECT (v5)", true);
    f.verify("CONNACK before CONNECT (v5), on v4", false);

    // A valid v5 session, then a CONNACK.
    let mut s = raw_session(v5, "connack-after-connect", true);
    let _ = s.write_all(&CONNACK_V5);
    expect_closed(s, "CONNECT then CONNACK (v5)");
    f.verify("CONNECT then CONNACK (v5)", true);

    // The same through UNSUBACK, and many times over, interleaved.
    attack(v5, &UNSUBACK_V5, true, "UNSUBACK before CONNECT (v5)");
    for i in 0..20 {
        if i % 2 == 0 {
            attack(v5, &CONNACK_V5, true, "CONNACK before CONNECT (v5)");
        } else {
            let mut s = raw_session(v5, &format!("connack-again-{i}"), true);
            let _ = s.write_all(&CONNACK_V5);
            expect_closed(s, "CONNECT then CONNACK (v5)");
        }
    }
    f.verify("21 more v5 CONNACK/UNSUBACK attacks", true);
    f.verify("21 more v5 CONNACK/UNSUBACK attacks, on v4", false);

    // The same bytes on the v4 listener are a CONNACK the v4 parser reads
    // (before CONNECT: refused, connection closed).
    attack(f.v4, &CONNACK_V5, true, "CONNACK before CONNECT (v4)");
    f.verify("CONNACK before CONNECT (v4)", false);

    assert_eq!(
        BROKER_PANICS.load(Ordering::Relaxed) - panics_before,
        0,
        "v5-connack: panics in shard threads during the attacks"
    );
    f.finish();
}

/// Reads one whole packet; `None` if the connection closed first.
async fn read_packet_async(s: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut p = vec![s.read_u8().await.ok()?];
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let b = s.read_u8().await.ok()?;
        p.push(b);
        len |= ((b & 0x7F) as usize) << shift;
        shift += 7;
        if b & 0x80 == 0 || shift > 21 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    p.extend_from_slice(&body);
    Some(p)
}

/// Connects and reads a successful CONNACK; `None` if the broker closed the
/// connection instead.
async fn session_async(
    addr: SocketAddr,
    id: &str,
    v5: bool,
) -> Result<Option<tokio::net::TcpStream>, String> {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{id}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.write_all(&connect_packet(id, v5))
        .await
        .map_err(|e| format!("{id}: {e}"))?;
    match read_packet_async(&mut s).await {
        Some(ack) if ack[0] == 0x20 => {
            let hdr = if ack[1] & 0x80 == 0 { 2 } else { 3 };
            if ack.get(hdr + 1) != Some(&0) {
                return Err(format!("{id}: CONNACK refused: {ack:02x?}"));
            }
            Ok(Some(s))
        }
        Some(other) => Err(format!("{id}: expected CONNACK, got {other:02x?}")),
        None => Ok(None),
    }
}

/// One connection of the storm, `i % 6` choosing how it connects and goes.
/// `Ok(false)`: the broker dropped it (see
/// `clean_disconnects_do_not_drop_other_clients`).
async fn storm_one(i: usize, attempt: u32, v4: SocketAddr, v5: SocketAddr) -> Result<bool, String> {
    use tokio::io::AsyncWriteExt;
    // A fresh client id per attempt: reusing one the broker refused kills
    // the listener (`reusing_a_refused_client_id_keeps_the_listener_alive`).
    let id = format!("storm-{i}-{attempt}");
    let err = |e: std::io::Error| format!("storm-{i}: {e}");
    let dropped = |f: Failure| match f {
        Failure::BeforeConnAck(e) | Failure::AfterConnAck(e) => {
            eprintln!("storm: dropped by the broker: {e}");
            false
        }
    };
    match i % 6 {
        // rumqttc: connect, clean DISCONNECT.
        0 => Ok(publish_v4(v4, &id, &[], false)
            .await
            .map_or_else(dropped, |_| true)),
        // rumqttc: connect, then drop the socket without DISCONNECT.
        1 => Ok(publish_v4(v4, &id, &[], true)
            .await
            .map_or_else(dropped, |_| true)),
        // Raw: CONNECT, CONNACK, close (FIN) without DISCONNECT.
        2 => Ok(session_async(v4, &id, false).await?.is_some()),
        // Raw: CONNECT, CONNACK, reset (linger 0).
        3 => match session_async(v4, &id, false).await? {
            Some(s) => {
                s.set_zero_linger().map_err(err)?;
                Ok(true)
            }
            None => Ok(false),
        },
        // Raw MQTT 5: CONNECT, CONNACK, DISCONNECT, close.
        4 => match session_async(v5, &id, true).await? {
            Some(mut s) => {
                s.write_all(&[0xE0, 0x00]).await.map_err(err)?;
                Ok(true)
            }
            None => Ok(false),
        },
        // Raw: CONNECT and gone (FIN) before the CONNACK. (Gone by reset is
        // `reset_before_connack_does_not_leak_connection_slots`.)
        _ => {
            let mut s = tokio::net::TcpStream::connect(v4).await.map_err(err)?;
            s.write_all(&connect_packet(&id, false))
                .await
                .map_err(err)?;
            Ok(true)
        }
    }
}

#[test]
fn connect_disconnect_storm() {
    // A small connection table: if connections leaked, it would fill up.
    const MAX_CONNECTIONS: usize = 64;
    const STORM: usize = 300;
    const CONCURRENCY: usize = 12;
    let mut f = Fixture::start("storm", Some(MAX_CONNECTIONS));
    let (v4, v5) = (f.v4, f.v5);
    f.verify("start", false);

    let dropped = f.rt.block_on(async move {
        let limit = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..STORM {
            let permit = limit.clone().acquire_owned().await.expect("semaphore");
            tasks.spawn(async move {
                // A connection the broker drops tries again, as devices do.
                let run = async {
                    let mut dropped = 0;
                    for attempt in 0.. {
                        if storm_one(i, attempt, v4, v5).await? {
                            break;
                        }
                        dropped += 1;
                    }
                    Ok::<_, String>(dropped)
                };
                let r = tokio::time::timeout(DEADLINE, run)
                    .await
                    .unwrap_or_else(|_| Err(format!("storm-{i}: no progress for {DEADLINE:?}")));
                drop(permit);
                r
            });
        }
        let mut dropped = 0;
        let mut errors = Vec::new();
        while let Some(r) = tasks.join_next().await {
            match r.expect("storm task") {
                Ok(n) => dropped += n,
                Err(e) => errors.push(e),
            }
        }
        assert!(errors.is_empty(), "storm failures: {errors:?}");
        dropped
    });
    eprintln!("storm: {STORM} connections, {dropped} dropped by the broker and retried");

    // Every slot of the storm was given back: hold most of the table at
    // once (the verifying client takes one more).
    let hold = MAX_CONNECTIONS - 8;
    let deadline = Instant::now() + DEADLINE;
    let mut held = Vec::with_capacity(hold);
    let mut attempt = 0;
    while held.len() < hold {
        // A fresh client id per attempt (see above).
        attempt += 1;
        let mut s = raw(v4);
        let _ = s.write_all(&connect_packet(&format!("hold-{attempt}"), false));
        match read_packet(&mut s) {
            Some(p) if p.len() == 4 && p[0] == 0x20 && p[3] == 0 => held.push(s),
            other => {
                assert!(
                    Instant::now() < deadline,
                    "storm: only {} of {hold} connections accepted after the storm \
                     (connection slots leaked?); last answer {other:02x?}",
                    held.len()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    f.verify("the storm, holding most of the connection table", false);
    for mut s in held {
        // DISCONNECT, then let the broker close first (see above).
        let _ = s.write_all(&[0xE0, 0x00]);
        expect_closed(s, "DISCONNECT");
    }
    f.verify("the storm, connections released", false);
    f.verify("the storm (v5)", true);
    f.finish();
}

// ---------------------------------------------------------------------------
// The defects of rumqttd 0.20, telering's first front end, against the
// endpoint telering owns.

/// Client ids are any UTF-8, `/` included (a common fleet naming:
/// `site-3/dev-17`), and the same id again takes the session over: the
/// older connection is closed (MQTT-3.1.4-2) and the listener keeps
/// serving. rumqttd 0.20 refused such an id, and a refused id reused
/// poisoned a mutex that killed its listener for good (rumqtt#1062).
#[test]
fn reusing_a_client_id_with_a_slash_keeps_the_listener_alive() {
    let mut f = Fixture::start("slash-id", None);
    f.verify("start", false);
    let first = raw_session(f.v4, "site-3/dev-17", false);
    let second = raw_session(f.v4, "site-3/dev-17", false);
    expect_closed(first, "a second CONNECT with the same client id");
    let third = raw_session(f.v5, "site-3/dev-17", true);
    expect_closed(second, "a third CONNECT with the same client id (v5)");
    drop(third);
    f.verify("the same client id with '/' three times", false);
    f.verify("the same client id with '/' three times (v5)", true);
    f.finish();
}

/// A client that resets its connection right after CONNECT makes the
/// CONNACK write fail. rumqttd 0.20's connection task then returned without
/// telling its router, whose table kept the slot forever, so enough such
/// clients (devices on a flaky link) locked every device out. Here 200 of
/// them against a limit of 8 must leave every slot free.
#[test]
fn reset_before_connack_does_not_leak_connection_slots() {
    const MAX_CONNECTIONS: usize = 8;
    let mut f = Fixture::start("rst-slot-leak", Some(MAX_CONNECTIONS));
    let v4 = f.v4;
    let resets = f.rt.block_on(async move {
        use tokio::io::AsyncWriteExt;
        let mut sent = 0;
        for i in 0..200 {
            let Ok(mut s) = tokio::net::TcpStream::connect(v4).await else {
                continue;
            };
            if s.write_all(&connect_packet(&format!("rst-{i}"), false))
                .await
                .is_ok()
            {
                sent += 1;
            }
            let _ = s.set_zero_linger();
        }
        sent
    });
    assert!(resets > 0);
    f.verify("200 connections reset right after CONNECT", false);
    f.finish();
}

/// A client-sent CONNACK is a protocol error: the connection is closed and
/// its slot freed, so more such clients than `max_connections` lock nobody
/// out. (rumqttd 0.20's v5 connection task panicked on it and leaked its
/// router slot: rumqtt#812.)
#[test]
fn v5_connack_panic_does_not_leak_connection_slots() {
    let mut f = Fixture::start("v5-slot-leak", Some(4));
    for i in 0..8 {
        let mut s = raw_session(f.v5, &format!("leak-{i}"), true);
        let _ = s.write_all(&CONNACK_V5);
        expect_closed(s, "CONNECT then CONNACK (v5)");
    }
    f.verify("8 v5 CONNECT+CONNACK with max_connections = 4", false);
    f.finish();
}

/// A v5 CONNECT then CONNACK, and the same client id again: the session
/// is closed and its id free for the next connection. (In rumqttd 0.20 the
/// panicked task left the id behind with a dead channel, and the next
/// CONNECT with it poisoned the listener's mutex: rumqtt#812, #1062.)
#[test]
fn v5_connack_panic_then_the_same_client_id() {
    let mut f = Fixture::start("v5-client-id", None);
    let mut s = raw_session(f.v5, "victim", true);
    let _ = s.write_all(&CONNACK_V5);
    expect_closed(s, "CONNECT then CONNACK (v5)");
    let mut s = raw(f.v5);
    let _ = s.write_all(&connect_packet("victim", true));
    drop(s);
    f.verify("a v5 CONNACK, then CONNECT with the same client id", true);
    f.finish();
}

/// 900 connections, 600 of them ending with DISCONNECT and a close while
/// the other 300 publish one QoS 1 message each: every publishing device
/// gets its PUBACK and no connection is dropped. (rumqttd 0.20 disconnected
/// a DISCONNECT-then-close connection twice, the second time hitting
/// whichever new connection had reused its id.)
#[test]
fn clean_disconnects_do_not_drop_other_clients() {
    const CLIENTS: usize = 900;
    const CONCURRENCY: usize = 12;
    let mut f = Fixture::start("double-disconnect", None);
    let (v4, v5) = (f.v4, f.v5);
    f.verify("start", false);
    let (failures, delivered) = f.rt.block_on(async move {
        use tokio::io::AsyncWriteExt;
        let limit = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..CLIENTS {
            let permit = limit.clone().acquire_owned().await.expect("semaphore");
            tasks.spawn(async move {
                let (mut failures, mut delivered) = (Vec::new(), 0);
                if i % 3 == 0 {
                    // A device: one QoS 1 message; on failure it reconnects
                    // with the same client id, as rumqttc does.
                    let id = format!("device-{i}");
                    let msg = [(format!("sensors/d-{i}/temperature"), "20".to_owned())];
                    for _ in 0..3 {
                        match publish_v4(v4, &id, &msg, false).await {
                            Ok(()) => {
                                delivered += 1;
                                break;
                            }
                            Err(e) => failures.push(format!("{e:?}")),
                        }
                    }
                } else {
                    // CONNECT, CONNACK, DISCONNECT, close: a well-behaved exit.
                    let id = format!("leaver-{i}");
                    if let Ok(Some(mut s)) =
                        session_async(if i % 3 == 1 { v4 } else { v5 }, &id, i % 3 == 2).await
                    {
                        let _ = s.write_all(&[0xE0, 0x00]).await;
                    }
                }
                drop(permit);
                (failures, delivered)
            });
        }
        let (mut failures, mut delivered) = (Vec::new(), 0);
        while let Some(r) = tasks.join_next().await {
            let (e, n) = r.expect("task");
            failures.extend(e);
            delivered += n;
        }
        (failures, delivered)
    });
    // Messages of devices dropped after their CONNACK may or may not have
    // arrived: take the count as it is once the acknowledged ones are in.
    let want = f.published + delivered;
    f.published = wait_stats(f.server(), |s| s.received >= want)
        .unwrap_or_else(|s| panic!("acknowledged messages missing: {s:?}"))
        .received;
    // The listener first (a fresh client id, retried before CONNACK).
    f.verify("900 connections, 600 of them ending with DISCONNECT", false);
    assert!(
        failures.is_empty(),
        "{} device connections were dropped by the broker: {failures:#?}",
        failures.len()
    );
    f.finish();
}
