//! `ode`: solve ODEs, train Neural ODE forecasters, predict and diagnose with them.
//! See the crate README for examples.

mod evaluate;
mod forecasts;
mod mlflow;
mod out;
mod progress;
mod report;
mod search;
mod solve;
mod storage;
mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "ode", version, about = "Neural ODE solvers, training and tuning")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Solve a built-in problem and print the solution at evenly spaced times with statistics.
    Solve(solve::SolveArgs),
    /// Train a Neural ODE forecaster on a CSV file or a built-in dataset.
    Train(Box<train::TrainArgs>),
    /// Forecast every window of a CSV file with a trained checkpoint (data units).
    Predict(train::PredictArgs),
    /// Loss, solver work and per-tensor gradients of a checkpoint on chosen windows.
    Diagnose(train::DiagnoseArgs),
    /// RMSE and MAE of a checkpoint on the test (or val) windows, per target in normalised and
    /// data units, next to the baselines on the same windows.
    Evaluate(evaluate::EvaluateArgs),
    /// Write an HTML report (plots as inline SVG) of a training run directory or of a study.
    #[command(
        override_usage = "ode report RUN_DIR [--out FILE]\n       ode report --study NAME [--storage URL] [--out FILE]"
    )]
    Report(report::ReportArgs),
    /// Run a hyperparameter study with local workers; prints the leaderboard, writes the best config.
    Search(Box<search::SearchArgs>),
    /// Join a study from any machine and train its waiting trials.
    Worker(search::WorkerArgs),
    /// Inspect studies: list, show, best, export.
    Study {
        #[command(subcommand)]
        command: search::StudyCommand,
    },
    /// Built-in datasets.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Write a generated dataset (spiral, lotka-volterra, five-channel) as CSV.
    Generate(train::GenerateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Solve(a) => solve::solve(a),
        Command::Train(a) => train::train(a),
        Command::Predict(a) => train::predict(a),
        Command::Diagnose(a) => train::diagnose(a),
        Command::Evaluate(a) => evaluate::evaluate(a),
        Command::Report(a) => report::run(a),
        Command::Search(a) => search::search(a),
        Command::Worker(a) => search::worker(a),
        Command::Study { command } => search::study(command),
        Command::Data {
            command: DataCommand::Generate(a),
        } => train::generate(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
