//! MQTT 3.1.1 and 5 clients (`rumqttc`) behind one face: connect, publish,
//! disconnect, and the event-loop events the simulator counts.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::{INFLIGHT, MAX_PACKET_SIZE, REQUEST_CHANNEL_CAPACITY};

pub(crate) struct ClientOptions {
    pub(crate) id: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) v5: bool,
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
        let (c, e) = rumqttc::v5::AsyncClient::new(opts, REQUEST_CHANNEL_CAPACITY);
        (Client::V5(c), EventLoop::V5(Box::new(e)))
    } else {
        let mut opts = rumqttc::MqttOptions::new(&o.id, &o.host, o.port);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE)
            .set_inflight(INFLIGHT);
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

    pub(crate) async fn poll(&mut self) -> Result<Ev, String> {
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
                    Err(e) => Err(e.to_string()),
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
                    Err(e) => Err(e.to_string()),
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

/// Connects one client, retrying until `deadline`. Returns the client, its
/// event loop and the number of failed attempts.
pub(crate) async fn connect(
    o: ClientOptions,
    deadline: Instant,
) -> Result<(Client, EventLoop, u64), String> {
    let (client, mut eventloop) = new_client(&o);
    let mut failures = 0u64;
    let mut backoff = Duration::from_millis(50);
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Ev::ConnAck { .. })) => return Ok((client, eventloop, failures)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                failures += 1;
                tracing::debug!(client = %o.id, error = %e, "connect failed");
                if Instant::now() + backoff >= deadline {
                    return Err(format!("{}: {e}", o.id));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(_) => return Err(format!("{}: timed out", o.id)),
        }
    }
}
