//! Optuna's RDB storage layout (Optuna 4.9, schema version 12, alembic revision `v3.2.0.a`): the
//! constants it records and the codec between our trials and its tables, shared by the SQLite
//! and PostgreSQL stores ([`crate::sqlite`], [`crate::postgres`]), so
//! `optuna.load_study(study_name=NAME, storage=URL)` opens what the search writes.
//!
//! # How our data maps onto Optuna's tables
//!
//! * A study is a `studies` row with one `study_directions` row (`MINIMIZE`, objective 0).
//! * A trial is a `trials` row (`number`, `state`, `datetime_start`, `datetime_complete`, local
//!   time as Optuna writes it: [`local_now`]). Its parameters are `trial_params` rows, written at
//!   [`enqueue`] time already — Optuna reads parameters of `WAITING` trials without complaint,
//!   and its own workers, should one pick up such a trial, reuse them — and, as
//!   `study.enqueue_trial` does, the system attribute [`FIXED_PARAMS_ATTR`] holds them too.
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
//!   `json.dumps` writes it: [`python_json`]).
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

#[cfg(doc)]
use crate::store::StudyStore;
use crate::store::{ParamDistribution, StoreError, TrialState, bad};
use crate::strategy::Params;
use serde::Serialize;
use std::collections::BTreeMap;
use toml::Value;

/// The Optuna release whose storage layout the stores write (and record in `version_info`).
pub const OPTUNA_VERSION: &str = "4.9.0";
/// Optuna's `models.SCHEMA_VERSION` for that release.
pub const OPTUNA_SCHEMA_VERSION: i64 = 12;
/// The alembic revision Optuna expects in `alembic_version` (unchanged from Optuna 3.2 to 5.0).
pub const ALEMBIC_REVISION: &str = "v3.2.0.a";
/// Trial system attribute holding the fencing attempt (claims so far).
pub const ATTEMPT_ATTR: &str = "ode:attempt";
/// Trial system attribute holding the id of the worker that claimed the trial last.
pub const WORKER_ATTR: &str = "ode:worker";
/// User attribute explaining why a trial failed.
pub const FAIL_REASON_ATTR: &str = "fail_reason";
/// Study system attribute where Optuna keeps the objectives' names (`Study.set_metric_names`):
/// optuna-dashboard and `study.metric_names` label the objective with it.
pub const METRIC_NAMES_ATTR: &str = "study:metric_names";
/// The name of the one objective every study minimises: the best validation RMSE of a trial.
pub const METRIC_NAME: &str = "val_rmse";
/// Trial system attribute holding an enqueued trial's parameters as Optuna shows them (what
/// `study.enqueue_trial` writes).
pub const FIXED_PARAMS_ATTR: &str = "fixed_params";

// ---------------------------------------------------------------------------------------------
// States, times and attribute values.

/// A trial state from its stored name.
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

/// The fencing attempt from the stored [`ATTEMPT_ATTR`] value.
pub(crate) fn parse_attempt(loc: &str, trial_id: i64, json: &str) -> Result<u32, StoreError> {
    json.trim()
        .parse::<u32>()
        .map_err(|_| bad(loc, format!("trial {trial_id}: bad {ATTEMPT_ATTR} value {json}")))
}

/// A stored attribute value (`value_json`). Python may have written NaN / Infinity, which JSON
/// proper lacks: such a value is kept as its text.
pub(crate) fn parse_attr(json: String) -> serde_json::Value {
    serde_json::from_str(&json).unwrap_or(serde_json::Value::String(json))
}

/// Adds a JSON object of external values ([`FIXED_PARAMS_ATTR`]) to `params`.
pub(crate) fn add_fixed_params(params: &mut Params, json: &str) {
    if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(json) {
        for (k, v) in m {
            if let Some(v) = json_to_toml(&v) {
                params.insert(k, v);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values: Optuna's stored representations.

/// An objective value as `trial_values` stores it: `(value, value_type)`.
pub(crate) fn value_repr(v: f64) -> (Option<f64>, &'static str) {
    if v == f64::INFINITY {
        (None, "INF_POS")
    } else if v == f64::NEG_INFINITY {
        (None, "INF_NEG")
    } else {
        (Some(v), "FINITE")
    }
}

/// A per-epoch value as `trial_intermediate_values` stores it (which also has `NAN`).
pub(crate) fn intermediate_repr(v: f64) -> (Option<f64>, &'static str) {
    if v.is_nan() { (None, "NAN") } else { value_repr(v) }
}

/// A stored `(value, value_type)` back as a number.
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
