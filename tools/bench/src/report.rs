//! The run's report: the tables for people (floors, throughput, against the
//! floors, latency, ping-pong, targets) and the same results as one JSON
//! object (`--json`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use telering::WaitStrategy;
use telering_bench::floors::{Floors, RING_BYTES};
use telering_bench::latency::{LatConfig, LatResult, LatSystem, PERCENTILES};
use telering_bench::pingpong::{self, PingResult};
use telering_bench::scenarios::{Kind, Pins, CAPACITY};

use crate::targets::{adjusted_p50, latency_disturbed, latency_of, memcpy_fraction, Target};
use crate::{Row, ScenarioResult, RECORD_BYTES};

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
