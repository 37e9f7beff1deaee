//! A [`StudyStore`] on one SQLite file, laid out exactly as Optuna's RDB storage (Optuna 4.9,
//! schema version 12, alembic revision `v3.2.0.a`), so
//! `optuna.load_study(study_name=NAME, storage="sqlite:///PATH")` opens what the search writes,
//! and several worker processes (on one machine, or on a shared file system with working locks)
//! can share a study: the file is in WAL mode, every write is one `BEGIN IMMEDIATE`
//! transaction, and a busy connection waits up to [`BUSY_TIMEOUT`] for the lock.
//!
//! # How our data maps onto Optuna's tables
//!
//! * A study is a `studies` row with one `study_directions` row (`MINIMIZE`, objective 0).
//! * A trial is a `trials` row (`number`, `state`, `datetime_start`, `datetime_complete`, local
//!   time as Optuna writes it). Its parameters are `trial_params` rows, written at [`enqueue`]
//!   time already — Optuna reads parameters of `WAITING` trials without complaint, and its own
//!   workers, should one pick up such a trial, reuse them — and, as `study.enqueue_trial` does,
//!   the system attribute `fixed_params` holds them too.
//! * `param_value` is Optuna's internal representation: the value itself for int and float
//!   distributions, the **index** into the choices for categorical ones. `distribution_json` is
//!   byte for byte what Optuna's `distribution_to_json` writes (`IntDistribution` with
//!   `log, step, low, high`, `FloatDistribution` with `step: null, low, high, log`,
//!   `CategoricalDistribution` with `choices`). Optuna rejects `step != 1` with `log`, so a log
//!   integer range is written with step 1. A float range accepts an integer value and reads it
//!   back as a float.
//! * Categorical choices Optuna accepts (strings, integers, finite floats, booleans) are stored
//!   as themselves. Any other choice — an array such as the `tolerances` pair `[1e-3, 1e-4]`, an
//!   inline table, a date-time, an infinite float — is stored as the string of its TOML form
//!   (`"[0.001, 0.0001]"`). Reading maps a string choice back to a value when the string parses
//!   as a TOML value of one of those kinds, so a string choice that itself reads as such a
//!   value (say `"[1, 2]"` or `"inf"`) cannot be stored and [`enqueue`] refuses it. A parameter
//!   without a distribution is stored as a one-choice categorical (how Optuna shows a fixed
//!   value).
//! * Objective values live in `trial_values` and per-epoch values in
//!   `trial_intermediate_values`, with Optuna's `FINITE` / `INF_POS` / `INF_NEG` (/ `NAN`)
//!   encoding. User attributes are `trial_user_attributes` (`value_json` as Python's
//!   `json.dumps` writes it).
//!   Study attributes ([`StudyStore::set_study_attr`]) are `study_user_attributes`.
//! * Leases: the heartbeat is the `trial_heartbeats` row (UTC, as Optuna's own heartbeat), set by
//!   [`claim`] and [`heartbeat`]. The fencing attempt and the worker id are the trial system
//!   attributes [`ATTEMPT_ATTR`] and [`WORKER_ATTR`]. A `RUNNING` trial without a heartbeat row
//!   (one an Optuna worker runs without heartbeats) is never re-queued for its lease; one whose
//!   worker id names a dead process of this machine ([`crate::worker_id`]) is re-queued by the
//!   next claim whatever its heartbeat.
//!
//! # Fencing
//!
//! A write (`heartbeat`, `report`, `set_attr`, `finish`) is accepted only from the trial's
//! current attempt, and only while the trial is unfinished; otherwise it fails with
//! [`StoreError::Fenced`] (for a finished trial, `current` is the attempt that held it last).
//! A trial whose lease expired goes back to `WAITING` with its attempt unchanged, keeping its
//! per-epoch values (a re-run overwrites them step by step); if its old worker writes before
//! another worker claims it, the trial is simply `RUNNING` again under that worker.
//!
//! # Trial numbers
//!
//! Optuna numbers a trial it creates itself by counting the study's trials with a smaller
//! `trial_id`, so enqueue numbers 0, 1, 2, … in order (as the search drivers do) for Optuna's
//! own workers to agree with ours on the next number.
//!
//! [`enqueue`]: StudyStore::enqueue
//! [`claim`]: StudyStore::claim
//! [`heartbeat`]: StudyStore::heartbeat

use crate::store::{Claimed, ParamDistribution, StoreError, StudyStore, TrialRecord, TrialState, orphaned};
use crate::strategy::Params;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;
use toml::Value;

/// The Optuna release whose storage layout this module writes (and records in `version_info`).
pub const OPTUNA_VERSION: &str = "4.9.0";
/// Optuna's `models.SCHEMA_VERSION` for that release.
pub const OPTUNA_SCHEMA_VERSION: i64 = 12;
/// The alembic revision Optuna expects in `alembic_version` (unchanged from Optuna 3.2 to 5.0).
pub const ALEMBIC_REVISION: &str = "v3.2.0.a";
/// How long a connection waits for another process's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Trial system attribute holding the fencing attempt (claims so far).
pub const ATTEMPT_ATTR: &str = "ode:attempt";
/// Trial system attribute holding the id of the worker that claimed the trial last.
pub const WORKER_ATTR: &str = "ode:worker";
/// User attribute explaining why a trial failed.
pub const FAIL_REASON_ATTR: &str = "fail_reason";

/// Optuna's tables as `sqlalchemy`'s `create_all` makes them on SQLite (from `sqlite_master`
/// of a storage Optuna 4.9.0 created), with `IF NOT EXISTS` so opening an existing file is a
/// no-op.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS studies (
	study_id INTEGER NOT NULL,
	study_name VARCHAR(512) NOT NULL,
	PRIMARY KEY (study_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS ix_studies_study_name ON studies (study_name);
CREATE TABLE IF NOT EXISTS version_info (
	version_info_id INTEGER NOT NULL,
	schema_version INTEGER,
	library_version VARCHAR(256),
	PRIMARY KEY (version_info_id),
	CHECK (version_info_id=1)
);
CREATE TABLE IF NOT EXISTS study_directions (
	study_direction_id INTEGER NOT NULL,
	direction VARCHAR(8) NOT NULL,
	study_id INTEGER NOT NULL,
	objective INTEGER NOT NULL,
	PRIMARY KEY (study_direction_id),
	UNIQUE (study_id, objective),
	FOREIGN KEY(study_id) REFERENCES studies (study_id)
);
CREATE TABLE IF NOT EXISTS study_user_attributes (
	study_user_attribute_id INTEGER NOT NULL,
	study_id INTEGER,
	"key" VARCHAR(512),
	value_json TEXT,
	PRIMARY KEY (study_user_attribute_id),
	UNIQUE (study_id, "key"),
	FOREIGN KEY(study_id) REFERENCES studies (study_id)
);
CREATE TABLE IF NOT EXISTS study_system_attributes (
	study_system_attribute_id INTEGER NOT NULL,
	study_id INTEGER,
	"key" VARCHAR(512),
	value_json TEXT,
	PRIMARY KEY (study_system_attribute_id),
	UNIQUE (study_id, "key"),
	FOREIGN KEY(study_id) REFERENCES studies (study_id)
);
CREATE TABLE IF NOT EXISTS trials (
	trial_id INTEGER NOT NULL,
	number INTEGER,
	study_id INTEGER,
	state VARCHAR(8) NOT NULL,
	datetime_start DATETIME,
	datetime_complete DATETIME,
	PRIMARY KEY (trial_id),
	FOREIGN KEY(study_id) REFERENCES studies (study_id)
);
CREATE INDEX IF NOT EXISTS ix_trials_study_id ON trials (study_id);
CREATE TABLE IF NOT EXISTS trial_user_attributes (
	trial_user_attribute_id INTEGER NOT NULL,
	trial_id INTEGER,
	"key" VARCHAR(512),
	value_json TEXT,
	PRIMARY KEY (trial_user_attribute_id),
	UNIQUE (trial_id, "key"),
	FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
CREATE TABLE IF NOT EXISTS trial_system_attributes (
	trial_system_attribute_id INTEGER NOT NULL,
	trial_id INTEGER,
	"key" VARCHAR(512),
	value_json TEXT,
	PRIMARY KEY (trial_system_attribute_id),
	UNIQUE (trial_id, "key"),
	FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
CREATE TABLE IF NOT EXISTS trial_params (
	param_id INTEGER NOT NULL,
	trial_id INTEGER,
	param_name VARCHAR(512),
	param_value FLOAT,
	distribution_json TEXT,
	PRIMARY KEY (param_id),
	UNIQUE (trial_id, param_name),
	FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
CREATE TABLE IF NOT EXISTS trial_values (
	trial_value_id INTEGER NOT NULL,
	trial_id INTEGER NOT NULL,
	objective INTEGER NOT NULL,
	value FLOAT,
	value_type VARCHAR(7) NOT NULL,
	PRIMARY KEY (trial_value_id),
	UNIQUE (trial_id, objective),
	FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
CREATE TABLE IF NOT EXISTS trial_intermediate_values (
	trial_intermediate_value_id INTEGER NOT NULL,
	trial_id INTEGER NOT NULL,
	step INTEGER NOT NULL,
	intermediate_value FLOAT,
	intermediate_value_type VARCHAR(7) NOT NULL,
	PRIMARY KEY (trial_intermediate_value_id),
	UNIQUE (trial_id, step),
	FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
CREATE TABLE IF NOT EXISTS trial_heartbeats (
	trial_heartbeat_id INTEGER NOT NULL,
	trial_id INTEGER NOT NULL,
	heartbeat DATETIME NOT NULL,
	PRIMARY KEY (trial_heartbeat_id),
	UNIQUE (trial_id),
	FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
CREATE TABLE IF NOT EXISTS alembic_version (
	version_num VARCHAR(32) NOT NULL,
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
"#;

/// A study store on one SQLite file in Optuna's layout (see the [module docs](self)).
///
/// Each handle owns one connection; give every worker thread or process its own handle (open
/// the same path again): the database serialises the writers.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    location: String,
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file and Optuna's schema if they are missing,
    /// switching it to WAL mode and setting a busy timeout of [`BUSY_TIMEOUT`].
    ///
    /// Fails when the file holds an Optuna schema of another alembic revision than
    /// [`ALEMBIC_REVISION`] (run `optuna storage upgrade` with a matching Optuna first).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let location = path.display().to_string();
        let backend = |reason: String| StoreError::Backend {
            location: location.clone(),
            reason,
        };
        let conn = Connection::open(path).map_err(|e| backend(format!("cannot open: {e}")))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| backend(format!("cannot set the busy timeout: {e}")))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| backend(format!("cannot switch to WAL mode: {e}")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(backend(format!(
                "cannot switch to WAL mode (journal mode stays '{mode}'); is the file on a local file system?"
            )));
        }
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
            .map_err(|e| backend(format!("cannot set pragmas: {e}")))?;
        let mut store = Self { conn, location };
        store.init_schema()?;
        Ok(store)
    }

    /// Where the store lives (for messages).
    pub fn location(&self) -> &str {
        &self.location
    }

    fn init_schema(&mut self) -> Result<(), StoreError> {
        let location = self.location.clone();
        let tx = self.write_tx()?;
        let db = |e: rusqlite::Error| db_err(&location, e);
        tx.execute_batch(SCHEMA).map_err(db)?;
        tx.execute(
            "INSERT OR IGNORE INTO version_info (version_info_id, schema_version, library_version) VALUES (1, ?1, ?2)",
            params![OPTUNA_SCHEMA_VERSION, OPTUNA_VERSION],
        )
        .map_err(db)?;
        let revisions: Vec<String> = tx
            .prepare("SELECT version_num FROM alembic_version")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(db)?;
        match revisions.as_slice() {
            [] => {
                tx.execute(
                    "INSERT INTO alembic_version (version_num) VALUES (?1)",
                    [ALEMBIC_REVISION],
                )
                .map_err(db)?;
            }
            [r] if r == ALEMBIC_REVISION => {}
            other => {
                return Err(StoreError::Backend {
                    location,
                    reason: format!(
                        "the file has Optuna schema revision {other:?}, this program writes {ALEMBIC_REVISION} \
                         (Optuna {OPTUNA_VERSION}); migrate it with a matching `optuna storage upgrade`"
                    ),
                });
            }
        }
        tx.commit().map_err(db)
    }

    /// A `BEGIN IMMEDIATE` transaction: takes the write lock up front, so the transaction never
    /// has to upgrade a read snapshot (which SQLite could refuse without waiting).
    fn write_tx(&mut self) -> Result<Transaction<'_>, StoreError> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_err(&self.location, e))
    }

    /// Checks that `attempt` still holds the trial; a re-queued trial (`WAITING`, same attempt)
    /// goes back to `RUNNING` when `revive`.
    fn hold(
        tx: &Transaction<'_>,
        loc: &str,
        trial_id: i64,
        attempt: u32,
        revive: bool,
    ) -> Result<TrialState, StoreError> {
        let state: Option<String> = tx
            .query_row("SELECT state FROM trials WHERE trial_id = ?1", [trial_id], |r| r.get(0))
            .optional()
            .map_err(|e| db_err(loc, e))?;
        let state = match state {
            Some(s) => parse_state(loc, &s)?,
            None => {
                return Err(StoreError::Backend {
                    location: loc.into(),
                    reason: format!("no trial with id {trial_id}"),
                });
            }
        };
        let current = read_attempt(tx, loc, trial_id)?;
        let finished = matches!(state, TrialState::Complete | TrialState::Pruned | TrialState::Fail);
        if attempt == 0 || attempt != current || finished {
            return Err(StoreError::Fenced {
                trial_id,
                attempt,
                current,
            });
        }
        if revive && state == TrialState::Waiting {
            tx.execute(
                "UPDATE trials SET state = 'RUNNING', datetime_start = ?2 WHERE trial_id = ?1",
                params![trial_id, local_now()],
            )
            .map_err(|e| db_err(loc, e))?;
            upsert_heartbeat(tx, loc, trial_id)?;
            return Ok(TrialState::Running);
        }
        Ok(state)
    }
}

fn db_err(location: &str, e: rusqlite::Error) -> StoreError {
    StoreError::Backend {
        location: location.into(),
        reason: e.to_string(),
    }
}

pub(crate) fn bad(location: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Backend {
        location: location.into(),
        reason: reason.into(),
    }
}

pub(crate) fn parse_state(loc: &str, s: &str) -> Result<TrialState, StoreError> {
    Ok(match s {
        "WAITING" => TrialState::Waiting,
        "RUNNING" => TrialState::Running,
        "COMPLETE" => TrialState::Complete,
        "PRUNED" => TrialState::Pruned,
        "FAIL" => TrialState::Fail,
        other => return Err(bad(loc, format!("unknown trial state '{other}'"))),
    })
}

/// Local wall-clock time as Optuna writes `datetime_start` / `datetime_complete`
/// (`datetime.now()`, naive, microseconds).
pub(crate) fn local_now() -> String {
    chrono::Local::now()
        .naive_local()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

/// UTC time as SQLite's `CURRENT_TIMESTAMP`, which Optuna's heartbeats use (with microseconds).
fn utc_now() -> String {
    chrono::Utc::now()
        .naive_utc()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

fn upsert_heartbeat(tx: &Transaction<'_>, loc: &str, trial_id: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO trial_heartbeats (trial_id, heartbeat) VALUES (?1, ?2) \
         ON CONFLICT (trial_id) DO UPDATE SET heartbeat = excluded.heartbeat",
        params![trial_id, utc_now()],
    )
    .map_err(|e| db_err(loc, e))?;
    Ok(())
}

/// Upserts an attribute row of `table` (`trial_*_attributes` or `study_*_attributes`).
fn upsert_attr(tx: &Transaction<'_>, loc: &str, table: &str, id: i64, key: &str, json: &str) -> Result<(), StoreError> {
    let owner = if table.starts_with("study") {
        "study_id"
    } else {
        "trial_id"
    };
    tx.execute(
        &format!(
            "INSERT INTO {table} ({owner}, \"key\", value_json) VALUES (?1, ?2, ?3) \
             ON CONFLICT ({owner}, \"key\") DO UPDATE SET value_json = excluded.value_json"
        ),
        params![id, key, json],
    )
    .map_err(|e| db_err(loc, e))?;
    Ok(())
}

fn read_attempt(tx: &Connection, loc: &str, trial_id: i64) -> Result<u32, StoreError> {
    let json: Option<String> = tx
        .query_row(
            "SELECT value_json FROM trial_system_attributes WHERE trial_id = ?1 AND \"key\" = ?2",
            params![trial_id, ATTEMPT_ATTR],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| db_err(loc, e))?;
    match json {
        None => Ok(0),
        Some(j) => j
            .trim()
            .parse::<u32>()
            .map_err(|_| bad(loc, format!("trial {trial_id}: bad {ATTEMPT_ATTR} value {j}"))),
    }
}

fn study_exists(conn: &Connection, loc: &str, study: i64) -> Result<(), StoreError> {
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM studies WHERE study_id = ?1", [study], |r| {
            r.get(0)
        })
        .map_err(|e| db_err(loc, e))?;
    if n == 0 {
        return Err(bad(loc, format!("no study with id {study}")));
    }
    Ok(())
}

/// The parameters of one trial, decoded from `trial_params` (or, for a trial Optuna's
/// `enqueue_trial` made, from its `fixed_params` system attribute).
fn read_params(conn: &Connection, loc: &str, trial_id: i64) -> Result<Params, StoreError> {
    let rows: Vec<(String, Option<f64>, String)> = conn
        .prepare("SELECT param_name, param_value, distribution_json FROM trial_params WHERE trial_id = ?1")
        .and_then(|mut s| {
            s.query_map([trial_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(|e| db_err(loc, e))?;
    let mut params = Params::new();
    for (name, value, dist) in rows {
        params.insert(name.clone(), decode_param(loc, &name, value, &dist)?);
    }
    if params.is_empty() {
        let fixed: Option<String> = conn
            .query_row(
                "SELECT value_json FROM trial_system_attributes WHERE trial_id = ?1 AND \"key\" = 'fixed_params'",
                [trial_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db_err(loc, e))?;
        if let Some(serde_json::Value::Object(m)) = fixed.and_then(|f| serde_json::from_str(&f).ok()) {
            for (k, v) in m {
                if let Some(v) = json_to_toml(&v) {
                    params.insert(k, v);
                }
            }
        }
    }
    Ok(params)
}

impl StudyStore for SqliteStore {
    fn open_study(&mut self, name: &str) -> Result<i64, StoreError> {
        let loc = self.location.clone();
        let db = |e| db_err(&loc, e);
        let tx = self.write_tx()?;
        let existing: Option<i64> = tx
            .query_row("SELECT study_id FROM studies WHERE study_name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db)?;
        let id = match existing {
            Some(id) => id,
            None => {
                tx.execute("INSERT INTO studies (study_name) VALUES (?1)", [name])
                    .map_err(db)?;
                let id = tx.last_insert_rowid();
                tx.execute(
                    "INSERT INTO study_directions (direction, study_id, objective) VALUES ('MINIMIZE', ?1, 0)",
                    [id],
                )
                .map_err(db)?;
                id
            }
        };
        tx.commit().map_err(db)?;
        Ok(id)
    }

    fn study_names(&mut self) -> Result<Vec<String>, StoreError> {
        self.conn
            .prepare("SELECT study_name FROM studies ORDER BY study_id")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| db_err(&self.location, e))
    }

    fn enqueue(
        &mut self,
        study: i64,
        number: u64,
        params: &Params,
        dists: &BTreeMap<String, ParamDistribution>,
    ) -> Result<(), StoreError> {
        let loc = self.location.clone();
        let db = |e| db_err(&loc, e);
        // Encode everything before taking the write lock.
        let (rows, fixed_json) = encode_params(&loc, params, dists)?;
        let number = i64::try_from(number).map_err(|_| bad(&loc, format!("trial number {number} is too large")))?;

        let tx = self.write_tx()?;
        study_exists(&tx, &loc, study)?;
        let exists: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM trials WHERE study_id = ?1 AND number = ?2",
                params![study, number],
                |r| r.get(0),
            )
            .map_err(db)?;
        if exists == 0 {
            tx.execute(
                "INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete) \
                 VALUES (?1, ?2, 'WAITING', NULL, NULL)",
                params![number, study],
            )
            .map_err(db)?;
            let trial_id = tx.last_insert_rowid();
            for (name, internal, dist) in &rows {
                tx.execute(
                    "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) \
                     VALUES (?1, ?2, ?3, ?4)",
                    params![trial_id, name, internal, dist],
                )
                .map_err(db)?;
            }
            upsert_attr(
                &tx,
                &loc,
                "trial_system_attributes",
                trial_id,
                "fixed_params",
                &fixed_json,
            )?;
        }
        tx.commit().map_err(db)
    }

    fn claim(
        &mut self,
        study: i64,
        worker: &str,
        lease_seconds: f64,
        max_attempts: u32,
    ) -> Result<Option<Claimed>, StoreError> {
        let loc = self.location.clone();
        let db = |e| db_err(&loc, e);
        let tx = self.write_tx()?;
        study_exists(&tx, &loc, study)?;
        // 1. Trials whose worker stopped renewing its lease, or whose worker was a process of
        //    this machine that has died, go back to the queue (or fail).
        let mut stale: Vec<i64> = tx
            .prepare(
                "SELECT t.trial_id FROM trials t JOIN trial_heartbeats h ON h.trial_id = t.trial_id \
                 WHERE t.study_id = ?1 AND t.state = 'RUNNING' \
                 AND julianday(h.heartbeat) < julianday(?2) - ?3 / 86400.0",
            )
            .and_then(|mut s| {
                s.query_map(params![study, utc_now(), lease_seconds], |r| r.get(0))?
                    .collect()
            })
            .map_err(db)?;
        let held: Vec<(i64, String)> = tx
            .prepare(
                "SELECT t.trial_id, a.value_json FROM trials t JOIN trial_system_attributes a \
                 ON a.trial_id = t.trial_id AND a.\"key\" = ?2 WHERE t.study_id = ?1 AND t.state = 'RUNNING'",
            )
            .and_then(|mut s| {
                s.query_map(params![study, WORKER_ATTR], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(db)?;
        for id in orphaned(held) {
            if !stale.contains(&id) {
                stale.push(id);
            }
        }
        for trial_id in stale {
            let attempt = read_attempt(&tx, &loc, trial_id)?;
            if attempt >= max_attempts {
                tx.execute(
                    "UPDATE trials SET state = 'FAIL', datetime_complete = ?2 WHERE trial_id = ?1",
                    params![trial_id, local_now()],
                )
                .map_err(db)?;
                tx.execute("DELETE FROM trial_values WHERE trial_id = ?1", [trial_id])
                    .map_err(db)?;
                let reason = serde_json::Value::from(format!("lost its worker {attempt} times"));
                upsert_attr(
                    &tx,
                    &loc,
                    "trial_user_attributes",
                    trial_id,
                    FAIL_REASON_ATTR,
                    &python_json(&reason),
                )?;
            } else {
                tx.execute(
                    "UPDATE trials SET state = 'WAITING', datetime_start = NULL WHERE trial_id = ?1",
                    [trial_id],
                )
                .map_err(db)?;
            }
        }
        // 2. The lowest-numbered waiting trial.
        let next: Option<(i64, i64)> = tx
            .query_row(
                "SELECT trial_id, number FROM trials WHERE study_id = ?1 AND state = 'WAITING' \
                 ORDER BY number, trial_id LIMIT 1",
                [study],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db)?;
        let Some((trial_id, number)) = next else {
            tx.commit().map_err(db)?;
            return Ok(None);
        };
        let attempt = read_attempt(&tx, &loc, trial_id)? + 1;
        tx.execute(
            "UPDATE trials SET state = 'RUNNING', datetime_start = ?2, datetime_complete = NULL WHERE trial_id = ?1",
            params![trial_id, local_now()],
        )
        .map_err(db)?;
        upsert_attr(
            &tx,
            &loc,
            "trial_system_attributes",
            trial_id,
            ATTEMPT_ATTR,
            &attempt.to_string(),
        )?;
        upsert_attr(
            &tx,
            &loc,
            "trial_system_attributes",
            trial_id,
            WORKER_ATTR,
            &python_json(&serde_json::Value::from(worker)),
        )?;
        upsert_heartbeat(&tx, &loc, trial_id)?;
        let params = read_params(&tx, &loc, trial_id)?;
        tx.commit().map_err(db)?;
        Ok(Some(Claimed {
            trial_id,
            number: u64::try_from(number).map_err(|_| bad(&loc, format!("trial {trial_id} has number {number}")))?,
            attempt,
            params,
        }))
    }

    fn heartbeat(&mut self, trial_id: i64, attempt: u32) -> Result<(), StoreError> {
        let loc = self.location.clone();
        let tx = self.write_tx()?;
        Self::hold(&tx, &loc, trial_id, attempt, true)?;
        upsert_heartbeat(&tx, &loc, trial_id)?;
        tx.commit().map_err(|e| db_err(&loc, e))
    }

    fn report(&mut self, trial_id: i64, attempt: u32, step: u64, value: f64) -> Result<(), StoreError> {
        let loc = self.location.clone();
        let step = i64::try_from(step).map_err(|_| bad(&loc, format!("step {step} is too large")))?;
        let (stored, kind) = intermediate_repr(value);
        let tx = self.write_tx()?;
        Self::hold(&tx, &loc, trial_id, attempt, true)?;
        tx.execute(
            "INSERT INTO trial_intermediate_values (trial_id, step, intermediate_value, intermediate_value_type) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (trial_id, step) DO UPDATE SET \
             intermediate_value = excluded.intermediate_value, intermediate_value_type = excluded.intermediate_value_type",
            params![trial_id, step, stored, kind],
        )
        .map_err(|e| db_err(&loc, e))?;
        tx.commit().map_err(|e| db_err(&loc, e))
    }

    fn set_attr(
        &mut self,
        trial_id: i64,
        attempt: u32,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let loc = self.location.clone();
        let json = python_json(value);
        let tx = self.write_tx()?;
        Self::hold(&tx, &loc, trial_id, attempt, true)?;
        upsert_attr(&tx, &loc, "trial_user_attributes", trial_id, key, &json)?;
        tx.commit().map_err(|e| db_err(&loc, e))
    }

    fn finish(&mut self, trial_id: i64, attempt: u32, state: TrialState, value: Option<f64>) -> Result<(), StoreError> {
        let loc = self.location.clone();
        let db = |e| db_err(&loc, e);
        // Optuna's rules: a complete trial has a value that is not NaN, a failed one none.
        let value = finish_value(&loc, trial_id, state, value)?;
        let tx = self.write_tx()?;
        Self::hold(&tx, &loc, trial_id, attempt, false)?;
        match value {
            Some(v) => {
                let (stored, kind) = value_repr(v);
                tx.execute(
                    "INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES (?1, 0, ?2, ?3) \
                     ON CONFLICT (trial_id, objective) DO UPDATE SET value = excluded.value, value_type = excluded.value_type",
                    params![trial_id, stored, kind],
                )
                .map_err(db)?;
            }
            None => {
                tx.execute("DELETE FROM trial_values WHERE trial_id = ?1", [trial_id])
                    .map_err(db)?;
            }
        }
        let now = local_now();
        tx.execute(
            "UPDATE trials SET state = ?2, datetime_start = COALESCE(datetime_start, ?3), datetime_complete = ?3 \
             WHERE trial_id = ?1",
            params![trial_id, state.optuna_name(), now],
        )
        .map_err(db)?;
        tx.commit().map_err(db)
    }

    fn trials(&mut self, study: i64) -> Result<Vec<TrialRecord>, StoreError> {
        let loc = self.location.clone();
        let db = |e| db_err(&loc, e);
        // One read transaction: a consistent snapshot while workers write.
        let tx = self.conn.transaction().map_err(db)?;
        study_exists(&tx, &loc, study)?;
        let rows: Vec<(i64, Option<i64>, String)> = tx
            .prepare("SELECT trial_id, number, state FROM trials WHERE study_id = ?1 ORDER BY number, trial_id")
            .and_then(|mut s| {
                s.query_map([study], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut index = HashMap::with_capacity(rows.len());
        for (trial_id, number, state) in rows {
            let number = number
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| bad(&loc, format!("trial {trial_id} has no valid number")))?;
            index.insert(trial_id, out.len());
            out.push(TrialRecord {
                trial_id,
                number,
                state: parse_state(&loc, &state)?,
                params: Params::new(),
                value: None,
                intermediate: BTreeMap::new(),
                user_attrs: BTreeMap::new(),
                attempt: 0,
                worker: None,
            });
        }

        let param_rows: Vec<(i64, String, Option<f64>, String)> = tx
            .prepare(
                "SELECT p.trial_id, p.param_name, p.param_value, p.distribution_json FROM trial_params p \
                 JOIN trials t ON t.trial_id = p.trial_id WHERE t.study_id = ?1 ORDER BY p.param_id",
            )
            .and_then(|mut s| {
                s.query_map([study], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect()
            })
            .map_err(db)?;
        for (trial_id, name, value, dist) in param_rows {
            if let Some(&i) = index.get(&trial_id) {
                let v = decode_param(&loc, &name, value, &dist)?;
                out[i].params.insert(name, v);
            }
        }

        let value_rows: Vec<(i64, Option<f64>, String)> = tx
            .prepare(
                "SELECT v.trial_id, v.value, v.value_type FROM trial_values v \
                 JOIN trials t ON t.trial_id = v.trial_id WHERE t.study_id = ?1 AND v.objective = 0",
            )
            .and_then(|mut s| {
                s.query_map([study], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(db)?;
        for (trial_id, value, kind) in value_rows {
            if let Some(&i) = index.get(&trial_id) {
                out[i].value = Some(stored_to_value(&loc, value, &kind)?);
            }
        }

        let step_rows: Vec<(i64, i64, Option<f64>, String)> = tx
            .prepare(
                "SELECT v.trial_id, v.step, v.intermediate_value, v.intermediate_value_type \
                 FROM trial_intermediate_values v JOIN trials t ON t.trial_id = v.trial_id WHERE t.study_id = ?1",
            )
            .and_then(|mut s| {
                s.query_map([study], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect()
            })
            .map_err(db)?;
        for (trial_id, step, value, kind) in step_rows {
            if let (Some(&i), Ok(step)) = (index.get(&trial_id), u64::try_from(step)) {
                out[i].intermediate.insert(step, stored_to_value(&loc, value, &kind)?);
            }
        }

        let attr_rows: Vec<(i64, String, String)> = tx
            .prepare(
                "SELECT a.trial_id, a.\"key\", a.value_json FROM trial_user_attributes a \
                 JOIN trials t ON t.trial_id = a.trial_id WHERE t.study_id = ?1",
            )
            .and_then(|mut s| {
                s.query_map([study], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(db)?;
        for (trial_id, key, json) in attr_rows {
            if let Some(&i) = index.get(&trial_id) {
                // Python may have written NaN / Infinity, which JSON proper lacks: keep the text.
                let v = serde_json::from_str(&json).unwrap_or(serde_json::Value::String(json));
                out[i].user_attrs.insert(key, v);
            }
        }

        let sys_rows: Vec<(i64, String, String)> = tx
            .prepare(
                "SELECT a.trial_id, a.\"key\", a.value_json FROM trial_system_attributes a \
                 JOIN trials t ON t.trial_id = a.trial_id WHERE t.study_id = ?1 \
                 AND a.\"key\" IN (?2, ?3, 'fixed_params')",
            )
            .and_then(|mut s| {
                s.query_map(params![study, ATTEMPT_ATTR, WORKER_ATTR], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect()
            })
            .map_err(db)?;
        for (trial_id, key, json) in sys_rows {
            let Some(&i) = index.get(&trial_id) else { continue };
            if key == ATTEMPT_ATTR {
                out[i].attempt = json
                    .trim()
                    .parse()
                    .map_err(|_| bad(&loc, format!("trial {trial_id}: bad {ATTEMPT_ATTR} value {json}")))?;
            } else if key == WORKER_ATTR {
                out[i].worker = serde_json::from_str(&json).ok();
            } else if out[i].params.is_empty() {
                // A trial Optuna's `enqueue_trial` made: its parameters are only here.
                if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(&json) {
                    for (k, v) in m {
                        if let Some(v) = json_to_toml(&v) {
                            out[i].params.insert(k, v);
                        }
                    }
                }
            }
        }
        tx.commit().map_err(db)?;
        Ok(out)
    }

    /// Stored as a study user attribute (`study.user_attrs` in Optuna).
    fn set_study_attr(&mut self, study: i64, key: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        let loc = self.location.clone();
        let json = python_json(value);
        let tx = self.write_tx()?;
        study_exists(&tx, &loc, study)?;
        upsert_attr(&tx, &loc, "study_user_attributes", study, key, &json)?;
        tx.commit().map_err(|e| db_err(&loc, e))
    }

    fn study_attrs(&mut self, study: i64) -> Result<BTreeMap<String, serde_json::Value>, StoreError> {
        let loc = self.location.clone();
        study_exists(&self.conn, &loc, study)?;
        let rows: Vec<(String, String)> = self
            .conn
            .prepare("SELECT \"key\", value_json FROM study_user_attributes WHERE study_id = ?1")
            .and_then(|mut s| s.query_map([study], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(|e| db_err(&loc, e))?;
        Ok(rows
            .into_iter()
            .map(|(k, json)| {
                let v = serde_json::from_str(&json).unwrap_or(serde_json::Value::String(json));
                (k, v)
            })
            .collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Values: Optuna's stored representations.

pub(crate) fn value_repr(v: f64) -> (Option<f64>, &'static str) {
    if v == f64::INFINITY {
        (None, "INF_POS")
    } else if v == f64::NEG_INFINITY {
        (None, "INF_NEG")
    } else {
        (Some(v), "FINITE")
    }
}

pub(crate) fn intermediate_repr(v: f64) -> (Option<f64>, &'static str) {
    if v.is_nan() { (None, "NAN") } else { value_repr(v) }
}

pub(crate) fn stored_to_value(loc: &str, value: Option<f64>, kind: &str) -> Result<f64, StoreError> {
    match (kind, value) {
        ("FINITE", Some(v)) => Ok(v),
        ("INF_POS", _) => Ok(f64::INFINITY),
        ("INF_NEG", _) => Ok(f64::NEG_INFINITY),
        ("NAN", _) => Ok(f64::NAN),
        (k, v) => Err(bad(loc, format!("bad stored value {v:?} of type '{k}'"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters: Optuna's distributions and internal representations.

/// Encodes a trial's parameters for `trial_params` (`(name, param_value, distribution_json)`
/// rows) and the `fixed_params` JSON Optuna's `enqueue_trial` writes; a parameter without a
/// distribution is a one-choice categorical.
#[allow(clippy::type_complexity)]
pub(crate) fn encode_params<'a>(
    loc: &str,
    params: &'a Params,
    dists: &BTreeMap<String, ParamDistribution>,
) -> Result<(Vec<(&'a String, f64, String)>, String), StoreError> {
    let mut rows = Vec::with_capacity(params.len());
    let mut fixed = serde_json::Map::new();
    for (name, value) in params {
        let one;
        let dist = match dists.get(name) {
            Some(d) => d,
            None => {
                one = ParamDistribution::Categorical(vec![value.clone()]);
                &one
            }
        };
        let enc = encode_param(name, value, dist).map_err(|r| bad(loc, r))?;
        fixed.insert(name.clone(), enc.external);
        rows.push((name, enc.internal, enc.distribution_json));
    }
    Ok((rows, python_json(&serde_json::Value::Object(fixed))))
}

pub(crate) struct EncodedParam {
    /// `trial_params.param_value`.
    pub(crate) internal: f64,
    /// `trial_params.distribution_json`.
    pub(crate) distribution_json: String,
    /// What Optuna's `trial.params` shows (and `fixed_params` holds).
    pub(crate) external: serde_json::Value,
}

pub(crate) fn encode_param(name: &str, value: &Value, dist: &ParamDistribution) -> Result<EncodedParam, String> {
    match dist {
        ParamDistribution::Categorical(choices) => {
            if choices.is_empty() {
                return Err(format!("parameter '{name}': the choice list is empty"));
            }
            let encoded = choices
                .iter()
                .map(|c| encode_choice(c).map_err(|r| format!("parameter '{name}': {r}")))
                .collect::<Result<Vec<_>, _>>()?;
            let index = choices
                .iter()
                .position(|c| c == value)
                .ok_or_else(|| format!("parameter '{name}': value {value} is not one of its choices"))?;
            let json = format!(
                "{{\"name\": \"CategoricalDistribution\", \"attributes\": {{\"choices\": {}}}}}",
                python_json(&serde_json::Value::Array(encoded.clone()))
            );
            Ok(EncodedParam {
                internal: index as f64,
                distribution_json: json,
                external: encoded[index].clone(),
            })
        }
        ParamDistribution::Int { low, high, step, log } => {
            let Value::Integer(v) = value else {
                return Err(format!(
                    "parameter '{name}': an integer range needs an integer, got {value}"
                ));
            };
            // Optuna only accepts step 1 on a log scale.
            let step = if *log { 1 } else { *step };
            Ok(EncodedParam {
                internal: *v as f64,
                distribution_json: format!(
                    "{{\"name\": \"IntDistribution\", \"attributes\": {{\"log\": {log}, \"step\": {step}, \
                     \"low\": {low}, \"high\": {high}}}}}"
                ),
                external: serde_json::Value::from(*v),
            })
        }
        ParamDistribution::Float { low, high, log } => {
            let v = match value {
                Value::Float(f) => *f,
                Value::Integer(i) => *i as f64,
                other => return Err(format!("parameter '{name}': a float range needs a number, got {other}")),
            };
            if !v.is_finite() {
                return Err(format!("parameter '{name}': value {v} is not finite"));
            }
            Ok(EncodedParam {
                internal: v,
                distribution_json: format!(
                    "{{\"name\": \"FloatDistribution\", \"attributes\": {{\"step\": null, \"low\": {}, \
                     \"high\": {}, \"log\": {log}}}}}",
                    python_float(*low),
                    python_float(*high)
                ),
                external: serde_json::Value::from(v),
            })
        }
    }
}

/// One categorical choice as Optuna stores it: itself if Optuna accepts it, else the string of
/// its TOML form; refuses values that would not read back exactly.
pub(crate) fn encode_choice(c: &Value) -> Result<serde_json::Value, String> {
    let json = match c {
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Boolean(b) => serde_json::Value::Bool(*b),
        Value::Float(f) if f.is_finite() => serde_json::Value::from(*f),
        other => serde_json::Value::String(other.to_string()),
    };
    // Check through the text, as it will be read back.
    let stored = serde_json::from_str::<serde_json::Value>(&python_json(&json)).ok();
    if stored.as_ref().and_then(decode_choice).as_ref() != Some(c) {
        return Err(match c {
            Value::String(s) => format!(
                "the string choice \"{s}\" reads as another TOML value; a string choice may not look like an \
                 array, table, date or infinite number"
            ),
            other => format!("the choice {other} cannot be stored so that it reads back the same"),
        });
    }
    Ok(json)
}

/// A stored categorical choice back as a TOML value (see [`encode_choice`]).
pub(crate) fn decode_choice(c: &serde_json::Value) -> Option<Value> {
    match c {
        serde_json::Value::String(s) => Some(decode_string(s)),
        other => json_to_toml(other),
    }
}

/// A string is a TOML array, inline table, date-time or non-finite float written as text when
/// it parses as one; otherwise it is just a string.
pub(crate) fn decode_string(s: &str) -> Value {
    let parsed = toml::from_str::<toml::Table>(&format!("v = {s}")).ok();
    match parsed.as_ref().filter(|t| t.len() == 1).and_then(|t| t.get("v")) {
        Some(v @ (Value::Array(_) | Value::Table(_) | Value::Datetime(_))) => v.clone(),
        Some(Value::Float(f)) if !f.is_finite() => Value::Float(*f),
        _ => Value::String(s.to_string()),
    }
}

/// A JSON value as TOML (`null`, which TOML lacks, reads as the string "null"; only Optuna
/// itself can write it). `None` for a top-level `null` in `fixed_params`.
pub(crate) fn json_to_toml(v: &serde_json::Value) -> Option<Value> {
    Some(match v {
        serde_json::Value::Null => return None,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64()?),
        },
        serde_json::Value::String(s) => decode_string(s),
        serde_json::Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| json_to_toml(x).unwrap_or_else(|| Value::String("null".into())))
                .collect(),
        ),
        serde_json::Value::Object(m) => Value::Table(
            m.iter()
                .filter_map(|(k, x)| json_to_toml(x).map(|x| (k.clone(), x)))
                .collect(),
        ),
    })
}

/// One `trial_params` row back as the value the search sampled.
pub(crate) fn decode_param(loc: &str, name: &str, value: Option<f64>, dist_json: &str) -> Result<Value, StoreError> {
    let dist: serde_json::Value = serde_json::from_str(dist_json).map_err(|e| {
        bad(
            loc,
            format!("parameter '{name}': bad distribution_json ({e}): {dist_json}"),
        )
    })?;
    let value = value.ok_or_else(|| bad(loc, format!("parameter '{name}' has no value")))?;
    let kind = dist.get("name").and_then(|n| n.as_str()).unwrap_or("");
    Ok(match kind {
        "CategoricalDistribution" => {
            let choices = dist
                .pointer("/attributes/choices")
                .and_then(|c| c.as_array())
                .ok_or_else(|| bad(loc, format!("parameter '{name}': categorical without choices")))?;
            let choice = (value >= 0.0 && value.fract() == 0.0)
                .then(|| choices.get(value as usize))
                .flatten()
                .ok_or_else(|| bad(loc, format!("parameter '{name}': choice index {value} out of range")))?;
            decode_choice(choice).unwrap_or_else(|| Value::String("null".into()))
        }
        "IntDistribution" | "IntUniformDistribution" | "IntLogUniformDistribution" => {
            Value::Integer(value.round() as i64)
        }
        _ => Value::Float(value),
    })
}

// ---------------------------------------------------------------------------------------------
// JSON as Python's `json.dumps` writes it (", " and ": " separators, ASCII only, `repr` floats),
// so what we store is byte for byte what Optuna would.

struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W, first: bool) -> std::io::Result<()> {
        if first { Ok(()) } else { writer.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, writer: &mut W, first: bool) -> std::io::Result<()> {
        if first { Ok(()) } else { writer.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_f64<W: ?Sized + std::io::Write>(&mut self, writer: &mut W, value: f64) -> std::io::Result<()> {
        writer.write_all(python_float(value).as_bytes())
    }

    fn write_f32<W: ?Sized + std::io::Write>(&mut self, writer: &mut W, value: f32) -> std::io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                writer.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{u:04x}")?;
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn python_json(v: &serde_json::Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    v.serialize(&mut ser).expect("writing JSON to memory does not fail");
    String::from_utf8(out).expect("the formatter writes ASCII")
}

/// A float as Python's `repr` writes it: shortest round-trip digits, positional for exponents in
/// [-4, 16), else `d.ddde±XX`; always with a `.0` or exponent.
pub(crate) fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("LowerExp has an exponent");
    let exp: i32 = exp.parse().expect("LowerExp exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let e = exp as usize;
            let (int, frac) = if digits.len() > e + 1 {
                (digits[..=e].to_string(), digits[e + 1..].to_string())
            } else {
                (format!("{digits:0<width$}", width = e + 1), "0".to_string())
            };
            format!("{sign}{int}.{frac}")
        } else {
            format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let rest = if digits.len() > 1 {
            format!(".{}", &digits[1..])
        } else {
            String::new()
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{}{rest}e{esign}{:02}", &digits[..1], exp.abs())
    }
}

/// The objective value a finished trial may store, by Optuna's rules: a COMPLETE trial has a
/// value that is a number, a PRUNED one may keep one, a FAILED one has none.
pub(crate) fn finish_value(
    loc: &str,
    trial_id: i64,
    state: TrialState,
    value: Option<f64>,
) -> Result<Option<f64>, StoreError> {
    Ok(match state {
        TrialState::Complete => match value {
            Some(v) if !v.is_nan() => Some(v),
            _ => {
                return Err(bad(
                    loc,
                    format!(
                        "trial {trial_id}: a COMPLETE trial needs an objective value that is a number, got {value:?}"
                    ),
                ));
            }
        },
        TrialState::Pruned => value.filter(|v| !v.is_nan()),
        TrialState::Fail => None,
        TrialState::Waiting | TrialState::Running => {
            return Err(bad(
                loc,
                format!(
                    "trial {trial_id}: finish needs COMPLETE, PRUNED or FAIL, not {}",
                    state.optuna_name()
                ),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_repr() {
        for (f, s) in [
            (0.1, "0.1"),
            (10.0, "10.0"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123.456, "123.456"),
            (-2.5, "-2.5"),
            (0.30000000000000004, "0.30000000000000004"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ] {
            assert_eq!(python_float(f), s, "{f:e}");
        }
    }

    #[test]
    fn json_is_written_as_python_json_dumps() {
        let v = serde_json::json!({"a": [1, 2.5, "x"], "b": null, "c": "é"});
        assert_eq!(python_json(&v), r#"{"a": [1, 2.5, "x"], "b": null, "c": "\u00e9"}"#);
    }

    #[test]
    fn strings_only_decode_when_they_read_as_non_string_values() {
        assert_eq!(
            decode_string("[0.001, 0.0001]"),
            Value::Array(vec![Value::Float(1e-3), Value::Float(1e-4)])
        );
        for s in ["rk4", "16", "true", "1.5", "[unclosed", "a = 1"] {
            assert_eq!(decode_string(s), Value::String(s.into()));
        }
        assert!(encode_choice(&Value::String("[1, 2]".into())).is_err());
        assert!(encode_choice(&Value::String("inf".into())).is_err());
    }
}
