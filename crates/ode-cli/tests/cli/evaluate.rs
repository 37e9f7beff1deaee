//! `ode evaluate` after a short `ode train`: RMSE and MAE per target in both units, next to the
//! baselines, which on `--split val` are the training run's.

use crate::common;
use common::{SMALL, json, ode};

use std::path::Path;

/// |a − b| within `rel` of |b| (at least `rel` absolute).
fn close(a: f64, b: f64, rel: f64, what: &str) {
    assert!((a - b).abs() <= rel * b.abs().max(1.0), "{what}: {a} vs {b}");
}

/// `ode evaluate --format json` on `split`.
fn evaluate(ckpt: &Path, csv: &Path, split: &str) -> serde_json::Value {
    let (ok, out, err) = ode(&[
        "evaluate",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        csv.to_str().unwrap(),
        "--split",
        split,
        "--season",
        "4",
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Trains 2 epochs on a generated CSV with a season of 4 rows; returns (csv, run dir).
fn trained(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let csv = dir.join("lv.csv");
    let (ok, _, err) = ode(&[
        "data",
        "generate",
        "--dataset",
        "lotka-volterra",
        "--rows",
        "300",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let run = dir.join("run");
    let mut args = vec![
        "train",
        "--data",
        csv.to_str().unwrap(),
        "--epochs",
        "2",
        "--season",
        "4",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ];
    args.extend(&SMALL[..8]); // the model and window flags; --rows is for generated data
    let (ok, _, err) = ode(&args);
    assert!(ok, "{err}");
    (csv, run)
}

/// Checks one per-target entry: both units present, data units = normalised × std.
fn check_units(t: &serde_json::Value, std: f64, what: &str) {
    for (n, d) in [("rmse", "rmse_data_units"), ("mae", "mae_data_units")] {
        let (n, d) = (t[n].as_f64().unwrap(), t[d].as_f64().unwrap());
        assert!(n > 0.0, "{what}: {t}");
        close(d, n * std, 1e-12, what);
    }
}

#[test]
fn evaluate_reports_both_units_and_the_training_runs_baselines_on_val() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, run) = trained(dir.path());
    let ckpt = run.join("checkpoint.safetensors");
    let summary = json(&run.join("summary.json"));
    let val = evaluate(&ckpt, &csv, "val");
    // 300 rows: 30 validation rows, 30 - 8 - 4 + 1 = 19 windows.
    assert_eq!(
        (val["split"].as_str(), val["windows"].as_u64()),
        (Some("val"), Some(19))
    );
    assert_eq!(val["targets"], serde_json::json!(["prey", "predator"]));
    let std: Vec<f64> = val["target_std"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(
        std,
        summary["baselines"]["target_std"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect::<Vec<_>>()
    );
    let model = &val["model"];
    for (j, t) in model["per_target"].as_array().unwrap().iter().enumerate() {
        check_units(t, std[j], "model");
    }
    // The overall RMSE is the per-target ones' root mean square, and on val it is the best
    // epoch's val_rmse (the checkpoint holds the best epoch).
    let per: Vec<f64> = model["per_target"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["rmse"].as_f64().unwrap())
        .collect();
    let rmse = model["rmse"].as_f64().unwrap();
    close(
        rmse,
        (per.iter().map(|r| r * r).sum::<f64>() / 2.0).sqrt(),
        1e-12,
        "overall rmse",
    );
    close(rmse, summary["best_val_rmse"].as_f64().unwrap(), 1e-9, "val rmse");
    close(
        model["skill"].as_f64().unwrap(),
        summary["skill"].as_f64().unwrap(),
        1e-9,
        "skill",
    );
    // The baselines are the training run's, number for number.
    let trained = &summary["baselines"];
    close(
        val["ridge_lambda"].as_f64().unwrap(),
        trained["ridge_lambda"].as_f64().unwrap(),
        0.0,
        "λ",
    );
    let scores = trained["scores"].as_array().unwrap();
    assert_eq!(scores.len(), 4);
    for s in scores {
        let key = s["baseline"].as_str().unwrap();
        let b = &val["baselines"][key];
        close(b["rmse"].as_f64().unwrap(), s["rmse"].as_f64().unwrap(), 1e-9, key);
        close(b["mae"].as_f64().unwrap(), s["mae"].as_f64().unwrap(), 1e-9, key);
        for (j, t) in b["per_target"].as_array().unwrap().iter().enumerate() {
            check_units(t, std[j], key);
            let want = s["rmse_data_units"][j].as_f64().unwrap();
            close(t["rmse_data_units"].as_f64().unwrap(), want, 1e-9, key);
            let want = s["mae_data_units"][j].as_f64().unwrap();
            close(t["mae_data_units"].as_f64().unwrap(), want, 1e-9, key);
        }
    }
    // The test split is another set of windows: 60 rows, 49 windows; the same λ (chosen on val).
    let test = evaluate(&ckpt, &csv, "test");
    assert_eq!(
        (test["split"].as_str(), test["windows"].as_u64()),
        (Some("test"), Some(49))
    );
    assert_eq!(test["ridge_lambda"], val["ridge_lambda"]);
    assert_ne!(test["model"]["rmse"], val["model"]["rmse"]);
    let p = test["baselines"]["persistence"]["rmse"].as_f64().unwrap();
    let m = test["model"]["rmse"].as_f64().unwrap();
    close(
        test["model"]["skill"].as_f64().unwrap(),
        1.0 - m / p,
        1e-12,
        "test skill",
    );
}

#[test]
fn the_table_lists_the_model_and_every_baseline_and_test_is_the_default_split() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, run) = trained(dir.path());
    let ckpt = run.join("checkpoint.safetensors");
    let (ok, out, err) = ode(&[
        "evaluate",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        csv.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("test split of "), "{out}");
    assert!(out.contains("49 windows × 4 steps"), "{out}");
    for row in [
        "model",
        "persistence",
        "window mean",
        "linear AR (λ",
        "prey (std",
        "predator (std",
        "rmse (data)",
    ] {
        assert!(out.contains(row), "{row} missing:\n{out}");
    }
    assert!(!out.contains("seasonal naive"), "no season given:\n{out}");
    let (ok, help, _) = ode(&["evaluate", "--help"]);
    assert!(ok && help.contains("[default: test]"), "{help}");
}

#[test]
fn evaluate_errors_name_the_split_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("lv.csv");
    let (ok, _, err) = ode(&[
        "data",
        "generate",
        "--dataset",
        "spiral",
        "--rows",
        "200",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let missing = dir.path().join("nope.safetensors");
    let base = [
        "evaluate",
        "--checkpoint",
        missing.to_str().unwrap(),
        "--data",
        csv.to_str().unwrap(),
    ];
    let mut bad_split = base.to_vec();
    bad_split.extend(["--split", "train"]);
    let (ok, _, err) = ode(&bad_split);
    assert!(!ok && err.contains("'train'") && err.contains("--split"), "{err}");
    let (ok, _, err) = ode(&base);
    assert!(!ok && err.contains("nope.safetensors"), "{err}");
    // A file that is not a checkpoint is named too.
    let (ok, _, err) = ode(&[
        "evaluate",
        "--checkpoint",
        csv.to_str().unwrap(),
        "--data",
        csv.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("lv.csv") && err.contains("safetensors"), "{err}");
}
