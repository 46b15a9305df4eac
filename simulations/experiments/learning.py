"""SnAp's claims under online learning (THEORY.md §6): a copy task with a length curriculum and a
character-level model, every estimator training the same network online.

Each task trains one ``(task, cell, density, estimator)`` with ``seeds`` replicates on the leading
axis ``B``.  Replicate ``b`` of every estimator in a ``(task, cell, density)`` group starts from the
same ``θ₀``, ``φ₀`` and weight mask and reads the same data stream (common random numbers: the
group seed is derived from the run seed and the group's name, not from the task's position), so
estimators are compared replicate by replicate.  All estimators train the same cell of the same
size: the comparison is parameter-matched; the cost axis is the structural FLOP estimate of
:mod:`simulations.flops`.

The online loop is :class:`~simulations.training.OnlineTrainer` (:func:`learn_online` sets it up):
at every step ``s_t, D_t, I_t`` from ``cell.linearize``, the estimator's step (THEORY §2 "Online
RTRL", §4), the readout's loss and credit; every ``update_every`` steps the accumulated gradients
move ``θ`` and ``φ`` (Adam or SGD, :mod:`simulations.optimizers`).  A replicate's ``θ`` moves only
when a ``θ``-gradient has arrived (TBPTT delivers one per block, the copy task has credit only on
recall steps), so no optimiser step is taken on an empty gradient.  A diverged replicate is
recorded and the others continue.  Curriculum, validation and gradient alignment are the
trainer's hooks (:class:`LearningRecorder`): alignment freezes ``θ_t``, replays the next stretch
of the stream with the estimator and with exact RTRL, and records the cosine of the two segment
gradients.
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from threadpoolctl import threadpool_limits

from ..cells import CELLS, make_cell
from ..data.copy_task import IGNORE, CopyTask, MaskedReadout
from ..data.text import CharText, corpus_info
from ..curriculum import LengthCurriculum
from ..estimators import parse_estimator
from ..flops import step_flops
from ..readouts import LinearReadout
from ..sequence import run_sequence, sequence_loss
from ..config import NON_EMPTY, EstimatorSpec, Fraction, NonNegativeInt, Positive, PositiveInt, Rule, config_error, one_of
from ..memory import cell_size, estimator_floats, floats_bytes
from ..optimizers import OPTIMIZERS, Optimizer, make_optimizer
from ..training import Hook, OnlineTrainer, Schedule, TrainState
from .base import ConfigError, Experiment, Task, TaskResult
from .schema import Names, TaskSchema

LN2 = np.log(2.0)
TASK_KINDS = ("copy", "text")
AtLeastTwo = Annotated[int, Rule("an integer >= 2", "integers >= 2", lambda v: v >= 2)]


# --------------------------------------------------------------------------- the online loop
def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two ``B × p`` arrays (NaN where a row is zero)."""
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.sum(a * b, axis=1) / np.where(den > 0, den, 1.0), np.nan)


class LearningRecorder(Hook):
    """What the learning experiment records beside the trainer's checkpoints: the curriculum's
    lengths, validation at frozen ``θ``, and gradient alignment on replayed stretches of the stream.

    A process with ``observe(state, loss, y)`` (the copy task's curriculum) is told every step's
    loss; one with ``lengths(state)`` has them recorded at checkpoints.  ``validation = (xs, ys)``
    (``T × B`` leading axes) is evaluated at ``t = 0`` (:meth:`start`) and every ``val_every``
    steps.  Alignment (with ``align_every``): at ``t = 0`` and every ``align_every`` steps, ``θ_t``,
    ``φ_t`` and ``s_t`` are frozen and the next ``align_len`` steps of the stream are replayed
    through :func:`~simulations.sequence.run_sequence` with the estimator (its own fresh state,
    randomness from ``align_rng``) and with exact RTRL; the cosine of the two segment gradients
    ``dL/dθ`` is recorded.
    """

    def __init__(self, cell, readout, estimator, process, steps, align_every=None, align_len=64, align_rng=None,
                 validation=None, val_every=None):
        self.cell, self.readout, self.estimator, self.steps = cell, readout, estimator, steps
        self.observe = process.observe if isinstance(process, CopyTask) else None
        self.lengths = process.lengths if isinstance(process, CopyTask) else None
        self.align_every, self.align_len, self.align_rng = align_every, align_len, align_rng
        self.exact = parse_estimator("rtrl") if align_every else None
        self.validation, self.val_every = validation, val_every
        self.segment = None          # (t, θ, φ, s, [x], [y]) of the alignment segment being collected
        self.out = {k: [] for k in ("length", "align_t", "cosine", "val_t", "val_bits")}

    def start(self, state: TrainState) -> None:
        if self.validation is not None:
            self._validate(state)

    def before_step(self, state, x, y):
        t = state.t
        if self.align_every and t % self.align_every == 0 and self.segment is None and t + self.align_len <= self.steps:
            self.segment = (t, state.theta.copy(), state.phi.copy(), state.s.copy(), [], [])
        if self.segment is not None:
            self.segment[4].append(x)
            self.segment[5].append(y)
            if len(self.segment[4]) == self.align_len:
                self._align(*self.segment)
                self.segment = None

    def after_step(self, state, loss, y, recorded):
        if self.observe is not None:
            state.data = self.observe(state.data, loss, y)
        if recorded and self.lengths is not None:
            self.out["length"].append(self.lengths(state.data))
        if self.validation is not None and state.t % self.val_every == 0:
            self._validate(state)

    def export_state(self) -> dict:
        """Records so far, the alignment segment being collected and ``align_rng``'s state."""
        seg = None if self.segment is None else list(self.segment)
        return {"out": {k: list(v) for k, v in self.out.items()}, "segment": seg,
                "align_rng": None if self.align_rng is None else self.align_rng.bit_generator.state}

    def restore_state(self, plain: dict) -> None:
        self.out = {k: list(v) for k, v in plain["out"].items()}
        seg = plain["segment"]
        self.segment = None if seg is None else (int(seg[0]), *(np.asarray(a, dtype=float) for a in seg[1:4]),
                                                 [np.asarray(x) for x in seg[4]], [np.asarray(y) for y in seg[5]])
        if self.align_rng is not None:
            self.align_rng.bit_generator.state = plain["align_rng"]

    def _validate(self, state):
        xs, ys = self.validation
        self.out["val_t"].append(state.t)
        L = sequence_loss(self.cell, state.theta, self.readout, state.phi, xs, ys)
        self.out["val_bits"].append(L / (xs.shape[0] * LN2))

    def _align(self, t0, th, ph, s0, xs, ys):
        xs, ys = np.stack(xs), np.stack(ys)
        args = (self.cell, th, self.readout, ph, xs, ys)
        g = run_sequence(*args, self.estimator, self.align_rng, s0).grad_theta
        g_exact = run_sequence(*args, self.exact, self.align_rng, s0).grad_theta
        self.out["align_t"].append(t0)
        self.out["cosine"].append(cosine_rows(g, g_exact))


def learn_online(cell, readout, estimator, process, theta0, phi0, steps: int, rng, data_rng,
                 optimizer: Optimizer, schedule: Schedule, update_every: int = 1, record_every: int = 64,
                 align_every: int | None = None, align_len: int = 64, align_rng=None,
                 validation=None, val_every: int | None = None, chunk: int = 32, blowup: float = 1e8,
                 progress=None) -> dict[str, np.ndarray]:
    """Train online for ``steps`` steps with :class:`~simulations.training.OnlineTrainer` (``θ₀``:
    ``B × p``, ``φ₀``: ``B × q``; ``optimizer`` with step sizes from ``schedule``); divergence is
    recorded per replicate and the others continue.

    ``readout`` takes integer targets with :data:`~simulations.data.copy_task.IGNORE` for steps
    without loss (e.g. :class:`MaskedReadout`); the windowed loss counts only the other steps.
    Curriculum, validation and alignment: :class:`LearningRecorder`.

    Returns arrays (``R`` = number of records, one per ``record_every`` steps):
    ``t`` (``R``), ``loss_bits`` (``R × B``: mean loss in bits per counted step over the window),
    ``length`` (``R × B``, curriculum), ``align_t``, ``cosine`` (``A × B``), ``val_t``,
    ``val_bits`` (``V × B``), ``theta`` / ``phi`` (final, ``B × p`` / ``B × q``), ``diverged_at``
    (``B``, −1 where the replicate stayed finite), ``seconds`` (wall time of the loop).
    """
    recorder = LearningRecorder(cell, readout, estimator, process, steps, align_every, align_len, align_rng,
                                validation, val_every or record_every)
    trainer = OnlineTrainer(cell, readout, estimator, process, schedule, update_every, record_every=record_every,
                            chunk=chunk, blowup=blowup, optimizer=optimizer, counted=lambda y: y != IGNORE,
                            stop="all", hooks=[recorder])
    started = time.perf_counter()
    state = trainer.init(theta0, phi0, rng, data_rng)
    recorder.start(state)
    state, traj = trainer.run(state, steps, rng, data_rng=data_rng,
                              progress=None if progress is None else (lambda n: progress(state.t / steps)))
    out = dict(recorder.out, t=traj.t, loss_bits=[loss / LN2 for loss in traj.loss])
    arrays = {k: np.asarray(v, dtype=float) for k, v in out.items() if v}
    # a run that diverged before its first record still has (empty) curves
    B = state.theta.shape[0]
    for k in ("t", "loss_bits") + (("length",) if recorder.lengths is not None else ()):
        arrays.setdefault(k, np.zeros((0,) if k == "t" else (0, B)))
    arrays["theta"], arrays["phi"] = state.theta, state.phi
    arrays["diverged_at"] = state.diverged
    arrays["seconds"] = np.asarray(time.perf_counter() - started)
    return arrays


# --------------------------------------------------------------------------- the experiment
#: TBPTT twice: ``tbptt-τ`` updates once per block of τ steps, ``online-tbptt-τ`` at every step through
#: the last τ steps (the comparison of Menick et al. 2021)
ESTIMATORS = ["rtrl", "snap-1", "snap-2", "snap-3", "uoro", "kf-rtrl", "rflo", "tbptt-4", "tbptt-16",
              "online-tbptt-4", "online-tbptt-16"]

QUICK = {
    "tasks": ["copy", "text"],
    "groups": ["gru-reset-after:0.1"],
    "hidden": 16,
    "estimators": [e for e in ESTIMATORS if e != "snap-3"],
    "seeds": 5,
    "tuning_seeds": 0,
    "lr_grid": [1.0],
    "tuning_fraction": 0.2,
    "init_scale": 1.0,
    "optimizer": "adam",
    "copy_lr": 1e-2,
    "text_lr": 3e-3,
    "update_every": 1,
    "record_every": 50,
    "align_every": 500,
    "align_len": 64,
    "copy_steps": 2500,
    "alphabet": 2,
    "threshold_bits": 0.15,
    "spread": 5,
    "curriculum_window": 64,
    "text_steps": 1000,
    "vocab_size": 24,
    "val_fraction": 0.1,
    "val_chars": 500,
    "val_every": 250,
}

FULL = dict(QUICK, groups=["gru-reset-after:0.25", "gru-reset-after:0.1", "lstm:0.25", "elman:0.25"],
            copy_steps=8000, text_steps=4000, align_every=2000, align_len=128, val_chars=2000, val_every=1000,
            estimators=ESTIMATORS + ["tbptt-64"], tuning_seeds=3, lr_grid=[0.3, 1.0, 3.0])

#: SnAp's regime (Menick et al. 2021): sparse GRU and LSTM with 128 units, 10⁵ online steps per run,
#: a copy curriculum that can pass every truncation tried, a character model; learning rates and
#: TBPTT's τ tuned on their own seeds.  Exact RTRL is not trained at this size (about 20× SnAp-2's
#: cost per step); it enters through the alignment segments.  Hours of compute: see :func:`plan`.
PAPER = dict(FULL, groups=["gru-reset-after:0.1", "gru-reset-after:0.25", "lstm:0.1", "lstm:0.25"],
             hidden=128, estimators=["snap-1", "snap-2", "uoro", "rflo", "tbptt-4", "tbptt-8", "tbptt-16",
                                     "online-tbptt-4", "online-tbptt-8", "online-tbptt-16"],
             seeds=5, tuning_seeds=3, lr_grid=[0.3, 1.0, 3.0], tuning_fraction=0.1,
             copy_steps=100_000, text_steps=100_000, record_every=500, align_every=20_000, align_len=128,
             vocab_size=48, val_chars=5000, val_every=5000)

#: Claim 1 (SnAp-1 beats UORO, an approximation of comparable O(p) cost) at the paper's scale, in
#: about an hour of one core: ``paper`` restricted to the sparse GRU at density 0.1 and to the O(p)
#: estimators SnAp-1, UORO and RFLO (copy task and text, 128 units, 10⁵ steps, 5 evaluation seeds
#: after tuning on 3).  Claim 2 needs SnAp-2, whose influence makes ``paper`` a cluster-sized run.
PAPER_CLAIM1 = dict(PAPER, groups=["gru-reset-after:0.1"], estimators=["snap-1", "uoro", "rflo"])

#: a run whose estimated work (FLOPs) exceeds this is timed before it starts (:func:`plan`)
PLAN_FLOPS = 1e13
#: steps timed per task by :func:`plan` (after an untimed warm-up step)
PROBE_STEPS = 5


def parse_group(group: str) -> tuple[str, float]:
    """``"gru-reset-after:0.25"`` -> ``("gru-reset-after", 0.25)``; ``ConfigError`` when malformed."""
    cell, sep, density = str(group).rpartition(":")
    try:
        d = float(density)
    except ValueError:
        d = None
    if not sep or cell not in CELLS or d is None or not 0.0 < d <= 1.0:
        raise ConfigError(f"group {group!r} must be 'cell:density' with a known cell ({', '.join(CELLS)}) "
                          "and a density in (0, 1]")
    return cell, d


def applies(spec: str, cell: str) -> bool:
    """Whether an estimator applies to a cell, as the estimator declares it
    (:meth:`~simulations.estimators.base.Estimator.applies_to`; e.g. KF-RTRL needs ``s' = σ(W â)``).
    An unknown spec applies (its task fails with the parser's reason)."""
    try:
        estimator = parse_estimator(spec)
    except ValueError:
        return True
    return estimator.applies_to(make_cell(cell, 2, 1))


def _group_problem(group) -> str | None:
    try:
        parse_group(group)
    except ConfigError as e:
        return str(e)
    return None


def make_process(cfg: dict):
    """The task's data process: the copy task with its curriculum, or the character stream."""
    if cfg["task"] == "copy":
        return CopyTask(cfg["alphabet"], LengthCurriculum(cfg["threshold_bits"], cfg["curriculum_window"],
                                                          cfg["spread"]))
    return CharText(cfg["vocab_size"], cfg["val_fraction"])


@dataclass(frozen=True)
class SeedPlan:
    """The seeds of one task.  ``mask``, ``init``, ``data`` (evaluation replicates) and
    ``tune_init``, ``tune_data`` (tuning replicates) come from the *group* seed, so every estimator
    of a ``(task, cell, density)`` group sees the same networks and streams, replicate by
    replicate; ``train``, ``align``, ``tune_train`` (the estimator's own random numbers) from the
    task's seed.  Tuning and evaluation replicates are distinct children of the group seed: their
    ``θ₀`` and data streams are independent (disjoint seeds)."""

    mask: np.random.SeedSequence
    init: np.random.SeedSequence
    data: np.random.SeedSequence
    tune_init: np.random.SeedSequence
    tune_data: np.random.SeedSequence
    train: np.random.SeedSequence
    align: np.random.SeedSequence
    tune_train: np.random.SeedSequence

    def keys(self) -> dict[str, list]:
        """The spawn keys of the evaluation and tuning replicates' seeds (recorded with the task)."""
        return {"evaluation": [list(self.init.spawn_key), list(self.data.spawn_key)],
                "tuning": [list(self.tune_init.spawn_key), list(self.tune_data.spawn_key)]}


def seed_plan(seed: np.random.SeedSequence, group: str) -> SeedPlan:
    """:class:`SeedPlan` of a task with run-derived ``seed`` in group ``group``."""
    g = np.random.SeedSequence(seed.entropy, spawn_key=(zlib.crc32(group.encode()),))
    mask, init, data = (np.random.SeedSequence(g.entropy, spawn_key=g.spawn_key + (i,)) for i in range(3))
    tuning = np.random.SeedSequence(g.entropy, spawn_key=g.spawn_key + (3,))
    tune_init, tune_data = tuning.spawn(2)
    train, align, tune_train = (np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key + (i,))
                                for i in range(3))
    return SeedPlan(mask, init, data, tune_init, tune_data, train, align, tune_train)


def tuning_score(kind: str, arrays: dict) -> float:
    """Higher is better.  Copy task: the curriculum length averaged over the run's records and
    replicates (the area under the learning curve); text: minus the training loss in bits per
    character over the second half of the run.  A diverged replicate scores as one that never
    learned (length 1; loss +∞), so a learning rate that diverges anywhere is not chosen over one
    that does not."""
    bad = np.asarray(arrays["diverged_at"]) >= 0
    if kind == "copy":
        L = np.asarray(arrays["length"], dtype=float)
        if L.size == 0:
            return 1.0
        per = np.where(bad, 1.0, np.nanmean(L, axis=0))
        return float(per.mean())
    loss = np.asarray(arrays["loss_bits"], dtype=float)
    if loss.size == 0 or bad.any():
        return -np.inf
    with np.errstate(invalid="ignore"):
        per = np.nanmean(loss[loss.shape[0] // 2:], axis=0)
    return float(-np.mean(per)) if np.all(np.isfinite(per)) else -np.inf


def tune_lr(cfg: dict, cell, readout, estimator, seeds: SeedPlan) -> dict:
    """The learning rate of the evaluation run: ``lr × factor`` for each factor of ``lr_grid``,
    each trained for ``tuning_fraction`` of the run's steps on ``tuning_seeds`` replicates of
    their own (:class:`SeedPlan`), scored by :func:`tuning_score`; the best is chosen (the first
    on ties).  Without tuning seeds or with one factor, the profile's rate is used untuned.
    Returns the grid, the scores, the chosen rate and the seed keys (recorded with the task)."""
    kind = cfg["task"]
    base = float(cfg[f"{kind}_lr"])
    grid = [base * float(f) for f in cfg["lr_grid"]]
    Bt = int(cfg["tuning_seeds"])
    out = {"grid": grid, "scores": [], "chosen_lr": base, "tuned": False, "tuning_seeds": Bt, "steps": 0,
           "score": None, "seed_keys": seeds.keys()}
    if Bt == 0 or len(grid) == 1:
        return out
    total = cfg["copy_steps"] if kind == "copy" else cfg["text_steps"]
    steps = max(cfg["record_every"], int(round(cfg["tuning_fraction"] * total)))
    scores = []
    for lr in grid:
        init_rng = np.random.default_rng(seeds.tune_init)
        theta0 = cell.init(init_rng, cfg["init_scale"], batch=Bt)
        phi0 = readout.init(init_rng, Bt)
        arrays = learn_online(cell, readout, estimator, make_process(cfg), theta0, phi0, steps,
                              np.random.default_rng(seeds.tune_train), np.random.default_rng(seeds.tune_data),
                              make_optimizer(cfg["optimizer"]), Schedule(lr), cfg["update_every"],
                              cfg["record_every"])
        scores.append(tuning_score(kind, arrays))
    best = int(np.argmax(scores))
    out.update(scores=[v if np.isfinite(v) else None for v in scores], chosen_lr=grid[best], tuned=True,
               steps=steps, score=scores[best] if np.isfinite(scores[best]) else None)
    return out




def task_steps(cfg: dict) -> tuple[int, int]:
    """``(evaluation steps, tuning steps per learning rate)`` of one task."""
    total = cfg["copy_steps"] if cfg["task"] == "copy" else cfg["text_steps"]
    tuned = int(cfg["tuning_seeds"]) > 0 and len(cfg["lr_grid"]) > 1
    return total, (max(cfg["record_every"], int(round(cfg["tuning_fraction"] * total))) if tuned else 0)


def probe_seconds(cfg: dict, spec: str, batch: int, steps: int = PROBE_STEPS) -> float:
    """Measured seconds per online step of ``spec`` on the task's cell with ``batch`` replicates
    (a run of ``steps`` steps, its setup included, after an untimed one-step run; one thread)."""
    process = make_process(cfg)
    cell = make_cell(cfg["cell"], cfg["hidden"], process.m, density=cfg["density"], mask_seed=0)
    readout = MaskedReadout(LinearReadout(cell.k, process.n_out, "xent"))
    rng = np.random.default_rng(0)
    theta0, phi0 = cell.init(rng, cfg["init_scale"], batch=batch), readout.init(rng, batch)
    with threadpool_limits(1):
        for n in (1, steps):                                  # the first run warms up, the second is timed
            arrays = learn_online(cell, readout, parse_estimator(spec), make_process(cfg), theta0, phi0, n, rng,
                                  np.random.default_rng(1), make_optimizer(cfg["optimizer"]), Schedule(1e-3),
                                  record_every=n, chunk=n)
    return float(arrays["seconds"]) / steps


def plan(tasks: list[Task]) -> tuple[float, list[tuple[str, float]]]:
    """Predicted single-core seconds of every task: evaluation (``steps`` on ``seeds``
    replicates), tuning (``grid × tuning steps`` on ``tuning_seeds`` replicates, scaled from the
    evaluation's cost per replicate) and the alignment segments (``align_len`` steps of exact RTRL
    every ``align_every`` steps), each from :data:`PROBE_STEPS` measured steps.  Returns the total
    and ``(task, seconds)`` per task."""
    per_task, rtrl = [], {}
    for task in tasks:
        cfg = task.config
        total, tune_steps = task_steps(cfg)
        B, Bt = int(cfg["seeds"]), int(cfg["tuning_seeds"])
        step = probe_seconds(cfg, cfg["estimator"], B)
        sec = step * (total + len(cfg["lr_grid"]) * tune_steps * Bt / B)
        if cfg["estimator"] != "rtrl":
            if cfg["group"] not in rtrl:
                rtrl[cfg["group"]] = probe_seconds(cfg, "rtrl", B, steps=1)
            segments = (total - cfg["align_len"]) // cfg["align_every"] + 1
            sec += segments * cfg["align_len"] * (rtrl[cfg["group"]] + step)
        per_task.append((task.key, sec))
    return sum(s for _, s in per_task), per_task


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


@dataclass(frozen=True)
class LearningConfig:
    """The ``learning`` experiment's config: one task per ``(task kind, group, estimator)``."""

    tasks: Annotated[list[Annotated[str, one_of(TASK_KINDS, "task")]], NON_EMPTY]
    groups: Annotated[list[Annotated[str, Rule("a group 'cell:density'", "groups 'cell:density'",
                                               problem=_group_problem)]], NON_EMPTY]
    hidden: PositiveInt
    estimators: Annotated[list[EstimatorSpec], NON_EMPTY]
    seeds: PositiveInt
    tuning_seeds: NonNegativeInt
    lr_grid: Annotated[list[Positive], NON_EMPTY]
    tuning_fraction: Fraction
    init_scale: Positive
    optimizer: Annotated[str, one_of(tuple(OPTIMIZERS), "optimizer")]
    copy_lr: Positive
    text_lr: Positive
    update_every: PositiveInt
    record_every: PositiveInt
    align_every: PositiveInt
    align_len: PositiveInt
    copy_steps: PositiveInt
    alphabet: AtLeastTwo
    threshold_bits: Positive
    spread: NonNegativeInt
    curriculum_window: PositiveInt
    text_steps: PositiveInt
    vocab_size: AtLeastTwo
    val_fraction: Fraction
    val_chars: PositiveInt
    val_every: PositiveInt


class LearningExperiment(Experiment):
    name = "learning"
    description = ("SnAp's claims under online learning (THEORY §6): copy-task curriculum and a character-level "
                   "model; RTRL, SnAp-n, UORO, KF-RTRL, RFLO and TBPTT(τ) train the same network, several seeds")
    profiles = {"quick": QUICK, "full": FULL, "paper": PAPER, "paper-claim1": PAPER_CLAIM1}
    Config = LearningConfig
    schemas = {kind: TaskSchema(
        Names(("estimator", "cell", "k", "p", "m", "density", "flops_per_step", "seconds_per_step", "steps", "batch",
               "tuning", *extra_data)),
        Names(("t", "loss_bits", "theta", "phi", "diverged_at", "seconds", "flops", *extra_arrays),
              ("align_t", "cosine")))
        for kind, extra_data, extra_arrays in (("copy", ("final_length",), ("length",)),
                                               ("text", ("final_val_bits", "corpus", "vocab"), ("val_t", "val_bits")))}

    def task_kind(self, task_config: dict) -> str:
        return task_config["task"]

    def check_overrides(self, cfg: dict, overrides: dict) -> None:
        """A config that sets ``groups`` or ``estimators`` pairs only estimators and cells that go
        together (the profiles' own lists run each estimator on the groups it applies to)."""
        if "groups" not in overrides and "estimators" not in overrides:
            return
        for group in cfg["groups"]:
            cell, _ = parse_group(group)
            for spec in cfg["estimators"]:
                if not applies(spec, cell):
                    raise config_error("estimators", f"{spec!r} does not apply to cell {cell!r} (group {group!r}): "
                                       "KF-RTRL needs the Kronecker form s' = σ(W â); remove it or the group")

    def preamble(self, cfg: dict) -> str:
        """Before a long run starts: its predicted wall time here (from steps timed now) and how to
        run it on a Dask cluster.  Empty for a run below :data:`PLAN_FLOPS` estimated FLOPs."""
        tasks = self.tasks(cfg)
        work = 0.0
        for task in tasks:
            c = task.config
            process = make_process(c)
            cell = make_cell(c["cell"], c["hidden"], process.m, density=c["density"], mask_seed=0)
            total, tune_steps = task_steps(c)
            fps = step_flops(cell, parse_estimator(c["estimator"]), process.n_out)["total"]
            work += fps * (total * c["seeds"] + tune_steps * len(c["lr_grid"]) * c["tuning_seeds"])
        if work < PLAN_FLOPS:
            return ""
        total, per_task = plan(tasks)
        longest = max(per_task, key=lambda x: x[1])
        return (f"learning: {len(tasks)} tasks, predicted {_hours(total)} of single-core compute here "
                f"(from {PROBE_STEPS} timed steps per task; ~{_hours(total / 2)} on 2 cores); the longest task, "
                f"{longest[0]}, takes ~{_hours(longest[1])}, the wall time on any number of workers. "
                "On a Dask cluster: start a scheduler and workers with one thread each (dask scheduler; "
                "dask worker tcp://HOST:8786 --nthreads 1), then rtrl-validate run learning --profile paper "
                "--scheduler tcp://HOST:8786 --out DIR (an interrupted run continues with --resume DIR).")

    def task_memory(self, cfg: dict) -> float:
        """The estimator's state and, for alignment, exact RTRL's over ``align_len`` steps; the
        recorded curves (``steps/record_every`` rows of ``B`` numbers, validation, cosines)."""
        B = cfg["seeds"]
        m = cfg["alphabet"] + 2 if cfg["task"] == "copy" else cfg["vocab_size"]
        k, p = cell_size(cfg["cell"], cfg["hidden"], m, cfg["density"])
        steps = cfg["copy_steps"] if cfg["task"] == "copy" else cfg["text_steps"]
        state = estimator_floats(cfg["estimator"], k, p, m, B, cfg["align_len"], cfg["density"])
        align = 0.0 if cfg["estimator"] == "rtrl" else (
            estimator_floats("rtrl", k, p, m, B) + cfg["align_len"] * B * (m + k))
        curves = B * (4 * steps / cfg["record_every"] + steps / cfg["val_every"] + steps / cfg["align_every"])
        val = 0 if cfg["task"] == "copy" else cfg["val_chars"] * B * (m + 2 * k + 2)
        return floats_bytes(state + align + curves + val + 2 * B * (p + k * m))

    def tasks(self, cfg: dict) -> list[Task]:
        shared = {k: v for k, v in cfg.items() if k not in ("tasks", "groups", "estimators")}
        out = []
        for kind in cfg["tasks"]:
            for group in cfg["groups"]:
                cell, d = parse_group(group)
                for spec in cfg["estimators"]:
                    if applies(spec, cell):
                        gid = f"{kind}-{cell}-d{d:g}"
                        out.append(Task(f"{gid}-{spec}", dict(shared, task=kind, cell=cell, density=d,
                                                              estimator=spec, group=gid)))
        return out

    def run_task(self, task: Task, seed: np.random.SeedSequence, progress=None) -> TaskResult:
        cfg = task.config
        kind, B = cfg["task"], int(cfg["seeds"])
        estimator = parse_estimator(cfg["estimator"])
        seeds = seed_plan(seed, cfg["group"])
        if kind == "copy":
            steps, validation, val_every = cfg["copy_steps"], None, None
        else:
            steps, val_every = cfg["text_steps"], cfg["val_every"]
            validation = make_process(cfg).validation(cfg["val_chars"], B)
        process = make_process(cfg)
        cell = make_cell(cfg["cell"], cfg["hidden"], process.m, density=cfg["density"],
                         mask_seed=int(seeds.mask.generate_state(1)[0]))
        readout = MaskedReadout(LinearReadout(cell.k, process.n_out, "xent"))
        with threadpool_limits(1):
            tuning = tune_lr(cfg, cell, readout, estimator, seeds)
            init_rng = np.random.default_rng(seeds.init)
            theta0 = cell.init(init_rng, cfg["init_scale"], batch=B)
            phi0 = readout.init(init_rng, B)
            optimizer, schedule = make_optimizer(cfg["optimizer"]), Schedule(tuning["chosen_lr"])
            align_every = cfg["align_every"] if estimator.name != "rtrl" else None
            arrays = learn_online(cell, readout, estimator, process, theta0, phi0, steps,
                                  np.random.default_rng(seeds.train), np.random.default_rng(seeds.data), optimizer,
                                  schedule, cfg["update_every"], cfg["record_every"], align_every, cfg["align_len"],
                                  np.random.default_rng(seeds.align), validation, val_every, progress=progress)
        flops = step_flops(cell, estimator, process.n_out)
        arrays["flops"] = arrays["t"] * flops["total"]
        data = {"estimator": estimator.label, "cell": cell.name, "k": cell.k, "p": cell.p, "m": cell.m,
                "density": cell.density, "flops_per_step": flops,
                "seconds_per_step": float(arrays["seconds"]) / steps, "steps": steps, "batch": B,
                "tuning": tuning}
        if kind == "copy":
            data["final_length"] = arrays["length"][-1].tolist() if len(arrays["length"]) else None
        else:
            data["final_val_bits"] = arrays["val_bits"][-1].tolist()
            data["corpus"] = corpus_info()
            data["vocab"] = "".join(process.vocab)
        bad = arrays["diverged_at"] >= 0
        if bad.any():
            return TaskResult(data, arrays, status="diverged",
                              reason=f"replicates {np.flatnonzero(bad).tolist()} diverged at steps "
                                     f"{arrays['diverged_at'][bad].tolist()}")
        return TaskResult(data, arrays)
