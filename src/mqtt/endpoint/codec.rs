//! MQTT 3.1, 3.1.1 and 5 on one port: version negotiation and one view of
//! the packets the endpoint handles, over rumqttc's maintained codecs
//! (`rumqttc::mqttbytes::v4` for 3.1.1, `rumqttc::v5::mqttbytes::v5`).
//!
//! What this module does itself, and why:
//! - it reads the CONNECT's protocol name and level (the fixed header, a
//!   length-prefixed name, one byte) to choose the codec: the v4 decoder
//!   accepts levels 4 and 5 alike;
//! - MQTT 3.1 (`MQIsdp`, level 3) differs from 3.1.1 in the CONNECT's name
//!   and level only; its CONNECT is rewritten to 3.1.1's before decoding;
//! - the v5 decoder refuses the two-byte DISCONNECT `e0 00` (remaining
//!   length 0 means reason 0x00, normal disconnection, MQTT 5 §3.14.2.1),
//!   so that one frame is recognised here.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

/// The protocol a connection negotiated in its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1 (protocol name `MQIsdp`, level 3).
    V31,
    /// MQTT 3.1.1 (level 4).
    V311,
    /// MQTT 5 (level 5).
    V5,
}

impl Version {
    /// Whether this is MQTT 5.
    pub fn is_v5(self) -> bool {
        self == Version::V5
    }
}

/// A will message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Its topic.
    pub topic: Bytes,
    /// Its payload.
    pub payload: Bytes,
    /// Its retain flag.
    pub retain: bool,
}

/// The CONNECT of a connection, whatever its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Negotiated version.
    pub version: Version,
    /// Client identifier (may be empty).
    pub client_id: String,
    /// Clean session (3.1.x) or clean start (5).
    pub clean: bool,
    /// Keep-alive, seconds; 0 turns it off.
    pub keep_alive: u16,
    /// The will, if any.
    pub will: Option<Will>,
    /// MQTT 5 session expiry interval, seconds (0 when absent). 3.1.x: 0
    /// for a clean session, `u32::MAX` (never) otherwise.
    pub session_expiry: u32,
    /// The client's own packet size limit (MQTT 5).
    pub max_packet_size: Option<u32>,
    /// User name, if given.
    pub username: Option<String>,
    /// Password, if given (with a user name).
    pub password: Option<String>,
}

/// A packet after CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// PUBLISH.
    Publish {
        /// QoS 0, 1 or 2.
        qos: u8,
        /// Packet id (0 at QoS 0).
        pkid: u16,
        /// Retain flag.
        retain: bool,
        /// Topic name (empty when an MQTT 5 alias stands for it).
        topic: Bytes,
        /// Payload.
        payload: Bytes,
        /// MQTT 5 topic alias.
        alias: Option<u16>,
    },
    /// PUBREL of a QoS 2 publish.
    PubRel(u16),
    /// SUBSCRIBE.
    Subscribe {
        /// Packet id.
        pkid: u16,
        /// Topic filters, in order.
        filters: Vec<String>,
    },
    /// UNSUBSCRIBE with this many filters.
    Unsubscribe {
        /// Packet id.
        pkid: u16,
        /// Filters.
        filters: usize,
    },
    /// PINGREQ.
    PingReq,
    /// DISCONNECT, with its MQTT 5 reason code (0 otherwise) and session
    /// expiry.
    Disconnect {
        /// Reason code.
        reason: u8,
        /// New session expiry interval, MQTT 5.
        session_expiry: Option<u32>,
    },
    /// A second CONNECT.
    Connect,
    /// A packet only a server sends, or one the endpoint never asked for
    /// (CONNACK, SUBACK, PUBACK, AUTH, ...): its name.
    Unexpected(&'static str),
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A packet over the size limit.
    #[error("packet of {0} bytes is over the limit")]
    TooLarge(usize),
    /// Malformed bytes.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// The first packet is not CONNECT.
    #[error("the first packet is not CONNECT")]
    NotConnect,
    /// A protocol name or level telering does not speak.
    #[error("unsupported protocol {name:?} level {level}")]
    UnsupportedVersion {
        /// Protocol name.
        name: String,
        /// Protocol level.
        level: u8,
    },
}

/// Length of the fixed header (type byte and remaining-length varint) if
/// `buf` holds it all, with the remaining length.
fn fixed_header(buf: &[u8]) -> Option<(usize, usize)> {
    let mut len = 0usize;
    for i in 0..4 {
        let b = *buf.get(1 + i)?;
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((2 + i, len));
        }
    }
    None
}

fn v4_err(e: rumqttc::mqttbytes::Error) -> DecodeError {
    match e {
        rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(n) => DecodeError::TooLarge(n),
        e => DecodeError::Malformed(e.to_string()),
    }
}

fn v5_err(e: rumqttc::v5::mqttbytes::Error) -> DecodeError {
    match e {
        rumqttc::v5::mqttbytes::Error::PayloadSizeLimitExceeded { pkt_size, .. } => {
            DecodeError::TooLarge(pkt_size)
        }
        e => DecodeError::Malformed(e.to_string()),
    }
}

/// Whether `buf` starts with a whole frame (`Ok(false)`: read more).
fn complete(buf: &[u8], max: usize) -> Result<bool, DecodeError> {
    match rumqttc::mqttbytes::check(buf.iter(), max) {
        Ok(_) => Ok(true),
        Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(false),
        Err(e) => Err(v4_err(e)),
    }
}

/// Decodes the first packet, which must be CONNECT. `Ok(None)`: incomplete.
pub fn decode_connect(buf: &mut BytesMut, max: usize) -> Result<Option<Connect>, DecodeError> {
    if let Some(&b) = buf.first() {
        if b >> 4 != 1 {
            return Err(DecodeError::NotConnect);
        }
        if b & 0x0f != 0 {
            return Err(DecodeError::Malformed(
                "CONNECT fixed header flags set".into(),
            ));
        }
    }
    if !complete(buf, max)? {
        return Ok(None);
    }
    let (hdr, remaining) = fixed_header(buf).expect("a complete frame has its header");
    let body = &buf[hdr..hdr + remaining];
    if body.len() < 2 {
        return Err(DecodeError::Malformed(
            "CONNECT without a protocol name".into(),
        ));
    }
    let name_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let (Some(name), Some(&level)) = (body.get(2..2 + name_len), body.get(2 + name_len)) else {
        return Err(DecodeError::Malformed("CONNECT cut short".into()));
    };
    // The CONNECT flags' reserved bit must be 0 (MQTT-3.1.2-3).
    if body.get(3 + name_len).is_some_and(|f| f & 1 != 0) {
        return Err(DecodeError::Malformed("reserved CONNECT flag set".into()));
    }
    match (name, level) {
        (b"MQTT", 4) => decode_v4_connect(buf, max, Version::V311).map(Some),
        (b"MQIsdp", 3) => {
            // 3.1 → 3.1.1: name "MQIsdp" (6) becomes "MQTT" (4), level 4.
            let frame = buf.split_to(hdr + remaining);
            let rest = &frame[hdr + 2 + 6 + 1..];
            let mut rewritten = BytesMut::with_capacity(frame.len());
            rewritten.put_u8(0x10);
            put_varint(&mut rewritten, remaining - 2);
            rewritten.put_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4]);
            rewritten.put_slice(rest);
            decode_v4_connect(&mut rewritten, max, Version::V31).map(Some)
        }
        (b"MQTT", 5) => match v5::Packet::read(buf, Some(max as u32)).map_err(v5_err)? {
            v5::Packet::Connect(c, will, login) => {
                let props = c.properties.as_ref();
                Ok(Some(Connect {
                    version: Version::V5,
                    client_id: c.client_id,
                    clean: c.clean_start,
                    keep_alive: c.keep_alive,
                    will: will.map(|w| Will {
                        topic: w.topic,
                        payload: w.message,
                        retain: w.retain,
                    }),
                    session_expiry: props.and_then(|p| p.session_expiry_interval).unwrap_or(0),
                    max_packet_size: props.and_then(|p| p.max_packet_size),
                    password: login.as_ref().map(|l| l.password.clone()),
                    username: login.map(|l| l.username),
                }))
            }
            _ => Err(DecodeError::NotConnect),
        },
        (name, level) => {
            let name = String::from_utf8_lossy(name).into_owned();
            // Consume the frame: the caller answers and closes.
            buf.advance(hdr + remaining);
            Err(DecodeError::UnsupportedVersion { name, level })
        }
    }
}

fn decode_v4_connect(
    buf: &mut BytesMut,
    max: usize,
    version: Version,
) -> Result<Connect, DecodeError> {
    match v4::Packet::read(buf, max).map_err(v4_err)? {
        v4::Packet::Connect(c) => Ok(Connect {
            version,
            session_expiry: if c.clean_session { 0 } else { u32::MAX },
            client_id: c.client_id,
            clean: c.clean_session,
            keep_alive: c.keep_alive,
            will: c.last_will.map(|w| Will {
                topic: Bytes::from(w.topic),
                payload: w.message,
                retain: w.retain,
            }),
            max_packet_size: None,
            password: c.login.as_ref().map(|l| l.password.clone()),
            username: c.login.map(|l| l.username),
        }),
        _ => Err(DecodeError::NotConnect),
    }
}

fn put_varint(out: &mut BytesMut, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if n == 0 {
            break;
        }
    }
}

/// Decodes the next packet after CONNECT. `Ok(None)`: incomplete.
pub fn decode(
    version: Version,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Packet>, DecodeError> {
    // The codecs' own framing check says whether the frame is complete
    // (an incomplete one is left in `buf`); nothing is checked twice.
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    // The flag bits of the fixed header (MQTT-2.2.2-2): PUBLISH's are its
    // own (QoS 3 is malformed, MQTT-3.3.1-4); PUBREL, SUBSCRIBE and
    // UNSUBSCRIBE carry 0b0010; every other packet 0.
    let (kind, flags) = (first >> 4, first & 0x0f);
    let ok = match kind {
        3 => flags & 0x06 != 0x06,
        6 | 8 | 10 => flags == 0x02,
        _ => flags == 0,
    };
    if !ok {
        return Err(DecodeError::Malformed(format!(
            "fixed header flags {flags:#06b} of packet type {kind}"
        )));
    }
    if version.is_v5() {
        if buf.len() >= 2 && buf[0] == 0xe0 && buf[1] == 0 {
            buf.advance(2);
            return Ok(Some(Packet::Disconnect {
                reason: 0,
                session_expiry: None,
            }));
        }
        let p = match v5::Packet::read(buf, Some(max as u32)) {
            Ok(p) => p,
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => return Ok(None),
            Err(e) => return Err(v5_err(e)),
        };
        return Ok(Some(match p {
            v5::Packet::Publish(p) => Packet::Publish {
                qos: p.qos as u8,
                pkid: p.pkid,
                retain: p.retain,
                alias: p.properties.as_ref().and_then(|pr| pr.topic_alias),
                topic: p.topic,
                payload: p.payload,
            },
            v5::Packet::PubRel(r) => Packet::PubRel(r.pkid),
            v5::Packet::Subscribe(s) => Packet::Subscribe {
                pkid: s.pkid,
                filters: s.filters.into_iter().map(|f| f.path).collect(),
            },
            v5::Packet::Unsubscribe(u) => Packet::Unsubscribe {
                pkid: u.pkid,
                filters: u.filters.len(),
            },
            v5::Packet::PingReq(_) => Packet::PingReq,
            v5::Packet::Disconnect(d) => Packet::Disconnect {
                reason: d.reason_code as u8,
                session_expiry: d.properties.and_then(|p| p.session_expiry_interval),
            },
            v5::Packet::Connect(..) => Packet::Connect,
            v5::Packet::ConnAck(_) => Packet::Unexpected("CONNACK"),
            v5::Packet::PubAck(_) => Packet::Unexpected("PUBACK"),
            v5::Packet::PubRec(_) => Packet::Unexpected("PUBREC"),
            v5::Packet::PubComp(_) => Packet::Unexpected("PUBCOMP"),
            v5::Packet::SubAck(_) => Packet::Unexpected("SUBACK"),
            v5::Packet::UnsubAck(_) => Packet::Unexpected("UNSUBACK"),
            v5::Packet::PingResp(_) => Packet::Unexpected("PINGRESP"),
            v5::Packet::Auth(_) => Packet::Unexpected("AUTH"),
        }));
    }
    let p = match v4::Packet::read(buf, max) {
        Ok(p) => p,
        Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => return Ok(None),
        Err(e) => return Err(v4_err(e)),
    };
    Ok(Some(match p {
        v4::Packet::Publish(p) => Packet::Publish {
            qos: p.qos as u8,
            pkid: p.pkid,
            retain: p.retain,
            topic: Bytes::from(p.topic),
            payload: p.payload,
            alias: None,
        },
        v4::Packet::PubRel(r) => Packet::PubRel(r.pkid),
        v4::Packet::Subscribe(s) => Packet::Subscribe {
            pkid: s.pkid,
            filters: s.filters.into_iter().map(|f| f.path).collect(),
        },
        v4::Packet::Unsubscribe(u) => Packet::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics.len(),
        },
        v4::Packet::PingReq => Packet::PingReq,
        v4::Packet::Disconnect => Packet::Disconnect {
            reason: 0,
            session_expiry: None,
        },
        v4::Packet::Connect(_) => Packet::Connect,
        v4::Packet::ConnAck(_) => Packet::Unexpected("CONNACK"),
        v4::Packet::PubAck(_) => Packet::Unexpected("PUBACK"),
        v4::Packet::PubRec(_) => Packet::Unexpected("PUBREC"),
        v4::Packet::PubComp(_) => Packet::Unexpected("PUBCOMP"),
        v4::Packet::SubAck(_) => Packet::Unexpected("SUBACK"),
        v4::Packet::UnsubAck(_) => Packet::Unexpected("UNSUBACK"),
        v4::Packet::PingResp => Packet::Unexpected("PINGRESP"),
    }))
}

/// What the CONNACK says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnAckCode {
    /// Accepted.
    Accepted,
    /// Unsupported protocol version (3.1.x 0x01, 5 0x84).
    BadVersion,
    /// Client identifier refused (3.1.x 0x02, 5 0x85).
    BadClientId,
    /// Server unavailable, e.g. too many connections (3.1.x 0x03, 5 0x88).
    Unavailable,
    /// MQTT 5: a will with retain, where retain is not available (0x9A).
    RetainNotSupported,
    /// A wrong user name or password (3.1.x 0x04, 5 0x86).
    BadCredentials,
    /// No credentials where they are required, or not allowed in (3.1.x
    /// 0x05, 5 0x87).
    NotAuthorized,
}

/// What an MQTT 5 CONNACK advertises.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Receive Maximum: QoS 1 and 2 publishes in flight.
    pub receive_maximum: u16,
    /// Maximum Packet Size.
    pub max_packet_size: u32,
    /// Topic Alias Maximum.
    pub topic_alias_maximum: u16,
    /// Client id the server assigned.
    pub assigned_client_id: Option<String>,
}

/// Appends a CONNACK.
pub fn connack(
    version: Version,
    out: &mut BytesMut,
    session_present: bool,
    code: ConnAckCode,
    limits: &Limits,
) {
    if version.is_v5() {
        use v5::ConnectReturnCode as C;
        let code = match code {
            ConnAckCode::Accepted => C::Success,
            ConnAckCode::BadVersion => C::UnsupportedProtocolVersion,
            ConnAckCode::BadClientId => C::ClientIdentifierNotValid,
            ConnAckCode::Unavailable => C::ServerUnavailable,
            ConnAckCode::RetainNotSupported => C::RetainNotSupported,
            ConnAckCode::BadCredentials => C::BadUserNamePassword,
            ConnAckCode::NotAuthorized => C::NotAuthorized,
        };
        let properties = (code == C::Success).then(|| v5::ConnAckProperties {
            receive_max: Some(limits.receive_maximum),
            max_packet_size: Some(limits.max_packet_size),
            topic_alias_max: Some(limits.topic_alias_maximum),
            // Retained messages are not kept: telering ingests, it does not
            // redistribute. Maximum QoS is left out: 2 is supported.
            retain_available: Some(0),
            wildcard_subscription_available: Some(0),
            subscription_identifiers_available: Some(0),
            shared_subscription_available: Some(0),
            assigned_client_identifier: limits.assigned_client_id.clone(),
            session_expiry_interval: None,
            max_qos: None,
            reason_string: None,
            user_properties: Vec::new(),
            server_keep_alive: None,
            response_information: None,
            server_reference: None,
            authentication_method: None,
            authentication_data: None,
        });
        let p = v5::ConnAck {
            session_present: session_present && code == C::Success,
            code,
            properties,
        };
        let _ = p.write(out);
    } else {
        use v4::ConnectReturnCode as C;
        let code = match code {
            ConnAckCode::Accepted => C::Success,
            ConnAckCode::BadVersion => C::RefusedProtocolVersion,
            ConnAckCode::BadClientId => C::BadClientId,
            ConnAckCode::Unavailable | ConnAckCode::RetainNotSupported => C::ServiceUnavailable,
            ConnAckCode::BadCredentials => C::BadUserNamePassword,
            ConnAckCode::NotAuthorized => C::NotAuthorized,
        };
        // MQTT 3.1 has no session-present flag.
        let present = session_present && code == C::Success && version == Version::V311;
        let _ = v4::ConnAck::new(code, present).write(out);
    }
}

/// MQTT 5 reason codes the endpoint sends on PUBACK and PUBREC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckReason {
    /// 0x00.
    Success,
    /// 0x90: the topic is not one telering ingests.
    TopicNameInvalid,
    /// 0x97: a `Reject` topic is full.
    QuotaExceeded,
    /// 0x99: the payload is not a valid reading.
    PayloadFormatInvalid,
    /// 0x87: the ACL does not let this client publish there.
    NotAuthorized,
    /// 0x80: anything else.
    Unspecified,
}

/// The rumqttc reason enum of PUBACK or PUBREC for `r` (the two enums
/// have the same variants for what the endpoint sends).
macro_rules! ack_reason {
    ($enum:ident, $r:expr) => {
        match $r {
            AckReason::Success => v5::$enum::Success,
            AckReason::TopicNameInvalid => v5::$enum::TopicNameInvalid,
            AckReason::QuotaExceeded => v5::$enum::QuotaExceeded,
            AckReason::PayloadFormatInvalid => v5::$enum::PayloadFormatInvalid,
            AckReason::NotAuthorized => v5::$enum::NotAuthorized,
            AckReason::Unspecified => v5::$enum::UnspecifiedError,
        }
    };
}

/// Appends a PUBACK.
pub fn puback(version: Version, out: &mut BytesMut, pkid: u16, reason: AckReason) {
    if version.is_v5() {
        let reason = ack_reason!(PubAckReason, reason);
        let _ = v5::PubAck {
            pkid,
            reason,
            properties: None,
        }
        .write(out);
    } else {
        let _ = v4::PubAck::new(pkid).write(out);
    }
}

/// Appends a PUBREC.
pub fn pubrec(version: Version, out: &mut BytesMut, pkid: u16, reason: AckReason) {
    if version.is_v5() {
        let reason = ack_reason!(PubRecReason, reason);
        let _ = v5::PubRec {
            pkid,
            reason,
            properties: None,
        }
        .write(out);
    } else {
        let _ = v4::PubRec::new(pkid).write(out);
    }
}

/// Appends a PUBCOMP.
pub fn pubcomp(version: Version, out: &mut BytesMut, pkid: u16) {
    if version.is_v5() {
        let _ = v5::PubComp {
            pkid,
            reason: v5::PubCompReason::Success,
            properties: None,
        }
        .write(out);
    } else {
        let _ = v4::PubComp::new(pkid).write(out);
    }
}

/// Why a subscription was refused. MQTT 3.1.1 has one code for them all
/// (0x80); MQTT 5 tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubRefusal {
    /// The filter is malformed (0x8F).
    InvalidFilter,
    /// Over the client's subscription limit (0x97, quota exceeded).
    Limit,
    /// The ACL grants no read access to it (0x87).
    NotAuthorized,
    /// Allowed, but the endpoint does not deliver to subscribers (0x83,
    /// implementation specific).
    NotServed,
}

/// Appends a SUBACK with one refusal per filter, in order.
pub fn suback_refused(version: Version, out: &mut BytesMut, pkid: u16, codes: &[SubRefusal]) {
    if version.is_v5() {
        let return_codes = codes
            .iter()
            .map(|c| match c {
                SubRefusal::InvalidFilter => v5::SubscribeReasonCode::TopicFilterInvalid,
                SubRefusal::Limit => v5::SubscribeReasonCode::QuotaExceeded,
                SubRefusal::NotAuthorized => v5::SubscribeReasonCode::NotAuthorized,
                SubRefusal::NotServed => v5::SubscribeReasonCode::ImplementationSpecific,
            })
            .collect();
        let _ = v5::SubAck {
            pkid,
            return_codes,
            properties: None,
        }
        .write(out);
    } else {
        let _ =
            v4::SubAck::new(pkid, vec![v4::SubscribeReasonCode::Failure; codes.len()]).write(out);
    }
}

/// Appends an UNSUBACK (MQTT 5: "no subscription existed" for each filter).
pub fn unsuback(version: Version, out: &mut BytesMut, pkid: u16, n: usize) {
    if version.is_v5() {
        let _ = v5::UnsubAck {
            pkid,
            reasons: vec![v5::UnsubAckReason::NoSubscriptionExisted; n],
            properties: None,
        }
        .write(out);
    } else {
        let _ = v4::UnsubAck::new(pkid).write(out);
    }
}

/// Appends a PINGRESP.
pub fn pingresp(out: &mut BytesMut) {
    let _ = v4::PingResp.write(out);
}

/// MQTT 5 DISCONNECT reason codes the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// 0x81.
    MalformedPacket,
    /// 0x82.
    ProtocolError,
    /// 0x8B.
    ServerShuttingDown,
    /// 0x8D.
    KeepAliveTimeout,
    /// 0x8E.
    SessionTakenOver,
    /// 0x90.
    TopicNameInvalid,
    /// 0x93.
    ReceiveMaximumExceeded,
    /// 0x94.
    TopicAliasInvalid,
    /// 0x95.
    PacketTooLarge,
    /// 0x9A.
    RetainNotSupported,
}

/// Appends a DISCONNECT with `reason` (MQTT 5 only: a 3.1.x server closes
/// without one).
pub fn disconnect(version: Version, out: &mut BytesMut, reason: DisconnectReason) {
    if !version.is_v5() {
        return;
    }
    use v5::DisconnectReasonCode as R;
    let code = match reason {
        DisconnectReason::MalformedPacket => R::MalformedPacket,
        DisconnectReason::ProtocolError => R::ProtocolError,
        DisconnectReason::ServerShuttingDown => R::ServerShuttingDown,
        DisconnectReason::KeepAliveTimeout => R::KeepAliveTimeout,
        DisconnectReason::SessionTakenOver => R::SessionTakenOver,
        DisconnectReason::TopicNameInvalid => R::TopicNameInvalid,
        DisconnectReason::ReceiveMaximumExceeded => R::ReceiveMaximumExceeded,
        DisconnectReason::TopicAliasInvalid => R::TopicAliasInvalid,
        DisconnectReason::PacketTooLarge => R::PacketTooLarge,
        DisconnectReason::RetainNotSupported => R::RetainNotSupported,
    };
    // Written here: rumqttc 0.25's `Disconnect::write` counts the reason
    // code in the remaining length but also writes a property-length byte
    // after it. A remaining length of 1 is the reason code alone, with no
    // properties (MQTT 5 §3.14.2.2).
    out.put_slice(&[0xe0, 0x01, code as u8]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn connect_v4(level_name: &[u8], level: u8, id: &str) -> BytesMut {
        let mut body = BytesMut::new();
        body.put_u16(level_name.len() as u16);
        body.put_slice(level_name);
        body.put_u8(level);
        body.put_u8(0x02); // clean session
        body.put_u16(30);
        body.put_u16(id.len() as u16);
        body.put_slice(id.as_bytes());
        let mut f = BytesMut::new();
        f.put_u8(0x10);
        put_varint(&mut f, body.len());
        f.put_slice(&body);
        f
    }

    #[test]
    fn versions_are_negotiated_from_the_connect() {
        let mut b = connect_v4(b"MQTT", 4, "dev-1");
        let c = decode_connect(&mut b, 1024).unwrap().unwrap();
        assert_eq!(
            (c.version, c.client_id.as_str(), c.clean, c.keep_alive),
            (Version::V311, "dev-1", true, 30)
        );
        assert!(b.is_empty());
        let mut b = connect_v4(b"MQIsdp", 3, "old-device");
        let c = decode_connect(&mut b, 1024).unwrap().unwrap();
        assert_eq!(
            (c.version, c.client_id.as_str()),
            (Version::V31, "old-device")
        );
        assert!(b.is_empty());
        for (name, level) in [
            (&b"MQTT"[..], 3u8),
            (b"MQTT", 6),
            (b"MQIsdp", 4),
            (b"HTTP", 4),
        ] {
            let mut b = connect_v4(name, level, "x");
            let e = decode_connect(&mut b, 1024).unwrap_err();
            assert!(
                matches!(e, DecodeError::UnsupportedVersion { level: l, .. } if l == level),
                "{e:?}"
            );
        }
        // Incomplete: wait for more; not CONNECT: refused at the first byte.
        let full = connect_v4(b"MQTT", 4, "dev-1");
        let mut part = BytesMut::from(&full[..full.len() - 1]);
        assert_eq!(decode_connect(&mut part, 1024), Ok(None));
        let mut pub0 = BytesMut::from(&[0x30u8, 0x02, 0x00, 0x00][..]);
        assert_eq!(
            decode_connect(&mut pub0, 1024),
            Err(DecodeError::NotConnect)
        );
        // Over the size limit, before the bytes arrive.
        let mut big = BytesMut::from(&[0x10u8, 0xff, 0xff, 0x03][..]);
        assert!(matches!(
            decode_connect(&mut big, 1024),
            Err(DecodeError::TooLarge(_))
        ));
    }

    #[test]
    fn the_two_byte_v5_disconnect_is_read() {
        let mut b = BytesMut::from(&[0xe0u8, 0x00, 0xc0, 0x00][..]);
        assert_eq!(
            decode(Version::V5, &mut b, 1024),
            Ok(Some(Packet::Disconnect {
                reason: 0,
                session_expiry: None
            }))
        );
        assert_eq!(decode(Version::V5, &mut b, 1024), Ok(Some(Packet::PingReq)));
        assert!(b.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any bytes, after any CONNECT: the decoders return a packet, ask
        /// for more, or refuse with a typed error; they never panic, and a
        /// returned packet consumed bytes.
        #[test]
        fn any_bytes_decode_without_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            v5 in any::<bool>(),
        ) {
            let mut b = BytesMut::from(&bytes[..]);
            let _ = decode_connect(&mut b, 256);
            let version = if v5 { Version::V5 } else { Version::V311 };
            let mut b = BytesMut::from(&bytes[..]);
            for _ in 0..64 {
                let before = b.len();
                match decode(version, &mut b, 256) {
                    Ok(Some(_)) => prop_assert!(b.len() < before),
                    Ok(None) | Err(_) => break,
                }
            }
        }

        /// Valid CONNECTs with one byte changed or cut short: same.
        #[test]
        fn mutated_connects_decode_without_panic(
            id in "[a-z0-9/+#-]{0,30}",
            at in 0usize..64,
            to in any::<u8>(),
            cut in 0usize..64,
            old in any::<bool>(),
        ) {
            let mut b = if old { connect_v4(b"MQIsdp", 3, &id) } else { connect_v4(b"MQTT", 4, &id) };
            let n = b.len();
            b[at % n] = to;
            b.truncate(n - cut.min(n - 1));
            let _ = decode_connect(&mut b, 256);
        }
    }
}
