//! The endpoint's connection rules, one test per normative statement of the
//! MQTT specifications: MQTT 3.1.1 (OASIS Standard, 29 October 2014) and
//! MQTT 5.0 (OASIS Standard, 7 March 2019), plus MQTT 3.1 (IBM, 2010) for the
//! `MQIsdp` handshake.
//!
//! Each test is named after the statement it checks and quotes it in its doc
//! comment: `mqtt_3_1_0_1_…` is `[MQTT-3.1.0-1]` of 3.1.1, `mqtt5_…` names an
//! MQTT 5 statement (MQTT 5 renumbered some of them: the takeover rule of
//! 3.1.1's `[MQTT-3.1.4-2]` is 5's `[MQTT-3.1.4-3]`). A test that covers
//! both versions names the 3.1.1 statement and gives the MQTT 5 one in its
//! comment.
//!
//! Every test starts its own server on loopback and speaks raw bytes over
//! TCP (one test uses rumqttc as the well-behaved client), and asserts
//! exactly what comes back (each packet's bytes, or the close with nothing
//! sent) and the ingest counters.
#![cfg(feature = "mqtt")]

mod common;

use common::{mqtt_str, packet, var_int};

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use telering::mqtt::{IngestSnapshot, Server, ServerConfig, TEMPERATURE};
use telering::record::partition_for;
use telering::{Consumer, ConsumerConfig, OverflowPolicy, Reading};

/// Longest any single wait may take; only reached when something is broken.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long "nothing comes back" is watched for.
const QUIET: Duration = Duration::from_millis(400);

// ---------------------------------------------------------------------------
// Server

/// The base configuration: loopback, an ephemeral port, small rings, two
/// ingest shards (so records cross shards), a short drain on shutdown.
fn config() -> ServerConfig {
    let mut cfg = ServerConfig::default();
    cfg.mqtt.listen = "127.0.0.1:0".parse().unwrap();
    cfg.ingest.capacity = 1024;
    cfg.ingest.shards = 2;
    cfg.mqtt.drain_timeout_ms = 500;
    cfg
}

fn start(cfg: ServerConfig) -> (Server, SocketAddr) {
    let server = Server::start(cfg).expect("the server starts");
    let addr = server.local_addr();
    (server, addr)
}

/// Records in the engine's `temperature` topic.
fn published(server: &Server) -> u64 {
    server.engine().published(TEMPERATURE).unwrap()
}

/// Polls the counters until `done`, or panics after the deadline.
fn wait_stats(
    server: &Server,
    what: &str,
    done: impl Fn(&IngestSnapshot) -> bool,
) -> IngestSnapshot {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let s = server.stats();
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: counters never got there: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the server serves no connection (a closed connection's will
/// and session release are done once it is gone).
fn wait_no_connections(server: &Server, what: &str) {
    let deadline = Instant::now() + DEADLINE;
    while server.connections() > 0 {
        assert!(
            Instant::now() < deadline,
            "{what}: {} connections still served",
            server.connections()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A consumer group on `temperature` that never polls: under `Block` its
/// partitions fill up and stay full, under `Reject` they refuse records.
fn stalled_group(server: &Server) -> Consumer<Reading> {
    let mut c = server
        .engine()
        .consumer(ConsumerConfig::cluster("stalled"))
        .unwrap();
    c.subscribe(&[TEMPERATURE]).unwrap();
    c
}

// ---------------------------------------------------------------------------
// Packets a client sends

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V {
    /// MQTT 3.1: `MQIsdp`, level 3.
    V31,
    /// MQTT 3.1.1: `MQTT`, level 4.
    V311,
    /// MQTT 5: `MQTT`, level 5.
    V5,
}

/// A CONNECT with every field given: protocol `name` and `level`, connect
/// `flags` as they go on the wire (the will flag must agree with `will`),
/// keep-alive in seconds. MQTT 5 (`v5`) adds empty property lists.
fn connect_raw(
    name: &[u8],
    level: u8,
    flags: u8,
    keep_alive: u16,
    v5: bool,
    client_id: &str,
    will: Option<(&str, &str)>,
) -> Vec<u8> {
    let mut b = Vec::new();
    mqtt_str(name, &mut b);
    b.push(level);
    b.push(flags);
    b.extend_from_slice(&keep_alive.to_be_bytes());
    if v5 {
        b.push(0); // no CONNECT properties
    }
    mqtt_str(client_id.as_bytes(), &mut b);
    if let Some((topic, payload)) = will {
        if v5 {
            b.push(0); // no will properties
        }
        mqtt_str(topic.as_bytes(), &mut b);
        mqtt_str(payload.as_bytes(), &mut b);
    }
    packet(0x10, &b)
}

/// A CONNECT of version `v`: clean session/start as asked, a will (QoS 0,
/// not retained) if given.
fn connect_with(
    v: V,
    client_id: &str,
    clean: bool,
    keep_alive: u16,
    will: Option<(&str, &str)>,
) -> Vec<u8> {
    let (name, level): (&[u8], u8) = match v {
        V::V31 => (b"MQIsdp", 3),
        V::V311 => (b"MQTT", 4),
        V::V5 => (b"MQTT", 5),
    };
    let mut flags = if clean { 0x02 } else { 0 };
    if will.is_some() {
        flags |= 0x04;
    }
    connect_raw(name, level, flags, keep_alive, v == V::V5, client_id, will)
}

/// A CONNECT: clean session, keep-alive 60 s, no will.
fn connect(v: V, client_id: &str) -> Vec<u8> {
    connect_with(v, client_id, true, 60, None)
}

/// A PUBLISH, built field by field.
#[derive(Debug, Clone, Copy)]
struct Publish<'a> {
    v: V,
    qos: u8,
    pkid: u16,
    dup: bool,
    retain: bool,
    topic: &'a [u8],
    payload: &'a [u8],
    alias: Option<u16>,
}

impl<'a> Publish<'a> {
    /// QoS 0, no flags, no properties.
    fn new(v: V, topic: &'a str, payload: &'a str) -> Self {
        Self {
            v,
            qos: 0,
            pkid: 0,
            dup: false,
            retain: false,
            topic: topic.as_bytes(),
            payload: payload.as_bytes(),
            alias: None,
        }
    }
    fn qos(mut self, qos: u8, pkid: u16) -> Self {
        self.qos = qos;
        self.pkid = pkid;
        self
    }
    fn dup(mut self) -> Self {
        self.dup = true;
        self
    }
    fn retain(mut self) -> Self {
        self.retain = true;
        self
    }
    fn topic_bytes(mut self, topic: &'a [u8]) -> Self {
        self.topic = topic;
        self
    }
    fn payload_bytes(mut self, payload: &'a [u8]) -> Self {
        self.payload = payload;
        self
    }
    /// MQTT 5 Topic Alias property (0x23).
    fn alias(mut self, alias: u16) -> Self {
        self.alias = Some(alias);
        self
    }
    fn bytes(&self) -> Vec<u8> {
        let first = 0x30 | (u8::from(self.dup) << 3) | (self.qos << 1) | u8::from(self.retain);
        let mut b = Vec::new();
        mqtt_str(self.topic, &mut b);
        if self.qos > 0 {
            b.extend_from_slice(&self.pkid.to_be_bytes());
        }
        if self.v == V::V5 {
            match self.alias {
                Some(a) => {
                    b.push(3);
                    b.push(0x23);
                    b.extend_from_slice(&a.to_be_bytes());
                }
                None => b.push(0),
            }
        }
        b.extend_from_slice(self.payload);
        packet(first, &b)
    }
}

fn pubrel(pkid: u16) -> Vec<u8> {
    let [hi, lo] = pkid.to_be_bytes();
    vec![0x62, 0x02, hi, lo]
}

/// SUBSCRIBE (fixed header 0x82) asking QoS 1 for each filter.
fn subscribe(v: V, pkid: u16, filters: &[&str]) -> Vec<u8> {
    let mut b = pkid.to_be_bytes().to_vec();
    if v == V::V5 {
        b.push(0);
    }
    for f in filters {
        mqtt_str(f.as_bytes(), &mut b);
        b.push(0x01);
    }
    packet(0x82, &b)
}

/// UNSUBSCRIBE (fixed header 0xA2).
fn unsubscribe(v: V, pkid: u16, filters: &[&str]) -> Vec<u8> {
    let mut b = pkid.to_be_bytes().to_vec();
    if v == V::V5 {
        b.push(0);
    }
    for f in filters {
        mqtt_str(f.as_bytes(), &mut b);
    }
    packet(0xA2, &b)
}

const PINGREQ: [u8; 2] = [0xC0, 0x00];
const PINGRESP: [u8; 2] = [0xD0, 0x00];
const DISCONNECT: [u8; 2] = [0xE0, 0x00];
/// The CONNACK "accepted, no session" of MQTT 3.1 and 3.1.1.
const CONNACK_OK: [u8; 4] = [0x20, 0x02, 0x00, 0x00];

// ---------------------------------------------------------------------------
// Reading what the server sends

fn open(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, DEADLINE).expect("TCP connect");
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// What a read found.
#[derive(Debug)]
enum Got {
    /// One whole packet.
    Packet(Vec<u8>),
    /// The server closed the connection (EOF or reset).
    Closed,
    /// Nothing within the time allowed; the connection is open.
    Silent,
    /// Bytes that are not a whole packet, then the close.
    Truncated(Vec<u8>),
}

fn closed_kind(k: ErrorKind) -> bool {
    matches!(
        k,
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

/// Reads one packet, waiting at most `wait` for its first byte.
fn read_within(s: &mut TcpStream, wait: Duration) -> Got {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut first = [0u8; 1];
    loop {
        match s.read(&mut first) {
            Ok(0) => return Got::Closed,
            Ok(_) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Got::Silent
            }
            Err(e) if closed_kind(e.kind()) => return Got::Closed,
            Err(e) => panic!("read failed: {e}"),
        }
    }
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut p = vec![first[0]];
    let mut len = 0usize;
    for shift in [0, 7, 14, 21] {
        let mut b = [0u8; 1];
        if s.read_exact(&mut b).is_err() {
            return Got::Truncated(p);
        }
        p.push(b[0]);
        len |= usize::from(b[0] & 0x7F) << shift;
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match s.read(&mut body[got..]) {
            Ok(0) | Err(_) => {
                p.extend_from_slice(&body[..got]);
                return Got::Truncated(p);
            }
            Ok(n) => got += n,
        }
    }
    p.extend_from_slice(&body);
    Got::Packet(p)
}

/// The next packet; panics if the connection closes or stays silent.
fn expect_packet(s: &mut TcpStream, what: &str) -> Vec<u8> {
    match read_within(s, DEADLINE) {
        Got::Packet(p) => p,
        Got::Closed => panic!("{what}: the server closed the connection instead of answering"),
        Got::Silent => panic!("{what}: no answer within {DEADLINE:?}"),
        Got::Truncated(p) => {
            panic!("{what}: the server sent {p:02x?}, not a whole packet, and closed")
        }
    }
}

/// The server closes the connection, sending nothing (more) first.
fn expect_closed(s: &mut TcpStream, what: &str) {
    match read_within(s, DEADLINE) {
        Got::Closed => {}
        Got::Packet(p) => {
            panic!("{what}: expected the connection closed with nothing sent, got {p:02x?}")
        }
        Got::Silent => panic!("{what}: the connection is still open after {DEADLINE:?}"),
        Got::Truncated(p) => panic!(
            "{what}: expected the connection closed with nothing sent, got the stray bytes \
             {p:02x?} (not a whole packet), then the close"
        ),
    }
}

/// Nothing comes back for `wait`, and the connection stays open.
fn expect_silence(s: &mut TcpStream, wait: Duration, what: &str) {
    match read_within(s, wait) {
        Got::Silent => {}
        Got::Packet(p) => panic!("{what}: expected nothing, got {p:02x?}"),
        Got::Closed => panic!("{what}: expected the connection open, the server closed it"),
        Got::Truncated(p) => panic!("{what}: expected nothing, got {p:02x?} and the close"),
    }
}

/// Checks an MQTT 5 DISCONNECT: packet type 14, flags 0, a remaining
/// length that matches, and `reason` (remaining length 0 means 0x00; a
/// property length, when present, covers the rest of the packet).
fn disconnect_error(p: &[u8], reason: u8) -> Option<String> {
    if p.len() < 2 || p[0] != 0xE0 || usize::from(p[1]) != p.len() - 2 {
        return Some(format!("expected DISCONNECT 0x{reason:02x}, got {p:02x?}"));
    }
    let got = p.get(2).copied().unwrap_or(0);
    if got != reason {
        return Some(format!(
            "DISCONNECT reason 0x{got:02x}, want 0x{reason:02x}: {p:02x?}"
        ));
    }
    if p.len() > 3 && usize::from(p[3]) != p.len() - 4 {
        return Some(format!("DISCONNECT property length: {p:02x?}"));
    }
    None
}

fn assert_disconnect(p: &[u8], reason: u8, what: &str) {
    if let Some(e) = disconnect_error(p, reason) {
        panic!("{what}: {e}");
    }
}

/// What a protocol violation must get: 3.1.x a close with nothing sent,
/// MQTT 5 DISCONNECT with `reason` ([MQTT-4.13.1-1]), then the close with
/// nothing more ([MQTT-3.14.4-1], [MQTT-3.14.4-2]). `Err` says what came
/// instead.
fn check_refused(s: &mut TcpStream, v: V, reason: u8) -> Result<(), String> {
    if v == V::V5 {
        match read_within(s, DEADLINE) {
            Got::Packet(p) => {
                if let Some(e) = disconnect_error(&p, reason) {
                    return Err(e);
                }
            }
            other => return Err(format!("expected DISCONNECT 0x{reason:02x}, got {other:?}")),
        }
    }
    match read_within(s, DEADLINE) {
        Got::Closed => Ok(()),
        Got::Silent => Err(format!("the connection is still open after {DEADLINE:?}")),
        Got::Packet(p) => Err(format!(
            "expected the close with nothing (more) sent, got {p:02x?}"
        )),
        Got::Truncated(p) => Err(format!(
            "expected the close with nothing (more) sent, got the stray bytes {p:02x?} \
             (not a whole packet), then the close"
        )),
    }
}

/// MQTT 5: DISCONNECT with `reason`, then the close.
fn expect_disconnect(s: &mut TcpStream, reason: u8, what: &str) {
    expect_refused(s, V::V5, reason, what);
}

/// [`check_refused`], or a panic saying what came instead.
fn expect_refused(s: &mut TcpStream, v: V, reason: u8, what: &str) {
    if let Err(e) = check_refused(s, v, reason) {
        panic!("{what}: {e}");
    }
}

/// A PUBACK (0x40), PUBREC (0x50) or PUBCOMP (0x70): its packet id and
/// reason code (0x00 when left out, MQTT 5 §3.4.2.1).
fn ack(p: &[u8], kind: u8, what: &str) -> (u16, u8) {
    assert!(
        p.len() >= 4 && p[0] == kind && usize::from(p[1]) == p.len() - 2,
        "{what}: expected packet 0x{kind:02x}, got {p:02x?}"
    );
    let reason = p.get(4).copied().unwrap_or(0);
    if p.len() > 5 {
        assert_eq!(
            usize::from(p[5]),
            p.len() - 6,
            "{what}: property length: {p:02x?}"
        );
    }
    (u16::from_be_bytes([p[2], p[3]]), reason)
}

/// Reads an acknowledgement of `kind` for `pkid` with `reason`.
fn expect_ack(s: &mut TcpStream, kind: u8, pkid: u16, reason: u8, what: &str) {
    let p = expect_packet(s, what);
    assert_eq!(
        ack(&p, kind, what),
        (pkid, reason),
        "{what}: (packet id, reason) of {p:02x?}"
    );
}

const PUBACK: u8 = 0x40;
const PUBREC: u8 = 0x50;
const PUBCOMP: u8 = 0x70;

/// A CONNACK taken apart.
#[derive(Debug)]
struct ConnAck {
    session_present: bool,
    code: u8,
    /// MQTT 5 properties by identifier (the value's bytes; for strings, the
    /// text without its length).
    props: BTreeMap<u8, Vec<u8>>,
}

/// Decodes a variable byte integer at the start of `b`: (value, bytes).
fn read_var_int(b: &[u8]) -> (usize, usize) {
    let mut n = 0usize;
    for (i, &x) in b.iter().take(4).enumerate() {
        n |= usize::from(x & 0x7F) << (7 * i);
        if x & 0x80 == 0 {
            return (n, i + 1);
        }
    }
    panic!("malformed variable byte integer {b:02x?}");
}

/// MQTT 5 properties (MQTT 5 §2.2.2.2), by identifier.
fn parse_props(mut b: &[u8]) -> BTreeMap<u8, Vec<u8>> {
    let mut props = BTreeMap::new();
    while let Some((&id, rest)) = b.split_first() {
        let n = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
            0x13 | 0x21 | 0x22 | 0x23 => 2,
            0x02 | 0x11 | 0x18 | 0x27 => 4,
            0x0B => read_var_int(rest).1,
            0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => {
                2 + usize::from(u16::from_be_bytes([rest[0], rest[1]]))
            }
            0x26 => {
                let k = 2 + usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                k + 2 + usize::from(u16::from_be_bytes([rest[k], rest[k + 1]]))
            }
            other => panic!("unknown MQTT 5 property 0x{other:02x}"),
        };
        let value = &rest[..n];
        let value = match id {
            0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => &value[2..],
            _ => value,
        };
        props.insert(id, value.to_vec());
        b = &rest[n..];
    }
    props
}

fn parse_connack(p: &[u8], v: V) -> ConnAck {
    assert_eq!(p.first(), Some(&0x20), "expected CONNACK, got {p:02x?}");
    let (len, n) = read_var_int(&p[1..]);
    let body = &p[1 + n..];
    assert_eq!(body.len(), len, "CONNACK remaining length: {p:02x?}");
    assert!(body.len() >= 2, "CONNACK too short: {p:02x?}");
    assert_eq!(body[0] & 0xFE, 0, "CONNACK reserved flag bits: {p:02x?}");
    let props = if v == V::V5 && body.len() > 2 {
        let (plen, m) = read_var_int(&body[2..]);
        let list = &body[2 + m..];
        assert_eq!(list.len(), plen, "CONNACK property length: {p:02x?}");
        parse_props(list)
    } else {
        assert!(v == V::V5 || body.len() == 2, "3.1.x CONNACK: {p:02x?}");
        BTreeMap::new()
    };
    ConnAck {
        session_present: body[0] & 1 == 1,
        code: body[1],
        props,
    }
}

/// Sends `connect_bytes` and reads the CONNACK.
fn connack_for(addr: SocketAddr, connect_bytes: &[u8], v: V, what: &str) -> (TcpStream, ConnAck) {
    let mut s = open(addr);
    s.write_all(connect_bytes).unwrap();
    let p = expect_packet(&mut s, what);
    (s, parse_connack(&p, v))
}

/// A session: `connect_bytes` sent and an accepting CONNACK read.
fn session_with(addr: SocketAddr, connect_bytes: &[u8], v: V, what: &str) -> (TcpStream, ConnAck) {
    let (s, ack) = connack_for(addr, connect_bytes, v, what);
    assert_eq!(ack.code, 0, "{what}: CONNACK refused: {ack:?}");
    (s, ack)
}

/// A clean session of version `v` with `client_id`.
fn session(addr: SocketAddr, v: V, client_id: &str) -> TcpStream {
    session_with(addr, &connect(v, client_id), v, client_id).0
}

/// Publishes one QoS 1 temperature and checks its PUBACK (reason 0x00).
fn publish_ok(s: &mut TcpStream, v: V, device: &str, pkid: u16, what: &str) {
    let topic = format!("sensors/{device}/temperature");
    s.write_all(&Publish::new(v, &topic, "21.5").qos(1, pkid).bytes())
        .unwrap();
    expect_ack(s, PUBACK, pkid, 0, what);
}

// ---------------------------------------------------------------------------
// CONNECT: the first packet, the protocol, the client id

/// [MQTT-3.1.0-1] "After a Network Connection is established by a Client to
/// a Server, the first Packet sent from the Client to the Server MUST be a
/// CONNECT Packet." A PUBLISH (QoS 0 and 1), PINGREQ, SUBSCRIBE or
/// DISCONNECT first: the connection is closed with nothing sent back, and
/// nothing is ingested.
#[test]
fn mqtt_3_1_0_1_first_packet_not_connect_closes_the_connection() {
    let (server, addr) = start(config());
    let firsts = [
        (
            "PUBLISH QoS 0 before CONNECT",
            Publish::new(V::V311, "sensors/early/temperature", "21.5").bytes(),
        ),
        (
            "PUBLISH QoS 1 before CONNECT",
            Publish::new(V::V311, "sensors/early/temperature", "21.5")
                .qos(1, 1)
                .bytes(),
        ),
        ("PINGREQ before CONNECT", PINGREQ.to_vec()),
        (
            "SUBSCRIBE before CONNECT",
            subscribe(V::V311, 1, &["sensors/#"]),
        ),
        ("DISCONNECT before CONNECT", DISCONNECT.to_vec()),
    ];
    for (what, bytes) in firsts {
        let mut s = open(addr);
        s.write_all(&bytes).unwrap();
        expect_closed(&mut s, what);
    }
    assert_eq!(published(&server), 0);
    let last = server.shutdown();
    assert_eq!(
        (last.received, last.records, last.dead_lettered),
        (0, 0, 0),
        "{last:?}"
    );
}

/// [MQTT-3.1.0-1], its timeout: a client that sends no CONNECT within
/// `connect_timeout_ms` (300 ms) is closed, whether it sends nothing or half
/// a CONNECT; the server goes on serving.
#[test]
fn mqtt_3_1_0_1_no_connect_within_the_connect_timeout_closes_the_connection() {
    let mut cfg = config();
    cfg.mqtt.connect_timeout_ms = 300;
    let (server, addr) = start(cfg);
    let half = connect(V::V311, "half");
    for (what, bytes) in [
        ("a silent client", &[][..]),
        ("half a CONNECT", &half[..half.len() / 2]),
    ] {
        let t0 = Instant::now();
        let mut s = open(addr);
        s.write_all(bytes).unwrap();
        expect_closed(&mut s, what);
        let t = t0.elapsed();
        assert!(
            t >= Duration::from_millis(250) && t < Duration::from_secs(3),
            "{what}: closed after {t:?}, want about 300 ms"
        );
    }
    let mut s = session(addr, V::V311, "on-time");
    publish_ok(&mut s, V::V311, "on-time", 1, "a client on time");
    drop(s);
    let last = server.shutdown();
    assert_eq!((last.received, last.records), (1, 1), "{last:?}");
}

/// [MQTT-3.1.0-2] (3.1.1) "The Server MUST process a second CONNECT Packet
/// sent from a Client as a protocol violation and disconnect the Client."
/// The connection is closed with nothing sent.
#[test]
fn mqtt_3_1_0_2_second_connect_closes_the_connection() {
    let (server, addr) = start(config());
    let mut s = session(addr, V::V311, "twice");
    publish_ok(&mut s, V::V311, "twice", 1, "before the second CONNECT");
    s.write_all(&connect(V::V311, "twice")).unwrap();
    expect_closed(&mut s, "a second CONNECT");
    let last = server.shutdown();
    assert_eq!((last.received, last.records), (1, 1), "{last:?}");
}

/// MQTT 5 [MQTT-3.1.0-2] "The Server MUST process a second CONNECT packet
/// sent from a Client as a Protocol Error and close the Network
/// Connection": DISCONNECT 0x82 (Protocol Error), then the close.
#[test]
fn mqtt5_3_1_0_2_second_connect_gets_disconnect_0x82() {
    let (server, addr) = start(config());
    let mut s = session(addr, V::V5, "twice-5");
    publish_ok(&mut s, V::V5, "twice-5", 1, "before the second CONNECT");
    s.write_all(&connect(V::V5, "twice-5")).unwrap();
    expect_disconnect(&mut s, 0x82, "a second CONNECT (v5)");
    let last = server.shutdown();
    assert_eq!((last.received, last.records), (1, 1), "{last:?}");
}

/// [MQTT-3.1.2-2] "The Server MUST respond to the CONNECT Packet with a
/// CONNACK return code 0x01 (unacceptable protocol level) and then
/// disconnect the Client if the Protocol Level is not supported by the
/// Server." Levels 6, 3 (with the name `MQTT`), 2 and 0: exactly
/// `20 02 00 01`, then the close.
#[test]
fn mqtt_3_1_2_2_unsupported_protocol_level_gets_connack_0x01() {
    let (server, addr) = start(config());
    for level in [6u8, 3, 2, 0] {
        let what = format!("CONNECT \"MQTT\" level {level}");
        let mut s = open(addr);
        s.write_all(&connect_raw(b"MQTT", level, 0x02, 60, false, "lvl", None))
            .unwrap();
        let p = expect_packet(&mut s, &what);
        assert_eq!(p, [0x20, 0x02, 0x00, 0x01], "{what}: CONNACK");
        expect_closed(&mut s, &what);
    }
    let last = server.shutdown();
    assert_eq!(last.received, 0, "{last:?}");
}

/// MQTT 3.1 (IBM, 2010, §3.1 CONNECT): protocol name `MQIsdp`, version 3 is
/// accepted: CONNACK 0x00; a QoS 1 PUBLISH gets its PUBACK once ingested,
/// PINGREQ its PINGRESP. 3.1 requires a client id of 1 to 23 characters:
/// an empty one gets CONNACK 0x02 (Identifier Rejected) and the close.
#[test]
fn mqtt_3_1_mqisdp_level_3_is_accepted() {
    let (server, addr) = start(config());
    let (mut s, _) = session_with(addr, &connect(V::V31, "old-timer"), V::V31, "MQTT 3.1");
    s.write_all(
        &Publish::new(V::V31, "sensors/old-timer/temperature", "19.5")
            .qos(1, 0x0A0B)
            .bytes(),
    )
    .unwrap();
    let p = expect_packet(&mut s, "PUBLISH QoS 1 over MQTT 3.1");
    assert_eq!(p, [0x40, 0x02, 0x0A, 0x0B], "PUBACK");
    assert_eq!(server.stats().records, 1, "ingested when the PUBACK came");
    assert_eq!(published(&server), 1);
    s.write_all(&PINGREQ).unwrap();
    assert_eq!(expect_packet(&mut s, "PINGREQ over MQTT 3.1"), PINGRESP);
    s.write_all(&DISCONNECT).unwrap();
    expect_closed(&mut s, "DISCONNECT over MQTT 3.1");

    let mut s = open(addr);
    s.write_all(&connect(V::V31, "")).unwrap();
    let p = expect_packet(&mut s, "MQTT 3.1 with an empty client id");
    assert_eq!(p, [0x20, 0x02, 0x00, 0x02], "CONNACK Identifier Rejected");
    expect_closed(&mut s, "MQTT 3.1 with an empty client id");
    let last = server.shutdown();
    assert_eq!((last.received, last.records), (1, 1), "{last:?}");
}

/// [MQTT-3.1.3-8] "If the Client supplies a zero-byte ClientId with
/// CleanSession set to 0, the Server MUST respond to the CONNECT Packet with
/// a CONNACK return code 0x02 (Identifier rejected) and then close the
/// Network Connection."
#[test]
fn mqtt_3_1_3_8_empty_client_id_with_clean_session_0_gets_connack_0x02() {
    let (server, addr) = start(config());
    let mut s = open(addr);
    s.write_all(&connect_with(V::V311, "", false, 60, None))
        .unwrap();
    let p = expect_packet(&mut s, "empty client id, clean session 0");
    assert_eq!(p, [0x20, 0x02, 0x00, 0x02], "CONNACK");
    expect_closed(&mut s, "empty client id, clean session 0");
    wait_no_connections(&server, "the refused connection");
    let last = server.shutdown();
    assert_eq!(last.received, 0, "{last:?}");
}

/// [MQTT-3.1.3-6] "A Server MAY allow a Client to supply a ClientId that has
/// a length of zero bytes, however if it does so the Server MUST treat this
/// as a special case and assign a unique ClientId to that Client." With
/// clean session 1: CONNACK 0x00; two such clients at once both stay
/// connected (their ids differ, neither takes the other over) and publish.
#[test]
fn mqtt_3_1_3_6_empty_client_id_with_clean_session_1_is_accepted() {
    let (server, addr) = start(config());
    let (mut a, _) = session_with(addr, &connect(V::V311, ""), V::V311, "anonymous a");
    let (mut b, _) = session_with(addr, &connect(V::V311, ""), V::V311, "anonymous b");
    publish_ok(&mut a, V::V311, "anon-a", 1, "anonymous a");
    publish_ok(&mut b, V::V311, "anon-b", 1, "anonymous b");
    publish_ok(&mut a, V::V311, "anon-a", 2, "anonymous a, again");
    let last = server.shutdown();
    assert_eq!((last.received, last.records), (3, 3), "{last:?}");
}

/// MQTT 5 [MQTT-3.1.3-6] / [MQTT-3.1.3-7] "…assign a unique ClientID… It
/// MUST then process the CONNECT packet as if the Client had provided that
/// unique ClientID, and MUST return the Assigned Client Identifier in the
/// CONNACK packet", and [MQTT-3.2.2-16]. An empty id: CONNACK 0x00 with an
/// Assigned Client Identifier (0x12); two clients get different ones; a
/// later CONNECT with the first one's assigned id takes its session over
/// (DISCONNECT 0x8E), as for any client id.
#[test]
fn mqtt5_3_1_3_7_empty_client_id_gets_an_assigned_client_identifier() {
    let (server, addr) = start(config());
    let (mut a, ack_a) = session_with(addr, &connect(V::V5, ""), V::V5, "anonymous v5 a");
    let (_b, ack_b) = session_with(addr, &connect(V::V5, ""), V::V5, "anonymous v5 b");
    let id_a = ack_a
        .props
        .get(&0x12)
        .map(|v| String::from_utf8(v.clone()).expect("UTF-8 client id"));
    let id_b = ack_b
        .props
        .get(&0x12)
        .map(|v| String::from_utf8(v.clone()).expect("UTF-8 client id"));
    let id_a = id_a.unwrap_or_else(|| panic!("no Assigned Client Identifier: {ack_a:?}"));
    let id_b = id_b.unwrap_or_else(|| panic!("no Assigned Client Identifier: {ack_b:?}"));
    assert!(!id_a.is_empty() && !id_b.is_empty(), "{id_a:?}, {id_b:?}");
    assert_ne!(id_a, id_b, "two clients were assigned the same id");
    publish_ok(&mut a, V::V5, "anon-5", 1, "anonymous v5 a");
    let mut c = session(addr, V::V5, &id_a);
    expect_disconnect(&mut a, 0x8E, "a CONNECT with the assigned id");
    publish_ok(
        &mut c,
        V::V5,
        "anon-5",
        2,
        "the session under the assigned id",
    );
    let last = server.shutdown();
    assert_eq!((last.received, last.records), (2, 2), "{last:?}");
}

/// MQTT 5 [MQTT-3.2.2-16] "The Assigned Client Identifier MUST be a new
/// Client Identifier not used by any other Session currently in the
/// Server" (3.1.1 [MQTT-3.1.3-6]: "a unique ClientId"). The server's
/// assigned ids are read off one CONNACK; a client that connected with the
/// id the server would assign next must keep its connection when an
/// anonymous client comes, and the two ids must differ.
#[test]
fn mqtt5_3_2_2_16_assigned_client_identifier_is_not_in_use() {
    let (server, addr) = start(config());
    let (probe, ack) = session_with(addr, &connect(V::V5, ""), V::V5, "probe");
    let assigned = String::from_utf8(ack.props.get(&0x12).cloned().unwrap_or_default()).unwrap();
    drop(probe);
    // The id a counter-based scheme gives the connection after the next:
    // the next one is the explicit client below.
    let digits = assigned.len()
        - assigned
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .len();
    let (prefix, n) = assigned.split_at(assigned.len() - digits);
    let next = match n.parse::<u64>() {
        Ok(n) => format!("{prefix}{}", n + 2),
        Err(_) => format!("{assigned}-next"),
    };
    let mut explicit = session(addr, V::V5, &next);
    let (mut anon, ack) = session_with(addr, &connect(V::V5, ""), V::V5, "anonymous");
    let assigned2 = String::from_utf8(ack.props.get(&0x12).cloned().unwrap_or_default()).unwrap();
    assert_ne!(
        assigned2, next,
        "the server assigned {assigned2:?}, the id of a client connected now"
    );
    expect_silence(&mut explicit, QUIET, "the client already using that id");
    publish_ok(
        &mut explicit,
        V::V5,
        "explicit",
        1,
        "the client using that id",
    );
    publish_ok(&mut anon, V::V5, "anon", 1, "the anonymous client");
    server.shutdown();
}

/// [MQTT-3.1.4-2] "If the ClientId represents a Client already connected to
/// the Server then the Server MUST disconnect the existing Client." The
/// first connection is closed (3.1.1: nothing sent); the second one, a
/// rumqttc client, publishes at QoS 1 and gets its PUBACK.
#[test]
fn mqtt_3_1_4_2_same_client_id_closes_the_existing_connection() {
    let (server, addr) = start(config());
    let mut first = session(addr, V::V311, "site-3/dev-17");
    publish_ok(&mut first, V::V311, "dev-17", 1, "the first connection");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let mut opts = MqttOptions::new("site-3/dev-17", addr.ip().to_string(), addr.port());
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut ev) = AsyncClient::new(opts, 8);
        client
            .publish(
                "sensors/dev-17/temperature",
                QoS::AtLeastOnce,
                false,
                "22.5",
            )
            .await
            .unwrap();
        let run = async {
            loop {
                match ev.poll().await.expect("the second connection works") {
                    Event::Incoming(Packet::ConnAck(c)) => {
                        assert_eq!(c.code, rumqttc::ConnectReturnCode::Success)
                    }
                    Event::Incoming(Packet::PubAck(a)) => {
                        assert_eq!(a.pkid, 1);
                        break;
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(DEADLINE, run)
            .await
            .expect("a PUBACK for the second connection");
        client.disconnect().await.unwrap();
    });
    expect_closed(&mut first, "a second connection with the same client id");
    let last = server.shutdown();
    assert_eq!((last.received, last.records), (2, 2), "{last:?}");
}

/// MQTT 5 [MQTT-3.1.4-3] "If the ClientID represents a Client already
/// connected to the Server, the Server sends a DISCONNECT packet to the
/// existing Client with Reason Code of 0x8E (Session taken over) … and MUST
/// close the Network Connection of the existing Client."
#[test]
fn mqtt5_3_1_4_3_same_client_id_gets_disconnect_0x8e() {
    let (server, addr) = start(config());
    let mut first = session(addr, V::V5, "twin");
    publish_ok(&mut first, V::V5, "twin", 1, "the first connection");
    let mut second = session(addr, V::V5, "twin");
    expect_disconnect(&mut first, 0x8E, "the session taken over");
    publish_ok(&mut second, V::V5, "twin", 1, "the second connection");
    let last = server.shutdown();
    assert_eq!((last.received, last.records), (2, 2), "{last:?}");
}

/// [MQTT-3.1.2-3] (3.1.1 and 5) "The Server MUST validate that the reserved
/// flag in the CONNECT Control Packet is set to zero and disconnect the
/// Client if it is not zero", and 3.1.1 [MQTT-3.1.4-1]: "…close the Network
/// Connection without sending a CONNACK if it does not conform". MQTT 5 may
/// send CONNACK 0x81 (Malformed Packet) first; it must not accept.
#[test]
fn mqtt_3_1_2_3_connect_reserved_flag_set_closes_the_connection() {
    let (server, addr) = start(config());
    let mut failures = Vec::new();
    let mut s = open(addr);
    s.write_all(&connect_raw(b"MQTT", 4, 0x03, 60, false, "reserved", None))
        .unwrap();
    match read_within(&mut s, DEADLINE) {
        Got::Closed => {}
        other => failures.push(format!("3.1.1: expected the close, got {other:?}")),
    }
    let mut s = open(addr);
    s.write_all(&connect_raw(b"MQTT", 5, 0x03, 60, true, "reserved-5", None))
        .unwrap();
    match read_within(&mut s, DEADLINE) {
        Got::Closed => {}
        Got::Packet(p) if parse_connack(&p, V::V5).code == 0x81 => {
            if let Err(e) = check_refused(&mut s, V::V311, 0) {
                failures.push(format!("v5, after CONNACK 0x81: {e}"));
            }
        }
        other => failures.push(format!(
            "v5: expected CONNACK 0x81 or the close, got {other:?}"
        )),
    }
    server.shutdown();
    assert!(
        failures.is_empty(),
        "CONNECT with the reserved flag set: {failures:#?}"
    );
}

// ---------------------------------------------------------------------------
// Keep-alive

/// [MQTT-3.1.2-24] "If the Keep Alive value is non-zero and the Server does
/// not receive a Control Packet from the Client within one and a half times
/// the Keep Alive time period, it MUST disconnect the Network Connection to
/// the Client as if the network had failed." Keep-alive 1 s and silence:
/// closed after about 1.5 s (between 1.2 and 4 s; MQTT 5 may send
/// DISCONNECT 0x8D, Keep Alive timeout, first). A client sending PINGREQ
/// every 0.5 s gets a PINGRESP each time ([MQTT-3.12.4-1]) and stays.
#[test]
fn mqtt_3_1_2_24_keep_alive_closes_a_silent_connection() {
    let (server, addr) = start(config());
    std::thread::scope(|scope| {
        for v in [V::V311, V::V5] {
            scope.spawn(move || {
                let what = format!("keep-alive 1 s, silent ({v:?})");
                let (mut s, _) =
                    session_with(addr, &connect_with(v, &what, true, 1, None), v, &what);
                let t0 = Instant::now();
                match read_within(&mut s, DEADLINE) {
                    Got::Closed => {}
                    Got::Packet(p) if v == V::V5 => {
                        assert_disconnect(&p, 0x8D, &what);
                        expect_closed(&mut s, &format!("{what}, after the DISCONNECT"));
                    }
                    other => panic!("{what}: expected the close, got {other:?}"),
                }
                let t = t0.elapsed();
                assert!(
                    t >= Duration::from_millis(1200) && t < Duration::from_secs(4),
                    "{what}: closed after {t:?}, want about 1.5 s"
                );
            });
        }
        scope.spawn(move || {
            let what = "keep-alive 1 s, PINGREQ every 0.5 s";
            let (mut s, _) = session_with(
                addr,
                &connect_with(V::V311, "pinger", true, 1, None),
                V::V311,
                what,
            );
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(3) {
                std::thread::sleep(Duration::from_millis(500));
                s.write_all(&PINGREQ).unwrap();
                assert_eq!(expect_packet(&mut s, what), PINGRESP, "{what}");
            }
            publish_ok(&mut s, V::V311, "pinger", 1, what);
        });
    });
    let last = server.shutdown();
    assert_eq!((last.received, last.records), (1, 1), "{last:?}");
}

/// [MQTT-3.1.2-24] with Keep Alive 0 (3.1.1 §3.1.2.10: "A Keep Alive value
/// of zero (0) has the effect of turning off the keep alive mechanism"):
/// still connected after 3 s of silence, and a PUBLISH still works.
#[test]
fn mqtt_3_1_2_24_keep_alive_0_never_times_out() {
    let (server, addr) = start(config());
    let what = "keep-alive 0";
    let (mut s, _) = session_with(
        addr,
        &connect_with(V::V311, "no-ka", true, 0, None),
        V::V311,
        what,
    );
    expect_silence(&mut s, Duration::from_secs(3), what);
    publish_ok(&mut s, V::V311, "no-ka", 1, what);
    let last = server.shutdown();
    assert_eq!((last.received, last.records), (1, 1), "{last:?}");
}

// ---------------------------------------------------------------------------
// PUBLISH topic names

/// Sends one QoS 1 PUBLISH with `topic` on a fresh session of each version:
/// 3.1.1 is closed with nothing sent (no PUBACK), MQTT 5 gets DISCONNECT
/// `v5_reason` and the close; nothing is ingested.
fn refused_topic(topic: &[u8], v5_reason: u8, what: &str) {
    let (server, addr) = start(config());
    for v in [V::V311, V::V5] {
        let what = format!("{what} ({v:?})");
        let mut s = session(addr, v, "topics");
        s.write_all(
            &Publish::new(v, "", "21.5")
                .topic_bytes(topic)
                .qos(1, 7)
                .bytes(),
        )
        .unwrap();
        expect_refused(&mut s, v, v5_reason, &what);
    }
    assert_eq!(published(&server), 0);
    let last = server.shutdown();
    assert_eq!(
        (last.received, last.dead_lettered, last.records),
        (0, 0, 0),
        "{what}: never ingested: {last:?}"
    );
}

/// [MQTT-3.3.2-2] "The Topic Name in the PUBLISH Packet MUST NOT contain
/// wildcard characters" (MQTT 5 the same, and §4.13: DISCONNECT 0x90,
/// Topic Name invalid).
#[test]
fn mqtt_3_3_2_2_wildcard_in_topic_name_closes_the_connection() {
    refused_topic(b"sensors/+/temperature", 0x90, "topic with '+'");
    refused_topic(b"sensors/d/#", 0x90, "topic with '#'");
    refused_topic(
        b"sensors/a#b/temperature",
        0x90,
        "topic with '#' inside a level",
    );
}

/// [MQTT-4.7.3-1] "All Topic Names and Topic Filters MUST be at least one
/// character long" (MQTT 5 the same): an empty topic name without a Topic
/// Alias closes the connection (MQTT 5: DISCONNECT 0x90).
#[test]
fn mqtt_4_7_3_1_empty_topic_name_closes_the_connection() {
    refused_topic(b"", 0x90, "empty topic");
}

/// [MQTT-1.5.3-2] "A UTF-8 encoded string MUST NOT include an encoding of
/// the null character U+0000. If a receiver (Server or Client) receives a
/// Control Packet containing U+0000 it MUST close the Network Connection"
/// (also [MQTT-4.7.3-2]; MQTT 5 [MQTT-1.5.4-2]: DISCONNECT 0x90).
#[test]
fn mqtt_1_5_3_2_nul_in_topic_name_closes_the_connection() {
    refused_topic(b"sensors/d\0/temperature", 0x90, "topic with NUL");
}

/// [MQTT-1.5.3-1] "The character data in a UTF-8 encoded string MUST be
/// well-formed UTF-8 … If a Server or Client receives a Control Packet
/// containing ill-formed UTF-8 it MUST close the Network Connection" (MQTT 5
/// [MQTT-1.5.4-1]: a Malformed Packet, DISCONNECT 0x81). A lone 0xFF and an
/// encoded surrogate (U+D800).
#[test]
fn mqtt_1_5_3_1_ill_formed_utf8_topic_closes_the_connection() {
    refused_topic(b"sensors/\xFF/temperature", 0x81, "topic with 0xFF");
    refused_topic(
        b"sensors/\xED\xA0\x80/temperature",
        0x81,
        "topic with U+D800",
    );
}

/// [MQTT-3.3.1-4] "A PUBLISH Packet MUST NOT have both QoS bits set to 1. If
/// a Server or Client receives a PUBLISH Packet which has both QoS bits set
/// to 1 it MUST close the Network Connection" (MQTT 5: Malformed Packet,
/// DISCONNECT 0x81).
#[test]
fn mqtt_3_3_1_4_publish_with_qos_3_closes_the_connection() {
    let (server, addr) = start(config());
    for v in [V::V311, V::V5] {
        let mut s = session(addr, v, "qos3");
        let mut p = Publish::new(v, "sensors/qos3/temperature", "21.5")
            .qos(1, 3)
            .bytes();
        p[0] |= 0x06;
        s.write_all(&p).unwrap();
        expect_refused(&mut s, v, 0x81, &format!("PUBLISH QoS 3 ({v:?})"));
    }
    let last = server.shutdown();
    assert_eq!(last.received, 0, "{last:?}");
}

// ---------------------------------------------------------------------------
// QoS 1 and 2

/// [MQTT-4.3.2-2] "…the Receiver MUST respond with a PUBACK Packet
/// containing the Packet Identifier from the incoming PUBLISH Packet,
/// having accepted ownership of the Application Message" (MQTT 5
/// [MQTT-4.3.2-4]). Ownership here is "in the engine": each PUBACK carries
/// the PUBLISH's packet id and comes once the record is counted and in its
/// partition. With the partition full (Block, 2 slots, a group that never
/// reads) the third PUBLISH gets no PUBACK until the group reads; then it
/// does, and the record is in.
#[test]
fn mqtt_4_3_2_2_puback_carries_the_packet_id_once_ingested() {
    let mut cfg = config();
    cfg.ingest.shards = 1;
    cfg.ingest.capacity = 2;
    cfg.ingest.policy = OverflowPolicy::Block;
    let (server, addr) = start(cfg);
    let mut group = stalled_group(&server);
    let mut s = session(addr, V::V311, "owner");
    for (i, pkid) in [0x1234u16, 0xFFFF].into_iter().enumerate() {
        publish_ok(&mut s, V::V311, "owner", pkid, "a PUBLISH with room");
        let st = server.stats();
        assert_eq!(
            st.records,
            i as u64 + 1,
            "ingested when its PUBACK came: {st:?}"
        );
        assert_eq!(published(&server), i as u64 + 1);
    }
    s.write_all(
        &Publish::new(V::V311, "sensors/owner/temperature", "22.5")
            .qos(1, 0x0001)
            .bytes(),
    )
    .unwrap();
    expect_silence(&mut s, QUIET, "a PUBLISH into a full partition");
    let st = server.stats();
    assert_eq!((st.received, st.records), (3, 2), "{st:?}");
    let n = group.poll(16, DEADLINE).unwrap().len();
    assert_eq!(n, 2);
    group.commit();
    expect_ack(&mut s, PUBACK, 0x0001, 0, "once the group has read");
    let st = server.stats();
    assert_eq!(st.records, 3, "ingested when its PUBACK came: {st:?}");
    assert_eq!(published(&server), 3);
    drop(s);
    let last = server.shutdown();
    assert_eq!(
        (last.received, last.records, last.rejected),
        (3, 3, 0),
        "{last:?}"
    );
}

/// Devices whose partitions (of `partitions`) belong to every one of
/// `shards` shards (partition `p` belongs to shard `p % shards`).
fn devices_on_every_shard(n: usize, partitions: u32, shards: usize) -> Vec<String> {
    let devices: Vec<String> = (0..n).map(|i| format!("ord-{i}")).collect();
    let owners: std::collections::BTreeSet<usize> = devices
        .iter()
        .map(|d| partition_for(d.as_bytes(), partitions) as usize % shards)
        .collect();
    assert_eq!(owners.len(), shards, "the devices cover every shard");
    devices
}

/// [MQTT-4.6.0-2] "[The Server] MUST send PUBACK packets in the order in
/// which the corresponding PUBLISH packets were received (QoS 1 messages)"
/// and [MQTT-4.6.0-3] the same for PUBREC (QoS 2) (MQTT 5 the same
/// numbers). 100 publishes pipelined in one write, QoS 1 and 2 alternating,
/// devices spread over partitions owned by every shard (1 and 2 shards, so
/// some records are published on the spot and others cross to another
/// shard): PUBACKs and PUBRECs come in PUBLISH order, then the PUBCOMPs in
/// PUBREL order; every record is in when the last acknowledgement comes.
#[test]
fn mqtt_4_6_0_2_acknowledgements_in_publish_order() {
    const N: usize = 100;
    for (shards, v) in [(1, V::V311), (2, V::V311), (2, V::V5)] {
        let what = format!("{shards} shard(s), {v:?}");
        let mut cfg = config();
        cfg.ingest.shards = shards;
        let (server, addr) = start(cfg.clone());
        let devices = devices_on_every_shard(N, cfg.ingest.partitions, shards);
        let mut s = session(addr, v, "pipeline");
        let mut wire = Vec::new();
        for (i, d) in devices.iter().enumerate() {
            let topic = format!("sensors/{d}/temperature");
            let pkid = i as u16 + 1;
            let qos = if i % 2 == 0 { 1 } else { 2 };
            wire.extend(Publish::new(v, &topic, "21.5").qos(qos, pkid).bytes());
        }
        s.write_all(&wire).unwrap();
        let (mut pubacks, mut pubrecs) = (Vec::new(), Vec::new());
        for _ in 0..N {
            let p = expect_packet(&mut s, &what);
            let kind = p[0];
            let (pkid, reason) = ack(&p, kind, &what);
            assert_eq!(reason, 0, "{what}: {p:02x?}");
            match kind {
                PUBACK => pubacks.push(pkid),
                PUBREC => pubrecs.push(pkid),
                _ => panic!("{what}: unexpected {p:02x?}"),
            }
        }
        let st = server.stats();
        assert_eq!(
            st.records, N as u64,
            "{what}: all in at the last ack: {st:?}"
        );
        let want_acks: Vec<u16> = (1..=N as u16).step_by(2).collect();
        let want_recs: Vec<u16> = (2..=N as u16).step_by(2).collect();
        assert_eq!(pubacks, want_acks, "{what}: PUBACK order");
        assert_eq!(pubrecs, want_recs, "{what}: PUBREC order");
        let rels: Vec<u8> = want_recs.iter().flat_map(|&p| pubrel(p)).collect();
        s.write_all(&rels).unwrap();
        for &pkid in &want_recs {
            expect_ack(&mut s, PUBCOMP, pkid, 0, &what);
        }
        assert_eq!(published(&server), N as u64, "{what}");
        if shards > 1 {
            assert!(
                st.forwarded > 0,
                "{what}: some records crossed shards: {st:?}"
            );
        }
        let last = server.shutdown();
        assert_eq!(
            (last.received, last.records, last.duplicates),
            (N as u64, N as u64, 0),
            "{what}: {last:?}"
        );
    }
}

/// [MQTT-4.3.3-2] (3.1.1) the QoS 2 receiver "MUST respond with a PUBREC
/// containing the Packet Identifier from the incoming PUBLISH Packet…
/// Until it has received the corresponding PUBREL packet, the Receiver MUST
/// acknowledge any subsequent PUBLISH packet with the same Packet
/// Identifier by sending a PUBREC. It MUST NOT cause duplicate messages to
/// be delivered to any onward recipients in this case. MUST respond to a
/// PUBREL packet by sending a PUBCOMP packet containing the same Packet
/// Identifier as the PUBREL. After it has sent a PUBCOMP, the receiver MUST
/// treat any subsequent PUBLISH packet that contains that Packet Identifier
/// as being a new publication." (MQTT 5 [MQTT-4.3.3-8], -10, -11, -12.)
#[test]
fn mqtt_4_3_3_2_qos2_exactly_once() {
    for v in [V::V311, V::V5] {
        let what = format!("QoS 2 ({v:?})");
        let (server, addr) = start(config());
        let mut s = session(addr, v, "exactly-once");
        let first = Publish::new(v, "sensors/once/temperature", "21.5").qos(2, 7);
        s.write_all(&first.bytes()).unwrap();
        expect_ack(&mut s, PUBREC, 7, 0, &format!("{what}: PUBLISH"));
        assert_eq!(server.stats().records, 1, "{what}: in when PUBREC came");
        s.write_all(&first.dup().bytes()).unwrap();
        expect_ack(&mut s, PUBREC, 7, 0, &format!("{what}: retransmission"));
        let st = server.stats();
        assert_eq!(
            (st.received, st.records, st.duplicates),
            (1, 1, 1),
            "{what}: the retransmission is not ingested: {st:?}"
        );
        s.write_all(&pubrel(7)).unwrap();
        expect_ack(&mut s, PUBCOMP, 7, 0, &format!("{what}: PUBREL"));
        s.write_all(
            &Publish::new(v, "sensors/once/temperature", "22.5")
                .qos(2, 7)
                .bytes(),
        )
        .unwrap();
        expect_ack(&mut s, PUBREC, 7, 0, &format!("{what}: the id reused"));
        let st = server.stats();
        assert_eq!(
            (st.received, st.records, st.duplicates),
            (2, 2, 1),
            "{what}: after PUBCOMP the id is a new message: {st:?}"
        );
        s.write_all(&pubrel(7)).unwrap();
        expect_ack(&mut s, PUBCOMP, 7, 0, &format!("{what}: second PUBREL"));
        assert_eq!(published(&server), 2, "{what}");
        server.shutdown();
    }
}

/// [MQTT-4.3.3-2] across a reconnect, with [MQTT-3.2.2-2] (3.1.1: "If the
/// Server accepts a connection with CleanSession set to 0, the value set in
/// Session Present depends on whether the Server already has stored Session
/// state"). A QoS 2 message whose PUBREL never came, its connection
/// dropped, resent with DUP on the resumed session: CONNACK with Session
/// Present 1, PUBREC, not ingested twice; PUBREL → PUBCOMP.
#[test]
fn mqtt_4_3_3_2_qos2_packet_id_stays_received_across_a_reconnect() {
    let (server, addr) = start(config());
    let connect0 = connect_with(V::V311, "q2-session", false, 60, None);
    let (mut s, ack) = session_with(addr, &connect0, V::V311, "first connection");
    assert!(!ack.session_present, "no session yet: {ack:?}");
    let p = Publish::new(V::V311, "sensors/q2/temperature", "21.5").qos(2, 5);
    s.write_all(&p.bytes()).unwrap();
    expect_ack(&mut s, PUBREC, 5, 0, "QoS 2 PUBLISH");
    drop(s);
    let (mut s, ack) = session_with(addr, &connect0, V::V311, "resumed connection");
    assert!(ack.session_present, "the session is resumed: {ack:?}");
    s.write_all(&p.dup().bytes()).unwrap();
    expect_ack(
        &mut s,
        PUBREC,
        5,
        0,
        "QoS 2 PUBLISH resent after the reconnect",
    );
    s.write_all(&pubrel(5)).unwrap();
    expect_ack(&mut s, PUBCOMP, 5, 0, "PUBREL after the reconnect");
    let st = server.stats();
    assert_eq!(
        (st.received, st.records, st.duplicates),
        (1, 1, 1),
        "ingested once: {st:?}"
    );
    s.write_all(&DISCONNECT).unwrap();
    expect_closed(&mut s, "DISCONNECT");
    server.shutdown();
}

// ---------------------------------------------------------------------------
// MQTT 5: CONNACK properties, topic aliases, flow control, reason codes

/// MQTT 5 §3.2.2.3 (CONNACK properties) with [MQTT-3.2.2-2] ("…Clean Start
/// set to 1, the Server MUST set Session Present to 0…"): reason 0x00,
/// Session Present 0, Receive Maximum (0x21), Maximum Packet Size (0x27)
/// and Topic Alias Maximum (0x22) with the configured values, and Retain
/// Available (0x25) 0; no Assigned Client Identifier for a client that
/// gave its id.
#[test]
fn mqtt5_3_2_2_connack_advertises_the_limits() {
    let mut cfg = config();
    cfg.mqtt.receive_maximum = 7;
    cfg.mqtt.max_packet_size = 4096;
    cfg.mqtt.topic_alias_maximum = 5;
    let (server, addr) = start(cfg);
    let (_s, ack) = session_with(addr, &connect(V::V5, "limits"), V::V5, "CONNACK");
    assert!(!ack.session_present, "{ack:?}");
    assert_eq!(
        ack.props.get(&0x21),
        Some(&7u16.to_be_bytes().to_vec()),
        "Receive Maximum: {ack:?}"
    );
    assert_eq!(
        ack.props.get(&0x27),
        Some(&4096u32.to_be_bytes().to_vec()),
        "Maximum Packet Size: {ack:?}"
    );
    assert_eq!(
        ack.props.get(&0x22),
        Some(&5u16.to_be_bytes().to_vec()),
        "Topic Alias Maximum: {ack:?}"
    );
    assert_eq!(
        ack.props.get(&0x25),
        Some(&vec![0]),
        "Retain Available: {ack:?}"
    );
    assert_eq!(
        ack.props.get(&0x12),
        None,
        "Assigned Client Identifier: {ack:?}"
    );
    server.shutdown();
}

/// Reads `n` records of `temperature`: (device, temperature) by device, in
/// partition order.
fn read_records(c: &mut Consumer<Reading>, n: usize) -> BTreeMap<String, Vec<f32>> {
    let mut by_device: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let mut got = 0;
    let deadline = Instant::now() + DEADLINE;
    while got < n {
        assert!(Instant::now() < deadline, "only {got} of {n} records");
        for r in c.poll(64, Duration::from_millis(50)).unwrap().iter() {
            by_device
                .entry(r.value.device.as_str().to_owned())
                .or_default()
                .push(r.value.temperature);
            got += 1;
        }
    }
    by_device
}

/// MQTT 5 [MQTT-3.3.2-12] "A Server MUST accept all Topic Alias values
/// greater than 0 and less than or equal to the Topic Alias Maximum value
/// that it returned in the CONNACK packet." A topic with alias 1, then an
/// empty topic with alias 1: both ingested under the topic; the same at the
/// maximum (5); alias 1 mapped again to another topic takes the new one.
#[test]
fn mqtt5_3_3_2_12_topic_aliases_up_to_the_maximum_are_accepted() {
    let mut cfg = config();
    cfg.mqtt.topic_alias_maximum = 5;
    let (server, addr) = start(cfg);
    let mut check = server
        .engine()
        .consumer(ConsumerConfig::cluster("check"))
        .unwrap();
    check.subscribe(&[TEMPERATURE]).unwrap();
    let mut s = session(addr, V::V5, "aliases");
    let sends: [(&str, u16, &str); 6] = [
        ("sensors/alias-a/temperature", 1, "21"),
        ("", 1, "21.25"),
        ("sensors/alias-b/temperature", 5, "22"),
        ("", 5, "22.25"),
        ("sensors/alias-c/temperature", 1, "23"),
        ("", 1, "23.25"),
    ];
    for (i, (topic, alias, payload)) in sends.into_iter().enumerate() {
        let pkid = i as u16 + 1;
        s.write_all(
            &Publish::new(V::V5, topic, payload)
                .qos(1, pkid)
                .alias(alias)
                .bytes(),
        )
        .unwrap();
        expect_ack(
            &mut s,
            PUBACK,
            pkid,
            0,
            &format!("topic {topic:?}, alias {alias}"),
        );
    }
    let by_device = read_records(&mut check, 6);
    let want: BTreeMap<String, Vec<f32>> = [
        ("alias-a".to_owned(), vec![21.0, 21.25]),
        ("alias-b".to_owned(), vec![22.0, 22.25]),
        ("alias-c".to_owned(), vec![23.0, 23.25]),
    ]
    .into_iter()
    .collect();
    assert_eq!(by_device, want, "records by device");
    let last = server.shutdown();
    assert_eq!(
        (last.received, last.records, last.dead_lettered),
        (6, 6, 0),
        "{last:?}"
    );
}

/// MQTT 5 [MQTT-3.3.2-8] "A sender MUST NOT send a PUBLISH packet containing
/// a Topic Alias which has the value 0" and [MQTT-3.3.2-9] "A Client MUST
/// NOT send a PUBLISH packet with a Topic Alias greater than the Topic Alias
/// Maximum value returned by the Server in the CONNACK packet" (§3.3.2.3.4:
/// DISCONNECT 0x94, Topic Alias invalid). Not ingested.
#[test]
fn mqtt5_3_3_2_8_and_9_topic_alias_0_or_over_the_maximum_gets_disconnect_0x94() {
    let mut cfg = config();
    cfg.mqtt.topic_alias_maximum = 5;
    let (server, addr) = start(cfg);
    for alias in [0u16, 6, u16::MAX] {
        let what = format!("Topic Alias {alias} (maximum 5)");
        let mut s = session(addr, V::V5, "bad-alias");
        s.write_all(
            &Publish::new(V::V5, "sensors/alias/temperature", "21.5")
                .qos(1, 1)
                .alias(alias)
                .bytes(),
        )
        .unwrap();
        expect_disconnect(&mut s, 0x94, &what);
    }
    let last = server.shutdown();
    assert_eq!(last.received, 0, "{last:?}");
}

/// MQTT 5 §3.3.2.3.4 (an empty Topic Name with a Topic Alias the receiver
/// has no mapping for is a Protocol Error, DISCONNECT 0x82) and
/// [MQTT-3.3.2-7] "A receiver MUST NOT carry forward any Topic Alias
/// mappings from one Network Connection to another": an alias never set,
/// and an alias set on the previous connection of the same client, both
/// get DISCONNECT 0x82 and are not ingested.
#[test]
fn mqtt5_3_3_2_7_topic_alias_without_a_mapping_gets_disconnect_0x82() {
    let (server, addr) = start(config());
    let mut s = session(addr, V::V5, "unmapped");
    s.write_all(&Publish::new(V::V5, "", "21.5").qos(1, 1).alias(2).bytes())
        .unwrap();
    expect_disconnect(&mut s, 0x82, "an empty topic with an alias never set");

    let mut s = session(addr, V::V5, "carried");
    s.write_all(
        &Publish::new(V::V5, "sensors/carried/temperature", "21.5")
            .qos(1, 1)
            .alias(1)
            .bytes(),
    )
    .unwrap();
    expect_ack(&mut s, PUBACK, 1, 0, "alias 1 set");
    s.write_all(&DISCONNECT).unwrap();
    expect_closed(&mut s, "DISCONNECT");
    let mut s = session(addr, V::V5, "carried");
    s.write_all(&Publish::new(V::V5, "", "22.5").qos(1, 2).alias(1).bytes())
        .unwrap();
    expect_disconnect(&mut s, 0x82, "alias 1 of the previous connection");
    let last = server.shutdown();
    assert_eq!((last.received, last.records), (1, 1), "{last:?}");
}

/// A server whose `temperature` partitions fill after `capacity` records
/// and stay full: one shard, the given policy, a group that never reads.
fn full_partition_server(
    policy: OverflowPolicy,
    receive_maximum: u16,
) -> (Server, SocketAddr, Consumer<Reading>) {
    let mut cfg = config();
    cfg.ingest.shards = 1;
    cfg.ingest.capacity = 2;
    cfg.ingest.policy = policy;
    cfg.mqtt.receive_maximum = receive_maximum;
    let (server, addr) = start(cfg);
    let group = stalled_group(&server);
    (server, addr, group)
}

/// MQTT 5 [MQTT-3.3.4-7] "The Client MUST NOT send more than Receive Maximum
/// QoS 1 and QoS 2 PUBLISH packets for which it has not received PUBACK,
/// PUBCOMP, or PUBREC with a Reason Code of 128 or greater from the Server"
/// and §3.3.4: "If it receives more than Receive Maximum QoS 1 and QoS 2
/// PUBLISH packets where it has not sent a PUBACK or PUBCOMP in response,
/// the Server uses a DISCONNECT packet with Reason Code 0x93 (Receive
/// Maximum exceeded)". Receive Maximum 2, a full partition (so nothing is
/// acknowledged), three QoS 1 publishes. While the partition is full the
/// server does not read the connection (backpressure: what it has not read
/// it has not received); once the consumer reads, the first gets in, and
/// with none acknowledged yet the third is over the limit: DISCONNECT 0x93.
#[test]
fn mqtt5_3_3_4_7_more_qos1_in_flight_than_receive_maximum_gets_disconnect_0x93() {
    let (server, addr, mut group) = full_partition_server(OverflowPolicy::Block, 2);
    let mut s = session(addr, V::V5, "greedy");
    let mut wire = Vec::new();
    for _ in 0..2 {
        // QoS 0: fills the partition, needs no acknowledgement.
        wire.extend(Publish::new(V::V5, "sensors/greedy/temperature", "20").bytes());
    }
    for pkid in 1..=3 {
        wire.extend(
            Publish::new(V::V5, "sensors/greedy/temperature", "21")
                .qos(1, pkid)
                .bytes(),
        );
    }
    s.write_all(&wire).unwrap();
    assert!(
        matches!(read_within(&mut s, Duration::from_millis(500)), Got::Silent),
        "nothing is acknowledged while the partition is full"
    );
    assert_eq!(group.poll(16, Duration::from_secs(5)).unwrap().len(), 2);
    // Auto-commit: the next poll commits the two, which frees their slots.
    group.poll(16, Duration::from_millis(10)).unwrap();
    // The first two, read within the limit, are acknowledged; the third,
    // read with both unacknowledged, is one too many.
    let mut acked = Vec::new();
    let disconnect = loop {
        match read_within(&mut s, Duration::from_secs(3)) {
            Got::Packet(p) if p[0] == 0x40 => acked.push(p[3]),
            other => break other,
        }
    };
    assert_eq!(acked, [1, 2], "PUBACKs before the DISCONNECT");
    match disconnect {
        Got::Packet(p) => {
            assert_disconnect(&p, 0x93, "a third QoS 1 PUBLISH in flight");
            expect_closed(&mut s, "after DISCONNECT 0x93");
        }
        Got::Closed | Got::Truncated(_) => {
            panic!("expected DISCONNECT 0x93, the connection closed")
        }
        Got::Silent => panic!(
            "three QoS 1 publishes in flight with Receive Maximum 2: no DISCONNECT 0x93 \
             within 3 s (the server stopped reading instead)"
        ),
    }
    // The two QoS 0 records and the first two QoS 1; the excess one was
    // not ingested.
    assert_eq!(server.stats().records, 4);
    server.shutdown();
}

/// MQTT 5 [MQTT-3.3.4-7] for QoS 2: a QoS 2 PUBLISH holds its Receive
/// Maximum slot until the PUBCOMP (a successful PUBREC does not free it).
/// Receive Maximum 2: two QoS 2 publishes (PUBRECs), one released (PUBCOMP),
/// a third is allowed; a fourth while two still await PUBREL is the
/// (Receive Maximum + 1)th unacknowledged: DISCONNECT 0x93.
#[test]
fn mqtt5_3_3_4_7_qos2_holds_its_receive_maximum_slot_until_pubcomp() {
    let mut cfg = config();
    cfg.mqtt.receive_maximum = 2;
    let (server, addr) = start(cfg);
    let mut s = session(addr, V::V5, "qos2-window");
    let p = |pkid| {
        Publish::new(V::V5, "sensors/window/temperature", "21")
            .qos(2, pkid)
            .bytes()
    };
    s.write_all(&p(1)).unwrap();
    expect_ack(&mut s, PUBREC, 1, 0, "QoS 2 #1");
    s.write_all(&p(2)).unwrap();
    expect_ack(&mut s, PUBREC, 2, 0, "QoS 2 #2");
    s.write_all(&pubrel(1)).unwrap();
    expect_ack(&mut s, PUBCOMP, 1, 0, "PUBREL #1");
    s.write_all(&p(3)).unwrap();
    expect_ack(&mut s, PUBREC, 3, 0, "QoS 2 #3, within the window");
    s.write_all(&p(4)).unwrap();
    match read_within(&mut s, Duration::from_secs(3)) {
        Got::Packet(pkt) => {
            assert_disconnect(&pkt, 0x93, "QoS 2 #4 with #2 and #3 awaiting PUBREL");
            expect_closed(&mut s, "after DISCONNECT 0x93");
        }
        other => panic!("QoS 2 #4 with #2 and #3 awaiting PUBREL: {other:?}"),
    }
    let last = server.shutdown();
    assert_eq!(last.records, 3, "{last:?}");
}

/// MQTT 5 [MQTT-3.4.2-1] "The Client or Server sending the PUBACK packet MUST
/// use one of the PUBACK Reason Codes" (and [MQTT-3.5.2-1] for PUBREC):
/// a payload that is not a reading gets 0x99 (Payload format invalid) and
/// is dead-lettered as `not_json`; a topic outside the scheme gets 0x90
/// (Topic Name invalid), dead-lettered as `unknown_topic`; a valid one 0x00.
/// With [MQTT-4.3.3-9]: after a PUBREC of 0x80 or more the packet id is
/// free, so the same id again is a new message, not a duplicate. 3.1.1
/// has no reason codes: a refused message still gets its PUBACK.
#[test]
fn mqtt5_3_4_2_1_puback_reason_codes_say_why_a_message_was_refused() {
    let (server, addr) = start(config());
    let mut s = session(addr, V::V5, "reasons");
    let cases: [(&str, &str, u8); 3] = [
        ("sensors/d/temperature", "warm", 0x99),
        ("other/x", "21.5", 0x90),
        ("sensors/d/temperature", "21.5", 0x00),
    ];
    for (i, (topic, payload, reason)) in cases.into_iter().enumerate() {
        let pkid = i as u16 + 1;
        s.write_all(&Publish::new(V::V5, topic, payload).qos(1, pkid).bytes())
            .unwrap();
        expect_ack(
            &mut s,
            PUBACK,
            pkid,
            reason,
            &format!("{topic} {payload:?}"),
        );
    }
    let st = server.stats();
    assert_eq!(
        (st.received, st.accepted, st.dead_lettered, st.records),
        (3, 1, 2, 1),
        "{st:?}"
    );
    let reasons: BTreeMap<String, u64> =
        [("not_json".to_owned(), 1), ("unknown_topic".to_owned(), 1)]
            .into_iter()
            .collect();
    assert_eq!(st.dead_letter_reasons, reasons);

    s.write_all(
        &Publish::new(V::V5, "sensors/d/temperature", "warm")
            .qos(2, 9)
            .bytes(),
    )
    .unwrap();
    expect_ack(&mut s, PUBREC, 9, 0x99, "QoS 2, payload \"warm\"");
    s.write_all(
        &Publish::new(V::V5, "sensors/d/temperature", "21.5")
            .qos(2, 9)
            .bytes(),
    )
    .unwrap();
    expect_ack(
        &mut s,
        PUBREC,
        9,
        0x00,
        "QoS 2, the id again after PUBREC 0x99",
    );
    s.write_all(&pubrel(9)).unwrap();
    expect_ack(&mut s, PUBCOMP, 9, 0x00, "PUBREL");
    let st = server.stats();
    assert_eq!(
        (st.received, st.records, st.dead_lettered, st.duplicates),
        (5, 2, 3, 0),
        "{st:?}"
    );

    let mut s = session(addr, V::V311, "reasons-311");
    s.write_all(
        &Publish::new(V::V311, "sensors/d/temperature", "warm")
            .qos(1, 4)
            .bytes(),
    )
    .unwrap();
    assert_eq!(
        expect_packet(&mut s, "3.1.1, payload \"warm\""),
        [0x40, 0x02, 0x00, 0x04]
    );
    let last = server.shutdown();
    assert_eq!((last.received, last.dead_lettered), (6, 4), "{last:?}");
    assert_eq!(last.dead_letter_reasons.get("not_json"), Some(&3));
}

/// MQTT 5 [MQTT-3.4.2-1], the quota: a full `Reject` topic refuses the
/// record, and the PUBACK says 0x97 (Quota exceeded); it is counted in
/// `rejected`, not in `records`.
#[test]
fn mqtt5_3_4_2_1_puback_0x97_when_a_reject_topic_is_full() {
    let (server, addr, _group) = full_partition_server(OverflowPolicy::Reject, 256);
    let mut s = session(addr, V::V5, "quota");
    for (pkid, reason) in [(1u16, 0x00u8), (2, 0x00), (3, 0x97)] {
        s.write_all(
            &Publish::new(V::V5, "sensors/quota/temperature", "21.5")
                .qos(1, pkid)
                .bytes(),
        )
        .unwrap();
        expect_ack(
            &mut s,
            PUBACK,
            pkid,
            reason,
            &format!("PUBLISH #{pkid}, 2 slots"),
        );
    }
    let st = server.stats();
    assert_eq!(
        (st.received, st.accepted, st.records, st.rejected),
        (3, 3, 2, 1),
        "{st:?}"
    );
    assert_eq!(server.engine().rejected(TEMPERATURE).unwrap(), 1);
    server.shutdown();
}

/// MQTT 5 [MQTT-3.2.2-14] "A Client receiving Retain Available set to 0 from
/// the Server MUST NOT send a PUBLISH packet with the RETAIN flag set to 1"
/// (§3.3.1.3: the Server then uses DISCONNECT 0x9A, Retain not supported).
/// QoS 0 and 1; not ingested.
#[test]
fn mqtt5_3_2_2_14_retain_gets_disconnect_0x9a() {
    let (server, addr) = start(config());
    for qos in [0u8, 1] {
        let mut s = session(addr, V::V5, "retainer");
        s.write_all(
            &Publish::new(V::V5, "sensors/retain/temperature", "21.5")
                .qos(qos, u16::from(qos))
                .retain()
                .bytes(),
        )
        .unwrap();
        expect_disconnect(&mut s, 0x9A, &format!("PUBLISH QoS {qos} with RETAIN"));
    }
    let last = server.shutdown();
    assert_eq!(last.received, 0, "{last:?}");
}

/// MQTT 5 [MQTT-3.2.2-13] "If a Server receives a CONNECT packet containing
/// a Will Message with the Will Retain 1, and it does not support retained
/// publications, the Server MUST reject the connection request. It SHOULD
/// send CONNACK with Reason Code 0x9A (Retain not supported) and then it
/// MUST close the Network Connection." telering advertises Retain Available
/// 0.
#[test]
fn mqtt5_3_2_2_13_will_retain_is_refused_when_retain_is_unavailable() {
    let (server, addr) = start(config());
    let will = Some(("sensors/w-retain/temperature", "20.5"));
    let mut s = open(addr);
    // Clean start, will flag, will retain.
    s.write_all(&connect_raw(
        b"MQTT",
        5,
        0x02 | 0x04 | 0x20,
        60,
        true,
        "will-retain",
        will,
    ))
    .unwrap();
    match read_within(&mut s, DEADLINE) {
        Got::Closed => {}
        Got::Packet(p) => {
            let ack = parse_connack(&p, V::V5);
            assert_eq!(
                ack.code, 0x9A,
                "CONNECT with Will Retain 1 answered {ack:?}"
            );
            expect_closed(&mut s, "after CONNACK 0x9A");
        }
        other => {
            panic!("CONNECT with Will Retain 1: expected CONNACK 0x9A or the close, got {other:?}")
        }
    }
    wait_no_connections(&server, "the refused connection");
    let last = server.shutdown();
    assert_eq!((last.received, last.wills), (0, 0), "{last:?}");
}

/// MQTT 5 [MQTT-3.2.2-15] "The Client MUST NOT send packets exceeding
/// Maximum Packet Size to the Server" (§3.2.2.3.6: the Server then uses
/// DISCONNECT 0x95, Packet too large); 3.1.1 closes. A PUBLISH announcing
/// 4000 bytes with `max_packet_size` 2048: refused at its header. One of
/// exactly 2048 bytes in all is taken, and its payload (over
/// `max_payload`, 1024) dead-lettered with PUBACK 0x99.
#[test]
fn mqtt5_3_2_2_15_packet_over_maximum_packet_size_gets_disconnect_0x95() {
    let mut cfg = config();
    cfg.mqtt.max_packet_size = 2048;
    let (server, addr) = start(cfg);
    for v in [V::V311, V::V5] {
        let mut s = session(addr, v, "big");
        let mut p = vec![0x32];
        var_int(4000, &mut p);
        mqtt_str(b"sensors/big/temperature", &mut p);
        p.extend_from_slice(&[b'1'; 100]);
        s.write_all(&p).unwrap();
        expect_refused(&mut s, v, 0x95, &format!("a 4000-byte PUBLISH ({v:?})"));
    }
    let mut s = session(addr, V::V5, "big-ok");
    let topic = "sensors/big/temperature";
    // Fixed header 3 bytes (type, 2-byte length), topic 2 + 23, packet id 2,
    // properties 1: the payload makes 2048 in all.
    let payload = vec![b'1'; 2048 - 3 - 2 - topic.len() - 2 - 1];
    let p = Publish::new(V::V5, topic, "")
        .payload_bytes(&payload)
        .qos(1, 1)
        .bytes();
    assert_eq!(p.len(), 2048);
    s.write_all(&p).unwrap();
    expect_ack(
        &mut s,
        PUBACK,
        1,
        0x99,
        "a PUBLISH of exactly Maximum Packet Size",
    );
    let last = server.shutdown();
    assert_eq!((last.received, last.dead_lettered), (1, 1), "{last:?}");
    assert_eq!(last.dead_letter_reasons.get("payload_too_large"), Some(&1));
}

// ---------------------------------------------------------------------------
// SUBSCRIBE, UNSUBSCRIBE, PINGREQ

/// [MQTT-3.8.4-1] "When the Server receives a SUBSCRIBE Packet from a
/// Client, the Server MUST respond with a SUBACK Packet", [MQTT-3.8.4-2]
/// "…the same Packet Identifier", [MQTT-3.8.4-5] "…a return code for each
/// Topic Filter/QoS pair": telering serves no subscriptions, so every code
/// is 0x80 (Failure) in 3.1.1 and a reason of 0x80 or more in MQTT 5
/// ([MQTT-3.9.3-1], [MQTT-3.9.3-2]). The connection stays open.
#[test]
fn mqtt_3_8_4_1_subscribe_gets_suback_refusing_every_filter() {
    let (server, addr) = start(config());
    let filters = ["sensors/#", "sensors/+/temperature", "a"];
    let mut s = session(addr, V::V311, "subscriber");
    s.write_all(&subscribe(V::V311, 0x0102, &filters)).unwrap();
    let p = expect_packet(&mut s, "SUBSCRIBE (3.1.1)");
    assert_eq!(p, [0x90, 0x05, 0x01, 0x02, 0x80, 0x80, 0x80], "SUBACK");
    publish_ok(&mut s, V::V311, "subscriber", 1, "after SUBACK (3.1.1)");

    let mut s = session(addr, V::V5, "subscriber-5");
    s.write_all(&subscribe(V::V5, 0x0304, &filters)).unwrap();
    let p = expect_packet(&mut s, "SUBSCRIBE (v5)");
    assert!(
        p.len() >= 5 && p[0] == 0x90 && usize::from(p[1]) == p.len() - 2,
        "SUBACK: {p:02x?}"
    );
    assert_eq!(
        u16::from_be_bytes([p[2], p[3]]),
        0x0304,
        "SUBACK packet id: {p:02x?}"
    );
    let plen = usize::from(p[4]);
    let codes = &p[5 + plen..];
    assert_eq!(
        codes.len(),
        filters.len(),
        "one reason per filter: {p:02x?}"
    );
    for &c in codes {
        assert!(
            [0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2].contains(&c),
            "a failure reason code: {p:02x?}"
        );
    }
    publish_ok(&mut s, V::V5, "subscriber-5", 1, "after SUBACK (v5)");
    server.shutdown();
}

/// [MQTT-3.10.4-4] "The Server MUST respond to an UNSUBSUBCRIBE [sic] request by
/// sending an UNSUBACK packet" and [MQTT-3.10.4-5] "The UNSUBACK Packet MUST
/// have the same Packet Identifier as the UNSUBSCRIBE Packet. Even where no
/// Topic Subscriptions are deleted, the Server MUST respond with an
/// UNSUBACK" (MQTT 5 the same, and [MQTT-3.11.3-1]: one reason per filter,
/// here 0x11, No subscription existed).
#[test]
fn mqtt_3_10_4_4_unsubscribe_gets_unsuback() {
    let (server, addr) = start(config());
    let mut s = session(addr, V::V311, "unsubscriber");
    s.write_all(&unsubscribe(V::V311, 0x0A0B, &["sensors/#", "x"]))
        .unwrap();
    assert_eq!(
        expect_packet(&mut s, "UNSUBSCRIBE (3.1.1)"),
        [0xB0, 0x02, 0x0A, 0x0B],
        "UNSUBACK"
    );
    let mut s = session(addr, V::V5, "unsubscriber-5");
    s.write_all(&unsubscribe(V::V5, 0x0C0D, &["sensors/#", "x"]))
        .unwrap();
    assert_eq!(
        expect_packet(&mut s, "UNSUBSCRIBE (v5)"),
        [0xB0, 0x05, 0x0C, 0x0D, 0x00, 0x11, 0x11],
        "UNSUBACK"
    );
    publish_ok(&mut s, V::V5, "unsubscriber-5", 1, "after UNSUBACK");
    server.shutdown();
}

/// [MQTT-3.12.4-1] "The Server MUST send a PINGRESP Packet in response to a
/// PINGREQ Packet" (MQTT 5 the same).
#[test]
fn mqtt_3_12_4_1_pingreq_gets_pingresp() {
    let (server, addr) = start(config());
    for v in [V::V311, V::V5] {
        let mut s = session(addr, v, "pinger");
        for _ in 0..3 {
            s.write_all(&PINGREQ).unwrap();
            assert_eq!(expect_packet(&mut s, &format!("PINGREQ ({v:?})")), PINGRESP);
        }
    }
    server.shutdown();
}

// ---------------------------------------------------------------------------
// The will

/// [MQTT-3.1.2-8] "If the Will Flag is set to 1 this indicates that, if the
/// Connect request is accepted, a Will Message MUST be stored on the Server
/// and associated with the Network Connection. The Will Message MUST be
/// published when the Network Connection is subsequently closed unless the
/// Will Message has been deleted by the Server on receipt of a DISCONNECT
/// Packet" (§3.1.2.5 lists the closes: an I/O error or network failure, a
/// protocol error the Server closes for…). A will `20.5` on
/// `sensors/w1/temperature`, the socket dropped without DISCONNECT: the
/// will is ingested; the same over MQTT 5, and after a protocol error (a
/// client-sent SUBACK).
#[test]
fn mqtt_3_1_2_8_will_is_published_when_the_connection_ends_without_disconnect() {
    let (server, addr) = start(config());
    let cases = [
        (V::V311, "sensors/w1/temperature", "dropped (3.1.1)"),
        (V::V5, "sensors/w2/temperature", "dropped (v5)"),
        (
            V::V311,
            "sensors/w3/temperature",
            "closed for a protocol error",
        ),
    ];
    for (i, (v, topic, what)) in cases.into_iter().enumerate() {
        let id = format!("will-{i}");
        let (mut s, _) = session_with(
            addr,
            &connect_with(v, &id, true, 60, Some((topic, "20.5"))),
            v,
            what,
        );
        publish_ok(&mut s, v, &id, 1, what);
        if i == 2 {
            s.write_all(&[0x90, 0x03, 0x00, 0x01, 0x00]).unwrap();
            expect_closed(&mut s, what);
        } else {
            drop(s);
        }
        let n = i as u64 + 1;
        let st = wait_stats(&server, what, |s| s.wills >= n);
        assert_eq!(
            (st.wills, st.received, st.records),
            (n, 2 * n, 2 * n),
            "{what}: the will ingested once: {st:?}"
        );
    }
    assert_eq!(published(&server), 6);
    let last = server.shutdown();
    assert_eq!(
        (last.wills, last.records, last.dead_lettered),
        (3, 6, 0),
        "{last:?}"
    );
}

/// [MQTT-3.14.4-3] (3.1.1) "On receipt of DISCONNECT the Server MUST discard
/// any Will Message associated with the current connection without
/// publishing it" (MQTT 5 [MQTT-3.14.4-3]: with Reason Code 0x00). A clean
/// DISCONNECT: the will is not ingested, over 3.1.1 and MQTT 5 (both the
/// two-byte form and reason 0x00 spelled out). MQTT 5 reason 0x04
/// (Disconnect with Will Message, §3.14.2.1) publishes it.
#[test]
fn mqtt_3_14_4_3_will_is_discarded_on_disconnect() {
    let (server, addr) = start(config());
    let cases: [(V, &[u8], &str); 3] = [
        (V::V311, &DISCONNECT, "DISCONNECT (3.1.1)"),
        (V::V5, &DISCONNECT, "DISCONNECT (v5, remaining length 0)"),
        (V::V5, &[0xE0, 0x02, 0x00, 0x00], "DISCONNECT 0x00 (v5)"),
    ];
    for (i, (v, disconnect, what)) in cases.into_iter().enumerate() {
        let (mut s, _) = session_with(
            addr,
            &connect_with(
                v,
                &format!("quiet-{i}"),
                true,
                60,
                Some(("sensors/w1/temperature", "20.5")),
            ),
            v,
            what,
        );
        s.write_all(disconnect).unwrap();
        expect_closed(&mut s, what);
    }
    wait_no_connections(&server, "the DISCONNECTed connections");
    let st = server.stats();
    assert_eq!((st.wills, st.received, st.records), (0, 0, 0), "{st:?}");

    let what = "DISCONNECT 0x04 (v5)";
    let (mut s, _) = session_with(
        addr,
        &connect_with(
            V::V5,
            "with-will",
            true,
            60,
            Some(("sensors/w1/temperature", "20.5")),
        ),
        V::V5,
        what,
    );
    s.write_all(&[0xE0, 0x02, 0x04, 0x00]).unwrap();
    expect_closed(&mut s, what);
    let st = wait_stats(&server, what, |s| s.wills >= 1);
    assert_eq!(
        (st.wills, st.received, st.records),
        (1, 1, 1),
        "{what}: {st:?}"
    );
    server.shutdown();
}

// ---------------------------------------------------------------------------
// Packets a client must not send

/// [MQTT-4.8.0-1] (3.1.1) "Unless stated otherwise, if either the Server or
/// Client encounters a protocol violation, it MUST close the Network
/// Connection on which it received that Control Packet which caused the
/// protocol violation." CONNACK, SUBACK and PINGRESP are sent by servers
/// only: a client sending one is closed, with nothing sent.
#[test]
fn mqtt_4_8_0_1_client_sent_connack_suback_pingresp_close_the_connection() {
    let (server, addr) = start(config());
    let packets: [(&str, &[u8]); 3] = [
        ("CONNACK", &CONNACK_OK),
        ("SUBACK", &[0x90, 0x03, 0x00, 0x01, 0x00]),
        ("PINGRESP", &PINGRESP),
    ];
    for (name, bytes) in packets {
        let mut s = session(addr, V::V311, "confused");
        s.write_all(bytes).unwrap();
        expect_closed(&mut s, &format!("a client-sent {name} (3.1.1)"));
    }
    server.shutdown();
}

/// MQTT 5 [MQTT-4.13.1-1] "When a Server detects a Malformed Packet or
/// Protocol Error, and a Reason Code is given in the specification, it MUST
/// close the Network Connection" (§4.13.1: it SHOULD send DISCONNECT first,
/// 0x82 Protocol Error). A client-sent CONNACK, SUBACK or PINGRESP.
#[test]
fn mqtt5_4_13_1_1_client_sent_connack_suback_pingresp_get_disconnect_0x82() {
    let (server, addr) = start(config());
    let packets: [(&str, &[u8]); 3] = [
        ("CONNACK", &[0x20, 0x03, 0x00, 0x00, 0x00]),
        ("SUBACK", &[0x90, 0x04, 0x00, 0x01, 0x00, 0x00]),
        ("PINGRESP", &PINGRESP),
    ];
    for (name, bytes) in packets {
        let mut s = session(addr, V::V5, "confused-5");
        s.write_all(bytes).unwrap();
        expect_disconnect(&mut s, 0x82, &format!("a client-sent {name} (v5)"));
    }
    server.shutdown();
}

/// [MQTT-2.2.2-2] (3.1.1) "If invalid flags are received, the receiver MUST
/// close the Network Connection", with [MQTT-3.6.1-1] (PUBREL), [MQTT-3.8.1-1]
/// (SUBSCRIBE) and [MQTT-3.10.1-1] (UNSUBSCRIBE): "Bits 3,2,1 and 0 of the
/// fixed header … MUST be set to 0,0,1 and 0 respectively. The Server MUST
/// treat any other value as malformed and close the Network Connection";
/// PINGREQ's flags are reserved 0 (Table 2.2). MQTT 5 the same (a Malformed
/// Packet: DISCONNECT 0x81). Nothing is answered: no PUBCOMP, SUBACK,
/// UNSUBACK or PINGRESP.
#[test]
fn mqtt_2_2_2_2_invalid_fixed_header_flags_close_the_connection() {
    let (server, addr) = start(config());
    let mut failures = Vec::new();
    for v in [V::V311, V::V5] {
        let mut sub = subscribe(v, 1, &["sensors/#"]);
        sub[0] = 0x80;
        let mut unsub = unsubscribe(v, 1, &["sensors/#"]);
        unsub[0] = 0xA0;
        let packets: [(&str, Vec<u8>); 4] = [
            ("PUBREL with flags 0000", vec![0x60, 0x02, 0x00, 0x01]),
            ("SUBSCRIBE with flags 0000", sub),
            ("UNSUBSCRIBE with flags 0000", unsub),
            ("PINGREQ with flags 0001", vec![0xC1, 0x00]),
        ];
        for (name, bytes) in packets {
            let mut s = session(addr, v, "flags");
            s.write_all(&bytes).unwrap();
            if let Err(e) = check_refused(&mut s, v, 0x81) {
                failures.push(format!("{name} ({v:?}): {e}"));
            }
        }
    }
    server.shutdown();
    assert!(failures.is_empty(), "not refused: {failures:#?}");
}
