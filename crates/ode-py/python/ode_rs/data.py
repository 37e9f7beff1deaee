"""Data: a CSV file or a built-in dataset cut into normalised train/val/test windows, and
windows given as NumPy arrays."""

import json

import numpy as np

from . import _native

_DATA_KEYS = ("features", "targets", "train_frac", "test_frac", "max_train_windows", "max_val_windows")


def _data_config(context_len, horizon, options):
    unknown = sorted(set(options) - set(_DATA_KEYS))
    if unknown:
        raise TypeError(f"unexpected data settings {unknown}; known: context_len, horizon, {', '.join(_DATA_KEYS)}")
    config = {"context_len": context_len, "horizon": horizon}
    config.update({k: v for k, v in options.items() if v is not None})
    return json.dumps(config)


def load_csv(path, context_len=24, horizon=12, time_column=None, sort_time=False, **options):
    """Reads a CSV file (a header row, an optional time column, numeric columns) and cuts it as
    `ode train --data` does: chronological 70/10/20 split, z-scores from the training rows,
    sliding windows. Options: features, targets (column names), train_frac, test_frac,
    max_train_windows, max_val_windows. Bad cells raise ValueError naming file, line and column."""
    native = _native.load_csv(str(path), _data_config(context_len, horizon, options), time_column, sort_time)
    return Data(native)


def dataset(name="five-channel", rows=2000, seed=0, noise=0.01, context_len=24, horizon=12, **options):
    """A built-in generated dataset (five-channel: the guide's five inputs; spiral;
    lotka-volterra), the same rows as `ode train --dataset NAME --rows R`."""
    native = _native.dataset(name, _data_config(context_len, horizon, options), rows, seed, noise)
    return Data(native)


class Windows:
    """The windows of one split: contexts X [N, C, D] and targets Y [N, H, O], normalised."""

    def __init__(self, native):
        self._native = native
        self._arrays = None

    @property
    def name(self):
        """`train`, `val`, `test`, or `given` for arrays."""
        return self._native.name

    def __len__(self):
        return len(self._native)

    @property
    def shapes(self):
        """((N, C, D), (N, H, O))."""
        return self._native.shapes

    def _load(self):
        if self._arrays is None:
            (xs, ys) = self._native.shapes
            x, y = self._native.to_bytes()
            self._arrays = (
                np.frombuffer(x, dtype="<f4").reshape(xs).copy(),
                np.frombuffer(y, dtype="<f4").reshape(ys).copy(),
            )
        return self._arrays

    @property
    def X(self):
        """Contexts [N, C, D] (float32, normalised units)."""
        return self._load()[0]

    @property
    def Y(self):
        """Targets [N, H, O] (float32, normalised units)."""
        return self._load()[1]

    def __repr__(self):
        (xs, ys) = self.shapes
        return f"Windows({self.name!r}, X={list(xs)}, Y={list(ys)})"


class Data:
    """A dataset cut into normalised splits: `train`, `val` and `test` windows, `input_dim`
    (features), `output_dim` (targets), the column names and the training statistics."""

    def __init__(self, native):
        self._native = native

    train = property(lambda self: Windows(self._native.train), doc="Training windows.")
    val = property(lambda self: Windows(self._native.val), doc="Validation windows.")
    test = property(lambda self: Windows(self._native.test), doc="Test windows (the held-out last rows).")
    input_dim = property(lambda self: self._native.input_dim, doc="Number of features D.")
    output_dim = property(lambda self: self._native.output_dim, doc="Number of targets O.")
    features = property(lambda self: self._native.features, doc="Feature column names.")
    targets = property(lambda self: self._native.targets, doc="Target column names.")
    context_len = property(lambda self: self._native.context_len, doc="Context rows C.")
    horizon = property(lambda self: self._native.horizon, doc="Forecast rows H.")
    rows = property(lambda self: self._native.rows, doc="Rows per split (train, val, test).")

    @property
    def settings(self):
        """The window and split settings the data was cut with."""
        return {k: v for k, v in json.loads(self._native.config_json()).items() if v is not None}

    def to_data_units(self, y):
        """Maps normalised targets (e.g. `model.predict(X)`) back to data units."""
        mean, std = self._native.target_stats
        return np.asarray(y, dtype=np.float64) * np.asarray(std) + np.asarray(mean)

    def __repr__(self):
        return (
            f"Data({self._native.source!r}, features={self.features}, targets={self.targets}, "
            f"rows={self.rows}, windows={(len(self.train), len(self.val), len(self.test))})"
        )


def checked(a, what, ndim=3):
    """`a` as an array, refusing anything that is not a float array of `ndim` dimensions (the
    message names the shape)."""
    arr = np.asarray(a)
    if arr.dtype.kind != "f":
        raise TypeError(f"{what} must be a float array, got dtype {arr.dtype} with shape {list(arr.shape)}")
    if arr.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dimensions, got shape {list(arr.shape)}")
    return arr


def float_array(a, what, ndim=3):
    """`a` as C-contiguous little-endian float32 bytes (one copy, owned by the caller) and its
    shape, after [`checked`]."""
    arr = checked(a, what, ndim)
    return np.ascontiguousarray(arr, dtype="<f4").tobytes(), tuple(int(s) for s in arr.shape)


def as_windows(obj, name):
    """The native windows of a `Windows`, or of an `(X, Y)` pair of arrays (already normalised)."""
    if isinstance(obj, Windows):
        return obj._native
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        x, xs = float_array(obj[0], f"{name} X [N, C, D]")
        y, ys = float_array(obj[1], f"{name} Y [N, H, O]")
        return _native.windows_from_arrays(name, x, xs, y, ys)
    raise TypeError(
        f"{name} data must be windows (data.train, data.val) or an (X, Y) pair of arrays "
        f"[N, C, D] and [N, H, O]; got {type(obj).__name__}"
    )
