//! A running server with its consumers: live lines and the final summary
//! shared by `serve` and `demo`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use telering::mqtt::{IngestSnapshot, Server, ServerConfig, HUMIDITY, TEMPERATURE};
use telering::runtime::{Runtime, Shutdown};
use telering::Reading;

use telering::app::handlers::{self as consumers, Shared};
use telering::app::Latency;

/// The last line `serve` and `demo` print: one JSON object.
#[derive(serde::Serialize, Debug)]
pub struct Summary {
    /// MQTT messages received (PUBLISH packets and wills).
    pub received: u64,
    /// Messages that passed validation.
    pub accepted: u64,
    /// Messages refused and sent to `dead_letter`.
    pub dead_lettered: u64,
    pub dead_letter_reasons: BTreeMap<String, u64>,
    /// Engine records published (a `reading` message makes two).
    pub records: u64,
    /// Records not kept: refused by a full `Reject` topic (MQTT 5 devices
    /// were told "quota exceeded"), or given up at shutdown while a stalled
    /// consumer kept their partition full (never acknowledged).
    pub dropped: u64,
    pub rejected: u64,
    pub abandoned: u64,
    /// Of `received`, wills of connections that ended without DISCONNECT.
    pub wills: u64,
    /// QoS 2 retransmissions acknowledged again, not ingested twice.
    pub duplicates: u64,
    /// Records handed from the shard that read them to the shard owning
    /// their partition.
    pub forwarded: u64,
    /// Ingest shards.
    pub shards: usize,
    /// Records found in the journal at start (0 without a journal).
    pub recovered: u64,
    /// Records cut from a torn journal tail at start.
    pub truncated: u64,
    /// Records written to the journal in this run.
    pub journaled: u64,
    /// Journal writes or syncs that failed and were retried.
    pub journal_errors: u64,
    /// CONNECTs refused: wrong user name or password, no credentials,
    /// over the per-address limit; refusals delayed by throttling; messages
    /// the ACL refused (also in `dead_letter_reasons.not_authorized`).
    pub bad_credentials: u64,
    pub anonymous_refused: u64,
    pub address_limit: u64,
    pub throttled: u64,
    pub not_authorized: u64,
    /// Times a connection's publish rate limit held its reading back.
    pub rate_limited: u64,
    /// Subscription filters refused by the ACL, and past
    /// `max_subscriptions` (every subscription is refused: none is served).
    pub subscribe_not_authorized: u64,
    pub subscription_limit: u64,
    /// Connection limits hit: CONNECTs refused at `max_connections`,
    /// connections closed for no CONNECT in time, an expired keep-alive, a
    /// packet over `max_packet_size`, or more in flight than the MQTT 5
    /// Receive Maximum.
    pub connection_limit: u64,
    pub connect_timeouts: u64,
    pub keep_alive_timeouts: u64,
    pub packet_too_large: u64,
    pub receive_maximum_exceeded: u64,
    /// Records handled per consumer group.
    pub delivered: BTreeMap<String, u64>,
    /// Records reported missed per consumer group.
    pub missed: BTreeMap<String, u64>,
    pub handler_panics: usize,
    pub alerts: u64,
    pub devices: usize,
    /// End-to-end latency (sensor timestamp to the `stats` consumer), µs.
    pub latency_us: Latency,
    pub duration_s: f64,
    pub cores: usize,
}

pub struct Session {
    server: Server,
    runtime: Runtime<Reading>,
    pub shared: Shared,
    started: Instant,
    last: Instant,
    last_received: u64,
}

impl Session {
    pub fn start(cfg: ServerConfig) -> Result<Self, Box<dyn std::error::Error>> {
        let consumers_cfg = cfg.consumers.clone();
        // The consumers join before the endpoint listens, so the broadcast
        // group `stats` (which starts at the latest offset) sees every
        // reading a device is acknowledged for.
        let prepared = Server::prepare(cfg)?;
        let shared = Shared::new();
        let runtime = consumers::start(prepared.engine(), &consumers_cfg, &shared, None)?;
        let server = prepared.listen()?;
        tracing::info!("{}", runtime.pinning().describe());
        let now = Instant::now();
        Ok(Self {
            server,
            runtime,
            shared,
            started: now,
            last: now,
            last_received: 0,
        })
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    pub fn describe(&self) -> String {
        let c = self.server.config();
        let journal = match (self.server.engine().data_dir(), self.server.journal_stats()) {
            (Some(d), Some(j)) => format!(
                "journaled in {} (fsync {}; {} records recovered, {} truncated)",
                d.display(),
                c.journal.fsync,
                j.recovered,
                j.truncated
            ),
            _ => "in memory (no journal)".to_owned(),
        };
        format!(
            "MQTT 3.1/3.1.1/5 on {} ({} ingest shards); topics temperature and humidity ({} partitions x {} slots, {:?}), {journal}; \
             groups alerts (cluster, {} members) and stats (broadcast); {}",
            self.server.local_addr(),
            c.shards(),
            c.ingest.partitions,
            c.ingest.capacity,
            c.ingest.policy,
            c.consumers.alerts_members,
            self.runtime.pinning().describe(),
        )
    }

    /// One line of live stats since the previous call.
    pub fn live_line(&mut self) -> String {
        let s = self.server.stats();
        let dt = self.last.elapsed().as_secs_f64().max(1e-6);
        let rate = (s.received - self.last_received) as f64 / dt;
        self.last = Instant::now();
        self.last_received = s.received;
        let engine = self.server.engine();
        let published: u64 = [TEMPERATURE, HUMIDITY]
            .iter()
            .filter_map(|t| engine.published(t).ok())
            .sum();
        let lag = |g: &str| {
            engine.group_stats(g).map_or(0, |st| {
                // `alerts` reads each record once; `stats` has one member.
                published.saturating_sub(st.delivered + st.missed)
            })
        };
        let (p50, p99) = match self.shared.interval.lock() {
            Ok(mut h) => {
                let r = (h.value_at_quantile(0.5), h.value_at_quantile(0.99));
                h.reset();
                r
            }
            Err(_) => (0, 0),
        };
        format!(
            "[{:>4.0}s] ingest {:>8.0} msg/s  received {:>9}  lag alerts {:>6} stats {:>6}  dead letters {:>6}  dropped {:>4}  latency p50 {:>6} us  p99 {:>7} us",
            self.started.elapsed().as_secs_f64(),
            rate,
            s.received,
            lag("alerts"),
            lag("stats"),
            s.dead_lettered,
            s.rejected,
            p50,
            p99,
        )
    }

    /// Drains the endpoint (every connection acknowledges what it read),
    /// then the consumers, and sums up.
    pub fn finish(self) -> Summary {
        let shards = self.server.config().shards();
        let engine = self.server.engine().clone();
        let guard = self.server.guard_stats();
        let ingest: IngestSnapshot = self.server.shutdown();
        let report = self.runtime.shutdown(Shutdown::Drain);
        // Waits for the journal to write and sync what is left.
        engine.close();
        let journal = engine.journal_stats().unwrap_or_default();
        let total = self
            .shared
            .total
            .lock()
            .map(|h| Latency::of(&h))
            .unwrap_or_default();
        Summary {
            received: ingest.received,
            accepted: ingest.accepted,
            dead_lettered: ingest.dead_lettered,
            dead_letter_reasons: ingest.dead_letter_reasons,
            records: ingest.records,
            dropped: ingest.rejected + ingest.abandoned,
            rejected: ingest.rejected,
            abandoned: ingest.abandoned,
            wills: ingest.wills,
            duplicates: ingest.duplicates,
            forwarded: ingest.forwarded,
            shards,
            recovered: journal.recovered,
            truncated: journal.truncated,
            journaled: journal.written,
            journal_errors: journal.write_errors,
            bad_credentials: guard.bad_credentials.load(Ordering::Relaxed),
            anonymous_refused: guard.anonymous_refused.load(Ordering::Relaxed),
            address_limit: guard.address_limit.load(Ordering::Relaxed),
            throttled: guard.throttled.load(Ordering::Relaxed),
            not_authorized: guard.not_authorized.load(Ordering::Relaxed),
            rate_limited: guard.rate_limited.load(Ordering::Relaxed),
            subscribe_not_authorized: guard.subscribe_not_authorized.load(Ordering::Relaxed),
            subscription_limit: guard.subscription_limit.load(Ordering::Relaxed),
            connection_limit: guard.connection_limit.load(Ordering::Relaxed),
            connect_timeouts: guard.connect_timeouts.load(Ordering::Relaxed),
            keep_alive_timeouts: guard.keep_alive_timeouts.load(Ordering::Relaxed),
            packet_too_large: guard.packet_too_large.load(Ordering::Relaxed),
            receive_maximum_exceeded: guard.receive_maximum_exceeded.load(Ordering::Relaxed),
            delivered: report.handled(),
            missed: report.missed(),
            handler_panics: report.panics(),
            alerts: self.shared.alerts.load(Ordering::Relaxed),
            devices: self.shared.devices.lock().map_or(0, |d| d.len()),
            latency_us: total,
            duration_s: self.started.elapsed().as_secs_f64(),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        }
    }
}

impl Summary {
    /// A human-readable table (the JSON line follows it).
    pub fn table(&self) -> String {
        let mut s = String::new();
        let mut row = |k: &str, v: String| s.push_str(&format!("  {k:<28} {v}\n"));
        row("messages received", self.received.to_string());
        row("  accepted", self.accepted.to_string());
        row("  dead-lettered", self.dead_lettered.to_string());
        for (r, n) in &self.dead_letter_reasons {
            row(&format!("    {r}"), n.to_string());
        }
        row("records published", self.records.to_string());
        row("rejected (full Reject topic)", self.rejected.to_string());
        row("abandoned at shutdown", self.abandoned.to_string());
        row("  of received: wills", self.wills.to_string());
        if self.bad_credentials
            + self.anonymous_refused
            + self.address_limit
            + self.not_authorized
            + self.rate_limited
            + self.subscribe_not_authorized
            + self.subscription_limit
            > 0
        {
            row("refused: bad credentials", self.bad_credentials.to_string());
            row("  anonymous", self.anonymous_refused.to_string());
            row("  per-address limit", self.address_limit.to_string());
            row("  throttled (delayed)", self.throttled.to_string());
            row(
                "  publishes not authorized",
                self.not_authorized.to_string(),
            );
            row("  rate limit reached", self.rate_limited.to_string());
            row(
                "  subscriptions not authorized",
                self.subscribe_not_authorized.to_string(),
            );
            row(
                "  subscriptions over the limit",
                self.subscription_limit.to_string(),
            );
        }
        let limits = [
            ("limits: max_connections", self.connection_limit),
            ("  no CONNECT in time", self.connect_timeouts),
            ("  keep-alive expired", self.keep_alive_timeouts),
            ("  packet too large", self.packet_too_large),
            ("  receive maximum exceeded", self.receive_maximum_exceeded),
        ];
        if limits.iter().any(|(_, n)| *n > 0) {
            for (k, n) in limits {
                row(k, n.to_string());
            }
        }
        if self.recovered + self.journaled > 0 {
            row("journal: recovered at start", self.recovered.to_string());
            row("  truncated (torn tail)", self.truncated.to_string());
            row("  written in this run", self.journaled.to_string());
            row("  write errors (retried)", self.journal_errors.to_string());
        }
        for (g, n) in &self.delivered {
            row(
                &format!("delivered to {g}"),
                format!("{n} (missed {})", self.missed.get(g).copied().unwrap_or(0)),
            );
        }
        row("alerts raised", self.alerts.to_string());
        row("devices seen", self.devices.to_string());
        let l = &self.latency_us;
        row(
            "end-to-end latency (us)",
            format!(
                "p50 {} p90 {} p99 {} p99.9 {} max {}",
                l.p50, l.p90, l.p99, l.p999, l.max
            ),
        );
        s
    }
}
