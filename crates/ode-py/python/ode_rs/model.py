"""NeuralODEModel: the reference forecaster (encoder, ODE in latent space, decoder) with the
tuning guide's arguments, running on the Rust engine."""

import json

import numpy as np

from . import _native
from .data import float_array

# The guide's recommended configurations.
PRESETS = {
    "fast": dict(latent_dim=16, hidden_dim=32, solver="euler", rtol=1e-3, atol=1e-4),
    "balanced": dict(latent_dim=32, hidden_dim=64, solver="rk4", rtol=1e-4, atol=1e-5),
    "accurate": dict(latent_dim=64, hidden_dim=128, solver="dopri5", rtol=1e-5, atol=1e-6),
}

_OPTIONAL = (
    "adjoint_rtol",
    "adjoint_atol",
    "step_size",
    "max_num_steps",
    "controller",
)


class NeuralODEModel:
    """A Neural ODE forecaster. The weights are drawn (PyTorch's default init, from `seed`, else
    the trainer's seed) for the data's shapes when first trained, as `ode train` draws them.

    Solvers: euler, midpoint, heun2, rk4 (3/8 rule), rk4_classic, bosh3, dopri5, tsit5."""

    def __init__(
        self,
        input_dim=5,
        latent_dim=32,
        hidden_dim=64,
        solver="dopri5",
        rtol=1e-4,
        atol=1e-5,
        use_adjoint=True,
        output_dim=None,
        context_len=24,
        horizon=12,
        dt=0.1,
        step_mode="per_sample",
        adjoint_norm="seminorm",
        normalization="global",
        revin=False,
        seed=None,
        **options,
    ):
        unknown = sorted(set(options) - set(_OPTIONAL))
        if unknown:
            raise TypeError(f"NeuralODEModel got unexpected arguments {unknown}")
        config = dict(
            input_dim=input_dim,
            output_dim=output_dim or 0,
            latent_dim=latent_dim,
            hidden_dim=hidden_dim,
            context_len=context_len,
            horizon=horizon,
            dt=dt,
            solver=solver,
            rtol=rtol,
            atol=atol,
            use_adjoint=use_adjoint,
            step_mode=step_mode,
            adjoint_norm=adjoint_norm,
            normalization=normalization,
            revin=revin,
        )
        config.update({k: v for k, v in options.items() if v is not None})
        self._native = _native.Model(json.dumps(config), seed)

    @classmethod
    def preset(cls, name, input_dim=5, **overrides):
        """The guide's recommended configurations: `fast`, `balanced`, `accurate`."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {name!r}")
        return cls(input_dim=input_dim, **{**PRESETS[name], "use_adjoint": True, **overrides})

    @classmethod
    def load(cls, path):
        """Reads a checkpoint written by `ode train`, `Trainer` or `save`."""
        model = cls.__new__(cls)
        model._native = _native.Model.load(str(path))
        return model

    def save(self, path):
        """Writes a safetensors checkpoint (the format `ode train` writes and `ode predict` reads)."""
        self._native.save(str(path))

    @property
    def config(self):
        """Model and solver settings (after training: with the data's shapes)."""
        return json.loads(self._native.config_json())

    def __getattr__(self, name):
        # Model settings read as attributes (model.latent_dim, model.solver, ...).
        native = self.__dict__.get("_native")
        config = json.loads(native.config_json()) if native is not None else {}
        if name in config:
            return config[name]
        raise AttributeError(f"'NeuralODEModel' object has no attribute {name!r}")

    @property
    def ode_solver_steps(self):
        """Accepted solver steps per sample in the last epoch trained (the guide's monitoring);
        updated after every epoch, before the tracker hears of it."""
        last = self.__dict__.get("_last_steps")
        return last if last is not None else self._native.ode_solver_steps

    def state_dict(self):
        """Weights as NumPy arrays under the reference model's PyTorch names."""
        return {
            name: np.frombuffer(data, dtype="<f4").reshape(shape).copy()
            for name, shape, data in self._native.tensors()
        }

    def predict(self, X, data_units=False):
        """Forecasts [N, H, O] for contexts X [N, C, D] in the model's (normalised) units; with
        `data_units=True` (a model trained on a dataset) X and the forecasts are in data units."""
        x, shape = float_array(X, "X [N, C, D]")
        (h, o) = self._native.window_shape[1]
        out = self._native.predict(x, shape, data_units)
        return np.frombuffer(out, dtype="<f4").reshape(shape[0], h, o).copy()

    def __repr__(self):
        c = self.config
        return (
            f"NeuralODEModel(input_dim={c['input_dim']}, latent_dim={c['latent_dim']}, "
            f"hidden_dim={c['hidden_dim']}, solver={c['solver']!r}, rtol={c['rtol']}, "
            f"atol={c['atol']}, use_adjoint={c['use_adjoint']})"
        )
