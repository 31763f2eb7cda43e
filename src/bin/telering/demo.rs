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
    /// Secured: the sensors connect over TLS (a throwaway CA and server
    /// certificate), each logging in as its own device with a password.
    #[arg(long)]
    pub secure: bool,
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
            secure: false,
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
    let secured = if args.secure {
        Some(Secured::set_up(&mut cfg, args.sensors)?)
    } else {
        None
    };
    let mut session = Session::start(cfg)?;
    let broker = match (&secured, session.server().tls_addr()) {
        (Some(_), Some(tls)) => format!("localhost:{}", tls.port()),
        _ => session.server().local_addr().to_string(),
    };
    if let Some(s) = &secured {
        println!(
            "secured: TLS on {broker} (CA {}), {} devices with passwords in {}",
            s.ca.display(),
            args.sensors,
            s.dir.display()
        );
    }
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
        broker,
        username: secured.as_ref().map(|_| "{id}".to_owned()),
        password: secured.as_ref().map(|s| s.password.clone()),
        cafile: secured.as_ref().map(|s| s.ca.clone()),
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

/// What `demo --secure` made: a CA, a server certificate for `localhost`,
/// a password file with one user per simulated device (the prefix and
/// numbering of `telering_sim::Fleet`), and an ACL that lets them publish
/// anything, so the malformed topics still reach validation and are
/// dead-lettered with their own reasons. Deleted when dropped.
struct Secured {
    dir: std::path::PathBuf,
    ca: std::path::PathBuf,
    password: String,
}

impl Secured {
    fn set_up(cfg: &mut ServerConfig, sensors: usize) -> Result<Self, Box<dyn std::error::Error>> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let dir = std::env::temp_dir().join(format!("telering-demo-secure-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "telering demo CA");
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate()?;
        let leaf =
            CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&leaf_key, &issuer)?;
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_cert.pem())?;
        std::fs::write(dir.join("server.pem"), leaf.pem())?;
        std::fs::write(dir.join("server.key"), leaf_key.serialize_pem())?;
        let password = format!("demo-{:x}", telering::record::now_us());
        let mut file = telering::mqtt::auth::PasswordFile::new();
        for id in telering_sim::Fleet::new("sim", sensors, 7).ids() {
            file.set(id, password.as_bytes())?;
        }
        let passwords = dir.join("passwords");
        file.save(&passwords)?;
        let acl = dir.join("acl");
        std::fs::write(
            &acl,
            "# every device may publish anywhere: validation decides\npattern write #\n",
        )?;
        cfg.auth.password_file = Some(passwords);
        cfg.auth.acl_file = Some(acl);
        cfg.tls = Some(telering::mqtt::TlsSection {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            client_ca: None,
            use_identity_as_username: false,
            identity: Default::default(),
        });
        Ok(Self { dir, ca, password })
    }
}

impl Drop for Secured {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
