"""ROUGE-L F-measure of a growing prefix, for N episodes at once, in O(R / 64) words per token.

The score is ``rouge_score.rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False).score(reference,
prediction)["rougeL"].fmeasure`` on ``vocab.detokenize`` of the reference and of the prefix: the LCS of
the two rouge-token sequences, P = LCS / |prediction|, R = LCS / |reference|, F = 2PR / (P + R), and 0 when
either side has no token. Range [0, 1]; the reference itself scores 1 (0 if it has no rouge token). Tests
check it against rouge-score to 1e-9 after every token.

rouge-score's tokenizer lowercases, turns every run of characters other than ``a-z0-9`` into a space and
splits, so a vocabulary token maps to a fixed tuple of rouge tokens (``don't`` -> ``don t``, ``U.S.`` ->
``u s``, ``.`` -> nothing) and the rouge tokens of detokenised text are the concatenation of its tokens'
tuples (the closing punctuation detokenize glues on starts with a separator).

The LCS is kept by the bit-parallel algorithm of Allison & Dix (1986) in Hyyro's form (2004): a row's
state is a bit vector ``V`` over the reference positions (all ones at the start); appending a rouge token
x whose match mask over the reference is ``M`` does ``U = V & M; V = (V + U) | (V - U)``, and the LCS of
the prefix and the reference is the number of zero bits among the reference's R bits. The masks of every
(example, word) pair are built once per split and found through the per-example hash tables BLEU uses.
Cost per token: O(R / 64) machine words (one word for references of up to 64 rouge tokens), in one
compiled (numba) loop over the rows, so the cost per token hardly grows with the reference, against the
O(R) of the LCS table.
"""

from __future__ import annotations

import re
import weakref

import numba
import numpy as np
from rouge_score.tokenizers import DefaultTokenizer

from ir_env.rewards.base import PrefixMetric, check_reference_ids
from ir_env.rewards.tables import ExampleHashTables, probe
from ir_env.tasks.base import Examples
from ir_env.tokenizer import BOS, EOS, PAD, UNK, Vocabulary, pad_batch

_REFERENCE_PAD = 0  # rouge token ids start at 1, so padding never matches
_TOKENIZER = DefaultTokenizer(use_stemmer=False)
_WORD_BITS = 64
_ONE = np.uint64(1)
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


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
        reference, self.ref_len = pad_batch(refs, _widest(refs))  # (M, R), (M,) PAD-filled
        self.num_bit_words = -(-reference.shape[1] // _WORD_BITS)  # W: uint64 words per bit vector
        self._build_masks(reference)

    def _build_masks(self, reference: np.ndarray) -> None:
        """Match masks: for every (example, rouge word), the bits of the reference positions holding it."""
        m, W = reference.shape[0], self.num_bit_words
        example, position = np.nonzero(reference != _REFERENCE_PAD)
        word = reference[example, position]
        pairs, pair_of = np.unique(np.stack([example, word]), axis=1, return_inverse=True)  # (2, K), (P,)
        masks = np.zeros((pairs.shape[1], W), dtype=np.uint64)  # (K, W)
        bit = _ONE << (position % _WORD_BITS).astype(np.uint64)
        np.bitwise_or.at(masks, (pair_of.reshape(-1), position // _WORD_BITS), bit)
        keys = pairs[1].astype(np.uint64)
        self.index = ExampleHashTables(pairs[0], keys, np.ones(pairs.shape[1], dtype=np.int64), m)
        self.masks = np.zeros((len(self.index.key), W), dtype=np.uint64)  # (cells, W) the mask of each cell
        self.masks[self.index.lookup(pairs[0], keys)] = masks
        # The first ref_len bits of each example: the positions whose zeros count towards the LCS.
        inside = np.arange(W * _WORD_BITS)[None, :] < self.ref_len[:, None]  # (M, 64 W)
        weights = _ONE << np.arange(_WORD_BITS, dtype=np.uint64)
        self.low_bits = (inside.reshape(m, W, _WORD_BITS).astype(np.uint64) * weights).sum(axis=2, dtype=np.uint64)


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

    Range [0, 1]; the reference itself scores 1 (0 if it has no rouge token). Cost per token: O(R / 64)
    words for a reference of R rouge tokens (bit-parallel LCS).

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
        self.bits = np.full((num_rows, self.tables.num_bit_words), _ALL_ONES, dtype=np.uint64)  # (N, W) V
        self.table_start = np.zeros(num_rows, dtype=np.int64)  # each row's hash table in tables.index
        self.table_shift = np.full(num_rows, 62, dtype=np.uint64)
        self.pred_len = np.zeros(num_rows, dtype=np.int64)  # rouge tokens in the prefix

    def _reset(self, rows: np.ndarray) -> None:
        e = self.example_ids[rows]
        self.table_start[rows] = self.tables.index.start[e]
        self.table_shift[rows] = self.tables.index.shift[e]
        self.bits[rows] = _ALL_ONES
        self.pred_len[rows] = 0

    def _push(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        t, index = self.tables, self.tables.index
        rows, tokens = np.asarray(rows, dtype=np.int64), np.asarray(tokens, dtype=np.int64)
        phi = np.empty(len(rows))
        _push_rows(
            rows, tokens, t.words, t.num_words, index.key, index.multiplier, self.table_start, self.table_shift,
            t.masks, self.bits, self.pred_len, self.example_ids, t.low_bits, t.ref_len, phi,
        )  # fmt: skip
        return phi  # the rows' new F-measure, computed in the same pass

    def _potential(self, rows: np.ndarray) -> np.ndarray:
        phi = np.empty(len(rows))
        _score_rows(
            np.asarray(rows, dtype=np.int64), self.bits, self.pred_len, self.example_ids, self.tables.low_bits,
            self.tables.ref_len, phi,
        )  # fmt: skip
        return phi


@numba.njit(cache=True, nogil=True)
def _push_rows(rows, tokens, words, num_words, table_key, multiplier, table_start, table_shift, masks, bits, pred_len,
               example_ids, low_bits, ref_len, phi):  # fmt: skip
    """Each row's token's rouge words through the bit-parallel LCS step, then the row's F-measure into ``phi``."""
    for i in range(len(rows)):
        r, token = rows[i], tokens[i]
        for j in range(num_words[token]):  # the most rouge words one vocabulary token holds, usually 1
            cell = probe(table_key, table_start[r], table_shift[r], multiplier, np.uint64(words[token, j]))
            pred_len[r] += 1
            if cell < 0:  # a word the reference lacks: M = 0, so U = 0 and V stays as it is
                continue
            carry = np.uint64(0)
            for w in range(bits.shape[1]):  # V = (V + U) | (V - U) with U = V & M; V - U = V ^ U (U within V)
                v = bits[r, w]
                u = v & masks[cell, w]
                total = v + u  # multi-word addition, little-endian words: uint64 wraps, the carry moves on
                out = total + carry
                carry = np.uint64((total < v) | (out < carry))
                bits[r, w] = out | (v ^ u)
        phi[i] = _f_of_row(bits, pred_len, example_ids, low_bits, ref_len, r)


@numba.njit(cache=True, nogil=True)
def _score_rows(rows, bits, pred_len, example_ids, low_bits, ref_len, phi):
    for i in range(len(rows)):
        phi[i] = _f_of_row(bits, pred_len, example_ids, low_bits, ref_len, rows[i])


@numba.njit(cache=True, nogil=True, inline="always")
def _f_of_row(bits, pred_len, example_ids, low_bits, ref_len, r):
    """Row r's F-measure: the LCS is the count of zero bits among its reference's first R bits."""
    e = example_ids[r]
    lcs = 0
    for w in range(bits.shape[1]):
        lcs += np.int64(_popcount(~bits[r, w] & low_bits[e, w]))
    if lcs == 0:
        return 0.0
    precision = lcs / pred_len[r]
    recall = lcs / ref_len[e]
    return 2 * precision * recall / (precision + recall)  # rouge_score.scoring.fmeasure, for parity


@numba.njit(cache=True, nogil=True, inline="always")
def _popcount(x):
    """Set bits of one uint64 (the SWAR sum that compilers turn into one popcnt instruction)."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)
