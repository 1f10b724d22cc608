"""ExampleHashTables: lookups against a dict and the linear-probing invariant, also for BLEU's own tables."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ir_env.rewards.bleu import (
    MAX_TOKEN_ID,
    TOKEN_BITS,
    _reference_keys,
    _tables_for,
    ngram_cell,
)
from ir_env.rewards.tables import ExampleHashTables
from ir_env.tokenizer import UNK
from tests.test_bleu import make_examples

# per example: distinct non-zero keys with counts
entries = st.lists(
    st.dictionaries(st.integers(1, 2**40), st.integers(1, 5), max_size=40), min_size=1, max_size=5
)


def _flatten(per_example: list[dict[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    example = np.array([e for e, d in enumerate(per_example) for _ in d], dtype=np.int64)
    key = np.array([k for d in per_example for k in d], dtype=np.uint64)
    count = np.array([c for d in per_example for c in d.values()], dtype=np.int64)
    return example, key, count


def _homes(tables: ExampleHashTables, example: np.ndarray, key: np.ndarray) -> np.ndarray:
    hashed = key * tables.multiplier  # uint64 arithmetic wraps, as in the compiled code
    return tables.start[example] + (hashed >> tables.shift[example]).astype(np.int64)


def _check_probing_invariant(tables: ExampleHashTables, example: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Every key sits at or after its home slot, with no empty slot in between, inside its example's span."""
    cell = tables.lookup(example, key)
    assert (cell >= 0).all()
    home = _homes(tables, example, key)
    assert (cell >= home).all()
    assert (cell < tables.start[example] + tables.span[example]).all()
    for h, c in zip(home.tolist(), cell.tolist()):
        assert (tables.key[h : c + 1] != 0).all()
    return cell


@settings(max_examples=60, deadline=None)
@given(per_example=entries)
def test_lookup_finds_every_key_with_its_count_and_misses_the_rest(per_example):
    example, key, count = _flatten(per_example)
    tables = ExampleHashTables(example, key, count, len(per_example))
    assert tables.key.dtype == (np.uint32 if key.max(initial=0) < 2**32 else np.uint64)  # 32 bits where every key fits
    cell = _check_probing_invariant(tables, example, key)
    assert (tables.count[cell] == count).all()
    absent = np.array([max(d, default=0) + 1 for d in per_example], dtype=np.uint64)  # one missing key per example
    assert (tables.lookup(np.arange(len(per_example)), absent) == -1).all()


def _unpack(key: int) -> list[int]:
    """The token ids of a packed n-gram of ``_reference_keys`` (15 bits each, the order in bits 60-62)."""
    order = key >> 60
    return [(key >> (TOKEN_BITS * (order - 1 - k))) & MAX_TOKEN_ID for k in range(order)]


def test_bleu_tables_hold_every_reference_ngram_with_its_count():
    refs = [[5, 6, 5, 7, 8, 5, 6, 9], [11, 12, 13, 11, 12], [UNK, 4, UNK, 4, 4]]
    examples = make_examples(refs)
    tables = _tables_for(examples)
    assert tables.key.dtype == np.uint32  # short references: 32-bit trie keys
    example, key, count = _reference_keys(examples)
    cells = np.array([ngram_cell(tables, int(e), _unpack(int(k))) for e, k in zip(example, key)])
    assert (cells >= 0).all()
    assert (tables.count[cells] == count).all()
    assert len(np.unique(cells)) == len(cells)  # one entry per distinct n-gram
    assert (tables.key != 0).sum() == len(cells)  # and nothing else
    _check_probing_invariant(tables, example, tables.key[cells].astype(np.uint64))  # the trie keys probe as any key
    for e, ref in enumerate(refs):  # against n-grams counted in plain Python (none holding UNK)
        grams = Counter(
            tuple(ref[i : i + n]) for n in range(1, 5) for i in range(len(ref) - n + 1) if UNK not in ref[i : i + n]
        )
        assert sorted(count[example == e].tolist()) == sorted(grams.values())
        for gram, c in grams.items():
            assert tables.count[ngram_cell(tables, e, gram)] == c
    assert count[example == 0].max() == 3  # the unigram 5
    assert ngram_cell(tables, 0, [5, 6, 9]) >= 0 and ngram_cell(tables, 0, [6, 5, 6]) == -1
    assert ngram_cell(tables, 2, [UNK]) == -1 and ngram_cell(tables, 2, [4, 4]) >= 0
