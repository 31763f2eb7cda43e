//! `mqtt-bench`: the MQTT ingest benchmark.
//!
//! ```sh
//! cargo run --release -p mqtt-bench                  # ~50 s on 2 cores
//! cargo run --release -p mqtt-bench -- --quick       # smoke test, a few seconds
//! cargo run --release -p mqtt-bench -- --json        # JSON on stdout
//! cargo run --release -p mqtt-bench -- --latency-only
//! cargo run --release -p mqtt-bench -- --journal     # each telering also journaled
//! cargo run --release -p mqtt-bench -- --tls         # each telering also over TLS
//! ```
//!
//! The sensor simulator ([`telering_sim`], JSON payloads carrying their
//! send time `ts`) publishes the same load into these systems, in one
//! process and one run:
//!
//! 1. **telering**, in-process as `telering serve` runs it: `Server::prepare`
//!    (telering's own MQTT endpoint on its ingest shards, validation, the
//!    engine; default configuration) with the built-in consumer groups
//!    (cluster `alerts`, broadcast `stats`; `stats` is the consumer side),
//!    once per shard count of `--shards` (`telering-1shard`,
//!    `telering-2shards`): `ingest.shards` is the only difference;
//! 2. **mosquitto**, a child process on a generated configuration, with one
//!    rumqttc subscriber on `sensors/#` (skipped, with a message, when
//!    mosquitto is not installed);
//! 3. **bare rumqttd**, one thread reading it through an in-process link,
//!    with no validation and no engine.
//!
//! With `--journal`, each telering instance of the throughput runs runs a
//! second time with the journal on (`telering-2shards-journal`: `[journal]
//! dir` in a fresh directory in `--journal-dir`, the default `fsync =
//! "interval"`, so every QoS 1 PUBACK waits for the journal), in the same
//! rounds, with the same client ids; the directories are deleted at the end.
//!
//! With `--tls`, likewise each such instance runs a second time with the
//! TLS listener open (`telering-2shards-tls`: `[tls]` with a certificate
//! for `localhost` signed by a CA, both made with rcgen at start in a
//! temporary directory deleted at the end); its simulator connects to the
//! TLS port as `localhost` with `cafile` set to that CA. Reported per QoS:
//! its msg/s and its server CPU per message over the plaintext instance's
//! (median over rounds of the ratio within each round; no target).
//!
//! Each system is started once (rumqttd cannot be stopped) and warmed up.
//!
//! **Throughput**, at each QoS of `--qos`: the simulator at full speed,
//! `--rounds` runs per system interleaved with the others in a rotating
//! order; each system's median-rate run is reported. For each: msg/s at
//! the consumer side (count over the time from its first to its last
//! message), end-to-end latency (receive time minus `ts`, an
//! HdrHistogram), whether every message sent was received (and telering's
//! exact counts: read, accepted, records, delivered per group), and the
//! CPU its threads (and its broker process) used per message, by thread.
//! The targets, per telering instance and QoS, are ratios within a round,
//! their median over rounds reported (a round's runs are back to back, so
//! slow drift of a shared machine cancels): bare rumqttd's server CPU per
//! message over telering's ≥ 2, telering's msg/s ≥ 1.5× bare rumqttd's and
//! ≥ 4× mosquitto's; with `--journal`, each journaled instance's msg/s ≥
//! 0.8× the same instance's without the journal.
//!
//! **Latency**: the simulator at a fixed total rate (`--latency-rate`,
//! QoS 1) into telering with the configuration's consumer fetch settings
//! (`[consumers] fetch_min`, `fetch_max_wait_ms`: up to that long added
//! while a poll gathers records), into a telering whose consumers fetch
//! with `--latency-fetch` (default `fetch_min = 1, fetch_max_wait_ms = 0`),
//! and into mosquitto, interleaved; each system's rounds in one histogram,
//! with each system's CPU per message at that rate. Targets: telering's
//! p50 and p99 each ≤ mosquitto's. `--compare-fetch` runs the fetch
//! variants in the throughput rounds too.
//!
//! Exit status 1 when a system failed, lost messages or miscounted; missed
//! targets are reported, not failures.

mod common;
mod cpu;
mod report;
mod run_mosquitto;
mod run_rumqttd;
mod run_telering;
mod systems;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hdrhistogram::Histogram;
use telering::mqtt::config::{MAX_FETCH_WAIT_MS, MAX_SHARDS};
use telering::mqtt::ServerConfig;
use telering_sim::{self as sim, Rate};

use report::{fmt_rate, LatencyPhase, LatencySystem, Phase, Report, RunResult};
use systems::{run_once, Fetch, Kind, Payload, Plan, Started, Sut, SystemId};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Messages of the unmeasured warm-up run of each system (at most).
const WARMUP: u64 = 20_000;

/// MQTT ingest benchmark: the sensor simulator into telering (in-process,
/// as `telering serve`, once per shard count), mosquitto (one subscriber)
/// and bare rumqttd (an in-process link, no engine): throughput at full
/// speed at QoS 0 and 1, then latency at a fixed rate. Prints msg/s,
/// end-to-end latency, losses, CPU per message by thread and the ratios
/// against the targets.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Simulated sensors (one MQTT connection each) [default: 20; 4 with --quick].
    #[arg(long)]
    sensors: Option<usize>,
    /// Messages per system and round of the throughput runs [default:
    /// 200000 at QoS 0 and 100000 at QoS 1; 20000 and 10000 with --quick].
    #[arg(long, conflicts_with = "duration")]
    messages: Option<u64>,
    /// Publish for this many seconds per system and round instead of a
    /// message count (throughput runs).
    #[arg(long)]
    duration: Option<f64>,
    /// QoS levels of the throughput runs, each a comparison of its own.
    #[arg(long, value_delimiter = ',', default_value = "0,1",
          value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: Vec<u8>,
    /// telering's `ingest.shards` for the throughput runs: one telering
    /// instance per value, all in the same rounds.
    #[arg(long, value_delimiter = ',', default_value = "1,2",
          value_parser = clap::value_parser!(u64).range(1..=MAX_SHARDS as u64))]
    shards: Vec<u64>,
    /// Payload format (both carry the send time `ts`).
    #[arg(long, value_enum, default_value_t = Payload::Json)]
    format: Payload,
    /// Throughput runs per system and QoS, interleaved (the order rotates
    /// each round, so with as many rounds as systems each system runs in
    /// every position once); each system's run with the median rate is
    /// reported [default: 4; 1 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=20))]
    rounds: Option<u64>,
    /// Total rate of the latency run, msg/s; 0 skips it.
    #[arg(long, default_value_t = 20_000.0)]
    latency_rate: f64,
    /// Seconds per system and round of the latency run [default: 1.5; 0.5 with --quick].
    #[arg(long)]
    latency_seconds: Option<f64>,
    /// Rounds of the latency run, interleaved like the throughput rounds
    /// [default: 3; 1 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=20))]
    latency_rounds: Option<u64>,
    /// QoS of the latency run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    latency_qos: u8,
    /// telering's `ingest.shards` in the latency run [default: one per core,
    /// as the default configuration's `shards = 0`].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_SHARDS as u64))]
    latency_shards: Option<u64>,
    /// Consumer fetch settings `FETCH_MIN:FETCH_MAX_WAIT_MS` of the latency
    /// run's further telering instances (comma-separated), each run beside
    /// telering with the configuration's `[consumers]` settings.
    #[arg(long, value_delimiter = ',', default_value = "1:0", value_parser = parse_fetch)]
    latency_fetch: Vec<Fetch>,
    /// Also run the `--latency-fetch` instances in the throughput runs
    /// (their CPU per message at full speed, beside the others).
    #[arg(long)]
    compare_fetch: bool,
    /// Only the latency run.
    #[arg(long, conflicts_with = "no_latency")]
    latency_only: bool,
    /// No latency run.
    #[arg(long)]
    no_latency: bool,
    /// Also run each `--shards` telering instance of the throughput runs
    /// with the journal on (`[journal] dir` in a fresh directory, `fsync =
    /// "interval"`), in the same rounds: `telering-Nshards-journal`, and
    /// its msg/s over the instance without the journal (target ≥ 0.8).
    #[arg(long)]
    journal: bool,
    /// Where `--journal` makes the instances' data directories (deleted at
    /// the end); put it on the disk to measure [default: the system temp
    /// dir].
    #[arg(long, requires = "journal")]
    journal_dir: Option<PathBuf>,
    /// Also run each `--shards` telering instance of the throughput runs
    /// with the TLS listener open (a CA and a certificate for `localhost`
    /// made at start in a temporary directory, deleted at the end), the
    /// simulator connecting to it over TLS, in the same rounds:
    /// `telering-Nshards-tls`, and its msg/s and CPU per message over the
    /// plaintext instance's (no target).
    #[arg(long)]
    tls: bool,
    /// Only these systems (comma-separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Kind>,
    /// A tiny run for smoke tests (a few seconds).
    #[arg(long)]
    quick: bool,
    /// Print one JSON object on stdout (the tables go to stderr).
    #[arg(long)]
    json: bool,
    /// Fail (exit 1) when mosquitto is not installed instead of skipping it.
    #[arg(long)]
    require_mosquitto: bool,
    /// The mosquitto executable [default: `mosquitto` on PATH or in /usr/sbin].
    #[arg(long)]
    mosquitto: Option<PathBuf>,
    /// Seed of the simulated readings.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let args = Args::parse();
    sim::log::init_tracing(args.verbose, &["rumqttd"]);
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("mqtt-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `FETCH_MIN:FETCH_MAX_WAIT_MS`, within the configuration's limits.
fn parse_fetch(s: &str) -> Result<Fetch, String> {
    let (min, wait) = s.split_once(':').ok_or(format!(
        "{s:?}: expected FETCH_MIN:FETCH_MAX_WAIT_MS, e.g. 1:0"
    ))?;
    let min: usize = min.trim().parse().map_err(|e| format!("{min:?}: {e}"))?;
    let wait: u64 = wait.trim().parse().map_err(|e| format!("{wait:?}: {e}"))?;
    if min == 0 || wait > MAX_FETCH_WAIT_MS {
        return Err(format!(
            "{s:?}: fetch_min must be at least 1 and fetch_max_wait_ms at most \
             {MAX_FETCH_WAIT_MS}"
        ));
    }
    Ok((min, wait))
}

fn seconds(what: &str, s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or(format!("--{what} {s} is not a positive number of seconds"))
}

/// The systems, started once, and what happened to them.
struct Bench {
    suts: Vec<Started>,
    failed: BTreeMap<String, String>,
    /// Systems that had their warm-up run, at which QoS.
    warm: HashSet<(SystemId, u8)>,
    quick: bool,
}

impl Bench {
    /// Warms up each of `ids` not warmed yet (first-touch memory,
    /// connection setup paths), not measured.
    fn warm_up(&mut self, ids: &[SystemId], plan: &Plan, tag: &str) {
        if self.quick {
            return;
        }
        for s in self.suts.iter_mut() {
            if !ids.contains(&s.id) || self.warm.contains(&(s.id, plan.qos)) {
                continue;
            }
            let key = s.id.key();
            if self.failed.contains_key(&key) {
                continue;
            }
            eprintln!(
                "mqtt-bench: warming up {} ({} messages, not measured)",
                s.id.label(),
                plan.messages.unwrap_or_default()
            );
            match run_once(s, plan, tag) {
                Ok(_) => {
                    self.warm.insert((s.id, plan.qos));
                }
                Err(e) => {
                    eprintln!("mqtt-bench: {} warm-up FAILED: {e}", s.id.label());
                    self.failed.insert(key, format!("FAILED in warm-up: {e}"));
                }
            }
        }
    }

    /// `rounds` runs of each of `ids` at `plan`, interleaved in a rotating
    /// order; `each` sees every run (after it, before the next begins).
    fn rounds(
        &mut self,
        ids: &[SystemId],
        plan: &Plan,
        rounds: u64,
        phase: &str,
        mut each: impl FnMut(&Started, &RunResult),
    ) -> BTreeMap<SystemId, Vec<RunResult>> {
        let idx: Vec<usize> = (0..self.suts.len())
            .filter(|&i| ids.contains(&self.suts[i].id))
            .collect();
        let mut runs: BTreeMap<SystemId, Vec<RunResult>> = BTreeMap::new();
        for round in 0..rounds {
            let n = idx.len().max(1);
            for k in 0..idx.len() {
                let i = idx[(k + round as usize) % n];
                let s = &mut self.suts[i];
                let key = s.id.key();
                if self.failed.contains_key(&key) {
                    continue;
                }
                eprint!(
                    "mqtt-bench: {phase} round {}/{rounds}: {:<23} ",
                    round + 1,
                    s.id.label()
                );
                match run_once(s, plan, &format!("{phase}{round}")) {
                    Ok(r) => {
                        eprintln!(
                            "{:>9} msg/s, {} / {} received, p50 {} us, p99 {} us, {:.2} CPU us/msg, \
                             settled in {:.2} s",
                            fmt_rate(r.msg_per_s),
                            r.received,
                            r.sent,
                            r.latency_us.p50,
                            r.latency_us.p99,
                            r.system_cpu_us_per_msg,
                            r.settle_s
                        );
                        each(s, &r);
                        runs.entry(s.id).or_default().push(r);
                    }
                    Err(e) => {
                        eprintln!("FAILED: {e}");
                        self.failed.insert(key, format!("FAILED: {e}"));
                    }
                }
            }
        }
        // A system that failed in some round is not compared.
        runs.retain(|id, _| !self.failed.contains_key(&id.key()));
        runs
    }
}

/// Returns whether every system ran and received every message.
fn run(args: &Args) -> Result<bool, String> {
    let duration = args.duration.map(|s| seconds("duration", s)).transpose()?;
    let sensors = args.sensors.unwrap_or(if args.quick { 4 } else { 20 });
    if sensors == 0 || args.messages == Some(0) {
        return Err("--sensors and --messages must be at least 1".into());
    }
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 4 });
    let mut qos = args.qos.clone();
    qos.sort_unstable();
    qos.dedup();
    let mut shards: Vec<usize> = args.shards.iter().map(|&s| s as usize).collect();
    shards.sort_unstable();
    shards.dedup();
    let latency = !args.no_latency && args.latency_rate > 0.0;
    if args.latency_only && !latency {
        return Err("--latency-only needs a --latency-rate above 0".into());
    }
    if !args.latency_rate.is_finite() || args.latency_rate < 0.0 {
        return Err(format!(
            "--latency-rate {} is not a rate",
            args.latency_rate
        ));
    }
    let latency_seconds = args
        .latency_seconds
        .unwrap_or(if args.quick { 0.5 } else { 1.5 });
    seconds("latency-seconds", latency_seconds)?;
    let latency_messages = ((args.latency_rate * latency_seconds).round() as u64).max(1);
    let latency_rounds = args
        .latency_rounds
        .unwrap_or(if args.quick { 1 } else { 3 });
    let latency_shards = args
        .latency_shards
        .map_or_else(|| ServerConfig::default().shards(), |s| s as usize);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let wanted = |id: &SystemId| args.only.is_empty() || args.only.contains(&id.kind());

    let mut fetches = args.latency_fetch.clone();
    fetches.dedup();
    let fetch_variants: Vec<SystemId> = fetches
        .iter()
        .map(|&f| SystemId::Telering {
            shards: latency_shards,
            fetch: Some(f),
            journal: false,
            tls: false,
        })
        .collect();
    let throughput_ids: Vec<SystemId> = if args.latency_only {
        Vec::new()
    } else {
        let extra = if args.compare_fetch {
            &fetch_variants[..]
        } else {
            &[]
        };
        let journaled: Vec<SystemId> = if args.journal {
            shards
                .iter()
                .map(|&s| SystemId::telering_journal(s))
                .collect()
        } else {
            Vec::new()
        };
        let tls: Vec<SystemId> = if args.tls {
            shards.iter().map(|&s| SystemId::telering_tls(s)).collect()
        } else {
            Vec::new()
        };
        shards
            .iter()
            .map(|&s| SystemId::telering(s))
            .chain(journaled)
            .chain(tls)
            .chain(extra.iter().copied())
            .chain([SystemId::Mosquitto, SystemId::Rumqttd])
            .filter(wanted)
            .collect()
    };
    let latency_ids: Vec<SystemId> = if latency {
        std::iter::once(SystemId::telering(latency_shards))
            .chain(fetch_variants.iter().copied())
            .chain([SystemId::Mosquitto])
            .filter(wanted)
            .collect()
    } else {
        Vec::new()
    };
    let mut all: Vec<SystemId> = throughput_ids.iter().chain(&latency_ids).copied().collect();
    all.sort();
    all.dedup();

    let mut skipped = BTreeMap::new();
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let mosquitto = run_mosquitto::find(args.mosquitto.as_deref());
    let mut mosquitto_version = None;
    if all.contains(&SystemId::Mosquitto) {
        match &mosquitto {
            Some(bin) => mosquitto_version = Some(run_mosquitto::version(bin)),
            None => {
                let why = match &args.mosquitto {
                    Some(p) => format!("{} is not a file", p.display()),
                    None => "mosquitto is not installed (not on PATH nor in /usr/sbin; \
                             Debian/Ubuntu: apt-get install mosquitto)"
                        .to_owned(),
                };
                if args.require_mosquitto {
                    return Err(format!("{why}; --require-mosquitto was given"));
                }
                eprintln!("mqtt-bench: skipping mosquitto: {why}");
                skipped.insert(SystemId::Mosquitto.key(), format!("skipped: {why}"));
            }
        }
    }
    eprintln!(
        "mqtt-bench: {sensors} sensors, {} payloads, {cores} cores; throughput {}; latency {}",
        args.format.name(),
        if throughput_ids.is_empty() {
            "skipped".to_owned()
        } else {
            format!("at QoS {qos:?}, {rounds} round(s)")
        },
        if latency {
            format!(
                "at {} msg/s, QoS {}, {latency_rounds} round(s) of {latency_messages} messages",
                fmt_rate(args.latency_rate),
                args.latency_qos
            )
        } else {
            "skipped".to_owned()
        }
    );

    // Start every system once (rumqttd cannot be stopped); idle ones cost
    // little (parked threads, a quiet broker; the CPU tables show the rest
    // of this process).
    if args.journal && throughput_ids.is_empty() {
        eprintln!("mqtt-bench: --journal applies to the throughput runs, which do not run");
    }
    let journal_parent = args.journal_dir.clone().unwrap_or_else(std::env::temp_dir);
    if all.iter().any(|id| id.journaled()) {
        eprintln!(
            "mqtt-bench: journaled telering instances keep their data in fresh directories in {} \
             (fsync \"interval\"), deleted at the end",
            journal_parent.display()
        );
    }
    if args.tls && throughput_ids.is_empty() {
        eprintln!("mqtt-bench: --tls applies to the throughput runs, which do not run");
    }
    // Kept until every system has stopped; its directory goes on drop.
    let tls_cert = if all.iter().any(|id| id.tls()) {
        match run_telering::TlsCert::generate() {
            Ok(c) => {
                eprintln!(
                    "mqtt-bench: TLS instances serve a certificate for localhost made in {} \
                     (deleted at the end)",
                    c.dir().display()
                );
                Some(c)
            }
            Err(e) => {
                eprintln!("mqtt-bench: {e}");
                None
            }
        }
    } else {
        None
    };
    let mut suts = Vec::new();
    let mut telering_pinning = BTreeMap::new();
    for &id in &all {
        if skipped.contains_key(&id.key()) {
            continue;
        }
        let tls = tls_cert.as_ref().map(|c| &c.files);
        match Started::start(id, mosquitto.as_deref(), &journal_parent, tls) {
            Ok(s) => {
                if let Sut::Telering(t) = &s.sut {
                    telering_pinning.insert(id.key(), t.pinning());
                }
                let tls_note = if id.tls() {
                    format!(", the simulator connects over TLS to {}", s.sut.broker())
                } else {
                    String::new()
                };
                eprintln!(
                    "mqtt-bench: {} listening on {}{tls_note}",
                    id.label(),
                    s.sut.addr()
                );
                suts.push(s);
            }
            Err(e) => {
                eprintln!("mqtt-bench: {} failed to start: {e}", id.label());
                if id == SystemId::Mosquitto && !args.require_mosquitto {
                    skipped.insert(id.key(), format!("skipped: {e}"));
                } else {
                    failed.insert(id.key(), format!("FAILED: {e}"));
                }
            }
        }
    }
    let mut bench = Bench {
        suts,
        failed,
        warm: HashSet::new(),
        quick: args.quick,
    };
    let base = Plan {
        sensors,
        rate: Rate::Unlimited,
        messages: None,
        duration: None,
        qos: 0,
        format: args.format,
        seed: args.seed,
    };

    let mut throughput = BTreeMap::new();
    for &q in qos.iter().filter(|_| !throughput_ids.is_empty()) {
        let messages = match (args.messages, duration) {
            (Some(m), _) => Some(m),
            (None, Some(_)) => None,
            (None, None) => Some(match (args.quick, q) {
                (false, 0) => 200_000,
                (false, _) => 100_000,
                (true, 0) => 20_000,
                (true, _) => 10_000,
            }),
        };
        let plan = Plan {
            messages,
            duration,
            qos: q,
            ..base.clone()
        };
        // Each QoS warms up its own paths (acknowledgements at QoS 1).
        let warm = Plan {
            messages: Some(messages.map_or(WARMUP, |m| m.min(WARMUP))),
            duration: None,
            ..plan.clone()
        };
        bench.warm_up(&throughput_ids, &warm, &format!("w{q}"));
        let runs = bench.rounds(&throughput_ids, &plan, rounds, &format!("q{q}r"), |_, _| {});
        let phase = Phase::new(q, messages, duration.map(|d| d.as_secs_f64()), rounds, runs);
        throughput.insert(format!("qos{q}"), phase);
    }

    let latency_phase = latency.then(|| {
        let plan = Plan {
            rate: Rate::Total(args.latency_rate),
            messages: Some(latency_messages),
            qos: args.latency_qos,
            ..base.clone()
        };
        // Systems the throughput runs warmed at this QoS stay warm.
        let warm = Plan {
            rate: Rate::Unlimited,
            messages: Some(WARMUP),
            ..plan.clone()
        };
        bench.warm_up(&latency_ids, &warm, "wl");
        let mut histograms: BTreeMap<SystemId, Histogram<u64>> = BTreeMap::new();
        let runs = bench.rounds(&latency_ids, &plan, latency_rounds, "l", |s, _| {
            let h = s.sut.recorder().histogram();
            match histograms.get_mut(&s.id) {
                Some(all) => {
                    let _ = all.add(&h);
                }
                None => {
                    histograms.insert(s.id, h);
                }
            }
        });
        let fetch_of = |id: SystemId| {
            bench
                .suts
                .iter()
                .find(|s| s.id == id)
                .and_then(|s| match &s.sut {
                    Sut::Telering(t) => Some(t.fetch()),
                    _ => None,
                })
        };
        let results = runs
            .into_iter()
            .map(|(id, r)| {
                let empty = Histogram::new(3).expect("3 significant digits is valid");
                let h = histograms.get(&id).unwrap_or(&empty);
                (id, LatencySystem::of(r, h, fetch_of(id)))
            })
            .collect();
        LatencyPhase::new(
            args.latency_rate,
            args.latency_qos,
            latency_messages,
            latency_rounds,
            results,
        )
    });
    let mut telering_final = BTreeMap::new();
    for s in bench.suts {
        let key = s.id.key();
        if let Some(f) = s.sut.stop() {
            telering_final.insert(key, f);
        }
    }
    drop(tls_cert);
    let all_received = throughput.values().all(|p: &Phase| p.all_received)
        && latency_phase.as_ref().is_none_or(|p| p.all_received);
    let report = Report {
        tool: "mqtt-bench",
        cores,
        note: report::cores_note(cores),
        sensors,
        format: args.format.name(),
        seed: args.seed,
        mosquitto_version,
        telering_pinning,
        throughput,
        latency: latency_phase,
        skipped,
        failed: bench.failed,
        all_received,
        telering_final,
    };
    let clean = report.clean();
    if args.json {
        // The tables for people on stderr, the JSON alone on stdout.
        eprint!("{}", report::table(&report));
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", report::table(&report));
    }
    Ok(clean)
}
