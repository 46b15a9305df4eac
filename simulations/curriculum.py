"""A length curriculum driven by the recent loss (THEORY.md §6: the copy task with a curriculum).

The curriculum holds one length ``L_b`` per replicate ``b`` (replicates advance independently).
It watches the per-step loss in bits on the counted steps (the recall phase of the copy task) and,
each time ``window`` counted steps have accumulated, compares their mean with ``threshold``:
below it, ``L_b ← L_b + 1``; either way the window restarts.  New episodes draw their length
uniformly from ``[max(1, L_b − spread), L_b]`` (SnAp's rule: threshold 0.15 bits per character,
spread 5).

State arrays all have shape ``(B,)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CurriculumState:
    length: np.ndarray      # B ints: the current curriculum length L_b
    bits: np.ndarray        # B: sum of counted losses (bits) in the open window
    count: np.ndarray       # B ints: counted steps in the open window


class LengthCurriculum:
    """``threshold``: mean bits per counted step that lets ``L`` grow; ``window``: counted steps per
    decision; ``spread``: episode lengths come from ``[max(1, L − spread), L]``; ``start``: ``L_0``;
    ``max_length``: a cap (``None``: none)."""

    def __init__(self, threshold: float = 0.15, window: int = 64, spread: int = 5, start: int = 1,
                 max_length: int | None = None):
        if not (np.isfinite(threshold) and threshold > 0):
            raise ValueError(f"curriculum threshold must be a positive number of bits, got {threshold!r}")
        for name, v, low in (("window", window, 1), ("spread", spread, 0), ("start", start, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"curriculum {name} must be an integer >= {low}, got {v!r}")
        if max_length is not None and (not isinstance(max_length, (int, np.integer)) or max_length < start):
            raise ValueError(f"curriculum max_length must be an integer >= start, got {max_length!r}")
        self.threshold, self.window, self.spread = float(threshold), int(window), int(spread)
        self.start, self.max_length = int(start), max_length

    def init(self, batch: int) -> CurriculumState:
        return CurriculumState(np.full(batch, self.start, dtype=np.int64), np.zeros(batch),
                               np.zeros(batch, dtype=np.int64))

    def observe(self, state: CurriculumState, bits: np.ndarray, counted: np.ndarray) -> CurriculumState:
        """Add one step: ``bits`` (``B``) is the step's loss in bits, ``counted`` (``B`` bool) says
        whether the step belongs to the measured phase.  Advances ``L_b`` where a full window's mean
        is below the threshold (in place; returns ``state``)."""
        counted = np.asarray(counted, dtype=bool)
        state.bits += np.where(counted, bits, 0.0)
        state.count += counted
        full = state.count >= self.window
        if full.any():
            mean = state.bits / np.maximum(state.count, 1)
            grow = full & (mean < self.threshold)
            if self.max_length is not None:
                grow &= state.length < self.max_length
            state.length += grow
            state.bits[full] = 0.0
            state.count[full] = 0
        return state

    def lengths(self, length: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` episode lengths drawn uniformly from ``[max(1, length − spread), length]``."""
        return rng.integers(max(1, int(length) - self.spread), int(length) + 1, size=n)
