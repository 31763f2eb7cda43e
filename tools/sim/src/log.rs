//! The one tracing setup of telering's binaries (`telering`, `sensor-sim`,
//! `mqtt-bench`): here because each of them links the simulator.

/// Logs to stderr at the level `-v` counts asked for (0 = warn, 1 = info,
/// 2 = debug, more = trace), unless `RUST_LOG` says otherwise. The targets
/// in `noisy` (crates that log routine events as errors) are silent at 0
/// and at warn at 1.
pub fn init_tracing(verbose: u8, noisy: &[&str]) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter(verbose, noisy))),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// The filter directive of [`init_tracing`].
fn filter(verbose: u8, noisy: &[&str]) -> String {
    let (level, quieted) = match verbose {
        0 => ("warn", Some("off")),
        1 => ("info", Some("warn")),
        2 => ("debug", None),
        _ => ("trace", None),
    };
    let mut f = level.to_owned();
    if let Some(q) = quieted {
        for target in noisy {
            f.push_str(&format!(",{target}={q}"));
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::filter;

    #[test]
    fn noisy_targets_are_quieted_below_debug() {
        assert_eq!(filter(0, &["rumqttd"]), "warn,rumqttd=off");
        assert_eq!(filter(1, &["rumqttd"]), "info,rumqttd=warn");
        assert_eq!(filter(2, &["rumqttd"]), "debug");
        assert_eq!(filter(9, &[]), "trace");
    }
}
