//! What both criterion benches do with a scenario: one group, a benchmark per
//! system. Here rather than in the library because criterion is only a
//! dev-dependency of this crate.

use telering_bench::scenarios::{Pins, Scenario};

/// One criterion group for a scenario, a benchmark per system, each run
/// through `iter_custom` (the benches in `benches/`).
pub fn bench_scenario(c: &mut criterion::Criterion, pins: &Pins, scenario: &Scenario) {
    let mut group = c.benchmark_group(scenario.id);
    group.throughput(criterion::Throughput::Elements(1));
    for system in &scenario.systems {
        group.bench_function(system.name, |b| {
            b.iter_custom(|records| (system.run)(records, pins))
        });
    }
    group.finish();
}
