//! The MQTT server: embedded broker, bridge thread and engine topics.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::bridge::{Bridge, IngestSnapshot, IngestStats};
use super::config::ServerConfig;
use super::dead_letter::DeadLetter;
use super::health::{self, Listener};
use super::validate::Limits;
use crate::error::EngineError;
use crate::{Engine, OverflowPolicy, Reading, TopicConfig};

/// Engine topic of temperature readings.
pub const TEMPERATURE: &str = "temperature";
/// Engine topic of humidity readings.
pub const HUMIDITY: &str = "humidity";
/// Engine topic of refused messages.
pub const DEAD_LETTER: &str = "dead_letter";

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listen address is taken or not allowed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The broker did not start accepting connections.
    #[error("the MQTT broker did not start listening on {0} within 5 s")]
    NotListening(SocketAddr),
    /// Creating engine topics failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The in-process link to the broker failed.
    #[error("cannot link to the embedded broker: {0}")]
    Link(String),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Spawn(#[from] std::io::Error),
}

/// A running MQTT front end.
///
/// rumqttd 0.20 has no way to stop its listeners, so the broker threads live
/// until the process exits; [`Server::shutdown`] drains and stops the bridge,
/// after which nothing more enters the engine.
pub struct Server {
    engine: Engine<Reading>,
    dead_letters: Engine<DeadLetter>,
    stats: Arc<IngestStats>,
    stop: Arc<AtomicBool>,
    bridge: Option<JoinHandle<()>>,
    listeners: Arc<Vec<Listener>>,
    config: ServerConfig,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listen", &self.config.mqtt.listen)
            .field("listen_v5", &self.config.mqtt.listen_v5)
            .finish_non_exhaustive()
    }
}

fn wait_listening(addr: SocketAddr) -> Result<(), ServerError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(ServerError::NotListening(addr))
}

impl Server {
    /// Creates the engine topics, starts the broker and the bridge, and
    /// returns once the listeners accept connections.
    pub fn start(config: ServerConfig) -> Result<Self, ServerError> {
        config.check()?;
        let addrs: Vec<SocketAddr> = std::iter::once(config.mqtt.listen)
            .chain(config.mqtt.listen_v5)
            .collect();
        // Fail early, with the address, if a port is taken: rumqttd only logs it.
        for &addr in &addrs {
            TcpListener::bind(addr).map_err(|source| ServerError::Bind { addr, source })?;
        }
        let i = &config.ingest;
        let engine: Engine<Reading> = Engine::new();
        let topic = TopicConfig::new(i.partitions, i.capacity)
            .policy(i.policy)
            .layout(i.layout);
        engine.create_topic(TEMPERATURE, topic)?;
        engine.create_topic(HUMIDITY, topic)?;
        let dead_letters: Engine<DeadLetter> = Engine::new();
        dead_letters.create_topic(
            DEAD_LETTER,
            TopicConfig::new(1, i.dead_letter_capacity).policy(OverflowPolicy::Overwrite),
        )?;

        let mut broker = rumqttd::Broker::new(config.broker_config());
        let (mut tx, rx) = broker
            .link("telering-bridge")
            .map_err(|e| ServerError::Link(e.to_string()))?;
        // Every topic: messages outside `sensors/` are dead-lettered too.
        tx.subscribe("#")
            .map_err(|e| ServerError::Link(e.to_string()))?;
        std::thread::Builder::new()
            .name("telering-broker".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    tracing::error!("MQTT broker stopped: {e}");
                }
                // Keep the link's sender alive with the broker.
                drop(tx);
            })?;
        for &addr in &addrs {
            wait_listening(addr)?;
        }
        let listeners: Arc<Vec<Listener>> = Arc::new(
            addrs
                .iter()
                .map(|&addr| {
                    let v5 = Some(addr) == config.mqtt.listen_v5;
                    Listener {
                        addr,
                        v5,
                        healthy: AtomicBool::new(health::probe(addr, v5)),
                    }
                })
                .collect(),
        );

        let stats = Arc::new(IngestStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let bridge = Bridge {
            rx,
            temperature: engine.producer(TEMPERATURE)?,
            humidity: engine.producer(HUMIDITY)?,
            dead: dead_letters.producer(DEAD_LETTER)?,
            limits: Limits {
                max_payload: i.max_payload,
            },
            stats: stats.clone(),
            stop: stop.clone(),
            next_offset: None,
        };
        let bridge = std::thread::Builder::new()
            .name("telering-bridge".into())
            .spawn(move || bridge.run())?;
        {
            let (listeners, stop) = (listeners.clone(), stop.clone());
            std::thread::Builder::new()
                .name("telering-health".into())
                .spawn(move || health::watch(listeners, stop))?;
        }
        tracing::info!(
            "MQTT listening on {} (3.1.1){}",
            config.mqtt.listen,
            config
                .mqtt
                .listen_v5
                .map_or(String::new(), |a| format!(" and {a} (5)"))
        );
        Ok(Self {
            engine,
            dead_letters,
            stats,
            stop,
            bridge: Some(bridge),
            listeners,
            config,
        })
    }

    /// The engine with `temperature` and `humidity`.
    pub fn engine(&self) -> &Engine<Reading> {
        &self.engine
    }

    /// The engine with `dead_letter`.
    pub fn dead_letters(&self) -> &Engine<DeadLetter> {
        &self.dead_letters
    }

    /// The configuration in use.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Ingest counters now.
    pub fn stats(&self) -> IngestSnapshot {
        self.stats.snapshot()
    }

    /// Whether every listener completed an MQTT CONNECT at its last probe
    /// (every few seconds; see the `health` module for why this matters).
    pub fn healthy(&self) -> bool {
        self.listeners
            .iter()
            .all(|l| l.healthy.load(Ordering::Relaxed))
    }

    /// Listeners that failed their last probe.
    pub fn unhealthy_listeners(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|l| !l.healthy.load(Ordering::Relaxed))
            .map(|l| l.addr)
            .collect()
    }

    /// Whether the bridge thread is still running.
    pub fn is_running(&self) -> bool {
        self.bridge.as_ref().is_some_and(|b| !b.is_finished())
    }

    /// Lets the bridge read what the broker still holds (until the link is
    /// quiet), stops it, and returns the final counters. Consumers can then
    /// drain the engine.
    pub fn shutdown(mut self) -> IngestSnapshot {
        self.stop_bridge();
        self.stats.snapshot()
    }

    fn stop_bridge(&mut self) {
        // Release: nothing is published with it; the bridge polls it.
        self.stop.store(true, Ordering::Release);
        if let Some(b) = self.bridge.take() {
            if b.join().is_err() {
                tracing::error!("the bridge thread panicked");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_bridge();
    }
}
