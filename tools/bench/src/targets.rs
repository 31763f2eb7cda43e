//! The performance targets and the verdicts on them, each judged on
//! telering's bare-ring row and on its engine-API row where the target is
//! about telering as a whole: throughput against the best peer in the SPSC
//! scenarios (and, batched, the engine against the ring and the ring against
//! rtrb's chunks), the ping-pong p50 against its two-atomic floor, and under
//! BusySpin the fixed-rate p99.9 against a fixed limit (the `TARGET_*`
//! constants); journaled batched publish against the write floor of its
//! directory. Also the readings of the results that the verdicts and the
//! report share.

use telering::WaitStrategy;
use telering_bench::floors::Floors;
use telering_bench::journal::{mode_name, JournalResult};
use telering_bench::latency::{LatResult, LatSystem};
use telering_bench::pingpong::{PingResult, PingSystem};
use telering_bench::scenarios;

use crate::{Layer, Row, ScenarioResult, RECORD_BYTES};

/// Throughput target: telering ≥ this × the best peer (SPSC single and
/// batch), for the ring and for the engine.
const TARGET_RATIO: f64 = 1.25;
/// Throughput target: SPSC batched through the engine ≥ this × the best peer.
const TARGET_ENGINE_BATCH_PEER: f64 = 1.0;
/// Throughput target: SPSC batched through the engine ≥ this × the bare ring.
const TARGET_ENGINE_BATCH_RING: f64 = 0.9;
/// Throughput target: the bare ring batched ≥ this × rtrb's chunk API.
const TARGET_RING_BATCH_RTRB: f64 = 1.1;
/// The peer row of [`TARGET_RING_BATCH_RTRB`] in `spsc_batch`
/// (`write_chunk_uninit` / `read_chunk`).
const RTRB_CHUNKS: &str = "rtrb";
/// Latency target: busy-spin p50 ≤ this × the core-to-core floor (judged on
/// the ping-pong against its two-atomic floor).
const TARGET_P50_FLOORS: f64 = 2.0;
/// Latency target: the ring's ping-pong p50 ≤ this × its two-atomic floor.
const TARGET_RING_PING_FLOOR: f64 = 1.1;
/// Latency target: the engine's ping-pong p50 ≤ this × its two-atomic floor.
const TARGET_ENGINE_PING_FLOOR: f64 = 1.25;
/// Latency target: busy-spin p99.9 below this, ns.
const TARGET_P999_NS: f64 = 1000.0;
/// Journal target: batched publish under `fsync = interval` ≥ this × the
/// write floor (no sync) of the same directory, in bytes per second.
pub(crate) const TARGET_JOURNAL_FLOOR: f64 = 0.7;

/// A target and how it went, for one of telering's layers.
pub(crate) struct Target {
    /// The target; the same for each layer it is judged on.
    pub(crate) name: String,
    /// Whose row it judges: the bare ring's or the engine's; `None` for a
    /// target about one thing only (the journal).
    pub(crate) layer: Option<Layer>,
    pub(crate) value: Option<f64>,
    pub(crate) unit: &'static str,
    pub(crate) met: Option<bool>,
    pub(crate) detail: String,
}

impl Target {
    fn unmeasured(name: &str, layer: Layer, unit: &'static str, detail: String) -> Self {
        Self {
            name: name.to_owned(),
            layer: Some(layer),
            value: None,
            unit,
            met: None,
            detail,
        }
    }

    /// The value with its unit and the verdict, in a few words
    /// (`1.07× best peer (MISSED)`).
    pub(crate) fn short(&self) -> String {
        let value = match self.value {
            Some(v) if self.unit.starts_with('×') => format!("{v:.2}{}", self.unit),
            Some(v) => format!("{v:.0} {}", self.unit),
            None => return "not measured".to_owned(),
        };
        match self.met {
            Some(true) => format!("{value} (MET)"),
            Some(false) => format!("{value} (MISSED)"),
            None => value,
        }
    }
}

pub(crate) fn latency_of(lat: &[LatResult], system: LatSystem) -> Option<&LatResult> {
    lat.iter().find(|r| r.system == system)
}

/// p50 with the harness taken out: the core-to-core floor plus what the
/// system adds over the `base` row (which already pays one cache-line
/// transfer, both clock reads and the producer's spin to the due time).
pub(crate) fn adjusted_p50(r: &LatResult, lat: &[LatResult], fl: &Floors) -> Option<f64> {
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
pub(crate) fn latency_disturbed(lat: &[LatResult]) -> bool {
    latency_of(lat, LatSystem::Base).is_some_and(|b| b.at(50.0) > DISTURBED_BASE_P50_NS)
}

/// The fixed-rate system of a layer under BusySpin.
fn busy_spin(layer: Layer) -> LatSystem {
    match layer {
        Layer::Ring => LatSystem::Ring(WaitStrategy::BusySpin),
        Layer::Engine => LatSystem::Engine(WaitStrategy::BusySpin),
    }
}

/// The ping-pong row of a layer: the lowest p50 over its floor of that
/// layer's systems (either slot layout).
pub(crate) fn ping_of(ping: &[PingResult], layer: Layer) -> Option<&PingResult> {
    ping.iter()
        .filter(|p| match layer {
            Layer::Ring => matches!(p.system, PingSystem::Ring(_)),
            Layer::Engine => matches!(p.system, PingSystem::Engine(_)),
        })
        .min_by(|a, b| a.p50_over_floor().total_cmp(&b.p50_over_floor()))
}

/// Why a scenario's result has no row of `layer`: the scenario has no such
/// system at all, or this run left it out (`--only`).
pub(crate) fn no_row(id: &str, layer: Layer) -> String {
    let has = scenarios::all()
        .iter()
        .find(|s| s.id == id)
        .is_some_and(|s| s.systems.iter().any(|x| x.kind == layer.kind()));
    if has {
        format!("no {} row in this run (left out by --only)", layer.name())
    } else {
        format!("{id} has no {} counterpart", layer.name())
    }
}

/// `row` ≥ `limit` × `other` on medians; `extra` is added to a miss.
fn ratio_verdict(
    name: &str,
    layer: Layer,
    unit: &'static str,
    limit: f64,
    row: &Row,
    other: &Row,
    extra: &str,
) -> Target {
    let x = row.median() / other.median();
    let met = x >= limit;
    let figures = format!(
        "{} {x:.2}× {} ({:.1} vs {:.1} M rec/s)",
        row.system.name,
        other.system.name,
        row.median(),
        other.median()
    );
    let detail = if met {
        format!(
            "{figures}: met, {:.0} % above the target",
            (x / limit - 1.0) * 100.0
        )
    } else {
        format!(
            "{figures}: missed by {:.0} % ({} needs {:.2}× its throughput){}",
            (1.0 - x / limit) * 100.0,
            row.system.name,
            limit / x,
            extra
        )
    };
    Target {
        name: name.to_owned(),
        layer: Some(layer),
        value: Some(x),
        unit,
        met: Some(met),
        detail,
    }
}

/// How far out of this machine's reach `limit` × `peer` is: a note when it
/// is above memcpy bandwidth or the ideal streaming transfer.
fn out_of_reach(limit: f64, peer: &Row, fl: &Floors) -> String {
    let mut over = Vec::new();
    let copy = limit * memcpy_fraction(peer.median(), fl);
    if copy > 1.0 {
        over.push(format!("{copy:.2}× this machine's memcpy bandwidth"));
    }
    let stream = limit * peer.median() / fl.stream_mrps;
    if stream > 1.0 {
        over.push(format!(
            "{stream:.2}× the ideal streaming transfer between these cores ({:.1} M rec/s)",
            fl.stream_mrps
        ));
    }
    if over.is_empty() {
        String::new()
    } else {
        format!(
            "; out of reach here: {limit}× {} would be {}",
            peer.system.name,
            over.join(" and ")
        )
    }
}

pub(crate) fn evaluate_targets(
    results: &[ScenarioResult],
    lat: &[LatResult],
    ping: &[PingResult],
    fl: &Floors,
) -> Vec<Target> {
    let mut targets = Vec::new();
    let scenario = |id: &str| results.iter().find(|r| r.scenario.id == id);
    let not_run = |id: &str| format!("{id} not measured in this run");

    // Each layer against the best peer.
    for id in ["spsc_single", "spsc_batch"] {
        let name = format!("{id}: telering ≥ {TARGET_RATIO}× the best peer");
        let unit = "× best peer";
        for layer in Layer::BOTH {
            let Some(res) = scenario(id) else {
                targets.push(Target::unmeasured(&name, layer, unit, not_run(id)));
                continue;
            };
            targets.push(match (res.layer(layer), res.best_peer()) {
                (Some(row), Some(peer)) => {
                    let extra = out_of_reach(TARGET_RATIO, peer, fl);
                    ratio_verdict(&name, layer, unit, TARGET_RATIO, row, peer, &extra)
                }
                (None, _) => Target::unmeasured(&name, layer, unit, no_row(id, layer)),
                (_, None) => {
                    Target::unmeasured(&name, layer, unit, "no peer row in this run".to_owned())
                }
            });
        }
    }

    // Batched: the engine against the best peer and against the ring, the
    // ring against rtrb's chunks.
    let batch = scenario("spsc_batch");
    let ring = batch.and_then(|r| r.layer(Layer::Ring));
    let engine = batch.and_then(|r| r.layer(Layer::Engine));
    // `row` ≥ `limit` × `other` for `layer`; `what` names `other` when it is missing.
    let mut relative = |name: String,
                        layer: Layer,
                        unit: &'static str,
                        limit: f64,
                        (row, other): (Option<&Row>, Option<&Row>),
                        what: &str| {
        targets.push(match (batch, row, other) {
            (None, ..) => Target::unmeasured(&name, layer, unit, not_run("spsc_batch")),
            (Some(_), Some(row), Some(other)) => {
                ratio_verdict(&name, layer, unit, limit, row, other, "")
            }
            (Some(_), None, _) => {
                Target::unmeasured(&name, layer, unit, no_row("spsc_batch", layer))
            }
            (Some(_), _, None) => Target::unmeasured(
                &name,
                layer,
                unit,
                format!("no {what} row in this run (left out by --only)"),
            ),
        });
    };
    relative(
        format!("spsc_batch: engine ≥ {TARGET_ENGINE_BATCH_PEER:.1}× the best peer"),
        Layer::Engine,
        "× best peer",
        TARGET_ENGINE_BATCH_PEER,
        (engine, batch.and_then(ScenarioResult::best_peer)),
        "peer",
    );
    relative(
        format!("spsc_batch: engine ≥ {TARGET_ENGINE_BATCH_RING}× the bare ring"),
        Layer::Engine,
        "× ring",
        TARGET_ENGINE_BATCH_RING,
        (engine, ring),
        "ring",
    );
    relative(
        format!("spsc_batch: ring ≥ {TARGET_RING_BATCH_RTRB}× rtrb's chunk API"),
        Layer::Ring,
        "× rtrb",
        TARGET_RING_BATCH_RTRB,
        (ring, batch.and_then(|r| r.row(RTRB_CHUNKS))),
        "rtrb",
    );

    // Ping-pong p50 against its two-atomic floor, each layer against the
    // common limit and against its own.
    let common =
        format!("one-way p50 under BusySpin ≤ {TARGET_P50_FLOORS}× the core-to-core floor");
    let own = format!(
        "ping-pong p50 ≤ {TARGET_RING_PING_FLOOR}× (ring) / {TARGET_ENGINE_PING_FLOOR}× (engine) its two-atomic floor"
    );
    for (name, limits) in [
        (&common, [TARGET_P50_FLOORS, TARGET_P50_FLOORS]),
        (&own, [TARGET_RING_PING_FLOOR, TARGET_ENGINE_PING_FLOOR]),
    ] {
        for (layer, limit) in Layer::BOTH.into_iter().zip(limits) {
            targets.push(ping_verdict(name, layer, limit, lat, ping, fl));
        }
    }

    // p99.9 at a fixed rate under BusySpin.
    let p999_name = format!("one-way p99.9 under BusySpin < {TARGET_P999_NS:.0} ns");
    for layer in Layer::BOTH {
        let Some(r) = latency_of(lat, busy_spin(layer)) else {
            targets.push(Target::unmeasured(
                &p999_name,
                layer,
                "ns",
                "latency not measured (--no-latency)".to_owned(),
            ));
            continue;
        };
        let base_tail = latency_of(lat, LatSystem::Base).map_or(String::new(), |b| {
            format!(
                " [the harness alone, base row: p99.9 {} ns — the machine's stalls, not the queue]",
                b.at(99.9)
            )
        });
        let p999 = r.at(99.9) as f64;
        let met = p999 < TARGET_P999_NS;
        targets.push(Target {
            name: p999_name.clone(),
            layer: Some(layer),
            value: Some(p999),
            unit: "ns",
            met: Some(met),
            detail: if met {
                format!(
                    "{} p99.9 {p999:.0} ns: met, {:.0} ns to spare",
                    r.system.name(),
                    TARGET_P999_NS - p999
                )
            } else {
                format!(
                    "{} p99.9 {p999:.0} ns: missed by {:.0} ns ({:.1}× the limit){base_tail}",
                    r.system.name(),
                    p999 - TARGET_P999_NS,
                    p999 / TARGET_P999_NS
                )
            },
        });
    }
    targets
}

/// A layer's ping-pong p50 ≤ `limit` × the floor measured between its
/// samples; the fixed-rate BusySpin p50 of the layer is shown alongside.
fn ping_verdict(
    name: &str,
    layer: Layer,
    limit: f64,
    lat: &[LatResult],
    ping: &[PingResult],
    fl: &Floors,
) -> Target {
    let unit = "× floor";
    // Judged on the ping-pong, which measures one-way latency the way the
    // floor is measured (round trip / 2); the fixed-rate p50 carries two
    // clock reads and is shown alongside.
    let fixed = latency_of(lat, busy_spin(layer)).map_or(String::new(), |r| {
        let adjusted = if latency_disturbed(lat) {
            " [latency runs disturbed by other load: the harness alone had a median in the µs; rerun]"
                .to_owned()
        } else {
            adjusted_p50(r, lat, fl).map_or(String::new(), |a| {
                format!(
                    " [harness taken out (floor + p50 − base p50): {a:.0} ns = {:.2}× the floor]",
                    a / fl.c2c_one_way_ns
                )
            })
        };
        format!(
            "; fixed-rate {} p50 {} ns with two clock reads per sample{adjusted}",
            r.system.name(),
            r.at(50.0)
        )
    });
    let Some(b) = ping_of(ping, layer) else {
        let why = if ping.is_empty() {
            "latency not measured (--no-latency)".to_owned()
        } else {
            format!("no {} ping-pong in this run", layer.name())
        };
        return Target::unmeasured(name, layer, unit, why);
    };
    // Each ping-pong system carries its own floor, measured between its
    // samples on the same threads (the hypervisor moves the vCPUs between
    // runs here; the start-of-run floor is shown too).
    let p50 = b.at(50.0) as f64;
    let floor = b.floor_p50() as f64;
    let x = p50 / floor;
    let max = limit * floor;
    let atomic = format!(
        " of two bare atomics ping-ponged between its samples ({:.2}× the single-line floor of {:.1} ns measured at the start)",
        p50 / fl.c2c_one_way_ns,
        fl.c2c_one_way_ns
    );
    let met = x <= limit;
    Target {
        name: name.to_owned(),
        layer: Some(layer),
        value: Some(x),
        unit,
        met: Some(met),
        detail: if met {
            format!(
                "{} ping-pong p50 {p50:.0} ns = {x:.2}× the {floor:.0} ns floor{atomic}: met, {:.0} ns to spare{fixed}",
                b.system.name(),
                max - p50
            )
        } else {
            format!(
                "{} ping-pong p50 {p50:.0} ns = {x:.2}× the {floor:.0} ns floor{atomic}: missed by {:.0} ns ({:.0} % over the {max:.0} ns limit){fixed}",
                b.system.name(),
                p50 - max,
                (p50 / max - 1.0) * 100.0
            )
        },
    }
}

/// telering's throughput as a fraction of memcpy bandwidth (records × 32 B).
pub(crate) fn memcpy_fraction(mrps: f64, fl: &Floors) -> f64 {
    mrps * 1e6 * RECORD_BYTES as f64 / fl.memcpy_bytes_per_s
}

/// The journal target: the median journaled batched-publish run (`fsync =
/// interval`) against the best write-floor run without sync, in the same
/// directory and the same run.
pub(crate) fn journal_target(r: Option<&JournalResult>, error: Option<&str>) -> Target {
    let name = format!(
        "journal: batched publish, fsync interval, ≥ {TARGET_JOURNAL_FLOOR}× the write floor (no sync) of its directory"
    );
    let Some(r) = r else {
        return Target {
            name,
            layer: None,
            value: None,
            unit: "× floor",
            met: None,
            detail: error.map_or("not measured in this run".to_owned(), |e| {
                format!("not measured: the journal section failed: {e}")
            }),
        };
    };
    let x = r.fraction_of_write_floor();
    let met = x >= TARGET_JOURNAL_FLOOR;
    let (j, f) = (r.publish_median() / 1e6, r.floor_write_best() / 1e6);
    let memory = if r.in_memory() {
        " [the directory is on tmpfs: no disk behind it, rerun with --journal-dir on the data disk]"
    } else {
        ""
    };
    let detail = format!(
        "{} {j:.0} MB/s (median run) vs write floor {f:.0} MB/s (best run) = {x:.2}×: {}; {:.2}× the fdatasync-per-MiB floor ({:.0} MB/s){memory}",
        mode_name(telering::journal::FsyncPolicy::Interval(r.cfg.interval)),
        if met {
            format!("MET, {:.0} % above the target", (x / TARGET_JOURNAL_FLOOR - 1.0) * 100.0)
        } else {
            format!("MISSED by {:.0} %", (1.0 - x / TARGET_JOURNAL_FLOOR) * 100.0)
        },
        r.fraction_of_sync_floor(),
        r.floor_sync_best() / 1e6
    );
    Target {
        name,
        layer: None,
        value: Some(x),
        unit: "× floor",
        met: Some(met),
        detail,
    }
}
