//! Every resource limit of a plugin instance, in one place, with safe defaults.

use std::time::Duration;

/// How often the engine's epoch advances: the resolution of the per-call
/// time budget.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// What one plugin instance may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory an instance may grow to.
    pub memory_bytes: usize,
    /// Wall time one call (`create`, `push`, `finish`, ...) may take.
    pub call_budget: Duration,
    /// Bytes of guest stdout and stderr kept per call for the log; the rest is
    /// counted and dropped.
    pub log_bytes: usize,
}

impl Default for Limits {
    /// 1 GiB of memory, 60 s per call, 64 KiB of log per call.
    fn default() -> Self {
        Limits { memory_bytes: 1 << 30, call_budget: Duration::from_secs(60), log_bytes: 64 << 10 }
    }
}

impl Limits {
    /// Sets the memory cap.
    pub fn with_memory_bytes(mut self, bytes: usize) -> Self {
        self.memory_bytes = bytes;
        self
    }

    /// Sets the time budget of one call.
    pub fn with_call_budget(mut self, budget: Duration) -> Self {
        self.call_budget = budget;
        self
    }

    /// Sets how much guest output is kept per call.
    pub fn with_log_bytes(mut self, bytes: usize) -> Self {
        self.log_bytes = bytes;
        self
    }
}
