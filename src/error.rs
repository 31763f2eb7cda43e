//! Errors of the engine and consumer APIs (topics, groups, offsets).

use crate::topic::TopicConfigError;

/// Errors from [`crate::Engine`] calls.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// Bad topic configuration.
    #[error(transparent)]
    Config(#[from] TopicConfigError),
    /// A topic with this name exists.
    #[error("topic {0:?} already exists")]
    DuplicateTopic(String),
    /// No topic with this name.
    #[error("unknown topic {topic:?} (known: {known})")]
    UnknownTopic {
        /// Name asked for.
        topic: String,
        /// Names that exist, comma-separated.
        known: String,
    },
    /// The topic's producer is in use.
    #[error("topic {0:?} already has a producer (one writer per partition); drop it first")]
    ProducerTaken(String),
    /// The group exists with the other mode.
    #[error("group {group:?} exists in {existing:?} mode; cannot join it in {requested:?} mode")]
    GroupModeMismatch {
        /// Group name.
        group: String,
        /// Its mode.
        existing: crate::GroupMode,
        /// Mode asked for.
        requested: crate::GroupMode,
    },
    /// Empty group name.
    #[error("group name must not be empty")]
    EmptyGroupName,
    /// The engine was closed.
    #[error("engine is closed")]
    Closed,
    /// A journaled topic on an engine opened without a journal.
    #[error("topic {0:?} is journaled, but the engine has no journal (open it with Engine::with_journal)")]
    NoJournal(String),
    /// The journal could not be opened, recovered or used.
    #[cfg(feature = "journal")]
    #[error(transparent)]
    Journal(std::sync::Arc<crate::journal::JournalError>),
}

#[cfg(feature = "journal")]
impl From<crate::journal::JournalError> for EngineError {
    fn from(e: crate::journal::JournalError) -> Self {
        Self::Journal(std::sync::Arc::new(e))
    }
}

/// Errors from [`crate::Consumer`] calls.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumerError {
    /// No topic with this name.
    #[error("unknown topic {topic:?} (known: {known})")]
    UnknownTopic {
        /// Name asked for.
        topic: String,
        /// Names that exist, comma-separated.
        known: String,
    },
    /// The partition does not exist.
    #[error("partition {partition} does not exist in topic {topic} (it has {partitions})")]
    NoSuchPartition {
        /// Topic.
        topic: String,
        /// Partition asked for.
        partition: u32,
        /// Partitions in the topic.
        partitions: u32,
    },
    /// The partition exists but is not assigned to this member now.
    #[error("partition {partition} of topic {topic} is not assigned to this member (assigned: {assigned})")]
    NotAssigned {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// What is assigned, as `topic/partition` list.
        assigned: String,
    },
    /// Seek outside the retained window.
    #[error("offset {requested} is out of range for {topic}/{partition}: valid offsets are {earliest}..={latest}")]
    OffsetOutOfRange {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// Offset asked for.
        requested: u64,
        /// Oldest offset still held (and protectable): in the journal for a
        /// journaled topic, else in the ring.
        earliest: u64,
        /// Next offset to be written (seeking here waits for new records).
        latest: u64,
    },
    /// Every reader slot of a partition is taken.
    #[error("topic {topic} has no free reader slot ({max} per partition); raise TopicConfig::max_readers")]
    TooManyReaders {
        /// Topic.
        topic: String,
        /// Slots per partition.
        max: usize,
    },
    /// `max` of zero.
    #[error("poll needs max >= 1")]
    ZeroMax,
    /// This consumer was closed.
    #[error("consumer is closed")]
    Closed,
    /// The engine was closed and everything assigned was read.
    #[error("engine is closed and every assigned partition is drained")]
    EngineClosed,
    /// Reading older records back from the journal failed.
    #[cfg(feature = "journal")]
    #[error(transparent)]
    Journal(std::sync::Arc<crate::journal::JournalError>),
}
