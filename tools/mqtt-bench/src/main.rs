//! `mqtt-bench`: the MQTT ingest benchmark.
//!
//! ```sh
//! cargo run --release -p mqtt-bench              # ~15 s on 2 cores
//! cargo run --release -p mqtt-bench -- --quick   # smoke test, ~2 s
//! cargo run --release -p mqtt-bench -- --json    # JSON on stdout
//! ```
//!
//! The sensor simulator ([`telering_sim`], `Rate::Unlimited`, JSON
//! payloads carrying their send time `ts`) publishes the same load into three
//! systems, in one process and one run:
//!
//! 1. **telering**, in-process as `telering serve` runs it: `Server::start`
//!    (embedded rumqttd + bridge + validation + engine, default
//!    configuration) with a cluster group `alerts` and a broadcast group
//!    `stats`; `stats` is the consumer side;
//! 2. **mosquitto**, a child process on a generated configuration, with one
//!    rumqttc subscriber on `sensors/#` at the simulator's QoS (skipped, with
//!    a message, when mosquitto is not installed);
//! 3. **bare rumqttd**, telering's broker configuration read by one thread
//!    through an in-process link, with no validation and no engine.
//!
//! Each system is started once (rumqttd cannot be stopped), warmed up, then
//! run `--rounds` times, interleaved with the others in a rotating order;
//! the run with the median rate is reported. For each it reports the
//! messages per second the consumer side received (count over the time from
//! its first to its last message), the end-to-end latency (receive time
//! minus `ts`, an HdrHistogram), whether every message sent was received,
//! and the CPU its threads (and its broker process) used per message; then
//! the ratios telering/mosquitto (target ≥ 1.5) and telering/bare rumqttd
//! (target ≥ 0.9), each the median over rounds of the ratio within a round
//! (a round's runs are back to back, so slow drift of a shared machine
//! cancels). Exit status 1 when a system failed or lost messages.

mod common;
mod cpu;
mod run_mosquitto;
mod run_rumqttd;
mod run_telering;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use telering_sim::{self as sim, Format, Rate, SimConfig, SimSummary};

use common::{wait_until, Latency, Received};
use cpu::CpuReport;
use run_mosquitto::Mosquitto;
use run_rumqttd::Rumqttd;
use run_telering::Telering;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Target: telering's ingest rate over mosquitto's.
const TARGET_OVER_MOSQUITTO: f64 = 1.5;
/// Target: telering's ingest rate over bare rumqttd's (the engine costs < 10 %).
const TARGET_OVER_RUMQTTD: f64 = 0.9;
/// After the simulator is done, the consumer side must make progress at
/// least this often, or the missing messages count as lost.
const QUIET: Duration = Duration::from_secs(3);
/// Longest wait for the consumer side after the simulator is done.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// Messages of the unmeasured warm-up run of each system (at most).
const WARMUP: u64 = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum System {
    Telering,
    Mosquitto,
    Rumqttd,
}

impl System {
    const ALL: [System; 3] = [System::Telering, System::Mosquitto, System::Rumqttd];

    fn key(self) -> &'static str {
        match self {
            System::Telering => "telering",
            System::Mosquitto => "mosquitto",
            System::Rumqttd => "rumqttd",
        }
    }

    fn label(self) -> &'static str {
        match self {
            System::Telering => "telering",
            System::Mosquitto => "mosquitto",
            System::Rumqttd => "rumqttd (bare)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Payload {
    /// `{"ts": .., "value": ..}` on temperature/humidity: one record each.
    Json,
    /// `{"ts": .., "temperature": .., "humidity": ..}`: two records each.
    Reading,
}

/// MQTT ingest benchmark: the sensor simulator at full speed into telering
/// (in-process, as `telering serve`), mosquitto (one subscriber) and bare
/// rumqttd (an in-process link, no engine). Prints msg/s, end-to-end latency,
/// losses, the ratios against the targets and where the CPU went.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Simulated sensors (one MQTT connection each) [default: 20; 4 with --quick].
    #[arg(long)]
    sensors: Option<usize>,
    /// Messages per system and round [default: 200000; 20000 with --quick].
    #[arg(long, conflicts_with = "duration")]
    messages: Option<u64>,
    /// Publish for this many seconds per system instead of a message count.
    #[arg(long)]
    duration: Option<f64>,
    /// MQTT QoS of the simulator (and of the mosquitto subscriber).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    /// Payload format (both carry the send time `ts`).
    #[arg(long, value_enum, default_value_t = Payload::Json)]
    format: Payload,
    /// Runs per system, interleaved (the order rotates each round); each
    /// system's run with the median rate is reported [default: 5; 1 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=20))]
    rounds: Option<u64>,
    /// Only these systems (comma-separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<System>,
    /// A tiny run for smoke tests (a few seconds).
    #[arg(long)]
    quick: bool,
    /// Print one JSON object on stdout (the table goes to stderr).
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

/// One run of one system.
#[derive(Debug, Clone, serde::Serialize)]
struct RunResult {
    /// Messages the simulator sent (accepted by its clients).
    sent: u64,
    /// Messages the consumer side received.
    received: u64,
    /// `sent - received` (0 when every message arrived).
    lost: u64,
    /// Messages per second at the consumer side, first to last message.
    msg_per_s: f64,
    /// Seconds from the first to the last message received.
    span_s: f64,
    /// CPU time of the system (its threads and its broker process, not the
    /// simulator) per message received, µs: robust against other load.
    system_cpu_us_per_msg: f64,
    /// CPU time of the simulator per message sent, µs.
    sim_cpu_us_per_msg: f64,
    latency_us: Latency,
    /// Messages received without a `ts`.
    no_ts: u64,
    /// What the simulator reported.
    sim: SimSummary,
    cpu: CpuReport,
    /// Problems found (besides losses).
    problems: Vec<String>,
    /// telering's own counters for the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    telering: Option<run_telering::Detail>,
    /// Messages the broker dropped before its reader got them (rumqttd).
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped_by_broker: Option<u64>,
    /// Subscriber connection errors (mosquitto).
    #[serde(skip_serializing_if = "Option::is_none")]
    subscriber_errors: Option<u64>,
}

impl RunResult {
    fn ok(&self) -> bool {
        self.lost == 0 && self.problems.is_empty()
    }
}

/// A system under test, started once per process.
enum Sut {
    Telering(Box<Telering>),
    Mosquitto(Mosquitto),
    Rumqttd(Rumqttd),
}

/// A started system and the threads it started in this process.
struct Started {
    which: System,
    sut: Sut,
    threads: HashSet<u32>,
}

impl Sut {
    fn start(which: System, args: &Args, mosquitto: Option<&PathBuf>) -> Result<Self, String> {
        Ok(match which {
            System::Telering => Sut::Telering(Box::new(Telering::start()?)),
            System::Mosquitto => {
                let bin = mosquitto.ok_or("mosquitto is not installed")?;
                Sut::Mosquitto(Mosquitto::start(bin, args.qos)?)
            }
            System::Rumqttd => Sut::Rumqttd(Rumqttd::start()?),
        })
    }

    fn addr(&self) -> std::net::SocketAddr {
        match self {
            Sut::Telering(s) => s.addr(),
            Sut::Mosquitto(s) => s.addr(),
            Sut::Rumqttd(s) => s.addr(),
        }
    }

    fn recorder(&self) -> &common::Recorder {
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

    fn stop(self) -> Option<run_telering::Final> {
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

#[derive(Debug, Clone)]
struct Plan {
    sensors: usize,
    messages: Option<u64>,
    duration: Option<Duration>,
    qos: u8,
    format: Payload,
    seed: u64,
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

fn run_once(started: &mut Started, plan: &Plan, round: u64) -> Result<RunResult, String> {
    let which = started.which;
    let sut = &mut started.sut;
    sut.begin();
    let cfg = SimConfig {
        broker: sut.addr().to_string(),
        sensors: plan.sensors,
        rate: Rate::Unlimited,
        duration: plan.duration,
        count: plan.messages,
        qos: plan.qos,
        malformed: 0.0,
        format: match plan.format {
            Payload::Json => Format::Json,
            Payload::Reading => Format::Reading,
        },
        seed: plan.seed,
        // Fresh client ids per system and round.
        client_prefix: format!("{}{round}", &which.key()[..2]),
        mqtt_v5: false,
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
            wait_until(
                || t.slowest_group() >= want && t.recorder().count() >= want,
                || t.recorder().count() + t.slowest_group(),
                QUIET,
                DRAIN_LIMIT,
            )
        }
        _ => {
            let r = sut.recorder();
            wait_until(|| r.count() >= sent, || r.count(), QUIET, DRAIN_LIMIT)
        }
    };
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
        system_cpu_us_per_msg: per_msg(cpu.system_s, count),
        sim_cpu_us_per_msg: per_msg(cpu.sim_s, sent),
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

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

fn per_msg(cpu_s: f64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        (cpu_s * 1e8 / n as f64).round() / 100.0
    }
}

/// The median-rate run and every run's rate.
#[derive(Debug, Clone, serde::Serialize)]
struct SystemResult {
    #[serde(flatten)]
    run: RunResult,
    /// Rate of every round, in order.
    rounds_msg_per_s: Vec<f64>,
    /// Whether every round received every message.
    all_received: bool,
}

fn pick(runs: Vec<RunResult>) -> Option<SystemResult> {
    let rounds: Vec<f64> = runs.iter().map(|r| r.msg_per_s).collect();
    let all_received = runs.iter().all(|r| r.lost == 0);
    let mut sorted = runs;
    sorted.sort_by(|a, b| a.msg_per_s.total_cmp(&b.msg_per_s));
    let mid = sorted.len().checked_sub(1)? / 2;
    Some(SystemResult {
        run: sorted.swap_remove(mid),
        rounds_msg_per_s: rounds,
        all_received,
    })
}

#[derive(Debug, Clone, serde::Serialize)]
struct Target {
    name: &'static str,
    /// The median over rounds of the ratio within each round (the systems
    /// of a round run back to back, so slow drift of the machine cancels);
    /// with one round, just that round's ratio.
    ratio: Option<f64>,
    /// The ratio within each round.
    per_round: Vec<f64>,
    /// Ratio of the two reported (median-rate) runs.
    ratio_of_medians: Option<f64>,
    target: f64,
    met: Option<bool>,
    /// ratio / target - 1: above 0 when met.
    margin: Option<f64>,
}

impl Target {
    fn new(
        name: &'static str,
        num: Option<&SystemResult>,
        den: Option<&SystemResult>,
        target: f64,
    ) -> Self {
        let ratio_of_medians = match (num, den) {
            (Some(a), Some(b)) if b.run.msg_per_s > 0.0 => {
                Some(round3(a.run.msg_per_s / b.run.msg_per_s))
            }
            _ => None,
        };
        let per_round: Vec<f64> = match (num, den) {
            (Some(a), Some(b)) if a.rounds_msg_per_s.len() == b.rounds_msg_per_s.len() => a
                .rounds_msg_per_s
                .iter()
                .zip(&b.rounds_msg_per_s)
                .filter(|(_, d)| **d > 0.0)
                .map(|(n, d)| round3(n / d))
                .collect(),
            _ => Vec::new(),
        };
        let ratio = if per_round.is_empty() {
            ratio_of_medians
        } else {
            let mut sorted = per_round.clone();
            sorted.sort_by(f64::total_cmp);
            let m = sorted.len() / 2;
            Some(if sorted.len() % 2 == 1 {
                sorted[m]
            } else {
                round3((sorted[m - 1] + sorted[m]) / 2.0)
            })
        };
        Self {
            name,
            ratio,
            per_round,
            ratio_of_medians,
            target,
            met: ratio.map(|r| r >= target),
            margin: ratio.map(|r| round3(r / target - 1.0)),
        }
    }

    fn line(&self) -> String {
        match (self.ratio, self.margin) {
            (Some(r), Some(m)) => format!(
                "{:<26} {:>6.2}x   target >= {:.2}x   {} by {:+.1}%",
                self.name,
                r,
                self.target,
                if r >= self.target { "MET" } else { "MISSED" },
                100.0 * m
            ),
            _ => format!(
                "{:<26} {:>6}    target >= {:.2}x   not measured",
                self.name, "-", self.target
            ),
        }
    }
}

#[derive(Debug, serde::Serialize)]
struct Report {
    tool: &'static str,
    cores: usize,
    sensors: usize,
    messages_per_system: Option<u64>,
    duration_s: Option<f64>,
    qos: u8,
    format: &'static str,
    rounds: u64,
    mosquitto_version: Option<String>,
    telering_pinning: Option<String>,
    systems: BTreeMap<&'static str, SystemResult>,
    skipped: BTreeMap<&'static str, String>,
    failed: BTreeMap<&'static str, String>,
    ratios: BTreeMap<&'static str, Option<f64>>,
    /// The same ratios from the system CPU per message (other system's
    /// µs/msg over telering's): what the msg/s ratios would be if each
    /// system had the machine to itself and were CPU-bound.
    cpu_ratios: BTreeMap<&'static str, Option<f64>>,
    targets: Vec<Target>,
    all_received: bool,
    telering_final: Option<run_telering::Final>,
}

fn fmt_rate(r: f64) -> String {
    let n = r.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn table(r: &Report) -> String {
    let mut s = String::new();
    let what = match (r.messages_per_system, r.duration_s) {
        (Some(m), _) => format!("{m} messages per system"),
        (None, Some(d)) => format!("{d} s per system"),
        _ => String::new(),
    };
    let _ = writeln!(
        s,
        "mqtt-bench: {} sensors, QoS {}, {} payloads, {what}, {} round(s), {} cores{}",
        r.sensors,
        r.qos,
        r.format,
        r.rounds,
        r.cores,
        r.mosquitto_version
            .as_ref()
            .map_or(String::new(), |v| format!(" ({v})"))
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<15} {:>11} {:>19} {:>6} {:>8} {:>8} {:>8} {:>9} {:>8} {:>11} {:>9}",
        "system",
        "msg/s",
        "received / sent",
        "lost",
        "p50 us",
        "p90 us",
        "p99 us",
        "p99.9 us",
        "max us",
        "sim msg/s",
        "CPU us/msg"
    );
    for sys in System::ALL {
        let Some(x) = r.systems.get(sys.key()) else {
            let why = r.skipped.get(sys.key()).or_else(|| r.failed.get(sys.key()));
            if let Some(why) = why {
                let _ = writeln!(s, "{:<15} {why}", sys.label());
            }
            continue;
        };
        let l = &x.run.latency_us;
        let _ = writeln!(
            s,
            "{:<15} {:>11} {:>19} {:>6} {:>8} {:>8} {:>8} {:>9} {:>8} {:>11} {:>9.2}",
            sys.label(),
            fmt_rate(x.run.msg_per_s),
            format!("{} / {}", x.run.received, x.run.sent),
            x.run.lost,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            fmt_rate(x.run.sim.rate),
            x.run.system_cpu_us_per_msg
        );
    }
    if r.rounds > 1 {
        let _ = writeln!(s, "\nrates per round (the median is reported):");
        for sys in System::ALL {
            if let Some(x) = r.systems.get(sys.key()) {
                let v: Vec<String> = x.rounds_msg_per_s.iter().map(|x| fmt_rate(*x)).collect();
                let _ = writeln!(s, "  {:<15} {}", sys.label(), v.join(", "));
            }
        }
    }
    let _ = writeln!(
        s,
        "\ntargets (ingest msg/s ratios; with several rounds, the median of the ratios within each round):"
    );
    for t in &r.targets {
        let _ = writeln!(s, "  {}", t.line());
        if t.per_round.len() > 1 {
            let v: Vec<String> = t.per_round.iter().map(|x| format!("{x:.2}")).collect();
            let _ = writeln!(
                s,
                "  {:<26} per round {}; ratio of the median runs {}",
                "",
                v.join(", "),
                t.ratio_of_medians
                    .map_or("-".to_owned(), |x| format!("{x:.2}x"))
            );
        }
    }
    let cpu: Vec<String> = r
        .cpu_ratios
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k} {v:.2}x")))
        .collect();
    if !cpu.is_empty() {
        let _ = writeln!(
            s,
            "  same ratios from CPU per message (other's us/msg over telering's; what msg/s would \
             show if each system were CPU-bound on a machine of its own): {}",
            cpu.join(", ")
        );
    }
    if r.systems.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "\nCPU while each system ran (100% = one core; window = simulator start to last message):"
    );
    for sys in System::ALL {
        if let Some(x) = r.systems.get(sys.key()) {
            let c = &x.run.cpu;
            let _ = writeln!(s, "  {:<15} {:.2} s: {}", sys.label(), c.wall_s, c.line());
        }
    }
    let _ = writeln!(s, "\nchecks:");
    for sys in System::ALL {
        let Some(x) = r.systems.get(sys.key()) else {
            continue;
        };
        let run = &x.run;
        let mut line = if x.all_received {
            format!("every message sent was received ({})", run.received)
        } else {
            format!(
                "LOST {} of {} messages (received {})",
                run.lost, run.sent, run.received
            )
        };
        if let Some(d) = &run.telering {
            let _ = write!(
                line,
                "; endpoint read {}, accepted {}, records {}, delivered alerts {} / stats {}, \
                 rejected {}",
                d.received,
                d.accepted,
                d.records,
                d.delivered_alerts,
                d.delivered_stats,
                d.rejected
            );
        }
        for p in &run.problems {
            let _ = write!(line, "; PROBLEM: {p}");
        }
        let _ = writeln!(s, "  {:<15} {line}", sys.label());
    }
    if let Some(f) = &r.telering_final {
        let _ = writeln!(
            s,
            "  {:<15} at shutdown (cumulative over all runs): bridge received {}, records {}, handled {:?}, missed {:?}, panics {}; {}",
            "telering",
            f.ingest.received,
            f.ingest.records,
            f.handled,
            f.missed,
            f.handler_panics,
            f.pinning
        );
    }
    s
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

/// Returns whether every system ran and received every message.
fn run(args: &Args) -> Result<bool, String> {
    let duration = args
        .duration
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or(format!(
                    "--duration {s} is not a positive number of seconds"
                ))
        })
        .transpose()?;
    let plan = Plan {
        sensors: args.sensors.unwrap_or(if args.quick { 4 } else { 20 }),
        messages: match (args.messages, duration) {
            (Some(m), _) => Some(m),
            (None, Some(_)) => None,
            (None, None) => Some(if args.quick { 20_000 } else { 200_000 }),
        },
        duration,
        qos: args.qos,
        format: args.format,
        seed: args.seed,
    };
    if plan.sensors == 0 || plan.messages == Some(0) {
        return Err("--sensors and --messages must be at least 1".into());
    }
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 5 });
    let selected: Vec<System> = System::ALL
        .into_iter()
        .filter(|s| args.only.is_empty() || args.only.contains(s))
        .collect();

    let mut skipped = BTreeMap::new();
    let mut failed: BTreeMap<&'static str, String> = BTreeMap::new();
    let mosquitto = run_mosquitto::find(args.mosquitto.as_deref());
    let mut mosquitto_version = None;
    if selected.contains(&System::Mosquitto) {
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
                skipped.insert(System::Mosquitto.key(), format!("skipped: {why}"));
            }
        }
    }

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "mqtt-bench: {} sensors, {}, QoS {}, {:?} payloads, {} round(s), {cores} cores",
        plan.sensors,
        plan.messages.map_or_else(
            || format!("{:?} per system", plan.duration.unwrap_or_default()),
            |m| format!("{m} messages per system")
        ),
        plan.qos,
        plan.format,
        rounds
    );

    // Start every system once (rumqttd cannot be stopped); idle ones cost
    // nothing measurable (parked threads, a quiet broker).
    let mut suts: Vec<Started> = Vec::new();
    let mut telering_pinning = None;
    for &which in &selected {
        if skipped.contains_key(which.key()) {
            continue;
        }
        let before = cpu::thread_ids();
        match Sut::start(which, args, mosquitto.as_ref()) {
            Ok(sut) => {
                if let Sut::Telering(t) = &sut {
                    telering_pinning = Some(t.pinning());
                }
                eprintln!("mqtt-bench: {} listening on {}", which.label(), sut.addr());
                let threads = cpu::thread_ids().difference(&before).copied().collect();
                suts.push(Started {
                    which,
                    sut,
                    threads,
                });
            }
            Err(e) => {
                eprintln!("mqtt-bench: {} failed to start: {e}", which.label());
                if which == System::Mosquitto && !args.require_mosquitto {
                    skipped.insert(which.key(), format!("skipped: {e}"));
                } else {
                    failed.insert(which.key(), format!("FAILED: {e}"));
                }
            }
        }
    }

    // Warm up each system (first-touch memory, connection setup paths),
    // not measured.
    if !args.quick {
        let warm = Plan {
            messages: Some(plan.messages.map_or(WARMUP, |m| m.min(WARMUP))),
            duration: None,
            ..plan.clone()
        };
        eprintln!(
            "mqtt-bench: warming up ({} messages each, not measured)",
            warm.messages.unwrap_or_default()
        );
        for started in &mut suts {
            if let Err(e) = run_once(started, &warm, 99) {
                eprintln!("mqtt-bench: {} warm-up FAILED: {e}", started.which.label());
                failed.insert(started.which.key(), format!("FAILED in warm-up: {e}"));
            }
        }
    }

    let mut runs: BTreeMap<System, Vec<RunResult>> = BTreeMap::new();
    for round in 0..rounds {
        // Rotate the order so drift in the machine's load spreads evenly.
        let n = suts.len().max(1);
        for k in 0..suts.len() {
            let i = (k + round as usize) % n;
            let which = suts[i].which;
            if failed.contains_key(which.key()) {
                continue;
            }
            eprint!(
                "mqtt-bench: round {}/{}: {:<15} ",
                round + 1,
                rounds,
                which.label()
            );
            match run_once(&mut suts[i], &plan, round) {
                Ok(r) => {
                    eprintln!(
                        "{:>11} msg/s, {} / {} received, p50 {} us, p99 {} us",
                        fmt_rate(r.msg_per_s),
                        r.received,
                        r.sent,
                        r.latency_us.p50,
                        r.latency_us.p99
                    );
                    runs.entry(which).or_default().push(r);
                }
                Err(e) => {
                    eprintln!("FAILED: {e}");
                    failed.insert(which.key(), format!("FAILED: {e}"));
                }
            }
        }
    }

    let mut telering_final = None;
    for s in suts {
        if let Some(f) = s.sut.stop() {
            telering_final = Some(f);
        }
    }

    let mut systems = BTreeMap::new();
    for (which, r) in runs {
        if failed.contains_key(which.key()) {
            continue;
        }
        if let Some(x) = pick(r) {
            systems.insert(which.key(), x);
        }
    }
    let of = |s: System| systems.get(s.key());
    let targets = vec![
        Target::new(
            "telering / mosquitto",
            of(System::Telering),
            of(System::Mosquitto),
            TARGET_OVER_MOSQUITTO,
        ),
        Target::new(
            "telering / bare rumqttd",
            of(System::Telering),
            of(System::Rumqttd),
            TARGET_OVER_RUMQTTD,
        ),
    ];
    let ratios = BTreeMap::from([
        ("telering_over_mosquitto", targets[0].ratio),
        ("telering_over_rumqttd", targets[1].ratio),
    ]);
    let cpu = |s: System| {
        systems
            .get(s.key())
            .map(|x| x.run.system_cpu_us_per_msg)
            .filter(|v| *v > 0.0)
    };
    let inverse = |other: System| match (cpu(other), cpu(System::Telering)) {
        (Some(o), Some(t)) => Some(round3(o / t)),
        _ => None,
    };
    let cpu_ratios = BTreeMap::from([
        ("telering_over_mosquitto", inverse(System::Mosquitto)),
        ("telering_over_rumqttd", inverse(System::Rumqttd)),
    ]);
    let all_received = systems.values().all(|x| x.all_received);
    let clean = failed.is_empty()
        && systems
            .values()
            .all(|x| x.all_received && x.run.ok() && x.run.problems.is_empty());
    let report = Report {
        tool: "mqtt-bench",
        cores,
        sensors: plan.sensors,
        messages_per_system: plan.messages,
        duration_s: plan.duration.map(|d| d.as_secs_f64()),
        qos: plan.qos,
        format: match plan.format {
            Payload::Json => "json",
            Payload::Reading => "reading",
        },
        rounds,
        mosquitto_version,
        telering_pinning,
        systems,
        skipped,
        failed,
        ratios,
        cpu_ratios,
        targets,
        all_received,
        telering_final,
    };
    if args.json {
        // The table for people on stderr, the JSON alone on stdout.
        eprint!("{}", table(&report));
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", table(&report));
    }
    Ok(clean)
}
