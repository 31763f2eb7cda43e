//! The MQTT front end: an embedded `rumqttd` broker bridged into the engine.
//!
//! Devices publish to `sensors/<device>/<metric>` on the broker; the bridge
//! reads every message through an in-process link, validates it
//! ([`validate`]), publishes accepted readings into the engine topics
//! `temperature` and `humidity` (keyed by device, so each device stays in
//! order) and sends refused messages to the `dead_letter` topic with their raw
//! payload and a [`validate::Reason`]. Every message is counted exactly
//! ([`IngestSnapshot`]).

mod bridge;
pub mod config;
pub mod dead_letter;
mod health;
mod server;
pub mod validate;

pub use bridge::{IngestSnapshot, IngestStats};
pub use config::{ServerConfig, DEFAULT_CONFIG};
pub use dead_letter::DeadLetter;
pub use server::{Server, ServerError, DEAD_LETTER, HUMIDITY, TEMPERATURE};
