"""Exact gradients three ways (THEORY.md §2): RTRL = BPTT = finite differences, and TBPTT(τ).

For every cell, sequence length ``T`` and loss, on random ``θ``, ``φ`` and data:

* ``rtrl vs bptt``, ``tbptt(T) vs bptt`` — bound ``2γ_N · G_abs`` (see :func:`rounding_bound`);
* ``rtrl vs fd``, ``bptt vs fd`` — bound ``2·e_FD + γ_N·G_abs`` with ``e_FD`` the Richardson error
  estimate of :mod:`.finite_differences` (the factor 2 is the stated safety margin on an estimate);
* ``tbptt(τ) vs rtrl-reset(τ)`` — TBPTT on blocks of ``τ < T`` steps against forward RTRL whose
  influence restarts from 0 at each block (an independent route to the same truncated gradient);
* ``tbptt(τ) != bptt`` — truncation must change the gradient: passes when the difference exceeds
  the rounding bound by a factor of 10⁴.

A comparison passes when every entry's error is within its own bound (``ratio ≤ 1``).
"""
from __future__ import annotations

import numpy as np

from rtrl_validation.simulations import LinearReadout, make_cell, make_estimator, run_sequence, sequence_loss
from rtrl_validation.simulations.cells.base import Cell
from rtrl_validation.simulations.estimators.rtrl import RTRL
from rtrl_validation.simulations.seeding import as_generator

from .finite_differences import richardson_gradient
from .symbolic import Comparison, gamma


class ResetRTRL(RTRL):
    """Forward RTRL whose influence restarts from zero every ``tau`` steps (truncated RTRL)."""

    def __init__(self, tau: int):
        self.tau = tau

    def init(self, cell, theta, batch, rng=None):
        state = super().init(cell, theta, batch, rng)
        state.steps = 0
        return state

    def update(self, state, lin, rng=None):
        if state.steps % self.tau == 0:
            state.J[...] = 0.0
        state.steps += 1
        return super().update(state, lin, rng)


def linearization_ops(k: int, m: int) -> int:
    """An upper bound on the arithmetic operations behind one entry of ``D_t``, ``I_t`` or ``c_t``:
    ``40(k+m) + 128``.  ``tests/test_gradients.py`` checks it against sympy's operation count of
    every cell's (unsimplified) Jacobian entries at small sizes."""
    return 40 * (k + m) + 128


def rounding_bound(cell, theta, readout, phi, xs, ys) -> np.ndarray:
    """Forward-error bound ``γ_N · G_abs`` (``B × p``) for computing ``dL_T/dθ`` in float64.

    ``G_abs = Σ_t |c_t| |J|_t`` with ``|J|_t = |D_t| |J|_{t−1} + |I_t|``: the gradient recomputed
    with absolute values throughout.  Each entry of ``D_t``, ``I_t``, ``c_t`` carries a relative
    error of at most ``γ_n`` with ``n`` = :func:`linearization_ops`; each step's product has inner
    dimension ``k`` plus one addition, the credit product ``k`` more and the time sum ``T``.  To
    first order the errors add along the recursion, so the classical bound for products and sums
    (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.5) holds with
    ``N = T(k+2) + k + n``.  The BPTT adjoint sums the same terms in the other order and obeys the
    same bound.
    """
    B = xs.shape[1]
    s = np.zeros((B, cell.k))
    J = np.zeros((B, cell.k, cell.p))
    G = np.zeros((B, cell.p))
    for t in range(xs.shape[0]):
        lin = cell.linearize(theta, s, xs[t])
        s = lin.state
        J = np.matmul(np.abs(lin.D), J) + np.abs(lin.I.dense())
        credit = readout.evaluate(phi, s, ys[t])[1]
        G += np.matmul(np.abs(credit)[:, None, :], J)[:, 0, :]
    T = xs.shape[0]
    return gamma(T * (cell.k + 2) + cell.k + linearization_ops(cell.k, cell.m)) * G


def _data(rng, T, m, readout):
    xs = rng.standard_normal((T, 1, m))
    if readout.loss == "mse":
        ys = rng.standard_normal((T, 1, readout.n_out))
    else:
        ys = rng.integers(0, readout.n_out, size=(T, 1))
    return xs, ys


def check_cell(cell, T: int, loss: str, rng: np.random.Generator) -> list[dict]:
    """All comparisons for one cell, one ``T`` and one loss; a list of check dicts."""
    readout = LinearReadout(cell.k, 2 if loss == "mse" else 3, loss)
    theta, phi = cell.init(rng), readout.init(rng)
    xs, ys = _data(rng, T, cell.m, readout)

    def grad(est):
        return run_sequence(cell, theta, readout, phi, xs, ys, est).grad_theta[0]

    g_rtrl, g_bptt = grad(make_estimator("rtrl")), grad(make_estimator("bptt"))
    rb = np.maximum(rounding_bound(cell, theta, readout, phi, xs, ys)[0], np.finfo(float).tiny)

    def f(thetas):
        n = thetas.shape[0]
        return sequence_loss(cell, thetas, readout, phi, np.repeat(xs, n, axis=1), np.repeat(ys, n, axis=1))

    fd = richardson_gradient(f, theta, rng=rng)
    fd_bound = 2 * fd.error + rb
    comps = [Comparison.of("rtrl vs bptt", g_rtrl, g_bptt, 2 * rb),
             Comparison.of("rtrl vs fd", g_rtrl, fd.derivative, fd_bound),
             Comparison.of("bptt vs fd", g_bptt, fd.derivative, fd_bound),
             Comparison.of("tbptt(T) vs bptt", grad(make_estimator("tbptt", tau=T)), g_bptt, 2 * rb)]
    if T > 1:
        tau = max(1, T // 3)
        g_tb = grad(make_estimator("tbptt", tau=tau))
        comps.append(Comparison.of(f"tbptt({tau}) vs rtrl-reset({tau})", g_tb, grad(ResetRTRL(tau)), 2 * rb))
        # Truncation must matter: the largest difference must exceed 10^4 × its rounding bound.
        diff = np.abs(g_tb - g_bptt)
        worst = int(np.argmax(diff / (2 * rb)))
        c = Comparison.of(f"tbptt({tau}) != bptt", g_tb, g_bptt, 2 * rb)
        c.ratio = float(1e4 * 2 * rb[worst] / max(diff[worst], np.finfo(float).tiny))
        comps.append(c)
    out = []
    for c in comps:
        out.append({"cell": cell.name, "density": cell.density, "hidden": cell.hidden, "inputs": cell.m,
                    "steps": T, "loss": loss, "comparison": c.name, "max_abs_error": c.max_abs_error,
                    "max_rel_error": c.max_rel_error, "bound": c.bound, "ratio": c.ratio,
                    "passed": c.passed})
    return out


def run_gradcheck(cells, hidden: int = 4, inputs: int = 3, steps=(1, 7, 60), density: float = 1.0,
                  seed: int = 0, losses=("mse", "xent")) -> dict:
    """Run :func:`check_cell` for every cell (a registered name, built at ``hidden``, ``inputs``,
    ``density``, or a cell object), ``T`` in ``steps`` and loss; ``seed``: an integer or a Generator.

    Returns ``{"passed": bool, "checks": [check dicts]}``; raises ``ValueError`` on bad input.
    """
    steps = [steps] if isinstance(steps, (int, np.integer)) else list(steps)
    for T in steps:
        if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T <= 0:
            raise ValueError(f"steps must be positive integers, got {T!r}")
    rng = as_generator(seed)
    checks = []
    for name in cells:
        if isinstance(name, Cell):
            cell = name
        else:
            mask_seed = seed if isinstance(seed, (int, np.integer)) else int(rng.integers(2**31))
            cell = make_cell(name, hidden, inputs, density=density, mask_seed=mask_seed)
        for T in steps:
            for loss in losses:
                checks += check_cell(cell, int(T), loss, rng)
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


def format_table(result: dict) -> str:
    """A fixed-width table: cell × comparison with errors, bound, what is expected and the verdict.
    ``a != b`` rows (TBPTT(τ) ≠ BPTT) are expected to differ: they pass when the difference
    exceeds 10⁴ × the bound."""
    head = (f"{'cell':<17} {'T':>3} {'loss':<4} {'comparison':<28} {'expected':<8} {'max abs err':>11} "
            f"{'max rel err':>11} {'bound':>9} {'verdict':>7}")
    lines = [head, "-" * len(head)]
    for c in result["checks"]:
        differ = "!=" in c["comparison"]
        lines.append(f"{c['cell']:<17} {c['steps']:>3} {c['loss']:<4} {c['comparison'].replace('!=', '≠'):<28} "
                     f"{'differ' if differ else 'equal':<8} {c['max_abs_error']:>11.2e} {c['max_rel_error']:>11.2e} "
                     f"{c['bound']:>9.1e} {'PASS' if c['passed'] else 'FAIL':>7}")
    lines.append("expected 'equal': PASS when the error is within the bound; 'differ' (TBPTT(τ) ≠ BPTT): PASS "
                 "when it exceeds 10⁴ × the bound")
    n_fail = sum(not c["passed"] for c in result["checks"])
    lines.append(f"{len(result['checks']) - n_fail} passed, {n_fail} failed")
    return "\n".join(lines)
