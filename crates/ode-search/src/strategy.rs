//! Which configurations a study tries: the full grid in a fixed order, or seeded random draws
//! where trial `k` depends only on the study seed and `k` (not on how many workers ran).
//! Conditional parameters (tolerances of fixed-step solvers, `revin` without window
//! normalisation) are left out of the trials where they do not apply.

use crate::space::{Distribution, SearchSpace, SpaceError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use toml::Value;

/// Sampled values of one trial, by parameter name.
pub type Params = BTreeMap<String, Value>;

/// Every combination of the space's values, parameters in name order, the last varying
/// fastest. Float ranges need `grid = N` points (log-spaced when `log`).
pub fn grid(space: &SearchSpace) -> Result<Vec<Params>, SpaceError> {
    let mut axes: Vec<(String, Vec<Value>)> = Vec::new();
    for (name, d) in &space.params {
        let values = match d {
            Distribution::Categorical(c) => c.clone(),
            Distribution::Fixed(v) => vec![v.clone()],
            Distribution::Int { low, high, step, .. } => {
                (*low..=*high).step_by(*step as usize).map(Value::Integer).collect()
            }
            Distribution::Float { low, high, log, grid } => {
                let n = grid.ok_or_else(|| SpaceError::Invalid {
                    source_name: "grid search".into(),
                    name: name.clone(),
                    reason: "a float range needs `grid = N` points for grid search (or use choices)".into(),
                })?;
                (0..n)
                    .map(|i| {
                        let f = if n == 1 { 0.0 } else { i as f64 / (n - 1) as f64 };
                        let v = if *log {
                            (low.ln() + f * (high.ln() - low.ln())).exp()
                        } else {
                            low + f * (high - low)
                        };
                        Value::Float(v)
                    })
                    .collect()
            }
        };
        axes.push((name.clone(), values));
    }
    let mut out = vec![Params::new()];
    for (name, values) in &axes {
        let mut next = Vec::with_capacity(out.len() * values.len());
        for prefix in &out {
            for v in values {
                let mut p = prefix.clone();
                p.insert(name.clone(), v.clone());
                next.push(p);
            }
        }
        out = next;
    }
    // Points that differ only in inactive parameters are the same configuration: keep the first.
    let mut seen = std::collections::BTreeSet::new();
    out.iter_mut().for_each(drop_inactive);
    out.retain(|p| seen.insert(format!("{p:?}")));
    Ok(out)
}

/// Parameters that only exist under a condition on another, as Optuna's define-by-run spaces
/// do: the tolerances only for adaptive solvers, `revin` only with `normalization = window`.
/// A trial whose condition fails has no value (and, in the study store, no row) for them.
pub fn drop_inactive(p: &mut Params) {
    let fixed_step = p
        .get("solver")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<ode_train::gpu::core::Method>().ok())
        .is_some_and(|m| !m.tableau().is_adaptive());
    if fixed_step {
        for name in [crate::space::TOLERANCES, "rtol", "atol", "adjoint_rtol", "adjoint_atol"] {
            p.remove(name);
        }
    }
    if p.get("normalization")
        .and_then(Value::as_str)
        .is_some_and(|n| n != "window")
    {
        p.remove("revin");
    }
}

/// Trial `k` of a random study with `study_seed`: its parameter values and its training seed.
pub fn random_trial(space: &SearchSpace, study_seed: u64, k: u64) -> (Params, u64) {
    // SplitMix-style mixing so neighbouring (seed, k) pairs give unrelated streams.
    let mut z = study_seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let mut rng = ChaCha8Rng::seed_from_u64(z ^ (z >> 31));
    let mut p = Params::new();
    for (name, d) in &space.params {
        let v = match d {
            Distribution::Categorical(c) => c[rng.random_range(0..c.len())].clone(),
            Distribution::Fixed(v) => v.clone(),
            Distribution::Int { low, high, step, log } => {
                let x = if *log {
                    let u: f64 = rng.random();
                    ((*low as f64).ln() + u * ((*high as f64).ln() - (*low as f64).ln())).exp()
                } else {
                    *low as f64 + rng.random::<f64>() * (*high - *low + 1) as f64
                };
                let snapped = low + (((x - *low as f64) / *step as f64).floor() as i64) * step;
                Value::Integer(snapped.clamp(*low, *high))
            }
            Distribution::Float { low, high, log, .. } => {
                let u: f64 = rng.random();
                Value::Float(if *log {
                    (low.ln() + u * (high.ln() - low.ln())).exp()
                } else {
                    low + u * (high - low)
                })
            }
        };
        p.insert(name.clone(), v);
    }
    // Dropped after drawing, so every trial's other values are what they were without conditions.
    drop_inactive(&mut p);
    (p, rng.random::<u64>() >> 11)
}
