//! What the MQTT integration tests share (`mod common;`): raw packet bytes
//! written by hand, so the tests can send what no client library would.
//! Every test file that includes it uses all of it.

/// MQTT variable byte integer.
pub fn var_int(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

/// A packet: the first byte, the remaining length, `body`.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    var_int(body.len(), &mut p);
    p.extend_from_slice(body);
    p
}

/// A length-prefixed string (or binary data).
pub fn mqtt_str(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}
