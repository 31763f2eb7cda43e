//! The journal: each journaled partition's records in append-only segment
//! files, so that an acknowledged record survives a crash, committed offsets
//! survive a restart, and a consumer can read further back than its ring.
//!
//! # Design (the LMAX journaller)
//!
//! The publish path does not change: the partition's one writer puts the
//! record in its ring, with no lock and no system call. A **journaller**
//! thread is one more gating reader on every journaled ring. It reads what
//! was published in place, encodes it into one batch per partition and pass
//! ([`format`]), appends the batch to the partition's active segment with one
//! `write`, and then moves its gate, so under `Block` the writer can never
//! overwrite a record before it is in the journal, and under `Reject` a
//! journal that cannot keep up refuses records instead of losing them.
//!
//! Each partition's log ([`LogShared`]) exposes two positions:
//! - `written`: records handed to the OS (they survive a crash of the
//!   process);
//! - `durable`: records kept as the [`FsyncPolicy`] promises. An
//!   acknowledgement (the MQTT endpoint's PUBACK) waits for this one. With
//!   `Always` it moves after the `fdatasync` that covers the record: records
//!   that arrive while one sync runs go into the next (group commit). With
//!   `Interval` and `Never` it moves with `written`.
//!
//! Every `fdatasync`, and the save of the committed offsets, runs on a
//! second thread, the **syncer** ([`syncer`]), so the journaller never waits
//! for the disk: under `Always` the syncer syncs what the journaller has
//! written so far and then moves `durable` (group commit, pipelined with the
//! next writes); under `Interval` it syncs once per interval.
//!
//! This design keeps the writer's path as it is and puts every system call
//! on two threads that batch naturally: the busier the ring, the larger
//! each `write` and the more records each sync covers. Its cost is one more
//! gate per ring, and a PUBACK that waits for the journaller's pass (and,
//! under `Always`, the sync). Between passes the journaller yields its
//! core, and while records keep coming a few at a time it waits
//! [`JournalConfig::linger`] so that the next batch is larger; a record
//! that arrives alone, and a pass that fills a whole batch, are not
//! delayed.
//!
//! # Data directory
//!
//! ```text
//! DIR/LOCK                          held (flock) while an engine has DIR open
//! DIR/offsets.json                  committed offsets of the cluster groups
//! DIR/topics/<topic>/<partition>/<base offset, 20 digits>.seg
//! ```
//!
//! At start each partition's segments are scanned ([`segment`]): a torn
//! tail is cut and reported, corruption elsewhere is an error naming the
//! file and position, and the ring continues at the offset after the last
//! whole batch. Segments roll at [`JournalConfig::segment_bytes`]; retention
//! deletes the oldest closed segments by size and by age.
//!
//! # Failures
//!
//! A write that fails (a full disk, or [`JournalConfig::max_bytes`]
//! reached) leaves no partial batch, is counted and logged, and is retried
//! every [`RETRY`]: the records stay in the ring, so the topic's policy
//! applies upstream (`Block` stops the writer, `Reject` refuses), and
//! nothing unwritten is ever acknowledged.

pub mod dump;
mod format;
mod journaller;
mod log;
mod offsets;
mod segment;
mod syncer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use format::{Codec, Persist, FORMAT_VERSION};
pub(crate) use journaller::{JournalPart, Journaller};
pub(crate) use log::PartitionLog;
pub use log::{LogReader, LogShared, Recovered};
pub use offsets::Commits;
pub(crate) use offsets::OffsetStore;
pub(crate) use syncer::{SyncWork, Syncer};

/// How long the journaller waits before it retries a failed write.
pub const RETRY: Duration = Duration::from_millis(100);

/// When the journal syncs its files, and so what an acknowledgement means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fdatasync` before a record counts as durable (group commit): it
    /// survives a power loss once acknowledged.
    Always,
    /// Durable once written to the OS; synced every interval. Survives a
    /// crash of the process; a power loss can lose up to one interval.
    Interval(Duration),
    /// Durable once written to the OS; never synced by telering (the OS
    /// writes back on its own). Survives a crash of the process only.
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        Self::Interval(Duration::from_millis(10))
    }
}

/// [`JournalConfig::linger`] by default. Measured in mqtt-bench on 2 cores
/// (QoS 1, 20 connections, about 230 000 msg/s): 1400–1600 journal batches
/// per 100 000 messages instead of 4857 with no wait, and the journaled
/// run at 0.86–0.93× the unjournaled one instead of 0.76–0.84×.
pub const DEFAULT_LINGER: Duration = Duration::from_micros(50);

/// Where and how an engine journals its journaled topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// The data directory (created if missing).
    pub dir: PathBuf,
    /// When files are synced.
    pub fsync: FsyncPolicy,
    /// A segment is closed and a new one started once it holds this many
    /// bytes.
    pub segment_bytes: u64,
    /// Retention by size: closed segments are deleted, oldest first, while
    /// a partition's log is larger.
    pub retention_bytes: Option<u64>,
    /// Retention by age: a closed segment is deleted once its newest record
    /// is older.
    pub retention: Option<Duration>,
    /// A cap on the bytes of all segments together: a write beyond it fails
    /// as a full disk would.
    pub max_bytes: Option<u64>,
    /// Most records in one batch (one `write`).
    pub batch_records: usize,
    /// While records keep coming, how long the journaller waits after a
    /// pass before the next, so that the next batch (one `write`, one
    /// advance of `durable`, one round of acknowledgements) is larger:
    /// taken only after a pass that followed another pass that wrote, and
    /// only when no partition filled a whole batch (then more is waiting
    /// anyway). A record written alone is never delayed. Zero: no wait.
    pub linger: Duration,
    /// How often committed offsets are saved while they change.
    pub offsets_interval: Duration,
    /// How long closing waits for records that cannot be written (a full
    /// disk) before it gives them up; they were never acknowledged.
    pub close_timeout: Duration,
}

impl JournalConfig {
    /// The defaults, in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            fsync: FsyncPolicy::default(),
            segment_bytes: 64 << 20,
            retention_bytes: None,
            retention: None,
            max_bytes: None,
            batch_records: 4096,
            linger: DEFAULT_LINGER,
            offsets_interval: Duration::from_millis(100),
            close_timeout: Duration::from_secs(10),
        }
    }

    /// Sets the fsync policy.
    pub fn fsync(mut self, fsync: FsyncPolicy) -> Self {
        self.fsync = fsync;
        self
    }

    /// Sets the segment size.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }
}

/// What went wrong with a journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file or directory could not be used.
    #[error("journal: cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Another engine (this process or another) has the directory open.
    #[error("journal: {} is in use by another telering (its LOCK is held); stop it or use another data dir", dir.display())]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// A segment is damaged before its end.
    #[error("journal: {} is corrupt at byte {position} (offset {offset}): {what}", file.display())]
    Corrupt {
        /// The segment.
        file: PathBuf,
        /// Byte position in it.
        position: u64,
        /// Offset expected there.
        offset: u64,
        /// What was found.
        what: String,
    },
    /// A file written by another version or for another record type.
    #[error("journal: {} cannot be read by this build: {what}", file.display())]
    Incompatible {
        /// The file.
        file: PathBuf,
        /// Why.
        what: String,
    },
    /// A bad setting.
    #[error("journal: {0}")]
    Config(String),
}

/// Two journal errors are equal when they say the same thing (an I/O error
/// cannot be compared otherwise); this lets [`crate::EngineError`] stay
/// comparable.
impl PartialEq for JournalError {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
            && self.to_string() == other.to_string()
    }
}
impl Eq for JournalError {}

impl JournalError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Counters of a journal, all exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Records found in the journal at start (all topics).
    pub recovered: u64,
    /// Records dropped from torn tails at start.
    pub truncated: u64,
    /// Records written since start.
    pub written: u64,
    /// Batches written since start.
    pub batches: u64,
    /// `fdatasync` calls on segments (by the syncer thread).
    pub syncs: u64,
    /// Writes or syncs that failed (each is retried).
    pub write_errors: u64,
    /// Records deleted by retention.
    pub deleted: u64,
    /// Records given up at close because they could not be written.
    pub abandoned: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) recovered: AtomicU64,
    pub(crate) truncated: AtomicU64,
    pub(crate) written: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) write_errors: AtomicU64,
    pub(crate) deleted: AtomicU64,
    pub(crate) abandoned: AtomicU64,
    /// Bytes in all segments (for [`JournalConfig::max_bytes`]).
    pub(crate) bytes: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> JournalStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        JournalStats {
            recovered: l(&self.recovered),
            truncated: l(&self.truncated),
            written: l(&self.written),
            batches: l(&self.batches),
            syncs: l(&self.syncs),
            write_errors: l(&self.write_errors),
            deleted: l(&self.deleted),
            abandoned: l(&self.abandoned),
        }
    }
}

/// A hook the journaller calls after a pass that made records durable.
pub type ProgressHook = Arc<dyn Fn() + Send + Sync>;

/// The open data directory of one engine.
pub(crate) struct Journal<T> {
    pub(crate) config: JournalConfig,
    pub(crate) codec: Codec<T>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) offsets: Arc<Mutex<OffsetStore>>,
    pub(crate) hooks: Arc<Mutex<Vec<ProgressHook>>>,
    pub(crate) inbox: Arc<Mutex<Vec<JournalPart<T>>>>,
    pub(crate) thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The directory's lock, released once the journaller has stopped.
    pub(crate) lock: Mutex<Option<File>>,
}

impl<T> std::fmt::Debug for Journal<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.config.dir)
            .finish_non_exhaustive()
    }
}

impl<T: Copy + Send + 'static> Journal<T> {
    /// Opens `config.dir`: creates it, takes its lock, reads the offsets.
    pub(crate) fn open(config: JournalConfig, codec: Codec<T>) -> Result<Self, JournalError> {
        if config.segment_bytes < 4096 {
            return Err(JournalError::Config(format!(
                "segment_bytes must be at least 4096 (got {})",
                config.segment_bytes
            )));
        }
        if config.batch_records == 0 {
            return Err(JournalError::Config(
                "batch_records must be at least 1".into(),
            ));
        }
        let dir = &config.dir;
        std::fs::create_dir_all(dir.join("topics"))
            .map_err(|e| JournalError::io("create", dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| JournalError::io("create", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JournalError::Locked { dir: dir.clone() })
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(JournalError::io("lock", &lock_path, e))
            }
        }
        let offsets = OffsetStore::open(dir)?;
        Ok(Self {
            config,
            codec,
            counters: Arc::new(Counters::default()),
            offsets: Arc::new(Mutex::new(offsets)),
            hooks: Arc::new(Mutex::new(Vec::new())),
            inbox: Arc::new(Mutex::new(Vec::new())),
            thread: Mutex::new(None),
            lock: Mutex::new(Some(lock)),
        })
    }

    /// The directory of one partition's segments.
    pub(crate) fn partition_dir(&self, topic: &str, partition: u32) -> PathBuf {
        self.config
            .dir
            .join("topics")
            .join(topic)
            .join(partition.to_string())
    }

    /// Opens (recovering) one partition's log.
    pub(crate) fn open_partition(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<(PartitionLog, Recovered), JournalError> {
        let (log, rec) = PartitionLog::open(
            &self.codec,
            &self.partition_dir(topic, partition),
            self.config.fsync != FsyncPolicy::Never,
        )?;
        Counters::add(&self.counters.recovered, rec.records);
        Counters::add(&self.counters.truncated, rec.truncated);
        Counters::add(&self.counters.bytes, log.bytes);
        Ok((log, rec))
    }
}
