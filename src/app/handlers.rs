//! The built-in consumer groups of `telering serve`, `demo` and `pipeline`
//! (and of the MQTT ingest benchmark, which measures them as `serve` runs).
//!
//! - `alerts` (cluster, N pinned members): flags readings over thresholds;
//! - `stats` (broadcast): rolling per-device min, max and mean temperature and
//!   humidity, and the end-to-end latency (sensor timestamp to consumer) in an
//!   HdrHistogram.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::mqtt::config::ConsumersConfig;
use crate::mqtt::{HUMIDITY, TEMPERATURE};
use crate::record::now_us;
use crate::runtime::{Handler, Runtime, RuntimeError};
use crate::{ConsumerConfig, DeviceId, Engine, Reading, Record};
use hdrhistogram::Histogram;

/// Per device: min, max, sum and count of a metric.
#[derive(Clone, Copy, Debug)]
pub struct Agg {
    /// Smallest value.
    pub min: f32,
    /// Largest value.
    pub max: f32,
    /// Sum of the values.
    pub sum: f64,
    /// Values seen.
    pub n: u64,
}

impl Agg {
    fn add(&mut self, v: f32) {
        if v.is_nan() {
            return;
        }
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += f64::from(v);
        self.n += 1;
    }
}

impl Default for Agg {
    fn default() -> Self {
        Self {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            sum: 0.0,
            n: 0,
        }
    }
}

/// What the consumers share with the reporting thread.
#[derive(Clone)]
pub struct Shared {
    /// Alerts raised by `alerts`.
    pub alerts: Arc<AtomicU64>,
    /// Latency of the current interval, µs (the reader resets it).
    pub interval: Arc<Mutex<Histogram<u64>>>,
    /// Latency of the whole run, µs.
    pub total: Arc<Mutex<Histogram<u64>>>,
    /// Per device: (temperature, humidity) aggregates.
    pub devices: Arc<Mutex<HashMap<DeviceId, (Agg, Agg)>>>,
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

impl Shared {
    /// Empty counters and histograms.
    pub fn new() -> Self {
        let h = || {
            Arc::new(Mutex::new(
                Histogram::new(3).expect("3 significant digits is valid"),
            ))
        };
        Self {
            alerts: Arc::default(),
            interval: h(),
            total: h(),
            devices: Arc::default(),
        }
    }
}

struct Alerts {
    count: Arc<AtomicU64>,
    temperature: f32,
    humidity: f32,
}

impl Handler<Reading> for Alerts {
    fn on_record(&mut self, r: &Record<Reading>) {
        // NaN (not measured) compares false: no alert.
        if r.value.temperature > self.temperature || r.value.humidity > self.humidity {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Called by the `stats` member on every record (e.g. a benchmark's probe).
pub type Tap = Box<dyn FnMut(&Record<Reading>) + Send>;

struct Stats {
    shared: Shared,
    tap: Option<Tap>,
    local: HashMap<DeviceId, (Agg, Agg)>,
    latency: Histogram<u64>,
    pending: u32,
    /// The clock, read once per batch.
    batch_now_us: u64,
}

impl Stats {
    fn flush(&mut self) {
        if let Ok(mut h) = self.shared.interval.lock() {
            let _ = h.add(&self.latency);
        }
        if let Ok(mut h) = self.shared.total.lock() {
            let _ = h.add(&self.latency);
        }
        self.latency.reset();
        if let Ok(mut d) = self.shared.devices.lock() {
            d.extend(self.local.iter().map(|(k, v)| (*k, *v)));
        }
        self.pending = 0;
    }
}

impl Handler<Reading> for Stats {
    fn on_batch_start(&mut self, _len: usize) {
        // One clock read per batch: each record's latency is measured to
        // the moment its batch was handed over.
        self.batch_now_us = now_us();
    }

    fn on_record(&mut self, r: &Record<Reading>) {
        let v = &r.value;
        let e = self.local.entry(v.device).or_default();
        e.0.add(v.temperature);
        e.1.add(v.humidity);
        let _ = self
            .latency
            .record(self.batch_now_us.saturating_sub(v.ts_us).max(1));
        if let Some(tap) = self.tap.as_mut() {
            tap(r);
        }
        self.pending += 1;
        if self.pending >= 1024 {
            self.flush();
        }
    }
}

impl Drop for Stats {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Starts `alerts` and `stats` on the engine's `temperature` and `humidity`.
/// `tap`, if any, sees every record `stats` handles.
pub fn start(
    engine: &Engine<Reading>,
    cfg: &ConsumersConfig,
    shared: &Shared,
    tap: Option<Tap>,
) -> Result<Runtime<Reading>, RuntimeError> {
    start_on(engine, &[TEMPERATURE, HUMIDITY], cfg, shared, tap)
}

/// Starts `alerts` and `stats` on `topics`.
pub fn start_on(
    engine: &Engine<Reading>,
    topics: &[&str],
    cfg: &ConsumersConfig,
    shared: &Shared,
    tap: Option<Tap>,
) -> Result<Runtime<Reading>, RuntimeError> {
    let fetch_wait = std::time::Duration::from_millis(cfg.fetch_max_wait_ms);
    let mut b = Runtime::builder(engine).pinning(cfg.pin);
    for _ in 0..cfg.alerts_members {
        b = b.member(
            ConsumerConfig::cluster("alerts")
                .wait(cfg.wait)
                .fetch(cfg.fetch_min, fetch_wait),
            topics,
            Alerts {
                count: shared.alerts.clone(),
                temperature: cfg.temperature_alert,
                humidity: cfg.humidity_alert,
            },
        );
    }
    b.member(
        // Live statistics from now on: after a restart on a journal, the
        // readings of earlier runs are not counted again (the cluster group
        // `alerts` resumes from its committed offsets instead).
        ConsumerConfig::broadcast("stats")
            .offset_reset(crate::OffsetReset::Latest)
            .wait(cfg.wait)
            .fetch(cfg.fetch_min, fetch_wait),
        topics,
        Stats {
            shared: shared.clone(),
            tap,
            local: HashMap::new(),
            latency: Histogram::new(3).expect("3 significant digits is valid"),
            pending: 0,
            batch_now_us: 0,
        },
    )
    .start()
}
