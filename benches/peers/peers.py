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
import subprocess
import sys
import tempfile
import time
import traceback

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEFAULT_DATA = os.path.join(REPO_ROOT, "..", "shared", "data", "ETTh1.csv")
DEFAULT_ODE_BIN = os.path.join(REPO_ROOT, "target", "release", "ode")

SOLVERS = ("dopri5", "rk4", "euler")
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
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--solvers", default="dopri5,rk4,euler", help="comma list of dopri5,rk4,euler")
    p.add_argument("--frameworks", default="torch,diffrax,ours", help="comma list of torch,diffrax,ours")
    p.add_argument("--ode-bin", default=DEFAULT_ODE_BIN, help="`ode` binary (default target/release/ode)")
    p.add_argument("--build", action="store_true",
                   help="if the `ode` binary is missing, build it with `cargo build --release -p ode-cli`")
    p.add_argument("--threads", type=int, default=2,
                   help="CPU threads for every framework (process CPU affinity, torch threads, "
                        "OMP/MKL/RAYON_NUM_THREADS)")
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
    a.solvers = [s.strip() for s in a.solvers.split(",") if s.strip()]
    a.frameworks = [f.strip() for f in a.frameworks.split(",") if f.strip()]
    for s in a.solvers:
        if s not in SOLVERS:
            p.error(f"unknown solver {s!r}; choose from {','.join(SOLVERS)}")
    for f in a.frameworks:
        if f not in FRAMEWORKS:
            p.error(f"unknown framework {f!r}; choose from {','.join(FRAMEWORKS)}")
    if a.epochs < 1:
        p.error("--epochs must be at least 1")
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

def run_torch(solver, data, init_path, perms, args):
    import warnings

    import numpy as np
    import torch
    from safetensors.torch import load_file
    from torchdiffeq import odeint, odeint_adjoint

    torch.set_num_threads(args.threads)
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

    res = dict(epoch_seconds=[], nfe_fwd=[], nfe_bwd=[], train_loss=[], val_rmse_history=[])
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
                loss = torch.mean((predict(xb, adjoint=True) - yb) ** 2)
                field.phase = "bwd"
                loss.backward()
                field.phase = None
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.gradient_clip)
                opt.step()
                loss_sum += float(loss) * len(idx)
                n_seen += len(idx)
            res["epoch_seconds"].append(time.perf_counter() - t0)
            res["nfe_fwd"].append(field.nfe["fwd"])
            res["nfe_bwd"].append(field.nfe["bwd"])
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


def _diffrax_parts(solver, args, rtol, atol):
    """Solver, step-size controller, dt0, adjoint for one solver name; and the NFE formulas."""
    import diffrax
    import equinox as eqx
    import numpy as np

    class CountingBacksolveAdjoint(diffrax.BacksolveAdjoint):
        """BacksolveAdjoint that accumulates the `num_steps` of its backward sub-solves (one per
        output interval) into the adjoint of the `PROBE` argument; diffrax otherwise discards
        these statistics."""

        @property
        def _diffeqsolve(self):
            import diffrax as _d

            def _solve(**kw):
                sol = _d.diffeqsolve(**kw)
                a_args = sol.ys[2]   # ys = (y, a_y, a_args, a_terms), each with a leading 1
                if isinstance(a_args, dict) and a_args.get(PROBE) is not None:
                    leaf = a_args[PROBE]
                    sol = eqx.tree_at(lambda s: s.ys[2][PROBE], sol,
                                      leaf + sol.stats["num_steps"].astype(leaf.dtype))
                return sol
            return _solve

    if solver == "dopri5":
        # Dopri5 is FSAL: 7 evaluations on the first step of a solve, 6 per later attempted
        # step (accepted or rejected). diffrax 0.7.2 spends no evaluation on the initial step:
        # with dt0=None, PIDController.init calls its Hairer-style routine, but diffeqsolve has
        # wrapped the term (WrapTerm), so the routine returns its fallback dt = 0.01 at once.
        # Forward: 1 + 6*num_steps. Backward: BacksolveAdjoint runs one diffeqsolve per output
        # interval (H of them), each of which (re)computes its first stage (first step, or the
        # jump of adding dL/dz(t_k)): H + 6*(total backward steps). `--check-diffrax-nfe`
        # verifies this against a per-evaluation counter.
        #
        # error_order=5: the step update is h * clip(0.9 * ratio^(-1/5), 0.2, 10) as in
        # torchdiffeq and the contract; diffrax's default for Dopri5 would be ratio^(-1/6)
        # (it takes the error estimate's order as order + 1). The other PIDController
        # defaults (I-controller: pcoeff 0, icoeff 1; safety 0.9; factormin 0.2; factormax 10;
        # an accepted step never shrinks) are torchdiffeq's already.
        return dict(
            solver=diffrax.Dopri5(),
            controller=diffrax.PIDController(rtol=rtol, atol=atol, error_order=5),
            dt0=None,
            adjoint=CountingBacksolveAdjoint(
                stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol, error_order=5,
                                                          norm=diffrax.adjoint_rms_seminorm)),
            fwd_nfe=lambda steps: 1 + 6 * steps,
            bwd_nfe=lambda steps, H: H + 6 * steps,
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
        adjoint=CountingBacksolveAdjoint(dt0=-args.dt * (1 + 1e-3)),
        fwd_nfe=lambda steps: per_step * steps,
        bwd_nfe=lambda steps, H: per_step * steps,
    )


def _diffrax_model(solver, args, count_evals=None):
    """Pure functions of the parameter dict (contract tensor names, torch layouts)."""
    import diffrax
    import jax
    import jax.numpy as jnp

    H = args.horizon
    parts = _diffrax_parts(solver, args, args.rtol, args.atol)
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
        sol = diffrax.diffeqsolve(
            term, parts["solver"], t0=0.0, t1=ts[-1], dt0=parts["dt0"], y0=z0, args=fargs,
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


def run_diffrax(solver, data, init_path, perms, args):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from safetensors.numpy import load_file

    params = {k: jnp.asarray(v) for k, v in load_file(init_path).items()}
    predict, loss_and_grads, parts = _diffrax_model(solver, args)
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
        res["nfe_bwd"].append(sum(parts["bwd_nfe"](int(round(float(o[2]))), H) for o in outs))
        res["train_loss"].append(sum(float(o[0]) * o[3] for o in outs) / len(perm))
        res["val_rmse_history"].append(val_rmse(params))
    return res


def check_diffrax_nfe(solver, data, init_path, args):
    """Count evaluations directly (host callback in the field, slow) on one batch and compare
    with the formulas used for the timed runs. Returns a line of text."""
    import jax
    import jax.numpy as jnp
    from safetensors.numpy import load_file

    counter = {"n": 0}

    def bump():
        counter["n"] += 1

    params = {k: jnp.asarray(v) for k, v in load_file(init_path).items()}
    predict, loss_and_grads, parts = _diffrax_model(solver, args, count_evals=bump)
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


def _mean_if_list(v):
    if isinstance(v, list):
        return sum(v) / len(v) if v else float("nan")
    return v


def run_ours(solver, data, init_path, perms, args, workdir):
    out = os.path.join(workdir, f"ours-{solver}")
    shutil.rmtree(out, ignore_errors=True)
    # The same per-epoch batch order as torch and diffrax, so all three see identical batches.
    order_path = os.path.join(workdir, "batch_order.json")
    with open(order_path, "w") as f:
        json.dump([[int(i) for i in p] for p in perms], f)
    cmd = [
        args.ode_bin, "train", "--data", args.data, "--solver", solver,
        "--rtol", repr(args.rtol), "--atol", repr(args.atol), "--use-adjoint", "true",
        "--learning-rate", repr(args.learning_rate), "--batch-size", str(args.batch_size),
        "--gradient-clip", repr(args.gradient_clip), "--epochs", str(args.epochs),
        "--seed", str(args.seed), "--context-len", str(args.context_len),
        "--horizon", str(args.horizon), "--dt", repr(args.dt),
        "--latent-dim", str(args.latent_dim), "--hidden-dim", str(args.hidden_dim),
        "--step-mode", "shared", "--adjoint-norm", "seminorm",
        "--max-train-windows", str(args.max_train_windows),
        "--max-val-windows", str(args.max_val_windows),
        "--init-from", init_path, "--batch-order", order_path, "--out", out,
    ]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    summary_path = os.path.join(out, "summary.json")
    if r.returncode != 0 or not os.path.isfile(summary_path):
        tail = (r.stderr or r.stdout or "").strip().splitlines()[-15:]
        raise RuntimeError(f"`{' '.join(cmd[:2])} ...` exited {r.returncode}"
                           + ("" if os.path.isfile(summary_path) else " without writing summary.json")
                           + (":\n    " + "\n    ".join(tail) if tail else ""))
    with open(summary_path) as f:
        s = json.load(f)
    hist = s.get("val_rmse_history") or []
    return dict(
        sec_per_epoch=_mean_if_list(s["train_seconds_per_epoch"]),
        nfe_fwd_per_epoch=_mean_if_list(s["nfe_forward_per_epoch"]),
        nfe_bwd_per_epoch=_mean_if_list(s["nfe_backward_per_epoch"]),
        val_rmse=s.get("final_val_rmse", hist[-1] if hist else float("nan")),
        val_rmse_history=hist, wall_seconds=wall, summary=s, command=" ".join(cmd),
    )


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def summarise(res):
    """Per-epoch means for the Python runs."""
    e = len(res["epoch_seconds"])
    out = dict(res)
    out["sec_per_epoch"] = sum(res["epoch_seconds"]) / e
    out["nfe_fwd_per_epoch"] = sum(res["nfe_fwd"]) / e
    out["nfe_bwd_per_epoch"] = sum(res["nfe_bwd"]) / e
    out["val_rmse"] = res["val_rmse_history"][-1]
    return out


LABEL = {"torch": "torchdiffeq", "diffrax": "diffrax", "ours": "ours (ode train)"}


def fmt(v, spec):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return format(v, spec)


def print_table(results, args):
    head = f"{'solver':<7} {'framework':<17} {'s/epoch':>9} {'fwd NFE/ep':>11} {'bwd NFE/ep':>11} " \
           f"{'val RMSE':>9} {'time/ours':>9}"
    print()
    print(f"Seconds per epoch = training loop only (mean of {args.epochs} epoch(s)); NFE per epoch "
          f"(mean); val RMSE after epoch {args.epochs}, normalised units.")
    print(head)
    print("-" * len(head))
    errors = []
    for solver in args.solvers:
        ours = results.get(("ours", solver))
        ours_t = ours.get("sec_per_epoch") if ours and "error" not in ours else None
        for fw in args.frameworks:
            r = results.get((fw, solver))
            if r is None:
                continue
            if "error" in r:
                print(f"{solver:<7} {LABEL[fw]:<17} failed (see below)")
                errors.append((fw, solver, r["error"]))
                continue
            ratio = r["sec_per_epoch"] / ours_t if (ours_t and fw != "ours") else None
            ratio_s = f"{ratio:.2f}x" if ratio else "-"
            print(f"{solver:<7} {LABEL[fw]:<17} {fmt(r['sec_per_epoch'], '9.3f')} "
                  f"{fmt(r['nfe_fwd_per_epoch'], '11.0f')} {fmt(r['nfe_bwd_per_epoch'], '11.0f')} "
                  f"{fmt(r['val_rmse'], '9.5f')} {ratio_s:>9}")
    extra = [(k, v) for k, v in results.items() if "error" not in v and k[0] == "diffrax"]
    if extra:
        print("diffrax ahead-of-time compile (not in s/epoch): "
              + ", ".join(f"{k[1]} {v['compile_seconds']:.1f}s" for k, v in extra))
    for fw, solver, err in errors:
        print(f"\n{LABEL[fw]} / {solver} failed: {err}")


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
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"data: {args.data}: {data['n_rows']} rows x {data['D']} features, split "
          f"{data['n_train']}/{data['n_val']}/{data['n_test']}, windows train {len(data['x_train'])} "
          f"val {len(data['x_val'])} (C={args.context_len}, H={args.horizon}, dt={args.dt}), "
          f"loaded in {t_load:.1f}s")
    print(f"config: epochs {args.epochs}, batch {args.batch_size}, lr {args.learning_rate}, clip "
          f"{args.gradient_clip}, latent {args.latent_dim}, hidden {args.hidden_dim}, rtol {args.rtol}, "
          f"atol {args.atol}, adjoint on (seminorm), step mode shared, seed {args.seed}")

    own_workdir = args.workdir is None
    workdir = tempfile.mkdtemp(prefix="ode-peers-") if own_workdir else os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    init_path = os.path.join(workdir, "init.safetensors")
    results = {}
    try:
        write_init(init_path, data, args)
        perms = epoch_permutations(len(data["x_train"]), args.epochs, args.seed)

        if args.check_diffrax_nfe and "diffrax" in args.frameworks:
            for solver in args.solvers:
                print(check_diffrax_nfe(solver, data, init_path, args), flush=True)

        ours_err = ensure_ode_bin(args) if "ours" in args.frameworks else None
        for solver in args.solvers:
            for fw in args.frameworks:
                print(f"running {LABEL[fw]} / {solver} ...", flush=True)
                try:
                    if fw == "torch":
                        r = summarise(run_torch(solver, data, init_path, perms, args))
                    elif fw == "diffrax":
                        r = summarise(run_diffrax(solver, data, init_path, perms, args))
                    else:
                        if ours_err:
                            raise RuntimeError(ours_err)
                        r = run_ours(solver, data, init_path, perms, args, workdir)
                except Exception as e:  # noqa: BLE001 — report and keep going
                    r = {"error": f"{type(e).__name__}: {e}"}
                    if fw != "ours":
                        traceback.print_exc()
                results[(fw, solver)] = r
                if "error" in r:
                    print(f"  failed: {r['error']}", flush=True)
                else:
                    print(f"  {r['sec_per_epoch']:.3f} s/epoch, NFE fwd {r['nfe_fwd_per_epoch']:.0f} "
                          f"bwd {r['nfe_bwd_per_epoch']:.0f} per epoch, val RMSE {r['val_rmse']:.5f}",
                          flush=True)
        print_table(results, args)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "versions": versions,
                           "results": [{"framework": k[0], "solver": k[1], **v} for k, v in results.items()]},
                          f, indent=2, default=str)
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
