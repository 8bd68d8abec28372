//! N workers over a list of jobs: the one way the host spreads work over
//! threads (Bronze tables, Silver row groups, Gold tables and the row groups
//! they read).
//!
//! Jobs are handed out in list order to scoped threads; results come back in
//! list order. After a job fails no new job is started, and the error of the
//! earliest failed job is returned. A worker that panics fails the whole
//! call with [`Panicked`] rather than being taken for a worker with nothing
//! to do.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// A worker thread panicked: a bug, reported as an error so that the run
/// fails and publishes nothing instead of going on with a part missing.
#[derive(Debug, Clone, thiserror::Error)]
#[error("a worker thread panicked ({message}); nothing was published. This is a bug in medallion: please report it")]
pub struct Panicked {
    /// The panic's message, when it was a string.
    pub message: String,
}

impl Panicked {
    /// The panic whose payload a `join` returned.
    pub fn from_payload(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Panicked { message }
    }
}

/// Runs `job` over `items` on up to `workers` threads and returns the
/// results in `items`' order, or the first error.
pub fn map<T, R, E>(items: &[T], workers: usize, job: impl Fn(usize, &T) -> Result<R, E> + Sync) -> Result<Vec<R>, E>
where
    T: Sync,
    R: Send,
    E: Send + From<Panicked>,
{
    map_with(items, workers, || Ok(()), |(), index, item| job(index, item), |()| Ok(()))
}

/// Like [`map`], with state per worker: `start` makes it (for example a
/// plugin instance) before the worker's first job, `job` uses it, and
/// `finish` takes it back after the worker's last job (not after a failure).
/// A worker that gets no job starts and finishes all the same.
pub fn map_with<T, R, E, S>(
    items: &[T],
    workers: usize,
    start: impl Fn() -> Result<S, E> + Sync,
    job: impl Fn(&mut S, usize, &T) -> Result<R, E> + Sync,
    finish: impl Fn(S) -> Result<(), E> + Sync,
) -> Result<Vec<R>, E>
where
    T: Sync,
    R: Send,
    E: Send + From<Panicked>,
{
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<R, E>>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    // An error outside any job (start or finish), kept beside the jobs' ones.
    let other: Mutex<Option<E>> = Mutex::new(None);
    let record = |index: usize, result: Result<R, E>| {
        failed.fetch_or(result.is_err(), Ordering::Relaxed);
        results.lock().unwrap_or_else(PoisonError::into_inner)[index] = Some(result);
    };
    let worker = || -> Result<(), E> {
        // A worker that panics or cannot start stops the others too.
        let stop = StopOthersOnFailure(&failed);
        let mut state = start()?;
        while !failed.load(Ordering::Relaxed) {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(index) else { break };
            record(index, job(&mut state, index, item));
        }
        if failed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let finished = finish(state);
        if finished.is_ok() {
            std::mem::forget(stop);
        }
        finished
    };
    let panicked = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.clamp(1, items.len().max(1))).map(|_| scope.spawn(worker)).collect();
        let mut panicked = None;
        for handle in handles {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    failed.store(true, Ordering::Relaxed);
                    other.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(e);
                }
                Err(payload) => panicked = Some(Panicked::from_payload(payload.as_ref())),
            }
        }
        panicked
    });
    if let Some(panicked) = panicked {
        return Err(panicked.into());
    }
    let mut done = Vec::with_capacity(items.len());
    for result in results.into_inner().unwrap_or_else(PoisonError::into_inner) {
        match result {
            Some(result) => done.push(result?),
            None => break,
        }
    }
    if let Some(e) = other.into_inner().unwrap_or_else(PoisonError::into_inner) {
        return Err(e);
    }
    Ok(done)
}

/// Raises the shared failure flag when dropped, unless forgotten: a worker
/// that unwinds or returns early (its start failed) stops the others.
struct StopOthersOnFailure<'a>(&'a AtomicBool);

impl Drop for StopOthersOnFailure<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Error {
        Job(usize),
        Panicked,
    }

    impl From<Panicked> for Error {
        fn from(_: Panicked) -> Self {
            Error::Panicked
        }
    }

    #[test]
    fn results_come_back_in_list_order() {
        let items: Vec<u64> = (0..100).collect();
        let squares = map(&items, 4, |_, n| Ok::<_, Error>(n * n)).expect("no job fails");
        assert_eq!(squares, items.iter().map(|n| n * n).collect::<Vec<_>>());
        assert_eq!(map(&[] as &[u8], 3, |_, n| Ok::<_, Error>(*n)), Ok(Vec::new()));
    }

    #[test]
    fn the_earliest_failure_is_returned_and_later_jobs_do_not_start() {
        let started = AtomicUsize::new(0);
        let items: Vec<usize> = (0..1000).collect();
        let result = map(&items, 1, |i, _| {
            started.fetch_add(1, Ordering::Relaxed);
            if i >= 3 { Err(Error::Job(i)) } else { Ok(i) }
        });
        assert_eq!(result, Err(Error::Job(3)));
        assert_eq!(started.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_panicking_job_fails_the_call() {
        let items = [1, 2, 3];
        let result = map(&items, 2, |_, n| if *n == 2 { panic!("boom") } else { Ok::<_, Error>(*n) });
        assert_eq!(result, Err(Error::Panicked));
    }

    #[test]
    fn each_worker_starts_and_finishes_its_state_once() {
        let (starts, finishes) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let items: Vec<usize> = (0..50).collect();
        let sums = map_with(
            &items,
            3,
            || Ok::<_, Error>(starts.fetch_add(1, Ordering::Relaxed)),
            |_, _, n| Ok(*n),
            |_| {
                finishes.fetch_add(1, Ordering::Relaxed);
                Ok(())
            },
        )
        .expect("no job fails");
        assert_eq!(sums.len(), 50);
        assert_eq!(starts.load(Ordering::Relaxed), 3);
        assert_eq!(finishes.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_failing_start_fails_the_call() {
        let result = map_with(&[1, 2], 2, || Err::<(), _>(Error::Job(99)), |_, _, n| Ok(*n), |_| Ok(()));
        assert_eq!(result, Err(Error::Job(99)));
    }
}
