//! Built-in seeded datasets: the project's default data, integrated with `ode_core`.
//!
//! Each dataset is an autonomous ODE solved with dopri5 (`rtol` 1e-8, `atol` 1e-10) from a fixed
//! initial state, sampled every [`sample_dt`] from `t = 0`, plus Gaussian observation noise of
//! standard deviation `noise · std(column)` drawn from `ChaCha8Rng::seed_from_u64(seed)`. The
//! same name, rows, seed and noise always give the same table.
//!
//! - `spiral`: torchdiffeq's `ode_demo` true dynamics, `dy/dt = (y³) · [[-0.1, 2.0], [-2.0, -0.1]]`
//!   (row vector times matrix, cube elementwise) from `y0 = (2, 0)`, sampled every 0.025 as in the
//!   demo (1000 rows cover `t ∈ [0, 25]`). Columns `x`, `y`.
//! - `lotka-volterra`: `prey' = α·prey − β·prey·predator`, `predator' = δ·prey·predator − γ·predator`
//!   with α = 1.5, β = 1, γ = 3, δ = 1 from (1, 1), sampled every 0.05 (1000 rows ≈ 13 periods).
//!   Columns `prey`, `predator`.
//! - `five-channel`: two lightly damped oscillators with linear coupling,
//!   `x1'' = −x1 − 0.02·x1' + 0.2·(x2 − x1)`, `x2'' = −2.89·x2 − 0.02·x2' + 0.2·(x1 − x2)`, and a
//!   slow channel relaxing towards their energy, `s' = 0.05·(x1² + x2² − s)`, from
//!   `(x1, x1', x2, x2', s) = (1, 0, 0, 1, 0)`, sampled every 0.1 (1000 rows ≈ 16 and 27 periods).
//!   Columns `c0`..`c4` = `x1, x1', x2, x2', s`.
//!
//! Every table has the time column `t` (the sample times, written to 6 decimals).
//!
//! ```
//! use ode_train::generate::generate;
//! let table = generate("spiral", 200, 0, 0.01).unwrap();
//! assert_eq!(table.columns, ["x", "y"]);
//! assert_eq!(table.num_rows(), 200);
//! assert_eq!(table, generate("spiral", 200, 0, 0.01).unwrap());
//! ```

use crate::data::{DataError, Table};
use ode_core::{FnField, Method, SolveOptions, Solver};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Names of the built-in datasets.
pub const DATASETS: [&str; 3] = ["spiral", "lotka-volterra", "five-channel"];

#[derive(Debug, Clone, Copy)]
enum Kind {
    Spiral,
    LotkaVolterra,
    FiveChannel,
}

impl Kind {
    fn parse(name: &str) -> Result<Kind, DataError> {
        match name.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "spiral" => Ok(Kind::Spiral),
            "lotka-volterra" => Ok(Kind::LotkaVolterra),
            "five-channel" => Ok(Kind::FiveChannel),
            _ => Err(DataError::UnknownDataset {
                name: name.to_string(),
                available: DATASETS.iter().map(|s| s.to_string()).collect(),
            }),
        }
    }

    fn columns(self) -> &'static [&'static str] {
        match self {
            Kind::Spiral => &["x", "y"],
            Kind::LotkaVolterra => &["prey", "predator"],
            Kind::FiveChannel => &["c0", "c1", "c2", "c3", "c4"],
        }
    }

    fn dt(self) -> f64 {
        match self {
            Kind::Spiral => 0.025,
            Kind::LotkaVolterra => 0.05,
            Kind::FiveChannel => 0.1,
        }
    }

    fn y0(self) -> Vec<f64> {
        match self {
            Kind::Spiral => vec![2.0, 0.0],
            Kind::LotkaVolterra => vec![1.0, 1.0],
            Kind::FiveChannel => vec![1.0, 0.0, 0.0, 1.0, 0.0],
        }
    }

    fn rhs(self, y: &[f64], dy: &mut [f64]) {
        match self {
            Kind::Spiral => {
                let (a, b) = (y[0].powi(3), y[1].powi(3));
                dy[0] = -0.1 * a - 2.0 * b;
                dy[1] = 2.0 * a - 0.1 * b;
            }
            Kind::LotkaVolterra => {
                let (x, p) = (y[0], y[1]);
                dy[0] = 1.5 * x - x * p;
                dy[1] = x * p - 3.0 * p;
            }
            Kind::FiveChannel => {
                let (x1, v1, x2, v2, s) = (y[0], y[1], y[2], y[3], y[4]);
                dy[0] = v1;
                dy[1] = -x1 - 0.02 * v1 + 0.2 * (x2 - x1);
                dy[2] = v2;
                dy[3] = -2.89 * x2 - 0.02 * v2 + 0.2 * (x1 - x2);
                dy[4] = 0.05 * (x1 * x1 + x2 * x2 - s);
            }
        }
    }
}

/// The sampling interval of a built-in dataset (`t` of row `k` is `k · sample_dt`).
pub fn sample_dt(name: &str) -> Result<f64, DataError> {
    Kind::parse(name).map(Kind::dt)
}

/// The column names of a built-in dataset.
pub fn columns(name: &str) -> Result<&'static [&'static str], DataError> {
    Kind::parse(name).map(Kind::columns)
}

/// Evaluates a built-in dataset's vector field `dy/dt` at the state `y` (noise-free dynamics).
///
/// # Panics
/// If `y` or `dy` is shorter than the dataset's number of columns.
pub fn vector_field(name: &str, y: &[f64], dy: &mut [f64]) -> Result<(), DataError> {
    Kind::parse(name).map(|k| k.rhs(y, dy))
}

/// Generates `rows` rows of the built-in dataset `name` (one of [`DATASETS`]; `_` may stand
/// for `-`) with observation noise of standard deviation `noise · std(column)` (population std
/// of the noise-free column) from a ChaCha8 generator seeded with `seed`.
///
/// Errors: an unknown name (listing the built-in ones), `rows == 0`, a negative or non-finite
/// `noise`, or a solver failure.
pub fn generate(name: &str, rows: usize, seed: u64, noise: f64) -> Result<Table, DataError> {
    let kind = Kind::parse(name)?;
    if rows == 0 {
        return Err(DataError::InvalidConfig {
            name: "rows".into(),
            value: "0".into(),
            reason: "generate at least one row (e.g. 1000)".into(),
        });
    }
    if !(noise.is_finite() && noise >= 0.0) {
        return Err(DataError::InvalidConfig {
            name: "noise".into(),
            value: noise.to_string(),
            reason: "the noise level is a fraction of each column's std and must be finite and >= 0 (e.g. 0.01)".into(),
        });
    }
    let dt = kind.dt();
    let y0 = kind.y0();
    let dim = y0.len();
    let ts: Vec<f64> = (0..rows).map(|k| k as f64 * dt).collect();
    let solver_error = |source| DataError::Generate {
        name: name.to_string(),
        source,
    };
    let mut data = if rows == 1 {
        y0
    } else {
        let opts = SolveOptions::default()
            .rtol(1e-8)
            .atol(1e-10)
            .max_num_steps(100_000 + 1_000 * rows);
        let mut solver = Solver::<f64>::new(Method::Dopri5, opts).map_err(solver_error)?;
        let mut field = FnField::new(dim, move |_t: f64, y: &[f64], dy: &mut [f64]| kind.rhs(y, dy));
        solver.solve(&mut field, &ts, &y0).map_err(solver_error)?.ys
    };

    if noise > 0.0 {
        let sigma: Vec<f64> = (0..dim)
            .map(|j| {
                let col = || data.iter().skip(j).step_by(dim);
                let mean = col().sum::<f64>() / rows as f64;
                let var = col().map(|v| (v - mean) * (v - mean)).sum::<f64>() / rows as f64;
                noise * var.sqrt()
            })
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut spare: Option<f64> = None;
        for (i, v) in data.iter_mut().enumerate() {
            let z = match spare.take() {
                Some(z) => z,
                None => {
                    // Box-Muller: u1 in (0, 1] so that ln(u1) is finite.
                    let u1 = 1.0 - rng.random::<f64>();
                    let u2 = rng.random::<f64>();
                    let r = (-2.0 * u1.ln()).sqrt();
                    let angle = std::f64::consts::TAU * u2;
                    spare = Some(r * angle.sin());
                    r * angle.cos()
                }
            };
            *v += sigma[i % dim] * z;
        }
    }

    let times = (0..rows)
        .map(|k| ((k as f64 * dt * 1e6).round() / 1e6).to_string())
        .collect();
    Ok(Table {
        columns: kind.columns().iter().map(|s| s.to_string()).collect(),
        data,
        time: Some(("t".to_string(), times)),
    })
}
