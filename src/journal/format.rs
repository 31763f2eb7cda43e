//! The on-disk format of a partition's segments, and how a record type is
//! written into them ([`Persist`]).
//!
//! A segment is one file, `<base offset, 20 digits>.seg`, read with `mmap`
//! or `read`. All integers are little-endian.
//!
//! ```text
//! segment header (32 bytes)
//!   0  magic        b"TLRGJNL\0"
//!   8  version      u16  (FORMAT_VERSION)
//!  10  flags        u16  (0)
//!  12  record_size  u32  (Persist::SIZE)
//!  16  base_offset  u64  (offset of the segment's first record)
//!  24  record_kind  u32  (Persist::KIND)
//!  28  crc32c       u32  of bytes 0..28
//! batch, repeated (24-byte header, then the records back to back)
//!   0  base_offset  u64  (offset of the batch's first record)
//!   8  count        u32  (≥ 1)
//!  12  crc32c       u32  of bytes 0..12 and 16..end of the batch
//!  16  append_us    u64  (when the journal wrote it, µs since the epoch)
//!  24  count × record_size bytes
//! ```
//!
//! Batches follow each other with no gap, and each starts at the offset the
//! previous one ended at. The checksum is CRC32C (the `crc32c` crate, which
//! uses the SSE 4.2 instruction where there is one).

use std::fmt;

/// First bytes of every segment.
pub const MAGIC: [u8; 8] = *b"TLRGJNL\0";
/// The segment format this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of the segment header.
pub const SEGMENT_HEADER: usize = 32;
/// Bytes of a batch header.
pub const BATCH_HEADER: usize = 24;

/// A record type the journal can keep: a fixed-size encoding, so a batch
/// is its header plus `count × SIZE` bytes and an offset's place in a batch
/// is a multiplication.
pub trait Persist: Copy + Send + 'static {
    /// Encoded size in bytes.
    const SIZE: usize;
    /// A tag stored in every segment header: a segment written for another
    /// record type is refused instead of misread.
    const KIND: u32;
    /// Writes the record into `out` (exactly [`Persist::SIZE`] bytes).
    fn encode(&self, out: &mut [u8]);
    /// Reads a record back; `None` if the bytes cannot be one (the batch is
    /// then reported as corrupt).
    fn decode(bytes: &[u8]) -> Option<Self>;
}

/// A record type's encoding as plain function pointers, so code that is
/// generic over any `T: Copy` (the engine) can journal a type it knows to be
/// [`Persist`] only where the journal was opened.
pub struct Codec<T> {
    /// [`Persist::SIZE`].
    pub size: usize,
    /// [`Persist::KIND`].
    pub kind: u32,
    /// [`Persist::encode`].
    pub encode: fn(&T, &mut [u8]),
    /// [`Persist::decode`].
    pub decode: fn(&[u8]) -> Option<T>,
}

impl<T> Clone for Codec<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Codec<T> {}

impl<T> fmt::Debug for Codec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("size", &self.size)
            .field("kind", &self.kind)
            .finish()
    }
}

impl<T: Persist> Codec<T> {
    /// The codec of `T`.
    pub fn of() -> Self {
        Self {
            size: T::SIZE,
            kind: T::KIND,
            encode: T::encode,
            decode: T::decode,
        }
    }
}

impl Persist for u64 {
    const SIZE: usize = 8;
    const KIND: u32 = u32::from_le_bytes(*b"u64 ");
    fn encode(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_le_bytes());
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }
}

impl Persist for crate::Reading {
    const SIZE: usize = 32;
    const KIND: u32 = u32::from_le_bytes(*b"RDG1");
    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.ts_us.to_le_bytes());
        out[8..12].copy_from_slice(&self.temperature.to_le_bytes());
        out[12..16].copy_from_slice(&self.humidity.to_le_bytes());
        out[16..32].copy_from_slice(self.device.raw());
    }
    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != Self::SIZE {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some(Self {
            ts_us: u64::from_le_bytes(b[0..8].try_into().ok()?),
            temperature: f32::from_bits(u32_at(8)),
            humidity: f32::from_bits(u32_at(12)),
            device: crate::DeviceId::from_raw(b[16..32].try_into().ok()?)?,
        })
    }
}

/// A segment's header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version.
    pub version: u16,
    /// Bytes per record.
    pub record_size: u32,
    /// Offset of the first record.
    pub base_offset: u64,
    /// [`Persist::KIND`] of the records.
    pub record_kind: u32,
}

/// Why a segment header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Shorter than a header.
    Short,
    /// Not a telering segment, or its header checksum fails.
    NotASegment,
    /// Written by another format version.
    Version(u16),
    /// Written for another record type or size.
    RecordType {
        /// Size found.
        size: u32,
        /// Kind found.
        kind: u32,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short => f.write_str("shorter than a segment header"),
            Self::NotASegment => {
                f.write_str("not a telering segment (bad magic or header checksum)")
            }
            Self::Version(v) => write!(
                f,
                "segment format version {v}; this build reads version {FORMAT_VERSION}"
            ),
            Self::RecordType { size, kind } => write!(
                f,
                "segment holds another record type ({size}-byte records of kind {:?})",
                String::from_utf8_lossy(&kind.to_le_bytes())
            ),
        }
    }
}

impl SegmentHeader {
    /// The header of a new segment for records of `codec`.
    pub fn new<T>(codec: &Codec<T>, base_offset: u64) -> Self {
        Self {
            version: FORMAT_VERSION,
            record_size: codec.size as u32,
            base_offset,
            record_kind: codec.kind,
        }
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER] {
        let mut h = [0u8; SEGMENT_HEADER];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..10].copy_from_slice(&self.version.to_le_bytes());
        h[12..16].copy_from_slice(&self.record_size.to_le_bytes());
        h[16..24].copy_from_slice(&self.base_offset.to_le_bytes());
        h[24..28].copy_from_slice(&self.record_kind.to_le_bytes());
        let crc = crc32c::crc32c(&h[0..28]);
        h[28..32].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Reads a header and checks it belongs to records of `codec`.
    pub fn decode<T>(codec: &Codec<T>, b: &[u8]) -> Result<Self, HeaderError> {
        if b.len() < SEGMENT_HEADER {
            return Err(HeaderError::Short);
        }
        if b[0..8] != MAGIC {
            return Err(HeaderError::NotASegment);
        }
        // The version first: another version may lay its header out
        // differently.
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != FORMAT_VERSION {
            return Err(HeaderError::Version(version));
        }
        let crc = u32::from_le_bytes(b[28..32].try_into().expect("4 bytes"));
        if crc32c::crc32c(&b[0..28]) != crc {
            return Err(HeaderError::NotASegment);
        }
        let h = Self {
            version: u16::from_le_bytes([b[8], b[9]]),
            record_size: u32::from_le_bytes(b[12..16].try_into().expect("4 bytes")),
            base_offset: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
            record_kind: u32::from_le_bytes(b[24..28].try_into().expect("4 bytes")),
        };
        if h.record_size as usize != codec.size || h.record_kind != codec.kind {
            return Err(HeaderError::RecordType {
                size: h.record_size,
                kind: h.record_kind,
            });
        }
        Ok(h)
    }
}

/// A batch header, decoded (the checksum is checked by [`check_batch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Records in the batch.
    pub count: u32,
    /// When it was written, µs since the epoch.
    pub append_us: u64,
}

impl BatchHeader {
    /// Bytes of the whole batch with records of `record_size` bytes.
    pub fn len(&self, record_size: usize) -> usize {
        BATCH_HEADER + self.count as usize * record_size
    }

    /// Reads the header fields (not the checksum) of the batch at `b`.
    pub fn peek(b: &[u8]) -> Option<Self> {
        if b.len() < BATCH_HEADER {
            return None;
        }
        Some(Self {
            base_offset: u64::from_le_bytes(b[0..8].try_into().ok()?),
            count: u32::from_le_bytes(b[8..12].try_into().ok()?),
            append_us: u64::from_le_bytes(b[16..24].try_into().ok()?),
        })
    }
}

/// Starts a batch in `buf` (cleared first): the header with a zero
/// checksum, to be followed by the records and sealed by [`seal_batch`].
pub fn begin_batch(buf: &mut Vec<u8>, base_offset: u64, append_us: u64) {
    buf.clear();
    buf.extend_from_slice(&base_offset.to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes());
    buf.extend_from_slice(&append_us.to_le_bytes());
}

/// Writes the count and checksum of the batch that starts at `buf[from..]`.
pub fn seal_batch(buf: &mut [u8], from: usize, count: u32) {
    let b = &mut buf[from..];
    b[8..12].copy_from_slice(&count.to_le_bytes());
    let crc = batch_crc(b);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
}

fn batch_crc(b: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&b[0..12]), &b[16..])
}

/// How the bytes at a batch position look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchCheck {
    /// A whole batch with a good checksum.
    Good(BatchHeader),
    /// The bytes end before the batch does (a write cut short).
    Short,
    /// The batch is whole but its checksum fails, or its count is zero.
    Bad,
}

/// Checks the batch at the start of `b` (which runs to the end of the
/// segment's bytes).
pub fn check_batch(b: &[u8], record_size: usize) -> BatchCheck {
    let Some(h) = BatchHeader::peek(b) else {
        return BatchCheck::Short;
    };
    if h.count == 0 {
        return BatchCheck::Bad;
    }
    let len = h.len(record_size);
    if b.len() < len {
        return BatchCheck::Short;
    }
    let crc = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
    if batch_crc(&b[..len]) != crc {
        return BatchCheck::Bad;
    }
    BatchCheck::Good(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceId, Reading};

    #[test]
    fn reading_round_trips_and_headers_check_type_and_version() {
        let r = Reading::new(DeviceId::new("dev-ü-1").unwrap(), 1_700_000, 21.5, -3.25);
        let mut b = [0u8; 32];
        r.encode(&mut b);
        assert_eq!(Reading::decode(&b), Some(r));
        // A device id that is not UTF-8 cannot be a reading.
        b[16] = 0xff;
        assert_eq!(Reading::decode(&b), None);

        let c = Codec::<Reading>::of();
        let h = SegmentHeader::new(&c, 42).encode();
        assert_eq!(SegmentHeader::decode(&c, &h).unwrap().base_offset, 42);
        assert!(matches!(
            SegmentHeader::decode(&Codec::<u64>::of(), &h),
            Err(HeaderError::RecordType { size: 32, .. })
        ));
        let mut v2 = SegmentHeader::new(&c, 42);
        v2.version = 2;
        assert_eq!(
            SegmentHeader::decode(&c, &v2.encode()),
            Err(HeaderError::Version(2))
        );
        let mut bad = h;
        bad[17] ^= 1;
        assert_eq!(
            SegmentHeader::decode(&c, &bad),
            Err(HeaderError::NotASegment)
        );
        assert_eq!(SegmentHeader::decode(&c, &h[..10]), Err(HeaderError::Short));
    }

    #[test]
    fn batches_seal_and_every_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        begin_batch(&mut buf, 7, 99);
        for v in [1u64, 2, 3] {
            let at = buf.len();
            buf.resize(at + 8, 0);
            v.encode(&mut buf[at..]);
        }
        seal_batch(&mut buf, 0, 3);
        let good = check_batch(&buf, 8);
        assert_eq!(
            good,
            BatchCheck::Good(BatchHeader {
                base_offset: 7,
                count: 3,
                append_us: 99
            })
        );
        for i in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert_ne!(check_batch(&b, 8), good, "bit {i}");
        }
        assert_eq!(check_batch(&buf[..buf.len() - 1], 8), BatchCheck::Short);
        assert_eq!(check_batch(&buf[..10], 8), BatchCheck::Short);
    }
}
