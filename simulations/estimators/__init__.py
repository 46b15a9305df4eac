"""Registry of influence / gradient estimators: name -> class.

``make_estimator("tbptt", tau=5)`` or ``parse_estimator("tbptt-5")``.  A new estimator is one
module plus one line in ``ESTIMATORS`` (or ``register_estimator`` / the entry-point group
``rtrl_validation.estimators`` from another package); its constructor's keyword arguments are its options.
"""
from __future__ import annotations

from .base import Estimator
from .bptt import BPTT, TBPTT
from .kf_rtrl import KFRTRL
from .online_tbptt import OnlineTBPTT
from .rflo import RFLO
from .rtrl import RTRL
from .snap import SnAp
from .uoro import UORO
from ..registry import ESTIMATOR_GROUP, Registry

ESTIMATORS: dict[str, type[Estimator]] = Registry(ESTIMATOR_GROUP, {
    "rtrl": RTRL,
    "bptt": BPTT,
    "tbptt": TBPTT,
    "online-tbptt": OnlineTBPTT,
    "snap": SnAp,
    "uoro": UORO,
    "kf-rtrl": KFRTRL,
    "rflo": RFLO,
})

#: the option that a ``name-N`` spec sets, per estimator
SPEC_OPTION = {"tbptt": "tau", "online-tbptt": "tau", "snap": "n"}


def make_estimator(name: str, **options) -> Estimator:
    try:
        cls = ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"unknown estimator {name!r}; known estimators: {', '.join(ESTIMATORS)}") from None
    return cls(**options)


def parse_estimator(spec: str) -> Estimator:
    """``"rtrl"``, ``"bptt"``, ``"tbptt-10"``, ``"snap-2"``: name with an optional integer option."""
    name, _, arg = spec.rpartition("-") if spec.rpartition("-")[2].isdigit() else (spec, "", "")
    if arg:
        if name not in SPEC_OPTION:
            raise ValueError(f"estimator {name!r} takes no '-N' option")
        return make_estimator(name, **{SPEC_OPTION[name]: int(arg)})
    return make_estimator(name)


__all__ = ["ESTIMATORS", "Estimator", "make_estimator", "parse_estimator", "RTRL", "BPTT", "TBPTT",
           "OnlineTBPTT", "SnAp", "UORO", "KFRTRL", "RFLO"]
