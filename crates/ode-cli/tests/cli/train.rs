//! End-to-end runs of `ode train`, `ode predict`, `ode diagnose` and `ode data generate`.

use crate::common;
use common::{SMALL, json, ode};

#[test]
fn train_writes_checkpoint_metrics_summary_and_config() {
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
        "--quiet",
        "--seed",
        "3",
    ];
    args.extend(SMALL);
    let (ok, stdout, err) = ode(&args);
    assert!(ok, "{err}");
    assert!(stdout.contains("best val_rmse"), "{stdout}");
    for f in [
        "checkpoint.safetensors",
        "checkpoint.optim.safetensors",
        "last.safetensors",
        "metrics.jsonl",
        "summary.json",
        "config.toml",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let s = json(&out.join("summary.json"));
    assert_eq!(s["epochs"], 2);
    assert!(s["best_val_rmse"].as_f64().unwrap() > 0.0);
    assert!(s["train_seconds_per_epoch"].as_f64().unwrap() > 0.0);
    assert!(s["nfe_forward_per_epoch"].as_f64().unwrap() > 0.0 && s["nfe_backward_per_epoch"].as_f64().unwrap() > 0.0);
    assert_eq!(s["val_rmse_history"].as_array().unwrap().len(), 2);
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("\"metric\":\"val_rmse\"") && l.contains("\"step\":2")),
        "{metrics}"
    );
    assert!(metrics.lines().any(|l| l.contains("\"metric\":\"ode_solver_steps\"")));
    // The written config reproduces the run exactly.
    let out2 = dir.path().join("again");
    let cfg = out.join("config.toml");
    let (ok, _, err) = ode(&[
        "train",
        "--dataset",
        "lotka-volterra",
        "--rows",
        "300",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        json(&out2.join("summary.json"))["val_rmse_history"],
        s["val_rmse_history"]
    );
}

#[test]
fn presets_config_files_and_flags_combine() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "solver = \"rk4\"\nepochs = 1\nlatent_dim = 6\n").unwrap();
    let out = dir.path().join("run");
    let (ok, _, err) = ode(&[
        "train",
        "--dataset",
        "spiral",
        "--rows",
        "300",
        "--preset",
        "fast",
        "--config",
        cfg.to_str().unwrap(),
        "--hidden-dim",
        "12",
        "--context-len",
        "8",
        "--horizon",
        "4",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(ok, "{err}");
    let written = std::fs::read_to_string(out.join("config.toml")).unwrap();
    for want in [
        "solver = \"rk4\"",
        "latent_dim = 6",
        "hidden_dim = 12",
        "rtol = 0.001",
        "epochs = 1",
    ] {
        assert!(written.contains(want), "'{want}' not in:\n{written}");
    }
    std::fs::write(&cfg, "latent_dims = 3\n").unwrap();
    let (ok, _, err) = ode(&[
        "train",
        "--dataset",
        "spiral",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("latent_dims") && err.contains("c.toml"), "{err}");
    let (ok, _, err) = ode(&[
        "train",
        "--dataset",
        "spiral",
        "--preset",
        "quick",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("invalid preset 'quick'"), "{err}");
}

#[test]
fn predict_and_diagnose_from_a_checkpoint() {
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
    let header = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(header, "t,prey,predator");
    let out = dir.path().join("run");
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    args.extend(&SMALL[..8]);
    let (ok, _, err) = ode(&args);
    assert!(ok, "{err}");
    let ckpt = out.join("checkpoint.safetensors");
    let pred = dir.path().join("pred.csv");
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
    let text = std::fs::read_to_string(&pred).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "window,step,row,time,prey_pred,prey_actual,predator_pred,predator_actual"
    );
    // 300 rows, C 8, H 4: 289 windows of 4 steps.
    assert_eq!(lines.count(), 289 * 4);
    // The actual values are the file's, in data units.
    let file: Vec<Vec<String>> = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    let first: Vec<&str> = text.lines().nth(1).unwrap().split(',').collect();
    let row: usize = first[2].parse().unwrap();
    assert_eq!(row, 8);
    let actual: f64 = first[5].parse().unwrap();
    let want: f64 = file[row][1].parse().unwrap();
    assert!((actual - want).abs() < 1e-4 * want.abs().max(1.0), "{actual} vs {want}");

    let (ok, stdout, err) = ode(&[
        "diagnose",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--windows",
        "0..8",
    ]);
    assert!(ok, "{err}");
    for want in ["loss", "nfe forward", "func.0.weight", "decoder.bias", "L2 norm"] {
        assert!(stdout.contains(want), "{want} missing:\n{stdout}");
    }
    let (ok, stdout, err) = ode(&[
        "diagnose",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--split",
        "train",
        "--windows",
        "0..8",
        "--json",
        "--use-adjoint",
        "false",
        "--solver",
        "rk4",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(v["loss"].as_f64().unwrap() > 0.0 && v["nfe_forward"].as_f64().unwrap() == 4.0 * 4.0);
    assert_eq!(v["gradients"]["func.0.weight"].as_array().unwrap().len(), 16 * 8);
    assert_eq!(v["gradients"].as_object().unwrap().len(), 12);
    let (ok, _, err) = ode(&[
        "diagnose",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--windows",
        "5..2",
    ]);
    assert!(!ok && err.contains("--windows 5..2 is empty"), "{err}");
}

#[test]
fn bad_data_is_reported_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bad.csv");
    std::fs::write(&data, "date,a,b\n2020-01-01,1,2\n2020-01-02,3,oops\n").unwrap();
    let (ok, _, err) = ode(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("bad.csv, line 3, column 'b': 'oops' is not a number"),
        "{err}"
    );
    let (ok, _, err) = ode(&["train", "--out", dir.path().join("o").to_str().unwrap()]);
    assert!(!ok && err.contains("--data FILE.csv or --dataset NAME"), "{err}");
}

#[test]
fn resume_continues_the_epoch_count() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = out.to_str().unwrap();
    let mut args = vec!["train", "--dataset", "spiral", "--epochs", "1", "--out", o, "--quiet"];
    args.extend(SMALL);
    assert!(ode(&args).0);
    let last = out.join("last.safetensors");
    let mut args = vec![
        "train",
        "--dataset",
        "spiral",
        "--epochs",
        "2",
        "--out",
        o,
        "--quiet",
        "--resume",
        last.to_str().unwrap(),
    ];
    args.extend(SMALL);
    let (ok, _, err) = ode(&args);
    assert!(ok, "{err}");
    let s = json(&out.join("summary.json"));
    assert_eq!(s["epochs"], 1, "one more epoch after resuming at epoch 1");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("\"metric\":\"val_rmse\"") && l.contains("\"step\":2")),
        "{metrics}"
    );
}

#[test]
fn trains_on_etth1_when_the_shared_data_is_present() {
    let Some(path) = ode_train::shared_data::path("ETTh1.csv") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("etth1");
    let (ok, _, err) = ode(&[
        "train",
        "--data",
        path.to_str().unwrap(),
        "--epochs",
        "1",
        "--max-train-windows",
        "64",
        "--max-val-windows",
        "32",
        "--latent-dim",
        "8",
        "--hidden-dim",
        "16",
        "--targets",
        "OT",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(ok, "{err}");
    assert!(
        err.contains("64 train / 32 val windows, 7 features -> 1 targets"),
        "{err}"
    );
    let s = json(&out.join("summary.json"));
    assert!(s["best_val_rmse"].as_f64().unwrap().is_finite());
}

#[test]
fn batch_order_replays_a_given_shuffle() {
    let dir = tempfile::tempdir().unwrap();
    // 300 rows, C 8, H 4: 210 train rows -> 199 training windows.
    let n = 199usize;
    let rev: Vec<usize> = (0..n).rev().collect();
    let fwd: Vec<usize> = (0..n).collect();
    let order = dir.path().join("order.json");
    std::fs::write(&order, serde_json::to_string(&vec![rev.clone(), fwd.clone()]).unwrap()).unwrap();
    let run = |name: &str, with_order: bool| {
        let out = dir.path().join(name);
        let mut args = vec![
            "train",
            "--dataset",
            "spiral",
            "--epochs",
            "2",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ];
        if with_order {
            args.extend(["--batch-order", order.to_str().unwrap()]);
        }
        args.extend(SMALL);
        let (ok, _, err) = ode(&args);
        assert!(ok, "{err}");
        json(&out.join("summary.json"))["train_loss_history"].clone()
    };
    let given = run("given", true);
    assert_eq!(given, run("given-again", true), "the given order is replayed exactly");
    assert_ne!(
        given,
        run("shuffled", false),
        "the given order replaces the seeded shuffle"
    );
    std::fs::write(&order, serde_json::to_string(&vec![fwd, rev]).unwrap()).unwrap();
    assert_ne!(given, run("swapped", true), "another order, another run");
    std::fs::write(&order, "[[0, 1, 2]]").unwrap();
    let out = dir.path().join("c");
    let mut args = vec![
        "train",
        "--dataset",
        "spiral",
        "--epochs",
        "1",
        "--batch-order",
        order.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    args.extend(SMALL);
    let (ok, _, err) = ode(&args);
    assert!(
        !ok && err.contains("not a permutation of the training windows"),
        "{err}"
    );
}
