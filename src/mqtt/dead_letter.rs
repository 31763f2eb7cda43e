//! The dead-letter record: a refused MQTT message with its reason.

use super::validate::Reason;

/// Topic bytes kept in a dead letter.
pub const DEAD_LETTER_TOPIC_BYTES: usize = 128;
/// Payload bytes kept in a dead letter (longer payloads are cut; the
/// original length is kept).
pub const DEAD_LETTER_PAYLOAD_BYTES: usize = 1024;

/// A refused message: reason, when, topic and raw payload (inline, `Copy`,
/// no padding bytes, so it can live in an `Overwrite` ring).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct DeadLetter {
    /// When the server received it, µs since the Unix epoch.
    pub received_us: u64,
    /// Original payload length in bytes.
    pub payload_len: u32,
    /// Original topic length in bytes.
    pub topic_len: u16,
    reason: u8,
    reserved: u8,
    topic: [u8; DEAD_LETTER_TOPIC_BYTES],
    payload: [u8; DEAD_LETTER_PAYLOAD_BYTES],
}

const _: () = assert!(
    std::mem::size_of::<DeadLetter>() == 16 + DEAD_LETTER_TOPIC_BYTES + DEAD_LETTER_PAYLOAD_BYTES
);

impl DeadLetter {
    /// A dead letter for a message refused with `reason`.
    pub fn new(reason: Reason, topic: &[u8], payload: &[u8], received_us: u64) -> Self {
        let mut d = Self {
            received_us,
            payload_len: payload.len().min(u32::MAX as usize) as u32,
            topic_len: topic.len().min(u16::MAX as usize) as u16,
            reason: reason as u8,
            reserved: 0,
            topic: [0; DEAD_LETTER_TOPIC_BYTES],
            payload: [0; DEAD_LETTER_PAYLOAD_BYTES],
        };
        let t = topic.len().min(DEAD_LETTER_TOPIC_BYTES);
        d.topic[..t].copy_from_slice(&topic[..t]);
        let p = payload.len().min(DEAD_LETTER_PAYLOAD_BYTES);
        d.payload[..p].copy_from_slice(&payload[..p]);
        d
    }

    /// Why it was refused.
    pub fn reason(&self) -> Reason {
        Reason::ALL
            .into_iter()
            .find(|r| *r as u8 == self.reason)
            .unwrap_or(Reason::NotJson)
    }

    /// The topic bytes kept (the first 128).
    pub fn topic(&self) -> &[u8] {
        &self.topic[..(self.topic_len as usize).min(DEAD_LETTER_TOPIC_BYTES)]
    }

    /// The payload bytes kept (the first 1024).
    pub fn payload(&self) -> &[u8] {
        &self.payload[..(self.payload_len as usize).min(DEAD_LETTER_PAYLOAD_BYTES)]
    }

    /// Whether the payload was cut.
    pub fn truncated(&self) -> bool {
        self.payload_len as usize > DEAD_LETTER_PAYLOAD_BYTES
    }
}

impl std::fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetter")
            .field("reason", &self.reason())
            .field("topic", &String::from_utf8_lossy(self.topic()))
            .field("payload", &String::from_utf8_lossy(self.payload()))
            .field("payload_len", &self.payload_len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_reason_topic_and_payload() {
        let d = DeadLetter::new(Reason::NotFinite, b"sensors/a/temperature", b"NaN", 5);
        assert_eq!(d.reason(), Reason::NotFinite);
        assert_eq!(d.topic(), b"sensors/a/temperature");
        assert_eq!(d.payload(), b"NaN");
        assert!(!d.truncated());
        let big = vec![b'7'; 5000];
        let d = DeadLetter::new(Reason::PayloadTooLarge, b"t", &big, 0);
        assert_eq!(d.payload().len(), DEAD_LETTER_PAYLOAD_BYTES);
        assert_eq!(d.payload_len, 5000);
        assert!(d.truncated());
    }
}
