//! The messages one sensor publishes: valid readings in the topic scheme
//! telering serves, and, on request, deliberately invalid ones, one
//! [`Fault`] after another.
//!
//! The simulator is a device fleet: it links no part of telering. A fault is
//! named by the reason code telering's validation documents for it
//! ([`Fault::code`], the `dead_letter` reason), and telering's tests check
//! that the two lists are the same and that validation refuses each
//! generated fault with exactly its code.

use std::sync::{Arc, Mutex, PoisonError};

use crate::config::Format;
use crate::fleet::{now_us, Fleet, MAX_DEVICE_ID_LEN};

/// Largest payload telering accepts by default (`ingest.max_payload`);
/// [`Fault::PayloadTooLarge`] sends one byte more.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024;

/// A deliberately invalid message kind, one per reason code of telering's
/// validation (README, "Reason codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Not `sensors/<device>/<metric>`.
    UnknownTopic,
    /// A metric other than temperature, humidity or reading.
    UnknownMetric,
    /// `sensors//...`.
    DeviceIdEmpty,
    /// A device id over [`MAX_DEVICE_ID_LEN`] bytes.
    DeviceIdTooLong,
    /// A payload over [`DEFAULT_MAX_PAYLOAD`] bytes.
    PayloadTooLarge,
    /// A payload that is not UTF-8.
    NotUtf8,
    /// Neither a number nor JSON.
    NotJson,
    /// JSON without a numeric value.
    MissingValue,
    /// NaN.
    NotFinite,
    /// A temperature outside −40..125 °C.
    TemperatureOutOfRange,
    /// A humidity outside 0..100 %.
    HumidityOutOfRange,
    /// A negative timestamp.
    BadTimestamp,
}

impl Fault {
    /// Every fault, in the order the generator cycles through them.
    pub const ALL: [Fault; 12] = [
        Fault::UnknownTopic,
        Fault::UnknownMetric,
        Fault::DeviceIdEmpty,
        Fault::DeviceIdTooLong,
        Fault::PayloadTooLarge,
        Fault::NotUtf8,
        Fault::NotJson,
        Fault::MissingValue,
        Fault::NotFinite,
        Fault::TemperatureOutOfRange,
        Fault::HumidityOutOfRange,
        Fault::BadTimestamp,
    ];

    /// The reason code telering dead-letters this fault with.
    pub fn code(self) -> &'static str {
        match self {
            Fault::UnknownTopic => "unknown_topic",
            Fault::UnknownMetric => "unknown_metric",
            Fault::DeviceIdEmpty => "device_id_empty",
            Fault::DeviceIdTooLong => "device_id_too_long",
            Fault::PayloadTooLarge => "payload_too_large",
            Fault::NotUtf8 => "not_utf8",
            Fault::NotJson => "not_json",
            Fault::MissingValue => "missing_value",
            Fault::NotFinite => "not_finite",
            Fault::TemperatureOutOfRange => "temperature_out_of_range",
            Fault::HumidityOutOfRange => "humidity_out_of_range",
            Fault::BadTimestamp => "bad_timestamp",
        }
    }
}

/// A message's classification, known when it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Accepted by validation, producing this many engine records.
    Valid {
        /// 1 for a temperature or humidity message, 2 for a reading.
        records: u8,
    },
    /// Refused by validation with this fault's reason code.
    Malformed(Fault),
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The MQTT topic.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// What telering will make of it.
    pub class: Class,
}

/// The valid shapes `Format` rotates through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `sensors/<device>/temperature` with a bare number.
    BareTemperature,
    /// `sensors/<device>/humidity` with a bare number.
    BareHumidity,
    /// `sensors/<device>/temperature` with `{"ts": .., "value": ..}`.
    JsonTemperature,
    /// `sensors/<device>/humidity` with `{"ts": .., "value": ..}`.
    JsonHumidity,
    /// `sensors/<device>/reading` with both metrics.
    Reading,
}

/// Builds one sensor's messages: deterministic for a seed except for the
/// timestamps (and, across sensors, the interleaving of the shared walk).
pub struct Generator {
    index: usize,
    device: String,
    format: Format,
    malformed: f64,
    rng: u64,
    valid_seq: u64,
    malformed_seq: usize,
    fleet: Arc<Mutex<Fleet>>,
}

impl Generator {
    /// Sensor `index` of `fleet`, publishing as `device`.
    pub fn new(
        index: usize,
        device: String,
        format: Format,
        malformed: f64,
        seed: u64,
        fleet: Arc<Mutex<Fleet>>,
    ) -> Self {
        let mut s = seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let rng = splitmix64(&mut s) | 1;
        Self {
            index,
            device,
            format,
            malformed,
            rng,
            valid_seq: 0,
            // Start each sensor at a different reason so that small runs
            // still cover them all.
            malformed_seq: index % Fault::ALL.len(),
            fleet,
        }
    }

    /// A uniform number in [0, 1).
    fn unit(&mut self) -> f64 {
        let s = &mut self.rng;
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next message: a fault with probability `malformed`, else the
    /// next valid shape of the format with the fleet's next reading.
    pub fn next_message(&mut self) -> Message {
        if self.malformed > 0.0 && self.unit() < self.malformed {
            let fault = Fault::ALL[self.malformed_seq % Fault::ALL.len()];
            self.malformed_seq += 1;
            return malformed_message(&self.device, fault);
        }
        let k = self.valid_seq;
        self.valid_seq += 1;
        let alt = |a, b| if k % 2 == 0 { a } else { b };
        let shape = match self.format {
            Format::Bare => alt(Shape::BareTemperature, Shape::BareHumidity),
            Format::Json => alt(Shape::JsonTemperature, Shape::JsonHumidity),
            Format::Reading => Shape::Reading,
            Format::Mixed => [
                Shape::BareTemperature,
                Shape::JsonHumidity,
                Shape::Reading,
                Shape::BareHumidity,
                Shape::JsonTemperature,
                Shape::Reading,
            ][(k % 6) as usize],
        };
        let ts = now_us();
        let (t, h) = self
            .fleet
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .step(self.index);
        valid_message(&self.device, shape, ts, t, h)
    }
}

fn splitmix64(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A valid message of `shape` from `device` at `ts` (µs).
pub fn valid_message(device: &str, shape: Shape, ts: u64, t: f32, h: f32) -> Message {
    let (metric, payload, records) = match shape {
        Shape::BareTemperature => ("temperature", format!("{t:.2}"), 1),
        Shape::BareHumidity => ("humidity", format!("{h:.2}"), 1),
        Shape::JsonTemperature => (
            "temperature",
            format!(r#"{{"ts": {ts}, "value": {t:.2}}}"#),
            1,
        ),
        Shape::JsonHumidity => ("humidity", format!(r#"{{"ts": {ts}, "value": {h:.2}}}"#), 1),
        Shape::Reading => (
            "reading",
            format!(r#"{{"ts": {ts}, "temperature": {t:.2}, "humidity": {h:.2}}}"#),
            2,
        ),
    };
    Message {
        topic: format!("sensors/{device}/{metric}"),
        payload: payload.into_bytes(),
        class: Class::Valid { records },
    }
}

/// A message that telering refuses with exactly `fault.code()`.
pub fn malformed_message(device: &str, fault: Fault) -> Message {
    let on = |metric: &str| format!("sensors/{device}/{metric}");
    let (topic, payload): (String, Vec<u8>) = match fault {
        Fault::UnknownTopic => (format!("other/{device}/temperature"), b"21.5".to_vec()),
        Fault::UnknownMetric => (on("pressure"), b"1013".to_vec()),
        Fault::DeviceIdEmpty => ("sensors//temperature".to_owned(), b"21.5".to_vec()),
        // Pad the id with 'x' to at least MAX_DEVICE_ID_LEN + 1 characters.
        Fault::DeviceIdTooLong => (
            format!(
                "sensors/{device:x<width$}/temperature",
                width = MAX_DEVICE_ID_LEN + 1
            ),
            b"21.5".to_vec(),
        ),
        Fault::PayloadTooLarge => (on("temperature"), vec![b'1'; DEFAULT_MAX_PAYLOAD + 1]),
        Fault::NotUtf8 => (on("temperature"), vec![0xff, 0xfe]),
        Fault::NotJson => (on("temperature"), b"warm".to_vec()),
        Fault::MissingValue => (on("temperature"), br#"{"value": "x"}"#.to_vec()),
        Fault::NotFinite => (on("temperature"), b"NaN".to_vec()),
        Fault::TemperatureOutOfRange => (on("temperature"), b"200".to_vec()),
        Fault::HumidityOutOfRange => (on("humidity"), b"120".to_vec()),
        Fault::BadTimestamp => (on("temperature"), br#"{"ts": -5, "value": 20}"#.to_vec()),
    };
    Message {
        topic,
        payload,
        class: Class::Malformed(fault),
    }
}
