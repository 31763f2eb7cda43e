//! The MQTT front end: an MQTT endpoint telering owns, feeding the engine.
//!
//! Layers, bottom up:
//! - [`validate`]: the topic scheme `sensors/<device>/<metric>`, the
//!   payloads, and the reason codes of refusals;
//! - [`ingest`]: the ingest stage on shards: validate, hand each record to
//!   the shard that owns its partition, report the verdict;
//! - [`endpoint`]: MQTT 3.1, 3.1.1 and 5 on one port, connections served on
//!   the ingest shards, acknowledged once the engine has the message;
//! - [`Server`]: the engine topics `temperature`, `humidity` and
//!   `dead_letter` with the endpoint in front.
//!
//! Accepted readings go into `temperature` and `humidity` keyed by device
//! (each device stays in order); refused messages go to `dead_letter` with
//! their raw payload and a [`validate::Reason`]. Every message is counted
//! exactly ([`IngestSnapshot`]).

pub mod auth;
pub mod config;
pub mod dead_letter;
pub mod endpoint;
pub mod ingest;
mod server;
pub mod validate;

pub use config::{ServerConfig, TlsSection, DEFAULT_CONFIG};
pub use dead_letter::DeadLetter;
pub use ingest::{IngestSnapshot, IngestStats};
pub use server::{Prepared, Server, ServerError, DEAD_LETTER, HUMIDITY, TEMPERATURE};
