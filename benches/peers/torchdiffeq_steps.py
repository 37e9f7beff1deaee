"""Records torchdiffeq's step-size choices for `controller = "torchdiffeq"`'s test.

For a small tanh MLP field (the reference model's `func`, weights from a fixed formula) and a
batch of four states, in float64 with one step size for the batch (torchdiffeq's behaviour, our
`step_mode = shared`), this runs `torchdiffeq.odeint` and `odeint_adjoint` (seminorm) for
dopri5 and bosh3 at three tolerances and writes, per case, the time of every
evaluation of the field (forward, and backward where the adjoint evaluates it), the number of
evaluations, accepted and rejected steps, the outputs and the gradients.

    benches/peers/.venv/bin/python benches/peers/torchdiffeq_steps.py \
        > crates/ode-core/tests/fixtures/torchdiffeq_steps.json

`crates/ode-core/tests/core/torchdiffeq_rules.rs` replays every case with our solver and requires the
same evaluation times (to round-off) and counts.
"""

import json
import math
import sys

import torch
import torchdiffeq

torch.set_default_dtype(torch.float64)

LATENT, HIDDEN, BATCH = 3, 6, 4
# Not adaptive_heun: torchdiffeq carries its second stage, the derivative at the Euler
# predictor, over as the next step's first (one evaluation per step), which is another method
# than Heun's with an embedded Euler error.
METHODS = {"dopri5": "dopri5", "bosh3": "bosh3"}
RTOLS = [1e-3, 1e-5, 1e-7]
SPANS = {"short": [0.1 * k for k in range(13)], "long": [0.5 * k for k in range(7)]}


def weights():
    """The field's parameters in the reference model's order and shapes (`func.0.weight`
    [M, L], `func.0.bias` [M], `func.2.*` [M, M] / [M], `func.4.*` [L, M] / [L])."""
    shapes = [(HIDDEN, LATENT), (HIDDEN,), (HIDDEN, HIDDEN), (HIDDEN,), (LATENT, HIDDEN), (LATENT,)]
    flat, k = [], 0
    tensors = []
    for shape in shapes:
        n = math.prod(shape)
        vals = [1.1 * math.sin(1.7 * (k + i) + 0.3) for i in range(n)]
        k += n
        flat.extend(vals)
        tensors.append(torch.tensor(vals).reshape(shape))
    return flat, tensors


class Field(torch.nn.Module):
    """tanh MLP L -> M -> M -> L that logs the time of every evaluation."""

    def __init__(self, tensors):
        super().__init__()
        self.l0, self.l2, self.l4 = (torch.nn.Linear(*reversed(tensors[i].shape)) for i in (0, 2, 4))
        with torch.no_grad():
            for layer, (w, b) in zip((self.l0, self.l2, self.l4), zip(tensors[::2], tensors[1::2])):
                layer.weight.copy_(w)
                layer.bias.copy_(b)
        self.times = []
        self.accepted = 0
        self.rejected = 0

    def forward(self, t, z):
        self.times.append(float(t.detach()))
        return self.l4(torch.tanh(self.l2(torch.tanh(self.l0(z)))))

    def callback_accept_step(self, t0, y0, dt):  # noqa: ARG002
        self.accepted += 1

    def callback_reject_step(self, t0, y0, dt):  # noqa: ARG002
        self.rejected += 1

    def callback_accept_step_adjoint(self, t0, y0, dt):  # noqa: ARG002
        self.accepted += 1

    def callback_reject_step_adjoint(self, t0, y0, dt):  # noqa: ARG002
        self.rejected += 1


def y0():
    return torch.tensor([[0.9 * math.cos(1.3 * (r * LATENT + i)) for i in range(LATENT)] for r in range(BATCH)])


def case(method, rtol, ts_list, tensors):
    ts = torch.tensor(ts_list)
    f = Field(tensors)
    atol = rtol / 10
    with torch.no_grad():
        ys = torchdiffeq.odeint(f, y0(), ts, rtol=rtol, atol=atol, method=METHODS[method])
    forward = {"times": f.times, "accepted": f.accepted, "rejected": f.rejected}
    # The loss weights every output by a fixed pattern; its gradient is the cotangent.
    cot = torch.tensor([[[0.5 + 0.1 * math.sin(k + r + i) for i in range(LATENT)] for r in range(BATCH)]
                        for k in range(len(ts_list))])
    f = Field(tensors)
    z0 = y0().requires_grad_(True)
    out = torchdiffeq.odeint_adjoint(f, z0, ts, rtol=rtol, atol=atol, method=METHODS[method],
                                     adjoint_options={"norm": "seminorm"})
    f.times.clear()
    f.accepted = f.rejected = 0
    (out * cot).sum().backward()
    backward = {"times": f.times, "accepted": f.accepted, "rejected": f.rejected}
    grads = [p.grad.reshape(-1).tolist() for p in (f.l0.weight, f.l0.bias, f.l2.weight, f.l2.bias,
                                                      f.l4.weight, f.l4.bias)]
    return {
        "method": method,
        "rtol": rtol,
        "atol": atol,
        "ts": ts_list,
        "forward": forward,
        "ys": ys.reshape(-1).tolist(),
        "cotangent": cot.reshape(-1).tolist(),
        "backward": backward,
        "grad_y0": z0.grad.reshape(-1).tolist(),
        "grad_params": [g for t in grads for g in t],
    }


def main():
    flat, tensors = weights()
    cases = [case(m, r, span, tensors) for m in METHODS for r in RTOLS for span in SPANS.values()]
    json.dump({
        "torchdiffeq": torchdiffeq.__version__,
        "torch": torch.__version__,
        "latent": LATENT,
        "hidden": HIDDEN,
        "batch": BATCH,
        "params": flat,
        "y0": y0().reshape(-1).tolist(),
        "cases": cases,
    }, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
