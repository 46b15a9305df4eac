"""rtrl-validation: checks the theory of Real-Time Recurrent Learning against computation.

The installed package is ``rtrl_validation``; its subpackages are the repository's folders
(``pyproject.toml`` maps them onto this namespace):

``rtrl_validation.simulations``   the numerical engine: cells, estimators, data, training, experiments
``rtrl_validation.proofs_checks`` sympy derivations, finite differences, gradient checks
``rtrl_validation.analysis``      statistics on result records
``rtrl_validation.reports``       figures, HTML/PDF report, the ``rtrl-validate`` command

The public API is importable from here; names are resolved on first use (PEP 562), so
``import rtrl_validation`` stays cheap and importing one subpackage does not load the others::

    import rtrl_validation as rv
    cell = rv.make_cell("gru", hidden=8, inputs=3)
    result = rv.run_gradcheck(cells=["elman"])
"""
from __future__ import annotations

from importlib import import_module

#: public name -> module (relative to this package) that defines it
_API = {
    "CELLS": "simulations.cells", "Cell": "simulations.cells", "make_cell": "simulations.cells",
    "ESTIMATORS": "simulations.estimators", "Estimator": "simulations.estimators",
    "make_estimator": "simulations.estimators", "parse_estimator": "simulations.estimators",
    "LinearReadout": "simulations.readouts",
    "run_sequence": "simulations.sequence", "sequence_loss": "simulations.sequence",
    "Experiment": "simulations.experiments", "ConfigError": "simulations.experiments",
    "run_experiment": "simulations.runner",
    "load_records": "simulations.records", "read_record": "simulations.records",
    "run_gradcheck": "proofs_checks.gradcheck",
    "register_cell": "simulations.registry", "register_estimator": "simulations.registry",
    "Equations": "simulations.cells.symbolic", "sigmoid": "simulations.cells.symbolic",
    "assert_gradients_correct": "proofs_checks.assertions", "check_gradients": "proofs_checks.assertions",
    "experiments": "reports.registry",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    try:
        module = _API[name]
    except KeyError:
        raise AttributeError(f"module 'rtrl_validation' has no attribute {name!r}") from None
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
