//! One segment file: scanning it at start (recovery), and reading records
//! back from it through `mmap`.
//!
//! # Recovery rules
//!
//! - Every segment but the newest must hold whole batches with good
//!   checksums, each starting where the previous ended; anything else is
//!   [`JournalError::Corrupt`], naming the file, the byte position and the
//!   offset expected there.
//! - In the newest segment, a batch cut short by the end of the file, or a
//!   bad batch followed by nothing but zero bytes (pages the file system
//!   extended but never filled, as after a power loss), is a torn tail: the
//!   file is truncated there and the records the torn batch claimed are
//!   reported. A bad batch followed by other data is corruption.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::format::{
    check_batch, BatchCheck, BatchHeader, Codec, SegmentHeader, BATCH_HEADER, SEGMENT_HEADER,
};
use super::JournalError;

/// The file name of the segment starting at `base`.
pub(crate) fn segment_name(base: u64) -> String {
    format!("{base:020}.seg")
}

/// The base offset in a segment file name, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Maps `file` read-only. `None` for an empty file (which cannot be mapped).
pub(crate) fn map(file: &File, path: &Path) -> Result<Option<memmap2::Mmap>, JournalError> {
    let len = file
        .metadata()
        .map_err(|e| JournalError::io("read the size of", path, e))?
        .len();
    if len == 0 {
        return Ok(None);
    }
    // The data directory is locked by this process (the `LOCK` file), so no
    // other telering process writes these files; this process only appends
    // to a segment, and truncates one only at recovery (before any map of
    // it exists) or past `written` after a failed write, where no reader
    // looks. Bytes below what a reader reads were written before the
    // journal published them and are never changed again. (`telering
    // dump`, from outside, reads with `read` instead.)
    // SAFETY: as above, nothing changes or removes the mapped bytes we read.
    let m = unsafe { memmap2::Mmap::map(file) }.map_err(|e| JournalError::io("map", path, e))?;
    Ok(Some(m))
}

/// What a segment holds, as found by [`scan`].
#[derive(Debug, Clone)]
pub(crate) struct Scanned {
    pub(crate) base: u64,
    /// One past the last record.
    pub(crate) end: u64,
    /// Bytes of whole batches (plus the header): where appending goes on.
    pub(crate) valid_len: u64,
    /// Bytes of the file as found.
    pub(crate) file_len: u64,
    /// `append_us` of the last batch (0 if none).
    pub(crate) last_append_us: u64,
    /// A torn tail found past `valid_len`: records it claimed.
    pub(crate) torn_records: u64,
}

/// Scans the segment at `path`, whose name says it starts at `base`.
/// `newest`: whether a torn tail is allowed (and reported) rather than an
/// error.
pub(crate) fn scan<T>(
    codec: &Codec<T>,
    path: &Path,
    base: u64,
    newest: bool,
) -> Result<Scanned, JournalError> {
    let file = File::open(path).map_err(|e| JournalError::io("open", path, e))?;
    let mapped = map(&file, path)?;
    let bytes: &[u8] = mapped.as_deref().unwrap_or(&[]);
    let corrupt = |pos: usize, offset: u64, what: &str| JournalError::Corrupt {
        file: path.to_path_buf(),
        position: pos as u64,
        offset,
        what: what.to_owned(),
    };
    if bytes.len() < SEGMENT_HEADER && newest {
        // Created, but the header never reached the disk: nothing in it.
        return Ok(Scanned {
            base,
            end: base,
            valid_len: 0,
            file_len: bytes.len() as u64,
            last_append_us: 0,
            torn_records: 0,
        });
    }
    let header = SegmentHeader::decode(codec, bytes).map_err(|e| JournalError::Incompatible {
        file: path.to_path_buf(),
        what: e.to_string(),
    })?;
    if header.base_offset != base {
        return Err(corrupt(
            0,
            base,
            &format!("header says base offset {}", header.base_offset),
        ));
    }
    let mut pos = SEGMENT_HEADER;
    let mut next = base;
    let mut last_append_us = 0;
    let mut torn_records = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        match check_batch(rest, codec.size) {
            BatchCheck::Good(h) if h.base_offset == next => {
                // Every record must decode, or readers would fail later.
                let body = &rest[BATCH_HEADER..h.len(codec.size)];
                if let Some(i) = body
                    .chunks_exact(codec.size)
                    .position(|c| (codec.decode)(c).is_none())
                {
                    return Err(corrupt(
                        pos,
                        next + i as u64,
                        "a record that does not decode",
                    ));
                }
                next += u64::from(h.count);
                last_append_us = h.append_us;
                pos += h.len(codec.size);
            }
            BatchCheck::Good(h) => {
                return Err(corrupt(
                    pos,
                    next,
                    &format!("batch starts at offset {}", h.base_offset),
                ))
            }
            check => {
                let claimed = BatchHeader::peek(rest);
                let after = claimed
                    .map(|h| pos + h.len(codec.size))
                    .filter(|&end| end <= bytes.len())
                    .unwrap_or(bytes.len());
                let torn = check == BatchCheck::Short
                    || bytes[after..].iter().all(|&b| b == 0)
                    || rest.iter().all(|&b| b == 0);
                if !newest || !torn {
                    return Err(corrupt(pos, next, "a batch with a bad checksum"));
                }
                torn_records = claimed
                    .filter(|h| h.base_offset == next)
                    .map_or(0, |h| u64::from(h.count));
                break;
            }
        }
    }
    Ok(Scanned {
        base,
        end: next,
        valid_len: pos as u64,
        file_len: bytes.len() as u64,
        last_append_us,
        torn_records,
    })
}

/// A reader's place in one segment: the map and the next batch to look at.
pub(crate) struct SegmentReader {
    pub(crate) base: u64,
    path: PathBuf,
    map: Option<memmap2::Mmap>,
    /// Byte position of the batch holding `batch_base`.
    pos: usize,
    batch_base: u64,
}

impl SegmentReader {
    pub(crate) fn open(dir: &Path, base: u64) -> Result<Self, JournalError> {
        let path = dir.join(segment_name(base));
        let mut r = Self {
            base,
            path,
            map: None,
            pos: SEGMENT_HEADER,
            batch_base: base,
        };
        r.remap()?;
        Ok(r)
    }

    fn remap(&mut self) -> Result<(), JournalError> {
        let file = File::open(&self.path).map_err(|e| JournalError::io("open", &self.path, e))?;
        self.map = map(&file, &self.path)?;
        Ok(())
    }

    /// Calls `f` on the records from `from` on, up to `max` of them and
    /// below `until` (what the journal has written), in this segment only.
    /// Returns how many it read; fewer than asked only at `until` or at the
    /// segment's end.
    pub(crate) fn read<T>(
        &mut self,
        codec: &Codec<T>,
        from: u64,
        max: usize,
        until: u64,
        mut f: impl FnMut(u64, T),
    ) -> Result<usize, JournalError> {
        if from < self.batch_base {
            self.pos = SEGMENT_HEADER;
            self.batch_base = self.base;
        }
        let mut read = 0;
        let mut at = from;
        let mut remapped = false;
        while read < max && at < until {
            let len = self.map.as_ref().map_or(0, |m| m.len());
            if self.pos + BATCH_HEADER > len {
                // The journal wrote more since the map was taken.
                self.remap()?;
                if self.pos + BATCH_HEADER > self.map.as_ref().map_or(0, |m| m.len()) {
                    break; // the segment ends here
                }
            }
            let bytes = self.map.as_deref().expect("mapped above");
            let corrupt = |what: &str| JournalError::Corrupt {
                file: self.path.clone(),
                position: self.pos as u64,
                offset: self.batch_base,
                what: what.to_owned(),
            };
            let h = match check_batch(&bytes[self.pos..], codec.size) {
                BatchCheck::Good(h) if h.base_offset == self.batch_base => h,
                // Below `until` the batch is whole on disk: a map taken
                // before it was written may just be too short, once.
                BatchCheck::Short if !remapped => {
                    self.remap()?;
                    remapped = true;
                    continue;
                }
                _ => return Err(corrupt("a batch with a bad checksum")),
            };
            let end = h.base_offset + u64::from(h.count);
            if at >= end {
                self.pos += h.len(codec.size);
                self.batch_base = end;
                continue;
            }
            let body = &bytes[self.pos + BATCH_HEADER..self.pos + h.len(codec.size)];
            let first = (at - h.base_offset) as usize;
            let n = ((end.min(until) - at) as usize).min(max - read);
            for (i, c) in body[first * codec.size..]
                .chunks_exact(codec.size)
                .take(n)
                .enumerate()
            {
                let v =
                    (codec.decode)(c).ok_or_else(|| corrupt("a record that does not decode"))?;
                f(at + i as u64, v);
            }
            read += n;
            at += n as u64;
            remapped = false;
        }
        Ok(read)
    }
}
