//! Server configuration: TOML, with the defaults in `config/telering.toml`.

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

/// `[mqtt]`: the MQTT endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Listener for MQTT 3.1, 3.1.1 and 5 alike.
    pub listen: SocketAddr,
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Largest MQTT packet accepted (remaining length, bytes); a client
    /// sending more is disconnected.
    pub max_packet_size: usize,
    /// Time a client has to send CONNECT, ms.
    pub connect_timeout_ms: u64,
    /// QoS 1 and 2 messages in flight per connection (MQTT 5 Receive
    /// Maximum).
    pub receive_maximum: u16,
    /// Topic aliases per MQTT 5 connection.
    pub topic_alias_maximum: u16,
    /// Longest a closing connection waits to acknowledge what it read, ms.
    pub drain_timeout_ms: u64,
    /// PUBLISH packets per second one connection may send (a token
    /// bucket, `publish_burst` deep); over it the server stops reading that
    /// socket until the bucket refills. 0: no limit.
    #[serde(default = "publish_rate")]
    pub max_publish_rate: u32,
    /// Depth of that bucket (0: one second's worth).
    #[serde(default)]
    pub publish_burst: u32,
    /// Subscriptions one client may hold. No subscription is granted yet
    /// (the endpoint does not deliver to subscribers), so today this bounds
    /// the filters of one SUBSCRIBE: those past it get "quota exceeded".
    #[serde(default = "max_subscriptions")]
    pub max_subscriptions: usize,
}

fn max_subscriptions() -> usize {
    100
}

fn publish_rate() -> u32 {
    10_000
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
    /// Slots of each `dead_letter` partition (one per shard).
    pub dead_letter_capacity: usize,
    /// Ingest shards (threads serving connections, each owning a share of
    /// the partitions); 0: one per core.
    #[serde(default)]
    pub shards: usize,
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

/// `[tls]`: a TLS listener beside the plaintext one (rustls), as
/// mosquitto's 8883 beside 1883.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Address of the TLS listener.
    pub listen: SocketAddr,
    /// PEM certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// PEM private key.
    pub key: std::path::PathBuf,
    /// PEM CA: with it, clients must present a certificate it signed
    /// (mutual TLS).
    #[serde(default)]
    pub client_ca: Option<std::path::PathBuf>,
    /// With `client_ca`: a name of the client's certificate is its user
    /// name (for the ACL), and no password is asked for.
    #[serde(default)]
    pub use_identity_as_username: bool,
    /// That name: `"cn"`, the subject's common name (the default), or
    /// `"san"`, the first subject alternative name (DNS, else URI, else
    /// e-mail).
    #[serde(default)]
    pub identity: crate::mqtt::endpoint::CertIdentity,
}

impl TlsSection {
    /// The endpoint's TLS settings.
    pub fn tls_config(&self) -> crate::mqtt::endpoint::TlsConfig {
        crate::mqtt::endpoint::TlsConfig {
            listen: self.listen,
            cert: self.cert.clone(),
            key: self.key.clone(),
            client_ca: self.client_ca.clone(),
            use_identity_as_username: self.use_identity_as_username,
            identity: self.identity,
        }
    }
}

/// `[auth]`: who may connect and publish (names as mosquitto's).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// A password file in mosquitto's format (`mosquitto_passwd`, or
    /// `telering passwd`).
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    /// Let in clients without credentials. Unset: yes only when there is
    /// no password file and the listener is on loopback (mosquitto 2).
    #[serde(default)]
    pub allow_anonymous: Option<bool>,
    /// An ACL in mosquitto's `acl_file` format. Unset with a password
    /// file: a client may publish only to `sensors/<user name>/…` (or its
    /// client id without one).
    #[serde(default)]
    pub acl_file: Option<std::path::PathBuf>,
    /// Most connections from one source address.
    #[serde(default = "per_address")]
    pub max_connections_per_address: usize,
    /// Delay of the refusal after a first failed login from an address,
    /// doubling with each further one (up to 5 s), ms; 0: no throttling.
    #[serde(default = "hundred")]
    pub login_failure_delay_ms: u64,
}

fn per_address() -> usize {
    1000
}
fn hundred() -> u64 {
    100
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            password_file: None,
            allow_anonymous: None,
            acl_file: None,
            max_connections_per_address: per_address(),
            login_failure_delay_ms: hundred(),
        }
    }
}

impl AuthSection {
    /// Whether clients without credentials get in, for a listener on
    /// `listen`.
    pub fn anonymous_allowed(&self, listen: &SocketAddr) -> bool {
        self.allow_anonymous
            .unwrap_or(self.password_file.is_none() && listen.ip().is_loopback())
    }

    /// Loads the files and builds the endpoint's guard settings.
    pub fn guard(
        &self,
        listen: &SocketAddr,
    ) -> Result<crate::mqtt::endpoint::GuardConfig, ConfigError> {
        use crate::mqtt::auth::{acl::Acl, password::PasswordFile};
        let passwords = match &self.password_file {
            Some(p) => Some(
                PasswordFile::load(p)
                    .map_err(|e| ConfigError::Invalid(format!("auth.password_file: {e}")))?,
            ),
            None => None,
        };
        let acl = match (&self.acl_file, &passwords) {
            (Some(p), _) => Some(
                Acl::load(p).map_err(|e| ConfigError::Invalid(format!("auth.acl_file: {e}")))?,
            ),
            (None, Some(_)) => Some(Acl::default_policy()),
            (None, None) => None,
        };
        Ok(crate::mqtt::endpoint::GuardConfig {
            passwords,
            allow_anonymous: self.anonymous_allowed(listen),
            acl,
            max_connections_per_address: self.max_connections_per_address,
            login_failure_delay: std::time::Duration::from_millis(self.login_failure_delay_ms),
        })
    }
}

/// `[journal]`: where the engine topics are journaled. No `dir`: the
/// engine keeps records in memory only.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JournalSection {
    /// The data directory; set, `temperature` and `humidity` are journaled
    /// and every acknowledgement waits for the journal.
    #[serde(default)]
    pub dir: Option<std::path::PathBuf>,
    /// "always", "interval" or "never" ([`crate::journal::FsyncPolicy`]).
    #[serde(default = "interval")]
    pub fsync: String,
    /// The interval of `fsync = "interval"`, ms.
    #[serde(default = "ten")]
    pub fsync_interval_ms: u64,
    /// Segment size, bytes.
    #[serde(default = "segment_bytes")]
    pub segment_bytes: u64,
    /// Retention by size per partition, bytes (0: none).
    #[serde(default)]
    pub retention_bytes: u64,
    /// Retention by age, hours (0: none).
    #[serde(default)]
    pub retention_hours: u64,
    /// A cap on the bytes of all segments (0: none): beyond it, writes fail
    /// as on a full disk.
    #[serde(default)]
    pub max_bytes: u64,
    /// While messages keep coming, how long the journaller waits between
    /// batches so that each is larger, µs (0: no wait;
    /// [`crate::journal::JournalConfig::linger`]).
    #[serde(default = "linger_us")]
    pub linger_us: u64,
}

/// No directory; the other fields as `[journal]` leaves them.
impl Default for JournalSection {
    fn default() -> Self {
        Self {
            dir: None,
            fsync: interval(),
            fsync_interval_ms: ten(),
            segment_bytes: segment_bytes(),
            retention_bytes: 0,
            retention_hours: 0,
            max_bytes: 0,
            linger_us: linger_us(),
        }
    }
}

fn interval() -> String {
    "interval".into()
}
fn ten() -> u64 {
    10
}
fn segment_bytes() -> u64 {
    64 << 20
}
fn linger_us() -> u64 {
    crate::journal::DEFAULT_LINGER.as_micros() as u64
}

impl JournalSection {
    /// The fsync policy named.
    pub fn fsync_policy(&self) -> Result<crate::journal::FsyncPolicy, ConfigError> {
        use crate::journal::FsyncPolicy;
        match self.fsync.as_str() {
            "always" => Ok(FsyncPolicy::Always),
            "interval" if self.fsync_interval_ms > 0 => Ok(FsyncPolicy::Interval(
                std::time::Duration::from_millis(self.fsync_interval_ms),
            )),
            "interval" => Err(ConfigError::Invalid(
                "journal.fsync_interval_ms must be at least 1".into(),
            )),
            "never" => Ok(FsyncPolicy::Never),
            other => Err(ConfigError::Invalid(format!(
                "journal.fsync {other:?}: use always, interval or never"
            ))),
        }
    }

    /// The journal's configuration, if a directory is set.
    pub fn journal_config(&self) -> Result<Option<crate::journal::JournalConfig>, ConfigError> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let mut c = crate::journal::JournalConfig::new(dir).fsync(self.fsync_policy()?);
        if self.segment_bytes < 4096 {
            return Err(ConfigError::Invalid(format!(
                "journal.segment_bytes must be at least 4096 (got {})",
                self.segment_bytes
            )));
        }
        c.segment_bytes = self.segment_bytes;
        c.retention_bytes = (self.retention_bytes > 0).then_some(self.retention_bytes);
        c.retention = (self.retention_hours > 0)
            .then(|| std::time::Duration::from_secs(self.retention_hours * 3600));
        c.max_bytes = (self.max_bytes > 0).then_some(self.max_bytes);
        if self.linger_us > 10_000 {
            return Err(ConfigError::Invalid(format!(
                "journal.linger_us must be at most 10000 (got {}): every acknowledgement under load can wait that long",
                self.linger_us
            )));
        }
        c.linger = std::time::Duration::from_micros(self.linger_us);
        Ok(Some(c))
    }
}

/// Largest `mqtt.max_packet_size` accepted (MQTT's own limit is 256 MiB).
pub const MAX_PACKET_SIZE: usize = 16 * 1024 * 1024;
/// Most ingest shards.
pub const MAX_SHARDS: usize = 256;

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
    /// The journal (none unless `dir` is set).
    #[serde(default)]
    pub journal: JournalSection,
    /// Authentication and authorization.
    #[serde(default)]
    pub auth: AuthSection,
    /// A TLS listener (none by default).
    #[serde(default)]
    pub tls: Option<TlsSection>,
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
        if m.receive_maximum == 0 {
            return bad("mqtt.receive_maximum must be 1..=65535".into());
        }
        if m.max_packet_size < 64 || m.max_packet_size > MAX_PACKET_SIZE {
            return bad(format!(
                "mqtt.max_packet_size must be 64..={MAX_PACKET_SIZE} (got {})",
                m.max_packet_size
            ));
        }
        if i.max_payload == 0 || i.max_payload >= m.max_packet_size {
            return bad(format!(
                "ingest.max_payload ({}) must be at least 1 and below mqtt.max_packet_size ({}), \
                 so oversized messages are dead-lettered instead of disconnecting the client",
                i.max_payload, m.max_packet_size
            ));
        }
        if i.shards > MAX_SHARDS {
            return bad(format!(
                "ingest.shards must be at most {MAX_SHARDS} (got {}); 0 means one per core",
                i.shards
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
        self.journal.journal_config()?;
        let a = &self.auth;
        if let Some(t) = &self.tls {
            if t.use_identity_as_username && t.client_ca.is_none() {
                return bad(
                    "tls.use_identity_as_username needs tls.client_ca (the certificates it trusts)"
                        .into(),
                );
            }
        }
        let tls_beyond = self
            .tls
            .as_ref()
            .is_some_and(|t| !t.listen.ip().is_loopback());
        if tls_beyond && a.password_file.is_none() && a.allow_anonymous != Some(true) {
            return bad(
                "tls.listen accepts clients from the network, and no authentication is set: \
                 set [auth] password_file, or allow_anonymous = true"
                    .into(),
            );
        }
        if !m.listen.ip().is_loopback()
            && a.password_file.is_none()
            && a.allow_anonymous != Some(true)
        {
            return bad(format!(
                "mqtt.listen {} accepts clients from the network, and no authentication is set: \
                 set [auth] password_file (create one with `telering passwd FILE USER`), or \
                 allow_anonymous = true to let anyone in",
                m.listen
            ));
        }
        if a.allow_anonymous == Some(false) && a.password_file.is_none() {
            return bad(
                "auth.allow_anonymous = false with no auth.password_file lets no client in".into(),
            );
        }
        if a.max_connections_per_address == 0 {
            return bad("auth.max_connections_per_address must be at least 1".into());
        }
        if self.journal.dir.is_some() && i.policy == OverflowPolicy::Overwrite {
            return bad(
                "ingest.policy = \"overwrite\" cannot be journaled (the writer would pass the \
                 journal): use block or reject with journal.dir"
                    .into(),
            );
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

    /// The number of ingest shards: `ingest.shards`, or one per core.
    pub fn shards(&self) -> usize {
        match self.ingest.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The endpoint's settings.
    pub fn endpoint(&self) -> crate::mqtt::endpoint::EndpointConfig {
        let m = &self.mqtt;
        crate::mqtt::endpoint::EndpointConfig {
            listen: m.listen,
            max_connections: m.max_connections,
            max_packet_size: m.max_packet_size,
            connect_timeout: std::time::Duration::from_millis(m.connect_timeout_ms),
            receive_maximum: m.receive_maximum,
            topic_alias_maximum: m.topic_alias_maximum,
            drain_timeout: std::time::Duration::from_millis(m.drain_timeout_ms),
            max_publish_rate: m.max_publish_rate,
            publish_burst: if m.publish_burst == 0 {
                m.max_publish_rate
            } else {
                m.publish_burst
            },
            max_subscriptions: m.max_subscriptions,
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
        assert_eq!(c.ingest.shards, 0);
        assert!(c.shards() >= 1);
        assert_eq!(c.endpoint().listen, c.mqtt.listen);
        assert_eq!(
            (c.consumers.fetch_min, c.consumers.fetch_max_wait_ms),
            (1, 0)
        );
        // Configs written before the fetch settings existed still load.
        let old = DEFAULT_CONFIG
            .replace("fetch_min = 1\n", "")
            .replace("fetch_max_wait_ms = 0\n", "");
        assert_ne!(old, DEFAULT_CONFIG);
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
        // Configs of the rumqttd front end name its listener and router:
        // refused with the field named.
        let e = ServerConfig::from_toml(
            &DEFAULT_CONFIG.replace("[mqtt]", "[mqtt]\nlisten_v5 = \"127.0.0.1:1884\""),
        )
        .unwrap_err();
        assert!(e.to_string().contains("listen_v5"), "{e}");
    }

    #[test]
    fn journal_linger_is_read_and_bounded() {
        use std::time::Duration;
        let with_dir =
            DEFAULT_CONFIG.replace("# dir = \"/var/lib/telering\"", "dir = \"/srv/telering\"");
        assert_ne!(with_dir, DEFAULT_CONFIG);
        let linger = |text: &str| {
            let c = ServerConfig::from_toml(text)?;
            Ok::<_, ConfigError>(c.journal.journal_config()?.expect("a dir is set").linger)
        };
        assert_eq!(linger(&with_dir).unwrap(), Duration::from_micros(50));
        let off = with_dir.replace("linger_us = 50", "linger_us = 0");
        assert_eq!(linger(&off).unwrap(), Duration::ZERO);
        // Configs written before the setting existed get the default.
        let old = with_dir.replace("linger_us = 50\n", "");
        assert_ne!(old, with_dir);
        assert_eq!(linger(&old).unwrap(), crate::journal::DEFAULT_LINGER);
        let e = linger(&with_dir.replace("linger_us = 50", "linger_us = 20000")).unwrap_err();
        assert!(e.to_string().contains("journal.linger_us"), "{e}");
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
            DEFAULT_CONFIG.replace("fetch_min = 1", "fetch_min = 0"),
            DEFAULT_CONFIG.replace("fetch_max_wait_ms = 0", "fetch_max_wait_ms = 99999"),
            DEFAULT_CONFIG.replace("listen = \"127.0.0.1:1883\"", "listen = \"nowhere\""),
            DEFAULT_CONFIG.replace("[ingest]", "[ingest]\nbogus = 1"),
            DEFAULT_CONFIG.replace("max_packet_size = 65536", "max_packet_size = 1000"),
            DEFAULT_CONFIG.replace("receive_maximum = 256", "receive_maximum = 0"),
            DEFAULT_CONFIG.replace("[ingest]", "[ingest]\nshards = 100000"),
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
