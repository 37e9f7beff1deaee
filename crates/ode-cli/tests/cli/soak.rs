//! Soak tests: long runs must not die of round-off. Before steps landed exactly on output times,
//! the tuning guide's default configuration (dopri5, adjoint, per-sample steps, f32) died at
//! epoch 4 on ETTh1 with "step size underflow at t = 1.0000001", and these two dopri5 searches
//! (study seeds 2 and 5) each lost a trial the same way. Both tests failed on that code.

use crate::common;
use common::ode;

/// The guide's default configuration on every ETTh1 training window for 10 epochs.
#[test]
fn guide_default_trains_ten_epochs_on_etth1() {
    let Some(data) = ode_train::shared_data::path("ETTh1.csv") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ett");
    let (ok, stdout, err) = ode(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "10",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "training failed:\n{stdout}\n{err}");
    let log = format!("{stdout}{err}");
    assert!(log.contains("12159 train"), "all training windows are used:\n{log}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["epochs"], 10, "{summary}");
    assert!(summary["error"].is_null(), "{summary}");
    for epoch in 1..=10 {
        assert!(
            log.contains(&format!("epoch {epoch:>3}:")),
            "epoch {epoch} missing:\n{log}"
        );
    }
}

/// 80 dopri5 trials of the guide's space (two random studies) on built-in data: none fails.
#[test]
fn eighty_dopri5_trials_finish_with_none_failed() {
    let dir = tempfile::tempdir().unwrap();
    let space = dir.path().join("dopri5.toml");
    std::fs::write(
        &space,
        "[params.latent_dim]\nchoices = [16, 32, 64]\n[params.hidden_dim]\nchoices = [32, 64, 128]\n\
         [params.solver]\nchoices = [\"dopri5\"]\n\
         [params.tolerances]\nchoices = [[1e-3, 1e-4], [1e-4, 1e-5], [1e-5, 1e-6]]\n\
         [params.learning_rate]\nlow = 1e-4\nhigh = 1e-3\nlog = true\n\
         [params.batch_size]\nchoices = [16, 32]\n[params.gradient_clip]\nlow = 0.5\nhigh = 2.0\n",
    )
    .unwrap();
    let storage = format!("sqlite:{}", dir.path().join("soak.db").display());
    for seed in ["2", "5"] {
        let study = format!("soak-{seed}");
        let (ok, stdout, err) = ode(&[
            "search",
            "--space",
            space.to_str().unwrap(),
            "--strategy",
            "random",
            "--trials",
            "40",
            "--epochs",
            "2",
            "--dataset",
            "five-channel",
            "--rows",
            "600",
            "--study-seed",
            seed,
            "--storage",
            &storage,
            "--study",
            &study,
            "--best-config",
            dir.path().join("best.toml").to_str().unwrap(),
        ]);
        assert!(ok, "search {study} failed:\n{stdout}\n{err}");
        assert!(
            stdout.contains("40 complete, 0 pruned, 0 failed, 0 running, 0 waiting"),
            "study {study}:\n{stdout}\n{err}"
        );
    }
}
