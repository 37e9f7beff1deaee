//! The tuning guide's "Step 3: tune solver" and "Step 4: tune tolerances" in Rust:
//! `cargo run --release -p ode-search --example solver_comparison`.

use ode_train::data::{DataConfig, Dataset};
use ode_train::{MemoryTracker, ModelConfig, NeuralOdeModel, TrainConfig, Trainer};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let table = ode_train::generate::generate("five-channel", 1000, 0, 0.01)?;
    let ds = Dataset::from_table(&table, &DataConfig::default(), "five-channel")?;
    let run = |config: ModelConfig| -> Result<(f64, f64), Box<dyn std::error::Error>> {
        let mut tracker = MemoryTracker::default();
        let mut trainer = Trainer::new(
            NeuralOdeModel::seeded(config, 0)?,
            TrainConfig {
                epochs: 3,
                ..TrainConfig::default()
            },
            &mut tracker,
        )?;
        let start = Instant::now();
        let history = trainer.fit(&ds.train, &ds.val)?;
        Ok((
            start.elapsed().as_secs_f64(),
            history.best_val_rmse().unwrap_or(f64::NAN),
        ))
    };
    for solver in ["euler", "rk4", "dopri5"] {
        let (time, rmse) = run(ModelConfig {
            input_dim: 5,
            solver: solver.parse()?,
            ..ModelConfig::default()
        })?;
        println!("Solver {solver}: Time={time:.1}s, RMSE={rmse:.4}");
    }
    for (rtol, atol) in [(1e-3, 1e-4), (1e-4, 1e-5), (1e-5, 1e-6)] {
        let (time, rmse) = run(ModelConfig {
            input_dim: 5,
            rtol,
            atol,
            ..ModelConfig::default()
        })?;
        println!("dopri5 rtol {rtol:e} atol {atol:e}: Time={time:.1}s, RMSE={rmse:.4}");
    }
    Ok(())
}
