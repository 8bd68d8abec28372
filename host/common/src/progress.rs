//! Progress of long work (landing a table, cleaning it, computing and loading
//! Gold), reported the same way by every stage.
//!
//! A stage opens a [`Task`] with what it knows of the total and advances it
//! per batch, from any thread. Where it shows is the program's choice: the
//! command line installs a [`Reporter`] that draws bars on a terminal; with
//! none installed (not a terminal, a library user, the tests) a task writes a
//! plain log line every few seconds and one when it ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// What a task's total counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Bytes read from a source.
    Bytes,
    /// Rows.
    Rows,
}

/// Where a task is, as a reporter sees it.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Rows done.
    pub rows: u64,
    /// Bytes done (0 where the task does not count bytes).
    pub bytes: u64,
    /// The total, in `measure`, when known.
    pub total: Option<u64>,
    /// What `total` counts.
    pub measure: Measure,
    /// Time since the task opened.
    pub elapsed: Duration,
}

impl Progress {
    /// Done so far, in the task's measure.
    pub fn position(&self) -> u64 {
        match self.measure {
            Measure::Bytes => self.bytes,
            Measure::Rows => self.rows,
        }
    }
}

/// Shows tasks: one view per task.
pub trait Reporter: Send + Sync {
    /// A task opens.
    fn open(&self, stage: &str, name: &str, total: Option<u64>, measure: Measure) -> Box<dyn View>;
}

/// One task as a reporter shows it.
pub trait View: Send + Sync {
    /// The task advanced (called at most a few times a second).
    fn update(&self, now: &Progress);
    /// The task ended (successfully or not: `ok`).
    fn finish(&self, now: &Progress, ok: bool);
}

static REPORTER: OnceLock<Box<dyn Reporter>> = OnceLock::new();

/// Installs the process's reporter (the first call wins).
pub fn install(reporter: Box<dyn Reporter>) {
    if REPORTER.set(reporter).is_err() {
        tracing::debug!("a progress reporter was already installed");
    }
}

/// One piece of long work.
pub struct Task {
    stage: String,
    name: String,
    total: Option<u64>,
    measure: Measure,
    rows: AtomicU64,
    bytes: AtomicU64,
    started: Instant,
    last_shown: Mutex<Instant>,
    view: Option<Box<dyn View>>,
    finished: std::sync::atomic::AtomicBool,
}

impl Task {
    /// How often a task shows itself: bars redraw faster than log lines.
    const BAR_EVERY: Duration = Duration::from_millis(100);
    const LOG_EVERY: Duration = Duration::from_secs(2);

    /// Opens a task of `stage` (`bronze`, `silver`, `gold`) on `name`.
    pub fn open(stage: &str, name: &str, total: Option<u64>, measure: Measure) -> Self {
        let view = REPORTER.get().map(|r| r.open(stage, name, total, measure));
        let now = Instant::now();
        Task {
            stage: stage.to_owned(),
            name: name.to_owned(),
            total: total.filter(|&t| t > 0),
            measure,
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            started: now,
            last_shown: Mutex::new(now),
            view,
            finished: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Adds `rows` rows; `bytes_done` is the bytes done in all (a source's
    /// read position), or `None` where the task does not count bytes.
    pub fn advance(&self, rows: u64, bytes_done: Option<u64>) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
        if let Some(bytes) = bytes_done {
            self.bytes.fetch_max(bytes, Ordering::Relaxed);
        }
        let every = if self.view.is_some() { Self::BAR_EVERY } else { Self::LOG_EVERY };
        {
            let mut last = self.last_shown.lock().unwrap_or_else(PoisonError::into_inner);
            if last.elapsed() < every {
                return;
            }
            *last = Instant::now();
        }
        let now = self.progress();
        match &self.view {
            Some(view) => view.update(&now),
            None => self.log(&now, false),
        }
    }

    /// Ends the task successfully.
    pub fn finish(self) {
        self.end(true);
    }

    fn end(&self, ok: bool) {
        if self.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        let now = self.progress();
        match &self.view {
            Some(view) => view.finish(&now, ok),
            None if ok => self.log(&now, true),
            None => {}
        }
    }

    fn progress(&self) -> Progress {
        Progress {
            rows: self.rows.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            total: self.total,
            measure: self.measure,
            elapsed: self.started.elapsed(),
        }
    }

    /// The plain log line: rows, share done, throughput and time left.
    fn log(&self, now: &Progress, done: bool) {
        let seconds = now.elapsed.as_secs_f64().max(1e-9);
        let rate = match now.measure {
            Measure::Bytes => format!("{:.0} MB/s", now.bytes as f64 / 1e6 / seconds),
            Measure::Rows => format!("{:.0} rows/s", now.rows as f64 / seconds),
        };
        if done {
            tracing::debug!(stage = %self.stage, task = %self.name, rows = now.rows, seconds = format!("{seconds:.2}"), rate, "done");
            return;
        }
        let share = now.total.map(|t| (now.position() as f64 / t as f64).min(1.0));
        let eta = share.filter(|&s| s > 0.0).map(|s| format!("{:.0}s", seconds * (1.0 - s) / s));
        tracing::info!(
            stage = %self.stage,
            task = %self.name,
            rows = now.rows,
            done = share.map(|s| format!("{:.0}%", s * 100.0)).unwrap_or_else(|| "?".to_owned()),
            rate,
            eta = eta.unwrap_or_else(|| "?".to_owned()),
            "working"
        );
    }
}

impl Drop for Task {
    /// A task dropped without [`Task::finish`] failed or was stopped.
    fn drop(&mut self) {
        self.end(false);
    }
}
