//! The application built on the engine (feature `cli`, on by default):
//! what `telering serve`, `demo` and `pipeline` run and print.
//!
//! - [`handlers`]: the built-in consumer groups, `alerts` (cluster) and
//!   `stats` (broadcast, end-to-end latency in an HdrHistogram);
//! - [`Latency`]: the latency summary of every report.
//!
//! Embedders who turn default features off get neither: the engine alone.

pub mod handlers;
mod latency;

pub use latency::Latency;
