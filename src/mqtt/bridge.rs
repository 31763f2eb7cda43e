//! The bridge: the broker's in-process link into the engine.
//!
//! One thread owns the link and the producers of `temperature`, `humidity`
//! and `dead_letter` (so each partition keeps a single writer). For each
//! message it validates, publishes or dead-letters, and counts.
//!
//! Facts about rumqttd 0.20 the bridge relies on:
//! - the router stops sending to a link after a batch unless
//!   `Notification::Unschedule` is answered with `LinkRx::ready()`;
//! - every forwarded message carries its offset in the filter's log; the
//!   offsets are consecutive, so a jump means the router dropped messages for
//!   this slow reader (its segments were full) and the gap is counted exactly.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttd::local::{LinkError, LinkRx};
use rumqttd::Notification;

use super::dead_letter::DeadLetter;
use super::validate::{validate_with, Limits, Metric, Reason};
use crate::record::now_us;
use crate::topic::{Producer, SendError};
use crate::Reading;

/// Exact ingest counters, written by the bridge thread only.
#[derive(Debug, Default)]
pub struct IngestStats {
    received: AtomicU64,
    accepted: AtomicU64,
    dead_lettered: AtomicU64,
    by_reason: [AtomicU64; 16],
    records: AtomicU64,
    rejected: AtomicU64,
    dropped_by_broker: AtomicU64,
}

/// A snapshot of [`IngestStats`]. Always
/// `received == accepted + dead_lettered`; each accepted message becomes one
/// record (two for `reading`), of which `rejected` were refused by a `Reject`
/// topic; `dropped_by_broker` messages never reached the bridge.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestSnapshot {
    /// Messages the bridge received.
    pub received: u64,
    /// Messages that passed validation.
    pub accepted: u64,
    /// Messages refused and sent to `dead_letter`.
    pub dead_lettered: u64,
    /// Refused messages by reason code.
    pub dead_letter_reasons: std::collections::BTreeMap<String, u64>,
    /// Engine records published (temperature + humidity topics).
    pub records: u64,
    /// Records refused by a full `Reject` topic.
    pub rejected: u64,
    /// Messages the broker dropped before the bridge could read them.
    pub dropped_by_broker: u64,
}

fn bump(c: &AtomicU64, n: u64) {
    // Single writer (the bridge thread): load + store, no RMW needed.
    c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

impl IngestStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> IngestSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IngestSnapshot {
            received: get(&self.received),
            accepted: get(&self.accepted),
            dead_lettered: get(&self.dead_lettered),
            dead_letter_reasons: Reason::ALL
                .into_iter()
                .map(|r| (r.code().to_owned(), get(&self.by_reason[r as usize])))
                .filter(|(_, n)| *n > 0)
                .collect(),
            records: get(&self.records),
            rejected: get(&self.rejected),
            dropped_by_broker: get(&self.dropped_by_broker),
        }
    }
}

pub(crate) struct Bridge {
    pub(crate) rx: LinkRx,
    pub(crate) temperature: Producer<Reading>,
    pub(crate) humidity: Producer<Reading>,
    pub(crate) dead: Producer<DeadLetter>,
    pub(crate) limits: Limits,
    pub(crate) stats: Arc<IngestStats>,
    pub(crate) stop: Arc<AtomicBool>,
    /// Next expected offset in the broker's log of our filter.
    pub(crate) next_offset: Option<u64>,
}

/// How long the link must be quiet, after a stop request, before the bridge
/// considers the broker drained.
const QUIET: Duration = Duration::from_millis(250);
/// Longest a stop waits for the link to go quiet.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Longest single wait on the link.
const POLL: Duration = Duration::from_millis(50);

impl Bridge {
    pub(crate) fn run(mut self) {
        // The clock is read once per wait, not per message: a deadline that
        // has passed only matters when the link has nothing cached.
        let mut deadline = Instant::now() + POLL;
        let mut last_activity = Instant::now();
        let mut handled = 0u64;
        let mut stop_seen: Option<Instant> = None;
        loop {
            match self.rx.recv_deadline(deadline) {
                Ok(Some(n)) => {
                    if !self.handle(n) {
                        break;
                    }
                    handled += 1;
                    // Under a continuous stream there is no timeout; look at
                    // the stop flag now and then anyway.
                    if handled % 4096 == 0 && self.stop_due(&mut stop_seen, last_activity) {
                        break;
                    }
                    continue;
                }
                Ok(None) | Err(LinkError::RecvTimeout(_)) => {}
                Err(e) => {
                    tracing::error!("broker link closed: {e}");
                    break;
                }
            }
            let now = Instant::now();
            if handled > 0 {
                last_activity = now;
                handled = 0;
            }
            if self.stop_due(&mut stop_seen, last_activity) {
                break;
            }
            deadline = now + POLL;
        }
    }

    /// After a stop request: stop once the link has been quiet for
    /// [`QUIET`], or after [`DRAIN_LIMIT`] in any case.
    fn stop_due(&self, stop_seen: &mut Option<Instant>, last_activity: Instant) -> bool {
        if stop_seen.is_none() && self.stop.load(Ordering::Acquire) {
            *stop_seen = Some(Instant::now());
        }
        stop_seen.is_some_and(|t| last_activity.elapsed() >= QUIET || t.elapsed() >= DRAIN_LIMIT)
    }

    /// Returns false when the engine is closed and the bridge should stop.
    fn handle(&mut self, n: Notification) -> bool {
        match n {
            Notification::Forward(f) => {
                if let Some((_, offset)) = f.cursor {
                    if let Some(expected) = self.next_offset {
                        if offset > expected {
                            let lost = offset - expected;
                            bump(&self.stats.dropped_by_broker, lost);
                            tracing::warn!(
                                lost,
                                "broker dropped messages before the bridge read them"
                            );
                        }
                    }
                    self.next_offset = Some(offset + 1);
                }
                self.ingest(&f.publish.topic, &f.publish.payload)
            }
            Notification::Unschedule => {
                if let Err(e) = self.rx.ready() {
                    tracing::error!("cannot reschedule the broker link: {e}");
                    return false;
                }
                true
            }
            _ => true,
        }
    }

    fn ingest(&mut self, topic: &[u8], payload: &[u8]) -> bool {
        let stats = &*self.stats;
        bump(&stats.received, 1);
        match validate_with(topic, payload, &self.limits, now_us) {
            Ok(a) => {
                bump(&stats.accepted, 1);
                let targets: &mut [&mut Producer<Reading>] = match a.metric {
                    Metric::Temperature => &mut [&mut self.temperature],
                    Metric::Humidity => &mut [&mut self.humidity],
                    Metric::Reading => &mut [&mut self.temperature, &mut self.humidity],
                };
                for p in targets.iter_mut() {
                    match p.send(a.reading) {
                        Ok(_) => bump(&stats.records, 1),
                        Err(SendError::Full(_)) => bump(&stats.rejected, 1),
                        Err(SendError::Closed(_)) => return false,
                        Err(e) => {
                            tracing::error!("cannot publish into {}: {e}", p.topic_name());
                            bump(&stats.rejected, 1);
                        }
                    }
                }
            }
            Err(reason) => {
                bump(&stats.dead_lettered, 1);
                bump(&stats.by_reason[reason as usize], 1);
                tracing::debug!(reason = reason.code(), topic = %String::from_utf8_lossy(topic), "dead letter");
                // `dead_letter` is an Overwrite topic: this never waits.
                if let Err(SendError::Closed(_)) = self
                    .dead
                    .send_to(0, DeadLetter::new(reason, topic, payload, now_us()))
                {
                    return false;
                }
            }
        }
        true
    }
}
