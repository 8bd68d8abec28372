//! Stopping a run on request (Ctrl-C): the command line sets a flag, the
//! stages check it between batches and tables and stop with
//! [`Interrupted`]; as nothing is committed before a stage's last step, an
//! interrupted run publishes nothing, releases its lock, and the previous
//! results stay readable. A plugin call in progress runs to its end (at most
//! its time budget).

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Asks every stage to stop at its next check.
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// The error of a stage that stopped because it was asked to.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("interrupted (Ctrl-C): the run stopped and published nothing")]
pub struct Interrupted;

/// `Err(Interrupted)` once a stop was asked for.
pub fn check() -> Result<(), Interrupted> {
    if requested() { Err(Interrupted) } else { Ok(()) }
}
