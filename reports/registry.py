"""The one registry of report sections: (experiment, analysis function), in report order.

Adding a section = one experiment (``simulations.experiments.base.Experiment`` subclass) + one
analysis function (records -> ``analysis.sections.Section``) + one line here.
"""
from __future__ import annotations

from rtrl_validation.analysis import bias_variance, convergence, cost, gradients, learning
from rtrl_validation.proofs_checks.experiment import GradientsExperiment
from rtrl_validation.simulations.experiments.bias_variance import BiasVarianceExperiment
from rtrl_validation.simulations.experiments.cost import CostExperiment
from rtrl_validation.simulations.experiments.convergence import ConvergenceExperiment
from rtrl_validation.simulations.experiments.learning import LearningExperiment

SECTIONS: list = [
    (GradientsExperiment(), gradients.analyse),
    (BiasVarianceExperiment(), bias_variance.analyse),
    (CostExperiment(), cost.analyse),
    (ConvergenceExperiment(), convergence.analyse),
    (LearningExperiment(), learning.analyse),
]


def experiments() -> dict:
    """name -> experiment instance, in report order."""
    return {exp.name: exp for exp, _ in SECTIONS}


def analyses() -> dict:
    """experiment name -> analysis function."""
    return {exp.name: fn for exp, fn in SECTIONS}
