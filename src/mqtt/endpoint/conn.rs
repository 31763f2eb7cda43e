//! One connection: the MQTT state machine from CONNECT to close.
//!
//! Rules it enforces (the statement each comes from):
//! - the first packet is CONNECT (MQTT-3.1.0-1), within the CONNECT timeout;
//!   a second CONNECT is a protocol error (MQTT-3.1.0-2);
//! - an unsupported protocol level gets CONNACK 0x01 and a close
//!   (MQTT-3.1.2-2);
//! - an empty client id: 3.1.1 with clean session 0 gets CONNACK 0x02
//!   (MQTT-3.1.3-8); with clean session 1 the server assigns one
//!   (MQTT-3.1.3-6); MQTT 5 assigns one and returns it in the CONNACK
//!   (MQTT 5 §3.2.2.3.7); 3.1 requires one (0x02);
//! - a client id already connected takes the session over: the older
//!   connection is closed (MQTT-3.1.4-2);
//! - keep-alive: no packet for 1.5 × the keep-alive closes the connection
//!   (MQTT-3.1.2-24); 0 turns it off (MQTT-3.1.2-23 allows it);
//! - a PUBLISH topic name with `+` or `#` (MQTT-3.3.2-2), empty, or with
//!   NUL (MQTT-1.5.3-2) is a protocol error: close, in MQTT 5 after
//!   DISCONNECT 0x90; it is never ingested;
//! - QoS 1: PUBACK; QoS 2: PUBREC, then PUBCOMP on PUBREL, a packet id
//!   ingested once until released (MQTT-4.3.3); acknowledgements go out in
//!   the order the PUBLISH packets came (MQTT-4.6.0-2, -3);
//! - MQTT 5: more QoS > 0 publishes in flight than the Receive Maximum
//!   advertised (QoS 1 until PUBACK, QoS 2 until PUBCOMP) is DISCONNECT
//!   0x93 (MQTT-3.3.4-7); a topic alias of 0 or
//!   over the maximum is 0x94 (MQTT-3.3.2-8, -9); retain is not available
//!   (0x9A, MQTT-3.3.1-14 via Retain Available 0);
//! - packets only a server sends (CONNACK, SUBACK, ...) are protocol errors.
//!
//! # Acknowledged means in the engine
//!
//! A PUBACK or PUBREC is written only once every record of its message has
//! a verdict ([`Shard::publish`]): in its partition ring, refused by a full
//! `Reject` topic (MQTT 5: 0x97), or refused by validation and
//! dead-lettered (0x90 for the topic, 0x99 for the payload). While a record
//! cannot get in (a full `Block` partition), the connection stops reading
//! its socket. In-flight acknowledgements are bounded by the Receive
//! Maximum; the read buffer by the packet size limit.

use std::collections::{HashSet, VecDeque};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::codec::{self, AckReason, ConnAckCode, DecodeError, DisconnectReason, Packet, Version};
use super::guard::GuardStats;
use super::transport::Transport;
use super::Shared;
use crate::mqtt::ingest::{Mailbox, Outcome, Routed, Shard, Step, Ticket};
use crate::mqtt::validate::Reason;

/// A message waiting for its verdicts before it is acknowledged.
#[derive(Debug)]
struct Pending {
    token: u64,
    pkid: u16,
    qos: u8,
    /// Verdicts still to come from other shards.
    waiting: u8,
    outcome: Outcome,
}

/// A publish that could not get in yet (a full partition or hand-off ring).
struct Stalled {
    routed: Routed,
    pkid: u16,
    qos: u8,
}

/// Why the connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client sent DISCONNECT (MQTT 5 reason 0x04 asks for the will).
    Disconnect { will: bool },
    /// The client went away (EOF, reset) without DISCONNECT.
    Dropped,
    /// The server closes, with this reason (MQTT 5 DISCONNECT); the will is
    /// sent unless the server is shutting down.
    Server(DisconnectReason),
}

/// Serves one accepted plain-TCP connection until it closes.
pub(crate) async fn serve(mut stream: TcpStream, shard: Rc<Shard>, shared: Arc<Shared>) {
    let live = Live::new(&shared);
    let _ = stream.set_nodelay(true);
    let mut inbuf = BytesMut::with_capacity(4096);
    let ip = peer_ip(&stream);
    let Some((connect, slot)) = admit(&mut stream, ip, &mut inbuf, &shared, None).await else {
        return;
    };
    let home = home_shard(&shard, &connect);
    if home != shard.index() {
        let detached = stream.into_std().map(MovedStream::Tcp);
        hand_over(detached, inbuf, connect, slot, home, live, &shared);
        return;
    }
    serve_connected(stream, inbuf, connect, slot, shard, shared.clone()).await;
    drop(live);
}

/// Affinity: a device mostly publishes its own id, so the connection is
/// served by the shard that owns `partition(client id)`, where its records
/// need no hand-off. (A client with no id stays where it is.)
fn home_shard(shard: &Shard, connect: &codec::Connect) -> usize {
    match connect.client_id.as_bytes() {
        [] => shard.index(),
        id => shard.home_of(id),
    }
}

/// Sends a connection, its socket detached from this shard's runtime, to
/// the shard `home`, which counts it from then on.
fn hand_over(
    detached: std::io::Result<MovedStream>,
    inbuf: BytesMut,
    connect: codec::Connect,
    slot: super::guard::AddressSlot,
    home: usize,
    live: Live<'_>,
    shared: &Shared,
) {
    let stream = match detached {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("cannot move a connection to its shard: {e}");
            return;
        }
    };
    let moved = Moved {
        stream,
        inbuf,
        connect,
        slot,
    };
    if shared.adopt[home].send(moved).is_ok() {
        live.hand_over();
    }
}

fn peer_ip(stream: &TcpStream) -> std::net::IpAddr {
    stream
        .peer_addr()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip())
}

/// Serves one connection accepted on the TLS listener: the handshake
/// within the CONNECT timeout, then as a plain one, moved with its TLS
/// session to the shard its client id belongs to, as a plain one is
/// ([`super::transport::Relocatable`]).
pub(crate) async fn serve_tls(
    stream: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    use_identity: Option<super::transport::CertIdentity>,
    shard: Rc<Shard>,
    shared: Arc<Shared>,
) {
    let live = Live::new(&shared);
    let _ = stream.set_nodelay(true);
    let ip = peer_ip(&stream);
    let mut stop = shared.stop.clone();
    let io = super::transport::Relocatable::Attached(stream);
    let tls = tokio::select! {
        r = tokio::time::timeout(shared.config.connect_timeout, acceptor.accept(io)) => r,
        _ = stop.wait_for(|s| *s) => return,
    };
    let stats = &shared.guard.stats;
    let mut stream = match tls {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%ip, "TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            GuardStats::hit(&stats.connect_timeouts);
            tracing::debug!(%ip, "no TLS handshake within the CONNECT timeout");
            return;
        }
    };
    // A name of the certificate as the user name, when so configured
    // (mutual TLS has verified it during the handshake).
    let cert_user = if let Some(which) = use_identity {
        match super::transport::peer_identity(&stream, which) {
            Some(name) => Some(name),
            None => {
                tracing::debug!(%ip, ?which, "TLS client certificate without that name: refused");
                let mut inbuf = BytesMut::with_capacity(1024);
                if let Ok(Ok(c)) = tokio::time::timeout(
                    shared.config.connect_timeout,
                    read_connect(&mut stream, &mut inbuf, shared.config.max_packet_size),
                )
                .await
                {
                    shared.guard.count_anonymous();
                    refuse(&mut stream, c.version, ConnAckCode::NotAuthorized).await;
                }
                return;
            }
        }
    } else {
        None
    };
    let mut inbuf = BytesMut::with_capacity(4096);
    let Some((connect, slot)) = admit(&mut stream, ip, &mut inbuf, &shared, cert_user).await else {
        return;
    };
    let home = home_shard(&shard, &connect);
    if home != shard.index() {
        // The TLS session, with what it has buffered either way, moves
        // with its socket.
        let detached = stream
            .get_mut()
            .0
            .detach()
            .map(|()| MovedStream::Tls(Box::new(stream)));
        hand_over(detached, inbuf, connect, slot, home, live, &shared);
        return;
    }
    serve_connected(stream, inbuf, connect, slot, shard, shared.clone()).await;
    drop(live);
}

/// The CONNECT within its timeout, the per-address limit and the
/// credentials; `None` when the connection ends here (answered if it
/// should be).
async fn admit<S: Transport>(
    stream: &mut S,
    ip: std::net::IpAddr,
    inbuf: &mut BytesMut,
    shared: &Shared,
    cert_user: Option<String>,
) -> Option<(codec::Connect, super::guard::AddressSlot)> {
    let cfg = &shared.config;
    // CONNECT, within the timeout (a shutdown does not wait for it).
    let mut stop = shared.stop.clone();
    let first = tokio::select! {
        r = tokio::time::timeout(
            cfg.connect_timeout,
            read_connect(stream, inbuf, cfg.max_packet_size),
        ) => r,
        _ = stop.wait_for(|s| *s) => return None,
    };
    let mut connect: codec::Connect = match first {
        Ok(Ok(c)) => c,
        Ok(Err(DecodeError::UnsupportedVersion { name, level })) => {
            tracing::debug!(%name, level, "unsupported protocol level");
            refuse(stream, Version::V311, ConnAckCode::BadVersion).await;
            return None;
        }
        Ok(Err(e)) => {
            if matches!(e, DecodeError::TooLarge(_)) {
                GuardStats::hit(&shared.guard.stats.packet_too_large);
            }
            tracing::debug!("closing before CONNECT: {e}");
            return None;
        }
        Err(_) => {
            GuardStats::hit(&shared.guard.stats.connect_timeouts);
            tracing::debug!("no CONNECT within {:?}", cfg.connect_timeout);
            return None;
        }
    };
    // Limits and credentials, on the shard that accepted it.
    let Some(slot) = shared.guard.admit(ip) else {
        refuse(stream, connect.version, ConnAckCode::Unavailable).await;
        return None;
    };
    if let Some(user) = cert_user {
        // Authenticated by its certificate: that is who it is.
        connect.username = Some(user);
        connect.password = None;
        return Some((connect, slot));
    }
    if let Some((code, delay)) =
        shared
            .guard
            .authenticate(ip, connect.username.as_deref(), connect.password.as_deref())
    {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
        refuse(stream, connect.version, code).await;
        return None;
    }
    Some((connect, slot))
}

/// Answers a CONNECT with a refusal and closes.
async fn refuse<S: Transport>(stream: &mut S, version: Version, code: ConnAckCode) {
    let mut out = BytesMut::with_capacity(16);
    codec::connack(version, &mut out, false, code, &codec::Limits::default());
    let _ = write(stream, &out, WRITE_TIMEOUT).await;
}

/// A connection on its way to the shard that owns its client id's
/// partition, with what was read with its CONNECT.
pub(crate) struct Moved {
    stream: MovedStream,
    inbuf: BytesMut,
    connect: codec::Connect,
    slot: super::guard::AddressSlot,
}

/// The socket of a [`Moved`] connection, off any runtime.
enum MovedStream {
    Tcp(std::net::TcpStream),
    /// The TLS session with its detached socket.
    Tls(Box<super::transport::TlsConn>),
}

/// Takes over a connection another shard accepted ([`serve`],
/// [`serve_tls`]).
pub(crate) async fn adopt(m: Moved, shard: Rc<Shard>, shared: Arc<Shared>) {
    let live = Live::adopted(&shared);
    match m.stream {
        MovedStream::Tcp(std) => match TcpStream::from_std(std) {
            Ok(s) => serve_connected(s, m.inbuf, m.connect, m.slot, shard, shared.clone()).await,
            Err(e) => tracing::debug!("cannot adopt a connection: {e}"),
        },
        MovedStream::Tls(mut tls) => match tls.get_mut().0.attach() {
            Ok(()) => {
                serve_connected(*tls, m.inbuf, m.connect, m.slot, shard, shared.clone()).await
            }
            Err(e) => tracing::debug!("cannot adopt a TLS connection: {e}"),
        },
    }
    drop(live);
}

/// The connection after its CONNECT: client id, session, CONNACK, then the
/// packet loop until it ends.
async fn serve_connected<S: Transport>(
    mut stream: S,
    mut inbuf: BytesMut,
    connect: codec::Connect,
    _slot: super::guard::AddressSlot,
    shard: Rc<Shard>,
    shared: Arc<Shared>,
) {
    let cfg = &shared.config;
    let mut out = BytesMut::with_capacity(256);
    let version = connect.version;
    let conn_no = shared.sessions.next_conn();
    let mut limits = codec::Limits {
        receive_maximum: cfg.receive_maximum,
        max_packet_size: cfg.max_packet_size as u32,
        topic_alias_maximum: cfg.topic_alias_maximum,
        assigned_client_id: None,
    };
    let refusal = if connect.client_id.is_empty()
        && match version {
            Version::V31 => true,
            Version::V311 => !connect.clean,
            Version::V5 => false,
        } {
        Some(ConnAckCode::BadClientId)
    } else if version.is_v5() && connect.will.as_ref().is_some_and(|w| w.retain) {
        // Retain Available is 0, for wills too (MQTT-3.2.2-13).
        Some(ConnAckCode::RetainNotSupported)
    } else if shared.sessions.live() >= cfg.max_connections {
        GuardStats::hit(&shared.guard.stats.connection_limit);
        tracing::debug!(
            "connection refused: max_connections ({}) reached",
            cfg.max_connections
        );
        Some(ConnAckCode::Unavailable)
    } else {
        None
    };
    if let Some(code) = refusal {
        codec::connack(version, &mut out, false, code, &limits);
        let _ = write(&mut stream, &out, WRITE_TIMEOUT).await;
        return;
    }
    let (client_id, claim) = if connect.client_id.is_empty() {
        // An id no one holds, taken in the same step (MQTT-3.2.2-16).
        let (id, claim) = shared.sessions.claim_fresh(conn_no);
        if version.is_v5() {
            limits.assigned_client_id = Some(id.clone());
        }
        (id, claim)
    } else {
        let claim = shared
            .sessions
            .claim(&connect.client_id, conn_no, connect.clean)
            .await;
        (connect.client_id.clone(), claim)
    };
    codec::connack(
        version,
        &mut out,
        claim.session_present,
        ConnAckCode::Accepted,
        &limits,
    );
    if !write(&mut stream, &out, WRITE_TIMEOUT).await {
        shared
            .sessions
            .release(&client_id, conn_no, HashSet::new(), 0);
        return;
    }
    out.clear();

    let mailbox = Rc::new(Mailbox::default());
    let id = shard.register(mailbox.clone());
    let mut c = Conn {
        shard: &shard,
        guard: &shared.guard,
        who: super::guard::Identity {
            client_id: client_id.clone(),
            username: connect.username.clone(),
        },
        acl: super::guard::AclCache::default(),
        bucket: super::guard::Bucket::new(cfg.max_publish_rate, cfg.publish_burst),
        throttled: false,
        version,
        id,
        max_packet: cfg.max_packet_size,
        receive_maximum: cfg.receive_maximum,
        max_subscriptions: cfg.max_subscriptions,
        aliases: vec![None; usize::from(cfg.topic_alias_maximum) + 1],
        pending: VecDeque::new(),
        inflight: 0,
        qos1: 0,
        next_token: 1,
        qos2: claim.qos2,
        stalled: None,
        session_expiry: connect.session_expiry,
        via: Vec::new(),
        early: Vec::new(),
    };
    let keep_alive = (connect.keep_alive > 0)
        .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
    let end = c
        .run(
            &mut stream,
            &mut inbuf,
            &mut out,
            &mailbox,
            &claim.kick,
            &shared,
            keep_alive,
        )
        .await;
    let deadline = Instant::now() + cfg.drain_timeout;

    // The will: the connection ended without DISCONNECT (or MQTT 5 asked
    // for it), and not because the server is shutting down.
    let send_will = match end {
        End::Disconnect { will } => will,
        End::Dropped => true,
        End::Server(r) => r != DisconnectReason::ServerShuttingDown,
    };
    c.finish_stalled(deadline).await;
    if let (true, Some(w)) = (send_will, connect.will) {
        c.ingest_will(&w.topic, &w.payload, deadline).await;
    }
    // The socket closes only once everything read is in its partition: a
    // device that reconnects after seeing the close cannot overtake it.
    c.flush(&mailbox, deadline).await;
    let _ = stream.shutdown().await;
    drop(stream);
    shard.unregister(id);
    let expiry = c.session_expiry;
    shared
        .sessions
        .release(&client_id, conn_no, std::mem::take(&mut c.qos2), expiry);
}

/// Counts live connections for the shutdown (Release on the way out pairs
/// with the forwarders' Acquire load: what a connection handed off before it
/// ended is visible to a forwarder that sees it gone). A connection moving
/// to another shard stays counted on its way.
struct Live<'a>(Option<&'a Shared>);

impl<'a> Live<'a> {
    fn new(s: &'a Shared) -> Self {
        s.live.fetch_add(1, Ordering::AcqRel);
        Self(Some(s))
    }

    /// A connection another shard counted already.
    fn adopted(s: &'a Shared) -> Self {
        Self(Some(s))
    }

    /// The connection moved: the adopting shard's guard releases it.
    fn hand_over(mut self) {
        self.0 = None;
    }
}

impl Drop for Live<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.0 {
            s.live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

async fn read_connect<S: Transport>(
    stream: &mut S,
    buf: &mut BytesMut,
    max: usize,
) -> Result<codec::Connect, DecodeError> {
    loop {
        if let Some(c) = codec::decode_connect(buf, max)? {
            return Ok(c);
        }
        buf.reserve(1024);
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(DecodeError::Malformed("closed before CONNECT".into())),
            Ok(_) => {}
        }
    }
}

/// Longest a write may wait for a client that does not read: the
/// connection is then dropped (while it waits, nothing is read from it).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes `bytes` within `limit`; false if the client is gone or too slow.
/// What the socket takes at once is written without setting up a wait.
async fn write<S: Transport>(stream: &mut S, bytes: &[u8], limit: Duration) -> bool {
    if S::BUFFERED {
        // TLS: encrypted into the session's buffer, then flushed.
        let all = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        return matches!(tokio::time::timeout(limit, all).await, Ok(Ok(())));
    }
    let done = match stream.try_write_now(bytes) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(_) => return false,
    };
    if done == bytes.len() {
        return true;
    }
    matches!(
        tokio::time::timeout(limit, stream.write_all(&bytes[done..])).await,
        Ok(Ok(()))
    )
}

/// A topic name telering takes: not empty, no wildcard, no NUL.
fn topic_ok(t: &[u8]) -> bool {
    !t.is_empty() && !t.iter().any(|&b| b == b'+' || b == b'#' || b == 0)
}

struct Conn<'a> {
    shard: &'a Shard,
    guard: &'a super::guard::Guard,
    /// Who it is, for the ACL.
    who: super::guard::Identity,
    acl: super::guard::AclCache,
    /// The publish rate limit, if any.
    bucket: Option<super::guard::Bucket>,
    /// Whether the rate limit holds reading back now.
    throttled: bool,
    version: Version,
    id: u64,
    max_packet: usize,
    receive_maximum: u16,
    max_subscriptions: usize,
    aliases: Vec<Option<Bytes>>,
    pending: VecDeque<Pending>,
    /// QoS > 0 publishes not acknowledged yet (pending plus stalled).
    inflight: usize,
    /// QoS 1 publishes not acknowledged yet (with `qos2`, what MQTT 5's
    /// Receive Maximum counts).
    qos1: usize,
    next_token: u64,
    qos2: HashSet<u16>,
    stalled: Option<Stalled>,
    session_expiry: u32,
    /// Shards this connection handed records to.
    via: Vec<usize>,
    /// Verdicts for the message not yet pending (its last record waits
    /// for room while the first one's verdict is back).
    early: Vec<(u64, Outcome)>,
}

/// The token of a barrier's verdict (message tokens count up from 1).
const BARRIER_TOKEN: u64 = u64::MAX;

impl Conn<'_> {
    #[allow(clippy::too_many_arguments)]
    async fn run<S: Transport>(
        &mut self,
        stream: &mut S,
        inbuf: &mut BytesMut,
        out: &mut BytesMut,
        mailbox: &Mailbox,
        kick: &super::sessions::Kick,
        shared: &Shared,
        keep_alive: Option<Duration>,
    ) -> End {
        let mut stop_rx = shared.stop.clone();
        let mut closing: Option<End> = None;
        let mut last_rx = Instant::now();
        // Bytes came in since `last_rx` was last set (the clock is read once
        // per wait, not per read).
        let mut fresh = false;
        // Reads done without waiting, in a row.
        let mut eager = 0u32;
        let mut drain_deadline: Option<Instant> = None;
        // The futures a waiting connection selects on live across waits:
        // they register once, not once per packet.
        let stop = async { stop_rx.wait_for(|s| *s).await.is_ok() };
        let mut stop = std::pin::pin!(stop);
        let mut kicked = std::pin::pin!(kick.wait());
        let mut mail = std::pin::pin!(mailbox.notify.notified());
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let mut ka_sleep = std::pin::pin!(tokio::time::sleep_until(
            keep_alive.map_or(far, |k| last_rx + k)
        ));
        loop {
            if closing.is_none() {
                if kick.kicked() {
                    closing = Some(End::Server(DisconnectReason::SessionTakenOver));
                } else if *shared.stop.borrow() {
                    closing = Some(End::Server(DisconnectReason::ServerShuttingDown));
                }
            }
            // Retry what could not get in, then decode what is buffered.
            if let Some(mut s) = self.stalled.take() {
                match self.shard.publish(&mut s.routed, Some(self.ticket())) {
                    Step::Busy => self.stalled = Some(s),
                    Step::Done {
                        outcome,
                        forwarded,
                        via,
                    } => {
                        self.note_via(via);
                        self.push_pending(s.pkid, s.qos, outcome, forwarded)
                    }
                }
            }
            // Whether the rate limit, not the buffer running out, stopped
            // the decoding below (then the socket is not read either).
            let mut limited = false;
            while closing.is_none() && self.stalled.is_none() && !self.window_full() {
                if !self.may_read(shared) {
                    limited = true;
                    break;
                }
                match codec::decode(self.version, inbuf, self.max_packet) {
                    Ok(Some(p)) => {
                        if let Some(e) = self.handle(p, out) {
                            closing = Some(e);
                        }
                    }
                    Ok(None) => break,
                    Err(DecodeError::TooLarge(n)) => {
                        GuardStats::hit(&self.guard.stats.packet_too_large);
                        tracing::debug!(client = %self.who.client_id, "packet of {n} bytes over max_packet_size: closed");
                        closing = Some(End::Server(DisconnectReason::PacketTooLarge))
                    }
                    Err(e) => {
                        tracing::debug!("malformed input: {e}");
                        closing = Some(End::Server(DisconnectReason::MalformedPacket));
                    }
                }
            }
            self.shard.wake_peers();
            if !self.apply_verdicts(mailbox, out) {
                // The engine closed under a message: it is not acknowledged.
                closing = Some(End::Server(DisconnectReason::ServerShuttingDown));
                self.pending.clear();
            }
            if !out.is_empty() {
                let limit = if closing.is_some() {
                    shared.config.drain_timeout
                } else {
                    WRITE_TIMEOUT
                };
                if !write(stream, out, limit).await {
                    return End::Dropped;
                }
                out.clear();
            }
            if let Some(end) = closing {
                // Protocol errors close at once; otherwise acknowledge what
                // was read first, within the drain timeout.
                let drain = matches!(
                    end,
                    End::Server(DisconnectReason::ServerShuttingDown)
                        | End::Server(DisconnectReason::SessionTakenOver)
                );
                let deadline = *drain_deadline
                    .get_or_insert_with(|| Instant::now() + shared.config.drain_timeout);
                let done = self.pending.is_empty() && self.stalled.is_none();
                if !drain || done || Instant::now() >= deadline {
                    if let Some(st) = self.stalled.take() {
                        // Never acknowledged; its records are given up.
                        self.shard.abandon(&st.routed);
                    }
                    if let End::Server(r) = end {
                        codec::disconnect(self.version, out, r);
                        let _ = write(stream, out, shared.config.drain_timeout).await;
                    }
                    return end;
                }
            }
            // With these four, the decode loop above ran until the buffer
            // held no whole frame: reading is what comes next.
            // (Not `may_read` again: a token back by now would let the
            // socket be read while whole frames still wait in the buffer.)
            let can_read =
                closing.is_none() && self.stalled.is_none() && !self.window_full() && !limited;
            // Held back only by the rate limit: wake when a token is back.
            let rate_wait = match &self.bucket {
                Some(b) if limited => Some(b.wait()),
                _ => None,
            };
            inbuf.reserve(4096);
            if can_read {
                // Bytes already waiting in the socket: read them without
                // setting up a wait.
                match stream.try_read_now(inbuf) {
                    Ok(0) => return End::Dropped,
                    Ok(_) => {
                        fresh = true;
                        // The shard's other connections and its forwarder
                        // run on this thread too: let them, now and then.
                        eager += 1;
                        if eager.is_multiple_of(16) {
                            tokio::task::yield_now().await;
                        }
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return End::Dropped,
                }
            }
            if !can_read || fresh {
                // Time spent not reading does not count against keep-alive.
                last_rx = Instant::now();
                fresh = false;
            }
            tokio::select! {
                biased;
                _ = &mut stop, if closing.is_none() => {
                    closing = Some(End::Server(DisconnectReason::ServerShuttingDown));
                }
                _ = &mut kicked, if closing.is_none() => {
                    closing = Some(End::Server(DisconnectReason::SessionTakenOver));
                }
                _ = &mut mail => mail.set(mailbox.notify.notified()),
                r = stream.read_buf(inbuf), if can_read => match r {
                    Ok(0) | Err(_) => return End::Dropped,
                    Ok(_) => fresh = true,
                },
                _ = tokio::time::sleep(Duration::from_millis(1)), if self.stalled.is_some() => {}
                _ = tokio::time::sleep(rate_wait.unwrap_or_default()), if rate_wait.is_some() => {}
                _ = &mut ka_sleep, if keep_alive.is_some() && can_read => {
                    // Armed for an earlier deadline: re-arm, or time out.
                    let due = last_rx + keep_alive.expect("checked");
                    if Instant::now() >= due {
                        GuardStats::hit(&self.guard.stats.keep_alive_timeouts);
                        tracing::debug!(client = %self.who.client_id, "keep-alive expired: closed");
                        closing = Some(End::Server(DisconnectReason::KeepAliveTimeout));
                    } else {
                        ka_sleep.as_mut().reset(due);
                    }
                }
                _ = sleep_until_opt(drain_deadline), if drain_deadline.is_some() => {}
            }
        }
    }

    fn note_via(&mut self, via: Option<usize>) {
        if let Some(v) = via {
            if !self.via.contains(&v) {
                self.via.push(v);
            }
        }
    }

    /// A will goes in as a QoS 0 publish of the device would: validated,
    /// dead-lettered with its reason if refused, waiting (bounded) for room.
    async fn ingest_will(&mut self, topic: &[u8], payload: &[u8], deadline: Instant) {
        if !topic_ok(topic) {
            return;
        }
        let topic_bytes = Bytes::copy_from_slice(topic);
        if !self.acl.check(self.guard, &self.who, &topic_bytes) {
            self.guard.count_denied();
            self.shard
                .refuse(topic, payload, true, Reason::NotAuthorized);
            return;
        }
        let Ok(mut routed) = self.shard.validate(topic, payload, true) else {
            return;
        };
        loop {
            match self.shard.publish(&mut routed, None) {
                Step::Done { via, .. } => {
                    self.note_via(via);
                    break;
                }
                Step::Busy if Instant::now() >= deadline => {
                    tracing::warn!("a will did not get into a full partition in time");
                    return;
                }
                Step::Busy => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
        self.shard.wake_peers();
    }

    /// A publish read before the connection dropped that still waits for
    /// room goes in (it was read: the device may have it counted as sent),
    /// or, past `deadline`, is given up and counted as abandoned.
    async fn finish_stalled(&mut self, deadline: Instant) {
        let Some(mut st) = self.stalled.take() else {
            return;
        };
        loop {
            match self.shard.publish(&mut st.routed, None) {
                Step::Done { via, .. } => {
                    self.note_via(via);
                    self.shard.wake_peers();
                    return;
                }
                Step::Busy if Instant::now() >= deadline => {
                    self.shard.abandon(&st.routed);
                    return;
                }
                Step::Busy => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }

    /// Waits (until `deadline`) until everything this connection handed to
    /// other shards is in its partition: one barrier per shard it used. The
    /// session is released only after, so the device's next connection
    /// cannot overtake this one's records.
    async fn flush(&mut self, mailbox: &Mailbox, deadline: Instant) {
        let ticket = Ticket {
            conn: self.id,
            token: BARRIER_TOKEN,
        };
        let mut waiting = 0usize;
        for &to in &self.via {
            while !self.shard.barrier(to, ticket) {
                if Instant::now() >= deadline {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            waiting += 1;
        }
        self.shard.wake_peers();
        while waiting > 0 {
            let n = {
                let mut v = mailbox.verdicts.borrow_mut();
                let n = v.iter().filter(|(t, _)| *t == BARRIER_TOKEN).count();
                v.clear();
                n
            };
            waiting = waiting.saturating_sub(n);
            if waiting == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, mailbox.notify.notified())
                .await
                .is_err()
            {
                tracing::warn!("a closing connection's hand-offs were not published in time");
                return;
            }
        }
    }

    /// Whether no more PUBLISH packets are decoded for now. MQTT 3.1.x has
    /// no Receive Maximum: its connections are not read while this many
    /// messages wait for their acknowledgement (backpressure). MQTT 5
    /// clients are bound by the one advertised; they are read on, and one
    /// that exceeds it is disconnected (0x93, in `publish`).
    /// Whether the publish rate limit lets the next packet be read (and,
    /// the first time it does not, counts it).
    fn may_read(&mut self, shared: &Shared) -> bool {
        let Some(b) = self.bucket.as_mut() else {
            return true;
        };
        let ok = b.ready();
        if !ok && !self.throttled {
            shared
                .guard
                .stats
                .rate_limited
                .fetch_add(1, Ordering::Relaxed);
        }
        self.throttled = !ok;
        ok
    }

    fn window_full(&self) -> bool {
        !self.version.is_v5() && self.inflight >= usize::from(self.receive_maximum)
    }

    fn ticket(&self) -> Ticket {
        Ticket {
            conn: self.id,
            token: self.next_token,
        }
    }

    fn push_pending(&mut self, pkid: u16, qos: u8, mut outcome: Outcome, mut waiting: u8) {
        if qos == 0 {
            return;
        }
        // Verdicts of this message's first records may have come back while
        // its last one waited for room.
        for (_, o) in self.early.drain(..) {
            waiting = waiting.saturating_sub(1);
            outcome = outcome.and(o);
        }
        self.pending.push_back(Pending {
            token: self.next_token,
            pkid,
            qos,
            waiting,
            outcome,
        });
        self.next_token += 1;
    }

    /// Handles one packet; `Some` ends the connection.
    fn handle(&mut self, p: Packet, out: &mut BytesMut) -> Option<End> {
        match p {
            Packet::Publish {
                qos,
                pkid,
                retain,
                topic,
                payload,
                alias,
            } => self.publish(qos, pkid, retain, topic, payload, alias),
            Packet::PubRel(pkid) => {
                self.qos2.remove(&pkid);
                codec::pubcomp(self.version, out, pkid);
                None
            }
            Packet::Subscribe { pkid, filters } => {
                // None is granted, so none is held: the index is the
                // filter's place in this SUBSCRIBE.
                let max = self.max_subscriptions;
                let codes: Vec<_> = filters
                    .iter()
                    .enumerate()
                    .map(|(i, f)| self.guard.subscription(&self.who, f, i, max))
                    .collect();
                codec::suback_refused(self.version, out, pkid, &codes);
                None
            }
            Packet::Unsubscribe { pkid, filters } => {
                codec::unsuback(self.version, out, pkid, filters);
                None
            }
            Packet::PingReq => {
                codec::pingresp(out);
                None
            }
            Packet::Disconnect {
                reason,
                session_expiry,
            } => {
                if let Some(e) = session_expiry {
                    self.session_expiry = e;
                }
                Some(End::Disconnect {
                    will: reason == 0x04,
                })
            }
            Packet::Connect => Some(End::Server(DisconnectReason::ProtocolError)),
            Packet::Unexpected(name) => {
                tracing::debug!("protocol error: a client sent {name}");
                Some(End::Server(DisconnectReason::ProtocolError))
            }
        }
    }

    fn publish(
        &mut self,
        qos: u8,
        pkid: u16,
        retain: bool,
        mut topic: Bytes,
        payload: Bytes,
        alias: Option<u16>,
    ) -> Option<End> {
        if let Some(b) = self.bucket.as_mut() {
            b.take();
        }
        if self.version.is_v5() {
            if retain {
                return Some(End::Server(DisconnectReason::RetainNotSupported));
            }
            if let Some(a) = alias {
                let slot = self.aliases.get_mut(usize::from(a)).filter(|_| a != 0);
                let Some(slot) = slot else {
                    return Some(End::Server(DisconnectReason::TopicAliasInvalid));
                };
                if topic.is_empty() {
                    match slot {
                        Some(t) => topic = t.clone(),
                        None => return Some(End::Server(DisconnectReason::ProtocolError)),
                    }
                } else {
                    *slot = Some(topic.clone());
                }
            }
            if std::str::from_utf8(&topic).is_err() {
                return Some(End::Server(DisconnectReason::MalformedPacket));
            }
        }
        if !topic_ok(&topic) {
            tracing::debug!(topic = %String::from_utf8_lossy(&topic), "invalid topic name");
            return Some(End::Server(DisconnectReason::TopicNameInvalid));
        }
        // MQTT 5: a QoS 1 publish holds its slot until PUBACK, a QoS 2 one
        // until PUBCOMP (MQTT-3.3.4-7).
        if qos > 0
            && self.version.is_v5()
            && self.qos1 + self.qos2.len() >= usize::from(self.receive_maximum)
        {
            GuardStats::hit(&self.guard.stats.receive_maximum_exceeded);
            tracing::debug!(client = %self.who.client_id, "Receive Maximum exceeded: closed");
            return Some(End::Server(DisconnectReason::ReceiveMaximumExceeded));
        }
        if qos == 2 && !self.qos2.insert(pkid) {
            // Ingested already and not released: acknowledge again, in order.
            self.shard.count_duplicate();
            self.inflight += 1;
            self.push_pending(pkid, qos, Outcome::Accepted, 0);
            return None;
        }
        if qos > 0 {
            self.inflight += 1;
        }
        if qos == 1 {
            self.qos1 += 1;
        }
        if !self.acl.check(self.guard, &self.who, &topic) {
            // MQTT 5: PUBACK 0x87; 3.1.x: acknowledged and dropped, as
            // mosquitto does. Dead-lettered either way, never ingested.
            self.guard.count_denied();
            self.shard
                .refuse(&topic, &payload, false, Reason::NotAuthorized);
            self.push_pending(pkid, qos, Outcome::Refused(Reason::NotAuthorized), 0);
            return None;
        }
        match self.shard.validate(&topic, &payload, false) {
            Err(reason) => self.push_pending(pkid, qos, Outcome::Refused(reason), 0),
            Ok(mut routed) => {
                let ticket = (qos > 0).then(|| self.ticket());
                match self.shard.publish(&mut routed, ticket) {
                    Step::Done {
                        outcome,
                        forwarded,
                        via,
                    } => {
                        self.note_via(via);
                        self.push_pending(pkid, qos, outcome, forwarded)
                    }
                    Step::Busy => self.stalled = Some(Stalled { routed, pkid, qos }),
                }
            }
        }
        None
    }

    /// Applies the verdicts that arrived and writes every acknowledgement
    /// that is due, in order. False if the engine closed under a message.
    fn apply_verdicts(&mut self, mailbox: &Mailbox, out: &mut BytesMut) -> bool {
        {
            let mut v = mailbox.verdicts.borrow_mut();
            while let Some((token, outcome)) = v.pop_front() {
                if token == self.next_token {
                    // The message still being published (stalled).
                    self.early.push((token, outcome));
                    continue;
                }
                let Some(front) = self.pending.front() else {
                    continue;
                };
                let Some(p) = token
                    .checked_sub(front.token)
                    .and_then(|i| self.pending.get_mut(i as usize))
                else {
                    continue;
                };
                debug_assert_eq!(p.token, token);
                p.waiting = p.waiting.saturating_sub(1);
                p.outcome = p.outcome.and(outcome);
            }
        }
        while self.pending.front().is_some_and(|p| p.waiting == 0) {
            let p = self.pending.pop_front().expect("checked");
            self.inflight -= 1;
            if p.qos == 1 {
                self.qos1 -= 1;
            }
            let reason = match p.outcome {
                Outcome::Accepted => AckReason::Success,
                Outcome::QuotaExceeded => AckReason::QuotaExceeded,
                Outcome::Refused(r) => refusal(r),
                Outcome::Closed => return false,
            };
            if p.qos == 1 {
                codec::puback(self.version, out, p.pkid, reason);
            } else {
                codec::pubrec(self.version, out, p.pkid, reason);
                // MQTT 5: a PUBREC of 0x80 or more ends the exchange.
                if self.version.is_v5() && reason != AckReason::Success {
                    self.qos2.remove(&p.pkid);
                }
            }
        }
        true
    }
}

/// The MQTT 5 reason code of a validation refusal.
fn refusal(r: Reason) -> AckReason {
    match r {
        Reason::UnknownTopic
        | Reason::UnknownMetric
        | Reason::DeviceIdEmpty
        | Reason::DeviceIdTooLong => AckReason::TopicNameInvalid,
        Reason::NotAuthorized => AckReason::NotAuthorized,
        _ => AckReason::PayloadFormatInvalid,
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::dead_letter::DeadLetter;
    use crate::mqtt::ingest::Shards;
    use crate::mqtt::validate::Limits;
    use crate::{Engine, Reading, TopicConfig};

    fn shard() -> Rc<Shard> {
        let engine: Engine<Reading> = Engine::new();
        engine.create_topic("t", TopicConfig::new(2, 64)).unwrap();
        engine.create_topic("h", TopicConfig::new(2, 64)).unwrap();
        let dead: Engine<DeadLetter> = Engine::new();
        dead.create_topic(
            "d",
            TopicConfig::new(2, 64).policy(crate::OverflowPolicy::Overwrite),
        )
        .unwrap();
        let mut plan = Shards::new(
            2,
            engine.producer("t").unwrap(),
            engine.producer("h").unwrap(),
            dead.producer("d").unwrap(),
            Limits::default(),
            None,
        );
        plan.seeds.swap_remove(0).into_parts().0
    }

    fn conn(shard: &Shard) -> Conn<'_> {
        // No ACL: every topic allowed (a test helper; leaked once per test).
        let guard = Box::leak(Box::new(
            super::super::guard::Guard::new(Default::default()),
        ));
        Conn {
            shard,
            guard,
            who: super::super::guard::Identity {
                client_id: "c".into(),
                username: None,
            },
            acl: Default::default(),
            bucket: None,
            throttled: false,
            version: Version::V311,
            id: 1,
            max_packet: 1024,
            receive_maximum: 8,
            max_subscriptions: 4,
            aliases: vec![None; 4],
            pending: VecDeque::new(),
            inflight: 0,
            qos1: 0,
            next_token: 1,
            qos2: HashSet::new(),
            stalled: None,
            session_expiry: 0,
            via: Vec::new(),
            early: Vec::new(),
        }
    }

    /// A `reading` whose first record was handed off and answered while
    /// its second waited for room: the early verdict counts once the
    /// message is pending, and the PUBACK goes out when the last one is in.
    #[test]
    fn a_verdict_back_before_its_message_is_pending_is_kept() {
        let shard = shard();
        let mut c = conn(&shard);
        let mb = Mailbox::default();
        let mut out = BytesMut::new();
        (c.inflight, c.qos1) = (1, 1);
        mb.verdicts.borrow_mut().push_back((1, Outcome::Accepted));
        assert!(c.apply_verdicts(&mb, &mut out));
        assert!(out.is_empty() && c.pending.is_empty());
        c.push_pending(7, 1, Outcome::Accepted, 2);
        assert!(c.apply_verdicts(&mb, &mut out));
        assert!(out.is_empty(), "one verdict still to come");
        mb.verdicts
            .borrow_mut()
            .push_back((1, Outcome::QuotaExceeded));
        assert!(c.apply_verdicts(&mb, &mut out));
        assert_eq!(&out[..], &[0x40, 0x02, 0x00, 0x07]);
        assert_eq!((c.inflight, c.qos1, c.pending.len()), (0, 0, 0));
    }

    /// Acknowledgements leave in PUBLISH order, whatever order the verdicts
    /// come back in (MQTT-4.6.0-2).
    #[test]
    fn acknowledgements_keep_publish_order() {
        let shard = shard();
        let mut c = conn(&shard);
        let mb = Mailbox::default();
        let mut out = BytesMut::new();
        (c.inflight, c.qos1) = (3, 2);
        c.push_pending(1, 1, Outcome::Accepted, 1);
        c.push_pending(2, 1, Outcome::Accepted, 0);
        c.push_pending(3, 2, Outcome::Accepted, 1);
        assert!(c.apply_verdicts(&mb, &mut out));
        assert!(out.is_empty(), "the first waits, so all wait");
        mb.verdicts.borrow_mut().push_back((3, Outcome::Accepted));
        assert!(c.apply_verdicts(&mb, &mut out));
        assert!(out.is_empty());
        mb.verdicts.borrow_mut().push_back((1, Outcome::Accepted));
        assert!(c.apply_verdicts(&mb, &mut out));
        assert_eq!(
            &out[..],
            &[0x40, 2, 0, 1, 0x40, 2, 0, 2, 0x50, 2, 0, 3],
            "PUBACK 1, PUBACK 2, PUBREC 3"
        );
    }
}
