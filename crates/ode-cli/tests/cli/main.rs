//! The `ode` command's end-to-end tests, one module per command or feature, in one test
//! binary: one link instead of fifteen, and tests of different modules run side by side
//! (`cargo test -p ode-cli --test cli mlflow` runs one module).

mod common;

mod baselines;
mod checkpoint;
mod commands;
mod dashboard;
mod evaluate;
mod gpu;
mod mlflow;
mod report;
mod search;
mod search_score;
mod soak;
mod storage_secrets;
mod study_report;
mod train;
mod window;
