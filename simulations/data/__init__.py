"""Data processes (ergodic sources, tasks); see :mod:`simulations.data.base` for the interface."""
from .base import DataProcess
from .copy_task import CopyTask
from .markov import MarkovRegime
from .orderbook import SyntheticOrderBook
from .text import CharText
from .var1 import VAR1Teacher

PROCESSES: dict[str, type[DataProcess]] = {
    VAR1Teacher.name: VAR1Teacher,
    MarkovRegime.name: MarkovRegime,
    SyntheticOrderBook.name: SyntheticOrderBook,
    CopyTask.name: CopyTask,
    CharText.name: CharText,
}


def make_process(name: str, **options) -> DataProcess:
    """Build a registered data process by name; unknown names raise ``ValueError``."""
    try:
        cls = PROCESSES[name]
    except KeyError:
        raise ValueError(f"unknown data process {name!r}; known processes: {', '.join(PROCESSES)}") from None
    return cls(**options)

__all__ = ["DataProcess", "PROCESSES", "make_process", "VAR1Teacher", "MarkovRegime", "SyntheticOrderBook", "CopyTask", "CharText"]
