//! The topic catalogue: every topic of an engine by id and by name, and the
//! engine-wide closed flag.
//!
//! The engine creates topics here and takes producers from here; consumers
//! hold the registry (not the engine) to resolve subscriptions and to see
//! the topics created after they joined. Topics are never removed, so a
//! [`TopicId`] indexes `list` for the registry's whole life.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use super::{Topic, TopicConfig, TopicId};
use crate::error::EngineError;

struct Topics<T> {
    list: Vec<Arc<Topic<T>>>,
    by_name: HashMap<Arc<str>, TopicId>,
}

/// Every topic of one engine.
pub(crate) struct TopicRegistry<T> {
    topics: RwLock<Topics<T>>,
    closed: AtomicBool,
}

impl<T: Copy + Send> TopicRegistry<T> {
    pub(crate) fn new() -> Self {
        Self {
            topics: RwLock::new(Topics {
                list: Vec::new(),
                by_name: HashMap::new(),
            }),
            closed: AtomicBool::new(false),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Topics<T>> {
        // Every mutation under the write lock completes (a push and an
        // insert), so a poisoned lock still holds a consistent catalogue.
        self.topics.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a topic; names are checked by [`Topic::new`].
    pub(crate) fn create(&self, name: &str, config: TopicConfig) -> Result<TopicId, EngineError> {
        self.create_with(name, config, &[], |_| Ok(()))
            .map(|t| t.id)
    }

    /// Creates a topic whose partitions start at `starts`, and lets `fill`
    /// finish it (attach its journal) before anyone can see it.
    pub(crate) fn create_with(
        &self,
        name: &str,
        config: TopicConfig,
        starts: &[u64],
        fill: impl FnOnce(&mut Topic<T>) -> Result<(), EngineError>,
    ) -> Result<Arc<Topic<T>>, EngineError> {
        if self.is_closed() {
            return Err(EngineError::Closed);
        }
        let mut t = self.topics.write().unwrap_or_else(|e| e.into_inner());
        if t.by_name.contains_key(name) {
            return Err(EngineError::DuplicateTopic(name.to_owned()));
        }
        let id = TopicId(t.list.len() as u32);
        let mut topic = Topic::new(id, name, config, starts)?;
        fill(&mut topic)?;
        let topic = Arc::new(topic);
        t.by_name.insert(topic.name.clone(), id);
        t.list.push(topic.clone());
        Ok(topic)
    }

    /// The topic called `name`, or an error listing the known ones.
    pub(crate) fn get(&self, name: &str) -> Result<Arc<Topic<T>>, EngineError> {
        let t = self.read();
        match t.by_name.get(name) {
            Some(id) => Ok(t.list[id.0 as usize].clone()),
            None => Err(EngineError::UnknownTopic {
                topic: name.to_owned(),
                known: names_of(&t.list),
            }),
        }
    }

    pub(crate) fn id(&self, name: &str) -> Option<TopicId> {
        self.read().by_name.get(name).copied()
    }

    /// The known topic names joined with ", " (or "none"), for error messages.
    pub(crate) fn names_joined(&self) -> String {
        names_of(&self.read().list)
    }

    /// Names of all topics, in creation order.
    pub(crate) fn names(&self) -> Vec<String> {
        self.read()
            .list
            .iter()
            .map(|t| t.name.to_string())
            .collect()
    }

    pub(crate) fn name(&self, id: TopicId) -> Arc<str> {
        self.read().list[id.0 as usize].name.clone()
    }

    pub(crate) fn partition_count(&self, id: TopicId) -> u32 {
        self.read().list[id.0 as usize].partitions.len() as u32
    }

    /// Every topic, indexed by [`TopicId`].
    pub(crate) fn snapshot(&self) -> Vec<Arc<Topic<T>>> {
        self.read().list.clone()
    }

    pub(crate) fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release in `close`, so whoever sees the
        // flag also sees the rings closed before it.
        self.closed.load(Ordering::Acquire)
    }

    /// Refuses new topics and closes every partition ring.
    pub(crate) fn close(&self) {
        // Release: pairs with the Acquire in `is_closed`.
        self.closed.store(true, Ordering::Release);
        for t in self.read().list.iter() {
            for r in t.partitions.iter() {
                r.close();
            }
        }
    }
}

fn names_of<T>(list: &[Arc<Topic<T>>]) -> String {
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.iter().map(|t| &*t.name).collect::<Vec<_>>().join(", ")
    }
}
