//! Search drivers on the in-memory store: grid, random with several workers, resumption, ASHA.

use ode_search::driver::{DataFn, SearchConfig, asha_prunes, best_config_toml};
use ode_search::{MemoryStore, SearchSpace, Strategy, StudyStore, TrialState, enqueue_study, leaderboard, run_worker};
use ode_train::RunConfig;
use ode_train::data::Dataset;
use std::sync::Arc;

fn data() -> DataFn {
    let table = ode_train::generate::generate("five-channel", 300, 1, 0.01).unwrap();
    Arc::new(move |cfg| Dataset::from_table(&table, cfg, "five-channel").map_err(|e| e.to_string()))
}

fn base(epochs: usize) -> RunConfig {
    RunConfig::from_toml(&format!(
        "epochs = {epochs}\ncontext_len = 8\nhorizon = 4\nmax_train_windows = 48\nmax_val_windows = 16\nhidden_dim = 12\n"
    ))
    .unwrap()
}

fn config(space: &str, strategy: Strategy, epochs: usize) -> SearchConfig {
    SearchConfig {
        study: "s".into(),
        strategy,
        space: SearchSpace::from_toml(space, "test").unwrap(),
        base: base(epochs),
        seed: 5,
        lease_seconds: 600.0,
        max_attempts: 3,
        threads_per_trial: 1,
        trial_timeout: None,
        cancel: None,
        trial_tracker: None,
    }
}

#[test]
fn grid_search_runs_every_combination_and_ranks_them() {
    let cfg = config(
        "[params.latent_dim]\nchoices = [4, 8]\n[params.solver]\nchoices = [\"euler\", \"rk4\"]\n",
        Strategy::Grid,
        1,
    );
    let mut store = MemoryStore::new();
    let study = enqueue_study(&mut store, &cfg).unwrap();
    let done = run_worker(&mut store, study, &cfg, &data(), "w0", |_| {}).unwrap();
    assert_eq!(done.len(), 4);
    let trials = store.trials(study).unwrap();
    assert!(
        trials
            .iter()
            .all(|t| t.state == TrialState::Complete && t.value.is_some())
    );
    assert!(
        trials
            .iter()
            .all(|t| t.intermediate.len() == 1 && t.user_attrs.contains_key("train_seconds"))
    );
    let board = leaderboard(&trials);
    assert!(board.windows(2).all(|w| w[0].trial.value <= w[1].trial.value));
    assert!(board[0].pareto, "the most accurate trial is on the front");
    let toml = best_config_toml(&cfg, &trials).unwrap();
    let best = RunConfig::from_toml(&toml).unwrap().resolve(None);
    assert_eq!(best.train.epochs, 1);
    assert_eq!(
        Some(best.model.latent_dim as i64),
        board[0].trial.params["latent_dim"].as_integer()
    );
    // Re-running the search resumes: nothing is enqueued twice or re-run.
    enqueue_study(&mut store, &cfg).unwrap();
    assert_eq!(store.trials(study).unwrap().len(), 4);
    assert!(
        run_worker(&mut store, study, &cfg, &data(), "w0", |_| {})
            .unwrap()
            .is_empty()
    );
}

#[test]
fn random_search_gives_the_same_trials_whatever_the_worker_count() {
    let space =
        "[params.learning_rate]\nlow = 1e-3\nhigh = 1e-2\nlog = true\n[params.latent_dim]\nchoices = [4, 6, 8]\n";
    let cfg = config(space, Strategy::Random { trials: 6 }, 1);
    let mut one = MemoryStore::new();
    let s1 = enqueue_study(&mut one, &cfg).unwrap();
    run_worker(&mut one, s1, &cfg, &data(), "solo", |_| {}).unwrap();
    let two = MemoryStore::new();
    let s2 = enqueue_study(&mut two.clone(), &cfg).unwrap();
    std::thread::scope(|sc| {
        for w in 0..2 {
            let mut st = two.clone();
            let (cfg, d) = (&cfg, data());
            sc.spawn(move || run_worker(&mut st, s2, cfg, &d, &format!("w{w}"), |_| {}).unwrap());
        }
    });
    let (a, b) = (one.clone().trials(s1).unwrap(), two.clone().trials(s2).unwrap());
    assert_eq!(a.len(), 6);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (x.number, &x.params, x.value),
            (y.number, &y.params, y.value),
            "trial {}",
            x.number
        );
        assert_eq!(y.attempt, 1, "no trial ran twice");
    }
}

#[test]
fn asha_prunes_clearly_bad_learning_rates_at_the_first_rung() {
    assert!(!asha_prunes(1, 0.9, &[], 2, 1), "alone at a rung: keep");
    assert!(
        asha_prunes(1, 0.9, &[0.1, 0.2], 2, 1),
        "worse than the best half: prune"
    );
    assert!(!asha_prunes(1, 0.15, &[0.1, 0.2], 2, 1));
    assert!(
        !asha_prunes(3, 0.9, &[0.1, 0.2], 2, 1),
        "epoch 3 is no rung for min 1, η 2"
    );
    let cfg = config(
        "[params.learning_rate]\nchoices = [1e-2, 1e-9]\n",
        Strategy::Asha {
            trials: 10,
            reduction_factor: 2,
            min_epochs: 1,
        },
        4,
    );
    let mut store = MemoryStore::new();
    let study = enqueue_study(&mut store, &cfg).unwrap();
    run_worker(&mut store, study, &cfg, &data(), "w0", |_| {}).unwrap();
    let trials = store.trials(study).unwrap();
    let good_seen = |n: u64| {
        trials
            .iter()
            .filter(|t| t.number < n && t.params["learning_rate"].as_float() == Some(1e-2))
            .count()
    };
    let mut checked = 0;
    for t in &trials {
        if t.params["learning_rate"].as_float() == Some(1e-9) && good_seen(t.number) >= 2 {
            assert_eq!(t.state, TrialState::Pruned, "bad trial {} not pruned", t.number);
            assert_eq!(
                t.intermediate.len(),
                1,
                "bad trial {} should stop at the first rung",
                t.number
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "the seed should draw bad trials after good ones ({checked})"
    );
    assert!(trials.iter().any(|t| t.state == TrialState::Complete));
}

#[test]
fn a_failing_trial_is_recorded_and_the_study_goes_on() {
    // A step budget of 1 makes dopri5 fail in the first batch: the trial fails with the
    // solver's reason; the other trial completes.
    let cfg = config("[params.max_num_steps]\nchoices = [1, 10000]\n", Strategy::Grid, 1);
    let mut store = MemoryStore::new();
    let study = enqueue_study(&mut store, &cfg).unwrap();
    let outcomes = run_worker(&mut store, study, &cfg, &data(), "w0", |_| {}).unwrap();
    assert_eq!(outcomes.len(), 2);
    let trials = store.trials(study).unwrap();
    assert_eq!(trials[0].state, TrialState::Fail);
    let reason = trials[0].user_attrs["fail_reason"].as_str().unwrap();
    assert!(
        reason.contains("solver failed at epoch 1, batch 1") && reason.contains("maximum number of steps (1)"),
        "{reason}"
    );
    assert_eq!(trials[1].state, TrialState::Complete);
}

#[test]
fn the_study_definition_round_trips_through_the_store() {
    use ode_search::driver::{load_definition, save_definition};
    let mut cfg = config(
        "[params.latent_dim]\nchoices = [4, 8]\n",
        Strategy::Asha {
            trials: 7,
            reduction_factor: 3,
            min_epochs: 2,
        },
        4,
    );
    cfg.trial_timeout = Some(std::time::Duration::from_millis(12_500));
    let mut store = MemoryStore::new();
    let study = enqueue_study(&mut store, &cfg).unwrap();
    save_definition(
        &mut store,
        study,
        &cfg,
        &serde_json::json!({ "dataset": "five-channel" }),
    )
    .unwrap();
    let (back, data) = load_definition(&mut store, study, 1).unwrap();
    assert_eq!(back.strategy, cfg.strategy);
    assert_eq!(back.space, cfg.space);
    assert_eq!(back.base, cfg.base);
    assert_eq!((back.seed, back.max_attempts), (cfg.seed, cfg.max_attempts));
    assert_eq!(back.trial_timeout, cfg.trial_timeout);
    assert_eq!(data["dataset"], "five-channel");
    let other = store.open_study("other").unwrap();
    assert!(
        load_definition(&mut store, other, 1)
            .unwrap_err()
            .contains("no saved definition")
    );
}

#[test]
fn trials_carry_their_baselines_and_skill() {
    let mut cfg = config("[params.latent_dim]\nchoices = [4, 8]\n", Strategy::Grid, 2);
    cfg.base.season = Some(4);
    let mut store = MemoryStore::new();
    let study = enqueue_study(&mut store, &cfg).unwrap();
    run_worker(&mut store, study, &cfg, &data(), "w0", |_| {}).unwrap();
    // The baselines of the trials' data, computed here on their own.
    let ds = data()(&cfg.base.resolve(None).data).unwrap();
    let b = ode_train::baselines::for_dataset(&ds, Some(4)).unwrap();
    assert_eq!(b.windows, 16, "the capped validation windows");
    let trials = store.trials(study).unwrap();
    assert_eq!(trials.len(), 2);
    for t in &trials {
        let attr = |k: &str| t.user_attrs.get(k).and_then(|v| v.as_f64());
        for s in &b.scores {
            let got = attr(&format!("baseline_{}", s.baseline.key()));
            assert_eq!(got, Some(s.rmse), "{:?} of trial {}", s.baseline, t.number);
        }
        assert!(attr("baseline_seasonal_naive").is_some());
        assert_eq!(attr("baseline_linear_ar_lambda"), Some(b.ridge_lambda));
        let skill = attr("skill").expect("skill");
        let want = 1.0 - t.value.unwrap() / b.persistence().unwrap();
        assert!((skill - want).abs() < 1e-12, "{skill} vs {want}");
    }
    let best = best_config_toml(&cfg, &trials).unwrap();
    assert!(best.contains("season = 4"), "the best config keeps the season:\n{best}");
}
