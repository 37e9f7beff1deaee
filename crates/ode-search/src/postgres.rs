//! A [`StudyStore`] on PostgreSQL, laid out exactly as Optuna's RDB storage (Optuna 4.9,
//! schema version 12, alembic revision `v3.2.0.a`), so
//! `optuna.load_study(study_name=NAME, storage="postgresql+psycopg2://...")` opens what the
//! search writes, and workers on many machines can share a study through one server.
//!
//! The data are mapped onto Optuna's tables exactly as the SQLite store does (see
//! [`crate::sqlite`]: categorical choices as indices, `fixed_params` on `WAITING` trials, Optuna's
//! value encodings, the fencing attempt and worker id in the trial system attributes
//! [`ATTEMPT_ATTR`] and [`WORKER_ATTR`], leases in `trial_heartbeats`), with these PostgreSQL
//! specifics:
//!
//! * The schema is what Optuna 4.9.0 (SQLAlchemy `create_all`) makes on PostgreSQL: `SERIAL`
//!   (`integer`) keys, the native enum types `trialstate`, `studydirection`, `trialvaluetype`
//!   and `trialintermediatevaluetype`, `double precision` values and `timestamp without time
//!   zone` times. [`PostgresStore::connect`] creates it in the first schema of the connection's
//!   `search_path` when it is missing (under a transaction-scoped advisory lock, so concurrent
//!   first connections create it once), and refuses a schema of another alembic revision.
//! * `datetime_start` / `datetime_complete` are the client's local time (as Optuna writes them);
//!   heartbeats are the **server's** clock in UTC (`now() AT TIME ZONE 'UTC'`), so workers with
//!   skewed clocks or other time zones agree on lease expiry. (Optuna's own heartbeat uses the
//!   server's clock in the session time zone; the two agree when the server runs in UTC.)
//! * Every call is one transaction (`READ COMMITTED`). Every write first locks the trial's row
//!   (`SELECT ... FOR UPDATE`) and then checks the attempt, so a write and a claim of the same
//!   trial are serialised, and a write from a superseded attempt fails with
//!   [`StoreError::Fenced`]. A claim locks the expired and the next waiting trials with
//!   `SELECT ... FOR UPDATE SKIP LOCKED`, so concurrent claims never wait on each other and never
//!   take the same trial; an expired trial's heartbeat is checked again once its row is locked.
//!   Enqueues lock the study's row (`FOR NO KEY UPDATE`), which keeps "enqueue unless the number
//!   exists" atomic without blocking claims.
//!
//! Give every worker thread or process its own [`PostgresStore`] (one connection each).

use crate::sqlite::{
    ALEMBIC_REVISION, ATTEMPT_ATTR, FAIL_REASON_ATTR, OPTUNA_SCHEMA_VERSION, OPTUNA_VERSION, WORKER_ATTR, bad,
    decode_param, encode_params, finish_value, intermediate_repr, json_to_toml, local_now, parse_state, python_json,
    stored_to_value, value_repr,
};
use crate::store::{Claimed, ParamDistribution, StoreError, StudyStore, TrialRecord, TrialState, orphaned};
use crate::strategy::Params;
use postgres::{Client, GenericClient, IsolationLevel, Transaction};
use std::collections::{BTreeMap, HashMap};

/// Key of the transaction-scoped advisory lock that serialises schema creation.
const SCHEMA_LOCK: i64 = 0x6f64_655f_6f70_7475; // "ode_optu"

/// Optuna's tables as SQLAlchemy's `create_all` makes them on PostgreSQL for Optuna 4.9.0
/// (checked against `pg_dump --schema-only` of a storage Optuna created: same types, columns,
/// sequences, constraint and index names).
const SCHEMA: &str = r#"
CREATE TYPE studydirection AS ENUM ('NOT_SET', 'MINIMIZE', 'MAXIMIZE');
CREATE TYPE trialstate AS ENUM ('RUNNING', 'COMPLETE', 'PRUNED', 'FAIL', 'WAITING');
CREATE TYPE trialvaluetype AS ENUM ('FINITE', 'INF_POS', 'INF_NEG');
CREATE TYPE trialintermediatevaluetype AS ENUM ('FINITE', 'INF_POS', 'INF_NEG', 'NAN');
CREATE TABLE studies (
    study_id SERIAL NOT NULL,
    study_name VARCHAR(512) NOT NULL,
    PRIMARY KEY (study_id)
);
CREATE UNIQUE INDEX ix_studies_study_name ON studies (study_name);
CREATE TABLE version_info (
    version_info_id INTEGER NOT NULL,
    schema_version INTEGER,
    library_version VARCHAR(256),
    PRIMARY KEY (version_info_id),
    CHECK (version_info_id=1)
);
CREATE TABLE study_directions (
    study_direction_id SERIAL NOT NULL,
    direction studydirection NOT NULL,
    study_id INTEGER NOT NULL,
    objective INTEGER NOT NULL,
    PRIMARY KEY (study_direction_id),
    UNIQUE (study_id, objective),
    FOREIGN KEY(study_id) REFERENCES studies (study_id)
);
CREATE TABLE study_user_attributes (
    study_user_attribute_id SERIAL NOT NULL,
    study_id INTEGER,
    key VARCHAR(512),
    value_json TEXT,
    PRIMARY KEY (study_user_attribute_id),
    UNIQUE (study_id, key),
    FOREIGN KEY(study_id) REFERENCES studies (study_id)
);
CREATE TABLE study_system_attributes (
    study_system_attribute_id SERIAL NOT NULL,
    study_id INTEGER,
    key VARCHAR(512),
    value_json TEXT,
    PRIMARY KEY (study_system_attribute_id),
    UNIQUE (study_id, key),
    FOREIGN KEY(study_id) REFERENCES studies (study_id)
);
CREATE TABLE trials (
    trial_id SERIAL NOT NULL,
    number INTEGER,
    study_id INTEGER,
    state trialstate NOT NULL,
    datetime_start TIMESTAMP WITHOUT TIME ZONE,
    datetime_complete TIMESTAMP WITHOUT TIME ZONE,
    PRIMARY KEY (trial_id),
    FOREIGN KEY(study_id) REFERENCES studies (study_id)
);
CREATE INDEX ix_trials_study_id ON trials (study_id);
CREATE TABLE trial_user_attributes (
    trial_user_attribute_id SERIAL NOT NULL,
    trial_id INTEGER,
    key VARCHAR(512),
    value_json TEXT,
    PRIMARY KEY (trial_user_attribute_id),
    UNIQUE (trial_id, key),
    FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
CREATE TABLE trial_system_attributes (
    trial_system_attribute_id SERIAL NOT NULL,
    trial_id INTEGER,
    key VARCHAR(512),
    value_json TEXT,
    PRIMARY KEY (trial_system_attribute_id),
    UNIQUE (trial_id, key),
    FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
CREATE TABLE trial_params (
    param_id SERIAL NOT NULL,
    trial_id INTEGER,
    param_name VARCHAR(512),
    param_value FLOAT,
    distribution_json TEXT,
    PRIMARY KEY (param_id),
    UNIQUE (trial_id, param_name),
    FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
CREATE TABLE trial_values (
    trial_value_id SERIAL NOT NULL,
    trial_id INTEGER NOT NULL,
    objective INTEGER NOT NULL,
    value FLOAT,
    value_type trialvaluetype NOT NULL,
    PRIMARY KEY (trial_value_id),
    UNIQUE (trial_id, objective),
    FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
CREATE TABLE trial_intermediate_values (
    trial_intermediate_value_id SERIAL NOT NULL,
    trial_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    intermediate_value FLOAT,
    intermediate_value_type trialintermediatevaluetype NOT NULL,
    PRIMARY KEY (trial_intermediate_value_id),
    UNIQUE (trial_id, step),
    FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
CREATE TABLE trial_heartbeats (
    trial_heartbeat_id SERIAL NOT NULL,
    trial_id INTEGER NOT NULL,
    heartbeat TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    PRIMARY KEY (trial_heartbeat_id),
    UNIQUE (trial_id),
    FOREIGN KEY(trial_id) REFERENCES trials (trial_id)
);
CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
"#;

/// The server's clock in UTC, as heartbeats are stored.
const UTC_NOW: &str = "(now() AT TIME ZONE 'UTC')";

/// A study store on a PostgreSQL database in Optuna's layout (see the [module docs](self)).
pub struct PostgresStore {
    client: Client,
    location: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?KEY=VALUE&...]`, or a
    /// `key=value` connection string; TLS by `sslmode`/`sslrootcert`, the password from the URL,
    /// `PGPASSWORD` or a pgpass file: see [`crate::pg_connect`]) and creates Optuna's schema if
    /// it is missing. Errors show the URL without its password.
    ///
    /// Fails when the database holds an Optuna schema of another alembic revision than
    /// [`ALEMBIC_REVISION`] (run `optuna storage upgrade` with a matching Optuna first).
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let target = crate::pg_connect::PgTarget::parse(url)?;
        let location = target.location().to_string();
        let client = target.connect()?;
        let mut store = Self { client, location };
        store.init_schema()?;
        Ok(store)
    }

    /// Where the store lives (the URL without its password, for messages).
    pub fn location(&self) -> &str {
        &self.location
    }

    fn init_schema(&mut self) -> Result<(), StoreError> {
        let loc = self.location.clone();
        let db = |e| db_err(&loc, e);
        let mut tx = self.client.transaction().map_err(db)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .map_err(db)?;
        let exists: bool = tx
            .query_one("SELECT to_regclass('studies') IS NOT NULL", &[])
            .map_err(db)?
            .get(0);
        if !exists {
            tx.batch_execute(SCHEMA).map_err(db)?;
        }
        tx.execute(
            "INSERT INTO version_info (version_info_id, schema_version, library_version) VALUES (1, $1, $2) \
             ON CONFLICT (version_info_id) DO NOTHING",
            &[&(OPTUNA_SCHEMA_VERSION as i32), &OPTUNA_VERSION],
        )
        .map_err(db)?;
        let revisions: Vec<String> = tx
            .query("SELECT version_num FROM alembic_version", &[])
            .map_err(db)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        match revisions.as_slice() {
            [] => {
                tx.execute(
                    "INSERT INTO alembic_version (version_num) VALUES ($1)",
                    &[&ALEMBIC_REVISION],
                )
                .map_err(db)?;
            }
            [r] if r == ALEMBIC_REVISION => {}
            other => {
                return Err(bad(
                    &loc,
                    format!(
                        "the database has Optuna schema revision {other:?}, this program writes {ALEMBIC_REVISION} \
                         (Optuna {OPTUNA_VERSION}); migrate it with a matching `optuna storage upgrade`"
                    ),
                ));
            }
        }
        tx.commit().map_err(db)
    }

    /// Locks the trial's row and checks that `attempt` still holds the trial; a re-queued trial
    /// (`WAITING`, same attempt) goes back to `RUNNING` when `revive`.
    fn hold(
        tx: &mut Transaction<'_>,
        loc: &str,
        trial_id: i64,
        attempt: u32,
        revive: bool,
    ) -> Result<TrialState, StoreError> {
        let id = int4(loc, "trial id", trial_id)?;
        let state: Option<String> = tx
            .query_opt("SELECT state::text FROM trials WHERE trial_id = $1 FOR UPDATE", &[&id])
            .map_err(|e| db_err(loc, e))?
            .map(|r| r.get(0));
        let state = match state {
            Some(s) => parse_state(loc, &s)?,
            None => return Err(bad(loc, format!("no trial with id {trial_id}"))),
        };
        let current = read_attempt(tx, loc, id)?;
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
                "UPDATE trials SET state = 'RUNNING', datetime_start = $2::text::timestamp WHERE trial_id = $1",
                &[&id, &local_now()],
            )
            .map_err(|e| db_err(loc, e))?;
            upsert_heartbeat(tx, loc, id)?;
            return Ok(TrialState::Running);
        }
        Ok(state)
    }
}

pub use crate::pg_connect::redact;

fn db_err(location: &str, e: postgres::Error) -> StoreError {
    let reason = match e.as_db_error() {
        Some(d) => d.to_string(),
        None => e.to_string(),
    };
    bad(location, reason)
}

/// An id or number as Optuna's `integer` columns hold it.
fn int4(loc: &str, what: &str, v: impl TryInto<i32> + Copy + std::fmt::Display) -> Result<i32, StoreError> {
    v.try_into()
        .map_err(|_| bad(loc, format!("{what} {v} does not fit Optuna's integer column")))
}

fn upsert_heartbeat(tx: &mut Transaction<'_>, loc: &str, trial_id: i32) -> Result<(), StoreError> {
    tx.execute(
        &format!(
            "INSERT INTO trial_heartbeats (trial_id, heartbeat) VALUES ($1, {UTC_NOW}) \
             ON CONFLICT (trial_id) DO UPDATE SET heartbeat = excluded.heartbeat"
        ),
        &[&trial_id],
    )
    .map_err(|e| db_err(loc, e))?;
    Ok(())
}

/// Upserts an attribute row of `table` (`trial_*_attributes` or `study_*_attributes`).
fn upsert_attr(
    tx: &mut Transaction<'_>,
    loc: &str,
    table: &str,
    id: i32,
    key: &str,
    json: &str,
) -> Result<(), StoreError> {
    let owner = if table.starts_with("study") {
        "study_id"
    } else {
        "trial_id"
    };
    tx.execute(
        &format!(
            "INSERT INTO {table} ({owner}, key, value_json) VALUES ($1, $2, $3) \
             ON CONFLICT ({owner}, key) DO UPDATE SET value_json = excluded.value_json"
        ),
        &[&id, &key, &json],
    )
    .map_err(|e| db_err(loc, e))?;
    Ok(())
}

fn read_attempt(c: &mut impl GenericClient, loc: &str, trial_id: i32) -> Result<u32, StoreError> {
    let json: Option<String> = c
        .query_opt(
            "SELECT value_json FROM trial_system_attributes WHERE trial_id = $1 AND key = $2",
            &[&trial_id, &ATTEMPT_ATTR],
        )
        .map_err(|e| db_err(loc, e))?
        .map(|r| r.get(0));
    match json {
        None => Ok(0),
        Some(j) => j
            .trim()
            .parse::<u32>()
            .map_err(|_| bad(loc, format!("trial {trial_id}: bad {ATTEMPT_ATTR} value {j}"))),
    }
}

/// `(trial id, worker id JSON)` of the `RUNNING` trials of `study`, or of the trial `trial`
/// (then in any state), for [`orphaned`].
fn worker_rows(
    c: &mut impl GenericClient,
    loc: &str,
    study: Option<i32>,
    trial: Option<i32>,
) -> Result<Vec<(i32, String)>, StoreError> {
    let rows = c
        .query(
            "SELECT t.trial_id, a.value_json FROM trials t JOIN trial_system_attributes a \
             ON a.trial_id = t.trial_id AND a.key = $1 \
             WHERE ($2::int IS NULL OR (t.study_id = $2 AND t.state = 'RUNNING')) \
             AND ($3::int IS NULL OR t.trial_id = $3)",
            &[&WORKER_ATTR, &study, &trial],
        )
        .map_err(|e| db_err(loc, e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

fn study_id(c: &mut impl GenericClient, loc: &str, study: i64, lock: &str) -> Result<i32, StoreError> {
    let id = int4(loc, "study id", study)?;
    let found = c
        .query_opt(
            &format!("SELECT study_id FROM studies WHERE study_id = $1 {lock}"),
            &[&id],
        )
        .map_err(|e| db_err(loc, e))?;
    if found.is_none() {
        return Err(bad(loc, format!("no study with id {study}")));
    }
    Ok(id)
}

/// Adds a JSON object of external values (`fixed_params`) to `params`.
fn add_fixed(params: &mut Params, json: &str) {
    if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(json) {
        for (k, v) in m {
            if let Some(v) = json_to_toml(&v) {
                params.insert(k, v);
            }
        }
    }
}

/// The parameters of one trial, decoded from `trial_params` (or, for a trial Optuna's
/// `enqueue_trial` made, from its `fixed_params` system attribute).
fn read_params(c: &mut impl GenericClient, loc: &str, trial_id: i32) -> Result<Params, StoreError> {
    let rows = c
        .query(
            "SELECT param_name, param_value, distribution_json FROM trial_params WHERE trial_id = $1 ORDER BY param_id",
            &[&trial_id],
        )
        .map_err(|e| db_err(loc, e))?;
    let mut params = Params::new();
    for r in rows {
        let (name, value, dist): (String, Option<f64>, String) = (r.get(0), r.get(1), r.get(2));
        params.insert(name.clone(), decode_param(loc, &name, value, &dist)?);
    }
    if params.is_empty() {
        let fixed: Option<String> = c
            .query_opt(
                "SELECT value_json FROM trial_system_attributes WHERE trial_id = $1 AND key = 'fixed_params'",
                &[&trial_id],
            )
            .map_err(|e| db_err(loc, e))?
            .map(|r| r.get(0));
        if let Some(f) = fixed {
            add_fixed(&mut params, &f);
        }
    }
    Ok(params)
}

/// The RUNNING trials of `study` that lost their worker: the lease expired, or the worker was a
/// process of this machine that has died. Rows another transaction holds (a claim, or the
/// worker writing) are skipped; the rows returned are locked by `tx`.
fn lost_trials(tx: &mut Transaction<'_>, loc: &str, study: i32, lease_seconds: f64) -> Result<Vec<i32>, StoreError> {
    let db = |e| db_err(loc, e);
    let expired = format!(
        "FROM trials t JOIN trial_heartbeats h ON h.trial_id = t.trial_id \
         WHERE t.state = 'RUNNING' AND h.heartbeat < {UTC_NOW} - make_interval(secs => $2)"
    );
    let stale: Vec<i32> = tx
        .query(
            &format!("SELECT t.trial_id {expired} AND t.study_id = $1 ORDER BY t.trial_id FOR UPDATE OF t SKIP LOCKED"),
            &[&study, &lease_seconds],
        )
        .map_err(db)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut lost = Vec::with_capacity(stale.len());
    for trial_id in stale {
        // Now that the row is locked, no heartbeat can come in: check the latest one.
        let still = tx
            .query_opt(
                &format!("SELECT 1 {expired} AND t.trial_id = $1"),
                &[&trial_id, &lease_seconds],
            )
            .map_err(db)?;
        if still.is_some() {
            lost.push(trial_id);
        }
    }
    let held_by_dead = orphaned(worker_rows(tx, loc, Some(study), None)?);
    for trial_id in held_by_dead {
        if lost.contains(&trial_id) {
            continue;
        }
        let locked = tx
            .query_opt(
                "SELECT 1 FROM trials WHERE trial_id = $1 AND state = 'RUNNING' FOR UPDATE SKIP LOCKED",
                &[&trial_id],
            )
            .map_err(db)?;
        // Once the row is locked no claim can change its worker: read the worker again.
        if locked.is_some() && !orphaned(worker_rows(tx, loc, None, Some(trial_id))?).is_empty() {
            lost.push(trial_id);
        }
    }
    Ok(lost)
}

/// Puts each `lost` trial back in the queue, or fails it (with the reason) once it has lost
/// its worker `max_attempts` times.
fn requeue_or_fail(tx: &mut Transaction<'_>, loc: &str, lost: Vec<i32>, max_attempts: u32) -> Result<(), StoreError> {
    let db = |e| db_err(loc, e);
    for trial_id in lost {
        let attempt = read_attempt(tx, loc, trial_id)?;
        if attempt >= max_attempts {
            tx.execute(
                "UPDATE trials SET state = 'FAIL', datetime_complete = $2::text::timestamp WHERE trial_id = $1",
                &[&trial_id, &local_now()],
            )
            .map_err(db)?;
            tx.execute("DELETE FROM trial_values WHERE trial_id = $1", &[&trial_id])
                .map_err(db)?;
            let reason = serde_json::Value::from(format!("lost its worker {attempt} times"));
            upsert_attr(
                tx,
                loc,
                "trial_user_attributes",
                trial_id,
                FAIL_REASON_ATTR,
                &python_json(&reason),
            )?;
        } else {
            tx.execute(
                "UPDATE trials SET state = 'WAITING', datetime_start = NULL WHERE trial_id = $1",
                &[&trial_id],
            )
            .map_err(db)?;
        }
    }
    Ok(())
}

impl StudyStore for PostgresStore {
    fn open_study(&mut self, name: &str) -> Result<i64, StoreError> {
        let loc = self.location.clone();
        let db = |e| db_err(&loc, e);
        let mut tx = self.client.transaction().map_err(db)?;
        let inserted = tx
            .query_opt(
                "INSERT INTO studies (study_name) VALUES ($1) ON CONFLICT (study_name) DO NOTHING RETURNING study_id",
                &[&name],
            )
            .map_err(db)?;
        let id: i32 = match inserted {
            Some(r) => {
                let id: i32 = r.get(0);
                tx.execute(
                    "INSERT INTO study_directions (direction, study_id, objective) VALUES ('MINIMIZE', $1, 0)",
                    &[&id],
                )
                .map_err(db)?;
                id
            }
            None => tx
                .query_one("SELECT study_id FROM studies WHERE study_name = $1", &[&name])
                .map_err(db)?
                .get(0),
        };
        tx.commit().map_err(db)?;
        Ok(i64::from(id))
    }

    fn study_names(&mut self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .client
            .query("SELECT study_name FROM studies ORDER BY study_id", &[])
            .map_err(|e| db_err(&self.location, e))?
            .iter()
            .map(|r| r.get(0))
            .collect())
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
        let (rows, fixed_json) = encode_params(&loc, params, dists)?;
        let number = int4(&loc, "trial number", number)?;

        let mut tx = self.client.transaction().map_err(db)?;
        // Serialises enqueues of this study (claims and Optuna's key-share locks pass).
        let study = study_id(&mut tx, &loc, study, "FOR NO KEY UPDATE")?;
        let exists: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM trials WHERE study_id = $1 AND number = $2",
                &[&study, &number],
            )
            .map_err(db)?
            .get(0);
        if exists == 0 {
            let trial_id: i32 = tx
                .query_one(
                    "INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete) \
                     VALUES ($1, $2, 'WAITING', NULL, NULL) RETURNING trial_id",
                    &[&number, &study],
                )
                .map_err(db)?
                .get(0);
            for (name, internal, dist) in &rows {
                tx.execute(
                    "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) \
                     VALUES ($1, $2, $3, $4)",
                    &[&trial_id, name, internal, dist],
                )
                .map_err(db)?;
            }
            upsert_attr(
                &mut tx,
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
        let mut tx = self.client.transaction().map_err(db)?;
        let study = study_id(&mut tx, &loc, study, "")?;
        // 1. Trials whose worker stopped renewing its lease, or whose worker was a process of
        //    this machine that has died, go back to the queue (or fail).
        let lost = lost_trials(&mut tx, &loc, study, lease_seconds)?;
        requeue_or_fail(&mut tx, &loc, lost, max_attempts)?;
        // 2. The lowest-numbered waiting trial no other transaction holds.
        let next = tx
            .query_opt(
                "SELECT trial_id, number FROM trials WHERE study_id = $1 AND state = 'WAITING' \
                 ORDER BY number, trial_id LIMIT 1 FOR UPDATE SKIP LOCKED",
                &[&study],
            )
            .map_err(db)?;
        let Some(next) = next else {
            tx.commit().map_err(db)?;
            return Ok(None);
        };
        let (trial_id, number): (i32, Option<i32>) = (next.get(0), next.get(1));
        let attempt = read_attempt(&mut tx, &loc, trial_id)? + 1;
        tx.execute(
            "UPDATE trials SET state = 'RUNNING', datetime_start = $2::text::timestamp, datetime_complete = NULL \
             WHERE trial_id = $1",
            &[&trial_id, &local_now()],
        )
        .map_err(db)?;
        upsert_attr(
            &mut tx,
            &loc,
            "trial_system_attributes",
            trial_id,
            ATTEMPT_ATTR,
            &attempt.to_string(),
        )?;
        upsert_attr(
            &mut tx,
            &loc,
            "trial_system_attributes",
            trial_id,
            WORKER_ATTR,
            &python_json(&serde_json::Value::from(worker)),
        )?;
        upsert_heartbeat(&mut tx, &loc, trial_id)?;
        let params = read_params(&mut tx, &loc, trial_id)?;
        tx.commit().map_err(db)?;
        let number = number
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| bad(&loc, format!("trial {trial_id} has number {number:?}")))?;
        Ok(Some(Claimed {
            trial_id: i64::from(trial_id),
            number,
            attempt,
            params,
        }))
    }

    fn heartbeat(&mut self, trial_id: i64, attempt: u32) -> Result<(), StoreError> {
        let loc = self.location.clone();
        let mut tx = self.client.transaction().map_err(|e| db_err(&loc, e))?;
        Self::hold(&mut tx, &loc, trial_id, attempt, true)?;
        upsert_heartbeat(&mut tx, &loc, int4(&loc, "trial id", trial_id)?)?;
        tx.commit().map_err(|e| db_err(&loc, e))
    }

    fn report(&mut self, trial_id: i64, attempt: u32, step: u64, value: f64) -> Result<(), StoreError> {
        let loc = self.location.clone();
        let step = int4(&loc, "step", step)?;
        let (stored, kind) = intermediate_repr(value);
        let mut tx = self.client.transaction().map_err(|e| db_err(&loc, e))?;
        Self::hold(&mut tx, &loc, trial_id, attempt, true)?;
        tx.execute(
            "INSERT INTO trial_intermediate_values (trial_id, step, intermediate_value, intermediate_value_type) \
             VALUES ($1, $2, $3, $4::text::trialintermediatevaluetype) ON CONFLICT (trial_id, step) DO UPDATE SET \
             intermediate_value = excluded.intermediate_value, intermediate_value_type = excluded.intermediate_value_type",
            &[&int4(&loc, "trial id", trial_id)?, &step, &stored, &kind],
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
        let mut tx = self.client.transaction().map_err(|e| db_err(&loc, e))?;
        Self::hold(&mut tx, &loc, trial_id, attempt, true)?;
        let id = int4(&loc, "trial id", trial_id)?;
        upsert_attr(&mut tx, &loc, "trial_user_attributes", id, key, &json)?;
        tx.commit().map_err(|e| db_err(&loc, e))
    }

    fn finish(&mut self, trial_id: i64, attempt: u32, state: TrialState, value: Option<f64>) -> Result<(), StoreError> {
        let loc = self.location.clone();
        let db = |e| db_err(&loc, e);
        // Optuna's rules: a complete trial has a value that is not NaN, a failed one none.
        let value = finish_value(&loc, trial_id, state, value)?;
        let id = int4(&loc, "trial id", trial_id)?;
        let mut tx = self.client.transaction().map_err(db)?;
        Self::hold(&mut tx, &loc, trial_id, attempt, false)?;
        match value {
            Some(v) => {
                let (stored, kind) = value_repr(v);
                tx.execute(
                    "INSERT INTO trial_values (trial_id, objective, value, value_type) \
                     VALUES ($1, 0, $2, $3::text::trialvaluetype) ON CONFLICT (trial_id, objective) \
                     DO UPDATE SET value = excluded.value, value_type = excluded.value_type",
                    &[&id, &stored, &kind],
                )
                .map_err(db)?;
            }
            None => {
                tx.execute("DELETE FROM trial_values WHERE trial_id = $1", &[&id])
                    .map_err(db)?;
            }
        }
        tx.execute(
            "UPDATE trials SET state = $2::text::trialstate, \
             datetime_start = COALESCE(datetime_start, $3::text::timestamp), datetime_complete = $3::text::timestamp \
             WHERE trial_id = $1",
            &[&id, &state.optuna_name(), &local_now()],
        )
        .map_err(db)?;
        tx.commit().map_err(db)
    }

    fn trials(&mut self, study: i64) -> Result<Vec<TrialRecord>, StoreError> {
        let loc = self.location.clone();
        let db = |e| db_err(&loc, e);
        // One snapshot for all the reads while workers write.
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(db)?;
        let study = study_id(&mut tx, &loc, study, "")?;
        let rows = tx
            .query(
                "SELECT trial_id, number, state::text FROM trials WHERE study_id = $1 ORDER BY number, trial_id",
                &[&study],
            )
            .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut index = HashMap::with_capacity(rows.len());
        for r in rows {
            let (trial_id, number, state): (i32, Option<i32>, String) = (r.get(0), r.get(1), r.get(2));
            let number = number
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| bad(&loc, format!("trial {trial_id} has no valid number")))?;
            index.insert(trial_id, out.len());
            out.push(TrialRecord {
                trial_id: i64::from(trial_id),
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

        for r in tx
            .query(
                "SELECT p.trial_id, p.param_name, p.param_value, p.distribution_json FROM trial_params p \
                 JOIN trials t ON t.trial_id = p.trial_id WHERE t.study_id = $1 ORDER BY p.param_id",
                &[&study],
            )
            .map_err(db)?
        {
            let (trial_id, name, value, dist): (i32, String, Option<f64>, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            if let Some(&i) = index.get(&trial_id) {
                let v = decode_param(&loc, &name, value, &dist)?;
                out[i].params.insert(name, v);
            }
        }

        for r in tx
            .query(
                "SELECT v.trial_id, v.value, v.value_type::text FROM trial_values v \
                 JOIN trials t ON t.trial_id = v.trial_id WHERE t.study_id = $1 AND v.objective = 0",
                &[&study],
            )
            .map_err(db)?
        {
            let (trial_id, value, kind): (i32, Option<f64>, String) = (r.get(0), r.get(1), r.get(2));
            if let Some(&i) = index.get(&trial_id) {
                out[i].value = Some(stored_to_value(&loc, value, &kind)?);
            }
        }

        for r in tx
            .query(
                "SELECT v.trial_id, v.step, v.intermediate_value, v.intermediate_value_type::text \
                 FROM trial_intermediate_values v JOIN trials t ON t.trial_id = v.trial_id WHERE t.study_id = $1",
                &[&study],
            )
            .map_err(db)?
        {
            let (trial_id, step, value, kind): (i32, i32, Option<f64>, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            if let (Some(&i), Ok(step)) = (index.get(&trial_id), u64::try_from(step)) {
                out[i].intermediate.insert(step, stored_to_value(&loc, value, &kind)?);
            }
        }

        for r in tx
            .query(
                "SELECT a.trial_id, a.key, a.value_json FROM trial_user_attributes a \
                 JOIN trials t ON t.trial_id = a.trial_id WHERE t.study_id = $1",
                &[&study],
            )
            .map_err(db)?
        {
            let (trial_id, key, json): (i32, String, String) = (r.get(0), r.get(1), r.get(2));
            if let Some(&i) = index.get(&trial_id) {
                // Python may have written NaN / Infinity, which JSON proper lacks: keep the text.
                let v = serde_json::from_str(&json).unwrap_or(serde_json::Value::String(json));
                out[i].user_attrs.insert(key, v);
            }
        }

        for r in tx
            .query(
                "SELECT a.trial_id, a.key, a.value_json FROM trial_system_attributes a \
                 JOIN trials t ON t.trial_id = a.trial_id WHERE t.study_id = $1 \
                 AND a.key IN ($2, $3, 'fixed_params')",
                &[&study, &ATTEMPT_ATTR, &WORKER_ATTR],
            )
            .map_err(db)?
        {
            let (trial_id, key, json): (i32, String, String) = (r.get(0), r.get(1), r.get(2));
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
                add_fixed(&mut out[i].params, &json);
            }
        }
        tx.commit().map_err(db)?;
        Ok(out)
    }

    /// Stored as a study user attribute (`study.user_attrs` in Optuna).
    fn set_study_attr(&mut self, study: i64, key: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        let loc = self.location.clone();
        let json = python_json(value);
        let mut tx = self.client.transaction().map_err(|e| db_err(&loc, e))?;
        let study = study_id(&mut tx, &loc, study, "")?;
        upsert_attr(&mut tx, &loc, "study_user_attributes", study, key, &json)?;
        tx.commit().map_err(|e| db_err(&loc, e))
    }

    fn study_attrs(&mut self, study: i64) -> Result<BTreeMap<String, serde_json::Value>, StoreError> {
        let loc = self.location.clone();
        let study = study_id(&mut self.client, &loc, study, "")?;
        let rows = self
            .client
            .query(
                "SELECT key, value_json FROM study_user_attributes WHERE study_id = $1",
                &[&study],
            )
            .map_err(|e| db_err(&loc, e))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let (k, json): (String, String) = (r.get(0), r.get(1));
                let v = serde_json::from_str(&json).unwrap_or(serde_json::Value::String(json));
                (k, v)
            })
            .collect())
    }
}
