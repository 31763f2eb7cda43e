//! The pinned runtime: consumer threads running handlers.
//!
//! [`Runtime::builder`] collects members (a consumer config, topics and a
//! handler each), joins them to their groups and subscribes them on the
//! calling thread (so bad topics or full reader slots are reported at once),
//! then starts one thread per member, pinned to a core ([`PinPlan`]).
//!
//! A member thread polls a batch with [`Consumer::poll_with`], which lends
//! the records in place where the ring's layout allows, hands each run of a
//! partition to [`Handler::on_batch`] (by default [`Handler::on_record`] per
//! record) and polls again (auto-commit commits the batch on the next poll,
//! and only then are its slots released to the writer). A handler that
//! panics takes down only its own member: the panic is caught, the member
//! leaves its group *without* committing (as a crash), the group rebalances,
//! and the new owner of its partitions is handed the uncommitted records again
//! (at-least-once). [`Runtime::shutdown`] stops or drains every member, joins
//! every thread, and reports what each member and group handled.

mod affinity;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use affinity::PinPlan;

use crate::error::{ConsumerError, EngineError};
use crate::group::{Consumer, ConsumerConfig, Record, Run};
use crate::Engine;

/// Runs on each record a member receives.
pub trait Handler<T>: Send + 'static {
    /// Called before the records of each non-empty polled batch, with its
    /// length: a place for work done once per batch rather than per record
    /// (read the clock, reserve space), as the Disruptor's `end_of_batch`
    /// flag allows at the other end. Does nothing by default.
    fn on_batch_start(&mut self, _len: usize) {}
    /// One record.
    fn on_record(&mut self, record: &Record<T>);
    /// Consecutive records of one partition, read in place where the ring
    /// allows (`run.records[i]` has offset `run.base_offset + i`). By
    /// default calls [`Handler::on_record`] on each; a handler that works on
    /// slices overrides this instead.
    #[inline]
    fn on_batch(&mut self, run: Run<'_, T>)
    where
        T: Copy,
    {
        for (i, value) in run.records.iter().enumerate() {
            self.on_record(&Record {
                topic: run.topic,
                partition: run.partition,
                offset: run.base_offset + i as u64,
                value: *value,
            });
        }
    }
    /// `n` records were skipped (lapped under `Overwrite`, or lost while the
    /// group had no members).
    fn on_missed(&mut self, _n: u64) {}
}

impl<T, F> Handler<T> for F
where
    F: FnMut(&Record<T>) + Send + 'static,
{
    fn on_record(&mut self, record: &Record<T>) {
        self(record)
    }
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Joining a group failed.
    #[error("member {index}: {source}")]
    Join {
        /// Member index in the builder.
        index: usize,
        /// Cause.
        source: EngineError,
    },
    /// Subscribing failed.
    #[error("member {index}: {source}")]
    Subscribe {
        /// Member index in the builder.
        index: usize,
        /// Cause.
        source: ConsumerError,
    },
    /// Zero batch size.
    #[error("batch size must be at least 1")]
    ZeroBatch,
    /// The OS refused to start a thread.
    #[error("could not start a consumer thread: {0}")]
    Spawn(#[from] std::io::Error),
}

/// How [`Runtime::shutdown`] ends the members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Each member finishes the batch in hand, commits and leaves.
    Stop,
    /// Each member keeps going until it has read everything published to its
    /// partitions (stop the producers first), then commits and leaves.
    Drain,
}

const RUN: u8 = 0;
const STOP: u8 = 1;
const DRAIN: u8 = 2;

struct MemberSpec<T: Copy + Send + 'static> {
    config: ConsumerConfig,
    topics: Vec<String>,
    handler: Box<dyn Handler<T>>,
}

/// Builds a [`Runtime`].
pub struct RuntimeBuilder<T: Copy + Send + 'static> {
    engine: Engine<T>,
    members: Vec<MemberSpec<T>>,
    pinning: bool,
    batch: usize,
    poll_timeout: Duration,
}

impl<T: Copy + Send + 'static> std::fmt::Debug for RuntimeBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("members", &self.members.len())
            .field("pinning", &self.pinning)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl<T: Copy + Send + 'static> RuntimeBuilder<T> {
    /// Adds a member: joins `config.group`, subscribes to `topics`, and runs
    /// `handler` on what it receives.
    pub fn member(
        mut self,
        config: ConsumerConfig,
        topics: &[&str],
        handler: impl Handler<T>,
    ) -> Self {
        self.members.push(MemberSpec {
            config,
            topics: topics.iter().map(|s| (*s).to_owned()).collect(),
            handler: Box::new(handler),
        });
        self
    }

    /// Pins each member thread to a core (default on).
    pub fn pinning(mut self, on: bool) -> Self {
        self.pinning = on;
        self
    }

    /// Most records per poll (default 256).
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n;
        self
    }

    /// Longest a poll waits before re-checking for shutdown (default 50 ms).
    pub fn poll_timeout(mut self, t: Duration) -> Self {
        self.poll_timeout = t;
        self
    }

    /// Joins and subscribes every member, then starts their threads.
    pub fn start(self) -> Result<Runtime<T>, RuntimeError> {
        if self.batch == 0 {
            return Err(RuntimeError::ZeroBatch);
        }
        // Take the core list before any thread is pinned (affinity docs).
        let plan = PinPlan::new(self.members.len(), self.pinning);
        tracing::info!("{}", plan.describe());
        let mut ready = Vec::with_capacity(self.members.len());
        for (index, spec) in self.members.into_iter().enumerate() {
            let mut consumer = self
                .engine
                .consumer(spec.config.clone())
                .map_err(|source| RuntimeError::Join { index, source })?;
            let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
            consumer
                .subscribe(&topics)
                .map_err(|source| RuntimeError::Subscribe { index, source })?;
            ready.push((consumer, spec.handler));
        }
        let state = Arc::new(AtomicU8::new(RUN));
        let plan = Arc::new(plan);
        let mut threads = Vec::with_capacity(ready.len());
        for (index, (consumer, handler)) in ready.into_iter().enumerate() {
            let state = state.clone();
            let plan = plan.clone();
            let (batch, timeout) = (self.batch, self.poll_timeout);
            let name = format!("telering-{}-{}", consumer.group(), consumer.member_id());
            let handle = std::thread::Builder::new().name(name).spawn(move || {
                let core = plan.pin(index);
                run_member(consumer, handler, &state, batch, timeout, core)
            })?;
            threads.push(handle);
        }
        Ok(Runtime {
            state,
            threads,
            plan,
            _records: std::marker::PhantomData,
        })
    }
}

/// What one member did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberReport {
    /// Group.
    pub group: String,
    /// Member id.
    pub member: u64,
    /// Core it was pinned to.
    pub core: Option<usize>,
    /// Records its handler completed (a run whose `on_batch` panicked
    /// counts as not handled; it is delivered again).
    pub handled: u64,
    /// Records reported missed to it.
    pub missed: u64,
    /// The panic message, if its handler panicked.
    pub panicked: Option<String>,
}

/// Totals of one group over its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupReport {
    /// Records handled.
    pub handled: u64,
    /// Records reported missed.
    pub missed: u64,
    /// Members whose handler panicked.
    pub panics: usize,
}

/// What the runtime did, from [`Runtime::shutdown`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeReport {
    /// Per member, in builder order.
    pub members: Vec<MemberReport>,
    /// Per group.
    pub groups: BTreeMap<String, GroupReport>,
    /// Where the threads ran.
    pub pinning: PinPlan,
}

impl RuntimeReport {
    /// Records handled, per group.
    pub fn handled(&self) -> BTreeMap<String, u64> {
        self.per_group(|g| g.handled)
    }

    /// Records reported missed, per group.
    pub fn missed(&self) -> BTreeMap<String, u64> {
        self.per_group(|g| g.missed)
    }

    /// Members whose handler panicked, over all groups.
    pub fn panics(&self) -> usize {
        self.groups.values().map(|g| g.panics).sum()
    }

    fn per_group(&self, f: impl Fn(&GroupReport) -> u64) -> BTreeMap<String, u64> {
        self.groups.iter().map(|(n, g)| (n.clone(), f(g))).collect()
    }
}

/// Running consumer threads. Dropping it stops them (like
/// `shutdown(Shutdown::Stop)`).
pub struct Runtime<T: Copy + Send + 'static> {
    state: Arc<AtomicU8>,
    threads: Vec<JoinHandle<MemberReport>>,
    plan: Arc<PinPlan>,
    _records: std::marker::PhantomData<fn() -> T>,
}

impl<T: Copy + Send + 'static> std::fmt::Debug for Runtime<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("threads", &self.threads.len())
            .field("pinning", &self.plan.describe())
            .finish()
    }
}

impl<T: Copy + Send + 'static> Runtime<T> {
    /// A builder for consumer threads on `engine`.
    pub fn builder(engine: &Engine<T>) -> RuntimeBuilder<T> {
        RuntimeBuilder {
            engine: engine.clone(),
            members: Vec::new(),
            pinning: true,
            batch: 256,
            poll_timeout: Duration::from_millis(50),
        }
    }

    /// Where the threads run.
    pub fn pinning(&self) -> &PinPlan {
        &self.plan
    }

    /// Members still running.
    pub fn running(&self) -> usize {
        self.threads.iter().filter(|t| !t.is_finished()).count()
    }

    /// Stops or drains every member, joins every thread and reports.
    pub fn shutdown(mut self, how: Shutdown) -> RuntimeReport {
        let flag = match how {
            Shutdown::Stop => STOP,
            Shutdown::Drain => DRAIN,
        };
        // Release: nothing to publish with it; members poll it with Acquire.
        self.state.store(flag, Ordering::Release);
        let mut members = Vec::with_capacity(self.threads.len());
        for t in self.threads.drain(..) {
            // run_member catches handler panics, so a join error is a bug in
            // the runtime itself; report it rather than propagate.
            members.push(t.join().unwrap_or_else(|_| MemberReport {
                group: String::new(),
                member: 0,
                core: None,
                handled: 0,
                missed: 0,
                panicked: Some("member thread died outside its handler".into()),
            }));
        }
        let mut groups: BTreeMap<String, GroupReport> = BTreeMap::new();
        for m in &members {
            let g = groups.entry(m.group.clone()).or_default();
            g.handled += m.handled;
            g.missed += m.missed;
            g.panics += usize::from(m.panicked.is_some());
        }
        RuntimeReport {
            members,
            groups,
            pinning: (*self.plan).clone(),
        }
    }
}

impl<T: Copy + Send + 'static> Drop for Runtime<T> {
    fn drop(&mut self) {
        self.state.store(STOP, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "handler panicked".to_owned()
    }
}

fn run_member<T: Copy + Send + 'static>(
    mut consumer: Consumer<T>,
    mut handler: Box<dyn Handler<T>>,
    state: &AtomicU8,
    batch: usize,
    timeout: Duration,
    core: Option<usize>,
) -> MemberReport {
    let mut report = MemberReport {
        group: consumer.group().to_owned(),
        member: consumer.member_id(),
        core,
        handled: 0,
        missed: 0,
        panicked: None,
    };
    loop {
        // Acquire: pairs with the Release in `shutdown`.
        let now = state.load(Ordering::Acquire);
        if now == STOP {
            break;
        }
        let polled = consumer.poll_with(batch, timeout, |runs| {
            let (n, missed) = (runs.len(), runs.missed());
            let mut handled = 0u64;
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                if missed > 0 {
                    handler.on_missed(missed);
                }
                if n > 0 {
                    handler.on_batch_start(n);
                }
                for run in runs {
                    let len = run.records.len() as u64;
                    handler.on_batch(run);
                    handled += len;
                }
            }));
            (n, missed, handled, outcome)
        });
        let (n, missed, handled, outcome) = match polled {
            Ok(p) => p,
            Err(ConsumerError::EngineClosed) => break,
            Err(e) => {
                tracing::error!(group = %report.group, member = report.member, "poll failed: {e}");
                break;
            }
        };
        report.handled += handled;
        report.missed += missed;
        if let Err(p) = outcome {
            let msg = panic_message(&*p);
            tracing::error!(group = %report.group, member = report.member, "handler panicked: {msg}; member leaves, its partitions move on");
            report.panicked = Some(msg);
            // A crash: leave without committing, so the batch is redelivered.
            drop(consumer);
            return report;
        }
        if now == DRAIN && n == 0 && consumer.lag() == 0 && !consumer.has_pending() {
            break;
        }
    }
    consumer.close();
    report
}
