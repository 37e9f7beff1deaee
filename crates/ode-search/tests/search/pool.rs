//! The local worker pool (`ode search`, `ode worker`, Python's `search`): it runs the trials
//! it can claim and, once nothing is left, waits for those another worker holds and returns
//! only when they are finished; `max_wait` bounds that wait, and a stop request ends it.

use ode_search::driver::{DataFn, SearchConfig, TrialOutcome};
use ode_search::pool::{LocalPool, PoolError, PoolEvents, Progress};
use ode_search::store::{TrialRecord, TrialState};
use ode_search::{SearchSpace, Strategy, enqueue_study, open_store};
use ode_train::RunConfig;
use ode_train::data::Dataset;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn config(trials: usize) -> SearchConfig {
    let base = "epochs = 1\ncontext_len = 8\nhorizon = 4\nmax_train_windows = 48\nmax_val_windows = 16\n\
                hidden_dim = 8\nbatch_size = 16\nsolver = \"euler\"\n";
    SearchConfig {
        study: "pool".into(),
        strategy: Strategy::Random { trials },
        space: SearchSpace::from_toml("[params.latent_dim]\nchoices = [4, 6]\n", "test").unwrap(),
        base: RunConfig::from_toml(base).unwrap(),
        seed: 1,
        lease_seconds: 30.0,
        max_attempts: 3,
        threads_per_trial: 1,
        trial_timeout: None,
        cancel: Some(Arc::new(AtomicBool::new(false))),
        trial_tracker: None,
    }
}

fn data() -> DataFn {
    let table = ode_train::generate::generate("five-channel", 2000, 1, 0.01).unwrap();
    Arc::new(move |cfg| Dataset::from_table(&table, cfg, "five-channel").map_err(|e| e.to_string()))
}

/// What the pool reported; `stop` makes every stop request succeed.
#[derive(Default)]
struct Seen {
    ended: Mutex<Vec<(u64, usize)>>,
    waited_for: Mutex<Vec<Vec<u64>>>,
    stop: AtomicBool,
}

impl PoolEvents for Seen {
    fn trial_ended(&self, o: &TrialOutcome, p: &Progress) {
        self.ended.lock().unwrap().push((o.number, p.finished));
    }
    fn waiting_for(&self, held: &[&TrialRecord], _: Duration) {
        self.waited_for
            .lock()
            .unwrap()
            .push(held.iter().map(|t| t.number).collect());
    }
    fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A study of `trials` trials in a fresh SQLite file, one of them claimed by a worker on
/// another machine: (directory, URL, study, the held trial's id, attempt and number).
fn study_with_a_held_trial(cfg: &SearchConfig) -> (tempfile::TempDir, String, i64, (i64, u32, u64)) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("s.db").display());
    let mut store = open_store(&url).unwrap();
    let study = enqueue_study(store.as_mut(), cfg).unwrap();
    let held = store.claim(study, "elsewhere", cfg.lease_seconds, 3).unwrap().unwrap();
    (dir, url, study, (held.trial_id, held.attempt, held.number))
}

fn one_worker<'a>(cfg: &'a SearchConfig, data: &'a DataFn, url: &'a str, study: i64) -> LocalPool<'a> {
    LocalPool {
        cfg,
        data,
        storage: url,
        study,
        workers: 1,
    }
}

#[test]
fn the_pool_waits_for_the_trial_another_worker_holds() {
    let cfg = config(3);
    let (_dir, url, study, (id, attempt, number)) = study_with_a_held_trial(&cfg);
    let other = url.clone();
    let finisher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        let mut s = open_store(&other).unwrap();
        s.finish(id, attempt, TrialState::Complete, Some(0.5)).unwrap();
        Instant::now()
    });
    let data = data();
    let pool = one_worker(&cfg, &data, &url, study);
    let seen = Seen::default();
    let mut store = open_store(&url).unwrap();
    pool.run_to_the_end(store.as_mut(), 0, None, &seen).unwrap();
    let returned = Instant::now();
    let finished = finisher.join().unwrap();
    assert!(
        returned >= finished,
        "the pool returned before the held trial was finished"
    );
    let ended = seen.ended.lock().unwrap().clone();
    assert_eq!(ended.len(), 2, "{ended:?}");
    assert!(ended.iter().all(|(n, _)| *n != number));
    assert_eq!(ended.last().unwrap().1, 2, "finished count");
    let waits = seen.waited_for.lock().unwrap().clone();
    assert_eq!(waits.first(), Some(&vec![number]), "{waits:?}");
    let trials = store.trials(study).unwrap();
    assert!(trials.iter().all(|t| t.state == TrialState::Complete), "{trials:?}");
}

#[test]
fn the_wait_ends_at_max_wait_or_on_a_stop_request() {
    for stop in [false, true] {
        let cfg = config(1);
        let (_dir, url, study, (_, _, number)) = study_with_a_held_trial(&cfg);
        let data = data();
        let pool = one_worker(&cfg, &data, &url, study);
        let seen = Seen::default();
        seen.stop.store(stop, Ordering::Relaxed);
        let mut store = open_store(&url).unwrap();
        let started = Instant::now();
        let max_wait = Duration::from_millis(if stop { 60_000 } else { 300 });
        let end = pool.run_to_the_end(store.as_mut(), 0, Some(max_wait), &seen);
        if stop {
            assert_eq!(end, Ok(()));
            assert!(cfg.cancelled(), "a stop request sets the study's cancel flag");
            assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
        } else {
            assert_eq!(end, Err(PoolError::MaxWait(max_wait)));
            assert_eq!(seen.waited_for.lock().unwrap().first(), Some(&vec![number]));
        }
        let held = store.trials(study).unwrap();
        assert_eq!(held[0].state, TrialState::Running, "still the other worker's");
    }
}
