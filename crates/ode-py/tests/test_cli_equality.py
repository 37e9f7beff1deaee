"""Same settings and seed, same numbers: `Trainer.fit` and `ode train` give identical
val_rmse histories."""

import json
import subprocess

import pytest

from conftest import ode_binary, small_data
from ode_rs import NeuralODEModel, Trainer


@pytest.mark.parametrize("solver,adjoint", [("dopri5", True), ("rk4", False)])
def test_python_and_cli_training_match_exactly(tmp_path, solver, adjoint):
    ode = ode_binary()
    out = tmp_path / "cli"
    subprocess.run(
        [ode, "train", "--dataset", "five-channel", "--rows", "600", "--max-train-windows", "64",
         "--solver", solver, "--use-adjoint", str(adjoint).lower(), "--epochs", "3", "--seed", "0",
         "--latent-dim", "16", "--hidden-dim", "32", "--quiet", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    cli = json.loads((out / "summary.json").read_text())["val_rmse_history"]

    data = small_data()
    model = NeuralODEModel(input_dim=data.input_dim, latent_dim=16, hidden_dim=32, solver=solver, use_adjoint=adjoint)
    history = Trainer(model, {"epochs": 3, "seed": 0, "verbose": False}).fit(data.train, data.val)
    assert history["val_rmse"] == cli
    assert len(cli) == 3
