"""Hyperparameter search: grid, random or ASHA over the guide's space (or yours), in the same
SQLite or PostgreSQL stores as `ode search`, which `optuna.load_study` opens."""

import json
import os
import warnings
from dataclasses import dataclass, field

from . import _native
from .data import Data, load_csv


@dataclass
class SearchResult:
    """The leaderboard (complete trials best first, then the others) and the best trial's
    settings; unpacks as `leaderboard, best_config = search(...)`."""

    leaderboard: list
    best_config: dict = field(default=None)

    @property
    def best_val_rmse(self):
        """Validation RMSE of the best complete trial (`None` if none completed)."""
        done = [r for r in self.leaderboard if r["state"] == "COMPLETE"]
        return done[0]["val_rmse"] if done else None

    def __iter__(self):
        return iter((self.leaderboard, self.best_config))


def _space(space):
    """`(toml_text, json_text)` of a search space, one of them set: a TOML file path or text,
    or a dict of name -> list of choices, {"low", "high", "log"/"step"} range, or fixed value
    (`None`: the guide's default space)."""
    if space is None:
        return None, None
    if isinstance(space, (str, os.PathLike)):
        text = str(space)
        if os.path.exists(text):
            with open(text, encoding="utf-8") as f:
                return f.read(), None
        if "[" in text:
            return text, None
        raise FileNotFoundError(f"search space file {text!r} not found")
    if not isinstance(space, dict):
        raise TypeError(f"space must be a dict, a TOML file path or None; got {type(space).__name__}")
    params = space.get("params", space)
    out = {}
    for name, spec in params.items():
        if isinstance(spec, dict):
            out[name] = spec
        elif isinstance(spec, (list, tuple)):
            out[name] = {"choices": [list(c) if isinstance(c, tuple) else c for c in spec]}
        else:
            out[name] = {"value": spec}
    return None, json.dumps({"params": out})


def search(
    space=None,
    strategy="random",
    trials=20,
    storage="sqlite:ode-studies.db",
    data=None,
    study="ode-study",
    seed=0,
    workers=None,
    reduction_factor=3,
    min_epochs=1,
    **train_settings,
):
    """Runs (or continues) the study `study` in `storage` (`sqlite:PATH` or
    `postgresql://USER:PASSWORD@HOST/DB`) on `data` (a `Data`, or a CSV path) with local
    worker threads; `train_settings` fix anything not searched (epochs, batch_size, …).
    Prints a line per finished trial. Once no trial is left to claim it waits, as `ode search`
    does, for the trials other workers hold (`ode worker`, another search of the study), taking
    over any whose lease ends, so the leaderboard is the whole study's; Ctrl-C stops the wait.
    Returns a `SearchResult`. Warns (`UserWarning`) when a baseline (persistence, window mean,
    seasonal naive, linear AR) forecasts the validation windows at least as well as the best
    trial, naming it and what to try."""
    if data is None:
        raise TypeError("search needs data: a Data from load_csv/dataset, or a CSV path")
    if not isinstance(data, Data):
        data = load_csv(data)
    space_toml, space_json = _space(space)
    base = {**data.settings, **{k: v for k, v in train_settings.items() if v is not None}}
    board, best, warning = _native.search(
        data._native,
        storage,
        study,
        strategy,
        trials,
        space_toml,
        space_json,
        json.dumps(base),
        seed,
        workers,
        reduction_factor,
        min_epochs,
    )
    best = None if best is None else {k: v for k, v in json.loads(best).items() if v is not None}
    if warning is not None:
        warnings.warn(warning, UserWarning, stacklevel=2)
    return SearchResult(json.loads(board), best)
