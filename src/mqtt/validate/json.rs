//! The two JSON payload shapes, `{"ts", "value"}` and `{"ts", "temperature",
//! "humidity"}`: read by [`fast::fields`] first (when `FAST`), and by
//! serde_json, the fallback, whenever the fast path steps aside.

use super::{check_humidity, check_temperature, fast, Reason};

/// JSON payload shapes (fields are all optional here; checks follow). Other
/// fields a device adds (a unit, a battery level) are ignored.
#[derive(serde::Deserialize)]
struct JsonValue {
    ts: Option<serde_json::Number>,
    value: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct JsonReading {
    ts: Option<serde_json::Number>,
    temperature: Option<serde_json::Value>,
    humidity: Option<serde_json::Value>,
}

fn number(v: Option<&serde_json::Value>) -> Result<f64, Reason> {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_f64().ok_or(Reason::NotFinite),
        _ => Err(Reason::MissingValue),
    }
}

fn timestamp(ts: Option<&serde_json::Number>, now_us: impl FnOnce() -> u64) -> Result<u64, Reason> {
    match ts {
        None => Ok(now_us()),
        Some(n) => n.as_u64().ok_or(Reason::BadTimestamp),
    }
}

/// `{"ts": .., "value": ..}`: the timestamp and the value, not yet
/// range-checked. Both paths check in the same order: `ts`, then `value`.
#[inline(always)]
pub(super) fn json_value<const FAST: bool>(
    text: &str,
    now_us: impl FnOnce() -> u64,
) -> Result<(u64, f64), Reason> {
    if FAST {
        if let Some(f) = fast::fields(text.as_bytes(), fast::VALUE) {
            let ts = f.ts.unwrap_or_else(now_us);
            let [value] = f.values;
            return Ok((ts, value.ok_or(Reason::MissingValue)?));
        }
    }
    let j: JsonValue = serde_json::from_str(text).map_err(|_| Reason::NotJson)?;
    Ok((timestamp(j.ts.as_ref(), now_us)?, number(j.value.as_ref())?))
}

/// `{"ts": .., "temperature": .., "humidity": ..}`, checked. Both paths
/// check in the same order: temperature present, humidity present, `ts`,
/// temperature range, humidity range.
#[inline(always)]
pub(super) fn json_reading<const FAST: bool>(
    text: &str,
    now_us: impl FnOnce() -> u64,
) -> Result<(u64, f32, f32), Reason> {
    if FAST {
        if let Some(f) = fast::fields(text.as_bytes(), fast::READING) {
            let [t, h] = f.values;
            let t = t.ok_or(Reason::MissingValue)?;
            let h = h.ok_or(Reason::MissingValue)?;
            let ts = f.ts.unwrap_or_else(now_us);
            return Ok((ts, check_temperature(t)?, check_humidity(h)?));
        }
    }
    let j: JsonReading = serde_json::from_str(text).map_err(|_| Reason::NotJson)?;
    let t = number(j.temperature.as_ref())?;
    let h = number(j.humidity.as_ref())?;
    Ok((
        timestamp(j.ts.as_ref(), now_us)?,
        check_temperature(t)?,
        check_humidity(h)?,
    ))
}
