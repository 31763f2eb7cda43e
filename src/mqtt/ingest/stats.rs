//! Exact ingest counters: one block per shard, each written by its shard
//! thread only, summed when read.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::mqtt::validate::Reason;

/// The counters of one shard. Every field has one writer (the shard's
/// thread), so a load and a store replace a read-modify-write.
#[derive(Debug, Default)]
pub(crate) struct ShardStats {
    received: AtomicU64,
    accepted: AtomicU64,
    dead_lettered: AtomicU64,
    by_reason: [AtomicU64; 16],
    records: AtomicU64,
    rejected: AtomicU64,
    wills: AtomicU64,
    duplicates: AtomicU64,
    forwarded: AtomicU64,
    abandoned: AtomicU64,
}

const _: () = assert!(Reason::ALL.len() <= 16);

fn bump(c: &AtomicU64, n: u64) {
    // Single writer per shard: load + store, no RMW needed.
    c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

impl ShardStats {
    pub(crate) fn received(&self) {
        bump(&self.received, 1);
    }
    pub(crate) fn accepted(&self) {
        bump(&self.accepted, 1);
    }
    pub(crate) fn dead_lettered(&self, reason: Reason) {
        bump(&self.dead_lettered, 1);
        bump(&self.by_reason[reason as usize], 1);
    }
    pub(crate) fn record(&self) {
        bump(&self.records, 1);
    }
    pub(crate) fn rejected(&self) {
        bump(&self.rejected, 1);
    }
    pub(crate) fn will(&self) {
        bump(&self.wills, 1);
    }
    pub(crate) fn duplicate(&self) {
        bump(&self.duplicates, 1);
    }
    pub(crate) fn forwarded(&self) {
        bump(&self.forwarded, 1);
    }
    pub(crate) fn abandoned(&self, n: u64) {
        bump(&self.abandoned, n);
    }
}

/// Every shard's counters.
#[derive(Debug)]
pub struct IngestStats {
    shards: Box<[CachePadded<ShardStats>]>,
}

impl IngestStats {
    pub(crate) fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards).map(|_| CachePadded::default()).collect(),
        }
    }

    pub(crate) fn shard(&self, i: usize) -> &ShardStats {
        &self.shards[i]
    }

    /// Reads every counter of every shard.
    pub fn snapshot(&self) -> IngestSnapshot {
        let sum = |f: &dyn Fn(&ShardStats) -> &AtomicU64| -> u64 {
            self.shards
                .iter()
                .map(|s| f(s).load(Ordering::Relaxed))
                .sum()
        };
        IngestSnapshot {
            received: sum(&|s| &s.received),
            accepted: sum(&|s| &s.accepted),
            dead_lettered: sum(&|s| &s.dead_lettered),
            dead_letter_reasons: Reason::ALL
                .into_iter()
                .map(|r| (r.code().to_owned(), sum(&|s| &s.by_reason[r as usize])))
                .filter(|(_, n)| *n > 0)
                .collect(),
            records: sum(&|s| &s.records),
            rejected: sum(&|s| &s.rejected),
            wills: sum(&|s| &s.wills),
            duplicates: sum(&|s| &s.duplicates),
            forwarded: sum(&|s| &s.forwarded),
            abandoned: sum(&|s| &s.abandoned),
        }
    }
}

/// A snapshot of [`IngestStats`]. Always `received == accepted +
/// dead_lettered`; each accepted message becomes one record (two for
/// `reading`), of which `rejected` were refused by a full `Reject` topic and
/// `abandoned` given up at shutdown, so `records + rejected + abandoned` is
/// the number of records attempted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestSnapshot {
    /// Messages read (PUBLISH packets, and the wills of connections that
    /// dropped), QoS 2 retransmissions of a packet id already ingested not
    /// included.
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
    /// Of `received`, will messages of connections that ended without
    /// DISCONNECT.
    pub wills: u64,
    /// QoS 2 PUBLISH packets not ingested again because their packet id was
    /// already ingested and not yet released (PUBREL).
    pub duplicates: u64,
    /// Records handed from the shard that read them to the shard that owns
    /// their partition.
    pub forwarded: u64,
    /// Records still waiting for room in a full `Block` partition when a
    /// shutdown's drain timeout ran out (their messages were never
    /// acknowledged). 0 unless a consumer stalled through the shutdown.
    pub abandoned: u64,
}
