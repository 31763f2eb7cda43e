//! telering: IoT telemetry ingest on single-writer, lock-free partition rings.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

pub mod ring;
mod sync;
