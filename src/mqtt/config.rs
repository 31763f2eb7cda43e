//! Server configuration: TOML, with the defaults in `config/telering.toml`.

use std::collections::HashMap;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::ring::{OverflowPolicy, SlotLayout};
use crate::WaitStrategy;

/// The default configuration file, embedded.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/telering.toml");

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not valid TOML or wrong field types.
    #[error("invalid configuration: {0}")]
    Toml(#[from] toml::de::Error),
    /// Reading the file failed.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A value is out of its range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// `[mqtt]`: the embedded broker.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// MQTT 3.1.1 listener.
    pub listen: SocketAddr,
    /// MQTT 5 listener, if any.
    pub listen_v5: Option<SocketAddr>,
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Largest packet payload the broker takes before disconnecting.
    pub max_packet_payload: usize,
    /// Time a client has to send CONNECT, ms.
    pub connection_timeout_ms: u16,
    /// QoS 1 messages in flight per connection.
    pub max_inflight: usize,
    /// Bytes per in-memory log segment of the broker.
    pub segment_size: usize,
    /// Segments per subscription filter.
    pub segment_count: usize,
}

/// `[ingest]`: validation limits and engine topics.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest payload accepted, bytes.
    pub max_payload: usize,
    /// Partitions of `temperature` and `humidity`.
    pub partitions: u32,
    /// Slots per partition ring.
    pub capacity: usize,
    /// Overflow policy of the engine topics.
    #[serde(deserialize_with = "de_policy")]
    pub policy: OverflowPolicy,
    /// Slot layout of the engine topics' rings ([`crate::SlotLayout`]).
    #[serde(default, deserialize_with = "de_layout")]
    pub layout: SlotLayout,
    /// Slots of `dead_letter`.
    pub dead_letter_capacity: usize,
}

/// `[consumers]`: the built-in consumer groups of `serve` and `demo`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsumersConfig {
    /// Members of the cluster group `alerts`.
    pub alerts_members: usize,
    /// Temperature alert threshold, °C.
    pub temperature_alert: f32,
    /// Humidity alert threshold, %.
    pub humidity_alert: f32,
    /// Wait strategy.
    #[serde(deserialize_with = "de_wait")]
    pub wait: WaitStrategy,
    /// Pin consumer threads.
    pub pin: bool,
    /// Records a poll gathers before it returns ([`crate::ConsumerConfig::fetch`]).
    #[serde(default = "one")]
    pub fetch_min: usize,
    /// Longest a poll gathers towards `fetch_min`, ms.
    #[serde(default)]
    pub fetch_max_wait_ms: u64,
}

fn one() -> usize {
    1
}

/// Largest `consumers.fetch_max_wait_ms` accepted.
pub const MAX_FETCH_WAIT_MS: u64 = 10_000;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Broker.
    pub mqtt: MqttConfig,
    /// Validation and engine topics.
    pub ingest: IngestConfig,
    /// Built-in consumers.
    pub consumers: ConsumersConfig,
}

fn de_layout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SlotLayout, D::Error> {
    let s = String::deserialize(d)?;
    match s.as_str() {
        "packed" => Ok(SlotLayout::Packed),
        "marked" => Ok(SlotLayout::Marked),
        other => Err(serde::de::Error::custom(format!(
            "unknown layout {other:?}: use packed or marked"
        ))),
    }
}

fn de_policy<'de, D: serde::Deserializer<'de>>(d: D) -> Result<OverflowPolicy, D::Error> {
    let s = String::deserialize(d)?;
    match s.as_str() {
        "block" => Ok(OverflowPolicy::Block),
        "reject" => Ok(OverflowPolicy::Reject),
        "overwrite" => Ok(OverflowPolicy::Overwrite),
        other => Err(serde::de::Error::custom(format!(
            "unknown policy {other:?}: use block, reject or overwrite"
        ))),
    }
}

/// Parses a wait strategy name: `busy-spin`, `spin-yield` or `park`.
pub fn parse_wait(s: &str) -> Result<WaitStrategy, String> {
    match s {
        "busy-spin" => Ok(WaitStrategy::BusySpin),
        "spin-yield" => Ok(WaitStrategy::SpinYield),
        "park" => Ok(WaitStrategy::Park),
        other => Err(format!(
            "unknown wait strategy {other:?}: use busy-spin, spin-yield or park"
        )),
    }
}

fn de_wait<'de, D: serde::Deserializer<'de>>(d: D) -> Result<WaitStrategy, D::Error> {
    let s = String::deserialize(d)?;
    parse_wait(&s).map_err(serde::de::Error::custom)
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::from_toml(DEFAULT_CONFIG).expect("the embedded default configuration is valid")
    }
}

impl ServerConfig {
    /// Parses and checks a TOML configuration.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let cfg: ServerConfig = toml::from_str(text)?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Reads, parses and checks a configuration file.
    pub fn from_file(path: &str) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Checks ranges and relations between values.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let m = &self.mqtt;
        let i = &self.ingest;
        if m.max_connections == 0 {
            return bad("mqtt.max_connections must be at least 1".into());
        }
        if m.segment_size < 1024 || m.segment_count == 0 {
            return bad(
                "mqtt.segment_size must be at least 1024 and mqtt.segment_count at least 1".into(),
            );
        }
        if m.max_inflight == 0 || m.max_inflight > u16::MAX as usize {
            return bad(format!(
                "mqtt.max_inflight must be 1..=65535 (got {})",
                m.max_inflight
            ));
        }
        if i.max_payload == 0 || i.max_payload >= m.max_packet_payload {
            return bad(format!(
                "ingest.max_payload ({}) must be at least 1 and below mqtt.max_packet_payload ({}), \
                 so oversized messages are dead-lettered instead of disconnecting the client",
                i.max_payload, m.max_packet_payload
            ));
        }
        if Some(m.listen) == m.listen_v5 {
            return bad(format!(
                "mqtt.listen and mqtt.listen_v5 are both {}",
                m.listen
            ));
        }
        for (name, topic) in [
            (
                "ingest",
                crate::TopicConfig::new(i.partitions, i.capacity)
                    .policy(i.policy)
                    .layout(i.layout),
            ),
            (
                "ingest.dead_letter",
                crate::TopicConfig::new(1, i.dead_letter_capacity),
            ),
        ] {
            crate::topic::check_topic("check", &topic)
                .map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
        }
        let c = &self.consumers;
        if c.alerts_members == 0 {
            return bad("consumers.alerts_members must be at least 1".into());
        }
        if c.fetch_min == 0 {
            return bad(
                "consumers.fetch_min must be at least 1 (1 returns every record at once)".into(),
            );
        }
        if c.fetch_max_wait_ms > MAX_FETCH_WAIT_MS {
            return bad(format!(
                "consumers.fetch_max_wait_ms must be at most {MAX_FETCH_WAIT_MS} (got {})",
                c.fetch_max_wait_ms
            ));
        }
        Ok(())
    }

    /// The rumqttd configuration: a router sized so memory stays bounded
    /// (one filter, `#`, read by the bridge: segment_size x segment_count)
    /// and the v4 (and v5) listeners.
    pub fn broker_config(&self) -> rumqttd::Config {
        let m = &self.mqtt;
        let connections = rumqttd::ConnectionSettings {
            connection_timeout_ms: m.connection_timeout_ms,
            max_payload_size: m.max_packet_payload,
            max_inflight_count: m.max_inflight,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        };
        let server = |name: &str, listen: SocketAddr| rumqttd::ServerSettings {
            name: name.to_owned(),
            listen,
            tls: None,
            next_connection_delay_ms: 0,
            connections: connections.clone(),
        };
        let mut v4 = HashMap::new();
        v4.insert("v4".to_owned(), server("telering-v4", m.listen));
        let v5 = m.listen_v5.map(|addr| {
            let mut v5 = HashMap::new();
            v5.insert("v5".to_owned(), server("telering-v5", addr));
            v5
        });
        rumqttd::Config {
            id: 0,
            router: rumqttd::RouterConfig {
                max_connections: m.max_connections,
                max_outgoing_packet_count: 200,
                max_segment_size: m.segment_size,
                max_segment_count: m.segment_count,
                custom_segment: None,
                initialized_filters: None,
                shared_subscriptions_strategy: Default::default(),
            },
            v4: Some(v4),
            v5,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_parses_and_checks() {
        let c = ServerConfig::default();
        assert_eq!(c.ingest.partitions, 4);
        assert_eq!(c.ingest.policy, OverflowPolicy::Block);
        assert!(c.mqtt.listen_v5.is_some());
        assert_eq!(
            (c.consumers.fetch_min, c.consumers.fetch_max_wait_ms),
            (64, 2)
        );
        // Configs written before the fetch settings existed still load.
        let old = DEFAULT_CONFIG
            .replace("fetch_min = 64\n", "")
            .replace("fetch_max_wait_ms = 2\n", "");
        let o = ServerConfig::from_toml(&old.replace("layout = \"packed\"\n", "")).unwrap();
        assert_eq!(
            (o.consumers.fetch_min, o.consumers.fetch_max_wait_ms),
            (1, 0)
        );
        assert_eq!(o.ingest.layout, SlotLayout::Packed);
        let marked = ServerConfig::from_toml(
            &DEFAULT_CONFIG.replace("layout = \"packed\"", "layout = \"marked\""),
        )
        .unwrap();
        assert_eq!(marked.ingest.layout, SlotLayout::Marked);
        let b = c.broker_config();
        assert!(b.router.max_segment_size > 0 && b.router.max_connections > 0);
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        let bad = [
            DEFAULT_CONFIG.replace("partitions = 4", "partitions = 0"),
            DEFAULT_CONFIG.replace("capacity = 65536", "capacity = 1000"),
            DEFAULT_CONFIG.replace("policy = \"block\"", "policy = \"drop\""),
            DEFAULT_CONFIG.replace("layout = \"packed\"", "layout = \"sparse\""),
            // The marked layout cannot serve the overwrite policy.
            DEFAULT_CONFIG
                .replace("layout = \"packed\"", "layout = \"marked\"")
                .replace("policy = \"block\"", "policy = \"overwrite\""),
            DEFAULT_CONFIG.replace("max_payload = 1024", "max_payload = 100000"),
            DEFAULT_CONFIG.replace("wait = \"park\"", "wait = \"sleep\""),
            DEFAULT_CONFIG.replace("fetch_min = 64", "fetch_min = 0"),
            DEFAULT_CONFIG.replace("fetch_max_wait_ms = 2", "fetch_max_wait_ms = 99999"),
            DEFAULT_CONFIG.replace("listen = \"127.0.0.1:1883\"", "listen = \"nowhere\""),
            DEFAULT_CONFIG.replace("[ingest]", "[ingest]\nbogus = 1"),
            "not toml at all [".to_owned(),
        ];
        for text in bad {
            let e = ServerConfig::from_toml(&text).unwrap_err();
            assert!(!e.to_string().is_empty());
        }
        assert!(matches!(
            ServerConfig::from_file("/nonexistent/telering.toml"),
            Err(ConfigError::Read { .. })
        ));
    }
}
