"""The numerical engine: cells, estimators, readouts, data, training and experiments (numpy/scipy only)."""
from .cells import CELLS, make_cell
from .estimators import ESTIMATORS, make_estimator, parse_estimator
from .readouts import LinearReadout
from .sequence import run_sequence, sequence_loss

__all__ = ["CELLS", "make_cell", "ESTIMATORS", "make_estimator", "parse_estimator", "LinearReadout",
           "run_sequence", "sequence_loss"]
