//! What every system shares: the receiving side's recorder, payload
//! timestamps, free ports and bounded waits.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
pub use telering::app::Latency;

/// What the consumer side of a system saw: a count, the times of the first
/// and last message, and the end-to-end latency (receive time minus the
/// payload's `ts`).
///
/// Written by the receiving thread (one per system: the `stats` consumer
/// group of telering, the subscriber of mosquitto, the link reader of
/// rumqttd) and
/// read and reset by the main thread between runs.
#[derive(Debug)]
pub struct Recorder {
    count: AtomicU64,
    no_ts: AtomicU64,
    first_us: AtomicU64,
    last_us: AtomicU64,
    histogram: Mutex<Histogram<u64>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            count: AtomicU64::new(0),
            no_ts: AtomicU64::new(0),
            first_us: AtomicU64::new(0),
            last_us: AtomicU64::new(0),
            histogram: Mutex::new(Histogram::new(3).expect("3 significant digits is valid")),
        }
    }
}

/// A [`Recorder`] read at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Received {
    pub count: u64,
    /// Messages without a `ts` (no latency recorded).
    pub no_ts: u64,
    /// Receive time of the first and last message, µs since the epoch.
    pub first_us: u64,
    pub last_us: u64,
    pub latency: Latency,
}

impl Received {
    /// Seconds from the first to the last message received.
    pub fn span_s(&self) -> f64 {
        self.last_us.saturating_sub(self.first_us) as f64 / 1e6
    }

    /// Messages per second over [`Received::span_s`].
    pub fn rate(&self) -> f64 {
        let s = self.span_s();
        if self.count < 2 || s <= 0.0 {
            0.0
        } else {
            // The first message opens the window: count the intervals.
            (self.count - 1) as f64 / s
        }
    }
}

impl Recorder {
    /// One message received at `now_us` carrying timestamp `ts_us`.
    pub fn record(&self, now_us: u64, ts_us: Option<u64>) {
        // Relaxed throughout: single writer; the reader only needs the
        // values eventually, and takes the histogram's lock.
        if self.first_us.load(Ordering::Relaxed) == 0 {
            self.first_us.store(now_us, Ordering::Relaxed);
        }
        self.last_us.store(now_us, Ordering::Relaxed);
        match ts_us {
            Some(ts) => {
                let mut h = self
                    .histogram
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                // `record` grows the histogram; a value beyond u64 range
                // cannot occur.
                let _ = h.record(now_us.saturating_sub(ts).max(1));
            }
            None => {
                self.no_ts.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages received so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Everything recorded so far.
    pub fn snapshot(&self) -> Received {
        let latency = Latency::of(
            &self
                .histogram
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        Received {
            count: self.count(),
            no_ts: self.no_ts.load(Ordering::Relaxed),
            first_us: self.first_us.load(Ordering::Relaxed),
            last_us: self.last_us.load(Ordering::Relaxed),
            latency,
        }
    }

    /// A copy of the latency histogram (to merge runs).
    pub fn histogram(&self) -> Histogram<u64> {
        self.histogram
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Starts over (between runs, when nothing is arriving).
    pub fn reset(&self) {
        self.histogram
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reset();
        for c in [&self.count, &self.no_ts, &self.first_us, &self.last_us] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[derive(serde::Deserialize)]
struct Stamp {
    ts: Option<u64>,
}

/// The `ts` (µs since the epoch) of a simulator payload: JSON
/// `{"ts": .., ...}`; a bare number carries none.
pub fn payload_ts(payload: &[u8]) -> Option<u64> {
    match payload.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice::<Stamp>(payload).ok()?.ts,
        _ => None,
    }
}

/// A loopback address with a port that was free a moment ago.
pub fn free_port() -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    l.local_addr()
}

/// Waits until `addr` accepts TCP connections, at most `limit`.
pub fn wait_listening(addr: SocketAddr, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "nothing accepts connections on {addr} after {limit:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `done()`, giving up when `progress()` has not changed for
/// `quiet` or after `limit` in all. Returns whether `done()` became true.
pub fn wait_until(
    mut done: impl FnMut() -> bool,
    mut progress: impl FnMut() -> u64,
    quiet: Duration,
    limit: Duration,
) -> bool {
    let deadline = Instant::now() + limit;
    let mut last = progress();
    let mut since = Instant::now();
    loop {
        if done() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let p = progress();
        if p != last {
            last = p;
            since = now;
        } else if now.duration_since(since) >= quiet {
            return done();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_from_payloads() {
        assert_eq!(payload_ts(br#"{"ts": 17, "value": 21.5}"#), Some(17));
        assert_eq!(
            payload_ts(br#"{"ts": 5, "temperature": 1.0, "humidity": 2.0}"#),
            Some(5)
        );
        assert_eq!(payload_ts(br#"{"value": 21.5}"#), None);
        assert_eq!(payload_ts(b"21.5"), None);
        assert_eq!(payload_ts(b"{broken"), None);
    }

    #[test]
    fn recorder_rate_and_reset() {
        let r = Recorder::default();
        r.record(1_000_000, Some(999_000));
        r.record(1_500_000, None);
        r.record(2_000_000, Some(1_999_990));
        let s = r.snapshot();
        assert_eq!((s.count, s.no_ts, s.latency.count), (3, 1, 2));
        assert!((s.rate() - 2.0).abs() < 1e-9);
        assert_eq!(s.latency.max, 1000);
        assert_eq!(s.latency.p50, 10);
        r.reset();
        assert_eq!(r.snapshot().count, 0);
    }
}
