"""Sentence BLEU of a growing prefix, for N episodes at once, in O(1) per token.

The score is sacrebleu's sentence BLEU divided by 100: ``sacrebleu.sentence_bleu(hyp, [ref],
tokenize="none")`` on the space-joined words, that is smooth_method ``"exp"`` (NIST / Chen & Cherry
method 3), effective order, max n-gram order 4, one reference, no lowercasing. Tests check it against
sacrebleu to 1e-9. A reference token UNK stands for a word outside the vocabulary: it counts towards the
reference length but no output token matches it (not even UNK), as the real word would not be matched.

How a token is scored in O(1): every reference n-gram of every example sits, with its count, in the
example's small hash table (``ExampleHashTables``, built once per split and shared by every env reading
it). Each row keeps its last 1..4 tokens packed into 64-bit keys (15 bits a token, the order in the top
bits). A push looks up the row's four new n-grams in its example's table and clips matches with a per-row
counter per table slot, exactly like BLEU's clipped counts; the score then comes from the four clipped
counts and the length through tables of logarithms.
"""

from __future__ import annotations

import weakref

import numpy as np

from ir_env.rewards.base import PrefixMetric
from ir_env.rewards.tables import ExampleHashTables
from ir_env.tasks.base import Examples
from ir_env.tokenizer import UNK

MAX_ORDER = 4
TOKEN_BITS = 15  # four 15-bit ids and the order (bits 60-62) pack into one 64-bit key
MAX_TOKEN_ID = (1 << TOKEN_BITS) - 1
_ORDER_TAG = np.array([n << 60 for n in range(1, MAX_ORDER + 1)], dtype=np.uint64)  # key 0 = empty slot
_SHIFT = np.uint64(TOKEN_BITS)


def _reference_keys(examples: Examples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (example, n-gram key) pairs of all reference n-grams, n <= 4, with their counts."""
    ref, ref_len = examples.reference, examples.reference_len
    if ref.size and (int(ref.max()) > MAX_TOKEN_ID or int(ref.min()) < 0):
        raise ValueError(f"IncrementalBLEU packs token ids in {TOKEN_BITS} bits: ids must lie in [0, {MAX_TOKEN_ID}]")
    m, width = ref.shape
    example_parts, key_parts = [], []
    for n in range(1, min(MAX_ORDER, width) + 1):
        starts = np.arange(width - n + 1)
        key = np.zeros((m, len(starts)), dtype=np.uint64)
        for k in range(n):
            key = (key << _SHIFT) | ref[:, starts + k].astype(np.uint64)
        valid = starts[None, :] + n <= ref_len[:, None]  # (M, W-n+1)
        for k in range(n):  # an out-of-vocabulary reference word (UNK) is matched by nothing, not even UNK
            valid &= ref[:, starts + k] != UNK
        example_parts.append(np.nonzero(valid)[0])
        key_parts.append(key[valid] | _ORDER_TAG[n - 1])
    example, key = np.concatenate(example_parts), np.concatenate(key_parts)
    sort = np.lexsort((key, example))
    example, key = example[sort], key[sort]
    new = np.ones(len(key), dtype=bool)
    new[1:] = (example[1:] != example[:-1]) | (key[1:] != key[:-1])
    first = np.flatnonzero(new)
    return example[first], key[first], np.diff(np.append(first, len(key)))


_TABLES: weakref.WeakKeyDictionary[Examples, ExampleHashTables] = weakref.WeakKeyDictionary()


def _tables_for(examples: Examples) -> ExampleHashTables:
    """The split's reference n-gram tables, built once per split and shared by every metric reading it."""
    tables = _TABLES.get(examples)
    if tables is None:
        example, key, counts = _reference_keys(examples)
        tables = _TABLES[examples] = ExampleHashTables(example, key, counts, len(examples))
    return tables


class IncrementalBLEU(PrefixMetric):
    """Sentence BLEU / 100 (sacrebleu, tokenize none, exp smoothing, effective order) of each row's prefix.

    Range [0, 1]; the reference itself scores 1. Cost per token: O(1) expected (about two slots read per n-gram order).
    """

    name = "bleu"
    empty_is_zero = True

    def __init__(self, examples: Examples, num_rows: int):
        super().__init__(examples, num_rows)
        self.tables = _tables_for(examples)
        # Order-major (4, N) state: the per-order arithmetic runs on contiguous rows.
        self.tail = np.zeros((MAX_ORDER, num_rows), dtype=np.uint64)  # packed last n tokens, n = 1..4
        self.correct = np.zeros((MAX_ORDER, num_rows), dtype=np.int64)  # clipped n-gram matches
        self.used = np.zeros((num_rows, self.tables.max_slots), dtype=np.int32)  # matches per table slot
        self.table_start = np.zeros(num_rows, dtype=np.int64)  # each row's example table
        self.table_shift = np.zeros(num_rows, dtype=np.uint64)

    def _reset(self, rows: np.ndarray) -> None:
        e = self.example_ids[rows]
        self.table_start[rows], self.table_shift[rows] = self.tables.start[e], self.tables.shift[e]
        self.tail[:, rows] = 0
        self.correct[:, rows] = 0
        self.used[rows] = 0

    def _push(self, rows: np.ndarray, tokens: np.ndarray) -> None:
        t = self.tables
        at = slice(None) if len(rows) == self.num_rows else rows  # rows are sorted: all rows is a slice
        tok = tokens.astype(np.uint64)
        if (tok > MAX_TOKEN_ID).any():  # negative ids wrap to huge values too
            raise ValueError(f"IncrementalBLEU takes token ids in [0, {MAX_TOKEN_ID}], got {tokens[tok > MAX_TOKEN_ID][:5]}")
        tail = np.empty((MAX_ORDER, len(rows)), dtype=np.uint64)  # (4, k)
        tail[0] = tok
        tail[1:] = (self.tail[:-1, at] << _SHIFT) | tok
        self.tail[:, at] = tail

        start = self.table_start[at]
        found, cell = t.find(start, self.table_shift[at], tail | _ORDER_TAG[:, None])  # (4, k)
        found &= np.arange(MAX_ORDER)[:, None] < self.length[at]  # no n-gram longer than the prefix

        k = len(rows)
        hit = np.flatnonzero(found)  # flat (order, row) indices into (4, k)
        order, col = np.divmod(hit, k)
        row = rows[col]
        table_cell = cell.ravel()[hit]
        flat = row * self.used.shape[1] + (table_cell - start[col])  # (row, slot) in the counters
        used = self.used.ravel()
        used[flat] += 1  # one n-gram per order per row: no (row, slot) pair repeats
        within = used[flat] <= t.count[table_cell]
        self.correct.ravel()[order[within] * self.num_rows + row[within]] += 1

    def _potential(self, rows: np.ndarray) -> np.ndarray:
        at = slice(None) if len(rows) == self.num_rows else rows
        return bleu_from_counts(self.correct[:, at], self.length[at], self.examples.reference_len[self.example_ids[at]])


def bleu_from_counts(correct: np.ndarray, sys_len: np.ndarray, ref_len: np.ndarray) -> np.ndarray:
    """sacrebleu's ``BLEU.compute_bleu`` (exp smoothing, effective order) / 100, vectorised over rows.

    With t_n = L - n + 1 n-grams of order n <= e = min(L, 4), sacrebleu's precisions are 100 c_n / t_n,
    or 100 / (2^j t_n) for the j-th order with c_n = 0, so

        log BLEU/100 = (sum_{c_n>0} log c_n - sum_{n<=e} log t_n - ln2 * z(z+1)/2) / e + log BP,

    z being the number of zero-match orders. Both sums come from tables of logs: a handful of array
    operations per call whatever the length.

    Args:
        correct: (4, k) clipped n-gram matches, order-major.
        sys_len: (k,) hypothesis lengths L.
        ref_len: (k,) reference lengths.
    """
    need = int(sys_len.max(initial=0)) + 1  # correct <= L too
    if need > len(_LOG):
        _grow_log_tables(need)
    length = np.maximum(sys_len, 1)  # empty rows score 0 below; this only keeps the arithmetic finite
    eff_order = np.minimum(length, MAX_ORDER)
    zeros = np.count_nonzero(correct == 0, axis=0) - (MAX_ORDER - eff_order)  # zero-match orders <= e
    log_sum = _LOG[correct].sum(axis=0) - _TOTAL_LOG[length] - _ZERO_PENALTY[zeros]
    log_bp = np.minimum(1.0 - ref_len / length, 0.0)
    score = np.exp(log_sum / eff_order + log_bp)
    return np.where(correct[0] > 0, score, 0.0)  # no unigram match means no match at all: BLEU 0


_LOG = np.zeros(0)  # log i, with log 0 := 0
_TOTAL_LOG = np.zeros(0)  # sum_{n <= min(L, 4)} log(L - n + 1): the log n-gram totals of a length-L prefix
_ZERO_PENALTY = np.log(2.0) * np.array([z * (z + 1) / 2 for z in range(MAX_ORDER + 1)])  # exp smoothing


def _grow_log_tables(n: int) -> None:
    """The tables of logs for lengths below n, grown by doubling."""
    global _LOG, _TOTAL_LOG
    n = max(n, 2 * len(_LOG), 1024)
    _LOG = np.log(np.maximum(np.arange(n, dtype=np.float64), 1.0))
    cumulative = np.cumsum(_LOG)
    lengths = np.arange(n)
    _TOTAL_LOG = cumulative - cumulative[np.maximum(lengths - MAX_ORDER, 0)]


_grow_log_tables(1024)
