//! Core pinning for consumer threads.
//!
//! The core list is taken once, before any thread is pinned: on Linux
//! `core_affinity::get_core_ids()` returns only the cores the *calling*
//! thread may run on, so asking from an already-pinned thread would see one
//! core. When there are more threads than cores, threads wrap around the list
//! and the plan says so.

use core_affinity::CoreId;

/// Where each consumer thread runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinPlan {
    /// Cores this process may use (empty if they could not be read).
    pub cores: Vec<usize>,
    /// Core per thread, `None` when not pinned.
    pub assignment: Vec<Option<usize>>,
    /// More threads than cores: some threads share a core.
    pub wrapped: bool,
    /// Pinning was requested.
    pub enabled: bool,
}

impl PinPlan {
    /// Plans `threads` threads over the cores available to this thread now.
    pub fn new(threads: usize, enabled: bool) -> Self {
        let ids: Vec<CoreId> = if enabled {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let cores: Vec<usize> = ids.iter().map(|c| c.id).collect();
        let assignment = (0..threads)
            .map(|i| (!cores.is_empty()).then(|| cores[i % cores.len()]))
            .collect();
        let wrapped = enabled && !cores.is_empty() && threads > cores.len();
        if enabled && cores.is_empty() {
            tracing::warn!(
                "could not read the CPU cores available; consumer threads are not pinned"
            );
        } else if wrapped {
            tracing::warn!(
                threads,
                cores = cores.len(),
                "more consumer threads than cores: pinning wraps around, threads share cores"
            );
        }
        Self {
            cores,
            assignment,
            wrapped,
            enabled,
        }
    }

    /// Pins the calling thread as planned for thread `i`. Returns the core, or
    /// `None` if unpinned or the OS refused.
    pub fn pin(&self, i: usize) -> Option<usize> {
        let core = self.assignment.get(i).copied().flatten()?;
        core_affinity::set_for_current(CoreId { id: core }).then_some(core)
    }

    /// One line for logs and reports.
    pub fn describe(&self) -> String {
        if !self.enabled {
            return format!("{} consumer threads, pinning off", self.assignment.len());
        }
        if self.cores.is_empty() {
            return format!(
                "{} consumer threads, cores unknown: not pinned",
                self.assignment.len()
            );
        }
        format!(
            "{} consumer threads pinned over {} cores{}",
            self.assignment.len(),
            self.cores.len(),
            if self.wrapped {
                " (wrapped around: threads share cores)"
            } else {
                ""
            }
        )
    }
}
