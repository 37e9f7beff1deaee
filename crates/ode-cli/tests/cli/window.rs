//! `--normalization window` end to end: training records the mode in the checkpoint, and
//! `ode predict`, `ode diagnose` and `ode evaluate` apply it from there.

use crate::common;
use common::{SMALL, json, ode};

#[test]
fn window_mode_is_recorded_and_applied_by_predict_diagnose_and_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lv.csv");
    let (ok, _, err) = ode(&[
        "data",
        "generate",
        "--dataset",
        "lotka-volterra",
        "--rows",
        "300",
        "--out",
        data.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let run = |mode: &str| {
        let out = dir.path().join(mode);
        let mut args = vec![
            "train",
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "1",
            "--normalization",
            mode,
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ];
        if mode == "window" {
            args.extend(["--revin", "true"]);
        }
        args.extend(&SMALL[..8]);
        let (ok, _, err) = ode(&args);
        assert!(ok, "{err}");
        out
    };
    let (window, global) = (run("window"), run("global"));
    let summary = json(&window.join("summary.json"));
    let val_rmse = summary["best_val_rmse"].as_f64().unwrap();
    let ckpt = window.join("checkpoint.safetensors");
    let raw = std::fs::read(&ckpt).unwrap();
    let text = String::from_utf8_lossy(&raw[..raw.len().min(8192)]).into_owned();
    assert!(text.contains(r#"\"normalization\":\"window\""#), "mode not recorded");
    assert!(text.contains("revin.weight"), "no revin tensors");
    let config = std::fs::read_to_string(window.join("config.toml")).unwrap();
    assert!(config.contains("normalization = \"window\""), "{config}");

    // diagnose on every validation window reproduces the run's validation MSE: it applied the
    // per-window normalisation recorded in the checkpoint.
    let (ok, stdout, err) = ode(&[
        "diagnose",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--split",
        "val",
        "--windows",
        "0..19",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let loss = v["loss"].as_f64().unwrap();
    assert!(
        (loss.sqrt() - val_rmse).abs() < 1e-4 * val_rmse,
        "diagnose loss {loss} against val_rmse {val_rmse}²"
    );
    assert_eq!(v["gradients"].as_object().unwrap().len(), 14, "12 tensors + revin.*");

    // evaluate scores the validation windows as training did.
    let (ok, stdout, err) = ode(&[
        "evaluate",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--split",
        "val",
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    let e: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rmse = e["model"]["rmse"].as_f64().unwrap();
    assert!(
        (rmse - val_rmse).abs() < 1e-6 * val_rmse,
        "evaluate {rmse} against {val_rmse}"
    );

    // predict: the two modes forecast differently from their checkpoints.
    let forecast = |run: &std::path::Path| {
        let pred = run.join("pred.csv");
        let ckpt = run.join("checkpoint.safetensors");
        let (ok, _, err) = ode(&[
            "predict",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            pred.to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
        std::fs::read_to_string(pred).unwrap()
    };
    let (w, g) = (forecast(&window), forecast(&global));
    assert_eq!(w.lines().count(), g.lines().count());
    assert_ne!(w.lines().nth(1), g.lines().nth(1));
}

#[test]
fn window_mode_refuses_a_target_that_is_not_a_feature() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "train",
        "--dataset",
        "lotka-volterra",
        "--features",
        "prey",
        "--targets",
        "predator",
        "--normalization",
        "window",
        "--epochs",
        "1",
        "--out",
        dir.path().to_str().unwrap(),
    ];
    args.extend(SMALL);
    let (ok, _, err) = ode(&args);
    assert!(!ok);
    assert!(
        err.contains("\"predator\"") && err.contains("--normalization global"),
        "{err}"
    );
}
