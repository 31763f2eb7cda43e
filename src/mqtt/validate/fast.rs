//! The fast path: a byte-level reader for the two JSON object shapes that
//! answers only when it is certain to agree with serde_json (see the docs
//! of the `validate` module), and `None` otherwise. It does not allocate.

/// The number fields of `{"ts", "value"}`.
pub(super) const VALUE: [&[u8]; 1] = [b"value"];
/// The number fields of `{"ts", "temperature", "humidity"}`.
pub(super) const READING: [&[u8]; 2] = [b"temperature", b"humidity"];

/// Largest significand whose conversion to `f64` is exact (2^53).
const MAX_EXACT_SIGNIFICAND: u64 = 1 << 53;
/// Powers of ten that are exact in `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];
/// More significant digits than this and the significand is no longer
/// accumulated (a value is then left to serde_json).
const MAX_DIGITS: u32 = 19;
/// Exponent literals are saturated here: far beyond the ±22 handled.
const MAX_EXPONENT_LITERAL: i32 = 1000;

/// What the fast path read: `ts` and each field of the shape, `None`
/// for an absent key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Fields<const N: usize> {
    pub(super) ts: Option<u64>,
    pub(super) values: [Option<f64>; N],
}

/// Reads `text` (already trimmed) as a JSON object with an optional
/// `ts` (a plain unsigned integer) and the number fields `names`; other
/// keys are skipped if their value is a JSON number. `None` whenever
/// serde_json could answer differently.
#[inline]
pub(super) fn fields<const N: usize>(text: &[u8], names: [&[u8]; N]) -> Option<Fields<N>> {
    let mut c = Cursor { b: text, i: 0 };
    let mut out = Fields {
        ts: None,
        values: [None; N],
    };
    c.eat(b'{')?;
    c.ws();
    if c.peek() == Some(b'}') {
        c.i += 1;
    } else {
        loop {
            let key = c.key(&names)?;
            c.ws();
            c.eat(b':')?;
            c.ws();
            match key {
                Key::Ts => {
                    // A duplicate field is a serde_json error.
                    if out.ts.is_some() {
                        return None;
                    }
                    out.ts = Some(c.timestamp()?);
                }
                Key::Field(k) => {
                    if out.values[k].is_some() {
                        return None;
                    }
                    out.values[k] = Some(c.number()?);
                }
                Key::Other => {
                    // serde ignores unknown fields, but still checks that
                    // their values are JSON: a number is checked here,
                    // anything else is left to serde_json.
                    c.scan_number()?;
                }
            }
            c.ws();
            match c.peek()? {
                b',' => {
                    c.i += 1;
                    c.ws();
                }
                b'}' => {
                    c.i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    // Nothing may follow the object (the text is trimmed already).
    (c.i == text.len()).then_some(out)
}

/// [`Cursor::eight_digits`] at the start of `b`.
#[cfg(test)]
pub(super) fn eight_digits(b: &[u8]) -> Option<u64> {
    Cursor { b, i: 0 }.eight_digits()
}

/// Which key was read.
enum Key {
    Ts,
    /// `names[k]`.
    Field(usize),
    /// Any other key (without escapes or control characters).
    Other,
}

/// A JSON number as scanned: `significand` holds the digits (without
/// the decimal point) if there are at most [`MAX_DIGITS`] of them.
struct Scanned {
    negative: bool,
    significand: Option<u64>,
    exponent: i32,
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn eat(&mut self, byte: u8) -> Option<()> {
        if self.peek() == Some(byte) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// Skips JSON whitespace (exactly serde_json's four bytes).
    #[inline(always)]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// A key: `ts`, one of `names` or another one. A key with an escape
    /// or a control character is left to serde_json (an escape may spell
    /// a known key).
    #[inline(always)]
    fn key(&mut self, names: &[&[u8]]) -> Option<Key> {
        self.eat(b'"')?;
        // The known keys, compared in place (with their closing quote).
        if self.starts_key(b"ts") {
            return Some(Key::Ts);
        }
        for (k, name) in names.iter().enumerate() {
            if self.starts_key(name) {
                return Some(Key::Field(k));
            }
        }
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        self.i += 1;
        Some(Key::Other)
    }

    /// Whether the key being read is `name` (then consumed with its
    /// closing quote).
    #[inline(always)]
    fn starts_key(&mut self, name: &[u8]) -> bool {
        let rest = &self.b[self.i..];
        let hit = rest.get(name.len()) == Some(&b'"') && rest.starts_with(name);
        if hit {
            self.i += name.len() + 1;
        }
        hit
    }

    /// Digits, appended to `acc` (and counted in `count`) while there
    /// are at most [`MAX_DIGITS`] in all.
    #[inline(always)]
    fn digits(&mut self, acc: &mut u64, count: &mut u32) {
        while let Some(d @ b'0'..=b'9') = self.peek() {
            self.i += 1;
            *count += 1;
            if *count <= MAX_DIGITS {
                *acc = *acc * 10 + u64::from(d - b'0');
            }
        }
    }

    /// A number in strict JSON grammar:
    /// `-? (0 | [1-9][0-9]*) (\.[0-9]+)? ([eE][+-]?[0-9]+)?`.
    #[inline(always)]
    fn scan_number(&mut self) -> Option<Scanned> {
        let negative = self.eat(b'-').is_some();
        let mut significand = 0u64;
        let mut count = 0u32;
        match self.peek()? {
            b'0' => {
                self.i += 1;
                // There can be only one leading zero.
                if let Some(b'0'..=b'9') = self.peek() {
                    return None;
                }
            }
            b'1'..=b'9' => self.digits(&mut significand, &mut count),
            _ => return None,
        }
        let mut exponent = 0i32;
        if self.eat(b'.').is_some() {
            // Like serde_json: the fraction digits join the significand
            // and each lowers the exponent by one (`0.05` is 5e-2; a lone
            // leading `0` is not a digit of the significand).
            let before = count;
            self.digits(&mut significand, &mut count);
            let fraction = count - before;
            if fraction == 0 {
                return None;
            }
            // Past MAX_DIGITS the significand is not kept and the value
            // is left to serde_json; the `min` only keeps this in range.
            exponent -= fraction.min(MAX_DIGITS + 1) as i32;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            let negative_exponent = match self.peek() {
                Some(b'-') => {
                    self.i += 1;
                    true
                }
                Some(b'+') => {
                    self.i += 1;
                    false
                }
                _ => false,
            };
            let start = self.i;
            let mut literal = 0i32;
            while let Some(d @ b'0'..=b'9') = self.peek() {
                self.i += 1;
                literal = (literal * 10 + i32::from(d - b'0')).min(MAX_EXPONENT_LITERAL);
            }
            if self.i == start {
                return None;
            }
            exponent += if negative_exponent { -literal } else { literal };
        }
        Some(Scanned {
            negative,
            significand: (count <= MAX_DIGITS).then_some(significand),
            exponent,
        })
    }

    /// A value field: a JSON number with at most 2^53 as significand and
    /// a decimal exponent within ±22, computed as serde_json computes it.
    #[inline(always)]
    fn number(&mut self) -> Option<f64> {
        let n = self.scan_number()?;
        let significand = n.significand.filter(|&s| s <= MAX_EXACT_SIGNIFICAND)?;
        let pow = *POW10.get(n.exponent.unsigned_abs() as usize)?;
        // Exact operands, so one correctly rounded operation.
        let f = significand as f64;
        let f = if n.exponent >= 0 { f * pow } else { f / pow };
        Some(if n.negative { -f } else { f })
    }

    /// The value of the eight ASCII digits at the cursor, if there
    /// are eight (not consumed).
    #[inline(always)]
    fn eight_digits(&self) -> Option<u64> {
        let chunk: [u8; 8] = self.b.get(self.i..self.i + 8)?.try_into().ok()?;
        let v = u64::from_le_bytes(chunk);
        // Every byte is 0x30..=0x39: high nibble 3, and still 3 after
        // adding 6 (no byte carries into the next when all high
        // nibbles are 3).
        let high = v & 0xf0f0_f0f0_f0f0_f0f0;
        let plus6 = v.wrapping_add(0x0606_0606_0606_0606) & 0xf0f0_f0f0_f0f0_f0f0;
        if high | (plus6 >> 4) != 0x3333_3333_3333_3333 {
            return None;
        }
        // Digit values (the first digit in the lowest byte), combined
        // into pairs, then the pairs into the eight-digit number.
        let v = v - 0x3030_3030_3030_3030;
        let v = v.wrapping_mul(10).wrapping_add(v >> 8);
        let lo = (v & 0x0000_00ff_0000_00ff).wrapping_mul(100 + (1_000_000 << 32));
        let hi = ((v >> 16) & 0x0000_00ff_0000_00ff).wrapping_mul(1 + (10_000 << 32));
        Some(lo.wrapping_add(hi) >> 32)
    }

    /// `ts`: plain digits without a leading zero that fit in `u64`.
    #[inline(always)]
    fn timestamp(&mut self) -> Option<u64> {
        let start = self.i;
        let mut ts = 0u64;
        // Eight digits at a time, at most twice: 16 digits fit.
        for _ in 0..2 {
            let Some(v) = self.eight_digits() else { break };
            ts = ts * 100_000_000 + v;
            self.i += 8;
        }
        while let Some(d @ b'0'..=b'9') = self.peek() {
            self.i += 1;
            ts = ts.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        let len = self.i - start;
        // `-1`, `01`, `1.0` and `1e3` are left to serde_json.
        if len == 0 || (len > 1 && self.b[start] == b'0') {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            return None;
        }
        Some(ts)
    }
}
