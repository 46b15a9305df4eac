"""Memory a task needs, estimated from its config before any work starts, and the memory the
machine has.

The sizes are the theory's (THEORY.md §2.1 and §4): a cell of ``hidden`` units has ``k`` state
numbers and ``p`` parameters; exact RTRL holds the influence ``J`` (``B·k·p`` numbers, twice: the
update writes a new one), SnAp-n its masked part, UORO ``B·(k + p)``, KF-RTRL two Kronecker
factors, RFLO ``B·p``, and (T)BPTT a tape of ``T·B·(3k + m + p)`` numbers (state, input, credit
and the factored ``D_t``, ``I_t``).  Every
experiment's :meth:`~.experiments.base.Experiment.task_memory` is built from these functions, and
:func:`check_fits` refuses a config with a task that needs more than the machine has available.
"""
from __future__ import annotations

import functools
import math
import os
from functools import lru_cache

import numpy as np

from .experiments.base import ConfigError

FLOAT = 8                       # bytes of a float64
TASK_OVERHEAD = 2048            # bytes of one task's description in the task list


@lru_cache(maxsize=None)
def _size_model(cell_name: str) -> tuple[float, ...]:
    """``(κ, a, b, c, d, e)``: ``k = κ·hidden`` and ``p = a·h² + b·h·m + c·h + d·m + e`` fitted
    exactly on small dense cells (every registered cell's ``p`` has this form)."""
    from .cells import make_cell
    points = [(h, m) for h in (1, 2, 3) for m in (1, 2)]
    cells = [make_cell(cell_name, h, m) for h, m in points]
    A = np.array([[h * h, h * m, h, m, 1.0] for h, m in points])
    coef = np.linalg.lstsq(A, np.array([c.p for c in cells], dtype=float), rcond=None)[0]
    return (cells[0].k / points[0][0], *np.round(coef, 6))


def cell_size(cell_name: str, hidden: int, inputs: int, density: float = 1.0) -> tuple[float, float]:
    """``(k, p)`` of a cell without building it; the ``h²`` (recurrent) parameters scale with the
    density."""
    kappa, a, b, c, d, e = _size_model(cell_name)
    try:
        h, m = float(hidden), float(inputs)
    except OverflowError:
        return math.inf, math.inf
    return kappa * h, a * density * h * h + b * h * m + c * h + d * m + e


def estimator_floats(spec: str, k: int, p: int, m: int, batch: int = 1, steps: int = 1,
                     density: float = 1.0) -> float:
    """Numbers held by an estimator's state for ``batch`` replicates (``steps``: the length of a
    BPTT tape; TBPTT(τ) and online TBPTT(τ) keep ``τ`` steps)."""
    name, _, arg = spec.partition("-")
    if name == "rtrl":                      # J and the buffer of its update
        per = 2 * k * p
    elif name == "snap":
        n = int(arg or 1)
        # the masked influence keeps at most min(k, (1 + d·k)^(n−1)) rows per parameter, twice
        reach = (n - 1) * math.log1p(density * k)
        per = p if n == 1 else 2 * p * (k if reach >= math.log(max(k, 1)) else math.exp(reach))
    elif name == "uoro":
        per = 2 * (k + p)
    elif name == "kf":                      # kf-rtrl: k × k and k × (k + m + 1) factors
        per = 2 * k * k + k * m + p
    elif name == "rflo":
        per = p
    elif name in ("bptt", "tbptt"):         # a masked cell's I_t is kept as its p nonzeros
        per = (int(arg) if arg else steps) * (3 * k + m + p)
    elif name == "online" and arg.startswith("tbptt"):
        # online-tbptt-τ: τ steps' factors of D_t and I_t: the recurrent weights of their step as
        # full matrices (a masked cell's too: at most p / density numbers) and at most four gates'
        # values and the block inputs (8k + m + 1)
        per = int(arg.partition("-")[2] or 1) * (p / density + 8 * k + m + 1)
    else:
        per = k * p
    return float(batch) * (per + k * (k + m) + 2 * p)     # plus one linearization, θ and the gradient


def floats_bytes(numbers: float) -> float:
    """Bytes of ``numbers`` float64 values (``inf`` beyond a float's range)."""
    try:
        return FLOAT * float(numbers)
    except OverflowError:
        return math.inf


def available_bytes() -> int | None:
    """Memory available to a new process: ``MemAvailable`` of ``/proc/meminfo``, else the free
    physical pages (``os.sysconf``); ``None`` when neither is known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def human(nbytes: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    if not math.isfinite(nbytes):
        return "over 1e308 B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(nbytes) < 1024 or unit == "PiB":
            return f"{nbytes:.3g} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024.0
    return f"{nbytes:.3g} EiB"


def require(needed: float, what: str, available: int | None = None) -> None:
    """Raise :class:`ConfigError` (``memory: ...``) when ``needed`` bytes exceed the available
    memory."""
    available = available_bytes() if available is None else available
    if available is not None and not needed <= available:          # NaN (inf · 0) counts as too much
        raise ConfigError(f"memory: {what} needs about {human(needed)}; this machine has "
                          f"{human(available)} available")


def saturating(estimate):
    """``estimate`` returning ``inf`` where its arithmetic leaves a float's range (certainly more
    than any machine has)."""
    @functools.wraps(estimate)
    def wrapped(*args, **kwargs) -> float:
        try:
            return float(estimate(*args, **kwargs))
        except OverflowError:
            return math.inf
    return wrapped


@saturating
def _bytes(exp, task_config: dict) -> float:
    return exp.task_memory(task_config)


def check_fits(exp, config: dict, available: int | None = None) -> None:
    """Refuse ``config`` when the task list or one of its tasks needs more memory than the machine
    has (each task runs on its own; a worker holds one task at a time)."""
    available = available_bytes() if available is None else available
    tasks = exp.tasks(config)
    needs = [(_bytes(exp, t.config), t.key) for t in tasks]
    if needs:
        need, key = max(needs)
        require(need, f"task {key!r}", available)
