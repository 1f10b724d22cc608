"""ROUGE-L F-measure of a growing prefix, for N episodes at once, in O(R) per token.

The score is ``rouge_score.rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False).score(reference,
prediction)["rougeL"].fmeasure`` on ``vocab.detokenize`` of the reference and of the prefix: the LCS of
the two rouge-token sequences, P = LCS / |prediction|, R = LCS / |reference|, F = 2PR / (P + R), and 0 when
either side has no token. Range [0, 1]; the reference itself scores 1 (0 if it has no rouge token). Tests
check it against rouge-score to 1e-9 after every token.

rouge-score's tokenizer lowercases, turns every run of characters other than ``a-z0-9`` into a space and
splits, so a vocabulary token maps to a fixed tuple of rouge tokens (``don't`` -> ``don t``, ``U.S.`` ->
``u s``, ``.`` -> nothing) and the rouge tokens of detokenised text are the concatenation of its tokens'
tuples (the closing punctuation detokenize glues on starts with a separator). Each row keeps one row of
the LCS table, ``dp[j]`` = LCS(prefix, reference[:j]); a rouge token x moves it to
``max.accumulate(max(dp[j], dp[j-1] + (x == reference[j-1])))`` over j, vectorised over rows and j.
Cost per token: O(R) for a reference of R rouge tokens, which is what ROUGE-L allows (the LCS of a longer
prefix can change anywhere along the reference).
"""

from __future__ import annotations

import re
import weakref

import numpy as np
from rouge_score.tokenizers import DefaultTokenizer

from ir_env.rewards.base import PrefixMetric, check_reference_ids
from ir_env.tasks.base import Examples
from ir_env.tokenizer import BOS, EOS, PAD, UNK, Vocabulary, pad_batch

_REFERENCE_PAD = 0  # rouge token ids start at 1, so padding never matches
_TOKENIZER = DefaultTokenizer(use_stemmer=False)


class _RougeTables:
    """Rouge-token ids of every vocabulary token and of every reference of a split."""

    def __init__(self, examples: Examples, vocab: Vocabulary):
        word_id: dict[str, int] = {}

        def ids(text: str) -> list[int]:
            return [word_id.setdefault(w, len(word_id) + 1) for w in _TOKENIZER.tokenize(text)]

        tokens = vocab.tokens
        per_token = []
        for t, text in enumerate(tokens):
            glued = t not in (PAD, BOS, EOS) and vocab.detokenize([UNK, t]) == tokens[UNK] + text
            if glued and re.match(r"[a-z0-9]", text.lower()):
                raise ValueError(
                    f"RougeL needs glued closing punctuation to start with a separator, got {text!r}"
                )
            per_token.append([] if t in (PAD, BOS, EOS) else ids(text))
        refs = [
            ids(vocab.detokenize(examples.reference[e, : examples.reference_len[e]])) for e in range(len(examples))
        ]
        self.words, self.num_words = pad_batch(per_token, _widest(per_token))  # (V, L), (V,)
        self.reference, self.ref_len = pad_batch(refs, _widest(refs))  # (M, R), (M,) PAD-filled


def _widest(rows: list[list[int]]) -> int:
    return max(1, max(map(len, rows)))


_TABLES: weakref.WeakKeyDictionary[Examples, weakref.WeakKeyDictionary[Vocabulary, _RougeTables]] = (
    weakref.WeakKeyDictionary()
)


def _tables_for(examples: Examples, vocab: Vocabulary) -> _RougeTables:
    per_vocab = _TABLES.setdefault(examples, weakref.WeakKeyDictionary())
    tables = per_vocab.get(vocab)
    if tables is None:
        tables = per_vocab[vocab] = _RougeTables(examples, vocab)
    return tables


class RougeL(PrefixMetric):
    """ROUGE-L F-measure (rouge-score, no stemming) of each row's detokenised prefix against its reference.

    Range [0, 1]; the reference itself scores 1 (0 if it has no rouge token). Cost per token: O(R) for a
    reference of R rouge tokens, vectorised over rows.

    Args:
        examples: the split whose references the rows are scored against.
        num_rows: N, the number of episodes tracked at once.
        vocab: the vocabulary of the ids pushed and of the references.
    """

    name = "rouge_l"
    empty_is_zero = True

    def __init__(self, examples: Examples, num_rows: int, vocab: Vocabulary):
        super().__init__(examples, num_rows)
        check_reference_ids(examples, vocab)
        self.vocab = vocab
        self.tables = _tables_for(examples, vocab)
        width = self.tables.reference.shape[1]
        self.reference = np.full((num_rows, width), _REFERENCE_PAD, dtype=np.int64)  # (N, R) each row's reference
        self.dp = np.zeros((num_rows, width + 1), dtype=np.int32)  # (N, R+1) LCS(prefix, reference[:j])
        self.pred_len = np.zeros(num_rows, dtype=np.int64)  # rouge tokens in the prefix

    def _reset(self, rows: np.ndarray) -> None:
        self.reference[rows] = self.tables.reference[self.example_ids[rows]]
        self.dp[rows] = 0
        self.pred_len[rows] = 0

    def _push(self, rows: np.ndarray, tokens: np.ndarray) -> None:
        words, num_words = self.tables.words[tokens], self.tables.num_words[tokens]  # (k, L), (k,)
        for j in range(words.shape[1]):  # L is the most rouge tokens one vocabulary token holds, usually 1
            has = num_words > j
            r, w = (rows, words[:, j]) if has.all() else (rows[has], words[has, j])
            dp = self.dp[r]  # (k, R+1)
            match = self.reference[r] == w[:, None]  # (k, R)
            step = np.maximum(dp[:, 1:], dp[:, :-1] + match)  # (k, R)
            np.maximum.accumulate(step, axis=1, out=step)
            self.dp[r, 1:] = step
            self.pred_len[r] += 1

    def _potential(self, rows: np.ndarray) -> np.ndarray:
        ref_len = self.tables.ref_len[self.example_ids[rows]]
        lcs = self.dp[rows, ref_len].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = lcs / self.pred_len[rows]
            recall = lcs / ref_len
            f = 2 * precision * recall / (precision + recall)  # rouge_score.scoring.fmeasure, for parity
        return np.where(lcs > 0, f, 0.0)
