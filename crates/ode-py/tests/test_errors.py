"""Errors reach Python as exceptions with the CLI's messages."""

import numpy as np
import pytest

import ode_rs
from ode_rs import NeuralODEModel, SolverError, Trainer


def test_a_bad_cell_names_file_line_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    rows = ["a,b"] + [f"{i},{i * 2}" for i in range(200)]
    rows[57] = "1.0,oops"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError) as e:
        ode_rs.load_csv(path, context_len=4, horizon=2)
    msg = str(e.value)
    assert "bad.csv" in msg and "line 58" in msg and "'b'" in msg and "oops" in msg


def test_a_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        ode_rs.load_csv(tmp_path / "nothing.csv")


def test_unknown_settings_are_refused():
    with pytest.raises(ValueError, match="dopri6"):
        NeuralODEModel(input_dim=5, solver="dopri6")
    with pytest.raises(TypeError, match="latnet_dim"):
        NeuralODEModel(input_dim=5, latnet_dim=3)
    with pytest.raises(ValueError, match="learning_rat"):
        Trainer(NeuralODEModel(), {"learning_rat": 1e-3})
    with pytest.raises(ValueError, match="learning_rate"):
        Trainer(NeuralODEModel(), {"learning_rate": -1.0, "verbose": False}).fit(*_arrays(8))


def _arrays(n, c=24, d=5, h=12, o=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c, d)).astype(np.float32), rng.standard_normal((n, h, o)).astype(np.float32)


def test_arrays_are_checked_with_their_shape_named():
    x, y = _arrays(8)
    t = Trainer(NeuralODEModel(input_dim=5), {"epochs": 1, "verbose": False})
    with pytest.raises(ValueError, match=r"\[8, 24\]"):
        t.fit(x[:, :, 0], y)
    with pytest.raises(TypeError, match=r"int64.*\[8, 24, 5\]"):
        t.fit(x.astype(np.int64), y)
    bad = x.copy()
    bad[3, 7, 2] = np.nan
    with pytest.raises(ValueError, match=r"X\[3, 7, 2\] is NaN"):
        t.fit((bad, y), (x, y))
    with pytest.raises(ValueError, match="same number of windows"):
        t.fit((x, y[:4]), (x, y))


def test_a_solver_failure_is_a_solver_error(data):
    model = NeuralODEModel(input_dim=5, solver="dopri5", max_num_steps=1)
    with pytest.raises(SolverError, match="solver failed at epoch 1"):
        Trainer(model, {"epochs": 1, "verbose": False}).fit(data.train, data.val)
    assert issubclass(SolverError, RuntimeError)
