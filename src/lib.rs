//! telering: IoT telemetry ingest on single-writer, lock-free partition rings.
//!
//! Layers, bottom up:
//! - [`ring`]: one fixed-capacity single-writer ring per partition, with
//!   cache-padded sequence counters, overflow policies and wait strategies;
//! - [`topic`]: topics, partitions, offsets, keyed producers;
//! - [`group`]: consumer groups (cluster and broadcast) and the consumer API;
//! - [`runtime`]: pinned consumer threads running handlers.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

mod engine;
pub mod error;
pub mod group;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod record;
pub mod ring;
pub mod runtime;
pub mod sim;
mod sync;
pub mod topic;

pub use engine::Engine;
pub use error::{ConsumerError, EngineError};
pub use group::{Batch, Consumer, ConsumerConfig, GroupMode, GroupStats, OffsetReset, Record};
pub use record::{DeviceId, Keyed, Reading};
pub use ring::{OverflowPolicy, WaitStrategy};
pub use runtime::{Handler, Runtime, RuntimeReport, Shutdown};
pub use topic::{Producer, SendError, TopicConfig, TopicId, TopicPartition};
