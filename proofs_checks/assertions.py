"""The gradient and structure checks as a user API (THEORY.md §1, §2, §4).

:func:`assert_gradients_correct` runs, on any cell object (a built-in, a
:class:`~rtrl_validation.simulations.cells.symbolic.EquationCell`, a hand-written
:class:`~rtrl_validation.simulations.cells.base.Cell` subclass) or registered name:

* :func:`check_patterns` — ``D`` and ``I`` of ``linearize`` against Richardson finite differences of
  ``step`` at random points, and every entry the finite differences find nonzero (beyond their
  error estimate) lies inside ``patterns()`` (a pattern that misses an entry makes SnAp-n silently
  wrong);
* :func:`check_snap_exact` — SnAp-n at ``n*`` (the order whose mask is the closure of the pattern)
  equals RTRL within the rounding bound (THEORY §4: it *is* RTRL when the pattern is right);
* :func:`~rtrl_validation.proofs_checks.gradcheck.check_cell` — RTRL = BPTT = finite differences and
  the TBPTT identities, for each sequence length and loss.

and raises ``AssertionError`` with the table of every comparison when one fails, for use inside
a pytest test.
"""
from __future__ import annotations

import numpy as np

from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.cells.base import Cell
from rtrl_validation.simulations.estimators import make_estimator
from rtrl_validation.simulations.estimators.masked import exact_order
from rtrl_validation.simulations.readouts import LinearReadout
from rtrl_validation.simulations.seeding import as_generator
from rtrl_validation.simulations.sequence import run_sequence

from .finite_differences import richardson_gradient
from .gradcheck import check_cell, format_table, linearization_ops, rounding_bound
from .symbolic import Comparison, gamma

TINY = np.finfo(float).tiny


def as_cell(cell, hidden: int = 3, inputs: int = 2) -> Cell:
    """A cell object from a :class:`Cell`, a registered name, or a factory ``(hidden, inputs) -> Cell``."""
    if isinstance(cell, Cell):
        return cell
    if isinstance(cell, str):
        return make_cell(cell, hidden, inputs)
    if callable(cell):
        made = cell(hidden, inputs)
        if isinstance(made, Cell):
            return made
    raise TypeError(f"expected a Cell, a registered cell name or a cell factory, got {type(cell).__name__}")


def _row(cell, comparison: Comparison, steps="-", loss="-") -> dict:
    c = comparison
    return {"cell": cell.name, "density": cell.density, "hidden": cell.hidden, "inputs": cell.m,
            "steps": steps, "loss": loss, "comparison": c.name, "max_abs_error": c.max_abs_error,
            "max_rel_error": c.max_rel_error, "bound": c.bound, "ratio": c.ratio, "passed": c.passed}


def _fd_jacobian(f, at, rng):
    """Richardson finite-difference Jacobian of ``f: B × n -> B × k`` at ``at`` (``n``):
    ``(J, error)``, both ``k × n``."""
    k = f(at[None]).shape[1]
    rows = [richardson_gradient(lambda X, i=i: f(X)[:, i], at, rng=rng) for i in range(k)]
    return np.stack([r.derivative for r in rows]), np.stack([r.error for r in rows])


def check_patterns(cell: Cell, rng, points: int = 2) -> list[dict]:
    """``D``, ``I`` against finite differences of ``step``, and their nonzeros against ``patterns()``.

    Parameters
    ----------
    cell : Cell
    rng : int or numpy.random.Generator
        Draws the points ``(θ, s, x)``.
    points : int
        Random points to check.

    Returns
    -------
    list of dict
        One check row per comparison (keys as :func:`~.gradcheck.check_cell`'s).  Values pass when
        ``|linearize − fd| ≤ 2·e_fd + γ_n max(1, |fd|)`` (``e_fd`` the Richardson error estimate,
        ``n`` :func:`~.gradcheck.linearization_ops`); a pattern passes when every entry outside it
        has ``|fd| ≤ 2·e_fd`` (its "ratio" is the largest ``|fd| / 2e_fd`` outside the pattern).
    """
    rng = as_generator(rng)
    Dp, Ip = cell.patterns()
    g = gamma(linearization_ops(cell.k, cell.m))
    found = {"D": [], "I": []}
    for _ in range(points):
        theta = cell.init(rng)
        s = rng.uniform(-0.9, 0.9, cell.k)
        x = rng.standard_normal(cell.m)
        lin = cell.linearize(theta, s[None], x[None])
        D, eD = _fd_jacobian(lambda S: cell.step(theta, S, np.repeat(x[None], S.shape[0], 0)), s, rng)
        I, eI = _fd_jacobian(lambda T: cell.step(T, np.repeat(s[None], T.shape[0], 0),
                                                 np.repeat(x[None], T.shape[0], 0)), theta, rng)
        found["D"].append((lin.D[0], D, eD, Dp))
        found["I"].append((lin.I.dense()[0], I, eI, Ip))
    rows = []
    for key, items in found.items():
        num, fd, err, pattern = (np.stack(a) for a in zip(*items))
        rows.append(_row(cell, Comparison.of(f"{key} vs fd", num, fd, 2 * err + g * np.maximum(1.0, np.abs(fd)))))
        out_val, out_err = np.abs(fd[:, ~pattern[0]]), 2 * err[:, ~pattern[0]]
        worst = float(np.max(out_val, initial=0.0))
        rows.append(_row(cell, Comparison(
            f"nz({key}) within pattern", worst, worst / max(float(np.max(np.abs(fd))), TINY),
            float(np.max(out_err, initial=0.0)) / max(float(np.max(np.abs(fd))), TINY),
            float(np.max(out_val / (out_err + TINY), initial=0.0)))))
    return rows


def check_snap_exact(cell: Cell, rng, steps: int = 12, loss: str = "mse") -> list[dict]:
    """SnAp-n at ``n*`` against RTRL on one random sequence (THEORY §4: equal when the pattern is
    right).  Bound ``2γ_N G_abs`` as for RTRL against BPTT (:func:`~.gradcheck.rounding_bound`)."""
    rng = as_generator(rng)
    n_star = exact_order(cell)
    readout = LinearReadout(cell.k, 2 if loss == "mse" else 3, loss)
    theta, phi = cell.init(rng), readout.init(rng)
    xs = rng.standard_normal((steps, 1, cell.m))
    ys = rng.standard_normal((steps, 1, 2)) if loss == "mse" else rng.integers(0, 3, (steps, 1))
    g = {name: run_sequence(cell, theta, readout, phi, xs, ys, make_estimator(name, **opts)).grad_theta[0]
         for name, opts in (("rtrl", {}), ("snap", {"n": max(1, n_star)}))}
    rb = np.maximum(rounding_bound(cell, theta, readout, phi, xs, ys)[0], TINY)
    c = Comparison.of(f"snap-{n_star} (n*) vs rtrl", g["snap"], g["rtrl"], 2 * rb)
    return [_row(cell, c, steps, loss)]


def check_gradients(cell, seed=0, steps=(1, 7), losses=("mse", "xent"), hidden: int = 3,
                    inputs: int = 2, points: int = 2) -> dict:
    """Every check of this module on one cell.

    Parameters
    ----------
    cell : Cell, str or callable
        A cell object, a registered name, or a factory (built at ``hidden``, ``inputs``).
    seed : int or numpy.random.Generator
    steps : sequence of int
        Sequence lengths for RTRL = BPTT = finite differences.
    losses : sequence of str
        ``"mse"`` and/or ``"xent"``.

    Returns
    -------
    dict
        ``{"passed": bool, "checks": [check rows]}`` (print with :func:`~.gradcheck.format_table`).
    """
    cell = as_cell(cell, hidden, inputs)
    rng = as_generator(seed)
    rows = check_patterns(cell, rng, points) + check_snap_exact(cell, rng)
    for T in steps:
        for loss in losses:
            rows += check_cell(cell, int(T), loss, rng)
    return {"passed": all(r["passed"] for r in rows), "checks": rows}


def assert_gradients_correct(cell, seed=0, **options) -> dict:
    """Raise ``AssertionError`` with a readable table unless every check of :func:`check_gradients`
    passes; returns the result otherwise.  ``options`` go to :func:`check_gradients`.

    Examples
    --------
    >>> from rtrl_validation import assert_gradients_correct
    >>> result = assert_gradients_correct("elman", seed=1, steps=(3,))
    >>> result["passed"]
    True
    """
    result = check_gradients(cell, seed, **options)
    if not result["passed"]:
        failed = [r["comparison"] for r in result["checks"] if not r["passed"]]
        raise AssertionError(f"gradient checks failed ({', '.join(dict.fromkeys(failed))}):\n"
                             + format_table(result))
    return result
