//! The tuning guide's grid search (latent × hidden × solver) with the search driver:
//! `cargo run --release -p ode-search --example grid_search`.

use ode_search::driver::{DataFn, SearchConfig};
use ode_search::{MemoryStore, SearchSpace, Strategy, StudyStore, enqueue_study, leaderboard, run_worker};
use ode_train::RunConfig;
use ode_train::data::Dataset;
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let table = ode_train::generate::generate("five-channel", 1000, 0, 0.01)?;
    let data: DataFn = Arc::new(move |cfg| Dataset::from_table(&table, cfg, "five-channel").map_err(|e| e.to_string()));
    let space = SearchSpace::from_toml(
        "[params.latent_dim]\nchoices = [16, 32, 64]\n[params.hidden_dim]\nchoices = [32, 64, 128]\n\
         [params.solver]\nchoices = [\"euler\", \"rk4\", \"dopri5\"]\n",
        "example",
    )?;
    let cfg = SearchConfig {
        study: "grid".into(),
        strategy: Strategy::Grid,
        space,
        base: RunConfig::from_toml("epochs = 1")?,
        seed: 0,
        lease_seconds: 120.0,
        max_attempts: 3,
        threads_per_trial: 2,
        trial_timeout: None,
        cancel: None,
        trial_tracker: None,
    };
    let mut store = MemoryStore::new();
    let study = enqueue_study(&mut store, &cfg)?;
    run_worker(&mut store, study, &cfg, &data, "local", |_| {})?;
    let trials = store.trials(study)?;
    let best = &leaderboard(&trials)[0];
    println!("Best config: {:?}", best.trial.params);
    println!("Best RMSE: {:.4}", best.trial.value.unwrap_or(f64::NAN));
    Ok(())
}
