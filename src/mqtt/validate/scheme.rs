//! The topic scheme `sensors/<device>/<metric>`: the split into a [`Metric`]
//! and a [`DeviceId`], whose rules ([`DeviceId::new`]: not empty, at most
//! [`MAX_DEVICE_ID_LEN`](crate::record::MAX_DEVICE_ID_LEN) bytes, no NUL) map
//! onto the device id reasons.

use super::{Metric, Reason};
use crate::record::{DeviceId, DeviceIdError};

/// Splits `sensors/<device>/<metric>` into the device id and the metric.
///
/// A topic that is not UTF-8 or not exactly three levels with the first
/// `sensors` is an unknown topic; then an unknown metric; then a bad device
/// id.
#[inline]
pub fn parse_topic(topic: &[u8]) -> Result<(DeviceId, Metric), Reason> {
    // Split on the bytes (this runs for every message): `/` is ASCII, so it
    // never occurs inside a multi-byte character, and the topic is UTF-8
    // exactly when its device and metric levels are.
    let rest = topic
        .strip_prefix(b"sensors/")
        .ok_or(Reason::UnknownTopic)?;
    let slash = rest
        .iter()
        .position(|&b| b == b'/')
        .ok_or(Reason::UnknownTopic)?;
    let (device, metric) = (&rest[..slash], &rest[slash + 1..]);
    let known = match metric {
        b"temperature" => Some(Metric::Temperature),
        b"humidity" => Some(Metric::Humidity),
        b"reading" => Some(Metric::Reading),
        _ => None,
    };
    let device = std::str::from_utf8(device).map_err(|_| Reason::UnknownTopic)?;
    let metric = match known {
        Some(metric) => metric,
        None if metric.contains(&b'/') || std::str::from_utf8(metric).is_err() => {
            return Err(Reason::UnknownTopic)
        }
        None => return Err(Reason::UnknownMetric),
    };
    let device = DeviceId::new(device).map_err(|e| match e {
        DeviceIdError::Empty => Reason::DeviceIdEmpty,
        DeviceIdError::TooLong(_) | DeviceIdError::Nul => Reason::DeviceIdTooLong,
    })?;
    Ok((device, metric))
}
