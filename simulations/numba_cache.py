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
keeps its file, so a warm cache creates no new files.  numba's numbering also reused the files of
an edited source's old signatures; random names do not, so the first save after a source change
removes the function's data files that its index no longer names (:func:`_save`), sparing any
written in the last :data:`SPARE_SECONDS` (a concurrent writer's; a removed file that an index
still names is only a cache miss: numba then compiles again).
"""
from __future__ import annotations

import os
import secrets
import time

from numba.core import caching

SPARE_SECONDS = 60.0
_numba_save = caching.IndexDataCacheFile.save
_numba_data_name = caching.IndexDataCacheFile._data_name   # numba's own: the first free number


def _data_name(self, number: int) -> str:
    """A data file name no other writer chooses (``number`` unused: numba's first free number)."""
    return f"{self._index_name[:-4]}.{secrets.token_hex(8)}.nbc"


def _save(self, key, data) -> None:
    """numba's ``save``; when the index held nothing for this source (new, or a stale stamp), then
    remove this function's data files that the index does not name and that are older than
    :data:`SPARE_SECONDS`."""
    first = not self._load_index()
    _numba_save(self, key, data)
    if not first:
        return
    named, prefix, now = set(self._load_index().values()), self._index_name[:-4] + ".", time.time()
    for entry in os.scandir(self._cache_path):
        if entry.name.startswith(prefix) and entry.name.endswith(".nbc") and entry.name not in named:
            try:
                if now - entry.stat().st_mtime > SPARE_SECONDS:
                    os.remove(entry.path)
            except OSError:                # gone already, or in use where that forbids removal
                pass


def install() -> None:
    """Replace numba's data-file naming and ``save`` (``IndexDataCacheFile._data_name``,
    ``IndexDataCacheFile.save``) by :func:`_data_name` and :func:`_save`."""
    caching.IndexDataCacheFile._data_name = _data_name
    caching.IndexDataCacheFile.save = _save
