//! Search spaces: which run settings a study varies and how, read from TOML and validated.
//!
//! ```toml
//! [params.latent_dim]
//! choices = [16, 32, 64]
//! [params.learning_rate]
//! low = 1e-4
//! high = 1e-3
//! log = true
//! [params.tolerances]            # (rtol, atol) pairs
//! choices = [[1e-3, 1e-4], [1e-4, 1e-5]]
//! [params.epochs]
//! value = 5                      # fixed
//! ```

use ode_train::RunConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use thiserror::Error;
use toml::Value;

/// The name of the pseudo-parameter holding `(rtol, atol)` pairs.
pub const TOLERANCES: &str = "tolerances";

/// How one parameter is drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    /// One of the listed values.
    Categorical(Vec<Value>),
    /// An integer in `[low, high]` (`step` apart; log-uniform when `log`).
    Int {
        /// Smallest value.
        low: i64,
        /// Largest value.
        high: i64,
        /// Spacing of the grid of admissible values.
        step: i64,
        /// Log-uniform sampling.
        log: bool,
    },
    /// A float in `[low, high]` (log-uniform when `log`); `grid` points for grid search.
    Float {
        /// Smallest value.
        low: f64,
        /// Largest value.
        high: f64,
        /// Log-uniform sampling.
        log: bool,
        /// Number of evenly (or log-evenly) spaced points grid search uses.
        grid: Option<usize>,
    },
    /// Always this value.
    Fixed(Value),
}

/// A search space: parameters by name, in name order.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSpace {
    /// The parameters.
    pub params: BTreeMap<String, Distribution>,
}

/// A search-space file or definition that is not valid.
#[derive(Debug, Error, PartialEq)]
pub enum SpaceError {
    /// The TOML does not parse.
    #[error("search space {source_name}: {reason}")]
    Parse {
        /// File or description.
        source_name: String,
        /// The parser's message (line and column).
        reason: String,
    },
    /// A parameter that `ode train` does not have.
    #[error("search space {source_name}: unknown parameter '{name}'; searchable: {known}")]
    UnknownParameter {
        /// File or description.
        source_name: String,
        /// The parameter.
        name: String,
        /// The accepted names.
        known: String,
    },
    /// A parameter definition that cannot be sampled.
    #[error("search space {source_name}: parameter '{name}': {reason}")]
    Invalid {
        /// File or description.
        source_name: String,
        /// The parameter.
        name: String,
        /// What is wrong and what is expected.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpace {
    #[serde(default)]
    params: BTreeMap<String, RawParam>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    choices: Option<Vec<Value>>,
    low: Option<Value>,
    high: Option<Value>,
    #[serde(default)]
    log: bool,
    step: Option<i64>,
    grid: Option<usize>,
    value: Option<Value>,
}

/// Names a search space may vary: every `ode train` setting plus `tolerances`.
pub fn searchable() -> Vec<String> {
    let all = toml::Value::try_from(RunConfig::from_resolved(&RunConfig::default().resolve(None)))
        .expect("run config serialises");
    let mut names: Vec<String> = all.as_table().map(|t| t.keys().cloned().collect()).unwrap_or_default();
    for optional in [
        "adjoint_rtol",
        "adjoint_atol",
        "step_size",
        "early_stopping_patience",
        "threads",
        "features",
        "targets",
        "max_train_windows",
        "max_val_windows",
    ] {
        if !names.iter().any(|n| n == optional) {
            names.push(optional.to_string());
        }
    }
    names.push(TOLERANCES.to_string());
    names.sort();
    names
}

impl SearchSpace {
    /// The tuning guide's space: latent {16, 32, 64}, hidden {32, 64, 128}, solver {euler, rk4,
    /// dopri5}, (rtol, atol) ∈ {(1e-3, 1e-4), (1e-4, 1e-5), (1e-5, 1e-6)}, learning rate
    /// log-uniform in [1e-4, 1e-3] (2 grid points), batch size {16, 32}, gradient clip in
    /// [0.5, 2.0] (2 grid points), and normalization {global, window} (per-window
    /// normalisation for series that trend out of the training range). The tolerances are
    /// conditional: only adaptive solvers (dopri5) get them.
    pub fn guide_default() -> Self {
        let ints = |v: &[i64]| Distribution::Categorical(v.iter().map(|&x| Value::Integer(x)).collect());
        let pair = |a: f64, b: f64| Value::Array(vec![Value::Float(a), Value::Float(b)]);
        let mut params = BTreeMap::new();
        params.insert("latent_dim".into(), ints(&[16, 32, 64]));
        params.insert("hidden_dim".into(), ints(&[32, 64, 128]));
        params.insert(
            "solver".into(),
            Distribution::Categorical(
                ["euler", "rk4", "dopri5"]
                    .iter()
                    .map(|s| Value::String(s.to_string()))
                    .collect(),
            ),
        );
        params.insert(
            TOLERANCES.into(),
            Distribution::Categorical(vec![pair(1e-3, 1e-4), pair(1e-4, 1e-5), pair(1e-5, 1e-6)]),
        );
        params.insert(
            "learning_rate".into(),
            Distribution::Float {
                low: 1e-4,
                high: 1e-3,
                log: true,
                grid: Some(2),
            },
        );
        params.insert("batch_size".into(), ints(&[16, 32]));
        params.insert(
            "normalization".into(),
            Distribution::Categorical(vec![Value::String("global".into()), Value::String("window".into())]),
        );
        params.insert(
            "gradient_clip".into(),
            Distribution::Float {
                low: 0.5,
                high: 2.0,
                log: false,
                grid: Some(2),
            },
        );
        Self { params }
    }

    /// The space as a TOML file that [`SearchSpace::from_toml`] reads back to the same space.
    pub fn to_toml(&self) -> String {
        let mut params = toml::Table::new();
        for (name, d) in &self.params {
            let mut t = toml::Table::new();
            match d {
                Distribution::Categorical(c) => {
                    t.insert("choices".into(), Value::Array(c.clone()));
                }
                Distribution::Fixed(v) => {
                    t.insert("value".into(), v.clone());
                }
                Distribution::Int { low, high, step, log } => {
                    t.insert("low".into(), Value::Integer(*low));
                    t.insert("high".into(), Value::Integer(*high));
                    t.insert("step".into(), Value::Integer(*step));
                    t.insert("log".into(), Value::Boolean(*log));
                }
                Distribution::Float { low, high, log, grid } => {
                    t.insert("low".into(), Value::Float(*low));
                    t.insert("high".into(), Value::Float(*high));
                    t.insert("log".into(), Value::Boolean(*log));
                    if let Some(g) = grid {
                        t.insert("grid".into(), Value::Integer(*g as i64));
                    }
                }
            }
            params.insert(name.clone(), Value::Table(t));
        }
        let mut root = toml::Table::new();
        root.insert("params".into(), Value::Table(params));
        toml::to_string(&root).expect("search space serialises")
    }

    /// Parses and validates a TOML search space; `source_name` names it in errors.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Self, SpaceError> {
        let raw: RawSpace = toml::from_str(text).map_err(|e| SpaceError::Parse {
            source_name: source_name.into(),
            reason: e.to_string(),
        })?;
        let known = searchable();
        let mut params = BTreeMap::new();
        for (name, p) in raw.params {
            if !known.contains(&name) {
                return Err(SpaceError::UnknownParameter {
                    source_name: source_name.into(),
                    name,
                    known: known.join(", "),
                });
            }
            let bad = |reason: String| SpaceError::Invalid {
                source_name: source_name.into(),
                name: name.clone(),
                reason,
            };
            let d = match (p.choices, p.value, p.low, p.high) {
                (Some(c), None, None, None) => {
                    if c.is_empty() {
                        return Err(bad("the choice list is empty; give at least one value".into()));
                    }
                    Distribution::Categorical(c)
                }
                (None, Some(v), None, None) => Distribution::Fixed(v),
                (None, None, Some(lo), Some(hi)) => match (lo, hi) {
                    (Value::Integer(low), Value::Integer(high)) => {
                        let step = p.step.unwrap_or(1);
                        if low > high {
                            return Err(bad(format!("low {low} > high {high}")));
                        }
                        if step < 1 {
                            return Err(bad(format!("step {step} must be at least 1")));
                        }
                        if p.log && low <= 0 {
                            return Err(bad(format!("a log range must be above 0, got low = {low}")));
                        }
                        Distribution::Int {
                            low,
                            high,
                            step,
                            log: p.log,
                        }
                    }
                    (lo, hi) => {
                        let f = |v: &Value| v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
                        let (Some(low), Some(high)) = (f(&lo), f(&hi)) else {
                            return Err(bad("low and high must be numbers".into()));
                        };
                        if !(low.is_finite() && high.is_finite()) || low > high {
                            return Err(bad(format!("low {low} > high {high} (or not finite)")));
                        }
                        if p.log && low <= 0.0 {
                            return Err(bad(format!("a log range must not touch 0, got low = {low}")));
                        }
                        if p.grid == Some(0) {
                            return Err(bad("grid must be at least 1 point".into()));
                        }
                        Distribution::Float {
                            low,
                            high,
                            log: p.log,
                            grid: p.grid,
                        }
                    }
                },
                _ => {
                    return Err(bad(
                        "give exactly one of `choices = [...]`, `value = ...`, or `low = ..` with `high = ..`".into(),
                    ));
                }
            };
            params.insert(name, d);
        }
        let space = Self { params };
        // Every value must make a valid run configuration: try the first choice of each.
        for (name, d) in &space.params {
            let vals: Vec<Value> = match d {
                Distribution::Categorical(c) => c.clone(),
                Distribution::Fixed(v) => vec![v.clone()],
                Distribution::Int { low, high, .. } => vec![Value::Integer(*low), Value::Integer(*high)],
                Distribution::Float { low, high, .. } => vec![Value::Float(*low), Value::Float(*high)],
            };
            for v in vals {
                let mut one = BTreeMap::new();
                one.insert(name.clone(), v.clone());
                to_run_config(&one).map_err(|reason| SpaceError::Invalid {
                    source_name: source_name.into(),
                    name: name.clone(),
                    reason: format!("value {v} is not valid here: {reason}"),
                })?;
            }
        }
        Ok(space)
    }
}

/// Turns sampled values into a run configuration (types checked by the `ode train` schema);
/// `tolerances = [rtol, atol]` sets both tolerances.
pub fn to_run_config(values: &BTreeMap<String, Value>) -> Result<RunConfig, String> {
    let mut table = toml::Table::new();
    for (k, v) in values {
        if k == TOLERANCES {
            let pair = v
                .as_array()
                .filter(|a| a.len() == 2)
                .ok_or("tolerances must be [rtol, atol] pairs")?;
            table.insert("rtol".into(), pair[0].clone());
            table.insert("atol".into(), pair[1].clone());
        } else {
            table.insert(k.clone(), v.clone());
        }
    }
    // Integers where floats are expected are fine (`gradient_clip = 1`).
    let text = toml::to_string(&table).map_err(|e| e.to_string())?;
    RunConfig::from_toml(&text).or_else(|e| {
        let fixed: toml::Table = table
            .into_iter()
            .map(|(k, v)| match v {
                Value::Integer(i)
                    if matches!(k.as_str(), "rtol" | "atol" | "learning_rate" | "gradient_clip" | "dt") =>
                {
                    (k, Value::Float(i as f64))
                }
                other => (k, other),
            })
            .collect();
        RunConfig::from_toml(&toml::to_string(&fixed).map_err(|e| e.to_string())?).map_err(|_| e)
    })
}
