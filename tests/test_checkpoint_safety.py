"""Checkpoints hold numbers and plain data only: a planted pickle or a tampered snapshot never runs
code and never changes a number (the loop restarts from its beginning with a one-line note); every
estimator's and data process's state survives the round trip bit for bit; no load path of the
package can unpickle."""
from __future__ import annotations

import io
import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtrl_validation.simulations import checkpoint as ckpt
from rtrl_validation.simulations.checkpoint import CheckpointStore, decode, encode

try:
    from helpers import train
except ImportError:  # tests collected as a package
    from tests.helpers import train

ROOT = Path(__file__).resolve().parent.parent


class Planted:
    """A pickle that, when unpickled, writes ``marker``: what a hostile results folder would plant."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize("estimator,process,cell", [
    ("bptt", "var1", "elman"), ("rflo", "var1", "elman"), ("snap-2", "var1", "gru"),
    ("uoro", "var1", "lstm"), ("rtrl", "copy", "elman"), ("tbptt-5", "copy", "gru")])
def test_every_state_survives_the_round_trip(estimator, process, cell, tmp_path):
    """Tapes of Jacobian objects (BPTT), sparse influences, GRU/LSTM states and the copy task's
    per-replicate Generators come back from a snapshot and give the uninterrupted numbers."""
    reference, _ = train(estimator, process=process, cell=cell)
    store = CheckpointStore(tmp_path, every=64)
    with pytest.raises(KeyboardInterrupt):
        train(estimator, store, stop_at=200, process=process, cell=cell)
    resumed, ck = train(estimator, store, process=process, cell=cell)
    assert ck.notes == [] and ck.restored == [{"loop": 0, "step": 192}]
    assert_same(resumed, reference)


def plant(folder: Path, marker: Path) -> None:
    """A malicious pickle under the old name and an ``.npz`` whose entry is a pickled object array."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "loop-0.pkl").write_bytes(pickle.dumps(Planted(marker)))
    evil = np.empty(1, dtype=object)
    evil[0] = Planted(marker)
    buffer = io.BytesIO()
    np.savez(buffer, meta=evil, a0=evil)
    (folder / "loop-0.npz").write_bytes(buffer.getvalue())


def test_planted_pickles_never_run_and_the_result_is_right(tmp_path):
    reference, _ = train("rtrl")
    marker = tmp_path / "pwned"
    store = CheckpointStore(tmp_path / "ck", every=64)
    plant(tmp_path / "ck" / "exp" / "task", marker)
    resumed, ck = train("rtrl", store)
    assert not marker.exists()
    assert ck.restored == [] and len(ck.notes) == 1 and "checkpoint ignored (unreadable" in ck.notes[0]
    assert "pickle" not in ck.notes[0]
    assert_same(resumed, reference)


def rewrite(path: Path, change) -> None:
    """Read a snapshot's entries, let ``change(meta, arrays)`` edit them, write it back."""
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(npz["meta"].tobytes().decode())
        arrays = [npz[f"a{i}"].copy() for i in range(len(npz.files) - 1)]
    change(meta, arrays)
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
             **{f"a{i}": a for i, a in enumerate(arrays)})
    path.write_bytes(buffer.getvalue())


def rehash(meta, arrays):
    meta["hash"] = ckpt.content_hash({k: v for k, v in meta.items() if k != "hash"}, arrays)


def bump_array(meta, arrays):
    arrays[0] = arrays[0] + 1.0 if arrays[0].dtype.kind == "f" else arrays[0] + 1


def hostile_class(meta, arrays):
    """The payload claims to be an instance of a function of the standard library, hash made to match."""
    meta["tree"] = {"id": 0, "object": "os:system", "fields": {"command": "touch pwned"}}
    rehash(meta, arrays)


def foreign_package_class(meta, arrays):
    meta["tree"] = {"id": 0, "object": "rtrl_validation.reports.cli:CLIError", "fields": {}}
    rehash(meta, arrays)


def other_task(meta, arrays):
    meta["task"] = {"config": 2}
    rehash(meta, arrays)


def wrong_shape_of_payload(meta, arrays):
    """A part of the payload left out (the trainer's window sums)."""
    del meta["tree"]["dict"]["window"]
    rehash(meta, arrays)


def wrong_shape_of_array(meta, arrays):
    """The state ``s`` (``B × k``) replaced by one replicate's row: same dtype and rank, wrong shape."""
    n = meta["tree"]["dict"]["state"]["dict"]["s"]["nd"]
    arrays[n] = arrays[n][:1]
    rehash(meta, arrays)


def wrong_type_inside_a_state(meta, arrays):
    """A generator state whose structure fits but whose bit generator is unknown: found only while
    writing it back (the loop's objects are left as they were)."""
    rng = meta["tree"]["dict"]["rng"]["list"][0]["dict"]
    rng["bit_generator"] = "Evil"
    rehash(meta, arrays)


@pytest.mark.parametrize("change,note", [
    (bump_array, "checkpoint ignored (content hash does not match)"),
    (hostile_class, "checkpoint ignored (undecodable: TypeError)"),
    (foreign_package_class, "checkpoint ignored (undecodable: TypeError)"),
    (other_task, "checkpoint of another computation ignored"),
    (wrong_shape_of_payload, "checkpoint ignored (its payload does not fit this loop)"),
    (wrong_shape_of_array, "checkpoint ignored (its payload does not fit this loop)"),
    (wrong_type_inside_a_state, "checkpoint ignored (its payload does not fit this loop)"),
], ids=["tampered-array", "stdlib-class", "class-outside-state-packages", "other-task", "other-structure",
        "other-array-shape", "unknown-bit-generator"])
def test_tampered_checkpoint_is_ignored_with_one_note(change, note, tmp_path):
    reference, _ = train("snap-1")
    store = CheckpointStore(tmp_path, every=64)
    with pytest.raises(KeyboardInterrupt):
        train("snap-1", store, stop_at=200)
    rewrite(tmp_path / "exp" / "task" / "loop-0.npz", change)
    resumed, ck = train("snap-1", store)
    assert ck.restored == [] and ck.notes == [f"loop 0: {note}"]
    assert_same(resumed, reference)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04truncated", b"\x93NUMPY garbage", os.urandom(200)],
                         ids=["empty", "truncated-zip", "garbage-npy", "random"])
def test_damaged_checkpoint_file_is_ignored(content, tmp_path):
    reference, _ = train("uoro")
    store = CheckpointStore(tmp_path, every=64)
    (tmp_path / "exp" / "task").mkdir(parents=True)
    (tmp_path / "exp" / "task" / "loop-0.npz").write_bytes(content)
    resumed, ck = train("uoro", store)
    assert ck.restored == [] and len(ck.notes) == 1 and ck.notes[0].startswith("loop 0: checkpoint ignored (")
    assert_same(resumed, reference)


def test_truncated_real_snapshot_is_ignored(tmp_path):
    reference, _ = train("rtrl")
    store = CheckpointStore(tmp_path, every=64)
    with pytest.raises(KeyboardInterrupt):
        train("rtrl", store, stop_at=200)
    path = tmp_path / "exp" / "task" / "loop-0.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    resumed, ck = train("rtrl", store)
    assert ck.restored == [] and "checkpoint ignored (unreadable" in ck.notes[0]
    assert_same(resumed, reference)


def test_encode_holds_plain_data_only():
    with pytest.raises(TypeError, match="cannot be checkpointed"):
        encode(print, [])
    with pytest.raises(TypeError, match="dtype object"):
        encode(np.array([object()]), [])
    with pytest.raises(TypeError, match="cannot be checkpointed"):
        encode(Planted(Path("x")), [])
    with pytest.raises(TypeError, match="cannot be checkpointed"):
        encode(np.random.default_rng(1), [])            # a loop saves its bit_generator.state
    with pytest.raises(TypeError, match="keys other than strings"):
        encode({(1, "k"): 1}, [])
    a = np.arange(3.0)
    arrays = []
    state = np.random.default_rng(1).bit_generator.state
    tree = json.loads(json.dumps(encode({"x": a, "y": (a, 2, None), "n": np.float32(2.5), "g": state}, arrays)))
    back = decode(tree, arrays)
    np.testing.assert_array_equal(back["x"], a)
    assert back["y"][1:] == [2, None] and back["g"] == state
    assert type(back["n"]) is np.float32 and back["n"] == np.float32(2.5)


def test_unwritable_payload_disables_checkpoints_but_not_the_run(tmp_path):
    store = CheckpointStore(tmp_path, every=10)
    ck = store.task("exp", "task", {"config": 1})
    slot = ck.slot()
    with pytest.warns(RuntimeWarning, match="not written"):
        slot.save({"call": 1}, 10, (lambda: 0,))
    assert slot.disabled and ck.saved == 0 and "checkpoint not written" in ck.notes[0]


# ------------------------------------------------------------------------------ no pickle on a load path
PACKAGE = [ROOT / "__init__.py", *[p for d in ("simulations", "analysis", "proofs_checks", "reports")
                                   for p in (ROOT / d).rglob("*.py")]]


def test_no_load_path_can_unpickle():
    """Grep-clean: no ``pickle.load(s)``, no ``allow_pickle=True``, every ``np.load`` says
    ``allow_pickle=False``, no pickle-based loaders, anywhere in the package."""
    forbidden = re.compile(r"pickle\.loads?\b|allow_pickle\s*=\s*True|import pickle|cloudpickle|joblib|shelve|"
                           r"marshal\.loads?|dill\b")
    offenders = []
    for path in PACKAGE:
        text = path.read_text()
        offenders += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in forbidden.finditer(text)]
        for m in re.finditer(r"\bn(?:p|umpy)\.load\(([^)]*)\)", text):
            if "allow_pickle=False" not in m.group(1):
                offenders.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert offenders == []
    assert len(PACKAGE) > 40


# ------------------------------------------------------------------------------ fuzzing the decoder

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
                        ["id", "nd", "ref", "list", "dict", "tuple", "items", "slice", "generator", "object",
                         "fields", "scalar", "x"]), inner, max_size=4), max_leaves=20)
CLASSES = st.sampled_from(["os:system", "builtins:eval", "subprocess:Popen", "rtrl_validation.simulations.training:TrainState",
                           "rtrl_validation.simulations.checkpoint:Slot", "rtrl_validation.simulations.training:np",
                           "rtrl_validation.simulations.parallel:Interrupted", "x", "a:b:c"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=JSON, cls=CLASSES)
def test_any_tree_with_a_matching_hash_decodes_or_is_refused_never_anything_else(tree, cls, tmp_path):
    """Whatever JSON a hostile file holds (its hash made to match), reading it either gives plain
    data or raises ``CheckpointError``; no class is ever looked up or built."""
    for candidate in (tree, {"id": 0, "object": cls, "fields": {"t": tree}}, {"list": [tree]},
                      {"dict": {"t": tree, "c": {"object": cls}}}):
        meta = {"format": ckpt.FORMAT, "task": {}, "call": {}, "step": 1, "tree": candidate}
        arrays = [np.zeros(2)]
        meta["hash"] = ckpt.content_hash(meta, arrays)
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), a0=arrays[0])
        path = tmp_path / "loop-0.npz"
        path.write_bytes(buffer.getvalue())
        try:
            payload = ckpt.read_snapshot(path)["payload"]
        except ckpt.CheckpointError:
            continue
        for obj in _walk(payload):
            assert obj is None or type(obj) in (bool, int, float, str, list, dict, np.ndarray) \
                or isinstance(obj, np.generic) and obj.dtype.kind in "biufc"


def _walk(obj, seen=None):
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    children = (obj if isinstance(obj, (list, tuple)) else [*obj.keys(), *obj.values()] if isinstance(obj, dict)
                else list(vars(obj).values()) if hasattr(obj, "__dict__") and not isinstance(obj, type) else [])
    for child in children:
        yield from _walk(child, seen)
