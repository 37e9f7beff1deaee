//! The tuning guide's grid and random searches with the search driver (an in-memory store;
//! `ode search --storage sqlite:PATH` keeps results on disk):
//! `cargo run --release -p ode-search --example random_search`.

use ode_search::driver::{DataFn, SearchConfig, best_config_toml};
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
        study: "random".into(),
        strategy: Strategy::Random { trials: 6 },
        space,
        base: RunConfig::from_toml("epochs = 2")?,
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
    run_worker(&mut store, study, &cfg, &data, "local", |o| {
        println!("trial {} -> {:?}", o.number, o.value)
    })?;
    let trials = store.trials(study)?;
    let best = &leaderboard(&trials)[0];
    println!(
        "Best config: {:?}\nBest RMSE: {:.4}",
        best.trial.params,
        best.trial.value.unwrap_or(f64::NAN)
    );
    println!("{}", best_config_toml(&cfg, &trials).unwrap_or_default());
    Ok(())
}
