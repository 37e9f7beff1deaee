//! The SQLite study store: parameters round-trip, claims are exclusive across connections,
//! leases expire and fence the old worker, and Optuna reads (and writes) what we store.
//!
//! The Optuna check needs a Python with Optuna (`pip install -r
//! crates/ode-search/tests/optuna-requirements.txt`): `ODE_OPTUNA_PYTHON` names it, else
//! `python3` is tried. Without one the check prints "SKIPPED (no optuna)", unless
//! `ODE_REQUIRE_OPTUNA=1`, which makes it fail.

use ode_search::optuna::{ALEMBIC_REVISION, ATTEMPT_ATTR, OPTUNA_SCHEMA_VERSION, OPTUNA_VERSION, WORKER_ATTR};
use ode_search::store::{ParamDistribution, StoreError, StudyStore, TrialState};
use ode_search::{Params, SqliteStore, drop_inactive};
use rusqlite::Connection;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;
use toml::Value;

fn pair(a: f64, b: f64) -> Value {
    Value::Array(vec![Value::Float(a), Value::Float(b)])
}

/// A space with every distribution kind, as the search driver hands it to the store.
fn dists() -> BTreeMap<String, ParamDistribution> {
    let mut d = BTreeMap::new();
    d.insert(
        "latent_dim".into(),
        ParamDistribution::Categorical(vec![Value::Integer(16), Value::Integer(32), Value::Integer(64)]),
    );
    d.insert(
        "solver".into(),
        ParamDistribution::Categorical(["euler", "rk4", "dopri5"].map(|s| Value::String(s.into())).to_vec()),
    );
    d.insert(
        "tolerances".into(),
        ParamDistribution::Categorical(vec![pair(1e-3, 1e-4), pair(1e-4, 1e-5), pair(1e-5, 1e-6)]),
    );
    d.insert(
        "adjoint".into(),
        ParamDistribution::Categorical(vec![Value::Boolean(false), Value::Boolean(true)]),
    );
    d.insert(
        "dt".into(),
        ParamDistribution::Categorical(vec![Value::Float(0.05), Value::Float(0.1)]),
    );
    d.insert(
        "features".into(),
        ParamDistribution::Categorical(vec![
            Value::Array(vec![Value::String("x".into())]),
            Value::Array(vec![Value::String("x".into()), Value::String("y".into())]),
        ]),
    );
    d.insert(
        "hidden_dim".into(),
        ParamDistribution::Int {
            low: 32,
            high: 128,
            step: 32,
            log: false,
        },
    );
    d.insert(
        "batch_size".into(),
        ParamDistribution::Int {
            low: 8,
            high: 64,
            step: 1,
            log: true,
        },
    );
    d.insert(
        "learning_rate".into(),
        ParamDistribution::Float {
            low: 1e-4,
            high: 1e-3,
            log: true,
        },
    );
    d.insert(
        "gradient_clip".into(),
        ParamDistribution::Float {
            low: 0.5,
            high: 2.0,
            log: false,
        },
    );
    d
}

/// Trial `k`'s parameters in [`dists`] (plus `epochs`, a fixed value with no distribution).
fn params(k: usize) -> Params {
    let d = dists();
    let mut p = Params::new();
    for (name, dist) in &d {
        let v = match dist {
            ParamDistribution::Categorical(c) => c[k % c.len()].clone(),
            ParamDistribution::Int { low, high, step, .. } => {
                let n = (high - low) / step + 1;
                Value::Integer(low + (k as i64 % n) * step)
            }
            ParamDistribution::Float { low, high, .. } => {
                Value::Float(low + (high - low) * ((k % 7) as f64 / 7.0 + 1e-3 * k as f64).min(1.0))
            }
        };
        p.insert(name.clone(), v);
    }
    p.insert("epochs".into(), Value::Integer(5));
    // Conditional parameters, as the strategies draw them: fixed-step solvers have no tolerances.
    drop_inactive(&mut p);
    p
}

fn store(path: &Path) -> SqliteStore {
    SqliteStore::open(path).expect("store opens")
}

fn db_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("study.db");
    (dir, path)
}

fn by_number(s: &mut SqliteStore, study: i64) -> BTreeMap<u64, ode_search::store::TrialRecord> {
    s.trials(study).unwrap().into_iter().map(|t| (t.number, t)).collect()
}

#[test]
fn a_new_file_has_optunas_schema_version_and_wal_mode() {
    let (_dir, path) = db_file();
    drop(store(&path));
    let conn = Connection::open(&path).unwrap();
    let tables: BTreeSet<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected: BTreeSet<String> = [
        "alembic_version",
        "studies",
        "study_directions",
        "study_system_attributes",
        "study_user_attributes",
        "trial_heartbeats",
        "trial_intermediate_values",
        "trial_params",
        "trial_system_attributes",
        "trial_user_attributes",
        "trial_values",
        "trials",
        "version_info",
    ]
    .map(String::from)
    .into();
    assert_eq!(tables, expected);
    let rev: String = conn
        .query_row("SELECT version_num FROM alembic_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rev, ALEMBIC_REVISION);
    let (schema, lib): (i64, String) = conn
        .query_row("SELECT schema_version, library_version FROM version_info", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((schema, lib.as_str()), (OPTUNA_SCHEMA_VERSION, OPTUNA_VERSION));
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    // IF NOT EXISTS is not kept in the schema text, which reads as Optuna's.
    let sql: String = conn
        .query_row("SELECT sql FROM sqlite_master WHERE name = 'trials'", [], |r| r.get(0))
        .unwrap();
    assert!(sql.starts_with("CREATE TABLE trials ("), "{sql}");

    // Reopening is a no-op; a file of another Optuna schema revision is refused.
    drop(store(&path));
    conn.execute("UPDATE alembic_version SET version_num = 'v3.0.0.d'", [])
        .unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("v3.0.0.d"), "{err}");
}

#[test]
fn studies_open_idempotently_and_minimise() {
    let (_dir, path) = db_file();
    let mut s = store(&path);
    let a = s.open_study("alpha").unwrap();
    let b = s.open_study("beta").unwrap();
    assert_ne!(a, b);
    assert_eq!(s.open_study("alpha").unwrap(), a);
    assert_eq!(s.study_names().unwrap(), vec!["alpha".to_string(), "beta".to_string()]);
    let conn = Connection::open(&path).unwrap();
    let dirs: Vec<(i64, String, i64)> = conn
        .prepare("SELECT study_id, direction, objective FROM study_directions ORDER BY study_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(dirs, vec![(a, "MINIMIZE".into(), 0), (b, "MINIMIZE".into(), 0)]);
    // Unknown study ids are errors, not silent empty studies.
    assert!(s.trials(a + b + 100).is_err());
    assert!(s.claim(a + b + 100, "w", 60.0, 3).is_err());
    // Study attributes are JSON values in study_user_attributes, last write wins.
    s.set_study_attr(a, "definition", &serde_json::json!({"space": "x", "trials": 3}))
        .unwrap();
    s.set_study_attr(a, "definition", &serde_json::json!({"space": "y", "trials": 4}))
        .unwrap();
    s.set_study_attr(a, "seed", &serde_json::json!(7)).unwrap();
    let attrs = s.study_attrs(a).unwrap();
    assert_eq!(attrs["definition"], serde_json::json!({"space": "y", "trials": 4}));
    assert_eq!(attrs["seed"], serde_json::json!(7));
    assert!(s.study_attrs(b).unwrap().is_empty());
}

#[test]
fn studies_name_their_objective_val_rmse_unless_already_named() {
    let (_dir, path) = db_file();
    let mut s = store(&path);
    let a = s.open_study("alpha").unwrap();
    let b = s.open_study("beta").unwrap();
    let conn = Connection::open(&path).unwrap();
    let names = |id: i64| -> Vec<String> {
        conn.prepare(
            "SELECT value_json FROM study_system_attributes WHERE study_id = ?1 AND key = 'study:metric_names'",
        )
        .unwrap()
        .query_map([id], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    assert_eq!(names(a), vec![r#"["val_rmse"]"#.to_string()]);
    // A study from before the label gets it when opened again; one Optuna named keeps its name.
    conn.execute("DELETE FROM study_system_attributes WHERE study_id = ?1", [a])
        .unwrap();
    conn.execute(
        "UPDATE study_system_attributes SET value_json = '[\"loss\"]' WHERE study_id = ?1",
        [b],
    )
    .unwrap();
    assert_eq!(s.open_study("alpha").unwrap(), a);
    assert_eq!(s.open_study("beta").unwrap(), b);
    assert_eq!(names(a), vec![r#"["val_rmse"]"#.to_string()]);
    assert_eq!(names(b), vec![r#"["loss"]"#.to_string()]);
}

#[test]
fn params_of_every_distribution_kind_round_trip() {
    let (_dir, path) = db_file();
    let mut s = store(&path);
    let study = s.open_study("rt").unwrap();
    let d = dists();
    for k in 0..12 {
        s.enqueue(study, k as u64, &params(k), &d).unwrap();
    }
    // Read back while waiting, through a fresh connection, and when claimed.
    let mut other = store(&path);
    let waiting = by_number(&mut other, study);
    for k in 0..12 {
        assert_eq!(waiting[&(k as u64)].params, params(k), "trial {k} waiting");
        assert_eq!(waiting[&(k as u64)].state, TrialState::Waiting);
        assert_eq!(waiting[&(k as u64)].attempt, 0);
    }
    for k in 0..12 {
        let c = s.claim(study, "w", 60.0, 3).unwrap().unwrap();
        assert_eq!(c.number, k as u64);
        assert_eq!(c.params, params(k), "trial {k} claimed");
    }

    // The stored form is Optuna's: indices for categoricals, tolerance pairs as strings.
    let conn = Connection::open(&path).unwrap();
    let row = |name: &str, number: i64| -> (f64, String) {
        conn.query_row(
            "SELECT p.param_value, p.distribution_json FROM trial_params p JOIN trials t ON t.trial_id = p.trial_id \
             WHERE t.number = ?1 AND p.param_name = ?2",
            rusqlite::params![number, name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let rows_of = |name: &str, number: i64| -> i64 {
        conn.query_row(
            "SELECT COUNT(*) FROM trial_params p JOIN trials t ON t.trial_id = p.trial_id \
             WHERE t.number = ?1 AND p.param_name = ?2",
            rusqlite::params![number, name],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(
        rows_of("tolerances", 1),
        0,
        "rk4's trial has no row for a conditional parameter"
    );
    assert_eq!(
        row("tolerances", 2),
        (
            2.0,
            r#"{"name": "CategoricalDistribution", "attributes": {"choices": ["[0.001, 0.0001]", "[0.0001, 0.00001]", "[0.00001, 0.000001]"]}}"#
                .into()
        )
    );
    assert_eq!(
        row("latent_dim", 2),
        (
            2.0,
            r#"{"name": "CategoricalDistribution", "attributes": {"choices": [16, 32, 64]}}"#.into()
        )
    );
    assert_eq!(
        row("hidden_dim", 3),
        (
            128.0,
            r#"{"name": "IntDistribution", "attributes": {"log": false, "step": 32, "low": 32, "high": 128}}"#.into()
        )
    );
    assert_eq!(
        row("batch_size", 0).1,
        r#"{"name": "IntDistribution", "attributes": {"log": true, "step": 1, "low": 8, "high": 64}}"#
    );
    assert_eq!(
        row("learning_rate", 0),
        (
            1e-4,
            r#"{"name": "FloatDistribution", "attributes": {"step": null, "low": 0.0001, "high": 0.001, "log": true}}"#
                .into()
        )
    );
    assert_eq!(
        row("epochs", 0),
        (
            0.0,
            r#"{"name": "CategoricalDistribution", "attributes": {"choices": [5]}}"#.into()
        )
    );
    let fixed: String = conn
        .query_row(
            "SELECT a.value_json FROM trial_system_attributes a JOIN trials t ON t.trial_id = a.trial_id \
             WHERE t.number = 1 AND a.\"key\" = 'fixed_params'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let fixed: serde_json::Value = serde_json::from_str(&fixed).unwrap();
    assert_eq!(fixed.get("tolerances"), None, "rk4's trial has no tolerances");
    assert_eq!(fixed["features"], serde_json::json!("[\"x\", \"y\"]"));
    assert_eq!(fixed["hidden_dim"], serde_json::json!(64));
}

#[test]
fn values_that_cannot_be_stored_faithfully_are_refused() {
    let (_dir, path) = db_file();
    let mut s = store(&path);
    let study = s.open_study("bad").unwrap();
    let mut d = BTreeMap::new();
    let mut p = Params::new();
    // A string choice that would read back as an array.
    d.insert(
        "solver".into(),
        ParamDistribution::Categorical(vec![Value::String("[1, 2]".into()), Value::String("rk4".into())]),
    );
    p.insert("solver".into(), Value::String("rk4".into()));
    assert!(matches!(s.enqueue(study, 0, &p, &d), Err(StoreError::Backend { .. })));
    // A value that is not among its choices.
    d.insert(
        "solver".into(),
        ParamDistribution::Categorical(vec![Value::String("rk4".into())]),
    );
    p.insert("solver".into(), Value::String("euler".into()));
    assert!(s.enqueue(study, 0, &p, &d).is_err());
    // A float for an integer range.
    d.clear();
    d.insert(
        "hidden_dim".into(),
        ParamDistribution::Int {
            low: 1,
            high: 4,
            step: 1,
            log: false,
        },
    );
    p.clear();
    p.insert("hidden_dim".into(), Value::Float(2.0));
    assert!(s.enqueue(study, 0, &p, &d).is_err());
    assert!(s.trials(study).unwrap().is_empty(), "nothing half-written");
}

#[test]
fn enqueue_is_idempotent_by_number() {
    let (_dir, path) = db_file();
    let mut s = store(&path);
    let study = s.open_study("idem").unwrap();
    let other = s.open_study("other").unwrap();
    let d = dists();
    s.enqueue(study, 0, &params(0), &d).unwrap();
    s.enqueue(study, 0, &params(1), &d).unwrap();
    s.enqueue(study, 1, &params(1), &d).unwrap();
    s.enqueue(other, 0, &params(2), &d).unwrap();
    let t = s.trials(study).unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].params, params(0), "the first enqueue wins");
    assert_eq!(s.trials(other).unwrap().len(), 1);
    // Also once the trial has finished.
    let c = s.claim(study, "w", 60.0, 3).unwrap().unwrap();
    s.finish(c.trial_id, c.attempt, TrialState::Complete, Some(1.0))
        .unwrap();
    s.enqueue(study, 0, &params(0), &d).unwrap();
    let t = s.trials(study).unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].state, TrialState::Complete);
}

#[test]
fn claims_take_the_lowest_waiting_number_and_record_the_worker() {
    let (_dir, path) = db_file();
    let mut s = store(&path);
    let study = s.open_study("order").unwrap();
    let d = dists();
    for k in [3u64, 1, 4, 0, 2] {
        s.enqueue(study, k, &params(k as usize), &d).unwrap();
    }
    let mut got = Vec::new();
    while let Some(c) = s.claim(study, &format!("worker-{}", got.len()), 60.0, 3).unwrap() {
        assert_eq!(c.attempt, 1);
        got.push(c.number);
    }
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    let t = by_number(&mut s, study);
    assert!(t.values().all(|t| t.state == TrialState::Running && t.attempt == 1));
    let conn = Connection::open(&path).unwrap();
    let (worker, attempt, start): (String, String, Option<String>) = conn
        .query_row(
            "SELECT w.value_json, a.value_json, t.datetime_start FROM trials t \
             JOIN trial_system_attributes w ON w.trial_id = t.trial_id AND w.\"key\" = ?1 \
             JOIN trial_system_attributes a ON a.trial_id = t.trial_id AND a.\"key\" = ?2 WHERE t.number = 2",
            rusqlite::params![WORKER_ATTR, ATTEMPT_ATTR],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((worker.as_str(), attempt.as_str()), ("\"worker-2\"", "1"));
    let start = start.expect("a running trial has a start time");
    assert!(
        chrono::NaiveDateTime::parse_from_str(&start, "%Y-%m-%d %H:%M:%S%.6f").is_ok(),
        "{start}"
    );
    let beats: i64 = conn
        .query_row("SELECT COUNT(*) FROM trial_heartbeats", [], |r| r.get(0))
        .unwrap();
    assert_eq!(beats, 5);
}

#[test]
fn concurrent_workers_never_claim_a_trial_twice() {
    const WORKERS: usize = 8;
    const TRIALS: usize = 160;
    let (_dir, path) = db_file();
    let study = {
        let mut s = store(&path);
        let study = s.open_study("race").unwrap();
        let d = dists();
        for k in 0..TRIALS {
            s.enqueue(study, k as u64, &params(k), &d).unwrap();
        }
        study
    };
    let claimed = Arc::new(Mutex::new(Vec::new()));
    let start = Arc::new(Barrier::new(WORKERS));
    let handles: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (path, claimed, start) = (path.clone(), claimed.clone(), start.clone());
            thread::spawn(move || {
                let mut s = store(&path);
                start.wait();
                let name = format!("w{w}");
                while let Some(c) = s.claim(study, &name, 60.0, 3).unwrap() {
                    assert_eq!(c.params, params(c.number as usize));
                    thread::sleep(Duration::from_millis(2)); // "training", so the others get turns
                    s.report(c.trial_id, c.attempt, 0, c.number as f64).unwrap();
                    s.finish(c.trial_id, c.attempt, TrialState::Complete, Some(c.number as f64))
                        .unwrap();
                    claimed.lock().unwrap().push((c.number, w));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker thread");
    }
    let claimed = claimed.lock().unwrap();
    let mut numbers: Vec<u64> = claimed.iter().map(|c| c.0).collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (0..TRIALS as u64).collect::<Vec<_>>(),
        "each trial exactly once"
    );
    let workers: BTreeSet<usize> = claimed.iter().map(|c| c.1).collect();
    assert!(workers.len() > 1, "the work was shared");
    let t = store(&path).trials(study).unwrap();
    assert!(
        t.iter()
            .all(|t| t.state == TrialState::Complete && t.attempt == 1 && t.value == Some(t.number as f64))
    );
}

#[test]
fn concurrent_first_opens_create_one_schema_and_one_study() {
    const WORKERS: usize = 8;
    let (_dir, path) = db_file();
    let start = Arc::new(Barrier::new(WORKERS));
    let ids: Vec<i64> = (0..WORKERS)
        .map(|_| {
            let (path, start) = (path.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let mut s = store(&path);
                let study = s.open_study("shared").unwrap();
                let d = dists();
                for k in 0..20 {
                    s.enqueue(study, k, &params(k as usize), &d).unwrap();
                }
                study
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]));
    let mut s = store(&path);
    assert_eq!(s.study_names().unwrap(), vec!["shared".to_string()]);
    assert_eq!(s.trials(ids[0]).unwrap().len(), 20);
    let conn = Connection::open(&path).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM alembic_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn an_expired_lease_requeues_the_trial_and_fences_the_old_attempt() {
    let (_dir, path) = db_file();
    let mut a = store(&path);
    let mut b = store(&path);
    let study = a.open_study("lease").unwrap();
    a.enqueue(study, 0, &params(0), &dists()).unwrap();
    let first = a.claim(study, "a", 30.0, 3).unwrap().unwrap();
    a.report(first.trial_id, first.attempt, 0, 2.0).unwrap();
    // A live lease is respected.
    assert!(b.claim(study, "b", 30.0, 3).unwrap().is_none());
    thread::sleep(Duration::from_millis(300));
    let second = b
        .claim(study, "b", 0.1, 3)
        .unwrap()
        .expect("re-queued and claimed again");
    assert_eq!((second.trial_id, second.attempt), (first.trial_id, 2));
    assert_eq!(second.params, params(0));
    let fenced = |r: Result<(), StoreError>| match r {
        Err(StoreError::Fenced {
            trial_id,
            attempt,
            current,
        }) => assert_eq!((trial_id, attempt, current), (first.trial_id, 1, 2)),
        other => panic!("expected Fenced, got {other:?}"),
    };
    fenced(a.heartbeat(first.trial_id, 1));
    fenced(a.report(first.trial_id, 1, 1, 1.0));
    fenced(a.set_attr(first.trial_id, 1, "k", &serde_json::json!(1)));
    fenced(a.finish(first.trial_id, 1, TrialState::Complete, Some(1.0)));
    // The new holder works normally.
    b.heartbeat(second.trial_id, 2).unwrap();
    b.report(second.trial_id, 2, 0, 1.5).unwrap();
    b.finish(second.trial_id, 2, TrialState::Complete, Some(1.5)).unwrap();
    let t = &a.trials(study).unwrap()[0];
    assert_eq!((t.state, t.value, t.attempt), (TrialState::Complete, Some(1.5), 2));
    assert_eq!(t.intermediate, BTreeMap::from([(0, 1.5)]));
}

#[test]
fn heartbeats_keep_the_lease() {
    let (_dir, path) = db_file();
    let mut a = store(&path);
    let mut b = store(&path);
    let study = a.open_study("beat").unwrap();
    a.enqueue(study, 0, &params(0), &dists()).unwrap();
    let c = a.claim(study, "a", 0.8, 3).unwrap().unwrap();
    for _ in 0..8 {
        thread::sleep(Duration::from_millis(150));
        a.heartbeat(c.trial_id, c.attempt).unwrap();
    }
    // 1.2 s since the claim, but the last heartbeat is fresh.
    assert!(b.claim(study, "b", 0.8, 3).unwrap().is_none(), "lease renewed");
    assert_eq!(a.trials(study).unwrap()[0].state, TrialState::Running);
    // Without heartbeats the same lease runs out.
    thread::sleep(Duration::from_millis(1000));
    let again = b.claim(study, "b", 0.8, 3).unwrap().expect("lease expired");
    assert_eq!((again.trial_id, again.attempt), (c.trial_id, 2));
    assert_eq!(a.trials(study).unwrap()[0].state, TrialState::Running);
}

#[test]
fn a_requeued_trial_returns_to_its_worker_if_it_writes_before_another_claim() {
    let (_dir, path) = db_file();
    let mut a = store(&path);
    let mut b = store(&path);
    let study = a.open_study("revive").unwrap();
    a.enqueue(study, 0, &params(0), &dists()).unwrap();
    a.enqueue(study, 1, &params(1), &dists()).unwrap();
    let c0 = a.claim(study, "a", 30.0, 3).unwrap().unwrap();
    let c1 = a.claim(study, "a", 30.0, 3).unwrap().unwrap();
    thread::sleep(Duration::from_millis(400));
    // b's claim re-queues both and takes trial 0; trial 1 waits, still at attempt 1.
    let c0b = b.claim(study, "b", 0.2, 3).unwrap().unwrap();
    assert_eq!((c0b.number, c0b.attempt), (0, 2));
    assert!(matches!(
        a.heartbeat(c0.trial_id, c0.attempt),
        Err(StoreError::Fenced { .. })
    ));
    let t = by_number(&mut a, study);
    assert_eq!((t[&1].state, t[&1].attempt), (TrialState::Waiting, 1));
    // Its worker was only slow: its next write takes the trial back.
    a.report(c1.trial_id, c1.attempt, 0, 1.0).unwrap();
    let t = by_number(&mut a, study);
    assert_eq!(
        (t[&1].state, t[&1].attempt),
        (TrialState::Running, 1),
        "revived by its own worker"
    );
    assert!(b.claim(study, "b", 60.0, 3).unwrap().is_none());
    a.finish(c1.trial_id, c1.attempt, TrialState::Pruned, None).unwrap();
    assert_eq!(by_number(&mut a, study)[&1].state, TrialState::Pruned);
}

#[test]
fn a_trial_that_loses_its_worker_max_attempts_times_fails_with_the_reason() {
    let (_dir, path) = db_file();
    let mut s = store(&path);
    let study = s.open_study("lost").unwrap();
    s.enqueue(study, 0, &params(0), &dists()).unwrap();
    let first = s.claim(study, "a", 0.1, 2).unwrap().unwrap();
    thread::sleep(Duration::from_millis(250));
    let second = s.claim(study, "b", 0.1, 2).unwrap().unwrap();
    assert_eq!((second.trial_id, second.attempt), (first.trial_id, 2));
    thread::sleep(Duration::from_millis(250));
    assert!(s.claim(study, "c", 0.1, 2).unwrap().is_none());
    let t = &s.trials(study).unwrap()[0];
    assert_eq!((t.state, t.attempt, t.value), (TrialState::Fail, 2, None));
    assert_eq!(
        t.user_attrs["fail_reason"],
        serde_json::json!("lost its worker 2 times")
    );
    // A failed trial is closed to its last holder too.
    assert!(matches!(
        s.finish(second.trial_id, 2, TrialState::Complete, Some(1.0)),
        Err(StoreError::Fenced { .. })
    ));
    let conn = Connection::open(&path).unwrap();
    let complete: Option<String> = conn
        .query_row(
            "SELECT datetime_complete FROM trials WHERE trial_id = ?1",
            [first.trial_id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(complete.is_some());
}

#[test]
fn intermediate_values_are_idempotent_per_step() {
    let (_dir, path) = db_file();
    let mut s = store(&path);
    let study = s.open_study("steps").unwrap();
    s.enqueue(study, 0, &params(0), &dists()).unwrap();
    let c = s.claim(study, "a", 60.0, 3).unwrap().unwrap();
    s.report(c.trial_id, c.attempt, 0, 3.0).unwrap();
    s.report(c.trial_id, c.attempt, 1, 2.0).unwrap();
    s.report(c.trial_id, c.attempt, 1, 2.0).unwrap();
    s.report(c.trial_id, c.attempt, 0, 2.5).unwrap();
    s.report(c.trial_id, c.attempt, 2, f64::INFINITY).unwrap();
    s.report(c.trial_id, c.attempt, 3, f64::NAN).unwrap();
    let t = &s.trials(study).unwrap()[0];
    assert_eq!(t.intermediate.len(), 4);
    assert_eq!((t.intermediate[&0], t.intermediate[&1]), (2.5, 2.0));
    assert_eq!(t.intermediate[&2], f64::INFINITY);
    assert!(t.intermediate[&3].is_nan());
    let conn = Connection::open(&path).unwrap();
    let rows: Vec<(i64, Option<f64>, String)> = conn
        .prepare(
            "SELECT step, intermediate_value, intermediate_value_type FROM trial_intermediate_values ORDER BY step",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows,
        vec![
            (0, Some(2.5), "FINITE".into()),
            (1, Some(2.0), "FINITE".into()),
            (2, None, "INF_POS".into()),
            (3, None, "NAN".into()),
        ]
    );
}

#[test]
fn finishing_sets_state_value_and_completion_time() {
    let (_dir, path) = db_file();
    let mut s = store(&path);
    let study = s.open_study("finish").unwrap();
    for k in 0..4 {
        s.enqueue(study, k, &params(k as usize), &dists()).unwrap();
    }
    let c: Vec<_> = (0..4).map(|_| s.claim(study, "a", 60.0, 3).unwrap().unwrap()).collect();
    // Invalid finishes change nothing.
    assert!(s.finish(c[0].trial_id, 1, TrialState::Complete, None).is_err());
    assert!(
        s.finish(c[0].trial_id, 1, TrialState::Complete, Some(f64::NAN))
            .is_err()
    );
    assert!(s.finish(c[0].trial_id, 1, TrialState::Running, Some(1.0)).is_err());
    assert!(matches!(
        s.finish(c[0].trial_id, 0, TrialState::Complete, Some(1.0)),
        Err(StoreError::Fenced { .. })
    ));
    s.set_attr(c[0].trial_id, 1, "train_seconds", &serde_json::json!(1.25))
        .unwrap();
    s.set_attr(c[0].trial_id, 1, "train_seconds", &serde_json::json!(2.5))
        .unwrap();
    s.finish(c[0].trial_id, 1, TrialState::Complete, Some(0.75)).unwrap();
    s.finish(c[1].trial_id, 1, TrialState::Pruned, None).unwrap();
    s.set_attr(c[2].trial_id, 1, "fail_reason", &serde_json::json!("non-finite loss"))
        .unwrap();
    s.finish(c[2].trial_id, 1, TrialState::Fail, Some(9.0)).unwrap();
    s.finish(c[3].trial_id, 1, TrialState::Complete, Some(f64::INFINITY))
        .unwrap();
    // Finished trials are closed, even to their holder.
    assert!(matches!(
        s.report(c[0].trial_id, 1, 5, 1.0),
        Err(StoreError::Fenced { .. })
    ));
    assert!(matches!(
        s.finish(c[0].trial_id, 1, TrialState::Complete, Some(0.5)),
        Err(StoreError::Fenced { .. })
    ));
    let t = s.trials(study).unwrap();
    assert_eq!((t[0].state, t[0].value), (TrialState::Complete, Some(0.75)));
    assert_eq!(t[0].user_attrs["train_seconds"], serde_json::json!(2.5));
    assert_eq!((t[1].state, t[1].value), (TrialState::Pruned, None));
    assert_eq!(
        (t[2].state, t[2].value),
        (TrialState::Fail, None),
        "Optuna keeps no value for FAIL"
    );
    assert_eq!(t[2].user_attrs["fail_reason"], serde_json::json!("non-finite loss"));
    assert_eq!((t[3].state, t[3].value), (TrialState::Complete, Some(f64::INFINITY)));
    let conn = Connection::open(&path).unwrap();
    type Row = (String, Option<String>, Option<f64>, Option<String>);
    let rows: Vec<Row> = conn
        .prepare(
            "SELECT t.state, t.datetime_complete, v.value, v.value_type FROM trials t \
             LEFT JOIN trial_values v ON v.trial_id = t.trial_id ORDER BY t.number",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        rows.iter().all(|r| r.1.is_some()),
        "every finished trial has a completion time"
    );
    let short: Vec<_> = rows.into_iter().map(|r| (r.0, r.2, r.3)).collect();
    assert_eq!(
        short,
        vec![
            ("COMPLETE".into(), Some(0.75), Some("FINITE".into())),
            ("PRUNED".into(), None, None),
            ("FAIL".into(), None, None),
            ("COMPLETE".into(), None, Some("INF_POS".into())),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Optuna reads what we write.

const OPTUNA_CHECK: &str = r#"
import json, math, sqlite3, sys
import optuna
from optuna.distributions import (CategoricalDistribution, FloatDistribution, IntDistribution,
                                  distribution_to_json, json_to_distribution)

path, name, fresh = sys.argv[1], sys.argv[2], sys.argv[3]
optuna.logging.set_verbosity(optuna.logging.WARNING)

def num(x):
    return x if x is None or math.isfinite(x) else repr(x)

out = {"version": optuna.__version__, "problems": []}

# 1. Our schema is Optuna's: compare with a storage Optuna makes itself.
optuna.storages.RDBStorage("sqlite:///" + fresh)
def layout(p):
    con = sqlite3.connect(p)
    tables = sorted(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    res = {}
    for t in tables:
        cols = [tuple(r) for r in con.execute(f'PRAGMA table_info("{t}")')]
        idx = sorted((r[1], r[2], tuple(c[2] for c in con.execute(f'PRAGMA index_info("{r[1]}")')))
                     for r in con.execute(f'PRAGMA index_list("{t}")'))
        sql = " ".join(con.execute("SELECT sql FROM sqlite_master WHERE name = ?", (t,)).fetchone()[0].split())
        res[t] = (cols, idx, sql)
    res["alembic_version"] = (res["alembic_version"], con.execute("SELECT * FROM alembic_version").fetchall())
    res["version_info"] = (res["version_info"], con.execute("SELECT schema_version FROM version_info").fetchall())
    return res
ours, theirs = layout(path), layout(fresh)
if ours != theirs:
    for t in sorted(set(ours) | set(theirs)):
        if ours.get(t) != theirs.get(t):
            out["problems"].append(f"table {t}: ours {ours.get(t)} != optuna's {theirs.get(t)}")

# 2. Every distribution_json is byte for byte what Optuna writes.
con = sqlite3.connect(path)
for pname, dj in con.execute("SELECT param_name, distribution_json FROM trial_params"):
    again = distribution_to_json(json_to_distribution(dj))
    if again != dj:
        out["problems"].append(f"{pname}: distribution_json {dj} != optuna's {again}")
con.close()

# 3. The study as Optuna sees it.
study = optuna.load_study(study_name=name, storage="sqlite:///" + path)
out["direction"] = study.direction.name
out["metric_names"] = study.metric_names
trials = []
for t in study.trials:
    try:
        t._validate()
    except Exception as e:
        out["problems"].append(f"trial {t.number} invalid: {e}")
    trials.append({
        "number": t.number,
        "state": t.state.name,
        "params": t.params,
        "value": num(t.value),
        "intermediate": {str(k): num(v) for k, v in sorted(t.intermediate_values.items())},
        "user_attrs": t.user_attrs,
    })
out["trials"] = trials
out["best"] = {"number": study.best_trial.number, "value": study.best_value}

# 4. An Optuna worker runs our waiting trial with the parameters we gave it.
waiting = [t for t in study.trials if t.state.name == "WAITING"]
dists = waiting[0].distributions
seen = {}
def objective(trial):
    for k, d in dists.items():
        if isinstance(d, CategoricalDistribution):
            seen[k] = trial.suggest_categorical(k, d.choices)
        elif isinstance(d, IntDistribution):
            seen[k] = trial.suggest_int(k, d.low, d.high, step=d.step, log=d.log)
        else:
            seen[k] = trial.suggest_float(k, d.low, d.high, log=d.log)
    trial.report(0.125, 0)
    return 0.125
study.optimize(objective, n_trials=1)
out["optimized"] = {"number": study.trials[-1].number, "params": seen}
print(json.dumps(out))
"#;

fn optuna_python() -> Option<String> {
    let works = |py: &str| {
        Command::new(py)
            .args(["-c", "import optuna"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    match std::env::var("ODE_OPTUNA_PYTHON") {
        Ok(py) if !py.is_empty() => works(&py).then_some(py),
        _ => works("python3").then(|| "python3".to_string()),
    }
}

/// What Optuna shows as a parameter value: categorical choices we store as strings show as
/// those strings.
fn external(v: &Value) -> serde_json::Value {
    match v {
        Value::String(s) => s.clone().into(),
        Value::Integer(i) => (*i).into(),
        Value::Float(f) => (*f).into(),
        Value::Boolean(b) => (*b).into(),
        other => other.to_string().into(),
    }
}

#[test]
fn optuna_loads_the_study_we_write() {
    let Some(python) = optuna_python() else {
        let msg = "optuna_loads_the_study_we_write: SKIPPED (no optuna) — set ODE_OPTUNA_PYTHON to a python \
                   with `pip install -r crates/ode-search/tests/optuna-requirements.txt`";
        if std::env::var("ODE_REQUIRE_OPTUNA").as_deref() == Ok("1") {
            panic!(
                "ODE_REQUIRE_OPTUNA=1 but no python with optuna was found: set ODE_OPTUNA_PYTHON to a python \
                 with `pip install -r crates/ode-search/tests/optuna-requirements.txt`"
            );
        }
        // Straight to the process's stderr, past the test harness's capture, so it shows.
        let _ = writeln!(std::io::stderr(), "\n********** {msg} **********\n");
        println!("{msg}");
        return;
    };
    let (dir, path) = db_file();
    let mut s = store(&path);
    let study = s.open_study("ode-check").unwrap();
    s.open_study("another").unwrap();
    let d = dists();
    for k in 0..4 {
        s.enqueue(study, k, &params(k as usize), &d).unwrap();
    }
    let c: Vec<_> = (0..4).map(|_| s.claim(study, "w", 60.0, 3).unwrap().unwrap()).collect();
    s.report(c[0].trial_id, 1, 0, 0.9).unwrap();
    s.report(c[0].trial_id, 1, 1, 0.5).unwrap();
    s.set_attr(c[0].trial_id, 1, "train_seconds", &serde_json::json!(1.5))
        .unwrap();
    s.finish(c[0].trial_id, 1, TrialState::Complete, Some(0.5)).unwrap();
    s.report(c[1].trial_id, 1, 0, 1.2).unwrap();
    s.report(c[1].trial_id, 1, 1, f64::NAN).unwrap();
    s.finish(c[1].trial_id, 1, TrialState::Pruned, None).unwrap();
    s.report(c[2].trial_id, 1, 0, f64::INFINITY).unwrap();
    s.set_attr(c[2].trial_id, 1, "fail_reason", &serde_json::json!("non-finite loss"))
        .unwrap();
    s.finish(c[2].trial_id, 1, TrialState::Fail, None).unwrap();
    s.report(c[3].trial_id, 1, 0, 0.6).unwrap();
    s.report(c[3].trial_id, 1, 1, 0.25).unwrap();
    s.finish(c[3].trial_id, 1, TrialState::Complete, Some(0.25)).unwrap();
    s.enqueue(study, 4, &params(4), &d).unwrap();

    let script = dir.path().join("check.py");
    std::fs::write(&script, OPTUNA_CHECK).unwrap();
    let fresh = dir.path().join("fresh.db");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&path)
        .arg("ode-check")
        .arg(&fresh)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "optuna check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the script prints JSON");
    eprintln!("optuna {} read the study", got["version"]);
    assert_eq!(got["problems"], serde_json::json!([]), "{got:#}");
    assert_eq!(got["direction"], "MINIMIZE");
    assert_eq!(
        got["metric_names"],
        serde_json::json!(["val_rmse"]),
        "the objective's name"
    );

    let want_params =
        |k: usize| serde_json::Value::Object(params(k).iter().map(|(n, v)| (n.clone(), external(v))).collect());
    let trials = got["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 5);
    let expect = [
        (
            "COMPLETE",
            serde_json::json!(0.5),
            serde_json::json!({"0": 0.9, "1": 0.5}),
        ),
        (
            "PRUNED",
            serde_json::json!(null),
            serde_json::json!({"0": 1.2, "1": "nan"}),
        ),
        ("FAIL", serde_json::json!(null), serde_json::json!({"0": "inf"})),
        (
            "COMPLETE",
            serde_json::json!(0.25),
            serde_json::json!({"0": 0.6, "1": 0.25}),
        ),
        ("WAITING", serde_json::json!(null), serde_json::json!({})),
    ];
    for (k, (t, (state, value, inter))) in trials.iter().zip(expect).enumerate() {
        assert_eq!(t["number"], serde_json::json!(k));
        assert_eq!(t["state"], state, "trial {k}");
        assert_eq!(t["value"], value, "trial {k}");
        assert_eq!(t["intermediate"], inter, "trial {k}");
        assert_eq!(t["params"], want_params(k), "trial {k}");
    }
    assert_eq!(trials[2]["params"]["tolerances"], "[0.00001, 0.000001]");
    assert!(
        trials[0]["params"].get("tolerances").is_none(),
        "euler has no tolerances"
    );
    assert_eq!(trials[0]["user_attrs"], serde_json::json!({"train_seconds": 1.5}));
    assert_eq!(
        trials[2]["user_attrs"],
        serde_json::json!({"fail_reason": "non-finite loss"})
    );
    assert_eq!(got["best"], serde_json::json!({"number": 3, "value": 0.25}));

    // Optuna's worker took our waiting trial, used our parameters, and we read its result.
    assert_eq!(got["optimized"]["number"], 4);
    assert_eq!(got["optimized"]["params"], want_params(4));
    let t = by_number(&mut s, study);
    assert_eq!(t[&4].state, TrialState::Complete);
    assert_eq!(t[&4].value, Some(0.125));
    assert_eq!(t[&4].params, params(4));
    assert_eq!(t[&4].intermediate, BTreeMap::from([(0, 0.125)]));
    assert!(s.claim(study, "w", 60.0, 3).unwrap().is_none());
}

use crate::recovery;

#[test]
fn a_dead_local_workers_trial_is_requeued_without_waiting_for_its_lease() {
    let (_dir, path) = db_file();
    recovery::dead_workers_trials_are_requeued_at_once(|| store(&path));
}
