//! `telering pipeline`: the embedded pipeline with simulated sensors.
//!
//! A producer thread publishes random-walk readings from a fleet of simulated
//! devices into a `temperature` topic; a cluster group `alerts` (two pinned
//! members) flags readings over thresholds and a broadcast group `stats`
//! keeps per-device min, max and mean and the end-to-end latency. One line of
//! live stats per second, then a summary.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use telering::runtime::{Handler, Runtime, Shutdown};
use telering::sim::{now_us, Fleet};
use telering::{
    ConsumerConfig, DeviceId, Engine, OverflowPolicy, Reading, Record, TopicConfig, WaitStrategy,
};

/// Options of `telering pipeline`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Seconds to run.
    #[arg(long, default_value_t = 5)]
    pub duration: u64,
    /// Simulated devices.
    #[arg(long, default_value_t = 64)]
    pub devices: usize,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,
    /// Slots per partition ring (a power of two).
    #[arg(long, default_value_t = 64 * 1024)]
    pub capacity: usize,
    /// Readings per second in total (0: as fast as the pipeline goes).
    #[arg(long, default_value_t = 200_000)]
    pub rate: u64,
    /// Wait strategy of the consumers: busy-spin, spin-yield or park.
    #[arg(long, default_value = "park", value_parser = telering::mqtt::config::parse_wait)]
    pub wait: WaitStrategy,
    /// Do not pin consumer threads to cores.
    #[arg(long)]
    pub no_pin: bool,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            duration: 5,
            devices: 64,
            partitions: 4,
            capacity: 64 * 1024,
            rate: 200_000,
            wait: WaitStrategy::Park,
            no_pin: false,
        }
    }
}

/// Flags readings over thresholds.
struct Alerts {
    count: Arc<AtomicU64>,
}

impl Handler<Reading> for Alerts {
    fn on_record(&mut self, r: &Record<Reading>) {
        let v = &r.value;
        if v.temperature > 30.0 || v.humidity > 80.0 {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Clone, Copy)]
struct Agg {
    min: f32,
    max: f32,
    sum: f64,
    n: u64,
}

/// Per-device rolling min, max, mean; end-to-end latency.
struct Stats {
    devices: Arc<Mutex<HashMap<DeviceId, Agg>>>,
    local: HashMap<DeviceId, Agg>,
    latency: Histogram<u64>,
    shared_latency: Arc<Mutex<Histogram<u64>>>,
    pending: u32,
}

impl Stats {
    fn flush(&mut self) {
        if let Ok(mut h) = self.shared_latency.lock() {
            let _ = h.add(&self.latency);
        }
        self.latency.reset();
        if let Ok(mut d) = self.devices.lock() {
            d.extend(self.local.iter().map(|(k, v)| (*k, *v)));
        }
        self.pending = 0;
    }
}

impl Handler<Reading> for Stats {
    fn on_record(&mut self, r: &Record<Reading>) {
        let v = &r.value;
        let a = self.local.entry(v.device).or_insert(Agg {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            sum: 0.0,
            n: 0,
        });
        a.min = a.min.min(v.temperature);
        a.max = a.max.max(v.temperature);
        a.sum += f64::from(v.temperature);
        a.n += 1;
        let _ = self.latency.record(now_us().saturating_sub(v.ts_us).max(1));
        self.pending += 1;
        if self.pending >= 4096 {
            self.flush();
        }
    }
}

impl Drop for Stats {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Runs the pipeline.
pub fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let engine: Engine<Reading> = Engine::new();
    engine.create_topic(
        "temperature",
        TopicConfig::new(args.partitions, args.capacity).policy(OverflowPolicy::Block),
    )?;
    let alerts = Arc::new(AtomicU64::new(0));
    let devices = Arc::new(Mutex::new(HashMap::new()));
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let total_latency = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let stats = Stats {
        devices: devices.clone(),
        local: HashMap::new(),
        latency: Histogram::new(3)?,
        shared_latency: latency.clone(),
        pending: 0,
    };
    let rt = Runtime::builder(&engine)
        .pinning(!args.no_pin)
        .member(
            ConsumerConfig::cluster("alerts").wait(args.wait),
            &["temperature"],
            Alerts {
                count: alerts.clone(),
            },
        )
        .member(
            ConsumerConfig::cluster("alerts").wait(args.wait),
            &["temperature"],
            Alerts {
                count: alerts.clone(),
            },
        )
        .member(
            ConsumerConfig::broadcast("stats").wait(args.wait),
            &["temperature"],
            stats,
        )
        .start()?;
    println!(
        "telering pipeline: {} devices -> topic temperature ({} partitions x {} slots, Block); \
         groups alerts (cluster, 2 members) and stats (broadcast); {}; {} cores available",
        args.devices,
        args.partitions,
        args.capacity,
        rt.pinning().describe(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let engine = engine.clone();
        let stop = stop.clone();
        let (n, rate) = (args.devices.max(1), args.rate);
        std::thread::Builder::new()
            .name("telering-sensors".into())
            .spawn(move || -> Result<u64, String> {
                let mut p = engine.producer("temperature").map_err(|e| e.to_string())?;
                let mut fleet = Fleet::new("sensor", n, 42);
                let start = Instant::now();
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if rate > 0 {
                        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                        if sent >= due {
                            std::thread::sleep(Duration::from_micros(200));
                            continue;
                        }
                    }
                    for _ in 0..64 {
                        let r = fleet.step(sent as usize, now_us());
                        match p.send(r) {
                            Ok(_) => sent += 1,
                            Err(telering::SendError::Closed(_)) => return Ok(sent),
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                }
                Ok(sent)
            })?
    };

    let start = Instant::now();
    let mut last_published = 0;
    let mut last = Instant::now();
    while start.elapsed() < Duration::from_secs(args.duration) {
        std::thread::sleep(Duration::from_secs(1).saturating_sub(last.elapsed()));
        let published = engine.published("temperature")?;
        let dt = last.elapsed().as_secs_f64();
        last = Instant::now();
        let lag = |g: &str| {
            engine
                .group_stats(g)
                .map_or(0, |s| published.saturating_sub(s.delivered))
        };
        let (p50, p99) = {
            let mut h = latency.lock().map_err(|_| "latency lock poisoned")?;
            let r = (h.value_at_quantile(0.5), h.value_at_quantile(0.99));
            let _ = total_latency.lock().map(|mut t| t.add(&*h));
            h.reset();
            r
        };
        println!(
            "[{:>3.0}s] ingest {:>9.0}/s  published {:>10}  lag alerts {:>6} stats {:>6}  alerts {:>8}  latency p50 {:>6} us p99 {:>6} us",
            start.elapsed().as_secs_f64(),
            (published - last_published) as f64 / dt,
            published,
            lag("alerts"),
            lag("stats"),
            alerts.load(Ordering::Relaxed),
            p50,
            p99,
        );
        last_published = published;
    }
    stop.store(true, Ordering::Relaxed);
    let sent = producer.join().map_err(|_| "producer thread panicked")??;
    let report = rt.shutdown(Shutdown::Drain);
    let _ = latency
        .lock()
        .map(|h| total_latency.lock().map(|mut t| t.add(&*h)));
    let published = engine.published("temperature")?;
    let total = total_latency.lock().map_err(|_| "latency lock poisoned")?;
    println!();
    println!(
        "{:<10} {:>12} {:>8} {:>7}",
        "group", "handled", "missed", "panics"
    );
    for (g, r) in &report.groups {
        println!("{g:<10} {:>12} {:>8} {:>7}", r.handled, r.missed, r.panics);
    }
    println!(
        "sent {sent}, published {published}, alerts {}, devices tracked {}",
        alerts.load(Ordering::Relaxed),
        devices.lock().map_or(0, |d| d.len()),
    );
    println!(
        "end-to-end latency (us): p50 {} p90 {} p99 {} p99.9 {} max {}",
        total.value_at_quantile(0.5),
        total.value_at_quantile(0.9),
        total.value_at_quantile(0.99),
        total.value_at_quantile(0.999),
        total.max(),
    );
    let exact = report
        .groups
        .values()
        .all(|g| g.handled + g.missed == published);
    println!(
        "check: every group handled + missed == published: {}",
        if exact { "yes" } else { "NO" }
    );
    if !exact {
        return Err("a group's counts do not add up to what was published".into());
    }
    Ok(())
}
