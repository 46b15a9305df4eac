"""The one registry of report sections: (experiment, analysis function), in report order.

Adding a section = one experiment (``simulations.experiments.base.Experiment`` subclass) + one
analysis function (records -> ``analysis.sections.Section``) + one line here.
"""
from __future__ import annotations

import analysis.bias_variance
import analysis.cost
import analysis.convergence
import analysis.gradients
import analysis.learning
from proofs_checks.experiment import GradientsExperiment
from simulations.experiments.bias_variance import BiasVarianceExperiment
from simulations.experiments.cost import CostExperiment
from simulations.experiments.convergence import ConvergenceExperiment
from simulations.experiments.learning import LearningExperiment

SECTIONS: list = [
    (GradientsExperiment(), analysis.gradients.analyse),
    (BiasVarianceExperiment(), analysis.bias_variance.analyse),
    (CostExperiment(), analysis.cost.analyse),
    (ConvergenceExperiment(), analysis.convergence.analyse),
    (LearningExperiment(), analysis.learning.analyse),
]


def experiments() -> dict:
    """name -> experiment instance, in report order."""
    return {exp.name: exp for exp, _ in SECTIONS}


def analyses() -> dict:
    """experiment name -> analysis function."""
    return {exp.name: fn for exp, fn in SECTIONS}
