//! A [`StudyStore`](crate::store::StudyStore) on one SQLite file, laid out exactly as Optuna's
//! RDB storage (see [`crate::optuna`] for how our data map onto its tables), so
//! `optuna.load_study(study_name=NAME, storage="sqlite:///PATH")` opens what the search writes,
//! and several worker processes (on one machine, or on a shared file system with working locks)
//! can share a study.
//!
//! The protocol (claims, leases, fencing, listing) is written once in `rdb.rs`; this file holds
//! what is SQLite's own, its `Dialect`:
//!
//! * The connection: the file is in WAL mode, and a busy connection waits up to
//!   [`BUSY_TIMEOUT`] for another's lock.
//! * Locking: every write is one `BEGIN IMMEDIATE` transaction, which takes the file's write
//!   lock up front (so it never has to upgrade a read snapshot, which SQLite could refuse without
//!   waiting); the protocol's row locks are therefore empty. The trial listing reads in one
//!   deferred transaction, a consistent snapshot while workers write.
//! * Time: heartbeats are this machine's clock in UTC with microseconds (as SQLite's
//!   `CURRENT_TIMESTAMP`, which Optuna's heartbeats use, plus microseconds), and a lease has
//!   expired when `julianday(heartbeat)` is more than `lease_seconds / 86400` days old.
//! * Placeholders: the protocol's `$1`, `$2`, … are SQLite named parameters, bound by name.
//! * The schema: `create_all`'s tables with `IF NOT EXISTS`, so opening an existing file is a
//!   no-op.

use crate::dialect::{Arg, Begin, Cell, Dialect, Lock, transaction};
use crate::rdb::stamp_version;
use crate::store::StoreError;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, Statement};
use std::path::Path;
use std::time::Duration;

// `pg_connect` builds its errors with this.
use crate::store::bad;

/// How long a connection waits for another process's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

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

/// `PRAGMA journal_mode = WAL`, retried for up to [`BUSY_TIMEOUT`] while the file is locked:
/// SQLite answers "database is locked" at once, without the busy handler, when two new
/// connections switch a fresh file together (each holds a read lock and waits for the other's),
/// so several workers opening a new study at the same moment would otherwise fail.
fn switch_to_wal(conn: &Connection) -> rusqlite::Result<String> {
    let start = std::time::Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)) {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && start.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            done => return done,
        }
    }
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file and Optuna's schema if they are missing,
    /// switching it to WAL mode and setting a busy timeout of [`BUSY_TIMEOUT`].
    ///
    /// Fails when the file holds an Optuna schema of another alembic revision than
    /// [`ALEMBIC_REVISION`](crate::optuna::ALEMBIC_REVISION) (run `optuna storage upgrade` with a
    /// matching Optuna first).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let location = path.display().to_string();
        let backend = |reason: String| bad(&location, reason);
        let conn = Connection::open(path).map_err(|e| backend(format!("cannot open: {e}")))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| backend(format!("cannot set the busy timeout: {e}")))?;
        let mode = switch_to_wal(&conn).map_err(|e| backend(format!("cannot switch to WAL mode: {e}")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(backend(format!(
                "cannot switch to WAL mode (journal mode stays '{mode}'); is the file on a local file system?"
            )));
        }
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
            .map_err(|e| backend(format!("cannot set pragmas: {e}")))?;
        let mut store = Self { conn, location };
        transaction(&mut store, Begin::Write, |db| {
            db.batch(SCHEMA)?;
            stamp_version(db, "file")
        })?;
        Ok(store)
    }

    /// Where the store lives (for messages).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// `sql` prepared with `args` bound to its parameters `$1`, `$2`, … by name (every parameter
    /// must be one of them).
    fn prepare(&self, sql: &str, args: &[Arg<'_>]) -> Result<Statement<'_>, StoreError> {
        let loc = &self.location;
        let mut stmt = self.conn.prepare(sql).map_err(|e| db_err(loc, e))?;
        for index in 1..=stmt.parameter_count() {
            let name = stmt.parameter_name(index);
            let arg = name
                .and_then(|n| n.strip_prefix('$')?.parse::<usize>().ok())
                .and_then(|n| args.get(n.checked_sub(1)?))
                .ok_or_else(|| bad(loc, format!("no value for parameter {name:?} of `{sql}`")))?;
            stmt.raw_bind_parameter(index, arg).map_err(|e| db_err(loc, e))?;
        }
        Ok(stmt)
    }
}

fn db_err(location: &str, e: rusqlite::Error) -> StoreError {
    bad(location, e.to_string())
}

/// UTC time as SQLite's `CURRENT_TIMESTAMP`, which Optuna's heartbeats use (with microseconds).
fn utc_now() -> String {
    chrono::Utc::now()
        .naive_utc()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Arg::Int(v) => ToSqlOutput::from(v),
            Arg::Real(Some(v)) => ToSqlOutput::from(v),
            Arg::Real(None) => ToSqlOutput::from(rusqlite::types::Null),
            Arg::Text(v) => ToSqlOutput::from(v),
        })
    }
}

/// A column value as a [`Cell`].
fn cell(value: ValueRef<'_>) -> Result<Cell, String> {
    Ok(match value {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(v) => Cell::Int(v),
        ValueRef::Real(v) => Cell::Real(v),
        ValueRef::Text(t) => Cell::Text(String::from_utf8(t.to_vec()).map_err(|e| e.to_string())?),
        ValueRef::Blob(_) => return Err("unexpected BLOB".into()),
    })
}

impl Dialect for SqliteStore {
    const MAX_INTEGER: i64 = i64::MAX;

    fn location(&self) -> &str {
        &self.location
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.conn.execute_batch(sql).map_err(|e| db_err(&self.location, e))
    }

    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let mut stmt = self.prepare(sql, args)?;
        let changed = stmt.raw_execute().map_err(|e| db_err(&self.location, e))?;
        Ok(changed as u64)
    }

    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Vec<Cell>>, StoreError> {
        let loc = &self.location;
        let mut stmt = self.prepare(sql, args)?;
        let columns = stmt.column_count();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| db_err(loc, e))? {
            let cells = (0..columns)
                .map(|i| {
                    let value = row.get_ref(i).map_err(|e| db_err(loc, e))?;
                    cell(value).map_err(|e| bad(loc, format!("column {i} of `{sql}`: {e}")))
                })
                .collect::<Result<_, _>>()?;
            out.push(cells);
        }
        Ok(out)
    }

    fn begin(&self, mode: Begin) -> &'static str {
        match mode {
            Begin::Write => "BEGIN IMMEDIATE",
            Begin::Snapshot => "BEGIN DEFERRED",
        }
    }

    fn utc_now(&self) -> String {
        format!("'{}'", utc_now())
    }

    fn lease_expired(&self, seconds: &str) -> String {
        format!(
            "julianday(h.heartbeat) < julianday({}) - {seconds} / 86400.0",
            self.utc_now()
        )
    }

    fn lock(&self, _lock: Lock) -> &'static str {
        // `BEGIN IMMEDIATE` holds the whole file.
        ""
    }
}
