//! Authentication, authorization and per-address limits on the endpoint,
//! over real loopback TCP with a real password file (made by `telering
//! passwd`, and by `mosquitto_passwd` where installed) and real clients
//! (hand-written packets, and `mosquitto_pub`).

#![cfg(feature = "cli")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{mqtt_str, packet};
use telering::mqtt::{Server, ServerConfig};

fn passwd(file: &Path, user: &str, password: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_telering"))
        .arg("passwd")
        .arg(file)
        .arg(user)
        .args(["--password", password])
        .output()
        .expect("telering passwd runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CONNECT (3.1.1 level 4, or 5) with optional credentials.
fn connect(v5: bool, id: &str, login: Option<(&str, &str)>) -> Vec<u8> {
    let mut b = Vec::new();
    mqtt_str(b"MQTT", &mut b);
    let mut flags = 0x02u8;
    if login.is_some() {
        flags |= 0xC0;
    }
    b.extend_from_slice(&[if v5 { 5 } else { 4 }, flags, 0, 60]);
    if v5 {
        b.push(0); // no properties
    }
    mqtt_str(id.as_bytes(), &mut b);
    if let Some((u, p)) = login {
        mqtt_str(u.as_bytes(), &mut b);
        mqtt_str(p.as_bytes(), &mut b);
    }
    packet(0x10, &b)
}

fn publish_qos1(v5: bool, topic: &str, pkid: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    mqtt_str(topic.as_bytes(), &mut b);
    b.extend_from_slice(&pkid.to_be_bytes());
    if v5 {
        b.push(0);
    }
    b.extend_from_slice(payload);
    packet(0x32, &b)
}

/// Reads one packet: (first byte, body).
fn read_packet(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut first = [0u8; 1];
    s.read_exact(&mut first).ok()?;
    let mut len = 0usize;
    let mut mult = 1;
    loop {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).ok()?;
        len += usize::from(b[0] & 0x7f) * mult;
        mult *= 128;
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    Some((first[0], body))
}

/// Connects and returns the CONNACK's return/reason code (and the stream).
fn login(addr: SocketAddr, v5: bool, id: &str, creds: Option<(&str, &str)>) -> (u8, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&connect(v5, id, creds)).unwrap();
    let (t, body) = read_packet(&mut s).expect("a CONNACK");
    assert_eq!(t, 0x20, "CONNACK");
    (body[1], s)
}

fn server(dir: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> Server {
    let file = dir.join("passwords");
    if !file.exists() {
        passwd(&file, "dev-1", "secret-1");
        passwd(&file, "dev-2", "secret-2");
    }
    let mut cfg = ServerConfig::default();
    cfg.mqtt.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.ingest.shards = 1;
    cfg.auth.password_file = Some(file);
    tweak(&mut cfg);
    Server::start(cfg).unwrap()
}

#[test]
fn passwords_decide_who_connects_with_the_right_codes() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), |_| {});
    let a = s.local_addr();
    for v5 in [false, true] {
        let (ok, _) = login(a, v5, "dev-1", Some(("dev-1", "secret-1")));
        assert_eq!(ok, 0, "right password (v5 {v5})");
        let (bad, _) = login(a, v5, "dev-1", Some(("dev-1", "wrong")));
        assert_eq!(bad, if v5 { 0x86 } else { 0x04 }, "wrong password");
        let (unknown, _) = login(a, v5, "x", Some(("nobody", "secret-1")));
        assert_eq!(unknown, if v5 { 0x86 } else { 0x04 }, "unknown user");
        let (anon, _) = login(a, v5, "anon", None);
        assert_eq!(anon, if v5 { 0x87 } else { 0x05 }, "anonymous");
    }
    let g = s.guard_stats();
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(g.bad_credentials.load(Relaxed), 4);
    assert_eq!(g.anonymous_refused.load(Relaxed), 2);
    s.shutdown();
}

#[test]
fn the_default_acl_lets_a_device_publish_only_its_own_readings() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), |_| {});
    for v5 in [false, true] {
        let (code, mut c) = login(s.local_addr(), v5, "dev-1", Some(("dev-1", "secret-1")));
        assert_eq!(code, 0);
        c.write_all(&publish_qos1(v5, "sensors/dev-1/temperature", 1, b"21.5"))
            .unwrap();
        c.write_all(&publish_qos1(v5, "sensors/dev-2/temperature", 2, b"99.5"))
            .unwrap();
        for (pkid, reason) in [(1u16, 0u8), (2, 0x87)] {
            let (t, body) = read_packet(&mut c).expect("PUBACK");
            assert_eq!(t, 0x40);
            assert_eq!(u16::from_be_bytes([body[0], body[1]]), pkid);
            // 3.1.1 has no reason: acknowledged and dropped, as mosquitto.
            let got = body.get(2).copied().unwrap_or(0);
            assert_eq!(got, if v5 { reason } else { 0 }, "pkid {pkid} v5 {v5}");
        }
    }
    let stats = s.shutdown();
    assert_eq!(stats.received, 4);
    assert_eq!(stats.accepted, 2);
    assert_eq!(stats.dead_letter_reasons.get("not_authorized"), Some(&2));
}

#[test]
fn a_brute_force_is_throttled_while_another_address_gets_in_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), |c| c.auth.login_failure_delay_ms = 200);
    let a = s.local_addr();
    // Failures from 127.0.0.1: the refusals slow down.
    let started = Instant::now();
    for _ in 0..4 {
        let (code, _) = login(a, false, "dev-1", Some(("dev-1", "guess")));
        assert_eq!(code, 0x04);
    }
    let slowed = started.elapsed();
    // 0 + 200 + 400 + 800 ms.
    assert!(slowed >= Duration::from_millis(1400), "{slowed:?}");
    // The right password from the same address is not delayed (devices
    // behind one NAT), nor from another one.
    let t = Instant::now();
    let (code, _) = login(a, false, "dev-1", Some(("dev-1", "secret-1")));
    assert_eq!(code, 0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let code = rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
        let mut st = sock.connect(a).await.unwrap();
        st.write_all(&connect(false, "dev-2", Some(("dev-2", "secret-2"))))
            .await
            .unwrap();
        let mut ack = [0u8; 4];
        st.read_exact(&mut ack).await.unwrap();
        ack[3]
    });
    assert_eq!(code, 0);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(s.guard_stats().throttled.load(Relaxed), 3);
    s.shutdown();
}

#[test]
fn the_per_address_limit_refuses_the_extra_connections_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), |c| c.auth.max_connections_per_address = 3);
    let a = s.local_addr();
    let held: Vec<_> = (0..3)
        .map(|i| {
            let (code, c) = login(a, false, &format!("dev-1-{i}"), Some(("dev-1", "secret-1")));
            assert_eq!(code, 0);
            c
        })
        .collect();
    let (code, _) = login(a, false, "dev-1-x", Some(("dev-1", "secret-1")));
    assert_eq!(code, 0x03, "server unavailable");
    drop(held);
    // Freed again once they close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, _) = login(a, false, "dev-1-y", Some(("dev-1", "secret-1")));
        if code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the slots never came back");
        std::thread::sleep(Duration::from_millis(20));
    }
    use std::sync::atomic::Ordering::Relaxed;
    assert!(s.guard_stats().address_limit.load(Relaxed) >= 1);
    s.shutdown();
}

#[test]
fn listening_beyond_loopback_needs_authentication_or_an_explicit_yes() {
    let mut cfg = ServerConfig::default();
    cfg.mqtt.listen = SocketAddr::from(([0, 0, 0, 0], 0));
    let err = cfg.check().unwrap_err().to_string();
    assert!(
        err.contains("no authentication is set") && err.contains("allow_anonymous"),
        "{err}"
    );
    cfg.auth.allow_anonymous = Some(true);
    cfg.check().unwrap();
    // On loopback with no password file: anonymous, as mosquitto 2.
    let mut local = ServerConfig::default();
    local.mqtt.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    assert!(local.auth.anonymous_allowed(&local.mqtt.listen));
}

#[test]
fn mosquitto_pub_with_a_user_and_a_mosquitto_passwd_file() {
    let have = |t: &str| Command::new(t).arg("--help").output().is_ok();
    if !have("mosquitto_pub") || !have("mosquitto_passwd") {
        assert!(
            std::env::var_os("TELERING_REQUIRE_MOSQUITTO").is_none(),
            "mosquitto_pub and mosquitto_passwd are required"
        );
        eprintln!("SKIPPED: mosquitto_pub / mosquitto_passwd not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mosq-passwords");
    let st = Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&file)
        .args(["greenhouse-7", "s3cret"])
        .status()
        .unwrap();
    assert!(st.success());
    let s = server(dir.path(), |c| c.auth.password_file = Some(file.clone()));
    let port = s.local_addr().port().to_string();
    let pub_ = |user: &str, pass: &str, topic: &str| {
        Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-q",
                "1",
                "-u",
                user,
                "-P",
                pass,
            ])
            .args(["-t", topic, "-m", "21.5", "-V", "mqttv311"])
            .output()
            .unwrap()
    };
    assert!(
        pub_("greenhouse-7", "s3cret", "sensors/greenhouse-7/temperature")
            .status
            .success()
    );
    let bad = pub_("greenhouse-7", "nope", "sensors/greenhouse-7/temperature");
    assert!(!bad.status.success());
    let stats = s.shutdown();
    assert_eq!((stats.received, stats.accepted), (1, 1));
}

#[test]
fn the_publish_rate_limit_slows_one_client_and_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), |c| {
        c.mqtt.max_publish_rate = 1000;
        c.mqtt.publish_burst = 100;
    });
    let a = s.local_addr();
    let (code, mut fast) = login(a, false, "dev-1", Some(("dev-1", "secret-1")));
    assert_eq!(code, 0);
    const N: usize = 2100;
    let mut burst = Vec::new();
    for _ in 0..N {
        let mut b = Vec::new();
        mqtt_str(b"sensors/dev-1/temperature", &mut b);
        b.extend_from_slice(b"21.5");
        burst.extend_from_slice(&packet(0x30, &b)); // QoS 0
    }
    let started = Instant::now();
    let writer = std::thread::spawn(move || {
        fast.write_all(&burst).unwrap();
        fast
    });
    // Meanwhile another client is served at once.
    std::thread::sleep(Duration::from_millis(300));
    let (code, mut other) = login(a, false, "dev-2", Some(("dev-2", "secret-2")));
    assert_eq!(code, 0);
    let t = Instant::now();
    other
        .write_all(&publish_qos1(
            false,
            "sensors/dev-2/temperature",
            1,
            b"20.5",
        ))
        .unwrap();
    let (kind, _) = read_packet(&mut other).expect("PUBACK");
    assert_eq!(kind, 0x40);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    // The limited one: 100 at once, then 1000 a second; all of them in.
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.stats().accepted < N as u64 + 1 {
        assert!(Instant::now() < deadline, "{:?}", s.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1800), "{took:?}");
    drop(writer.join().unwrap());
    use std::sync::atomic::Ordering::Relaxed;
    assert!(s.guard_stats().rate_limited.load(Relaxed) >= 1);
    let stats = s.shutdown();
    assert_eq!(
        (stats.received, stats.accepted),
        (N as u64 + 1, N as u64 + 1)
    );
}

/// rumqttc (through the simulator) with a user name and password per
/// device, on MQTT 3.1.1 and 5: every message in with the right ones, and
/// the wrong one refused with its CONNACK code.
#[test]
fn rumqttc_devices_log_in_as_themselves() {
    use telering_sim::{Fleet, SimConfig, SimError};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwords");
    let fleet = Fleet::new("auth", 4, 1);
    let mut pw = telering::mqtt::auth::PasswordFile::new();
    for id in fleet.ids() {
        pw.set(id, b"fleet-pw").unwrap();
    }
    pw.save(&file).unwrap();
    let s = server(dir.path(), |c| {
        c.auth.password_file = Some(file.clone());
        // Sixteen failed logins from one address on purpose: not the
        // throttling under test here (0 turns it off).
        c.auth.login_failure_delay_ms = 0;
    });
    let mut sent = 0;
    for v5 in [false, true] {
        let cfg = SimConfig {
            broker: s.local_addr().to_string(),
            sensors: 4,
            count: Some(400),
            duration: None,
            qos: 1,
            client_prefix: "auth".into(),
            mqtt_v5: v5,
            username: Some("{id}".into()),
            password: Some("fleet-pw".into()),
            ..SimConfig::default()
        };
        let summary = telering_sim::run_blocking(cfg.clone()).unwrap();
        assert_eq!((summary.sent, summary.acked), (400, 400), "v5 {v5}");
        sent += 400;
        let wrong = SimConfig {
            password: Some("nope".into()),
            ..cfg.clone()
        };
        match telering_sim::run_blocking(wrong) {
            Err(SimError::Refused {
                refused, refusal, ..
            }) => {
                assert_eq!(refused, 4);
                assert_eq!(refusal.code, if v5 { 0x86 } else { 0x04 }, "{refusal:?}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let anonymous = SimConfig {
            username: None,
            password: None,
            ..cfg
        };
        match telering_sim::run_blocking(anonymous) {
            Err(SimError::Refused {
                refused, refusal, ..
            }) => {
                assert_eq!(refused, 4);
                assert_eq!(refusal.code, if v5 { 0x87 } else { 0x05 }, "{refusal:?}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    let g = s.guard_stats();
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(g.bad_credentials.load(Relaxed), 8);
    assert_eq!(g.anonymous_refused.load(Relaxed), 8);
    let stats = s.shutdown();
    assert_eq!((stats.received, stats.accepted), (sent, sent));
}

/// A SUBSCRIBE (v5: no properties) asking QoS 0 for each filter.
fn subscribe(v5: bool, pkid: u16, filters: &[&str]) -> Vec<u8> {
    let mut b = pkid.to_be_bytes().to_vec();
    if v5 {
        b.push(0);
    }
    for f in filters {
        mqtt_str(f.as_bytes(), &mut b);
        b.push(0);
    }
    packet(0x82, &b)
}

/// The reason codes of the SUBACK answering `pkid`.
fn suback_codes(c: &mut TcpStream, v5: bool, pkid: u16) -> Vec<u8> {
    let (t, body) = read_packet(c).expect("a SUBACK");
    assert_eq!(t, 0x90, "SUBACK");
    assert_eq!(u16::from_be_bytes([body[0], body[1]]), pkid);
    let skip = if v5 { 3 + usize::from(body[2]) } else { 2 };
    body[skip..].to_vec()
}

/// Each filter of a SUBSCRIBE is refused for its own reason: past
/// `max_subscriptions` (0x97), without read access in the ACL (0x87),
/// malformed (0x8F), or, allowed, as not served (0x83); MQTT 3.1.1 says
/// 0x80 to all. The ACL and limit refusals are counted exactly, and the
/// client goes on publishing.
#[test]
fn subscriptions_are_refused_by_the_acl_and_the_limit_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "user dev-1\ntopic readwrite sensors/dev-1/#\ntopic read public/#\n",
    )
    .unwrap();
    let s = server(dir.path(), |c| {
        c.auth.acl_file = Some(acl);
        c.mqtt.max_subscriptions = 3;
    });
    for v5 in [true, false] {
        let (code, mut c) = login(s.local_addr(), v5, "dev-1", Some(("dev-1", "secret-1")));
        assert_eq!(code, 0);
        let filters = [
            "sensors/dev-1/#",
            "sensors/#",
            "sensors/+x/temperature",
            "public/news",
            "sensors/dev-1/humidity",
        ];
        c.write_all(&subscribe(v5, 7, &filters)).unwrap();
        let want: &[u8] = if v5 {
            &[0x83, 0x87, 0x8F, 0x97, 0x97]
        } else {
            &[0x80; 5]
        };
        assert_eq!(suback_codes(&mut c, v5, 7), want, "v5 {v5}");
        c.write_all(&publish_qos1(v5, "sensors/dev-1/temperature", 8, b"20.5"))
            .unwrap();
        let (t, body) = read_packet(&mut c).expect("PUBACK");
        assert_eq!((t, u16::from_be_bytes([body[0], body[1]])), (0x40, 8));
    }
    let g = s.guard_stats();
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(g.subscribe_not_authorized.load(Relaxed), 2);
    assert_eq!(g.subscription_limit.load(Relaxed), 4);
    let stats = s.shutdown();
    assert_eq!(stats.accepted, 2);
}

/// Every connection limit, hit once each, is counted exactly, and a device
/// within the limits goes on publishing: `max_connections` (CONNACK
/// "server unavailable"), `connect_timeout_ms`, keep-alive (1.5×),
/// `max_packet_size`, and the MQTT 5 Receive Maximum (QoS 2 messages held
/// unreleased count against it).
#[test]
fn each_connection_limit_hit_is_counted_and_others_still_ingest() {
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), |c| {
        c.mqtt.max_connections = 2;
        c.mqtt.connect_timeout_ms = 300;
        c.mqtt.max_packet_size = 128;
        c.mqtt.receive_maximum = 2;
        c.ingest.max_payload = 64;
    });
    let a = s.local_addr();
    let g = s.guard_stats();
    let (ok, mut first) = login(a, false, "dev-1", Some(("dev-1", "secret-1")));
    assert_eq!(ok, 0);
    let (ok, mut big) = login(a, false, "dev-2", Some(("dev-2", "secret-2")));
    assert_eq!(ok, 0);
    // A third while two are connected.
    let (full, _) = login(a, false, "dev-1-b", Some(("dev-1", "secret-1")));
    assert_eq!(full, 0x03, "server unavailable");
    assert_eq!(g.connection_limit.load(Relaxed), 1);
    // A packet over max_packet_size closes its connection.
    big.write_all(&publish_qos1(
        false,
        "sensors/dev-2/temperature",
        1,
        &[b'1'; 200],
    ))
    .unwrap();
    assert!(read_packet(&mut big).is_none(), "closed");
    wait_connections(&s, 1);
    // Silence after connecting: closed at connect_timeout_ms.
    let mut quiet = TcpStream::connect(a).unwrap();
    quiet
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t0 = Instant::now();
    assert!(read_packet(&mut quiet).is_none(), "closed");
    assert!(t0.elapsed() >= Duration::from_millis(250));
    // Keep-alive 1 s and nothing sent: closed after about 1.5 s.
    let mut idle = TcpStream::connect(a).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut c = connect(true, "dev-2", Some(("dev-2", "secret-2")));
    c[11] = 1; // keep-alive LSB (fixed header 2, "MQTT" 6, level, flags, MSB)
    assert_eq!(c[10], 0);
    idle.write_all(&c).unwrap();
    let (t, body) = read_packet(&mut idle).expect("CONNACK");
    assert_eq!((t, body[1]), (0x20, 0));
    let t0 = Instant::now();
    let (t, body) = read_packet(&mut idle).expect("DISCONNECT");
    assert_eq!((t, body[0]), (0xE0, 0x8D), "keep-alive timeout");
    assert!(t0.elapsed() >= Duration::from_millis(1400));
    wait_connections(&s, 1);
    // Three QoS 2 messages never released, Receive Maximum 2 (MQTT 5).
    let (ok, mut greedy) = login(a, true, "dev-2", Some(("dev-2", "secret-2")));
    assert_eq!(ok, 0);
    for pkid in 1..=3u16 {
        let mut p = publish_qos1(true, "sensors/dev-2/humidity", pkid, b"40");
        p[0] = 0x34; // QoS 2
        greedy.write_all(&p).unwrap();
    }
    let mut last = None;
    while let Some((t, body)) = read_packet(&mut greedy) {
        last = Some((t, body.first().copied()));
    }
    assert_eq!(last, Some((0xE0, Some(0x93))), "receive maximum exceeded");
    // The first device is still served.
    first
        .write_all(&publish_qos1(
            false,
            "sensors/dev-1/temperature",
            9,
            b"20.5",
        ))
        .unwrap();
    let (t, body) = read_packet(&mut first).expect("PUBACK");
    assert_eq!((t, u16::from_be_bytes([body[0], body[1]])), (0x40, 9));
    assert_eq!(g.connection_limit.load(Relaxed), 1);
    assert_eq!(g.packet_too_large.load(Relaxed), 1);
    assert_eq!(g.connect_timeouts.load(Relaxed), 1);
    assert_eq!(g.keep_alive_timeouts.load(Relaxed), 1);
    assert_eq!(g.receive_maximum_exceeded.load(Relaxed), 1);
    let stats = s.shutdown();
    // dev-1's reading and the two QoS 2 messages taken before the third.
    assert_eq!(stats.accepted, 3, "{stats:?}");
}

/// Waits until the server serves `n` connections (a closed connection
/// leaves the count just after its last packet goes out).
fn wait_connections(s: &Server, n: usize) {
    let t0 = Instant::now();
    while s.connections() != n {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{} connections",
            s.connections()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
