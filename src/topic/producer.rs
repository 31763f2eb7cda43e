//! The producer of a topic: the unique writers of all its partitions.

use std::fmt;

use super::TopicId;
use crate::record::{partition_for, Keyed};
use crate::ring::{BatchError, PublishError, Writer};

/// A send that did not happen; the record is handed back.
#[derive(PartialEq, Eq)]
pub enum SendError<T> {
    /// `Reject` policy and the partition is full (counted as rejected).
    Full(T),
    /// The engine was closed.
    Closed(T),
    /// The partition does not exist.
    NoSuchPartition {
        /// The record.
        value: T,
        /// The partition asked for.
        partition: u32,
        /// How many the topic has.
        partitions: u32,
    },
}

impl<T> SendError<T> {
    /// The record that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(v) | Self::Closed(v) | Self::NoSuchPartition { value: v, .. } => v,
        }
    }
}

impl<T> From<PublishError<T>> for SendError<T> {
    fn from(e: PublishError<T>) -> Self {
        match e {
            PublishError::Full(v) => Self::Full(v),
            PublishError::Closed(v) => Self::Closed(v),
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
            Self::NoSuchPartition {
                partition,
                partitions,
                ..
            } => f
                .debug_struct("NoSuchPartition")
                .field("partition", partition)
                .field("partitions", partitions)
                .finish_non_exhaustive(),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("partition is full (Reject policy): record handed back"),
            Self::Closed(_) => f.write_str("engine is closed: record handed back"),
            Self::NoSuchPartition {
                partition,
                partitions,
                ..
            } => write!(
                f,
                "partition {partition} does not exist (the topic has {partitions}: 0..{partitions})"
            ),
        }
    }
}

impl<T> std::error::Error for SendError<T> {}

/// Where a record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Partition.
    pub partition: u32,
    /// Offset in the partition.
    pub offset: u64,
}

/// Writes records into one topic. Holds the unique writer of every partition,
/// so there is at most one `Producer` per topic at a time (`Send`, not
/// `Clone`). For one thread per partition, split it with
/// [`Producer::into_partition_writers`].
pub struct Producer<T: Copy + Send> {
    topic: TopicId,
    name: std::sync::Arc<str>,
    writers: Box<[Writer<T>]>,
}

impl<T: Copy + Send> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("topic", &self.name)
            .field("partitions", &self.writers.len())
            .finish()
    }
}

impl<T: Copy + Send> Producer<T> {
    pub(crate) fn new(topic: TopicId, name: std::sync::Arc<str>, writers: Vec<Writer<T>>) -> Self {
        Self {
            topic,
            name,
            writers: writers.into_boxed_slice(),
        }
    }

    /// The topic written to.
    pub fn topic(&self) -> TopicId {
        self.topic
    }

    /// The topic's name.
    pub fn topic_name(&self) -> &str {
        &self.name
    }

    /// Number of partitions.
    pub fn partitions(&self) -> u32 {
        self.writers.len() as u32
    }

    /// The partition `key` maps to (stable hash).
    pub fn partition_of(&self, key: &[u8]) -> u32 {
        partition_for(key, self.partitions())
    }

    /// Sends `value` to the partition of `key`; records with one key stay in
    /// order.
    #[inline]
    pub fn send_with_key(&mut self, key: &[u8], value: T) -> Result<Sent, SendError<T>> {
        let partition = self.partition_of(key);
        self.send_to(partition, value)
    }

    /// Sends `value` to the partition of its own key.
    #[inline]
    pub fn send(&mut self, value: T) -> Result<Sent, SendError<T>>
    where
        T: Keyed,
    {
        let partition = partition_for(value.key(), self.partitions());
        self.send_to(partition, value)
    }

    /// Sends `value` to `partition`.
    #[inline]
    pub fn send_to(&mut self, partition: u32, value: T) -> Result<Sent, SendError<T>> {
        let partitions = self.partitions();
        let Some(w) = self.writers.get_mut(partition as usize) else {
            return Err(SendError::NoSuchPartition {
                value,
                partition,
                partitions,
            });
        };
        let offset = w.publish(value)?;
        Ok(Sent { partition, offset })
    }

    /// Sends a batch to `partition` in one claim per ring's worth; returns the
    /// first offset. Under `Reject`, [`BatchError::Full`] says how many went in.
    pub fn send_batch_to(&mut self, partition: u32, values: &[T]) -> Result<u64, BatchSendError> {
        Ok(self.batch_writer(partition)?.publish_slice(values)?)
    }

    /// Claims `n` slots of `partition`, writes slot `i` with `fill(i)` in
    /// place, and publishes them with one release store: a batch without a
    /// source slice to copy from ([`Writer::publish_with`]). Returns how many
    /// were published: fewer than `n` when `n` is over the partition's
    /// capacity, or under `Reject` when it filled up (none fitting is
    /// [`BatchError::Full`]).
    #[inline]
    pub fn send_batch_with(
        &mut self,
        partition: u32,
        n: usize,
        fill: impl FnMut(usize) -> T,
    ) -> Result<usize, BatchSendError> {
        Ok(self.batch_writer(partition)?.publish_with(n, fill)?)
    }

    /// The writer of `partition`, for a batch send.
    #[inline]
    fn batch_writer(&mut self, partition: u32) -> Result<&mut Writer<T>, BatchSendError> {
        let partitions = self.partitions();
        self.writers
            .get_mut(partition as usize)
            .ok_or(BatchSendError::NoSuchPartition {
                partition,
                partitions,
            })
    }

    /// The writer of one partition.
    pub fn partition_writer(&mut self, partition: u32) -> Option<&mut Writer<T>> {
        self.writers.get_mut(partition as usize)
    }

    /// Splits into one writer per partition (index = partition), e.g. one
    /// thread per partition.
    pub fn into_partition_writers(self) -> Vec<Writer<T>> {
        self.writers.into_vec()
    }
}

/// A batch send that stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BatchSendError {
    /// The ring stopped the batch.
    #[error(transparent)]
    Ring(#[from] BatchError),
    /// The partition does not exist.
    #[error("partition {partition} does not exist (the topic has {partitions}: 0..{partitions})")]
    NoSuchPartition {
        /// Partition asked for.
        partition: u32,
        /// Partitions in the topic.
        partitions: u32,
    },
}
