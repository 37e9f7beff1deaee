"""Fits the 7/8 rational behind `ode_core::tanh_f32` and prints its f32 constants.

    tanh(x) ≈ x·P(x²) / Q(x²),  P of degree 3, Q of degree 4 with leading coefficient 1,
    on [0, c], clamped to ±c outside (c = 7.9).

Minimax in absolute error by differential correction: each round solves the linear program
"minimise E subject to |x·P − tanh·Q| ≤ E·Q_prev" on a grid (HiGHS through scipy), with
P(0) = Q(0) so that the slope at 0 is exactly 1, and with the clamp's tail as one more point
(the value at c must also be close to 1). The fit's own error is 1.69e-7; rounding in f32
brings the total to 4.46e-7, which `cargo run --release -p ode-benches --bin tanh-error`
measures over every f32.

    python3 -m venv /tmp/fit && /tmp/fit/bin/pip install numpy==2.4.6 scipy==1.17.1
    /tmp/fit/bin/python benches/tanh/fit.py [c]
"""

import sys

import numpy as np
from scipy.optimize import linprog

NP, NQ = 4, 4  # P: 4 coefficients (x, x³, x⁵, x⁷); Q: 1 + 4 powers of x² (up to x⁸)


def fit(c, n=4000, rounds=40):
    """Returns (fit error, P's coefficients, Q's coefficients), both in powers of x²."""
    x = np.concatenate([np.linspace(0, c, n)[1:], [c]])
    t = np.tanh(x)
    t[-1] = 1.0  # the tail past the clamp
    u = (x / c) ** 2  # fitted in x²/c² for conditioning
    ps = np.stack([x * u**k for k in range(NP)], 1)
    qs = np.stack([u**k for k in range(1, NQ + 1)], 1)
    # Unknowns: P's coefficients (the first fixed at 1), Q's, then E, which is minimised.
    cost = np.zeros(NP + NQ + 1)
    cost[-1] = 1.0
    bounds = [(1, 1)] + [(None, None)] * (NP + NQ - 1) + [(0, None)]
    q_positive = np.hstack([np.zeros_like(ps), -qs, np.zeros((len(x), 1))])  # Q ≥ 1e-3 > 0
    b_ub = np.concatenate([t, -t, np.full(len(x), 1 - 1e-3)])
    q_prev, best = np.ones_like(x), None
    for round_ in range(rounds):
        a_ub = np.vstack([
            np.hstack([ps, -t[:, None] * qs, -q_prev[:, None]]),
            np.hstack([-ps, t[:, None] * qs, -q_prev[:, None]]),
            q_positive,
        ])
        res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
        if res.x is None:
            break
        a, b = res.x[:NP], res.x[NP:NP + NQ]
        q = 1 + qs @ b
        err = np.abs((ps @ a) / q - t).max()
        if best is None or err < best[0]:
            best = (err, a.copy(), b.copy())
        elif err > best[0] * 1.0000001 and round_ > 5:
            break
        q_prev = q
    err, a, b = best
    p_s = np.array([a[k] / c ** (2 * k) for k in range(NP)])
    q_s = np.array([1.0] + [b[k - 1] / c ** (2 * k) for k in range(1, NQ + 1)])
    return err, p_s / q_s[-1], q_s / q_s[-1]


def main():
    c = float(sys.argv[1]) if len(sys.argv) > 1 else 7.9
    err, p, q = fit(c)
    print(f"fit error (f64) {err:.3e} on [0, {c}]")
    for name, v in zip(["A1", "A3", "A5", "A7"], p):
        print(f"{name} = {float(np.float32(v))!r}")
    for name, v in zip(["B0", "B2", "B4", "B6"], q[:NQ]):
        print(f"{name} = {float(np.float32(v))!r}")


if __name__ == "__main__":
    main()
