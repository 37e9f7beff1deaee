//! The tuning guide's "Step 2: tune latent dimension" in Rust:
//! `cargo run --release -p ode-search --example latent_sweep`.

use ode_train::data::{DataConfig, Dataset};
use ode_train::{MemoryTracker, ModelConfig, NeuralOdeModel, TrainConfig, Trainer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let table = ode_train::generate::generate("five-channel", 1000, 0, 0.01)?;
    let ds = Dataset::from_table(&table, &DataConfig::default(), "five-channel")?;
    for latent_dim in [16, 32, 64] {
        let model = NeuralOdeModel::seeded(
            ModelConfig {
                input_dim: 5,
                latent_dim,
                hidden_dim: 64,
                ..ModelConfig::default()
            },
            0,
        )?;
        let mut tracker = MemoryTracker::default();
        let mut trainer = Trainer::new(
            model,
            TrainConfig {
                epochs: 3,
                ..TrainConfig::default()
            },
            &mut tracker,
        )?;
        let history = trainer.fit(&ds.train, &ds.val)?;
        println!(
            "Latent dim {latent_dim}: Val RMSE = {:.4}",
            history.best_val_rmse().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
