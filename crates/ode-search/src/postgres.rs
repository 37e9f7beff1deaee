//! A [`StudyStore`](crate::store::StudyStore) on PostgreSQL, laid out exactly as Optuna's RDB
//! storage (see [`crate::optuna`] for how our data map onto its tables), so
//! `optuna.load_study(study_name=NAME, storage="postgresql+psycopg2://...")` opens what the
//! search writes, and workers on many machines can share a study through one server.
//!
//! The protocol (claims, leases, fencing, listing) is written once in `rdb.rs`; this file holds
//! what is PostgreSQL's own, its `Dialect`:
//!
//! * The schema is what Optuna 4.9.0 (SQLAlchemy `create_all`) makes on PostgreSQL: `SERIAL`
//!   (`integer`) keys, the native enum types `trialstate`, `studydirection`, `trialvaluetype`
//!   and `trialintermediatevaluetype`, `double precision` values and `timestamp without time
//!   zone` times. [`PostgresStore::connect`] creates it in the first schema of the connection's
//!   `search_path` when it is missing (under a transaction-scoped advisory lock, so concurrent
//!   first connections create it once), and refuses a schema of another alembic revision.
//! * Time: `datetime_start` / `datetime_complete` are the client's local time (as Optuna writes
//!   them); heartbeats are the **server's** clock in UTC (`now() AT TIME ZONE 'UTC'`), so workers
//!   with skewed clocks or other time zones agree on lease expiry, and a lease has expired when
//!   the heartbeat is older than `make_interval(secs => lease_seconds)`. (Optuna's own heartbeat
//!   uses the server's clock in the session time zone; the two agree when the server runs in
//!   UTC.)
//! * Locking: every call is one transaction (`READ COMMITTED`; the trial listing reads one
//!   `REPEATABLE READ` snapshot). Every write first locks the trial's row (`SELECT ... FOR
//!   UPDATE`) and then checks the attempt; a claim locks the expired and the next waiting trials
//!   with `SELECT ... FOR UPDATE SKIP LOCKED`, so concurrent claims never wait on each other and
//!   never take the same trial. Enqueues lock the study's row (`FOR NO KEY UPDATE`), which keeps
//!   "enqueue unless the number exists" atomic without blocking claims.
//! * Types: ids, numbers and steps are `integer` (a value outside its range is refused); values
//!   are bound with the type the server infers for each placeholder, and Optuna's enum columns
//!   read as their labels.
//!
//! Give every worker thread or process its own [`PostgresStore`] (one connection each).

use crate::dialect::{Arg, Begin, Cell, Dialect, Lock, transaction};
use crate::rdb::stamp_version;
use crate::store::{StoreError, bad};
use postgres::types::{FromSql, Kind, ToSql, Type};
use postgres::{Client, Row, Statement};

pub use crate::pg_connect::redact;

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
    /// [`ALEMBIC_REVISION`](crate::optuna::ALEMBIC_REVISION) (run `optuna storage upgrade` with a
    /// matching Optuna first).
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let target = crate::pg_connect::PgTarget::parse(url)?;
        let location = target.location().to_string();
        let client = target.connect()?;
        let mut store = Self { client, location };
        transaction(&mut store, Begin::Write, |db| {
            db.execute("SELECT pg_advisory_xact_lock($1)", &[SCHEMA_LOCK.into()])?;
            if db
                .row::<(i64,)>("SELECT 1 WHERE to_regclass('studies') IS NULL", &[])?
                .is_some()
            {
                db.batch(SCHEMA)?;
            }
            stamp_version(db, "database")
        })?;
        Ok(store)
    }

    /// Where the store lives (the URL without its password, for messages).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Prepares `sql`, binds `args` with the types the server inferred for its placeholders, and
    /// runs `body` on the statement.
    fn run<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        body: impl FnOnce(&mut Client, &Statement, &[&(dyn ToSql + Sync)]) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let loc = &self.location;
        let stmt = self.client.prepare(sql).map_err(|e| db_err(loc, e))?;
        let types = stmt.params();
        if types.len() != args.len() {
            let reason = format!("`{sql}` has {} parameters, got {} values", types.len(), args.len());
            return Err(bad(loc, reason));
        }
        let values = args
            .iter()
            .zip(types)
            .map(|(arg, ty)| to_sql(*arg, ty).map_err(|e| bad(loc, format!("{e} in `{sql}`"))))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| &**v).collect();
        body(&mut self.client, &stmt, &refs).map_err(|e| db_err(loc, e))
    }
}

fn db_err(location: &str, e: postgres::Error) -> StoreError {
    let reason = match e.as_db_error() {
        Some(d) => d.to_string(),
        None => e.to_string(),
    };
    bad(location, reason)
}

/// `arg` as a value of the type the server inferred for its placeholder.
fn to_sql<'a>(arg: Arg<'a>, ty: &Type) -> Result<Box<dyn ToSql + Sync + 'a>, String> {
    Ok(match arg {
        Arg::Int(v) if *ty == Type::INT4 => {
            Box::new(i32::try_from(v).map_err(|_| format!("{v} does not fit Optuna's integer column"))?)
        }
        Arg::Int(v) if *ty == Type::INT8 => Box::new(v),
        Arg::Real(v) if *ty == Type::FLOAT8 => Box::new(v),
        Arg::Text(v) if <&str as ToSql>::accepts(ty) => Box::new(v),
        arg => return Err(format!("cannot bind {arg:?} to a parameter of type {ty}")),
    })
}

/// Text, or the label of an enum value (Optuna's `trialstate`, `trialvaluetype`, …).
struct Label(String);

impl<'a> FromSql<'a> for Label {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        match ty.kind() {
            Kind::Enum(_) => Ok(Label(std::str::from_utf8(raw)?.to_owned())),
            _ => String::from_sql(ty, raw).map(Label),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(ty.kind(), Kind::Enum(_)) || <String as FromSql>::accepts(ty)
    }
}

/// Column `i` of `row` as a [`Cell`].
fn cell(row: &Row, i: usize) -> Result<Cell, postgres::Error> {
    let ty = row.columns()[i].type_();
    Ok(if *ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i)?
            .map_or(Cell::Null, |v| Cell::Int(v.into()))
    } else if *ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i)?.map_or(Cell::Null, Cell::Int)
    } else if *ty == Type::FLOAT8 {
        row.try_get::<_, Option<f64>>(i)?.map_or(Cell::Null, Cell::Real)
    } else {
        row.try_get::<_, Option<Label>>(i)?
            .map_or(Cell::Null, |Label(v)| Cell::Text(v))
    })
}

impl Dialect for PostgresStore {
    const MAX_INTEGER: i64 = i32::MAX as i64;

    fn location(&self) -> &str {
        &self.location
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.client.batch_execute(sql).map_err(|e| db_err(&self.location, e))
    }

    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        self.run(sql, args, |client, stmt, values| client.execute(stmt, values))
    }

    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Vec<Cell>>, StoreError> {
        self.run(sql, args, |client, stmt, values| {
            let rows = client.query(stmt, values)?;
            rows.iter()
                .map(|row| (0..row.len()).map(|i| cell(row, i)).collect())
                .collect()
        })
    }

    fn begin(&self, mode: Begin) -> &'static str {
        match mode {
            Begin::Write => "BEGIN",
            Begin::Snapshot => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        }
    }

    fn utc_now(&self) -> String {
        UTC_NOW.into()
    }

    fn lease_expired(&self, seconds: &str) -> String {
        format!("h.heartbeat < {UTC_NOW} - make_interval(secs => {seconds})")
    }

    fn lock(&self, lock: Lock) -> &'static str {
        match lock {
            Lock::Read => "",
            Lock::Write => "FOR UPDATE",
            Lock::Claim => "FOR UPDATE OF t SKIP LOCKED",
            Lock::Enqueue => "FOR NO KEY UPDATE",
        }
    }
}
