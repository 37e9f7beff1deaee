"""Neural ODE training and tuning on a Rust engine, with the tuning guide's API.

    from ode_rs import NeuralODEModel, Trainer, load_csv
    data = load_csv("ETTh1.csv", context_len=24, horizon=12)
    model = NeuralODEModel(input_dim=data.input_dim, latent_dim=32, hidden_dim=64,
                           solver="dopri5", rtol=1e-4, atol=1e-5, use_adjoint=True)
    trainer = Trainer(model, config={"learning_rate": 1e-3, "batch_size": 16,
                                     "gradient_clip": 1.0, "epochs": 10}, tracker=None)
    history = trainer.fit(data.train, data.val)
    print(min(history["val_rmse"]))
"""

from ._native import SolverError, __version__
from .data import Data, Windows, dataset, load_csv
from .model import NeuralODEModel
from .search import SearchResult, search
from .trainer import Trainer

__all__ = [
    "Data",
    "NeuralODEModel",
    "SearchResult",
    "SolverError",
    "Trainer",
    "Windows",
    "__version__",
    "dataset",
    "load_csv",
    "search",
]
