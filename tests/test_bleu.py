"""IncrementalBLEU against sacrebleu's sentence BLEU, token by token, many rows at once."""

from __future__ import annotations

import numpy as np
import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st

import ir_env.rewards.bleu as bleu_module
import ir_env.rewards.tables as tables_module
from ir_env.rewards.bleu import IncrementalBLEU
from ir_env.tasks.base import Examples

FIRST_WORD = 4  # ids below are specials


def sacre(hyp: list[int], ref: list[int]) -> float:
    """The independent reference: sacrebleu sentence BLEU (tokenize none, exp smoothing) / 100."""
    return sacrebleu.sentence_bleu(" ".join(map(str, hyp)), [" ".join(map(str, ref))], tokenize="none").score / 100


def make_examples(refs: list[list[int]]) -> Examples:
    width = max(len(r) for r in refs)
    return Examples.from_sequences([np.array([FIRST_WORD])] * len(refs), [np.array(r) for r in refs], 1, width)


token_lists = st.lists(st.integers(FIRST_WORD, FIRST_WORD + 7), min_size=1, max_size=24)


@settings(max_examples=200, deadline=None)
@given(
    refs=st.lists(token_lists, min_size=1, max_size=5),
    data=st.data(),
)
def test_every_prefix_matches_sacrebleu(refs, data):
    examples = make_examples(refs)
    num_rows = data.draw(st.integers(1, 4))
    metric = IncrementalBLEU(examples, num_rows)
    rows = np.arange(num_rows)
    example_ids = np.array(data.draw(st.lists(st.integers(0, len(refs) - 1), min_size=num_rows, max_size=num_rows)))
    assert np.all(metric.reset(rows, example_ids) == 0.0)
    hyps: list[list[int]] = [[] for _ in rows]
    for _ in range(data.draw(st.integers(1, 20))):
        # push a random subset of rows, in sorted order, as the env does
        subset = np.array(sorted(data.draw(st.sets(st.integers(0, num_rows - 1), min_size=1))))
        tokens = np.array([data.draw(st.integers(FIRST_WORD, FIRST_WORD + 7)) for _ in subset])
        phi = metric.push(subset, tokens)
        for r, tok, value in zip(subset, tokens, phi):
            hyps[r].append(int(tok))
            assert value == pytest.approx(sacre(hyps[r], refs[example_ids[r]]), abs=1e-9)
    final = metric.score(rows)
    for r in rows:
        assert final[r] == pytest.approx(sacre(hyps[r], refs[example_ids[r]]), abs=1e-9) if hyps[r] else final[r] == 0.0


def test_reference_scores_one_and_reset_clears_only_its_row():
    refs = [[5, 6, 7, 8, 9], [9, 9, 5]]
    metric = IncrementalBLEU(make_examples(refs), 2)
    metric.reset(np.arange(2), np.array([0, 1]))
    for a, b in zip(refs[0], [9, 9, 5, 5, 5]):
        metric.push(np.arange(2), np.array([a, b]))
    before = metric.score(np.array([1]))
    assert metric.score(np.array([0]))[0] == pytest.approx(1.0)
    metric.reset(np.array([0]), np.array([1]))
    assert metric.score(np.array([0]))[0] == 0.0
    assert metric.score(np.array([1]))[0] == before[0]


def test_clipping_counts_repeated_ngrams_once_per_reference_occurrence():
    refs = [[5, 6, 5]]
    metric = IncrementalBLEU(make_examples(refs), 1)
    metric.reset(np.array([0]), np.array([0]))
    hyp = [5, 5, 5, 5, 6]
    for tok in hyp:
        value = metric.push(np.array([0]), np.array([tok]))[0]
    assert value == pytest.approx(sacre(hyp, refs[0]), abs=1e-12)
    assert metric.correct[0, 0] == 3  # unigram 5 clipped at 2, plus 6


@settings(max_examples=50, deadline=None)
@given(refs=st.lists(token_lists, min_size=1, max_size=4), hyp=token_lists)
def test_long_probe_chains_when_every_ngram_hashes_to_one_slot(monkeypatch_module, refs, hyp):
    """A degenerate hash puts every key in one cluster: the probe loop must still find each n-gram."""
    metric = IncrementalBLEU(make_examples(refs), 1)
    metric.reset(np.array([0]), np.array([0]))
    for i, tok in enumerate(hyp):
        value = metric.push(np.array([0]), np.array([tok]))[0]
        assert value == pytest.approx(sacre(hyp[: i + 1], refs[0]), abs=1e-9)


@pytest.fixture(scope="module")
def monkeypatch_module():
    original = tables_module.HASH_MULTIPLIER
    tables_module.HASH_MULTIPLIER = np.uint64(0)  # every key's home is its table's first slot
    bleu_module._TABLES.clear()
    yield
    tables_module.HASH_MULTIPLIER = original
    bleu_module._TABLES.clear()


def test_token_ids_beyond_15_bits_are_refused():
    with pytest.raises(ValueError, match="15 bits"):
        IncrementalBLEU(make_examples([[5, 1 << 15]]), 1)


def test_a_reference_unk_is_matched_by_nothing_not_even_an_output_unk():
    """UNK in a reference stands for a word outside the vocabulary (real-data tasks): BLEU counts it in the
    reference length, as sacrebleu does the real word, but an output UNK must not match it."""
    from ir_env.tokenizer import UNK

    ref = [FIRST_WORD, UNK, FIRST_WORD + 1, FIRST_WORD + 2]
    metric = IncrementalBLEU(make_examples([ref]), 1)
    metric.reset(np.array([0]), np.array([0]))
    for t in ref:
        metric.push(np.array([0]), np.array([t]))
    got = metric.score(np.array([0]))[0]
    oov = 10**6  # an id no output holds, standing for the real word
    assert got < 1.0
    assert got == pytest.approx(sacre(ref, [FIRST_WORD, oov, FIRST_WORD + 1, FIRST_WORD + 2]), abs=1e-9)


def test_references_too_long_for_32_bit_trie_keys_use_64_bit_keys():
    """A trie key holds its parent's slot beside the token: past 32,768 distinct n-grams in one reference the
    table has 2**17 home slots, the slots need more than 17 bits, and the tables switch to 64-bit keys with the
    same scores."""
    rng = np.random.default_rng(0)
    ref = rng.integers(FIRST_WORD, 30_000, 9_000).tolist()
    short = [ref[:50]]
    assert bleu_module._tables_for(make_examples(short)).key.dtype == np.uint32
    metric = IncrementalBLEU(make_examples([ref]), 1)
    assert metric.tables.key.dtype == np.uint64
    metric.reset(np.array([0]), np.array([0]))
    hyp = [t if rng.random() < 0.7 else int(rng.integers(FIRST_WORD, 30_000)) for t in ref[:3_000]]
    for i, tok in enumerate(hyp):
        value = metric.push(np.array([0]), np.array([tok]))[0]
        if i in (0, 9, 999, 2_999):
            assert value == pytest.approx(sacre(hyp[: i + 1], ref), abs=1e-9)
