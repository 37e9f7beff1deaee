//! End-to-end runs of `ode search`, `ode worker` and `ode study` on a SQLite store.

use std::process::Command;

fn ode(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ode"))
        .args(args)
        .output()
        .expect("run ode");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SPACE: &str = "[params.latent_dim]\nchoices = [4, 8]\n[params.solver]\nchoices = [\"euler\", \"rk4\"]\n";
const SMALL: [&str; 10] = [
    "--rows",
    "300",
    "--hidden-dim",
    "12",
    "--context-len",
    "8",
    "--horizon",
    "4",
    "--epochs",
    "2",
];

#[test]
fn grid_search_writes_a_leaderboard_a_best_config_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let space = dir.path().join("space.toml");
    std::fs::write(&space, SPACE).unwrap();
    let db = format!("sqlite:{}", dir.path().join("s.db").display());
    let best = dir.path().join("best.toml");
    let mut args = vec![
        "search",
        "--dataset",
        "spiral",
        "--space",
        space.to_str().unwrap(),
        "--strategy",
        "grid",
        "--storage",
        &db,
        "--study",
        "g",
        "--workers",
        "2",
        "--best-config",
        best.to_str().unwrap(),
    ];
    args.extend(SMALL);
    let (ok, out, err) = ode(&args);
    assert!(ok, "{err}");
    assert!(
        err.contains("study 'g'") && err.contains("4 trials (0 already finished), 2 workers"),
        "{err}"
    );
    assert!(out.contains("4 complete, 0 pruned, 0 failed"), "{out}");
    assert!(out.contains('*'), "Pareto front marked:\n{out}");
    let cfg = std::fs::read_to_string(&best).unwrap();
    assert!(cfg.contains("epochs = 2") && cfg.contains("hidden_dim = 12"), "{cfg}");
    // The best config trains as is.
    let run = dir.path().join("run");
    let (ok, _, err) = ode(&[
        "train",
        "--dataset",
        "spiral",
        "--rows",
        "300",
        "--config",
        best.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(ok, "{err}");
    // Re-running resumes: everything is finished, nothing runs again.
    let (ok, _, err) = ode(&args);
    assert!(ok, "{err}");
    assert!(
        err.contains("4 trials (4 already finished)") && !err.contains("] trial"),
        "{err}"
    );
    // Inspection.
    let (ok, out, _) = ode(&["study", "list", "--storage", &db]);
    assert!(ok && out.trim() == "g", "{out}");
    let (ok, out, _) = ode(&["study", "show", "--storage", &db, "--study", "g", "--json"]);
    assert!(ok);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 4);
    assert!(rows[0]["value"].as_f64().unwrap() <= rows[1]["value"].as_f64().unwrap());
    let (ok, out, _) = ode(&["study", "best", "--storage", &db, "--study", "g"]);
    assert!(ok && out.starts_with("trial ") && out.contains("solver="), "{out}");
    let (ok, out, _) = ode(&["study", "export", "--storage", &db, "--study", "g", "--format", "csv"]);
    assert!(ok);
    assert_eq!(
        out.lines().next().unwrap(),
        "number,state,value,train_seconds,latent_dim,solver"
    );
    assert!(out.lines().nth(1).unwrap().contains(",euler"), "{out}");
    let (ok, _, err) = ode(&["study", "show", "--storage", &db, "--study", "nope"]);
    assert!(!ok && err.contains("no study named 'nope'"), "{err}");
}

#[test]
fn a_worker_joins_a_running_study_and_no_trial_runs_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("s.db").display());
    let mut args = vec![
        "search",
        "--dataset",
        "spiral",
        "--strategy",
        "random",
        "--trials",
        "6",
        "--storage",
        &db,
        "--study",
        "r",
        "--workers",
        "1",
    ];
    args.extend(SMALL);
    args.extend(["--best-config", "/dev/null"]);
    let search = Command::new(env!("CARGO_BIN_EXE_ode")).args(&args).output();
    let (ok, _, err) = ode(&["worker", "--storage", &db, "--study", "r", "--workers", "1"]);
    let search = search.unwrap();
    assert!(search.status.success(), "{}", String::from_utf8_lossy(&search.stderr));
    // The worker may find the study finished or not yet created; either way it must not fail
    // in any other way, and every trial ran exactly once.
    assert!(ok || err.contains("no study named 'r'"), "{err}");
    let (ok, out, _) = ode(&["study", "show", "--storage", &db, "--study", "r", "--json"]);
    assert!(ok);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 6);
    assert!(
        rows.as_array().unwrap().iter().all(|r| r["state"] == "COMPLETE"),
        "{out}"
    );
    // A joined worker reads the saved definition: a second worker on the finished study is a no-op.
    let (ok, _, err) = ode(&["worker", "--storage", &db, "--study", "r"]);
    assert!(ok && err.contains("6 trials, 6 finished"), "{err}");
}

#[test]
fn search_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let space = dir.path().join("bad.toml");
    std::fs::write(&space, "[params.latent_dims]\nchoices = [4]\n").unwrap();
    let (ok, _, err) = ode(&[
        "search",
        "--dataset",
        "spiral",
        "--space",
        space.to_str().unwrap(),
        "--storage",
        "sqlite:/tmp/x.db",
    ]);
    assert!(!ok && err.contains("unknown parameter 'latent_dims'"), "{err}");
    let (ok, _, err) = ode(&["search", "--dataset", "spiral", "--storage", "postgres://localhost/x"]);
    assert!(
        !ok && err.contains("PostgreSQL study stores are not implemented yet"),
        "{err}"
    );
    let (ok, _, err) = ode(&["search", "--dataset", "spiral", "--storage", "mysql:x"]);
    assert!(!ok && err.contains("--storage must look like sqlite:PATH"), "{err}");
}

#[test]
fn kill_9_mid_search_then_resume_keeps_every_finished_trial() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("s.db").display());
    let args = vec![
        "search",
        "--dataset",
        "five-channel",
        "--strategy",
        "random",
        "--trials",
        "8",
        "--storage",
        &db,
        "--study",
        "k",
        "--workers",
        "1",
        "--lease-seconds",
        "1",
        "--best-config",
        "/dev/null",
        "--rows",
        "600",
        "--hidden-dim",
        "16",
        "--context-len",
        "8",
        "--horizon",
        "4",
        "--epochs",
        "6",
        "--solver",
        "dopri5",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_ode"))
        .args(&args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until at least two trials have finished, then kill the search mid-trial.
    let show = || -> Vec<serde_json::Value> {
        let (ok, out, _) = ode(&["study", "show", "--storage", &db, "--study", "k", "--json"]);
        if !ok {
            return Vec::new();
        }
        serde_json::from_str::<serde_json::Value>(&out)
            .map(|v| v.as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    };
    let start = std::time::Instant::now();
    loop {
        let done = show().iter().filter(|r| r["state"] == "COMPLETE").count();
        if done >= 2 || start.elapsed().as_secs() > 120 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = show();
    let finished: Vec<(u64, f64)> = before
        .iter()
        .filter(|r| r["state"] == "COMPLETE")
        .map(|r| (r["number"].as_u64().unwrap(), r["value"].as_f64().unwrap()))
        .collect();
    assert!(finished.len() >= 2, "{before:?}");
    if finished.len() == 8 {
        eprintln!("the search finished before the kill; the resume below is then a no-op");
    }
    // Let the killed trial's lease expire, then resume.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (ok, _, err) = ode(&args);
    assert!(ok, "{err}");
    let after = show();
    assert_eq!(after.len(), 8);
    assert!(after.iter().all(|r| r["state"] == "COMPLETE"), "{after:?}");
    for (n, v) in &finished {
        let r = after.iter().find(|r| r["number"].as_u64() == Some(*n)).unwrap();
        assert_eq!(r["value"].as_f64(), Some(*v), "finished trial {n} was kept as it was");
    }
    // Nothing ran twice to completion: finished trials were not re-claimed.
    let (ok, out, _) = ode(&["study", "export", "--storage", &db, "--study", "k", "--format", "json"]);
    assert!(ok);
    let trials: serde_json::Value = serde_json::from_str(&out).unwrap();
    for t in trials.as_array().unwrap() {
        let n = t["number"].as_u64().unwrap();
        let completions = trials
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["number"].as_u64() == Some(n))
            .count();
        assert_eq!(completions, 1);
    }
}
