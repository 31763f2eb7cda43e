//! The telemetry record: a compact `Copy` reading, and keys for partitioning.

use std::fmt;

/// Longest device id, in bytes.
pub const MAX_DEVICE_ID_LEN: usize = 16;

/// A device id stored inline: 1 to 16 bytes of UTF-8, no NUL.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId([u8; MAX_DEVICE_ID_LEN]);

/// Why a device id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceIdError {
    /// Empty id.
    #[error("device id is empty")]
    Empty,
    /// More than [`MAX_DEVICE_ID_LEN`] bytes.
    #[error("device id is {0} bytes long; the limit is {MAX_DEVICE_ID_LEN}")]
    TooLong(usize),
    /// Contains a NUL byte.
    #[error("device id contains a NUL byte")]
    Nul,
}

impl DeviceId {
    /// Checks and stores `id`.
    pub fn new(id: &str) -> Result<Self, DeviceIdError> {
        let b = id.as_bytes();
        if b.is_empty() {
            return Err(DeviceIdError::Empty);
        }
        if b.len() > MAX_DEVICE_ID_LEN {
            return Err(DeviceIdError::TooLong(b.len()));
        }
        if b.contains(&0) {
            return Err(DeviceIdError::Nul);
        }
        let mut buf = [0u8; MAX_DEVICE_ID_LEN];
        buf[..b.len()].copy_from_slice(b);
        Ok(Self(buf))
    }

    /// The stored bytes: the id, then NUL padding.
    pub fn raw(&self) -> &[u8; MAX_DEVICE_ID_LEN] {
        &self.0
    }

    /// An id from its stored bytes ([`DeviceId::raw`]); `None` unless they
    /// are a valid id followed by NUL padding only.
    pub fn from_raw(raw: [u8; MAX_DEVICE_ID_LEN]) -> Option<Self> {
        let len = raw
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(MAX_DEVICE_ID_LEN);
        if len == 0 || raw[len..].iter().any(|&b| b != 0) {
            return None;
        }
        std::str::from_utf8(&raw[..len]).ok()?;
        Some(Self(raw))
    }

    /// The id's bytes (without padding).
    pub fn as_bytes(&self) -> &[u8] {
        let len = self
            .0
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(MAX_DEVICE_ID_LEN);
        &self.0[..len]
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only built from `&str` whose bytes end on a char boundary.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One sensor reading: 32 bytes, `Copy`, no heap.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct Reading {
    /// Sensor timestamp, µs since the Unix epoch.
    pub ts_us: u64,
    /// Temperature, °C.
    pub temperature: f32,
    /// Relative humidity, %.
    pub humidity: f32,
    /// The device that measured it; also the partition key.
    pub device: DeviceId,
}

const _: () = assert!(std::mem::size_of::<Reading>() == 32);

impl Reading {
    /// A reading from `device` at `ts_us`.
    pub fn new(device: DeviceId, ts_us: u64, temperature: f32, humidity: f32) -> Self {
        Self {
            ts_us,
            temperature,
            humidity,
            device,
        }
    }
}

/// A record with a partition key (records with the same key stay in order).
pub trait Keyed {
    /// The key bytes hashed to pick a partition.
    fn key(&self) -> &[u8];
}

impl Keyed for Reading {
    fn key(&self) -> &[u8] {
        self.device.as_bytes()
    }
}

/// The partition of `key` among `partitions`: 64-bit FNV-1a followed by the
/// MurmurHash3 `fmix64` finaliser (FNV alone leaves the high bits poorly mixed
/// for short, similar ids), reduced by multiply-shift. Stable across runs,
/// versions and machines.
pub fn partition_for(key: &[u8], partitions: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    ((u128::from(h) * u128::from(partitions)) >> 64) as u32
}

/// Microseconds since the Unix epoch, now: the clock of [`Reading::ts_us`]
/// when a message carries no timestamp of its own.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_bounds() {
        assert_eq!(DeviceId::new(""), Err(DeviceIdError::Empty));
        assert_eq!(
            DeviceId::new("abcdefghijklmnopq"),
            Err(DeviceIdError::TooLong(17))
        );
        assert_eq!(DeviceId::new("a\0b"), Err(DeviceIdError::Nul));
        let id = DeviceId::new("ü-sensor-0123").unwrap();
        assert_eq!(id.as_str(), "ü-sensor-0123");
        assert_eq!(DeviceId::new("dev-1").unwrap().as_str(), "dev-1");
    }

    const PINNED: [u32; 4] = [13, 13, 8, 6];

    #[test]
    fn partitioning_is_stable_and_in_range() {
        // Pinned values: a change here would move every device's partition.
        let pinned: Vec<u32> = ["sensor-1", "sensor-2", "a", "device-123"]
            .iter()
            .map(|k| partition_for(k.as_bytes(), 16))
            .collect();
        assert_eq!(pinned, PINNED);
        let mut counts = [0u32; 8];
        for i in 0..8000 {
            let p = partition_for(format!("dev-{i}").as_bytes(), 8);
            counts[p as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 900), "{counts:?}");
        assert_eq!(partition_for(b"", 1), 0);
    }
}
