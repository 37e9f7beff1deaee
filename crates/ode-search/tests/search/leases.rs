//! Leases under the search driver: heartbeats follow progress (the dataset build, batches,
//! validation rounds) every eighth of the lease; a trial that stops progressing loses its lease,
//! and its worker, once a write of its is fenced, abandons it and goes on with the next trial;
//! a per-trial time limit fails a trial with a reason naming the limit.

use ode_search::driver::{DataFn, SearchConfig};
use ode_search::store::{Claimed, ParamDistribution, StoreError, StudyStore, TrialRecord, TrialState};
use ode_search::{MemoryStore, Params, SearchSpace, SqliteStore, Strategy, enqueue_study, run_worker};
use ode_train::RunConfig;
use ode_train::data::Dataset;
use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn config(base: &str, trials: usize, lease_seconds: f64) -> SearchConfig {
    SearchConfig {
        study: "leases".into(),
        strategy: Strategy::Random { trials },
        space: SearchSpace::from_toml("[params.latent_dim]\nchoices = [4]\n", "test").unwrap(),
        base: RunConfig::from_toml(base).unwrap(),
        seed: 1,
        lease_seconds,
        max_attempts: 3,
        threads_per_trial: 1,
        trial_timeout: None,
        cancel: None,
        trial_tracker: None,
    }
}

/// A small, fast trial: `epochs` epochs of 3 batches.
fn small(epochs: usize) -> String {
    format!(
        "epochs = {epochs}\ncontext_len = 8\nhorizon = 4\nmax_train_windows = 48\nmax_val_windows = 16\n\
         hidden_dim = 8\nbatch_size = 16\nsolver = \"euler\"\n"
    )
}

/// The five-channel data, built after `delay` (a slow dataset build).
fn data(delay: Duration) -> DataFn {
    let table = ode_train::generate::generate("five-channel", 2000, 1, 0.01).unwrap();
    Arc::new(move |cfg| {
        std::thread::sleep(delay);
        Dataset::from_table(&table, cfg, "five-channel").map_err(|e| e.to_string())
    })
}

/// Forwards to `inner`, noting when a lease is taken, renewed or given up (claim, heartbeat,
/// finish), and optionally stalling, as a hung trial would, in the first `report` until told
/// to go on (it says so on `stall.0` and waits on `stall.1`).
struct Probe<S> {
    inner: S,
    renewals: Arc<Mutex<Vec<Instant>>>,
    stall: Option<(Sender<()>, Receiver<()>)>,
}

impl<S: StudyStore> Probe<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            renewals: Arc::default(),
            stall: None,
        }
    }

    fn note(&self) {
        self.renewals.lock().unwrap().push(Instant::now());
    }
}

impl<S: StudyStore> StudyStore for Probe<S> {
    fn open_study(&mut self, name: &str) -> Result<i64, StoreError> {
        self.inner.open_study(name)
    }
    fn study_names(&mut self) -> Result<Vec<String>, StoreError> {
        self.inner.study_names()
    }
    fn enqueue(
        &mut self,
        study: i64,
        number: u64,
        params: &Params,
        dists: &BTreeMap<String, ParamDistribution>,
    ) -> Result<(), StoreError> {
        self.inner.enqueue(study, number, params, dists)
    }
    fn claim(&mut self, study: i64, worker: &str, lease: f64, max: u32) -> Result<Option<Claimed>, StoreError> {
        let c = self.inner.claim(study, worker, lease, max)?;
        if c.is_some() {
            self.note();
        }
        Ok(c)
    }
    fn heartbeat(&mut self, trial_id: i64, attempt: u32) -> Result<(), StoreError> {
        self.inner.heartbeat(trial_id, attempt)?;
        self.note();
        Ok(())
    }
    fn report(&mut self, trial_id: i64, attempt: u32, step: u64, value: f64) -> Result<(), StoreError> {
        if let Some((stalled, go_on)) = self.stall.take() {
            stalled.send(()).unwrap();
            go_on.recv().unwrap();
        }
        self.inner.report(trial_id, attempt, step, value)
    }
    fn set_attr(&mut self, id: i64, attempt: u32, key: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        self.inner.set_attr(id, attempt, key, value)
    }
    fn finish(&mut self, id: i64, attempt: u32, state: TrialState, value: Option<f64>) -> Result<(), StoreError> {
        self.inner.finish(id, attempt, state, value)?;
        self.note();
        Ok(())
    }
    fn trials(&mut self, study: i64) -> Result<Vec<TrialRecord>, StoreError> {
        self.inner.trials(study)
    }
    fn set_study_attr(&mut self, study: i64, key: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        self.inner.set_study_attr(study, key, value)
    }
    fn study_attrs(&mut self, study: i64) -> Result<BTreeMap<String, serde_json::Value>, StoreError> {
        self.inner.study_attrs(study)
    }
}

#[test]
fn heartbeats_come_within_a_quarter_lease_while_data_training_and_validation_progress() {
    let lease = 3.0;
    // A dataset build longer than a quarter of the lease, then epochs of 25 batches (fewer
    // than the 32 after which workers used to beat) that take about a second each here: the
    // lease must be renewed during each, not only at the end of an epoch. The time limit ends
    // the trial after a fixed time, however fast the machine.
    let base = "epochs = 1000\ncontext_len = 24\nhorizon = 8\nmax_train_windows = 1200\nbatch_size = 48\n\
                max_val_windows = 1000\nhidden_dim = 128\nlatent_dim = 16\nsolver = \"dopri5\"\n";
    let mut cfg = config(base, 1, lease);
    cfg.trial_timeout = Some(Duration::from_millis(4000));
    let mut store = Probe::new(MemoryStore::new());
    let study = enqueue_study(&mut store, &cfg).unwrap();
    let outcomes = run_worker(&mut store, study, &cfg, &data(Duration::from_millis(1000)), "w", |_| {}).unwrap();
    let why = outcomes[0].reason.as_deref().unwrap_or("");
    assert!(why.contains("time limit of 4 s"), "{outcomes:?}");
    let times = store.renewals.lock().unwrap().clone();
    let total = (*times.last().unwrap() - times[0]).as_secs_f64();
    assert!(total >= 4.0, "claim to finish took {total:.2} s");
    let gaps: Vec<f64> = times.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    let worst = gaps.iter().cloned().fold(0.0, f64::max);
    assert!(
        worst <= lease / 4.0,
        "{} renewals over {total:.2} s, longest gap {worst:.3} s > a quarter of the {lease} s lease: {gaps:?}",
        times.len()
    );
}

#[test]
fn a_hung_trial_loses_its_lease_and_its_fenced_worker_abandons_it_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("study.db");
    let lease = 0.6;
    // Trial 0 first; trial 1 is enqueued once trial 0 has been taken over.
    let (cfg, one) = (config(&small(2), 2, lease), config(&small(2), 1, lease));
    let (stalled_tx, stalled) = channel();
    let (go_on, go_on_rx) = channel();
    let mut probe = Probe::new(SqliteStore::open(&path).unwrap());
    probe.stall = Some((stalled_tx, go_on_rx));
    let study = enqueue_study(&mut probe, &one).unwrap();
    let worker = {
        let cfg = cfg.clone();
        std::thread::spawn(move || run_worker(&mut probe, study, &cfg, &data(Duration::ZERO), "stuck", |_| {}))
    };
    // The worker hangs at the end of trial 0's first epoch: no progress, so no heartbeat.
    stalled
        .recv_timeout(Duration::from_secs(120))
        .expect("the worker reaches its first report");
    let hung = Instant::now();
    let mut thief = SqliteStore::open(&path).unwrap();
    let stolen = loop {
        if let Some(c) = thief.claim(study, "thief", lease, 3).unwrap() {
            break c;
        }
        assert!(
            hung.elapsed() < Duration::from_secs(30),
            "the hung trial kept its lease"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!((stolen.number, stolen.attempt), (0, 2), "the hung trial was handed on");
    assert!(
        hung.elapsed().as_secs_f64() >= 0.7 * lease,
        "handed on after {:?}, before its lease could expire",
        hung.elapsed()
    );
    assert_eq!(enqueue_study(&mut thief, &cfg).unwrap(), study);
    go_on.send(()).unwrap();
    let outcomes = worker.join().unwrap().expect("a fenced write does not end the worker");
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    let (lost, next) = (&outcomes[0], &outcomes[1]);
    assert!(lost.abandoned && lost.number == 0, "{lost:?}");
    let why = lost.reason.as_deref().unwrap();
    assert!(
        why.contains("lost its lease") && why.contains("attempt 1 no longer holds the trial (now attempt 2)"),
        "{why}"
    );
    assert_eq!(
        (next.number, next.state, next.abandoned),
        (1, TrialState::Complete, false)
    );
    // Trial 0 is the thief's: nothing of the abandoned attempt was written after its lease.
    let t0 = &thief.trials(study).unwrap()[0];
    assert_eq!(
        (t0.state, t0.attempt, t0.worker.as_deref()),
        (TrialState::Running, 2, Some("thief"))
    );
    assert!(t0.intermediate.is_empty(), "{:?}", t0.intermediate);
    thief
        .finish(stolen.trial_id, 2, TrialState::Complete, Some(1.0))
        .unwrap();
}

#[test]
fn a_trial_over_its_time_limit_fails_with_a_reason_naming_the_limit() {
    let mut cfg = config(&small(100_000), 2, 60.0);
    cfg.trial_timeout = Some(Duration::from_millis(300));
    let mut store = MemoryStore::new();
    let study = enqueue_study(&mut store, &cfg).unwrap();
    let started = Instant::now();
    let outcomes = run_worker(&mut store, study, &cfg, &data(Duration::ZERO), "w", |_| {}).unwrap();
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    assert_eq!(outcomes.len(), 2, "the study goes on after a timed-out trial");
    for (o, t) in outcomes.iter().zip(store.trials(study).unwrap()) {
        assert_eq!((o.state, t.state), (TrialState::Fail, TrialState::Fail));
        let why = t.user_attrs["fail_reason"].as_str().unwrap();
        assert!(why.contains("exceeded the per-trial time limit of 0.3 s"), "{why}");
        assert_eq!(o.reason.as_deref(), Some(why));
        assert!(t.intermediate.len() < 100_000 && o.epochs == t.intermediate.len());
    }
}
