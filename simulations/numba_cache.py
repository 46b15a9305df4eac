"""numba's on-disk cache, safe for processes that compile the same function at the same time.

A function compiled with ``cache=True`` keeps an index (``<name>.nbi``: each compiled signature ->
its data file) and one data file per signature, numbered ``1, 2, …`` by
``numba.core.caching.IndexDataCacheFile.save``: it reads the index, takes the first number the
index does not use, writes the index, then the data.  Two processes that compile *different*
signatures of one function at the same time both read the index before either writes it, so both
take number 1; if one's index and the other's data are written last, the index maps a signature
to the other signature's machine code, and every later process that loads it runs that code on
its own argument types.  This happened in the test suite run on two workers (pytest-xdist) from a
cold cache: five tests of masked GRU SnAp-n, the copy task and the learning loop got wrong
numbers from the cache the run had written, and passed again once it was deleted.  The worker
pools of a sweep (``--workers``) compile concurrently in the same way.

:func:`install` (called when :mod:`simulations` is imported, before anything is compiled) makes
each new data file's name unique (a random token instead of the first free number), so two
writers never share a data file: a race can then only lose an index entry (the signature is
compiled again later), never point one at the wrong code.  A signature already in the index
keeps its file, so a warm cache creates no new files.
"""
from __future__ import annotations

import secrets

from numba.core import caching


def _data_name(self, number: int) -> str:
    """A data file name no other writer chooses (``number`` unused: numba's first free number)."""
    return f"{self._index_name[:-4]}.{secrets.token_hex(8)}.nbc"


def install() -> None:
    """Replace numba's data-file naming (``IndexDataCacheFile._data_name``) by :func:`_data_name`."""
    caching.IndexDataCacheFile._data_name = _data_name
