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
Cost per token: O(R / 64) machine words, vectorised over rows (one word for references of up to 64
rouge tokens), so the cost per token hardly grows with the reference, against the O(R) of the LCS table.
"""

from __future__ import annotations

import re
import weakref

import numpy as np
from rouge_score.tokenizers import DefaultTokenizer

from ir_env.rewards.base import PrefixMetric, check_reference_ids
from ir_env.rewards.tables import ExampleHashTables
from ir_env.tasks.base import Examples
from ir_env.tokenizer import BOS, EOS, PAD, UNK, Vocabulary, pad_batch

_REFERENCE_PAD = 0  # rouge token ids start at 1, so padding never matches
_TOKENIZER = DefaultTokenizer(use_stemmer=False)
_WORD_BITS = 64
_ONE = np.uint64(1)
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_BYTE_POPCOUNT = np.array([bin(b).count("1") for b in range(256)], dtype=np.int64)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 of ``x``."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x)
    return _BYTE_POPCOUNT[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1)


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b for (k, W) unsigned little-endian multi-word integers, modulo 2**(64 W)."""
    if a.shape[1] == 1:
        return a + b  # uint64 addition wraps: the top word's carry out is dropped, as it must be
    out = np.empty_like(a)
    carry = np.zeros(a.shape[0], dtype=np.uint64)
    for w in range(a.shape[1]):
        s = a[:, w] + b[:, w]
        overflow = s < a[:, w]
        s += carry
        carry = (overflow | (s < carry)).astype(np.uint64)
        out[:, w] = s
    return out


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
    words for a reference of R rouge tokens (bit-parallel LCS), vectorised over rows.

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

    def _push(self, rows: np.ndarray, tokens: np.ndarray) -> None:
        words, num_words = self.tables.words[tokens], self.tables.num_words[tokens]  # (k, L), (k,)
        for j in range(words.shape[1]):  # L is the most rouge tokens one vocabulary token holds, usually 1
            has = num_words > j
            r, w = (rows, words[:, j]) if has.all() else (rows[has], words[has, j])
            found, cell = self.tables.index.find(self.table_start[r], self.table_shift[r], w.astype(np.uint64))
            match = np.where(found[:, None], self.tables.masks[cell], np.uint64(0))  # (k, W) M
            v = self.bits[r]  # (k, W)
            u = v & match
            self.bits[r] = _add(v, u) | (v ^ u)  # v - u = v ^ u: u's bits are a subset of v's
            self.pred_len[r] += 1

    def _potential(self, rows: np.ndarray) -> np.ndarray:
        e = self.example_ids[rows]
        ref_len = self.tables.ref_len[e]
        lcs = _popcount(~self.bits[rows] & self.tables.low_bits[e]).sum(axis=1).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = lcs / self.pred_len[rows]
            recall = lcs / ref_len
            f = 2 * precision * recall / (precision + recall)  # rouge_score.scoring.fmeasure, for parity
        return np.where(lcs > 0, f, 0.0)
