"""Run state as plain data, for checkpoints: numbers, strings, ``None``, numpy arrays, lists and
dicts, and a numpy Generator as its ``bit_generator.state`` dict.

:func:`to_plain` turns dataclasses, named tuples, tuples and Generators into that form;
:func:`restore` writes plain data back into a *template*, an object of the same shape made afresh
(e.g. by ``init`` with the same configuration), so that nothing is ever constructed from what a
file says: types come from the template, only values from the data.
"""
from __future__ import annotations

import dataclasses

import numpy as np


def to_plain(x, skip: tuple[str, ...] = ()):
    """``x`` as plain data; ``skip``: dataclass fields left out (restored from the template)."""
    if isinstance(x, np.random.Generator):
        return {"bit_generator": x.bit_generator.state}
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: to_plain(getattr(x, f.name)) for f in dataclasses.fields(x) if f.name not in skip}
    if isinstance(x, (list, tuple)):
        return [to_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: to_plain(v) for k, v in x.items()}
    if isinstance(x, np.generic):
        return x.item()
    return x


def restore(template, plain):
    """``plain`` (from :func:`to_plain`) written into ``template``; returns the restored object
    (the template itself for dataclasses and Generators, new values otherwise)."""
    if plain is None:
        return None
    if isinstance(template, np.random.Generator):
        template.bit_generator.state = plain["bit_generator"]
        return template
    if dataclasses.is_dataclass(template) and not isinstance(template, type):
        for name, value in plain.items():
            setattr(template, name, restore(getattr(template, name), value))
        return template
    if isinstance(template, tuple):
        items = [restore(t, v) for t, v in zip(template, plain)]
        return type(template)._make(items) if hasattr(type(template), "_make") else tuple(items)
    if isinstance(template, list) and len(template) == len(plain):
        return [restore(t, v) for t, v in zip(template, plain)]
    if isinstance(template, dict):
        return {k: restore(template.get(k), v) for k, v in plain.items()}
    if isinstance(template, np.ndarray):
        return np.array(plain, dtype=template.dtype)
    return plain
