//! Interoperability with a client that is not telering's own: Eclipse
//! Mosquitto's `mosquitto_pub` (Debian package `mosquitto-clients`) publishes
//! valid and invalid messages over MQTT 3.1.1 and 5; the ingest counters must
//! match exactly, and a consumer must read back every accepted reading, with
//! its device and values, in per-device order.
//!
//! Without `mosquitto_pub` on `PATH` the test is skipped with a loud message,
//! unless `TELERING_REQUIRE_MOSQUITTO=1`, which makes it fail instead (CI).
//!
//! `mosquitto_pub` sends DISCONNECT and closes at once, which rumqttd 0.20
//! handles as two disconnects of the connection id; if the next connection
//! took that id in between, the second one drops it (see
//! `clean_disconnects_do_not_drop_other_clients` in `mqtt_robustness.rs`).
//! The processes here run one after another (a process start apart), which
//! has not been seen to hit that window; if this test ever fails with a
//! `mosquitto_pub` connection error, that bug is the first suspect.
#![cfg(feature = "mqtt")]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use telering::mqtt::validate::Reason;
use telering::mqtt::{
    IngestSnapshot, Server, ServerConfig, DEAD_LETTER, HUMIDITY as HUMIDITY_TOPIC,
    TEMPERATURE as TEMPERATURE_TOPIC,
};
use telering::{ConsumerConfig, Reading};

/// Deadline of any single wait; only ever reached when something is broken.
const DEADLINE: Duration = Duration::from_secs(20);
const MOSQUITTO_PUB: &str = "mosquitto_pub";

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64
}

/// Whether `mosquitto_pub` can be run; `Err` says why not.
fn mosquitto_pub_available() -> Result<(), String> {
    match Command::new(MOSQUITTO_PUB)
        .arg("--help")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        // `--help` exits with 1 on some versions: running at all is enough.
        Ok(_) => Ok(()),
        Err(e) => Err(format!("cannot run `{MOSQUITTO_PUB}`: {e}")),
    }
}

/// The server on a free port; MQTT 3.1.1 and 5 share it, so both addresses
/// returned are that one port.
fn start_server() -> (Server, SocketAddr, SocketAddr) {
    let mut cfg = ServerConfig::default();
    cfg.mqtt.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.ingest.capacity = 1024;
    let s = Server::start(cfg).expect("the server starts on a free port");
    let a = s.local_addr();
    (s, a, a)
}

// ---------------------------------------------------------------------------
// What was sent, and what must come out

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    Temperature,
    Humidity,
    /// `sensors/<device>/reading`: both topics.
    Both,
}

/// An accepted message as the engine must hold it; an unmeasured field is NaN.
#[derive(Debug, Clone)]
struct Expected {
    device: String,
    metric: Metric,
    temperature: f32,
    humidity: f32,
    /// `None`: stamped by the bridge on arrival.
    ts: Option<u64>,
}

#[derive(Debug, Default)]
struct Model {
    received: u64,
    accepted: Vec<Expected>,
    reasons: BTreeMap<String, u64>,
}

impl Model {
    fn ok(
        &mut self,
        device: &str,
        metric: Metric,
        t: Option<&str>,
        h: Option<&str>,
        ts: Option<u64>,
    ) {
        let v =
            |s: Option<&str>| s.map_or(f32::NAN, |s| s.parse::<f64>().expect("a number") as f32);
        self.received += 1;
        self.accepted.push(Expected {
            device: device.to_owned(),
            metric,
            temperature: v(t),
            humidity: v(h),
            ts,
        });
    }

    fn bad(&mut self, reason: Reason) {
        self.received += 1;
        *self.reasons.entry(reason.code().to_owned()).or_default() += 1;
    }

    fn dead_lettered(&self) -> u64 {
        self.reasons.values().sum()
    }

    /// The records of one engine topic, per device, in publish order.
    fn records(&self, topic: Metric) -> BTreeMap<String, Vec<&Expected>> {
        let mut m: BTreeMap<String, Vec<&Expected>> = BTreeMap::new();
        for e in &self.accepted {
            if e.metric == topic || e.metric == Metric::Both {
                m.entry(e.device.clone()).or_default().push(e);
            }
        }
        m
    }
}

// ---------------------------------------------------------------------------
// Running mosquitto_pub

struct Pub {
    child: Child,
    what: String,
}

/// Starts `mosquitto_pub -h 127.0.0.1 -p <port> -i <id> <args>`, feeding
/// `stdin` if given.
fn spawn_pub(addr: SocketAddr, id: &str, args: &[&OsStr], stdin: Option<Vec<u8>>) -> Pub {
    let what = format!(
        "{MOSQUITTO_PUB} -p {} -i {id} {}",
        addr.port(),
        args.iter()
            .map(|a| {
                let s = a.to_string_lossy();
                if s.len() > 40 {
                    format!("{}..({} bytes)", &s[..20], s.len())
                } else {
                    s.into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut cmd = Command::new(MOSQUITTO_PUB);
    cmd.arg("-h")
        .arg(addr.ip().to_string())
        .arg("-p")
        .arg(addr.port().to_string())
        .arg("-i")
        .arg(id)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        // A thread, so a full pipe cannot block the test before it waits.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    Pub { child, what }
}

impl Pub {
    /// Waits for a successful exit (killing it at the deadline).
    fn wait(mut self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let out = self.child.wait_with_output();
                    panic!("{} did not exit within {DEADLINE:?}: {out:?}", self.what);
                }
                Err(e) => panic!("{}: {e}", self.what),
            }
        }
        let out = self.child.wait_with_output().expect("exit status");
        assert!(
            out.status.success(),
            "{} failed ({}): stdout {:?}, stderr {:?}",
            self.what,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// One message with `-m`, at QoS `qos`, waited for.
fn pub_one(addr: SocketAddr, id: &str, extra: &[&str], topic: &str, payload: &[u8], qos: u8) {
    let qos = qos.to_string();
    let mut args: Vec<&OsStr> = extra.iter().map(|s| os(s)).collect();
    args.extend([os("-q"), os(&qos), os("-t"), os(topic), os("-m")]);
    // Any bytes, UTF-8 or not: argv is bytes on Unix.
    let payload: OsString = OsStr::from_bytes(payload).to_owned();
    args.push(&payload);
    spawn_pub(addr, id, &args, None).wait();
}

fn wait_stats(server: &Server, want: u64) -> IngestSnapshot {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let s = server.stats();
        if s.received >= want {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "received stayed below {want} for {DEADLINE:?}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------

#[test]
fn mosquitto_pub_interoperates() {
    if let Err(why) = mosquitto_pub_available() {
        if std::env::var("TELERING_REQUIRE_MOSQUITTO").as_deref() == Ok("1") {
            panic!(
                "TELERING_REQUIRE_MOSQUITTO=1 but {why}; install it \
                 (Debian/Ubuntu: `apt-get install -y mosquitto-clients`)"
            );
        }
        // `eprintln!` is captured by the test harness unless --nocapture;
        // this line goes to the real stderr so a plain `cargo test` shows it.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED mqtt_mosquitto::mosquitto_pub_interoperates: {why} \
             (install mosquitto-clients; TELERING_REQUIRE_MOSQUITTO=1 makes this a failure)"
        );
        eprintln!(
            "\n========================================================================\n\
             SKIPPED mqtt_mosquitto::mosquitto_pub_interoperates: {why}.\n\
             Install `mosquitto-clients` to run it; set TELERING_REQUIRE_MOSQUITTO=1\n\
             to make its absence a failure.\n\
             ========================================================================\n"
        );
        return;
    }

    let start_us = now_us();
    let (server, v4, v5) = start_server();
    let engine = server.engine().clone();
    // A cluster group reading both topics, joined before anything is
    // published (its offsets start at the beginning either way).
    let mut consumer = engine
        .consumer(ConsumerConfig::cluster("g"))
        .expect("a consumer");
    consumer
        .subscribe(&[TEMPERATURE_TOPIC, HUMIDITY_TOPIC])
        .expect("subscribe");
    let mut dead = server
        .dead_letters()
        .consumer(ConsumerConfig::cluster("dl"))
        .expect("a dead-letter consumer");
    dead.subscribe(&[DEAD_LETTER]).expect("subscribe");

    let mut m = Model::default();
    let mut n = 0;
    let mut id = |tag: &str| {
        n += 1;
        format!("mosq-{tag}-{n}")
    };
    use Metric::*;

    // ---- single messages over MQTT 3.1.1, one process each, in order
    let one = |id: String, topic: &str, payload: &[u8], qos: u8| {
        pub_one(v4, &id, &[], topic, payload, qos)
    };
    one(id("bare"), "sensors/m-bare/temperature", b"21.5", 1);
    m.ok("m-bare", Temperature, Some("21.5"), None, None);
    let ts = 1_700_000_000_000_000u64;
    one(
        id("json"),
        "sensors/m-json/humidity",
        format!(r#"{{"ts": {ts}, "value": 55.25}}"#).as_bytes(),
        1,
    );
    m.ok("m-json", Humidity, None, Some("55.25"), Some(ts));
    one(
        id("reading"),
        "sensors/m-read/reading",
        format!(
            r#"{{"ts": {}, "temperature": -12.5, "humidity": 40}}"#,
            ts + 1
        )
        .as_bytes(),
        1,
    );
    m.ok("m-read", Both, Some("-12.5"), Some("40"), Some(ts + 1));
    one(id("bare"), "sensors/m-bare/temperature", b"-40", 1);
    m.ok("m-bare", Temperature, Some("-40"), None, None);
    one(id("bare"), "sensors/m-bare/temperature", b"125", 1);
    m.ok("m-bare", Temperature, Some("125"), None, None);
    one(
        id("reading"),
        "sensors/m-read/reading",
        br#"{"temperature": 30, "humidity": 0}"#,
        1,
    );
    m.ok("m-read", Both, Some("30"), Some("0"), None);
    // QoS 2 and QoS 0 are ingested once too.
    one(id("q2"), "sensors/m-q2/temperature", b"22", 2);
    m.ok("m-q2", Temperature, Some("22"), None, None);
    one(id("q0"), "sensors/m-q0/humidity", b"23", 0);
    m.ok("m-q0", Humidity, None, Some("23"), None);

    let bad: &[(&str, &[u8], Reason)] = &[
        ("sensors/m-bad/temperature", b"NaN", Reason::NotFinite),
        (
            "sensors/m-bad/temperature",
            b"200",
            Reason::TemperatureOutOfRange,
        ),
        ("sensors/m-bad/temperature", b"warm", Reason::NotJson),
        ("sensors/m-bad/pressure", b"1013", Reason::UnknownMetric),
        (
            "sensors/abcdefghijklmnopq/temperature",
            b"20",
            Reason::DeviceIdTooLong,
        ),
        ("sensors//temperature", b"20", Reason::DeviceIdEmpty),
        ("other/m-bad/temperature", b"20", Reason::UnknownTopic),
        ("sensors/m-bad/humidity", b"101", Reason::HumidityOutOfRange),
        (
            "sensors/m-bad/humidity",
            br#"{"ts": -5, "value": 50}"#,
            Reason::BadTimestamp,
        ),
        (
            "sensors/m-bad/reading",
            br#"{"temperature": 20}"#,
            Reason::MissingValue,
        ),
        ("sensors/m-bad/temperature", b"\xff\xfe", Reason::NotUtf8),
    ];
    for (topic, payload, reason) in bad {
        one(id("bad"), topic, payload, 1);
        m.bad(*reason);
    }
    let big = vec![b'1'; 2000];
    one(id("big"), "sensors/m-bad/temperature", &big, 1);
    m.bad(Reason::PayloadTooLarge);
    // A zero-length message (`-n`).
    spawn_pub(
        v4,
        &id("null"),
        &[
            os("-q"),
            os("1"),
            os("-t"),
            os("sensors/m-bad/temperature"),
            os("-n"),
        ],
        None,
    )
    .wait();
    m.bad(Reason::NotJson);

    // ---- MQTT 5, to the v5 listener
    let v5args = ["-V", "mqttv5"];
    pub_one(
        v5,
        &id("v5"),
        &v5args,
        "sensors/m-v5/temperature",
        b"19.75",
        1,
    );
    m.ok("m-v5", Temperature, Some("19.75"), None, None);
    pub_one(v5, &id("v5"), &v5args, "sensors/m-v5/humidity", b"130", 1);
    m.bad(Reason::HumidityOutOfRange);
    pub_one(
        v5,
        &id("v5"),
        &v5args,
        "sensors/m-v5/reading",
        br#"{"ts": 5, "temperature": 0.5, "humidity": 99.5}"#,
        1,
    );
    m.ok("m-v5", Both, Some("0.5"), Some("99.5"), Some(5));

    // ---- batches from stdin lines (`-l`), three processes at once:
    // MQTT 3.1.1 temperatures with a refused line every 50, MQTT 3.1.1
    // humidity JSON with timestamps, and MQTT 5 with a topic alias (after the
    // first message mosquitto_pub sends only the alias).
    let mut lines_a = String::new();
    for i in 0..500u32 {
        if i % 50 == 49 {
            lines_a.push_str("oops\n");
            m.bad(Reason::NotJson);
        } else {
            let v = format!("{}", -40.0 + f64::from(i) * 0.25);
            m.ok("batch-a", Temperature, Some(&v), None, None);
            lines_a.push_str(&v);
            lines_a.push('\n');
        }
    }
    let mut lines_b = String::new();
    for i in 0..300u64 {
        let v = format!("{}", i as f64 * 0.25);
        lines_b.push_str(&format!("{{\"ts\": {}, \"value\": {v}}}\n", ts + i));
        m.ok("batch-b", Humidity, None, Some(&v), Some(ts + i));
    }
    let mut lines_c = String::new();
    for i in 0..100u32 {
        let v = format!("{}", 10.0 + f64::from(i) * 0.5);
        lines_c.push_str(&v);
        lines_c.push('\n');
        m.ok("batch-c", Temperature, Some(&v), None, None);
    }
    let batches = [
        spawn_pub(
            v4,
            &id("batch"),
            &[
                os("-q"),
                os("1"),
                os("-t"),
                os("sensors/batch-a/temperature"),
                os("-l"),
            ],
            Some(lines_a.into_bytes()),
        ),
        spawn_pub(
            v4,
            &id("batch"),
            &[
                os("-q"),
                os("1"),
                os("-t"),
                os("sensors/batch-b/humidity"),
                os("-l"),
            ],
            Some(lines_b.into_bytes()),
        ),
        spawn_pub(
            v5,
            &id("batch"),
            &[
                os("-V"),
                os("mqttv5"),
                os("-D"),
                os("publish"),
                os("topic-alias"),
                os("1"),
                os("-q"),
                os("1"),
                os("-t"),
                os("sensors/batch-c/temperature"),
                os("-l"),
            ],
            Some(lines_c.into_bytes()),
        ),
    ];
    for b in batches {
        b.wait();
    }

    // ---- the counters, exactly
    let got = wait_stats(&server, m.received);
    let accepted = m.accepted.len() as u64;
    let records = m
        .accepted
        .iter()
        .map(|e| if e.metric == Both { 2 } else { 1 })
        .sum::<u64>();
    assert_eq!(
        (got.received, got.accepted, got.dead_lettered),
        (m.received, accepted, m.dead_lettered()),
        "counters {got:?}"
    );
    assert_eq!(got.received, got.accepted + got.dead_lettered);
    assert_eq!(got.dead_letter_reasons, m.reasons, "reasons");
    assert_eq!(
        (got.records, got.rejected),
        (records, 0),
        "counters {got:?}"
    );
    // Every validation reason code was exercised.
    assert_eq!(m.reasons.len(), Reason::VALIDATION.len(), "{:?}", m.reasons);

    // ---- the accepted readings, through a cluster consumer
    let temperature = engine.topic_id(TEMPERATURE_TOPIC).expect("topic");
    let humidity = engine.topic_id(HUMIDITY_TOPIC).expect("topic");
    let mut seen: Vec<(u32, u32, u64, Reading)> = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while (seen.len() as u64) < records {
        assert!(
            Instant::now() < deadline,
            "the consumer got {} of {records} records",
            seen.len()
        );
        let batch = consumer
            .poll(256, Duration::from_millis(100))
            .expect("poll");
        for r in batch.iter() {
            seen.push((r.topic.index(), r.partition, r.offset, r.value));
        }
        assert_eq!(batch.missed(), 0);
    }
    assert_eq!(seen.len() as u64, records);
    assert_eq!(
        engine.published(TEMPERATURE_TOPIC).expect("topic")
            + engine.published(HUMIDITY_TOPIC).expect("topic"),
        records
    );
    // Per partition in offset order; a device lives in one partition.
    seen.sort_by_key(|&(t, p, o, _)| (t, p, o));
    let now = now_us();
    for (topic, metric) in [(temperature, Temperature), (humidity, Humidity)] {
        let mut got: BTreeMap<String, Vec<Reading>> = BTreeMap::new();
        for (_, _, _, r) in seen.iter().filter(|s| s.0 == topic.index()) {
            got.entry(r.device.as_str().to_owned())
                .or_default()
                .push(*r);
        }
        let want = m.records(metric);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{metric:?}: devices"
        );
        for (device, want) in &want {
            let got = &got[device];
            assert_eq!(got.len(), want.len(), "{metric:?} {device}: record count");
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                let same =
                    |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
                assert!(
                    same(g.temperature, w.temperature) && same(g.humidity, w.humidity),
                    "{metric:?} {device} #{i}: got {g:?}, want {w:?}"
                );
                match w.ts {
                    Some(ts) => assert_eq!(g.ts_us, ts, "{metric:?} {device} #{i}"),
                    None => assert!(
                        (start_us..=now).contains(&g.ts_us),
                        "{metric:?} {device} #{i}: arrival stamp {} outside the test",
                        g.ts_us
                    ),
                }
            }
        }
    }
    consumer.close();

    // ---- the dead letters: one per refused message, with its reason
    let mut letters = BTreeMap::<String, u64>::new();
    let mut oops = 0;
    let deadline = Instant::now() + DEADLINE;
    while letters.values().sum::<u64>() < m.dead_lettered() {
        assert!(Instant::now() < deadline, "dead letters: {letters:?}");
        let batch = dead.poll(256, Duration::from_millis(100)).expect("poll");
        for r in batch.iter() {
            *letters
                .entry(r.value.reason().code().to_owned())
                .or_default() += 1;
            if r.value.topic() == b"sensors/batch-a/temperature" {
                assert_eq!(r.value.payload(), b"oops");
                oops += 1;
            }
        }
    }
    assert_eq!(letters, m.reasons, "dead-letter records by reason");
    assert_eq!(oops, 10);
    dead.close();

    eprintln!(
        "mosquitto_pub: {} messages, {} accepted ({} records), {} dead-lettered {:?}",
        got.received, got.accepted, got.records, got.dead_lettered, got.dead_letter_reasons
    );
    let last = server.shutdown();
    assert_eq!(last, got, "nothing more arrived after the checks");
}
