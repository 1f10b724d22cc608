"""Vocabulary: ids, encode/decode round trips, detokenisation and bad vocabularies."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ir_env.tokenizer import BOS, EOS, PAD, UNK, Vocabulary, pad_batch

WORDS = ["the", "cat", "sat", ".", ",", "'s", "?", "dog"]
VOCAB = Vocabulary(WORDS)


def slow_detokenize(vocab: Vocabulary, ids) -> str:
    """The definition: decoded words joined by spaces, closing punctuation glued to what precedes it."""
    out = ""
    for word in vocab.decode(ids):
        if out and word not in {".", ",", "?", "!", ";", ":", ")", "'s"}:
            out += " "
        out += word
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, len(VOCAB) - 1), max_size=20))
def test_detokenize_follows_its_definition(ids):
    assert VOCAB.detokenize(ids) == slow_detokenize(VOCAB, ids)
    assert VOCAB.detokenize(np.array(ids, dtype=np.int64)) == slow_detokenize(VOCAB, ids)


# Words beyond ASCII (two-, three- and four-byte UTF-8), so the byte-level batch join must count characters.
WIDE_VOCAB = Vocabulary(["Müller", "straße", ".", "'s", "日本", "🙂", "a", ","])
NO_EOS = [i for i in range(len(WIDE_VOCAB)) if i != EOS]  # detokenize stops at EOS; the batch form takes lengths


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from(NO_EOS), max_size=12), max_size=6), st.data())
def test_detokenize_rows_equals_detokenize_of_each_row(rows, data):
    width = max(map(len, rows), default=0)
    ids = np.full((len(rows), width), PAD, dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    lengths = np.array([data.draw(st.integers(0, len(row))) for row in rows], dtype=np.int64)
    want = [slow_detokenize(WIDE_VOCAB, row[:n]) for row, n in zip(rows, lengths)]
    assert WIDE_VOCAB.detokenize_rows(ids, lengths) == want


def test_detokenize_rows_refuses_ids_outside_the_vocabulary():
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 12\)"):
        VOCAB.detokenize_rows(np.array([[4, 12]]), np.array([2]))


def test_specials_have_fixed_ids_and_unknown_words_map_to_unk():
    assert (PAD, BOS, EOS, UNK) == (0, 1, 2, 3)
    assert VOCAB.encode("the cat barked").tolist() == [4, 5, UNK]
    assert VOCAB.decode([BOS, 4, 5, EOS, 6]) == ["the", "cat"]
    assert VOCAB.detokenize(VOCAB.encode("the cat 's dog .")) == "the cat's dog."


@pytest.mark.parametrize("words, message", [(["a", "a"], "twice"), (["a b"], "whitespace"), ([""], "non-empty"), (["<eos>"], "twice")])
def test_bad_vocabularies_are_refused(words, message):
    with pytest.raises(ValueError, match=message):
        Vocabulary(words)


def test_pad_batch_refuses_sequences_longer_than_the_width():
    out, lengths = pad_batch([np.array([5, 6]), np.array([7])], 3)
    assert out.tolist() == [[5, 6, 0], [7, 0, 0]] and lengths.tolist() == [2, 1]
    with pytest.raises(ValueError, match="width 1"):
        pad_batch([np.array([5, 6])], 1)
