//! MQTT payload validation per message, criterion: `validate_with` (the
//! hand-written fast path for the JSON shapes, serde_json as fallback) next
//! to the serde_json-only reference it must agree with, on the payloads
//! the sensor simulator sends:
//! - `value`: `{"ts": <µs>, "value": 21.53}` on `sensors/<device>/temperature`;
//! - `reading`: `{"ts": <µs>, "temperature": 21.53, "humidity": 48.07}`;
//! - `bare`: `21.53` (the same `str::parse` on both sides, as a baseline).
//!
//! Compare the two lines of a group within one run: on a shared or noisy
//! machine the absolute figures move between runs more than the ratio.
//!
//! `cargo bench --bench validate` (about half a minute).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use telering::mqtt::validate::{validate_with, validate_with_serde_only, Limits};

const CASES: [(&str, &str, &str); 3] = [
    (
        "value",
        "sensors/sim-0/temperature",
        r#"{"ts": 1700000000123456, "value": 21.53}"#,
    ),
    (
        "reading",
        "sensors/sim-0/reading",
        r#"{"ts": 1700000000123456, "temperature": 21.53, "humidity": 48.07}"#,
    ),
    ("bare", "sensors/sim-0/temperature", "21.53"),
];

fn validate(c: &mut Criterion) {
    let limits = Limits::default();
    for (name, topic, payload) in CASES {
        let (topic, payload) = (topic.as_bytes(), payload.as_bytes());
        // Both must accept the same reading, or the comparison means nothing.
        let fast = validate_with(topic, payload, &limits, || 0).expect("valid");
        let reference = validate_with_serde_only(topic, payload, &limits, || 0).expect("valid");
        assert_eq!(fast.reading.ts_us, reference.reading.ts_us);
        assert_eq!(
            fast.reading.temperature.to_bits(),
            reference.reading.temperature.to_bits()
        );
        assert_eq!(
            fast.reading.humidity.to_bits(),
            reference.reading.humidity.to_bits()
        );

        let mut g = c.benchmark_group(format!("validate/{name}"));
        g.throughput(Throughput::Elements(1));
        g.warm_up_time(Duration::from_secs(1));
        g.measurement_time(Duration::from_secs(3));
        g.bench_function("fast", |b| {
            b.iter(|| validate_with(black_box(topic), black_box(payload), &limits, || 42))
        });
        g.bench_function("serde_only", |b| {
            b.iter(|| {
                validate_with_serde_only(black_box(topic), black_box(payload), &limits, || 42)
            })
        });
        g.finish();
    }
}

criterion_group!(benches, validate);
criterion_main!(benches);
