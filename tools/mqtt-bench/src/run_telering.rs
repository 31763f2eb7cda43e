//! telering in-process, as `telering serve` runs it: `Server::start` with
//! the default configuration on a free port (telering's own MQTT endpoint
//! on `ingest.shards` shard threads `telering-shard-N`, validation, the
//! engine topics) and the built-in consumer groups of
//! `telering::app::handlers` (a cluster group `alerts` and a broadcast group
//! `stats`, threads `telering-<group>-<member>`, pinned as configured) on
//! `temperature` and `humidity`. `stats` records the end-to-end latency (a
//! tap in its handler); it is the consumer side that is counted.
//!
//! Two settings differ between the instances a run starts: the shard count
//! and, for the latency run, the consumers' fetch settings.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use telering::app::handlers::{self as consumers, Shared};
use telering::mqtt::config::ConsumersConfig;
use telering::mqtt::{IngestSnapshot, Server, ServerConfig, ServerError};
use telering::record::now_us;
use telering::runtime::{Runtime, Shutdown};
use telering::Reading;

use crate::common::{free_port, Recorder};

/// Counters of one run (differences of the cumulative ones).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Detail {
    /// MQTT messages the endpoint read.
    pub received: u64,
    pub accepted: u64,
    pub dead_lettered: u64,
    /// Engine records published.
    pub records: u64,
    pub rejected: u64,
    /// Records handed from the shard that read them to the shard that owns
    /// their partition (0 with one shard).
    pub forwarded: u64,
    /// Records handed to each group.
    pub delivered_alerts: u64,
    pub delivered_stats: u64,
    pub alerts_raised: u64,
}

/// How a telering instance is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// `ingest.shards`.
    pub shards: usize,
    /// `[consumers] fetch_min` and `fetch_max_wait_ms`; `None`: the
    /// default configuration's.
    pub fetch: Option<(usize, u64)>,
}

/// What is left at the end.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Final {
    pub ingest: IngestSnapshot,
    pub handled: std::collections::BTreeMap<String, u64>,
    pub missed: std::collections::BTreeMap<String, u64>,
    pub handler_panics: usize,
    pub pinning: String,
}

pub struct Telering {
    server: Server,
    runtime: Runtime<Reading>,
    recorder: Arc<Recorder>,
    alerts: Arc<AtomicU64>,
    addr: SocketAddr,
    base: Detail,
    consumers: ConsumersConfig,
}

impl Telering {
    pub fn start(setup: Setup) -> Result<Self, String> {
        let mut last = String::new();
        for _ in 0..5 {
            let addr = free_port().map_err(|e| format!("no free loopback port: {e}"))?;
            let mut cfg = ServerConfig::default();
            cfg.mqtt.listen = addr;
            cfg.ingest.shards = setup.shards;
            if let Some((min, wait_ms)) = setup.fetch {
                cfg.consumers.fetch_min = min;
                cfg.consumers.fetch_max_wait_ms = wait_ms;
            }
            let consumers = cfg.consumers.clone();
            let server = match Server::start(cfg) {
                Ok(s) => s,
                // Another process took the port between the probe and the bind.
                Err(e @ ServerError::Bind { .. }) => {
                    last = e.to_string();
                    continue;
                }
                Err(e) => return Err(format!("telering server: {e}")),
            };
            let recorder = Arc::new(Recorder::default());
            let shared = Shared::new();
            let alerts = shared.alerts.clone();
            let tap = {
                let recorder = recorder.clone();
                Box::new(move |r: &telering::Record<Reading>| {
                    recorder.record(now_us(), Some(r.value.ts_us))
                })
            };
            // The consumer groups exactly as `telering serve` runs them.
            let runtime = consumers::start(server.engine(), &consumers, &shared, Some(tap))
                .map_err(|e| format!("telering consumers: {e}"))?;
            return Ok(Self {
                server,
                runtime,
                recorder,
                alerts,
                addr,
                base: Detail::default(),
                consumers,
            });
        }
        Err(format!(
            "telering server: no free port in 5 attempts ({last})"
        ))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The consumers' `fetch_min` and `fetch_max_wait_ms`.
    pub fn fetch(&self) -> (usize, u64) {
        (self.consumers.fetch_min, self.consumers.fetch_max_wait_ms)
    }

    pub fn pinning(&self) -> String {
        self.runtime.pinning().describe()
    }

    fn cumulative(&self) -> Detail {
        let s = self.server.stats();
        let engine = self.server.engine();
        let delivered = |g: &str| engine.group_stats(g).map_or(0, |s| s.delivered);
        Detail {
            received: s.received,
            accepted: s.accepted,
            dead_lettered: s.dead_lettered,
            records: s.records,
            rejected: s.rejected,
            forwarded: s.forwarded,
            delivered_alerts: delivered("alerts"),
            delivered_stats: delivered("stats"),
            alerts_raised: self.alerts.load(Ordering::Relaxed),
        }
    }

    /// Records handed to the group that has received the fewest.
    pub fn slowest_group(&self) -> u64 {
        let c = self.cumulative();
        (c.delivered_alerts - self.base.delivered_alerts)
            .min(c.delivered_stats - self.base.delivered_stats)
    }

    /// Starts a run: the counters of [`Telering::detail`] restart at 0.
    pub fn begin(&mut self) {
        self.recorder.reset();
        self.base = self.cumulative();
    }

    /// The counters since [`Telering::begin`].
    pub fn detail(&self) -> Detail {
        let c = self.cumulative();
        let b = &self.base;
        Detail {
            received: c.received - b.received,
            accepted: c.accepted - b.accepted,
            dead_lettered: c.dead_lettered - b.dead_lettered,
            records: c.records - b.records,
            rejected: c.rejected - b.rejected,
            forwarded: c.forwarded - b.forwarded,
            delivered_alerts: c.delivered_alerts - b.delivered_alerts,
            delivered_stats: c.delivered_stats - b.delivered_stats,
            alerts_raised: c.alerts_raised - b.alerts_raised,
        }
    }

    /// Stops the endpoint (it acknowledges what it read and drains its
    /// hand-off rings), then drains the consumers (both bounded).
    pub fn stop(self) -> Final {
        let pinning = self.pinning();
        let ingest = self.server.shutdown();
        let report = self.runtime.shutdown(Shutdown::Drain);
        Final {
            ingest,
            handled: report.handled(),
            missed: report.missed(),
            handler_panics: report.panics(),
            pinning,
        }
    }
}
