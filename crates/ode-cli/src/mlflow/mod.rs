//! `--tracker mlflow`: runs logged to an MLflow tracking server over its REST API, besides
//! metrics.jsonl.
//!
//! - [`client`]: the REST calls (experiments, runs, log-batch, the artifact proxy).
//! - [`batch`]: MLflow's per-request limits and how queued records are cut into batches.
//! - [`backoff`]: the retry schedule.
//! - [`sender`]: the queue and the background thread that sends it, retrying while the server
//!   is away.
//! - [`run`]: a run as an [`ode_train::Tracker`] (and a search trial's tracker).
//! - [`train_run`]: the run of `ode train`, which `--resume` goes on with; [`run_file`]: the
//!   record of it in the training folder.
//! - [`study`]: a search as a parent run with a child run per trial.

pub mod backoff;
pub mod batch;
pub mod client;
pub mod run;
pub mod run_file;
pub mod sender;
pub mod study;
pub mod train_run;

use clap::{Args, ValueEnum};
use std::error::Error;
use std::time::Duration;

type Res<T> = Result<T, Box<dyn Error>>;

/// Where runs are tracked besides metrics.jsonl.
#[derive(Debug, Clone, Copy, Default, PartialEq, ValueEnum)]
pub enum TrackerKind {
    /// metrics.jsonl only.
    #[default]
    None,
    /// Also an MLflow tracking server (--tracking-uri).
    Mlflow,
}

/// The tracking flags of `ode train`, `ode search` and `ode worker`.
#[derive(Args, Debug, Clone, Default)]
pub struct TrackingArgs {
    /// Also log the run to an experiment tracker: none or mlflow (parameters, per-epoch metrics,
    /// tags, and for `ode train` the checkpoint and report as artifacts).
    #[arg(long, value_enum, default_value = "none")]
    pub tracker: TrackerKind,
    /// The MLflow tracking server, http://HOST:PORT (default: $MLFLOW_TRACKING_URI).
    #[arg(long, value_name = "URL")]
    pub tracking_uri: Option<String>,
    /// The MLflow experiment, created when missing (default: $MLFLOW_EXPERIMENT_NAME, else
    /// Default).
    #[arg(long)]
    pub experiment: Option<String>,
    /// The MLflow run name (default: the --out folder's name; for a search, the study name).
    #[arg(long)]
    pub run_name: Option<String>,
    /// At the end, how long to wait for records not yet sent to the MLflow server (default:
    /// $ODE_MLFLOW_FLUSH_TIMEOUT, else 30).
    #[arg(long, value_name = "SECONDS")]
    pub mlflow_flush_timeout: Option<f64>,
}

/// A checked MLflow configuration.
#[derive(Debug, Clone)]
pub struct Mlflow {
    /// The server, without a trailing slash.
    pub uri: String,
    /// The experiment's name.
    pub experiment: String,
    /// The bounded wait for unsent records at the end.
    pub flush_timeout: Duration,
}

impl TrackingArgs {
    /// The MLflow configuration when `--tracker mlflow`, checked; `None` otherwise.
    pub fn mlflow(&self) -> Res<Option<Mlflow>> {
        if self.tracker == TrackerKind::None {
            if self.tracking_uri.is_some() {
                return Err("--tracking-uri is for --tracker mlflow: add --tracker mlflow".into());
            }
            return Ok(None);
        }
        let uri = match self.tracking_uri.clone().or_else(|| env("MLFLOW_TRACKING_URI")) {
            Some(u) => u,
            None => {
                return Err(
                    "--tracker mlflow needs the tracking server: give --tracking-uri http://HOST:PORT or set \
                            MLFLOW_TRACKING_URI"
                        .into(),
                );
            }
        };
        let uri = check_uri(&uri)?;
        let experiment = self
            .experiment
            .clone()
            .or_else(|| env("MLFLOW_EXPERIMENT_NAME"))
            .unwrap_or_else(|| "Default".into());
        if experiment.trim().is_empty() {
            return Err("--experiment must not be empty".into());
        }
        let seconds = match (self.mlflow_flush_timeout, env("ODE_MLFLOW_FLUSH_TIMEOUT")) {
            (Some(s), _) => s,
            (None, Some(s)) => s
                .parse()
                .map_err(|_| format!("ODE_MLFLOW_FLUSH_TIMEOUT={s} is not a number of seconds"))?,
            (None, None) => 30.0,
        };
        let flush_timeout = Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("--mlflow-flush-timeout must be a non-negative number of seconds, got {seconds}"))?;
        Ok(Some(Mlflow {
            uri,
            experiment,
            flush_timeout,
        }))
    }
}

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `uri` as the base of REST calls, or an error naming it.
fn check_uri(uri: &str) -> Res<String> {
    let bad = |why: &str| -> Box<dyn Error> {
        format!(
            "--tracking-uri '{uri}' is not the URL of an MLflow tracking server ({why}); expected http://HOST:PORT \
             or https://HOST[:PORT][/PATH]"
        )
        .into()
    };
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
        .ok_or_else(|| bad("it must start with http:// or https://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err(bad("no host"));
    }
    let port = match host.strip_prefix('[') {
        Some(v6) => v6
            .split_once(']')
            .ok_or_else(|| bad("an unclosed '['"))?
            .1
            .strip_prefix(':'),
        None => host.split_once(':').map(|(_, p)| p),
    };
    if let Some(port) = port.filter(|p| p.parse::<u16>().is_err()) {
        return Err(bad(&format!("the port '{port}' is not a number from 0 to 65535")));
    }
    if host.chars().any(|c| c.is_whitespace()) || rest.contains(['?', '#']) {
        return Err(bad("a space, query or fragment in it"));
    }
    Ok(uri.trim_end_matches('/').to_string())
}

/// `HEAD` of the git repository of the working directory, if it is in one.
pub fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let head = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && head.len() >= 40 && head.chars().all(|c| c.is_ascii_hexdigit())).then_some(head)
}

/// The source tags of a run started by `command` (`mlflow.source.*`, the git commit if any).
pub fn source_tags(command: &str) -> Vec<(String, String)> {
    let mut tags = vec![
        ("mlflow.source.type".to_string(), "LOCAL".to_string()),
        ("mlflow.source.name".to_string(), command.to_string()),
    ];
    if let Some(c) = git_commit() {
        tags.push(("mlflow.source.git.commit".into(), c));
    }
    if let Some(user) = env("USER") {
        tags.push(("mlflow.user".into(), user));
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_uris_are_checked() {
        assert_eq!(check_uri("http://127.0.0.1:5000/").unwrap(), "http://127.0.0.1:5000");
        assert_eq!(
            check_uri("https://mlflow.example/prefix").unwrap(),
            "https://mlflow.example/prefix"
        );
        for bad in [
            "127.0.0.1:5000",
            "ftp://h",
            "http://",
            "http://:5000",
            "http://h:port",
            "http://h:99999",
        ] {
            let e = check_uri(bad).unwrap_err().to_string();
            assert!(e.contains("--tracking-uri") && e.contains(bad), "{e}");
        }
    }
}
