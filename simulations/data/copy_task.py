"""The copy task with a length curriculum (THEORY.md §6; SnAp's copy benchmark).

An *episode* of length ``ℓ`` is ``2ℓ + 1`` steps:

* steps ``0 … ℓ−1``: a random string over an alphabet of ``A`` symbols, one-hot on channels ``0 … A−1``;
* step ``ℓ``: the delimiter (channel ``A``);
* steps ``ℓ+1 … 2ℓ``: the recall marker (channel ``A+1``); the target at recall step ``j`` is the
  ``j``-th symbol of the string.

Targets are class indices (``T × B`` ints) with :data:`IGNORE` (``−1``) off the recall phase; wrap
the readout in :class:`MaskedReadout` so those steps carry zero loss, zero credit and zero readout
gradient.  Episodes follow each other without a break in one stream per replicate, and the core
state is carried across them (online learning never resets).  Each replicate has its own stream
and its own curriculum length ``L_b`` (:class:`~simulations.curriculum.LengthCurriculum`); a new
episode draws ``ℓ`` from ``[max(1, L_b − spread), L_b]`` with the ``L_b`` current when the episode
is generated (episodes are generated as a chunk needs them, so a change of ``L_b`` takes effect
from the next episode generated).  Loss in bits per character = nats / ln 2 on recall steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import DataProcess
from ..curriculum import CurriculumState, LengthCurriculum

#: target value of a step that carries no loss
IGNORE = -1


def episodes(lengths: np.ndarray, alphabet: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Episodes of the given ``lengths`` (``n``) back to back.

    Returns ``(codes, targets)``, both ``Σ(2ℓ+1)`` ints: ``codes`` is the input channel of each step
    (symbol ``< A``, ``A`` delimiter, ``A+1`` recall marker); ``targets`` the symbol to reproduce or
    :data:`IGNORE`.
    """
    lengths = np.asarray(lengths, dtype=np.intp)
    span = 2 * lengths + 1
    ep = np.repeat(np.arange(lengths.size), span)                       # episode of each step
    pos = np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span)  # position in its episode
    ell = lengths[ep]
    symbols = rng.integers(alphabet, size=(lengths.size, int(lengths.max())))
    shown = symbols[ep, np.minimum(pos, ell - 1)]
    recalled = symbols[ep, np.clip(pos - ell - 1, 0, None)]
    codes = np.where(pos < ell, shown, np.where(pos == ell, alphabet, alphabet + 1))
    targets = np.where(pos > ell, recalled, IGNORE)
    return codes, targets


@dataclass
class CopyState:
    curriculum: CurriculumState
    rngs: list            # B Generators, one stream per replicate
    codes: list           # B pending input codes
    targets: list         # B pending targets


class CopyTask(DataProcess):
    """Copy task stream (``m = A + 2`` inputs, ``n_out = A`` classes, ``loss = "xent"``).

    ``alphabet``: ``A`` (2 is the binary task); ``curriculum``: a :class:`LengthCurriculum`.
    """

    name = "copy"
    loss = "xent"
    #: episodes generated per refill of a replicate's pending steps
    refill = 8

    def __init__(self, alphabet: int = 2, curriculum: LengthCurriculum | None = None):
        if isinstance(alphabet, bool) or not isinstance(alphabet, (int, np.integer)) or alphabet < 2:
            raise ValueError(f"copy-task alphabet must be an integer >= 2, got {alphabet!r}")
        self.alphabet = int(alphabet)
        self.m, self.n_out = self.alphabet + 2, self.alphabet
        self.curriculum = curriculum or LengthCurriculum()
        self._eye = np.eye(self.m)

    def init(self, rng: np.random.Generator, batch: int) -> CopyState:
        rngs = rng.spawn(batch)
        empty = [np.zeros(0, dtype=np.intp) for _ in range(batch)]
        return CopyState(self.curriculum.init(batch), rngs, list(empty), list(empty))

    def sample(self, state: CopyState, T: int, rng: np.random.Generator | None = None):
        """``T`` steps of every replicate's stream: ``xs`` ``T × B × (A+2)``, ``ys`` ``T × B`` ints.

        ``rng`` is not used: each replicate draws from its own generator in ``state`` (made by
        :meth:`init`), so one replicate's stream does not depend on another's curriculum.  Episodes
        are generated ``refill`` at a time when a replicate's pending steps run short, so the
        stream does not depend on how it is cut into chunks (for a fixed curriculum)."""
        B = len(state.rngs)
        codes = np.empty((T, B), dtype=np.intp)
        ys = np.empty((T, B), dtype=np.intp)
        for b in range(B):
            while state.codes[b].size < T:
                L = int(state.curriculum.length[b])
                c, y = episodes(self.curriculum.lengths(L, self.refill, state.rngs[b]), self.alphabet,
                                state.rngs[b])
                state.codes[b] = np.concatenate([state.codes[b], c])
                state.targets[b] = np.concatenate([state.targets[b], y])
            codes[:, b], ys[:, b] = state.codes[b][:T], state.targets[b][:T]
            state.codes[b], state.targets[b] = state.codes[b][T:], state.targets[b][T:]
        return state, self._eye[codes], ys

    def observe(self, state: CopyState, loss: np.ndarray, y: np.ndarray) -> CopyState:
        """Feed one step's loss (nats, ``B``) and targets (``B``) to the curriculum (recall steps only)."""
        state.curriculum = self.curriculum.observe(state.curriculum, loss / np.log(2.0), y != IGNORE)
        return state

    def lengths(self, state: CopyState) -> np.ndarray:
        """Current curriculum lengths ``L_b`` (``B``)."""
        return state.curriculum.length.copy()


class MaskedReadout:
    """A readout whose steps with target :data:`IGNORE` carry no loss, credit or ``φ``-gradient.

    Same interface as :class:`~simulations.readouts.LinearReadout` (``k``, ``n_out``, ``q``,
    ``init``, ``predict``, ``evaluate``); integer targets ``y`` (``B``) only.
    """

    def __init__(self, readout):
        self.readout = readout
        self.k, self.n_out, self.q, self.loss = readout.k, readout.n_out, readout.q, readout.loss

    def init(self, rng, batch=None):
        return self.readout.init(rng, batch)

    def predict(self, phi, s):
        return self.readout.predict(phi, s)

    def evaluate(self, phi, s, y):
        """``(ℓ (B,), credit (B × k), ∂ℓ/∂φ (B × q))``, all zero on rows with ``y == IGNORE``."""
        y = np.asarray(y)
        w = (y != IGNORE).astype(float)
        loss, credit, dphi = self.readout.evaluate(phi, s, np.where(w > 0, y, 0))
        return loss * w, credit * w[:, None], dphi * w[:, None]
