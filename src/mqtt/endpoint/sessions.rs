//! Sessions by client id: which connection holds each id (a new CONNECT
//! with the same id takes the session over, MQTT-3.1.4-2), and what a
//! session keeps between connections: the QoS 2 packet ids ingested and
//! not yet released, so a retransmission after a reconnect is not ingested
//! twice.
//!
//! Touched at CONNECT and at the end of a connection only, never per
//! message, so one mutex over all shards is enough.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Stored sessions (with no live connection) kept at most; past this, a
/// session ending is not stored (its QoS 2 ids are forgotten).
pub const MAX_STORED_SESSIONS: usize = 100_000;
/// How long a CONNECT waits for the connection it takes over to end.
pub const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

struct Owner {
    conn: u64,
    kick: Arc<Kick>,
}

/// Tells a connection a newer one took its session over: a flag it checks
/// between reads, and a notification for when it waits.
#[derive(Default)]
pub(crate) struct Kick {
    flag: AtomicBool,
    notify: Notify,
}

impl Kick {
    fn kick(&self) {
        // Relaxed: the flag carries no data; `notify` wakes a waiter.
        self.flag.store(true, Ordering::Relaxed);
        self.notify.notify_one();
    }

    /// Whether the session was taken over.
    pub(crate) fn kicked(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Resolves once the session is taken over.
    pub(crate) async fn wait(&self) {
        self.notify.notified().await;
    }
}

struct Entry {
    owner: Option<Owner>,
    qos2: HashSet<u16>,
    /// When a stored session (no owner) expires; `None`: never.
    expires: Option<Instant>,
}

/// Every session of the endpoint.
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
    next_conn: AtomicU64,
    /// Entries with an owner.
    live: std::sync::atomic::AtomicUsize,
}

/// A connection's hold on its client id.
pub(crate) struct Claim {
    pub(crate) session_present: bool,
    pub(crate) qos2: HashSet<u16>,
    /// Set when a newer connection takes the session over.
    pub(crate) kick: Arc<Kick>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Every mutation below leaves the map consistent.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A process-unique connection number (also used to name clients that
    /// sent an empty id).
    pub(crate) fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Takes `client_id` for connection `conn`: a live holder is told to go
    /// and waited for (at most [`TAKEOVER_WAIT`]); a stored session is
    /// resumed unless `clean`.
    pub(crate) async fn claim(&self, client_id: &str, conn: u64, clean: bool) -> Claim {
        let deadline = Instant::now() + TAKEOVER_WAIT;
        loop {
            {
                let mut map = self.lock();
                let now = Instant::now();
                let holder = map
                    .get(client_id)
                    .and_then(|e| e.owner.as_ref())
                    .map(|o| o.kick.clone());
                match holder {
                    Some(kick) if now < deadline => kick.kick(),
                    _ => {
                        let kick = Arc::new(Kick::default());
                        let old = map.remove(client_id);
                        if old.as_ref().is_some_and(|e| e.owner.is_some()) {
                            // The holder did not go in time: its entry is replaced.
                            self.live.fetch_sub(1, Ordering::Relaxed);
                        }
                        self.live.fetch_add(1, Ordering::Relaxed);
                        let resumed = old.filter(|e| !clean && e.expires.is_none_or(|t| t > now));
                        let session_present = resumed.is_some();
                        let qos2 = resumed.map(|e| e.qos2).unwrap_or_default();
                        map.insert(
                            client_id.to_owned(),
                            Entry {
                                owner: Some(Owner {
                                    conn,
                                    kick: kick.clone(),
                                }),
                                qos2: HashSet::new(),
                                expires: None,
                            },
                        );
                        return Claim {
                            session_present,
                            qos2,
                            kick,
                        };
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A client id no session holds, for a client that sent none, taken
    /// for connection `conn` under the same lock (a clean session).
    pub(crate) fn claim_fresh(&self, conn: u64) -> (String, Claim) {
        let mut map = self.lock();
        let mut id = format!("telering-{conn}");
        let mut k = 0u32;
        while map.contains_key(&id) {
            k += 1;
            id = format!("telering-{conn}-{k}");
        }
        let kick = Arc::new(Kick::default());
        self.live.fetch_add(1, Ordering::Relaxed);
        map.insert(
            id.clone(),
            Entry {
                owner: Some(Owner {
                    conn,
                    kick: kick.clone(),
                }),
                qos2: HashSet::new(),
                expires: None,
            },
        );
        let claim = Claim {
            session_present: false,
            qos2: HashSet::new(),
            kick,
        };
        (id, claim)
    }

    /// The end of connection `conn`: keeps its session for `expiry_s`
    /// seconds (`u32::MAX`: never; 0: not at all), unless a newer
    /// connection holds the id already.
    pub(crate) fn release(&self, client_id: &str, conn: u64, qos2: HashSet<u16>, expiry_s: u32) {
        let mut map = self.lock();
        let Some(e) = map.get_mut(client_id) else {
            return;
        };
        if e.owner.as_ref().is_none_or(|o| o.conn != conn) {
            return;
        }
        self.live.fetch_sub(1, Ordering::Relaxed);
        if expiry_s == 0 {
            map.remove(client_id);
            return;
        }
        e.owner = None;
        e.qos2 = qos2;
        e.expires = (expiry_s != u32::MAX)
            .then(|| Instant::now() + Duration::from_secs(u64::from(expiry_s)));
        // Live connections hold at most one entry each; past that, the map
        // holds stored sessions. Only then is it scanned for expired ones.
        let live = self.live.load(Ordering::Relaxed);
        if map.len() > live + MAX_STORED_SESSIONS {
            let now = Instant::now();
            map.retain(|_, e| e.owner.is_some() || e.expires.is_none_or(|t| t > now));
            if map.len() > live + MAX_STORED_SESSIONS {
                map.remove(client_id);
            }
        }
    }

    /// Connections holding a client id now.
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}
