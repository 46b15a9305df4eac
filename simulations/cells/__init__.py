"""Registry of recurrent cells: name -> class.  Tests and experiments iterate over ``CELLS``."""
from __future__ import annotations

from .base import Cell
from .elman import ContractiveElman, Elman
from .gru import GRU, GRUResetAfter
from .lstm import LSTM

CELLS: dict[str, type[Cell]] = {c.name: c for c in (Elman, ContractiveElman, GRU, GRUResetAfter, LSTM)}


def make_cell(name: str, hidden: int, inputs: int, **options) -> Cell:
    """Build a registered cell by name; unknown names raise ``ValueError`` listing the known ones."""
    try:
        cls = CELLS[name]
    except KeyError:
        raise ValueError(f"unknown cell {name!r}; known cells: {', '.join(CELLS)}") from None
    return cls(hidden, inputs, **options)


__all__ = ["CELLS", "Cell", "make_cell", "Elman", "ContractiveElman", "GRU", "GRUResetAfter", "LSTM"]
