//! `SearchConfig::trial_tracker`: each attempt at a trial gets the caller's tracker, which sees
//! what the trial's trainer logs and then the trial's outcome.

use ode_search::driver::{DataFn, SearchConfig, TrialOutcome};
use ode_search::{
    MemoryStore, Params, SearchSpace, Strategy, StudyStore, TrialState, TrialTracker, TrialTrackerFn, enqueue_study,
    run_worker,
};
use ode_train::data::Dataset;
use ode_train::{RunConfig, Tracker};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What one trial's tracker saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    number: u64,
    params: BTreeMap<String, String>,
    metrics: BTreeMap<String, Vec<(usize, f64)>>,
    end: Option<(TrialState, Option<f64>)>,
}

struct Recorder {
    seen: Seen,
    all: Arc<Mutex<Vec<Seen>>>,
}

impl Tracker for Recorder {
    fn log_param(&mut self, name: &str, value: &str) {
        self.seen.params.insert(name.into(), value.into());
    }
    fn log_metric(&mut self, name: &str, value: f64, step: usize) {
        self.seen.metrics.entry(name.into()).or_default().push((step, value));
    }
}

impl TrialTracker for Recorder {
    fn end(mut self: Box<Self>, outcome: &TrialOutcome) {
        self.seen.end = Some((outcome.state, outcome.value));
        self.all.lock().unwrap().push(self.seen.clone());
    }
}

#[test]
fn each_trial_logs_to_the_callers_tracker_and_ends_it_with_its_outcome() {
    let table = ode_train::generate::generate("five-channel", 300, 1, 0.01).unwrap();
    let data: DataFn = Arc::new(move |cfg| Dataset::from_table(&table, cfg, "five-channel").map_err(|e| e.to_string()));
    let all: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let sink = all.clone();
    let cfg = SearchConfig {
        study: "s".into(),
        strategy: Strategy::Grid,
        space: SearchSpace::from_toml("[params.solver]\nchoices = [\"euler\", \"rk4\"]\n", "test").unwrap(),
        base: RunConfig::from_toml(
            "epochs = 2\ncontext_len = 8\nhorizon = 4\nmax_train_windows = 32\nmax_val_windows = 8\nhidden_dim = 8\n",
        )
        .unwrap(),
        seed: 1,
        lease_seconds: 600.0,
        max_attempts: 3,
        threads_per_trial: 1,
        trial_timeout: None,
        cancel: None,
        trial_tracker: Some(TrialTrackerFn::new(
            move |number, params: &Params| -> Box<dyn TrialTracker> {
                assert!(params.contains_key("solver"));
                Box::new(Recorder {
                    seen: Seen {
                        number,
                        ..Seen::default()
                    },
                    all: sink.clone(),
                })
            },
        )),
    };
    let mut store = MemoryStore::new();
    let study = enqueue_study(&mut store, &cfg).unwrap();
    let outcomes = run_worker(&mut store, study, &cfg, &data, "w0", |_| {}).unwrap();
    assert_eq!(outcomes.len(), 2);
    let mut seen = all.lock().unwrap().clone();
    seen.sort_by_key(|s| s.number);
    assert_eq!(seen.iter().map(|s| s.number).collect::<Vec<_>>(), [0, 1]);
    let trials = store.trials(study).unwrap();
    for s in &seen {
        let t = trials.iter().find(|t| t.number == s.number).unwrap();
        // The trainer's params, with the trial's solver.
        assert_eq!(
            Some(s.params["solver"].as_str()),
            t.params["solver"].as_str(),
            "{:?}",
            s.params
        );
        assert!(s.params.contains_key("learning_rate"));
        // Its per-epoch metrics, the same val_rmse the store has, and its outcome.
        let val: Vec<(usize, f64)> = s.metrics["val_rmse"].clone();
        assert_eq!(val.iter().map(|v| v.0).collect::<Vec<_>>(), [1, 2]);
        for (epoch, v) in &val {
            assert_eq!(t.intermediate[&(*epoch as u64)], *v);
        }
        assert_eq!(s.end, Some((TrialState::Complete, t.value)));
    }
}
