//! MQTT 3.1.1 and 5 clients (`rumqttc`) behind one face: connect, publish,
//! disconnect, and the event-loop events the simulator counts; credentials,
//! TLS (rustls with the ring provider), and CONNACK refusals.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::time::Instant;

use crate::config::{Refusal, SimError, INFLIGHT, MAX_PACKET_SIZE, REQUEST_CHANNEL_CAPACITY};

pub(crate) struct ClientOptions {
    pub(crate) id: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) v5: bool,
    /// User name and password.
    pub(crate) login: Option<(String, String)>,
    /// Connect over TLS with this configuration.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

/// The rustls client configuration of `--cafile`: the broker's certificate
/// must chain to one of the certificates in the PEM file `cafile` (the
/// system's roots are not used). The crypto provider is ring, named here
/// rather than left to rustls' crate features, which another crate of the
/// same build could change.
pub(crate) fn tls_config(cafile: &Path) -> Result<Arc<rustls::ClientConfig>, SimError> {
    let bad = |m: String| SimError::Config(format!("CA file {}: {m}", cafile.display()));
    let pem = std::fs::read(cafile).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("not PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("no CERTIFICATE in it".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Why an event-loop poll failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PollError {
    /// The broker refused the connection in its CONNACK.
    Refused(Refusal),
    /// TLS failed for good: the broker's certificate did not verify, or
    /// the TLS setup is unusable (a handshake cut by the network is
    /// `Other`).
    Tls(String),
    /// Anything else (I/O, TLS, protocol).
    Other(String),
}

impl std::fmt::Display for PollError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PollError::Refused(r) => write!(f, "connection refused: {r}"),
            PollError::Tls(e) => f.write_str(e),
            PollError::Other(e) => f.write_str(e),
        }
    }
}

/// Whether a TLS error will not heal by retrying: rustls refused the
/// handshake (tokio-rustls hands its error over inside an `InvalidData` I/O
/// error), or the configuration is unusable.
fn tls_fatal(e: &rumqttc::TlsError) -> bool {
    match e {
        rumqttc::TlsError::Io(io) => {
            io.kind() == std::io::ErrorKind::InvalidData
                && io
                    .get_ref()
                    .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        }
        _ => true,
    }
}

fn refusal_v4(code: rumqttc::ConnectReturnCode) -> Refusal {
    use rumqttc::ConnectReturnCode as C;
    let (code, reason) = match code {
        C::Success => (0x00, "success"),
        C::RefusedProtocolVersion => (0x01, "unacceptable protocol version"),
        C::BadClientId => (0x02, "identifier rejected"),
        C::ServiceUnavailable => (0x03, "server unavailable"),
        C::BadUserNamePassword => (0x04, "bad user name or password"),
        C::NotAuthorized => (0x05, "not authorized"),
    };
    Refusal { code, reason }
}

fn refusal_v5(code: rumqttc::v5::mqttbytes::v5::ConnectReturnCode) -> Refusal {
    use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as C;
    let (code, reason) = match code {
        C::Success => (0x00, "success"),
        // rumqttc's names for the 3.1.1 codes, never decoded from MQTT 5.
        C::RefusedProtocolVersion => (0x01, "unacceptable protocol version"),
        C::BadClientId => (0x02, "identifier rejected"),
        C::ServiceUnavailable => (0x03, "server unavailable"),
        C::UnspecifiedError => (0x80, "unspecified error"),
        C::MalformedPacket => (0x81, "malformed packet"),
        C::ProtocolError => (0x82, "protocol error"),
        C::ImplementationSpecificError => (0x83, "implementation specific error"),
        C::UnsupportedProtocolVersion => (0x84, "unsupported protocol version"),
        C::ClientIdentifierNotValid => (0x85, "client identifier not valid"),
        C::BadUserNamePassword => (0x86, "bad user name or password"),
        C::NotAuthorized => (0x87, "not authorized"),
        C::ServerUnavailable => (0x88, "server unavailable"),
        C::ServerBusy => (0x89, "server busy"),
        C::Banned => (0x8a, "banned"),
        C::BadAuthenticationMethod => (0x8c, "bad authentication method"),
        C::TopicNameInvalid => (0x90, "topic name invalid"),
        C::PacketTooLarge => (0x95, "packet too large"),
        C::QuotaExceeded => (0x97, "quota exceeded"),
        C::PayloadFormatInvalid => (0x99, "payload format invalid"),
        C::RetainNotSupported => (0x9a, "retain not supported"),
        C::QoSNotSupported => (0x9b, "QoS not supported"),
        C::UseAnotherServer => (0x9c, "use another server"),
        C::ServerMoved => (0x9d, "server moved"),
        C::ConnectionRateExceeded => (0x9f, "connection rate exceeded"),
    };
    Refusal { code, reason }
}

pub(crate) enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

pub(crate) enum EventLoop {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// What the simulator cares about in an event-loop event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ev {
    /// Connected; on a reconnect, `dropped` unsent or unacknowledged
    /// publishes of the lost session were discarded (clean session).
    ConnAck {
        dropped: u64,
    },
    /// A PUBLISH was written and flushed to the socket.
    Written,
    PubAck,
    /// DISCONNECT was written and flushed to the socket.
    DisconnectSent,
    Other,
}

fn new_client(o: &ClientOptions) -> (Client, EventLoop) {
    if o.v5 {
        let mut opts = rumqttc::v5::MqttOptions::new(&o.id, &o.host, o.port);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_clean_start(true)
            .set_max_packet_size(Some(MAX_PACKET_SIZE as u32))
            .set_outgoing_inflight_upper_limit(INFLIGHT);
        if let Some((user, password)) = &o.login {
            opts.set_credentials(user, password);
        }
        if let Some(tls) = &o.tls {
            opts.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(Arc::clone(tls)),
            ));
        }
        let (c, e) = rumqttc::v5::AsyncClient::new(opts, REQUEST_CHANNEL_CAPACITY);
        (Client::V5(c), EventLoop::V5(Box::new(e)))
    } else {
        let mut opts = rumqttc::MqttOptions::new(&o.id, &o.host, o.port);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE)
            .set_inflight(INFLIGHT);
        if let Some((user, password)) = &o.login {
            opts.set_credentials(user, password);
        }
        if let Some(tls) = &o.tls {
            opts.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(Arc::clone(tls)),
            ));
        }
        let (c, e) = rumqttc::AsyncClient::new(opts, REQUEST_CHANNEL_CAPACITY);
        (Client::V4(c), EventLoop::V4(Box::new(e)))
    }
}

impl Client {
    pub(crate) async fn publish(
        &self,
        topic: String,
        qos: u8,
        payload: Vec<u8>,
    ) -> Result<(), String> {
        match self {
            Client::V4(c) => {
                let qos = if qos == 0 {
                    rumqttc::QoS::AtMostOnce
                } else {
                    rumqttc::QoS::AtLeastOnce
                };
                c.publish(topic, qos, false, payload)
                    .await
                    .map_err(|e| e.to_string())
            }
            Client::V5(c) => {
                use rumqttc::v5::mqttbytes::QoS;
                let qos = if qos == 0 {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                };
                c.publish(topic, qos, false, payload)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    pub(crate) fn try_disconnect(&self) -> Result<(), String> {
        match self {
            Client::V4(c) => c.try_disconnect().map_err(|e| e.to_string()),
            Client::V5(c) => c.try_disconnect().map_err(|e| e.to_string()),
        }
    }
}

impl EventLoop {
    /// Publishes waiting to be re-sent (moved out of the session when the
    /// connection was lost; discarded on reconnect unless the broker kept
    /// the session).
    pub(crate) fn pending_publishes(&self) -> u64 {
        let n = match self {
            EventLoop::V4(e) => e
                .pending
                .iter()
                .filter(|r| matches!(r, rumqttc::Request::Publish(_)))
                .count(),
            EventLoop::V5(e) => e
                .pending
                .iter()
                .filter(|r| matches!(r, rumqttc::v5::Request::Publish(_)))
                .count(),
        };
        n as u64
    }

    pub(crate) async fn poll(&mut self) -> Result<Ev, PollError> {
        use rumqttc::Outgoing;
        let pending = self.pending_publishes();
        let out = |o: &Outgoing| match o {
            Outgoing::Publish(_) => Ev::Written,
            Outgoing::Disconnect => Ev::DisconnectSent,
            _ => Ev::Other,
        };
        let ev = match self {
            EventLoop::V4(e) => {
                use rumqttc::{Event, Packet};
                match e.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Ok(Ev::ConnAck { dropped: 0 }),
                    Ok(Event::Incoming(Packet::PubAck(_))) => Ok(Ev::PubAck),
                    Ok(Event::Incoming(_)) => Ok(Ev::Other),
                    Ok(Event::Outgoing(o)) => Ok(out(&o)),
                    Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                        Err(PollError::Refused(refusal_v4(code)))
                    }
                    Err(rumqttc::ConnectionError::Tls(t)) if tls_fatal(&t) => {
                        Err(PollError::Tls(format!("TLS: {t}")))
                    }
                    Err(e) => Err(PollError::Other(e.to_string())),
                }
            }
            EventLoop::V5(e) => {
                use rumqttc::v5::mqttbytes::v5::Packet;
                use rumqttc::v5::Event;
                match e.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Ok(Ev::ConnAck { dropped: 0 }),
                    Ok(Event::Incoming(Packet::PubAck(_))) => Ok(Ev::PubAck),
                    Ok(Event::Incoming(_)) => Ok(Ev::Other),
                    Ok(Event::Outgoing(o)) => Ok(out(&o)),
                    Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => {
                        Err(PollError::Refused(refusal_v5(code)))
                    }
                    Err(rumqttc::v5::ConnectionError::Tls(t)) if tls_fatal(&t) => {
                        Err(PollError::Tls(format!("TLS: {t}")))
                    }
                    Err(e) => Err(PollError::Other(e.to_string())),
                }
            }
        };
        match ev {
            Ok(Ev::ConnAck { .. }) => Ok(Ev::ConnAck {
                dropped: pending.saturating_sub(self.pending_publishes()),
            }),
            ev => ev,
        }
    }
}

/// Why a client could not connect.
#[derive(Debug)]
pub(crate) enum ConnectFailure {
    /// The broker refused it in its CONNACK: not retried, the same CONNECT
    /// would be refused again.
    Refused(Refusal),
    /// No connection by the deadline; the last error seen.
    Other(String),
}

/// Connects one client, retrying until `deadline` unless the broker refuses
/// it or its certificate does not verify. Returns the client, its event loop and the number of failed attempts.
pub(crate) async fn connect(
    o: ClientOptions,
    deadline: Instant,
) -> Result<(Client, EventLoop, u64), ConnectFailure> {
    let (client, mut eventloop) = new_client(&o);
    let mut failures = 0u64;
    let mut backoff = Duration::from_millis(50);
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Ev::ConnAck { .. })) => return Ok((client, eventloop, failures)),
            Ok(Ok(_)) => {}
            Ok(Err(PollError::Refused(r))) => {
                tracing::debug!(client = %o.id, refusal = %r, "connection refused");
                return Err(ConnectFailure::Refused(r));
            }
            Ok(Err(PollError::Tls(e))) => {
                tracing::debug!(client = %o.id, error = %e, "TLS failed");
                return Err(ConnectFailure::Other(format!("{}: {e}", o.id)));
            }
            Ok(Err(PollError::Other(e))) => {
                failures += 1;
                tracing::debug!(client = %o.id, error = %e, "connect failed");
                if Instant::now() + backoff >= deadline {
                    return Err(ConnectFailure::Other(format!("{}: {e}", o.id)));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(_) => return Err(ConnectFailure::Other(format!("{}: timed out", o.id))),
        }
    }
}
