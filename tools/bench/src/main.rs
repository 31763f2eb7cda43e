//! Quick comparison of telering with peer queues, without criterion.
//!
//! `cargo run --release -p telering-bench -- [--quick] [--json] [--records N]
//! [--rate R] [--out DIR] [--no-latency]`
//!
//! In one run it measures
//! - the floors of this machine: core-to-core one-way latency (pinned atomic
//!   ping-pong), memcpy bandwidth over a ring-sized (2 MiB) buffer, and the
//!   cost of a clock read;
//! - throughput, M records/s, of the same scenarios as the criterion benches
//!   (`benches/ring.rs`, `benches/engine.rs`; shared code in `scenarios`),
//!   interleaving the systems over several runs and reporting the median;
//! - one-way latency at a fixed rate with coordinated-omission correction for
//!   each telering wait strategy and the peers (`latency.rs`), written as
//!   `.hgrm` percentile distributions and a percentile plot (`plot.rs`);
//! - and whether the performance targets were met.
//!
//! Systems are compared as ratios within the run: the machine is shared, so
//! absolute figures move between runs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use serde_json::{json, Map, Value};
use telering::WaitStrategy;
use telering_bench::{floors, latency, pingpong, plot, scenarios};

use floors::{median, Floors, RING_BYTES};
use latency::{LatConfig, LatResult, LatSystem, PERCENTILES};
use pingpong::{PingResult, PingSystem};
use scenarios::{Kind, Pins, Scenario, System, CAPACITY};

/// Bytes per record.
const RECORD_BYTES: usize = std::mem::size_of::<telering::Reading>();

/// Throughput target: telering ≥ this × the best peer (SPSC single and batch).
const TARGET_RATIO: f64 = 1.25;
/// Latency target: busy-spin p50 ≤ this × the core-to-core floor.
const TARGET_P50_FLOORS: f64 = 2.0;
/// Latency target: busy-spin p99.9 below this, ns.
const TARGET_P999_NS: f64 = 1000.0;

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "telering vs disruptor, rtrb, crossbeam and std queues: throughput, floors, latency",
    long_about = None
)]
struct Args {
    /// Print one JSON object on stdout (the human-readable report goes to stderr).
    #[arg(long)]
    json: bool,
    /// A very short run for CI smoke tests (about 5 s).
    #[arg(long)]
    quick: bool,
    /// Records per throughput run. Default: sized per system from a
    /// calibration run so that each run takes about 0.15 s (0.03 s with --quick).
    #[arg(long)]
    records: Option<u64>,
    /// Runs per system, interleaved across systems; the report shows the median
    /// [default: 5, or 1 with --quick].
    #[arg(long)]
    reps: Option<usize>,
    /// Publish rate of the latency runs, messages per second.
    #[arg(long, default_value_t = 1_000_000.0)]
    rate: f64,
    /// Seconds of latency measurement per system, in 5 interleaved rounds
    /// [default: 1, or 0.2 in one round with --quick].
    #[arg(long)]
    latency_secs: Option<f64>,
    /// Directory for the .hgrm files and latency.svg.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Skip the latency runs.
    #[arg(long)]
    no_latency: bool,
    /// Only the throughput scenarios whose id contains this (e.g. `spsc`);
    /// `SCENARIO/SYSTEM` also keeps only that system (e.g. `spsc_single/telering`).
    #[arg(long)]
    only: Option<String>,
}

/// One system's runs in one scenario.
struct Row {
    system: System,
    /// Records per measured run.
    records: u64,
    mrps: Vec<f64>,
}

impl Row {
    fn median(&self) -> f64 {
        median(&mut self.mrps.clone())
    }
    fn min(&self) -> f64 {
        self.mrps.iter().copied().fold(f64::INFINITY, f64::min)
    }
    fn max(&self) -> f64 {
        self.mrps.iter().copied().fold(0.0, f64::max)
    }
}

struct ScenarioResult {
    scenario: Scenario,
    rows: Vec<Row>,
}

impl ScenarioResult {
    /// The telering row compared with the peers: the fastest (median) of
    /// telering's ways to do the job (ring core or engine API, either slot
    /// layout), as the best peer is the fastest of the peers. Every row is
    /// printed, so the others stay in view.
    fn telering(&self) -> Option<&Row> {
        self.rows
            .iter()
            .filter(|r| matches!(r.system.kind, Kind::Ring | Kind::Engine))
            .max_by(|a, b| a.median().total_cmp(&b.median()))
    }

    fn best_peer(&self) -> Option<&Row> {
        self.rows
            .iter()
            .filter(|r| r.system.kind == Kind::Peer)
            .max_by(|a, b| a.median().total_cmp(&b.median()))
    }

    fn ratio(&self) -> Option<f64> {
        Some(self.telering()?.median() / self.best_peer()?.median())
    }

    /// The same comparison on each system's best run (the least disturbed).
    fn ratio_of_best(&self) -> Option<(f64, &Row)> {
        let peer = self
            .rows
            .iter()
            .filter(|r| r.system.kind == Kind::Peer)
            .max_by(|a, b| a.max().total_cmp(&b.max()))?;
        Some((self.telering()?.max() / peer.max(), peer))
    }

    fn oversubscribed(&self, pins: &Pins) -> bool {
        pins.oversubscribed(self.scenario.threads)
    }
}

/// A target and how it went.
struct Target {
    name: String,
    value: Option<f64>,
    unit: &'static str,
    met: Option<bool>,
    detail: String,
}

fn main() -> ExitCode {
    // The core list first, before any thread is pinned.
    let pins = Pins::take();
    let args = Args::parse();
    let started = Instant::now();
    let quick = args.quick;
    let run_secs = if quick { 0.03 } else { 0.15 };
    let calibration = if quick { 100_000 } else { 500_000 };
    let reps = args.reps.unwrap_or(if quick { 1 } else { 5 }).max(1);
    let latency_secs = args.latency_secs.unwrap_or(if quick { 0.2 } else { 1.0 });
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        eprintln!("error: --rate must be a positive number of messages per second");
        return ExitCode::FAILURE;
    }

    let mut report = String::new();
    let machine = cpu_model().unwrap_or_else(|| "unknown CPU".to_owned());
    eprintln!(
        "telering bench: {} cores ({machine}); {}",
        pins.cores(),
        pins.describe(2)
    );

    // ----- floors -----
    eprintln!("measuring floors (core-to-core ping-pong, memcpy 2 MiB, clock) ...");
    let fl = floors::measure(&pins, quick);

    // ----- throughput -----
    let (only_scenario, only_system) = match args.only.as_deref() {
        Some(o) => match o.split_once('/') {
            Some((sc, sys)) => (Some(sc), Some(sys)),
            None => (Some(o), None),
        },
        None => (None, None),
    };
    let mut results: Vec<ScenarioResult> = std::iter::once(scenarios::base())
        .chain(scenarios::all())
        .filter(|s| s.id == "base" || only_scenario.is_none_or(|o| s.id.contains(o)))
        .map(|s| match only_system {
            Some(name) if s.id != "base" => s.only(|sys| sys.name == name),
            _ => s,
        })
        .filter(|s| !s.systems.is_empty())
        .map(|s| ScenarioResult {
            rows: s
                .systems
                .iter()
                .map(|&system| Row {
                    system,
                    records: 0,
                    mrps: Vec::new(),
                })
                .collect(),
            scenario: s,
        })
        .collect();
    // Size each system's runs: a calibration run (also the warm-up, not
    // counted) gives its rate, and a run then lasts about `run_secs`.
    eprint!("calibrating");
    for res in results.iter_mut() {
        for row in res.rows.iter_mut() {
            row.records = match args.records {
                Some(n) => n.max(1),
                None => {
                    let t = (row.system.run)(calibration, &pins);
                    let rate = calibration as f64 / t.as_secs_f64();
                    ((rate * run_secs) as u64).clamp(calibration, 200_000_000)
                }
            };
            eprint!(".");
        }
    }
    eprintln!();
    for rep in 0..reps {
        for res in results.iter_mut() {
            eprint!("run {}/{reps} {:<15}", rep + 1, res.scenario.id);
            for row in res.rows.iter_mut() {
                let t = (row.system.run)(row.records, &pins);
                let mrps = row.records as f64 / t.as_secs_f64() / 1e6;
                row.mrps.push(mrps);
                eprint!(" {} {mrps:.1}", row.system.name);
            }
            eprintln!();
        }
    }

    // ----- latency -----
    let mut lat: Vec<LatResult> = Vec::new();
    let mut ping: Vec<PingResult> = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut plot_path: Option<PathBuf> = None;
    // Each system runs in `rounds` segments, interleaved with the others, so
    // a burst of noise from the shared machine spreads over all of them.
    let rounds: u32 = if quick { 1 } else { 5 };
    let count = ((args.rate * latency_secs / f64::from(rounds)) as u64).max(1000);
    let lat_cfg = LatConfig {
        rate: args.rate,
        count,
        warmup: (count / 10).min(20_000),
        prefill: CAPACITY as u64,
        rounds,
    };
    if !args.no_latency {
        eprintln!(
            "latency: {} rounds of {} messages at {:.2} M msg/s per system (after one lap of {} back to back and {} scheduled warm-up, not recorded) ...",
            lat_cfg.rounds,
            lat_cfg.count,
            lat_cfg.rate / 1e6,
            lat_cfg.prefill,
            lat_cfg.warmup
        );
        lat = interleaved(
            rounds,
            &LatSystem::all(),
            |system| latency::run(system, &lat_cfg, &pins),
            |all, r| all.hist.add(&r.hist).expect("same histogram bounds"),
        );
        for r in &lat {
            eprintln!(
                "  {:<28} p50 {} p99.9 {} max {}",
                r.system.name(),
                r.at(50.0),
                r.at(99.9),
                r.hist.max()
            );
        }
        // Ping-pong, also in interleaved rounds.
        let samples = if quick { 500 } else { 2_000 };
        eprintln!(
            "ping-pong: {rounds} rounds of {samples} samples of {} round trips per system ...",
            pingpong::PER_SAMPLE
        );
        ping = interleaved(
            rounds,
            &PingSystem::all(),
            |system| pingpong::run(system, samples, samples / 10, &pins),
            |all, r| {
                all.hist.add(&r.hist).expect("same histogram bounds");
                all.floor.add(&r.floor).expect("same histogram bounds");
            },
        );
        for r in &ping {
            eprintln!(
                "  {:<28} one-way p50 {} p99 {} (floor p50 {})",
                r.system.name(),
                r.at(50.0),
                r.at(99.0),
                r.floor_p50()
            );
        }
        match write_latency_files(&args.out, &lat, &lat_cfg, &fl) {
            Ok((hgrm, svg)) => {
                files = hgrm;
                plot_path = Some(svg);
            }
            Err(e) => eprintln!("warning: could not write the latency files: {e}"),
        }
    }

    // ----- report -----
    let c2c_end = floors::recheck_c2c(&pins);
    let moved = c2c_end > 2.0 * fl.c2c_one_way_ns || fl.c2c_one_way_ns > 2.0 * c2c_end;
    let targets = evaluate_targets(&results, &lat, &ping, &fl);
    write_report(
        &mut report,
        &pins,
        &machine,
        &fl,
        &results,
        reps,
        &lat,
        &ping,
        &lat_cfg,
        &targets,
        plot_path.as_deref(),
        &files,
    );
    let _ = writeln!(
        report,
        "\ncore-to-core at the end: {c2c_end:.1} ns (at the start {:.1} ns){}",
        fl.c2c_one_way_ns,
        if moved {
            " — WARNING: it changed more than 2×, the hypervisor moved the vCPUs during the run; figures before and after are not comparable"
        } else {
            ""
        }
    );
    let _ = writeln!(
        report,
        "(total {:.1} s; the machine is shared and noisy: compare ratios within one run)",
        started.elapsed().as_secs_f64()
    );
    if args.json {
        eprint!("{report}");
        let mut v = to_json(
            &pins,
            &machine,
            quick,
            reps,
            &fl,
            &results,
            &lat,
            &ping,
            &lat_cfg,
            &targets,
            plot_path.as_deref(),
            &files,
        );
        v["floors"]["core_to_core_at_end_ns"] = json!(round(c2c_end, 2));
        v["floors"]["vcpus_moved_during_run"] = json!(moved);
        println!("{v}");
    } else {
        print!("{report}");
    }
    ExitCode::SUCCESS
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned())
}

fn write_latency_files(
    out: &Path,
    lat: &[LatResult],
    cfg: &LatConfig,
    fl: &Floors,
) -> Result<(Vec<PathBuf>, PathBuf), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(out)?;
    let mut files = Vec::new();
    for r in lat {
        let path = out.join(format!("latency-{}.hgrm", r.system.slug()));
        latency::write_hgrm(&path, &r.hist)?;
        files.push(path);
    }
    let svg = out.join("latency.svg");
    let title = format!(
        "one-way latency at {:.2} M msg/s, 32-byte records, 64 Ki slots (coordinated-omission corrected)",
        cfg.rate / 1e6
    );
    plot::percentile_svg(&svg, &title, lat, Some(fl.c2c_one_way_ns))?;
    Ok((files, svg))
}

fn latency_of(lat: &[LatResult], system: LatSystem) -> Option<&LatResult> {
    lat.iter().find(|r| r.system == system)
}

/// p50 with the harness taken out: the core-to-core floor plus what the
/// system adds over the `base` row (which already pays one cache-line
/// transfer, both clock reads and the producer's spin to the due time).
fn adjusted_p50(r: &LatResult, lat: &[LatResult], fl: &Floors) -> Option<f64> {
    if latency_disturbed(lat) {
        return None;
    }
    let base = latency_of(lat, LatSystem::Base)?.at(50.0) as f64;
    Some(fl.c2c_one_way_ns + r.at(50.0) as f64 - base)
}

/// Median one-way latency of the harness alone above which the latency phase
/// was evidently disturbed (other load took the cores): a handoff of one
/// cache line plus two clock reads takes a few hundred ns at most.
const DISTURBED_BASE_P50_NS: u64 = 5_000;

/// Whether other load disturbed the latency phase (see [`DISTURBED_BASE_P50_NS`]).
fn latency_disturbed(lat: &[LatResult]) -> bool {
    latency_of(lat, LatSystem::Base).is_some_and(|b| b.at(50.0) > DISTURBED_BASE_P50_NS)
}

/// Runs every system once per round, round after round, so a burst of noise
/// from the shared machine spreads over all of them; `merge` adds a later
/// round's result into the system's first.
fn interleaved<S: Copy, R>(
    rounds: u32,
    systems: &[S],
    mut run: impl FnMut(S) -> R,
    merge: impl Fn(&mut R, R),
) -> Vec<R> {
    let mut all: Vec<R> = systems.iter().map(|&s| run(s)).collect();
    for _ in 1..rounds {
        for (slot, &s) in all.iter_mut().zip(systems) {
            let r = run(s);
            merge(slot, r);
        }
    }
    all
}

/// Whether the core-to-core runs disagree so much that the vCPUs probably
/// moved (the hypervisor placed them on other physical cores mid-run).
fn floor_unstable(fl: &Floors) -> bool {
    let max = fl.c2c_runs.iter().copied().fold(0.0, f64::max);
    max > 2.0 * fl.c2c_one_way_ns
}

fn evaluate_targets(
    results: &[ScenarioResult],
    lat: &[LatResult],
    ping: &[PingResult],
    fl: &Floors,
) -> Vec<Target> {
    let mut targets = Vec::new();
    for id in ["spsc_single", "spsc_batch"] {
        let name = format!("{id}: telering ≥ {TARGET_RATIO}× the best peer");
        let Some(res) = results.iter().find(|r| r.scenario.id == id) else {
            targets.push(Target {
                name,
                value: None,
                unit: "×",
                met: None,
                detail: "not measured in this run".to_owned(),
            });
            continue;
        };
        let (Some(ratio), Some(peer)) = (res.ratio(), res.best_peer()) else {
            continue;
        };
        let met = ratio >= TARGET_RATIO;
        let detail = if met {
            format!(
                "{} {ratio:.2}× {} ({:.1} vs {:.1} M rec/s): met, {:.0} % above the target",
                res.telering().map_or("telering", |t| t.system.name),
                peer.system.name,
                res.telering().map_or(0.0, Row::median),
                peer.median(),
                (ratio / TARGET_RATIO - 1.0) * 100.0
            )
        } else {
            // 1.25× a peer that already moves its records near this
            // machine's copy bandwidth cannot be had by any queue here.
            let needed = TARGET_RATIO * memcpy_fraction(peer.median(), fl);
            let physical = if needed > 1.0 {
                format!(
                    "; out of reach here: {TARGET_RATIO}× {} would be {needed:.2}× this machine's memcpy bandwidth",
                    peer.system.name
                )
            } else {
                String::new()
            };
            format!(
                "{} {ratio:.2}× {} ({:.1} vs {:.1} M rec/s): missed by {:.0} % (telering needs {:.2}× its throughput){physical}",
                res.telering().map_or("telering", |t| t.system.name),
                peer.system.name,
                res.telering().map_or(0.0, Row::median),
                peer.median(),
                (1.0 - ratio / TARGET_RATIO) * 100.0,
                TARGET_RATIO / ratio
            )
        };
        targets.push(Target {
            name,
            value: Some(ratio),
            unit: "×",
            met: Some(met),
            detail,
        });
    }
    let busy = latency_of(lat, LatSystem::Ring(WaitStrategy::BusySpin));
    let p50_name =
        format!("one-way p50 under BusySpin ≤ {TARGET_P50_FLOORS}× the core-to-core floor");
    let p999_name = format!("one-way p99.9 under BusySpin < {TARGET_P999_NS:.0} ns");
    match busy {
        Some(r) => {
            let adjusted = adjusted_p50(r, lat, fl).map_or(String::new(), |a| {
                format!(
                    " [harness taken out (floor + p50 − base p50): {a:.0} ns = {:.2}× the floor]",
                    a / fl.c2c_one_way_ns
                )
            });
            let adjusted = if latency_disturbed(lat) {
                " [latency runs disturbed by other load: the harness alone had a median in the µs; rerun]"
                    .to_owned()
            } else {
                adjusted
            };
            let base_tail = latency_of(lat, LatSystem::Base).map_or(String::new(), |b| {
                format!(
                    " [the harness alone, base row: p99.9 {} ns — the machine's stalls, not the queue]",
                    b.at(99.9)
                )
            });
            // Judged on the ping-pong, which measures one-way latency the
            // way the floor is measured (round trip / 2); the fixed-rate p50
            // carries two clock reads and is shown alongside.
            let fixed = format!(
                "; fixed-rate p50 {} ns with two clock reads per sample{adjusted}",
                r.at(50.0)
            );
            let best = ping
                .iter()
                .filter(|p| p.system.is_telering())
                .min_by(|a, b| a.p50_over_floor().total_cmp(&b.p50_over_floor()));
            // Each ping-pong system carries its own floor, measured between
            // its samples on the same threads (the hypervisor moves the vCPUs
            // between runs here; the start-of-run floor is shown too).
            match best {
                Some(b) => {
                    let p50 = b.at(50.0) as f64;
                    let floor = b.floor_p50() as f64;
                    let x = p50 / floor;
                    let limit = TARGET_P50_FLOORS * floor;
                    let atomic = format!(
                        " of two bare atomics ping-ponged between its samples ({:.2}× the single-line floor of {:.1} ns measured at the start)",
                        p50 / fl.c2c_one_way_ns,
                        fl.c2c_one_way_ns
                    );
                    targets.push(Target {
                        name: p50_name,
                        value: Some(x),
                        unit: "× floor",
                        met: Some(x <= TARGET_P50_FLOORS),
                        detail: if x <= TARGET_P50_FLOORS {
                            format!(
                                "{} ping-pong p50 {p50:.0} ns = {x:.2}× the {floor:.0} ns floor{atomic}: met, {:.0} ns to spare{fixed}",
                                b.system.name(),
                                limit - p50
                            )
                        } else {
                            format!(
                                "{} ping-pong p50 {p50:.0} ns = {x:.2}× the {floor:.0} ns floor{atomic}: missed by {:.0} ns ({:.0} % over the {limit:.0} ns limit){fixed}",
                                b.system.name(),
                                p50 - limit,
                                (p50 / limit - 1.0) * 100.0
                            )
                        },
                    });
                }
                None => targets.push(Target {
                    name: p50_name,
                    value: None,
                    unit: "",
                    met: None,
                    detail: format!("ping-pong not measured{fixed}"),
                }),
            }
            let p999 = r.at(99.9) as f64;
            targets.push(Target {
                name: p999_name,
                value: Some(p999),
                unit: "ns",
                met: Some(p999 < TARGET_P999_NS),
                detail: if p999 < TARGET_P999_NS {
                    format!(
                        "p99.9 {p999:.0} ns: met, {:.0} ns to spare",
                        TARGET_P999_NS - p999
                    )
                } else {
                    format!(
                        "p99.9 {p999:.0} ns: missed by {:.0} ns ({:.1}× the limit){base_tail}",
                        p999 - TARGET_P999_NS,
                        p999 / TARGET_P999_NS
                    )
                },
            });
        }
        None => {
            for name in [p50_name, p999_name] {
                targets.push(Target {
                    name,
                    value: None,
                    unit: "",
                    met: None,
                    detail: "latency not measured (--no-latency)".to_owned(),
                });
            }
        }
    }
    targets
}

/// telering's throughput as a fraction of memcpy bandwidth (records × 32 B).
fn memcpy_fraction(mrps: f64, fl: &Floors) -> f64 {
    mrps * 1e6 * RECORD_BYTES as f64 / fl.memcpy_bytes_per_s
}

#[allow(clippy::too_many_arguments)]
fn write_report(
    out: &mut String,
    pins: &Pins,
    machine: &str,
    fl: &Floors,
    results: &[ScenarioResult],
    reps: usize,
    lat: &[LatResult],
    ping: &[PingResult],
    lat_cfg: &LatConfig,
    targets: &[Target],
    plot_path: Option<&Path>,
    files: &[PathBuf],
) {
    let w = out;
    let _ = writeln!(
        w,
        "\n== telering bench: {} cores ({machine}), {} ==",
        pins.cores(),
        if pins.enabled() {
            "threads pinned, producer and consumer on different cores"
        } else {
            "fewer than 2 cores: threads UNPINNED"
        }
    );
    let _ = writeln!(
        w,
        "record {RECORD_BYTES} B (telering::Reading), {} Ki slots for every queue; median of {reps} interleaved run(s)",
        CAPACITY / 1024
    );
    let _ = writeln!(w, "\n-- floors --");
    let _ = writeln!(w, "(best of the runs; noise only slows a run down)");
    let _ = writeln!(
        w,
        "core-to-core one-way  {:8.1} ns   (pinned atomic ping-pong, round trip / 2; median {:.1}; {} runs of {} round trips: {})",
        fl.c2c_one_way_ns,
        fl.c2c_median_ns,
        fl.c2c_runs.len(),
        fl.c2c_round_trips,
        list(&fl.c2c_runs, 1)
    );
    let _ = writeln!(
        w,
        "memcpy {} MiB         {:8.1} GB/s (= {:.0} M records/s of 32 B; median {:.1}; runs {})",
        RING_BYTES >> 20,
        fl.memcpy_bytes_per_s / 1e9,
        fl.memcpy_bytes_per_s / RECORD_BYTES as f64 / 1e6,
        fl.memcpy_median_bytes_per_s / 1e9,
        list(
            &fl.memcpy_runs.iter().map(|b| b / 1e9).collect::<Vec<_>>(),
            1
        )
    );
    let _ = writeln!(
        w,
        "Instant::now()        {:8.1} ns   (in every latency sample: one read at each end)",
        fl.clock_ns
    );
    if floor_unstable(fl) {
        let _ = writeln!(
            w,
            "WARNING: the core-to-core runs disagree by more than 2× ({}): the hypervisor probably moved the vCPUs during the run; latency ratios to the floor are unreliable",
            list(&fl.c2c_runs, 1)
        );
    }

    let _ = writeln!(w, "\n-- throughput, M records/s --");
    for res in results {
        let s = &res.scenario;
        let over = res.oversubscribed(pins);
        let _ = writeln!(
            w,
            "\n{} — {} [{} threads: {}{}]",
            s.id,
            s.title,
            s.threads,
            pins.describe(s.threads),
            if over {
                "; OVERSUBSCRIBED: more busy threads than cores, figures measure the scheduler as much as the queue"
            } else {
                ""
            },
        );
        let tele = res.telering().map(Row::median);
        let _ = writeln!(
            w,
            "  {:<21} {:>9} {:>15} {:>11} {:>10}  api",
            "system", "M rec/s", "min..max", "vs telering", "records"
        );
        for row in &res.rows {
            let m = row.median();
            let vs = match tele {
                Some(t) if row.system.kind != Kind::Base => format!("{:.2}×", m / t),
                _ => String::new(),
            };
            let _ = writeln!(
                w,
                "  {:<21} {:>9.1} {:>15} {:>11} {:>10}  {}",
                row.system.name,
                m,
                format!("{:.1}..{:.1}", row.min(), row.max()),
                vs,
                row.records,
                row.system.api
            );
        }
        if let (Some(t), Some(p), Some(ratio)) = (res.telering(), res.best_peer(), res.ratio()) {
            let _ = writeln!(
                w,
                "  => {} / best peer ({} {:.1}) = {ratio:.2}× on medians{}",
                t.system.name,
                p.system.name,
                p.median(),
                if over { "  (oversubscribed)" } else { "" }
            );
            if let Some((rb, pb)) = res.ratio_of_best() {
                let _ = writeln!(
                    w,
                    "     best runs: {:.1} vs {} {:.1} = {rb:.2}×",
                    t.max(),
                    pb.system.name,
                    pb.max()
                );
            }
        }
        if s.id == "base" {
            let m = res.rows[0].median();
            let _ = writeln!(
                w,
                "  (the harness alone: {:.1} M handoffs/s, {:.2} ns each)",
                m,
                1e3 / m
            );
        }
    }

    let _ = writeln!(w, "\n-- against the floors --");
    for id in ["spsc_single", "spsc_batch"] {
        if let Some(res) = results.iter().find(|r| r.scenario.id == id) {
            if let Some(t) = res.telering() {
                let m = t.median();
                let _ = write!(
                    w,
                    "{id}: telering {m:.1} M rec/s × 32 B = {:.2} GB/s = {:.3} of memcpy bandwidth",
                    m * 1e6 * RECORD_BYTES as f64 / 1e9,
                    memcpy_fraction(m, fl)
                );
                if let Some(p) = res.best_peer() {
                    let _ = write!(
                        w,
                        " (best peer {}: {:.3})",
                        p.system.name,
                        memcpy_fraction(p.median(), fl)
                    );
                }
                let _ = writeln!(w);
            }
        }
    }
    if let Some(r) = latency_of(lat, LatSystem::Ring(WaitStrategy::BusySpin)) {
        let _ = writeln!(
            w,
            "latency: telering ring BusySpin p50 {} ns = {:.2}× the core-to-core floor ({:.1} ns)",
            r.at(50.0),
            r.at(50.0) as f64 / fl.c2c_one_way_ns,
            fl.c2c_one_way_ns
        );
    }
    if let Some(r) = latency_of(lat, LatSystem::Base) {
        let _ = writeln!(
            w,
            "         harness alone (atomic handoff) p50 {} ns = {:.2}× the floor: the best any queue can show here",
            r.at(50.0),
            r.at(50.0) as f64 / fl.c2c_one_way_ns
        );
    }

    if !lat.is_empty() {
        let _ = writeln!(
            w,
            "\n-- one-way latency, ns, at {:.2} M msg/s ({} samples each: {} interleaved rounds of {} after a one-lap prefill and {} warm-up; from the scheduled send time, coordinated-omission corrected) --",
            lat_cfg.rate / 1e6,
            u64::from(lat_cfg.rounds) * (lat_cfg.count - lat_cfg.warmup),
            lat_cfg.rounds,
            lat_cfg.count - lat_cfg.warmup,
            lat_cfg.warmup
        );
        let _ = write!(w, "  {:<28}", "system");
        for (_, name) in PERCENTILES {
            let _ = write!(w, " {name:>8}");
        }
        let _ = writeln!(w, " {:>10} {:>10} {:>10}", "max", "p50/floor", "p50-base");
        let base_p50 = latency_of(lat, LatSystem::Base).map(|b| b.at(50.0) as i64);
        for r in lat {
            let _ = write!(w, "  {:<28}", r.system.name());
            for (p, _) in PERCENTILES {
                let _ = write!(w, " {:>8}", r.at(p));
            }
            let _ = writeln!(
                w,
                " {:>10} {:>9.2}× {:>10}",
                r.hist.max(),
                r.at(50.0) as f64 / fl.c2c_one_way_ns,
                base_p50.map_or(String::new(), |b| format!("{:+}", r.at(50.0) as i64 - b))
            );
        }
        let _ = writeln!(
            w,
            "  (each sample pays two clock reads of ~{:.0} ns and the producer's spin to its due time; the base row is that harness with an ideal zero-cost queue, so p50-base is what a queue adds)",
            fl.clock_ns
        );
        if latency_disturbed(lat) {
            let _ = writeln!(
                w,
                "  WARNING: the harness alone (base row) has a median of {} ns: other load took the cores during the latency runs; rerun on a quiet machine",
                latency_of(lat, LatSystem::Base).map_or(0, |b| b.at(50.0))
            );
        }
        if let Some(p) = plot_path {
            let _ = writeln!(w, "  plot: {}", p.display());
        }
        if let Some(dir) = files.first().and_then(|f| f.parent()) {
            let _ = writeln!(
                w,
                "  percentile distributions (.hgrm, values in ns): {}/latency-*.hgrm ({} files)",
                dir.display(),
                files.len()
            );
        }
    }

    if !ping.is_empty() {
        let _ = writeln!(
            w,
            "\n-- one-way latency by ping-pong, ns (round trip / 2 through two queues; each sample is the mean of {} round trips) --",
            pingpong::PER_SAMPLE
        );
        let _ = writeln!(
            w,
            "  {:<28} {:>8} {:>8} {:>8} {:>8} {:>11} {:>11}",
            "system", "p50", "p90", "p99", "max", "floor p50", "p50/floor"
        );
        for r in ping {
            let _ = writeln!(
                w,
                "  {:<28} {:>8} {:>8} {:>8} {:>8} {:>11} {:>10.2}×",
                r.system.name(),
                r.at(50.0),
                r.at(90.0),
                r.at(99.0),
                r.hist.max(),
                r.floor_p50(),
                r.p50_over_floor()
            );
        }
        let _ = writeln!(
            w,
            "  (floor: the same ping-pong through two bare atomics, one per direction as with two queues, run between the system's samples on the same threads;\n   it is above the single-line core-to-core floor ({:.1} ns), where both sides write the one line: no queue has such a line)",
            fl.c2c_one_way_ns
        );
    }

    let _ = writeln!(
        w,
        "\n-- targets (benchmark results on this machine, not tests) --"
    );
    for t in targets {
        let tag = match t.met {
            Some(true) => "MET ",
            Some(false) => "MISS",
            None => " -- ",
        };
        let _ = writeln!(w, "  [{tag}] {}: {}", t.name, t.detail);
    }
}

fn list(v: &[f64], decimals: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.decimals$}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn round(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

#[allow(clippy::too_many_arguments)]
fn to_json(
    pins: &Pins,
    machine: &str,
    quick: bool,
    reps: usize,
    fl: &Floors,
    results: &[ScenarioResult],
    lat: &[LatResult],
    ping: &[PingResult],
    lat_cfg: &LatConfig,
    targets: &[Target],
    plot_path: Option<&Path>,
    files: &[PathBuf],
) -> Value {
    let mut mrps = Map::new();
    let mut ratios = Map::new();
    let mut scenarios = Map::new();
    for res in results {
        let s = &res.scenario;
        let mut systems = Map::new();
        let mut detail = Map::new();
        for row in &res.rows {
            systems.insert(row.system.name.to_owned(), json!(round(row.median(), 2)));
            detail.insert(
                row.system.name.to_owned(),
                json!({
                    "mrps": round(row.median(), 2),
                    "runs_mrps": row.mrps.iter().map(|m| round(*m, 2)).collect::<Vec<_>>(),
                    "records_per_run": row.records,
                    "api": row.system.api,
                    "kind": format!("{:?}", row.system.kind).to_lowercase(),
                }),
            );
        }
        mrps.insert(s.id.to_owned(), Value::Object(systems));
        let ratio = res.ratio().map(|r| round(r, 3));
        if s.id != "base" {
            ratios.insert(s.id.to_owned(), json!(ratio));
        }
        scenarios.insert(
            s.id.to_owned(),
            json!({
                "title": s.title,
                "threads": s.threads,
                "oversubscribed": res.oversubscribed(pins),
                "telering": res.telering().map(|r| r.system.name),
                "best_peer": res.best_peer().map(|r| r.system.name),
                "ratio_telering_to_best_peer": ratio,
                "ratio_of_best_runs": res.ratio_of_best().map(|(r, _)| round(r, 3)),
                "systems": detail,
            }),
        );
    }
    let mut vs_floors = Map::new();
    for id in ["spsc_single", "spsc_batch"] {
        if let Some(t) = results
            .iter()
            .find(|r| r.scenario.id == id)
            .and_then(|r| r.telering())
        {
            vs_floors.insert(
                format!("{id}_fraction_of_memcpy"),
                json!(round(memcpy_fraction(t.median(), fl), 4)),
            );
        }
    }
    let mut latency = Map::new();
    for r in lat {
        let mut m = Map::new();
        for (p, name) in PERCENTILES {
            m.insert(name.to_owned(), json!(r.at(p)));
        }
        m.insert("max".into(), json!(r.hist.max()));
        m.insert("mean".into(), json!(round(r.hist.mean(), 1)));
        m.insert("count".into(), json!(r.hist.len()));
        m.insert(
            "p50_x_floor".into(),
            json!(round(r.at(50.0) as f64 / fl.c2c_one_way_ns, 3)),
        );
        if let Some(a) = adjusted_p50(r, lat, fl) {
            m.insert("p50_harness_adjusted_ns".into(), json!(round(a, 1)));
        }
        latency.insert(r.system.name(), Value::Object(m));
    }
    if let Some(r) = latency_of(lat, LatSystem::Ring(WaitStrategy::BusySpin)) {
        vs_floors.insert(
            "busyspin_p50_x_core_to_core".into(),
            json!(round(r.at(50.0) as f64 / fl.c2c_one_way_ns, 3)),
        );
    }
    let oversubscribed: Vec<&str> = results
        .iter()
        .filter(|r| r.oversubscribed(pins))
        .map(|r| r.scenario.id)
        .collect();
    json!({
        "cores": pins.cores(),
        "cpu": machine,
        "pinned": pins.enabled(),
        "oversubscribed_scenarios": oversubscribed,
        "note": if oversubscribed.is_empty() {
            "every busy thread has its own core".to_owned()
        } else {
            format!(
                "{} cores: scenarios with more busy threads than cores ({}) are oversubscribed; their waits spin then yield",
                pins.cores(),
                oversubscribed.join(", ")
            )
        },
        "quick": quick,
        "reps": reps,
        "record_bytes": RECORD_BYTES,
        "capacity": CAPACITY,
        "throughput_mrps": mrps,
        "ratio_telering_to_best_peer": ratios,
        "scenarios": scenarios,
        "floors": {
            "method": "best of several runs (median also given)",
            "core_to_core_one_way_ns": round(fl.c2c_one_way_ns, 2),
            "core_to_core_median_ns": round(fl.c2c_median_ns, 2),
            "core_to_core_runs_ns": fl.c2c_runs.iter().map(|x| round(*x, 2)).collect::<Vec<_>>(),
            "memcpy_2mib_gb_per_s": round(fl.memcpy_bytes_per_s / 1e9, 2),
            "memcpy_2mib_median_gb_per_s": round(fl.memcpy_median_bytes_per_s / 1e9, 2),
            "memcpy_runs_gb_per_s": fl.memcpy_runs.iter().map(|x| round(x / 1e9, 2)).collect::<Vec<_>>(),
            "clock_read_ns": round(fl.clock_ns, 2),
            "core_to_core_unstable": floor_unstable(fl),
        },
        "vs_floors": vs_floors,
        "latency_disturbed": latency_disturbed(lat),
        "latency": {
            "rate_per_s": lat_cfg.rate,
            "rounds": lat_cfg.rounds,
            "messages_per_round": lat_cfg.count,
            "warmup_per_round": lat_cfg.warmup,
            "prefill_per_round": lat_cfg.prefill,
            "unit": "ns",
            "coordinated_omission": "recorded from the scheduled send time",
            "systems": latency,
        },
        "pingpong": {
            "method": "round trip / 2 through two queues, as the core-to-core floor; one sample per round-trip group",
            "round_trips_per_sample": pingpong::PER_SAMPLE,
            "unit": "ns",
            "systems": ping.iter().map(|r| json!({
                "system": r.system.name(),
                "p50": r.at(50.0),
                "p90": r.at(90.0),
                "p99": r.at(99.0),
                "max": r.hist.max(),
                "samples": r.hist.len(),
                "floor_p50": r.floor_p50(),
                "p50_over_floor": round(r.p50_over_floor(), 3),
            })).collect::<Vec<_>>(),
        },
        "targets": targets.iter().map(|t| json!({
            "name": t.name,
            "value": t.value.map(|v| round(v, 3)),
            "unit": t.unit,
            "met": t.met,
            "detail": t.detail,
        })).collect::<Vec<_>>(),
        "files": {
            "plot": plot_path.map(|p| p.display().to_string()),
            "hgrm": files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        },
    })
}
