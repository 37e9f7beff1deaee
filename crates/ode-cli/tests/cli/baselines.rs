//! `ode train` reports the baselines, the model's skill against persistence, and warns when the
//! best model does not beat every baseline (persistence, window mean, seasonal naive, linear AR).

use crate::common;
use common::{SMALL, json, ode};

use std::path::Path;

/// The metric lines of a metrics.jsonl file.
fn metrics(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("metric").is_some())
        .collect()
}

#[test]
fn train_prints_baselines_and_skill_and_records_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = out.to_str().unwrap();
    let mut args = vec![
        "train",
        "--dataset",
        "lotka-volterra",
        "--epochs",
        "2",
        "--out",
        o,
        "--season",
        "4",
    ];
    args.extend(SMALL);
    let (ok, _, err) = ode(&args);
    assert!(ok, "{err}");
    // 300 rows: 300 - 210 - 60 = 30 validation rows, 30 - 8 - 4 + 1 = 19 windows.
    let line = err
        .lines()
        .find(|l| l.starts_with("baselines on 19 val windows:"))
        .unwrap_or_else(|| panic!("no baselines line: {err}"));
    for name in [
        "persistence",
        "window mean",
        "seasonal naive",
        "(season 4)",
        "linear AR",
        "(λ ",
    ] {
        assert!(line.contains(name), "{line}");
    }
    let epoch_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("epoch ")).collect();
    assert_eq!(epoch_lines.len(), 2, "{err}");
    assert!(epoch_lines.iter().all(|l| l.contains(" skill ")), "{epoch_lines:?}");

    let written = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        written.contains("season = 4"),
        "the written config keeps the season:\n{written}"
    );
    let s = json(&out.join("summary.json"));
    let b = &s["baselines"];
    assert_eq!(b["windows"], 19);
    assert_eq!(b["season"], 4);
    let scores = b["scores"].as_array().unwrap();
    let names: Vec<&str> = scores.iter().map(|s| s["baseline"].as_str().unwrap()).collect();
    assert_eq!(names, ["persistence", "window_mean", "seasonal_naive", "linear_ar"]);
    let persistence = scores[0]["rmse"].as_f64().unwrap();
    assert!(persistence > 0.0);
    assert_eq!(scores[0]["rmse_data_units"].as_array().unwrap().len(), 2);
    assert!(b["ridge_lambda"].as_f64().unwrap() > 0.0);
    let best = s["best_val_rmse"].as_f64().unwrap();
    let skill = s["skill"].as_f64().unwrap();
    assert!(
        (skill - (1.0 - best / persistence)).abs() < 1e-9,
        "{skill} vs {best} / {persistence}"
    );
    // The best epoch's line shows the same skill.
    let best_epoch = s["best_epoch"].as_u64().unwrap();
    let shown = format!("skill {skill:+.3}");
    assert!(
        epoch_lines[best_epoch as usize - 1].contains(&shown),
        "{shown} not in {epoch_lines:?}"
    );
    // The warning comes exactly when the best model does not beat persistence.
    assert_eq!(err.contains("does not beat persistence"), skill <= 0.0, "{err}");

    let m = metrics(&out.join("metrics.jsonl"));
    let at = |name: &str, step: u64| {
        m.iter()
            .find(|v| v["metric"] == name && v["step"] == step)
            .and_then(|v| v["value"].as_f64())
    };
    assert_eq!(at("baseline_persistence", 0), Some(persistence));
    for name in [
        "baseline_window_mean",
        "baseline_seasonal_naive",
        "baseline_linear_ar",
        "baseline_linear_ar_lambda",
    ] {
        assert!(at(name, 0).is_some(), "{name} missing");
    }
    for epoch in 1..=2 {
        let (v, sk) = (at("val_rmse", epoch).unwrap(), at("skill", epoch).unwrap());
        assert!((sk - (1.0 - v / persistence)).abs() < 1e-9, "epoch {epoch}");
    }
}

/// A random walk with small steps: persistence is nearly perfect there, and the validation
/// rows wander outside the training range.
fn random_walk_csv(path: &Path) {
    let mut state = 12345u64;
    let mut x = 0.0f64;
    let mut text = String::from("t,x\n");
    for t in 0..400 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        x += u - 0.3; // drifts up by 0.2 a row on average
        text.push_str(&format!("{t},{x}\n"));
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn warns_when_the_best_model_does_not_beat_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("walk.csv");
    random_walk_csv(&csv);
    let out = dir.path().join("run");
    let (csv, o) = (csv.to_str().unwrap(), out.to_str().unwrap());
    let (ok, _, err) = ode(&untrained("train", csv, "8", &["--out", o, "--quiet"]));
    assert!(ok, "{err}");
    let s = json(&out.join("summary.json"));
    let (best, persistence) = (
        s["best_val_rmse"].as_f64().unwrap(),
        s["baselines"]["scores"][0]["rmse"].as_f64().unwrap(),
    );
    // The condition really holds: the untrained model is far worse than persistence.
    assert!(best > 2.0 * persistence, "model {best}, persistence {persistence}");
    assert!(s["skill"].as_f64().unwrap() < 0.0);
    let w = err
        .lines()
        .find(|l| l.contains("does not beat persistence"))
        .unwrap_or_else(|| panic!("no warning: {err}"));
    for hint in [
        "--context-len",
        "latent_dim",
        "dopri5",
        "rtol/atol",
        "--normalization window",
    ] {
        assert!(w.contains(hint), "{hint} not in {w}");
    }
    // The warning ends the run's output.
    assert!(err.trim_end().ends_with(w.trim_end()), "{err}");
}

#[test]
fn a_season_longer_than_the_context_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut args = vec![
        "train",
        "--dataset",
        "spiral",
        "--epochs",
        "1",
        "--season",
        "9",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(SMALL);
    let (ok, _, err) = ode(&args);
    assert!(!ok);
    assert!(err.contains("season") && err.contains("context_len = 8"), "{err}");
}

#[test]
fn search_records_skill_and_warns_when_the_best_trial_loses_to_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("walk.csv");
    random_walk_csv(&csv);
    let space = dir.path().join("space.toml");
    std::fs::write(&space, "[params.hidden_dim]\nchoices = [6, 8]\n").unwrap();
    let db = format!("sqlite:{}", dir.path().join("s.db").display());
    let best = dir.path().join("best.toml");
    let (space, best) = (space.to_str().unwrap(), best.to_str().unwrap());
    let (ok, out, err) = ode(&untrained(
        "search",
        csv.to_str().unwrap(),
        "8",
        &grid(space, &db, "w", best),
    ));
    assert!(ok, "{err}");
    let header = out.lines().find(|l| l.contains("val_rmse")).unwrap();
    assert!(header.contains("skill"), "{out}");
    assert!(out.contains("skill = 1 - val_rmse / persistence"), "{out}");
    let (ok, json, _) = ode(&["study", "show", "--storage", &db, "--study", "w", "--json"]);
    assert!(ok);
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    let top = &rows[0];
    let attrs = &top["user_attrs"];
    let (value, persistence, skill) = (
        top["value"].as_f64().unwrap(),
        attrs["baseline_persistence"].as_f64().unwrap(),
        attrs["skill"].as_f64().unwrap(),
    );
    assert!((skill - (1.0 - value / persistence)).abs() < 1e-12);
    // The condition really holds: the best (untrained) trial is far worse than persistence.
    assert!(value > 2.0 * persistence, "{value} vs {persistence}");
    for k in [
        "baseline_window_mean",
        "baseline_linear_ar",
        "baseline_linear_ar_lambda",
    ] {
        assert!(attrs[k].as_f64().is_some(), "{k} missing: {attrs}");
    }
    let number = top["number"].as_u64().unwrap();
    let w = err
        .lines()
        .find(|l| l.contains("does not beat persistence"))
        .unwrap_or_else(|| panic!("no warning: {err}"));
    assert!(
        w.contains(&format!("the best trial (#{number})")) && w.contains("--context-len"),
        "{w}"
    );
    // The table of `ode study show` has the skill column, with this trial's skill.
    let (ok, table, _) = ode(&["study", "show", "--storage", &db, "--study", "w"]);
    assert!(ok && table.contains(&format!("{skill:+.3}")), "{table}");
}

/// A sine of period 6 rows: a linear recurrence, so linear AR forecasts it almost exactly,
/// while persistence is far off (normalised RMSE about 1.66 at horizon 4) and a model that
/// predicts about the mean scores about 1.
fn sine_csv(path: &Path) {
    let mut text = String::from("t,x\n");
    for t in 0..400 {
        let x = (std::f64::consts::TAU * t as f64 / 6.0).sin();
        text.push_str(&format!("{t},{x}\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// `ode <command>` for an untrained model (learning rate 1e-12, effectively no training; 0 is
/// refused) on `csv` with horizon 4, then `more`.
fn untrained<'a>(command: &'a str, csv: &'a str, context_len: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        command,
        "--data",
        csv,
        "--epochs",
        "1",
        "--learning-rate",
        "1e-12",
        "--latent-dim",
        "4",
        "--hidden-dim",
        "8",
        "--context-len",
        context_len,
        "--horizon",
        "4",
    ];
    args.extend_from_slice(more);
    args
}

/// The options of a grid search over `space` into study `study` of the store `db`.
fn grid<'a>(space: &'a str, db: &'a str, study: &'a str, best: &'a str) -> [&'a str; 10] {
    [
        "--space",
        space,
        "--strategy",
        "grid",
        "--storage",
        db,
        "--study",
        study,
        "--best-config",
        best,
    ]
}

#[test]
fn warns_when_the_best_model_beats_persistence_but_not_linear_ar() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("sine.csv");
    sine_csv(&csv);
    let out = dir.path().join("run");
    let (csv, o) = (csv.to_str().unwrap(), out.to_str().unwrap());
    let (ok, _, err) = ode(&untrained("train", csv, "6", &["--out", o, "--quiet"]));
    assert!(ok, "{err}");
    let s = json(&out.join("summary.json"));
    let best = s["best_val_rmse"].as_f64().unwrap();
    let scores = s["baselines"]["scores"].as_array().unwrap();
    let rmse = |name: &str| {
        scores.iter().find(|v| v["baseline"] == name).unwrap()["rmse"]
            .as_f64()
            .unwrap()
    };
    // The condition really holds: the model beats persistence and loses to linear AR.
    assert!(
        s["skill"].as_f64().unwrap() > 0.0,
        "model {best}, persistence {}",
        rmse("persistence")
    );
    assert!(
        rmse("linear_ar") < 0.5 * best,
        "model {best}, linear AR {}",
        rmse("linear_ar")
    );
    assert!(!err.contains("does not beat persistence"), "{err}");
    let w = err
        .lines()
        .find(|l| l.contains("warning: the best model (epoch 1) beats persistence"))
        .unwrap_or_else(|| panic!("no warning: {err}"));
    assert!(w.contains(&format!("linear AR ({:.4})", rmse("linear_ar"))), "{w}");
    assert!(w.contains("--epochs") && w.contains("latent_dim"), "{w}");
    assert!(err.trim_end().ends_with(w.trim_end()), "{err}");
    // The run's report shows it above the summary.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let shown = html.find("<p class=\"warning\"><strong>Warning:</strong> the best model (epoch 1) beats persistence");
    assert!(
        shown.is_some_and(|at| at < html.find("<table id=\"summary\">").unwrap()),
        "{html}"
    );
}

#[test]
fn search_warns_when_the_best_trial_loses_to_linear_ar() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("sine.csv");
    sine_csv(&csv);
    let space = dir.path().join("space.toml");
    std::fs::write(&space, "[params.hidden_dim]\nchoices = [8]\n").unwrap();
    let db = format!("sqlite:{}", dir.path().join("s.db").display());
    let best = dir.path().join("best.toml");
    let (space, best) = (space.to_str().unwrap(), best.to_str().unwrap());
    let report = dir.path().join("study.html");
    let mut more = grid(space, &db, "s", best).to_vec();
    more.extend(["--report", report.to_str().unwrap()]);
    let (ok, _, err) = ode(&untrained("search", csv.to_str().unwrap(), "6", &more));
    assert!(ok, "{err}");
    let (ok, json, _) = ode(&["study", "show", "--storage", &db, "--study", "s", "--json"]);
    assert!(ok);
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    let attrs = &rows[0]["user_attrs"];
    let ar = attrs["baseline_linear_ar"].as_f64().unwrap();
    assert!(attrs["skill"].as_f64().unwrap() > 0.0 && ar < rows[0]["value"].as_f64().unwrap());
    let w = err
        .lines()
        .find(|l| l.contains("warning: the best trial (#0) beats persistence"))
        .unwrap_or_else(|| panic!("no warning: {err}"));
    assert!(w.contains(&format!("linear AR ({ar:.4})")), "{w}");
    // It ends the output, after the test score.
    assert!(err.trim_end().ends_with(w.trim_end()), "{err}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("<strong>Warning:</strong> the best trial (#0) beats persistence"),
        "{html}"
    );
}
