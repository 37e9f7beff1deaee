"""The rest of the package's surface: predict, save/load, state_dict, presets, arrays, search."""

import json
import sqlite3

import numpy as np
import pytest

import ode_rs
from ode_rs import NeuralODEModel, Trainer

REFERENCE_NAMES = [
    "encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias",
    "func.0.weight", "func.0.bias", "func.2.weight", "func.2.bias", "func.4.weight", "func.4.bias",
    "decoder.weight", "decoder.bias",
]


def test_load_csv_gives_splits_and_dims(tmp_path):
    path = tmp_path / "d.csv"
    t = np.arange(300)
    path.write_text("a,b,c\n" + "".join(f"{np.sin(i / 5):.6f},{np.cos(i / 7):.6f},{i % 11}\n" for i in t))
    data = ode_rs.load_csv(path, context_len=8, horizon=4, targets=["a"])
    assert (data.input_dim, data.output_dim) == (3, 1)
    assert data.rows == (210, 30, 60)
    assert data.train.X.shape == (210 - 12 + 1, 8, 3) and data.train.Y.shape == (199, 4, 1)
    assert data.train.X.dtype == np.float32
    assert abs(float(data.train.X[:, 0, 0].mean())) < 0.2


def test_state_dict_has_the_reference_names_and_shapes(data):
    model = NeuralODEModel(input_dim=5, latent_dim=8, hidden_dim=16)
    sd = model.state_dict()
    assert list(sd) == REFERENCE_NAMES
    assert sd["encoder.0.weight"].shape == (16, 24 * 5)
    assert sd["func.0.weight"].shape == (16, 8)
    assert sd["decoder.weight"].shape == (5, 8)


def test_predict_save_and_load_round_trip(tmp_path, data):
    model = NeuralODEModel(input_dim=5, latent_dim=8, hidden_dim=16, solver="rk4")
    Trainer(model, {"epochs": 1, "verbose": False}).fit(data.train, data.val)
    x = data.val.X[:7]
    y = model.predict(x)
    assert y.shape == (7, 12, 5) and np.isfinite(y).all()
    model.save(tmp_path / "m.safetensors")
    again = NeuralODEModel.load(tmp_path / "m.safetensors")
    assert np.array_equal(again.predict(x), y)
    assert again.solver == "rk4" and again.latent_dim == 8
    # In data units, through the statistics the checkpoint keeps.
    raw = data.to_data_units(x)
    assert np.allclose(again.predict(raw, data_units=True), data.to_data_units(y), rtol=1e-4, atol=1e-4)


def test_presets_are_the_guides():
    fast = NeuralODEModel.preset("fast", input_dim=5)
    assert (fast.latent_dim, fast.hidden_dim, fast.solver, fast.rtol, fast.atol) == (16, 32, "euler", 1e-3, 1e-4)
    acc = NeuralODEModel.preset("accurate", input_dim=3)
    assert (acc.latent_dim, acc.hidden_dim, acc.solver, acc.input_dim) == (64, 128, "dopri5", 3)
    with pytest.raises(ValueError, match="fast, balanced, accurate"):
        NeuralODEModel.preset("quick")


def test_fit_on_arrays_records_that_they_were_normalised(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 6, 2)).astype(np.float64)
    y = rng.standard_normal((40, 3, 1)).astype(np.float32)
    model = NeuralODEModel(input_dim=2, latent_dim=4, hidden_dim=8, solver="euler")
    history = Trainer(model, {"epochs": 2, "verbose": False, "checkpoint_dir": tmp_path}).fit(x, y)
    assert len(history["val_rmse"]) == 2
    assert model.predict(x[:3]).shape == (3, 3, 1)
    raw = (tmp_path / "checkpoint.safetensors").read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    meta = json.loads(header["__metadata__"]["config"])
    assert meta["prenormalized"] is True
    assert NeuralODEModel.load(tmp_path / "checkpoint.safetensors")._native.prenormalized


def test_search_writes_an_optuna_study_and_returns_the_best(tmp_path, data):
    db = tmp_path / "s.db"
    result = ode_rs.search(
        space={"latent_dim": [8, 16], "solver": ["euler"], "hidden_dim": 16},
        strategy="grid",
        storage=f"sqlite:{db}",
        data=data,
        study="py",
        epochs=1,
        workers=1,
    )
    board, best = result
    assert len(board) == 2 and all(r["state"] == "COMPLETE" for r in board)
    assert board[0]["val_rmse"] <= board[1]["val_rmse"]
    assert best["latent_dim"] == board[0]["params"]["latent_dim"] and best["solver"] == "euler"
    assert result.best_val_rmse == board[0]["val_rmse"]
    with sqlite3.connect(db) as con:
        assert con.execute("select count(*) from trials").fetchone()[0] == 2


def test_a_search_waits_for_the_trials_another_search_holds(tmp_path, data, capfd):
    """Two searches of one study (as on two machines): the one left without a trial to claim
    waits for the other's, so both return the whole study's leaderboard."""
    import threading
    import time

    db = tmp_path / "s.db"
    # A quick trial and a slow one: whichever search ends its trial first waits for the other's.
    space = {"hidden_dim": [8, 128], "solver": ["dopri5"], "latent_dim": 8}
    results = {}

    def run(name):
        results[name] = ode_rs.search(space=space, strategy="grid", storage=f"sqlite:{db}", data=data,
                                      study="two", epochs=20, workers=1)

    def running():
        try:
            with sqlite3.connect(db) as con:
                return con.execute("select count(*) from trials where state = 'RUNNING'").fetchone()[0]
        except sqlite3.Error:
            return 0

    first = threading.Thread(target=run, args=("first",))
    first.start()
    deadline = time.monotonic() + 120
    while running() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert running() >= 1, "the first search never held a trial"
    second = threading.Thread(target=run, args=("second",))
    second.start()
    first.join()
    second.join()
    for name in ("first", "second"):
        board, _ = results[name]
        assert [r["state"] for r in board] == ["COMPLETE", "COMPLETE"], (name, board)
    assert "waiting for 1 unfinished trials other workers hold" in capfd.readouterr().err


def test_ctrl_c_stops_a_search_and_keeps_its_finished_trials(tmp_path, data):
    import os
    import signal
    import threading
    import time

    db = tmp_path / "s.db"

    def complete():
        try:
            with sqlite3.connect(db) as con:
                return con.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]
        except sqlite3.Error:
            return 0

    def interrupt_after_the_first_trial():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and complete() < 1:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_after_the_first_trial, daemon=True).start()
    space = {"latent_dim": [8, 16, 32, 64], "hidden_dim": [16, 32], "solver": ["dopri5"]}
    with pytest.raises(KeyboardInterrupt):
        ode_rs.search(space=space, strategy="grid", storage=f"sqlite:{db}", data=data, study="int",
                      epochs=30, workers=1)
    with sqlite3.connect(db) as con:
        states = [s for (s,) in con.execute("select state from trials")]
    assert len(states) == 8
    assert 1 <= states.count("COMPLETE") < 8, states


def sine_data(tmp_path):
    """A sine of period 6 rows: linear AR forecasts it almost exactly, persistence badly."""
    path = tmp_path / "sine.csv"
    path.write_text("x\n" + "".join(f"{np.sin(2 * np.pi * i / 6):.7f}\n" for i in range(400)))
    return ode_rs.load_csv(path, context_len=6, horizon=4)


def test_fit_warns_when_a_baseline_beats_the_best_epoch(tmp_path):
    data = sine_data(tmp_path)
    model = NeuralODEModel(input_dim=1, latent_dim=4, hidden_dim=8)
    trainer = Trainer(model, {"epochs": 1, "learning_rate": 1e-12, "verbose": False})
    with pytest.warns(UserWarning, match=r"the best model \(epoch 1\) beats persistence .* but not linear AR") as w:
        history = trainer.fit(data.train, data.val)
    assert history["skill"][0] > 0, "the untrained model beats persistence on this series"
    assert "context_len" in str(w[0].message) and w[0].filename == __file__


def test_search_warns_when_a_baseline_beats_the_best_trial(tmp_path):
    data = sine_data(tmp_path)
    with pytest.warns(UserWarning, match=r"the best trial \(#0\) beats persistence .* but not linear AR"):
        board, _ = ode_rs.search(
            space={"hidden_dim": [8]}, strategy="grid", storage=f"sqlite:{tmp_path / 's.db'}", data=data,
            study="sine", epochs=1, learning_rate=1e-12, latent_dim=4, workers=1,
        )
    assert board[0]["skill"] > 0
