//! Embedded pipeline: a producer thread publishes `Reading`s into a
//! 4-partition topic; a cluster group of two pinned consumers shares them and
//! a broadcast consumer sees them all. Prints what each member received.
//!
//! Run with `cargo run --release --example embedded_pipeline`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use telering::record::now_us;
use telering::runtime::{Handler, Runtime, Shutdown};
use telering::{
    ConsumerConfig, DeviceId, Engine, OverflowPolicy, Reading, Record, Run, TopicConfig,
};
use telering_sim::Fleet;

/// Per member: records received, per partition.
type Received = Arc<Mutex<BTreeMap<u32, u64>>>;

/// Counts records per partition; publishes its counts when the member stops.
struct Tally {
    into: Received,
    local: BTreeMap<u32, u64>,
}

impl Handler<Reading> for Tally {
    /// A run of one partition, read in place from its ring (the runtime
    /// polls with `Consumer::poll_with`): one count per run.
    fn on_batch(&mut self, run: Run<'_, Reading>) {
        *self.local.entry(run.partition).or_default() += run.records.len() as u64;
    }

    /// One record (what the default `on_batch` calls for each record).
    fn on_record(&mut self, r: &Record<Reading>) {
        *self.local.entry(r.partition).or_default() += 1;
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        *self.into.lock().unwrap() = std::mem::take(&mut self.local);
    }
}

fn tally(into: &Received) -> Tally {
    Tally {
        into: into.clone(),
        local: BTreeMap::new(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine: Engine<Reading> = Engine::new();
    engine.create_topic(
        "temperature",
        TopicConfig::new(4, 4096).policy(OverflowPolicy::Block),
    )?;

    let members: Vec<(&str, Received)> = vec![
        ("alerts member 1 (cluster)", Received::default()),
        ("alerts member 2 (cluster)", Received::default()),
        ("stats (broadcast)", Received::default()),
    ];
    let runtime = Runtime::builder(&engine)
        .member(
            ConsumerConfig::cluster("alerts"),
            &["temperature"],
            tally(&members[0].1),
        )
        .member(
            ConsumerConfig::cluster("alerts"),
            &["temperature"],
            tally(&members[1].1),
        )
        .member(
            ConsumerConfig::broadcast("stats"),
            &["temperature"],
            tally(&members[2].1),
        )
        .start()?;
    println!("{}", runtime.pinning().describe());

    let producer = {
        let engine = engine.clone();
        std::thread::spawn(move || -> Result<(), String> {
            let mut p = engine.producer("temperature").map_err(|e| e.to_string())?;
            let mut fleet = Fleet::new("sensor", 16, 1);
            let ids: Vec<DeviceId> = fleet
                .ids()
                .map(DeviceId::new)
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            for i in 0..100_000 {
                let (t, h) = fleet.step(i);
                // The device id is the key: each device stays in one partition.
                let r = Reading::new(ids[i % ids.len()], now_us(), t, h);
                p.send(r).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    };
    producer.join().map_err(|_| "producer panicked")??;

    let report = runtime.shutdown(Shutdown::Drain);
    for (name, received) in &members {
        let received = received.lock().unwrap();
        let total: u64 = received.values().sum();
        println!("{name:<26} {total:>7} records, per partition {received:?}");
    }
    for (group, g) in &report.groups {
        println!("group {group:<7} handled {:>7}", g.handled);
    }
    println!(
        "published {}; each group handled all of them: {}",
        engine.published("temperature")?,
        report.groups.values().all(|g| g.handled == 100_000)
    );
    Ok(())
}
