"""Signed VADER sentiment of a growing prefix, for N episodes, memoised by prefix.

Phi(prefix) = attribute * compound, where compound is vaderSentiment's
``SentimentIntensityAnalyzer().polarity_scores(vocab.detokenize(prefix))["compound"]`` and the example's
attribute is +1 (positive text wanted) or -1 (negative text wanted). Range [-1, 1]; the empty prefix
scores 0. Exact by construction: the metric calls the reference implementation itself.

VADER is a rule system over the whole text (negations, "but", capitals and "!" reach back several
words), so there is no incremental form: each push costs one VADER call per row, O(length of the prefix),
in a Python loop over rows. Episodes often share prefixes (the same opening words, greedy decoding of
similar inputs), so compounds are memoised by the tuple of prefix ids in a bounded LRU cache per
vocabulary, shared by every metric on that vocabulary in the process; a hit costs about a microsecond.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np

from ir_env.rewards.base import PrefixMetric, check_prefix_room
from ir_env.tasks.base import Examples
from ir_env.tokenizer import Vocabulary

if TYPE_CHECKING:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

#: Prefixes whose compound is remembered, per vocabulary (about 200 bytes each).
CACHE_SIZE = 200_000

_analyzer: SentimentIntensityAnalyzer | None = None


def vader_compound(text: str) -> float:
    """VADER's compound score of ``text`` in [-1, 1], from one analyzer per process (created on first use)."""
    global _analyzer
    if _analyzer is None:
        # Imported here: vaderSentiment reads its lexicon files (and imports requests) at load time.
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _analyzer = SentimentIntensityAnalyzer()
    return float(_analyzer.polarity_scores(text)["compound"])


class _CompoundCache:
    """A bounded LRU map from a tuple of ids to the compound of their detokenised text."""

    def __init__(self, vocab: Vocabulary, size: int):
        self.vocab = weakref.proxy(vocab)  # the cache lives in a dict keyed weakly by the vocabulary
        self.size = size
        self.values: OrderedDict[tuple[int, ...], float] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __call__(self, ids: tuple[int, ...]) -> float:
        value = self.values.get(ids)
        if value is not None:
            self.values.move_to_end(ids)
            self.hits += 1
            return value
        self.misses += 1
        value = self.values[ids] = vader_compound(self.vocab.detokenize(ids))
        if len(self.values) > self.size:
            self.values.popitem(last=False)
        return value


_CACHES: weakref.WeakKeyDictionary[Vocabulary, _CompoundCache] = weakref.WeakKeyDictionary()


def _cache_for(vocab: Vocabulary) -> _CompoundCache:
    cache = _CACHES.get(vocab)
    if cache is None:
        cache = _CACHES[vocab] = _CompoundCache(vocab, CACHE_SIZE)
    return cache


class VaderCompound(PrefixMetric):
    """attribute * VADER compound of each row's detokenised prefix.

    Range [-1, 1]; 0 for the empty prefix. Cost per token and row: one VADER call on the prefix (about
    50 us at 12 words, 0.2 ms at 40), or a cache lookup of about 1-2 us when the prefix was scored before.

    Args:
        examples: the split; ``examples.attribute`` must be +1 (positive wanted) or -1 (negative wanted).
        num_rows: N, the number of episodes tracked at once.
        vocab: the vocabulary of the ids pushed.
        max_len: the longest prefix a row may reach (the task's output length cap).
    """

    name = "vader"
    empty_is_zero = True

    def __init__(self, examples: Examples, num_rows: int, vocab: Vocabulary, max_len: int = 64):
        super().__init__(examples, num_rows)
        bad = np.setdiff1d(examples.attribute, [-1, 1])
        if len(bad):
            raise ValueError(
                f"VaderCompound needs examples.attribute in {{-1, +1}} (the wanted sentiment), got {bad.tolist()}; "
                "build the split with attribute=+1 for positive and -1 for negative targets"
            )
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.vocab = vocab
        self.max_len = max_len
        self.cache = _cache_for(vocab)
        self.prefix = np.zeros((num_rows, max_len), dtype=np.int64)  # (N, max_len) ids pushed so far
        self.value = np.zeros(num_rows, dtype=np.float64)  # Phi of each row's current prefix

    def _reset(self, rows: np.ndarray) -> None:
        self.value[rows] = 0.0

    def _push(self, rows: np.ndarray, tokens: np.ndarray) -> None:
        length = self.length[rows]
        check_prefix_room(rows, length, self.max_len)
        self.prefix[rows, length - 1] = tokens
        attribute = self.examples.attribute[self.example_ids[rows]]
        compound = np.array(
            [self.cache(tuple(self.prefix[r, :n].tolist())) for r, n in zip(rows.tolist(), length.tolist())],
            dtype=np.float64,
        )  # VADER is a rule system over the whole text: one call per row, memoised
        self.value[rows] = attribute * compound + 0.0  # + 0.0: no -0.0 for a neutral text

    def _potential(self, rows: np.ndarray) -> np.ndarray:
        return self.value[rows].copy()
