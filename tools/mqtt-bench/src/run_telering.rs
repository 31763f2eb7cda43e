//! telering in-process, as `telering serve` runs it (`Server::prepare`, the
//! consumers, then `listen`), with the default configuration on a free port (telering's own MQTT endpoint
//! on `ingest.shards` shard threads `telering-shard-N`, validation, the
//! engine topics) and the built-in consumer groups of
//! `telering::app::handlers` (a cluster group `alerts` and a broadcast group
//! `stats`, threads `telering-<group>-<member>`, pinned as configured) on
//! `temperature` and `humidity`. `stats` records the end-to-end latency (a
//! tap in its handler); it is the consumer side that is counted.
//!
//! Three settings differ between the instances a run starts: the shard
//! count, for the latency run the consumers' fetch settings, and with
//! `--journal` the journal (`[journal] dir` set to a fresh directory, made
//! when the instance starts and deleted when it stops; the configuration's
//! `fsync = "interval"`), which makes every QoS 1 acknowledgement wait for
//! it. With `--tls`, an instance also opens the TLS listener (`[tls]` with
//! a certificate for `localhost` that [`TlsCert::generate`] made with
//! rcgen, signed by a CA made with it) and the simulator connects to that
//! one, verifying the certificate against the CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use telering::app::handlers::{self as consumers, Shared};
use telering::mqtt::config::ConsumersConfig;
use telering::mqtt::{IngestSnapshot, Server, ServerConfig, ServerError, TlsSection};
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
    /// Records the journal wrote (journaled instances).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal_written: Option<u64>,
    /// Journal batches (one `write` each).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal_batches: Option<u64>,
    /// The journal's `fdatasync` calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal_syncs: Option<u64>,
    /// Journal writes or syncs that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal_write_errors: Option<u64>,
}

/// How a telering instance is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    /// `ingest.shards`.
    pub shards: usize,
    /// `[consumers] fetch_min` and `fetch_max_wait_ms`; `None`: the
    /// default configuration's.
    pub fetch: Option<(usize, u64)>,
    /// With a directory, the journal is on, in a fresh directory made in it.
    pub journal_parent: Option<PathBuf>,
    /// With files, the TLS listener is on too, serving their certificate.
    pub tls: Option<TlsFiles>,
}

/// PEM files of a TLS instance: the CA the simulator trusts, the server's
/// certificate (for `localhost`) and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// [`TlsFiles`] in a fresh temporary directory, deleted on drop.
pub struct TlsCert {
    pub files: TlsFiles,
    dir: tempfile::TempDir,
}

impl TlsCert {
    /// A CA and a certificate for `localhost` it signed (rcgen, ECDSA
    /// P-256), written to a fresh temporary directory.
    pub fn generate() -> Result<Self, String> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let e = |e: rcgen::Error| format!("TLS certificate: {e}");
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "mqtt-bench CA");
        let ca_key = KeyPair::generate().map_err(e)?;
        let ca_pem = ca.self_signed(&ca_key).map_err(e)?.pem();
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).map_err(e)?;
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().map_err(e)?;
        let cert = leaf.signed_by(&key, &issuer).map_err(e)?;
        let dir = tempfile::Builder::new()
            .prefix("mqtt-bench-tls-")
            .tempdir()
            .map_err(|e| format!("TLS certificate directory: {e}"))?;
        let files = TlsFiles {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("server.pem"),
            key: dir.path().join("server.key"),
        };
        for (path, pem) in [
            (&files.ca, ca_pem),
            (&files.cert, cert.pem()),
            (&files.key, key.serialize_pem()),
        ] {
            std::fs::write(path, pem).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(Self { files, dir })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A journal's data directory, deleted (with everything in it) on drop.
struct DataDir(PathBuf);

impl DataDir {
    fn new(parent: &Path, shards: usize) -> Result<Self, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = parent.join(format!(
            "mqtt-bench-journal-{shards}shard{}-{}-{nanos:09}",
            if shards == 1 { "" } else { "s" },
            std::process::id()
        ));
        std::fs::create_dir_all(parent)
            .and_then(|()| std::fs::create_dir(&dir))
            .map_err(|e| format!("journal directory {}: {e}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!(
                "mqtt-bench: could not delete the journal directory {}: {e}",
                self.0.display()
            );
        }
    }
}

/// What is left at the end.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Final {
    pub ingest: IngestSnapshot,
    pub handled: std::collections::BTreeMap<String, u64>,
    pub missed: std::collections::BTreeMap<String, u64>,
    pub handler_panics: usize,
    pub pinning: String,
    /// The journal's directory (deleted by now), if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal_dir: Option<String>,
    /// The journal's counters at shutdown, after it wrote everything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalCounters>,
}

/// [`telering::journal::JournalStats`], serialisable.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JournalCounters {
    pub written: u64,
    pub batches: u64,
    pub syncs: u64,
    pub write_errors: u64,
    pub abandoned: u64,
}

pub struct Telering {
    server: Server,
    runtime: Runtime<Reading>,
    recorder: Arc<Recorder>,
    alerts: Arc<AtomicU64>,
    addr: SocketAddr,
    base: Detail,
    consumers: ConsumersConfig,
    tls: Option<TlsFiles>,
    /// Last: deleted once the server and its consumers are gone.
    journal_dir: Option<DataDir>,
}

impl Telering {
    pub fn start(setup: Setup) -> Result<Self, String> {
        let mut last = String::new();
        for _ in 0..5 {
            let addr = free_port().map_err(|e| format!("no free loopback port: {e}"))?;
            // A fresh directory per attempt: a failed start leaves none.
            let journal_dir = setup
                .journal_parent
                .as_deref()
                .map(|p| DataDir::new(p, setup.shards))
                .transpose()?;
            let mut cfg = ServerConfig::default();
            cfg.journal.dir = journal_dir.as_ref().map(|d| d.0.clone());
            cfg.mqtt.listen = addr;
            // The TLS listener on a port of its own choosing.
            cfg.tls = setup.tls.as_ref().map(|t| TlsSection {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                cert: t.cert.clone(),
                key: t.key.clone(),
                client_ca: None,
                use_identity_as_username: false,
                identity: Default::default(),
            });
            cfg.ingest.shards = setup.shards;
            // The peers have no per-client rate limit: the simulator's
            // sensors run far past telering's default one.
            cfg.mqtt.max_publish_rate = 0;
            if let Some((min, wait_ms)) = setup.fetch {
                cfg.consumers.fetch_min = min;
                cfg.consumers.fetch_max_wait_ms = wait_ms;
            }
            let consumers = cfg.consumers.clone();
            let prepared = Server::prepare(cfg).map_err(|e| format!("telering server: {e}"))?;
            let recorder = Arc::new(Recorder::default());
            let shared = Shared::new();
            let alerts = shared.alerts.clone();
            let tap = {
                let recorder = recorder.clone();
                Box::new(move |r: &telering::Record<Reading>| {
                    recorder.record(now_us(), Some(r.value.ts_us))
                })
            };
            // The consumer groups exactly as `telering serve` runs them,
            // joined before the endpoint listens.
            let runtime = consumers::start(prepared.engine(), &consumers, &shared, Some(tap))
                .map_err(|e| format!("telering consumers: {e}"))?;
            let server = match prepared.listen() {
                Ok(s) => s,
                // Another process took the port between the probe and the bind.
                Err(e @ ServerError::Bind { .. }) => {
                    last = e.to_string();
                    runtime.shutdown(telering::runtime::Shutdown::Stop);
                    continue;
                }
                Err(e) => return Err(format!("telering server: {e}")),
            };
            return Ok(Self {
                server,
                runtime,
                recorder,
                alerts,
                addr,
                base: Detail::default(),
                consumers,
                tls: setup.tls.clone(),
                journal_dir,
            });
        }
        Err(format!(
            "telering server: no free port in 5 attempts ({last})"
        ))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TLS listener's address (TLS instances).
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.server.tls_addr()
    }

    /// The CA that signed the TLS certificate (TLS instances).
    pub fn cafile(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|t| t.ca.clone())
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

    /// Records the journal has written, for a journaled instance.
    pub fn journal_written(&self) -> Option<u64> {
        let j = self.server.journal_stats()?;
        Some(j.written - self.base.journal_written.unwrap_or(0))
    }

    fn cumulative(&self) -> Detail {
        let s = self.server.stats();
        let engine = self.server.engine();
        let delivered = |g: &str| engine.group_stats(g).map_or(0, |s| s.delivered);
        let j = self.server.journal_stats();
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
            journal_written: j.map(|j| j.written),
            journal_batches: j.map(|j| j.batches),
            journal_syncs: j.map(|j| j.syncs),
            journal_write_errors: j.map(|j| j.write_errors),
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
            journal_written: sub(c.journal_written, b.journal_written),
            journal_batches: sub(c.journal_batches, b.journal_batches),
            journal_syncs: sub(c.journal_syncs, b.journal_syncs),
            journal_write_errors: sub(c.journal_write_errors, b.journal_write_errors),
        }
    }

    /// Stops the endpoint (it acknowledges what it read and drains its
    /// hand-off rings), then drains the consumers (both bounded).
    /// The journal's counters are read once both are down (the engine
    /// closed, so the journal wrote everything); then its directory goes.
    pub fn stop(self) -> Final {
        let pinning = self.pinning();
        let engine = self.server.engine().clone();
        let ingest = self.server.shutdown();
        let report = self.runtime.shutdown(Shutdown::Drain);
        engine.close();
        let journal = engine.journal_stats().map(|j| JournalCounters {
            written: j.written,
            batches: j.batches,
            syncs: j.syncs,
            write_errors: j.write_errors,
            abandoned: j.abandoned,
        });
        drop(engine);
        let journal_dir = self.journal_dir.as_ref().map(|d| d.0.display().to_string());
        drop(self.journal_dir);
        Final {
            ingest,
            handled: report.handled(),
            missed: report.missed(),
            handler_panics: report.panics(),
            pinning,
            journal_dir,
            journal,
        }
    }
}

fn sub(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(a? - b.unwrap_or(0))
}
