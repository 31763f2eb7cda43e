//! One partition's log: its segments in a directory, the append side the
//! journaller drives, and the shared view readers use.
//!
//! # Invariants
//!
//! - Only the journaller thread appends, rolls, syncs and deletes segments.
//! - `earliest <= durable <= written`, all only growing (`earliest` moves
//!   up when retention deletes a segment). Records `[earliest, written)` are
//!   whole in the files and in the page cache; `written` is stored with
//!   `Release` after the `write` that put them there, so a reader that loads
//!   it with `Acquire` may read them.
//! - The segment list holds the base of every retained segment, ascending;
//!   each segment ends where the next begins.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::format::{Codec, SegmentHeader, SEGMENT_HEADER};
use super::segment::{parse_segment_name, scan, segment_name, SegmentReader};
use super::JournalError;

/// What a partition's log looks like to readers.
#[derive(Debug)]
pub struct LogShared {
    dir: PathBuf,
    segments: Mutex<Vec<u64>>,
    earliest: AtomicU64,
    written: AtomicU64,
    durable: AtomicU64,
}

impl LogShared {
    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Oldest offset still retained.
    pub fn earliest(&self) -> u64 {
        self.earliest.load(Ordering::Acquire)
    }

    /// One past the last record written to the files (reaches the OS).
    pub fn written(&self) -> u64 {
        // Acquire: pairs with the Release store after the write, so the
        // caller may read the records below it from the files.
        self.written.load(Ordering::Acquire)
    }

    /// One past the last record kept as the fsync mode promises
    /// ([`super::FsyncPolicy`]): what an acknowledgement may cover.
    pub fn durable(&self) -> u64 {
        // Acquire: as `written`.
        self.durable.load(Ordering::Acquire)
    }

    /// Moves `durable` up to `end` (never down).
    pub(crate) fn set_durable(&self, end: u64) {
        // Release: a reader of `durable` sees `written` at least as far.
        self.durable.fetch_max(end, Ordering::Release);
    }

    fn segment_for(&self, offset: u64) -> Option<u64> {
        let segs = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        let i = segs.partition_point(|&b| b <= offset);
        (i > 0).then(|| segs[i - 1])
    }
}

/// Reads a partition's records back from its segments, from any retained
/// offset on, following the log as it grows.
pub struct LogReader {
    shared: Arc<LogShared>,
    seg: Option<SegmentReader>,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

impl LogReader {
    /// A reader of the log behind `shared`.
    pub fn new(shared: Arc<LogShared>) -> Self {
        Self { shared, seg: None }
    }

    /// The log's shared view.
    pub fn shared(&self) -> &Arc<LogShared> {
        &self.shared
    }

    /// Calls `f` on up to `max` records from `from` on, below `until` and
    /// below what is written. Returns how many; 0 when `from` is at the end
    /// or was deleted by retention (check [`LogShared::earliest`]).
    pub fn read<T>(
        &mut self,
        codec: &Codec<T>,
        from: u64,
        max: usize,
        until: u64,
        mut f: impl FnMut(u64, T),
    ) -> Result<usize, JournalError> {
        let until = until.min(self.shared.written());
        let mut read = 0;
        let mut at = from;
        while read < max && at < until && at >= self.shared.earliest() {
            let base = match self.shared.segment_for(at) {
                Some(b) => b,
                None => break,
            };
            if self.seg.as_ref().map(|s| s.base) != Some(base) {
                self.seg = Some(SegmentReader::open(&self.shared.dir, base)?);
            }
            let seg = self.seg.as_mut().expect("opened above");
            let n = seg.read(codec, at, max - read, until, &mut f)?;
            if n == 0 {
                // The segment ended: the next one starts at `at`.
                if self.shared.segment_for(at) == Some(base) {
                    break;
                }
                continue;
            }
            read += n;
            at += n as u64;
        }
        Ok(read)
    }
}

/// A closed (full) segment kept for retention.
#[derive(Debug, Clone, Copy)]
struct Closed {
    base: u64,
    bytes: u64,
    last_append_us: u64,
}

/// What recovery found in one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Records found (retained) at start.
    pub records: u64,
    /// Records dropped from a torn tail.
    pub truncated: u64,
    /// Bytes cut from a torn tail.
    pub truncated_bytes: u64,
}

/// The append side of one partition's log (journaller thread only).
pub(crate) struct PartitionLog {
    shared: Arc<LogShared>,
    record_size: usize,
    /// The header of this log's segments (its base offset set per segment).
    header: SegmentHeader,
    /// The active segment; shared with the syncer, which syncs it.
    file: Arc<File>,
    /// Whether new segments (and truncations) are synced: not with
    /// `FsyncPolicy::Never`.
    sync_files: bool,
    active_base: u64,
    active_len: u64,
    active_last_append_us: u64,
    next: u64,
    closed: VecDeque<Closed>,
    /// Bytes in all retained segments.
    pub(crate) bytes: u64,
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir`: scans every segment,
    /// truncates a torn tail of the newest and continues after its last
    /// whole batch.
    pub(crate) fn open<T>(
        codec: &Codec<T>,
        dir: &Path,
        sync_files: bool,
    ) -> Result<(Self, Recovered), JournalError> {
        std::fs::create_dir_all(dir).map_err(|e| JournalError::io("create", dir, e))?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| JournalError::io("list", dir, e))? {
            let entry = entry.map_err(|e| JournalError::io("list", dir, e))?;
            if let Some(b) = entry.file_name().to_str().and_then(parse_segment_name) {
                bases.push(b);
            }
        }
        bases.sort_unstable();
        let mut closed = VecDeque::new();
        let mut report = Recovered::default();
        let mut expect: Option<u64> = None;
        let mut last = None;
        for (i, &base) in bases.iter().enumerate() {
            let path = dir.join(segment_name(base));
            let newest = i + 1 == bases.len();
            let s = scan(codec, &path, base, newest)?;
            if let Some(e) = expect {
                if base != e {
                    return Err(JournalError::Corrupt {
                        file: path,
                        position: 0,
                        offset: e,
                        what: format!("the previous segment ends at offset {e}"),
                    });
                }
            }
            expect = Some(s.end);
            if newest {
                last = Some(s);
            } else {
                closed.push_back(Closed {
                    base,
                    bytes: s.file_len,
                    last_append_us: s.last_append_us,
                });
            }
        }
        let header = |base| SegmentHeader::new(codec, base).encode();
        let (file, active_base, active_len, last_append_us, next) = match last {
            Some(s) => {
                let path = dir.join(segment_name(s.base));
                let mut file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|e| JournalError::io("open", &path, e))?;
                if s.file_len > s.valid_len {
                    report.truncated = s.torn_records;
                    report.truncated_bytes = s.file_len - s.valid_len;
                    tracing::warn!(
                        file = %path.display(),
                        at = s.valid_len,
                        records = s.torn_records,
                        bytes = report.truncated_bytes,
                        "journal: truncating a torn tail"
                    );
                    file.set_len(s.valid_len)
                        .and_then(|()| file.sync_data())
                        .map_err(|e| JournalError::io("truncate", &path, e))?;
                }
                let mut len = s.valid_len;
                if len == 0 {
                    file.write_all(&header(s.base))
                        .and_then(|()| file.sync_data())
                        .map_err(|e| JournalError::io("write", &path, e))?;
                    len = SEGMENT_HEADER as u64;
                }
                use std::io::Seek;
                file.seek(std::io::SeekFrom::End(0))
                    .map_err(|e| JournalError::io("seek", &path, e))?;
                (file, s.base, len, s.last_append_us, s.end)
            }
            None => {
                let file = create_segment(dir, 0, &header(0), sync_files)?;
                (file, 0, SEGMENT_HEADER as u64, 0, 0)
            }
        };
        let earliest = closed.front().map_or(active_base, |c| c.base);
        report.records = next - earliest;
        let mut segments: Vec<u64> = closed.iter().map(|c| c.base).collect();
        segments.push(active_base);
        let bytes = closed.iter().map(|c| c.bytes).sum::<u64>() + active_len;
        let shared = Arc::new(LogShared {
            dir: dir.to_path_buf(),
            segments: Mutex::new(segments),
            earliest: AtomicU64::new(earliest),
            written: AtomicU64::new(next),
            durable: AtomicU64::new(next),
        });
        Ok((
            Self {
                shared,
                record_size: codec.size,
                header: SegmentHeader::new(codec, 0),
                file: Arc::new(file),
                sync_files,
                active_base,
                active_len,
                active_last_append_us: last_append_us,
                next,
                closed,
                bytes,
            },
            report,
        ))
    }

    pub(crate) fn shared(&self) -> &Arc<LogShared> {
        &self.shared
    }

    /// The offset the next record gets.
    pub(crate) fn next(&self) -> u64 {
        self.next
    }

    /// Appends one sealed batch of `count` records (`batch` holds the
    /// header and the records). On failure nothing of it stays in the file.
    pub(crate) fn append(
        &mut self,
        batch: &[u8],
        count: u64,
        append_us: u64,
    ) -> std::io::Result<()> {
        debug_assert_eq!(batch.len() as u64, 24 + count * self.record_size as u64);
        let mut file: &File = &self.file;
        if let Err(e) = file.write_all(batch) {
            // Leave no partial batch behind; if even that fails, recovery
            // finds a torn tail and cuts it.
            let _ = file.set_len(self.active_len);
            use std::io::Seek;
            let _ = file.seek(std::io::SeekFrom::End(0));
            return Err(e);
        }
        self.active_len += batch.len() as u64;
        self.bytes += batch.len() as u64;
        self.active_last_append_us = append_us;
        self.next += count;
        // Release: the records are in the file before a reader sees them
        // counted.
        self.shared.written.store(self.next, Ordering::Release);
        Ok(())
    }

    /// Marks what is written as durable (`Interval` and `Never`: written
    /// is what they promise).
    pub(crate) fn publish_durable(&self) {
        self.shared.set_durable(self.next);
    }

    /// The active segment, for the syncer.
    pub(crate) fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Starts a new segment once the active one has reached `max_bytes`.
    /// Returns the segment it closed (still to be synced, by the syncer).
    pub(crate) fn roll_if_full(
        &mut self,
        max_bytes: u64,
    ) -> Result<Option<Arc<File>>, JournalError> {
        if self.active_len < max_bytes || self.next == self.active_base {
            return Ok(None);
        }
        let dir = self.shared.dir.clone();
        let header = SegmentHeader {
            base_offset: self.next,
            ..self.header
        };
        let file = create_segment(&dir, self.next, &header.encode(), self.sync_files)?;
        self.closed.push_back(Closed {
            base: self.active_base,
            bytes: self.active_len,
            last_append_us: self.active_last_append_us,
        });
        let old = std::mem::replace(&mut self.file, Arc::new(file));
        self.active_base = self.next;
        self.active_len = SEGMENT_HEADER as u64;
        self.bytes += SEGMENT_HEADER as u64;
        self.shared
            .segments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.next);
        Ok(Some(old))
    }

    /// Deletes the oldest closed segments while the log holds more than
    /// `max_bytes`, or while their newest record is older than `min_us`.
    /// The active segment is never deleted. Returns the records deleted.
    /// `deleted` counts them before readers can see them gone.
    pub(crate) fn retain(
        &mut self,
        max_bytes: Option<u64>,
        min_us: Option<u64>,
        deleted_count: &AtomicU64,
    ) -> u64 {
        let mut deleted = 0;
        while let Some(c) = self.closed.front().copied() {
            let over = max_bytes.is_some_and(|m| self.bytes > m);
            let old = min_us.is_some_and(|m| c.last_append_us < m);
            if !over && !old {
                break;
            }
            let next_base = self.closed.get(1).map_or(self.active_base, |n| n.base);
            deleted_count.fetch_add(next_base - c.base, Ordering::Relaxed);
            // Readers stop seeing it before the file goes.
            self.shared.earliest.store(next_base, Ordering::Release);
            self.shared
                .segments
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|&b| b != c.base);
            let path = self.shared.dir.join(segment_name(c.base));
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), "journal: cannot delete a segment: {e}");
            }
            self.closed.pop_front();
            self.bytes -= c.bytes;
            deleted += next_base - c.base;
        }
        deleted
    }
}

fn create_segment(dir: &Path, base: u64, header: &[u8], sync: bool) -> Result<File, JournalError> {
    let path = dir.join(segment_name(base));
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| JournalError::io("create", &path, e))?;
    file.write_all(header)
        .and_then(|()| if sync { file.sync_data() } else { Ok(()) })
        .map_err(|e| JournalError::io("write", &path, e))?;
    if sync {
        sync_dir(dir)?;
    }
    Ok(file)
}

/// `fsync` of a directory, so a file created or renamed in it survives.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| JournalError::io("sync", dir, e))
}
