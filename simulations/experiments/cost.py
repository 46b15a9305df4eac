"""Cost scaling of the estimators (THEORY.md §2.1, §4, §6 "RTRL's cost is quartic", "SnAp-1 costs
no more than backpropagation per step", "for highly sparse networks SnAp-2 stays tractable").

For each series (an estimator on a dense or a sparse network) and each hidden size ``k`` on its
grid, one task measures with single-threaded BLAS (``threadpoolctl``; the thread count and BLAS
are recorded):

* the per-step time of the estimator's own work (``update`` + ``gradient``; BPTT's adjoint at
  ``flush`` is spread over the steps of its block), timed in blocks of steps that cycle through
  precomputed linearizations and interleaved with one forward step ``cell.step`` and one
  ``cell.linearize`` of the same cell, and with the *online step* as the training loop takes it:
  ``linearize`` (with the estimator's tangent where the cell forms ``D_t · tangent`` in its forward
  product, :func:`~simulations.estimators.base.linearize_for`) then the estimator's step, on the
  same path.  The online step is timed as one, not as the sum of the two parts: run one after the
  other they share the caches (at Elman k = 256 ``W``, ``J̃`` and ``ĝ`` are 1.6 MB together), and
  on a core whose L2 holds the parts but not the whole the sum of the parts timed alone came out
  15–20% below the online step.
  Timings are taken in *sweeps*: each sweep times every size of the series once, and the sweep
  is repeated ``repeats`` times, so that each sweep gives one exponent and the exponents' spread
  over sweeps is the replicate-level error :mod:`analysis.cost` uses.
  Both wall-clock time and the thread's CPU time are recorded: on an idle machine they agree; on
  a shared one only the CPU time is free of other processes' load, so the exponents and ratios
  are decided on it (the fastest of the repeats) and the wall times are reported beside them;
* the bytes of numpy arrays held by the estimator state per replicate (BPTT: its tape, per step);
* the structural operation count of the estimator (:func:`simulations.flops.estimator_flops`).

Also the batching gain: ``R`` replicates of one estimator run batched on the leading axis against
``R`` sequential single-replicate runs, each the full step (``linearize`` + ``update`` +
``gradient``) over the same data.  Exponents are fitted in :mod:`analysis.cost`.

Arrays per series ``s``: ``k.s``; wall seconds per step ``time.s`` (median), ``time_min.s``,
``times.s`` (``n_k × repeats``), ``forward.s``, ``linearize.s``, ``online.s`` (medians), ``ratio.s`` (median
of interleaved estimator / forward-step ratios); CPU seconds per step ``cpu.s``, ``cpu_forward.s``,
``cpu_linearize.s``, ``cpu_online.s`` (fastest repeat; ``online`` and ``cpu_online`` are absent from
records made before they were measured), ``cpu_sweeps.s`` and ``cpu_forward_sweeps.s`` (``n_k × repeats``,
one column per sweep); ``overhead.s`` (``repeats``): CPU seconds per step of the same estimator on a
tiny cell (``overhead_hidden`` units, timed first in every sweep), whose arithmetic is negligible,
so it measures the per-step overhead (Python and numpy calls) that :mod:`analysis.cost` compares
with the time at the smallest fitted size; ``bytes.s``, ``flops.s``, ``p.s``.  For a series whose
step is bounded below by a dense product (:data:`FLOORS`: exact RTRL's ``(k+1) × k · k × p``),
``floor_sweeps.s`` (``n_k × repeats``): CPU seconds of that bare product, timed in the same sweeps,
and ``floor_flops.s``: its count, so that :mod:`analysis.cost` can tell whether the machine's own
rate for it is steady over the fitted sizes.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Annotated

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from .. import aligned
from ..cells import make_cell
from ..estimators import parse_estimator
from ..estimators.base import linearize_for
from ..estimators.kf_rtrl import KroneckerLayout
from ..estimators.masked import MaskStructure
from ..flops import estimator_flops
from ..jacobians import ParamBlock
from ..config import NON_EMPTY, CellName, Density, EstimatorSpec, PositiveInt, config_error, interval
from ..memory import cell_size, estimator_floats, floats_bytes
from . import checks
from .base import Experiment, Task, TaskResult
from .schema import Names, TaskSchema

#: the arrays of one series ``s`` (``<name>.s``)
SERIES_ARRAYS = ("k", "time", "time_min", "forward", "linearize", "ratio", "cpu", "cpu_forward", "cpu_linearize",
                 "times", "cpu_sweeps", "cpu_forward_sweeps", "bytes", "flops", "p")
#: the arrays of one series added since the first records (optional when a record is read)
ONLINE_ARRAYS = ("online", "cpu_online")
#: the arrays of a series with a floor operation (:data:`FLOORS`)
FLOOR_ARRAYS = ("floor_sweeps", "floor_flops")


def influence_product(cell, rng):
    """Exact RTRL's step's product on a dense network, bare: ``[D_t; c_t D_t] J_{t−1}``
    (``(k+1) × k`` by ``k × p``, THEORY §2.1) with random operands into a preallocated output, as
    ``MaskedInfluence.step`` forms it.  Returns the call and its FLOP count ``2 (k+1) k p``."""
    k, p = cell.k, cell.p
    A, M, out = rng.standard_normal((k + 1, k)), rng.standard_normal((k, p)), np.empty((k + 1, p))
    return (lambda: np.matmul(A, M, out=out)), influence_product_flops(cell)


def influence_product_flops(cell) -> float:
    """FLOP count of :func:`influence_product`: ``2 (k+1) k p``."""
    return 2.0 * (cell.k + 1) * cell.k * cell.p


#: per estimator (dense network), the operation its step cannot be faster than, timed beside it:
#: ``(cell, rng) -> (call, FLOPs)``, and its FLOP count alone ``cell -> FLOPs``
FLOORS = {"rtrl": (influence_product, influence_product_flops)}

#: asymptotic time and memory exponents in k for a dense network (p ≈ k², THEORY §2.1, §4)
THEORY_EXPONENTS = {"rtrl": (4, 3), "kf-rtrl": (3, 2), "snap-1": (2, 2), "uoro": (2, 2),
                    "rflo": (2, 2), "bptt": (2, 2)}


def state_bytes(obj, _seen=None) -> int:
    """Bytes of the numpy arrays an estimator state holds (shared structure excluded; a view counts
    the array that owns its memory, each owner once)."""
    seen = set() if _seen is None else _seen
    if isinstance(obj, np.ndarray):
        while isinstance(obj.base, np.ndarray):
            obj = obj.base
        if id(obj) in seen:
            return 0
        seen.add(id(obj))
        return int(obj.nbytes)
    if id(obj) in seen or isinstance(obj, (MaskStructure, KroneckerLayout, ParamBlock)):
        return 0
    seen.add(id(obj))
    if isinstance(obj, dict):
        return sum(state_bytes(v, seen) for k, v in obj.items() if k != "cache")
    if isinstance(obj, (list, tuple)):
        return sum(state_bytes(v, seen) for v in obj)
    if dataclasses.is_dataclass(obj):
        return sum(state_bytes(getattr(obj, f.name), seen) for f in dataclasses.fields(obj)
                   if f.name not in ("blocks", "cache"))
    return 0


def calls_for(fns, min_time: float) -> list[int]:
    """Calls of each function in ``fns`` that take at least ``min_time`` seconds (one warm-up call
    and one timed call each)."""
    counts = []
    for fn in fns:
        fn()
        t0 = time.perf_counter()
        fn()
        counts.append(int(np.clip(min_time / max(time.perf_counter() - t0, 1e-7), 1, 100000)))
    return counts


def time_once(fns, counts) -> tuple[np.ndarray, np.ndarray]:
    """Wall-clock and thread-CPU seconds per call of each function, ``counts[i]`` calls each, one
    after another (interleaved: the ratios between them see the same machine load)."""
    wall, cpu = np.empty(len(fns)), np.empty(len(fns))
    for i, (fn, n) in enumerate(zip(fns, counts)):
        c0, t0 = time.thread_time(), time.perf_counter()
        for _ in range(n):
            fn()
        wall[i] = (time.perf_counter() - t0) / n
        cpu[i] = (time.thread_time() - c0) / n
    return wall, cpu


def time_per_call(fns, min_time: float, repeats: int, cpu: np.ndarray | None = None) -> np.ndarray:
    """Wall-clock seconds per call of each function in ``fns``: ``len(fns) × repeats``.

    Each function is calibrated to run ``≥ min_time`` per timing; the timings are interleaved
    (``f₁ f₂ … f₁ f₂ …``) so that ratios between them see the same machine load.  ``cpu`` (same
    shape), when given, receives the thread's CPU seconds per call (insensitive to other load)."""
    counts = calls_for(fns, min_time)
    out = np.empty((len(fns), repeats))
    for r in range(repeats):
        w, c = time_once(fns, counts)
        out[:, r] = w
        if cpu is not None:
            cpu[:, r] = c
    return out


def _path(cell, theta, steps, rng, batch=1):
    """Linearizations along a random data path (``steps`` of them), the ``(s_{t−1}, x_t)`` each was
    formed from, and one credit (``batch × k``)."""
    s, lins, inputs = np.zeros((batch, cell.k)), [], []
    for _ in range(steps):
        inputs.append((s, rng.standard_normal((batch, cell.m))))
        lins.append(cell.linearize(theta, *inputs[-1]))
        s = lins[-1].state
    return lins, inputs, rng.standard_normal((batch, cell.k))


def prepare(cell, spec, rng, block=2):
    """The four timed functions of one (cell, estimator): a block of the estimator's steps (with
    BPTT's flush), one ``cell.step``, one ``cell.linearize`` and a block of online steps
    (``linearize`` as the training loop calls it, then the estimator's step; with BPTT's flush);
    with the state bytes per replicate (BPTT: per step of its tape), the operation count and a
    function telling whether one more block from the estimator's current state (after the timed
    steps) gives a finite gradient.  Returns ``(fns, bytes, flops, finite)``."""
    est = parse_estimator(spec)
    theta = aligned.copy(cell.init(rng)[None])                 # 1 × p, as the training loop holds it
    cell.hold(theta)                                           # its masked matrices current, as there
    lins, inputs, credit = _path(cell, theta, block, rng)
    holder = {"state": est.init(cell, theta, 1, rng)}
    s, x = np.zeros((1, cell.k)), rng.standard_normal((1, cell.m))

    deferred = not est.capabilities.online     # BPTT's adjoint at the block's end is part of its step

    def run_block():
        st = holder["state"]
        for lin in lins:                       # as a new linearization: nothing formed in advance
            st = est.step(st, lin.fresh(), credit, rng)[0]
        holder["state"] = est.flush(st)[0] if deferred else st

    def run_online():
        st = holder["state"]
        for s_prev, x_t in inputs:             # the training loop's step on the same path
            st = est.step(st, linearize_for(est, st, cell, theta, s_prev, x_t), credit, rng)[0]
        holder["state"] = est.flush(st)[0] if deferred else st

    state = holder["state"]
    for lin in lins:                          # the state after one block (BPTT: a full tape)
        state = est.step(state, lin, credit, rng)[0]
    size = state_bytes(state) / (block if est.name in ("bptt", "tbptt") else 1)

    def finite() -> bool:
        st, ok = holder["state"], True
        for lin in lins:
            st, g = est.step(st, lin, credit, rng)
            ok = ok and bool(np.all(np.isfinite(g)))
        return ok

    fns = [run_block, lambda: cell.step(theta, s, x), lambda: cell.linearize(theta, s, x), run_online]
    return fns, size, estimator_flops(cell, est), finite


def measure_estimator(cell, spec, rng, min_time, repeats, block=2):
    """Per-step timings of the estimator's work (``step``: update and gradient, fused where the
    estimator fuses them; BPTT's adjoint at ``flush``)
    interleaved with ``cell.step``, ``cell.linearize`` and the online step (:func:`prepare`): wall
    and thread-CPU seconds, each ``4 × repeats`` (rows in that order); state bytes per replicate
    (BPTT: per step of its tape); operation count; whether the gradient is still finite after the
    timed steps."""
    fns, size, flops, finite = prepare(cell, spec, rng, block)
    cpu = np.empty((4, repeats))
    with np.errstate(over="ignore", invalid="ignore"):     # an influence may overflow: recorded by finite()
        wall = time_per_call(fns, min_time, repeats, cpu)
        ok = finite()
    wall[[0, 3]] /= block
    cpu[[0, 3]] /= block
    return wall, cpu, size, flops, ok


def sweeps(cells, spec, rng, min_time, repeats, block=2, progress=None, floor=None):
    """Timing sweeps over the hidden sizes of a series: each of ``repeats`` sweeps times every
    size once (estimator block, forward step, linearize, online block; see :func:`prepare`; then,
    with ``floor`` (:data:`FLOORS`), the bare floor operation of the same cell), so
    that each sweep yields one exponent under one machine load and the exponents' spread is a
    replicate-level error.  Returns wall and CPU seconds per call (``n_k × 4 × repeats``, or
    ``n_k × 5 × repeats`` with ``floor``; the estimator and the online step per step),
    bytes and operation counts per size, and per size whether the gradient is still finite after
    the timed steps."""
    prepared = [prepare(c, spec, rng, block) for c in cells]
    if floor is not None:
        prepared = [(fns + [floor(c, rng)[0]], b, f, ok) for c, (fns, b, f, ok) in zip(cells, prepared)]
    wall = np.empty((len(cells), len(prepared[0][0]), repeats))
    cpu = np.empty_like(wall)
    with np.errstate(over="ignore", invalid="ignore"):     # an influence may overflow: recorded by finite()
        counts = [calls_for(fns, min_time) for fns, _, _, _ in prepared]
        for r in range(repeats):
            for i, (fns, _, _, _) in enumerate(prepared):
                wall[i, :, r], cpu[i, :, r] = time_once(fns, counts[i])
            if progress:
                progress((r + 1) / repeats)
        ok = [finite() for _, _, _, finite in prepared]
    wall[:, [0, 3]] /= block
    cpu[:, [0, 3]] /= block
    return wall, cpu, [b for _, b, _, _ in prepared], [f for _, _, f, _ in prepared], ok


def batching_gain(cell_name, hidden, inputs, spec, replicates, steps, rng, repeats) -> dict:
    """``replicates`` runs of ``steps`` full steps (``linearize`` as the training loop calls it +
    estimator step), same data:
    batched (one run, ``B = R``) against sequential (``R`` runs with ``B = 1``).  Returns wall
    medians and CPU minima in seconds."""
    cell = make_cell(cell_name, hidden, inputs)
    theta = cell.init(rng)
    xs = rng.standard_normal((steps, replicates, cell.m))
    credit = rng.standard_normal((replicates, cell.k))
    est = parse_estimator(spec)

    def run(x, c):
        B = x.shape[1]
        s, st = np.zeros((B, cell.k)), est.init(cell, theta, B, rng)
        for t in range(steps):
            lin = linearize_for(est, st, cell, theta, s, x[t])
            s = lin.state
            st = est.step(st, lin, c, rng)[0]

    cpu = np.empty((2, repeats))
    wall = time_per_call([lambda: run(xs, credit),
                          lambda: [run(xs[:, r:r + 1], credit[r:r + 1]) for r in range(replicates)]],
                         0.0, repeats, cpu)
    return {"batched_seconds": float(np.median(wall[0])), "sequential_seconds": float(np.median(wall[1])),
            "batched_cpu": float(cpu[0].min()), "sequential_cpu": float(cpu[1].min())}


def _blas() -> list[dict]:
    return [{k: info.get(k) for k in ("user_api", "internal_api", "num_threads", "version")}
            for info in threadpool_info()]


Grid = Annotated[dict[EstimatorSpec, Annotated[list[PositiveInt], NON_EMPTY]], NON_EMPTY]


@dataclasses.dataclass(frozen=True)
class CostConfig:
    """The ``cost`` experiment's config: per series (estimator -> hidden sizes) the timings."""

    cell: CellName
    inputs: PositiveInt
    threads: PositiveInt
    min_time: Annotated[float, interval(0.0, 10.0, "(]", "a time in seconds", "times in seconds")]
    repeats: PositiveInt
    series: Grid
    sparse_density: Density
    sparse_series: Grid
    fit_points: PositiveInt
    overhead_hidden: PositiveInt
    compare_k: PositiveInt
    batch_estimator: EstimatorSpec
    batch_hidden: PositiveInt
    batch_replicates: PositiveInt
    batch_steps: PositiveInt


class CostExperiment(Experiment):
    name = "cost"
    description = ("Per-step time and state memory of RTRL, KF-RTRL, SnAp-1/2, UORO, RFLO and BPTT "
                   "over the hidden size k (dense and sparse networks), with fitted exponents (THEORY §4, §6)")
    profiles = {
        "quick": {
            "cell": "elman", "inputs": 4, "threads": 1, "min_time": 0.02, "repeats": 5,
            "series": {"rtrl": [64, 80, 96, 128, 160, 192], "kf-rtrl": [192, 256, 320, 384, 448, 512],
                       "snap-1": [128, 160, 192, 256, 320, 384], "uoro": [128, 160, 192, 256, 320, 384],
                       "rflo": [128, 160, 192, 256, 320, 384], "bptt": [128, 160, 192, 256, 320, 384]},
            "sparse_density": 0.1,
            "sparse_series": {"snap-2": [64, 80, 96, 128, 160, 192], "rtrl": [48, 64, 80, 96, 128, 160]},
            "fit_points": 5, "overhead_hidden": 4, "compare_k": 256,
            "batch_estimator": "snap-1", "batch_hidden": 16, "batch_replicates": 64, "batch_steps": 20,
        },
        "full": {
            "cell": "elman", "inputs": 4, "threads": 1, "min_time": 0.2, "repeats": 7,
            "series": {"rtrl": [32, 48, 64, 96, 128, 192, 256], "kf-rtrl": [64, 96, 128, 192, 256, 384, 512],
                       "snap-1": [64, 96, 128, 192, 256, 384, 512], "uoro": [64, 96, 128, 192, 256, 384, 512],
                       "rflo": [64, 96, 128, 192, 256, 384, 512], "bptt": [64, 96, 128, 192, 256, 384, 512]},
            "sparse_density": 0.05,
            "sparse_series": {"snap-2": [48, 64, 96, 128, 192, 256, 384], "rtrl": [48, 64, 96, 128, 192]},
            "fit_points": 5, "overhead_hidden": 4, "compare_k": 256,
            "batch_estimator": "snap-1", "batch_hidden": 16, "batch_replicates": 64, "batch_steps": 50,
        },
    }

    Config = CostConfig
    schemas = {"scaling": TaskSchema(
        data=Names(("series", "threads", "blas", "cell", "load_average", "batching"), ("overhead_hidden",)),
        arrays=Names(tuple(f"{name}.*" for name in SERIES_ARRAYS),
                     ("overhead.*",) + tuple(f"{name}.*" for name in ONLINE_ARRAYS + FLOOR_ARRAYS)))}

    def validate(self, config):
        c = config
        if c["fit_points"] < 3:
            raise config_error("fit_points", f"must be >= 3 (a slope with a confidence interval), got {c['fit_points']}")
        for group in ("series", "sparse_series"):
            for spec, grid in c[group].items():
                checks.estimator_for(spec, c["cell"])
                if len(grid) < c["fit_points"]:
                    raise config_error(f"{group}[{spec!r}]", f"must list at least fit_points = {c['fit_points']} "
                                       f"hidden sizes, got {grid!r}")
        checks.estimator_for(c["batch_estimator"], c["cell"])

    def task_memory(self, config) -> float:
        """The largest estimator state of the series (two steps of linearizations beside it) and
        the batching runs' ``R`` replicates."""
        c, worst = config, 0.0
        for group, d in (("series", 1.0), ("sparse_series", c["sparse_density"])):
            for spec, grid in c[group].items():
                for h in grid:
                    k, p = cell_size(c["cell"], h, c["inputs"], d)
                    floor = 2 * k * p if spec in FLOORS and d == 1.0 else 0      # its operands
                    worst = max(worst, 2 * estimator_floats(spec, k, p, c["inputs"], 1, 2, d) + 3 * k * p + floor)
        k, p = cell_size(c["cell"], c["batch_hidden"], c["inputs"])
        R = c["batch_replicates"]
        batch = 2 * estimator_floats(c["batch_estimator"], k, p, c["inputs"], R, c["batch_steps"]) \
            + c["batch_steps"] * R * c["inputs"]
        return floats_bytes(max(worst, batch))

    exclusive = True

    def tasks(self, config):
        # one task: timings taken one after another, never beside another task (``exclusive``)
        return [Task("scaling", dict(config))]

    def run_task(self, task, seed, progress=None):
        c = task.config
        rng = np.random.default_rng(seed)
        jobs = [(spec, 1.0, grid) for spec, grid in c["series"].items()]
        jobs += [(spec, float(c["sparse_density"]), grid) for spec, grid in c["sparse_series"].items()]
        total = sum(len(g) for _, _, g in jobs) + 1
        done, series, arrays = 0, [], {}
        load = list(os.getloadavg())
        with threadpool_limits(limits=c["threads"]):
            blas = _blas()
            for spec, density, grid in jobs:
                name = spec if density == 1.0 else f"{spec}-sparse"
                # the first cell of every sweep is a tiny one (``overhead_hidden``) whose step is all
                # per-call overhead: it tells whether the fitted sizes are arithmetic-dominated
                cells = [make_cell(c["cell"], h, c["inputs"], density=density, mask_seed=h)
                         for h in [c["overhead_hidden"]] + list(grid)]
                floor, floor_flops = FLOORS.get(spec, (None, None)) if density == 1.0 else (None, None)
                wall, cpu, sizes, flops, finite = sweeps(cells, spec, rng, c["min_time"], c["repeats"], floor=floor)
                arrays[f"overhead.{name}"] = cpu[0, 0].copy()
                wall, cpu, sizes, flops, finite, cells = wall[1:], cpu[1:], sizes[1:], flops[1:], finite[1:], cells[1:]
                if not all(finite):
                    h = grid[finite.index(False)]
                    return TaskResult({"series": series, "cell": c["cell"]}, status="diverged",
                                      reason=f"{name} at hidden size {h}: gradient not finite after the "
                                             "timed steps (their number is calibrated, not fixed)")
                rows = {"time": np.median(wall[:, 0], axis=1), "time_min": wall[:, 0].min(axis=1),
                        "forward": np.median(wall[:, 1], axis=1), "linearize": np.median(wall[:, 2], axis=1),
                        "online": np.median(wall[:, 3], axis=1), "cpu_online": cpu[:, 3].min(axis=1),
                        "ratio": np.median(wall[:, 0] / wall[:, 1], axis=1), "cpu": cpu[:, 0].min(axis=1),
                        "cpu_forward": cpu[:, 1].min(axis=1), "cpu_linearize": cpu[:, 2].min(axis=1),
                        "times": wall[:, 0], "cpu_sweeps": cpu[:, 0], "cpu_forward_sweeps": cpu[:, 1],
                        "bytes": sizes, "flops": flops, "p": [cell.p for cell in cells]}
                if floor is not None:
                    rows.update(floor_sweeps=cpu[:, 4], floor_flops=[floor_flops(cell) for cell in cells])
                done += len(grid)
                if progress:
                    progress(done / total)
                arrays[f"k.{name}"] = np.array([make_cell(c["cell"], h, c["inputs"]).k for h in grid], dtype=float)
                for key, vals in rows.items():
                    arrays[f"{key}.{name}"] = np.array(vals, dtype=float)
                series.append({"name": name, "estimator": spec, "density": density,
                               "theory": THEORY_EXPONENTS.get(spec) if density == 1.0 else None})
            batching = batching_gain(c["cell"], c["batch_hidden"], c["inputs"], c["batch_estimator"],
                                     c["batch_replicates"], c["batch_steps"], rng, c["repeats"])
        if progress:
            progress(1.0)
        data = {"series": series, "threads": c["threads"], "blas": blas, "cell": c["cell"],
                "overhead_hidden": c["overhead_hidden"],
                "load_average": [load, list(os.getloadavg())],
                "batching": {"estimator": c["batch_estimator"], "hidden": c["batch_hidden"],
                             "replicates": c["batch_replicates"], "steps": c["batch_steps"], **batching}}
        return TaskResult(data, arrays, [])
