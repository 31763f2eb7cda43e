//! The MQTT endpoint telering owns: one TCP port for MQTT 3.1, 3.1.1 and
//! 5, served on the ingest shards.
//!
//! # Threads
//!
//! Each of the `S` shard threads ([`crate::mqtt::ingest`]) runs a
//! single-threaded tokio runtime with:
//! - an accept loop on the listening socket (every shard accepts on a
//!   duplicate of the same socket; the kernel hands each connection to one
//!   of them); after its CONNECT a connection moves to the shard that owns
//!   `partition(client id)` (devices mostly publish their own id, whose
//!   records then cross no thread) and is served there to the end
//!   ([`conn`]);
//! - the shard's forwarder, which publishes the records other shards hand
//!   it and returns their verdicts.
//!
//! # The path of a PUBLISH
//!
//! socket → read buffer (bounded by the packet size limit) → decode
//! ([`codec`], rumqttc's codecs) → topic rules → validation on this shard →
//! each record into its partition, here or through the hand-off ring to
//! the shard that owns it → verdict → PUBACK/PUBREC in arrival order. A full
//! partition stops the reading of the connections that feed it; nothing
//! between the socket and the ring grows without bound.
//!
//! # Shutdown
//!
//! [`Endpoint::shutdown`] stops the accept loops; every connection stops
//! reading, writes the acknowledgements of what it read once their
//! verdicts are in (at most the drain timeout), sends MQTT 5 clients
//! DISCONNECT 0x8B, and closes. The forwarders run until no connection is
//! left anywhere and their rings are empty; then the shard threads end and
//! the counters are final.

pub mod codec;
mod conn;
mod guard;
mod sessions;
mod transport;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use super::ingest::{Forwarder, Shard, ShardSeed, Shards};
pub(crate) use guard::Guard;
pub use guard::{GuardConfig, GuardStats, MAX_LOGIN_DELAY};
use sessions::Sessions;
pub(crate) use transport::TlsAcceptors;
pub use transport::{CertIdentity, TlsConfig, TlsError};

/// How the endpoint serves connections.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Listening address (all protocol versions).
    pub listen: SocketAddr,
    /// Most connections at once; more get CONNACK "server unavailable".
    pub max_connections: usize,
    /// Largest packet taken (remaining length, bytes); a bigger one closes
    /// the connection (MQTT 5: DISCONNECT 0x95).
    pub max_packet_size: usize,
    /// Time a client has to send CONNECT.
    pub connect_timeout: Duration,
    /// QoS 1 and 2 publishes in flight per connection (MQTT 5 Receive
    /// Maximum; for 3.1.x the connection stops reading at this many).
    pub receive_maximum: u16,
    /// Topic aliases per MQTT 5 connection.
    pub topic_alias_maximum: u16,
    /// Longest a closing connection waits for the verdicts of what it read.
    pub drain_timeout: Duration,
    /// PUBLISH packets per second per connection (0: no limit).
    pub max_publish_rate: u32,
    /// Depth of each connection's token bucket.
    pub publish_burst: u32,
    /// Subscriptions one client may hold; filters of a SUBSCRIBE past it
    /// are refused (MQTT 5: quota exceeded).
    pub max_subscriptions: usize,
}

/// What every shard shares.
pub(crate) struct Shared {
    pub(crate) config: EndpointConfig,
    pub(crate) sessions: Sessions,
    /// Connections being served, on every shard.
    pub(crate) live: AtomicUsize,
    pub(crate) stop: watch::Receiver<bool>,
    /// Per shard: connections handed to it by the shard that accepted them
    /// (connection affinity, [`conn::serve`]).
    pub(crate) adopt: Vec<tokio::sync::mpsc::UnboundedSender<conn::Moved>>,
    /// Authentication, the ACL, the per-address limits.
    pub(crate) guard: Arc<Guard>,
}

/// A running endpoint.
pub struct Endpoint {
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    tls: Option<TlsAcceptors>,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("shards", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Binds the listener and starts one thread per shard.
    pub(crate) fn start(
        config: EndpointConfig,
        guard: GuardConfig,
        tls: Option<TlsAcceptors>,
        shards: Shards,
    ) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(config.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let tls_listener = match &tls {
            Some(t) => {
                let l = std::net::TcpListener::bind(t.config.listen).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("the TLS listener {}: {e}", t.config.listen),
                    )
                })?;
                l.set_nonblocking(true)?;
                Some(l)
            }
            None => None,
        };
        let tls_addr = tls_listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (adopt, adopted): (Vec<_>, Vec<_>) = (0..shards.seeds.len())
            .map(|_| tokio::sync::mpsc::unbounded_channel())
            .unzip();
        let shared = Arc::new(Shared {
            config,
            sessions: Sessions::default(),
            live: AtomicUsize::new(0),
            stop: stop_rx,
            adopt,
            guard: Arc::new(Guard::new(guard)),
        });
        let mut threads = Vec::with_capacity(shards.seeds.len());
        for (seed, adopted) in shards.seeds.into_iter().zip(adopted) {
            let listener = listener.try_clone()?;
            let tls = match (&tls_listener, &tls) {
                (Some(l), Some(a)) => Some((l.try_clone()?, a.clone())),
                _ => None,
            };
            let shared = shared.clone();
            let name = format!("telering-shard-{}", threads.len());
            threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || run_shard(seed, listener, tls, adopted, shared))?,
            );
        }
        Ok(Self {
            addr,
            tls_addr,
            tls,
            stop: stop_tx,
            threads,
            shared,
        })
    }

    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the TLS listener, if there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Reads the TLS certificate and key again: connections from now on
    /// get the new ones. On error the old ones stay.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        match &self.tls {
            Some(t) => t.reload(),
            None => Ok(()),
        }
    }

    /// The refusals of authentication, the ACL and the limits.
    pub fn guard_stats(&self) -> Arc<GuardStats> {
        self.shared.guard.stats.clone()
    }

    /// Connections being served now.
    pub fn connections(&self) -> usize {
        self.shared.live.load(Ordering::Relaxed)
    }

    /// Whether every shard thread is still running.
    pub fn is_running(&self) -> bool {
        self.threads.iter().all(|t| !t.is_finished())
    }

    /// Stops accepting, drains every connection and every hand-off ring,
    /// and waits for the shard threads.
    pub fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("an ingest shard thread panicked");
            }
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run_shard(
    seed: ShardSeed,
    listener: std::net::TcpListener,
    tls: Option<(std::net::TcpListener, TlsAcceptors)>,
    adopted: tokio::sync::mpsc::UnboundedReceiver<conn::Moved>,
    shared: Arc<Shared>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start an ingest shard runtime: {e}");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let (shard, fwd) = seed.into_parts();
        let forwarder = tokio::task::spawn_local(forward(shard.clone(), fwd, shared.clone()));
        let tls = match tls.map(|(l, a)| tokio::net::TcpListener::from_std(l).map(|l| (l, a))) {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                tracing::error!("shard {} cannot listen for TLS: {e}", shard.index());
                None
            }
            None => None,
        };
        match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => accept(l, tls, adopted, &shard, &shared).await,
            Err(e) => tracing::error!("shard {} cannot listen: {e}", shard.index()),
        }
        shard.wake_self();
        let _ = forwarder.await;
    });
}

async fn accept(
    listener: tokio::net::TcpListener,
    tls: Option<(tokio::net::TcpListener, TlsAcceptors)>,
    mut adopted: tokio::sync::mpsc::UnboundedReceiver<conn::Moved>,
    shard: &Rc<Shard>,
    shared: &Arc<Shared>,
) {
    let mut stop = shared.stop.clone();
    let tls_accept = || async {
        match &tls {
            Some((l, _)) => l.accept().await,
            None => std::future::pending().await,
        }
    };
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {
                // Connections already on their way here are still served.
                adopted.close();
                while let Some(m) = adopted.recv().await {
                    tokio::task::spawn_local(conn::adopt(m, shard.clone(), shared.clone()));
                }
                return;
            }
            Some(m) = adopted.recv() => {
                tokio::task::spawn_local(conn::adopt(m, shard.clone(), shared.clone()));
            }
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    tokio::task::spawn_local(conn::serve(stream, shard.clone(), shared.clone()));
                }
                Err(e) => {
                    // Out of descriptors and the like: back off, keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            r = tls_accept() => match (r, &tls) {
                (Ok((stream, _)), Some((_, acceptors))) => {
                    // The certificate in use now (a reload changes it for
                    // the connections that come after).
                    let a = acceptors.get();
                    let c = &acceptors.config;
                    let id = c.use_identity_as_username.then_some(c.identity);
                    tokio::task::spawn_local(conn::serve_tls(stream, a, id, shard.clone(), shared.clone()));
                }
                (Err(e), _) => {
                    tracing::warn!("TLS accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (Ok(_), None) => unreachable!("no TLS listener, no TLS accept"),
            },
        }
    }
}

async fn forward(shard: Rc<Shard>, mut fwd: Forwarder, shared: Arc<Shared>) {
    let mut stop = shared.stop.clone();
    // When the last connection was seen gone during a shutdown.
    let mut alone_since: Option<tokio::time::Instant> = None;
    loop {
        let (did, held) = fwd.pass(&shard);
        if did {
            // Let this shard's connections run between passes.
            tokio::task::yield_now().await;
            continue;
        }
        // Acquire: pairs with the connections' Release on the way out, so
        // what they handed off is visible to `idle`.
        if *stop.borrow() && shared.live.load(Ordering::Acquire) == 0 {
            if fwd.idle() && !fwd.awaiting_journal(&shard) {
                return;
            }
            // Records held for a partition that stays full (a consumer
            // that does not read): waited for as long as connections wait.
            let since = *alone_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() >= shared.config.drain_timeout {
                fwd.abandon(&shard);
                tracing::warn!("shutdown: records for a full partition given up (abandoned)");
                return;
            }
        }
        let nap = if held || fwd.awaiting_journal(&shard) {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(100)
        };
        tokio::select! {
            _ = shard.woken() => {}
            _ = stop.changed() => {}
            _ = tokio::time::sleep(nap) => {}
        }
    }
}
