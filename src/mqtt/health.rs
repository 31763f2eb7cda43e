//! Listener health: a real MQTT CONNECT against each listener, periodically.
//!
//! rumqttd 0.20 has bugs by which a client can leave a listener dead while
//! the process runs on (a poisoned lock after a refused client id is reused:
//! bytebeamio/rumqtt#1062; the v5 parser panicking on a client-sent CONNACK:
//! #812). telering cannot repair a rumqttd listener from outside, so it makes
//! the failure visible: the live line, the summary and [`super::Server::healthy`]
//! report a listener that no longer completes a CONNECT.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One listener's state.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) addr: SocketAddr,
    pub(crate) v5: bool,
    pub(crate) healthy: AtomicBool,
}

/// Time between probes.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(5);

static PROBES: AtomicU64 = AtomicU64::new(0);

/// One MQTT CONNECT; true if a successful CONNACK comes back in time. The
/// socket is then closed without DISCONNECT (a clean DISCONNECT followed by
/// a close makes rumqttd 0.20 disconnect the connection id twice).
pub(crate) fn probe(addr: SocketAddr, v5: bool) -> bool {
    let n = PROBES.fetch_add(1, Ordering::Relaxed);
    let id = format!("telering-health-{}-{n}", std::process::id());
    let mut body = Vec::with_capacity(32 + id.len());
    body.extend_from_slice(&[
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        if v5 { 5 } else { 4 },
        0x02,
        0,
        30,
    ]);
    if v5 {
        body.push(0); // no properties
    }
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    let attempt = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(&packet)?;
        let mut head = [0u8; 4];
        s.read_exact(&mut head)?;
        // CONNACK, then session-present flags, then the return/reason code.
        Ok(head[0] == 0x20 && head[3] == 0)
    };
    attempt().unwrap_or(false)
}

/// Probes every listener every [`PROBE_EVERY`] until `stop`.
pub(crate) fn watch(listeners: Arc<Vec<Listener>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        for l in listeners.iter() {
            let ok = probe(l.addr, l.v5);
            let was = l.healthy.swap(ok, Ordering::Relaxed);
            if was && !ok {
                tracing::error!(
                    addr = %l.addr,
                    "MQTT listener no longer completes a CONNECT (a known rumqttd 0.20 failure); restart telering"
                );
            }
        }
        let mut slept = Duration::ZERO;
        while slept < PROBE_EVERY && !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(100));
            slept += Duration::from_millis(100);
        }
    }
}
