"""Seeds and generators: every function that draws random numbers takes either."""
from __future__ import annotations

import numpy as np


def as_generator(seed) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a generator (returned as is), a non-negative integer or a
    ``SeedSequence``.

    ``None`` is refused: a function that draws random numbers never picks a seed of its own, so a
    result is always traceable to a seed the caller chose.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.default_rng(int(seed))
    raise TypeError(f"expected a seed (a non-negative integer) or a numpy Generator, got {seed!r}")
