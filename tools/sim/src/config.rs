//! What to simulate ([`SimConfig`]), its limits, and why a run fails
//! ([`SimError`]).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// How long, at least, the sensors try to connect before [`run`] gives up
/// with [`SimError::Connect`]; 1 ms per sensor is added for large fleets.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After the last publish a sensor waits for its messages to be written
/// (QoS 0) or acknowledged (QoS 1); it disconnects anyway if that makes no
/// progress for this long.
pub const DRAIN_STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// After DISCONNECT, how long a sensor waits for the broker to close.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Mid-run, how long a sensor keeps trying to reconnect before giving up.
pub const RECONNECT_WINDOW: Duration = Duration::from_secs(10);
/// Capacity of each client's request channel. Small enough that a run
/// stops soon after its duration or stop signal even when publishing as fast
/// as possible (what is queued is still sent), large enough to keep each
/// event loop busy.
pub const REQUEST_CHANNEL_CAPACITY: usize = 128;
/// Largest MQTT packet the clients send or accept.
pub const MAX_PACKET_SIZE: usize = 64 * 1024;
/// QoS 1 messages in flight per client.
pub const INFLIGHT: u16 = 100;

pub(crate) const CONNECT_CONCURRENCY: usize = 128;

/// Message rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Messages per second, per sensor.
    PerSensor(f64),
    /// Messages per second over all sensors, spread evenly.
    Total(f64),
    /// As fast as each client accepts messages.
    Unlimited,
}

/// Payload format of the valid messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A bare number on `temperature` or `humidity` (alternating).
    Bare,
    /// `{"ts": .., "value": ..}` on `temperature` or `humidity` (alternating).
    Json,
    /// `{"ts": .., "temperature": .., "humidity": ..}` on `reading`.
    Reading,
    /// Rotates among the three.
    Mixed,
}

impl Format {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Bare => "bare",
            Format::Json => "json",
            Format::Reading => "reading",
            Format::Mixed => "mixed",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "bare" => Ok(Format::Bare),
            "json" => Ok(Format::Json),
            "reading" => Ok(Format::Reading),
            "mixed" => Ok(Format::Mixed),
            _ => Err(format!(
                "unknown format {s:?}: expected bare, json, reading or mixed"
            )),
        }
    }
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Broker address, `host:port`.
    pub broker: String,
    /// Number of simulated sensors (one MQTT connection each).
    pub sensors: usize,
    /// Message rate.
    pub rate: Rate,
    /// Stop after this long (measured from when all sensors are connected).
    pub duration: Option<Duration>,
    /// Stop after this many messages in total (split evenly over the
    /// sensors). With `duration` too, whichever comes first stops the run;
    /// with neither, the run goes on until the stop signal.
    pub count: Option<u64>,
    /// MQTT QoS: 0 or 1.
    pub qos: u8,
    /// Fraction (0..=1) of messages that are deliberately invalid.
    pub malformed: f64,
    /// Payload format of the valid messages.
    pub format: Format,
    /// Seed of the readings' random walk and of the malformed injection.
    pub seed: u64,
    /// Prefix of client ids (`{prefix}-{i}`) and of device ids.
    pub client_prefix: String,
    /// Speak MQTT 5 instead of 3.1.1.
    pub mqtt_v5: bool,
    /// MQTT user name every sensor logs in with; the literal `{id}` in it is
    /// replaced by the sensor's own device id, so each device can log in as
    /// itself (`username: Some("{id}".into())`). `None`: no credentials.
    pub username: Option<String>,
    /// MQTT password sent with `username` (which it requires).
    pub password: Option<String>,
    /// PEM file of the CA certificate(s) the broker's certificate must chain
    /// to. Set, the sensors connect over TLS (rustls), verifying the broker
    /// against these CAs only and its name against the host of `broker`.
    pub cafile: Option<PathBuf>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            broker: "127.0.0.1:1883".to_owned(),
            sensors: 10,
            rate: Rate::Total(1000.0),
            duration: Some(Duration::from_secs(5)),
            count: None,
            qos: 0,
            malformed: 0.0,
            format: Format::Mixed,
            seed: 42,
            client_prefix: "sim".to_owned(),
            mqtt_v5: false,
            username: None,
            password: None,
            cafile: None,
        }
    }
}

impl SimConfig {
    /// Messages per second per sensor, `None` for unlimited.
    pub fn per_sensor_rate(&self) -> Option<f64> {
        match self.rate {
            Rate::PerSensor(r) => Some(r),
            Rate::Total(r) => Some(r / self.sensors.max(1) as f64),
            Rate::Unlimited => None,
        }
    }

    /// Checks the configuration; [`run`] does this first.
    pub fn check(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::Config(m));
        if self.sensors == 0 {
            return bad("sensors must be at least 1".into());
        }
        if self.qos > 1 {
            return bad(format!("qos must be 0 or 1, not {}", self.qos));
        }
        if !(0.0..=1.0).contains(&self.malformed) {
            return bad(format!(
                "malformed must be a fraction in 0..=1, not {}",
                self.malformed
            ));
        }
        if let Rate::PerSensor(r) | Rate::Total(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return bad(format!("rate must be a positive number, not {r}"));
            }
        }
        if self.client_prefix.is_empty() || self.client_prefix.contains(['/', '+', '#', '\0']) {
            return bad(format!(
                "client prefix {:?} must be non-empty, without '/', '+', '#' or NUL \
                 (it is also the device id prefix, a topic level)",
                self.client_prefix
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            return bad("a password needs a user name (MQTT sends no password alone)".into());
        }
        if let Some(u) = &self.username {
            if u.is_empty() || u.contains('\0') {
                return bad(format!("user name {u:?} must be non-empty, without NUL"));
            }
        }
        split_broker(&self.broker)?;
        Ok(())
    }

    /// The user name sensor `device` logs in with: [`SimConfig::username`]
    /// with `{id}` replaced by `device`.
    pub fn username_for(&self, device: &str) -> Option<String> {
        self.username.as_ref().map(|u| u.replace("{id}", device))
    }
}

/// A CONNACK refusing a connection: its return code (MQTT 3.1.1, 1..=5) or
/// reason code (MQTT 5, 0x80 and up), and what that code means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The code as sent on the wire: 3.1.1 `0x04` bad user name or password,
    /// `0x05` not authorized; MQTT 5 `0x86` and `0x87`.
    pub code: u8,
    /// The code's name in the MQTT specification.
    pub reason: &'static str,
}

impl Refusal {
    /// Whether the broker refused the credentials (bad user name or
    /// password, or not authorized), in either MQTT version.
    pub fn is_login(&self) -> bool {
        matches!(self.code, 0x04 | 0x05 | 0x86 | 0x87)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CONNACK {:#04x} ({})", self.code, self.reason)
    }
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration is invalid.
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    /// Not every sensor could connect to the broker in time.
    #[error(
        "could not connect to the MQTT broker at {broker}: {connected} of {sensors} \
         sensors connected within {timeout:?}; last error: {last_error}"
    )]
    Connect {
        /// The broker address.
        broker: String,
        /// Sensors that did connect.
        connected: usize,
        /// Sensors configured.
        sensors: usize,
        /// How long they tried.
        timeout: Duration,
        /// The last connection error seen.
        last_error: String,
    },
    /// The broker refused sensors' connections in its CONNACK (with
    /// credentials: most likely a wrong user name or password). A refused
    /// sensor is not retried: the same CONNECT would be refused again.
    #[error(
        "the MQTT broker at {broker} refused {refused} of {sensors} sensors: {refusal}, \
         e.g. client {client}{}",
        as_user(.username)
    )]
    Refused {
        /// The broker address.
        broker: String,
        /// Sensors refused.
        refused: usize,
        /// Sensors configured.
        sensors: usize,
        /// The first refusal seen.
        refusal: Refusal,
        /// The client id it was sent to.
        client: String,
        /// The user name that client logged in with (never the password).
        username: Option<String>,
    },
    /// The tokio runtime could not be built.
    #[error("could not start the tokio runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// A sensor task panicked or was cancelled.
    #[error("a sensor task failed: {0}")]
    Task(String),
}

fn as_user(username: &Option<String>) -> String {
    match username {
        Some(u) => format!(" logging in as {u:?}"),
        None => " without credentials".to_owned(),
    }
}

/// Splits `host:port`.
pub(crate) fn split_broker(broker: &str) -> Result<(String, u16), SimError> {
    let bad = || {
        SimError::Config(format!(
            "broker address {broker:?} is not host:port (e.g. 127.0.0.1:1883)"
        ))
    };
    let (host, port) = broker.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks() {
        assert!(SimConfig::default().check().is_ok());
        let bad = [
            SimConfig {
                sensors: 0,
                ..SimConfig::default()
            },
            SimConfig {
                qos: 2,
                ..SimConfig::default()
            },
            SimConfig {
                malformed: 1.5,
                ..SimConfig::default()
            },
            SimConfig {
                rate: Rate::Total(0.0),
                ..SimConfig::default()
            },
            SimConfig {
                rate: Rate::PerSensor(f64::NAN),
                ..SimConfig::default()
            },
            SimConfig {
                client_prefix: "a/b".into(),
                ..SimConfig::default()
            },
            SimConfig {
                client_prefix: "".into(),
                ..SimConfig::default()
            },
            SimConfig {
                password: Some("secret".into()),
                ..SimConfig::default()
            },
            SimConfig {
                username: Some("".into()),
                ..SimConfig::default()
            },
            SimConfig {
                broker: "localhost".into(),
                ..SimConfig::default()
            },
            SimConfig {
                broker: "localhost:99999".into(),
                ..SimConfig::default()
            },
        ];
        for c in bad {
            assert!(matches!(c.check(), Err(SimError::Config(_))), "{c:?}");
        }
        assert_eq!(
            split_broker("[::1]:1883").ok(),
            Some(("[::1]".to_owned(), 1883))
        );
        let c = SimConfig {
            username: Some("dev-{id}".into()),
            password: Some("pw".into()),
            ..SimConfig::default()
        };
        assert!(c.check().is_ok());
        assert_eq!(c.username_for("sim-3").as_deref(), Some("dev-sim-3"));
        assert_eq!(SimConfig::default().username_for("sim-3"), None);
        assert_eq!("Mixed".parse::<Format>(), Ok(Format::Mixed));
        assert!("xml".parse::<Format>().is_err());
        assert_eq!(
            SimConfig {
                sensors: 4,
                rate: Rate::Total(100.0),
                ..SimConfig::default()
            }
            .per_sensor_rate(),
            Some(25.0)
        );
    }
}
