#!/usr/bin/env python3
"""Peer comparison: the reference training task in PyTorch + torchdiffeq, JAX + diffrax
and this project's `ode train`, side by side.

All three start from the same weights (PyTorch's default Linear init under
`torch.manual_seed(seed)`, saved to `init.safetensors` with the contract's tensor names),
train on the same windows of the same data, in the same per-epoch batch order (ours is given
torch's permutations with `--batch-order`), for the same number of epochs, and report:

- seconds per epoch of the training loop only (no CSV loading/windowing, no validation;
  for diffrax the jitted step is compiled ahead of time, before the first epoch, and the
  compile time is reported separately),
- vector-field evaluations (NFE) per epoch, forward solve and backward (adjoint) pass
  separately, a vector-Jacobian product of the field counting as one evaluation,
- validation RMSE (normalised units) after the last epoch,
- time ratios torchdiffeq / ours and diffrax / ours.

The model, data pipeline, loss, optimiser and solvers follow `shared/reference-model.md`.
See README.md next to this file for set-up, usage and the known differences.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEFAULT_DATA = os.path.join(REPO_ROOT, "..", "shared", "data", "ETTh1.csv")
DEFAULT_ODE_BIN = os.path.join(REPO_ROOT, "target", "release", "ode")

SOLVERS = ("dopri5", "rk4", "euler")
GRADIENTS = ("adjoint", "backprop")
FRAMEWORKS = ("torch", "diffrax", "ours")
FUNC_KEYS = ("func.0.weight", "func.0.bias", "func.2.weight", "func.2.bias", "func.4.weight", "func.4.bias")
TENSOR_NAMES = (
    "encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias",
    *FUNC_KEYS,
    "decoder.weight", "decoder.bias",
)


# --------------------------------------------------------------------------------------------
# Command line and environment
# --------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Train the reference Neural ODE in torchdiffeq, diffrax and `ode train`; "
                    "compare seconds/epoch, NFE/epoch and val RMSE.")
    p.add_argument("--data", default=DEFAULT_DATA,
                   help="CSV file (default: ../shared/data/ETTh1.csv relative to the repo root)")
    p.add_argument("--epochs", type=int, default=1, help="timed epochs per run (after the warm-up)")
    p.add_argument("--warmup-epochs", type=int, default=1,
                   help="epochs run first and not timed, the same for every framework")
    p.add_argument("--repeats", type=int, default=3,
                   help="runs of every configuration, alternating frameworks; median and min reported")
    p.add_argument("--configs", default="dopri5:adjoint,rk4:adjoint,euler:adjoint,dopri5:backprop",
                   help="comma list of SOLVER:GRADIENT (solvers dopri5, rk4, euler; gradients "
                        "adjoint, backprop)")
    p.add_argument("--frameworks", default="torch,diffrax,ours", help="comma list of torch,diffrax,ours")
    p.add_argument("--ode-bin", default=DEFAULT_ODE_BIN, help="`ode` binary (default target/release/ode)")
    p.add_argument("--build", action="store_true",
                   help="if the `ode` binary is missing, build it with `cargo build --release -p ode-cli`")
    p.add_argument("--threads", type=int, default=2,
                   help="CPUs the process (and `ode train`, XLA) may use: CPU affinity, "
                        "OMP/MKL/RAYON_NUM_THREADS")
    p.add_argument("--torch-threads", default="1,2",
                   help="torch thread counts to measure; each configuration reports the faster")
    p.add_argument("--step-mode", default="per_sample", choices=("per_sample", "shared"),
                   help="ours: step mode (default per_sample, the project's default; the peers "
                        "always share one step size over the batch)")
    p.add_argument("--controller", default="default", choices=("default", "torchdiffeq"),
                   help="ours: step-size rules (torchdiffeq = its rules exactly, for equal NFE)")
    p.add_argument("--max-train-windows", type=int, default=2048)
    p.add_argument("--max-val-windows", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--context-len", type=int, default=24)
    p.add_argument("--horizon", type=int, default=12)
    p.add_argument("--dt", type=float, default=0.1)
    p.add_argument("--latent-dim", type=int, default=32)
    p.add_argument("--hidden-dim", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--gradient-clip", type=float, default=1.0)
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--workdir", default=None,
                   help="keep init.safetensors and `ode train` outputs here (default: a temp dir, removed)")
    p.add_argument("--json", default=None, help="also write the results as JSON to this file")
    p.add_argument("--check-diffrax-nfe", action="store_true",
                   help="before timing, check the diffrax NFE formula against a per-evaluation "
                        "counter on one batch per solver (untimed)")
    a = p.parse_args(argv)
    a.configs = [tuple(c.strip().split(":")) for c in a.configs.split(",") if c.strip()]
    for c in a.configs:
        if len(c) != 2 or c[0] not in SOLVERS or c[1] not in GRADIENTS:
            p.error(f"bad config {':'.join(c)!r}; write SOLVER:GRADIENT with a solver from "
                    f"{','.join(SOLVERS)} and a gradient from {','.join(GRADIENTS)}")
    a.solvers = sorted({c[0] for c in a.configs}, key=SOLVERS.index)
    a.torch_threads = [int(t) for t in a.torch_threads.split(",") if t.strip()]
    if not a.torch_threads or min(a.torch_threads) < 1 or max(a.torch_threads) > a.threads:
        p.error("--torch-threads must list counts between 1 and --threads")
    a.frameworks = [f.strip() for f in a.frameworks.split(",") if f.strip()]
    for f in a.frameworks:
        if f not in FRAMEWORKS:
            p.error(f"unknown framework {f!r}; choose from {','.join(FRAMEWORKS)}")
    if a.epochs < 1 or a.warmup_epochs < 0 or a.repeats < 1:
        p.error("--epochs and --repeats must be at least 1, --warmup-epochs at least 0")
    if a.threads < 1:
        p.error("--threads must be at least 1")
    return a


def limit_threads(n: int) -> str:
    """Pin the process (and its children) to `n` CPUs and tell the thread pools. Must run
    before torch/jax are imported."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[var] = str(n)
    if n == 1:
        single = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + single).strip()
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if n < len(cpus):
            os.sched_setaffinity(0, cpus[:n])
        return f"{min(n, len(cpus))} of {len(cpus)} CPUs"
    except (AttributeError, OSError):
        return f"{n} (affinity not set)"


# --------------------------------------------------------------------------------------------
# Data pipeline (contract: split, z-score from the train split, windows inside each split)
# --------------------------------------------------------------------------------------------

def load_csv(path):
    import numpy as np

    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty file")
    header, body = rows[0], [r for r in rows[1:] if r]
    # The time column (`date` in ETTh1) is not a feature: drop a column named date/time or one
    # whose first cell is not a number.
    keep = []
    for j, name in enumerate(header):
        if name.strip().lower() in ("date", "time", "timestamp", "datetime"):
            continue
        try:
            float(body[0][j])
        except (ValueError, IndexError):
            continue
        keep.append(j)
    data = np.empty((len(body), len(keep)), dtype=np.float64)
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise ValueError(f"{path}: row {i + 2} has {len(r)} cells, header has {len(header)}")
        for k, j in enumerate(keep):
            try:
                v = float(r[j])
            except ValueError:
                raise ValueError(f"{path}: row {i + 2}, column {header[j]!r}: not a number: {r[j]!r}")
            if not math.isfinite(v):
                raise ValueError(f"{path}: row {i + 2}, column {header[j]!r}: {v}")
            data[i, k] = v
    return [header[j] for j in keep], data


def make_windows(split, C, H, cap):
    import numpy as np

    n = split.shape[0] - C - H + 1
    if n < 1:
        raise ValueError(f"split of {split.shape[0]} rows is shorter than one window (C+H={C + H})")
    n = min(n, cap) if cap else n
    x = np.stack([split[i:i + C].reshape(-1) for i in range(n)])   # time-major flatten [n, C*D]
    y = np.stack([split[i + C:i + C + H] for i in range(n)])         # [n, H, O] (targets = features)
    return x.astype(np.float32), y.astype(np.float32)


def prepare_data(args):
    import numpy as np

    names, raw = load_csv(args.data)
    n = raw.shape[0]
    n_train = int(math.floor(0.7 * n))
    n_test = int(math.floor(0.2 * n))
    n_val = n - n_train - n_test
    train, val = raw[:n_train], raw[n_train:n_train + n_val]
    mean = train.mean(axis=0)
    std = train.std(axis=0, ddof=0)
    std = np.where(std == 0.0, 1.0, std)
    norm = lambda a: (a - mean) / std  # noqa: E731
    C, H = args.context_len, args.horizon
    x_tr, y_tr = make_windows(norm(train), C, H, args.max_train_windows)
    x_va, y_va = make_windows(norm(val), C, H, args.max_val_windows)
    return dict(names=names, mean=mean, std=std, n_rows=n, n_train=n_train, n_val=n_val, n_test=n_test,
                x_train=x_tr, y_train=y_tr, x_val=x_va, y_val=y_va, D=raw.shape[1], O=raw.shape[1])


def epoch_permutations(n, epochs, seed):
    """One shuffle per epoch from a seeded torch.Generator; shared by torch and diffrax so the
    two Python runs see the same batches (ours shuffles with its own generator)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return [torch.randperm(n, generator=g).numpy() for _ in range(epochs)]


# --------------------------------------------------------------------------------------------
# Identical start: PyTorch default init -> init.safetensors
# --------------------------------------------------------------------------------------------

def build_torch_model(D, O, args):
    import torch
    from torch import nn

    C, L, M = args.context_len, args.latent_dim, args.hidden_dim

    class Field(nn.Sequential):
        """Autonomous vector field func(z); counts evaluations per phase."""

        def __init__(self):
            super().__init__(nn.Linear(L, M), nn.Tanh(), nn.Linear(M, M), nn.Tanh(), nn.Linear(M, L))
            self.phase = None                     # "fwd", "bwd" or None (not counted)
            self.nfe = {"fwd": 0, "bwd": 0}

        def forward(self, t, z):  # noqa: ARG002 (autonomous)
            if self.phase is not None:
                self.nfe[self.phase] += 1
            return super().forward(z)

    class RefModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(C * D, M), nn.Tanh(), nn.Linear(M, L))
            self.func = Field()
            self.decoder = nn.Linear(L, O)

    torch.manual_seed(args.seed)
    return RefModel()


def contract_config(data, args):
    return {
        "input_dim": data["D"], "output_dim": data["O"], "latent_dim": args.latent_dim,
        "hidden_dim": args.hidden_dim, "context_len": args.context_len, "horizon": args.horizon,
        "dt": args.dt, "solver": "dopri5", "rtol": args.rtol, "atol": args.atol, "use_adjoint": True,
        "step_mode": "shared", "features": data["names"], "targets": data["names"],
        "mean": [float(v) for v in data["mean"]], "std": [float(v) for v in data["std"]],
    }


def write_init(path, data, args):
    from safetensors.torch import save_file

    model = build_torch_model(data["D"], data["O"], args)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    assert tuple(sorted(sd)) == tuple(sorted(TENSOR_NAMES)), sorted(sd)
    save_file(sd, path, metadata={"config": json.dumps(contract_config(data, args))})


# --------------------------------------------------------------------------------------------
# (a) PyTorch + torchdiffeq
# --------------------------------------------------------------------------------------------

def run_torch(solver, grad, data, init_path, perms, args, threads):
    import warnings

    import numpy as np
    import torch
    from safetensors.torch import load_file
    from torchdiffeq import odeint, odeint_adjoint

    torch.set_num_threads(threads)
    adjoint = grad == "adjoint"
    model = build_torch_model(data["D"], data["O"], args)
    model.load_state_dict(load_file(init_path))
    field = model.func
    H, dt, bs = args.horizon, args.dt, args.batch_size
    ts = torch.arange(H + 1, dtype=torch.float32) * dt          # t_0 = 0, t_k = k*dt
    kw = dict(method=solver, rtol=args.rtol, atol=args.atol)
    adj_kw = dict(adjoint_options=dict(norm="seminorm")) if solver == "dopri5" else {}

    def predict(x, adjoint):
        z0 = model.encoder(x)
        if adjoint:
            zs = odeint_adjoint(field, z0, ts, **kw, **adj_kw)
        else:
            zs = odeint(field, z0, ts, **kw)
        return model.decoder(zs[1:]).transpose(0, 1)                # [B, H, O]

    opt = torch.optim.Adam(model.parameters(), lr=args.learning_rate, betas=(0.9, 0.999), eps=1e-8)
    x_tr, y_tr = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"])
    x_va, y_va = torch.from_numpy(data["x_val"]), torch.from_numpy(data["y_val"])

    def val_rmse():
        field.phase = None
        se, cnt = 0.0, 0
        with torch.no_grad():
            for b in range(0, x_va.shape[0], bs):
                d = predict(x_va[b:b + bs], adjoint=False) - y_va[b:b + bs]
                se += float((d.double() ** 2).sum())
                cnt += d.numel()
        return math.sqrt(se / cnt)

    res = dict(epoch_seconds=[], nfe_fwd=[], nfe_bwd=[], train_loss=[], val_rmse_history=[],
               threads=threads)
    with warnings.catch_warnings():
        # fixed-grid solvers warn that they ignore rtol/atol/norm
        warnings.simplefilter("ignore", UserWarning)
        for perm in perms:
            field.nfe = {"fwd": 0, "bwd": 0}
            loss_sum, n_seen = 0.0, 0
            t0 = time.perf_counter()
            for b in range(0, len(perm), bs):
                idx = torch.from_numpy(np.ascontiguousarray(perm[b:b + bs]))
                xb, yb = x_tr[idx], y_tr[idx]
                opt.zero_grad(set_to_none=True)
                field.phase = "fwd"
                loss = torch.mean((predict(xb, adjoint=adjoint) - yb) ** 2)
                # Backprop's VJPs run in autograd, not through `forward`: not counted.
                field.phase = "bwd" if adjoint else None
                loss.backward()
                field.phase = None
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.gradient_clip)
                opt.step()
                loss_sum += float(loss) * len(idx)
                n_seen += len(idx)
            res["epoch_seconds"].append(time.perf_counter() - t0)
            res["nfe_fwd"].append(field.nfe["fwd"])
            res["nfe_bwd"].append(field.nfe["bwd"] if adjoint else float("nan"))
            res["train_loss"].append(loss_sum / n_seen)
            res["val_rmse_history"].append(val_rmse())
    return res


# --------------------------------------------------------------------------------------------
# (b) JAX + diffrax
# --------------------------------------------------------------------------------------------

# Backward NFE without host callbacks: a dummy scalar argument of the vector field ("probe") that
# the field never reads. Its true gradient is 0; CountingBacksolveAdjoint adds each backward
# sub-solve's `stats["num_steps"]` to the probe's running adjoint, so the "gradient" that comes
# back for the probe is the total number of backward steps of the batch. (A jax.debug.callback
# per sub-solve would do the same but cost ~0.3 ms each here: +100% on an euler epoch.)
PROBE = "nfe_probe"


def hairer_dt0(vf, t0, y, direction, rtol, atol, order, parts=None):
    """Hairer's initial step (the rule ours uses, `ode_core::control`): from the RMS norms of
    the state and of its derivative over the whole batch, one trial Euler step, and the change
    of the derivative over it; exponent `1/(order + 1)`. `parts` picks the leaves of a tuple
    state whose norms count (the largest RMS among them), as ours takes the larger of the
    state's and the state adjoint's norms in the backward solve. Costs two evaluations."""
    import jax
    import jax.numpy as jnp

    pick = (lambda tree: [tree[i] for i in parts]) if parts is not None else (lambda tree: [tree])
    ys = pick(y)
    scale = [atol + rtol * jnp.abs(x) for x in ys]

    def norm(xs):
        return jnp.max(jnp.stack([jnp.sqrt(jnp.mean((x / s) ** 2)) for x, s in zip(xs, scale)]))

    f0 = vf(t0, y)
    d0, d1 = norm(ys), norm(pick(f0))
    h0 = jnp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1)
    y1 = jax.tree_util.tree_map(lambda a, b: a + direction * h0 * b, y, f0)
    f1 = vf(t0 + direction * h0, y1)
    d2 = norm([b - a for a, b in zip(pick(f0), pick(f1))]) / h0
    h1 = jnp.where((d1 <= 1e-15) & (d2 <= 1e-15), jnp.maximum(1e-6, h0 * 1e-3),
                   (0.01 / jnp.maximum(d1, d2)) ** (1.0 / (order + 1)))
    return direction * jnp.minimum(100 * h0, h1)


def _diffrax_parts(solver, grad, args, rtol, atol):
    """Solver, step-size controller, dt0, adjoint for one solver name and gradient method; and
    the NFE formulas (backward: None where it cannot be counted, backprop)."""
    import diffrax
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np

    hairer = solver == "dopri5"

    class CountingBacksolveAdjoint(diffrax.BacksolveAdjoint):
        """BacksolveAdjoint that accumulates the `num_steps` of its backward sub-solves (one per
        output interval) into the adjoint of the `PROBE` argument; diffrax otherwise discards
        these statistics."""

        @property
        def _diffeqsolve(self):
            import diffrax as _d

            def _solve(**kw):
                if hairer and kw.get("solver_state") is None:
                    # The first backward sub-solve: Hairer's step on the state and its adjoint,
                    # as ours (BacksolveAdjoint would start from minus the forward's first
                    # step; later sub-solves carry the controller's step over, as ours).
                    term, t0, t1 = kw["terms"], kw["t0"], kw["t1"]
                    kw["dt0"] = jax.lax.stop_gradient(hairer_dt0(
                        lambda t, y: term.vf_prod(t, y, kw["args"], jnp.ones((), jnp.float32)),
                        t0, kw["y0"], jnp.sign(t1 - t0), rtol, atol, 5, parts=(0, 1)))
                sol = _d.diffeqsolve(**kw)
                a_args = sol.ys[2]   # ys = (y, a_y, a_args, a_terms), each with a leading 1
                if isinstance(a_args, dict) and a_args.get(PROBE) is not None:
                    leaf = a_args[PROBE]
                    sol = eqx.tree_at(lambda s: s.ys[2][PROBE], sol,
                                      leaf + sol.stats["num_steps"].astype(leaf.dtype))
                return sol
            return _solve

    if solver == "dopri5":
        # Dopri5 is FSAL: its first stage is evaluated once per solve (and after the jump of
        # adding dL/dz(t_k) in the backward pass), then 6 evaluations per attempted step.
        # diffrax 0.7.2 would start with a fixed dt = 0.01 (with dt0=None, PIDController.init
        # calls its Hairer-style routine, but diffeqsolve has wrapped the term in a WrapTerm,
        # so it returns its fallback at once). To give it ours rule, the first step forward and
        # the first backward one come from `hairer_dt0` (2 evaluations each), as ours; later
        # backward sub-solves carry the controller's step over, as ours does.
        # Forward: 2 + 1 + 6*num_steps. Backward (adjoint): 2 + H + 6*(total backward steps).
        # `--check-diffrax-nfe` verifies this against a per-evaluation counter.
        #
        # error_order=5: the step update is h * clip(0.9 * ratio^(-1/5), 0.2, 10) as in
        # torchdiffeq, the contract and ours; diffrax's default for Dopri5 would be
        # ratio^(-1/6). The other PIDController defaults (I-controller: pcoeff 0, icoeff 1;
        # safety 0.9; factormin 0.2; factormax 10) are ours.
        return dict(
            solver=diffrax.Dopri5(),
            controller=diffrax.PIDController(rtol=rtol, atol=atol, error_order=5),
            dt0="hairer",
            adjoint=CountingBacksolveAdjoint(
                stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol, error_order=5,
                                                          norm=diffrax.adjoint_rms_seminorm))
            if grad == "adjoint" else diffrax.RecursiveCheckpointAdjoint(),
            fwd_nfe=lambda steps: 3 + 6 * steps,
            bwd_nfe=(lambda steps, H: 2 + H + 6 * steps) if grad == "adjoint" else None,
        )
    if solver == "rk4":
        class RK38(diffrax.AbstractERK):
            """Kutta's 3/8-rule fourth-order method (torchdiffeq's `rk4`), 4 stages, no FSAL,
            no embedded error estimate (fixed steps only)."""
            tableau = diffrax.ButcherTableau(
                c=np.array([1 / 3, 2 / 3, 1.0]),
                b_sol=np.array([1 / 8, 3 / 8, 3 / 8, 1 / 8]),
                b_error=np.zeros(4),
                a_lower=(np.array([1 / 3]), np.array([-1 / 3, 1.0]), np.array([1.0, -1.0, 1.0])),
            )
            interpolation_cls = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

            def order(self, terms):
                return 4

        solver_obj, per_step = RK38(), 4
    elif solver == "euler":
        solver_obj, per_step = diffrax.Euler(), 1
    else:
        raise ValueError(solver)
    # Fixed steps on the output grid: dt0 = dt forward. On the backward pass each sub-solve
    # covers one output interval [t_{k-1}, t_k]; with dt0 = -dt exactly, f32 rounding of
    # t_k - dt leaves a second, tiny step in most intervals, so the backward dt0 is 1e-3
    # larger in magnitude and diffrax clips the single step to the interval's end.
    return dict(
        solver=solver_obj,
        controller=diffrax.ConstantStepSize(),
        dt0=args.dt,
        adjoint=CountingBacksolveAdjoint(dt0=-args.dt * (1 + 1e-3))
        if grad == "adjoint" else diffrax.RecursiveCheckpointAdjoint(),
        fwd_nfe=lambda steps: per_step * steps,
        bwd_nfe=(lambda steps, H: per_step * steps) if grad == "adjoint" else None,
    )


def _diffrax_model(solver, grad, args, count_evals=None):
    """Pure functions of the parameter dict (contract tensor names, torch layouts)."""
    import diffrax
    import jax
    import jax.numpy as jnp

    H = args.horizon
    parts = _diffrax_parts(solver, grad, args, args.rtol, args.atol)
    ts = jnp.arange(1, H + 1, dtype=jnp.float32) * jnp.float32(args.dt)   # t_k = k*dt, k=1..H

    def field(t, z, p):  # autonomous; p[PROBE] is never read
        if count_evals is not None:
            jax.debug.callback(count_evals)
        h = jnp.tanh(z @ p["func.0.weight"].T + p["func.0.bias"])
        h = jnp.tanh(h @ p["func.2.weight"].T + p["func.2.bias"])
        return h @ p["func.4.weight"].T + p["func.4.bias"]

    term = diffrax.ODETerm(field)

    def predict(params, probe, x):
        """-> predictions [B, H, O], forward num_steps."""
        h = jnp.tanh(x @ params["encoder.0.weight"].T + params["encoder.0.bias"])
        z0 = h @ params["encoder.2.weight"].T + params["encoder.2.bias"]          # [B, L]
        # only the field's parameters (and the probe) are adjoint parameters
        fargs = {**{k: params[k] for k in FUNC_KEYS}, PROBE: probe}
        dt0 = parts["dt0"]
        if dt0 == "hairer":
            # The step sequence is not differentiated (as in ours).
            dt0 = jax.lax.stop_gradient(
                hairer_dt0(lambda t, y: field(t, y, fargs), 0.0, z0, 1.0, args.rtol, args.atol, 5))
        sol = diffrax.diffeqsolve(
            term, parts["solver"], t0=0.0, t1=ts[-1], dt0=dt0, y0=z0, args=fargs,
            saveat=diffrax.SaveAt(ts=ts), stepsize_controller=parts["controller"],
            adjoint=parts["adjoint"], max_steps=100_000)
        pred = sol.ys @ params["decoder.weight"].T + params["decoder.bias"]      # [H, B, O]
        return jnp.transpose(pred, (1, 0, 2)), sol.stats["num_steps"]

    def loss_and_grads(params, x, y):
        """-> loss, grads, forward num_steps, backward num_steps (total over the H sub-solves)."""
        def loss_fn(p, probe):
            pred, nsteps = predict(p, probe, x)
            return jnp.mean((pred - y) ** 2), nsteps

        (loss, fsteps), (g, bsteps) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
            params, jnp.zeros((), jnp.float32))
        return loss, g, fsteps, bsteps

    return predict, loss_and_grads, parts


def run_diffrax(solver, grad, data, init_path, perms, args):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from safetensors.numpy import load_file

    params = {k: jnp.asarray(v) for k, v in load_file(init_path).items()}
    predict, loss_and_grads, parts = _diffrax_model(solver, grad, args)
    H, bs, clip = args.horizon, args.batch_size, args.gradient_clip
    opt = optax.adam(args.learning_rate, b1=0.9, b2=0.999, eps=1e-8)
    opt_state = opt.init(params)

    def train_step(p, s, xb, yb):
        loss, g, fsteps, bsteps = loss_and_grads(p, xb, yb)
        # torch.nn.utils.clip_grad_norm_: scale by min(1, clip / (norm + 1e-6))
        gnorm = optax.global_norm(g)
        scale = jnp.minimum(1.0, clip / (gnorm + 1e-6))
        g = jax.tree_util.tree_map(lambda a: a * scale, g)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, loss, fsteps, bsteps

    def eval_sse(p, xb, yb):
        pred, _ = predict(p, jnp.zeros((), jnp.float32), xb)
        return jnp.sum((pred - yb) ** 2)

    # Batches are gathered with numpy and handed to the compiled functions (as torch gathers
    # from its tensors); a jnp gather would compile itself inside the first timed epoch.
    x_tr, y_tr = data["x_train"], data["y_train"]
    x_va, y_va = data["x_val"], data["y_val"]
    n_tr, n_va = x_tr.shape[0], x_va.shape[0]

    # Ahead-of-time compilation for every batch shape that occurs (the last partial batch has
    # its own), so no epoch pays for compilation.
    tc = time.perf_counter()
    step_c, eval_c = {}, {}
    for b in sorted({min(bs, n_tr)} | ({n_tr % bs} - {0})):
        step_c[b] = jax.jit(train_step).lower(params, opt_state, x_tr[:b], y_tr[:b]).compile()
    for b in sorted({min(bs, n_va)} | ({n_va % bs} - {0})):
        eval_c[b] = jax.jit(eval_sse).lower(params, x_va[:b], y_va[:b]).compile()
    compile_s = time.perf_counter() - tc

    def val_rmse(p):
        se = 0.0
        for b in range(0, n_va, bs):
            xb, yb = x_va[b:b + bs], y_va[b:b + bs]
            se += float(eval_c[xb.shape[0]](p, xb, yb))
        return math.sqrt(se / (n_va * H * data["O"]))

    res = dict(epoch_seconds=[], nfe_fwd=[], nfe_bwd=[], train_loss=[], val_rmse_history=[],
               compile_seconds=compile_s)
    for perm in perms:
        outs = []
        t0 = time.perf_counter()
        for b in range(0, len(perm), bs):
            idx = perm[b:b + bs]
            params, opt_state, loss, fsteps, bsteps = step_c[len(idx)](
                params, opt_state, x_tr[idx], y_tr[idx])
            outs.append((loss, fsteps, bsteps, len(idx)))
        jax.block_until_ready((params, opt_state))
        res["epoch_seconds"].append(time.perf_counter() - t0)
        res["nfe_fwd"].append(sum(parts["fwd_nfe"](int(o[1])) for o in outs))
        res["nfe_bwd"].append(sum(parts["bwd_nfe"](int(round(float(o[2]))), H) for o in outs)
                              if parts["bwd_nfe"] else float("nan"))
        res["train_loss"].append(sum(float(o[0]) * o[3] for o in outs) / len(perm))
        res["val_rmse_history"].append(val_rmse(params))
    return res


def check_diffrax_nfe(solver, grad, data, init_path, args):
    """Count evaluations directly (host callback in the field, slow) on one batch and compare
    with the formulas used for the timed runs. Returns a line of text."""
    import jax
    import jax.numpy as jnp
    from safetensors.numpy import load_file

    counter = {"n": 0}

    def bump():
        counter["n"] += 1

    params = {k: jnp.asarray(v) for k, v in load_file(init_path).items()}
    predict, loss_and_grads, parts = _diffrax_model(solver, grad, args, count_evals=bump)
    H, bs = args.horizon, args.batch_size
    xb, yb = data["x_train"][:bs], data["y_train"][:bs]

    fwd = jax.jit(lambda p, x: predict(p, jnp.zeros((), jnp.float32), x)[1])
    jax.block_until_ready(fwd(params, xb))      # compile + one run
    jax.effects_barrier()
    counter["n"] = 0
    nsteps = int(fwd(params, xb))
    jax.effects_barrier()
    fwd_counted, fwd_formula = counter["n"], parts["fwd_nfe"](nsteps)

    lg = jax.jit(loss_and_grads)
    jax.block_until_ready(lg(params, xb, yb))
    jax.effects_barrier()
    counter["n"] = 0
    _, _, fsteps, bsteps = jax.block_until_ready(lg(params, xb, yb))
    jax.effects_barrier()
    bwd_counted = counter["n"] - parts["fwd_nfe"](int(fsteps))  # the grad run does the forward too
    bwd_formula = parts["bwd_nfe"](int(round(float(bsteps))), H)
    ok = fwd_counted == fwd_formula and bwd_counted == bwd_formula
    return (f"diffrax {solver}: forward counted {fwd_counted} formula {fwd_formula}; backward counted "
            f"{bwd_counted} formula {bwd_formula} -> {'OK' if ok else 'MISMATCH'}")


# --------------------------------------------------------------------------------------------
# (c) ours: `ode train`
# --------------------------------------------------------------------------------------------

def ensure_ode_bin(args):
    if os.path.isfile(args.ode_bin) and os.access(args.ode_bin, os.X_OK):
        return None
    if not args.build:
        return f"`ode` binary not found at {args.ode_bin} (build it, or pass --build)"
    print("building: cargo build --release -p ode-cli", flush=True)
    r = subprocess.run(["cargo", "build", "--release", "-p", "ode-cli"], cwd=REPO_ROOT)
    if r.returncode != 0:
        return f"`cargo build --release -p ode-cli` failed with exit code {r.returncode}"
    if not os.path.isfile(args.ode_bin):
        return f"built, but {args.ode_bin} does not exist"
    return None


def run_ours(solver, grad, data, init_path, perms, args, workdir):
    out = os.path.join(workdir, f"ours-{solver}-{grad}")
    shutil.rmtree(out, ignore_errors=True)
    # The same per-epoch batch order as torch and diffrax, so all three see identical batches.
    order_path = os.path.join(workdir, "batch_order.json")
    with open(order_path, "w") as f:
        json.dump([[int(i) for i in p] for p in perms], f)
    cmd = [
        args.ode_bin, "train", "--data", args.data, "--solver", solver,
        "--rtol", repr(args.rtol), "--atol", repr(args.atol),
        "--use-adjoint", "true" if grad == "adjoint" else "false",
        "--learning-rate", repr(args.learning_rate), "--batch-size", str(args.batch_size),
        "--gradient-clip", repr(args.gradient_clip), "--epochs", str(len(perms)),
        "--seed", str(args.seed), "--context-len", str(args.context_len),
        "--horizon", str(args.horizon), "--dt", repr(args.dt),
        "--latent-dim", str(args.latent_dim), "--hidden-dim", str(args.hidden_dim),
        "--step-mode", args.step_mode, "--adjoint-norm", "seminorm", "--controller", args.controller,
        "--threads", str(args.threads),
        "--max-train-windows", str(args.max_train_windows),
        "--max-val-windows", str(args.max_val_windows),
        "--init-from", init_path, "--batch-order", order_path, "--out", out,
        "--no-report", "--quiet",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    metrics_path = os.path.join(out, "metrics.jsonl")
    if r.returncode != 0 or not os.path.isfile(metrics_path):
        tail = (r.stderr or r.stdout or "").strip().splitlines()[-15:]
        raise RuntimeError(f"`{' '.join(cmd[:2])} ...` exited {r.returncode}"
                           + (":\n    " + "\n    ".join(tail) if tail else ""))
    per = {}
    with open(metrics_path) as f:
        for line in f:
            m = json.loads(line)
            if "metric" in m and m.get("step", 0) >= 1:
                per.setdefault(m["metric"], {})[m["step"]] = m["value"]
    epochs = sorted(per["train_seconds"])
    col = lambda k: [per[k][e] for e in epochs]  # noqa: E731
    return dict(epoch_seconds=col("train_seconds"), nfe_fwd=col("nfe_forward"),
                nfe_bwd=col("nfe_backward"), train_loss=col("train_loss"),
                val_rmse_history=col("val_rmse"), command=" ".join(cmd))


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def summarise(res, warmup):
    """Per-epoch means over the timed epochs (after `warmup` untimed ones)."""
    timed = slice(warmup, None)
    e = len(res["epoch_seconds"][timed])
    out = dict(res)
    out["sec_per_epoch"] = sum(res["epoch_seconds"][timed]) / e
    out["nfe_fwd_per_epoch"] = sum(res["nfe_fwd"][timed]) / e
    out["nfe_bwd_per_epoch"] = sum(res["nfe_bwd"][timed]) / e
    out["val_rmse"] = res["val_rmse_history"][-1]
    return out


LABEL = {"torch": "torchdiffeq", "diffrax": "diffrax", "ours": "ours (ode train)"}


def fmt(v, spec):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return format(v, spec)


def machine():
    """The CPU model, the CPUs this process may use, and the kernel."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def stats(runs):
    """Median and min seconds per epoch over the repeats, and the last run's other figures."""
    secs = sorted(r["sec_per_epoch"] for r in runs)
    last = runs[-1]
    rmses = {round(r["val_rmse"], 6) for r in runs}
    return dict(median=statistics.median(secs), min=secs[0], fwd=last["nfe_fwd_per_epoch"], bwd=last["nfe_bwd_per_epoch"],
                val_rmse=last["val_rmse"], rmse_varies=len(rmses) > 1, runs=len(runs))


def best_torch(results, solver, grad, args):
    """torch at its best thread count: the one with the lower median."""
    best = None
    for t in args.torch_threads:
        runs = results.get((f"torch{t}", solver, grad))
        if runs and "error" not in runs[-1]:
            s = stats(runs)
            if best is None or s["median"] < best[1]["median"]:
                best = (t, s)
    return best


def print_table(results, args):
    print()
    print(f"Seconds per epoch: training loop only, mean of {args.epochs} timed epoch(s) after "
          f"{args.warmup_epochs} untimed warm-up epoch(s), median and min over {args.repeats} "
          f"alternating repeats. NFE per epoch: each framework's own count of batched evaluations "
          f"(a VJP counts as one; n/a = backprop, where the peers' VJPs run inside autograd). "
          f"us/eval = median seconds / (fwd + bwd NFE). val RMSE after the last epoch.")
    head = (f"{'config':<16} {'framework':<22} {'median s':>9} {'min s':>8} {'fwd NFE':>8} {'bwd NFE':>8} "
            f"{'us/eval':>8} {'val RMSE':>9} {'x ours (median)':>15} {'x ours (min)':>12}")
    print(head)
    print("-" * len(head))
    all_rows = []
    for solver, grad in args.configs:
        rows = []
        ours = results.get(("ours", solver, grad))
        ours_s = stats(ours) if ours and "error" not in ours[-1] else None
        for fw in args.frameworks:
            if fw == "torch":
                bt = best_torch(results, solver, grad, args)
                if bt:
                    rows.append((f"torchdiffeq ({bt[0]} thr)", bt[1]))
                continue
            runs = results.get((fw, solver, grad))
            if runs and "error" not in runs[-1]:
                rows.append((LABEL[fw], stats(runs)))
        all_rows += rows
        for label, st in rows:
            evals = st["fwd"] + (st["bwd"] if st["bwd"] == st["bwd"] else float("nan"))
            per_eval = st["median"] / evals * 1e6 if evals == evals and evals > 0 else float("nan")
            rm = st["median"] / ours_s["median"] if ours_s and not label.startswith("ours") else None
            rn = st["min"] / ours_s["min"] if ours_s and not label.startswith("ours") else None
            print(f"{solver + ':' + grad:<16} {label:<22} {st['median']:9.3f} {st['min']:8.3f} "
                  f"{fmt(st['fwd'], '8.0f'):>8} {fmt(st['bwd'], '8.0f'):>8} {fmt(per_eval, '8.1f'):>8} "
                  f"{st['val_rmse']:9.5f}{'*' if st['rmse_varies'] else ' '}"
                  f"{(f'{rm:.2f}x' if rm else '-'):>15} {(f'{rn:.2f}x' if rn else '-'):>12}")
    if any(st["rmse_varies"] for _, st in all_rows):
        print("* val RMSE differed between repeats (a nondeterministic run)")
    extra = [(k, v[-1]) for k, v in results.items() if k[0] == "diffrax" and "error" not in v[-1]]
    if extra:
        print("diffrax ahead-of-time compile (not in the times): "
              + ", ".join(f"{k[1]}:{k[2]} {v['compile_seconds']:.1f}s" for k, v in extra))
    for k, v in results.items():
        if "error" in v[-1]:
            print(f"\n{k[0]} / {k[1]}:{k[2]} failed: {v[-1]['error']}")


def run_one(fw, solver, grad, data, init_path, perms, args, workdir):
    """One run of a framework on a configuration, summarised; or {"error": ...}."""
    try:
        if fw.startswith("torch"):
            return summarise(run_torch(solver, grad, data, init_path, perms, args, int(fw[5:])),
                             args.warmup_epochs)
        if fw == "diffrax":
            return summarise(run_diffrax(solver, grad, data, init_path, perms, args), args.warmup_epochs)
        err = ensure_ode_bin(args)
        if err:
            raise RuntimeError(err)
        return summarise(run_ours(solver, grad, data, init_path, perms, args, workdir), args.warmup_epochs)
    except Exception as e:  # noqa: BLE001 — report and keep going
        if fw != "ours":
            traceback.print_exc()
        return {"error": f"{type(e).__name__}: {e}"}


def main(argv=None):
    args = parse_args(argv)
    threads_note = limit_threads(args.threads)   # before importing torch / jax
    args.data = os.path.abspath(args.data)
    args.ode_bin = os.path.abspath(args.ode_bin)
    if not os.path.isfile(args.data):
        print(f"peers.py: data file not found: {args.data} (pass --data PATH)", file=sys.stderr)
        return 2

    t_load = time.perf_counter()
    data = prepare_data(args)
    t_load = time.perf_counter() - t_load

    versions = {"python": platform.python_version()}
    for mod in ("numpy", "torch", "torchdiffeq", "jax", "jaxlib", "diffrax", "equinox", "optax"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            versions[mod] = "missing"
    print(f"peers.py  {_dt.datetime.now().isoformat(timespec='seconds')}  threads: {threads_note}")
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"machine: {machine()}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"data: {args.data}: {data['n_rows']} rows x {data['D']} features, split "
          f"{data['n_train']}/{data['n_val']}/{data['n_test']}, windows train {len(data['x_train'])} "
          f"val {len(data['x_val'])} (C={args.context_len}, H={args.horizon}, dt={args.dt}), "
          f"loaded in {t_load:.1f}s")
    print(f"config: batch {args.batch_size}, lr {args.learning_rate}, clip {args.gradient_clip}, "
          f"latent {args.latent_dim}, hidden {args.hidden_dim}, rtol {args.rtol}, atol {args.atol}, "
          f"adjoint norm seminorm; ours: step mode {args.step_mode}, controller {args.controller}, "
          f"{args.threads} threads; torch threads {args.torch_threads}; seed {args.seed}")

    own_workdir = args.workdir is None
    workdir = tempfile.mkdtemp(prefix="ode-peers-") if own_workdir else os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    init_path = os.path.join(workdir, "init.safetensors")
    results = {}
    fws = [f"torch{t}" for t in args.torch_threads] if "torch" in args.frameworks else []
    fws += [f for f in args.frameworks if f != "torch"]
    try:
        write_init(init_path, data, args)
        perms = epoch_permutations(len(data["x_train"]), args.warmup_epochs + args.epochs, args.seed)
        if args.check_diffrax_nfe and "diffrax" in args.frameworks:
            for solver, grad in args.configs:
                if grad == "adjoint":
                    print(check_diffrax_nfe(solver, grad, data, init_path, args), flush=True)
        # Repeats alternate the frameworks (torch, diffrax, ours, torch, ...), so a slow spell
        # of the machine falls on all of them alike.
        for rep in range(args.repeats):
            for solver, grad in args.configs:
                for fw in fws:
                    r = run_one(fw, solver, grad, data, init_path, perms, args, workdir)
                    results.setdefault((fw, solver, grad), []).append(r)
                    msg = (f"failed: {r['error']}" if "error" in r else
                           f"{r['sec_per_epoch']:.3f} s/epoch, NFE fwd {r['nfe_fwd_per_epoch']:.0f} bwd "
                           f"{r['nfe_bwd_per_epoch']:.0f}, val RMSE {r['val_rmse']:.5f}")
                    print(f"repeat {rep + 1}: {fw} / {solver}:{grad}: {msg}", flush=True)
        print_table(results, args)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "versions": versions, "machine": machine(),
                           "results": [{"framework": k[0], "solver": k[1], "gradient": k[2], "runs": v}
                                       for k, v in results.items()]},
                          f, indent=2, default=str)
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
