//! `telering pipeline`: the embedded pipeline with simulated sensors.
//!
//! A producer thread publishes random-walk readings from a fleet of simulated
//! devices into a `temperature` topic; the built-in consumer groups of
//! `serve` ([`telering::app::handlers`], thresholds and fetch settings from
//! the default configuration) read it: a cluster group `alerts` (two pinned
//! members) flags readings over thresholds and a broadcast group `stats`
//! keeps per-device min, max and mean and the end-to-end latency. One line of
//! live stats per second, then a summary.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use telering::app::handlers::{self, Shared};
use telering::mqtt::{ServerConfig, TEMPERATURE};
use telering::record::now_us;
use telering::runtime::Shutdown;
use telering::{DeviceId, Engine, OverflowPolicy, Reading, TopicConfig, WaitStrategy};
use telering_sim::Fleet;

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

/// Runs the pipeline.
pub fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let engine: Engine<Reading> = Engine::new();
    engine.create_topic(
        "temperature",
        TopicConfig::new(args.partitions, args.capacity).policy(OverflowPolicy::Block),
    )?;
    let consumers = telering::mqtt::config::ConsumersConfig {
        alerts_members: 2,
        wait: args.wait,
        pin: !args.no_pin,
        ..ServerConfig::default().consumers
    };
    let shared = Shared::new();
    let rt = handlers::start_on(&engine, &[TEMPERATURE], &consumers, &shared, None)?;
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
                let ids = fleet
                    .ids()
                    .map(DeviceId::new)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
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
                        let i = sent as usize % n;
                        let (t, h) = fleet.step(i);
                        match p.send(Reading::new(ids[i], now_us(), t, h)) {
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
            let mut h = shared
                .interval
                .lock()
                .map_err(|_| "latency lock poisoned")?;
            let r = (h.value_at_quantile(0.5), h.value_at_quantile(0.99));
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
            shared.alerts.load(Ordering::Relaxed),
            p50,
            p99,
        );
        last_published = published;
    }
    stop.store(true, Ordering::Relaxed);
    let sent = producer.join().map_err(|_| "producer thread panicked")??;
    let report = rt.shutdown(Shutdown::Drain);
    let published = engine.published("temperature")?;
    let total = shared.total.lock().map_err(|_| "latency lock poisoned")?;
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
        shared.alerts.load(Ordering::Relaxed),
        shared.devices.lock().map_or(0, |d| d.len()),
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
