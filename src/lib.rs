//! telering: IoT telemetry ingest on single-writer, lock-free partition rings.
//!
//! Layers, bottom up:
//! - [`ring`]: one fixed-capacity single-writer ring per partition, with
//!   cache-padded sequence counters, overflow policies and wait strategies;
//! - [`topic`]: topics, partitions, offsets, keyed producers;
//! - [`group`]: consumer groups (cluster and broadcast) and the consumer API;
//! - [`runtime`]: pinned consumer threads running handlers;
//! - `journal` (feature `journal`, default): per-partition segment files, so
//!   records and committed offsets survive a crash or a restart;
//! - `mqtt` (feature `mqtt`, default): the MQTT front end;
//! - `app` (feature `cli`, default): the built-in consumer groups and
//!   reports of the `telering` binary.
//!
//! ```
//! use std::time::Duration;
//! use telering::runtime::{Runtime, Shutdown};
//! use telering::{ConsumerConfig, DeviceId, Engine, OverflowPolicy, Reading, Record, TopicConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine: Engine<Reading> = Engine::new();
//! engine.create_topic("temperature", TopicConfig::new(4, 1024).policy(OverflowPolicy::Block))?;
//!
//! // The producer holds the unique writer of every partition (not Clone).
//! let mut producer = engine.producer("temperature")?;
//! let device = DeviceId::new("greenhouse-7")?;
//! producer.send(Reading::new(device, 1_700_000_000_000_000, 21.5, 48.0))?; // keyed by device
//!
//! // A cluster-group member: the group's partitions are divided among its members.
//! let mut consumer = engine.consumer(ConsumerConfig::cluster("alerts"))?;
//! consumer.subscribe(&["temperature"])?;
//! let batch = consumer.poll(256, Duration::from_millis(100))?;
//! assert_eq!(batch.len(), 1);
//! let r = &batch[0];
//! assert_eq!((r.offset, r.value.device.as_str()), (0, "greenhouse-7"));
//! consumer.close(); // commits, leaves the group, triggers a rebalance
//!
//! // Consumer threads running handlers, pinned to cores.
//! let runtime = Runtime::builder(&engine)
//!     .member(ConsumerConfig::broadcast("stats"), &["temperature"], |r: &Record<Reading>| {
//!         assert!(r.value.temperature > -40.0);
//!     })
//!     .start()?;
//! producer.send(Reading::new(device, 1_700_000_000_000_001, 21.6, 48.0))?;
//! let report = runtime.shutdown(Shutdown::Drain);
//! assert_eq!(report.groups["stats"].handled, 2);
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

#[cfg(feature = "cli")]
pub mod app;
mod engine;
pub mod error;
pub mod group;
#[cfg(feature = "journal")]
pub mod journal;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod record;
pub mod ring;
pub mod runtime;
mod sync;
pub mod topic;

pub use engine::Engine;
pub use error::{ConsumerError, EngineError};
pub use group::{
    Batch, Consumer, ConsumerConfig, GroupMode, GroupStats, OffsetReset, Record, Run, Runs,
};
pub use record::{DeviceId, Keyed, Reading};
pub use ring::{OverflowPolicy, SlotLayout, WaitStrategy};
pub use runtime::{Handler, Runtime, RuntimeReport, Shutdown};
pub use topic::{Producer, SendError, TopicConfig, TopicId, TopicPartition};
