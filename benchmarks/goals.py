"""The performance goals of the toolkit as ratios of two timed operations (issue 15).

Each goal is a :class:`Ratio`: a numerator (the operation under test) and a denominator (a floor
measured in the same process: a bare matrix product of the same shapes, or one forward step of
the same network).  :func:`measure` times the two interleaved (``num den num den …``), in the
thread's CPU time (``time.thread_time``, which other processes on a shared machine do not
inflate), each timing calibrated to a minimum duration, with BLAS limited to one thread by the
caller.  The ratio of each interleaved pair is one sample; the result is the median ratio and its
spread (the 10th–90th percentile of the pair ratios).

``benchmarks/test_goals.py`` runs every goal under pytest-benchmark (stored JSON with the
machine's description); ``benchmarks/figures.py`` writes the benchmark page's table (docs/guide/benchmarks.md) from that JSON.
The timing loop is the ``cost`` experiment's (:func:`~rtrl_validation.simulations.experiments.cost.time_per_call`),
so the two agree where they measure the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numba
import numpy as np

from rtrl_validation.simulations import aligned
from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.estimators import parse_estimator
from rtrl_validation.simulations.estimators.base import linearize_for
from rtrl_validation.simulations.experiments.cost import time_per_call
from rtrl_validation.simulations.flops import estimator_flops
from rtrl_validation.simulations.optimizers import SGD
from rtrl_validation.simulations.readouts import LinearReadout


@dataclass(frozen=True)
class Ratio:
    """One goal: ``numerator / denominator ≤ target`` (or ``≥`` when ``at_least``)."""

    goal: str                 # "1" … "5"
    name: str
    numerator: str            # what is timed, in words
    denominator: str
    target: float
    build: Callable[[], tuple[Callable, Callable]]
    at_least: bool = False
    #: FLOPs of the numerator and the denominator per call (a FLOP-rate goal), else None
    flops: tuple[float, float] | None = None


@dataclass(frozen=True)
class Measurement:
    median: float
    low: float                # 10th percentile of the pair ratios
    high: float               # 90th percentile
    numerator_us: float       # median thread CPU µs per call
    denominator_us: float
    repeats: int

    def met(self, r: Ratio) -> bool:
        return self.median >= r.target if r.at_least else self.median <= r.target


def measure(num: Callable, den: Callable, repeats: int = 41, min_time: float = 0.02) -> Measurement:
    """Interleaved thread-CPU timings of ``num`` and ``den`` (:func:`time_per_call`), ``repeats`` pairs."""
    cpu = np.empty((2, repeats))
    time_per_call([num, den], min_time, repeats, cpu)
    r = cpu[0] / cpu[1]
    return Measurement(float(np.median(r)), float(np.percentile(r, 10)), float(np.percentile(r, 90)),
                       1e6 * float(np.median(cpu[0])), 1e6 * float(np.median(cpu[1])), repeats)


# --------------------------------------------------------------------------- building blocks
def network(cell_name: str, hidden: int, inputs: int, batch: int = 1, density: float = 1.0, seed: int = 0):
    """A cell, ``θ`` shared by ``batch`` replicates (``batch × p``), a state, an input and a readout."""
    cell = make_cell(cell_name, hidden, inputs, density=density)
    rng = np.random.default_rng(seed)
    theta = aligned.copy(np.repeat(cell.init(rng)[None], batch, axis=0))     # as the trainer holds it
    cell.hold(theta)                  # as the training loop does: its optimiser keeps the masked matrices current
    s = 0.1 * rng.standard_normal((batch, cell.k))
    x = rng.standard_normal((batch, cell.m))
    return cell, theta, s, x, rng


def online_step(cell, theta, s, x, rng, spec: str, n_out: int = 1, alpha: float = 1e-6) -> Callable:
    """The online training step of :class:`~rtrl_validation.simulations.training.OnlineTrainer`:
    ``linearize``, the readout's loss and credit, the estimator's step and the SGD update of ``θ``
    and ``φ`` in place as the trainer makes it at every step (:meth:`~rtrl_validation.simulations.optimizers.SGD.apply`:
    one pass over each, with ``‖ĝ‖²`` and the divergence test; a tiny ``α``, so that the network
    stays where it was)."""
    B = theta.shape[0]
    est = parse_estimator(spec)
    ro = LinearReadout(cell.k, n_out)
    phi = ro.init(rng, B)                                 # as the trainer holds it: not realigned
    y = rng.standard_normal((B, n_out))
    opt = SGD()
    box = {"est": est.init(cell, theta, B, rng), "theta": opt.init(theta), "phi": opt.init(phi)}

    def run():
        lin = linearize_for(est, box["est"], cell, theta, s, x)
        _, credit, dphi = ro.evaluate(phi, lin.state, y)
        box["est"], g = est.step(box["est"], lin, credit, rng)
        box["theta"] = opt.apply(theta, g, box["theta"], alpha, 1e8)[0]
        box["phi"] = opt.apply(phi, dphi, box["phi"], alpha, np.inf)[0]
    return run


def estimator_step(cell, theta, s, x, rng, spec: str) -> tuple[Callable, object]:
    """The estimator's own step (``update`` and ``gradient``) on one fixed linearization."""
    B = theta.shape[0]
    est = parse_estimator(spec)
    lin = cell.linearize(theta, s, x)
    credit = rng.standard_normal((B, cell.k))
    box = {"est": est.init(cell, theta, B, rng)}
    for _ in range(3):                                    # leave the zero influence behind
        box["est"] = est.step(box["est"], lin, credit, rng)[0]

    def run():
        box["est"] = est.step(box["est"], lin, credit, rng)[0]
    return run, est


def forward_step(cell, theta, s, x, rng, n_out: int | None = None) -> Callable:
    """One forward step ``cell.step`` (and, with ``n_out``, the readout's loss and credit)."""
    if n_out is None:
        return lambda: cell.step(theta, s, x)
    ro = LinearReadout(cell.k, n_out)
    phi = ro.init(rng, theta.shape[0])
    y = rng.standard_normal((theta.shape[0], n_out))

    def run():
        ro.evaluate(phi, cell.step(theta, s, x), y)
    return run


def bare_product(B: int, rows: int, k: int, p: int, rng) -> Callable:
    """The batched product ``(B × rows × k) · (B × k × p)`` into a preallocated output."""
    A, M = rng.standard_normal((B, rows, k)), rng.standard_normal((B, k, p))
    out = np.empty((B, rows, p))
    return lambda: np.matmul(A, M, out=out)


# --------------------------------------------------------------------------- the goals
def _g1(cell_name, hidden, density, against):
    """Goal 1: sparse SnAp-2's step as a fraction of the dense product's FLOP rate, or against exact RTRL."""
    def build():
        cell, theta, s, x, rng = network(cell_name, hidden, 32, density=density)
        snap, est = estimator_step(cell, theta, s, x, rng, "snap-2")
        if against == "rtrl":
            return snap, estimator_step(cell, theta, s, x, rng, "rtrl")[0]
        return snap, bare_product(1, cell.k, cell.k, cell.p, rng)
    return build


def _snap2_flops(cell_name, hidden, density):
    cell = make_cell(cell_name, hidden, 32, density=density)
    return estimator_flops(cell, parse_estimator("snap-2")), 2.0 * cell.k * cell.k * cell.p


def _g2(cell_name, hidden, density, what):
    """Goal 2: a sparse cell's forward step (or linearize) against the dense cell's."""
    def build():
        sp_ = network(cell_name, hidden, 32, density=density)
        de = network(cell_name, hidden, 32, density=1.0)
        if what == "step":
            return (lambda: sp_[0].step(*sp_[1:4])), (lambda: de[0].step(*de[1:4]))
        return (lambda: sp_[0].linearize(*sp_[1:4])), (lambda: de[0].linearize(*de[1:4]))
    return build


def _small(spec, batch):
    """Goals 3 (``batch = 1``) and 4 (64 replicates with equal θ, as the trainer holds them):
    Elman k = 16, m = 8, the whole online step."""
    def build():
        cell, theta, s, x, rng = network("elman", 16, 8, batch=batch)
        run = online_step(cell, theta, s, x, rng, spec)
        if spec == "rtrl":
            return run, bare_product(batch, cell.k, cell.k, cell.p, rng)
        return run, forward_step(cell, theta, s, x, rng, n_out=1)
    return build


class _Replay:
    """A data process that returns the same ``steps`` steps of ``process`` (drawn once) at every call:
    the compiled loop timed without the data process's own cost."""

    def __init__(self, process, steps: int, batch: int, rng):
        self.m, self.n_out, self.loss = process.m, process.n_out, process.loss
        _, self.xs, self.ys = process.sample(process.init(rng, batch), steps, rng)

    def init(self, rng, batch):
        return None

    def sample(self, state, T, rng):
        return state, self.xs[:T], self.ys[:T]


def _compiled(spec, steps: int = 256, batch: int = 1, predrawn: bool = False):
    """Goals 3 and 4 with the compiled online loop (:class:`~rtrl_validation.simulations.online_kernel.ElmanKernel`):
    :meth:`OnlineTrainer.run` of ``steps`` online steps (forward, linearize, the estimator's step,
    readout, SGD update; no projection) on Elman k = 16, m = 8 with ``batch`` replicates (each with
    its own θ, as the convergence runs hold them; all equal here), against ``steps`` bare products
    (RTRL: ``batch × k × k · k × p``) or forward steps with readout, so the ratio is per step.
    By default the data process (a VAR(1) input and a tanh teacher, one compiled call per chunk) is
    drawn inside the run and counted in the numerator, with a checkpoint every 100 steps;
    ``predrawn``: the same ``steps`` steps drawn once and replayed, one checkpoint per run (the
    online step alone, as the goal defines it)."""
    def build():
        from rtrl_validation.simulations.data import VAR1Teacher
        from rtrl_validation.simulations.optimizers import Schedule
        from rtrl_validation.simulations.training import OnlineTrainer
        cell, theta, s, x, rng = network("elman", 16, 8, batch=batch)
        proc = VAR1Teacher(hidden=16, inputs=8, activation="tanh", teacher_rho=0.7, ar=0.5, noise=0.1, seed=1)
        if predrawn:
            proc = _Replay(proc, steps, batch, rng)
        ro = LinearReadout(cell.k, proc.n_out, proc.loss)
        tr = OnlineTrainer(cell, ro, parse_estimator(spec), proc, Schedule(1e-6, 100.0, 0.75), chunk=steps,
                           record_every=steps if predrawn else 100)
        if tr.kernel is None:
            raise RuntimeError(f"the compiled loop does not cover {spec} on this network")
        box = {"state": tr.init(theta, ro.init(rng, batch), rng)}

        def run():
            box["state"] = tr.run(box["state"], steps, rng, checkpoint=False)[0]
        if spec == "rtrl":
            prod = bare_product(batch, cell.k, cell.k, cell.p, rng)
        else:
            prod = forward_step(cell, theta, s, x, rng, n_out=1)

        def floor():
            for _ in range(steps):
                prod()
        return run, floor
    return build


def _g5(spec):
    """Goal 5: Elman k = 256, linearize (as the online loop calls it, forming ``D_t · tangent``
    with the forward product: :func:`~rtrl_validation.simulations.estimators.base.linearize_for`)
    + the estimator's step against one forward step."""
    def build():
        cell, theta, s, x, rng = network("elman", 256, 4)
        est = parse_estimator(spec)
        credit = rng.standard_normal((1, cell.k))
        box = {"est": est.init(cell, theta, 1, rng)}

        def run():
            lin = linearize_for(est, box["est"], cell, theta, s, x)
            box["est"] = est.step(box["est"], lin, credit, rng)[0]
        return run, forward_step(cell, theta, s, x, rng)
    return build


@numba.njit(nogil=True, fastmath=True)                   # not cached: imported as goals and benchmarks.goals
def _influence_pass(J, g, a):
    """One pass over ``p`` numbers read and written (``J ← a·J``) writing ``p`` more (``g = J``)."""
    for j in range(J.size):
        v = a * J[j]
        J[j] = v
        g[j] = v


def _g5_floor():
    """Goal 5's floor, measured: what any online step of SnAp-1 or UORO at Elman k = 256 must do at
    least, the forward product ``[W U b] â`` (``s_t`` and ``σ'`` enter every entry of the step) and
    one pass over the ``p`` numbers of the influence (``J̃`` or ``θ̃``'s direction), read and
    written, writing the ``p`` numbers of ``ĝ``; no arithmetic beyond one product per entry."""
    def build():
        cell, theta, s, x, rng = network("elman", 256, 4)
        At = theta[0].reshape(-1, cell.k)                   # [W U b] column-major: its transpose
        ahat = np.concatenate([s[0], x[0], [1.0]])
        J, g = rng.standard_normal(cell.p), np.empty(cell.p)

        def run():
            ahat @ At
            _influence_pass(J, g, 1.0)
        return run, forward_step(cell, theta, s, x, rng)
    return build


GOALS: tuple[Ratio, ...] = (
    *(Ratio("1", f"snap2-rate-{c}-k{k}-d{d}", f"SnAp-2 step, {c} k={k} density {d}",
            f"dense k×k·k×p product (FLOP rate)", 0.25, _g1(c, h, d, "rate"), at_least=True,
            flops=_snap2_flops(c, h, d))
      for c, h, k, d in (("gru-reset-after", 64, 64, 0.25), ("gru-reset-after", 128, 128, 0.1),
                         ("lstm", 32, 64, 0.25))),
    Ratio("1", "snap2-vs-rtrl-gru-k64-d0.25", "SnAp-2 step, gru-reset-after k=64 density 0.25",
          "exact RTRL step, same network", 0.5, _g1("gru-reset-after", 64, 0.25, "rtrl")),
    *(Ratio("2", f"sparse-{w}-{c}-k{h}-d{d}", f"{w}, {c} k={h} density {d}", f"{w}, dense {c} k={h}", 1.0,
            _g2(c, h, d, w))
      for c, h, d in (("gru-reset-after", 64, 0.25), ("gru-reset-after", 128, 0.1)) for w in ("step", "linearize")),
    Ratio("3", "online-rtrl-elman-k16", "RTRL online step, elman k=16 m=8 B=1", "bare k×k·k×p product", 2.0,
          _small("rtrl", 1)),
    *(Ratio("3", f"online-{e}-elman-k16", f"{e} online step, elman k=16 m=8 B=1", "forward step + readout", 2.5,
            _small(e, 1)) for e in ("snap-1", "rflo", "uoro", "kf-rtrl")),
    Ratio("3", "compiled-online-rtrl-elman-k16", "RTRL online step, compiled loop, elman k=16 m=8 B=1",
          "bare k×k·k×p product", 2.0, _compiled("rtrl")),
    Ratio("3", "compiled-online-rtrl-elman-k16-predrawn",
          "RTRL online step, compiled loop, data drawn in advance, elman k=16 m=8 B=1", "bare k×k·k×p product", 2.0,
          _compiled("rtrl", predrawn=True)),
    *(Ratio("3", f"compiled-online-{e}-elman-k16", f"{e} online step, compiled loop, elman k=16 m=8 B=1",
            "forward step + readout", 2.5, _compiled(e)) for e in ("snap-1", "uoro")),
    Ratio("4", "online-rtrl-elman-k16-B64", "RTRL online step, elman k=16, 64 replicates",
          "bare batched k×k·k×p product", 1.25, _small("rtrl", 64)),
    *(Ratio("4", f"online-{e}-elman-k16-B64", f"{e} online step, elman k=16, 64 replicates",
            "batched forward step + readout", 3.0, _small(e, 64)) for e in ("snap-1", "uoro")),
    Ratio("4", "compiled-online-rtrl-elman-k16-B64",
          "RTRL online step, compiled loop, data drawn in advance, elman k=16, 64 replicates (one θ each, equal)",
          "bare batched k×k·k×p product", 1.25, _compiled("rtrl", batch=64, predrawn=True)),
    *(Ratio("4", f"compiled-online-{e}-elman-k16-B64",
            f"{e} online step, compiled loop, data drawn in advance, elman k=16, 64 replicates (one θ each, equal)",
            "batched forward step + readout", 3.0, _compiled(e, batch=64, predrawn=True)) for e in ("snap-1", "uoro")),
    *(Ratio("5", f"{e}-elman-k256", f"linearize + {e} step, elman k=256", "forward step", 3.0, _g5(e))
      for e in ("snap-1", "uoro")),
    Ratio("5", "floor-elman-k256", "floor: forward product + one pass over p numbers (read, written) writing p",
          "forward step", 3.0, _g5_floor()),
)


def evaluate(r: Ratio, repeats: int = 41, min_time: float = 0.02) -> dict:
    """Measure one goal; a FLOP-rate goal's ratio is ``(F_num / t_num) / (F_den / t_den)``."""
    num, den = r.build()
    m = measure(num, den, repeats, min_time)
    if r.flops is not None:
        scale = r.flops[0] / r.flops[1]
        m = Measurement(scale / m.median, scale / m.high, scale / m.low, m.numerator_us, m.denominator_us,
                        m.repeats)
    return {"goal": r.goal, "name": r.name, "numerator": r.numerator, "denominator": r.denominator,
            "target": r.target, "at_least": r.at_least, "ratio": m.median, "low": m.low, "high": m.high,
            "numerator_us": m.numerator_us, "denominator_us": m.denominator_us, "repeats": m.repeats,
            "met": m.met(r), "flops": None if r.flops is None else list(r.flops)}
