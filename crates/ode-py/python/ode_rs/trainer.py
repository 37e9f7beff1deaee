"""Trainer: the tuning guide's `Trainer(model, config, tracker).fit(train, val)` on the Rust
training loop (Adam, clipping, NaN stops, checkpoints), with the GIL released while it runs."""

import json
import sys
import warnings

import numpy as np

from . import _native
from .data import as_windows, checked

DEFAULTS = {
    "learning_rate": 1e-3,
    "batch_size": 16,
    "gradient_clip": 1.0,
    "epochs": 10,
    "early_stopping_patience": None,
    "seed": 0,
    "threads": None,
    "eval_batch_size": 256,
    "device": "cpu",
}
# Settings of the Python side only.
EXTRA = {"checkpoint_dir": None, "verbose": True, "validation_split": 0.2}

# Metric order in the history and for `log_metric` trackers.
METRICS = (
    "train_loss",
    "val_rmse",
    "nfe_forward",
    "nfe_backward",
    "ode_steps",
    "rejected_steps",
    "grad_norm",
    "seconds",
    "train_seconds",
    "skill",
)


def _settings(config):
    config = dict(config or {})
    unknown = sorted(set(config) - set(DEFAULTS) - set(EXTRA))
    if unknown:
        known = ", ".join(list(DEFAULTS) + list(EXTRA))
        raise ValueError(f"unknown training settings {unknown}; known: {known}")
    settings = {**DEFAULTS, **EXTRA, **config}
    if settings["gradient_clip"] is None:
        settings["gradient_clip"] = 0.0
    return settings


def _is_array(a):
    return isinstance(a, np.ndarray)


class Trainer:
    """Trains a `NeuralODEModel`. `config`: learning_rate, batch_size, gradient_clip, epochs,
    early_stopping_patience, seed, threads, eval_batch_size, device (cpu, gpu, auto),
    checkpoint_dir (best and last checkpoints written there), verbose (a line per epoch on
    stderr), validation_split (for `fit(X, Y)` without validation data).

    `tracker`: any object with `on_epoch_end(epoch, metrics)`, or with
    `log_metric(name, value, step=epoch)` (called per metric); an exception it raises stops
    training after the current epoch and propagates, the model keeping the weights reached."""

    def __init__(self, model, config=None, tracker=None):
        self.model = model
        self.settings = _settings(config)
        self.tracker = tracker
        self.history = None

    def _split(self, train, val, validation_data):
        if _is_array(train) and _is_array(val):
            if validation_data is not None:
                return as_windows((train, val), "train"), as_windows(validation_data, "val")
            train, val = checked(train, "X [N, C, D]"), checked(val, "Y [N, H, O]")
            n = len(train)
            k = n - max(1, int(round(n * self.settings["validation_split"])))
            if k < 1:
                raise ValueError(f"fit(X, Y): {n} windows are too few to hold out a validation part")
            return as_windows((train[:k], val[:k]), "train"), as_windows((train[k:], val[k:]), "val")
        if val is None:
            raise TypeError("fit needs validation windows: fit(data.train, data.val) or fit(X, Y)")
        return as_windows(train, "train"), as_windows(val, "val")

    def _on_epoch(self, epoch, metrics):
        metrics = {k: metrics[k] for k in METRICS if k in metrics}
        for k in METRICS:
            self._history.setdefault(k, []).append(metrics.get(k))
        self._history.setdefault("epoch", []).append(epoch)
        if self.settings["verbose"]:
            skill = f"  skill {metrics['skill']:+.3f}" if "skill" in metrics else ""
            print(
                f"epoch {epoch:>3}: train_loss {metrics['train_loss']:.5f}  val_rmse {metrics['val_rmse']:.5f}"
                f"{skill}  nfe fwd {metrics['nfe_forward']:.0f} bwd {metrics['nfe_backward']:.0f}"
                f"  steps {metrics['ode_steps']:.0f}  {metrics['seconds']:.2f}s",
                file=sys.stderr,
                flush=True,
            )
        self.model._last_steps = metrics["ode_steps"]
        t = self.tracker
        if t is None:
            return
        if hasattr(t, "on_epoch_end"):
            t.on_epoch_end(epoch, metrics)
        elif hasattr(t, "log_metric"):
            for name, value in metrics.items():
                t.log_metric(name, value, step=epoch)
        else:
            raise TypeError("a tracker needs on_epoch_end(epoch, metrics) or log_metric(name, value, step=epoch)")

    def fit(self, train, val=None, validation_data=None):
        """Trains for `epochs` epochs on `train`, validating on `val` after each. Each is a
        dataset's windows (`data.train`, `data.val`) or an (X, Y) pair of float arrays
        [N, C, D], [N, H, O] taken as already normalised; `fit(X, Y)` holds out the last
        `validation_split` of the windows unless `validation_data=(Xv, Yv)` is given.

        Returns the history: lists per epoch of train_loss, val_rmse, nfe_forward,
        nfe_backward, ode_steps (accepted steps per sample), rejected_steps, grad_norm,
        seconds, train_seconds (and skill against persistence on a dataset's val split).
        On a dataset's val split, warns (`UserWarning`) when a baseline (persistence, window
        mean, seasonal naive, linear AR) is at least as good as the best epoch."""
        tr, va = self._split(train, val, validation_data)
        s = self.settings
        config = {k: s[k] for k in DEFAULTS}
        self._history = {"epoch": []}
        raw = _native.fit(
            self.model._native,
            tr,
            va,
            json.dumps(config),
            self._on_epoch,
            None if s["checkpoint_dir"] is None else str(s["checkpoint_dir"]),
        )
        summary = json.loads(raw)
        if summary.get("warning"):
            warnings.warn(summary["warning"], UserWarning, stacklevel=2)
        history = {k: v for k, v in self._history.items() if any(x is not None for x in v)}
        self.best_val_rmse = summary["best"][1] if summary.get("best") else None
        self.stopped_early = summary.get("stopped_early", False)
        self.history = history
        return history
