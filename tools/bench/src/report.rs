//! The run's report: the tables for people (floors, throughput, against the
//! floors, latency, ping-pong, journal, targets) and the same results as one JSON
//! object (`--json`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use telering::WaitStrategy;
use telering_bench::floors::{median, Floors, RING_BYTES};
use telering_bench::journal::{mode_name, JournalResult, Written};
use telering_bench::latency::{LatConfig, LatResult, LatSystem, PERCENTILES};
use telering_bench::pingpong::{self, PingResult};
use telering_bench::scenarios::{Kind, Pins, BATCH, CAPACITY};

use crate::targets::{
    adjusted_p50, latency_disturbed, latency_of, memcpy_fraction, no_row, Target,
    TARGET_JOURNAL_FLOOR,
};
use crate::{Layer, Row, ScenarioResult, RECORD_BYTES};

/// Whether the core-to-core runs disagree so much that the vCPUs probably
/// moved (the hypervisor placed them on other physical cores mid-run).
fn floor_unstable(fl: &Floors) -> bool {
    let max = fl.c2c_runs.iter().copied().fold(0.0, f64::max);
    max > 2.0 * fl.c2c_one_way_ns
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn write_report(
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
    journal: Option<&JournalResult>,
    journal_files: &[PathBuf],
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
        "stream 256-rec blocks {:8.1} M records/s (ideal SPSC transfer between the pinned cores: {BATCH}-record blocks in a ring of {} Ki records, one Release counter bumped per block each way; median {:.1}; runs at the start {} ({} Mi records each){})",
        fl.stream_mrps,
        CAPACITY / 1024,
        fl.stream_median_mrps,
        list(&fl.stream_runs, 1),
        fl.stream_records >> 20,
        if fl.stream_beside.is_empty() {
            String::new()
        } else {
            format!(
                ", beside the spsc_batch rows {} ({} records each)",
                list(&fl.stream_beside, 1),
                fl.stream_beside_records
            )
        }
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

    if !results.is_empty() {
        let _ = writeln!(w, "\n-- throughput, M records/s --");
    }
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
        if s.id != "base" && res.best_peer().is_some() {
            let layers: Vec<String> = Layer::BOTH
                .into_iter()
                .map(|layer| match (res.layer(layer), res.layer_ratio(layer)) {
                    (Some(r), Some(x)) => format!("{} {} {x:.2}×", layer.name(), r.system.name),
                    _ => format!("{}: {}", layer.name(), no_row(s.id, layer)),
                })
                .collect();
            let _ = writeln!(w, "     per layer: {} the best peer", layers.join(" / "));
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

    if !results.is_empty() || !lat.is_empty() {
        let _ = writeln!(w, "\n-- against the floors --");
    }
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
    if let Some(res) = results.iter().find(|r| r.scenario.id == "spsc_batch") {
        let mut parts: Vec<String> = Layer::BOTH
            .into_iter()
            .filter_map(|layer| {
                res.layer(layer).map(|r| {
                    format!(
                        "{} {} {:.1} = {:.3}",
                        layer.name(),
                        r.system.name,
                        r.median(),
                        r.median() / fl.stream_mrps
                    )
                })
            })
            .collect();
        if let Some(p) = res.best_peer() {
            parts.push(format!(
                "best peer {} {:.1} = {:.3}",
                p.system.name,
                p.median(),
                p.median() / fl.stream_mrps
            ));
        }
        if !parts.is_empty() {
            let _ = writeln!(
                w,
                "spsc_batch against the streaming floor ({:.1} M rec/s, best run): {}",
                fl.stream_mrps,
                parts.join("; ")
            );
            let above = res
                .rows
                .iter()
                .any(|r| r.system.kind != Kind::Base && r.median() > fl.stream_mrps);
            if above {
                let _ = writeln!(
                    w,
                    "  (above 1.0: faster than the best run of the ideal one-block-at-a-time handoff; the queues hand over blocks the same way, so on this machine it is a reference level within its noise, not a hard bound)"
                );
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

    if let Some(j) = journal {
        journal_report(w, j, journal_files);
    }

    let _ = writeln!(
        w,
        "\n-- targets (benchmark results on this machine, not tests) --"
    );
    let tag = |t: &Target| match t.met {
        Some(true) => "MET ",
        Some(false) => "MISS",
        None => " -- ",
    };
    // A target judged on both layers: one line with both verdicts, then the
    // detail of each.
    let mut rest = targets;
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take_while(|t| t.name == first.name && t.layer.is_some())
            .count()
            .max(1);
        let (group, tail) = rest.split_at(n);
        rest = tail;
        if let [t] = group {
            let _ = writeln!(w, "  [{}] {}: {}", tag(t), t.name, t.detail);
            continue;
        }
        let summary: Vec<String> = group
            .iter()
            .map(|t| format!("{} {}", t.layer.map_or("", Layer::name), t.short()))
            .collect();
        let _ = writeln!(w, "  {}: {}", first.name, summary.join(" / "));
        for t in group {
            let _ = writeln!(
                w,
                "    [{}] {}: {}",
                tag(t),
                t.layer.map_or("", Layer::name),
                t.detail
            );
        }
    }
}

fn mb_runs(v: &[Written]) -> Vec<f64> {
    v.iter().map(|w| w.bytes_per_s() / 1e6).collect()
}

/// The journal section of the report.
fn journal_report(w: &mut String, j: &JournalResult, files: &[PathBuf]) {
    let c = &j.cfg;
    let fs = j
        .filesystem
        .as_ref()
        .map_or("filesystem unknown".to_owned(), |(t, dev, at)| {
            format!("{t} ({dev} on {at})")
        });
    let _ = writeln!(
        w,
        "\n-- journal: scratch directory {} on {fs}{}; {} round(s), best floor runs and median journal runs --",
        j.dir.display(),
        if j.in_memory() { ", IN MEMORY" } else { "" },
        c.rounds
    );
    if j.in_memory() {
        let _ = writeln!(
            w,
            "WARNING: {fs} keeps files in memory and its fdatasync reaches no disk: every figure below is memory's; rerun with --journal-dir on the data disk"
        );
    }
    let floor_line = |w: &mut String, what: &str, runs: &[Written], best: f64| {
        let mb = mb_runs(runs);
        let _ = writeln!(
            w,
            "{what:<44} {:8.1} MB/s (median {:.1}; runs {}; {} MiB per run)",
            best / 1e6,
            median(&mut mb.clone()),
            list(&mb, 1),
            runs.first().map_or(0, |r| r.bytes >> 20)
        );
    };
    floor_line(
        w,
        &format!("write floor: {} KiB write_all, no sync", c.buffer >> 10),
        &j.floor_write,
        j.floor_write_best(),
    );
    floor_line(
        w,
        &format!(
            "write floor: {} KiB write_all + fdatasync each",
            c.buffer >> 10
        ),
        &j.floor_sync,
        j.floor_sync_best(),
    );
    let runs: Vec<Written> = j.publish.iter().map(|r| r.written).collect();
    let mb = mb_runs(&runs);
    let _ = writeln!(
        w,
        "{:<44} {:8.1} MB/s (best {:.1}; runs {}) of segment bytes on disk",
        format!(
            "journaled send_batch_to({}), {}",
            c.batch,
            mode_name(telering::journal::FsyncPolicy::Interval(c.interval))
        ),
        j.publish_median() / 1e6,
        j.publish_best() / 1e6,
        list(&mb, 1)
    );
    let per_round = j.fraction_per_round();
    let _ = writeln!(
        w,
        "  = {:.3} of the write floor without sync (target ≥ {TARGET_JOURNAL_FLOOR}: {}; within each round: {}), {:.3} of the fdatasync floor",
        j.fraction_of_write_floor(),
        if j.fraction_of_write_floor() >= TARGET_JOURNAL_FLOOR {
            "MET"
        } else {
            "MISSED"
        },
        list(&per_round, 3),
        j.fraction_of_sync_floor()
    );
    let never: Vec<Written> = j.publish_never.iter().map(|r| r.written).collect();
    let _ = writeln!(
        w,
        "{:<44} {:8.1} MB/s (runs {}) = {:.3} of the write floor (no target: the journal without its syncs)",
        format!("journaled send_batch_to({}), never", c.batch),
        j.publish_never_median() / 1e6,
        list(&mb_runs(&never), 1),
        j.publish_never_median() / j.floor_write_best()
    );
    let on_cpu =
        |cpu: Option<f64>, secs: f64| cpu.map_or("?".to_owned(), |c| format!("{:.2}", c / secs));
    let runs = j
        .publish
        .iter()
        .map(|r| ("interval", r))
        .chain(j.publish_never.iter().map(|r| ("never", r)));
    for (i, (mode, r)) in runs.enumerate() {
        let s = &r.stats;
        let round = i % j.publish.len().max(1) + 1;
        let _ = writeln!(
            w,
            "  {mode} run {round}: {} records ({:.1} M rec/s) in {} journal batches ({:.0} records each), {} fdatasyncs; last send returned at {:.3} s, durable at {:.3} s; share of the time on a CPU: journaller {} (waiting for one {}), publisher {}",
            r.records,
            r.records as f64 / r.written.secs / 1e6,
            s.batches,
            r.records as f64 / s.batches.max(1) as f64,
            s.syncs,
            r.publish_secs,
            r.written.secs,
            on_cpu(r.journaller_cpu_s, r.written.secs),
            on_cpu(r.journaller_runqueue_s, r.written.secs),
            on_cpu(r.producer_cpu_s, r.written.secs)
        );
    }
    let _ = writeln!(
        w,
        "durable latency, us: one record at a time, at most one per {} us (ping style: send_to, then spin/yield until durable() covers it; the next when it is due; nothing queues): what a PUBACK waits for",
        c.pace.as_micros()
    );
    let _ = writeln!(
        w,
        "  {:<15} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>13}",
        "fsync", "samples", "p50", "p99", "p99.9", "max", "mean", "syncs/record"
    );
    let us = |ns: u64| ns as f64 / 1e3;
    for m in &j.latency {
        let _ = writeln!(
            w,
            "  {:<15} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>13.3}{}",
            mode_name(m.mode),
            m.hist.len(),
            us(m.at(50.0)),
            us(m.at(99.0)),
            us(m.at(99.9)),
            us(m.hist.max()),
            m.hist.mean() / 1e3,
            m.syncs as f64 / m.records.max(1) as f64,
            if m.cut_short > 0 {
                format!(
                    "  ({} round(s) stopped at the {:.1} s budget)",
                    m.cut_short,
                    c.latency_budget.as_secs_f64()
                )
            } else {
                String::new()
            }
        );
    }
    if let Some(dir) = files.first().and_then(|f| f.parent()) {
        let _ = writeln!(
            w,
            "  percentile distributions (.hgrm, values in ns): {}/journal-durable-*.hgrm ({} files)",
            dir.display(),
            files.len()
        );
    }
}

/// The journal section as JSON (the `journal` key).
pub(crate) fn journal_json(j: &JournalResult, files: &[PathBuf]) -> Value {
    let c = &j.cfg;
    let mb = |v: &[Written]| {
        mb_runs(v)
            .into_iter()
            .map(|x| round(x, 1))
            .collect::<Vec<_>>()
    };
    let runs: Vec<Written> = j.publish.iter().map(|r| r.written).collect();
    let mut modes = Map::new();
    for m in &j.latency {
        modes.insert(
            mode_name(m.mode),
            json!({
                "p50": m.at(50.0),
                "p99": m.at(99.0),
                "p99.9": m.at(99.9),
                "max": m.hist.max(),
                "mean": round(m.hist.mean(), 1),
                "samples": m.hist.len(),
                "records": m.records,
                "fdatasyncs": m.syncs,
                "rounds_cut_short_by_budget": m.cut_short,
            }),
        );
    }
    json!({
        "dir": j.dir.display().to_string(),
        "filesystem": j.filesystem.as_ref().map(|(t, dev, at)| json!({
            "type": t, "device": dev, "mount": at,
        })),
        "in_memory_filesystem": j.in_memory(),
        "rounds": c.rounds,
        "bytes_per_run": c.bytes,
        "write_bytes": c.buffer,
        "method": "floors: best run; journal: median run; each measurement in a fresh directory",
        "write_floor_mb_per_s": round(j.floor_write_best() / 1e6, 1),
        "write_floor_runs_mb_per_s": mb(&j.floor_write),
        "fdatasync_floor_mb_per_s": round(j.floor_sync_best() / 1e6, 1),
        "fdatasync_floor_runs_mb_per_s": mb(&j.floor_sync),
        "publish": {
            "api": format!("Producer::send_batch_to({}), 1 partition, {} slots, Block", c.batch, CAPACITY),
            "fsync": mode_name(telering::journal::FsyncPolicy::Interval(c.interval)),
            "measured": "first send until durable() covers the last record; segment bytes on disk",
            "mb_per_s": round(j.publish_median() / 1e6, 1),
            "best_mb_per_s": round(j.publish_best() / 1e6, 1),
            "runs_mb_per_s": mb(&runs),
            "records_per_run": j.publish.iter().map(|r| r.records).collect::<Vec<_>>(),
            "journal_batches_per_run": j.publish.iter().map(|r| r.stats.batches).collect::<Vec<_>>(),
            "fdatasyncs_per_run": j.publish.iter().map(|r| r.stats.syncs).collect::<Vec<_>>(),
            "journaller_cpu_share_per_run": j.publish.iter().map(|r| r.journaller_cpu_s.map(|c| round(c / r.written.secs, 3))).collect::<Vec<_>>(),
            "journaller_runqueue_share_per_run": j.publish.iter().map(|r| r.journaller_runqueue_s.map(|c| round(c / r.written.secs, 3))).collect::<Vec<_>>(),
            "publisher_cpu_share_per_run": j.publish.iter().map(|r| r.producer_cpu_s.map(|c| round(c / r.written.secs, 3))).collect::<Vec<_>>(),
            "fraction_of_write_floor": round(j.fraction_of_write_floor(), 4),
            "fraction_of_write_floor_per_round": j.fraction_per_round().iter().map(|x| round(*x, 4)).collect::<Vec<_>>(),
            "fraction_of_fdatasync_floor": round(j.fraction_of_sync_floor(), 4),
            "never_mb_per_s": round(j.publish_never_median() / 1e6, 1),
            "never_runs_mb_per_s": mb(&j.publish_never.iter().map(|r| r.written).collect::<Vec<_>>()),
            "never_fraction_of_write_floor": round(j.publish_never_median() / j.floor_write_best(), 4),
            "target_fraction_of_write_floor": TARGET_JOURNAL_FLOOR,
            "met": j.fraction_of_write_floor() >= TARGET_JOURNAL_FLOOR,
        },
        "durable_latency": {
            "method": format!("one record at a time (ping style), at most one per {} us: from before send_to until durable() covers it", c.pace.as_micros()),
            "pace_us": c.pace.as_micros() as u64,
            "unit": "ns",
            "modes": modes,
        },
        "files": files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    })
}

fn list(v: &[f64], decimals: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.decimals$}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn round(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn to_json(
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
        let engine_ratio = res.layer_ratio(Layer::Engine).map(|r| round(r, 3));
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
                "ring": res.layer(Layer::Ring).map(|r| r.system.name),
                "ratio_ring_to_best_peer": res.layer_ratio(Layer::Ring).map(|r| round(r, 3)),
                "engine": res.layer(Layer::Engine).map(|r| r.system.name),
                "ratio_engine_to_best_peer": engine_ratio,
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
    if let Some(res) = results.iter().find(|r| r.scenario.id == "spsc_batch") {
        for layer in Layer::BOTH {
            if let Some(r) = res.layer(layer) {
                vs_floors.insert(
                    format!("spsc_batch_{}_fraction_of_stream", layer.name()),
                    json!(round(r.median() / fl.stream_mrps, 4)),
                );
            }
        }
        if let Some(p) = res.best_peer() {
            vs_floors.insert(
                "spsc_batch_best_peer_fraction_of_stream".into(),
                json!(round(p.median() / fl.stream_mrps, 4)),
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
            "stream_256_block_mrps": round(fl.stream_mrps, 2),
            "stream_256_block_median_mrps": round(fl.stream_median_mrps, 2),
            "stream_256_block_runs_at_start_mrps": fl.stream_runs.iter().map(|x| round(*x, 2)).collect::<Vec<_>>(),
            "stream_256_block_records_per_run_at_start": fl.stream_records,
            "stream_256_block_runs_beside_spsc_batch_mrps": fl.stream_beside.iter().map(|x| round(*x, 2)).collect::<Vec<_>>(),
            "stream_256_block_records_per_run_beside_spsc_batch": fl.stream_beside_records,
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
            "layer": t.layer.map(Layer::name),
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
