//! The engine: a handle on a topic registry ([`crate::topic`]) and the
//! consumer groups reading it ([`crate::group`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::EngineError;
use crate::group::{Consumer, ConsumerConfig, Group, GroupStats};
use crate::topic::{PartitionOffsets, Producer, TopicConfig, TopicId, TopicRegistry};

pub(crate) struct EngineInner<T> {
    topics: Arc<TopicRegistry<T>>,
    groups: Mutex<HashMap<String, Arc<Group<T>>>>,
}

/// The engine, generic over the record type. Cheap to clone (a handle).
///
/// Records are `Copy`: the ring hands the same record to every group by copy,
/// without heap allocation, and the `Overwrite` policy validates copies that
/// a writer may be overwriting, which is only sound for plain data. A record
/// type used in an `Overwrite` topic must also have no padding bytes (see the
/// `ring` module docs); [`crate::Reading`] has none.
pub struct Engine<T: Copy + Send + 'static> {
    inner: Arc<EngineInner<T>>,
}

impl<T: Copy + Send + 'static> Clone for Engine<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Copy + Send + 'static> Default for Engine<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + Send + 'static> std::fmt::Debug for Engine<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("topics", &self.inner.topics.names_joined())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<T: Copy + Send + 'static> Engine<T> {
    /// An engine with no topics.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(EngineInner {
                topics: Arc::new(TopicRegistry::new()),
                groups: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Creates a topic. Names are 1 to 249 characters from `[A-Za-z0-9._-]`.
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<TopicId, EngineError> {
        self.inner.topics.create(name, config)
    }

    /// The topic's id.
    pub fn topic_id(&self, name: &str) -> Result<TopicId, EngineError> {
        self.inner.topics.get(name).map(|t| t.id)
    }

    /// The name of a topic.
    pub fn topic_name(&self, id: TopicId) -> Arc<str> {
        self.inner.topics.name(id)
    }

    /// The topic's configuration.
    pub fn topic_config(&self, name: &str) -> Result<TopicConfig, EngineError> {
        self.inner.topics.get(name).map(|t| t.config)
    }

    /// Names of all topics, in creation order.
    pub fn topics(&self) -> Vec<String> {
        self.inner.topics.names()
    }

    /// Takes the producer of a topic: the unique writers of its partitions.
    pub fn producer(&self, topic: &str) -> Result<Producer<T>, EngineError> {
        if self.is_closed() {
            return Err(EngineError::Closed);
        }
        let t = self.inner.topics.get(topic)?;
        let mut writers = Vec::with_capacity(t.partitions.len());
        for ring in t.partitions.iter() {
            match crate::ring::Ring::writer(ring) {
                Some(w) => writers.push(w),
                // Dropping the writers taken so far releases them again.
                None => return Err(EngineError::ProducerTaken(topic.to_owned())),
            }
        }
        Ok(Producer::new(t.id, t.name.clone(), writers))
    }

    /// Joins (creating if needed) a consumer group as a new member. The
    /// member reads nothing until it subscribes.
    pub fn consumer(&self, config: ConsumerConfig) -> Result<Consumer<T>, EngineError> {
        if self.is_closed() {
            return Err(EngineError::Closed);
        }
        if config.group.is_empty() {
            return Err(EngineError::EmptyGroupName);
        }
        let group = {
            let mut groups = self.inner.groups.lock().unwrap_or_else(|e| e.into_inner());
            let g = groups
                .entry(config.group.clone())
                .or_insert_with(|| Arc::new(Group::new(config.mode)))
                .clone();
            if g.mode != config.mode {
                return Err(EngineError::GroupModeMismatch {
                    group: config.group.clone(),
                    existing: g.mode,
                    requested: config.mode,
                });
            }
            g
        };
        Ok(Consumer::join(self.inner.topics.clone(), group, config))
    }

    /// Offsets of every partition of a topic.
    pub fn offsets(&self, topic: &str) -> Result<Vec<PartitionOffsets>, EngineError> {
        let t = self.inner.topics.get(topic)?;
        Ok(t.partitions
            .iter()
            .map(|r| PartitionOffsets {
                earliest: r.earliest(),
                latest: r.published(),
                rejected: r.rejected(),
            })
            .collect())
    }

    /// Records published to a topic so far (all partitions).
    pub fn published(&self, topic: &str) -> Result<u64, EngineError> {
        Ok(self.offsets(topic)?.iter().map(|o| o.latest).sum())
    }

    /// Records rejected by a `Reject` topic so far.
    pub fn rejected(&self, topic: &str) -> Result<u64, EngineError> {
        Ok(self.offsets(topic)?.iter().map(|o| o.rejected).sum())
    }

    /// Delivery totals of a group, or `None` if it does not exist.
    pub fn group_stats(&self, group: &str) -> Option<GroupStats> {
        let groups = self.inner.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups.get(group).map(|g| g.stats())
    }

    /// Names of all groups.
    pub fn groups(&self) -> Vec<String> {
        let groups = self.inner.groups.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<String> = groups.keys().cloned().collect();
        v.sort();
        v
    }

    /// Whether [`Engine::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.topics.is_closed()
    }

    /// Closes the engine: publishes fail with `Closed`, waiting writers and
    /// readers wake up, and consumers get `EngineClosed` once they have read
    /// everything already published.
    pub fn close(&self) {
        self.inner.topics.close();
    }
}
