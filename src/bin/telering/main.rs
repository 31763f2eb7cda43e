//! `telering`: the command-line front of the engine.

mod demo;
mod dump;
mod passwd;
mod pipeline;
mod serve;
mod session;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// IoT telemetry ingest on single-writer lock-free partition rings.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The whole system on loopback: the MQTT endpoint, simulated sensors
    /// over MQTT, pinned consumer groups, live stats. The default command.
    Demo(demo::Args),
    /// The MQTT endpoint, engine and consumers, for real devices. Stops on
    /// SIGINT/SIGTERM or after --duration and prints a JSON summary last.
    Serve(serve::Args),
    /// The engine alone, embedded: in-process simulated sensors, no MQTT.
    Pipeline(pipeline::Args),
    /// Print a journaled topic as JSON lines, from `serve --data-dir`.
    Dump(dump::Args),
    /// Print the default configuration file.
    GenerateConfig,
    /// Add, update or delete a user of an MQTT password file (mosquitto 2's
    /// format, as `mosquitto_passwd -b`).
    Passwd(passwd::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telering_sim::log::init_tracing(cli.verbose, &[]);
    let result = match cli.command {
        None => demo::run(&demo::Args::default()),
        Some(Command::Demo(args)) => demo::run(&args),
        Some(Command::Serve(args)) => serve::run(&args),
        Some(Command::Pipeline(args)) => pipeline::run(&args),
        Some(Command::Dump(args)) => dump::run(&args),
        Some(Command::Passwd(args)) => passwd::run(&args),
        Some(Command::GenerateConfig) => {
            print!("{}", telering::mqtt::DEFAULT_CONFIG);
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("telering: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
