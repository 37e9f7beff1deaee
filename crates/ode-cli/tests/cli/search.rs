//! End-to-end runs of `ode search`, `ode worker` and `ode study` on a SQLite store.

use crate::common;
use common::{SEARCH_SMALL, ode};

use std::process::Command;

const SPACE: &str = "[params.latent_dim]\nchoices = [4, 8]\n[params.solver]\nchoices = [\"euler\", \"rk4\"]\n";

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
    args.extend(SEARCH_SMALL);
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
    args.extend(SEARCH_SMALL);
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
    let (ok, _, err) = ode(&[
        "search",
        "--dataset",
        "spiral",
        "--storage",
        "postgresql://nobody:pw@127.0.0.1:1/x",
    ]);
    assert!(
        !ok && err.contains("127.0.0.1") && !err.contains("pw@"),
        "a clear error without the password: {err}"
    );
    let (ok, _, err) = ode(&["search", "--dataset", "spiral", "--storage", "mysql:x"]);
    assert!(
        !ok && err.contains("--storage must look like sqlite:PATH or postgresql://"),
        "{err}"
    );
}

/// Every trial of a study as `ode study export` gives it (empty if it cannot be read yet).
fn export(storage: &str, study: &str) -> Vec<serde_json::Value> {
    let (ok, out, _) = ode(&["study", "export", "--storage", storage, "--study", study]);
    if !ok {
        return Vec::new();
    }
    serde_json::from_str::<serde_json::Value>(&out)
        .map(|v| v.as_array().cloned().unwrap_or_default())
        .unwrap_or_default()
}

/// Whether the stored worker id names process `pid`.
fn held_by(t: &serde_json::Value, pid: u32) -> bool {
    t["worker"]
        .as_str()
        .is_some_and(|w| w.split(';').any(|f| f == format!("pid={pid}")))
}

/// Polls the study until a trial held by process `pid` is mid-way (RUNNING with at least one
/// epoch reported, so a kill now hits it with epochs to go) and `done` trials are complete;
/// returns that trial's number.
fn wait_mid_trial(storage: &str, study: &str, pid: u32, done: usize) -> u64 {
    let start = std::time::Instant::now();
    loop {
        let rows = export(storage, study);
        let complete = rows.iter().filter(|r| r["state"] == "COMPLETE").count();
        let mid = rows.iter().find(|r| {
            r["state"] == "RUNNING"
                && held_by(r, pid)
                && r["intermediate_values"].as_object().is_some_and(|v| !v.is_empty())
        });
        if let (Some(t), true) = (mid, complete >= done) {
            return t["number"].as_u64().unwrap();
        }
        assert!(start.elapsed().as_secs() < 180, "no trial got mid-way: {rows:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn kill_9_mid_trial_then_resume_reruns_exactly_that_trial_at_once_despite_an_hour_lease() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("s.db").display());
    let mut args = vec![
        "search",
        "--dataset",
        "five-channel",
        "--strategy",
        "random",
        "--trials",
        "5",
        "--storage",
        &db,
        "--study",
        "k",
        "--workers",
        "1",
        // Only the crash recovery can hand the killed trial on: its lease outlives the test.
        "--lease-seconds",
        "3600",
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
        "12",
        "--solver",
        "dopri5",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_ode"))
        .args(&args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let killed = wait_mid_trial(&db, "k", child.id(), 1);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = export(&db, "k");
    let running: Vec<&serde_json::Value> = before.iter().filter(|r| r["state"] == "RUNNING").collect();
    assert!(
        running.len() == 1 && running[0]["number"] == killed && running[0]["attempt"] == 1,
        "the kill hit trial {killed} while it ran: {before:?}"
    );
    let finished: Vec<(u64, f64)> = before
        .iter()
        .filter(|r| r["state"] == "COMPLETE")
        .map(|r| (r["number"].as_u64().unwrap(), r["value"].as_f64().unwrap()))
        .collect();
    assert!(!finished.is_empty(), "{before:?}");
    // Resume at once. Were the dead trial left to its lease, this search would wait for it and
    // stop after --max-wait with a provisional result and an error.
    args.extend(["--max-wait", "20"]);
    let (ok, out, err) = ode(&args);
    assert!(ok, "{err}");
    assert!(
        !out.contains("PROVISIONAL") && out.contains("5 complete, 0 pruned, 0 failed, 0 running, 0 waiting"),
        "{out}"
    );
    // The progress line says the trial was run again, and why.
    assert!(
        err.lines()
            .any(|l| l.contains(&format!("trial {killed:>3} complete")) && l.contains("attempt 2: re-run")),
        "{err}"
    );
    let after = export(&db, "k");
    assert_eq!(after.len(), 5);
    for r in &after {
        let n = r["number"].as_u64().unwrap();
        assert_eq!(r["state"], "COMPLETE", "{after:?}");
        let want = if n == killed { 2 } else { 1 };
        assert_eq!(
            r["attempt"], want,
            "trial {n}: only the killed trial runs again: {after:?}"
        );
        if let Some((_, v)) = finished.iter().find(|(m, _)| *m == n) {
            assert_eq!(r["value"].as_f64(), Some(*v), "finished trial {n} was kept as it was");
        }
    }
}

#[test]
fn search_waits_for_a_trial_another_worker_holds_or_stops_with_a_provisional_result() {
    let dir = tempfile::tempdir().unwrap();
    let space = dir.path().join("space.toml");
    std::fs::write(&space, SPACE).unwrap();
    let db = format!("sqlite:{}", dir.path().join("s.db").display());
    // One trial that trains until its 4 s time limit, whatever the machine's speed.
    let mut args = vec![
        "search",
        "--dataset",
        "five-channel",
        "--space",
        space.to_str().unwrap(),
        "--trials",
        "1",
        "--storage",
        &db,
        "--study",
        "w",
        "--workers",
        "0",
        "--best-config",
        "/dev/null",
        "--trial-timeout",
        "4",
    ];
    args.extend(SEARCH_SMALL);
    *args.last_mut().unwrap() = "100000";
    let (ok, _, err) = ode(&args);
    assert!(ok && err.contains("enqueued only"), "{err}");
    let mut other = Command::new(env!("CARGO_BIN_EXE_ode"))
        .args(["worker", "--storage", &db, "--study", "w", "--workers", "1"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_mid_trial(&db, "w", other.id(), 0);
    // Nothing left to claim: with a short --max-wait the search stops, provisionally.
    let workers = args.iter().position(|a| *a == "--workers").unwrap();
    args[workers + 1] = "1";
    let mut stopping = args.clone();
    stopping.extend(["--max-wait", "0.3"]);
    let (ok, out, err) = ode(&stopping);
    assert!(!ok, "{out}\n{err}");
    assert!(out.contains("PROVISIONAL") && out.contains("1 trials left"), "{out}");
    assert!(
        out.contains("0 complete, 0 pruned, 0 failed, 1 running, 0 waiting"),
        "{out}"
    );
    assert!(
        err.contains("waiting for 1 unfinished trials other workers hold: trial 0 (ode1;")
            && err.contains("1 trials left (1 running, 0 waiting)")
            && err.contains("provisional"),
        "{err}"
    );
    // Without it, the search waits for the other worker's trial and then reports the study.
    let (ok, out, err) = ode(&args);
    assert!(ok, "{err}");
    assert!(err.contains("waiting for 1 unfinished trials"), "{err}");
    assert!(
        !out.contains("PROVISIONAL") && out.contains("0 complete, 0 pruned, 1 failed, 0 running, 0 waiting"),
        "{out}"
    );
    assert!(other.wait().unwrap().success());
    let t = &export(&db, "w")[0];
    let why = t["user_attrs"]["fail_reason"].as_str().unwrap();
    assert!(why.contains("exceeded the per-trial time limit of 4 s"), "{why}");
}

/// The PostgreSQL server CI starts (`ODE_POSTGRES_URL`), or `None` (the test then skips loudly,
/// unless `ODE_REQUIRE_POSTGRES=1`).
fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("ODE_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("ODE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "ODE_REQUIRE_POSTGRES=1 but no ODE_POSTGRES_URL"
            );
            eprintln!("********** {test}: SKIPPED (no ODE_POSTGRES_URL) **********");
            None
        }
    }
}

#[test]
fn four_worker_processes_share_a_postgres_study_and_a_killed_workers_trial_is_rerun() {
    let Some(url) = postgres_url("four_worker_processes_share_a_postgres_study") else {
        return;
    };
    let study = format!(
        "cli-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut args = vec![
        "search",
        "--dataset",
        "five-channel",
        "--strategy",
        "random",
        "--trials",
        "12",
        "--storage",
        &url,
        "--study",
        &study,
        "--workers",
        "0",
        // Only the crash recovery can hand the killed worker's trial on in time.
        "--lease-seconds",
        "3600",
        "--rows",
        "600",
        "--hidden-dim",
        "16",
        "--context-len",
        "8",
        "--horizon",
        "4",
        "--epochs",
        "8",
        "--solver",
        "dopri5",
    ];
    let (ok, _, err) = ode(&args);
    assert!(ok && err.contains("enqueued only"), "{err}");
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_ode"))
            .args(["worker", "--storage", &url, "--study", &study, "--workers", "1"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut workers: Vec<_> = (0..4).map(|_| spawn()).collect();
    // Kill one worker in the middle of a trial (one epoch reported, epochs to go).
    let victim = workers[0].id();
    let killed = wait_mid_trial(&url, &study, victim, 0);
    workers[0].kill().unwrap();
    workers[0].wait().unwrap();
    for w in workers.iter_mut().skip(1) {
        assert!(w.wait().unwrap().success());
    }
    // The survivors took the dead worker's trial over at once (same machine, dead process),
    // not after its lease; a late worker finds nothing left.
    let (ok, _, err) = ode(&["worker", "--storage", &url, "--study", &study, "--workers", "2"]);
    assert!(ok, "{err}");
    let trials = export(&url, &study);
    assert_eq!(trials.len(), 12);
    assert!(trials.iter().all(|t| t["state"] == "COMPLETE"), "{trials:?}");
    for t in &trials {
        let want = if t["number"] == killed { 2 } else { 1 };
        assert_eq!(
            t["attempt"], want,
            "only the killed worker's trial {killed} ran twice: {trials:?}"
        );
    }
    args.clear();
}
