"""The ``gradients`` experiment: every cell's Jacobians and exact gradients checked three ways.

One task per ``(cell, density)``: sympy's ``F``, ``D``, ``I`` against ``linearize`` (hidden 2, or 1
LSTM unit), sympy's total derivative of the unrolled loss (``T = 3``) against RTRL and BPTT, and
:func:`proofs_checks.gradcheck.check_cell` (RTRL = BPTT = finite differences, TBPTT) at the
configured sizes and sequence lengths for both losses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from rtrl_validation.simulations import CELLS, LinearReadout, make_cell, make_estimator, run_sequence
from rtrl_validation.simulations.config import NON_EMPTY, CellName, Density, PositiveInt, one_of
from rtrl_validation.simulations.experiments.base import Experiment, Task, TaskResult, Verdict
from rtrl_validation.simulations.experiments.schema import Names, TaskSchema
from rtrl_validation.simulations.memory import cell_size, floats_bytes, saturating

from .gradcheck import check_cell, rounding_bound
from .symbolic import Comparison, check_jacobians, unrolled_gradient

LOSSES = ("mse", "xent")


@dataclass(frozen=True)
class GradientsConfig:
    """The ``gradients`` experiment's config (one task per cell and density)."""

    cells: Annotated[list[CellName], NON_EMPTY]
    hidden: PositiveInt
    inputs: PositiveInt
    steps: Annotated[list[PositiveInt], NON_EMPTY]
    densities: Annotated[list[Density], NON_EMPTY]
    symbolic_losses: list[Annotated[str, one_of(LOSSES, "loss")]]


@saturating
def gradcheck_memory(cell: str, hidden: int, inputs: int, steps, density: float = 1.0) -> float:
    """Bytes :func:`~.gradcheck.check_cell` needs at the longest of ``steps``: finite differences
    dominate (``22 p`` probes of ``θ``, ``p`` numbers each, held about three times over: the probe
    list, its stacked copy and the cell's unpacked weights, run as one batch over the sequence);
    RTRL's ``J`` and the rounding bound's ``|J|`` beside them.  Measured: elman, hidden 30,
    ``T = 20``: 470 MB peak above the interpreter's, estimate 560 MB."""
    k, p = cell_size(cell, hidden, inputs, density)
    T, probes = max(steps), 22 * p + 1
    return floats_bytes(probes * (3 * p + 2 * k + T * (inputs + 3)) + 3 * k * p + T * (3 * k + inputs))


def symbolic_checks(name: str, density: float, losses, rng: np.random.Generator) -> list[dict]:
    """sympy checks at the small size (2 units; 1 LSTM unit), as check dicts."""
    hidden = 1 if name == "lstm" else 2
    cell = make_cell(name, hidden, 1, density=density, mask_seed=1)
    comps = [(c, 1, "-") for c in check_jacobians(cell, rng)]
    for loss in losses:
        readout = LinearReadout(cell.k, 2, loss)
        theta, phi = cell.init(rng), readout.init(rng)
        xs = rng.standard_normal((3, 1, 1))
        ys = rng.integers(0, 2, (3, 1)) if loss == "xent" else rng.standard_normal((3, 1, 2))
        ref = unrolled_gradient(cell, readout, phi, theta, xs[:, 0], ys[:, 0])
        bound = 2 * np.maximum(rounding_bound(cell, theta, readout, phi, xs, ys)[0], np.finfo(float).tiny)
        for est in ("rtrl", "bptt"):
            g = run_sequence(cell, theta, readout, phi, xs, ys, make_estimator(est)).grad_theta[0]
            comps.append((Comparison.of(f"{est} vs sympy unrolled", g, ref, bound), 3, loss))
    return [{"cell": name, "density": density, "hidden": hidden, "inputs": 1, "steps": T, "loss": loss,
             "comparison": c.name, "max_abs_error": c.max_abs_error, "max_rel_error": c.max_rel_error,
             "bound": c.bound, "ratio": c.ratio, "passed": c.passed} for c, T, loss in comps]


class GradientsExperiment(Experiment):
    name = "gradients"
    description = ("Jacobians and exact gradients of every cell: sympy, RTRL, BPTT, TBPTT and "
                   "Richardson finite differences agree within derived bounds")
    profiles = {
        "quick": {"cells": list(CELLS), "hidden": 4, "inputs": 3, "steps": [1, 7, 60],
                  "densities": [1.0, 0.5], "symbolic_losses": ["mse"]},
        "full": {"cells": list(CELLS), "hidden": 8, "inputs": 4, "steps": [1, 7, 60, 200],
                 "densities": [1.0, 0.5, 0.1], "symbolic_losses": ["mse", "xent"]},
    }

    Config = GradientsConfig
    schemas = {"cell": TaskSchema(data=Names(("checks", "p", "k")))}

    def task_memory(self, cfg) -> float:
        return gradcheck_memory(cfg["cell"], cfg["hidden"], cfg["inputs"], cfg["steps"], cfg["density"])

    def tasks(self, config):
        base = {k: config[k] for k in ("hidden", "inputs", "steps", "symbolic_losses")}
        return [Task(f"{cell}-d{density:g}", dict(base, cell=cell, density=float(density)))
                for cell in config["cells"] for density in config["densities"]]

    def run_task(self, task, seed, progress=None):
        cfg = task.config
        rng = np.random.default_rng(seed)
        checks = symbolic_checks(cfg["cell"], cfg["density"], cfg["symbolic_losses"], rng)
        cell = make_cell(cfg["cell"], cfg["hidden"], cfg["inputs"], density=cfg["density"],
                         mask_seed=int(rng.integers(2**31)))
        n = len(cfg["steps"]) * len(LOSSES)
        for i, (T, loss) in enumerate((T, loss) for T in cfg["steps"] for loss in LOSSES):
            checks += check_cell(cell, T, loss, rng)
            if progress is not None:
                progress((i + 1) / n)
        blown = [c for c in checks if not np.isfinite(c["max_abs_error"]) or not np.isfinite(c["bound"])]
        if blown:
            first = min(blown, key=lambda c: c["steps"])
            return TaskResult(data={"checks": checks, "p": cell.p, "k": cell.k}, status="diverged",
                              reason=f"gradients not finite at step T = {first['steps']} "
                                     f"({first['comparison']}, {first['loss']})")
        verdicts = []
        for comp in dict.fromkeys(c["comparison"] for c in checks):
            group = [c for c in checks if c["comparison"] == comp]
            worst = max(group, key=lambda c: c["ratio"])
            ok = all(c["passed"] for c in group)
            verdicts.append(Verdict(
                f"{cfg['cell']} d={cfg['density']:g}: {comp}", ok,
                f"{len(group)} case(s); worst error/bound ratio {worst['ratio']:.2g} "
                f"(T={worst['steps']}, {worst['loss']}, max rel. error {worst['max_rel_error']:.2g}, "
                f"bound {worst['bound']:.2g})", value=worst["ratio"], bound=1.0))
        return TaskResult(data={"checks": checks, "p": cell.p, "k": cell.k}, verdicts=verdicts)
