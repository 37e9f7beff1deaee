//! The study store: where trials, their parameters, per-epoch values and results live, so a
//! crash loses no finished trial and workers on many machines can share a study.
//!
//! The search drivers only talk to the [`StudyStore`] trait; [`crate::sqlite::SqliteStore`]
//! implements it on one SQLite file and [`crate::postgres::PostgresStore`] on a PostgreSQL
//! database, both laid out as Optuna's RDB storage, so `optuna.load_study(study_name=...,
//! storage=URL)` opens what we write.

use crate::strategy::Params;
use std::collections::BTreeMap;
use thiserror::Error;

/// A trial's lifecycle state (Optuna's `TrialState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrialState {
    /// Enqueued, not yet claimed by a worker.
    Waiting,
    /// Claimed by a worker, which holds a lease renewed by heartbeat.
    Running,
    /// Finished with an objective value.
    Complete,
    /// Stopped early by the pruner (successive halving).
    Pruned,
    /// Failed (non-finite loss, solver failure, bad configuration, or too many lost attempts).
    Fail,
}

impl TrialState {
    /// Optuna's name of the state (`WAITING`, `RUNNING`, `COMPLETE`, `PRUNED`, `FAIL`).
    pub fn optuna_name(self) -> &'static str {
        match self {
            TrialState::Waiting => "WAITING",
            TrialState::Running => "RUNNING",
            TrialState::Complete => "COMPLETE",
            TrialState::Pruned => "PRUNED",
            TrialState::Fail => "FAIL",
        }
    }
}

/// How a parameter's values are distributed, for the store (Optuna's distribution JSON).
#[derive(Debug, Clone, PartialEq)]
pub enum ParamDistribution {
    /// One of these values (strings, integers, floats, or `[rtol, atol]` pairs as strings).
    Categorical(Vec<toml::Value>),
    /// Integers in `[low, high]` with `step`, log-uniform when `log`.
    Int {
        /// Smallest value.
        low: i64,
        /// Largest value.
        high: i64,
        /// Spacing.
        step: i64,
        /// Log scale.
        log: bool,
    },
    /// Floats in `[low, high]`, log-uniform when `log`.
    Float {
        /// Smallest value.
        low: f64,
        /// Largest value.
        high: f64,
        /// Log scale.
        log: bool,
    },
}

/// A trial a worker has claimed: the fencing `attempt` must accompany every write.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// Store-wide trial id.
    pub trial_id: i64,
    /// Trial number within the study (0, 1, …), which fixes its parameters and seed.
    pub number: u64,
    /// Claim counter: a write with an older attempt than the trial's current one is rejected.
    pub attempt: u32,
    /// The trial's parameter values.
    pub params: Params,
}

/// A trial as read back for leaderboards, resumption and export.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialRecord {
    /// Store-wide trial id.
    pub trial_id: i64,
    /// Trial number within the study.
    pub number: u64,
    /// State.
    pub state: TrialState,
    /// Parameter values.
    pub params: Params,
    /// Objective (best `val_rmse`) of a complete trial.
    pub value: Option<f64>,
    /// Per-epoch `val_rmse` (step → value).
    pub intermediate: BTreeMap<u64, f64>,
    /// Free-form attributes: training seconds, NFE, failure reason, …
    pub user_attrs: BTreeMap<String, serde_json::Value>,
    /// Claims so far.
    pub attempt: u32,
    /// Id of the worker that claimed the trial last (see [`crate::worker_id`]), if any.
    pub worker: Option<String>,
}

/// Store failures.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("study store {location}: {reason}")]
    Backend {
        /// Path or URL.
        location: String,
        /// What failed.
        reason: String,
    },
    /// A write came from a worker whose claim was superseded (its lease expired and the trial
    /// was handed to another worker).
    #[error("trial {trial_id}: attempt {attempt} no longer holds the trial (now attempt {current})")]
    Fenced {
        /// The trial.
        trial_id: i64,
        /// The writer's attempt.
        attempt: u32,
        /// The trial's current attempt.
        current: u32,
    },
    /// No study of this name.
    #[error("no study named '{0}' in this store")]
    UnknownStudy(String),
}

/// A [`StoreError::Backend`] of the store at `location`.
pub(crate) fn bad(location: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Backend {
        location: location.into(),
        reason: reason.into(),
    }
}

/// Everything the search drivers need from a study store. Implementations make each call
/// atomic (one transaction), so concurrent workers never claim a trial twice.
pub trait StudyStore: Send {
    /// Opens the study `name` (direction: minimise), creating it if needed; returns its id.
    fn open_study(&mut self, name: &str) -> Result<i64, StoreError>;
    /// Names of all studies.
    fn study_names(&mut self) -> Result<Vec<String>, StoreError>;
    /// Adds a `WAITING` trial with this number and these parameters unless the study already
    /// has a trial with this number (idempotent, so re-running a search resumes it).
    fn enqueue(
        &mut self,
        study: i64,
        number: u64,
        params: &Params,
        dists: &BTreeMap<String, ParamDistribution>,
    ) -> Result<(), StoreError>;
    /// Atomically claims the lowest-numbered `WAITING` trial, first re-queueing `RUNNING` trials
    /// whose heartbeat is older than `lease_seconds`, or whose worker id names a process of this
    /// machine that no longer exists ([`crate::worker_id::worker_is_dead`]), or failing them
    /// after `max_attempts`.
    fn claim(
        &mut self,
        study: i64,
        worker: &str,
        lease_seconds: f64,
        max_attempts: u32,
    ) -> Result<Option<Claimed>, StoreError>;
    /// Renews the lease of a claimed trial.
    fn heartbeat(&mut self, trial_id: i64, attempt: u32) -> Result<(), StoreError>;
    /// Records a per-epoch value (idempotent per step).
    fn report(&mut self, trial_id: i64, attempt: u32, step: u64, value: f64) -> Result<(), StoreError>;
    /// Sets a user attribute (JSON value).
    fn set_attr(&mut self, trial_id: i64, attempt: u32, key: &str, value: &serde_json::Value)
    -> Result<(), StoreError>;
    /// Finishes a trial: `Complete` with its value, `Pruned` or `Fail`.
    fn finish(&mut self, trial_id: i64, attempt: u32, state: TrialState, value: Option<f64>) -> Result<(), StoreError>;
    /// Every trial of the study, by number.
    fn trials(&mut self, study: i64) -> Result<Vec<TrialRecord>, StoreError>;
    /// Sets a study attribute (the study's definition, so remote workers can join it).
    fn set_study_attr(&mut self, study: i64, key: &str, value: &serde_json::Value) -> Result<(), StoreError>;
    /// The study's attributes.
    fn study_attrs(&mut self, study: i64) -> Result<BTreeMap<String, serde_json::Value>, StoreError>;
}

/// The trials among `held` (trial id, the stored JSON of its worker's id) whose worker was a
/// process of this machine that no longer exists ([`crate::worker_id::worker_is_dead`]): the
/// stores' claims re-queue them at once instead of waiting for their leases to expire.
pub(crate) fn orphaned<I>(held: Vec<(I, String)>) -> Vec<I> {
    held.into_iter()
        .filter(|(_, json)| serde_json::from_str::<String>(json).is_ok_and(|w| crate::worker_id::worker_is_dead(&w)))
        .map(|(id, _)| id)
        .collect()
}
