"""Character corpus: fixed split, train-only vocabulary with UNK, stream and validation shapes."""
import numpy as np
import pytest

from rtrl_validation.simulations.data.text import CharText, corpus_info, corpus_text


def test_corpus_is_offline_and_deterministic():
    info = corpus_info()
    assert info["chars"] == len(corpus_text()) > 100_000
    assert corpus_info() == info
    assert len(info["sha256"]) == 64


def test_split_is_fixed_and_covers_the_corpus():
    p = CharText(vocab_size=24, val_fraction=0.1)
    n = len(corpus_text())
    assert p.train.size + p.valid.size == n
    assert p.valid.size == n - round(0.9 * n)
    # the validation split is the end of the corpus
    assert p.decode(p.valid[-50:]) == "".join(ch if ch in p.vocab else "\ufffd" for ch in corpus_text()[-50:])


def test_vocabulary_from_the_training_split_with_unk():
    p = CharText(vocab_size=24)
    text = corpus_text()
    train_text = text[: p.train.size]
    assert len(p.vocab) == 23 and p.unk == 23 and p.m == p.n_out == 24
    counts = {ch: train_text.count(ch) for ch in set(train_text)}
    ranked = sorted(counts, key=lambda ch: (-counts[ch], ord(ch)))
    assert p.vocab == ranked[:23]
    # every character outside the vocabulary (including validation-only ones) is UNK
    assert np.all((p.train == p.unk) == np.array([ch not in p.vocab for ch in train_text]))
    val_only = set(text[p.train.size:]) - set(train_text)
    for ch in val_only:
        i = text.index(ch, p.train.size) - p.train.size
        assert p.valid[i] == p.unk


def test_stream_is_next_character_prediction_and_chunk_invariant():
    p = CharText(vocab_size=16)
    st = p.init(np.random.default_rng(0), batch=3)
    start = st.position.copy()
    st, xs, ys = p.sample(st, 40)
    assert xs.shape == (40, 3, 16) and ys.shape == (40, 3)
    assert np.all(xs.sum(axis=2) == 1.0)
    np.testing.assert_array_equal(ys[:-1], xs[1:].argmax(axis=2))      # target = next input
    np.testing.assert_array_equal(xs[:, 0].argmax(axis=1), p.train[start[0]:start[0] + 40])
    st2 = p.init(np.random.default_rng(0), batch=3)
    parts = [p.sample(st2, n)[1:] for n in (13, 27)]
    np.testing.assert_array_equal(np.concatenate([q[0] for q in parts]), xs)
    np.testing.assert_array_equal(np.concatenate([q[1] for q in parts]), ys)


def test_stream_wraps_around_the_training_split():
    p = CharText(vocab_size=16)
    st = p.init(np.random.default_rng(0), batch=1)
    st.position[:] = p.train.size - 2
    _, xs, ys = p.sample(st, 4)
    np.testing.assert_array_equal(xs[:, 0].argmax(axis=1), np.r_[p.train[-2:], p.train[:2]])
    np.testing.assert_array_equal(ys[:, 0], np.r_[p.train[-1:], p.train[:3]])


def test_validation_segment_is_fixed_and_shared():
    p = CharText(vocab_size=16)
    xs, ys = p.validation(100, batch=4)
    assert xs.shape == (100, 4, 16) and ys.shape == (100, 4)
    np.testing.assert_array_equal(xs[:, 0].argmax(axis=1), p.valid[:100])
    np.testing.assert_array_equal(ys[:, 3], p.valid[1:101])
    assert np.all(xs == xs[:, :1]) and np.all(ys == ys[:, :1])


@pytest.mark.parametrize("bad", [dict(vocab_size=1), dict(val_fraction=0.0), dict(val_fraction=1.0)])
def test_refuses_bad_options(bad):
    with pytest.raises(ValueError):
        CharText(**bad)


def test_refuses_bad_validation_length():
    with pytest.raises(ValueError):
        CharText(vocab_size=8).validation(0)
