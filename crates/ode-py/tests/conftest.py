"""Shared fixtures: small built-in data, the guide's preamble, the `ode` binary."""

import os
import pathlib
import shutil
import signal

import pytest

import ode_rs

ROOT = pathlib.Path(__file__).resolve().parents[3]

# A process started in the background by a non-interactive shell (`cmd &`, nohup) inherits
# SIGINT ignored, and Python then installs no KeyboardInterrupt handler: the Ctrl-C tests would
# send a signal nobody hears. Give the tests the handler an interactive Python has.
signal.signal(signal.SIGINT, signal.default_int_handler)


def small_data(**kw):
    """The built-in five-channel data (input_dim 5, as in the guide), small enough for tests."""
    options = dict(rows=600, max_train_windows=64)
    options.update(kw)
    return ode_rs.dataset("five-channel", **options)


@pytest.fixture
def data():
    return small_data()


class RecordingTracker:
    """The guide's `tracker`: records `log_metric` calls."""

    def __init__(self):
        self.metrics = []

    def log_metric(self, name, value, step=None):
        self.metrics.append((name, value, step))


@pytest.fixture
def tracker():
    return RecordingTracker()


def ode_binary():
    """The `ode` command built by `cargo test` (or ODE_BIN); skips (fails under
    ODE_REQUIRE_PYTHON=1) when there is none."""
    candidates = [os.environ.get("ODE_BIN"), ROOT / "target" / "debug" / "ode", ROOT / "target" / "release" / "ode"]
    for c in candidates:
        if c and pathlib.Path(c).is_file():
            return str(c)
    found = shutil.which("ode")
    if found:
        return found
    message = "no `ode` binary: run `cargo build -p ode-cli` or set ODE_BIN"
    if os.environ.get("ODE_REQUIRE_PYTHON") == "1":
        pytest.fail(message)
    pytest.skip(message)
