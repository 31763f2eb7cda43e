//! Quick comparison of telering with peer queues, without criterion.
//!
//! `cargo run --release -p telering-bench -- [--quick] [--json] [--records N]
//! [--rate R] [--out DIR] [--no-latency] [--no-journal | --journal-only]
//! [--journal-dir DIR]`
//!
//! In one run it measures
//! - the floors of this machine: core-to-core one-way latency (pinned atomic
//!   ping-pong), memcpy bandwidth over a ring-sized (2 MiB) buffer, an ideal
//!   streaming transfer of 256-record blocks between the two pinned cores
//!   (`floors::stream`, the floor of the batched SPSC scenario), and the
//!   cost of a clock read;
//! - throughput, M records/s, of the same scenarios as the criterion benches
//!   (`benches/ring.rs`, `benches/engine.rs`; shared code in `scenarios`),
//!   interleaving the systems over several runs and reporting the median;
//! - one-way latency at a fixed rate with coordinated-omission correction for
//!   each telering wait strategy and the peers (`latency.rs`), written as
//!   `.hgrm` percentile distributions and a percentile plot (`plot.rs`);
//! - the journal (`journal.rs`, in a scratch directory in `--journal-dir`,
//!   by default the system temp dir): the sequential-write floor of that
//!   directory (1 MiB `write_all`s, without and with an `fdatasync` each),
//!   journaled batched publish through the engine under `fsync = interval`
//!   against it, and the durable latency of one record at a time per fsync
//!   mode; `--journal-only` runs only this (and the machine floors);
//! - and whether the performance targets were met (`targets.rs`), each
//!   judged on telering's bare-ring row and on its engine-API row.
//!
//! The report, as tables or as one JSON object, is written by `report.rs`.
//!
//! Systems are compared as ratios within the run: the machine is shared, so
//! absolute figures move between runs.

mod report;
mod targets;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use serde_json::json;
use telering_bench::{floors, journal, latency, pingpong, plot, scenarios};

use floors::{median, Floors};
use journal::{JournalBench, JournalResult};
use latency::{LatConfig, LatResult, LatSystem};
use pingpong::{PingResult, PingSystem};
use scenarios::{Kind, Pins, Scenario, System, CAPACITY};

use report::{round, to_json, write_report};
use targets::{evaluate_targets, journal_target};

/// Bytes per record.
const RECORD_BYTES: usize = std::mem::size_of::<telering::Reading>();

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
    /// Directory for the .hgrm files and latency.svg: by default `bench` in
    /// the workspace's target directory ($CARGO_TARGET_DIR if set).
    #[arg(long, default_value_os_t = default_out())]
    out: PathBuf,
    /// Skip the latency runs.
    #[arg(long)]
    no_latency: bool,
    /// Only the throughput scenarios whose id contains this (e.g. `spsc`);
    /// `SCENARIO/SYSTEM` also keeps only that system (e.g. `spsc_single/telering`).
    #[arg(long)]
    only: Option<String>,
    /// Only the machine floors and the journal section: the write floor of
    /// the journal's directory, journaled batched publish against it, and
    /// the durable latency per fsync mode (about 15 s; 3 s with --quick).
    #[arg(long, visible_alias = "journal", conflicts_with = "no_journal")]
    journal_only: bool,
    /// Skip the journal section.
    #[arg(long)]
    no_journal: bool,
    /// Where the journal section writes: a fresh directory is made in it
    /// and deleted at the end. Put it on the filesystem of the data dir
    /// [default: the system temp dir].
    #[arg(long)]
    journal_dir: Option<PathBuf>,
    /// MiB per throughput run of the journal section (the floors and the
    /// journaled publish; each also stops after 2 s, 1 s with --quick)
    /// [default: 256; 64 with --quick].
    #[arg(long)]
    journal_mib: Option<u64>,
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

    /// The fastest (median) of telering's rows of one layer: the bare ring
    /// ([`Kind::Ring`]) or the engine API ([`Kind::Engine`]), either slot
    /// layout. `None` when the scenario has no such row (in this run).
    fn layer(&self, layer: Layer) -> Option<&Row> {
        let kind = layer.kind();
        self.rows
            .iter()
            .filter(|r| r.system.kind == kind)
            .max_by(|a, b| a.median().total_cmp(&b.median()))
    }

    /// [`Self::layer`]'s row over the best peer, on medians.
    fn layer_ratio(&self, layer: Layer) -> Option<f64> {
        Some(self.layer(layer)?.median() / self.best_peer()?.median())
    }

    /// The row of the system called `name`.
    fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.system.name == name)
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

/// Which of telering's layers a row or a verdict is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    /// The bare ring (`ring::spsc_with`: `Writer` / `Reader`).
    Ring,
    /// The engine API (topics, `Producer`, consumer groups).
    Engine,
}

impl Layer {
    const BOTH: [Self; 2] = [Self::Ring, Self::Engine];

    fn name(self) -> &'static str {
        match self {
            Self::Ring => "ring",
            Self::Engine => "engine",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Self::Ring => Kind::Ring,
            Self::Engine => Kind::Engine,
        }
    }
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
    eprintln!("measuring floors (core-to-core ping-pong, memcpy 2 MiB, streaming 256-record blocks core to core, clock) ...");
    let mut fl = floors::measure(&pins, quick);

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
        .filter(|s| !s.systems.is_empty() && !args.journal_only)
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
    if !results.is_empty() {
        eprint!("calibrating");
    }
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
    if !results.is_empty() {
        eprintln!();
    }
    for rep in 0..reps {
        for res in results.iter_mut() {
            eprint!("run {}/{reps} {:<15}", rep + 1, res.scenario.id);
            // The streaming floor again beside the batched rows, in the same
            // machine state as they (the vCPUs move between runs here), as
            // long as the longest of them.
            if res.scenario.id == "spsc_batch" {
                let n = res
                    .rows
                    .iter()
                    .map(|r| r.records)
                    .max()
                    .unwrap_or(calibration);
                let mrps = n as f64 / floors::stream(n, &pins).as_secs_f64() / 1e6;
                fl.add_stream_run(n, mrps);
                eprint!(" stream-floor {mrps:.1}");
            }
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
    if !args.no_latency && !args.journal_only {
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

    // ----- journal -----
    let mut journal_error: Option<String> = None;
    let mut journal_files: Vec<PathBuf> = Vec::new();
    let journal: Option<JournalResult> = if args.no_journal {
        None
    } else {
        let parent = args.journal_dir.clone().unwrap_or_else(std::env::temp_dir);
        let mut cfg = JournalBench::new(parent, quick);
        if let Some(mib) = args.journal_mib {
            cfg.bytes = mib.max(1) << 20;
        }
        eprintln!(
            "journal: in a scratch directory in {}: {} round(s) of the write floor ({} MiB of {} KiB writes, without and with fdatasync), journaled send_batch_to({}) of the same bytes under fsync {}, and {} durable-latency samples per fsync mode ...",
            cfg.parent.display(),
            cfg.rounds,
            cfg.bytes >> 20,
            cfg.buffer >> 10,
            cfg.batch,
            journal::mode_name(telering::journal::FsyncPolicy::Interval(cfg.interval)),
            cfg.samples
        );
        match journal::run(&cfg, |line| eprintln!("  {line}")) {
            Ok(r) => {
                match write_journal_files(&args.out, &r) {
                    Ok(f) => journal_files = f,
                    Err(e) => eprintln!("warning: could not write the journal latency files: {e}"),
                }
                Some(r)
            }
            Err(e) => {
                eprintln!("error: the journal section failed: {e}");
                journal_error = Some(e);
                None
            }
        }
    };

    // ----- report -----
    let c2c_end = floors::recheck_c2c(&pins);
    let moved = c2c_end > 2.0 * fl.c2c_one_way_ns || fl.c2c_one_way_ns > 2.0 * c2c_end;
    let mut targets = if args.journal_only {
        Vec::new()
    } else {
        evaluate_targets(&results, &lat, &ping, &fl)
    };
    if !args.no_journal {
        targets.push(journal_target(journal.as_ref(), journal_error.as_deref()));
    }
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
        journal.as_ref(),
        &journal_files,
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
        v["journal"] = match (&journal, &journal_error) {
            (Some(j), _) => report::journal_json(j, &journal_files),
            (None, Some(e)) => json!({ "error": e }),
            (None, None) => serde_json::Value::Null,
        };
        v["floors"]["core_to_core_at_end_ns"] = json!(round(c2c_end, 2));
        v["floors"]["vcpus_moved_during_run"] = json!(moved);
        println!("{v}");
    } else {
        print!("{report}");
    }
    if journal_error.is_some() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// `bench` in the workspace's target directory, wherever the tool runs from:
/// `$CARGO_TARGET_DIR` when it is set, else `target` at the workspace root
/// (this crate is `tools/bench` below it).
fn default_out() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .nth(2)
                .expect("the crate is two levels below the workspace root")
                .join("target")
        })
        .join("bench")
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

/// The journal section's latency histograms as `.hgrm` files in `out`.
fn write_journal_files(out: &Path, r: &JournalResult) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    let mut files = Vec::new();
    for m in &r.latency {
        let path = out.join(format!(
            "journal-durable-{}.hgrm",
            journal::mode_name(m.mode)
        ));
        latency::write_hgrm(&path, &m.hist)?;
        files.push(path);
    }
    Ok(files)
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
