//! One run at a time per lake: a lock file created atomically
//! (`_locks/run.lock`, put-if-absent on both backends) and removed when the
//! run ends.
//!
//! A killed run cannot remove its lock, so a lock is stale, and is broken,
//! when its holder is gone: on the same host, when its process no longer
//! exists; from another host, once it is older than the longest run allowed.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    run_id: String,
}

/// What one try at the lock found.
enum Attempt {
    /// The lock is ours.
    Taken,
    /// A live run holds it.
    Held(Holder),
    /// Another run is breaking a stale lock: wait a moment.
    Wait,
    /// The lock changed (released, or a stale one broken): try again now.
    Again,
}

/// How long a run waits for another to finish breaking a stale lock.
const BREAK_PATIENCE: Duration = Duration::from_secs(10);

impl Lake {
    /// Takes the lake's run lock for `run_id`, breaking a stale one.
    pub fn lock(&self, run_id: &str) -> Result<RunLock<'_>, LakeError> {
        let me = Holder { run_id: run_id.to_owned(), pid: std::process::id(), host: host_name(), since: now() };
        let deadline = Instant::now() + BREAK_PATIENCE;
        let mut pause = Duration::from_millis(10);
        // Tries left once the wait is over: enough to break an unreadable
        // lock and take the lake.
        let mut last_tries = 3;
        loop {
            // An unreadable lock may be one being written: broken only once
            // it has stayed unreadable for the whole wait.
            let patience_over = Instant::now() >= deadline;
            match self.try_lock(&me, patience_over) {
                Ok(Attempt::Taken) => return Ok(RunLock { lake: self, run_id: me.run_id }),
                Ok(Attempt::Held(holder)) => {
                    return Err(LakeError::Locked { url: self.url().to_owned(), holder: Box::new(holder) });
                }
                Ok(Attempt::Again) if !patience_over || last_tries > 0 => {
                    last_tries -= usize::from(patience_over);
                }
                // Another run is breaking a stale lock, or the lock file
                // changed under a read (HDFS answers a read of a file being
                // deleted with an error): try again in a moment.
                Ok(Attempt::Wait) | Err(_) if !patience_over => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
                Ok(Attempt::Wait | Attempt::Again) => {
                    let holder = self.read_holder(LOCK)?.filter(|h| h.run_id != me.run_id).unwrap_or_else(unreadable);
                    return Err(LakeError::Locked { url: self.url().to_owned(), holder: Box::new(holder) });
                }
            }
        }
    }

    /// One try at the lock: take it, find it held, or break a stale one (and
    /// try again).
    fn try_lock(&self, me: &Holder, patience_over: bool) -> Result<Attempt, LakeError> {
        if self.put_new(LOCK, me)? {
            return Ok(Attempt::Taken);
        }
        let Some(holder) = self.read_holder(LOCK)? else { return Ok(Attempt::Again) };
        if holder.run_id == me.run_id {
            // Our own create went through although it reported an error.
            return Ok(Attempt::Taken);
        }
        if holder.run_id == UNREADABLE && !patience_over {
            return Ok(Attempt::Wait);
        }
        if !holder.is_stale() {
            return Ok(Attempt::Held(holder));
        }
        let Some(token) = self.take_break(&holder, me)? else { return Ok(Attempt::Wait) };
        tracing::warn!(run = %holder.run_id, pid = holder.pid, host = %holder.host, "breaking the stale lock of a run that is gone");
        // Only the one run that took the break deletes, and only the stale
        // holder's lock: never one that a live run holds.
        let broken = self.read_holder(LOCK).and_then(|now| match now {
            Some(now) if now == holder => self.delete(LOCK),
            _ => Ok(()),
        });
        // The token goes whatever happened (HDFS may answer the read of a
        // lock being replaced with an error): a run that read the stale lock
        // before and takes the token again finds another lock (or none) and
        // deletes nothing.
        if let Err(e) = self.delete(&token) {
            tracing::warn!(error = %e, token, "cannot remove the lock's break token; it is harmless");
        }
        broken.map(|()| Attempt::Again)
    }

    /// The run holding the lake now, if any (a stale lock holds nothing).
    pub fn lock_holder(&self) -> Result<Option<Holder>, LakeError> {
        Ok(self.read_holder(LOCK)?.filter(|holder| !holder.is_stale()))
    }

    /// The right to break `stale`'s lock, taken by creating a file named
    /// after it (put-if-absent: one run gets it). A breaker that died before
    /// it finished is stale in turn, and its right goes to the next run.
    /// Returns the token's path when this run got the right.
    fn take_break(&self, stale: &Holder, me: &Holder) -> Result<Option<String>, LakeError> {
        let mut token = format!("_locks/break-{}", stale.run_id);
        loop {
            if self.put_new(&token, me)? {
                return Ok(Some(token));
            }
            match self.read_holder(&token)? {
                // Ours: an earlier try took it and failed after.
                Some(breaker) if breaker.run_id == me.run_id => return Ok(Some(token)),
                Some(breaker) if breaker.is_stale() => token = format!("{token}-{}", breaker.run_id),
                _ => return Ok(None),
            }
        }
    }

    /// Creates `relative` holding `holder`, unless it exists: whether it did.
    fn put_new(&self, relative: &str, holder: &Holder) -> Result<bool, LakeError> {
        self.create_new(relative, serde_json::to_vec(holder).unwrap_or_default())
    }

    fn read_holder(&self, relative: &str) -> Result<Option<Holder>, LakeError> {
        Ok(self.get(relative)?.map(|bytes| serde_json::from_slice(&bytes).unwrap_or_else(|_| unreadable())))
    }
}

/// The run id of a lock file that does not parse (being written, or damaged).
const UNREADABLE: &str = "(unreadable)";

/// The holder of a lock file that does not parse: stale, once waited for.
fn unreadable() -> Holder {
    Holder { run_id: UNREADABLE.to_owned(), pid: 0, host: String::new(), since: 0 }
}

impl Drop for RunLock<'_> {
    fn drop(&mut self) {
        // Only our own lock: had it been broken (we were taken for dead), the
        // file now belongs to another run.
        match self.lake.read_holder(LOCK) {
            Ok(Some(holder)) if holder.run_id == self.run_id => {
                if let Err(e) = self.lake.delete(LOCK) {
                    tracing::warn!(error = %e, "cannot remove the run lock; the next run will break it");
                }
            }
            Ok(Some(holder)) => {
                tracing::warn!(run = %holder.run_id, "the run lock was taken by another run; leaving it");
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the run lock to release it; the next run will break it"),
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
