//! The study-store protocol on Optuna's tables, written once for every [`Dialect`] (as Optuna's
//! `RDBStorage` serves SQLite, PostgreSQL and MySQL): open a study, enqueue, claim with leases,
//! heartbeat, report, set attributes, finish, list trials. Each call is one transaction; the
//! layout and the codec are [`crate::optuna`]'s.
//!
//! Claims and writes take the row locks of [`Lock`]: a write locks its trial's row and then
//! checks the attempt, so a write and a claim of the same trial are serialised and a write from
//! a superseded attempt fails with [`StoreError::Fenced`]; a claim locks the lost and the next
//! waiting trials, skipping rows another transaction holds, so concurrent claims never wait on
//! each other and never take the same trial, and it checks each lost trial again once its row is
//! locked. On SQLite, where a write transaction holds the whole file, the locks are empty and
//! the second checks simply agree with the first.

use crate::dialect::{Begin, Dialect, Lock, transaction};
use crate::optuna::{
    ALEMBIC_REVISION, ATTEMPT_ATTR, FAIL_REASON_ATTR, FIXED_PARAMS_ATTR, METRIC_NAME, METRIC_NAMES_ATTR,
    OPTUNA_SCHEMA_VERSION, OPTUNA_VERSION, WORKER_ATTR, add_fixed_params, decode_param, encode_params, finish_value,
    intermediate_repr, local_now, parse_attempt, parse_attr, parse_state, python_json, stored_to_value, value_repr,
};
use crate::store::{Claimed, ParamDistribution, StoreError, StudyStore, TrialRecord, TrialState, bad, orphaned};
use crate::strategy::Params;
use std::collections::{BTreeMap, HashMap};

/// `value` as an SQL string literal. Only for values this program makes (Optuna's enum names,
/// times from [`local_now`]); both databases coerce such a literal to the column's type.
fn literal(value: &str) -> String {
    debug_assert!(!value.contains('\''), "not a literal this program makes: {value}");
    format!("'{value}'")
}

/// Records Optuna's schema version in `version_info` and `alembic_version` of a new database,
/// or checks that an existing one (`holder`: "file", "database") has ours. Runs inside the
/// transaction that created the schema.
pub(crate) fn stamp_version<D: Dialect>(db: &mut D, holder: &str) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO version_info (version_info_id, schema_version, library_version) VALUES (1, $1, $2) \
         ON CONFLICT (version_info_id) DO NOTHING",
        &[OPTUNA_SCHEMA_VERSION.into(), OPTUNA_VERSION.into()],
    )?;
    let revisions: Vec<(String,)> = db.rows("SELECT version_num FROM alembic_version", &[])?;
    match revisions.as_slice() {
        [] => {
            db.execute(
                "INSERT INTO alembic_version (version_num) VALUES ($1)",
                &[ALEMBIC_REVISION.into()],
            )?;
        }
        [(r,)] if r == ALEMBIC_REVISION => {}
        other => {
            let other: Vec<&String> = other.iter().map(|(r,)| r).collect();
            return Err(bad(
                db.location(),
                format!(
                    "the {holder} has Optuna schema revision {other:?}, this program writes {ALEMBIC_REVISION} \
                     (Optuna {OPTUNA_VERSION}); migrate it with a matching `optuna storage upgrade`"
                ),
            ));
        }
    }
    Ok(())
}

/// The study's id once `lock` is taken on its row; fails when there is no such study.
fn study_row<D: Dialect>(db: &mut D, study: i64, lock: Lock) -> Result<i64, StoreError> {
    let id = db.integer("study id", study)?;
    let sql = format!("SELECT study_id FROM studies WHERE study_id = $1 {}", db.lock(lock));
    match db.row::<(i64,)>(&sql, &[id.into()])? {
        Some(_) => Ok(id),
        None => Err(bad(db.location(), format!("no study with id {study}"))),
    }
}

fn upsert_heartbeat<D: Dialect>(db: &mut D, trial_id: i64) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO trial_heartbeats (trial_id, heartbeat) VALUES ($1, {}) \
         ON CONFLICT (trial_id) DO UPDATE SET heartbeat = excluded.heartbeat",
        db.utc_now()
    );
    db.execute(&sql, &[trial_id.into()])?;
    Ok(())
}

/// Upserts an attribute row of `table` (`trial_*_attributes` or `study_*_attributes`).
fn upsert_attr<D: Dialect>(db: &mut D, table: &str, id: i64, key: &str, json: &str) -> Result<(), StoreError> {
    let owner = if table.starts_with("study") {
        "study_id"
    } else {
        "trial_id"
    };
    let sql = format!(
        "INSERT INTO {table} ({owner}, \"key\", value_json) VALUES ($1, $2, $3) \
         ON CONFLICT ({owner}, \"key\") DO UPDATE SET value_json = excluded.value_json"
    );
    db.execute(&sql, &[id.into(), key.into(), json.into()])?;
    Ok(())
}

/// The value of a trial system attribute, if set.
fn system_attr<D: Dialect>(db: &mut D, trial_id: i64, key: &str) -> Result<Option<String>, StoreError> {
    let row: Option<(String,)> = db.row(
        "SELECT value_json FROM trial_system_attributes WHERE trial_id = $1 AND \"key\" = $2",
        &[trial_id.into(), key.into()],
    )?;
    Ok(row.map(|(json,)| json))
}

/// The trial's fencing attempt (0 before its first claim).
fn read_attempt<D: Dialect>(db: &mut D, trial_id: i64) -> Result<u32, StoreError> {
    match system_attr(db, trial_id, ATTEMPT_ATTR)? {
        None => Ok(0),
        Some(json) => parse_attempt(db.location(), trial_id, &json),
    }
}

/// The parameters of one trial, decoded from `trial_params` (or, for a trial Optuna's
/// `enqueue_trial` made, from its [`FIXED_PARAMS_ATTR`] system attribute).
fn read_params<D: Dialect>(db: &mut D, trial_id: i64) -> Result<Params, StoreError> {
    let rows: Vec<(String, Option<f64>, String)> = db.rows(
        "SELECT param_name, param_value, distribution_json FROM trial_params WHERE trial_id = $1 ORDER BY param_id",
        &[trial_id.into()],
    )?;
    let mut params = Params::new();
    for (name, value, dist) in rows {
        let value = decode_param(db.location(), &name, value, &dist)?;
        params.insert(name, value);
    }
    if params.is_empty() {
        if let Some(fixed) = system_attr(db, trial_id, FIXED_PARAMS_ATTR)? {
            add_fixed_params(&mut params, &fixed);
        }
    }
    Ok(params)
}

/// Locks the trial's row and checks that `attempt` still holds the trial; a re-queued trial
/// (`WAITING`, same attempt) goes back to `RUNNING` when `revive`.
fn hold<D: Dialect>(db: &mut D, trial_id: i64, attempt: u32, revive: bool) -> Result<TrialState, StoreError> {
    let id = db.integer("trial id", trial_id)?;
    let sql = format!(
        "SELECT state FROM trials t WHERE trial_id = $1 {}",
        db.lock(Lock::Write)
    );
    let state = match db.row::<(String,)>(&sql, &[id.into()])? {
        Some((s,)) => parse_state(db.location(), &s)?,
        None => return Err(bad(db.location(), format!("no trial with id {trial_id}"))),
    };
    let current = read_attempt(db, id)?;
    let finished = matches!(state, TrialState::Complete | TrialState::Pruned | TrialState::Fail);
    if attempt == 0 || attempt != current || finished {
        return Err(StoreError::Fenced {
            trial_id,
            attempt,
            current,
        });
    }
    if revive && state == TrialState::Waiting {
        let sql = format!(
            "UPDATE trials SET state = 'RUNNING', datetime_start = {} WHERE trial_id = $1",
            literal(&local_now())
        );
        db.execute(&sql, &[id.into()])?;
        upsert_heartbeat(db, id)?;
        return Ok(TrialState::Running);
    }
    Ok(state)
}

/// `(trial id, worker id JSON)` of the `RUNNING` trials of `study` (`trial`: `None`), or of the
/// trial `trial` in any state, for [`orphaned`].
fn worker_rows<D: Dialect>(db: &mut D, study: i64, trial: Option<i64>) -> Result<Vec<(i64, String)>, StoreError> {
    let (filter, id) = match trial {
        None => ("t.study_id = $2 AND t.state = 'RUNNING'", study),
        Some(trial_id) => ("t.trial_id = $2", trial_id),
    };
    db.rows(
        &format!(
            "SELECT t.trial_id, a.value_json FROM trials t JOIN trial_system_attributes a \
             ON a.trial_id = t.trial_id AND a.\"key\" = $1 WHERE {filter}"
        ),
        &[WORKER_ATTR.into(), id.into()],
    )
}

/// The RUNNING trials of `study` that lost their worker: the lease expired, or the worker was a
/// process of this machine that has died. Rows another transaction holds (a claim, or the
/// worker writing) are skipped; the rows returned are locked.
fn lost_trials<D: Dialect>(db: &mut D, study: i64, lease_seconds: f64) -> Result<Vec<i64>, StoreError> {
    let expired = format!(
        "FROM trials t JOIN trial_heartbeats h ON h.trial_id = t.trial_id WHERE t.state = 'RUNNING' AND {}",
        db.lease_expired("$2")
    );
    let claim_lock = db.lock(Lock::Claim);
    let stale: Vec<(i64,)> = db.rows(
        &format!("SELECT t.trial_id {expired} AND t.study_id = $1 ORDER BY t.trial_id {claim_lock}"),
        &[study.into(), lease_seconds.into()],
    )?;
    let mut lost = Vec::with_capacity(stale.len());
    for (trial_id,) in stale {
        // Now that the row is locked, no heartbeat can come in: check the latest one.
        let still: Option<(i64,)> = db.row(
            &format!("SELECT 1 {expired} AND t.trial_id = $1"),
            &[trial_id.into(), lease_seconds.into()],
        )?;
        if still.is_some() {
            lost.push(trial_id);
        }
    }
    let held_by_dead = orphaned(worker_rows(db, study, None)?);
    for trial_id in held_by_dead {
        if lost.contains(&trial_id) {
            continue;
        }
        let locked: Option<(i64,)> = db.row(
            &format!("SELECT 1 FROM trials t WHERE trial_id = $1 AND state = 'RUNNING' {claim_lock}"),
            &[trial_id.into()],
        )?;
        // Once the row is locked no claim can change its worker: read the worker again.
        if locked.is_some() && !orphaned(worker_rows(db, study, Some(trial_id))?).is_empty() {
            lost.push(trial_id);
        }
    }
    Ok(lost)
}

/// Puts each `lost` trial back in the queue, or fails it (with the reason) once it has lost
/// its worker `max_attempts` times.
fn requeue_or_fail<D: Dialect>(db: &mut D, lost: Vec<i64>, max_attempts: u32) -> Result<(), StoreError> {
    for trial_id in lost {
        let attempt = read_attempt(db, trial_id)?;
        if attempt >= max_attempts {
            let sql = format!(
                "UPDATE trials SET state = 'FAIL', datetime_complete = {} WHERE trial_id = $1",
                literal(&local_now())
            );
            db.execute(&sql, &[trial_id.into()])?;
            db.execute("DELETE FROM trial_values WHERE trial_id = $1", &[trial_id.into()])?;
            let reason = serde_json::Value::from(format!("lost its worker {attempt} times"));
            upsert_attr(
                db,
                "trial_user_attributes",
                trial_id,
                FAIL_REASON_ATTR,
                &python_json(&reason),
            )?;
        } else {
            db.execute(
                "UPDATE trials SET state = 'WAITING', datetime_start = NULL WHERE trial_id = $1",
                &[trial_id.into()],
            )?;
        }
    }
    Ok(())
}

/// Hands the trial `trial_id` (number `number`) to `worker` with the next attempt.
fn take<D: Dialect>(db: &mut D, trial_id: i64, number: Option<i64>, worker: &str) -> Result<Claimed, StoreError> {
    let attempt = read_attempt(db, trial_id)? + 1;
    let sql = format!(
        "UPDATE trials SET state = 'RUNNING', datetime_start = {}, datetime_complete = NULL WHERE trial_id = $1",
        literal(&local_now())
    );
    db.execute(&sql, &[trial_id.into()])?;
    upsert_attr(
        db,
        "trial_system_attributes",
        trial_id,
        ATTEMPT_ATTR,
        &attempt.to_string(),
    )?;
    upsert_attr(
        db,
        "trial_system_attributes",
        trial_id,
        WORKER_ATTR,
        &python_json(&serde_json::Value::from(worker)),
    )?;
    upsert_heartbeat(db, trial_id)?;
    let params = read_params(db, trial_id)?;
    let number = number
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| bad(db.location(), format!("trial {trial_id} has number {number:?}")))?;
    Ok(Claimed {
        trial_id,
        number,
        attempt,
        params,
    })
}

/// The trials of a study as they are read back, filled in table by table.
struct Listing {
    trials: Vec<TrialRecord>,
    /// Position in `trials` by trial id.
    index: HashMap<i64, usize>,
}

impl Listing {
    /// The study's trials, by number, with their states.
    fn read<D: Dialect>(db: &mut D, study: i64) -> Result<Self, StoreError> {
        let rows: Vec<(i64, Option<i64>, String)> = db.rows(
            "SELECT trial_id, number, state FROM trials WHERE study_id = $1 ORDER BY number, trial_id",
            &[study.into()],
        )?;
        let mut listing = Listing {
            trials: Vec::with_capacity(rows.len()),
            index: HashMap::with_capacity(rows.len()),
        };
        for (trial_id, number, state) in rows {
            let number = number
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| bad(db.location(), format!("trial {trial_id} has no valid number")))?;
            listing.index.insert(trial_id, listing.trials.len());
            listing.trials.push(TrialRecord {
                trial_id,
                number,
                state: parse_state(db.location(), &state)?,
                params: Params::new(),
                value: None,
                intermediate: BTreeMap::new(),
                user_attrs: BTreeMap::new(),
                attempt: 0,
                worker: None,
            });
        }
        Ok(listing)
    }

    fn get(&mut self, trial_id: i64) -> Option<&mut TrialRecord> {
        self.index.get(&trial_id).map(|&i| &mut self.trials[i])
    }

    /// Rows of `table` (aliased `x`) belonging to the study's trials.
    fn of_study(columns: &str, table: &str, extra: &str) -> String {
        format!(
            "SELECT {columns} FROM {table} x JOIN trials t ON t.trial_id = x.trial_id WHERE t.study_id = $1 {extra}"
        )
    }

    fn add_params<D: Dialect>(&mut self, db: &mut D, study: i64) -> Result<(), StoreError> {
        let sql = Self::of_study(
            "x.trial_id, x.param_name, x.param_value, x.distribution_json",
            "trial_params",
            "ORDER BY x.param_id",
        );
        for (trial_id, name, value, dist) in db.rows::<(i64, String, Option<f64>, String)>(&sql, &[study.into()])? {
            if let Some(t) = self.get(trial_id) {
                let v = decode_param(db.location(), &name, value, &dist)?;
                t.params.insert(name, v);
            }
        }
        Ok(())
    }

    fn add_values<D: Dialect>(&mut self, db: &mut D, study: i64) -> Result<(), StoreError> {
        let sql = Self::of_study(
            "x.trial_id, x.value, x.value_type",
            "trial_values",
            "AND x.objective = 0",
        );
        for (trial_id, value, kind) in db.rows::<(i64, Option<f64>, String)>(&sql, &[study.into()])? {
            if let Some(t) = self.get(trial_id) {
                t.value = Some(stored_to_value(db.location(), value, &kind)?);
            }
        }
        Ok(())
    }

    fn add_intermediate<D: Dialect>(&mut self, db: &mut D, study: i64) -> Result<(), StoreError> {
        let sql = Self::of_study(
            "x.trial_id, x.step, x.intermediate_value, x.intermediate_value_type",
            "trial_intermediate_values",
            "",
        );
        for (trial_id, step, value, kind) in db.rows::<(i64, i64, Option<f64>, String)>(&sql, &[study.into()])? {
            if let (Some(t), Ok(step)) = (self.get(trial_id), u64::try_from(step)) {
                t.intermediate
                    .insert(step, stored_to_value(db.location(), value, &kind)?);
            }
        }
        Ok(())
    }

    fn add_user_attrs<D: Dialect>(&mut self, db: &mut D, study: i64) -> Result<(), StoreError> {
        let sql = Self::of_study("x.trial_id, x.\"key\", x.value_json", "trial_user_attributes", "");
        for (trial_id, key, json) in db.rows::<(i64, String, String)>(&sql, &[study.into()])? {
            if let Some(t) = self.get(trial_id) {
                t.user_attrs.insert(key, parse_attr(json));
            }
        }
        Ok(())
    }

    /// The attempt, the worker, and the parameters of trials Optuna's `enqueue_trial` made
    /// (which are only in [`FIXED_PARAMS_ATTR`]).
    fn add_system_attrs<D: Dialect>(&mut self, db: &mut D, study: i64) -> Result<(), StoreError> {
        let sql = Self::of_study(
            "x.trial_id, x.\"key\", x.value_json",
            "trial_system_attributes",
            "AND x.\"key\" IN ($2, $3, $4)",
        );
        let args = [
            study.into(),
            ATTEMPT_ATTR.into(),
            WORKER_ATTR.into(),
            FIXED_PARAMS_ATTR.into(),
        ];
        for (trial_id, key, json) in db.rows::<(i64, String, String)>(&sql, &args)? {
            let Some(t) = self.get(trial_id) else { continue };
            if key == ATTEMPT_ATTR {
                t.attempt = parse_attempt(db.location(), trial_id, &json)?;
            } else if key == WORKER_ATTR {
                t.worker = serde_json::from_str(&json).ok();
            } else if t.params.is_empty() {
                add_fixed_params(&mut t.params, &json);
            }
        }
        Ok(())
    }
}

/// Labels the objective `val_rmse` the way `Study.set_metric_names` does, unless the study
/// already names it (one made by an earlier version gets the label; Optuna's own name stays).
fn name_the_metric<D: Dialect>(db: &mut D, study: i64) -> Result<(), StoreError> {
    let names = serde_json::to_string(&[METRIC_NAME]).expect("a list of strings is JSON");
    db.execute(
        "INSERT INTO study_system_attributes (study_id, \"key\", value_json) VALUES ($1, $2, $3) \
         ON CONFLICT (study_id, \"key\") DO NOTHING",
        &[study.into(), METRIC_NAMES_ATTR.into(), names.as_str().into()],
    )?;
    Ok(())
}

impl<D: Dialect> StudyStore for D {
    fn open_study(&mut self, name: &str) -> Result<i64, StoreError> {
        transaction(self, Begin::Write, |db| {
            let inserted: Option<(i64,)> = db.row(
                "INSERT INTO studies (study_name) VALUES ($1) ON CONFLICT (study_name) DO NOTHING RETURNING study_id",
                &[name.into()],
            )?;
            let id = if let Some((id,)) = inserted {
                db.execute(
                    "INSERT INTO study_directions (direction, study_id, objective) VALUES ('MINIMIZE', $1, 0)",
                    &[id.into()],
                )?;
                id
            } else {
                let existing: Option<(i64,)> =
                    db.row("SELECT study_id FROM studies WHERE study_name = $1", &[name.into()])?;
                existing
                    .map(|(id,)| id)
                    .ok_or_else(|| bad(db.location(), format!("study '{name}' vanished while being opened")))?
            };
            name_the_metric(db, id)?;
            Ok(id)
        })
    }

    fn study_names(&mut self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = self.rows("SELECT study_name FROM studies ORDER BY study_id", &[])?;
        Ok(rows.into_iter().map(|(name,)| name).collect())
    }

    fn enqueue(
        &mut self,
        study: i64,
        number: u64,
        params: &Params,
        dists: &BTreeMap<String, ParamDistribution>,
    ) -> Result<(), StoreError> {
        // Encode everything before taking the write lock.
        let (rows, fixed_json) = encode_params(self.location(), params, dists)?;
        let number = self.integer("trial number", number)?;
        transaction(self, Begin::Write, |db| {
            // Serialises enqueues of this study (claims and Optuna's key-share locks pass).
            let study = study_row(db, study, Lock::Enqueue)?;
            let (exists,): (i64,) = db
                .row(
                    "SELECT COUNT(*) FROM trials WHERE study_id = $1 AND number = $2",
                    &[study.into(), number.into()],
                )?
                .unwrap_or((0,));
            if exists > 0 {
                return Ok(());
            }
            let inserted: Option<(i64,)> = db.row(
                "INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete) \
                 VALUES ($1, $2, 'WAITING', NULL, NULL) RETURNING trial_id",
                &[number.into(), study.into()],
            )?;
            let (trial_id,) = inserted.ok_or_else(|| bad(db.location(), "inserting a trial returned no id"))?;
            for (name, internal, dist) in &rows {
                db.execute(
                    "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) \
                     VALUES ($1, $2, $3, $4)",
                    &[trial_id.into(), (*name).into(), (*internal).into(), dist.into()],
                )?;
            }
            upsert_attr(db, "trial_system_attributes", trial_id, FIXED_PARAMS_ATTR, &fixed_json)
        })
    }

    fn claim(
        &mut self,
        study: i64,
        worker: &str,
        lease_seconds: f64,
        max_attempts: u32,
    ) -> Result<Option<Claimed>, StoreError> {
        transaction(self, Begin::Write, |db| {
            let study = study_row(db, study, Lock::Read)?;
            // 1. Trials whose worker stopped renewing its lease, or whose worker was a process of
            //    this machine that has died, go back to the queue (or fail).
            let lost = lost_trials(db, study, lease_seconds)?;
            requeue_or_fail(db, lost, max_attempts)?;
            // 2. The lowest-numbered waiting trial no other transaction holds.
            let sql = format!(
                "SELECT trial_id, number FROM trials t WHERE study_id = $1 AND state = 'WAITING' \
                 ORDER BY number, trial_id LIMIT 1 {}",
                db.lock(Lock::Claim)
            );
            match db.row::<(i64, Option<i64>)>(&sql, &[study.into()])? {
                Some((trial_id, number)) => take(db, trial_id, number, worker).map(Some),
                None => Ok(None),
            }
        })
    }

    fn heartbeat(&mut self, trial_id: i64, attempt: u32) -> Result<(), StoreError> {
        transaction(self, Begin::Write, |db| {
            hold(db, trial_id, attempt, true)?;
            upsert_heartbeat(db, trial_id)
        })
    }

    fn report(&mut self, trial_id: i64, attempt: u32, step: u64, value: f64) -> Result<(), StoreError> {
        let step = self.integer("step", step)?;
        let (stored, kind) = intermediate_repr(value);
        let sql = format!(
            "INSERT INTO trial_intermediate_values (trial_id, step, intermediate_value, intermediate_value_type) \
             VALUES ($1, $2, $3, {}) ON CONFLICT (trial_id, step) DO UPDATE SET \
             intermediate_value = excluded.intermediate_value, intermediate_value_type = excluded.intermediate_value_type",
            literal(kind)
        );
        transaction(self, Begin::Write, |db| {
            hold(db, trial_id, attempt, true)?;
            db.execute(&sql, &[trial_id.into(), step.into(), stored.into()])?;
            Ok(())
        })
    }

    fn set_attr(
        &mut self,
        trial_id: i64,
        attempt: u32,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let json = python_json(value);
        transaction(self, Begin::Write, |db| {
            hold(db, trial_id, attempt, true)?;
            upsert_attr(db, "trial_user_attributes", trial_id, key, &json)
        })
    }

    fn finish(&mut self, trial_id: i64, attempt: u32, state: TrialState, value: Option<f64>) -> Result<(), StoreError> {
        // Optuna's rules: a complete trial has a value that is not NaN, a failed one none.
        let value = finish_value(self.location(), trial_id, state, value)?;
        let id = self.integer("trial id", trial_id)?;
        transaction(self, Begin::Write, |db| {
            hold(db, trial_id, attempt, false)?;
            match value {
                Some(v) => {
                    let (stored, kind) = value_repr(v);
                    let sql = format!(
                        "INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES ($1, 0, $2, {}) \
                         ON CONFLICT (trial_id, objective) DO UPDATE SET value = excluded.value, \
                         value_type = excluded.value_type",
                        literal(kind)
                    );
                    db.execute(&sql, &[id.into(), stored.into()])?;
                }
                None => {
                    db.execute("DELETE FROM trial_values WHERE trial_id = $1", &[id.into()])?;
                }
            }
            let now = literal(&local_now());
            let sql = format!(
                "UPDATE trials SET state = {}, datetime_start = COALESCE(datetime_start, {now}), \
                 datetime_complete = {now} WHERE trial_id = $1",
                literal(state.optuna_name())
            );
            db.execute(&sql, &[id.into()])?;
            Ok(())
        })
    }

    fn trials(&mut self, study: i64) -> Result<Vec<TrialRecord>, StoreError> {
        // One snapshot for all the reads while workers write.
        transaction(self, Begin::Snapshot, |db| {
            let study = study_row(db, study, Lock::Read)?;
            let mut listing = Listing::read(db, study)?;
            listing.add_params(db, study)?;
            listing.add_values(db, study)?;
            listing.add_intermediate(db, study)?;
            listing.add_user_attrs(db, study)?;
            listing.add_system_attrs(db, study)?;
            Ok(listing.trials)
        })
    }

    /// Stored as a study user attribute (`study.user_attrs` in Optuna).
    fn set_study_attr(&mut self, study: i64, key: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        let json = python_json(value);
        transaction(self, Begin::Write, |db| {
            let study = study_row(db, study, Lock::Read)?;
            upsert_attr(db, "study_user_attributes", study, key, &json)
        })
    }

    fn study_attrs(&mut self, study: i64) -> Result<BTreeMap<String, serde_json::Value>, StoreError> {
        let study = study_row(self, study, Lock::Read)?;
        let rows: Vec<(String, String)> = self.rows(
            "SELECT \"key\", value_json FROM study_user_attributes WHERE study_id = $1",
            &[study.into()],
        )?;
        Ok(rows.into_iter().map(|(k, json)| (k, parse_attr(json))).collect())
    }
}
