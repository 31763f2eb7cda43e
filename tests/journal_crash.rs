//! Crash test of the journal with real processes and files: `telering
//! serve --data-dir` is killed with SIGKILL while QoS 1 devices publish at
//! full speed, restarted on the same data dir, killed again, several rounds.
//!
//! Every message carries its device's sequence number in its JSON `ts`, and
//! the test records exactly which messages got their PUBACK (rumqttc
//! reports the packet id; packet ids are mapped back to messages in the
//! order the client sent them, and are reused once acknowledged). After
//! each kill, `telering dump` reads the data directory and the test checks:
//!
//! - every acknowledged message is there, with the value it was sent with;
//! - nothing is there that was never sent;
//! - each device's records are in one partition, their sequence numbers
//!   strictly increasing with the offset (no duplicate, no reordering,
//!   across restarts too);
//! - no `(partition, offset)` twice, and each partition's offsets are
//!   contiguous from 0;
//! - the next start recovers exactly the records the dump read (its log line
//!   `N records recovered`), and a start that receives nothing leaves the
//!   journal as it was (checked by a final SIGTERM run and its JSON
//!   summary).
//!
//! The kill moments come from a seeded RNG: the seed is printed, and
//! `TELERING_CRASH_SEED=<seed>` replays the same delays.
#![cfg(feature = "cli")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

/// Kill/restart rounds on the same data directory.
const ROUNDS: usize = 4;
/// Devices, one MQTT connection each.
const DEVICES: usize = 6;
/// Messages in flight per connection (rumqttc cycles its packet ids
/// through this window, so they are reused all the time).
const INFLIGHT: u16 = 32;

/// splitmix64: a small seeded RNG, enough for kill delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn device(d: usize) -> String {
    format!("crash-{d}")
}

/// The value a message with sequence number `seq` carries (an integer, so
/// it is exact as an `f32`; inside the accepted temperature range).
fn value_of(seq: u64) -> u32 {
    (seq % 120) as u32
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A running `telering serve` and its stderr, read line by line on a thread.
struct Server {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    /// Every stderr line so far (for failure messages).
    log: Vec<String>,
}

impl Server {
    fn start(dir: &Path) -> Self {
        let addr = free_addr();
        let mut child = Command::new(env!("CARGO_BIN_EXE_telering"))
            .args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--mqtt", &addr.to_string(), "--every", "0"])
            // Warnings and errors, and the server's start-up lines, among
            // them the journal's "N records recovered".
            .env("RUST_LOG", "warn,telering::mqtt::server=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            addr,
            lines,
            log: Vec::new(),
        }
    }

    fn stderr(&self) -> String {
        self.log.join("\n")
    }

    /// Waits for the journal's start-up line; returns (recovered, truncated).
    fn recovered(&mut self) -> (u64, u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(l) => strip_ansi(&l),
                Err(_) => panic!(
                    "the server never logged its journal recovery; exit: {:?}; stderr:\n{}",
                    self.child.try_wait(),
                    self.stderr()
                ),
            };
            self.log.push(line.clone());
            if let Some(i) = line.find(" records recovered, ") {
                let n = line[..i].rsplit(' ').next().unwrap().parse().unwrap();
                let rest = &line[i + " records recovered, ".len()..];
                let t = rest.split(' ').next().unwrap().parse().unwrap();
                return (n, t);
            }
        }
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the server never listened on {}; stderr:\n{}",
                self.addr,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, and waits for the process to be gone.
    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Reads the rest of stderr (the process has exited); returns the
    /// lines logged at ERROR.
    fn errors(&mut self) -> Vec<String> {
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.log.push(strip_ansi(&l));
        }
        self.log
            .iter()
            .filter(|l| l.contains(" ERROR "))
            .cloned()
            .collect()
    }

    /// SIGTERM; returns the JSON summary, the last line of stdout.
    fn terminate(&mut self) -> serde_json::Value {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let out = BufReader::new(self.child.stdout.take().unwrap());
        let last = out.lines().map_while(Result::ok).last().unwrap_or_default();
        let status = self.child.wait().unwrap();
        let errors = self.errors();
        assert!(errors.is_empty(), "serve logged errors: {errors:#?}");
        assert!(
            status.success(),
            "serve exited with {status}: {}",
            self.stderr()
        );
        serde_json::from_str(&last)
            .unwrap_or_else(|e| panic!("last line {last:?} is not JSON ({e})"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What one device's connection did in one round.
struct DeviceRun {
    /// Sequence numbers that got a PUBACK.
    acked: Vec<u64>,
    /// Sequence numbers handed to the client (sent or still queued).
    requested: u64,
}

/// Publishes `sensors/<device>/temperature` QoS 1 messages with sequence
/// numbers from `first` on, as fast as the PUBACKs allow, until the
/// connection fails (the server was killed). Packet ids map to sequence
/// numbers in send order: the client sends its requests in the order they
/// were queued, and the k-th `Outgoing::Publish` is the k-th message.
async fn run_device(addr: SocketAddr, d: usize, first: u64) -> DeviceRun {
    let stop = Arc::new(AtomicBool::new(false));
    let name = device(d);
    let mut opts = MqttOptions::new(name.clone(), addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(INFLIGHT);
    opts.set_clean_session(true);
    let (client, mut ev) = AsyncClient::new(opts, 64);
    let requested = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (requested, stop) = (requested.clone(), stop.clone());
        let topic = format!("sensors/{name}/temperature");
        tokio::spawn(async move {
            let mut seq = first;
            while !stop.load(Ordering::Relaxed) {
                let payload = format!("{{\"ts\": {seq}, \"value\": {}}}", value_of(seq));
                if client
                    .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
                    .await
                    .is_err()
                {
                    return;
                }
                seq += 1;
                requested.store(seq - first, Ordering::Relaxed);
            }
        })
    };
    let mut in_flight: HashMap<u16, u64> = HashMap::new();
    let mut sent = 0u64;
    let mut acked = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    loop {
        let e = match tokio::time::timeout_at(deadline, ev.poll()).await {
            Ok(Ok(e)) => e,
            // The server is gone (killed): what was acknowledged is known.
            Ok(Err(_)) => break,
            Err(_) => panic!("{name}: the connection never failed"),
        };
        match e {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let seq = first + sent;
                sent += 1;
                if let Some(old) = in_flight.insert(pkid, seq) {
                    panic!(
                        "{name}: packet id {pkid} sent for {seq} while {old} was unacknowledged"
                    );
                }
            }
            Event::Incoming(Packet::PubAck(a)) => {
                let seq = in_flight
                    .remove(&a.pkid)
                    .unwrap_or_else(|| panic!("{name}: PUBACK for unknown packet id {}", a.pkid));
                acked.push(seq);
            }
            _ => {}
        }
    }
    // Dropping the event loop fails the publisher's next request.
    drop(ev);
    stop.store(true, Ordering::Relaxed);
    let _ = publisher.await;
    DeviceRun {
        acked,
        requested: requested.load(Ordering::Relaxed),
    }
}

/// One line of `telering dump`.
#[derive(serde::Deserialize, Debug, Clone)]
struct Line {
    topic: String,
    partition: u32,
    offset: u64,
    device: String,
    ts_us: u64,
    temperature: f32,
}

fn dump(dir: &Path) -> Vec<Line> {
    let out = Command::new(env!("CARGO_BIN_EXE_telering"))
        .args(["dump", "--data-dir"])
        .arg(dir)
        .arg("temperature")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("dump line {l:?}: {e}")))
        .collect()
}

/// Everything known so far about the messages of all rounds.
struct Books {
    seed: u64,
    /// Per device: sequence numbers acknowledged.
    acked: Vec<BTreeSet<u64>>,
    /// Per device: the next sequence number to use (all below were handed
    /// to the client at some point).
    next: Vec<u64>,
    /// Per device: its partition, once seen.
    partition: Vec<Option<u32>>,
}

impl Books {
    /// Checks a dump against everything acknowledged so far.
    fn check(&mut self, round: usize, lines: &[Line]) {
        let seed = self.seed;
        let ctx = format!("seed {seed} (TELERING_CRASH_SEED={seed}), after round {round}");
        // Offsets: contiguous from 0 per partition, none twice.
        let mut next_offset: BTreeMap<u32, u64> = BTreeMap::new();
        let mut seen_at: BTreeSet<(u32, u64)> = BTreeSet::new();
        for l in lines {
            assert_eq!(l.topic, "temperature", "{ctx}");
            assert!(
                seen_at.insert((l.partition, l.offset)),
                "{ctx}: {}/{} appears twice",
                l.partition,
                l.offset
            );
            let n = next_offset.entry(l.partition).or_insert(0);
            assert_eq!(
                l.offset, *n,
                "{ctx}: partition {} jumps from offset {} to {}",
                l.partition, *n, l.offset
            );
            *n += 1;
        }
        // Per device: one partition, sequence numbers strictly increasing in
        // offset order, each sent, each with its value.
        let mut per_device: Vec<Vec<&Line>> = vec![Vec::new(); DEVICES];
        for l in lines {
            let d = (0..DEVICES)
                .find(|&d| device(d) == l.device)
                .unwrap_or_else(|| panic!("{ctx}: unknown device in {l:?}"));
            per_device[d].push(l);
        }
        for (d, recs) in per_device.iter().enumerate() {
            let name = device(d);
            for r in recs {
                let p = *self.partition[d].get_or_insert(r.partition);
                assert_eq!(
                    r.partition, p,
                    "{ctx}: {name} in partition {} and {p}",
                    r.partition
                );
                assert!(
                    r.ts_us < self.next[d],
                    "{ctx}: {name} seq {} was never sent (next {})",
                    r.ts_us,
                    self.next[d]
                );
                assert_eq!(
                    r.temperature,
                    value_of(r.ts_us) as f32,
                    "{ctx}: {name} seq {} has the wrong value at {}/{}",
                    r.ts_us,
                    r.partition,
                    r.offset
                );
            }
            for w in recs.windows(2) {
                assert!(
                    w[0].ts_us < w[1].ts_us,
                    "{ctx}: {name}: seq {} at {}/{} then seq {} at {}/{}",
                    w[0].ts_us,
                    w[0].partition,
                    w[0].offset,
                    w[1].ts_us,
                    w[1].partition,
                    w[1].offset
                );
            }
            let present: BTreeSet<u64> = recs.iter().map(|r| r.ts_us).collect();
            if let Some(missing) = self.acked[d].iter().find(|s| !present.contains(s)) {
                let before = present.range(..missing).next_back();
                let after = present.range(missing..).next();
                panic!(
                    "{ctx}: {name} seq {missing} was acknowledged but is not in the journal \
                     ({} of its {} acknowledged messages missing; journaled neighbours: \
                     {before:?} and {after:?}; {} of its records journaled)",
                    self.acked[d].difference(&present).count(),
                    self.acked[d].len(),
                    recs.len()
                );
            }
        }
    }
}

#[test]
fn acknowledged_messages_survive_kill_9_and_restarts() {
    let started = Instant::now();
    let seed = std::env::var("TELERING_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("journal crash test: seed {seed} (replay with TELERING_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut books = Books {
        seed,
        acked: vec![BTreeSet::new(); DEVICES],
        next: vec![0; DEVICES],
        partition: vec![None; DEVICES],
    };
    // What the journal holds, by the last dump.
    let mut on_disk = 0u64;
    for round in 0..ROUNDS {
        let mut server = Server::start(dir.path());
        let (recovered, truncated) = server.recovered();
        assert_eq!(
            recovered, on_disk,
            "seed {seed}, round {round}: the server recovered {recovered} records \
             ({truncated} truncated) but the dump read {on_disk}"
        );
        server.wait_listening();
        let delay = Duration::from_millis(rng.range(50, 1200));
        let addr = server.addr;
        let firsts = books.next.clone();
        let runs: Vec<DeviceRun> = std::thread::scope(|s| {
            let publishing = s.spawn(|| {
                rt.block_on(async {
                    let tasks: Vec<_> = (0..DEVICES)
                        .map(|d| tokio::spawn(run_device(addr, d, firsts[d])))
                        .collect();
                    let mut runs = Vec::new();
                    for t in tasks {
                        runs.push(t.await.unwrap());
                    }
                    runs
                })
            });
            std::thread::sleep(delay);
            server.kill9();
            publishing.join().unwrap()
        });
        let errors = server.errors();
        assert!(
            errors.is_empty(),
            "seed {seed}, round {round}: serve logged errors: {errors:#?}"
        );
        let mut acked_now = 0;
        for (d, r) in runs.iter().enumerate() {
            acked_now += r.acked.len();
            books.acked[d].extend(r.acked.iter().copied());
            // Leave a gap between rounds: sequence numbers only go up.
            books.next[d] += r.requested + 1000;
        }
        let lines = dump(dir.path());
        let journaled_now = lines.len() as u64 - on_disk;
        books.check(round, &lines);
        eprintln!(
            "round {round}: killed after {delay:?}: {acked_now} acknowledged, \
             {journaled_now} journaled in this round, {} in the journal, \
             {truncated} truncated at the start",
            lines.len()
        );
        assert!(
            journaled_now >= acked_now as u64,
            "seed {seed}, round {round}: {acked_now} acknowledged but {journaled_now} journaled"
        );
        on_disk = lines.len() as u64;
    }
    let total_acked: usize = books.acked.iter().map(|a| a.len()).sum();
    assert!(
        total_acked > 0,
        "seed {seed}: nothing was ever acknowledged"
    );
    // A last start recovers everything, receives nothing, stops cleanly, and
    // leaves the journal as it was.
    let mut server = Server::start(dir.path());
    let (recovered, _) = server.recovered();
    assert_eq!(recovered, on_disk, "seed {seed}: the last start");
    server.wait_listening();
    let summary = server.terminate();
    assert_eq!(summary["recovered"], on_disk, "seed {seed}: {summary}");
    assert_eq!(summary["truncated"], 0, "seed {seed}: {summary}");
    assert_eq!(summary["journaled"], 0, "seed {seed}: {summary}");
    assert_eq!(summary["journal_errors"], 0, "seed {seed}: {summary}");
    let lines = dump(dir.path());
    assert_eq!(
        lines.len() as u64,
        on_disk,
        "seed {seed}: after a clean stop"
    );
    books.check(ROUNDS, &lines);
    eprintln!(
        "journal crash test: {ROUNDS} kills, {total_acked} acknowledged, {on_disk} journaled, \
         all acknowledged present, in {:?}",
        started.elapsed()
    );
}
