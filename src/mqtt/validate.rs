//! Topic scheme and payload validation for MQTT ingest.
//!
//! Topics:
//! - `sensors/<device>/temperature` and `sensors/<device>/humidity`: a bare
//!   number (`21.5`) or JSON `{"ts": <µs since epoch, optional>, "value": <number>}`;
//! - `sensors/<device>/reading`: JSON `{"ts": .., "temperature": .., "humidity": ..}`
//!   (`ts` optional).
//!
//! Anything else is refused with a [`Reason`]; the bridge sends it to the
//! dead-letter topic with its raw payload.

use crate::record::{DeviceId, DeviceIdError, Reading, MAX_DEVICE_ID_LEN};

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

/// Why a message was refused. The code (`Reason::code`) is stable and is
/// what the summary and the dead-letter records carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reason {
    /// The topic is not `sensors/<device>/<metric>`.
    UnknownTopic = 1,
    /// The metric is not `temperature`, `humidity` or `reading`.
    UnknownMetric = 2,
    /// The device id is empty.
    DeviceIdEmpty = 3,
    /// The device id is longer than [`MAX_DEVICE_ID_LEN`] bytes (or has NUL).
    DeviceIdTooLong = 4,
    /// The payload is larger than the limit.
    PayloadTooLarge = 5,
    /// The payload is not UTF-8.
    NotUtf8 = 6,
    /// The payload is neither a number nor the expected JSON.
    NotJson = 7,
    /// A required field is missing or not a number.
    MissingValue = 8,
    /// A value is NaN or infinite.
    NotFinite = 9,
    /// Temperature outside −40..125 °C.
    TemperatureOutOfRange = 10,
    /// Humidity outside 0..100 %.
    HumidityOutOfRange = 11,
    /// `ts` is not a non-negative integer of µs.
    BadTimestamp = 12,
}

impl Reason {
    /// Every reason, in code order.
    pub const ALL: [Reason; 12] = [
        Reason::UnknownTopic,
        Reason::UnknownMetric,
        Reason::DeviceIdEmpty,
        Reason::DeviceIdTooLong,
        Reason::PayloadTooLarge,
        Reason::NotUtf8,
        Reason::NotJson,
        Reason::MissingValue,
        Reason::NotFinite,
        Reason::TemperatureOutOfRange,
        Reason::HumidityOutOfRange,
        Reason::BadTimestamp,
    ];

    /// The stable snake-case code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::UnknownTopic => "unknown_topic",
            Reason::UnknownMetric => "unknown_metric",
            Reason::DeviceIdEmpty => "device_id_empty",
            Reason::DeviceIdTooLong => "device_id_too_long",
            Reason::PayloadTooLarge => "payload_too_large",
            Reason::NotUtf8 => "not_utf8",
            Reason::NotJson => "not_json",
            Reason::MissingValue => "missing_value",
            Reason::NotFinite => "not_finite",
            Reason::TemperatureOutOfRange => "temperature_out_of_range",
            Reason::HumidityOutOfRange => "humidity_out_of_range",
            Reason::BadTimestamp => "bad_timestamp",
        }
    }

    /// The reason with this code.
    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// A sentence for logs and docs.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::UnknownTopic => "topic is not sensors/<device>/<metric>",
            Reason::UnknownMetric => "metric is not temperature, humidity or reading",
            Reason::DeviceIdEmpty => "device id is empty",
            Reason::DeviceIdTooLong => "device id is over 16 bytes or contains NUL",
            Reason::PayloadTooLarge => "payload is over the size limit",
            Reason::NotUtf8 => "payload is not UTF-8",
            Reason::NotJson => "payload is neither a number nor JSON of the expected shape",
            Reason::MissingValue => "a required number is missing",
            Reason::NotFinite => "a value is NaN or infinite",
            Reason::TemperatureOutOfRange => "temperature is outside -40..125 C",
            Reason::HumidityOutOfRange => "humidity is outside 0..100 %",
            Reason::BadTimestamp => "ts is not a non-negative integer of microseconds",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

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

/// Splits `sensors/<device>/<metric>` into the device id and the metric.
pub fn parse_topic(topic: &[u8]) -> Result<(DeviceId, Metric), Reason> {
    let topic = std::str::from_utf8(topic).map_err(|_| Reason::UnknownTopic)?;
    // Exactly three levels, the first `sensors` (a direct split rather than
    // a `split('/')` iterator: this runs for every message).
    let (device, metric) = topic
        .strip_prefix("sensors/")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(_, metric)| !metric.contains('/'))
        .ok_or(Reason::UnknownTopic)?;
    let metric = match metric {
        "temperature" => Metric::Temperature,
        "humidity" => Metric::Humidity,
        "reading" => Metric::Reading,
        _ => return Err(Reason::UnknownMetric),
    };
    let device = DeviceId::new(device).map_err(|e| match e {
        DeviceIdError::Empty => Reason::DeviceIdEmpty,
        DeviceIdError::TooLong(_) | DeviceIdError::Nul => Reason::DeviceIdTooLong,
    })?;
    Ok((device, metric))
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

fn check_temperature(t: f64) -> Result<f32, Reason> {
    if !t.is_finite() {
        Err(Reason::NotFinite)
    } else if !(TEMPERATURE_MIN..=TEMPERATURE_MAX).contains(&t) {
        Err(Reason::TemperatureOutOfRange)
    } else {
        Ok(t as f32)
    }
}

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
    let (device, metric) = parse_topic(topic)?;
    if payload.len() > limits.max_payload {
        return Err(Reason::PayloadTooLarge);
    }
    let text = std::str::from_utf8(payload).map_err(|_| Reason::NotUtf8)?;
    let text = text.trim();
    let (ts, temperature, humidity) = match metric {
        Metric::Temperature | Metric::Humidity => {
            let (ts, value) = if text.starts_with('{') {
                let j: JsonValue = serde_json::from_str(text).map_err(|_| Reason::NotJson)?;
                (timestamp(j.ts.as_ref(), now_us)?, number(j.value.as_ref())?)
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
        Metric::Reading => {
            let j: JsonReading = serde_json::from_str(text).map_err(|_| Reason::NotJson)?;
            let t = number(j.temperature.as_ref())?;
            let h = number(j.humidity.as_ref())?;
            (
                timestamp(j.ts.as_ref(), now_us)?,
                check_temperature(t)?,
                check_humidity(h)?,
            )
        }
    };
    Ok(Accepted {
        metric,
        reading: Reading::new(device, ts, temperature, humidity),
    })
}

const _: () = assert!(MAX_DEVICE_ID_LEN == 16);

#[cfg(test)]
mod tests {
    use super::*;

    fn v(topic: &str, payload: &[u8]) -> Result<Accepted, Reason> {
        validate(topic.as_bytes(), payload, &Limits::default(), 42)
    }

    #[test]
    fn accepts_the_three_formats() {
        let a = v("sensors/dev-1/temperature", b"21.5").unwrap();
        assert_eq!(a.metric, Metric::Temperature);
        assert_eq!(a.reading.temperature, 21.5);
        assert!(a.reading.humidity.is_nan());
        assert_eq!(a.reading.ts_us, 42);
        assert_eq!(a.reading.device.as_str(), "dev-1");
        let a = v(
            "sensors/d/humidity",
            br#"{"ts": 1700000000000000, "value": 55}"#,
        )
        .unwrap();
        assert_eq!(
            (a.reading.humidity, a.reading.ts_us),
            (55.0, 1_700_000_000_000_000)
        );
        let a = v("sensors/d/humidity", br#"{"value": 0}"#).unwrap();
        assert_eq!(a.reading.ts_us, 42);
        let a = v(
            "sensors/d/reading",
            br#"{"ts": 7, "temperature": -40, "humidity": 100}"#,
        )
        .unwrap();
        assert_eq!(a.metric, Metric::Reading);
        assert_eq!((a.reading.temperature, a.reading.humidity), (-40.0, 100.0));
        assert!(v("sensors/d/temperature", b" 125 \n").is_ok());
        let a = v(
            "sensors/d/temperature",
            br#"{"value": 20, "unit": "C", "battery": 91}"#,
        )
        .unwrap();
        assert_eq!(a.reading.temperature, 20.0);
    }

    #[test]
    fn refuses_with_reasons() {
        use Reason::*;
        let cases: &[(&str, &[u8], Reason)] = &[
            ("sensors/d/temperature", b"\xff\xfe", NotUtf8),
            ("sensors/d/temperature", b"warm", NotJson),
            ("sensors/d/temperature", b"{\"value\": ", NotJson),
            ("sensors/d/temperature", b"{\"valu\": 1}", MissingValue),
            ("sensors/d/temperature", b"[1]", NotJson),
            ("sensors/d/temperature", b"NaN", NotFinite),
            ("sensors/d/temperature", b"inf", NotFinite),
            ("sensors/d/humidity", b"-infinity", NotFinite),
            ("sensors/d/temperature", b"125.01", TemperatureOutOfRange),
            ("sensors/d/temperature", b"-40.5", TemperatureOutOfRange),
            ("sensors/d/humidity", b"100.5", HumidityOutOfRange),
            ("sensors/d/humidity", b"-1", HumidityOutOfRange),
            ("sensors/d/pressure", b"1", UnknownMetric),
            ("sensors//temperature", b"1", DeviceIdEmpty),
            (
                "sensors/abcdefghijklmnopq/temperature",
                b"1",
                DeviceIdTooLong,
            ),
            ("other/d/temperature", b"1", UnknownTopic),
            ("sensors/d/temperature/x", b"1", UnknownTopic),
            ("sensors/d", b"1", UnknownTopic),
            (
                "sensors/d/temperature",
                b"{\"ts\": -1, \"value\": 1}",
                BadTimestamp,
            ),
            (
                "sensors/d/temperature",
                b"{\"ts\": 1.5, \"value\": 1}",
                BadTimestamp,
            ),
            ("sensors/d/temperature", b"{\"value\": \"1\"}", MissingValue),
            ("sensors/d/reading", b"{\"temperature\": 1}", MissingValue),
            (
                "sensors/d/reading",
                b"{\"temperature\": 1, \"humidity\": 1e999}",
                NotJson,
            ),
            ("sensors/d/reading", b"12", NotJson),
        ];
        for (topic, payload, want) in cases {
            assert_eq!(
                v(topic, payload).map(|_| ()),
                Err(*want),
                "{topic} {payload:?}"
            );
        }
        let big = vec![b'1'; DEFAULT_MAX_PAYLOAD + 1];
        assert_eq!(
            v("sensors/d/temperature", &big).map(|_| ()),
            Err(PayloadTooLarge)
        );
    }

    #[test]
    fn topic_levels_are_checked_exactly() {
        let cases: [(&str, Result<Metric, Reason>); 10] = [
            ("sensors/a/temperature", Ok(Metric::Temperature)),
            ("sensors/a/reading", Ok(Metric::Reading)),
            ("sensors/a/b/temperature", Err(Reason::UnknownTopic)),
            ("sensors/a/temperature/", Err(Reason::UnknownTopic)),
            ("sensors/a", Err(Reason::UnknownTopic)),
            ("sensors/", Err(Reason::UnknownTopic)),
            ("/sensors/a/temperature", Err(Reason::UnknownTopic)),
            ("sensorsX/a/temperature", Err(Reason::UnknownTopic)),
            ("sensors/a/", Err(Reason::UnknownMetric)),
            ("sensors//humidity", Err(Reason::DeviceIdEmpty)),
        ];
        for (topic, want) in cases {
            let got = parse_topic(topic.as_bytes()).map(|(_, m)| m);
            assert_eq!(got, want, "{topic}");
        }
        assert_eq!(
            parse_topic(b"sensors/\xff/temperature"),
            Err(Reason::UnknownTopic)
        );
    }

    #[test]
    fn codes_round_trip() {
        for r in Reason::ALL {
            assert_eq!(Reason::from_code(r.code()), Some(r));
            assert!(!r.describe().is_empty());
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(topic in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
                        payload in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let _ = validate(&topic, &payload, &Limits::default(), 0);
        }

        #[test]
        fn accepted_values_are_in_range(t in -100.0f64..200.0, h in -50.0f64..150.0) {
            let p = format!("{{\"temperature\": {t}, \"humidity\": {h}}}");
            match v("sensors/x/reading", p.as_bytes()) {
                Ok(a) => {
                    proptest::prop_assert!((-40.0..=125.0).contains(&a.reading.temperature));
                    proptest::prop_assert!((0.0..=100.0).contains(&a.reading.humidity));
                }
                Err(r) => proptest::prop_assert!(matches!(r, Reason::TemperatureOutOfRange | Reason::HumidityOutOfRange)),
            }
        }
    }
}
