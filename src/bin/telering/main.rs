//! `telering`: the command-line front of the engine.

mod pipeline;

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
    /// Embedded pipeline: simulated sensors, a cluster group and a broadcast
    /// group on pinned threads, live stats. The default command.
    Pipeline(pipeline::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Some(Command::Pipeline(args)) => pipeline::run(&args),
        None => pipeline::run(&pipeline::Args::default()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("telering: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
