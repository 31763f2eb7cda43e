//! `sensor-sim`: simulated MQTT sensors publishing to a broker.
//!
//! A thin front end to [`telering_sim`]: prints the run's
//! [`SimSummary`](telering_sim::SimSummary) as one JSON line on stdout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use telering_sim::{self as sim, Format, Rate, SimConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Simulated MQTT sensors: random-walk temperature and humidity readings,
/// optionally mixed with deliberately invalid messages. Prints a JSON summary.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Broker address, host:port [default: 127.0.0.1:1883].
    #[arg(long)]
    broker: Option<String>,
    /// Number of sensors, one MQTT connection each [default: 10].
    #[arg(long)]
    sensors: Option<usize>,
    /// Messages per second per sensor.
    #[arg(long, conflicts_with_all = ["rate", "unlimited"])]
    rate_per_sensor: Option<f64>,
    /// Messages per second over all sensors [default: 1000].
    #[arg(long, conflicts_with = "unlimited")]
    rate: Option<f64>,
    /// Publish as fast as the clients accept.
    #[arg(long)]
    unlimited: bool,
    /// Run time in seconds; 0 = no time limit [default: 5, or none with --count].
    #[arg(long)]
    duration: Option<f64>,
    /// Total number of messages (stops at whichever of --duration/--count comes first).
    #[arg(long)]
    count: Option<u64>,
    /// MQTT QoS, 0 or 1 [default: 0].
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: Option<u8>,
    /// Fraction (0..=1) of deliberately invalid messages [default: 0].
    #[arg(long)]
    malformed: Option<f64>,
    /// Payload format: bare, json, reading or mixed [default: mixed].
    #[arg(long)]
    format: Option<Format>,
    /// Random seed [default: 42].
    #[arg(long)]
    seed: Option<u64>,
    /// Client and device id prefix [default: sim].
    #[arg(long)]
    client_prefix: Option<String>,
    /// Speak MQTT 5 instead of 3.1.1.
    #[arg(long)]
    mqtt5: bool,
    /// Log every sensor in with this MQTT user name; `{id}` in it is replaced
    /// by the sensor's device id (`--username '{id}'`: each device as itself).
    /// A refused login ends the run with the CONNACK code.
    #[arg(long, value_name = "USER")]
    username: Option<String>,
    /// The password sent with --username.
    #[arg(long, value_name = "PASS", requires = "username")]
    password: Option<String>,
    /// Connect over TLS, verifying the broker's certificate against the CA
    /// certificate(s) in this PEM file (and its name against --broker's host).
    #[arg(long, value_name = "PEM")]
    cafile: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

impl Args {
    fn config(self) -> Result<SimConfig, String> {
        let d = SimConfig::default();
        let duration = match self.duration {
            Some(0.0) => None,
            Some(s) => Some(
                Duration::try_from_secs_f64(s)
                    .map_err(|_| format!("--duration {s} is not a number of seconds"))?,
            ),
            None if self.count.is_some() => None,
            None => d.duration,
        };
        let rate = match (self.rate_per_sensor, self.rate, self.unlimited) {
            (_, _, true) => Rate::Unlimited,
            (Some(r), _, _) => Rate::PerSensor(r),
            (None, Some(r), _) => Rate::Total(r),
            (None, None, false) => d.rate,
        };
        Ok(SimConfig {
            broker: self.broker.unwrap_or(d.broker),
            sensors: self.sensors.unwrap_or(d.sensors),
            rate,
            duration,
            count: self.count,
            qos: self.qos.unwrap_or(d.qos),
            malformed: self.malformed.unwrap_or(d.malformed),
            format: self.format.unwrap_or(d.format),
            seed: self.seed.unwrap_or(d.seed),
            client_prefix: self.client_prefix.unwrap_or(d.client_prefix),
            mqtt_v5: self.mqtt5,
            username: self.username,
            password: self.password,
            cafile: self.cafile,
        })
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    sim::log::init_tracing(args.verbose, &[]);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sensor-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = args.config()?;
    cfg.check()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let summary = rt.block_on(async {
        // Ctrl-C stops the sensors cleanly; the summary is still printed.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = stop_tx.send(true);
            }
        });
        sim::run(cfg, Some(stop_rx)).await
    })?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
