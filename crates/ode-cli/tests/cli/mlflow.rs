//! `--tracker mlflow` against a real, pinned `mlflow server` (crates/ode-cli/tests/mlflow-requirements.txt):
//! SQLite backend, artifacts in a temporary folder, a free local port. What the server stored is
//! read back with MLflow's Python client (tests/mlflow_read.py) and compared with metrics.jsonl.
//!
//! Set ODE_MLFLOW to the venv's `mlflow` (its `python` is next to it); without it these tests
//! skip, unless ODE_REQUIRE_MLFLOW=1 (CI). The tests without a server always run.

use crate::common;

use common::{SEARCH_SMALL, SMALL, external_tool};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOW: &str = "python3 -m venv V && V/bin/pip install -r crates/ode-cli/tests/mlflow-requirements.txt, then \
                   ODE_MLFLOW=V/bin/mlflow";

fn mlflow() -> Option<String> {
    external_tool("ODE_MLFLOW", "mlflow", "ODE_REQUIRE_MLFLOW", HOW)
}

/// A free local port (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An `mlflow server` (in its own process group, so that killing it kills its workers too).
struct Server {
    child: Child,
    killed: bool,
    port: u16,
    dir: PathBuf,
    exe: String,
}

impl Server {
    /// Starts a server with its store in `dir` on `port` and waits until it answers.
    fn start(exe: &str, dir: &Path, port: u16) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .unwrap();
        let child = Command::new(exe)
            .args([
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--workers",
                "1",
            ])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .process_group(0)
            .spawn()
            .expect("start mlflow server");
        let mut s = Server {
            child,
            killed: false,
            port,
            dir: dir.to_path_buf(),
            exe: exe.into(),
        };
        s.wait_until_up();
        s
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_until_up(&mut self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(180) {
            if health(self.port) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                panic!("mlflow server exited ({status}):\n{log}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("mlflow server did not answer on port {} within 180 s", self.port);
    }

    /// Kills the server and its workers (SIGKILL to its process group, with Python's
    /// `os.killpg`), and waits.
    fn kill(&mut self) {
        if std::mem::replace(&mut self.killed, true) {
            return;
        }
        let python = Path::new(&self.exe).with_file_name("python");
        let pgid = self.child.id();
        let _ = Command::new(python)
            .args([
                "-c",
                "import os, signal, sys; os.killpg(int(sys.argv[1]), signal.SIGKILL)",
            ])
            .arg(pgid.to_string())
            .status();
        let _ = self.child.wait();
    }

    /// The same server again: same port, same store.
    fn restart(&mut self) {
        self.kill();
        *self = Server::start(&self.exe.clone(), &self.dir.clone(), self.port);
    }

    /// What the server holds for `experiment`, read by MLflow's Python client.
    fn read(&self, experiment: &str) -> Value {
        let python = Path::new(&self.exe).with_file_name("python");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mlflow_read.py");
        let download = self.dir.join(format!("download-{experiment}"));
        let out = Command::new(&python)
            .arg(&script)
            .args([&self.url(), experiment])
            .arg(&download)
            .output()
            .expect("run the mlflow read-back script");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether an HTTP server on `port` answers `GET /health` with 200.
fn health(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
}

/// Runs `ode` in `dir` with `args`, without MLflow's environment: (success, stdout, stderr).
fn ode_in(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = ode_command(dir, args).output().expect("run ode");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ode_command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ode"));
    c.args(args)
        .current_dir(dir)
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("MLFLOW_EXPERIMENT_NAME")
        .env_remove("ODE_MLFLOW_FLUSH_TIMEOUT");
    c
}

/// The params and metric histories of a metrics.jsonl: (params, key -> [(step, value)]).
type Logged = (BTreeMap<String, String>, BTreeMap<String, Vec<(i64, Value)>>);

fn jsonl(path: &Path) -> Logged {
    let (mut params, mut metrics) = (BTreeMap::new(), BTreeMap::<String, Vec<(i64, Value)>>::new());
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if let Some(p) = v["param"].as_str() {
            params.insert(p.to_string(), v["value"].as_str().unwrap().to_string());
        } else {
            let key = v["metric"].as_str().unwrap().to_string();
            metrics
                .entry(key)
                .or_default()
                .push((v["step"].as_i64().unwrap(), v["value"].clone()));
        }
    }
    (params, metrics)
}

/// Checks that `run` holds exactly what metrics.jsonl in `out` has: every param, and every
/// metric's full history (same points, none twice).
fn assert_run_matches_jsonl(run: &Value, out: &Path) {
    let (params, metrics) = jsonl(&out.join("metrics.jsonl"));
    assert!(!metrics.is_empty());
    let server_params: BTreeMap<String, String> = serde_json::from_value(run["params"].clone()).unwrap();
    assert_eq!(server_params, params, "params");
    let keys: Vec<&String> = run["metrics"].as_object().unwrap().keys().collect();
    assert_eq!(keys, metrics.keys().collect::<Vec<_>>(), "metric names");
    for (key, local) in &metrics {
        let history = run["metrics"][key].as_array().unwrap();
        let mut server: Vec<(i64, Value)> = history.iter().map(|p| (p[0].as_i64().unwrap(), p[1].clone())).collect();
        let mut local = local.clone();
        let order = |a: &(i64, Value), b: &(i64, Value)| a.0.cmp(&b.0).then(a.1.to_string().cmp(&b.1.to_string()));
        server.sort_by(order);
        local.sort_by(order);
        assert_eq!(server, local, "history of {key}");
        // Each point has its own timestamp (when it was logged), so none is taken for another.
        let mut stamps: Vec<i64> = history.iter().map(|p| p[2].as_i64().unwrap()).collect();
        stamps.sort();
        stamps.dedup();
        assert_eq!(stamps.len(), history.len(), "timestamps of {key}");
    }
}

/// `git rev-parse HEAD` in `dir`, if it is in a repository.
fn git_head(dir: &Path) -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dir)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn train_args<'a>(out: &'a str, url: &'a str, experiment: &'a str, epochs: &'a str) -> Vec<&'a str> {
    let mut args = vec!["train", "--dataset", "spiral", "--epochs", epochs, "--out", out];
    args.extend(SMALL);
    args.extend(["--tracker", "mlflow", "--tracking-uri", url, "--experiment", experiment]);
    args
}

#[test]
fn train_logs_params_metrics_tags_and_artifacts() {
    let Some(exe) = mlflow() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&exe, tmp.path(), free_port());
    // From the repository (the git commit is tagged) and from a folder outside any (no tag).
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // The first with flags, the second with MLflow's environment variables instead.
    let url = server.url();
    for (dir, name) in [(repo, "in-repo"), (outside.as_path(), "outside")] {
        let out = tmp.path().join(name);
        let mut args = train_args(out.to_str().unwrap(), &url, "train-test", "3");
        let from_env = name == "outside";
        if from_env {
            // Drop --tracking-uri URL --experiment NAME.
            args.truncate(args.len() - 4);
        }
        let mut command = ode_command(dir, &args);
        if from_env {
            command
                .env("MLFLOW_TRACKING_URI", server.url())
                .env("MLFLOW_EXPERIMENT_NAME", "train-test");
        }
        let o = command.output().unwrap();
        let (ok, err) = (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned());
        assert!(ok, "{err}");
        assert!(!err.contains("warning: MLflow"), "{err}");
    }
    let read = server.read("train-test");
    let runs = read["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{read}");
    for (dir, name) in [(repo, "in-repo"), (outside.as_path(), "outside")] {
        let run = runs
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no run {name}: {read}"));
        let out = tmp.path().join(name);
        assert_eq!(run["status"], "FINISHED");
        assert!(run["end_time"].as_i64().unwrap() >= run["start_time"].as_i64().unwrap());
        assert_run_matches_jsonl(run, &out);
        let tags = &run["tags"];
        assert_eq!(tags["mlflow.runName"], name);
        assert_eq!(tags["solver"], run["params"]["solver"]);
        let summary: Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
        assert_eq!(tags["device"], summary["device"]);
        assert!(tags.get("mlflow.parentRunId").is_none());
        match git_head(dir) {
            Some(head) => assert_eq!(tags["mlflow.source.git.commit"], head.as_str()),
            None => assert!(tags.get("mlflow.source.git.commit").is_none(), "{tags}"),
        }
        // The checkpoint, the report and its forecasts, listed and downloadable, byte for byte.
        let mut listed: Vec<&str> = run["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["path"].as_str().unwrap())
            .collect();
        listed.sort();
        assert_eq!(listed, ["checkpoint.safetensors", "forecasts.json", "report.html"]);
        for file in listed {
            let downloaded = std::fs::read(run["files"][file].as_str().unwrap()).unwrap();
            assert_eq!(downloaded, std::fs::read(out.join(file)).unwrap(), "{file}");
        }
    }
    let outside_run = runs.iter().find(|r| r["name"] == "outside").unwrap();
    assert!(outside_run["tags"].get("mlflow.source.git.commit").is_none());
}

/// The trial runs of `read` that are children of `parent` (a run id), by name.
fn children<'a>(read: &'a Value, parent: &str) -> BTreeMap<String, &'a Value> {
    read["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["tags"]["mlflow.parentRunId"] == parent)
        .map(|r| (r["name"].as_str().unwrap().to_string(), r))
        .collect()
}

/// A study attribute, read from the SQLite store with Python's sqlite3.
fn study_attr(python: &Path, db: &Path, study: &str, key: &str) -> Option<String> {
    let code = "import sqlite3, sys, json\n\
                c = sqlite3.connect(sys.argv[1])\n\
                r = c.execute('SELECT a.value_json FROM study_user_attributes a JOIN studies s ON s.study_id = a.study_id \
                WHERE s.study_name = ? AND a.key = ?', (sys.argv[2], sys.argv[3])).fetchone()\n\
                print(json.loads(r[0]) if r else '')";
    let out = Command::new(python)
        .args(["-c", code])
        .arg(db)
        .args([study, key])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!v.is_empty()).then_some(v)
}

/// A trial's run: its trainer's params and one val_rmse per epoch it trained, ended FINISHED.
fn assert_trial_run(run: &Value, epochs: usize) {
    assert_eq!(run["status"], "FINISHED", "{run}");
    assert_eq!(run["tags"]["state"], "COMPLETE");
    assert!(run["params"]["solver"].is_string() && run["params"]["learning_rate"].is_string());
    assert_eq!(run["tags"]["solver"], run["params"]["solver"]);
    assert!(run["tags"]["device"].as_str().unwrap().starts_with("cpu"));
    let val = run["metrics"]["val_rmse"].as_array().unwrap();
    let steps: Vec<i64> = val.iter().map(|p| p[0].as_i64().unwrap()).collect();
    assert_eq!(steps, (1..=epochs as i64).collect::<Vec<_>>());
}

#[test]
fn search_is_a_parent_run_with_a_child_per_trial_and_workers_attach() {
    let Some(exe) = mlflow() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&exe, tmp.path(), free_port());
    let python = Path::new(&exe).with_file_name("python");
    let db = tmp.path().join("studies.db");
    let storage = format!("sqlite:{}", db.display());
    let best = tmp.path().join("best.toml");
    let url = server.url();
    let common = |study: &'static str, workers: &'static str| {
        let mut a = vec!["search", "--dataset", "spiral", "--strategy", "random", "--trials", "2"];
        a.extend(SEARCH_SMALL);
        a.extend(["--workers", workers, "--study", study, "--storage", &storage]);
        a.extend(["--best-config", best.to_str().unwrap()]);
        a.extend([
            "--tracker",
            "mlflow",
            "--tracking-uri",
            &url,
            "--experiment",
            "search-test",
        ]);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, err) = ode_in(tmp.path(), &args);
        assert!(ok, "{err}");
        assert!(!err.contains("warning: MLflow"), "{err}");
    };
    // A local search: the parent run, named after the study, and its two trials.
    run(common("local", "1"));
    let parent_id = study_attr(&python, &db, "local", "mlflow:parent_run_id").expect("the parent run id in the study");
    let read = server.read("search-test");
    let parent = read["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == parent_id.as_str())
        .unwrap_or_else(|| panic!("no run {parent_id}: {read}"));
    assert_eq!(parent["name"], "local");
    assert_eq!(parent["status"], "FINISHED");
    assert!(parent["tags"].get("mlflow.parentRunId").is_none());
    assert!(parent["params"]["strategy"].as_str().unwrap().starts_with("random"));
    assert_eq!(
        study_attr(&python, &db, "local", "mlflow:experiment_id").as_deref(),
        read["experiment_id"].as_str()
    );
    // The parent keeps the study's report and best configuration, byte for byte.
    let files = &parent["files"];
    for (artifact, local) in [
        ("best.toml", best.clone()),
        ("study-report.html", tmp.path().join("local-report.html")),
    ] {
        let got = files[artifact]
            .as_str()
            .unwrap_or_else(|| panic!("no {artifact} on the parent: {parent}"));
        assert_eq!(
            std::fs::read(got).unwrap(),
            std::fs::read(&local).unwrap(),
            "{artifact}"
        );
    }
    let trials = children(&read, &parent_id);
    assert_eq!(trials.keys().collect::<Vec<_>>(), ["trial-0", "trial-1"], "{read}");
    for t in trials.values() {
        assert_trial_run(t, 2);
    }
    // A study enqueued only, then an `ode worker` (as on another machine): its trials become
    // children of the run the study names.
    run(common("remote", "0"));
    let parent_id = study_attr(&python, &db, "remote", "mlflow:parent_run_id").expect("the parent run id in the study");
    let worker: Vec<String> = ["worker", "--storage", &storage, "--study", "remote", "--workers", "1"]
        .into_iter()
        .chain(["--tracker", "mlflow", "--tracking-uri", &url])
        .map(String::from)
        .collect();
    run(worker);
    let read = server.read("search-test");
    let trials = children(&read, &parent_id);
    assert_eq!(trials.keys().collect::<Vec<_>>(), ["trial-0", "trial-1"], "{read}");
    for t in trials.values() {
        assert_trial_run(t, 2);
    }
    // Two studies: two parent runs and four trial runs, nothing else.
    assert_eq!(read["runs"].as_array().unwrap().len(), 6, "{read}");
}

/// Starts `ode train` into `out` with `--tracker mlflow` on `url` (experiment `experiment`),
/// `epochs` epochs and `extra` flags, its stderr to a file (returned): enough work per epoch
/// (20000 rows in batches of 4) that the run outlasts what a test does to the server meanwhile.
fn long_run(dir: &Path, out: &Path, url: &str, experiment: &str, epochs: &str, extra: &[&str]) -> (Child, PathBuf) {
    let mut args = vec!["train", "--dataset", "spiral", "--rows", "20000", "--batch-size", "4"];
    args.extend(["--epochs", epochs, "--latent-dim", "8", "--hidden-dim", "16"]);
    args.extend(["--context-len", "8", "--horizon", "4", "--out", out.to_str().unwrap()]);
    args.extend(["--tracker", "mlflow", "--tracking-uri", url, "--experiment", experiment]);
    args.extend(extra);
    let stderr_path = dir.join("ode.err");
    let child = ode_command(dir, &args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    (child, stderr_path)
}

#[test]
fn a_server_down_mid_run_loses_and_duplicates_nothing() {
    let Some(exe) = mlflow() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(&exe, tmp.path(), free_port());
    let out = tmp.path().join("run");
    let url = server.url();
    let (mut child, stderr_path) = long_run(
        tmp.path(),
        &out,
        &url,
        "outage-test",
        "30",
        &["--mlflow-flush-timeout", "120"],
    );
    // Kill the server once the first epochs are in metrics.jsonl.
    let epochs_logged = || {
        std::fs::read_to_string(out.join("metrics.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"val_rmse\""))
            .count()
    };
    let started = Instant::now();
    while epochs_logged() < 2 {
        assert!(started.elapsed() < Duration::from_secs(120), "no epoch logged");
        if child.try_wait().unwrap().is_some() {
            panic!(
                "ode train ended early: {}",
                std::fs::read_to_string(&stderr_path).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    let killed_at = epochs_logged();
    // Down for a while (the run goes on), then back on the same port with the same store.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run must outlast the outage's start"
    );
    server.restart();
    let status = child.wait().unwrap();
    let err = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(status.success(), "{err}");
    assert!(
        epochs_logged() > killed_at,
        "no epoch was logged while the server was down"
    );
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning: MLflow")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains(&url) && warnings[0].contains("unreachable"),
        "{err}"
    );
    assert!(err.contains("reachable again"), "{err}");
    let read = server.read("outage-test");
    let runs = read["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{read}");
    assert_eq!(runs[0]["status"], "FINISHED");
    assert_run_matches_jsonl(&runs[0], &out);
}

#[test]
fn unreachable_server_warns_once_and_training_finishes() {
    // No server at all: training finishes, one warning, then the bounded wait reports what
    // was not sent.
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = tmp.path().join("run");
    let mut args = train_args(out.to_str().unwrap(), &url, "none", "2");
    args.extend(["--mlflow-flush-timeout", "1"]);
    let (ok, stdout, err) = ode_in(tmp.path(), &args);
    assert!(ok, "{err}");
    assert!(stdout.contains("best val_rmse"), "{stdout}");
    let unreachable: Vec<&str> = err.lines().filter(|l| l.contains("unreachable")).collect();
    assert_eq!(unreachable.len(), 1, "{err}");
    assert!(
        unreachable[0].contains(&url) && unreachable[0].contains("metrics.jsonl"),
        "{err}"
    );
    let gave_up = err
        .lines()
        .find(|l| l.contains("gave up"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        gave_up.contains("metrics") && gave_up.contains("artifacts"),
        "{gave_up}"
    );
    assert!(jsonl(&out.join("metrics.jsonl")).1["val_rmse"].len() == 2);
}

#[test]
fn bad_tracker_settings_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let out = out.to_str().unwrap();
    let mut args = vec![
        "train",
        "--dataset",
        "spiral",
        "--epochs",
        "1",
        "--out",
        out,
        "--tracker",
        "mlflow",
    ];
    args.extend(SMALL);
    let (ok, _, err) = ode_in(tmp.path(), &args);
    assert!(!ok);
    assert!(
        err.contains("--tracking-uri") && err.contains("MLFLOW_TRACKING_URI"),
        "{err}"
    );
    for bad in ["localhost:5000", "http://:5000", "http://host:port"] {
        let mut a = args.clone();
        a.extend(["--tracking-uri", bad]);
        let (ok, _, err) = ode_in(tmp.path(), &a);
        assert!(!ok);
        assert!(err.contains("--tracking-uri") && err.contains(bad), "{err}");
    }
    // The URI may come from the environment; a bad one is named too.
    let (ok, _, err) = {
        let o = ode_command(tmp.path(), &args)
            .env("MLFLOW_TRACKING_URI", "ftp://x")
            .output()
            .unwrap();
        (o.status.success(), (), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    assert!(!ok);
    assert!(err.contains("ftp://x"), "{err}");
    let (ok, _, err) = ode_in(
        tmp.path(),
        &["search", "--tracking-uri", "http://127.0.0.1:1", "--dataset", "spiral"],
    );
    assert!(!ok);
    assert!(err.contains("--tracker mlflow"), "{err}");
}

#[test]
fn a_request_the_server_refuses_is_reported_once_and_training_goes_on() {
    let Some(exe) = mlflow() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&exe, tmp.path(), free_port());
    let out = tmp.path().join("run");
    let url = server.url();
    let (mut child, stderr_path) = long_run(tmp.path(), &out, &url, "refuse-test", "40", &[]);
    // Delete the run on the server while it trains: MLflow then refuses what is logged to it
    // (HTTP 400, "must be in the 'active' state"), which no retry can fix.
    let delete = "import sys, time\n\
                  from mlflow.tracking import MlflowClient\n\
                  c = MlflowClient(tracking_uri=sys.argv[1])\n\
                  for _ in range(600):\n    \
                      e = c.get_experiment_by_name('refuse-test')\n    \
                      runs = c.search_runs([e.experiment_id]) if e else []\n    \
                      if runs:\n        \
                          c.delete_run(runs[0].info.run_id)\n        \
                          break\n    \
                      time.sleep(0.1)\n\
                  else:\n    \
                      sys.exit('no run')\n";
    let python = Path::new(&exe).with_file_name("python");
    let deleted = Command::new(&python).args(["-c", delete, &url]).output().unwrap();
    assert!(deleted.status.success(), "{}", String::from_utf8_lossy(&deleted.stderr));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run must still be training when it is deleted"
    );
    let status = child.wait().unwrap();
    let err = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(status.success(), "{err}");
    let refused: Vec<&str> = err.lines().filter(|l| l.contains("refused")).collect();
    assert!(!refused.is_empty(), "{err}");
    assert!(
        refused[0].contains(&url) && refused[0].contains("'active' state") && refused[0].contains("dropped"),
        "{err}"
    );
    // Reported once: any later refusal of the run is only counted, in one closing line.
    assert!(refused.len() <= 2, "{err}");
    if let Some(more) = refused.get(1) {
        assert!(more.contains("refused further requests, dropped as well"), "{err}");
    }
    assert!(!err.contains("unreachable"), "{err}");
    // metrics.jsonl has every epoch.
    assert_eq!(jsonl(&out.join("metrics.jsonl")).1["val_rmse"].len(), 40);
}

#[test]
fn a_resumed_training_goes_on_in_its_run() {
    let Some(exe) = mlflow() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&exe, tmp.path(), free_port());
    let url = server.url();
    let out = tmp.path().join("resumed");
    let out_s = out.to_str().unwrap();
    let (ok, _, err) = ode_in(tmp.path(), &train_args(out_s, &url, "resume-test", "2"));
    assert!(ok, "{err}");
    let record: Value = serde_json::from_str(&std::fs::read_to_string(out.join("mlflow_run.json")).unwrap()).unwrap();
    let last = out.join("last.safetensors");
    let mut args = train_args(out_s, &url, "resume-test", "4");
    args.extend(["--resume", last.to_str().unwrap(), "--learning-rate", "0.0025"]);
    let (ok, _, err) = ode_in(tmp.path(), &args);
    assert!(ok, "{err}");
    assert!(err.contains("goes on") && !err.contains("warning: MLflow"), "{err}");

    let read = server.read("resume-test");
    let runs = read["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "one run for the whole training: {read}");
    let run = &runs[0];
    assert_eq!(run["run_id"], record["run_id"]);
    assert_eq!(run["status"], "FINISHED");
    // Epochs 1-2, then 3-4 after the resume, each once; the baselines once, at step 0.
    let steps = |key: &str| -> Vec<i64> {
        let mut s: Vec<i64> = run["metrics"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[0].as_i64().unwrap())
            .collect();
        s.sort();
        s
    };
    assert_eq!(steps("val_rmse"), [1, 2, 3, 4]);
    assert_eq!(steps("baseline_persistence"), [0]);
    // The changed learning rate under the first epoch it applies to; the rest unchanged.
    let params = &run["params"];
    let (first, metrics) = jsonl(&out.join("metrics.jsonl"));
    assert_eq!(params["learning_rate.from_epoch_3"], "0.0025", "{params}");
    assert_ne!(params["learning_rate"], "0.0025", "{params}");
    assert_eq!(params["latent_dim"], first["latent_dim"].as_str());
    for (key, local) in &metrics {
        assert_eq!(
            run["metrics"][key].as_array().unwrap().len(),
            local.len(),
            "history of {key}"
        );
    }
    // The record names every param the run holds now.
    let record: Value = serde_json::from_str(&std::fs::read_to_string(out.join("mlflow_run.json")).unwrap()).unwrap();
    assert_eq!(&record["params"], params);

    // Resumed into another experiment: a new run there, and a line says why.
    let mut args = train_args(out_s, &url, "resume-elsewhere", "5");
    args.extend(["--resume", last.to_str().unwrap()]);
    let (ok, _, err) = ode_in(tmp.path(), &args);
    assert!(ok, "{err}");
    assert!(
        err.contains("a new run rather than") && err.contains("experiment 'resume-test'"),
        "{err}"
    );
    let elsewhere = server.read("resume-elsewhere");
    let runs = elsewhere["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{elsewhere}");
    assert_ne!(runs[0]["run_id"], record["run_id"]);
    assert_eq!(server.read("resume-test")["runs"].as_array().unwrap().len(), 1);
}
