//! `telering serve`: the MQTT endpoint, engine and consumers, for real devices.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use telering::mqtt::ServerConfig;

use crate::session::Session;

/// Options of `telering serve`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Args {
    /// Configuration file (TOML); `telering generate-config` prints the default.
    #[arg(long, short)]
    pub config: Option<String>,
    /// MQTT listen address, for 3.1, 3.1.1 and 5 alike (overrides the config).
    #[arg(long)]
    pub mqtt: Option<SocketAddr>,
    /// Ingest shards: threads serving connections, each owning a share of
    /// the partitions (default: the config's, 0 = one per core).
    #[arg(long)]
    pub shards: Option<usize>,
    /// Journal the engine topics in this data directory (overrides the
    /// config's `[journal] dir`): acknowledgements wait for the journal, and
    /// a restart continues where it ended.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Stop after this many seconds (default: run until SIGINT or SIGTERM).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Seconds between live lines (0: none).
    #[arg(long, default_value_t = 1)]
    pub every: u64,
}

/// Loads the configuration and applies the command-line overrides.
pub fn config(args: &Args) -> Result<ServerConfig, Box<dyn std::error::Error>> {
    let mut cfg = match &args.config {
        Some(path) => ServerConfig::from_file(path)?,
        None => ServerConfig::default(),
    };
    if let Some(a) = args.mqtt {
        cfg.mqtt.listen = a;
    }
    if let Some(n) = args.shards {
        cfg.ingest.shards = n;
    }
    if let Some(d) = &args.data_dir {
        cfg.journal.dir = Some(d.clone());
    }
    cfg.check()?;
    Ok(cfg)
}

/// Sets `reload` on every SIGHUP (the TLS certificate is read again).
fn watch_hangup(reload: Arc<AtomicBool>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("telering-sighup".into())
        .spawn(move || {
            rt.block_on(async {
                let Ok(mut hup) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                else {
                    tracing::error!("cannot watch SIGHUP: no certificate reload");
                    return;
                };
                while hup.recv().await.is_some() {
                    reload.store(true, Ordering::Release);
                }
            });
        })?;
    Ok(())
}

/// Sets the flag on SIGINT or SIGTERM.
pub fn watch_signals(flag: Arc<AtomicBool>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("telering-signals".into())
        .spawn(move || {
            rt.block_on(async {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::error!("cannot watch SIGTERM: {e}");
                            let _ = tokio::signal::ctrl_c().await;
                            flag.store(true, Ordering::Release);
                            return;
                        }
                    };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                flag.store(true, Ordering::Release);
            });
        })?;
    Ok(())
}

pub fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = config(args)?;
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone())?;
    let reload = Arc::new(AtomicBool::new(false));
    watch_hangup(reload.clone())?;
    let mut session = Session::start(cfg)?;
    eprintln!("telering serve: {}", session.describe());
    eprintln!(
        "point a device at it: mosquitto_pub -h {} -p {} -t sensors/my-device/temperature -m 21.5",
        session.server().config().mqtt.listen.ip(),
        session.server().config().mqtt.listen.port()
    );
    let started = Instant::now();
    let until = args.duration.map(|d| started + Duration::from_secs(d));
    let mut next_line = started + Duration::from_secs(args.every.max(1));
    while !stop.load(Ordering::Acquire) && until.is_none_or(|u| Instant::now() < u) {
        std::thread::sleep(Duration::from_millis(50));
        if reload.swap(false, Ordering::AcqRel) {
            match session.server().reload_tls() {
                Ok(()) => eprintln!("telering serve: SIGHUP: TLS certificate and key read again"),
                Err(e) => eprintln!("telering serve: SIGHUP: {e} (the old certificate stays)"),
            }
        }
        if args.every > 0 && Instant::now() >= next_line {
            println!("{}", session.live_line());
            next_line += Duration::from_secs(args.every);
        }
        if !session.server().is_running() {
            return Err("an MQTT ingest shard stopped unexpectedly".into());
        }
    }
    eprintln!(
        "telering serve: shutting down (acknowledging what was read, then draining the consumers)"
    );
    let summary = session.finish();
    eprint!("{}", summary.table());
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
