//! telering side by side with peer queues (disruptor, rtrb, crossbeam, std):
//! what the quick bench tool (`src/main.rs`, the `bench` binary) and the
//! criterion benches (`benches/ring.rs`, `benches/engine.rs`) share.
//!
//! - [`scenarios`]: the throughput scenarios, one module per system, and the
//!   pinned harness they run in;
//! - [`floors`]: the machine's floors (core-to-core latency, memcpy
//!   bandwidth, clock cost);
//! - [`latency`]: one-way latency at a fixed rate, coordinated-omission
//!   corrected, in HdrHistograms;
//! - [`journal`]: the journal's batched publish and durable latency per
//!   fsync mode against the sequential-write floor of the same directory;
//! - [`pingpong`]: one-way latency as round trip / 2 against an interleaved
//!   floor;
//! - [`plot`]: the latency percentile plot.

pub mod floors;
pub mod journal;
pub mod latency;
pub mod pingpong;
pub mod plot;
pub mod scenarios;
