//! Interoperability with MQTT clients that are not telering's own, run as
//! child processes against a real [`Server`] on one loopback port, with
//! exact counts on both sides:
//!
//! - Eclipse Mosquitto's `mosquitto_pub` (Debian `mosquitto-clients`) at
//!   MQTT 3.1, 3.1.1 and 5, each at QoS 0, 1 and 2, all on the same port;
//! - Eclipse paho-mqtt (PyPI `paho-mqtt`, `tests/foreign/paho_publish.py`) at
//!   QoS 1 and 2 over MQTT 3.1.1 and 5, waiting for every PUBACK / PUBCOMP;
//! - MQTT.js (npm `mqtt`, `tests/foreign/mqttjs_aliases.js`) over MQTT 5,
//!   publishing with explicit topic aliases (empty topic + alias).
//!
//! Every message sent is valid for the topic scheme, so for each client run
//! the server must count exactly `received == accepted == sent`, nothing
//! dead-lettered or rejected, and `records` equal to what the engine topics
//! `temperature` and `humidity` hold.
//!
//! `tests/foreign/setup.sh` installs the clients (Debian packages, a venv at
//! `target/foreign-venv`, `tests/foreign/node_modules`). A missing client
//! skips its test with a loud message, unless `TELERING_REQUIRE_FOREIGN=1`
//! (CI), which makes it a failure that says what to install.
#![cfg(feature = "mqtt")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use telering::mqtt::{IngestSnapshot, Server, ServerConfig};

/// Longest a client process may run; only reached when something is broken.
const CLIENT_DEADLINE: Duration = Duration::from_secs(60);
/// Longest wait for the server's counters to reach and hold a value.
const STATS_DEADLINE: Duration = Duration::from_secs(20);
/// Counters unchanged this long (and at least the expected value) are final.
const SETTLE: Duration = Duration::from_millis(300);

const TEMPERATURE: &str = "temperature";
const HUMIDITY: &str = "humidity";
const MOSQUITTO_PUB: &str = "mosquitto_pub";
const INSTALL: &str = "run `tests/foreign/setup.sh` (as root: it apt-get installs \
     mosquitto-clients python3-venv nodejs npm when missing, pip installs paho-mqtt into \
     target/foreign-venv and npm installs MQTT.js into tests/foreign/node_modules)";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn venv_python() -> PathBuf {
    root().join("target/foreign-venv/bin/python")
}

fn foreign_dir() -> PathBuf {
    root().join("tests/foreign")
}

// ---------------------------------------------------------------------------
// Finding the clients

/// Runs `cmd` with output discarded; `Err` says why it could not run or
/// failed.
fn runs(mut cmd: Command, ok_on_failure: bool) -> Result<(), String> {
    let what = format!("{cmd:?}");
    match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() || ok_on_failure => Ok(()),
        Ok(s) => Err(format!("{what} failed ({s})")),
        Err(e) => Err(format!("cannot run {what}: {e}")),
    }
}

fn mosquitto_pub_available() -> Result<(), String> {
    let mut c = Command::new(MOSQUITTO_PUB);
    c.arg("--help");
    // `--help` exits with 1 on some versions: running at all is enough.
    runs(c, true)
}

fn paho_available() -> Result<(), String> {
    let py = venv_python();
    if !py.exists() {
        return Err(format!("no venv python at {}", py.display()));
    }
    let mut c = Command::new(&py);
    c.args(["-c", "import paho.mqtt.client"]);
    runs(c, false).map_err(|e| format!("paho-mqtt is not importable: {e}"))
}

fn mqttjs_available() -> Result<(), String> {
    let mut c = Command::new("node");
    c.arg("--version");
    runs(c, false)?;
    let m = foreign_dir().join("node_modules/mqtt/package.json");
    if !m.exists() {
        return Err(format!(
            "MQTT.js is not installed ({} missing)",
            m.display()
        ));
    }
    Ok(())
}

/// `Ok(())` to run the test; `Err(())` to skip it (loudly), unless
/// `TELERING_REQUIRE_FOREIGN=1`, which panics instead.
fn require(test: &str, available: Result<(), String>) -> Result<(), ()> {
    let Err(why) = available else { return Ok(()) };
    if std::env::var("TELERING_REQUIRE_FOREIGN").as_deref() == Ok("1") {
        panic!("TELERING_REQUIRE_FOREIGN=1 but {why}; {INSTALL}");
    }
    // `eprintln!` is captured by the harness without --nocapture; this line
    // goes to the real stderr so a plain `cargo test` shows it.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED mqtt_foreign::{test}: {why} ({INSTALL}; TELERING_REQUIRE_FOREIGN=1 makes this a failure)"
    );
    eprintln!(
        "\n========================================================================\n\
         SKIPPED mqtt_foreign::{test}: {why}.\n\
         To run it, {INSTALL}.\n\
         Set TELERING_REQUIRE_FOREIGN=1 to make this a failure.\n\
         ========================================================================\n"
    );
    Err(())
}

// ---------------------------------------------------------------------------
// The server

/// The default configuration, with the MQTT listener (MQTT 3.1, 3.1.1 and 5
/// alike) on `listen`.
fn config(listen: SocketAddr) -> ServerConfig {
    let mut cfg = ServerConfig::default();
    cfg.mqtt.listen = listen;
    cfg.ingest.capacity = 4096;
    cfg
}

fn start_server() -> (Server, SocketAddr) {
    let mut last = None;
    for _ in 0..5 {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port");
        match Server::start(config(addr)) {
            Ok(s) => return (s, addr),
            // Most likely another process took the port between the probe
            // and the bind: try another.
            Err(e) => last = Some(e.to_string()),
        }
    }
    panic!(
        "cannot start the server in 5 attempts: {}",
        last.unwrap_or_default()
    );
}

/// The counters plus what the engine topics hold.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counts {
    stats: IngestSnapshot,
    temperature: u64,
    humidity: u64,
}

fn counts(server: &Server) -> Counts {
    let e = server.engine();
    Counts {
        stats: server.stats(),
        temperature: e.published(TEMPERATURE).expect("topic temperature"),
        humidity: e.published(HUMIDITY).expect("topic humidity"),
    }
}

/// Polls until `received` is at least `at_least` and nothing has changed for
/// [`SETTLE`], or [`STATS_DEADLINE`] passed; returns the last counts either
/// way (the caller asserts on them).
fn settle(server: &Server, at_least: u64) -> Counts {
    let deadline = Instant::now() + STATS_DEADLINE;
    let mut last = counts(server);
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(10));
        let now = counts(server);
        if now != last {
            last = now;
            since = Instant::now();
        } else if last.stats.received >= at_least && since.elapsed() >= SETTLE {
            return last;
        }
        if Instant::now() >= deadline {
            return last;
        }
    }
}

/// How the counters moved over one client run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Delta {
    received: u64,
    accepted: u64,
    dead_lettered: u64,
    rejected: u64,
    /// Will messages (none of these clients sets one).
    wills: u64,
    /// QoS 2 retransmissions not ingested again (none on a clean run).
    duplicates: u64,
    records: u64,
    temperature: u64,
    humidity: u64,
}

impl Delta {
    fn between(a: &Counts, b: &Counts) -> Self {
        Self {
            received: b.stats.received - a.stats.received,
            accepted: b.stats.accepted - a.stats.accepted,
            dead_lettered: b.stats.dead_lettered - a.stats.dead_lettered,
            rejected: b.stats.rejected - a.stats.rejected,
            wills: b.stats.wills - a.stats.wills,
            duplicates: b.stats.duplicates - a.stats.duplicates,
            records: b.stats.records - a.stats.records,
            temperature: b.temperature - a.temperature,
            humidity: b.humidity - a.humidity,
        }
    }

    /// What `messages` valid messages making `temperature` + `humidity`
    /// records must add.
    fn valid(messages: u64, temperature: u64, humidity: u64) -> Self {
        Self {
            received: messages,
            accepted: messages,
            dead_lettered: 0,
            rejected: 0,
            wills: 0,
            duplicates: 0,
            records: temperature + humidity,
            temperature,
            humidity,
        }
    }
}

/// The whole server agrees with itself: everything received was accepted,
/// and `records` is what the engine topics hold.
fn assert_consistent(c: &Counts) {
    assert_eq!(
        (c.stats.received, c.stats.dead_lettered, c.stats.rejected),
        (c.stats.accepted, 0, 0),
        "every message valid: {c:?}"
    );
    assert_eq!(
        c.stats.records,
        c.temperature + c.humidity,
        "records == what the engine topics hold: {c:?}"
    );
}

// ---------------------------------------------------------------------------
// Running a client

#[derive(Debug)]
struct Run {
    what: String,
    /// `None`: killed at [`CLIENT_DEADLINE`].
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    fn outcome(&self) -> String {
        match self.status {
            Some(s) if s.success() => "exit 0".to_owned(),
            Some(s) => format!("{s}, stderr {:?}", self.stderr.trim()),
            None => format!(
                "killed after {CLIENT_DEADLINE:?}, stderr {:?}",
                self.stderr.trim()
            ),
        }
    }

    /// The last stdout line that parses as a JSON object.
    fn json(&self) -> Value {
        self.stdout
            .lines()
            .rev()
            .find_map(|l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .filter(Value::is_object)
            })
            .unwrap_or_else(|| panic!("{}: no JSON line on stdout: {self:?}", self.what))
    }
}

/// Runs `cmd` to its end (killed at [`CLIENT_DEADLINE`]), feeding `stdin`.
fn run(mut cmd: Command, stdin: Option<Vec<u8>>) -> Run {
    let what = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    // Threads, so a full pipe cannot block the child or the test.
    let feeder = stdin.map(|input| {
        let mut pipe = child.stdin.take().expect("piped stdin");
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        })
    });
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + CLIENT_DEADLINE;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    Run {
        what,
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

fn json_u64(v: &Value, key: &str, run: &Run) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{}: no integer {key:?} in {v}", run.what))
}

// ---------------------------------------------------------------------------
// mosquitto_pub

/// Temperature lines one `mosquitto_pub -l` connection sends per case.
const MOSQUITTO_LINES: u64 = 25;

/// One server, ONE port: `mosquitto_pub -V mqttv31`, `-V mqttv311` and
/// `-V mqttv5`, each at `-q 0`, `-q 1` and `-q 2` (9 cases, one after
/// another). Each case is two connections: `-m` with one
/// `{"temperature": 21.5, "humidity": 48}` to `sensors/<case>-r/reading`,
/// then `-l` sending 25 bare-number lines to `sensors/<case>/temperature`.
///
/// Asserts for every case: both `mosquitto_pub` runs exit 0, and the server's
/// counters grew by exactly 26 received == 26 accepted, 0 dead-lettered,
/// 0 rejected, 27 records: 26 in `temperature` and 1 in `humidity`. Then, for
/// the whole run: received == accepted == 9 x 26, records == the engine
/// topics' contents, and `shutdown()` reports the same counters. All nine
/// cases run before the first assertion, so a failure lists each case's
/// outcome.
#[test]
fn mosquitto_pub_mqtt31_311_5_at_qos0_1_2_on_one_port_counts_exactly() {
    let test = "mosquitto_pub_mqtt31_311_5_at_qos0_1_2_on_one_port_counts_exactly";
    if require(test, mosquitto_pub_available()).is_err() {
        return;
    }
    let (server, addr) = start_server();
    let mut before = counts(&server);
    let want_case = Delta::valid(MOSQUITTO_LINES + 1, MOSQUITTO_LINES + 1, 1);
    let mut table = Vec::new();
    let mut all_ok = true;
    let mut expected_total = 0;
    for (version, tag) in [("mqttv31", "v31"), ("mqttv311", "v311"), ("mqttv5", "v5")] {
        for qos in 0..=2u8 {
            let device = format!("mosq-{tag}-q{qos}");
            let publish = |args: &[&str], stdin: Option<Vec<u8>>, id: &str| {
                let mut c = Command::new(MOSQUITTO_PUB);
                c.args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
                    .args(["-i", id, "-V", version, "-q", &qos.to_string()])
                    .args(args);
                run(c, stdin)
            };
            let single = publish(
                &[
                    "-t",
                    &format!("sensors/{device}-r/reading"),
                    "-m",
                    r#"{"temperature": 21.5, "humidity": 48}"#,
                ],
                None,
                &format!("{device}-r"),
            );
            // `mosquitto_pub -l` does not exit when the server drops the
            // connection (it waits to reconnect): after a refused `-m` run it
            // would only hang until the deadline, so it is not started.
            let batch = single.ok().then(|| {
                let lines: String = (0..MOSQUITTO_LINES)
                    .map(|i| format!("{}\n", -10.0 + i as f64 * 0.5))
                    .collect();
                publish(
                    &["-t", &format!("sensors/{device}/temperature"), "-l"],
                    Some(lines.into_bytes()),
                    &device,
                )
            });
            let clients_ok = single.ok() && batch.as_ref().is_some_and(Run::ok);
            if clients_ok {
                expected_total += want_case.received;
            }
            // A failed client sent an unknown number: wait for quiet only.
            let at_least = before.stats.received + if clients_ok { want_case.received } else { 0 };
            let after = settle(&server, at_least);
            let got = Delta::between(&before, &after);
            let ok = clients_ok && got == want_case;
            all_ok &= ok;
            table.push(format!(
                "{} -V {version} -q {qos}: -m run {}; -l run {}; server delta {got:?}",
                if ok { "ok  " } else { "FAIL" },
                single.outcome(),
                batch.map_or("not started".to_owned(), |b| b.outcome())
            ));
            before = after;
        }
    }
    let table = table.join("\n");
    eprintln!("mosquitto_pub cases (want per case {want_case:?}):\n{table}");
    assert!(
        all_ok,
        "every mosquitto_pub case must exit 0 and add exactly {want_case:?}:\n{table}"
    );
    let end = settle(&server, expected_total);
    assert_consistent(&end);
    assert_eq!(end.stats.received, 9 * want_case.received, "{end:?}");
    assert_eq!(end.stats.records, 9 * want_case.records, "{end:?}");
    let last = server.shutdown();
    assert_eq!(last, end.stats, "nothing more arrived after the checks");
}

// ---------------------------------------------------------------------------
// paho-mqtt

/// Messages per QoS level a paho run sends.
const PAHO_COUNT: u64 = 100;

/// Runs `paho_publish.py` at `version` against a fresh server and checks the
/// counts on both sides.
fn paho_case(test: &str, version: &str, client_id: &str) {
    if require(test, paho_available()).is_err() {
        return;
    }
    let (server, addr) = start_server();
    let before = counts(&server);
    let mut c = Command::new(venv_python());
    c.arg(foreign_dir().join("paho_publish.py"))
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(PAHO_COUNT.to_string())
        .arg(client_id)
        .arg(version);
    let r = run(c, None);
    eprintln!("{}: {} stdout {:?}", r.what, r.outcome(), r.stdout.trim());
    let v = r.json();
    let sent = json_u64(&v, "sent", &r);
    let (q1, q2) = (
        json_u64(&v, "acked_qos1", &r),
        json_u64(&v, "acked_qos2", &r),
    );
    // After a failed run the number sent is unknown: wait for quiet only,
    // and still show what the server got.
    let want = if r.ok() { 2 * PAHO_COUNT } else { 0 };
    let after = settle(&server, before.stats.received + want);
    let got = Delta::between(&before, &after);
    assert!(
        r.ok(),
        "paho-mqtt {version} failed: {}; stdout {v}; server delta {got:?}",
        r.outcome()
    );
    assert_eq!(
        (sent, q1, q2),
        (2 * PAHO_COUNT, PAHO_COUNT, PAHO_COUNT),
        "paho-mqtt {version}: every QoS 1 publish PUBACKed and every QoS 2 publish PUBCOMPed"
    );
    assert_eq!(
        got,
        Delta::valid(sent, sent, 0),
        "paho-mqtt {version}: the server counts exactly what was acknowledged"
    );
    assert_consistent(&after);
    assert_eq!(server.shutdown(), after.stats, "nothing more arrived");
}

/// paho-mqtt over MQTT 3.1.1: 100 messages at QoS 1 and 100 at QoS 2 on one
/// connection (`sensors/<id>-q1/temperature`, `sensors/<id>-q2/temperature`),
/// waiting for every acknowledgement. Asserts: exit 0, sent == 200,
/// 100 PUBACKs and 100 PUBCOMPs; the server counted exactly 200 received ==
/// accepted, 0 dead-lettered, 0 rejected, 200 records, all in `temperature`.
#[test]
fn paho_mqtt311_qos1_and_qos2_acked_and_counted_exactly() {
    paho_case(
        "paho_mqtt311_qos1_and_qos2_acked_and_counted_exactly",
        "3.1.1",
        "paho311",
    );
}

/// paho-mqtt over MQTT 5, on the same single port: as the 3.1.1 case —
/// exit 0, sent == 200, 100 PUBACKs and 100 PUBCOMPs (reason codes
/// successes); the server counted exactly 200 received == accepted, nothing
/// dead-lettered or rejected, 200 records, all in `temperature`.
#[test]
fn paho_mqtt5_qos1_and_qos2_acked_and_counted_exactly() {
    paho_case(
        "paho_mqtt5_qos1_and_qos2_acked_and_counted_exactly",
        "5",
        "paho5",
    );
}

// ---------------------------------------------------------------------------
// MQTT.js

/// Messages the MQTT.js run sends.
const MQTTJS_COUNT: u64 = 200;

/// MQTT.js over MQTT 5 with explicit topic aliases: 200 messages at QoS 1,
/// alternating alias 1 (`sensors/<id>/temperature`, bare number) and alias 2
/// (`sensors/<id>/reading`, JSON with both values; only alias 1 when the
/// server allows a single alias); the first message of each alias carries the
/// topic name, every other one an empty topic and only the alias.
///
/// Asserts: the CONNACK advertised `topicAliasMaximum` >= 1 (it also reports
/// `receiveMaximum` and `maximumPacketSize`, printed); exit 0 with acked ==
/// sent == 200 PUBACKs, never more in flight than the `receiveMaximum`
/// (65535 when absent); all but one PUBLISH per alias went on the wire
/// alias-only; the server counted exactly 200 received == accepted, nothing
/// dead-lettered or rejected, and `temperature` + 2 x `reading` messages as
/// records: one `temperature` record per message, one `humidity` record per
/// `reading`.
#[test]
fn mqttjs_mqtt5_topic_aliases_acked_and_counted_exactly() {
    let test = "mqttjs_mqtt5_topic_aliases_acked_and_counted_exactly";
    if require(test, mqttjs_available()).is_err() {
        return;
    }
    let (server, addr) = start_server();
    let before = counts(&server);
    let mut c = Command::new("node");
    c.arg(foreign_dir().join("mqttjs_aliases.js"))
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(MQTTJS_COUNT.to_string())
        .arg("mqttjs-alias");
    let r = run(c, None);
    eprintln!("{}: {} stdout {:?}", r.what, r.outcome(), r.stdout.trim());
    let v = r.json();
    let want = if r.ok() { MQTTJS_COUNT } else { 0 };
    let after = settle(&server, before.stats.received + want);
    let got = Delta::between(&before, &after);
    let connack = v.get("connack").cloned().unwrap_or(Value::Null);
    eprintln!("MQTT.js CONNACK properties: {connack}");
    let alias_max = connack.get("topicAliasMaximum").and_then(Value::as_u64);
    assert!(
        alias_max.is_some_and(|m| m >= 1),
        "the CONNACK must advertise topicAliasMaximum >= 1; MQTT.js saw {connack} \
         (client {}; stdout {v}; server delta {got:?})",
        r.outcome()
    );
    assert!(
        r.ok(),
        "MQTT.js failed: {}; stdout {v}; server delta {got:?}",
        r.outcome()
    );
    let sent = json_u64(&v, "sent", &r);
    let acked = json_u64(&v, "acked", &r);
    let t_msgs = json_u64(&v, "temperature_msgs", &r);
    let r_msgs = json_u64(&v, "reading_msgs", &r);
    let alias_only = json_u64(&v, "alias_only", &r);
    let full_topic = json_u64(&v, "full_topic", &r);
    let max_inflight = json_u64(&v, "max_inflight", &r);
    let receive_maximum = connack
        .get("receiveMaximum")
        .and_then(Value::as_u64)
        .unwrap_or(65535);
    let aliases = if r_msgs > 0 { 2 } else { 1 };
    assert_eq!(
        (sent, acked),
        (MQTTJS_COUNT, MQTTJS_COUNT),
        "every publish PUBACKed"
    );
    assert_eq!(t_msgs + r_msgs, sent);
    assert!(
        (1..=receive_maximum).contains(&max_inflight),
        "the client kept to the server's Receive Maximum {receive_maximum}: {max_inflight} in flight"
    );
    assert_eq!(
        (full_topic, alias_only),
        (aliases, sent - aliases),
        "one PUBLISH per alias with the topic name, every other one alias-only"
    );
    assert_eq!(
        got,
        Delta::valid(sent, t_msgs + r_msgs, r_msgs),
        "the server resolves every alias and counts exactly what was acknowledged"
    );
    assert_consistent(&after);
    assert_eq!(server.shutdown(), after.stats, "nothing more arrived");
}
