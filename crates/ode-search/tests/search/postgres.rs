//! The PostgreSQL study store: claims come in order and are exclusive across connections
//! (`SELECT ... FOR UPDATE SKIP LOCKED`), leases expire and fence the old worker, and Optuna
//! reads (and writes) what we store.
//!
//! The tests need a server: `ODE_POSTGRES_URL` (e.g. `postgresql://ode:ode@127.0.0.1/ode_test`,
//! a role that may create schemas in that database). Each test works in a schema of its own
//! (made fresh, dropped at the end), so the tests run in parallel. Without `ODE_POSTGRES_URL` each
//! test prints "SKIPPED (no ODE_POSTGRES_URL)" and passes, unless `ODE_REQUIRE_POSTGRES=1`, which
//! makes it fail.
//!
//! The Optuna check also needs a Python with Optuna and psycopg2 (`pip install -r
//! crates/ode-search/tests/optuna-postgres-requirements.txt`), named by `ODE_OPTUNA_PYTHON`
//! (else `python3` is tried); without one it prints "SKIPPED (no optuna)", unless
//! `ODE_REQUIRE_OPTUNA=1`, which makes it fail.

use ode_search::optuna::{ALEMBIC_REVISION, ATTEMPT_ATTR, OPTUNA_SCHEMA_VERSION, OPTUNA_VERSION, WORKER_ATTR};
use ode_search::store::{ParamDistribution, StoreError, StudyStore, TrialState};
use ode_search::{Params, PostgresStore};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;
use toml::Value;

/// Prints a loud skip line past the test harness's capture.
fn skip(test: &str, why: &str) {
    let msg = format!("{test}: SKIPPED ({why})");
    let _ = writeln!(std::io::stderr(), "\n********** {msg} **********\n");
    println!("{msg}");
}

/// A schema of its own on the server in `ODE_POSTGRES_URL`, dropped when this goes.
struct Db {
    admin: postgres::Client,
    base: String,
    schema: String,
}

impl Db {
    /// `None` (after printing SKIPPED) without `ODE_POSTGRES_URL`; panics then if
    /// `ODE_REQUIRE_POSTGRES=1`.
    fn fresh(test: &str) -> Option<Db> {
        let base = match std::env::var("ODE_POSTGRES_URL") {
            Ok(u) if !u.is_empty() => u,
            _ => {
                if std::env::var("ODE_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                    panic!("ODE_REQUIRE_POSTGRES=1 but ODE_POSTGRES_URL is not set");
                }
                skip(test, "no ODE_POSTGRES_URL");
                return None;
            }
        };
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let schema = format!(
            "ode_t{}_{}_{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = postgres::Client::connect(&base, postgres::NoTls).expect("ODE_POSTGRES_URL connects");
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .expect("create schema");
        Some(Db { admin, base, schema })
    }

    /// The URL of this schema (as the first of the `search_path`).
    fn url(&self) -> String {
        self.url_of(&self.schema)
    }

    fn url_of(&self, schema: &str) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-csearch_path%3D{schema}", self.base)
    }

    fn store(&self) -> PostgresStore {
        PostgresStore::connect(&self.url()).expect("store connects")
    }

    fn sql(&mut self) -> &mut postgres::Client {
        self.admin
            .batch_execute(&format!("SET search_path TO {}", self.schema))
            .unwrap();
        &mut self.admin
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
    }
}

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
    p
}

fn by_number(s: &mut PostgresStore, study: i64) -> BTreeMap<u64, ode_search::store::TrialRecord> {
    s.trials(study).unwrap().into_iter().map(|t| (t.number, t)).collect()
}

fn assert_fenced(r: Result<(), StoreError>, want: (i64, u32, u32)) {
    match r {
        Err(StoreError::Fenced {
            trial_id,
            attempt,
            current,
        }) => assert_eq!((trial_id, attempt, current), want),
        other => panic!("expected Fenced {want:?}, got {other:?}"),
    }
}

#[test]
fn a_new_database_gets_optunas_schema_once() {
    let Some(mut db) = Db::fresh("a_new_database_gets_optunas_schema_once") else {
        return;
    };
    // Concurrent first connections create the schema once.
    let start = Arc::new(Barrier::new(6));
    let ids: Vec<i64> = (0..6)
        .map(|_| {
            let (url, start) = (db.url(), start.clone());
            thread::spawn(move || {
                start.wait();
                let mut s = PostgresStore::connect(&url).expect("connects");
                let study = s.open_study("shared").unwrap();
                for k in 0..10 {
                    s.enqueue(study, k, &params(k as usize), &dists()).unwrap();
                }
                study
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]));
    let mut s = db.store();
    assert_eq!(s.study_names().unwrap(), vec!["shared".to_string()]);
    assert_eq!(s.trials(ids[0]).unwrap().len(), 10, "enqueue is idempotent by number");
    assert!(
        !s.location().contains(":ode@"),
        "the password is redacted: {}",
        s.location()
    );
    let c = db.sql();
    let rev: Vec<String> = c
        .query("SELECT version_num FROM alembic_version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rev, vec![ALEMBIC_REVISION.to_string()]);
    let row = c
        .query_one("SELECT schema_version, library_version FROM version_info", &[])
        .unwrap();
    let (version, library): (i32, String) = (row.get(0), row.get(1));
    assert_eq!(
        (i64::from(version), library.as_str()),
        (OPTUNA_SCHEMA_VERSION, OPTUNA_VERSION)
    );
    let dir: String = c
        .query_one("SELECT direction::text FROM study_directions", &[])
        .unwrap()
        .get(0);
    assert_eq!(dir, "MINIMIZE");
    // Another alembic revision is refused.
    c.batch_execute("UPDATE alembic_version SET version_num = 'v9.9.9'")
        .unwrap();
    let err = PostgresStore::connect(&db.url()).unwrap_err().to_string();
    assert!(err.contains("v9.9.9") && !err.contains(":ode@"), "{err}");
}

#[test]
fn claims_come_in_number_order_and_writes_are_fenced() {
    let Some(mut db) = Db::fresh("claims_come_in_number_order_and_writes_are_fenced") else {
        return;
    };
    let mut s = db.store();
    let study = s.open_study("order").unwrap();
    let d = dists();
    for k in [3u64, 1, 4, 0, 2] {
        s.enqueue(study, k, &params(k as usize), &d).unwrap();
    }
    let mut got = Vec::new();
    while let Some(c) = s.claim(study, &format!("worker-{}", got.len()), 60.0, 3).unwrap() {
        assert_eq!(c.attempt, 1);
        assert_eq!(c.params, params(c.number as usize), "parameters round-trip");
        got.push(c);
    }
    assert_eq!(got.iter().map(|c| c.number).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    let t = by_number(&mut s, study);
    assert!(t.values().all(|t| t.state == TrialState::Running && t.attempt == 1));
    assert!(t.values().all(|t| t.params == params(t.number as usize)));

    let row = db
        .sql()
        .query_one(
            "SELECT w.value_json, a.value_json, t.datetime_start IS NOT NULL FROM trials t \
             JOIN trial_system_attributes w ON w.trial_id = t.trial_id AND w.key = $1 \
             JOIN trial_system_attributes a ON a.trial_id = t.trial_id AND a.key = $2 WHERE t.number = 2",
            &[&WORKER_ATTR, &ATTEMPT_ATTR],
        )
        .unwrap();
    let (worker, attempt, started): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (worker.as_str(), attempt.as_str(), started),
        ("\"worker-2\"", "1", true)
    );
    let beats: i64 = db
        .sql()
        .query_one("SELECT COUNT(*) FROM trial_heartbeats", &[])
        .unwrap()
        .get(0);
    assert_eq!(beats, 5);

    // Wrong attempts are fenced; the right one writes.
    let c = &got[0];
    assert_fenced(s.report(c.trial_id, 2, 0, 1.0), (c.trial_id, 2, 1));
    assert_fenced(s.heartbeat(c.trial_id, 0), (c.trial_id, 0, 1));
    s.report(c.trial_id, 1, 0, 0.9).unwrap();
    s.report(c.trial_id, 1, 0, 0.8).unwrap();
    s.report(c.trial_id, 1, 1, f64::NAN).unwrap();
    s.set_attr(c.trial_id, 1, "train_seconds", &serde_json::json!(2.5))
        .unwrap();
    s.finish(c.trial_id, 1, TrialState::Complete, Some(0.75)).unwrap();
    // A finished trial is closed to its holder too.
    assert_fenced(
        s.finish(c.trial_id, 1, TrialState::Complete, Some(0.5)),
        (c.trial_id, 1, 1),
    );
    assert_fenced(s.report(c.trial_id, 1, 2, 0.5), (c.trial_id, 1, 1));
    s.finish(got[1].trial_id, 1, TrialState::Pruned, None).unwrap();
    s.finish(got[2].trial_id, 1, TrialState::Fail, Some(3.0)).unwrap();
    s.finish(got[3].trial_id, 1, TrialState::Complete, Some(f64::INFINITY))
        .unwrap();
    assert!(
        s.finish(got[4].trial_id, 1, TrialState::Complete, Some(f64::NAN))
            .is_err()
    );
    let t = by_number(&mut s, study);
    assert_eq!((t[&0].state, t[&0].value), (TrialState::Complete, Some(0.75)));
    assert_eq!(t[&0].intermediate[&0], 0.8);
    assert!(t[&0].intermediate[&1].is_nan());
    assert_eq!(t[&0].user_attrs["train_seconds"], serde_json::json!(2.5));
    assert_eq!((t[&1].state, t[&1].value), (TrialState::Pruned, None));
    assert_eq!((t[&2].state, t[&2].value), (TrialState::Fail, None));
    assert_eq!((t[&3].state, t[&3].value), (TrialState::Complete, Some(f64::INFINITY)));
    assert_eq!(t[&4].state, TrialState::Running);

    // Study attributes.
    s.set_study_attr(study, "config", &serde_json::json!({"epochs": 5}))
        .unwrap();
    assert_eq!(
        s.study_attrs(study).unwrap()["config"],
        serde_json::json!({"epochs": 5})
    );
    assert!(s.enqueue(study + 1000, 0, &params(0), &d).is_err(), "unknown study");
}

#[test]
fn four_connections_claim_a_hundred_trials_each_exactly_once() {
    const WORKERS: usize = 4;
    const TRIALS: usize = 100;
    let Some(db) = Db::fresh("four_connections_claim_a_hundred_trials_each_exactly_once") else {
        return;
    };
    let study = {
        let mut s = db.store();
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
            let (url, claimed, start) = (db.url(), claimed.clone(), start.clone());
            thread::spawn(move || {
                let mut s = PostgresStore::connect(&url).expect("connects");
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
    let t = db.store().trials(study).unwrap();
    assert_eq!(t.len(), TRIALS);
    assert!(
        t.iter()
            .all(|t| t.state == TrialState::Complete && t.attempt == 1 && t.value == Some(t.number as f64))
    );
}

#[test]
fn an_expired_lease_requeues_the_trial_and_fences_the_old_attempt() {
    let Some(db) = Db::fresh("an_expired_lease_requeues_the_trial_and_fences_the_old_attempt") else {
        return;
    };
    let mut a = db.store();
    let mut b = db.store();
    let study = a.open_study("lease").unwrap();
    a.enqueue(study, 0, &params(0), &dists()).unwrap();
    a.enqueue(study, 1, &params(1), &dists()).unwrap();
    let first = a.claim(study, "a", 30.0, 3).unwrap().unwrap();
    let other = a.claim(study, "a", 30.0, 3).unwrap().unwrap();
    a.report(first.trial_id, first.attempt, 0, 2.0).unwrap();
    // A live lease is respected.
    assert!(b.claim(study, "b", 30.0, 3).unwrap().is_none());
    // Heartbeats keep it.
    for _ in 0..4 {
        thread::sleep(Duration::from_millis(150));
        a.heartbeat(other.trial_id, other.attempt).unwrap();
    }
    let second = b
        .claim(study, "b", 0.3, 3)
        .unwrap()
        .expect("re-queued and claimed again");
    assert_eq!((second.trial_id, second.attempt), (first.trial_id, 2));
    assert_eq!(second.params, params(0));
    let want = (first.trial_id, 1, 2);
    assert_fenced(a.heartbeat(first.trial_id, 1), want);
    assert_fenced(a.report(first.trial_id, 1, 1, 1.0), want);
    assert_fenced(a.set_attr(first.trial_id, 1, "k", &serde_json::json!(1)), want);
    assert_fenced(a.finish(first.trial_id, 1, TrialState::Complete, Some(1.0)), want);
    // The new holder works normally; the heart-beaten trial stayed with its worker.
    b.heartbeat(second.trial_id, 2).unwrap();
    b.report(second.trial_id, 2, 0, 1.5).unwrap();
    b.finish(second.trial_id, 2, TrialState::Complete, Some(1.5)).unwrap();
    let t = by_number(&mut a, study);
    assert_eq!(
        (t[&0].state, t[&0].value, t[&0].attempt),
        (TrialState::Complete, Some(1.5), 2)
    );
    assert_eq!(t[&0].intermediate, BTreeMap::from([(0, 1.5)]));
    assert_eq!((t[&1].state, t[&1].attempt), (TrialState::Running, 1));

    // Without heartbeats trial 1's lease runs out too, and b takes it.
    thread::sleep(Duration::from_millis(400));
    let third = b.claim(study, "b", 0.2, 3).unwrap().expect("trial 1's lease ran out");
    assert_eq!((third.trial_id, third.attempt), (other.trial_id, 2));
    assert_fenced(a.report(other.trial_id, 1, 0, 1.0), (other.trial_id, 1, 2));

    // A trial that loses its worker max_attempts times fails, with the reason.
    thread::sleep(Duration::from_millis(400));
    assert!(b.claim(study, "c", 0.2, 2).unwrap().is_none());
    let t = by_number(&mut a, study);
    assert_eq!((t[&1].state, t[&1].attempt, t[&1].value), (TrialState::Fail, 2, None));
    assert_eq!(
        t[&1].user_attrs["fail_reason"],
        serde_json::json!("lost its worker 2 times")
    );
    assert_fenced(
        b.finish(other.trial_id, 2, TrialState::Complete, Some(1.0)),
        (other.trial_id, 2, 2),
    );
}

#[test]
fn a_requeued_trial_returns_to_its_worker_if_it_writes_before_another_claim() {
    let Some(db) = Db::fresh("a_requeued_trial_returns_to_its_worker_if_it_writes_before_another_claim") else {
        return;
    };
    let mut a = db.store();
    let mut b = db.store();
    let study = a.open_study("revive").unwrap();
    a.enqueue(study, 0, &params(0), &dists()).unwrap();
    a.enqueue(study, 1, &params(1), &dists()).unwrap();
    let c0 = a.claim(study, "a", 30.0, 3).unwrap().unwrap();
    let c1 = a.claim(study, "a", 30.0, 3).unwrap().unwrap();
    thread::sleep(Duration::from_millis(400));
    // b's claim re-queues both and takes trial 0; trial 1 waits, still at attempt 1.
    let c0b = b.claim(study, "b", 0.2, 3).unwrap().unwrap();
    assert_eq!((c0b.number, c0b.attempt), (0, 2));
    assert_fenced(a.heartbeat(c0.trial_id, c0.attempt), (c0.trial_id, 1, 2));
    let t = by_number(&mut a, study);
    assert_eq!((t[&1].state, t[&1].attempt), (TrialState::Waiting, 1));
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

// ---------------------------------------------------------------------------------------------
// Optuna reads what we write.

const OPTUNA_CHECK: &str = r#"
import json, math, sys
import optuna, psycopg2
from optuna.distributions import (CategoricalDistribution, FloatDistribution, IntDistribution,
                                  distribution_to_json, json_to_distribution)

ours_dsn, ours_schema, name, fresh_dsn, fresh_schema = sys.argv[1:6]
optuna.logging.set_verbosity(optuna.logging.WARNING)

def sa(dsn):
    # SQLAlchemy 2.1 maps postgresql:// to psycopg 3; name the psycopg2 driver.
    return "postgresql+psycopg2://" + dsn.split("://", 1)[1]

ours = sa(ours_dsn)

def num(x):
    return x if x is None or math.isfinite(x) else repr(x)

out = {"version": optuna.__version__, "problems": []}

# 1. Our schema is Optuna's: compare with a storage Optuna makes itself in a fresh schema.
optuna.storages.RDBStorage(sa(fresh_dsn))
def layout(dsn, schema):
    con = psycopg2.connect(dsn)
    cur = con.cursor()
    q = {
        "columns": ("SELECT table_name, column_name, ordinal_position, data_type, udt_name, "
                    "character_maximum_length, is_nullable, column_default FROM information_schema.columns "
                    "WHERE table_schema = %s ORDER BY 1, 3"),
        "constraints": ("SELECT r.relname, c.conname, c.contype, pg_get_constraintdef(c.oid) FROM pg_constraint c "
                        "JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = c.connamespace "
                        "WHERE n.nspname = %s ORDER BY 1, 2"),
        "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY 1, 2",
        "enums": ("SELECT t.typname, e.enumlabel, e.enumsortorder FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid "
                  "JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = %s ORDER BY 1, 3"),
        "sequences": ("SELECT sequence_name, data_type, start_value, increment, maximum_value FROM "
                      "information_schema.sequences WHERE sequence_schema = %s ORDER BY 1"),
    }
    res = {}
    for k, sql in q.items():
        cur.execute(sql, (schema,))
        res[k] = [tuple(str(x).replace(schema + ".", "S.").replace(schema, "S") for x in row) for row in cur.fetchall()]
    cur.execute("SELECT version_num FROM alembic_version")
    res["alembic_version"] = cur.fetchall()
    cur.execute("SELECT version_info_id, schema_version FROM version_info")
    res["version_info"] = cur.fetchall()
    con.close()
    return res
mine, theirs = layout(ours_dsn, ours_schema), layout(fresh_dsn, fresh_schema)
for k in sorted(set(mine) | set(theirs)):
    a, b = mine.get(k), theirs.get(k)
    if a != b:
        out["problems"].append(f"{k}: ours {sorted(set(a) - set(b))} != optuna's {sorted(set(b) - set(a))}")

# 2. Every distribution_json is byte for byte what Optuna writes.
con = psycopg2.connect(ours_dsn)
cur = con.cursor()
cur.execute("SELECT param_name, distribution_json FROM trial_params")
for pname, dj in cur.fetchall():
    again = distribution_to_json(json_to_distribution(dj))
    if again != dj:
        out["problems"].append(f"{pname}: distribution_json {dj} != optuna's {again}")
con.close()

# 3. The study as Optuna sees it.
study = optuna.load_study(study_name=name, storage=ours)
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
            .args(["-c", "import optuna, psycopg2"])
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
    const TEST: &str = "optuna_loads_the_study_we_write (postgres)";
    let Some(db) = Db::fresh(TEST) else {
        return;
    };
    let Some(python) = optuna_python() else {
        if std::env::var("ODE_REQUIRE_OPTUNA").as_deref() == Ok("1") {
            panic!(
                "ODE_REQUIRE_OPTUNA=1 but no python with optuna and psycopg2 was found: set ODE_OPTUNA_PYTHON to a \
                 python with `pip install -r crates/ode-search/tests/optuna-postgres-requirements.txt`"
            );
        }
        skip(
            TEST,
            "no optuna with psycopg2: set ODE_OPTUNA_PYTHON, see crates/ode-search/tests/optuna-postgres-requirements.txt",
        );
        return;
    };
    let fresh = Db::fresh(TEST).expect("a second schema");
    let mut s = db.store();
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

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("check.py");
    std::fs::write(&script, OPTUNA_CHECK).unwrap();
    let out = Command::new(&python)
        .arg(&script)
        .arg(db.url())
        .arg(&db.schema)
        .arg("ode-check")
        .arg(fresh.url())
        .arg(&fresh.schema)
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
    assert_eq!(trials[0]["params"]["tolerances"], "[0.001, 0.0001]");
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
    let Some(db) = Db::fresh("a_dead_local_workers_trial_is_requeued_without_waiting_for_its_lease") else {
        return;
    };
    recovery::dead_workers_trials_are_requeued_at_once(|| db.store());
}
