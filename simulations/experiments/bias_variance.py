"""Bias and variance of SnAp-n, UORO, KF-RTRL and RFLO against the exact RTRL shadow (THEORY.md §4).

For a fixed ``θ`` and one data path, every estimator runs beside exact RTRL; at each step ``t``
the online gradient ``ĝ_t = c_t J̃_t`` is compared with ``g_t = c_t J_t``.  Deterministic
estimators (SnAp-n, RFLO) run once; UORO and KF-RTRL run ``R`` replicates on the leading batch
axis (same ``θ``, same data, independent signs).  A task stores, per estimator and step, the
replicate statistics from which :mod:`analysis.bias_variance` forms the relative bias
``‖E ĝ − g‖/‖g‖``, the normalised variance ``E‖ĝ − E ĝ‖²/‖g‖²`` and the cosine with jackknife
confidence intervals:

* ``sq_err.<est>`` (``R × T``): ``‖ĝ_{r,t} − g_t‖²``;
* ``proj.<est>`` (``R × T``): ``⟨ĝ_{r,t} − g_t, ḡ_t − g_t⟩`` with ``ḡ_t`` the replicate mean;
* ``cos.<est>`` (``R × T``): ``⟨ĝ_{r,t}, g_t⟩ / (‖ĝ_{r,t}‖ ‖g_t‖)``;
* ``g_norm`` (``T``): ``‖g_t‖``;
* ``dir.<est>``, ``dirctl.<est>``, ``cos_last.<est>``, ``cos_matched.uoro``: the last step's
  directional errors, of the estimator and of its biased control, and cosines (see
  :meth:`BiasVarianceExperiment._directional`), from which :mod:`analysis.bias_variance` decides
  unbiasedness (equivalence per direction, Holm over the section) and SnAp-1 against UORO at
  matched cost.

Tasks: one per setting ``(hidden k, density d, contraction ρ)`` of three one-at-a-time sweeps
around a base point (``instances`` independent θ, mask and data draws on the hidden-size sweep),
plus an ``identities`` task (exact enumeration over signs, the statistical test with its power
shown on biased signs, SnAp-1 = RTRL for diagonal ``D``).  Verdicts decided in a task are exact
ones: SnAp-n = RTRL for ``n ≥ n*`` within the float64 rounding bound; SnAp biased below ``n*``
and its bias decreasing in ``n``; the identities.  Statistical verdicts are decided in the
analysis, over the whole run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t

from ..cells import make_cell
from ..estimators import make_estimator, parse_estimator
from ..estimators.enumeration import expected_influence
from ..estimators.masked import UNIT_ROUNDOFF, MaskedInfluence, exact_order, influence_rounding_bound
from ..estimators.signs import ShiftedSigns
from ..data.copy_task import IGNORE, CopyTask, MaskedReadout
from ..data.var1 import VAR1Teacher
from ..curriculum import LengthCurriculum
from ..flops import estimator_flops
from ..readouts import LinearReadout
from ..config import NON_EMPTY, CellName, Density, EstimatorSpec, Fraction, NonNegativeInt, Positive, PositiveInt, Rule, config_error, interval
from ..memory import cell_size, estimator_floats, floats_bytes
from ..optimizers import Schedule, make_optimizer
from ..training import OnlineTrainer
from .learning import LearningRecorder
from . import checks
from .base import Experiment, Task, TaskResult, Verdict
from .schema import Names, TaskSchema

STAT_ARRAYS = ("sq_err", "proj", "cos")
#: batch means per Monte Carlo test (see :func:`mean_z_test`)
BATCH_MEANS = 32


def mean_z_test(samples: np.ndarray, exact: np.ndarray, alpha: float,
                groups: int = BATCH_MEANS) -> tuple[float, float, int]:
    """Family-wise test of ``E[samples] = exact`` (``samples``: ``R × N``, ``exact``: ``N``).

    The replicates are first averaged in ``groups`` batches of equal size (batch means are much
    closer to normal than single rank-one estimates, whose tails are heavy); then
    ``z_e = (mean_e − exact_e) / SE_e`` with ``SE_e = sd_e/√groups`` over the batch means plus a
    float64 rounding floor ``64·u·(|exact_e| + |mean_e|)`` (entries with no variance are compared
    to rounding), and the test rejects when ``max |z|`` exceeds the Student-t quantile with
    ``groups − 1`` degrees of freedom at ``1 − α/(2N)`` (Bonferroni over the ``N`` entries, valid
    under any dependence).  ``groups=0`` (or too few replicates) uses the replicates themselves
    and the normal quantile.  Returns ``(max |z|, threshold, N)``.
    """
    samples = samples.reshape(samples.shape[0], -1)
    exact = np.asarray(exact, dtype=float).ravel()
    R, N = samples.shape
    if groups and R >= 2 * groups:
        samples = samples[: (R // groups) * groups].reshape(groups, R // groups, N).mean(axis=1)
        quantile = student_t.ppf(1.0 - alpha / (2.0 * N), groups - 1)
    else:
        quantile = norm.ppf(1.0 - alpha / (2.0 * N))
    n = samples.shape[0]
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / np.sqrt(n)
    floor = 64 * UNIT_ROUNDOFF * (np.abs(exact) + np.abs(mean))
    diff = np.abs(mean - exact)
    z = np.where(diff > 0, diff / np.maximum(np.hypot(se, floor), np.finfo(float).tiny), 0.0)
    return float(z.max()), float(quantile), N


def measure(cell, theta, readout, phi, xs, ys, estimators, replicates, rng, influences=False, bound=True):
    """Run exact RTRL and ``estimators`` (labels -> instances) along one data path.

    ``xs``: ``T × m``, ``ys``: ``T × n_out`` (or ``T`` class indices); ``θ``: ``(p,)``.  Stochastic estimators run
    ``replicates`` copies batched.  Returns ``(stats, g_norm, finals)``: ``stats[label][name]``
    (``R_e × T``, ``name`` in :data:`STAT_ARRAYS`), ``g_norm`` (``T``), and ``finals`` with the
    last step's exact influence ``"J"`` (``k × p``), gradient ``"g"`` (``p``), the rounding bound
    ``"bound"`` of ``J`` (when ``bound``) and per label ``(J̃_T, ĝ_T)`` (``R_e × k × p``, or
    ``None`` for stochastic estimators unless ``influences``; ``R_e × p``).  A path on which the
    exact or an estimated gradient stops being finite ends there: ``finals`` is then only
    ``{"diverged_at": t}`` (the step, from 1).
    """
    T, k = xs.shape[0], cell.k
    exact = make_estimator("rtrl")
    sizes = {lab: (replicates if e.capabilities.stochastic else 1) for lab, e in estimators.items()}
    states = {lab: e.init(cell, theta, sizes[lab], rng) for lab, e in estimators.items()}
    ex = exact.init(cell, theta, 1)
    stats = {lab: {n: np.empty((sizes[lab], T)) for n in STAT_ARRAYS} for lab in estimators}
    g_norm = np.empty(T)
    s1, sR, lins, last = np.zeros((1, k)), np.zeros((replicates, k)), [], {}
    batched = any(v > 1 for v in sizes.values())
    for t in range(T):
        lin1 = cell.linearize(theta, s1, xs[t][None, :])
        linR = cell.linearize(theta, sR, np.broadcast_to(xs[t], (replicates, xs.shape[1]))) if batched else None
        s1 = lin1.state
        sR = linR.state if batched else sR
        lins.append(lin1)
        credit = readout.evaluate(phi, s1, np.asarray(ys[t])[None])[1]
        ex, g = exact.step(ex, lin1, credit)
        g = g[0]
        g_norm[t] = np.linalg.norm(g)
        for lab, est in estimators.items():
            R = sizes[lab]
            states[lab], gh = est.step(states[lab], lin1 if R == 1 else linR, np.broadcast_to(credit, (R, k)), rng)
            diff = gh - g
            st = stats[lab]
            st["sq_err"][:, t] = np.einsum("rp,rp->r", diff, diff)
            st["proj"][:, t] = diff @ diff.mean(axis=0)
            st["cos"][:, t] = (gh @ g) / np.maximum(np.linalg.norm(gh, axis=1) * g_norm[t], np.finfo(float).tiny)
            if t == T - 1:
                keep = influences or R == 1
                last[lab] = (est.influence(states[lab]).copy() if keep else None, gh.copy())
            if not np.all(np.isfinite(gh)):
                return stats, g_norm, {"diverged_at": t + 1}
        if not np.all(np.isfinite(g)):
            return stats, g_norm, {"diverged_at": t + 1}
    finals = {"J": exact.influence(ex)[0].copy(), "g": g,
              "bound": 2.0 * influence_rounding_bound(lins, k)[0] if bound else None, **last}
    return stats, g_norm, finals


#: the evidence fields of a deterministic check against the float64 rounding bound
EXACT = {"source": "THEORY §4", "statistic": "max over entries of |J̃_T − J_T| / rounding bound",
         "resolution": "float64 rounding bound of J_T (deterministic: no sampling error)"}


def snap_identity_verdicts(labels_orders, finals, n_star) -> list[Verdict]:
    """SnAp-n = RTRL within ``2·E_T`` for ``n ≥ n*``; beyond 100× the bound somewhere for ``n < n*``.

    The bound is propagated through ``|D_t|`` and can exceed ``|J_T|`` itself on long paths of a
    dense network (``‖|D|‖ > 1`` although ``‖D‖ < 1``): a check the bound cannot resolve is
    INCONCLUSIVE — equality when the bound is at least ``|J_T|`` at every entry (unless the
    difference is exactly 0), bias when 100 bounds exceed ``|J_T|`` at every entry."""
    out, J, bound = [], finals["J"], finals["bound"]
    for lab, n in labels_orders:
        err = np.abs(finals[lab][0][0] - J)
        ratio = float(np.max(np.where(bound > 0, err / np.maximum(bound, np.finfo(float).tiny),
                                      np.where(err > 0, np.inf, 0.0))))
        scale = f" (bound / |J_T| ≥ {float(np.min(bound / np.maximum(np.abs(J), np.finfo(float).tiny))):.2g} at every entry)"
        if n >= n_star:
            informative = err.max() == 0.0 or bool(np.any(bound < np.abs(J)))
            out.append(Verdict(f"{lab} = RTRL (n ≥ n* = {n_star})",
                               (ratio <= 1.0) if informative or ratio > 1.0 else "INCONCLUSIVE",
                               f"max|J̃_T − J_T| = {err.max():.2e}, {ratio:.3g} × the float64 rounding bound"
                               + ("" if informative else scale + ": the bound cannot resolve equality"),
                               ratio, 1.0, **EXACT, rule="every entry within 1 × the rounding bound",
                               claim="SnAp-n is exact RTRL once n reaches the diameter of the recurrent graph"))
        else:
            informative = bool(np.any(100.0 * bound < np.abs(J)))
            out.append(Verdict(f"{lab} is biased (n < n* = {n_star})",
                               (ratio > 100.0) if informative else "INCONCLUSIVE",
                               f"max|J̃_T − J_T| = {err.max():.2e}, {ratio:.3g} × the rounding bound "
                               "(biased when some entry exceeds 100×)"
                               + ("" if informative else scale + ": 100 bounds exceed |J_T| everywhere"),
                               ratio, 100.0, **EXACT,
                               rule="some entry beyond 100 × the rounding bound",
                               claim="SnAp-n below the exact order is biased (influence outside its mask)"))
    return out


SnapOrder = Annotated[int, Rule("a SnAp order n >= 1", "SnAp orders n >= 1", lambda v: v >= 1)]


@dataclass(frozen=True)
class BiasVarianceConfig:
    """The ``bias-variance`` experiment's config: three one-at-a-time sweeps (hidden sizes,
    densities, contraction constants) around ``(base_hidden, base_density, base_rho)``."""

    cell: CellName
    inputs: PositiveInt
    outputs: PositiveInt
    steps: PositiveInt
    replicates: PositiveInt
    orders: list[SnapOrder]
    estimators: list[EstimatorSpec]
    hidden: list[PositiveInt]
    densities: list[Density]
    rhos: list[float]
    base_hidden: PositiveInt
    base_density: Density
    base_rho: float
    alpha: Fraction
    shift: Fraction
    instances: PositiveInt
    directions: PositiveInt
    bias_margin: Fraction
    memory_train_steps: NonNegativeInt
    memory_rho: Fraction
    memory_teacher_rho: Fraction
    memory_input_ar: Fraction
    memory_lr: Positive
    copy_train_steps: NonNegativeInt
    copy_lr: Positive
    copy_alphabet: Annotated[int, Rule("an alphabet of >= 2 symbols", "alphabets of >= 2 symbols", lambda v: v >= 2)]
    copy_length: PositiveInt
    check_hidden: PositiveInt
    check_steps: PositiveInt
    check_replicates: PositiveInt
    enumeration_steps: Annotated[int, interval(1, 5, "[]", "an integer (4^T sign sequences)", "integers")]


class BiasVarianceExperiment(Experiment):
    name = "bias-variance"
    description = ("Relative bias, normalised variance and cosine of SnAp-n, UORO, KF-RTRL and RFLO "
                   "against exact RTRL at fixed θ and data, over t, k, density, n and ρ (THEORY §4)")
    profiles = {
        "quick": {
            "cell": "contractive-elman", "inputs": 3, "outputs": 2, "steps": 40, "replicates": 256,
            "orders": [1, 2, 3], "estimators": ["uoro", "kf-rtrl", "rflo"],
            "hidden": [8, 16, 32], "densities": [1.0, 0.5, 0.25, 0.1], "rhos": [0.5, 0.7, 0.9, 0.97],
            "base_hidden": 16, "base_density": 0.25, "base_rho": 0.9, "alpha": 0.01, "shift": 0.5,
            "instances": 4, "directions": 3, "bias_margin": 0.1, "memory_train_steps": 1500,
            "memory_rho": 0.97, "memory_teacher_rho": 0.95, "memory_input_ar": 0.9, "memory_lr": 0.02,
            "copy_train_steps": 3000, "copy_lr": 0.01, "copy_alphabet": 2, "copy_length": 5,
            "check_hidden": 3, "check_steps": 6, "check_replicates": 10000, "enumeration_steps": 4,
        },
        "full": {
            "cell": "contractive-elman", "inputs": 3, "outputs": 2, "steps": 100, "replicates": 2048,
            "orders": [1, 2, 3, 4], "estimators": ["uoro", "kf-rtrl", "rflo"],
            "hidden": [8, 16, 32, 64], "densities": [1.0, 0.5, 0.25, 0.1], "rhos": [0.3, 0.6, 0.9, 0.97],
            "base_hidden": 32, "base_density": 0.25, "base_rho": 0.9, "alpha": 0.01, "shift": 0.5,
            "instances": 8, "directions": 8, "bias_margin": 0.1, "memory_train_steps": 20000,
            "memory_rho": 0.97, "memory_teacher_rho": 0.95, "memory_input_ar": 0.9, "memory_lr": 0.02,
            "copy_train_steps": 20000, "copy_lr": 0.01, "copy_alphabet": 2, "copy_length": 5,
            "check_hidden": 3, "check_steps": 6, "check_replicates": 40000, "enumeration_steps": 4,
        },
    }

    Config = BiasVarianceConfig
    _point = TaskSchema(
        data=Names(("hidden", "k", "p", "density", "rho", "contraction", "exact_order", "orders", "estimators",
                    "replicates", "stored", "steps", "base", "instance", "stochastic", "memory", "matched_samples"),
                   ("memory_task", "curriculum_length")),
        arrays=Names(("g_norm", *(f"{name}.*" for name in STAT_ARRAYS)),
                     ("dir.*", "dirctl.*", "cos_last.*", "cos_matched.uoro")))
    schemas = {
        "identities": TaskSchema(data=Names(("kind",))),
        "sweep": _point,
        "memory": _point,      # a long-memory setting (VAR teacher or copy task) at θ₀ or after online RTRL
    }

    def task_kind(self, task_config: dict) -> str:
        st = task_config["setting"]
        return "identities" if st is None else ("memory" if st.get("memory") else "sweep")

    # ------------------------------------------------------------------ config
    def validate(self, config):
        c = config
        if c["steps"] < 2:
            raise config_error("steps", f"must be >= 2, got {c['steps']!r}")
        if c["replicates"] < 3:
            raise config_error("replicates", f"must be >= 3, got {c['replicates']!r}")
        if c["cell"] == "contractive-elman" and c["copy_train_steps"] > 0 and c["steps"] < 2 * c["copy_length"] + 1:
            raise config_error("steps", f"must be >= 2·copy_length + 1 = {2 * c['copy_length'] + 1} (one copy "
                               f"episode with its recall phase), got {c['steps']!r}")
        if c["cell"] == "contractive-elman":
            for r in list(c["rhos"]) + [c["base_rho"]]:
                if not 0.0 < r < 1.0:
                    raise config_error("rhos", f"contraction constant rho must be in (0, 1), got {r!r}")
        elif c["rhos"]:
            raise config_error("rhos", f"a rho sweep needs cell 'contractive-elman', not {c['cell']!r} (set rhos = [])")
        for spec in c["estimators"]:
            checks.estimator_for(spec, c["cell"])
            if spec.startswith(("rtrl", "bptt", "tbptt")):
                raise config_error("estimators", f"{spec!r} is not an approximation of RTRL's influence")

    def task_memory(self, config) -> float:
        """Per estimator the ``R × T`` statistics and the batched states of the stochastic ones; the
        exact RTRL shadow and the ``T`` linearizations kept for the rounding bound.  The identities
        task: ``check_replicates`` influences of the small check cell."""
        if config["setting"] is None:
            k, p = cell_size(config["cell"], config["check_hidden"], config["inputs"])
            R = config["check_replicates"]
            return floats_bytes(4 * R * (k * p + p + k * config["inputs"]) + 3 * R * config["check_steps"])
        st = config["setting"]
        k, p = cell_size(config["cell"], st["hidden"], config["inputs"], st["density"])
        R, T, m = config["replicates"], config["steps"], config["inputs"]
        n_est = len(config["orders"]) + 1 + len(config["estimators"])
        states = sum(estimator_floats(spec, k, p, m, R, T, st["density"]) for spec in config["estimators"])
        snaps = sum(estimator_floats(f"snap-{n}", k, p, m, 1, T, st["density"]) for n in config["orders"])
        training = 0
        if st.get("memory") == "trained":     # online RTRL on the long-memory process before measuring
            training = estimator_floats("rtrl", k, p, m, 1, T, st["density"]) + 4 * (p + k * config["outputs"])
        return floats_bytes(states + snaps + training + 2 * R * (k * p + p) + n_est * 3 * R * T
                            + 3 * R * (1 + config["directions"]) * len(config["estimators"])
                            + T * k * (k + m + 2) + 3 * k * p)

    def settings(self, config) -> list[tuple[int, float, float | None]]:
        """The ``(hidden, density, rho)`` points of the three one-at-a-time sweeps, deduplicated."""
        h0, d0 = config["base_hidden"], float(config["base_density"])
        r0 = float(config["base_rho"]) if config["cell"] == "contractive-elman" else None
        pts = [(h, d0, r0) for h in config["hidden"]] + [(h0, float(d), r0) for d in config["densities"]]
        pts += [(h0, d0, float(r)) for r in config["rhos"]]
        return list(dict.fromkeys(pts))

    def tasks(self, config):
        """The identities task, then one task per sweep point and instance: the hidden-size sweep
        (which holds the base point) runs ``instances`` independent (θ, mask, data) draws per
        point, the density and ρ sweeps one."""
        # the identities task's Monte Carlo tests share the level α (Bonferroni over its 4 tests)
        out = [Task("identities", dict(config, setting=None, test_alpha=config["alpha"] / 4))]
        d0, r0 = float(config["base_density"]), config["base_rho"]
        for h, d, r in self.settings(config):
            key = f"h{h}-d{d:g}" + ("" if r is None else f"-rho{r:g}")
            n = config["instances"] if d == d0 and r in (r0, None) else 1
            for i in range(n):
                out.append(Task(key + (f"-i{i}" if n > 1 else ""),
                                dict(config, setting={"hidden": h, "density": d, "rho": r, "instance": i})))
        if config["cell"] == "contractive-elman":
            for problem, prefix, steps in (("var", "memory", "memory_train_steps"), ("copy", "copy", "copy_train_steps")):
                if config[steps] <= 0:
                    continue
                for i in range(config["instances"]):
                    for when in ("initial", "trained"):
                        out.append(Task(f"{prefix}-{when}-i{i}", dict(config, setting={
                            "hidden": config["base_hidden"], "density": d0, "rho": config["memory_rho"],
                            "instance": i, "memory": when, "memory_task": problem})))
        return out

    # ------------------------------------------------------------------ run
    def run_task(self, task, seed, progress=None):
        if task.config["setting"] is None:
            return self._identities(task.config, seed)
        return self._sweep_point(task.config, seed)

    def _memory_problem(self, config, instance, train: bool = True):
        """The long-memory setting (THEORY §4 "at a θ reached by training on a long-memory task"):
        a tanh VAR(1) teacher with contraction ``memory_teacher_rho`` and AR(``memory_input_ar``)
        inputs, the student a contractive Elman cell with ``ρ = memory_rho``; θ₀ and one data path
        of ``steps`` from the instance seed, and θ after ``memory_train_steps`` of online RTRL on the
        process (``α_t = memory_lr / (1 + t/1000)^0.75``, projected onto the contraction set).
        Returns ``(cell, readout, (θ₀, φ₀), (θ_T, φ_T) or None if training diverged or ``train`` is
        false, xs, ys, why)``."""
        h, d = config["base_hidden"], float(config["base_density"])
        proc = VAR1Teacher(hidden=h, inputs=config["inputs"], n_out=config["outputs"], activation="tanh",
                           teacher_rho=config["memory_teacher_rho"], ar=config["memory_input_ar"], noise=0.1,
                           seed=10007 + instance)
        cell = make_cell("contractive-elman", h, proc.m, rho=config["memory_rho"], density=d,
                         mask_seed=50021 + instance)
        readout = LinearReadout(cell.k, proc.n_out, proc.loss)
        rng = np.random.default_rng([20011, instance])
        theta0, phi0 = cell.init(rng), readout.init(rng)
        _, xs, ys = proc.sample(proc.init(rng, 1), config["steps"], rng)
        if not train:
            return cell, readout, (theta0, phi0), None, xs[:, 0], ys[:, 0], ""
        trainer = OnlineTrainer(cell, readout, make_estimator("rtrl"), proc,
                                Schedule(config["memory_lr"], 1000.0, 0.75), project=cell.project,
                                record_every=max(config["memory_train_steps"], 1))
        state, traj = trainer.run(trainer.init(theta0[None], phi0[None], rng), config["memory_train_steps"], rng,
                                  checkpoint=False)
        trained = None if traj.diverged_at is not None else (state.theta[0].copy(), state.phi[0].copy())
        why = "" if trained else f"online RTRL training diverged at step {traj.diverged_at}"
        return cell, readout, (theta0, phi0), trained, xs[:, 0], ys[:, 0], why

    def _copy_problem(self, config, instance, train: bool = True):
        """The copy task as a long-memory setting (THEORY §4, §6): a contractive Elman cell with
        ``ρ = memory_rho`` reads the copy task (alphabet ``copy_alphabet``) through a masked softmax
        readout; θ₀ from the instance seed, and θ after ``copy_train_steps`` of online RTRL with Adam
        (``copy_lr``) on the task with its length curriculum (:class:`~simulations.curriculum.LengthCurriculum`,
        the learning experiment's rule; projected onto the contraction set).  The measured path,
        the same at θ₀ and at the trained θ, is ``steps`` of episodes of lengths uniform in
        ``[1, copy_length]``, cut after its last recall step (so that ``g_T ≠ 0``).
        Returns ``(cell, readout, (θ₀, φ₀), (θ_T, φ_T) or None, xs, ys, why, length)`` with
        ``length`` the curriculum length training reached (``None`` without training)."""
        h, d, A = config["base_hidden"], float(config["base_density"]), config["copy_alphabet"]
        measured = CopyTask(A, LengthCurriculum(start=config["copy_length"], spread=config["copy_length"] - 1))
        cell = make_cell("contractive-elman", h, measured.m, rho=config["memory_rho"], density=d,
                         mask_seed=60013 + instance)
        readout = MaskedReadout(LinearReadout(cell.k, measured.n_out, measured.loss))
        rng = np.random.default_rng([30011, instance])
        theta0, phi0 = cell.init(rng), readout.init(rng)
        _, xs, ys = measured.sample(measured.init(rng, 1), config["steps"])
        T = int(np.flatnonzero(ys[:, 0] != IGNORE)[-1]) + 1
        xs, ys = xs[:T, 0], ys[:T, 0]
        if not train:
            return cell, readout, (theta0, phi0), None, xs, ys, "", None
        process, rtrl, steps = CopyTask(A), make_estimator("rtrl"), config["copy_train_steps"]
        recorder = LearningRecorder(cell, readout, rtrl, process, steps)
        trainer = OnlineTrainer(cell, readout, rtrl, process, Schedule(config["copy_lr"]), project=cell.project,
                                record_every=max(steps, 1), optimizer=make_optimizer("adam"),
                                counted=lambda y: y != IGNORE, hooks=[recorder])
        state, traj = trainer.run(trainer.init(theta0[None], phi0[None], rng), steps, rng, checkpoint=False)
        trained = None if traj.diverged_at is not None else (state.theta[0].copy(), state.phi[0].copy())
        why = "" if trained else f"online RTRL training on the copy task diverged at step {traj.diverged_at}"
        return cell, readout, (theta0, phi0), trained, xs, ys, why, int(process.lengths(state.data)[0])

    def _problem(self, config, hidden, density, rho, rng, mask_seed):
        opts = {"density": density, "mask_seed": mask_seed}
        if config["cell"] == "contractive-elman":
            opts["rho"] = rho
        cell = make_cell(config["cell"], hidden, config["inputs"], **opts)
        theta = cell.init(rng)
        readout = LinearReadout(cell.k, config["outputs"])
        phi = readout.init(rng)
        T = config["steps"]
        xs = rng.standard_normal((T, cell.m))
        ys = rng.standard_normal((T, config["outputs"]))
        return cell, theta, readout, phi, xs, ys

    def _sweep_point(self, config, seed):
        st = config["setting"]
        rng = np.random.default_rng(seed)
        length = None
        if st.get("memory_task") == "copy":
            cell, readout, initial, trained, xs, ys, why, length = self._copy_problem(
                config, st["instance"], train=st["memory"] == "trained")
        elif st.get("memory"):
            cell, readout, initial, trained, xs, ys, why = self._memory_problem(config, st["instance"],
                                                                                train=st["memory"] == "trained")
        if st.get("memory"):
            if st["memory"] == "trained" and trained is None:
                return TaskResult(status="diverged", reason=why)
            theta, phi = initial if st["memory"] == "initial" else trained
        else:
            # one network per (k, d, instance)
            mask_seed = 1000 * st["hidden"] + int(round(1000 * st["density"])) + 7919 * st.get("instance", 0)
            cell, theta, readout, phi, xs, ys = self._problem(config, st["hidden"], st["density"], st["rho"],
                                                              rng, mask_seed)
        n_star = exact_order(cell)
        orders = sorted(set(config["orders"]) | ({n_star} if n_star else set()))
        ests = {f"snap-{n}": make_estimator("snap", n=n) for n in orders}
        ests.update({spec: parse_estimator(spec) for spec in config["estimators"]})
        stats, g_norm, finals = measure(cell, theta, readout, phi, xs, ys, ests, config["replicates"], rng)
        if "diverged_at" in finals:
            return TaskResult({"hidden": st["hidden"], "k": cell.k, "p": cell.p}, status="diverged",
                              reason=f"gradients not finite at step {finals['diverged_at']}")

        verdicts = snap_identity_verdicts([(f"snap-{n}", n) for n in orders], finals, n_star)
        T = xs.shape[0]
        late = np.arange(T) >= T // 2
        late &= g_norm > 0                          # steps with a gradient (the copy task's recall phase)
        rb = {n: float(np.mean(np.sqrt(stats[f"snap-{n}"]["sq_err"][0, late]) / g_norm[late])) for n in orders}
        exact_at = [n for n in orders if n >= n_star]
        seq = [rb[n] for n in orders if n < n_star] + ([0.0] if exact_at else [])
        decreasing = all(a > b for a, b in zip(seq, seq[1:]))
        verdicts.append(Verdict("SnAp bias decreases with n", decreasing,
                                "late-window mean relative bias by n: "
                                + ", ".join(f"n={n}: {rb[n]:.3g}" for n in orders), None, None,
                                rule="strictly decreasing in n, 0 from n*", source="THEORY §4, §6",
                                claim="SnAp-n becomes RTRL as n grows", statistic="late-window mean ‖ĝ − g‖/‖g‖",
                                resolution="deterministic (one θ, one path)"))
        stochastic = [lab for lab, e in ests.items() if e.capabilities.stochastic]
        arrays = {"g_norm": g_norm}
        if stochastic:
            arrays.update(self._directional(config, cell, theta, readout, phi, xs, ys, ests, stochastic, finals, rng))
        for lab, s in stats.items():
            for name, arr in s.items():
                arrays[f"{name}.{lab}"] = arr
        data = {"hidden": st["hidden"], "k": cell.k, "p": cell.p, "density": st["density"], "rho": st["rho"],
                "contraction": float(cell.contraction(theta)) if hasattr(cell, "contraction") else None,
                "exact_order": n_star, "orders": orders, "estimators": list(ests),
                "replicates": {lab: int(s["cos"].shape[0]) for lab, s in stats.items()},
                "stored": {lab: int(e.stored(e.init(cell, theta, 1))) if isinstance(e, MaskedInfluence) else None
                           for lab, e in ests.items()},
                "steps": T, "base": [config["base_hidden"], config["base_density"], config["base_rho"]],
                "instance": st.get("instance", 0), "stochastic": stochastic, "memory": st.get("memory"),
                "memory_task": st.get("memory_task"), "curriculum_length": length,
                "matched_samples": self._matched_samples(cell, ests)}
        return TaskResult(data, arrays, verdicts)

    @staticmethod
    def _matched_samples(cell, ests) -> int | None:
        """UORO samples averaged to match one SnAp-1 step's operation count (THEORY §6, "comparable cost")."""
        if "uoro" not in ests or "snap-1" not in ests:
            return None
        return max(1, int(np.ceil(estimator_flops(cell, ests["snap-1"]) / estimator_flops(cell, ests["uoro"]))))

    def _directional(self, config, cell, theta, readout, phi, xs, ys, ests, stochastic, finals, rng) -> dict:
        """Directional errors of the last step's gradient estimates, relative to ``‖g_T‖``.

        Directions: ``g_T/‖g_T‖`` and ``directions`` random unit vectors.  ``dir.<lab>``
        (``R × (1 + directions)``): ``⟨ĝ_r − g, u_j⟩/‖g‖`` for each replicate ``r``;
        ``dirctl.<lab>``: the same for the control, a fresh run of the estimator (independent
        signs) with a bias of ``bias_margin·‖g‖`` added along the direction tested (the smallest
        bias the unbiasedness claim must see).  ``cos_last.<lab>``: cosine of each replicate
        (SnAp-1: its one value) with ``g_T``; ``cos_matched.uoro``: the cosine of the mean of each
        group of ``matched_samples`` UORO replicates (matched cost against SnAp-1).
        """
        g = finals["g"]
        gn = max(float(np.linalg.norm(g)), np.finfo(float).tiny)
        dirs = rng.standard_normal((config["directions"], g.size))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        U = np.vstack([g / gn, dirs])
        out = {}
        _, _, ctl = measure(cell, theta, readout, phi, xs, ys, {lab: ests[lab] for lab in stochastic},
                            config["replicates"], rng, bound=False)
        for lab in stochastic:
            out[f"dir.{lab}"] = (finals[lab][1] - g) @ U.T / gn
            out[f"dirctl.{lab}"] = (ctl[lab][1] - g) @ U.T / gn + config["bias_margin"]

        def cosine(G):
            return G @ g / np.maximum(np.linalg.norm(G, axis=1) * gn, np.finfo(float).tiny)
        for lab in stochastic + [lab for lab in ("snap-1",) if lab in ests]:
            out[f"cos_last.{lab}"] = cosine(finals[lab][1])
        M = self._matched_samples(cell, ests)
        if M is not None:
            R = finals["uoro"][1].shape[0]
            groups = finals["uoro"][1][: (R // M) * M].reshape(R // M, M, -1).mean(axis=1)
            out["cos_matched.uoro"] = cosine(groups)
        return out

    def _identities(self, config, seed):
        rng = np.random.default_rng(seed)
        verdicts = []
        # exact enumeration over every sign sequence (k = 2)
        cell = make_cell("elman", 2, 1)
        theta = cell.init(rng, scale=1.5)
        xs = rng.standard_normal((config["enumeration_steps"], 1))
        for name in ("uoro", "kf-rtrl"):
            for shift in (0.0, config["shift"]):
                e = expected_influence(make_estimator(name), cell, theta, xs, shift=shift)
                if shift == 0.0:
                    verdicts.append(Verdict(f"{name}: exact mean over all {e.sequences} sign sequences = RTRL",
                                            e.ratio <= 1.0, f"max|E J̃ − J| = {e.error:.2e} = {e.ratio:.3g} × "
                                            "the float64 rounding bound (k=2, T="
                                            f"{config['enumeration_steps']})", e.ratio, 1.0,
                                            rule="within 1 × the rounding bound", source="THEORY §4",
                                            claim=f"{name} is unbiased: E[J̃_t] = J_t at fixed θ",
                                            statistic="max|E J̃ − J| over all sign sequences / rounding bound",
                                            resolution="exact expectation (no sampling error)",
                                            control=f"the same enumeration with sign mean {config['shift']}"))
                else:
                    verdicts.append(Verdict(f"{name}: exact mean with sign mean {shift} ≠ RTRL (control)",
                                            e.ratio > 1.0, f"max|E J̃ − J| = {e.error:.2e} = {e.ratio:.3g} × "
                                            "the rounding bound", e.ratio, 1.0, rule="beyond 1 × the rounding bound",
                                            source="THEORY §4", claim="biased signs give a biased mean",
                                            statistic="max|E J̃ − J| / rounding bound", resolution="exact expectation"))
        # Monte Carlo: R replicates batched, unbiased estimators accepted, shifted signs rejected
        check = dict(config, steps=config["check_steps"])
        cell, theta, readout, phi, xs, ys = self._problem(check, config["check_hidden"], 1.0,
                                                          config["base_rho"], rng, 0)
        R = config["check_replicates"]
        tests = {}
        for name, src in (("uoro", rng), ("kf-rtrl", rng), ("uoro-shifted", ShiftedSigns(rng, config["shift"]))):
            est = name.split("-shifted")[0]
            estimator = make_estimator(est)
            if not estimator.applies_to(cell):
                continue
            _, _, fin = measure(cell, theta, readout, phi, xs, ys, {est: estimator}, R, src,
                                influences=True, bound=False)
            for what, samples, exact in (("gradient", fin[est][1], fin["g"]), ("influence", fin[est][0], fin["J"])):
                tests[name, what] = mean_z_test(samples, exact, config["test_alpha"])
        where = (f"R={R}, k={cell.k}, T={check['steps']}, {BATCH_MEANS} batch means, Bonferroni t bound at level "
                 f"{config['test_alpha']:.2g} (family level {config['alpha']} over the task's 4 tests)")
        fields = {"source": "THEORY §4", "statistic": "max |z| of the batch means of ĝ (or J̃) against the exact "
                  "value over all entries", "resolution": f"detects signs of mean {config['shift']} (the control)"}
        for what in ("gradient", "influence"):
            z_c, q_c, _ = tests["uoro-shifted", what]
            seen = z_c > q_c
            verdicts.append(Verdict(
                f"uoro with sign mean {config['shift']}: mean {what} rejected (control)", seen,
                f"{where}: max|z| = {z_c:.2f} vs {q_c:.2f}", z_c, q_c, rule="max|z| > bound", **fields,
                claim="the Monte Carlo test detects a biased sign distribution"))
            for name in ("uoro", "kf-rtrl"):
                if (name, what) not in tests:
                    continue
                z, q, N = tests[name, what]
                status = "FAIL" if z > q else ("PASS" if seen else "INCONCLUSIVE")
                verdicts.append(Verdict(
                    f"{name}: mean {what} within Monte Carlo error", status,
                    f"{where}: max|z| = {z:.2f} over {N} entries vs {q:.2f}"
                    + ("" if seen else "; the control was not rejected"), z, q,
                    rule="max|z| ≤ bound, and the control (biased signs) rejected by the same test", **fields,
                    claim=f"{name}'s estimate is unbiased at fixed θ",
                    control=f"uoro with sign mean {config['shift']}: max|z| = {z_c:.2f} "
                            + ("(rejected)" if seen else "(not rejected)")))
        # SnAp-1 = RTRL when D is diagonal
        k = config["check_hidden"]
        cell = make_cell("elman", k, config["inputs"], masks={"W": np.eye(k, dtype=bool)})
        theta = cell.init(rng, scale=1.5)
        readout = LinearReadout(k, config["outputs"])
        xs = rng.standard_normal((config["check_steps"], cell.m))
        ys = rng.standard_normal((config["check_steps"], config["outputs"]))
        _, _, fin = measure(cell, theta, readout, readout.init(rng), xs, ys, {"snap-1": make_estimator("snap", n=1)},
                            2, rng)
        v = snap_identity_verdicts([("snap-1", 1)], fin, 1)[0]
        v.check = "snap-1 = RTRL when D is diagonal (W = diag)"
        verdicts.append(v)
        return TaskResult({"kind": "identities"}, {}, verdicts)
