//! `telering dump`: a journaled topic's records as JSON lines, read from
//! the data directory (as `kafka-console-consumer` reads a topic). Safe
//! beside a running server: it takes no lock and writes nothing.

use std::io::Write;
use std::path::PathBuf;

use telering::journal::dump::{partitions, read_partition, Dumped};
use telering::Reading;

/// Options of `telering dump`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The data directory of `serve --data-dir`.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The topic (`temperature` or `humidity` for the server's).
    pub topic: String,
    /// Only this partition (default: all, one after the other).
    #[arg(long)]
    pub partition: Option<u32>,
    /// First offset to print (in each partition).
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Stop after this many records (in all).
    #[arg(long)]
    pub limit: Option<u64>,
}

#[derive(serde::Serialize)]
struct Line<'a> {
    topic: &'a str,
    partition: u32,
    offset: u64,
    device: &'a str,
    ts_us: u64,
    temperature: f32,
    humidity: f32,
    journaled_us: u64,
}

pub fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let parts = match args.partition {
        Some(p) => vec![p],
        None => partitions(&args.data_dir, &args.topic)?,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut left = args.limit.unwrap_or(u64::MAX);
    let mut failed: Option<std::io::Error> = None;
    for p in parts {
        if left == 0 {
            break;
        }
        read_partition::<Reading>(
            &args.data_dir,
            &args.topic,
            p,
            args.from,
            |d: Dumped<Reading>| {
                if left == 0 || failed.is_some() {
                    return;
                }
                left -= 1;
                let v = d.value;
                let line = Line {
                    topic: &args.topic,
                    partition: d.partition,
                    offset: d.offset,
                    device: v.device.as_str(),
                    ts_us: v.ts_us,
                    temperature: v.temperature,
                    humidity: v.humidity,
                    journaled_us: d.journaled_us,
                };
                let r = serde_json::to_writer(&mut out, &line)
                    .map_err(std::io::Error::other)
                    .and_then(|()| out.write_all(b"\n"));
                if let Err(e) = r {
                    failed = Some(e);
                }
            },
        )?;
        if let Some(e) = failed.take() {
            // A closed pipe (`| head`) ends the dump quietly.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
