//! One run at a time per lake: a lock file created atomically
//! (`_locks/run.lock`, put-if-absent on both backends) and removed when the
//! run ends.
//!
//! A killed run cannot remove its lock, so a lock is stale, and is broken,
//! when its holder is gone: on the same host, when its process no longer
//! exists; from another host, once it is older than the longest run allowed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use object_store::{PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::{Lake, LakeError};

const LOCK: &str = "_locks/run.lock";

/// A lock held by another host is stale after this long.
const MAX_RUN: Duration = Duration::from_secs(6 * 3600);

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The run's id.
    pub run_id: String,
    /// Its process id.
    pub pid: u32,
    /// Its host name.
    pub host: String,
    /// When it took the lock, seconds since the epoch.
    pub since: u64,
}

/// The lake's run lock, released on drop.
pub struct RunLock<'a> {
    lake: &'a Lake,
}

impl Lake {
    /// Takes the lake's run lock for `run_id`, breaking a stale one.
    pub fn lock(&self, run_id: &str) -> Result<RunLock<'_>, LakeError> {
        let me = Holder { run_id: run_id.to_owned(), pid: std::process::id(), host: host_name(), since: now() };
        for _ in 0..2 {
            match self.create_lock(&me)? {
                None => return Ok(RunLock { lake: self }),
                Some(holder) if holder.is_stale() => {
                    tracing::warn!(run = %holder.run_id, pid = holder.pid, host = %holder.host, "breaking the stale lock of a run that is gone");
                    self.delete(LOCK)?;
                }
                Some(holder) => {
                    return Err(LakeError::Locked { url: self.url().to_owned(), holder: Box::new(holder) });
                }
            }
        }
        Err(LakeError::Locked { url: self.url().to_owned(), holder: Box::new(self.read_lock()?.unwrap_or(me)) })
    }

    /// The run holding the lake now, if any (a stale lock holds nothing).
    pub fn lock_holder(&self) -> Result<Option<Holder>, LakeError> {
        Ok(self.read_lock()?.filter(|holder| !holder.is_stale()))
    }

    /// Creates the lock file; returns the current holder if it exists.
    fn create_lock(&self, me: &Holder) -> Result<Option<Holder>, LakeError> {
        let json = serde_json::to_vec(me).unwrap_or_default();
        let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        let path = self.path(LOCK);
        match self.runtime.block_on(self.store.put_opts(&path, PutPayload::from(Bytes::from(json)), options)) {
            Ok(_) => Ok(None),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Some(self.read_lock()?.unwrap_or_else(|| Holder {
                run_id: "(unreadable)".to_owned(),
                pid: 0,
                host: String::new(),
                since: 0,
            }))),
            Err(e) => Err(self.fail("create", LOCK, e)),
        }
    }

    fn read_lock(&self) -> Result<Option<Holder>, LakeError> {
        Ok(self.get(LOCK)?.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }
}

impl Drop for RunLock<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.lake.delete(LOCK) {
            tracing::warn!(error = %e, "cannot remove the run lock; the next run will break it");
        }
    }
}

impl Holder {
    fn is_stale(&self) -> bool {
        if self.host == host_name() {
            return !process_exists(self.pid);
        }
        now().saturating_sub(self.since) > MAX_RUN.as_secs()
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}

fn process_exists(pid: u32) -> bool {
    pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists()
}
