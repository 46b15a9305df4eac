"""Random signs for the rank-one estimators (UORO, KF-RTRL; THEORY.md §4), and replayable sign
sources for checks.

Estimators draw signs through :func:`rademacher` with the ``rng`` they are given.  Any object with
a ``rademacher(shape)`` method can stand in for the ``numpy.random.Generator``: :class:`SignReplay`
plays back fixed sequences (exact expectations by enumerating every sequence) and
:class:`ShiftedSigns` draws signs whose mean is shifted (a deliberately biased variant, to show
that an unbiasedness test has power).
"""
from __future__ import annotations

import itertools
from typing import Protocol

import numpy as np


class SignSource(Protocol):
    """A stand-in for the Generator that hands out signs itself."""

    def rademacher(self, shape) -> np.ndarray: ...


def rademacher(rng: np.random.Generator | SignSource, shape) -> np.ndarray:
    """Independent uniform ``±1.0`` of ``shape``, from a Generator or a :class:`SignSource`."""
    if not isinstance(rng, np.random.Generator):
        return rng.rademacher(shape)
    u = rng.random(shape)                    # uniform on the grid k·2⁻⁵³ of [0, 1): P(u ≥ ½) = ½ exactly
    u -= 0.5
    return np.copysign(1.0, u, out=u)        # +1 where u ≥ ½ (copysign(1, +0) = +1), else −1


def sign_draws(rng: np.random.Generator | SignSource, shape) -> np.ndarray:
    """What :func:`rademacher` turns into signs, for a compiled step that does it itself: a
    Generator's uniforms ``u`` (the sign is ``+1`` where ``u ≥ ½``, else ``−1``) or a
    :class:`SignSource`'s signs (which that rule maps to themselves).  The same draws from the
    same source as :func:`rademacher`'s, so both give the same signs."""
    return rng.random(shape) if isinstance(rng, np.random.Generator) else rng.rademacher(shape)


class SignReplay:
    """Plays back ``signs`` (``steps × B × w``, entries ``±1``): call ``t`` returns ``signs[t]``."""

    def __init__(self, signs: np.ndarray):
        self.signs = np.asarray(signs, dtype=float)
        self.t = 0

    def rademacher(self, shape) -> np.ndarray:
        if self.t >= self.signs.shape[0]:
            raise ValueError(f"sign replay exhausted after {self.t} steps")
        out = self.signs[self.t]
        if out.shape != tuple(shape):
            raise ValueError(f"sign replay holds blocks of shape {out.shape}, estimator asked for {tuple(shape)}")
        self.t += 1
        return out


def all_sign_sequences(width: int, steps: int) -> np.ndarray:
    """Every sequence of ``steps`` sign vectors of length ``width``: ``steps × 2^(width·steps) × width``."""
    n = width * steps
    if n > 20:
        raise ValueError(f"{2 ** n} sign sequences is too many to enumerate (width·steps = {n} > 20)")
    grid = np.array(list(itertools.product((-1.0, 1.0), repeat=n)))     # 2^n × n
    return grid.reshape(-1, steps, width).transpose(1, 0, 2).copy()


class ShiftedSigns:
    """Signs with ``P(+1) = (1 + shift)/2`` (mean ``shift``), drawn from ``rng``: a biased variant."""

    def __init__(self, rng: np.random.Generator, shift: float):
        if not -1.0 < shift < 1.0:
            raise ValueError(f"sign shift must be in (-1, 1), got {shift!r}")
        self.rng, self.shift = rng, float(shift)

    def rademacher(self, shape) -> np.ndarray:
        return np.where(self.rng.random(shape) < 0.5 * (1.0 + self.shift), 1.0, -1.0)
