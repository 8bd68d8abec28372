//! N workers over a list of jobs: the one way the host spreads work over
//! threads (Bronze tables, Silver row groups, Gold tables and the row groups
//! they read).
//!
//! Jobs are handed out in list order to scoped threads; results come back in
//! list order. After a job fails no new job is started, and the error of the
//! earliest failed job is returned. A worker that panics fails the whole
//! call with [`Panicked`] rather than being taken for a worker with nothing
//! to do.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

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

/// Like [`map_with`], but the results are handed to `consume`, on the
/// calling thread, in `items`' order as they become ready, instead of being
/// returned together: a stage streams its parts through an order-dependent
/// step (de-duplication, writing files in row order) without holding them
/// all. At most `ahead` jobs run or wait to be consumed at any time, besides
/// the result `consume` is working on: memory holds `ahead + 1` results.
///
/// The first failure (a job, `start`, `finish` or `consume`) stops the
/// others: no new job starts and `consume` is not called again. The error
/// returned is a panic's, else the earliest failed job's, else `consume`'s,
/// else that of `start` or `finish`.
pub fn map_in_order<T, R, E, S>(
    items: &[T],
    workers: usize,
    ahead: usize,
    start: impl Fn() -> Result<S, E> + Sync,
    job: impl Fn(&mut S, usize, &T) -> Result<R, E> + Sync,
    finish: impl Fn(S) -> Result<(), E> + Sync,
    mut consume: impl FnMut(usize, R) -> Result<(), E>,
) -> Result<(), E>
where
    T: Sync,
    R: Send,
    E: Send + From<Panicked>,
{
    let workers = workers.clamp(1, items.len().max(1));
    let ahead = ahead.max(1);
    let shared: Mutex<InOrder<R, E>> = Mutex::new(InOrder {
        handed: 0,
        consumed: 0,
        done: BTreeMap::new(),
        failed: false,
        running: workers,
        other: None,
    });
    let changed = Condvar::new();
    let lock = || shared.lock().unwrap_or_else(PoisonError::into_inner);
    let fail = |e: E| {
        let mut state = lock();
        state.failed = true;
        state.other.get_or_insert(e);
        changed.notify_all();
    };
    let worker = || {
        // However the worker ends (a panic too), the consumer hears of it.
        let _leaving = Leaving { shared: &shared, changed: &changed };
        let mut state = match start() {
            Ok(state) => state,
            Err(e) => return fail(e),
        };
        loop {
            let index = {
                let mut state = lock();
                while !state.failed && state.handed < items.len() && state.handed >= state.consumed + ahead {
                    state = changed.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
                if state.failed || state.handed >= items.len() {
                    break;
                }
                state.handed += 1;
                state.handed - 1
            };
            let result = job(&mut state, index, &items[index]);
            let mut state = lock();
            state.failed |= result.is_err();
            state.done.insert(index, result);
            changed.notify_all();
        }
        if !lock().failed
            && let Err(e) = finish(state)
        {
            fail(e);
        }
    };
    let mut consumer_error = None;
    let mut consumer_panicked = None;
    let panicked = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers).map(|_| scope.spawn(worker)).collect();
        loop {
            let next = {
                let mut state = lock();
                loop {
                    if state.consumed == items.len() || state.failed {
                        break None;
                    }
                    let index = state.consumed;
                    if let Some(result) = state.done.remove(&index) {
                        match result {
                            Ok(result) => {
                                state.consumed += 1;
                                changed.notify_all();
                                break Some((index, result));
                            }
                            Err(e) => {
                                state.done.insert(index, Err(e));
                                break None;
                            }
                        }
                    }
                    if state.running == 0 {
                        break None;
                    }
                    state = changed.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
            };
            let Some((index, result)) = next else { break };
            // A panicking consumer must stop the workers too, or they would
            // wait for it forever.
            let consumed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| consume(index, result)));
            if let Err(payload) = &consumed {
                consumer_panicked = Some(Panicked::from_payload(payload.as_ref()));
            }
            if let Ok(Err(e)) = consumed {
                consumer_error = Some(e);
            }
            if consumer_error.is_some() || consumer_panicked.is_some() {
                let mut state = lock();
                state.failed = true;
                changed.notify_all();
                break;
            }
        }
        let mut panicked = consumer_panicked;
        for handle in handles {
            if let Err(payload) = handle.join() {
                panicked = Some(Panicked::from_payload(payload.as_ref()));
            }
        }
        panicked
    });
    if let Some(panicked) = panicked {
        return Err(panicked.into());
    }
    let state = shared.into_inner().unwrap_or_else(PoisonError::into_inner);
    if let Some(e) = state.done.into_values().find_map(Result::err) {
        return Err(e);
    }
    if let Some(e) = consumer_error.or(state.other) {
        return Err(e);
    }
    Ok(())
}

/// What the workers and the consumer of [`map_in_order`] share.
struct InOrder<R, E> {
    /// Jobs handed out (the next job's index).
    handed: usize,
    /// Results consumed (the next result's index).
    consumed: usize,
    /// Results ready and not yet consumed, by index.
    done: BTreeMap<usize, Result<R, E>>,
    /// Something failed: stop.
    failed: bool,
    /// Workers still running.
    running: usize,
    /// The first error of a `start` or `finish`.
    other: Option<E>,
}

/// Counts a worker of [`map_in_order`] out when it ends, returning or
/// unwinding; an unwinding worker stops the others.
struct Leaving<'a, R, E> {
    shared: &'a Mutex<InOrder<R, E>>,
    changed: &'a Condvar,
}

impl<R, E> Drop for Leaving<'_, R, E> {
    fn drop(&mut self) {
        let mut state = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        state.running -= 1;
        state.failed |= std::thread::panicking();
        self.changed.notify_all();
    }
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

    #[test]
    fn results_are_consumed_in_list_order_with_a_bounded_window() {
        let items: Vec<usize> = (0..200).collect();
        let in_flight = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let mut seen = Vec::new();
        map_in_order(
            &items,
            3,
            4,
            || Ok::<_, Error>(()),
            |_, _, n| {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_micros((n * 37 % 11) as u64 * 50));
                Ok(*n)
            },
            |_| Ok(()),
            |index, n| {
                in_flight.fetch_sub(1, Ordering::SeqCst);
                assert_eq!(index, n);
                seen.push(n);
                Ok(())
            },
        )
        .expect("no job fails");
        assert_eq!(seen, items);
        assert!(most.load(Ordering::SeqCst) <= 5, "{} results held at once", most.load(Ordering::SeqCst));
    }

    #[test]
    fn in_order_failures_stop_everything() {
        let items: Vec<usize> = (0..100).collect();
        let ok = |_: usize| Ok::<(), Error>(());
        let consumed = AtomicUsize::new(0);
        let job_fails = map_in_order(
            &items,
            2,
            3,
            || Ok(()),
            |_, i, _| if i == 10 { Err(Error::Job(i)) } else { Ok(i) },
            |_| Ok(()),
            |_, _| {
                consumed.fetch_add(1, Ordering::Relaxed);
                Ok(())
            },
        );
        assert_eq!(job_fails, Err(Error::Job(10)));
        assert!(consumed.load(Ordering::Relaxed) <= 10);
        let consumer_fails = map_in_order(
            &items,
            2,
            3,
            || Ok(()),
            |_, i, _| Ok(i),
            |_| Ok(()),
            |i, _| if i == 5 { Err(Error::Job(500)) } else { ok(i) },
        );
        assert_eq!(consumer_fails, Err(Error::Job(500)));
        let start_fails =
            map_in_order(&items, 2, 3, || Err::<(), _>(Error::Job(99)), |_, i, _| Ok(i), |_| Ok(()), |_, _| Ok(()));
        assert_eq!(start_fails, Err(Error::Job(99)));
        let finish_fails =
            map_in_order(&items, 2, 3, || Ok(()), |_, i, _| Ok(i), |_| Err(Error::Job(7)), |_, _| Ok(()));
        assert_eq!(finish_fails, Err(Error::Job(7)));
        let panics = map_in_order(
            &items,
            2,
            3,
            || Ok(()),
            |_, i, _| if i == 20 { panic!("boom") } else { Ok::<_, Error>(i) },
            |_| Ok(()),
            |_, _| Ok(()),
        );
        assert_eq!(panics, Err(Error::Panicked));
        let consumer_panics = map_in_order(
            &items,
            2,
            3,
            || Ok(()),
            |_, i, _| Ok::<_, Error>(i),
            |_| Ok(()),
            |i, _| if i == 7 { panic!("boom") } else { ok(i) },
        );
        assert_eq!(consumer_panics, Err(Error::Panicked));
        let empty = map_in_order(&[] as &[usize], 2, 3, || Ok(()), |_, i, _| Ok(i), |_| Ok(()), |_, _| ok(0));
        assert_eq!(empty, Ok(()));
    }
}
