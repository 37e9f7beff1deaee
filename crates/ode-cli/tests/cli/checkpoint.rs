//! `ode predict` / `ode diagnose` with weights-only files (PyTorch's), `ode train --resume`
//! with an optimiser file that does not belong to the checkpoint, and time columns out of order.

use crate::common;
use common::ode;

use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::Path;

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "'{p}' missing from: {msg}");
    }
}

/// Writes the reference model's tensors (`D` features × `C` context, latent `L`, hidden `M`,
/// `O` targets) as PyTorch's `save_file(model.state_dict())` would: small deterministic
/// values, and `metadata` (none, or another tool's).
fn write_torch_weights(path: &Path, (d, c, l, m, o): (usize, usize, usize, usize, usize), metadata: bool) {
    let shapes: [(&str, Vec<usize>); 12] = [
        ("encoder.0.weight", vec![m, c * d]),
        ("encoder.0.bias", vec![m]),
        ("encoder.2.weight", vec![l, m]),
        ("encoder.2.bias", vec![l]),
        ("func.0.weight", vec![m, l]),
        ("func.0.bias", vec![m]),
        ("func.2.weight", vec![m, m]),
        ("func.2.bias", vec![m]),
        ("func.4.weight", vec![l, m]),
        ("func.4.bias", vec![l]),
        ("decoder.weight", vec![o, l]),
        ("decoder.bias", vec![o]),
    ];
    let data: Vec<Vec<u8>> = shapes
        .iter()
        .enumerate()
        .map(|(k, (_, s))| {
            let n: usize = s.iter().product();
            let bound = 1.0 / (*s.last().unwrap() as f32).sqrt();
            (0..n)
                .flat_map(|i| (bound * ((i * 7 + k * 13) as f32).sin()).to_le_bytes())
                .collect()
        })
        .collect();
    let views: Vec<(&str, TensorView<'_>)> = shapes
        .iter()
        .zip(&data)
        .map(|((n, s), b)| (*n, TensorView::new(Dtype::F32, s.clone(), b).unwrap()))
        .collect();
    let md = metadata.then(|| HashMap::from([("format".to_string(), "pt".to_string())]));
    std::fs::write(path, safetensors::serialize(views, md).unwrap()).unwrap();
}

#[test]
fn diagnose_accepts_pytorch_weights_on_etth1() {
    let Some(etth1) = ode_train::shared_data::path("ETTh1.csv") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("torch_weights.safetensors");
    // The reference model on ETTh1: context 24 × 7 features = 168 encoder columns.
    write_torch_weights(&w, (7, 24, 32, 64, 7), false);
    let (ok, out, err) = ode(&[
        "diagnose",
        "--checkpoint",
        w.to_str().unwrap(),
        "--data",
        etth1.to_str().unwrap(),
        "--windows",
        "0..2",
        "--solver",
        "rk4",
    ]);
    assert!(ok, "{err}");
    assert_mentions(
        &err,
        &[
            "holds weights only",
            "latent_dim 32, hidden_dim 64, 7 targets, context_len 24 (encoder.0.weight's 168 columns / 7 features)",
            "assumed: horizon 12 (default; set with --horizon), dt 0.1 (default; set with --dt)",
            "train_frac 0.7",
        ],
    );
    assert_mentions(&out, &["val windows 0..2", "encoder.0.weight", "64x168"]);
}

#[test]
fn predict_and_diagnose_accept_pytorch_weights_on_a_generated_csv() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("g.csv");
    let table = ode_train::generate::generate("five-channel", 150, 2, 0.01).unwrap();
    table.write_csv(&csv).unwrap();
    let w = dir.path().join("w.safetensors");
    write_torch_weights(&w, (5, 8, 4, 8, 5), true);
    let (w, csv) = (w.to_str().unwrap(), csv.to_str().unwrap());
    let pred = dir.path().join("pred.csv");
    let (ok, _, err) = ode(&[
        "predict",
        "--checkpoint",
        w,
        "--data",
        csv,
        "--horizon",
        "3",
        "--out",
        pred.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_mentions(
        &err,
        &[
            "context_len 8",
            "horizon 3 (given by --horizon)",
            "wrote 140 forecasts of 3 steps",
        ],
    );
    let text = std::fs::read_to_string(&pred).unwrap();
    assert_eq!(text.lines().count(), 1 + 140 * 3);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains(&format!("{}_pred", table.columns[0]))
    );

    let (ok, out, err) = ode(&[
        "diagnose",
        "--checkpoint",
        w,
        "--data",
        csv,
        "--dt",
        "0.05",
        "--horizon",
        "2",
        "--windows",
        "0..4",
        "--json",
    ]);
    assert!(ok, "{err}");
    assert_mentions(&err, &["dt 0.05 (given by --dt)"]);
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(d["loss"].as_f64().unwrap().is_finite());

    // Fewer features than the weights were made for: named, with the way out.
    let (ok, _, err) = ode(&[
        "predict",
        "--checkpoint",
        w,
        "--data",
        csv,
        "--features",
        &table.columns[..3].join(","),
        "--out",
        pred.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert_mentions(
        &err,
        &["w.safetensors", "encoder.0.weight", "40 input columns", "3 features"],
    );
    // Targets that disagree with decoder.weight.
    let (ok, _, err) = ode(&[
        "predict",
        "--checkpoint",
        w,
        "--data",
        csv,
        "--targets",
        &table.columns[0],
        "--out",
        pred.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert_mentions(&err, &["decoder.weight", "5 rows", "1 target columns were given"]);
}

/// One epoch (or `epochs`) of a tiny model on `csv`.
fn train_tiny(out: &Path, csv: &str, seed: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec![
        "train",
        "--data",
        csv,
        "--latent-dim",
        "4",
        "--hidden-dim",
        "8",
        "--context-len",
        "6",
        "--horizon",
        "3",
        "--solver",
        "rk4",
        "--max-train-windows",
        "32",
        "--seed",
        seed,
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    args.extend(extra);
    if !extra.contains(&"--epochs") {
        args.extend(["--epochs", "1"]);
    }
    let (ok, _, err) = ode(&args);
    (ok, err)
}

#[test]
fn resume_refuses_an_optimiser_file_from_another_save() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("g.csv");
    ode_train::generate::generate("spiral", 200, 0, 0.01)
        .unwrap()
        .write_csv(&csv)
        .unwrap();
    let csv = csv.to_str().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for (out, seed) in [(&a, "1"), (&b, "2")] {
        let (ok, err) = train_tiny(out, csv, seed, &[]);
        assert!(ok, "{err}");
    }
    // Run b's optimiser state next to run a's model: same epoch, different saves.
    std::fs::copy(b.join("last.optim.safetensors"), a.join("last.optim.safetensors")).unwrap();
    let last = a.join("last.safetensors");
    let (ok, err) = train_tiny(&a, csv, "1", &["--resume", last.to_str().unwrap()]);
    assert!(!ok, "resumed with a foreign optimiser state");
    assert_mentions(
        &err,
        &[
            &last.display().to_string(),
            &a.join("last.optim.safetensors").display().to_string(),
            "not saved together",
            "save id",
        ],
    );
    // The pair that was saved together resumes.
    let best = a.join("checkpoint.safetensors");
    let (ok, err) = train_tiny(&a, csv, "1", &["--resume", best.to_str().unwrap(), "--epochs", "2"]);
    assert!(ok, "{err}");

    // A full checkpoint records its horizon: a different --horizon is refused, not ignored.
    let pred = dir.path().join("p.csv");
    let (ok, _, err) = ode(&[
        "predict",
        "--checkpoint",
        best.to_str().unwrap(),
        "--data",
        csv,
        "--horizon",
        "5",
        "--out",
        pred.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert_mentions(&err, &["--horizon disagrees", "records 3"]);
}

#[test]
fn rows_out_of_time_order_are_refused_or_sorted_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("shuffled.csv");
    let mut text = String::from("date,a,b\n");
    for i in 0..120usize {
        // Rows 50 and 51 swapped.
        let r = match i {
            50 => 51,
            51 => 50,
            _ => i,
        };
        let (d, h) = (1 + r / 24, r % 24);
        text.push_str(&format!(
            "2020-01-{d:02} {h:02}:00:00,{},{}\n",
            (r as f64 * 0.3).sin(),
            r % 7
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let csv = csv.to_str().unwrap();
    let out = dir.path().join("run");
    let (ok, err) = train_tiny(&out, csv, "0", &[]);
    assert!(!ok);
    // Row 51 (0-based) is on line 53: the header is line 1.
    assert_mentions(
        &err,
        &[
            "shuffled.csv, line 53, column 'date'",
            "is earlier than",
            "on line 52",
            "--sort-time",
        ],
    );
    let (ok, err) = train_tiny(&out, csv, "0", &["--sort-time"]);
    assert!(ok, "{err}");
    assert_mentions(&err, &["warning", "not in time order", "sorted"]);
    // The configuration file's key does the same, and is kept in the written config.
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "sort_time = true\n").unwrap();
    let (ok, err) = train_tiny(&out, csv, "0", &["--config", cfg.to_str().unwrap()]);
    assert!(ok, "{err}");
    let written = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(written.contains("sort_time = true"), "{written}");
    // Times the reader cannot order (labels, or dates in another form) are not checked, and
    // the user is told so.
    let labels = dir.path().join("labels.csv");
    let text: String = std::iter::once("date,a,b\n".to_string())
        .chain((0..120).map(|i| {
            format!(
                "07/{:02}/2020 {:02}h,{},{}\n",
                1 + i / 24,
                i % 24,
                (i as f64 * 0.3).sin(),
                i % 7
            )
        }))
        .collect();
    std::fs::write(&labels, text).unwrap();
    let (ok, err) = train_tiny(&out, labels.to_str().unwrap(), "0", &[]);
    assert!(ok, "{err}");
    assert_mentions(&err, &["warning", "time column 'date'", "cannot be checked"]);
}
