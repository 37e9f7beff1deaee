#![doc = include_str!("../README.md")]

/// The trainer that search trials run.
pub use ode_train as train;

mod dialect;
pub mod driver;
pub mod leaderboard;
pub mod memory;
mod open;
pub mod optuna;
pub mod pg_connect;
pub mod pool;
pub mod postgres;
mod rdb;
pub mod space;
pub mod sqlite;
pub mod store;
pub mod strategy;
pub mod trial_tracker;
pub mod worker_id;

pub use driver::{SearchConfig, Strategy, enqueue_study, leaderboard, run_worker};
pub use memory::MemoryStore;
pub use open::{open_store, shown_url};
pub use postgres::PostgresStore;
pub use space::{Distribution, SearchSpace, SpaceError};
pub use sqlite::SqliteStore;
pub use store::{StudyStore, TrialState};
pub use strategy::{Params, drop_inactive, grid, random_trial};
pub use trial_tracker::{TrialTracker, TrialTrackerFn};
