//! `ode solve --device gpu` and `ode train --device gpu` end to end (skipped loudly without a
//! GPU adapter, failing when `ODE_REQUIRE_GPU=1`).

use crate::common;
use common::ode;

use ode_tests::gpu_or_skip;

#[test]
fn solve_on_the_gpu_matches_the_cpu() {
    if gpu_or_skip("solve_on_the_gpu_matches_the_cpu").is_none() {
        return;
    }
    let base = [
        "solve",
        "--problem",
        "mlp",
        "--latent",
        "8",
        "--hidden",
        "32",
        "--batch",
        "333",
        "--n-out",
        "5",
        "--rtol",
        "1e-6",
        "--atol",
        "1e-7",
        "--json",
    ];
    let run = |device: &str| -> serde_json::Value {
        let mut a = base.to_vec();
        a.extend(["--device", device]);
        let (ok, out, err) = ode(&a);
        assert!(ok, "{device}: {err}");
        serde_json::from_str(&out).unwrap()
    };
    let (cpu, gpu) = (run("cpu"), run("gpu"));
    assert!(
        gpu["device"].as_str().unwrap().starts_with("gpu: "),
        "{}",
        gpu["device"]
    );
    assert_eq!(gpu["precision"], "f32");
    assert_eq!(gpu["batch"], 333);
    for (a, b) in cpu["ys"].as_array().unwrap().iter().zip(gpu["ys"].as_array().unwrap()) {
        for (x, y) in a.as_array().unwrap().iter().zip(b.as_array().unwrap()) {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() < 1e-4 + 1e-3 * x.abs(), "{x} vs {y}");
        }
    }
    // Only the Neural ODE field runs on the GPU; f64 does not.
    let (ok, _, err) = ode(&["solve", "--problem", "harmonic", "--device", "gpu"]);
    assert!(!ok && err.contains("--problem mlp"), "{err}");
    let (ok, _, err) = ode(&["solve", "--problem", "mlp", "--device", "gpu", "--precision", "f64"]);
    assert!(!ok && err.contains("f32"), "{err}");
}

#[test]
fn train_on_the_gpu() {
    if gpu_or_skip("train_on_the_gpu").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (ok, stdout, err) = ode(&[
        "train",
        "--dataset",
        "lotka-volterra",
        "--rows",
        "300",
        "--epochs",
        "2",
        "--latent-dim",
        "8",
        "--hidden-dim",
        "16",
        "--context-len",
        "8",
        "--horizon",
        "4",
        "--device",
        "gpu",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("solving on gpu: "), "{err}");
    assert!(stdout.contains("best val_rmse"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(summary["device"].as_str().unwrap().starts_with("gpu: "));
    assert!(summary["best_val_rmse"].as_f64().unwrap().is_finite());
    // A bad device name is named.
    let (ok, _, err) = ode(&["train", "--dataset", "lotka-volterra", "--device", "tpu"]);
    assert!(!ok && err.contains("tpu"), "{err}");
}
