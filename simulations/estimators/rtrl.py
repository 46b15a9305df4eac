"""Exact RTRL (THEORY.md §2.1): ``J_t = D_t J_{t−1} + I_t`` and ``g_t = c_t J_t``.

Exact RTRL is SnAp with the all-ones mask (:mod:`.masked`, one code path): ``J`` is stored dense
(``B × k × p``) and one step costs one batched ``k × k · k × p`` product plus ``O(nnz(I))`` for
adding the factored ``I_t``.
"""
from __future__ import annotations

from .masked import InfluenceState, MaskedInfluence


class RTRL(MaskedInfluence):
    name = "rtrl"
    order = None


__all__ = ["RTRL", "InfluenceState"]
