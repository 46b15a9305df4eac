"""numba's on-disk cache under writers that compile at the same time (:mod:`simulations.numba_cache`).

``IndexDataCacheFile.save`` reads the index, picks a data file name, writes the index, then the
data.  Two processes that read the index before either writes it, and whose writes land in the
order (second's index, first's index, first's data, second's data), leave the index mapping the
first signature to the file holding the second's code with numba's own naming (the first free
number, 1 for both); with the installed naming the two data files differ, so each key that the
index keeps loads its own data.  The interleaving is replayed with numba's real ``save``: its
writes are recorded, then applied in that order.  Random names are never reused, so the first
save after a source change removes the data files the index no longer names (not recent ones,
not named ones, not other functions').
"""
from __future__ import annotations

from numba.core.caching import IndexDataCacheFile

import rtrl_validation.simulations  # noqa: F401  (installs the naming)
from rtrl_validation.simulations import numba_cache


def _replay(tmp_path):
    """Two writers that both saw an empty index save ``key_a`` and ``key_b``; their writes are
    applied as (b's index, a's index, a's data, b's data).  Returns what a third process loads."""
    stamp = ("source stamp", 1)
    writers = [IndexDataCacheFile(str(tmp_path), "f-1.py311", stamp) for _ in range(2)]
    writes = {}
    for name, w in zip("ab", writers):
        w._load_index = lambda: {}                           # read before the other wrote it
        w._save_index = lambda overloads, name=name: writes.__setitem__((name, "index"), dict(overloads))
        w._save_data = lambda file, data, name=name: writes.__setitem__((name, "data"), (file, data))
        w.save(f"key_{name}", f"code of {name}")
    real = IndexDataCacheFile(str(tmp_path), "f-1.py311", stamp)
    for name, kind in (("b", "index"), ("a", "index"), ("a", "data"), ("b", "data")):
        if kind == "index":
            real._save_index(writes[(name, kind)])
        else:
            real._save_data(*writes[(name, kind)])
    return {key: real.load(key) for key in ("key_a", "key_b")}


def test_concurrent_writers_never_map_a_signature_to_another_ones_code(tmp_path):
    loaded = _replay(tmp_path)
    assert loaded["key_a"] in (None, "code of a")
    assert loaded["key_b"] in (None, "code of b")
    assert loaded["key_a"] == "code of a"                    # the index written last keeps its entry


def test_the_replay_fails_with_numbas_own_naming(tmp_path, monkeypatch):
    """The control: with numba's first-free-number naming the same interleaving loads the other
    writer's code for ``key_a`` (what the test above must not see)."""
    monkeypatch.setattr(IndexDataCacheFile, "_data_name", numba_cache._numba_data_name)
    assert _replay(tmp_path)["key_a"] == "code of b"


def test_the_naming_is_installed_and_a_warm_index_keeps_its_file(tmp_path):
    assert IndexDataCacheFile._data_name is numba_cache._data_name and IndexDataCacheFile.save is numba_cache._save
    w = IndexDataCacheFile(str(tmp_path), "g-1.py311", ("stamp",))
    w.save("key", "v1")
    first = w._load_index()["key"]
    w.save("key", "v2")                                       # a recompiled signature: the same file
    assert w._load_index() == {"key": first} and w.load("key") == "v2"
    assert len(list(tmp_path.glob("g-1.py311.*.nbc"))) == 1


def test_an_edited_source_leaves_no_old_data_files_but_spares_recent_ones(tmp_path):
    """After a source change (a new stamp), the first save removes the function's data files its
    index no longer names, except one written within ``SPARE_SECONDS`` (a concurrent writer's)."""
    import os
    import time
    old = IndexDataCacheFile(str(tmp_path), "h-1.py311", ("old source",))
    for k in range(3):
        old.save(f"key{k}", f"old code {k}")
    stale = sorted(p.name for p in tmp_path.glob("h-1.py311.*.nbc"))
    assert len(stale) == 3
    past = time.time() - 10 * numba_cache.SPARE_SECONDS
    for name in stale[:2]:
        os.utime(tmp_path / name, (past, past))
    (tmp_path / "other-1.py311.x.nbc").write_bytes(b"")        # another function's file: untouched
    os.utime(tmp_path / "other-1.py311.x.nbc", (past, past))
    new = IndexDataCacheFile(str(tmp_path), "h-1.py311", ("new source",))
    new.save("key0", "new code")
    left = {p.name for p in tmp_path.glob("*.nbc")}
    assert left == {new._load_index()["key0"], stale[2], "other-1.py311.x.nbc"}
    assert new.load("key0") == "new code"


def test_a_file_the_index_names_is_kept_whatever_its_age(tmp_path, monkeypatch):
    old = IndexDataCacheFile(str(tmp_path), "h-1.py311", ("old source",))
    old.save("key", "old code")
    monkeypatch.setattr(numba_cache, "SPARE_SECONDS", -1.0)      # every file old enough to remove
    new = IndexDataCacheFile(str(tmp_path), "h-1.py311", ("new source",))
    new.save("key", "new code")
    assert {p.name for p in tmp_path.glob("*.nbc")} == {new._load_index()["key"]}
    assert new.load("key") == "new code"
