//! Simulated sensors: random-walk temperature and humidity per device.
//!
//! Used by the MQTT sensors of this crate, and by telering's demo pipeline
//! and example, which turn each step into an engine record. Deterministic
//! for a seed, no allocation per reading.

/// Longest device id telering accepts, in bytes (its `MAX_DEVICE_ID_LEN`).
pub const MAX_DEVICE_ID_LEN: usize = 16;

/// A fleet of simulated devices.
#[derive(Debug, Clone)]
pub struct Fleet {
    devices: Vec<(String, f32, f32)>,
    rng: u64,
}

/// Whether telering takes `id` as a device id: 1 to [`MAX_DEVICE_ID_LEN`]
/// bytes, no NUL.
fn fits(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_DEVICE_ID_LEN && !id.contains('\0')
}

impl Fleet {
    /// `n` devices named `{prefix}-{i}` (prefix trimmed so ids fit), seeded.
    pub fn new(prefix: &str, n: usize, seed: u64) -> Self {
        let mut rng = seed | 1;
        let devices = (0..n)
            .map(|i| {
                let suffix = format!("-{i}");
                let keep = MAX_DEVICE_ID_LEN.saturating_sub(suffix.len());
                let head: String = prefix.chars().take(keep).collect();
                let mut id = format!("{head}{suffix}");
                if !fits(&id) {
                    id = format!("d{i}");
                }
                let t = 15.0 + 10.0 * unit(&mut rng);
                let h = 30.0 + 40.0 * unit(&mut rng);
                (id, t, h)
            })
            .collect();
        Self { devices, rng }
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Whether the fleet is empty.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Device ids, each one telering accepts.
    pub fn ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.devices.iter().map(|d| d.0.as_str())
    }

    /// The next reading of device `i` (temperature °C, humidity %): a small
    /// random step, kept in range.
    pub fn step(&mut self, i: usize) -> (f32, f32) {
        let a = unit(&mut self.rng) - 0.5;
        let b = unit(&mut self.rng) - 0.5;
        let n = self.devices.len();
        let d = &mut self.devices[i % n];
        d.1 = (d.1 + a * 0.4).clamp(-39.0, 124.0);
        d.2 = (d.2 + b * 0.8).clamp(0.5, 99.5);
        (d.1, d.2)
    }
}

/// A uniform number in [0, 1) from xorshift64*.
fn unit(s: &mut u64) -> f32 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    let x = s.wrapping_mul(0x2545_f491_4f6c_dd1d);
    (x >> 40) as f32 / (1u64 << 24) as f32
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_stays_in_range_and_is_deterministic() {
        let mut a = Fleet::new("a-very-long-prefix-name", 100, 7);
        let mut b = Fleet::new("a-very-long-prefix-name", 100, 7);
        for i in 0..10_000 {
            let (t, h) = a.step(i);
            assert_eq!((t, h), b.step(i));
            assert!((-40.0..=125.0).contains(&t));
            assert!((0.0..=100.0).contains(&h));
        }
        let ids: std::collections::HashSet<_> = a.ids().collect();
        assert_eq!(ids.len(), 100);
        assert!(a.ids().all(fits));
    }
}
