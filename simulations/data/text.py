"""A character-level text stream from a corpus that ships with Python (THEORY.md §6).

Corpus: the English help topics of the running interpreter, ``pydoc_data.topics.topics`` (part of
the standard library, so no download), joined in sorted topic order with a blank line between
topics (about 465 000 characters on CPython 3.11).  The text depends on the Python version; its
length and SHA-256 are reported by :func:`corpus_info`.

Split (fixed, deterministic): the first ``1 − val_fraction`` of the characters train, the last
``val_fraction`` validate.  Vocabulary: the ``vocab_size − 1`` most frequent characters of the
*training* split (ties broken by code point) plus one UNK symbol (the last index) for every other
character, in both splits.

Training stream: replicate ``b`` reads the training split from its own random start offset, one
character per step, wrapping around at the end; input ``x_t`` is the one-hot of character ``t`` and
the target ``y_t`` is the index of character ``t+1``.  Validation: a fixed segment of the
validation split (from its start), the same for every replicate.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .base import DataProcess


@lru_cache(maxsize=1)
def corpus_text() -> str:
    """The whole corpus (a ``str``)."""
    from pydoc_data.topics import topics
    return "\n\n".join(topics[key] for key in sorted(topics))


def corpus_info() -> dict:
    """Provenance of the corpus: source, Python version, length, SHA-256."""
    text = corpus_text()
    return {"source": "pydoc_data.topics (Python standard library)",
            "python": sys.version.split()[0], "chars": len(text),
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}


@lru_cache(maxsize=8)
def _encoded(vocab_size: int, val_fraction: float):
    text = corpus_text()
    n_train = int(round(len(text) * (1.0 - val_fraction)))
    counts: dict[str, int] = {}
    for ch in text[:n_train]:
        counts[ch] = counts.get(ch, 0) + 1
    vocab = sorted(counts, key=lambda ch: (-counts[ch], ord(ch)))[: vocab_size - 1]
    index = {ch: i for i, ch in enumerate(vocab)}
    unk = vocab_size - 1
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    distinct, inverse = np.unique(points, return_inverse=True)
    lookup = np.array([index.get(chr(c), unk) for c in distinct], dtype=np.intp)
    codes = lookup[inverse]
    codes.flags.writeable = False
    return vocab, codes[:n_train], codes[n_train:]


@dataclass
class TextState:
    position: np.ndarray   # B ints: index (in the training split) of the next input character


class CharText(DataProcess):
    """Character stream over the training split (``m = n_out = vocab_size``, ``loss = "xent"``)."""

    name = "text"
    loss = "xent"

    def __init__(self, vocab_size: int = 32, val_fraction: float = 0.1):
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 2:
            raise ValueError(f"vocab_size must be an integer >= 2, got {vocab_size!r}")
        if not (0.0 < val_fraction < 1.0):
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
        self.vocab_size, self.val_fraction = int(vocab_size), float(val_fraction)
        self.vocab, self.train, self.valid = _encoded(self.vocab_size, self.val_fraction)
        self.m = self.n_out = self.vocab_size
        self._eye = np.eye(self.m)

    @property
    def unk(self) -> int:
        return self.vocab_size - 1

    def decode(self, codes) -> str:
        return "".join(self.vocab[c] if c < len(self.vocab) else "\ufffd" for c in np.ravel(codes))

    def init(self, rng: np.random.Generator, batch: int) -> TextState:
        return TextState(rng.integers(self.train.size, size=batch))

    def sample(self, state: TextState, T: int, rng: np.random.Generator | None = None):
        """``xs`` ``T × B × V`` (one-hot), ``ys`` ``T × B`` (next-character indices)."""
        idx = (state.position[None, :] + np.arange(T + 1)[:, None]) % self.train.size
        chars = self.train[idx]
        state.position = (state.position + T) % self.train.size
        return state, self._eye[chars[:-1]], chars[1:]

    def validation(self, T: int, batch: int = 1):
        """The fixed validation segment: ``xs`` ``T × batch × V``, ``ys`` ``T × batch``."""
        if not (1 <= T < self.valid.size):
            raise ValueError(f"validation length must be in [1, {self.valid.size - 1}], got {T!r}")
        chars = self.valid[: T + 1]
        xs = np.broadcast_to(self._eye[chars[:-1]][:, None, :], (T, batch, self.m))
        ys = np.broadcast_to(chars[1:, None], (T, batch))
        return xs, ys
