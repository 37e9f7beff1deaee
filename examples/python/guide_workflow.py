"""The tuning guide's workflow end to end on the built-in five-channel data, in a few minutes:
defaults, latent dimension, solvers, tolerances, a grid search and a random search (by hand, as
the guide writes them), then the same random search through `ode_rs.search` into an
Optuna-readable SQLite study, and the best model's test score.

    pip install ./crates/ode-py
    python examples/python/guide_workflow.py [--epochs 3] [--rows 2000]
"""

import argparse
import random
import tempfile
import time
from itertools import product

import numpy as np

import ode_rs
from ode_rs import NeuralODEModel, Trainer


def train(data, epochs, **model_args):
    model = NeuralODEModel(input_dim=data.input_dim, **model_args)
    trainer = Trainer(model, {"epochs": epochs, "batch_size": 16, "gradient_clip": 1.0, "verbose": False})
    start = time.time()
    history = trainer.fit(data.train, data.val)
    return model, min(history["val_rmse"]), time.time() - start, history


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rows", type=int, default=2000)
    args = ap.parse_args()
    data = ode_rs.dataset("five-channel", rows=args.rows, max_train_windows=512)
    print(data)

    print("\nStep 1: defaults (latent 32, hidden 64, dopri5, adjoint)")
    _, rmse, secs, h = train(data, args.epochs)
    print(f"  val RMSE {rmse:.4f} in {secs:.1f}s, {h['ode_steps'][-1]:.0f} solver steps per sample in the last epoch")

    print("\nStep 2: latent dimension")
    for latent in [16, 32, 64]:
        _, rmse, secs, _ = train(data, args.epochs, latent_dim=latent)
        print(f"  latent {latent:>3}: val RMSE {rmse:.4f} ({secs:.1f}s)")

    print("\nStep 3: solvers")
    for solver in ["euler", "rk4", "dopri5"]:
        _, rmse, secs, _ = train(data, args.epochs, solver=solver)
        print(f"  {solver:>6}: time {secs:.1f}s, RMSE {rmse:.4f}")

    print("\nStep 4: tolerances (dopri5)")
    for rtol, atol in [(1e-3, 1e-4), (1e-4, 1e-5), (1e-5, 1e-6)]:
        _, rmse, secs, h = train(data, args.epochs, rtol=rtol, atol=atol)
        print(f"  rtol {rtol:g} atol {atol:g}: RMSE {rmse:.4f}, {secs:.1f}s, NFE {h['nfe_forward'][-1]:.0f}")

    print("\nGrid search (latent x hidden x solver)")
    best = (float("inf"), None)
    for latent, hidden, solver in product([16, 32], [32, 64], ["euler", "rk4", "dopri5"]):
        _, rmse, _, _ = train(data, args.epochs, latent_dim=latent, hidden_dim=hidden, solver=solver)
        if rmse < best[0]:
            best = (rmse, dict(latent_dim=latent, hidden_dim=hidden, solver=solver))
    print(f"  best {best[1]}: val RMSE {best[0]:.4f}")

    print("\nRandom search, 6 configurations")
    rng = random.Random(0)
    for _ in range(6):
        cfg = dict(latent_dim=rng.choice([16, 32, 64]), hidden_dim=rng.choice([32, 64, 128]),
                   solver=rng.choice(["euler", "rk4", "dopri5"]))
        _, rmse, secs, _ = train(data, args.epochs, **cfg)
        print(f"  {cfg}: val RMSE {rmse:.4f} ({secs:.1f}s)")

    print("\nThe same random search as a study (ode_rs.search, Optuna's schema)")
    with tempfile.TemporaryDirectory() as tmp:
        result = ode_rs.search(
            space={"latent_dim": [16, 32, 64], "hidden_dim": [32, 64, 128], "solver": ["euler", "rk4", "dopri5"]},
            strategy="random", trials=6, storage=f"sqlite:{tmp}/studies.db", data=data, study="guide",
            epochs=args.epochs,
        )
        for row in result.leaderboard[:3]:
            print(f"  trial {row['number']}: {row['params']} val RMSE {row['val_rmse']:.4f}")
        cfg = result.best_config
        print(f"  best: latent {cfg['latent_dim']}, hidden {cfg['hidden_dim']}, {cfg['solver']}")

    model, rmse, _, _ = train(data, args.epochs, latent_dim=cfg["latent_dim"], hidden_dim=cfg["hidden_dim"],
                              solver=cfg["solver"])
    pred = model.predict(data.test.X)
    test_rmse = float(np.sqrt(np.mean((pred - data.test.Y) ** 2)))
    persistence = float(np.sqrt(np.mean((data.test.X[:, -1:, :] - data.test.Y) ** 2)))
    print(f"\nBest configuration on the test windows: RMSE {test_rmse:.4f} (persistence {persistence:.4f})")


if __name__ == "__main__":
    main()
