//! `ode search` chooses on validation only, then scores the best trial once on the test split,
//! from its best-epoch weights, next to the test baselines: the same numbers as `ode evaluate`
//! on the weights it saves, whether a local worker kept them or they were retrained.

use crate::common;
use common::ode;

use ode_search::{SqliteStore, StudyStore};
use std::path::Path;

const SPACE: &str = "[params.latent_dim]\nchoices = [4, 8]\n[params.solver]\nchoices = [\"euler\", \"rk4\"]\n";
const BLOCK: &str = "test score of the best trial (chosen on validation)";

/// Writes the space and a generated CSV into `dir`.
fn setup(dir: &Path) {
    std::fs::write(dir.join("space.toml"), SPACE).unwrap();
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
}

/// `ode search` (grid over [`SPACE`], 2 epochs, season 4) with `workers`, study `study`.
fn search(dir: &Path, study: &str, workers: &str) -> (bool, String, String) {
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let db = format!("sqlite:{}", p("s.db"));
    let args = [
        "search",
        "--data",
        &p("lv.csv"),
        "--space",
        &p("space.toml"),
        "--strategy",
        "grid",
        "--storage",
        &db,
        "--study",
        study,
        "--workers",
        workers,
        "--best-config",
        &p(&format!("{study}.toml")),
        "--hidden-dim",
        "12",
        "--context-len",
        "8",
        "--horizon",
        "4",
        "--epochs",
        "2",
        "--season",
        "4",
    ];
    ode(&args)
}

/// The study attribute `ode:test_score`.
fn recorded(dir: &Path, study: &str) -> serde_json::Value {
    let mut store = SqliteStore::open(&dir.join("s.db")).unwrap();
    let id = store.open_study(study).unwrap();
    store.study_attrs(id).unwrap()["ode:test_score"].clone()
}

/// `ode evaluate` of `ckpt` on `split`, in `format`.
fn evaluate(dir: &Path, ckpt: &Path, split: &str, format: &str) -> String {
    let (ok, out, err) = ode(&[
        "evaluate",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        dir.join("lv.csv").to_str().unwrap(),
        "--split",
        split,
        "--season",
        "4",
        "--format",
        format,
    ]);
    assert!(ok, "{err}");
    out
}

/// The number of the leaderboard's best trial and its val_rmse.
fn best_trial(dir: &Path, study: &str) -> (u64, f64) {
    let db = format!("sqlite:{}", dir.join("s.db").display());
    let (ok, out, err) = ode(&["study", "best", "--storage", &db, "--study", study, "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    (v["number"].as_u64().unwrap(), v["value"].as_f64().unwrap())
}

#[test]
fn search_scores_the_best_trial_once_on_test_as_ode_evaluate_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    let (ok, out, err) = search(d, "g", "2");
    assert!(ok, "{err}");
    assert_eq!(out.matches(BLOCK).count(), 1, "{out}");
    let (number, value) = best_trial(d, "g");
    let block = &out[out.find(BLOCK).unwrap()..];
    assert!(
        block.contains(&format!("trial #{number}, val_rmse {value:.5}")),
        "{block}"
    );
    assert!(block.contains("kept from its run"), "{block}");
    // The weights are the best trial's best epoch: their validation RMSE is the trial's value.
    let ckpt = d.join("g.safetensors");
    let (_, meta) = ode_train::checkpoint::load(&ckpt).unwrap();
    assert_eq!(meta.best_val_rmse, Some(value));
    let val: serde_json::Value = serde_json::from_str(&evaluate(d, &ckpt, "val", "json")).unwrap();
    let rmse = val["model"]["rmse"].as_f64().unwrap();
    assert!((rmse - value).abs() <= 1e-9 * value, "{rmse} vs {value}");
    // The block's table is `ode evaluate --split test`'s, and the recorded score its JSON:
    // the model's numbers and the test baselines alike.
    let table = evaluate(d, &ckpt, "test", "table");
    assert!(block.contains(&table), "{block}\nvs\n{table}");
    let test: serde_json::Value = serde_json::from_str(&evaluate(d, &ckpt, "test", "json")).unwrap();
    let rec = recorded(d, "g");
    assert_eq!(rec["evaluation"], test);
    assert_eq!(rec["trial"], number);
    assert_eq!(rec["weights"], "kept");
    assert_eq!(test["split"], "test");
    for key in ["persistence", "window_mean", "seasonal_naive", "linear_ar"] {
        assert!(test["baselines"][key]["rmse"].as_f64().unwrap() > 0.0, "{key}: {test}");
    }
    // The test baselines choose λ on validation: the same λ as the validation scores'.
    assert_eq!(test["ridge_lambda"], val["ridge_lambda"]);
}

#[test]
fn a_best_trial_trained_elsewhere_is_retrained_to_the_same_test_score() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    // In process: the pool keeps the best trial's weights.
    let (ok, out, err) = search(d, "here", "1");
    assert!(ok, "{err}");
    assert_eq!(out.matches(BLOCK).count(), 1, "{out}");
    // Elsewhere: only enqueued by `ode search`, trained by `ode worker`, then reported by a
    // second `ode search`, which must retrain the best trial.
    let (ok, out, err) = search(d, "there", "0");
    assert!(ok && !out.contains(BLOCK), "{err}\n{out}");
    let db = format!("sqlite:{}", d.join("s.db").display());
    let (ok, _, err) = ode(&["worker", "--storage", &db, "--study", "there", "--workers", "1"]);
    assert!(ok, "{err}");
    let (ok, out, err) = search(d, "there", "1");
    assert!(ok, "{err}");
    assert!(
        err.contains("4 trials (4 already finished)") && err.contains("retraining it"),
        "{err}"
    );
    assert!(!err.contains("differs from the trial's"), "{err}");
    assert_eq!(out.matches(BLOCK).count(), 1, "{out}");
    assert_eq!(best_trial(d, "here").0, best_trial(d, "there").0);
    let (here, there) = (recorded(d, "here"), recorded(d, "there"));
    assert_eq!(
        (here["weights"].as_str(), there["weights"].as_str()),
        (Some("kept"), Some("retrained"))
    );
    let strip = |v: &serde_json::Value| {
        let mut e = v["evaluation"].clone();
        e.as_object_mut().unwrap().remove("checkpoint");
        e
    };
    assert_eq!(strip(&here), strip(&there), "retrained weights score as the kept ones");
    assert_eq!(here["best_epoch"], there["best_epoch"]);
}
