//! The engine: a handle on a topic registry ([`crate::topic`]), the
//! consumer groups reading it ([`crate::group`]) and, when opened with one,
//! its journal ([`crate::journal`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::EngineError;
use crate::group::{Consumer, ConsumerConfig, Group, GroupStats};
use crate::topic::{PartitionOffsets, Producer, TopicConfig, TopicId, TopicRegistry};

pub(crate) type Groups<T> = Arc<Mutex<HashMap<String, Arc<Group<T>>>>>;

pub(crate) struct EngineInner<T: Copy + Send + 'static> {
    topics: Arc<TopicRegistry<T>>,
    groups: Groups<T>,
    #[cfg(feature = "journal")]
    journal: Option<Arc<crate::journal::Journal<T>>>,
}

impl<T: Copy + Send + 'static> Drop for EngineInner<T> {
    fn drop(&mut self) {
        // The last handle of a journaled engine closes it, so the journaller
        // writes what was published and stops.
        #[cfg(feature = "journal")]
        if self.journal.is_some() {
            self.topics.close();
            self.join_journaller();
        }
    }
}

impl<T: Copy + Send + 'static> EngineInner<T> {
    #[cfg(feature = "journal")]
    fn join_journaller(&self) {
        if let Some(j) = &self.journal {
            let handle = j.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(h) = handle {
                if h.join().is_err() {
                    tracing::error!("journal: the journaller thread panicked");
                }
            }
            // Everything is written: another engine may open the directory.
            drop(j.lock.lock().unwrap_or_else(|e| e.into_inner()).take());
        }
    }
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
                groups: Arc::new(Mutex::new(HashMap::new())),
                #[cfg(feature = "journal")]
                journal: None,
            }),
        }
    }

    /// Creates a topic. Names are 1 to 249 characters from `[A-Za-z0-9._-]`.
    ///
    /// A journaled topic ([`TopicConfig::journaled`]) needs an engine opened
    /// with [`Engine::with_journal`]: its partitions are recovered from the
    /// journal first, and their rings continue at the offsets it ends at.
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<TopicId, EngineError> {
        if config.journaled {
            #[cfg(feature = "journal")]
            return self.create_journaled(name, config);
            #[cfg(not(feature = "journal"))]
            return Err(EngineError::NoJournal(name.to_owned()));
        }
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
                .or_insert_with(|| {
                    Arc::new(Group::new(config.mode, self.stored_commits(&config.group)))
                })
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
            .enumerate()
            .map(|(p, r)| PartitionOffsets {
                earliest: t.earliest(p, r),
                ring_earliest: r.earliest(),
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
    /// everything already published. A journaled engine returns once the
    /// journal has written (and synced) everything published and saved the
    /// committed offsets.
    pub fn close(&self) {
        self.inner.topics.close();
        #[cfg(feature = "journal")]
        self.inner.join_journaller();
    }
}

impl<T: Copy + Send + 'static> Engine<T> {
    /// The committed offsets a new group starts from: those saved in the
    /// journal by an earlier run (topic name → partition → offset).
    fn stored_commits(&self, group: &str) -> HashMap<(String, u32), u64> {
        #[cfg(feature = "journal")]
        if let Some(j) = &self.inner.journal {
            let store = j.offsets.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(topics) = store.committed().get(group) {
                return topics
                    .iter()
                    .flat_map(|(t, parts)| parts.iter().map(move |(&p, &o)| ((t.clone(), p), o)))
                    .collect();
            }
        }
        let _ = group;
        HashMap::new()
    }
}

#[cfg(feature = "journal")]
impl<T: crate::journal::Persist> Engine<T> {
    /// An engine whose journaled topics ([`TopicConfig::journaled`]) keep
    /// their records in `config.dir`, and whose cluster groups' committed
    /// offsets are saved there too. Takes the directory's lock: a second
    /// engine on the same directory is [`JournalError::Locked`](crate::journal::JournalError::Locked).
    pub fn with_journal(config: crate::journal::JournalConfig) -> Result<Self, EngineError> {
        let journal = crate::journal::Journal::open(config, crate::journal::Codec::of())?;
        let topics = Arc::new(TopicRegistry::new());
        let groups: Groups<T> = Arc::new(Mutex::new(HashMap::new()));
        let syncer = crate::journal::Syncer::start(crate::journal::SyncWork {
            policy: journal.config.fsync,
            counters: journal.counters.clone(),
            hooks: journal.hooks.clone(),
            offsets: journal.offsets.clone(),
            offsets_interval: journal.config.offsets_interval,
            commits: {
                let (t, g) = (topics.clone(), groups.clone());
                Box::new(move || crate::group::commits_of(&t, &g))
            },
        })
        .map_err(|e| {
            crate::journal::JournalError::io("start the syncer for", &journal.config.dir, e)
        })?;
        let j = crate::journal::Journaller {
            config: journal.config.clone(),
            codec: journal.codec,
            counters: journal.counters.clone(),
            hooks: journal.hooks.clone(),
            inbox: journal.inbox.clone(),
            closed: {
                let t = topics.clone();
                Box::new(move || t.is_closed())
            },
            syncer,
        };
        let handle = std::thread::Builder::new()
            .name("telering-journal".into())
            .spawn(move || j.run())
            .map_err(|e| {
                crate::journal::JournalError::io("start the journaller for", &journal.config.dir, e)
            })?;
        *journal.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        Ok(Self {
            inner: Arc::new(EngineInner {
                topics,
                groups,
                journal: Some(Arc::new(journal)),
            }),
        })
    }
}

#[cfg(feature = "journal")]
impl<T: Copy + Send + 'static> Engine<T> {
    fn create_journaled(&self, name: &str, config: TopicConfig) -> Result<TopicId, EngineError> {
        use crate::journal::{JournalError, JournalPart};
        let Some(j) = &self.inner.journal else {
            return Err(EngineError::NoJournal(name.to_owned()));
        };
        if config.policy == crate::OverflowPolicy::Overwrite {
            return Err(JournalError::Config(format!(
                "topic {name:?}: a journaled topic must use Block or Reject (under Overwrite the writer would pass the journaller)"
            ))
            .into());
        }
        crate::topic::check_topic(name, &config)?;
        if self.inner.topics.id(name).is_some() {
            return Err(EngineError::DuplicateTopic(name.to_owned()));
        }
        let mut logs = Vec::with_capacity(config.partitions as usize);
        for p in 0..config.partitions {
            logs.push(j.open_partition(name, p)?.0);
        }
        let starts: Vec<u64> = logs.iter().map(|l| l.next()).collect();
        let shared: Box<[_]> = logs.iter().map(|l| l.shared().clone()).collect();
        let codec = j.codec;
        let topic = self.inner.topics.create_with(name, config, &starts, |t| {
            t.journal = Some(crate::topic::TopicJournal {
                logs: shared,
                codec,
            });
            Ok(())
        })?;
        let mut parts = Vec::with_capacity(logs.len());
        for (p, (ring, log)) in topic.partitions.iter().zip(logs).enumerate() {
            // The first gate of a fresh ring: nothing can have been published.
            let (gate, at) = ring.attach_gate(log.next()).ok_or_else(|| {
                EngineError::from(JournalError::Config(format!(
                    "topic {name:?} needs at least one reader slot for the journal"
                )))
            })?;
            debug_assert_eq!(at, log.next());
            parts.push(JournalPart::new(
                topic.name.clone(),
                p as u32,
                ring.clone(),
                gate,
                log,
            ));
        }
        j.inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(parts);
        Ok(topic.id)
    }

    /// The journal's counters, or `None` for an engine without a journal.
    pub fn journal_stats(&self) -> Option<crate::journal::JournalStats> {
        self.inner.journal.as_ref().map(|j| j.counters.snapshot())
    }

    /// The logs of a journaled topic, one per partition (`None` if the
    /// topic is not journaled): their [`durable`](crate::journal::LogShared::durable)
    /// offset says what an acknowledgement may cover.
    pub fn journal_logs(
        &self,
        topic: &str,
    ) -> Result<Option<Vec<Arc<crate::journal::LogShared>>>, EngineError> {
        let t = self.inner.topics.get(topic)?;
        Ok(t.journal.as_ref().map(|j| j.logs.to_vec()))
    }

    /// Calls `hook` (on the journaller thread) after every pass that made
    /// records durable, and once at close.
    pub fn on_journal_progress(&self, hook: crate::journal::ProgressHook) {
        if let Some(j) = &self.inner.journal {
            j.hooks.lock().unwrap_or_else(|e| e.into_inner()).push(hook);
        }
    }

    /// The data directory, for an engine with a journal.
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self.inner.journal.as_ref().map(|j| j.config.dir.as_path())
    }
}
