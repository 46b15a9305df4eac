"""Data processes (ergodic sources, tasks); see :mod:`simulations.data.base` for the interface."""
from .base import DataProcess

PROCESSES: dict[str, type[DataProcess]] = {}

__all__ = ["DataProcess", "PROCESSES"]
