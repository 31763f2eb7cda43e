//! Sensor simulator: many MQTT clients publishing readings (and, on request,
//! deliberately invalid messages) to a broker, with exact accounting.
//!
//! Each simulated sensor is its own `rumqttc` client with its own event loop
//! task; all sensors share one tokio runtime. Sensor `i` uses client id
//! `{client_prefix}-{i}` and device id `fleet.ids()[i]` of
//! `Fleet::new(client_prefix, sensors, seed)`; its readings are the fleet's
//! random walk ([`Fleet::step`]).
//!
//! Messages follow the scheme of [`validate`]:
//! `sensors/<device>/temperature|humidity` with a bare number (`21.53`) or
//! JSON `{"ts": <µs>, "value": <n>}`, and `sensors/<device>/reading` with
//! `{"ts": <µs>, "temperature": <n>, "humidity": <n>}`. `ts` is the send time
//! ([`now_us`]), so the receiver can measure end-to-end latency.
//!
//! With probability [`SimConfig::malformed`] a message is replaced by one that
//! [`validate::validate`] refuses, cycling through every [`Reason`]; the
//! [`SimSummary`] counts them by reason code.
//!
//! # Accounting
//!
//! A message counts as `sent` once the client accepted it. At the end each
//! sensor waits until everything it sent has been written to its socket
//! (QoS 0) or acknowledged by the broker (QoS 1), then sends DISCONNECT and
//! keeps polling until the broker closes the connection. So when [`run`]
//! returns a summary with `errors == 0`, the broker has read exactly `sent`
//! messages, of which `valid` are accepted by validation and
//! `malformed_by_reason` are refused. If a connection drops mid-run the
//! client reconnects (clean session, nothing is re-sent); what was never
//! confirmed is reported in [`SimSummary::lost`], and under QoS 0 a message
//! written just before the drop may be lost too (see [`SimSummary`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use crate::mqtt::validate::{self, Reason};
use crate::sim::{now_us, Fleet};

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
/// At most this many sensors connect at the same time.
const CONNECT_CONCURRENCY: usize = 128;

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
        split_broker(&self.broker)?;
        Ok(())
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
    /// The tokio runtime could not be built.
    #[error("could not start the tokio runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// A sensor task panicked or was cancelled.
    #[error("a sensor task failed: {0}")]
    Task(String),
}

/// The outcome of a run.
///
/// When `lost == 0` and `reconnects == 0` (always so when `errors == 0`;
/// failed attempts while connecting, before anything is published, count in
/// `errors` but do not matter) the broker received exactly `sent` messages:
/// `valid` that validation accepts, making `records` engine records, and
/// `malformed` that it refuses, by reason code in `malformed_by_reason`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimSummary {
    /// Sensors (connections).
    pub sensors: usize,
    /// Messages published (accepted by the MQTT clients).
    pub sent: u64,
    /// Of those, valid messages.
    pub valid: u64,
    /// Of those, deliberately invalid messages.
    pub malformed: u64,
    /// Invalid messages by [`Reason::code`]; reasons never sent are absent.
    pub malformed_by_reason: BTreeMap<String, u64>,
    /// QoS 1 acknowledgements received; equals `sent` on a clean QoS 1 run.
    pub acked: u64,
    /// The QoS used.
    pub qos: u8,
    /// Connection and publish errors (a failed reconnect attempt counts).
    pub errors: u64,
    /// Reconnect attempts after a connection was lost mid-run.
    pub reconnects: u64,
    /// Messages sent but never confirmed written (QoS 0) or acknowledged
    /// (QoS 1), because of connection errors; 0 on a clean run.
    pub lost: u64,
    /// Seconds from the moment all sensors were connected until the last
    /// one had its messages confirmed and disconnected.
    pub duration_s: f64,
    /// Messages per second achieved (`sent / duration_s`).
    pub rate: f64,
    /// Engine records the valid messages produce: 1 per temperature or
    /// humidity message, 2 per reading message.
    pub records: u64,
}

/// Runs the simulation on the current tokio runtime until `duration`,
/// `count` or `stop` (when it becomes `true`), whichever comes first.
///
/// The runtime needs tokio's time and I/O drivers (`enable_all`). Returns
/// [`SimError::Connect`] if not every sensor connects within
/// [`CONNECT_TIMEOUT`] (plus 1 ms per sensor); once connected, lost
/// connections are retried and counted, not fatal.
pub async fn run(
    cfg: SimConfig,
    stop: Option<watch::Receiver<bool>>,
) -> Result<SimSummary, SimError> {
    cfg.check()?;
    let (host, port) = split_broker(&cfg.broker)?;
    let n = cfg.sensors;
    let fleet = Fleet::new(&cfg.client_prefix, n, cfg.seed);
    let devices: Vec<String> = fleet.ids().map(|d| d.as_str().to_owned()).collect();
    let fleet = Arc::new(Mutex::new(fleet));

    // Connect every sensor first, so the rate is measured on a warm fleet.
    let timeout = CONNECT_TIMEOUT + Duration::from_millis(n as u64);
    let deadline = Instant::now() + timeout;
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut connecting = Vec::with_capacity(n);
    for i in 0..n {
        let opts = ClientOptions {
            id: format!("{}-{i}", cfg.client_prefix),
            host: host.clone(),
            port,
            v5: cfg.mqtt_v5,
        };
        let permits = Arc::clone(&permits);
        connecting.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            connect(opts, deadline).await
        }));
    }
    let mut sessions = Vec::with_capacity(n);
    let mut last_error = None;
    let mut connect_errors = 0u64;
    for task in connecting {
        match task.await {
            Ok(Ok((client, eventloop, failures))) => {
                connect_errors += failures;
                sessions.push((client, eventloop));
            }
            Ok(Err(e)) => last_error = Some(e),
            Err(e) => last_error = Some(format!("connect task failed: {e}")),
        }
    }
    if let Some(last_error) = last_error {
        return Err(SimError::Connect {
            broker: cfg.broker.clone(),
            connected: sessions.len(),
            sensors: n,
            timeout,
            last_error,
        });
    }
    tracing::info!(sensors = n, broker = %cfg.broker, "all sensors connected");

    let start = Instant::now();
    let end = cfg.duration.and_then(|d| start.checked_add(d));
    let period = cfg
        .per_sensor_rate()
        .and_then(|r| Duration::try_from_secs_f64(1.0 / r).ok());
    let qos = cfg.qos;
    let mut tasks = Vec::with_capacity(n);
    for (i, (client, eventloop)) in sessions.into_iter().enumerate() {
        let quota = cfg
            .count
            .map(|c| c / n as u64 + u64::from((i as u64) < c % n as u64));
        // Stagger the sensors evenly over one period.
        let first = period
            .and_then(|p| start.checked_add(p.mul_f64(i as f64 / n as f64)))
            .unwrap_or(start);
        let plan = Plan {
            qos,
            quota,
            end,
            period,
            first,
        };
        let generator = Generator::new(
            i,
            devices[i].clone(),
            cfg.format,
            cfg.malformed,
            cfg.seed,
            Arc::clone(&fleet),
        );
        let stop = stop.clone();
        tasks.push(tokio::spawn(sensor(
            client, eventloop, generator, plan, stop,
        )));
    }

    let mut total = Tally {
        errors: connect_errors,
        ..Tally::default()
    };
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(t) => total.add(&t),
            Err(e) => failure = Some(e.to_string()),
        }
    }
    if let Some(e) = failure {
        return Err(SimError::Task(e));
    }
    let duration_s = start.elapsed().as_secs_f64();
    Ok(total.summary(n, qos, duration_s))
}

/// Runs the simulation on a new multi-thread tokio runtime (2 worker
/// threads), without a stop signal. See [`run`]. Call it from synchronous
/// code only: tokio panics if a runtime is started inside another.
pub fn run_blocking(cfg: SimConfig) -> Result<SimSummary, SimError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sensor-sim")
        .enable_all()
        .build()?;
    rt.block_on(run(cfg, None))
}

/// Splits `host:port`.
fn split_broker(broker: &str) -> Result<(String, u16), SimError> {
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

// ---------------------------------------------------------------------------
// Messages

/// A message's classification, known when it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Accepted by validation, producing this many engine records.
    Valid { records: u8 },
    /// Refused by validation with this reason.
    Malformed(Reason),
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq)]
struct Message {
    topic: String,
    payload: Vec<u8>,
    class: Class,
}

/// The valid shapes `Format` rotates through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    BareTemperature,
    BareHumidity,
    JsonTemperature,
    JsonHumidity,
    Reading,
}

/// Builds one sensor's messages: deterministic for a seed except for the
/// timestamps (and, across sensors, the interleaving of the shared walk).
struct Generator {
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
    fn new(
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
            malformed_seq: index % Reason::ALL.len(),
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

    fn next_message(&mut self) -> Message {
        if self.malformed > 0.0 && self.unit() < self.malformed {
            let reason = Reason::ALL[self.malformed_seq % Reason::ALL.len()];
            self.malformed_seq += 1;
            return malformed_message(&self.device, reason);
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
        let r = self
            .fleet
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .step(self.index, ts);
        valid_message(&self.device, shape, ts, r.temperature, r.humidity)
    }
}

fn splitmix64(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn valid_message(device: &str, shape: Shape, ts: u64, t: f32, h: f32) -> Message {
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

/// A message that [`validate::validate`] refuses with exactly `reason`.
fn malformed_message(device: &str, reason: Reason) -> Message {
    let on = |metric: &str| format!("sensors/{device}/{metric}");
    let (topic, payload): (String, Vec<u8>) = match reason {
        Reason::UnknownTopic => (format!("other/{device}/temperature"), b"21.5".to_vec()),
        Reason::UnknownMetric => (on("pressure"), b"1013".to_vec()),
        Reason::DeviceIdEmpty => ("sensors//temperature".to_owned(), b"21.5".to_vec()),
        // Pad the id with 'x' to at least MAX_DEVICE_ID_LEN + 1 characters.
        Reason::DeviceIdTooLong => (
            format!(
                "sensors/{device:x<width$}/temperature",
                width = crate::record::MAX_DEVICE_ID_LEN + 1
            ),
            b"21.5".to_vec(),
        ),
        Reason::PayloadTooLarge => (
            on("temperature"),
            vec![b'1'; validate::DEFAULT_MAX_PAYLOAD + 1],
        ),
        Reason::NotUtf8 => (on("temperature"), vec![0xff, 0xfe]),
        Reason::NotJson => (on("temperature"), b"warm".to_vec()),
        Reason::MissingValue => (on("temperature"), br#"{"value": "x"}"#.to_vec()),
        Reason::NotFinite => (on("temperature"), b"NaN".to_vec()),
        Reason::TemperatureOutOfRange => (on("temperature"), b"200".to_vec()),
        Reason::HumidityOutOfRange => (on("humidity"), b"120".to_vec()),
        Reason::BadTimestamp => (on("temperature"), br#"{"ts": -5, "value": 20}"#.to_vec()),
    };
    Message {
        topic,
        payload,
        class: Class::Malformed(reason),
    }
}

// ---------------------------------------------------------------------------
// Counting

/// Per-sensor (and total) counts.
#[derive(Debug, Default, Clone)]
struct Tally {
    sent: u64,
    valid: u64,
    records: u64,
    malformed: [u64; Reason::ALL.len()],
    written: u64,
    acked: u64,
    lost: u64,
    errors: u64,
    reconnects: u64,
}

impl Tally {
    fn count(&mut self, class: Class) {
        self.sent += 1;
        match class {
            Class::Valid { records } => {
                self.valid += 1;
                self.records += u64::from(records);
            }
            Class::Malformed(r) => {
                if let Some(i) = Reason::ALL.iter().position(|x| *x == r) {
                    self.malformed[i] += 1;
                }
            }
        }
    }

    fn add(&mut self, o: &Tally) {
        self.sent += o.sent;
        self.valid += o.valid;
        self.records += o.records;
        for (a, b) in self.malformed.iter_mut().zip(o.malformed) {
            *a += b;
        }
        self.written += o.written;
        self.acked += o.acked;
        self.lost += o.lost;
        self.errors += o.errors;
        self.reconnects += o.reconnects;
    }

    fn summary(&self, sensors: usize, qos: u8, duration_s: f64) -> SimSummary {
        let malformed_by_reason: BTreeMap<String, u64> = Reason::ALL
            .iter()
            .zip(self.malformed)
            .filter(|(_, c)| *c > 0)
            .map(|(r, c)| (r.code().to_owned(), c))
            .collect();
        SimSummary {
            sensors,
            sent: self.sent,
            valid: self.valid,
            malformed: self.malformed.iter().sum(),
            malformed_by_reason,
            acked: self.acked,
            qos,
            errors: self.errors,
            reconnects: self.reconnects,
            lost: self.lost,
            duration_s,
            rate: if duration_s > 0.0 {
                self.sent as f64 / duration_s
            } else {
                0.0
            },
            records: self.records,
        }
    }
}

// ---------------------------------------------------------------------------
// MQTT 3.1.1 / 5 clients behind one face

struct ClientOptions {
    id: String,
    host: String,
    port: u16,
    v5: bool,
}

enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

enum EventLoop {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// What the simulator cares about in an event-loop event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    /// Connected; on a reconnect, `dropped` unsent or unacknowledged
    /// publishes of the lost session were discarded (clean session).
    ConnAck {
        dropped: u64,
    },
    /// A PUBLISH was written and flushed to the socket.
    Written,
    PubAck,
    /// DISCONNECT was written and flushed to the socket.
    DisconnectSent,
    Other,
}

fn new_client(o: &ClientOptions) -> (Client, EventLoop) {
    if o.v5 {
        let mut opts = rumqttc::v5::MqttOptions::new(&o.id, &o.host, o.port);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_clean_start(true)
            .set_max_packet_size(Some(MAX_PACKET_SIZE as u32))
            .set_outgoing_inflight_upper_limit(INFLIGHT);
        let (c, e) = rumqttc::v5::AsyncClient::new(opts, REQUEST_CHANNEL_CAPACITY);
        (Client::V5(c), EventLoop::V5(Box::new(e)))
    } else {
        let mut opts = rumqttc::MqttOptions::new(&o.id, &o.host, o.port);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE)
            .set_inflight(INFLIGHT);
        let (c, e) = rumqttc::AsyncClient::new(opts, REQUEST_CHANNEL_CAPACITY);
        (Client::V4(c), EventLoop::V4(Box::new(e)))
    }
}

impl Client {
    async fn publish(&self, topic: String, qos: u8, payload: Vec<u8>) -> Result<(), String> {
        match self {
            Client::V4(c) => {
                let qos = if qos == 0 {
                    rumqttc::QoS::AtMostOnce
                } else {
                    rumqttc::QoS::AtLeastOnce
                };
                c.publish(topic, qos, false, payload)
                    .await
                    .map_err(|e| e.to_string())
            }
            Client::V5(c) => {
                use rumqttc::v5::mqttbytes::QoS;
                let qos = if qos == 0 {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                };
                c.publish(topic, qos, false, payload)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    fn try_disconnect(&self) -> Result<(), String> {
        match self {
            Client::V4(c) => c.try_disconnect().map_err(|e| e.to_string()),
            Client::V5(c) => c.try_disconnect().map_err(|e| e.to_string()),
        }
    }
}

impl EventLoop {
    /// Publishes waiting to be re-sent (moved out of the session when the
    /// connection was lost; discarded on reconnect unless the broker kept
    /// the session).
    fn pending_publishes(&self) -> u64 {
        let n = match self {
            EventLoop::V4(e) => e
                .pending
                .iter()
                .filter(|r| matches!(r, rumqttc::Request::Publish(_)))
                .count(),
            EventLoop::V5(e) => e
                .pending
                .iter()
                .filter(|r| matches!(r, rumqttc::v5::Request::Publish(_)))
                .count(),
        };
        n as u64
    }

    async fn poll(&mut self) -> Result<Ev, String> {
        use rumqttc::Outgoing;
        let pending = self.pending_publishes();
        let out = |o: &Outgoing| match o {
            Outgoing::Publish(_) => Ev::Written,
            Outgoing::Disconnect => Ev::DisconnectSent,
            _ => Ev::Other,
        };
        let ev = match self {
            EventLoop::V4(e) => {
                use rumqttc::{Event, Packet};
                match e.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Ok(Ev::ConnAck { dropped: 0 }),
                    Ok(Event::Incoming(Packet::PubAck(_))) => Ok(Ev::PubAck),
                    Ok(Event::Incoming(_)) => Ok(Ev::Other),
                    Ok(Event::Outgoing(o)) => Ok(out(&o)),
                    Err(e) => Err(e.to_string()),
                }
            }
            EventLoop::V5(e) => {
                use rumqttc::v5::mqttbytes::v5::Packet;
                use rumqttc::v5::Event;
                match e.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Ok(Ev::ConnAck { dropped: 0 }),
                    Ok(Event::Incoming(Packet::PubAck(_))) => Ok(Ev::PubAck),
                    Ok(Event::Incoming(_)) => Ok(Ev::Other),
                    Ok(Event::Outgoing(o)) => Ok(out(&o)),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        match ev {
            Ok(Ev::ConnAck { .. }) => Ok(Ev::ConnAck {
                dropped: pending.saturating_sub(self.pending_publishes()),
            }),
            ev => ev,
        }
    }
}

/// Connects one client, retrying until `deadline`. Returns the client, its
/// event loop and the number of failed attempts.
async fn connect(o: ClientOptions, deadline: Instant) -> Result<(Client, EventLoop, u64), String> {
    let (client, mut eventloop) = new_client(&o);
    let mut failures = 0u64;
    let mut backoff = Duration::from_millis(50);
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Ev::ConnAck { .. })) => return Ok((client, eventloop, failures)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                failures += 1;
                tracing::debug!(client = %o.id, error = %e, "connect failed");
                if Instant::now() + backoff >= deadline {
                    return Err(format!("{}: {e}", o.id));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(_) => return Err(format!("{}: timed out", o.id)),
        }
    }
}

// ---------------------------------------------------------------------------
// One sensor

/// What the event-loop task reports to the publisher.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    written: u64,
    acked: u64,
    /// Messages dropped unsent at a reconnect (clean session).
    dropped: u64,
    /// The event loop gave up (it could not reconnect).
    dead: bool,
}

#[derive(Debug, Default)]
struct DriverOutcome {
    written: u64,
    acked: u64,
    errors: u64,
    reconnects: u64,
}

/// Drives the event loop until the broker closes after our DISCONNECT, or
/// until it gives up reconnecting: after [`RECONNECT_WINDOW`] without a
/// connection, or at once once the run is over (`stop` or `end`).
async fn drive(
    mut eventloop: EventLoop,
    progress: watch::Sender<Progress>,
    mut stop: Option<watch::Receiver<bool>>,
    end: Option<Instant>,
) -> DriverOutcome {
    let mut out = DriverOutcome::default();
    let mut disconnecting = false;
    let mut down_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        let ev = if disconnecting {
            match tokio::time::timeout(CLOSE_TIMEOUT, eventloop.poll()).await {
                Ok(ev) => ev,
                Err(_) => break,
            }
        } else {
            eventloop.poll().await
        };
        match ev {
            Ok(Ev::Written) => {
                out.written += 1;
                progress.send_modify(|p| p.written += 1);
            }
            Ok(Ev::PubAck) => {
                out.acked += 1;
                progress.send_modify(|p| p.acked += 1);
            }
            Ok(Ev::ConnAck { dropped }) => {
                down_since = None;
                backoff = Duration::from_millis(50);
                if dropped > 0 {
                    tracing::warn!(dropped, "reconnected; unsent messages were dropped");
                    progress.send_modify(|p| p.dropped += dropped);
                }
            }
            Ok(Ev::DisconnectSent) => disconnecting = true,
            Ok(Ev::Other) => {}
            // The broker closing the connection after our DISCONNECT.
            Err(_) if disconnecting => break,
            Err(e) => {
                out.errors += 1;
                let down = *down_since.get_or_insert_with(Instant::now);
                let over = stop_requested(&stop) || end.is_some_and(|e| Instant::now() >= e);
                if over || down.elapsed() >= RECONNECT_WINDOW {
                    tracing::warn!(error = %e, "connection lost; giving up");
                    break;
                }
                tracing::warn!(error = %e, "connection lost; reconnecting");
                out.reconnects += 1;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop_signal(&mut stop) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    progress.send_modify(|p| p.dead = true);
    out
}

/// When and how much one sensor publishes.
struct Plan {
    qos: u8,
    quota: Option<u64>,
    end: Option<Instant>,
    period: Option<Duration>,
    first: Instant,
}

/// Resolves when `stop` becomes true; never if there is none or its sender
/// is gone.
async fn stop_signal(stop: &mut Option<watch::Receiver<bool>>) {
    if let Some(rx) = stop {
        if rx.wait_for(|s| *s).await.is_ok() {
            return;
        }
    }
    std::future::pending::<()>().await
}

fn stop_requested(stop: &Option<watch::Receiver<bool>>) -> bool {
    stop.as_ref().is_some_and(|rx| *rx.borrow())
}

/// Waits until `done(progress)`, as long as the event loop keeps making
/// progress (at most [`DRAIN_STALL_TIMEOUT`] between updates). False if it
/// stalled or the event loop gave up.
async fn drain(progress: &mut watch::Receiver<Progress>, done: impl Fn(&Progress) -> bool) -> bool {
    loop {
        // Copy out: the `Ref` locks the channel against the event loop.
        let p = *progress.borrow_and_update();
        if done(&p) {
            return true;
        }
        if p.dead {
            return false;
        }
        match tokio::time::timeout(DRAIN_STALL_TIMEOUT, progress.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return done(&progress.borrow()),
        }
    }
}

async fn sensor(
    client: Client,
    eventloop: EventLoop,
    mut generator: Generator,
    plan: Plan,
    mut stop: Option<watch::Receiver<bool>>,
) -> Tally {
    let (progress_tx, mut progress) = watch::channel(Progress::default());
    let driver = tokio::spawn(drive(eventloop, progress_tx, stop.clone(), plan.end));
    let mut tally = Tally::default();

    let mut k = 0u64;
    loop {
        if plan.quota.is_some_and(|q| k >= q) || stop_requested(&stop) {
            break;
        }
        if let Some(period) = plan.period {
            let Some(due) = Duration::try_from_secs_f64(period.as_secs_f64() * k as f64)
                .ok()
                .and_then(|d| plan.first.checked_add(d))
            else {
                break;
            };
            if plan.end.is_some_and(|end| due >= end) {
                break;
            }
            if due > Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = stop_signal(&mut stop) => break,
                }
            }
        }
        if plan.end.is_some_and(|end| Instant::now() >= end) {
            break;
        }
        let msg = generator.next_message();
        // Not raced against the stop signal: a cancelled send may still
        // have handed the message over, which would spoil the accounting.
        match client.publish(msg.topic, plan.qos, msg.payload).await {
            Ok(()) => tally.count(msg.class),
            Err(e) => {
                // The event loop is gone (it gave up reconnecting).
                tracing::warn!(error = %e, "publish failed");
                tally.errors += 1;
                break;
            }
        }
        k += 1;
    }

    // Wait until everything sent is on the wire (QoS 0) or acknowledged
    // (QoS 1), then disconnect.
    let sent = tally.sent;
    let qos = plan.qos;
    let confirmed = |p: &Progress| if qos == 0 { p.written } else { p.acked };
    let drained = drain(&mut progress, |p| confirmed(p) + p.dropped >= sent).await;
    if !drained {
        let p = *progress.borrow();
        tracing::warn!(
            sent,
            confirmed = confirmed(&p),
            "sensor could not confirm all its messages"
        );
    }
    if let Err(e) = client.try_disconnect() {
        tracing::debug!(error = %e, "could not request DISCONNECT");
    }
    let mut driver = driver;
    let outcome = match tokio::time::timeout(CLOSE_TIMEOUT * 2, &mut driver).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "event loop task failed");
            tally.errors += 1;
            let p = *progress.borrow();
            DriverOutcome {
                written: p.written,
                acked: p.acked,
                ..DriverOutcome::default()
            }
        }
        Err(_) => {
            driver.abort();
            tracing::warn!("event loop did not finish after DISCONNECT");
            tally.errors += 1;
            let p = *progress.borrow();
            DriverOutcome {
                written: p.written,
                acked: p.acked,
                ..DriverOutcome::default()
            }
        }
    };
    tally.written = outcome.written;
    tally.acked = outcome.acked;
    tally.errors += outcome.errors;
    tally.reconnects = outcome.reconnects;
    let confirmed = if qos == 0 {
        outcome.written
    } else {
        outcome.acked
    };
    tally.lost = sent.saturating_sub(confirmed);
    drop(client);
    tally
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::validate::{validate, Limits, Metric};

    fn check(m: &Message) {
        let got = validate(m.topic.as_bytes(), &m.payload, &Limits::default(), 0);
        match (m.class, got) {
            (Class::Valid { records }, Ok(a)) => {
                let want = if a.metric == Metric::Reading { 2 } else { 1 };
                assert_eq!(records, want, "{m:?}");
            }
            (Class::Malformed(r), Err(got)) => assert_eq!(r, got, "{m:?}"),
            (class, got) => panic!("{m:?}: class {class:?} but validation says {got:?}"),
        }
    }

    #[test]
    fn every_malformed_kind_is_refused_with_its_reason() {
        for device in ["sim-0", "d", "sixteen-bytes-id", "wide-é-ü"] {
            for reason in Reason::ALL {
                let m = malformed_message(device, reason);
                assert_eq!(m.class, Class::Malformed(reason));
                check(&m);
            }
        }
    }

    #[test]
    fn every_valid_shape_is_accepted() {
        for shape in [
            Shape::BareTemperature,
            Shape::BareHumidity,
            Shape::JsonTemperature,
            Shape::JsonHumidity,
            Shape::Reading,
        ] {
            for (t, h) in [
                (-39.999, 0.001),
                (124.0, 99.5),
                (-0.001, 50.0),
                (21.53, 45.1),
            ] {
                check(&valid_message("sim-12", shape, now_us(), t, h));
            }
        }
    }

    #[test]
    fn generated_streams_validate_as_classified() {
        for format in [Format::Bare, Format::Json, Format::Reading, Format::Mixed] {
            let fleet = Fleet::new("sim", 4, 7);
            let ids: Vec<String> = fleet.ids().map(|d| d.to_string()).collect();
            let fleet = Arc::new(Mutex::new(fleet));
            let mut reasons = std::collections::BTreeSet::new();
            let mut tally = Tally::default();
            for (i, id) in ids.iter().enumerate() {
                let mut g = Generator::new(i, id.clone(), format, 0.3, 7, Arc::clone(&fleet));
                for _ in 0..2_000 {
                    let m = g.next_message();
                    check(&m);
                    if let Class::Malformed(r) = m.class {
                        reasons.insert(r);
                    }
                    tally.count(m.class);
                }
            }
            assert_eq!(reasons.len(), Reason::ALL.len(), "{format}");
            let frac = (tally.sent - tally.valid) as f64 / tally.sent as f64;
            assert!((0.25..0.35).contains(&frac), "{format}: {frac}");
            let s = tally.summary(4, 0, 1.0);
            assert_eq!(s.valid + s.malformed, s.sent);
            assert_eq!(s.malformed_by_reason.values().sum::<u64>(), s.malformed);
        }
    }

    #[test]
    fn no_malformed_means_all_valid() {
        let fleet = Arc::new(Mutex::new(Fleet::new("p", 1, 1)));
        let mut g = Generator::new(0, "p-0".into(), Format::Mixed, 0.0, 1, fleet);
        let mut shapes = std::collections::BTreeSet::new();
        for _ in 0..600 {
            let m = g.next_message();
            check(&m);
            assert!(matches!(m.class, Class::Valid { .. }));
            shapes.insert(m.topic.rsplit('/').next().map(str::to_owned));
            assert!(!m.payload.is_empty());
        }
        assert_eq!(shapes.len(), 3);
    }

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
