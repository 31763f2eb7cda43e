//! Bare rumqttd: rumqttd 0.20 sized with telering's `[mqtt]` limits (the
//! broker telering embedded before it had its own endpoint) on a free port,
//! read through an in-process link by one thread that counts and records
//! latency, with no validation and no engine: what moving MQTT messages
//! alone costs in a Rust broker. rumqttd 0.20 cannot be stopped: the
//! broker's threads (`router-0`, `bare-rumqttd-v4`) stay, idle, until the
//! process exits.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttd::local::{LinkError, LinkRx};
use rumqttd::Notification;
use std::collections::HashMap;

use telering::mqtt::ServerConfig;
use telering::record::now_us;

use crate::common::{free_port, payload_ts, wait_listening, Recorder};

/// Name of the broker's network thread.
const SERVER_NAME: &str = "bare-rumqttd-v4";

pub struct Rumqttd {
    addr: SocketAddr,
    recorder: Arc<Recorder>,
    /// Messages the router skipped for the link (offset gaps).
    dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<Result<(), String>>>,
}

fn read(
    mut rx: LinkRx,
    recorder: &Recorder,
    dropped: &AtomicU64,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut next_offset: Option<u64> = None;
    // Acquire: pairs with the Release in `stop`; nothing else is published.
    while !stop.load(Ordering::Acquire) {
        match rx.recv_deadline(Instant::now() + Duration::from_millis(50)) {
            Ok(Some(Notification::Forward(f))) => {
                if let Some((_, offset)) = f.cursor {
                    if let Some(expected) = next_offset {
                        if offset > expected {
                            dropped.fetch_add(offset - expected, Ordering::Relaxed);
                        }
                    }
                    next_offset = Some(offset + 1);
                }
                recorder.record(now_us(), payload_ts(&f.publish.payload));
            }
            // Without this the router stops sending after a batch.
            Ok(Some(Notification::Unschedule)) => rx
                .ready()
                .map_err(|e| format!("cannot reschedule the link: {e}"))?,
            Ok(_) | Err(LinkError::RecvTimeout(_)) => {}
            Err(e) => return Err(format!("the broker link closed: {e}")),
        }
    }
    Ok(())
}

impl Rumqttd {
    pub fn start() -> Result<Self, String> {
        let addr = free_port().map_err(|e| format!("no free loopback port: {e}"))?;
        let config = broker_config(addr, &ServerConfig::default());
        let mut broker = rumqttd::Broker::new(config);
        let (mut tx, rx) = broker
            .link("mqtt-bench-link")
            .map_err(|e| format!("cannot link to rumqttd: {e}"))?;
        // Every topic, as telering's endpoint takes every PUBLISH.
        tx.subscribe("#")
            .map_err(|e| format!("cannot subscribe the link: {e}"))?;
        std::thread::Builder::new()
            .name("bare-rumqttd".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    eprintln!("mqtt-bench: bare rumqttd stopped: {e}");
                }
                drop(tx);
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        wait_listening(addr, Duration::from_secs(5)).map_err(|e| format!("bare rumqttd: {e}"))?;

        let recorder = Arc::new(Recorder::default());
        let dropped = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (recorder, dropped, stop) = (recorder.clone(), dropped.clone(), stop.clone());
            std::thread::Builder::new()
                .name("bare-link".into())
                .spawn(move || read(rx, &recorder, &dropped, &stop))
                .map_err(|e| format!("cannot start a thread: {e}"))?
        };
        Ok(Self {
            addr,
            recorder,
            dropped,
            stop,
            reader: Some(reader),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Whether the link reader is still running.
    pub fn is_running(&self) -> bool {
        self.reader.as_ref().is_some_and(|r| !r.is_finished())
    }

    /// Starts a run.
    pub fn begin(&mut self) {
        self.recorder.reset();
        self.dropped.store(0, Ordering::Relaxed);
    }

    /// Messages the router dropped for the link since [`Rumqttd::begin`].
    pub fn dropped_by_broker(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops the link reader (the broker itself cannot be stopped).
    pub fn stop(mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Release);
        match self.reader.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("the link reader panicked".into()),
            None => Ok(()),
        }
    }
}

/// rumqttd sized as telering's rumqttd front end was (it is the peer this
/// benchmark measures telering's endpoint against): telering's connection
/// limits, a router of 4 segments of 16 MiB for the one `#` filter the link
/// reads, one MQTT 3.1.1 listener.
fn broker_config(listen: SocketAddr, cfg: &ServerConfig) -> rumqttd::Config {
    let m = &cfg.mqtt;
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: m.connect_timeout_ms.min(u64::from(u16::MAX)) as u16,
        max_payload_size: m.max_packet_size,
        max_inflight_count: usize::from(m.receive_maximum),
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: SERVER_NAME.to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: m.max_connections,
            max_outgoing_packet_count: 200,
            max_segment_size: 16 * 1024 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("v4".to_owned(), server)])),
        v5: None,
        ..Default::default()
    }
}
