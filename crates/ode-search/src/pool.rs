//! Local worker threads on one study, as `ode search`, `ode worker` and the Python package's
//! `search` run them: until no trial is left to claim and, for a search, until the trials that
//! other workers hold are finished too (taking over any whose lease ends), so the leaderboard a
//! search prints is the whole study's.

use crate::driver::{DataFn, SearchConfig, TrialOutcome, run_worker};
use crate::open::open_store;
use crate::store::{StudyStore, TrialRecord, TrialState};
use crate::worker_id::worker_id;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often the calling thread asks [`PoolEvents::stop_requested`] while workers run.
const STOP_CHECK: Duration = Duration::from_millis(50);
/// How often the pool says which trials it waits for.
const WAIT_NOTE: Duration = Duration::from_secs(5);

/// The state of a pool's run when a trial ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Trials finished so far (complete, pruned or failed), those finished before included.
    pub finished: usize,
    /// The best complete trial's value so far in this run (`inf` before the first).
    pub best: f64,
    /// Time since this pass of the pool started.
    pub elapsed: Duration,
}

/// What a pool tells its caller while it runs.
pub trait PoolEvents: Sync {
    /// A trial ended on a local worker (or was abandoned: `outcome.abandoned`). Called from the
    /// worker's thread.
    fn trial_ended(&self, outcome: &TrialOutcome, progress: &Progress);

    /// Every few seconds while the pool waits for the trials other workers hold.
    fn waiting_for(&self, _held: &[&TrialRecord], _waited: Duration) {}

    /// Asked about every 50 ms on the calling thread; `true` stops the workers within a batch
    /// (through [`SearchConfig::cancel`], which must then be set) and ends the pool.
    fn stop_requested(&self) -> bool {
        false
    }
}

/// Why a pool ended before the study was finished.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PoolError {
    /// A worker failed (its store, or a panic); the others finished their trials.
    #[error("{0}")]
    Worker(String),
    /// `max_wait` passed while other workers still held trials.
    #[error("waited the --max-wait of {} s for trials other workers hold", .0.as_secs_f64())]
    MaxWait(Duration),
    /// The study could not be read back while waiting.
    #[error("cannot read the study: {0}")]
    Store(String),
}

/// `workers` local worker threads on `study`, each with its own connection to `storage`.
pub struct LocalPool<'a> {
    /// The study's settings (its `cancel` flag stops the workers).
    pub cfg: &'a SearchConfig,
    /// The data, built per trial's data settings.
    pub data: &'a DataFn,
    /// The store's URL.
    pub storage: &'a str,
    /// The study's id in the store.
    pub study: i64,
    /// Worker threads.
    pub workers: usize,
}

impl LocalPool<'_> {
    /// Runs the workers until no trial is left to claim (or a stop is requested); returns the
    /// count of finished trials, starting from `already`.
    pub fn run(&self, already: usize, events: &dyn PoolEvents) -> Result<usize, PoolError> {
        let started = Instant::now();
        let progress = Mutex::new((already, f64::INFINITY));
        let errors: Vec<String> = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..self.workers)
                .map(|w| {
                    let progress = &progress;
                    sc.spawn(move || -> Result<(), String> {
                        let mut st = open_store(self.storage)?;
                        let ended = |o: &TrialOutcome| {
                            let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
                            if !o.abandoned {
                                p.0 += 1;
                            }
                            if let Some(v) = o.value.filter(|_| o.state == TrialState::Complete) {
                                p.1 = p.1.min(v);
                            }
                            let now = Progress {
                                finished: p.0,
                                best: p.1,
                                elapsed: started.elapsed(),
                            };
                            drop(p);
                            events.trial_ended(o, &now);
                        };
                        run_worker(st.as_mut(), self.study, self.cfg, self.data, &worker_id(w), ended)
                            .map(|_| ())
                            .map_err(|e| format!("worker {w}: {e}"))
                    })
                })
                .collect();
            while !handles.iter().all(|h| h.is_finished()) {
                std::thread::sleep(STOP_CHECK);
                self.check_stop(events);
            }
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap_or_else(|_| Err("a worker panicked".into())).err())
                .collect()
        });
        if !errors.is_empty() {
            return Err(PoolError::Worker(errors.join("; ")));
        }
        Ok(progress.into_inner().unwrap_or_else(|e| e.into_inner()).0)
    }

    /// Sets the study's cancel flag when the caller asks to stop; whether it is set.
    fn check_stop(&self, events: &dyn PoolEvents) -> bool {
        let Some(cancel) = &self.cfg.cancel else {
            return false;
        };
        if !cancel.load(Ordering::Relaxed) && events.stop_requested() {
            cancel.store(true, Ordering::Relaxed);
        }
        cancel.load(Ordering::Relaxed)
    }

    /// Runs the pool until the study has no trial `RUNNING` or `WAITING`: once nothing is left
    /// to claim, it waits for the trials other workers hold (telling `events` which, every few
    /// seconds) and takes over any whose lease ends. Ends early, `Ok`, on a requested stop.
    pub fn run_to_the_end(
        &self,
        store: &mut dyn StudyStore,
        already: usize,
        max_wait: Option<Duration>,
        events: &dyn PoolEvents,
    ) -> Result<(), PoolError> {
        let mut finished = already;
        let mut waiting_since: Option<Instant> = None;
        let mut last_note: Option<Instant> = None;
        // Poll (a claim by every local worker, which takes over trials whose lease ended or
        // whose worker died) often enough to notice an expired lease soon after it expires.
        let poll = Duration::try_from_secs_f64(self.cfg.lease_seconds / 4.0)
            .unwrap_or(Duration::ZERO)
            .clamp(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            let before = finished;
            finished = self.run(finished, events)?;
            if finished > before {
                waiting_since = None;
            }
            let trials = store.trials(self.study).map_err(|e| PoolError::Store(e.to_string()))?;
            let held: Vec<&TrialRecord> = trials
                .iter()
                .filter(|t| matches!(t.state, TrialState::Running | TrialState::Waiting))
                .collect();
            if held.is_empty() || self.cfg.cancelled() {
                return Ok(());
            }
            let since = *waiting_since.get_or_insert_with(Instant::now);
            if let Some(max) = max_wait.filter(|m| since.elapsed() > *m) {
                return Err(PoolError::MaxWait(max));
            }
            if last_note.is_none_or(|t| t.elapsed() >= WAIT_NOTE) {
                last_note = Some(Instant::now());
                events.waiting_for(&held, since.elapsed());
            }
            // Not past max_wait: the search stops on time. A stop request ends the wait.
            let left = max_wait.map_or(poll, |m| m.saturating_sub(since.elapsed()));
            let until = Instant::now() + poll.min(left + Duration::from_millis(1));
            while Instant::now() < until {
                if self.check_stop(events) {
                    return Ok(());
                }
                std::thread::sleep(STOP_CHECK.min(until.saturating_duration_since(Instant::now())));
            }
        }
    }
}

/// What became of a trial, as the progress lines say it: `abandoned: REASON`, `failed: FIRST
/// LINE OF THE REASON`, or `complete val_rmse 0.12345` (`pruned …`).
pub fn outcome_summary(o: &TrialOutcome) -> String {
    match (o.state, &o.reason) {
        (_, Some(r)) if o.abandoned => format!("abandoned: {r}"),
        (TrialState::Fail, Some(r)) => format!("failed: {}", r.lines().next().unwrap_or("")),
        (s, _) => format!(
            "{} val_rmse {:.5}",
            s.optuna_name().to_lowercase(),
            o.value.unwrap_or(f64::NAN)
        ),
    }
}

/// The line `ode search` prints for the trials other workers hold: `trial 3 (host-12-0), trial
/// 5 (waiting)`.
pub fn held_trials(held: &[&TrialRecord]) -> String {
    let who: Vec<String> = held
        .iter()
        .map(|t| match t.state {
            TrialState::Waiting => format!("trial {} (waiting)", t.number),
            _ => format!(
                "trial {} ({})",
                t.number,
                t.worker.as_deref().unwrap_or("unknown worker")
            ),
        })
        .collect();
    who.join(", ")
}
