//! The syncer thread: every `fdatasync` of the journal, and the offsets
//! file, off the journaller's thread, so writing never waits for the disk.
//!
//! - `Always`: the journaller hands over how far each partition is written;
//!   the syncer syncs what changed (closed segments first, then the active
//!   one) and only then moves `durable`, and runs the progress hooks. What
//!   the journaller writes meanwhile goes into the next sync: group commit,
//!   pipelined with the writes.
//! - `Interval`: `durable` moves with `written` (the journaller does it);
//!   the syncer syncs what changed once per interval.
//! - `Never`: no data sync at all.
//!
//! In every mode it saves the committed offsets every `offsets_interval`
//! while they change, and at close after a last sync.

use std::fs::File;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Commits, Counters, FsyncPolicy, LogShared, OffsetStore, ProgressHook};

/// One partition as the syncer sees it.
struct SyncPart {
    shared: Arc<LogShared>,
    /// The active segment.
    file: Arc<File>,
    /// Segments closed since the last sync.
    closed: Vec<Arc<File>>,
    /// How far the journaller has written.
    written: u64,
    /// How far the last good sync reached.
    synced: u64,
}

#[derive(Default)]
struct State {
    parts: Vec<SyncPart>,
    /// Something was written since the syncer last looked.
    pending: bool,
    stop: bool,
}

/// The journaller's handle on the syncer.
pub(crate) struct Syncer {
    shared: Arc<(Mutex<State>, Condvar)>,
    policy: FsyncPolicy,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the syncer thread owns besides the shared state.
pub(crate) struct SyncWork {
    pub(crate) policy: FsyncPolicy,
    pub(crate) counters: Arc<Counters>,
    pub(crate) hooks: Arc<Mutex<Vec<ProgressHook>>>,
    pub(crate) offsets: Arc<Mutex<OffsetStore>>,
    pub(crate) offsets_interval: Duration,
    pub(crate) commits: Box<dyn Fn() -> Commits + Send>,
}

/// One partition's sync: its index, the closed segments, the active one,
/// and how far the sync covers.
type Job = (usize, Vec<Arc<File>>, Arc<File>, u64);

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // Every mutation under the lock completes, so a poisoned lock still
    // holds consistent state.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Syncer {
    /// Starts the syncer thread.
    pub(crate) fn start(work: SyncWork) -> std::io::Result<Self> {
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let policy = work.policy;
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("telering-jsync".into())
            .spawn(move || work.run(&s))?;
        Ok(Self {
            shared,
            policy,
            thread: Some(thread),
        })
    }

    /// Registers a partition whose log is written up to `written`; returns
    /// its index for [`Syncer::wrote`] and [`Syncer::rolled`].
    pub(crate) fn add(&self, shared: Arc<LogShared>, file: Arc<File>, written: u64) -> usize {
        let mut st = lock(&self.shared.0);
        st.parts.push(SyncPart {
            shared,
            file,
            closed: Vec::new(),
            written,
            synced: written,
        });
        st.parts.len() - 1
    }

    /// The journaller wrote partition `i` up to `written`.
    pub(crate) fn wrote(&self, i: usize, written: u64) {
        if self.policy == FsyncPolicy::Never {
            return;
        }
        let mut st = lock(&self.shared.0);
        st.parts[i].written = written;
        st.pending = true;
        drop(st);
        if self.policy == FsyncPolicy::Always {
            self.shared.1.notify_one();
        }
    }

    /// Partition `i` closed segment `old` and goes on in `new`.
    pub(crate) fn rolled(&self, i: usize, old: Arc<File>, new: Arc<File>) {
        let mut st = lock(&self.shared.0);
        let p = &mut st.parts[i];
        if self.policy != FsyncPolicy::Never {
            p.closed.push(old);
        }
        p.file = new;
    }

    /// Syncs what is left, saves the offsets and stops the thread.
    pub(crate) fn stop(mut self) {
        lock(&self.shared.0).stop = true;
        self.shared.1.notify_one();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("journal: the syncer thread panicked");
            }
        }
    }
}

impl SyncWork {
    fn run(self, shared: &(Mutex<State>, Condvar)) {
        let (m, cv) = shared;
        let mut next_offsets = Instant::now() + self.offsets_interval;
        let mut next_sync = Instant::now();
        let mut jobs: Vec<Job> = Vec::new();
        loop {
            let mut st = lock(m);
            // Wait for work, a deadline or the stop.
            loop {
                let now = Instant::now();
                let sync_due = match self.policy {
                    FsyncPolicy::Always => st.pending,
                    FsyncPolicy::Interval(_) => st.pending && now >= next_sync,
                    FsyncPolicy::Never => false,
                };
                if st.stop || sync_due || now >= next_offsets {
                    break;
                }
                let mut until = next_offsets;
                if let FsyncPolicy::Interval(_) = self.policy {
                    if st.pending {
                        until = until.min(next_sync);
                    }
                }
                st = cv
                    .wait_timeout(st, until.saturating_duration_since(now))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            let stop = st.stop;
            let now = Instant::now();
            let sync = self.policy != FsyncPolicy::Never
                && st.pending
                && (stop || self.policy == FsyncPolicy::Always || now >= next_sync);
            if sync {
                st.pending = false;
                jobs.clear();
                for (i, p) in st.parts.iter_mut().enumerate() {
                    if p.written > p.synced || !p.closed.is_empty() {
                        jobs.push((i, std::mem::take(&mut p.closed), p.file.clone(), p.written));
                    }
                }
            }
            drop(st);
            if sync {
                self.sync(m, &mut jobs);
                if let FsyncPolicy::Interval(every) = self.policy {
                    next_sync = now + every;
                }
            }
            if stop || Instant::now() >= next_offsets {
                let commits = (self.commits)();
                let r = self
                    .offsets
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .store(&commits);
                if let Err(e) = r {
                    Counters::add(&self.counters.write_errors, 1);
                    tracing::error!("journal: {e}");
                }
                next_offsets = Instant::now() + self.offsets_interval;
            }
            if stop {
                return;
            }
        }
    }

    /// Syncs the jobs taken; moves `durable` (`Always`) and runs the hooks.
    fn sync(&self, m: &Mutex<State>, jobs: &mut Vec<Job>) {
        let mut moved = false;
        for (i, closed, file, target) in jobs.drain(..) {
            let r = closed
                .iter()
                .chain(std::iter::once(&file))
                .try_for_each(|f| {
                    Counters::add(&self.counters.syncs, 1);
                    f.sync_data()
                });
            let mut st = lock(m);
            let p = &mut st.parts[i];
            match r {
                Ok(()) => {
                    p.synced = p.synced.max(target);
                    if self.policy == FsyncPolicy::Always {
                        p.shared.set_durable(target);
                        moved = true;
                    }
                }
                Err(e) => {
                    // Tried again at the next round; nothing more is durable.
                    p.closed.splice(0..0, closed);
                    st.pending = true;
                    drop(st);
                    Counters::add(&self.counters.write_errors, 1);
                    tracing::error!("journal: cannot sync a segment: {e} (retrying)");
                    std::thread::sleep(super::RETRY);
                }
            }
        }
        if moved {
            for h in self.hooks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                h();
            }
        }
    }
}
