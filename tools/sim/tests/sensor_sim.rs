//! The sensor simulator against telering's MQTT endpoint (in-process, on a
//! free loopback port, MQTT 3.1.1 and 5 on one port): what the server
//! ingests must match the simulator's summary exactly, message for message
//! and reason for reason.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use telering::mqtt::{IngestSnapshot, Server, ServerConfig};
use telering_sim::{self as sim, Format, Rate, SimConfig, SimError, SimSummary};

/// What the server ingested since the last look, as validation classified it.
#[derive(Debug, Default, Clone, PartialEq)]
struct Seen {
    total: u64,
    valid: u64,
    records: u64,
    by_reason: BTreeMap<String, u64>,
}

struct TestBroker {
    server: Server,
    last: Mutex<IngestSnapshot>,
}

impl TestBroker {
    fn broker(&self, _v5: bool) -> String {
        self.server.local_addr().to_string()
    }

    /// The counts since the previous call.
    fn take(&self) -> Seen {
        let now = self.server.stats();
        let mut last = self.last.lock().unwrap();
        let by_reason = now
            .dead_letter_reasons
            .iter()
            .map(|(r, n)| {
                (
                    r.clone(),
                    n - last.dead_letter_reasons.get(r).copied().unwrap_or(0),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        let seen = Seen {
            total: now.received - last.received,
            valid: now.accepted - last.accepted,
            records: now.records - last.records,
            by_reason,
        };
        *last = now;
        seen
    }

    /// Waits until the server ingested at least `n` more messages (or 10 s),
    /// then a little longer to catch any extra, and returns the counts.
    fn wait_for(&self, n: u64) -> Seen {
        let deadline = Instant::now() + Duration::from_secs(10);
        let base = self.last.lock().unwrap().received;
        while self.server.stats().received - base < n && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        thread::sleep(Duration::from_millis(300));
        self.take()
    }
}

/// A loopback port where nothing listens, for "unreachable broker" runs.
/// Taken below the kernel's ephemeral range (which starts at 32768 by
/// default): a port-0 bind elsewhere in this run (a broker, a proxy) can
/// never be handed it, so these sensors cannot reach another test's
/// listener by chance.
fn closed_port() -> u16 {
    let start = 20_000 + (std::process::id() % 10_000) as u16;
    (start..30_000)
        .chain(20_000..start)
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free loopback port below the ephemeral range")
}

/// telering's server with its default configuration on a free port.
fn start_broker() -> TestBroker {
    let mut cfg = ServerConfig::default();
    cfg.mqtt.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = Server::start(cfg).expect("the server starts");
    TestBroker {
        server,
        last: Mutex::new(IngestSnapshot::default()),
    }
}

fn assert_matches(summary: &SimSummary, seen: &Seen) {
    eprintln!(
        "summary: {}",
        serde_json::to_string(summary).unwrap_or_default()
    );
    assert_eq!(summary.errors, 0, "{summary:?}");
    assert_eq!(summary.lost, 0, "{summary:?}");
    assert_eq!(seen.total, summary.sent, "{seen:?} vs {summary:?}");
    assert_eq!(seen.valid, summary.valid, "{seen:?} vs {summary:?}");
    assert_eq!(seen.records, summary.records, "{seen:?} vs {summary:?}");
    assert_eq!(seen.by_reason, summary.malformed_by_reason);
    assert_eq!(summary.valid + summary.malformed, summary.sent);
    if summary.qos == 1 {
        assert_eq!(summary.acked, summary.sent);
    }
}

fn counted(broker: &TestBroker, v5: bool, prefix: &str, qos: u8, count: u64) -> SimConfig {
    SimConfig {
        broker: broker.broker(v5),
        sensors: 20,
        rate: Rate::Unlimited,
        duration: None,
        count: Some(count),
        qos,
        malformed: 0.2,
        format: Format::Mixed,
        seed: 7,
        client_prefix: prefix.to_owned(),
        mqtt_v5: v5,
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_sees_exactly_what_the_summary_says() {
    let broker = start_broker();
    for qos in [0, 1] {
        let cfg = counted(&broker, false, &format!("q{qos}"), qos, 2000);
        let summary = sim::run(cfg, None).await.expect("simulation runs");
        assert_eq!(summary.sent, 2000);
        assert_eq!(summary.sensors, 20);
        assert_eq!(summary.qos, qos);
        // 20 % malformed, each sensor cycling from a different reason: all
        // twelve reasons show up in 2000 messages.
        assert_eq!(summary.malformed_by_reason.len(), 12, "{summary:?}");
        assert!((300..500).contains(&summary.malformed), "{summary:?}");
        let seen = broker.wait_for(summary.sent);
        assert_matches(&summary, &seen);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_qos1_and_qos0() {
    let broker = start_broker();
    for qos in [1, 0] {
        let cfg = counted(&broker, true, &format!("v5q{qos}"), qos, 1000);
        let summary = sim::run(cfg, None).await.expect("simulation runs");
        assert_eq!(summary.sent, 1000);
        let seen = broker.wait_for(summary.sent);
        assert_matches(&summary, &seen);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_run_stops_on_time() {
    let broker = start_broker();
    let cfg = SimConfig {
        broker: broker.broker(false),
        sensors: 10,
        rate: Rate::Total(2000.0),
        duration: Some(Duration::from_secs(1)),
        count: None,
        qos: 1,
        malformed: 0.05,
        format: Format::Mixed,
        seed: 1,
        client_prefix: "rated".into(),
        mqtt_v5: false,
        ..SimConfig::default()
    };
    let summary = sim::run(cfg, None).await.expect("simulation runs");
    // 2000 msgs/s for 1 s, spread over 10 sensors at 200 msgs/s each.
    assert!((1900..=2000).contains(&summary.sent), "{summary:?}");
    assert!(summary.duration_s < 2.0, "{summary:?}");
    let seen = broker.wait_for(summary.sent);
    assert_matches(&summary, &seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_and_duration_whichever_first_and_stop_signal() {
    let broker = start_broker();
    // count first
    let cfg = SimConfig {
        broker: broker.broker(false),
        sensors: 3,
        rate: Rate::PerSensor(1000.0),
        duration: Some(Duration::from_secs(30)),
        count: Some(100),
        format: Format::Reading,
        client_prefix: "first".into(),
        ..SimConfig::default()
    };
    let summary = sim::run(cfg.clone(), None).await.expect("runs");
    assert_eq!(summary.sent, 100);
    assert_eq!(summary.records, 200);
    assert_matches(&summary, &broker.wait_for(100));

    // the stop signal, with neither count nor duration
    let (tx, rx) = tokio::sync::watch::channel(false);
    let cfg = SimConfig {
        duration: None,
        count: None,
        client_prefix: "stopped".into(),
        ..cfg
    };
    let started = Instant::now();
    let run = tokio::spawn(sim::run(cfg, Some(rx)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    tx.send(true).expect("signal");
    let summary = run.await.expect("joins").expect("runs");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(summary.sent > 100, "{summary:?}");
    assert_matches(&summary, &broker.wait_for(summary.sent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_is_a_connect_error_not_a_hang() {
    let port = closed_port();
    let cfg = SimConfig {
        broker: format!("127.0.0.1:{port}"),
        sensors: 5,
        ..SimConfig::default()
    };
    let started = Instant::now();
    let err = sim::run(cfg, None)
        .await
        .expect_err("nothing listens there");
    assert!(
        matches!(err, SimError::Connect { connected: 0, .. }),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(8), "{err}");
    eprintln!("{err}");
}

/// Throughput on loopback; run with `--ignored --nocapture` to see numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    let broker = start_broker();
    for (sensors, qos) in [(20, 0), (20, 1), (200, 0), (200, 1)] {
        let cfg = SimConfig {
            broker: broker.broker(false),
            sensors,
            rate: Rate::Unlimited,
            duration: Some(Duration::from_secs(3)),
            count: None,
            qos,
            client_prefix: format!("tp{sensors}q{qos}"),
            ..SimConfig::default()
        };
        let summary = sim::run(cfg, None).await.expect("runs");
        let seen = broker.wait_for(summary.sent);
        eprintln!(
            "{sensors} sensors qos{qos}: {:.0} msgs/s ({} sent, broker saw {})",
            summary.rate, summary.sent, seen.total
        );
        assert_matches(&summary, &seen);
    }
}

/// The `sensor-sim` binary end to end: one JSON summary line on stdout that
/// matches what the broker saw; a clear error and a non-zero exit otherwise.
#[test]
fn sensor_sim_binary() {
    use std::process::Command;
    let broker = start_broker();
    let out = Command::new(env!("CARGO_BIN_EXE_sensor-sim"))
        .args(["--broker", &broker.broker(false)])
        .args(["--sensors", "5", "--count", "500", "--qos", "1"])
        .args(["--malformed", "0.1", "--format", "json", "--unlimited"])
        .args(["--client-prefix", "bin", "--seed", "3"])
        .output()
        .expect("runs sensor-sim");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON summary");
    let seen = broker.wait_for(500);
    assert_eq!(v["sent"], 500);
    assert_eq!(v["acked"], 500);
    assert_eq!(v["qos"], 1);
    assert_eq!(v["errors"], 0);
    assert_eq!(v["sent"], seen.total);
    assert_eq!(v["valid"], seen.valid);
    assert_eq!(v["records"], seen.records);
    let by_reason: BTreeMap<String, u64> =
        serde_json::from_value(v["malformed_by_reason"].clone()).expect("map");
    assert_eq!(by_reason, seen.by_reason);

    let out = Command::new(env!("CARGO_BIN_EXE_sensor-sim"))
        .args(["--broker", &format!("127.0.0.1:{}", closed_port())])
        .args(["--sensors", "2", "--mqtt5"])
        .output()
        .expect("runs sensor-sim");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("could not connect"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_sensor-sim"))
        .args(["--malformed", "2"])
        .output()
        .expect("runs sensor-sim");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("malformed"), "{stderr}");
}

/// A TCP proxy in front of the broker that can cut every connection through
/// it (`cut`), or die altogether (`kill`).
struct Proxy {
    port: u16,
    cut: tokio::sync::watch::Sender<u64>,
    /// Set by `kill`: connections are closed as soon as they are accepted.
    gone: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (cut, cut_rx) = tokio::sync::watch::channel(0u64);
        let gone = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refusing = gone.clone();
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                if refusing.load(std::sync::atomic::Ordering::Relaxed) {
                    drop(down);
                    continue;
                }
                let upstream = upstream.clone();
                let mut cut_rx = cut_rx.clone();
                cut_rx.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Proxy { port, cut, gone }
    }

    fn cut(&self) {
        self.cut.send_modify(|g| *g += 1);
    }

    /// The broker is gone: every connection is cut and new ones are closed
    /// at once. The port stays bound (until the test ends), so a listener of
    /// a test running beside this one cannot be given it while the
    /// sensors keep reconnecting to it.
    fn kill(&self) {
        self.gone.store(true, std::sync::atomic::Ordering::Relaxed);
        self.cut();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_mid_run_are_counted_not_fatal() {
    let broker = start_broker();
    let proxy = Proxy::start(broker.broker(false)).await;
    let cfg = SimConfig {
        broker: format!("127.0.0.1:{}", proxy.port),
        sensors: 10,
        rate: Rate::Total(2000.0),
        duration: Some(Duration::from_millis(1500)),
        qos: 1,
        malformed: 0.1,
        client_prefix: "cut".into(),
        ..SimConfig::default()
    };
    let run = tokio::spawn(sim::run(cfg, None));
    tokio::time::sleep(Duration::from_millis(600)).await;
    proxy.cut();
    let summary = run.await.expect("joins").expect("runs");
    let seen = broker.wait_for(summary.sent);
    eprintln!("{summary:?}\n{seen:?}");
    assert!(summary.errors >= 10, "{summary:?}");
    assert!(summary.reconnects >= 10, "{summary:?}");
    assert_eq!(summary.lost, summary.sent - summary.acked);
    // What was acknowledged arrived; nothing arrived twice.
    assert!(summary.acked <= seen.total && seen.total <= summary.sent);
    // The run went on after the cut.
    assert!(summary.acked > 2000, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_gone_mid_run_ends_the_run_in_bounded_time() {
    let broker = start_broker();
    let proxy = Proxy::start(broker.broker(false)).await;
    let cfg = SimConfig {
        broker: format!("127.0.0.1:{}", proxy.port),
        sensors: 5,
        rate: Rate::Unlimited,
        duration: None,
        count: None,
        qos: 1,
        client_prefix: "gone".into(),
        ..SimConfig::default()
    };
    let (tx, rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let run = tokio::spawn(sim::run(cfg, Some(rx)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    tx.send(true).expect("stop");
    let summary = run.await.expect("joins").expect("runs");
    eprintln!("{:?} {summary:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(summary.errors >= 5, "{summary:?}");
    assert_eq!(summary.lost, summary.sent - summary.acked);
    let seen = broker.wait_for(summary.sent);
    assert!(summary.acked <= seen.total && seen.total <= summary.sent);
}

// ---------------------------------------------------------------------------
// The generated messages against telering's validation: the simulator links
// no part of telering, so these tests keep its faults and telering's reasons
// one list.

mod messages {
    use std::sync::{Arc, Mutex};

    use telering::mqtt::validate::{validate, Limits, Metric, Reason};
    use telering_sim::generator::{malformed_message, valid_message};
    use telering_sim::{now_us, Class, Fault, Fleet, Format, Generator, Message, Shape};

    fn check(m: &Message) {
        let got = validate(m.topic.as_bytes(), &m.payload, &Limits::default(), 0);
        match (m.class, got) {
            (Class::Valid { records }, Ok(a)) => {
                let want = if a.metric == Metric::Reading { 2 } else { 1 };
                assert_eq!(records, want, "{m:?}");
            }
            (Class::Malformed(f), Err(got)) => assert_eq!(f.code(), got.code(), "{m:?}"),
            (class, got) => panic!("{m:?}: class {class:?} but validation says {got:?}"),
        }
    }

    #[test]
    fn faults_are_the_reasons_and_limits_agree() {
        let faults: Vec<&str> = Fault::ALL.iter().map(|f| f.code()).collect();
        let reasons: Vec<&str> = Reason::VALIDATION.iter().map(|r| r.code()).collect();
        assert_eq!(faults, reasons);
        assert_eq!(
            telering_sim::MAX_DEVICE_ID_LEN,
            telering::record::MAX_DEVICE_ID_LEN
        );
        assert_eq!(
            telering_sim::DEFAULT_MAX_PAYLOAD,
            telering::mqtt::validate::DEFAULT_MAX_PAYLOAD
        );
    }

    #[test]
    fn fleet_ids_are_device_ids() {
        let fleet = Fleet::new("a-very-long-prefix-name-é", 100, 7);
        for id in fleet.ids() {
            telering::DeviceId::new(id).expect("a fleet id is a valid device id");
        }
    }

    #[test]
    fn every_malformed_kind_is_refused_with_its_reason() {
        for device in ["sim-0", "d", "sixteen-bytes-id", "wide-é-ü"] {
            for fault in Fault::ALL {
                let m = malformed_message(device, fault);
                assert_eq!(m.class, Class::Malformed(fault));
                check(&m);
            }
        }
    }

    #[test]
    fn every_valid_shape_is_accepted() {
        for shape in [
            Shape::BareTemperature,
            Shape::BareHumidity,
            Shape::JsonTemperature,
            Shape::JsonHumidity,
            Shape::Reading,
        ] {
            for (t, h) in [
                (-39.999, 0.001),
                (124.0, 99.5),
                (-0.001, 50.0),
                (21.53, 45.1),
            ] {
                check(&valid_message("sim-12", shape, now_us(), t, h));
            }
        }
    }

    #[test]
    fn generated_streams_validate_as_classified() {
        for format in [Format::Bare, Format::Json, Format::Reading, Format::Mixed] {
            let fleet = Fleet::new("sim", 4, 7);
            let ids: Vec<String> = fleet.ids().map(str::to_owned).collect();
            let fleet = Arc::new(Mutex::new(fleet));
            let mut faults = std::collections::BTreeSet::new();
            let (mut sent, mut valid) = (0u64, 0u64);
            for (i, id) in ids.iter().enumerate() {
                let mut g = Generator::new(i, id.clone(), format, 0.3, 7, Arc::clone(&fleet));
                for _ in 0..2_000 {
                    let m = g.next_message();
                    check(&m);
                    match m.class {
                        Class::Malformed(f) => {
                            faults.insert(f);
                        }
                        Class::Valid { .. } => valid += 1,
                    }
                    sent += 1;
                }
            }
            assert_eq!(faults.len(), Fault::ALL.len(), "{format}");
            let frac = (sent - valid) as f64 / sent as f64;
            assert!((0.25..0.35).contains(&frac), "{format}: {frac}");
        }
    }

    #[test]
    fn no_malformed_means_all_valid() {
        let fleet = Arc::new(Mutex::new(Fleet::new("p", 1, 1)));
        let mut g = Generator::new(0, "p-0".into(), Format::Mixed, 0.0, 1, fleet);
        let mut shapes = std::collections::BTreeSet::new();
        for _ in 0..600 {
            let m = g.next_message();
            check(&m);
            assert!(matches!(m.class, Class::Valid { .. }));
            shapes.insert(m.topic.rsplit('/').next().map(str::to_owned));
            assert!(!m.payload.is_empty());
        }
        assert_eq!(shapes.len(), 3);
    }
}
