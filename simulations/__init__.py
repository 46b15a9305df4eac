"""The numerical engine: cells, estimators, readouts, data, training and experiments (numpy/scipy only)."""
from .numba_cache import install as _install_numba_cache

_install_numba_cache()                 # before any compiled function is loaded from or saved to the cache
from .cells import CELLS, make_cell  # noqa: E402
from .estimators import ESTIMATORS, make_estimator, parse_estimator  # noqa: E402
from .readouts import LinearReadout  # noqa: E402
from .sequence import run_sequence, sequence_loss  # noqa: E402

__all__ = ["CELLS", "make_cell", "ESTIMATORS", "make_estimator", "parse_estimator", "LinearReadout",
           "run_sequence", "sequence_loss"]
