//! Topics, partitions and offsets.
//!
//! A topic is a named stream with a fixed number of partitions, each one
//! [`Ring`]. A record's offset is its sequence number in its partition (a
//! `u64` from 0, never reused); the ring is the retention window.

mod producer;
mod registry;

use std::fmt;

use crate::ring::{self, CapacityError, OverflowPolicy, Ring, SlotLayout};
use crate::sync::Arc;

pub use producer::{BatchSendError, Producer, SendError, Sent};
pub(crate) use registry::TopicRegistry;

/// Index of a topic in its engine. Cheap to copy; carried by every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicId(pub(crate) u32);

impl TopicId {
    /// The index.
    pub fn index(self) -> u32 {
        self.0
    }
}

/// A (topic, partition) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic.
    pub topic: TopicId,
    /// Partition within the topic.
    pub partition: u32,
}

/// How to create a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicConfig {
    /// Number of partitions (at least 1), fixed at creation.
    pub partitions: u32,
    /// Slots per partition ring (a power of two).
    pub capacity: usize,
    /// What a writer does when a gating group is a full ring behind.
    pub policy: OverflowPolicy,
    /// Gate slots per partition: one per cluster group, one per broadcast
    /// member subscribed to the topic.
    pub max_readers: usize,
    /// How each partition ring lays out its slots: [`SlotLayout::Packed`]
    /// for traffic that arrives in batches, [`SlotLayout::Marked`] for
    /// record-at-a-time traffic (`Block` and `Reject` only).
    pub layout: SlotLayout,
    /// Whether the topic's partitions are journaled (an engine opened with
    /// a journal; `Block` and `Reject` only).
    pub journaled: bool,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            partitions: 4,
            capacity: 64 * 1024,
            policy: OverflowPolicy::Block,
            max_readers: ring::DEFAULT_MAX_GATES,
            layout: SlotLayout::Packed,
            journaled: false,
        }
    }
}

impl TopicConfig {
    /// `partitions` rings of `capacity` slots, `Block` policy.
    pub fn new(partitions: u32, capacity: usize) -> Self {
        Self {
            partitions,
            capacity,
            ..Self::default()
        }
    }

    /// Sets the overflow policy.
    pub fn policy(mut self, policy: OverflowPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the number of gate slots per partition.
    pub fn max_readers(mut self, n: usize) -> Self {
        self.max_readers = n;
        self
    }

    /// Sets the slot layout of the partition rings.
    pub fn layout(mut self, layout: SlotLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Journals the topic ([`crate::Engine::with_journal`]).
    pub fn journaled(mut self, on: bool) -> Self {
        self.journaled = on;
        self
    }
}

/// Longest topic name, in bytes.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Why a topic could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicConfigError {
    /// Zero partitions.
    #[error("topic {topic:?} needs at least one partition (got 0)")]
    ZeroPartitions {
        /// Topic name.
        topic: String,
    },
    /// Bad ring parameters: the capacity, or a layout the policy cannot use.
    #[error("topic {topic:?}: {source}")]
    Capacity {
        /// Topic name.
        topic: String,
        /// What is wrong with the capacity.
        source: CapacityError,
    },
    /// Zero reader slots.
    #[error("topic {topic:?} needs at least one reader slot per partition (got 0)")]
    ZeroReaders {
        /// Topic name.
        topic: String,
    },
    /// Empty, over-long, or containing characters other than
    /// `[A-Za-z0-9._-]`.
    #[error(
        "invalid topic name {0:?}: use 1 to {MAX_TOPIC_NAME_LEN} characters from [A-Za-z0-9._-]"
    )]
    InvalidName(String),
}

/// Whether `name` is a valid topic name: 1 to [`MAX_TOPIC_NAME_LEN`]
/// characters from `[A-Za-z0-9._-]` (so also a safe directory name).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOPIC_NAME_LEN
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub(crate) fn check_topic(name: &str, cfg: &TopicConfig) -> Result<(), TopicConfigError> {
    if !is_valid_name(name) {
        return Err(TopicConfigError::InvalidName(name.to_owned()));
    }
    if cfg.partitions == 0 {
        return Err(TopicConfigError::ZeroPartitions {
            topic: name.to_owned(),
        });
    }
    if cfg.max_readers == 0 {
        return Err(TopicConfigError::ZeroReaders {
            topic: name.to_owned(),
        });
    }
    ring::check_params(cfg.capacity, cfg.policy, cfg.layout).map_err(|source| {
        TopicConfigError::Capacity {
            topic: name.to_owned(),
            source,
        }
    })
}

/// A topic: its name, config and partition rings.
pub(crate) struct Topic<T> {
    pub(crate) id: TopicId,
    pub(crate) name: std::sync::Arc<str>,
    pub(crate) config: TopicConfig,
    pub(crate) partitions: Box<[Arc<Ring<T>>]>,
    /// A journaled topic's logs (one per partition) and their codec.
    #[cfg(feature = "journal")]
    pub(crate) journal: Option<TopicJournal<T>>,
}

/// How a consumer reads a journaled topic's older records back.
#[cfg(feature = "journal")]
pub(crate) struct TopicJournal<T> {
    pub(crate) logs: Box<[std::sync::Arc<crate::journal::LogShared>]>,
    pub(crate) codec: crate::journal::Codec<T>,
}

impl<T> fmt::Debug for Topic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<T: Copy + Send> Topic<T> {
    /// The oldest offset of partition `p` (whose ring is `ring`) that can
    /// still be read: from the journal for a journaled topic, else from the
    /// ring.
    pub(crate) fn earliest(&self, p: usize, ring: &Ring<T>) -> u64 {
        #[cfg(feature = "journal")]
        if let Some(j) = &self.journal {
            return j.logs[p].earliest().min(ring.earliest());
        }
        let _ = p;
        ring.earliest()
    }

    /// The oldest offset of partition `p` a reader can take from the
    /// journal instead of the ring (`None`: not journaled).
    pub(crate) fn replayable_from(&self, p: usize) -> Option<u64> {
        #[cfg(feature = "journal")]
        if let Some(j) = &self.journal {
            return Some(j.logs[p].earliest());
        }
        let _ = p;
        None
    }

    /// A topic whose partition `p` starts at offset `starts[p]` (0 where
    /// `starts` is shorter).
    pub(crate) fn new(
        id: TopicId,
        name: &str,
        config: TopicConfig,
        starts: &[u64],
    ) -> Result<Self, TopicConfigError> {
        check_topic(name, &config)?;
        let partitions = (0..config.partitions)
            .map(|p| {
                Ring::starting_at(
                    config.capacity,
                    config.policy,
                    config.max_readers,
                    config.layout,
                    starts.get(p as usize).copied().unwrap_or(0),
                )
                .map(Arc::new)
                .map_err(|source| TopicConfigError::Capacity {
                    topic: name.to_owned(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?
            .into_boxed_slice();
        Ok(Self {
            id,
            name: name.into(),
            config,
            partitions,
            #[cfg(feature = "journal")]
            journal: None,
        })
    }
}

/// Offsets of one partition at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// Oldest offset still held: in the journal for a journaled topic,
    /// else in the ring.
    pub earliest: u64,
    /// Oldest offset still in the ring.
    pub ring_earliest: u64,
    /// Next offset to be written (records published so far).
    pub latest: u64,
    /// Records rejected under `Reject`.
    pub rejected: u64,
}
