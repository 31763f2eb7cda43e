//! MQTT ingest over real TCP loopback with a real client (rumqttc): valid and
//! invalid messages at QoS 0 and 1, exact counts, per-device order (on both
//! slot layouts); and the `telering serve` binary end to end, stopped by
//! SIGTERM.
#![cfg(feature = "mqtt")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use telering::mqtt::{Server, ServerConfig, HUMIDITY, TEMPERATURE};
use telering::{ConsumerConfig, GroupMode, SlotLayout};

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn test_config() -> ServerConfig {
    let mut cfg = ServerConfig::default();
    cfg.mqtt.listen = free_addr();
    cfg.ingest.capacity = 4096;
    cfg
}

/// Publishes every message with one client and returns once all are on the
/// wire (QoS 0: sent, then a clean DISCONNECT) or acknowledged (QoS 1: one
/// PubAck each, then DISCONNECT), and the server has closed the connection.
fn publish_all(addr: SocketAddr, client: &str, msgs: &[(String, Vec<u8>)], qos: QoS) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut opts = MqttOptions::new(client, addr.ip().to_string(), addr.port());
        opts.set_max_packet_size(64 * 1024, 64 * 1024);
        opts.set_keep_alive(Duration::from_secs(30));
        let (c, mut ev) = AsyncClient::new(opts, 64);
        let n = msgs.len();
        let msgs = msgs.to_vec();
        let publisher = c.clone();
        let sender = tokio::spawn(async move {
            for (t, p) in msgs {
                publisher.publish(t, qos, false, p).await.unwrap();
            }
        });
        let (mut acks, mut sent, mut disconnecting) = (0, 0, false);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let e = tokio::time::timeout_at(deadline, ev.poll())
                .await
                .expect("publishing timed out");
            let e = match e {
                Ok(e) => e,
                // The server closing the connection after our DISCONNECT.
                Err(_) if disconnecting => break,
                Err(e) => panic!("connection failed: {e}"),
            };
            match e {
                Event::Incoming(Packet::PubAck(_)) => acks += 1,
                Event::Outgoing(Outgoing::Publish(_)) => sent += 1,
                _ => {}
            }
            let done = sent == n && (qos == QoS::AtMostOnce || acks == n);
            if done && !disconnecting {
                disconnecting = true;
                c.disconnect().await.unwrap();
            }
        }
        sender.await.unwrap();
        assert_eq!(sent, n);
        if qos == QoS::AtLeastOnce {
            assert_eq!(acks, n, "every QoS 1 message acknowledged");
        }
    });
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn valid_and_invalid_messages_at_qos0_and_qos1_are_counted_exactly_and_in_order() {
    for layout in [SlotLayout::Packed, SlotLayout::Marked] {
        counted_exactly_and_in_order(layout);
    }
}

fn counted_exactly_and_in_order(layout: SlotLayout) {
    let mut cfg = test_config();
    cfg.ingest.layout = layout;
    let server = Server::start(cfg).unwrap();
    let engine = server.engine().clone();
    let mut cluster = engine.consumer(ConsumerConfig::cluster("check")).unwrap();
    cluster.subscribe(&[TEMPERATURE, HUMIDITY]).unwrap();
    let mut bcast = engine.consumer(ConsumerConfig::broadcast("all")).unwrap();
    bcast.subscribe(&[TEMPERATURE]).unwrap();

    // Per device: a rising sequence encoded in the value, mixed formats.
    let devices = ["dev-a", "dev-b", "dev-c"];
    let mut valid = Vec::new();
    for seq in 0..200u32 {
        for d in devices {
            let t = -40.0 + f64::from(seq) * 0.5;
            let msg = match seq % 3 {
                0 => (format!("sensors/{d}/temperature"), format!("{t}")),
                1 => (
                    format!("sensors/{d}/temperature"),
                    format!("{{\"ts\": {}, \"value\": {t}}}", 1_000 + seq),
                ),
                _ => (
                    format!("sensors/{d}/reading"),
                    format!("{{\"temperature\": {t}, \"humidity\": 50}}"),
                ),
            };
            valid.push((msg.0, msg.1.into_bytes()));
        }
    }
    let invalid: Vec<(String, Vec<u8>)> = vec![
        ("sensors/dev-a/temperature".into(), b"NaN".to_vec()),
        ("sensors/dev-a/temperature".into(), b"126".to_vec()),
        ("sensors/dev-a/humidity".into(), b"101".to_vec()),
        ("sensors/dev-a/humidity".into(), b"humid".to_vec()),
        ("sensors/dev-a/humidity".into(), vec![0xc3, 0x28]),
        ("sensors/dev-a/pressure".into(), b"1013".to_vec()),
        (
            "sensors/a-very-long-device-name/temperature".into(),
            b"20".to_vec(),
        ),
        ("sensors//temperature".into(), b"20".to_vec()),
        ("lights/kitchen".into(), b"on".to_vec()),
        ("sensors/dev-a/temperature".into(), vec![b'1'; 2000]),
    ];
    let (half_a, half_b) = valid.split_at(valid.len() / 2);
    let mut first: Vec<_> = half_a.to_vec();
    first.extend(invalid.iter().take(5).cloned());
    let mut second: Vec<_> = half_b.to_vec();
    second.extend(invalid.iter().skip(5).cloned());
    // Two sessions one after the other: the server closes a connection only
    // once its records are in their partitions, so the second session, which
    // starts after that close, cannot overtake the first.
    let addr = server.local_addr();
    publish_all(addr, "qos0", &first, QoS::AtMostOnce);
    publish_all(addr, "qos1", &second, QoS::AtLeastOnce);

    let sent = (valid.len() + invalid.len()) as u64;
    wait_for("every message to be ingested", || {
        server.stats().received == sent
    });
    let s = server.shutdown();
    assert_eq!(s.received, sent);
    assert_eq!(s.accepted, valid.len() as u64);
    assert_eq!(s.dead_lettered, invalid.len() as u64);
    assert_eq!(s.rejected, 0);
    let want: BTreeMap<String, u64> = [
        ("not_finite", 1),
        ("temperature_out_of_range", 1),
        ("humidity_out_of_range", 1),
        ("not_json", 1),
        ("not_utf8", 1),
        ("unknown_metric", 1),
        ("device_id_too_long", 1),
        ("device_id_empty", 1),
        ("unknown_topic", 1),
        ("payload_too_large", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(s.dead_letter_reasons, want);
    let readings = valid.iter().filter(|m| m.0.ends_with("/reading")).count() as u64;
    assert_eq!(s.records, valid.len() as u64 + readings);

    assert_eq!(s.dead_letter_reasons.values().sum::<u64>(), s.dead_lettered);

    // Consumers: every record exactly once, each device's in order.
    let mut per_device: BTreeMap<(u32, String), Vec<f32>> = BTreeMap::new();
    let mut got = 0u64;
    loop {
        let b = cluster.poll(512, Duration::from_millis(100)).unwrap();
        if b.is_empty() {
            break;
        }
        got += b.len() as u64;
        for r in b.iter() {
            per_device
                .entry((r.topic.index(), r.value.device.as_str().to_owned()))
                .or_default()
                .push(if r.value.temperature.is_nan() {
                    r.value.humidity
                } else {
                    r.value.temperature
                });
        }
    }
    assert_eq!(got, s.records);
    for ((topic, device), values) in &per_device {
        if *topic == engine.topic_id(TEMPERATURE).unwrap().index() {
            assert!(
                values.windows(2).all(|w| w[0] < w[1]),
                "{device}: temperatures out of order"
            );
            assert_eq!(values.len(), 200, "{device}");
        }
    }
    let mut b_got = 0;
    loop {
        let b = bcast.poll(512, Duration::from_millis(100)).unwrap();
        if b.is_empty() {
            break;
        }
        b_got += b.len() as u64;
    }
    assert_eq!(b_got, valid.len() as u64);
    assert_eq!(bcast.mode(), GroupMode::Broadcast);
}

#[test]
fn dead_letter_topic_keeps_reason_and_raw_payload() {
    let server = Server::start(test_config()).unwrap();
    let mut c = server
        .dead_letters()
        .consumer(ConsumerConfig::cluster("ops"))
        .unwrap();
    c.subscribe(&[telering::mqtt::DEAD_LETTER]).unwrap();
    let msgs = vec![
        ("sensors/x/temperature".to_owned(), b"NaN".to_vec()),
        ("sensors/x/humidity".to_owned(), b"250".to_vec()),
    ];
    publish_all(server.config().mqtt.listen, "dl", &msgs, QoS::AtLeastOnce);
    wait_for("dead letters", || server.stats().dead_lettered == 2);
    let b = c.poll(10, Duration::from_secs(5)).unwrap();
    let got: Vec<(String, String, Vec<u8>)> = b
        .iter()
        .map(|r| {
            (
                r.value.reason().code().to_owned(),
                String::from_utf8_lossy(r.value.topic()).into_owned(),
                r.value.payload().to_vec(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "not_finite".into(),
                "sensors/x/temperature".into(),
                b"NaN".to_vec()
            ),
            (
                "humidity_out_of_range".into(),
                "sensors/x/humidity".into(),
                b"250".to_vec()
            ),
        ]
    );
    server.shutdown();
}

/// A consumer that joins the engine of a prepared server before it listens
/// sees the very first acknowledged reading, even starting at the latest
/// offset (what `serve` does with the broadcast group `stats`).
#[test]
fn consumers_joined_before_listen_see_the_first_reading() {
    let prepared = Server::prepare(test_config()).unwrap();
    let mut c = prepared
        .engine()
        .consumer(ConsumerConfig::broadcast("late").offset_reset(telering::OffsetReset::Latest))
        .unwrap();
    c.subscribe(&[HUMIDITY]).unwrap();
    let server = prepared.listen().unwrap();
    let msgs = vec![("sensors/first/humidity".to_owned(), b"41".to_vec())];
    publish_all(server.local_addr(), "first", &msgs, QoS::AtLeastOnce);
    let b = c.poll(16, Duration::from_secs(5)).unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b.iter().next().unwrap().value.humidity, 41.0);
    c.close();
    server.shutdown();
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = test_config();
    cfg.mqtt.listen = taken.local_addr().unwrap();
    let err = Server::start(cfg).unwrap_err();
    assert!(err.to_string().contains("cannot listen on"), "{err}");
}

#[test]
fn serve_binary_counts_and_prints_a_json_summary_on_sigterm() {
    let v4 = free_addr();
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_telering"))
            .args(["serve", "--mqtt", &v4.to_string(), "--every", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the server to listen", || TcpStream::connect(v4).is_ok());
    let mut msgs: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            (
                format!("sensors/s{}/humidity", i % 7),
                format!("{}", i % 100).into_bytes(),
            )
        })
        .collect();
    msgs.push(("sensors/s1/humidity".into(), b"-3".to_vec()));
    publish_all(v4, "serve-test", &msgs, QoS::AtLeastOnce);
    // SIGTERM: clean shutdown, JSON summary as the last line.
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = BufReader::new(child.0.stdout.take().unwrap());
    let last = out.lines().map_while(Result::ok).last().unwrap_or_default();
    assert!(child.0.wait().unwrap().success());
    let v: serde_json::Value = serde_json::from_str(&last).expect("last line is JSON");
    assert_eq!(v["received"], 301);
    assert_eq!(v["accepted"], 300);
    assert_eq!(v["dead_lettered"], 1);
    assert_eq!(v["dead_letter_reasons"]["humidity_out_of_range"], 1);
    assert_eq!(v["delivered"]["alerts"], 300);
    assert_eq!(v["delivered"]["stats"], 300);
    assert_eq!(v["dropped"], 0);
    assert!(v["latency_us"]["p99"].as_u64().is_some());
}

/// Kills the server if the test fails before it stops it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Connection affinity: with 2 shards, devices whose client id is their
/// device id are served by the shard that owns their partition, so none of
/// their records crosses a thread; a gateway publishing for many devices
/// hands some over. Counts are exact either way.
#[test]
fn devices_publishing_their_own_id_cross_no_shard() {
    let mut cfg = test_config();
    cfg.ingest.shards = 2;
    let server = Server::start(cfg).unwrap();
    let addr = server.local_addr();
    for d in 0..8 {
        let id = format!("dev-{d}");
        let msgs: Vec<(String, Vec<u8>)> = (0..20)
            .map(|i| {
                (
                    format!("sensors/{id}/temperature"),
                    format!("{i}").into_bytes(),
                )
            })
            .collect();
        publish_all(addr, &id, &msgs, QoS::AtLeastOnce);
    }
    let s = server.stats();
    assert_eq!((s.received, s.records, s.forwarded), (160, 160, 0), "{s:?}");
    let msgs: Vec<(String, Vec<u8>)> = (0..64)
        .map(|i| (format!("sensors/dev-{}/temperature", i % 8), b"20".to_vec()))
        .collect();
    publish_all(addr, "gateway", &msgs, QoS::AtLeastOnce);
    let s = server.shutdown();
    assert_eq!((s.received, s.records), (224, 224), "{s:?}");
    assert!(s.forwarded > 0 && s.forwarded < 64, "{s:?}");
}
