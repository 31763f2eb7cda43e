//! Results: one run, a system over rounds, the targets, the report and its
//! tables.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use telering_sim::SimSummary;

use crate::common::Latency;
use crate::cpu::{self, CpuReport};
use crate::run_telering;
use crate::systems::SystemId;

/// Target: server CPU per message, bare rumqttd's over telering's.
pub const TARGET_CPU_OVER_RUMQTTD: f64 = 2.0;
/// Target: telering's ingest rate over bare rumqttd's.
pub const TARGET_RATE_OVER_RUMQTTD: f64 = 1.5;
/// Target: telering's ingest rate over mosquitto's.
pub const TARGET_RATE_OVER_MOSQUITTO: f64 = 4.0;
/// Target: a journaled telering's ingest rate over the same instance's
/// without the journal (`--journal`).
pub const TARGET_JOURNAL_OVER_MEMORY: f64 = 0.8;

/// One run of one system.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunResult {
    /// Messages the simulator sent (accepted by its clients).
    pub sent: u64,
    /// Messages the consumer side received.
    pub received: u64,
    /// `sent - received` (0 when every message arrived).
    pub lost: u64,
    /// Messages per second at the consumer side, first to last message.
    pub msg_per_s: f64,
    /// Seconds from the first to the last message received.
    pub span_s: f64,
    /// CPU time of the system (its threads and its broker process, not the
    /// simulator) per message received, µs, from the simulator's start
    /// until the system is idle again after the last message: robust
    /// against other load.
    pub system_cpu_us_per_msg: f64,
    /// CPU time of the simulator per message sent, µs.
    pub sim_cpu_us_per_msg: f64,
    /// Seconds the system kept working after the consumer side had every
    /// message (counted in its CPU; the next run starts after it).
    pub settle_s: f64,
    pub latency_us: Latency,
    /// Messages received without a `ts`.
    pub no_ts: u64,
    /// What the simulator reported.
    pub sim: SimSummary,
    pub cpu: CpuReport,
    /// Problems found (besides losses).
    pub problems: Vec<String>,
    /// telering's own counters for the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telering: Option<run_telering::Detail>,
    /// Messages the broker dropped before its reader got them (rumqttd).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_by_broker: Option<u64>,
    /// Subscriber connection errors (mosquitto).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber_errors: Option<u64>,
}

impl RunResult {
    fn ok(&self) -> bool {
        self.lost == 0 && self.problems.is_empty()
    }
}

/// The runs of one system in one phase: what every round found, and the
/// CPU of all rounds together.
fn problems_of(runs: &[RunResult]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        if r.lost > 0 {
            out.push(format!(
                "round {}: LOST {} of {} messages",
                i + 1,
                r.lost,
                r.sent
            ));
        }
        for p in &r.problems {
            out.push(format!("round {}: {p}", i + 1));
        }
    }
    out
}

fn merged_cpu(runs: &[RunResult]) -> (CpuReport, u64) {
    let mut cpu = CpuReport::default();
    let mut n = 0;
    for r in runs {
        cpu.merge(&r.cpu);
        n += r.received;
    }
    (cpu, n)
}

/// A system in a throughput phase: its median-rate run and every round.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SystemResult {
    /// The run with the median rate.
    #[serde(flatten)]
    pub run: RunResult,
    /// Rate of every round, in order.
    pub rounds_msg_per_s: Vec<f64>,
    /// System CPU per message of every round, µs, in order.
    pub rounds_cpu_us_per_msg: Vec<f64>,
    /// Simulator CPU per message sent of every round, µs, in order.
    pub rounds_sim_cpu_us_per_msg: Vec<f64>,
    /// System CPU per message over all rounds together, µs.
    pub all_rounds_cpu_us_per_msg: f64,
    /// The system's thread groups over all rounds, µs per message.
    pub all_rounds_threads_us_per_msg: Vec<(String, f64)>,
    /// Whether every round received every message.
    pub all_received: bool,
    /// What any round found wrong (losses, miscounts), by round.
    pub round_problems: Vec<String>,
}

impl SystemResult {
    /// The median-rate run of `runs` (one per round, in order).
    pub fn of(runs: Vec<RunResult>) -> Option<Self> {
        let rounds_msg_per_s: Vec<f64> = runs.iter().map(|r| r.msg_per_s).collect();
        let rounds_cpu_us_per_msg = runs.iter().map(|r| r.system_cpu_us_per_msg).collect();
        let rounds_sim_cpu_us_per_msg = runs.iter().map(|r| r.sim_cpu_us_per_msg).collect();
        let all_received = runs.iter().all(|r| r.lost == 0);
        let round_problems = problems_of(&runs);
        let (cpu, n) = merged_cpu(&runs);
        let mut sorted = runs;
        sorted.sort_by(|a, b| a.msg_per_s.total_cmp(&b.msg_per_s));
        let mid = sorted.len().checked_sub(1)? / 2;
        Some(Self {
            run: sorted.swap_remove(mid),
            rounds_msg_per_s,
            rounds_cpu_us_per_msg,
            rounds_sim_cpu_us_per_msg,
            all_rounds_cpu_us_per_msg: cpu::us_per_msg(cpu.system_s, n),
            all_rounds_threads_us_per_msg: cpu
                .system_threads
                .iter()
                .map(|(t, s)| (t.clone(), cpu::us_per_msg(*s, n)))
                .collect(),
            all_received,
            round_problems,
        })
    }

    fn ok(&self) -> bool {
        self.all_received && self.round_problems.is_empty() && self.run.ok()
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    match s.len() {
        0 => None,
        n if n % 2 == 1 => Some(s[m]),
        _ => Some(round3((s[m - 1] + s[m]) / 2.0)),
    }
}

/// What a throughput target compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// telering's msg/s over the peer's.
    MsgPerS,
    /// The peer's server CPU per message over telering's.
    CpuPerMsg,
}

/// One throughput target: a ratio telering vs a peer at one QoS.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Target {
    pub telering: String,
    pub peer: String,
    pub qos: u8,
    pub metric: Metric,
    /// The median over rounds of the ratio within each round (the systems
    /// of a round run back to back, so slow drift of the machine cancels);
    /// with one round, just that round's ratio.
    pub ratio: Option<f64>,
    /// The ratio within each round.
    pub per_round: Vec<f64>,
    /// The ratio of the two reported (median-rate) runs.
    pub ratio_of_medians: Option<f64>,
    pub target: f64,
    pub met: Option<bool>,
    /// ratio / target - 1: above 0 when met.
    pub margin: Option<f64>,
}

impl Target {
    pub fn new(
        metric: Metric,
        qos: u8,
        (tel_key, tel): (&str, &SystemResult),
        (peer_key, peer): (&str, &SystemResult),
        target: f64,
    ) -> Self {
        // (numerator, denominator) per round and of the median runs.
        let (num, den, num_m, den_m) = match metric {
            Metric::MsgPerS => (
                &tel.rounds_msg_per_s,
                &peer.rounds_msg_per_s,
                tel.run.msg_per_s,
                peer.run.msg_per_s,
            ),
            Metric::CpuPerMsg => (
                &peer.rounds_cpu_us_per_msg,
                &tel.rounds_cpu_us_per_msg,
                peer.run.system_cpu_us_per_msg,
                tel.run.system_cpu_us_per_msg,
            ),
        };
        let ratio_of_medians = (den_m > 0.0).then(|| round3(num_m / den_m));
        let per_round: Vec<f64> = if num.len() == den.len() {
            num.iter()
                .zip(den)
                .filter(|(_, d)| **d > 0.0)
                .map(|(n, d)| round3(n / d))
                .collect()
        } else {
            Vec::new()
        };
        let ratio = median(&per_round).or(ratio_of_medians);
        Self {
            telering: tel_key.to_owned(),
            peer: peer_key.to_owned(),
            qos,
            metric,
            ratio,
            per_round,
            ratio_of_medians,
            target,
            met: ratio.map(|r| r >= target),
            margin: ratio.map(|r| round3(r / target - 1.0)),
        }
    }

    fn line(&self) -> String {
        let what = match self.metric {
            Metric::MsgPerS => format!("{} msg/s over {}'s", self.telering, self.peer),
            Metric::CpuPerMsg => format!("{}'s CPU/msg over {}'s", self.peer, self.telering),
        };
        let mut s = match (self.ratio, self.margin) {
            (Some(r), Some(m)) => format!(
                "{what:<56} {r:>6.2}x  target >= {:.2}x  {} by {:+.1}%",
                self.target,
                if r >= self.target { "MET" } else { "MISSED" },
                100.0 * m
            ),
            _ => format!(
                "{what:<56} {:>6}   target >= {:.2}x  not measured",
                "-", self.target
            ),
        };
        if self.per_round.len() > 1 {
            let v: Vec<String> = self.per_round.iter().map(|x| format!("{x:.2}")).collect();
            let _ = write!(s, "  (rounds {})", v.join(", "));
        }
        s
    }
}

/// The highest msg/s ratio telering could show against `peer` on these
/// cores if it used no CPU at all, when the runs are CPU-bound: each round's
/// (peer's simulator + server CPU per message) over telering's simulator
/// CPU per message, the median over rounds.
fn ceiling(tel: &SystemResult, peer: &SystemResult) -> Option<f64> {
    let t = &tel.rounds_sim_cpu_us_per_msg;
    let (ps, pc) = (&peer.rounds_sim_cpu_us_per_msg, &peer.rounds_cpu_us_per_msg);
    if t.len() != ps.len() {
        return None;
    }
    let v: Vec<f64> = t
        .iter()
        .zip(ps.iter().zip(pc))
        .filter(|(t, _)| **t > 0.0)
        .map(|(t, (s, c))| round3((s + c) / t))
        .collect();
    median(&v)
}

/// The throughput comparison at one QoS.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Phase {
    pub qos: u8,
    pub messages_per_system: Option<u64>,
    pub duration_s: Option<f64>,
    pub rounds: u64,
    pub systems: BTreeMap<String, SystemResult>,
    /// Per telering instance: msg/s ratios (median over rounds of the
    /// ratio within each round).
    pub ratios: BTreeMap<String, BTreeMap<&'static str, Option<f64>>>,
    /// Per telering instance: the peer's server CPU per message over
    /// telering's (median over rounds of the ratio within each round).
    /// `telering_over_rumqttd` >= 2 means telering uses at most half of
    /// bare rumqttd's CPU per message.
    pub cpu_ratios: BTreeMap<String, BTreeMap<&'static str, Option<f64>>>,
    /// Per telering instance: the highest msg/s ratio it could show
    /// against each peer here if it used no CPU at all, the simulator
    /// sharing the cores ([`ceiling`]); a msg/s target above it cannot be
    /// met on this machine.
    pub msg_per_s_ceilings: BTreeMap<String, BTreeMap<&'static str, Option<f64>>>,
    /// The simulator's CPU per message sent, µs, in each system's median run.
    pub sim_cpu_us_per_msg: BTreeMap<String, f64>,
    /// Per journaled telering instance (`--journal`): its msg/s over the
    /// same instance's without the journal (median over rounds of the
    /// ratio within each round; target ≥ 0.8, in `targets`).
    pub journal_ratios: BTreeMap<String, Option<f64>>,
    /// Per journaled telering instance: its server CPU per message over the
    /// same instance's without the journal (median over rounds of the
    /// ratio within each round; no target).
    pub journal_cpu_ratios: BTreeMap<String, Option<f64>>,
    /// Per TLS telering instance (`--tls`): its msg/s over the same
    /// instance's over plaintext TCP (median over rounds of the ratio
    /// within each round; no target).
    pub tls_ratios: BTreeMap<String, Option<f64>>,
    /// Per TLS telering instance: its server CPU per message over the same
    /// instance's over plaintext TCP (median over rounds of the ratio
    /// within each round; no target).
    pub tls_cpu_ratios: BTreeMap<String, Option<f64>>,
    /// The targets: telering against the peers (journaled and TLS
    /// instances are not compared with them), and each journaled instance
    /// against itself without the journal.
    pub targets: Vec<Target>,
    pub all_received: bool,
    /// The systems in table order.
    #[serde(skip)]
    pub order: Vec<SystemId>,
}

impl Phase {
    pub fn new(
        qos: u8,
        messages_per_system: Option<u64>,
        duration_s: Option<f64>,
        rounds: u64,
        runs: BTreeMap<SystemId, Vec<RunResult>>,
    ) -> Self {
        let mut systems = BTreeMap::new();
        let mut order = Vec::new();
        for (id, r) in runs {
            if let Some(x) = SystemResult::of(r) {
                systems.insert(id.key(), x);
                order.push(id);
            }
        }
        let peer = |id: SystemId| systems.get(&id.key()).map(|x| (id.key(), x));
        let (mosquitto, rumqttd) = (peer(SystemId::Mosquitto), peer(SystemId::Rumqttd));
        let mut targets = Vec::new();
        let mut ratios = BTreeMap::new();
        let mut cpu_ratios = BTreeMap::new();
        let mut msg_per_s_ceilings = BTreeMap::new();
        for id in order
            .iter()
            .filter(|i| matches!(i, SystemId::Telering { .. }) && !i.journaled() && !i.tls())
        {
            let key = id.key();
            let tel = (key.as_str(), &systems[&key]);
            let mut t = |metric, p: &Option<(String, &SystemResult)>, goal| {
                p.as_ref().map(|(k, x)| {
                    let target = Target::new(metric, qos, tel, (k, x), goal);
                    let r = target.ratio;
                    targets.push(target);
                    r
                })
            };
            let cpu_r = t(Metric::CpuPerMsg, &rumqttd, TARGET_CPU_OVER_RUMQTTD).flatten();
            let rate_r = t(Metric::MsgPerS, &rumqttd, TARGET_RATE_OVER_RUMQTTD).flatten();
            let rate_m = t(Metric::MsgPerS, &mosquitto, TARGET_RATE_OVER_MOSQUITTO).flatten();
            // No target; for the record.
            let cpu_m = mosquitto
                .as_ref()
                .and_then(|(k, x)| Target::new(Metric::CpuPerMsg, qos, tel, (k, x), 1.0).ratio);
            ratios.insert(
                key.clone(),
                BTreeMap::from([
                    ("telering_over_rumqttd", rate_r),
                    ("telering_over_mosquitto", rate_m),
                ]),
            );
            cpu_ratios.insert(
                key.clone(),
                BTreeMap::from([
                    ("telering_over_rumqttd", cpu_r),
                    ("telering_over_mosquitto", cpu_m),
                ]),
            );
            let c = |p: &Option<(String, &SystemResult)>| {
                p.as_ref().and_then(|(_, x)| ceiling(tel.1, x))
            };
            msg_per_s_ceilings.insert(
                key.clone(),
                BTreeMap::from([
                    ("telering_over_rumqttd", c(&rumqttd)),
                    ("telering_over_mosquitto", c(&mosquitto)),
                ]),
            );
        }
        let mut journal_ratios = BTreeMap::new();
        let mut journal_cpu_ratios = BTreeMap::new();
        for id in order.iter().filter(|i| i.journaled()) {
            let (key, off) = (id.key(), id.without_journal().key());
            let (Some(on_r), Some(off_r)) = (systems.get(&key), systems.get(&off)) else {
                continue;
            };
            let target = Target::new(
                Metric::MsgPerS,
                qos,
                (&key, on_r),
                (&off, off_r),
                TARGET_JOURNAL_OVER_MEMORY,
            );
            journal_ratios.insert(key.clone(), target.ratio);
            targets.push(target);
            // CpuPerMsg puts the second's CPU over the first's: journal-on
            // over journal-off, as the msg/s ratio reads.
            let cpu = Target::new(Metric::CpuPerMsg, qos, (&off, off_r), (&key, on_r), 1.0);
            journal_cpu_ratios.insert(key, cpu.ratio);
        }
        let mut tls_ratios = BTreeMap::new();
        let mut tls_cpu_ratios = BTreeMap::new();
        for id in order.iter().filter(|i| i.tls()) {
            let (key, plain) = (id.key(), id.without_tls().key());
            let (Some(on_r), Some(off_r)) = (systems.get(&key), systems.get(&plain)) else {
                continue;
            };
            // No target: the `target` argument only sets `met`, unused here.
            let rate = Target::new(Metric::MsgPerS, qos, (&key, on_r), (&plain, off_r), 1.0);
            tls_ratios.insert(key.clone(), rate.ratio);
            // TLS over plaintext, as the msg/s ratio reads.
            let cpu = Target::new(Metric::CpuPerMsg, qos, (&plain, off_r), (&key, on_r), 1.0);
            tls_cpu_ratios.insert(key, cpu.ratio);
        }
        let sim_cpu_us_per_msg = systems
            .iter()
            .map(|(k, x)| (k.clone(), x.run.sim_cpu_us_per_msg))
            .collect();
        let all_received = systems.values().all(|x| x.all_received);
        Self {
            qos,
            messages_per_system,
            duration_s,
            rounds,
            systems,
            ratios,
            cpu_ratios,
            msg_per_s_ceilings,
            sim_cpu_us_per_msg,
            journal_ratios,
            journal_cpu_ratios,
            tls_ratios,
            tls_cpu_ratios,
            targets,
            all_received,
            order,
        }
    }

    pub fn ok(&self) -> bool {
        self.systems.values().all(SystemResult::ok)
    }
}

/// One system in the latency run: every round, histograms merged.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LatencySystem {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    /// Median over rounds of the rate at the consumer side.
    pub msg_per_s: f64,
    /// Median over rounds of the simulator's rate.
    pub sim_msg_per_s: f64,
    /// Publish (`ts`) to the consumer side, all rounds in one histogram.
    pub latency_us: Latency,
    /// Each round's latency.
    pub rounds_latency_us: Vec<Latency>,
    /// Server CPU per message over all rounds, µs.
    pub cpu_us_per_msg: f64,
    pub threads_us_per_msg: Vec<(String, f64)>,
    /// telering: the consumers' `fetch_min` and `fetch_max_wait_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch: Option<(usize, u64)>,
    pub all_received: bool,
    pub round_problems: Vec<String>,
    pub runs: Vec<RunResult>,
}

impl LatencySystem {
    pub fn of(
        runs: Vec<RunResult>,
        histogram: &Histogram<u64>,
        fetch: Option<(usize, u64)>,
    ) -> Self {
        let (cpu, n) = merged_cpu(&runs);
        let rates: Vec<f64> = runs.iter().map(|r| r.msg_per_s).collect();
        let sim_rates: Vec<f64> = runs.iter().map(|r| r.sim.rate).collect();
        Self {
            sent: runs.iter().map(|r| r.sent).sum(),
            received: n,
            lost: runs.iter().map(|r| r.lost).sum(),
            msg_per_s: median(&rates).unwrap_or_default(),
            sim_msg_per_s: median(&sim_rates).unwrap_or_default(),
            latency_us: Latency::of(histogram),
            rounds_latency_us: runs.iter().map(|r| r.latency_us).collect(),
            cpu_us_per_msg: cpu::us_per_msg(cpu.system_s, n),
            threads_us_per_msg: cpu
                .system_threads
                .iter()
                .map(|(t, s)| (t.clone(), cpu::us_per_msg(*s, n)))
                .collect(),
            fetch,
            all_received: runs.iter().all(|r| r.lost == 0),
            round_problems: problems_of(&runs),
            runs,
        }
    }

    fn ok(&self) -> bool {
        self.all_received && self.round_problems.is_empty()
    }
}

/// A latency target: telering's percentile at most mosquitto's.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LatencyTarget {
    pub telering: String,
    /// `p50` or `p99`.
    pub percentile: &'static str,
    pub telering_us: u64,
    pub mosquitto_us: u64,
    /// telering's over mosquitto's.
    pub ratio: f64,
    /// telering's <= mosquitto's.
    pub met: bool,
}

/// The latency run: a fixed total rate, several systems, same rounds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LatencyPhase {
    pub rate_msg_per_s: f64,
    pub qos: u8,
    pub messages_per_run: u64,
    pub rounds: u64,
    pub systems: BTreeMap<String, LatencySystem>,
    pub targets: Vec<LatencyTarget>,
    pub all_received: bool,
    #[serde(skip)]
    pub order: Vec<SystemId>,
}

impl LatencyPhase {
    pub fn new(
        rate_msg_per_s: f64,
        qos: u8,
        messages_per_run: u64,
        rounds: u64,
        results: Vec<(SystemId, LatencySystem)>,
    ) -> Self {
        let mut systems = BTreeMap::new();
        let mut order = Vec::new();
        for (id, x) in results {
            systems.insert(id.key(), x);
            order.push(id);
        }
        let mut targets = Vec::new();
        if let Some(m) = systems.get(&SystemId::Mosquitto.key()) {
            for id in order
                .iter()
                .filter(|i| matches!(i, SystemId::Telering { .. }))
            {
                let t = &systems[&id.key()];
                let pairs = [
                    ("p50", t.latency_us.p50, m.latency_us.p50),
                    ("p99", t.latency_us.p99, m.latency_us.p99),
                ];
                for (percentile, tel, mos) in pairs {
                    if tel == 0 || mos == 0 {
                        continue;
                    }
                    targets.push(LatencyTarget {
                        telering: id.key(),
                        percentile,
                        telering_us: tel,
                        mosquitto_us: mos,
                        ratio: round3(tel as f64 / mos as f64),
                        met: tel <= mos,
                    });
                }
            }
        }
        let all_received = systems.values().all(|x| x.all_received);
        Self {
            rate_msg_per_s,
            qos,
            messages_per_run,
            rounds,
            systems,
            targets,
            all_received,
            order,
        }
    }

    pub fn ok(&self) -> bool {
        self.systems.values().all(LatencySystem::ok)
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub cores: usize,
    /// What this machine can and cannot show.
    pub note: String,
    pub sensors: usize,
    pub format: &'static str,
    pub seed: u64,
    pub mosquitto_version: Option<String>,
    /// Per telering instance: how its consumer threads are pinned.
    pub telering_pinning: BTreeMap<String, String>,
    /// The throughput comparison, by QoS (`qos0`, `qos1`).
    pub throughput: BTreeMap<String, Phase>,
    /// The latency run at a fixed rate.
    pub latency: Option<LatencyPhase>,
    pub skipped: BTreeMap<String, String>,
    pub failed: BTreeMap<String, String>,
    pub all_received: bool,
    /// Per telering instance: its counters at shutdown.
    pub telering_final: BTreeMap<String, run_telering::Final>,
}

impl Report {
    /// Every system ran, received every message and passed every check.
    pub fn clean(&self) -> bool {
        self.failed.is_empty()
            && self.throughput.values().all(Phase::ok)
            && self.latency.as_ref().is_none_or(LatencyPhase::ok)
    }
}

/// The note on this machine's cores.
pub fn cores_note(cores: usize) -> String {
    format!(
        "this machine has {cores} cores, shared by the simulator (about one core at full \
         speed), the system under test and its consumers: it cannot show scaling beyond \
         {cores} cores. More shards than cores only take turns on them; compare shard counts \
         by CPU per message, and read msg/s as what {cores} shared cores allow."
    )
}

pub fn fmt_rate(r: f64) -> String {
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

fn header(s: &mut String, w: usize, last: &str) {
    let line = format!(
        "{:<w$} {:>9} {:>17} {:>5} {:>7} {:>7} {:>7} {:>8} {:>7} {:>9} {:>7}  {last}",
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
        "CPU/msg",
    );
    let _ = writeln!(s, "{}", line.trim_end());
}

#[allow(clippy::too_many_arguments)]
fn row(
    s: &mut String,
    w: usize,
    label: &str,
    rate: f64,
    received: u64,
    sent: u64,
    lost: u64,
    l: &Latency,
    sim_rate: f64,
    cpu: f64,
    last: &str,
) {
    let line = format!(
        "{label:<w$} {:>9} {:>17} {lost:>5} {:>7} {:>7} {:>7} {:>8} {:>7} {:>9} {cpu:>7.2}  {last}",
        fmt_rate(rate),
        format!("{received} / {sent}"),
        l.p50,
        l.p90,
        l.p99,
        l.p999,
        l.max,
        fmt_rate(sim_rate),
    );
    let _ = writeln!(s, "{}", line.trim_end());
}

fn phase_table(s: &mut String, w: usize, p: &Phase) {
    let what = match (p.messages_per_system, p.duration_s) {
        (Some(m), _) => format!("{m} messages per system and round"),
        (None, Some(d)) => format!("{d} s per system and round"),
        _ => String::new(),
    };
    let _ = writeln!(
        s,
        "\n== throughput, QoS {}: simulator at full speed, {what}, {} round(s); each system's \
         median-rate run (CPU/msg: server CPU us per message) ==\n",
        p.qos, p.rounds
    );
    header(s, w, "");
    for id in &p.order {
        let x = &p.systems[&id.key()];
        let r = &x.run;
        row(
            s,
            w,
            &id.label(),
            r.msg_per_s,
            r.received,
            r.sent,
            r.lost,
            &r.latency_us,
            r.sim.rate,
            r.system_cpu_us_per_msg,
            "",
        );
    }
    if p.rounds > 1 {
        let _ = writeln!(s, "\nper round: msg/s | server CPU us/msg");
        for id in &p.order {
            let x = &p.systems[&id.key()];
            let v: Vec<String> = x.rounds_msg_per_s.iter().map(|x| fmt_rate(*x)).collect();
            let c: Vec<String> = x
                .rounds_cpu_us_per_msg
                .iter()
                .map(|x| format!("{x:.2}"))
                .collect();
            let _ = writeln!(
                s,
                "  {:<w$} {} | {}",
                id.label(),
                v.join(", "),
                c.join(", ")
            );
        }
    }
    let _ = writeln!(
        s,
        "\ntargets at QoS {} (median over rounds of the ratio within each round):",
        p.qos
    );
    if p.targets.is_empty() {
        let _ = writeln!(s, "  not measured (telering or its peers did not run)");
    }
    for t in &p.targets {
        let _ = writeln!(s, "  {}", t.line());
    }
    for (k, m) in &p.cpu_ratios {
        if let Some(Some(v)) = m.get("telering_over_mosquitto") {
            let _ = writeln!(
                s,
                "  {:<56} {v:>6.2}x  (no target)",
                format!("mosquitto's CPU/msg over {k}'s")
            );
        }
    }
    for (k, v) in &p.journal_cpu_ratios {
        if let Some(v) = v {
            let off = k.trim_end_matches("-journal");
            let _ = writeln!(
                s,
                "  {:<56} {v:>6.2}x  (no target)",
                format!("{k}'s CPU/msg over {off}'s")
            );
        }
    }
    for (k, v) in &p.tls_ratios {
        let plain = k.trim_end_matches("-tls");
        if let Some(v) = v {
            let _ = writeln!(
                s,
                "  {:<56} {v:>6.2}x  (no target)",
                format!("{k}'s msg/s over {plain}'s")
            );
        }
        if let Some(Some(v)) = p.tls_cpu_ratios.get(k) {
            let _ = writeln!(
                s,
                "  {:<56} {v:>6.2}x  (no target)",
                format!("{k}'s CPU/msg over {plain}'s")
            );
        }
    }
    let sims: Vec<String> = p
        .order
        .iter()
        .map(|id| format!("{} {:.2}", id.label(), p.sim_cpu_us_per_msg[&id.key()]))
        .collect();
    if !sims.is_empty() {
        let _ = writeln!(
            s,
            "\nthe simulator shares the cores; its CPU per message sent (us, median runs): {}",
            sims.join(", ")
        );
    }
    for (k, m) in &p.msg_per_s_ceilings {
        let v: Vec<String> = m
            .iter()
            .filter_map(|(peer, x)| {
                x.map(|x| format!("{:.2}x {}", x, peer.trim_start_matches("telering_over_")))
            })
            .collect();
        if !v.is_empty() {
            let _ = writeln!(
                s,
                "  msg/s ceiling for {k} with zero server CPU (peer's simulator + server CPU/msg \
                 over {k}'s simulator CPU/msg; valid when CPU-bound): {}",
                v.join(", ")
            );
        }
    }
    let _ = writeln!(
        s,
        "\nserver CPU per message by thread, all rounds (us/msg):"
    );
    for id in &p.order {
        let x = &p.systems[&id.key()];
        let v: Vec<String> = x
            .all_rounds_threads_us_per_msg
            .iter()
            .map(|(n, c)| format!("{n} {c:.2}"))
            .collect();
        let _ = writeln!(
            s,
            "  {:<w$} {:.2} = {}",
            id.label(),
            x.all_rounds_cpu_us_per_msg,
            v.join(" + ")
        );
    }
    let _ = writeln!(
        s,
        "\nCPU while each median run ran (100% = one core; window = simulator start until \
         the system is idle after the last message):"
    );
    for id in &p.order {
        let c = &p.systems[&id.key()].run.cpu;
        let _ = writeln!(s, "  {:<w$} {:.2} s: {}", id.label(), c.wall_s, c.line());
    }
    let _ = writeln!(s, "\nchecks (every round):");
    for id in &p.order {
        let x = &p.systems[&id.key()];
        let run = &x.run;
        let mut line = if x.all_received {
            format!(
                "every message sent was received in every round ({} in the median run)",
                run.received
            )
        } else {
            "LOST messages".to_owned()
        };
        if let Some(d) = &run.telering {
            let _ = write!(
                line,
                "; median run: endpoint read {}, accepted {}, records {} ({} forwarded between \
                 shards), delivered alerts {} / stats {}, rejected {}, dead-lettered {}",
                d.received,
                d.accepted,
                d.records,
                d.forwarded,
                d.delivered_alerts,
                d.delivered_stats,
                d.rejected,
                d.dead_lettered
            );
            if let (Some(w), Some(b), Some(y)) =
                (d.journal_written, d.journal_batches, d.journal_syncs)
            {
                let _ = write!(
                    line,
                    "; journal wrote {w} records in {b} batches, {y} fdatasyncs"
                );
            }
        }
        for p in &x.round_problems {
            let _ = write!(line, "; PROBLEM: {p}");
        }
        let _ = writeln!(s, "  {:<w$} {line}", id.label());
    }
}

fn latency_table(s: &mut String, w: usize, p: &LatencyPhase) {
    let _ = writeln!(
        s,
        "\n== latency, QoS {}: {} msg/s in total, {} messages per system and round, {} \
         round(s), interleaved; publish (the payload's ts) to telering's `stats` handler / \
         mosquitto's subscriber; histograms merged over rounds ==\n",
        p.qos,
        fmt_rate(p.rate_msg_per_s),
        p.messages_per_run,
        p.rounds
    );
    header(s, w, "consumer fetch");
    for id in &p.order {
        let x = &p.systems[&id.key()];
        let fetch = x.fetch.map_or(String::new(), |(min, wait)| {
            format!("fetch_min {min}, fetch_max_wait_ms {wait}")
        });
        row(
            s,
            w,
            &id.label(),
            x.msg_per_s,
            x.received,
            x.sent,
            x.lost,
            &x.latency_us,
            x.sim_msg_per_s,
            x.cpu_us_per_msg,
            &fetch,
        );
    }
    if p.rounds > 1 {
        let _ = writeln!(s, "\nper round: p50 / p99 us");
        for id in &p.order {
            let x = &p.systems[&id.key()];
            let v: Vec<String> = x
                .rounds_latency_us
                .iter()
                .map(|l| format!("{} / {}", l.p50, l.p99))
                .collect();
            let _ = writeln!(s, "  {:<w$} {}", id.label(), v.join(", "));
        }
    }
    let _ = writeln!(
        s,
        "\ntargets (telering's percentile <= mosquitto's, same run):"
    );
    if p.targets.is_empty() {
        let _ = writeln!(s, "  not measured (telering or mosquitto did not run)");
    }
    for t in &p.targets {
        let _ = writeln!(
            s,
            "  {:<w$} {} {:>7} us vs mosquitto {:>7} us  ({:.2}x)  {}",
            t.telering,
            t.percentile,
            t.telering_us,
            t.mosquitto_us,
            t.ratio,
            if t.met { "MET" } else { "MISSED" }
        );
    }
    let _ = writeln!(
        s,
        "\nserver CPU per message by thread at this rate, all rounds (us/msg):"
    );
    for id in &p.order {
        let x = &p.systems[&id.key()];
        let v: Vec<String> = x
            .threads_us_per_msg
            .iter()
            .map(|(n, c)| format!("{n} {c:.2}"))
            .collect();
        let _ = writeln!(
            s,
            "  {:<w$} {:.2} = {}",
            id.label(),
            x.cpu_us_per_msg,
            v.join(" + ")
        );
    }
    let _ = writeln!(s, "\nchecks (every round):");
    for id in &p.order {
        let x = &p.systems[&id.key()];
        let mut line = if x.all_received {
            format!("every message sent was received ({})", x.received)
        } else {
            format!("LOST {} of {} messages", x.lost, x.sent)
        };
        for p in &x.round_problems {
            let _ = write!(line, "; PROBLEM: {p}");
        }
        let _ = writeln!(s, "  {:<w$} {line}", id.label());
    }
}

pub fn table(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "mqtt-bench: {} sensors, {} payloads, {} cores{}",
        r.sensors,
        r.format,
        r.cores,
        r.mosquitto_version
            .as_ref()
            .map_or(String::new(), |v| format!(" ({v})"))
    );
    let _ = writeln!(s, "note: {}", r.note);
    for (k, why) in r.skipped.iter().chain(&r.failed) {
        let _ = writeln!(s, "{k}: {why}");
    }
    // The label column fits the longest label.
    let w = r
        .throughput
        .values()
        .flat_map(|p| &p.order)
        .chain(r.latency.iter().flat_map(|l| &l.order))
        .map(|id| id.label().len())
        .chain(r.telering_final.keys().map(String::len))
        .max()
        .unwrap_or(0)
        .max(16);
    for p in r.throughput.values() {
        phase_table(&mut s, w, p);
    }
    if let Some(l) = &r.latency {
        latency_table(&mut s, w, l);
    }
    if !r.telering_final.is_empty() {
        let _ = writeln!(s, "\ntelering at shutdown (cumulative over all runs):");
    }
    for (k, f) in &r.telering_final {
        let journal = match (&f.journal, &f.journal_dir) {
            (Some(j), Some(dir)) => format!(
                "; journal in {dir} (deleted): wrote {} records in {} batches, {} fdatasyncs, {} \
                 failed writes, {} abandoned",
                j.written, j.batches, j.syncs, j.write_errors, j.abandoned
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "  {k:<w$} endpoint received {}, records {} ({} forwarded), handled {:?}, missed \
             {:?}, panics {}; {}{journal}",
            f.ingest.received,
            f.ingest.records,
            f.ingest.forwarded,
            f.handled,
            f.missed,
            f.handler_panics,
            f.pinning
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system(rates: &[f64], cpus: &[f64]) -> SystemResult {
        let run = |rate: f64, cpu: f64| RunResult {
            sent: 10,
            received: 10,
            lost: 0,
            msg_per_s: rate,
            span_s: 1.0,
            system_cpu_us_per_msg: cpu,
            sim_cpu_us_per_msg: 3.0,
            settle_s: 0.0,
            latency_us: Latency::default(),
            no_ts: 0,
            sim: SimSummary {
                sensors: 1,
                sent: 10,
                valid: 10,
                malformed: 0,
                malformed_by_reason: BTreeMap::new(),
                acked: 0,
                qos: 0,
                errors: 0,
                reconnects: 0,
                refused: 0,
                refused_by_code: BTreeMap::new(),
                lost: 0,
                duration_s: 1.0,
                rate,
                records: 10,
            },
            cpu: CpuReport::default(),
            problems: Vec::new(),
            telering: None,
            dropped_by_broker: None,
            subscriber_errors: None,
        };
        SystemResult::of(rates.iter().zip(cpus).map(|(r, c)| run(*r, *c)).collect()).unwrap()
    }

    #[test]
    fn targets_are_medians_of_ratios_within_rounds() {
        let tel = system(&[300.0, 100.0, 200.0], &[1.0, 2.0, 1.0]);
        let peer = system(&[100.0, 100.0, 100.0], &[3.0, 3.0, 1.0]);
        assert_eq!(tel.run.msg_per_s, 200.0);
        let t = Target::new(Metric::MsgPerS, 0, ("t", &tel), ("p", &peer), 1.5);
        assert_eq!(t.per_round, vec![3.0, 1.0, 2.0]);
        assert_eq!((t.ratio, t.met), (Some(2.0), Some(true)));
        // CPU: the peer's over telering's.
        let c = Target::new(Metric::CpuPerMsg, 0, ("t", &tel), ("p", &peer), 2.0);
        assert_eq!(c.per_round, vec![3.0, 1.5, 1.0]);
        assert_eq!((c.ratio, c.met), (Some(1.5), Some(false)));
        assert_eq!(c.margin, Some(-0.25));
        assert_eq!(median(&[1.0, 2.0]), Some(1.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn phases_compare_every_telering_instance() {
        let runs = |rate: f64, cpu: f64| {
            let x = system(&[rate], &[cpu]);
            vec![x.run]
        };
        let p = Phase::new(
            1,
            Some(10),
            None,
            1,
            BTreeMap::from([
                (SystemId::telering(1), runs(300.0, 1.0)),
                (SystemId::telering(2), runs(200.0, 2.0)),
                (SystemId::telering_journal(1), runs(240.0, 1.5)),
                (SystemId::telering_tls(2), runs(150.0, 3.0)),
                (SystemId::Mosquitto, runs(50.0, 10.0)),
                (SystemId::Rumqttd, runs(150.0, 3.0)),
            ]),
        );
        // Three per instance without the journal; the journaled one only
        // against itself without it.
        assert_eq!(p.targets.len(), 7);
        assert_eq!(p.journal_ratios["telering-1shard-journal"], Some(0.8));
        assert_eq!(p.journal_cpu_ratios["telering-1shard-journal"], Some(1.5));
        let j = p
            .targets
            .iter()
            .find(|t| t.telering == "telering-1shard-journal")
            .unwrap();
        assert_eq!(
            (j.peer.as_str(), j.target, j.met),
            ("telering-1shard", TARGET_JOURNAL_OVER_MEMORY, Some(true))
        );
        assert!(!p.ratios.contains_key("telering-1shard-journal"));
        // The TLS instance: against itself over plaintext, no target.
        assert_eq!(p.tls_ratios["telering-2shards-tls"], Some(0.75));
        assert_eq!(p.tls_cpu_ratios["telering-2shards-tls"], Some(1.5));
        assert!(!p.ratios.contains_key("telering-2shards-tls"));
        assert!(p
            .targets
            .iter()
            .all(|t| t.telering != "telering-2shards-tls"));
        assert_eq!(
            p.cpu_ratios["telering-1shard"]["telering_over_rumqttd"],
            Some(3.0)
        );
        assert_eq!(
            p.cpu_ratios["telering-2shards"]["telering_over_rumqttd"],
            Some(1.5)
        );
        assert_eq!(
            p.ratios["telering-1shard"]["telering_over_mosquitto"],
            Some(6.0)
        );
        // (rumqttd's simulator 3 + rumqttd 3 us/msg) over telering's simulator 3.
        assert_eq!(
            p.msg_per_s_ceilings["telering-1shard"]["telering_over_rumqttd"],
            Some(2.0)
        );
        assert!(p.ok());
        let text = {
            let mut s = String::new();
            phase_table(&mut s, 16, &p);
            s
        };
        assert!(text.contains("MISSED"), "{text}");
        assert!(
            text.contains("telering-2shards-tls's msg/s over telering-2shards's")
                && text.contains("telering-2shards-tls's CPU/msg over telering-2shards's"),
            "{text}"
        );
    }
}
