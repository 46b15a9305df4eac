"""The one config check shared by the ``bias-variance`` and ``cost`` experiments (the rest is typed,
:mod:`simulations.config`)."""
from __future__ import annotations

from ..cells import make_cell
from ..config import config_error
from ..estimators import parse_estimator


def estimator_for(spec, cell_name: str) -> None:
    """``spec`` runs on ``cell_name`` (KF-RTRL needs σ(W â)); ``ConfigError`` (``estimators: ...``) if not."""
    try:
        parse_estimator(spec).require_cell(make_cell(cell_name, 2, 1))
    except ValueError as err:
        raise config_error("estimators", " ".join(str(err).split())) from None
