"""Registry of recurrent cells: name -> class.  Tests and experiments iterate over ``CELLS``
(a :class:`~rtrl_validation.simulations.registry.Registry`: ``register_cell`` and the entry-point
group ``rtrl_validation.cells`` add cells to it)."""
from __future__ import annotations

from .base import Cell
from .elman import ContractiveElman, Elman
from .gru import GRU, GRUResetAfter
from .lstm import LSTM
from ..registry import CELL_GROUP, Registry

CELLS: dict[str, type[Cell]] = Registry(
    CELL_GROUP, {c.name: c for c in (Elman, ContractiveElman, GRU, GRUResetAfter, LSTM)})


def make_cell(name: str, hidden: int, inputs: int, **options) -> Cell:
    """Build a registered cell by name; unknown names raise ``ValueError`` listing the known ones."""
    try:
        cls = CELLS[name]
    except KeyError:
        raise ValueError(f"unknown cell {name!r}; known cells: {', '.join(CELLS)}") from None
    return cls(hidden, inputs, **options)


__all__ = ["CELLS", "Cell", "make_cell", "Elman", "ContractiveElman", "GRU", "GRUResetAfter", "LSTM"]
