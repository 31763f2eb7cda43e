//! Reading a data directory from outside the engine that writes it, as
//! `kafka-console-consumer` does: `telering dump`.
//!
//! It takes no lock and changes nothing, so it can run beside a live
//! server. It reads each segment with `read`, not `mmap`: the live server
//! may cut a torn batch off the end of a file, which a map would turn
//! into a fault. It reads whole batches with good checksums; in a partition's
//! newest segment it stops at the first batch that is not whole yet (being
//! written, or a torn tail the next start will cut). Anywhere else a bad
//! batch is [`JournalError::Corrupt`].

use std::path::{Path, PathBuf};

use super::format::{
    check_batch, BatchCheck, Codec, Persist, SegmentHeader, BATCH_HEADER, SEGMENT_HEADER,
};
use super::segment::parse_segment_name;
use super::JournalError;

/// One record read back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dumped<T> {
    /// Partition.
    pub partition: u32,
    /// Offset in the partition.
    pub offset: u64,
    /// When the journal wrote it, µs since the epoch.
    pub journaled_us: u64,
    /// The record.
    pub value: T,
}

/// The partitions of `topic` found in the data directory `dir`, ascending.
pub fn partitions(dir: &Path, topic: &str) -> Result<Vec<u32>, JournalError> {
    let tdir = dir.join("topics").join(topic);
    if !crate::topic::is_valid_name(topic) || !tdir.is_dir() {
        let known = topics(dir)?;
        return Err(JournalError::Config(format!(
            "no journaled topic {topic:?} in {} (found: {})",
            dir.display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    }
    let entries = std::fs::read_dir(&tdir).map_err(|e| JournalError::io("list", &tdir, e))?;
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|e| JournalError::io("list", &tdir, e))?;
        if let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
            out.push(p);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The journaled topics found in the data directory `dir`, sorted.
pub fn topics(dir: &Path) -> Result<Vec<String>, JournalError> {
    let tdir = dir.join("topics");
    let entries = std::fs::read_dir(&tdir).map_err(|e| JournalError::io("list", &tdir, e))?;
    let mut out: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    out.sort();
    Ok(out)
}

/// Calls `f` on every record of `partition` of `topic` from offset `from`
/// on, in offset order; returns the offset after the last one read (`from`
/// if none was).
pub fn read_partition<T: Persist>(
    dir: &Path,
    topic: &str,
    partition: u32,
    from: u64,
    mut f: impl FnMut(Dumped<T>),
) -> Result<u64, JournalError> {
    let codec = Codec::<T>::of();
    let pdir = dir.join("topics").join(topic).join(partition.to_string());
    let mut segs: Vec<(u64, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(&pdir).map_err(|e| JournalError::io("list", &pdir, e))? {
        let e = e.map_err(|e| JournalError::io("list", &pdir, e))?;
        if let Some(b) = e.file_name().to_str().and_then(parse_segment_name) {
            segs.push((b, e.path()));
        }
    }
    segs.sort_unstable_by_key(|s| s.0);
    // Start at the segment holding `from`.
    let first = segs.partition_point(|s| s.0 <= from).saturating_sub(1);
    let mut next = from;
    for (i, (base, path)) in segs.iter().enumerate().skip(first) {
        let newest = i + 1 == segs.len();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            // Deleted by retention since the listing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(JournalError::io("read", path, e)),
        };
        let bytes: &[u8] = &bytes;
        if bytes.len() < SEGMENT_HEADER && newest {
            break;
        }
        SegmentHeader::decode(&codec, bytes).map_err(|e| JournalError::Incompatible {
            file: path.clone(),
            what: e.to_string(),
        })?;
        let mut pos = SEGMENT_HEADER;
        let mut at = *base;
        while pos < bytes.len() {
            let h = match check_batch(&bytes[pos..], codec.size) {
                BatchCheck::Good(h) if h.base_offset == at => h,
                _ if newest => return Ok(next),
                _ => {
                    return Err(JournalError::Corrupt {
                        file: path.clone(),
                        position: pos as u64,
                        offset: at,
                        what: "a batch with a bad checksum".into(),
                    })
                }
            };
            let end = at + u64::from(h.count);
            if end > next {
                let body = &bytes[pos + BATCH_HEADER..pos + h.len(codec.size)];
                for (k, c) in body.chunks_exact(codec.size).enumerate() {
                    let offset = at + k as u64;
                    if offset < next {
                        continue;
                    }
                    let value = T::decode(c).ok_or_else(|| JournalError::Corrupt {
                        file: path.clone(),
                        position: pos as u64,
                        offset,
                        what: "a record that does not decode".into(),
                    })?;
                    f(Dumped {
                        partition,
                        offset,
                        journaled_us: h.append_us,
                        value,
                    });
                    next = offset + 1;
                }
            }
            at = end;
            pos += h.len(codec.size);
        }
    }
    Ok(next)
}
