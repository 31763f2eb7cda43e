//! `telering demo`: the whole system on loopback. The MQTT endpoint, the
//! sensor simulator publishing over real MQTT, the consumer groups, live
//! stats and a progress bar, then a summary checked against what the
//! simulator says it sent.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use telering::mqtt::ServerConfig;
use telering_sim::{self as sim, Format, Rate, SimConfig};

use crate::session::Session;

/// Options of `telering demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Seconds the sensors publish.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Simulated sensors (one MQTT connection each).
    #[arg(long, default_value_t = 100)]
    pub sensors: usize,
    /// Messages per second over all sensors (0: as fast as they go).
    #[arg(long, default_value_t = 20_000)]
    pub rate: u64,
    /// MQTT QoS of the sensors (0 or 1).
    #[arg(long, default_value_t = 1)]
    pub qos: u8,
    /// Fraction of deliberately malformed messages.
    #[arg(long, default_value_t = 0.01)]
    pub malformed: f64,
    /// Configuration file for the server part (listen addresses are
    /// replaced by free loopback ports).
    #[arg(long, short)]
    pub config: Option<String>,
    /// Journal the engine topics in this data directory (as `serve
    /// --data-dir`): acknowledgements wait for the journal; read it back
    /// with `telering dump`.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            duration: 10,
            sensors: 100,
            rate: 20_000,
            qos: 1,
            malformed: 0.01,
            config: None,
            data_dir: None,
        }
    }
}

pub fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = match &args.config {
        Some(p) => ServerConfig::from_file(p)?,
        None => ServerConfig::default(),
    };
    cfg.mqtt.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    if let Some(d) = &args.data_dir {
        cfg.journal.dir = Some(d.clone());
    }
    let mut session = Session::start(cfg)?;
    let broker = session.server().local_addr();
    println!("telering demo: {}", session.describe());
    println!(
        "simulator: {} sensors, {} msg/s, QoS {}, {:.1} % malformed, {} s",
        args.sensors,
        if args.rate == 0 {
            "unlimited".to_owned()
        } else {
            args.rate.to_string()
        },
        args.qos,
        args.malformed * 100.0,
        args.duration
    );

    let sim_cfg = SimConfig {
        broker: broker.to_string(),
        sensors: args.sensors,
        rate: if args.rate == 0 {
            Rate::Unlimited
        } else {
            Rate::Total(args.rate as f64)
        },
        duration: Some(Duration::from_secs(args.duration)),
        count: None,
        qos: args.qos,
        malformed: args.malformed,
        format: Format::Mixed,
        seed: 7,
        client_prefix: "sim".into(),
        mqtt_v5: false,
        ..SimConfig::default()
    };
    let sim = std::thread::Builder::new()
        .name("telering-sim".into())
        .spawn(move || sim::run_blocking(sim_cfg))?;

    let bar = ProgressBar::new(args.duration);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} s {msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut next = started + Duration::from_secs(1);
    while !sim.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        if Instant::now() >= next {
            bar.println(session.live_line());
            bar.set_position(started.elapsed().as_secs().min(args.duration));
            next += Duration::from_secs(1);
        }
    }
    bar.finish_and_clear();
    let sent = sim.join().map_err(|_| "simulator thread panicked")??;
    println!("{}", session.live_line());
    let summary = session.finish();
    println!();
    print!("{}", summary.table());
    println!(
        "  {:<28} sent {} (valid {}, malformed {}), {:.0} msg/s",
        "simulator", sent.sent, sent.valid, sent.malformed, sent.rate
    );
    let checks = [
        (
            "every message sent was received",
            sent.sent == summary.received,
        ),
        (
            "every malformed message was dead-lettered with its reason",
            sent.malformed == summary.dead_lettered
                && sent.malformed_by_reason == summary.dead_letter_reasons,
        ),
        (
            "each group handled every record (+ missed)",
            summary
                .delivered
                .iter()
                .all(|(g, n)| n + summary.missed.get(g).copied().unwrap_or(0) == summary.records),
        ),
    ];
    for (what, ok) in &checks {
        println!("  check: {what}: {}", if *ok { "yes" } else { "NO" });
    }
    println!("{}", serde_json::to_string(&summary)?);
    if checks.iter().all(|c| c.1) {
        Ok(())
    } else {
        Err("the counts do not add up (see the checks above)".into())
    }
}
