//! What the SQLite and PostgreSQL stores differ in, as one small trait: [`Dialect`].
//!
//! The study-store protocol ([`crate::rdb`]) is written once, in SQL that both databases
//! read alike: `$1`, `$2`, … placeholders (SQLite binds them by name), `ON CONFLICT` upserts,
//! `RETURNING`, and Optuna's enum values and local times as literals (which both coerce to the
//! column's type). A dialect runs that SQL on its connection and supplies the few fragments
//! that differ: how a transaction begins, the clock heartbeats are stored in and the lease
//! arithmetic on it, and the row locks a claim takes (PostgreSQL) or does without (SQLite, where
//! a write transaction holds the whole file), as Optuna's `RDBStorage` confines its dialects
//! to a few branches.

use crate::store::{StoreError, bad};
use std::ops::{Deref, DerefMut};

/// A value bound to a `$n` placeholder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Arg<'a> {
    /// An integer (ids, numbers, steps).
    Int(i64),
    /// A float, `None` for SQL `NULL`.
    Real(Option<f64>),
    /// Text (names, keys, JSON).
    Text(&'a str),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<f64> for Arg<'_> {
    fn from(v: f64) -> Self {
        Arg::Real(Some(v))
    }
}

impl From<Option<f64>> for Arg<'_> {
    fn from(v: Option<f64>) -> Self {
        Arg::Real(v)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(v)
    }
}

/// A column value read back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    /// SQL `NULL`.
    Null,
    /// An integer column.
    Int(i64),
    /// A float column.
    Real(f64),
    /// A text column (also Optuna's enum types on PostgreSQL).
    Text(String),
}

/// A Rust value read from one [`Cell`].
pub(crate) trait FromCell: Sized {
    /// The value, or what the cell holds instead.
    fn from_cell(cell: Cell) -> Result<Self, Cell>;
}

impl FromCell for i64 {
    fn from_cell(cell: Cell) -> Result<Self, Cell> {
        match cell {
            Cell::Int(v) => Ok(v),
            other => Err(other),
        }
    }
}

impl FromCell for f64 {
    fn from_cell(cell: Cell) -> Result<Self, Cell> {
        match cell {
            Cell::Real(v) => Ok(v),
            Cell::Int(v) => Ok(v as f64),
            other => Err(other),
        }
    }
}

impl FromCell for String {
    fn from_cell(cell: Cell) -> Result<Self, Cell> {
        match cell {
            Cell::Text(v) => Ok(v),
            other => Err(other),
        }
    }
}

impl<T: FromCell> FromCell for Option<T> {
    fn from_cell(cell: Cell) -> Result<Self, Cell> {
        match cell {
            Cell::Null => Ok(None),
            other => T::from_cell(other).map(Some),
        }
    }
}

/// A tuple of Rust values read from one row.
pub(crate) trait FromRow: Sized {
    /// The tuple, or why the row does not fit it.
    fn from_row(cells: Vec<Cell>) -> Result<Self, String>;
}

macro_rules! tuple_from_row {
    ($n:literal: $($t:ident),+) => {
        impl<$($t: FromCell),+> FromRow for ($($t,)+) {
            fn from_row(cells: Vec<Cell>) -> Result<Self, String> {
                if cells.len() != $n {
                    return Err(format!("expected {} columns, got {}", $n, cells.len()));
                }
                let mut cells = cells.into_iter().enumerate();
                Ok(($({
                    let (i, cell) = cells.next().expect("the length was checked");
                    $t::from_cell(cell).map_err(|c| {
                        format!("column {i}: expected {}, got {c:?}", std::any::type_name::<$t>())
                    })?
                },)+))
            }
        }
    };
}

tuple_from_row!(1: A);
tuple_from_row!(2: A, B);
tuple_from_row!(3: A, B, C);
tuple_from_row!(4: A, B, C, D);

/// What a transaction is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Begin {
    /// Reads and writes that must be atomic (every store call that writes).
    Write,
    /// Several reads from one consistent snapshot while workers write (trial listing).
    Snapshot,
}

/// The row locks the protocol asks for; a dialect may take the whole database instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// A plain read inside the transaction.
    Read,
    /// Lock the trial row (`trials t`) read, waiting for its holder: a write to one trial.
    Write,
    /// Lock the trial rows (`trials t`) read that no other transaction holds and skip the
    /// others: claims, which never wait on each other.
    Claim,
    /// Lock the study row against concurrent enqueues, but not against claims.
    Enqueue,
}

/// A database the study-store protocol ([`crate::rdb`]) runs on: the connection, and the SQL
/// that differs between databases. Implemented by [`crate::sqlite::SqliteStore`] and
/// [`crate::postgres::PostgresStore`]; every type that implements it is a
/// [`StudyStore`](crate::store::StudyStore).
pub(crate) trait Dialect: Send {
    /// The largest value Optuna's `INTEGER` columns hold here (ids, numbers, steps).
    const MAX_INTEGER: i64;

    /// Where the store lives, for messages (URLs without their passwords).
    fn location(&self) -> &str;

    /// Runs statements without parameters (schema, `BEGIN`, `COMMIT`, `ROLLBACK`).
    fn batch(&mut self, sql: &str) -> Result<(), StoreError>;

    /// Runs one statement with `args` bound to `$1`, `$2`, …; returns the rows it changed.
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError>;

    /// Runs one query with `args` bound to `$1`, `$2`, …; returns its rows.
    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Vec<Cell>>, StoreError>;

    /// The statement that begins a transaction for `mode`.
    fn begin(&self, mode: Begin) -> &'static str;

    /// An SQL expression for the current time in UTC, as heartbeats are stored.
    fn utc_now(&self) -> String;

    /// An SQL condition: the heartbeat `h.heartbeat` is older than the placeholder `seconds`.
    fn lease_expired(&self, seconds: &str) -> String;

    /// The clause that takes `lock` on the rows a `SELECT` reads (empty when the transaction
    /// already holds the database).
    fn lock(&self, lock: Lock) -> &'static str;

    /// The rows of a query as tuples.
    fn rows<T: FromRow>(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<T>, StoreError> {
        let rows = self.query(sql, args)?;
        rows.into_iter()
            .map(|cells| T::from_row(cells).map_err(|e| bad(self.location(), format!("{e} in `{sql}`"))))
            .collect()
    }

    /// The first row of a query as a tuple, if there is one.
    fn row<T: FromRow>(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Option<T>, StoreError> {
        Ok(self.rows(sql, args)?.into_iter().next())
    }

    /// `v` as a value of Optuna's `INTEGER` columns, or an error naming `what`.
    fn integer(&self, what: &str, v: impl TryInto<i64> + Copy + std::fmt::Display) -> Result<i64, StoreError> {
        v.try_into()
            .ok()
            .filter(|v| (-Self::MAX_INTEGER - 1..=Self::MAX_INTEGER).contains(v))
            .ok_or_else(|| {
                bad(
                    self.location(),
                    format!("{what} {v} does not fit Optuna's integer column"),
                )
            })
    }
}

/// Runs `body` in one transaction on `db`: committed when it returns `Ok`, rolled back when it
/// fails or panics.
pub(crate) fn transaction<D: Dialect, T>(
    db: &mut D,
    mode: Begin,
    body: impl FnOnce(&mut D) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let begin = db.begin(mode);
    db.batch(begin)?;
    let mut tx = Open { db, committed: false };
    let out = body(&mut tx)?;
    tx.batch("COMMIT")?;
    tx.committed = true;
    Ok(out)
}

/// A transaction in progress: rolled back if dropped before it commits.
struct Open<'a, D: Dialect> {
    db: &'a mut D,
    committed: bool,
}

impl<D: Dialect> Drop for Open<'_, D> {
    fn drop(&mut self) {
        if !self.committed {
            // The error that ended the transaction is what the caller needs to see.
            let _ = self.db.batch("ROLLBACK");
        }
    }
}

impl<D: Dialect> Deref for Open<'_, D> {
    type Target = D;

    fn deref(&self) -> &D {
        self.db
    }
}

impl<D: Dialect> DerefMut for Open<'_, D> {
    fn deref_mut(&mut self) -> &mut D {
        self.db
    }
}
