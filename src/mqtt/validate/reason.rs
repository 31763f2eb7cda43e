//! The refusal reasons and their stable codes.

use crate::record::MAX_DEVICE_ID_LEN;

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
    /// The client may not publish to this topic (the ACL); never
    /// validated, never ingested.
    NotAuthorized = 13,
}

impl Reason {
    /// Every reason, in code order.
    pub const ALL: [Reason; 13] = {
        // The validation reasons, then the one that depends on the sender.
        let mut all = [Reason::NotAuthorized; 13];
        let mut i = 0;
        while i < Self::VALIDATION.len() {
            all[i] = Self::VALIDATION[i];
            i += 1;
        }
        all
    };

    /// The reasons validation gives (a message's topic and payload alone):
    /// all but [`Reason::NotAuthorized`], which depends on who sent it.
    pub const VALIDATION: [Reason; 12] = [
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
            Reason::NotAuthorized => "not_authorized",
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
            Reason::NotAuthorized => "the client may not publish to this topic (ACL)",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

// `Reason::describe` spells the limit out.
const _: () = assert!(MAX_DEVICE_ID_LEN == 16);
