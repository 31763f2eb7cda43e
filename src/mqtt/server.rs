//! The MQTT server: the engine topics and the endpoint feeding them.

use std::net::SocketAddr;
use std::sync::Arc;

use super::config::ServerConfig;
use super::dead_letter::DeadLetter;
use super::endpoint::Endpoint;
use super::ingest::{IngestSnapshot, IngestStats, Shards};
use super::validate::Limits;
use crate::error::EngineError;
use crate::{Engine, OverflowPolicy, Reading, TopicConfig};

/// Engine topic of temperature readings.
pub const TEMPERATURE: &str = "temperature";
/// Engine topic of humidity readings.
pub const HUMIDITY: &str = "humidity";
/// Engine topic of refused messages (one partition per ingest shard).
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
    /// Creating engine topics failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    /// The TLS certificate, key or client CA cannot be used.
    #[error(transparent)]
    Tls(#[from] super::endpoint::TlsError),
}

/// A running MQTT front end: the engine topics, and the endpoint whose
/// shards publish into them.
pub struct Server {
    engine: Engine<Reading>,
    dead_letters: Engine<DeadLetter>,
    stats: Arc<IngestStats>,
    endpoint: Endpoint,
    config: ServerConfig,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// A server whose engine topics exist but which does not listen yet
/// ([`Server::prepare`]). Consumers that join its engine now see every
/// record the endpoint will accept, as a Kafka consumer started before its
/// producers does, even with [`crate::OffsetReset::Latest`].
pub struct Prepared {
    engine: Engine<Reading>,
    dead_letters: Engine<DeadLetter>,
    plan: Shards,
    config: ServerConfig,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("listen", &self.config.mqtt.listen)
            .finish_non_exhaustive()
    }
}

impl Prepared {
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

    /// Starts the endpoint; returns once it listens.
    pub fn listen(self) -> Result<Server, ServerError> {
        let Self {
            engine,
            dead_letters,
            plan,
            config,
        } = self;
        let shards = config.shards();
        let stats = plan.stats.clone();
        let addr = config.mqtt.listen;
        let guard = config.auth.guard(&addr)?;
        let tls = match &config.tls {
            Some(t) => Some(super::endpoint::TlsAcceptors::new(t.tls_config())?),
            None => None,
        };
        let endpoint = Endpoint::start(config.endpoint(), guard, tls, plan)
            .map_err(|source| ServerError::Bind { addr, source })?;
        tracing::info!(
            "MQTT 3.1, 3.1.1 and 5 on {} ({shards} ingest shards)",
            endpoint.local_addr()
        );
        if let Some(t) = endpoint.tls_addr() {
            tracing::info!("MQTT over TLS on {t}");
        }
        if let (Some(dir), Some(j)) = (engine.data_dir(), engine.journal_stats()) {
            tracing::info!(
                "journal in {}: {} records recovered, {} truncated from a torn tail",
                dir.display(),
                j.recovered,
                j.truncated
            );
        }
        Ok(Server {
            engine,
            dead_letters,
            stats,
            endpoint,
            config,
        })
    }
}

impl Server {
    /// Creates the engine topics and starts the endpoint; returns once it
    /// listens. To attach consumers before the first device can publish,
    /// use [`Server::prepare`] and [`Prepared::listen`].
    pub fn start(config: ServerConfig) -> Result<Self, ServerError> {
        Self::prepare(config)?.listen()
    }

    /// Checks the configuration, opens the journal and creates the engine
    /// topics, without listening yet.
    pub fn prepare(config: ServerConfig) -> Result<Prepared, ServerError> {
        config.check()?;
        let i = &config.ingest;
        let shards = config.shards();
        let journal = config.journal.journal_config()?;
        let journaled = journal.is_some();
        let engine: Engine<Reading> = match journal {
            Some(j) => Engine::with_journal(j)?,
            None => Engine::new(),
        };
        let topic = TopicConfig::new(i.partitions, i.capacity)
            .policy(i.policy)
            .layout(i.layout)
            .journaled(journaled);
        engine.create_topic(TEMPERATURE, topic)?;
        engine.create_topic(HUMIDITY, topic)?;
        let logs = match (
            engine.journal_logs(TEMPERATURE)?,
            engine.journal_logs(HUMIDITY)?,
        ) {
            (Some(t), Some(h)) => Some([t, h]),
            _ => None,
        };
        let dead_letters: Engine<DeadLetter> = Engine::new();
        dead_letters.create_topic(
            DEAD_LETTER,
            TopicConfig::new(shards as u32, i.dead_letter_capacity)
                .policy(OverflowPolicy::Overwrite),
        )?;
        let plan = Shards::new(
            shards,
            engine.producer(TEMPERATURE)?,
            engine.producer(HUMIDITY)?,
            dead_letters.producer(DEAD_LETTER)?,
            Limits {
                max_payload: i.max_payload,
            },
            logs,
        );
        // The journal wakes every shard's forwarder after each pass, so
        // acknowledgements waiting for it go out.
        let wake = plan.wake.clone();
        engine.on_journal_progress(Arc::new(move || {
            for w in wake.iter() {
                w.notify_one();
            }
        }));
        Ok(Prepared {
            engine,
            dead_letters,
            plan,
            config,
        })
    }

    /// The TLS listener's address, if there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.endpoint.tls_addr()
    }

    /// Reads the TLS certificate and key again (SIGHUP): new connections
    /// get them; on error the old ones stay.
    pub fn reload_tls(&self) -> Result<(), super::endpoint::TlsError> {
        self.endpoint.reload_tls()
    }

    /// The address the endpoint listens on (the port, when the
    /// configuration asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint.local_addr()
    }

    /// The engine with `temperature` and `humidity`.
    pub fn engine(&self) -> &Engine<Reading> {
        &self.engine
    }

    /// The engine with `dead_letter`.
    pub fn dead_letters(&self) -> &Engine<DeadLetter> {
        &self.dead_letters
    }

    /// The journal's counters (`None` without a journal).
    pub fn journal_stats(&self) -> Option<crate::journal::JournalStats> {
        self.engine.journal_stats()
    }

    /// The configuration in use.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Ingest counters now.
    pub fn stats(&self) -> IngestSnapshot {
        self.stats.snapshot()
    }

    /// Refusals by authentication, the ACL and the per-address limit.
    pub fn guard_stats(&self) -> Arc<super::endpoint::GuardStats> {
        self.endpoint.guard_stats()
    }

    /// MQTT connections being served now.
    pub fn connections(&self) -> usize {
        self.endpoint.connections()
    }

    /// Whether every shard thread is still running.
    pub fn is_running(&self) -> bool {
        self.endpoint.is_running()
    }

    /// Stops accepting, acknowledges what the connections read, drains the
    /// hand-off rings and returns the final counters. Consumers can then
    /// drain the engine.
    pub fn shutdown(mut self) -> IngestSnapshot {
        self.endpoint.shutdown();
        self.stats.snapshot()
    }
}
