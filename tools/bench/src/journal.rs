//! The journal section: what a journaled topic costs on this machine's disk,
//! against the sequential-write floor of the same directory, in one run.
//!
//! In a scratch directory (made fresh in [`JournalBench::parent`], deleted
//! at the end; put it on the data disk) it measures, round after round so a
//! burst of noise from the shared machine spreads over all of them:
//!
//! - the **write floor**: `write_all` of [`JournalBench::buffer`]-byte
//!   buffers to a new file (opened for appending, as the journal's segments
//!   are), MB/s, once without any sync and once with one `fdatasync` per
//!   buffer (the journal's sync, `File::sync_data`);
//! - **journaled batched publish**: `Producer::send_batch_to` of
//!   [`JournalBench::batch`] `Reading`s into a one-partition journaled topic
//!   (64 Ki slots, `Block`) under `fsync = Interval(10 ms)`, timed from the
//!   first send until the partition's `durable()` offset covers the last
//!   record, in MB/s of segment bytes on disk (32 bytes per record, a
//!   24-byte header per journal batch, 32 per segment); the same under
//!   `Never` beside it, without a target, to show what the syncs cost;
//! - **durable latency** per fsync mode (`Always`, `Interval`, `Never`): one
//!   record at a time (ping style: the next is published once the previous
//!   is durable, so nothing queues), paced to at most one every
//!   [`JournalBench::pace`] so that a run spans many sync intervals and the
//!   journaller goes idle (parks) between records as at a moderate rate;
//!   from before `send_to` until `durable()` passes the record: what a
//!   PUBACK waits for. In HdrHistograms, ns.
//!
//! Each measurement runs in a directory of its own, removed before the
//! next, so no run reads back (recovers) or competes with an earlier one's
//! files. Engines are opened and their topic created untimed, and one batch
//! is made durable first, so the journaller has noticed the partition.

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::Backoff;
use hdrhistogram::Histogram;
use telering::journal::{FsyncPolicy, JournalConfig, JournalStats, LogShared};
use telering::{Engine, Reading, TopicConfig};

use crate::floors::median;
use crate::scenarios::{template, CAPACITY};

/// Topic of every journaled run.
const TOPIC: &str = "journal-bench";
/// Highest latency recorded, ns (a minute).
const HIGHEST_NS: u64 = 60_000_000_000;
/// Longest wait for `durable()` to cover what was sent before the run
/// counts as stalled (an error, not a slow figure).
const STALL: Duration = Duration::from_secs(60);

/// How the journal section runs.
#[derive(Debug, Clone)]
pub struct JournalBench {
    /// Where the scratch directory is made.
    pub parent: PathBuf,
    /// Rounds; every measurement runs once per round.
    pub rounds: u32,
    /// Bytes per throughput run (the floors and the journaled publish).
    pub bytes: u64,
    /// A throughput run stops writing (publishing) after this long.
    pub budget: Duration,
    /// Bytes per `write` of the floor.
    pub buffer: usize,
    /// Records per `send_batch_to`.
    pub batch: usize,
    /// The interval of the `Interval` fsync mode.
    pub interval: Duration,
    /// Latency samples per fsync mode (over all rounds).
    pub samples: u64,
    /// Unrecorded samples at the start of each latency run.
    pub warmup: u64,
    /// A latency run stops after this long (per mode and round), with fewer
    /// samples if the syncs are slow.
    pub latency_budget: Duration,
    /// Latency runs publish at most one record per this.
    pub pace: Duration,
}

impl JournalBench {
    /// The defaults: about 15 s on a disk that syncs in a millisecond or
    /// two; `quick` about 3 s.
    pub fn new(parent: PathBuf, quick: bool) -> Self {
        Self {
            parent,
            rounds: if quick { 1 } else { 3 },
            bytes: if quick { 64 << 20 } else { 256 << 20 },
            budget: Duration::from_secs_f64(if quick { 1.0 } else { 2.0 }),
            buffer: 1 << 20,
            batch: 256,
            interval: Duration::from_millis(10),
            samples: if quick { 300 } else { 3000 },
            warmup: if quick { 20 } else { 50 },
            latency_budget: Duration::from_secs_f64(if quick { 1.0 } else { 2.5 }),
            pace: Duration::from_micros(250),
        }
    }

    /// The fsync modes of the latency runs, in order.
    pub fn modes(&self) -> [FsyncPolicy; 3] {
        [
            FsyncPolicy::Always,
            FsyncPolicy::Interval(self.interval),
            FsyncPolicy::Never,
        ]
    }
}

/// Bytes written in some time.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// Bytes.
    pub bytes: u64,
    /// Seconds.
    pub secs: f64,
}

impl Written {
    /// Bytes per second.
    pub fn bytes_per_s(&self) -> f64 {
        if self.secs > 0.0 {
            self.bytes as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// One journaled batched-publish run.
#[derive(Debug, Clone, Copy)]
pub struct PublishRun {
    /// Segment bytes on disk at the end over the time from the first send
    /// until `durable()` covered the last record.
    pub written: Written,
    /// Records published.
    pub records: u64,
    /// Seconds until the last `send_batch_to` returned.
    pub publish_secs: f64,
    /// The journal's counters over the run (written, batches, syncs).
    pub stats: JournalStats,
    /// CPU time of the journaller thread over the run, s (Linux).
    pub journaller_cpu_s: Option<f64>,
    /// Time the journaller thread was runnable but waited for a CPU, s
    /// (Linux): other load took the cores.
    pub journaller_runqueue_s: Option<f64>,
    /// CPU time of the publishing thread over the run, s (Linux).
    pub producer_cpu_s: Option<f64>,
}

/// One fsync mode's durable latency, all rounds.
#[derive(Debug, Clone)]
pub struct ModeLatency {
    /// The mode.
    pub mode: FsyncPolicy,
    /// From before `send_to` until `durable()` passed the record, ns.
    pub hist: Histogram<u64>,
    /// `fdatasync` calls over the recorded and warm-up samples.
    pub syncs: u64,
    /// Records published (warm-up included).
    pub records: u64,
    /// Rounds that stopped at the time budget before their share of samples.
    pub cut_short: u32,
}

impl ModeLatency {
    /// Latency at percentile `p`, ns.
    pub fn at(&self, p: f64) -> u64 {
        self.hist.value_at_percentile(p)
    }
}

/// The name of a mode, as the configuration spells it.
pub fn mode_name(mode: FsyncPolicy) -> String {
    match mode {
        FsyncPolicy::Always => "always".to_owned(),
        FsyncPolicy::Interval(d) => format!("interval-{}ms", d.as_millis()),
        FsyncPolicy::Never => "never".to_owned(),
    }
}

/// Everything the section measured.
#[derive(Debug, Clone)]
pub struct JournalResult {
    /// The settings.
    pub cfg: JournalBench,
    /// The scratch directory (deleted by now).
    pub dir: PathBuf,
    /// Filesystem of the scratch directory: type, device, mount point
    /// (from /proc/self/mounts), if known.
    pub filesystem: Option<(String, String, String)>,
    /// The floor without sync, one per round.
    pub floor_write: Vec<Written>,
    /// The floor with one `fdatasync` per buffer, one per round.
    pub floor_sync: Vec<Written>,
    /// Journaled batched publish under `Interval`, one per round.
    pub publish: Vec<PublishRun>,
    /// The same under `Never` (no target: what the syncs cost).
    pub publish_never: Vec<PublishRun>,
    /// Durable latency per fsync mode.
    pub latency: Vec<ModeLatency>,
}

fn best(v: impl Iterator<Item = f64>) -> f64 {
    v.fold(0.0, f64::max)
}

impl JournalResult {
    /// The floor without sync, bytes/s: the best run (noise only slows a
    /// run down, as the other floors).
    pub fn floor_write_best(&self) -> f64 {
        best(self.floor_write.iter().map(Written::bytes_per_s))
    }

    /// The floor with an `fdatasync` per buffer, bytes/s, best run.
    pub fn floor_sync_best(&self) -> f64 {
        best(self.floor_sync.iter().map(Written::bytes_per_s))
    }

    /// Journaled batched publish, bytes/s, median run.
    pub fn publish_median(&self) -> f64 {
        median(
            &mut self
                .publish
                .iter()
                .map(|r| r.written.bytes_per_s())
                .collect::<Vec<_>>(),
        )
    }

    /// Journaled batched publish under `Never`, bytes/s, median run.
    pub fn publish_never_median(&self) -> f64 {
        median(
            &mut self
                .publish_never
                .iter()
                .map(|r| r.written.bytes_per_s())
                .collect::<Vec<_>>(),
        )
    }

    /// Journaled batched publish, bytes/s, best run.
    pub fn publish_best(&self) -> f64 {
        best(self.publish.iter().map(|r| r.written.bytes_per_s()))
    }

    /// The median journaled run over the best floor without sync (the
    /// conservative direction, as the tool compares with every floor).
    pub fn fraction_of_write_floor(&self) -> f64 {
        self.publish_median() / self.floor_write_best()
    }

    /// The same over the floor with syncs.
    pub fn fraction_of_sync_floor(&self) -> f64 {
        self.publish_median() / self.floor_sync_best()
    }

    /// Each round's journaled run over the same round's floor without sync.
    pub fn fraction_per_round(&self) -> Vec<f64> {
        self.publish
            .iter()
            .zip(&self.floor_write)
            .map(|(j, f)| j.written.bytes_per_s() / f.bytes_per_s())
            .collect()
    }

    /// Whether the scratch directory was on a filesystem where `fdatasync`
    /// reaches no disk (tmpfs, ramfs): every figure is then memory's.
    pub fn in_memory(&self) -> bool {
        self.filesystem
            .as_ref()
            .is_some_and(|(t, _, _)| matches!(t.as_str(), "tmpfs" | "ramfs"))
    }
}

/// A directory removed (with everything in it) when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(parent: &Path, name: &str) -> io::Result<Self> {
        std::fs::create_dir_all(parent)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = parent.join(format!("{name}-{}-{nanos:09}", std::process::id()));
        std::fs::create_dir(&dir)?;
        Ok(Self(dir))
    }

    fn sub(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!(
                    "warning: could not remove the journal scratch directory {}: {e}",
                    self.0.display()
                );
            }
        }
    }
}

/// Runs the section. `progress` gets a line per measurement.
pub fn run(cfg: &JournalBench, mut progress: impl FnMut(&str)) -> Result<JournalResult, String> {
    let scratch = Scratch::new(&cfg.parent, "telering-bench-journal").map_err(|e| {
        format!(
            "cannot make a scratch directory in {}: {e}",
            cfg.parent.display()
        )
    })?;
    let filesystem = filesystem_of(&scratch.0);
    let mut out = JournalResult {
        cfg: cfg.clone(),
        dir: scratch.0.clone(),
        filesystem,
        floor_write: Vec::new(),
        floor_sync: Vec::new(),
        publish: Vec::new(),
        publish_never: Vec::new(),
        latency: cfg
            .modes()
            .iter()
            .map(|&mode| ModeLatency {
                mode,
                hist: Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("histogram bounds"),
                syncs: 0,
                records: 0,
                cut_short: 0,
            })
            .collect(),
    };
    let mb = |w: &Written| w.bytes_per_s() / 1e6;
    let per_round = cfg.samples.div_ceil(u64::from(cfg.rounds.max(1))).max(1);
    for round in 0..cfg.rounds.max(1) {
        let tag = format!("round {}/{}", round + 1, cfg.rounds.max(1));
        let path = scratch.sub(&format!("floor-{round}.bin"));
        let w = write_floor(&path, cfg, false).map_err(|e| format!("write floor: {e}"))?;
        progress(&format!(
            "{tag} write floor, no sync        {:8.1} MB/s",
            mb(&w)
        ));
        out.floor_write.push(w);
        let w = write_floor(&path, cfg, true).map_err(|e| format!("fdatasync floor: {e}"))?;
        progress(&format!(
            "{tag} write floor, fdatasync/MiB  {:8.1} MB/s",
            mb(&w)
        ));
        out.floor_sync.push(w);
        for fsync in [FsyncPolicy::Interval(cfg.interval), FsyncPolicy::Never] {
            let dir = scratch.sub(&format!("publish-{}-{round}", mode_name(fsync)));
            let r = publish_run(&dir, cfg, fsync)?;
            remove(&dir);
            progress(&format!(
                "{tag} journaled send_batch_to({}), {:<13} {:8.1} MB/s ({} records, {} syncs)",
                cfg.batch,
                mode_name(fsync),
                mb(&r.written),
                r.records,
                r.stats.syncs
            ));
            match fsync {
                FsyncPolicy::Never => out.publish_never.push(r),
                _ => out.publish.push(r),
            }
        }
        for m in out.latency.iter_mut() {
            let dir = scratch.sub(&format!("latency-{}-{round}", mode_name(m.mode)));
            let n = latency_run(&dir, cfg, m, per_round)?;
            remove(&dir);
            progress(&format!(
                "{tag} durable latency {:<15} {n} samples, p50 {:.1} us so far",
                mode_name(m.mode),
                m.at(50.0) as f64 / 1e3
            ));
        }
    }
    Ok(out)
}

fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// `write_all` of `cfg.buffer`-byte buffers to a new file at `path` until
/// `cfg.bytes` (or `cfg.budget`), with an `fdatasync` after each if `sync`.
/// The file is removed afterwards.
fn write_floor(path: &Path, cfg: &JournalBench, sync: bool) -> io::Result<Written> {
    let mut f = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(path)?;
    // Not zeros, in case a filesystem treats those specially.
    let buf: Vec<u8> = (0..cfg.buffer).map(|i| (i * 31 % 251) as u8).collect();
    let start = Instant::now();
    let mut bytes = 0u64;
    let result = (|| {
        while bytes < cfg.bytes {
            f.write_all(&buf)?;
            if sync {
                f.sync_data()?;
            }
            bytes += buf.len() as u64;
            if start.elapsed() >= cfg.budget {
                break;
            }
        }
        Ok::<_, io::Error>(())
    })();
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(path);
    result?;
    Ok(Written { bytes, secs })
}

/// A journaled engine in `dir` with one one-partition topic, and its log.
fn open(dir: &Path, fsync: FsyncPolicy) -> Result<(Engine<Reading>, Arc<LogShared>), String> {
    let engine: Engine<Reading> = Engine::with_journal(JournalConfig::new(dir).fsync(fsync))
        .map_err(|e| format!("journal in {}: {e}", dir.display()))?;
    engine
        .create_topic(TOPIC, TopicConfig::new(1, CAPACITY).journaled(true))
        .map_err(|e| format!("journaled topic: {e}"))?;
    let log = engine
        .journal_logs(TOPIC)
        .map_err(|e| format!("journal logs: {e}"))?
        .and_then(|v| v.into_iter().next())
        .ok_or("the journaled topic has no log")?;
    Ok((engine, log))
}

/// Waits (spin, then yield) until `log.durable()` reaches `want`.
fn wait_durable(log: &LogShared, want: u64, since: Instant) -> Result<(), String> {
    let backoff = Backoff::new();
    while log.durable() < want {
        backoff.snooze();
        if backoff.is_completed() && since.elapsed() > STALL {
            return Err(format!(
                "the journal stalled: durable {} (written {}) of {want} after {} s",
                log.durable(),
                log.written(),
                STALL.as_secs()
            ));
        }
    }
    Ok(())
}

fn record(tmpl: &Reading, i: u64) -> Reading {
    Reading { ts_us: i, ..*tmpl }
}

/// Bytes of the `.seg` files in `dir`.
fn segment_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// One journaled batched-publish run in `dir`.
fn publish_run(dir: &Path, cfg: &JournalBench, fsync: FsyncPolicy) -> Result<PublishRun, String> {
    let (engine, log) = open(dir, fsync)?;
    let mut producer = engine
        .producer(TOPIC)
        .map_err(|e| format!("producer: {e}"))?;
    let tmpl = template();
    let batch = cfg.batch.max(1);
    let mut buf = vec![tmpl; batch];
    // Untimed: one batch made durable, so the journaller has taken the
    // partition (it looks for new ones between passes).
    producer
        .send_batch_to(0, &buf)
        .map_err(|e| format!("send_batch_to: {e}"))?;
    wait_durable(&log, batch as u64, Instant::now())?;
    let base = log.durable();
    let stats0 = engine.journal_stats().unwrap_or_default();
    let seg0 = segment_bytes(log.dir());
    let target = cfg.bytes / std::mem::size_of::<Reading>() as u64;
    let cpu0 = (journaller_cpu_s(), own_cpu_s());
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < target {
        let k = (target - sent).min(batch as u64) as usize;
        for (j, slot) in buf[..k].iter_mut().enumerate() {
            *slot = record(&tmpl, sent + j as u64);
        }
        producer
            .send_batch_to(0, &buf[..k])
            .map_err(|e| format!("send_batch_to: {e}"))?;
        sent += k as u64;
        if sent % (64 * batch as u64) == 0 && start.elapsed() >= cfg.budget {
            break;
        }
    }
    let publish_secs = start.elapsed().as_secs_f64();
    wait_durable(&log, base + sent, start)?;
    let secs = start.elapsed().as_secs_f64();
    let cpu1 = (journaller_cpu_s(), own_cpu_s());
    let stats1 = engine.journal_stats().unwrap_or_default();
    let bytes = segment_bytes(log.dir()).saturating_sub(seg0);
    drop(producer);
    engine.close();
    Ok(PublishRun {
        written: Written { bytes, secs },
        records: sent,
        publish_secs,
        stats: JournalStats {
            written: stats1.written - stats0.written,
            batches: stats1.batches - stats0.batches,
            syncs: stats1.syncs - stats0.syncs,
            ..stats1
        },
        journaller_cpu_s: cpu0.0.zip(cpu1.0).map(|(a, b)| b.0 - a.0),
        journaller_runqueue_s: cpu0.0.zip(cpu1.0).map(|(a, b)| b.1 - a.1),
        producer_cpu_s: cpu0.1.zip(cpu1.1).map(|(a, b)| b.0 - a.0),
    })
}

/// Up to `samples` durable-latency samples of `m.mode` in `dir`, into `m`
/// (after `cfg.warmup` unrecorded ones). Returns how many were recorded.
fn latency_run(
    dir: &Path,
    cfg: &JournalBench,
    m: &mut ModeLatency,
    samples: u64,
) -> Result<u64, String> {
    let (engine, log) = open(dir, m.mode)?;
    let mut producer = engine
        .producer(TOPIC)
        .map_err(|e| format!("producer: {e}"))?;
    let tmpl = template();
    let first = producer
        .send_to(0, record(&tmpl, 0))
        .map_err(|e| format!("send_to: {e}"))?;
    wait_durable(&log, first.offset + 1, Instant::now())?;
    let syncs0 = engine.journal_stats().unwrap_or_default().syncs;
    let start = Instant::now();
    let mut recorded = 0u64;
    let mut i = 0u64;
    let mut due = Instant::now();
    while recorded < samples {
        i += 1;
        // Paced: at most one record per `cfg.pace` (a slower sync only
        // delays the next).
        due += cfg.pace;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else {
            due = now;
        }
        let t0 = Instant::now();
        let sent = producer
            .send_to(0, record(&tmpl, i))
            .map_err(|e| format!("send_to: {e}"))?;
        wait_durable(&log, sent.offset + 1, t0)?;
        let ns = t0.elapsed().as_nanos() as u64;
        if i > cfg.warmup {
            m.hist.saturating_record(ns.max(1));
            recorded += 1;
        }
        if start.elapsed() >= cfg.latency_budget && recorded > 0 {
            if recorded < samples {
                m.cut_short += 1;
            }
            break;
        }
    }
    m.syncs += engine.journal_stats().unwrap_or_default().syncs - syncs0;
    m.records += i;
    drop(producer);
    engine.close();
    Ok(recorded)
}

/// Seconds on a CPU and seconds runnable waiting for one, from a
/// `schedstat` file (its first two fields, ns).
fn schedstat_s(path: &Path) -> Option<(f64, f64)> {
    let s = std::fs::read_to_string(path).ok()?;
    let mut f = s.split_whitespace().map(|x| x.parse::<u64>().ok());
    Some((f.next()?? as f64 / 1e9, f.next()?? as f64 / 1e9))
}

/// [`schedstat_s`] of the journaller thread(s) of this process: the
/// threads named `telering-journal` (cut to 15 bytes by the kernel).
fn journaller_cpu_s() -> Option<(f64, f64)> {
    let mut total: Option<(f64, f64)> = None;
    for e in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with("telering-journa") {
            let (cpu, wait) = schedstat_s(&e.path().join("schedstat"))?;
            let t = total.get_or_insert((0.0, 0.0));
            t.0 += cpu;
            t.1 += wait;
        }
    }
    total
}

/// [`schedstat_s`] of the calling thread.
fn own_cpu_s() -> Option<(f64, f64)> {
    schedstat_s(Path::new("/proc/thread-self/schedstat"))
}

/// Type, device and mount point of the filesystem holding `path`: the
/// longest mount point of /proc/self/mounts that is a prefix of it.
pub fn filesystem_of(path: &Path) -> Option<(String, String, String)> {
    let path = std::fs::canonicalize(path).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, at, kind) = (f.next()?, f.next()?, f.next()?);
            // Spaces and the like are octal escapes there.
            let at = at.replace("\\040", " ");
            path.starts_with(&at)
                .then(|| (kind.to_owned(), dev.to_owned(), at))
        })
        .max_by_key(|(_, _, at)| at.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny run works end to end and leaves no files (no timing checked).
    #[test]
    fn a_tiny_run_measures_everything_and_cleans_up() {
        let parent = std::env::temp_dir().join(format!(
            "telering-bench-journal-test-{}",
            std::process::id()
        ));
        let cfg = JournalBench {
            rounds: 2,
            bytes: 1 << 20,
            buffer: 64 << 10,
            samples: 20,
            warmup: 2,
            pace: Duration::from_micros(10),
            ..JournalBench::new(parent.clone(), true)
        };
        let r = run(&cfg, |_| {}).expect("journal section");
        assert_eq!(r.floor_write.len(), 2);
        assert_eq!(r.floor_sync.len(), 2);
        assert!(r.floor_write.iter().all(|w| w.bytes == 1 << 20));
        for p in r.publish.iter().chain(&r.publish_never) {
            assert_eq!(p.records, (1 << 20) / 32);
            assert_eq!(p.stats.written, p.records);
            // Records, one header per batch (no segment rolled).
            assert_eq!(p.written.bytes, p.records * 32 + p.stats.batches * 24);
        }
        for m in &r.latency {
            assert_eq!(m.hist.len(), 20, "{:?}", m.mode);
            assert!(m.hist.min() > 0);
        }
        assert_eq!(
            r.latency[0].syncs, r.latency[0].records,
            "always: a sync per record"
        );
        assert_eq!(r.latency[2].syncs, 0, "never: no sync");
        assert!(r.filesystem.is_some());
        assert!(!r.dir.exists(), "the scratch directory is deleted");
        let _ = std::fs::remove_dir(&parent);
    }
}
