"""Report section of the ``gradients`` experiment (docs/architecture.md "The checks a report carries", 1 and 2).

Every comparison's worst error-to-bound ratio per cell; a ratio ≤ 1 passes.  The bounds are the
float64 rounding bound ``γ_N G_abs`` for exact-vs-exact comparisons and twice the Richardson error
estimate for finite differences (see :mod:`proofs_checks.gradcheck`).
"""
from __future__ import annotations

import re

import numpy as np

from rtrl_validation.simulations.experiments.base import FAIL, INCONCLUSIVE, PASS, Verdict

from . import style
from .sections import Figure, Section, Table

METHOD = ("Each cell is written again in sympy from THEORY §3; its symbolic Jacobians D = ∂F/∂s and "
          "I = ∂F/∂θ and the total derivative of the unrolled loss (T = 3, chain rule over the "
          "expression graph) are compared with the engine. At the configured sizes, forward RTRL, the "
          "BPTT adjoint and Richardson-extrapolated central finite differences must agree; TBPTT(T) must "
          "equal BPTT, and TBPTT(τ < T) must equal forward RTRL with the influence restarted every τ "
          "steps while differing from BPTT. Every comparison passes when each entry's error is within "
          "its bound: the float64 rounding bound γ_N·Σ|c_t||J|_t for exact methods, twice the finite-"
          "difference error estimate otherwise.")
EQUATION = (r"$J_t = D_t J_{t-1} + I_t,\quad \lambda_t = c_t + \lambda_{t+1} D_{t+1},\quad "
            r"\frac{dL_T}{d\theta} = \sum_t c_t J_t = \sum_t \lambda_t I_t$")


#: what each comparison kind (its first word) claims
CLAIMS = {"sympy": "the engine's D, I and unrolled derivative equal sympy's (THEORY §2.3, §3)",
          "rtrl": "forward-mode RTRL equals the derivative of the unrolled loss",
          "bptt": "the BPTT adjoint equals the derivative of the unrolled loss",
          "tbptt(τ)": "TBPTT(τ) equals RTRL with the influence restarted every τ steps (and BPTT when τ = T)"}
RESOLUTION = ("float64 rounding bound γ_N·Σ|c_t||J|_t for exact methods, twice the Richardson error estimate "
              "for finite differences; a 1% error in one gate derivative exceeds both (mutation tests)")
CONTROL = ("mutation tests (tests/test_gradients.py): a sign flip or a 1.01 scaling of one row block of D or of "
           "one gate of I fails the sympy, RTRL-vs-FD and BPTT-vs-FD comparisons on every cell")


def kind(comparison: str) -> str:
    """The comparison with its truncation length generalised: ``tbptt(20) != bptt`` -> ``tbptt(τ) != bptt``."""
    return re.sub(r"\(\d+\)", "(τ)", comparison)


def analyse(records: list[dict]) -> Section:
    ok = [r for r in records if r["status"] == "ok"]
    checks = [c for r in ok for c in r["data"]["checks"]]
    verdicts = []
    for kd in dict.fromkeys(kind(c["comparison"]) for c in checks):
        group = [c for c in checks if kind(c["comparison"]) == kd]
        worst = max(group, key=lambda c: c["ratio"])
        n_fail = sum(not c["passed"] for c in group)
        differs = "!=" in kd
        # the truncation check is a resolution control: where the rounding bound is too loose to show
        # a truncation effect, the comparison cannot resolve it (INCONCLUSIVE), nothing is refuted
        status = PASS if n_fail == 0 else (INCONCLUSIVE if differs else FAIL)
        verdicts.append(Verdict(
            kd, status,
            ("the rounding bound is too loose to resolve the truncation's effect in some cases: " if differs
             and n_fail else "")
            + f"{len(group) - n_fail}/{len(group)} cases pass over {len({c['cell'] for c in group})} cells; worst "
            f"error/bound {worst['ratio']:.2g} ({worst['cell']}, d={worst['density']:g}, T={worst['steps']}, "
            f"{worst['loss']})", value=worst["ratio"], bound=1.0,
            rule=("every case: the truncation changes the gradient by more than 10⁴ rounding bounds" if differs
                  else "every entry of every case within its bound (error/bound ≤ 1)"),
            claim=CLAIMS.get(kd.split(" ")[0], "the exact gradients agree") if not differs
            else "truncation drops the dependences that cross a block boundary, so TBPTT(τ < T) ≠ BPTT",
            source="THEORY §2", statistic="max over entries of |a − b| / bound",
            resolution=RESOLUTION, control=CONTROL, family=f"gradients ({len(group)} cases, all must pass)"))
    failures = [f"{r['task']}: {r['status']}: {r['reason']}" for r in records if r["status"] != "ok"]
    cells = list(dict.fromkeys(c["cell"] for c in checks))

    rows = []
    for r in ok:
        for comp in dict.fromkeys(c["comparison"] for c in r["data"]["checks"]):
            group = [c for c in r["data"]["checks"] if c["comparison"] == comp]
            worst = max(group, key=lambda c: c["ratio"])
            rows.append([r["config"]["cell"], f"{r['config']['density']:g}", comp, len(group),
                         f"{max(c['max_rel_error'] for c in group):.2e}", f"{worst['bound']:.1e}",
                         f"{worst['ratio']:.2g}", "PASS" if all(c["passed"] for c in group) else "FAIL"])
    table = Table("Worst case of every comparison per cell and density (rel. error = max|a − b| / max|b|; "
                  "bound at the worst entry in the same units; ratio = max over entries of error / bound).",
                  ["cell", "density", "comparison", "cases", "max rel. error", "bound", "error/bound", "verdict"],
                  rows)

    kinds = list(dict.fromkeys(kind(c["comparison"]) for c in checks if "!=" not in c["comparison"]))
    fig = style.figure(height=0.28 * len(kinds) + 1.0)
    ax = fig.add_subplot()
    for i, cell in enumerate(cells):
        for j, kd in enumerate(kinds):
            vals = [c["ratio"] for c in checks if c["cell"] == cell and kind(c["comparison"]) == kd]
            if vals:
                y = j + (i - (len(cells) - 1) / 2) * 0.12
                ax.scatter(np.maximum(vals, 1e-6), np.full(len(vals), y), s=10, **style.series(i),
                           label=cell if j == 0 else None)
    ax.axvline(1.0, color="k", lw=1, ls="--")
    ax.set_xscale("log")
    ax.set_yticks(range(len(kinds)), kinds)
    ax.invert_yaxis()
    ax.set_xlabel("relative error / bound (passes ≤ 1)")
    fig.legend(loc="outside lower center", ncol=len(cells))

    n_checks = len(checks)
    notes = [f"{n_checks} comparisons over {len(cells)} cells; sizes {ok[0]['config']['hidden'] if ok else '-'} "
             f"units × {ok[0]['config']['inputs'] if ok else '-'} inputs, T ∈ {ok[0]['config']['steps'] if ok else '-'}; "
             "the 'tbptt(τ) != bptt' checks pass when truncation changes the gradient by more than 10⁴ rounding bounds."]
    config = records[0]["experiment_config"] if records else {}
    return Section("Exact gradients: sympy, RTRL, BPTT, TBPTT and finite differences", "gradients", METHOD,
                   EQUATION, config, verdicts, [table], [Figure(
                       "Error-to-bound ratio of every comparison, by comparison kind and cell (dashed: the bound; "
                       "ratios below 1e-6 drawn at 1e-6).",
                       fig)], notes, failures)
