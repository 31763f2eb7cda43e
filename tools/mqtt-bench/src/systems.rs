//! The systems under test: their names, starting each once, and one run of
//! the simulator against one of them with the exact-count checks.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ValueEnum;
use telering_sim::{self as sim, Format, Rate, SimConfig};

use crate::common::{wait_until, Received, Recorder};
use crate::cpu;
use crate::report::RunResult;
use crate::run_mosquitto::Mosquitto;
use crate::run_rumqttd::Rumqttd;
use crate::run_telering::{self, Setup, Telering, TlsFiles};

/// After the simulator is done, the consumer side must make progress at
/// least this often, or the missing messages count as lost.
const QUIET: Duration = Duration::from_secs(3);
/// Longest wait for the consumer side after the simulator is done.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// After a run the system counts as idle once it uses less than
/// `SETTLE_SHARE` of a core over `SETTLE_WINDOW` (at most `SETTLE_LIMIT`);
/// one window is added to every run.
const SETTLE_WINDOW: Duration = Duration::from_millis(50);
const SETTLE_SHARE: f64 = 0.05;
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// Consumer fetch settings: `fetch_min`, `fetch_max_wait_ms`.
pub type Fetch = (usize, u64);

/// A kind of system (`--only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Kind {
    Telering,
    Mosquitto,
    Rumqttd,
}

/// One system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SystemId {
    /// telering with `ingest.shards = shards`; its consumers fetch with
    /// `fetch` instead of the configuration's `[consumers] fetch_min` /
    /// `fetch_max_wait_ms` when it is set; with `journal`, its topics are
    /// journaled (`[journal] dir` in a fresh temporary directory, the
    /// default `fsync = "interval"`); with `tls`, it also opens the TLS
    /// listener (a certificate for `localhost`) and the simulator connects
    /// to that one.
    Telering {
        shards: usize,
        fetch: Option<Fetch>,
        journal: bool,
        tls: bool,
    },
    Mosquitto,
    Rumqttd,
}

impl SystemId {
    pub fn telering(shards: usize) -> Self {
        SystemId::Telering {
            shards,
            fetch: None,
            journal: false,
            tls: false,
        }
    }

    /// [`SystemId::telering`] with the journal on.
    pub fn telering_journal(shards: usize) -> Self {
        SystemId::Telering {
            shards,
            fetch: None,
            journal: true,
            tls: false,
        }
    }

    /// [`SystemId::telering`] over TLS.
    pub fn telering_tls(shards: usize) -> Self {
        SystemId::Telering {
            shards,
            fetch: None,
            journal: false,
            tls: true,
        }
    }

    /// The same system over plaintext TCP (itself if it is).
    pub fn without_tls(self) -> Self {
        match self {
            SystemId::Telering {
                shards,
                fetch,
                journal,
                ..
            } => SystemId::Telering {
                shards,
                fetch,
                journal,
                tls: false,
            },
            other => other,
        }
    }

    /// Whether this is a telering instance the simulator reaches over TLS.
    pub fn tls(self) -> bool {
        matches!(self, SystemId::Telering { tls: true, .. })
    }

    /// The same system with the journal off (itself if it has none).
    pub fn without_journal(self) -> Self {
        match self {
            SystemId::Telering {
                shards, fetch, tls, ..
            } => SystemId::Telering {
                shards,
                fetch,
                journal: false,
                tls,
            },
            other => other,
        }
    }

    /// Whether this is a telering instance with the journal on.
    pub fn journaled(self) -> bool {
        matches!(self, SystemId::Telering { journal: true, .. })
    }

    pub fn kind(self) -> Kind {
        match self {
            SystemId::Telering { .. } => Kind::Telering,
            SystemId::Mosquitto => Kind::Mosquitto,
            SystemId::Rumqttd => Kind::Rumqttd,
        }
    }

    /// The name in the JSON: `telering-1shard`, `telering-2shards`,
    /// `telering-2shards-fetch1` (fetch_min 1, fetch_max_wait_ms 0),
    /// `telering-2shards-fetch16-1ms`, `telering-2shards-journal`,
    /// `telering-2shards-tls`, `mosquitto`, `rumqttd`.
    pub fn key(self) -> String {
        match self {
            SystemId::Telering {
                shards,
                fetch,
                journal,
                tls,
            } => format!(
                "telering-{shards}shard{}{}{}{}",
                if shards == 1 { "" } else { "s" },
                match fetch {
                    None => String::new(),
                    Some((min, 0)) => format!("-fetch{min}"),
                    Some((min, wait)) => format!("-fetch{min}-{wait}ms"),
                },
                if journal { "-journal" } else { "" },
                if tls { "-tls" } else { "" }
            ),
            SystemId::Mosquitto => "mosquitto".to_owned(),
            SystemId::Rumqttd => "rumqttd".to_owned(),
        }
    }

    /// The name in the tables.
    pub fn label(self) -> String {
        match self {
            SystemId::Rumqttd => "rumqttd (bare)".to_owned(),
            other => other.key(),
        }
    }

    /// The start of the simulator's client ids. Short, so that the device
    /// ids (`{prefix}-{i}`, at most 16 bytes) equal the client ids and
    /// telering's connection affinity sees each device's own partition.
    fn prefix(self) -> String {
        match self {
            // Fetch variants run on instances of their own: their prefix
            // need not differ. Journaled instances use the same client ids
            // as the instance without the journal, so their devices land in
            // the same partitions and shards; so do TLS instances.
            SystemId::Telering { shards, fetch, .. } => {
                format!("t{shards}{}", if fetch.is_some() { "f" } else { "" })
            }
            SystemId::Mosquitto => "mo".to_owned(),
            SystemId::Rumqttd => "ru".to_owned(),
        }
    }
}

/// Payload format of the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Payload {
    /// `{"ts": .., "value": ..}` on temperature/humidity: one record each.
    Json,
    /// `{"ts": .., "temperature": .., "humidity": ..}`: two records each.
    Reading,
}

impl Payload {
    pub fn name(self) -> &'static str {
        match self {
            Payload::Json => "json",
            Payload::Reading => "reading",
        }
    }
}

/// What the simulator does in one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub sensors: usize,
    pub rate: Rate,
    pub messages: Option<u64>,
    pub duration: Option<Duration>,
    pub qos: u8,
    pub format: Payload,
    pub seed: u64,
}

impl Plan {
    /// Engine records per message (telering's consumer side counts records).
    fn records_per_message(&self) -> u64 {
        match self.format {
            Payload::Json => 1,
            Payload::Reading => 2,
        }
    }
}

/// A system under test, started once per process.
pub enum Sut {
    Telering(Box<Telering>),
    Mosquitto(Mosquitto),
    Rumqttd(Rumqttd),
}

impl Sut {
    /// Starts `id`. mosquitto's subscriber subscribes at QoS 1, so it gets
    /// each message at the QoS it was published with (QoS 0 stays 0). A
    /// journaled telering gets a fresh directory in `journal_parent`,
    /// deleted when it stops; a TLS one serves the certificate of `tls`.
    pub fn start(
        id: SystemId,
        mosquitto: Option<&Path>,
        journal_parent: &Path,
        tls: Option<&TlsFiles>,
    ) -> Result<Self, String> {
        Ok(match id {
            SystemId::Telering {
                shards,
                fetch,
                journal,
                tls: over_tls,
            } => Sut::Telering(Box::new(Telering::start(Setup {
                shards,
                fetch,
                journal_parent: journal.then(|| journal_parent.to_path_buf()),
                tls: if over_tls {
                    Some(tls.ok_or("no TLS certificate was made")?.clone())
                } else {
                    None
                },
            })?)),
            SystemId::Mosquitto => {
                let bin = mosquitto.ok_or("mosquitto is not installed")?;
                Sut::Mosquitto(Mosquitto::start(bin, 1)?)
            }
            SystemId::Rumqttd => Sut::Rumqttd(Rumqttd::start()?),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Sut::Telering(s) => s.addr(),
            Sut::Mosquitto(s) => s.addr(),
            Sut::Rumqttd(s) => s.addr(),
        }
    }

    /// Where the simulator connects: `localhost:<TLS port>` for a TLS
    /// instance (the certificate's name), else the plaintext address.
    pub fn broker(&self) -> String {
        match self {
            Sut::Telering(s) => match s.tls_addr() {
                Some(a) => format!("localhost:{}", a.port()),
                None => s.addr().to_string(),
            },
            other => other.addr().to_string(),
        }
    }

    /// The CA file the simulator verifies the broker with (TLS instances).
    fn cafile(&self) -> Option<PathBuf> {
        match self {
            Sut::Telering(s) => s.cafile(),
            _ => None,
        }
    }

    pub fn recorder(&self) -> &Recorder {
        match self {
            Sut::Telering(s) => s.recorder(),
            Sut::Mosquitto(s) => s.recorder(),
            Sut::Rumqttd(s) => s.recorder(),
        }
    }

    fn begin(&mut self) {
        match self {
            Sut::Telering(s) => s.begin(),
            Sut::Mosquitto(s) => s.begin(),
            Sut::Rumqttd(s) => s.begin(),
        }
    }

    fn external_pids(&self) -> Vec<u32> {
        match self {
            Sut::Mosquitto(s) => s.pid().into_iter().collect(),
            _ => Vec::new(),
        }
    }

    pub fn stop(self) -> Option<run_telering::Final> {
        match self {
            Sut::Telering(s) => return Some(s.stop()),
            Sut::Mosquitto(s) => s.stop(),
            Sut::Rumqttd(s) => {
                if let Err(e) = s.stop() {
                    eprintln!("mqtt-bench: bare rumqttd: {e}");
                }
            }
        }
        None
    }
}

/// A started system and the threads it started in this process.
pub struct Started {
    pub id: SystemId,
    pub sut: Sut,
    pub threads: HashSet<u32>,
}

impl Started {
    /// Starts `id` and notes the threads that appeared meanwhile (nothing
    /// else in this process starts threads while it does).
    pub fn start(
        id: SystemId,
        mosquitto: Option<&Path>,
        journal_parent: &Path,
        tls: Option<&TlsFiles>,
    ) -> Result<Self, String> {
        let before = cpu::thread_ids();
        let sut = Sut::start(id, mosquitto, journal_parent, tls)?;
        let threads = cpu::thread_ids().difference(&before).copied().collect();
        Ok(Self { id, sut, threads })
    }
}

/// One run of the simulator against `started`; `tag` makes the client ids
/// of the run fresh (with the system's prefix).
pub fn run_once(started: &mut Started, plan: &Plan, tag: &str) -> Result<RunResult, String> {
    let sut = &mut started.sut;
    sut.begin();
    let cfg = SimConfig {
        broker: sut.broker(),
        cafile: sut.cafile(),
        sensors: plan.sensors,
        rate: plan.rate,
        duration: plan.duration,
        count: plan.messages,
        qos: plan.qos,
        malformed: 0.0,
        format: match plan.format {
            Payload::Json => Format::Json,
            Payload::Reading => Format::Reading,
        },
        seed: plan.seed,
        client_prefix: format!("{}{tag}", started.id.prefix()),
        mqtt_v5: false,
        ..SimConfig::default()
    };
    let monitor = cpu::Monitor::start(started.threads.clone(), sut.external_pids());
    let sim = match sim::run_blocking(cfg) {
        Ok(s) => s,
        Err(e) => {
            monitor.finish();
            return Err(format!("simulator: {e}"));
        }
    };
    // The consumer side: every message sent, or no progress for QUIET.
    let per = plan.records_per_message();
    let sent = sim.sent;
    let complete = match sut {
        Sut::Telering(t) => {
            let want = sent * per;
            // A journaled instance also has every record in its journal
            // (at QoS 0 nothing waited for it).
            let journal = || t.journal_written().unwrap_or(want);
            wait_until(
                || t.slowest_group() >= want && t.recorder().count() >= want && journal() >= want,
                || t.recorder().count() + t.slowest_group() + journal(),
                QUIET,
                DRAIN_LIMIT,
            )
        }
        _ => {
            let r = sut.recorder();
            wait_until(|| r.count() >= sent, || r.count(), QUIET, DRAIN_LIMIT)
        }
    };
    // Work the system does after its last message (closing connections,
    // freeing queues) is its own: measured here, not in the next run.
    let settle = cpu::settle(
        &started.threads,
        &sut.external_pids(),
        SETTLE_WINDOW,
        SETTLE_SHARE,
        SETTLE_LIMIT,
    );
    let cpu = monitor.finish();
    let rec: Received = sut.recorder().snapshot();
    let (count, rate) = match sut {
        // `stats` counts records; a `reading` message makes `per` of them.
        Sut::Telering(_) => (rec.count / per, rec.rate() / per as f64),
        _ => (rec.count, rec.rate()),
    };
    let mut problems = Vec::new();
    if !complete && count >= sent {
        problems.push("the consumer side stalled".to_owned());
    }
    if count > sent {
        problems.push(format!("received {} more than sent", count - sent));
    }
    // Failed connect attempts (before publishing) count in `errors` but do
    // not matter; reconnects and unconfirmed messages do.
    if sim.lost > 0 || sim.reconnects > 0 {
        problems.push(format!(
            "simulator: {} reconnects, {} messages unconfirmed",
            sim.reconnects, sim.lost
        ));
    }
    if rec.no_ts > 0 {
        problems.push(format!("{} messages without ts", rec.no_ts));
    }
    let mut result = RunResult {
        sent,
        received: count,
        lost: sent.saturating_sub(count),
        msg_per_s: (rate * 10.0).round() / 10.0,
        span_s: rec.span_s(),
        system_cpu_us_per_msg: cpu::us_per_msg(cpu.system_s, count),
        sim_cpu_us_per_msg: cpu::us_per_msg(cpu.sim_s, sent),
        settle_s: (settle.as_secs_f64() * 1e3).round() / 1e3,
        latency_us: rec.latency,
        no_ts: rec.no_ts,
        sim,
        cpu,
        problems: Vec::new(),
        telering: None,
        dropped_by_broker: None,
        subscriber_errors: None,
    };
    match sut {
        Sut::Telering(t) => {
            let d = t.detail();
            let records = sent * per;
            let checks = [
                ("endpoint read", d.received, sent),
                ("accepted", d.accepted, sent),
                ("records published", d.records, records),
                ("delivered to alerts", d.delivered_alerts, records),
                ("delivered to stats", d.delivered_stats, records),
                ("dead-lettered", d.dead_lettered, 0),
                ("rejected", d.rejected, 0),
            ];
            for (what, got, want) in checks {
                if got != want {
                    problems.push(format!("{what}: {got}, expected {want}"));
                }
            }
            if let Some(written) = d.journal_written {
                if written != records {
                    problems.push(format!("journal written: {written}, expected {records}"));
                }
            }
            if let Some(n) = d.journal_write_errors.filter(|&n| n > 0) {
                problems.push(format!("journal: {n} failed writes or syncs"));
            }
            result.telering = Some(d);
        }
        Sut::Mosquitto(m) => {
            result.subscriber_errors = Some(m.errors());
            if m.errors() > 0 {
                problems.push(format!("subscriber: {} connection errors", m.errors()));
            }
            if !m.is_running() {
                problems.push("mosquitto or its subscriber stopped".to_owned());
            }
        }
        Sut::Rumqttd(r) => {
            result.dropped_by_broker = Some(r.dropped_by_broker());
            if r.dropped_by_broker() > 0 {
                problems.push(format!(
                    "the router dropped {} messages for the link",
                    r.dropped_by_broker()
                ));
            }
            if !r.is_running() {
                problems.push("the link reader stopped".to_owned());
            }
        }
    }
    result.problems = problems;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_client_ids() {
        assert_eq!(SystemId::telering(1).key(), "telering-1shard");
        assert_eq!(SystemId::telering(2).key(), "telering-2shards");
        let i = SystemId::Telering {
            shards: 2,
            fetch: Some((1, 0)),
            journal: false,
            tls: false,
        };
        assert_eq!(i.key(), "telering-2shards-fetch1");
        let w = SystemId::Telering {
            shards: 1,
            fetch: Some((16, 1)),
            journal: false,
            tls: false,
        };
        assert_eq!(w.key(), "telering-1shard-fetch16-1ms");
        assert_eq!(SystemId::Rumqttd.label(), "rumqttd (bare)");
        // The longest client id a run makes fits a device id.
        let big = SystemId::Telering {
            shards: 256,
            fetch: Some((1, 0)),
            journal: true,
            tls: true,
        };
        let id = format!("{}q1r19-{}", big.prefix(), 99_999);
        assert!(id.len() <= sim::MAX_DEVICE_ID_LEN, "{id}");
        // The journaled instance: its own name, the same client ids.
        let j = SystemId::telering_journal(2);
        assert_eq!(j.key(), "telering-2shards-journal");
        assert_eq!(j.prefix(), SystemId::telering(2).prefix());
        assert_eq!(j.without_journal(), SystemId::telering(2));
        assert!(j.journaled() && !SystemId::telering(2).journaled());
        // The TLS instance: likewise.
        let t = SystemId::telering_tls(2);
        assert_eq!(t.key(), "telering-2shards-tls");
        assert_eq!(t.prefix(), SystemId::telering(2).prefix());
        assert_eq!(t.without_tls(), SystemId::telering(2));
        assert!(t.tls() && !t.journaled() && !SystemId::telering(2).tls());
        assert_eq!(j.without_tls(), j);
        // Tables list telering first, by shards, then the peers.
        let mut v = vec![
            SystemId::Rumqttd,
            SystemId::Mosquitto,
            i,
            SystemId::telering(1),
        ];
        v.sort();
        assert_eq!(
            v,
            vec![
                SystemId::telering(1),
                i,
                SystemId::Mosquitto,
                SystemId::Rumqttd
            ]
        );
    }
}
