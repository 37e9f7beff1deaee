"""The package on the other backends CI provides: the GPU (lavapipe in CI), PostgreSQL study
stores, ASHA, and Optuna reading a study written from Python. Each skips with a message when
what it needs is missing, and fails instead where CI requires it (ODE_REQUIRE_*)."""

import os
import subprocess
import uuid

import numpy as np
import pytest

import ode_rs
from ode_rs import NeuralODEModel, Trainer


def need(env_require, message):
    if os.environ.get(env_require) == "1":
        pytest.fail(message)
    pytest.skip(message)


def test_training_on_the_gpu_matches_the_cpu(data):
    settings = {"epochs": 2, "verbose": False, "threads": 1}
    cpu = Trainer(NeuralODEModel(input_dim=5, latent_dim=8, hidden_dim=16, solver="rk4"), settings).fit(
        data.train, data.val
    )
    try:
        gpu = Trainer(NeuralODEModel(input_dim=5, latent_dim=8, hidden_dim=16, solver="rk4"),
                      {**settings, "device": "gpu"}).fit(data.train, data.val)
    except RuntimeError as e:
        need("ODE_REQUIRE_GPU", f"no GPU adapter: {e}")
    # The same fixed steps; f32 sums run in another order on the GPU, so close, not equal.
    # (The GPU counts one more evaluation per batch in nfe_forward, so NFE are not compared.)
    assert np.allclose(gpu["val_rmse"], cpu["val_rmse"], rtol=1e-6), (gpu["val_rmse"], cpu["val_rmse"])
    assert np.allclose(gpu["train_loss"], cpu["train_loss"], rtol=1e-6)


def test_asha_study_opens_in_optuna(tmp_path, data):
    python = os.environ.get("ODE_OPTUNA_PYTHON")
    db = tmp_path / "asha.db"
    result = ode_rs.search(
        space={"latent_dim": [8, 16], "hidden_dim": [16, 32], "solver": ["euler", "rk4"]},
        strategy="asha", trials=6, min_epochs=1, reduction_factor=2,
        storage=f"sqlite:{db}", data=data, study="asha", epochs=4, workers=2,
    )
    states = sorted(r["state"] for r in result.leaderboard)
    assert len(states) == 6 and "COMPLETE" in states
    assert all(s in ("COMPLETE", "PRUNED") for s in states), states
    if not python:
        need("ODE_REQUIRE_OPTUNA", "no ODE_OPTUNA_PYTHON with optuna to read the study back")
    out = subprocess.run(
        [python, "-c", "import optuna,sys; s = optuna.load_study(study_name='asha', storage=sys.argv[1]); "
         "print(len(s.trials), s.best_trial.value)", f"sqlite:///{db}"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    assert int(out[0]) == 6
    assert float(out[1]) == pytest.approx(result.best_val_rmse, rel=1e-12)


def test_a_study_in_postgresql(data):
    url = os.environ.get("ODE_POSTGRES_URL")
    if not url:
        need("ODE_REQUIRE_POSTGRES", "no ODE_POSTGRES_URL for the PostgreSQL store")
    study = f"py-{uuid.uuid4().hex[:12]}"
    board, best = ode_rs.search(space={"latent_dim": [8, 16], "solver": ["euler"], "hidden_dim": 16},
                                strategy="grid", storage=url, data=data, study=study, epochs=1, workers=2)
    assert len(board) == 2 and all(r["state"] == "COMPLETE" for r in board)
    assert best["latent_dim"] in (8, 16)
    again, _ = ode_rs.search(space={"latent_dim": [8, 16], "solver": ["euler"], "hidden_dim": 16},
                             strategy="grid", storage=url, data=data, study=study, epochs=1, workers=2)
    # The study is resumed, not re-run: the same two trials.
    assert [r["val_rmse"] for r in again] == [r["val_rmse"] for r in board]
