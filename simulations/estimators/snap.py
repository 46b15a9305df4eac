"""SnAp-n (THEORY.md §4): ``J̃_t = (D_t J̃_{t−1} + I_t) ⊙ M_n`` with the structural mask
``M_n = nz(I) ∪ nz(D I) ∪ … ∪ nz(D^{n−1} I)`` from the weight patterns (:mod:`.masked`).

SnAp-1 of an Elman cell keeps one number per parameter (``O(p)`` memory and time); SnAp-2 of a
network with weight density ``d`` keeps about ``1 + d·k`` rows per column; SnAp-n is exact RTRL for
``n ≥ n*`` (:func:`~.masked.exact_order`; ``n* = 2`` for a dense network), and then uses the dense
path when ``M_n`` is all ones.
"""
from __future__ import annotations

import numpy as np

from .masked import MaskedInfluence


class SnAp(MaskedInfluence):
    """SnAp of order ``n`` (an integer ``≥ 1``)."""

    name = "snap"

    def __init__(self, n: int = 1):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"SnAp order n must be an integer >= 1, got {n!r}")
        self.order = int(n)

    @property
    def label(self):
        return f"snap-{self.order}"
