//! Sensor simulator: many MQTT clients publishing readings (and, on request,
//! deliberately invalid messages) to a broker, with exact accounting.
//!
//! Each simulated sensor is its own `rumqttc` client with its own event loop
//! task; all sensors share one tokio runtime. Sensor `i` uses client id
//! `{client_prefix}-{i}` and device id `fleet.ids()[i]` of
//! `Fleet::new(client_prefix, sensors, seed)`; its readings are the fleet's
//! random walk ([`Fleet::step`]).
//!
//! Messages follow the topic scheme telering serves:
//! `sensors/<device>/temperature|humidity` with a bare number (`21.53`) or
//! JSON `{"ts": <µs>, "value": <n>}`, and `sensors/<device>/reading` with
//! `{"ts": <µs>, "temperature": <n>, "humidity": <n>}`. `ts` is the send time
//! ([`now_us`]), so the receiver can measure end-to-end latency.
//!
//! With probability [`SimConfig::malformed`] a message is replaced by one that
//! telering refuses, cycling through every [`Fault`]; the
//! [`SimSummary`] counts them by reason code ([`Fault::code`]).
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
//!
//! # Credentials and TLS
//!
//! With [`SimConfig::username`] every sensor logs in with that user name
//! (the literal `{id}` in it replaced by the sensor's device id, so
//! `"{id}"` logs each device in as itself) and [`SimConfig::password`].
//! With [`SimConfig::cafile`] the sensors connect over TLS (rustls),
//! verifying the broker's certificate against that CA file only.
//!
//! A CONNACK refusing a sensor (bad user name or password, not authorized:
//! 3.1.1 codes 0x04/0x05, MQTT 5 0x86/0x87, or any other) is never retried:
//! while connecting, [`run`] fails with [`SimError::Refused`], which names
//! the code, the number of sensors refused, a client and its user name;
//! mid-run, a refused reconnect ends that sensor and is counted in
//! [`SimSummary::refused`] and [`SimSummary::refused_by_code`].
//!
//! # Layout
//!
//! - [`config`]: [`SimConfig`], limits, [`SimError`];
//! - [`fleet`]: the devices' random walk ([`Fleet`]), used by telering's
//!   demo pipeline as well;
//! - [`generator`]: the messages one sensor publishes, valid or [`Fault`]s;
//! - `tally`: the counts and the [`SimSummary`];
//! - `client`: rumqttc 3.1.1 and 5 clients behind one face;
//! - `sensor`: one sensor's publish loop and event-loop task;
//! - [`log`]: the one tracing setup of telering's binaries.
//!
//! This crate links no part of telering: it is the device side.

pub mod config;
pub mod fleet;
pub mod generator;
pub mod log;

mod client;
mod sensor;
mod tally;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use client::{connect, ClientOptions, ConnectFailure};
use config::{split_broker, CONNECT_CONCURRENCY};
pub use config::{
    Format, Rate, Refusal, SimConfig, SimError, CLOSE_TIMEOUT, CONNECT_TIMEOUT,
    DRAIN_STALL_TIMEOUT, INFLIGHT, MAX_PACKET_SIZE, RECONNECT_WINDOW, REQUEST_CHANNEL_CAPACITY,
};
pub use fleet::{now_us, Fleet, MAX_DEVICE_ID_LEN};
pub use generator::{Class, Fault, Generator, Message, Shape, DEFAULT_MAX_PAYLOAD};
use sensor::{sensor, Plan};
pub use tally::SimSummary;
use tally::Tally;

/// Runs the simulation on the current tokio runtime until `duration`,
/// `count` or `stop` (when it becomes `true`), whichever comes first.
///
/// The runtime needs tokio's time and I/O drivers (`enable_all`). Returns
/// [`SimError::Refused`] if the broker refused any sensor in its CONNACK (a
/// wrong password, say; a refusal is not retried, so this comes as soon as
/// every sensor has its answer), [`SimError::Connect`] if not every sensor
/// connects within [`CONNECT_TIMEOUT`] (plus 1 ms per sensor). Once
/// connected, lost connections are retried and counted, not fatal; a
/// reconnect the broker refuses ends that sensor and is counted in
/// [`SimSummary::refused`].
pub async fn run(
    cfg: SimConfig,
    stop: Option<watch::Receiver<bool>>,
) -> Result<SimSummary, SimError> {
    cfg.check()?;
    let (host, port) = split_broker(&cfg.broker)?;
    let n = cfg.sensors;
    let fleet = Fleet::new(&cfg.client_prefix, n, cfg.seed);
    let devices: Vec<String> = fleet.ids().map(str::to_owned).collect();
    let fleet = Arc::new(Mutex::new(fleet));
    let tls = cfg.cafile.as_deref().map(client::tls_config).transpose()?;

    // Connect every sensor first, so the rate is measured on a warm fleet.
    let timeout = CONNECT_TIMEOUT + Duration::from_millis(n as u64);
    let deadline = Instant::now() + timeout;
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut connecting = Vec::with_capacity(n);
    for (i, device) in devices.iter().enumerate() {
        let opts = ClientOptions {
            id: format!("{}-{i}", cfg.client_prefix),
            host: host.clone(),
            port,
            v5: cfg.mqtt_v5,
            login: cfg
                .username_for(device)
                .map(|u| (u, cfg.password.clone().unwrap_or_default())),
            tls: tls.clone(),
        };
        let id = opts.id.clone();
        let username = opts.login.as_ref().map(|l| l.0.clone());
        let permits = Arc::clone(&permits);
        let task = tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            connect(opts, deadline).await
        });
        connecting.push((id, username, task));
    }
    let mut sessions = Vec::with_capacity(n);
    let mut last_error = None;
    let mut refused = Vec::new();
    let mut connect_errors = 0u64;
    for (id, username, task) in connecting {
        match task.await {
            Ok(Ok((client, eventloop, failures))) => {
                connect_errors += failures;
                sessions.push((client, eventloop));
            }
            Ok(Err(ConnectFailure::Refused(r))) => refused.push((r, id, username)),
            Ok(Err(ConnectFailure::Other(e))) => last_error = Some(e),
            Err(e) => last_error = Some(format!("connect task failed: {e}")),
        }
    }
    if let Some((refusal, client, username)) = refused.first().cloned() {
        tracing::error!(
            refused = refused.len(),
            sensors = n,
            %refusal,
            %client,
            "the broker refused sensors' connections"
        );
        return Err(SimError::Refused {
            broker: cfg.broker.clone(),
            refused: refused.len(),
            sensors: n,
            refusal,
            client,
            username,
        });
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
