"""Name -> factory registries for cells and estimators, open to other packages.

``CELLS`` and ``ESTIMATORS`` are :class:`Registry` dicts.  A researcher's cell or estimator joins
them without editing this package, either in code::

    from rtrl_validation import register_cell
    register_cell("mgu", mgu)                 # a Cell subclass or a CellEquations

or from an installed package, through the entry-point groups ``rtrl_validation.cells`` and
``rtrl_validation.estimators`` (read on the first look-up by name)::

    [project.entry-points."rtrl_validation.cells"]
    mgu = "my_package.cells:mgu"

Registered names are then accepted by ``make_cell`` / ``make_estimator``, the experiments'
configs and the ``rtrl-validate`` command.  Cells registered in code exist in the process that
registered them (and in forked workers); entry points are read by every process.
"""
from __future__ import annotations

import warnings
from importlib.metadata import entry_points

CELL_GROUP = "rtrl_validation.cells"
ESTIMATOR_GROUP = "rtrl_validation.estimators"


class Registry(dict):
    """A ``dict`` name -> factory whose entry points (group ``group``) are loaded on first use.

    Entries registered in code take precedence over entry points of the same name.  An entry
    point that fails to load is skipped with a warning naming it (the others stay usable).
    """

    def __init__(self, group: str, items=()):
        super().__init__(items)
        self.group = group
        self._loaded = False

    def load_entry_points(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for ep in entry_points(group=self.group):
            if dict.__contains__(self, ep.name):
                continue
            try:
                dict.__setitem__(self, ep.name, ep.load())
            except Exception as err:       # a broken plug-in must not break the built-ins
                warnings.warn(f"entry point {ep.name!r} of {self.group} failed to load: {err}", stacklevel=2)

    def __getitem__(self, name):
        if not dict.__contains__(self, name):
            self.load_entry_points()
        return dict.__getitem__(self, name)

    def __contains__(self, name) -> bool:
        if not dict.__contains__(self, name):
            self.load_entry_points()
        return dict.__contains__(self, name)

    def get(self, name, default=None):
        return self[name] if name in self else default

    def __iter__(self):
        self.load_entry_points()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self.load_entry_points()
        return dict.__len__(self)

    def keys(self):
        self.load_entry_points()
        return dict.keys(self)

    def values(self):
        self.load_entry_points()
        return dict.values(self)

    def items(self):
        self.load_entry_points()
        return dict.items(self)

    def __reduce__(self):             # pickles (e.g. to a worker) as a plain registry of its entries
        return (type(self), (self.group, list(dict.items(self))))


def _check_name(name, registry: Registry, replace: bool, what: str) -> None:
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"{what} name must be a non-empty string without surrounding spaces, got {name!r}")
    if not replace and dict.__contains__(registry, name):
        raise ValueError(f"{what} {name!r} is already registered (pass replace=True to override it)")


def register_cell(name: str, cell, replace: bool = False) -> None:
    """Make ``cell`` available by ``name`` to ``make_cell``, configs and the command line.

    Parameters
    ----------
    name : str
        The name configs use (e.g. ``cell = "mgu"``).
    cell : callable
        ``cell(hidden, inputs, density=1.0, mask_seed=0, masks=None, **options) -> Cell``: a
        :class:`~rtrl_validation.simulations.cells.base.Cell` subclass or a
        :class:`~rtrl_validation.simulations.cells.symbolic.CellEquations`.
    replace : bool
        Allow replacing a registered cell of the same name.
    """
    from .cells import CELLS
    from .cells.base import Cell
    _check_name(name, CELLS, replace, "cell")
    if isinstance(cell, Cell) or not callable(cell):
        raise TypeError(f"register_cell needs a Cell class or a CellEquations (a factory called with "
                        f"hidden, inputs), got {type(cell).__name__}")
    dict.__setitem__(CELLS, name, cell)


def register_estimator(name: str, cls, spec_option: str | None = None, replace: bool = False) -> None:
    """Make an estimator class available by ``name`` to ``make_estimator``, configs and the CLI.

    Parameters
    ----------
    name : str
        The name configs use.
    cls : type
        A subclass of :class:`~rtrl_validation.simulations.estimators.base.Estimator`; its
        constructor's keyword arguments are its options.
    spec_option : str, optional
        The option a ``name-N`` spec sets (as ``tau`` for ``tbptt-10``).
    replace : bool
        Allow replacing a registered estimator of the same name.
    """
    from .estimators import ESTIMATORS, SPEC_OPTION, Estimator
    _check_name(name, ESTIMATORS, replace, "estimator")
    if not (isinstance(cls, type) and issubclass(cls, Estimator)):
        raise TypeError(f"register_estimator needs an Estimator subclass, got {cls!r}")
    dict.__setitem__(ESTIMATORS, name, cls)
    if spec_option is not None:
        SPEC_OPTION[name] = spec_option
