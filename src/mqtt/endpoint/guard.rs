//! Who may connect and publish: authentication at CONNECT, the ACL on
//! every PUBLISH (and will), and the per-address limits.
//!
//! - **Authentication.** With a password file, a CONNECT with a user name
//!   is checked against it ([`PasswordFile::verify`], constant time); a
//!   wrong one gets CONNACK 0x04 (3.1.x) / 0x86 (5). A CONNECT without
//!   credentials is let in only with `allow_anonymous`; otherwise 0x05 /
//!   0x87.
//! - **Throttling.** Each failed login from an address delays the refusal
//!   of the next failed one from that address, doubling from
//!   `login_failure_delay` up to 5 s, and forgotten after a minute without
//!   failures. A right password is never delayed, so devices behind the same
//!   NAT as an attacker still get in; with the per-address connection limit
//!   this bounds how fast one address can guess.
//! - **Authorization.** The ACL decides per topic; a connection caches its
//!   last few decisions so a device publishing to the same topics costs no
//!   lookup (and no allocation) per message.
//! - **Subscriptions.** Each filter of a SUBSCRIBE is checked in turn:
//!   malformed, past `max_subscriptions`, or without read access in the ACL,
//!   it is refused for that reason; otherwise it is refused as not served
//!   (the endpoint does not deliver to subscribers yet).
//! - **Limits.** Connections per source address (`max_connections_per_address`);
//!   more get CONNACK "server unavailable".
//!
//! Every refusal is counted ([`GuardStats`]) and logged at debug level.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::codec::{ConnAckCode, SubRefusal};
use crate::mqtt::auth::acl::Acl;
use crate::mqtt::auth::password::PasswordFile;

/// Longest delay of a refused login.
pub const MAX_LOGIN_DELAY: Duration = Duration::from_secs(5);
/// Failures of an address are forgotten after this long without one.
const FAILURE_MEMORY: Duration = Duration::from_secs(60);

/// The security settings of the endpoint.
#[derive(Debug, Default)]
pub struct GuardConfig {
    /// Users and password hashes (mosquitto's format).
    pub passwords: Option<PasswordFile>,
    /// Whether clients without credentials are let in.
    pub allow_anonymous: bool,
    /// Who may publish where; `None`: anyone anywhere.
    pub acl: Option<Acl>,
    /// Most connections from one source address.
    pub max_connections_per_address: usize,
    /// Delay of the refusal after the first failed login from an address.
    pub login_failure_delay: Duration,
}

/// Counters of refusals, exact.
#[derive(Debug, Default)]
pub struct GuardStats {
    /// CONNECTs refused for a wrong user name or password.
    pub bad_credentials: AtomicU64,
    /// CONNECTs refused for having no credentials.
    pub anonymous_refused: AtomicU64,
    /// Refusals that were delayed by throttling.
    pub throttled: AtomicU64,
    /// Connections refused by the per-address limit.
    pub address_limit: AtomicU64,
    /// Messages (and wills) the ACL refused.
    pub not_authorized: AtomicU64,
    /// Times a connection's publish rate limit stopped its reading.
    pub rate_limited: AtomicU64,
    /// Subscription filters the ACL refused (no read access).
    pub subscribe_not_authorized: AtomicU64,
    /// Subscription filters past the client's `max_subscriptions`.
    pub subscription_limit: AtomicU64,
    /// CONNECTs refused because `max_connections` were connected.
    pub connection_limit: AtomicU64,
    /// Connections closed for sending no CONNECT (or finishing no TLS
    /// handshake) within `connect_timeout_ms`.
    pub connect_timeouts: AtomicU64,
    /// Connections closed after 1.5 × their keep-alive without a packet.
    pub keep_alive_timeouts: AtomicU64,
    /// Connections closed for a packet over `max_packet_size`.
    pub packet_too_large: AtomicU64,
    /// MQTT 5 connections closed for more unacknowledged QoS 1 and 2
    /// messages than the Receive Maximum.
    pub receive_maximum_exceeded: AtomicU64,
}

impl GuardStats {
    /// Adds one to a counter (the counters are independent: Relaxed).
    pub(crate) fn hit(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One connection's publish token bucket: `rate` tokens a second, at most
/// `burst` saved up, one per PUBLISH. Empty, the connection is not read
/// until a token is back (TCP pushes back; nothing is dropped).
#[derive(Debug)]
pub(crate) struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// `None` for no limit.
    pub(crate) fn new(rate: u32, burst: u32) -> Option<Self> {
        (rate > 0).then(|| Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: Instant::now(),
        })
    }

    /// Takes a token for a PUBLISH (it was read already: always taken,
    /// possibly into debt of less than one).
    pub(crate) fn take(&mut self) {
        self.tokens -= 1.0;
    }

    /// Whether a PUBLISH may be read now; refills first when empty.
    pub(crate) fn ready(&mut self) -> bool {
        if self.tokens >= 1.0 {
            return true;
        }
        let now = Instant::now();
        let t = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + t * self.rate).min(self.burst);
        self.tokens >= 1.0
    }

    /// How long until a token is back.
    pub(crate) fn wait(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / self.rate).max(0.0001))
    }
}

#[derive(Debug, Default)]
struct Address {
    conns: usize,
    failures: u32,
    last_failure: Option<Instant>,
}

/// The endpoint's gatekeeper, shared by every shard.
#[derive(Debug)]
pub(crate) struct Guard {
    config: GuardConfig,
    addrs: Mutex<HashMap<IpAddr, Address>>,
    pub(crate) stats: Arc<GuardStats>,
}

/// A connection's place in its address's count; given back when dropped.
#[derive(Debug)]
pub(crate) struct AddressSlot {
    guard: Arc<Guard>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut a = self.guard.lock();
        if let Some(e) = a.get_mut(&self.ip) {
            e.conns = e.conns.saturating_sub(1);
            if e.conns == 0 && e.failures == 0 {
                a.remove(&self.ip);
            }
        }
    }
}

/// Who a connection is, once let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) client_id: String,
    pub(crate) username: Option<String>,
}

impl Guard {
    pub(crate) fn new(config: GuardConfig) -> Self {
        Self {
            config,
            addrs: Mutex::new(HashMap::new()),
            stats: Arc::new(GuardStats::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Address>> {
        // Every mutation completes under the lock.
        self.addrs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new connection from `ip`; `None` once the address has its
    /// limit.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let mut a = self.lock();
        let e = a.entry(ip).or_default();
        if e.conns >= self.config.max_connections_per_address {
            drop(a);
            self.stats.address_limit.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%ip, "connection refused: per-address limit");
            return None;
        }
        e.conns += 1;
        Some(AddressSlot {
            guard: self.clone(),
            ip,
        })
    }

    /// Decides a CONNECT from `ip`: the code to refuse it with and how long
    /// to wait before answering, or `None` to let it in.
    pub(crate) fn authenticate(
        &self,
        ip: IpAddr,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Option<(ConnAckCode, Duration)> {
        let code = match (&self.config.passwords, username) {
            (Some(file), Some(user)) => {
                if file.verify(user, password.unwrap_or("").as_bytes()) {
                    return None;
                }
                self.stats.bad_credentials.fetch_add(1, Ordering::Relaxed);
                ConnAckCode::BadCredentials
            }
            // A user name with no password file: nothing to check it
            // against; treated as anonymous.
            (None, _) | (_, None) if self.config.allow_anonymous => return None,
            _ => {
                self.stats.anonymous_refused.fetch_add(1, Ordering::Relaxed);
                ConnAckCode::NotAuthorized
            }
        };
        let now = Instant::now();
        let mut a = self.lock();
        let e = a.entry(ip).or_default();
        if e.last_failure
            .is_some_and(|t| now.duration_since(t) > FAILURE_MEMORY)
        {
            e.failures = 0;
        }
        let delay = if e.failures == 0 {
            Duration::ZERO
        } else {
            (self.config.login_failure_delay * 2u32.pow(e.failures.min(16) - 1))
                .min(MAX_LOGIN_DELAY)
        };
        e.failures = e.failures.saturating_add(1);
        e.last_failure = Some(now);
        drop(a);
        if !delay.is_zero() {
            self.stats.throttled.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(%ip, user = username.unwrap_or(""), ?code, ?delay, "login refused");
        Some((code, delay))
    }

    /// Whether `who` may publish to `topic` (bytes; not UTF-8: no).
    pub(crate) fn may_publish(&self, who: &Identity, topic: &[u8]) -> bool {
        let Some(acl) = &self.config.acl else {
            return true;
        };
        let Ok(topic) = std::str::from_utf8(topic) else {
            return false;
        };
        acl.can_publish(&who.client_id, who.username.as_deref(), topic)
    }

    /// Decides one filter of a SUBSCRIBE that is the `index`-th filter
    /// the client asks for (counting those it holds), and counts a
    /// refusal by the limit or the ACL. None is served yet, so the best
    /// answer is [`SubRefusal::NotServed`].
    pub(crate) fn subscription(
        &self,
        who: &Identity,
        filter: &str,
        index: usize,
        max: usize,
    ) -> SubRefusal {
        if !crate::mqtt::auth::acl::valid_filter(filter) {
            return SubRefusal::InvalidFilter;
        }
        if index >= max {
            self.stats
                .subscription_limit
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client = %who.client_id, filter, "subscription refused: limit");
            return SubRefusal::Limit;
        }
        if let Some(acl) = &self.config.acl {
            if !acl.can_subscribe(&who.client_id, who.username.as_deref(), filter) {
                self.stats
                    .subscribe_not_authorized
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(client = %who.client_id, filter, "subscription refused: ACL");
                return SubRefusal::NotAuthorized;
            }
        }
        SubRefusal::NotServed
    }

    /// Whether an ACL is in force.
    pub(crate) fn has_acl(&self) -> bool {
        self.config.acl.is_some()
    }

    /// Counts a client refused for having no identity.
    pub(crate) fn count_anonymous(&self) {
        self.stats.anonymous_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a message the ACL refused.
    pub(crate) fn count_denied(&self) {
        self.stats.not_authorized.fetch_add(1, Ordering::Relaxed);
    }
}

/// A connection's last ACL decisions (topic → allowed), so a device that
/// keeps publishing to the same topics is checked once per topic.
#[derive(Debug, Default)]
pub(crate) struct AclCache {
    entries: Vec<(bytes::Bytes, bool)>,
    next: usize,
}

/// Decisions a connection remembers.
const ACL_CACHE: usize = 8;

impl AclCache {
    pub(crate) fn check(&mut self, guard: &Guard, who: &Identity, topic: &bytes::Bytes) -> bool {
        if !guard.has_acl() {
            return true;
        }
        if let Some((_, ok)) = self.entries.iter().find(|(t, _)| t == topic) {
            return *ok;
        }
        let ok = guard.may_publish(who, topic);
        // A copy, not a slice of the receive buffer it came in.
        let key = bytes::Bytes::copy_from_slice(topic);
        if self.entries.len() < ACL_CACHE {
            self.entries.push((key, ok));
        } else {
            self.entries[self.next] = (key, ok);
            self.next = (self.next + 1) % ACL_CACHE;
        }
        ok
    }
}
