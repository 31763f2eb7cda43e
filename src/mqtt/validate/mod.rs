//! Topic scheme and payload validation for MQTT ingest.
//!
//! Topics:
//! - `sensors/<device>/temperature` and `sensors/<device>/humidity`: a bare
//!   number (`21.5`) or JSON `{"ts": <µs since epoch, optional>, "value": <number>}`;
//! - `sensors/<device>/reading`: JSON `{"ts": .., "temperature": .., "humidity": ..}`
//!   (`ts` optional).
//!
//! Anything else is refused with a [`Reason`]; the ingest stage sends it to the
//! dead-letter topic with its raw payload.
//!
//! # Fast path and serde_json fallback
//!
//! Validation runs for every message on the ingest shard that read it, so a JSON
//! payload is first read by a small byte-level parser for the two object
//! shapes above (`fast::fields`, no allocation). It gives an answer only
//! where it is certain to agree with serde_json, and otherwise steps aside:
//! the payload then goes through the serde_json code exactly as before (the
//! fallback, next to the fast path's call in `json`;
//! `validate_with_serde_only` runs it alone). The fast path answers only
//! for:
//!
//! - an object with keys in any order and JSON whitespace (space, tab, CR,
//!   LF) between tokens, nothing after the closing brace, no trailing comma;
//! - keys without escapes or control characters (so the bytes are the key);
//!   no key of the shape twice (serde's derive refuses a duplicate field);
//! - `ts`, optional, as plain digits without a leading zero that fit in
//!   `u64`: exactly the numbers whose `Number::as_u64` is `Some`. A sign,
//!   a fraction, an exponent or an overflow (all `BadTimestamp` or `NotJson`
//!   in serde_json) fall back;
//! - value fields as JSON numbers whose digits (without the point) form a
//!   significand of at most 2^53 and whose decimal exponent is within ±22.
//!   serde_json 1.x without its `float_roundtrip` feature (as built here)
//!   computes such a number as `significand as f64` multiplied or divided by
//!   the `f64` power of ten; the fast path performs that same operation on
//!   the same operands, so the bits are the same. Both operands are exact,
//!   so the result is also the correctly rounded one that `float_roundtrip`
//!   or `str::parse` would give. An integer is kept by serde_json as `u64` /
//!   `i64` and converted exactly (|n| <= 2^53), `-0` as -0.0, as here.
//!   Anything longer or larger (which serde_json may round differently, or
//!   refuse as out of range) falls back;
//! - other keys, skipped when their value is a JSON number (serde ignores
//!   unknown fields but serde_json still checks their syntax); a string,
//!   array, object, `true`, `false` or `null` anywhere falls back.
//!
//! Both paths then run the same checks in the same order, so the accepted
//! readings and the refusal reasons are the same; the tests compare the
//! two on generated payloads and check that the simulator's payloads take
//! the fast path. Bare numbers on `temperature` / `humidity` are parsed by
//! `str::parse` as before.

mod fast;
mod json;
mod reason;
mod scheme;

use crate::record::Reading;
use json::{json_reading, json_value};

pub use reason::Reason;
pub use scheme::parse_topic;

/// Lowest accepted temperature, °C.
pub const TEMPERATURE_MIN: f64 = -40.0;
/// Highest accepted temperature, °C.
pub const TEMPERATURE_MAX: f64 = 125.0;
/// Lowest accepted relative humidity, %.
pub const HUMIDITY_MIN: f64 = 0.0;
/// Highest accepted relative humidity, %.
pub const HUMIDITY_MAX: f64 = 100.0;
/// Default payload size limit, bytes.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024;

/// Which engine topics an accepted message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// `temperature` only (humidity is NaN: not measured).
    Temperature,
    /// `humidity` only (temperature is NaN: not measured).
    Humidity,
    /// Both topics.
    Reading,
}

/// An accepted message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accepted {
    /// Where it goes.
    pub metric: Metric,
    /// The record; an unmeasured field is NaN.
    pub reading: Reading,
}

/// Validation limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload accepted, bytes.
    pub max_payload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }
}

#[inline]
fn check_temperature(t: f64) -> Result<f32, Reason> {
    if !t.is_finite() {
        Err(Reason::NotFinite)
    } else if !(TEMPERATURE_MIN..=TEMPERATURE_MAX).contains(&t) {
        Err(Reason::TemperatureOutOfRange)
    } else {
        Ok(t as f32)
    }
}

#[inline]
fn check_humidity(h: f64) -> Result<f32, Reason> {
    if !h.is_finite() {
        Err(Reason::NotFinite)
    } else if !(HUMIDITY_MIN..=HUMIDITY_MAX).contains(&h) {
        Err(Reason::HumidityOutOfRange)
    } else {
        Ok(h as f32)
    }
}

/// Validates one MQTT message. `now_us` stamps messages without `ts`.
pub fn validate(
    topic: &[u8],
    payload: &[u8],
    limits: &Limits,
    now_us: u64,
) -> Result<Accepted, Reason> {
    validate_with(topic, payload, limits, || now_us)
}

/// [`validate`], reading the clock only for a message that has no `ts`.
pub fn validate_with(
    topic: &[u8],
    payload: &[u8],
    limits: &Limits,
    now_us: impl FnOnce() -> u64,
) -> Result<Accepted, Reason> {
    validate_impl::<true>(topic, payload, limits, now_us)
}

/// [`validate_with`] without the fast path: every JSON payload goes through
/// serde_json. The results are the same as [`validate_with`]'s for every
/// input; this is the reference that the fast path is tested and
/// benchmarked against, and is slower.
#[doc(hidden)]
pub fn validate_with_serde_only(
    topic: &[u8],
    payload: &[u8],
    limits: &Limits,
    now_us: impl FnOnce() -> u64,
) -> Result<Accepted, Reason> {
    validate_impl::<false>(topic, payload, limits, now_us)
}

/// `FAST`: try [`fast::fields`] before serde_json on JSON payloads.
#[inline(always)]
fn validate_impl<const FAST: bool>(
    topic: &[u8],
    payload: &[u8],
    limits: &Limits,
    now_us: impl FnOnce() -> u64,
) -> Result<Accepted, Reason> {
    let (device, metric) = parse_topic(topic)?;
    if payload.len() > limits.max_payload {
        return Err(Reason::PayloadTooLarge);
    }
    let text = std::str::from_utf8(payload).map_err(|_| Reason::NotUtf8)?;
    let text = text.trim();
    let (ts, temperature, humidity) = match metric {
        Metric::Temperature | Metric::Humidity => {
            let (ts, value) = if text.starts_with('{') {
                json_value::<FAST>(text, now_us)?
            } else {
                // A bare number; Rust's parser also takes "NaN" and "inf",
                // which the range checks below refuse as not finite.
                let v: f64 = text.parse().map_err(|_| Reason::NotJson)?;
                (now_us(), v)
            };
            if metric == Metric::Temperature {
                (ts, check_temperature(value)?, f32::NAN)
            } else {
                (ts, f32::NAN, check_humidity(value)?)
            }
        }
        Metric::Reading => json_reading::<FAST>(text, now_us)?,
    };
    Ok(Accepted {
        metric,
        reading: Reading::new(device, ts, temperature, humidity),
    })
}

#[cfg(test)]
mod tests;
