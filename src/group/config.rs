//! How to create a consumer: its group, mode, wait strategy, offset reset,
//! auto-commit and fetch settings.

use std::time::Duration;

use crate::group::GroupMode;
use crate::ring::WaitStrategy;

/// Where a reader starts when its group has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// Oldest record still held: in the journal for a journaled topic,
    /// else in the ring.
    #[default]
    Earliest,
    /// The next record published.
    Latest,
}

/// How to create a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Group name.
    pub group: String,
    /// Cluster or broadcast.
    pub mode: GroupMode,
    /// How `poll` waits when nothing is available.
    pub wait: WaitStrategy,
    /// Start position without a committed offset.
    pub offset_reset: OffsetReset,
    /// Commit on each `poll` what the previous `poll` returned.
    pub auto_commit: bool,
    /// Records a `poll` tries to gather before it returns (Kafka's
    /// `fetch.min.bytes`, counted in records); 1 returns whatever is there.
    pub fetch_min: usize,
    /// Longest a `poll` that has found records but fewer than `fetch_min`
    /// waits for more (Kafka's `fetch.max.wait.ms`).
    pub fetch_max_wait: Duration,
}

impl ConsumerConfig {
    /// A cluster-group member with the default settings (park, earliest,
    /// auto-commit).
    pub fn cluster(group: &str) -> Self {
        Self {
            group: group.to_owned(),
            mode: GroupMode::Cluster,
            wait: WaitStrategy::default(),
            offset_reset: OffsetReset::default(),
            auto_commit: true,
            fetch_min: 1,
            fetch_max_wait: Duration::ZERO,
        }
    }

    /// A broadcast-group member with the default settings.
    pub fn broadcast(group: &str) -> Self {
        Self {
            mode: GroupMode::Broadcast,
            ..Self::cluster(group)
        }
    }

    /// Sets the wait strategy.
    pub fn wait(mut self, wait: WaitStrategy) -> Self {
        self.wait = wait;
        self
    }

    /// Sets where to start without a committed offset.
    pub fn offset_reset(mut self, reset: OffsetReset) -> Self {
        self.offset_reset = reset;
        self
    }

    /// Turns auto-commit on or off.
    pub fn auto_commit(mut self, on: bool) -> Self {
        self.auto_commit = on;
        self
    }

    /// Lets `poll` gather up to `min` records (at most its `max`) for up to
    /// `max_wait` once the first record is there, as Kafka's
    /// `fetch.min.bytes` and `fetch.max.wait.ms` do. A poll that finds
    /// nothing still waits up to its timeout for the first record; gathering
    /// never makes it return later than its timeout.
    ///
    /// Fewer, larger batches cost less per record: a consumer of a trickle
    /// no longer wakes (and makes the producer wake it) for every record.
    /// While it gathers, a `Park` consumer sleeps without asking the
    /// producer for wake-ups. The defaults (`1`, zero) return at once.
    pub fn fetch(mut self, min: usize, max_wait: Duration) -> Self {
        self.fetch_min = min;
        self.fetch_max_wait = max_wait;
        self
    }
}
