"""Sentence BLEU of a growing prefix, for N episodes at once, in O(1) per token.

The score is sacrebleu's sentence BLEU divided by 100: ``sacrebleu.sentence_bleu(hyp, [ref],
tokenize="none")`` on the space-joined words, that is smooth_method ``"exp"`` (NIST / Chen & Cherry
method 3), effective order, max n-gram order 4, one reference, no lowercasing. Tests check it against
sacrebleu to 1e-9. A reference token UNK stands for a word outside the vocabulary: it counts towards the
reference length but no output token matches it (not even UNK), as the real word would not be matched.

How a token is scored in O(1): every reference n-gram of every example sits, with its count, in the
example's small hash table (``ExampleHashTables``, built once per split and shared by every env reading
it), keyed as a trie: an n-gram's key is (the slot of its first n - 1 words' entry, its last word), and a
unigram's parent is the root. Each row keeps, per order, the slot of the n-gram that ended at its last
token (or none), so a push looks up each new n-gram from its parent's slot and the new token alone. The
keys fit in 32 bits (15 for the token, the rest for the parent slot) for references up to thousands of
tokens, which halves the bytes a lookup reads at random against packed 64-bit n-grams. Matches are
clipped with a per-row counter per table slot, exactly like BLEU's clipped counts; the score then comes
from the four clipped counts and the length through tables of logarithms. The push is one loop over the
rows compiled with numba (a dozen numpy passes over (4, N) arrays cost several times more at N = 1024).
"""

from __future__ import annotations

import weakref

import numba
import numpy as np

from ir_env.rewards.base import PrefixMetric
from ir_env.rewards.tables import COUNT_MAX, ExampleHashTables, insert, probe
from ir_env.tasks.base import Examples
from ir_env.tokenizer import UNK

MAX_ORDER = 4
TOKEN_BITS = 15  # a trie key is (parent slot + 2) << 15 | token; packed n-grams used 4 x 15 bits + the order
MAX_TOKEN_ID = (1 << TOKEN_BITS) - 1
_ORDER_TAG = np.array([n << 60 for n in range(1, MAX_ORDER + 1)], dtype=np.uint64)  # key 0 = empty slot
_SHIFT = np.uint64(TOKEN_BITS)
_ROOT = -1  # the parent "slot" of a unigram
_NONE = -2  # no n-gram of the reference ended here


def _reference_keys(examples: Examples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (example, packed n-gram) pairs of all reference n-grams, n <= 4, with their counts.

    A packed n-gram holds its n token ids (15 bits each) and its order (bits 60-62). The tables are sized
    from these; tests check the tables' counts against them."""
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


@numba.njit(cache=True, nogil=True, inline="always")
def _trie_key(parent: int, token) -> np.uint64:
    """The table key of the n-gram that extends the one in slot ``parent`` (``_ROOT`` for a unigram) by ``token``."""
    return np.uint64(((parent + 2) << TOKEN_BITS) | token)  # never 0: parent + 2 >= 1


@numba.njit(cache=True, nogil=True)
def _insert_ngrams(reference, reference_len, start, shift, multiplier, table_key, table_count, unk):
    """Insert every reference n-gram (n <= 4, none with UNK) into its example's table, order by order, so
    that an n-gram's parent already has its slot. The tables are sized for the distinct n-grams, whose
    counts the caller has checked to fit the int16 counts."""
    m, width = reference.shape
    slot = np.full((MAX_ORDER, width), _NONE, dtype=np.int64)  # slot of the n-gram ending at each position
    for e in range(m):
        slot[:] = _NONE
        for n in range(MAX_ORDER):
            for j in range(n, reference_len[e]):
                parent = _ROOT if n == 0 else slot[n - 1, j - 1]
                if reference[e, j] == unk or parent == _NONE:  # UNK is matched by nothing, not even UNK
                    continue
                cell = insert(table_key, start[e], shift[e], multiplier, _trie_key(parent, reference[e, j]))
                table_count[cell] += 1
                slot[n, j] = cell - start[e]


_TABLES: weakref.WeakKeyDictionary[Examples, ExampleHashTables] = weakref.WeakKeyDictionary()


def _tables_for(examples: Examples) -> ExampleHashTables:
    """The split's reference n-gram tables (a trie, see the module docstring), built once per split and shared
    by every metric reading it."""
    tables = _TABLES.get(examples)
    if tables is None:
        example, _, counts = _reference_keys(examples)
        if len(counts) and counts.max() > COUNT_MAX:
            raise ValueError(f"IncrementalBLEU counts n-grams in int16: a reference repeats one {counts.max()} times")
        per_example = np.bincount(example, minlength=len(examples))
        largest_slot = int(ExampleHashTables.spans(per_example).max(initial=1)) - 1
        key_dtype = np.uint32 if (largest_slot + 2) << TOKEN_BITS <= np.iinfo(np.uint32).max else np.uint64
        tables = ExampleHashTables.empty(per_example, key_dtype)
        _insert_ngrams(
            examples.reference, examples.reference_len, tables.start, tables.shift, tables.multiplier, tables.key,
            tables.count, UNK,
        )  # fmt: skip
        _TABLES[examples] = tables
    return tables


def ngram_cell(tables: ExampleHashTables, example: int, ngram) -> int:
    """The cell of ``ngram`` (1 to 4 token ids) in ``example``'s table, or -1: the trie walked from the root
    (for inspection and tests; the push walks it one token per step)."""
    parent = _ROOT
    cell = -1
    for token in ngram:
        found, at = tables.find(tables.start[example], tables.shift[example], _trie_key(parent, int(token)))
        if not found:
            return -1
        cell = int(at)
        parent = cell - int(tables.start[example])
    return cell


class IncrementalBLEU(PrefixMetric):
    """Sentence BLEU / 100 (sacrebleu, tokenize none, exp smoothing, effective order) of each row's prefix.

    Range [0, 1]; the reference itself scores 1. Cost per token: O(1) expected (about two slots read per
    n-gram order, stopping at the first order the reference lacks). A push is one compiled (numba) loop over
    the rows that updates and scores each.
    """

    name = "bleu"
    empty_is_zero = True

    def __init__(self, examples: Examples, num_rows: int):
        super().__init__(examples, num_rows)
        self.tables = _tables_for(examples)
        # Order-major (4, N) counts and n-gram slots: row r's state is column r.
        self.node = np.full((MAX_ORDER, num_rows), _NONE, dtype=np.int64)  # slot of the n-gram ending last
        self.correct = np.zeros((MAX_ORDER, num_rows), dtype=np.int64)  # clipped n-gram matches
        self.used = np.zeros((num_rows, self.tables.max_slots), dtype=np.int16)  # clipped matches per table slot
        self.table_start = np.zeros(num_rows, dtype=np.int64)  # each row's example table
        self.table_shift = np.zeros(num_rows, dtype=np.uint64)
        self.ref_len = np.zeros(num_rows, dtype=np.int64)  # each row's reference length

    def _reset(self, rows: np.ndarray) -> None:
        t = self.tables
        _reset_rows(
            np.asarray(rows, dtype=np.int64), self.example_ids, t.start, t.shift, t.span, self.examples.reference_len,
            self.table_start, self.table_shift, self.ref_len, self.node, self.correct, self.used,
        )  # fmt: skip

    def _push(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        rows, tokens = np.asarray(rows, dtype=np.int64), np.asarray(tokens, dtype=np.int64)
        _ensure_log_tables(int(self.length.max()) + 1)  # the longest row bounds the pushed ones
        phi = np.empty(len(rows), dtype=np.float64)
        bad = _push_rows(
            rows, tokens, self.length, self.node, self.correct, self.used,
            self.table_start, self.table_shift, self.ref_len, self.tables.key, self.tables.count,
            self.tables.multiplier,
            _LOG, _TOTAL_LOG, _ZERO_PENALTY, phi,
        )  # fmt: skip
        if bad >= 0:
            self.length[rows] -= 1  # the state is untouched: undo the caller's length update too
            raise ValueError(f"IncrementalBLEU takes token ids in [0, {MAX_TOKEN_ID}], got {tokens[bad]}")
        return phi  # the new BLEU of the rows, computed in the same pass

    def _potential(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        _ensure_log_tables(int(self.length[rows].max(initial=0)) + 1)
        phi = np.empty(len(rows), dtype=np.float64)
        _score_rows(rows, self.length, self.correct, self.ref_len, _LOG, _TOTAL_LOG, _ZERO_PENALTY, phi)
        return phi


@numba.njit(cache=True, nogil=True)
def _reset_rows(rows, example_ids, start, shift, span, reference_len, table_start, table_shift, ref_len, node, correct,
                used):  # fmt: skip
    for r in rows:
        e = example_ids[r]
        table_start[r], table_shift[r], ref_len[r] = start[e], shift[e], reference_len[e]
        node[:, r] = _NONE
        correct[:, r] = 0
        used[r, : span[e]] = 0  # the slots this example's n-grams can reach; the rest are never read


@numba.njit(cache=True, nogil=True)
def _push_rows(rows, tokens, length, node, correct, used, table_start, table_shift, ref_len, table_key, table_count,
               multiplier, log, total_log, zero_penalty, phi):  # fmt: skip
    """One token per row (length already counts it): its new n-grams looked up and clipped, then the row's
    BLEU into ``phi``.

    Returns the index of the first out-of-range token (before changing anything), or -1.
    """
    for i in range(len(rows)):
        if tokens[i] < 0 or tokens[i] > MAX_TOKEN_ID:
            return i
    for i in range(len(rows)):
        r = rows[i]
        start, shift, token = table_start[r], table_shift[r], tokens[i]
        parent = _ROOT  # of the new unigram; each longer n-gram extends one that ended at the step before
        for n in range(MAX_ORDER):
            extended = node[n, r]  # the order-(n + 1) n-gram of the step before: the next order's parent
            cell = probe(table_key, start, shift, multiplier, _trie_key(parent, token)) if parent != _NONE else -1
            if cell < 0:  # an n-gram the reference lacks: so does every longer one ending here (it contains it)
                for k in range(n, MAX_ORDER):
                    node[k, r] = _NONE
                break
            slot = cell - start
            node[n, r] = slot
            if used[r, slot] < table_count[cell]:  # BLEU's clipping: at most the reference's count
                used[r, slot] += 1
                correct[n, r] += 1
            parent = extended
        phi[i] = _bleu_of_row(correct, r, length[r], ref_len[r], log, total_log, zero_penalty)
    return -1


@numba.njit(cache=True, nogil=True)
def _score_rows(rows, length, correct, ref_len, log, total_log, zero_penalty, phi):
    for i in range(len(rows)):
        r = rows[i]
        phi[i] = _bleu_of_row(correct, r, length[r], ref_len[r], log, total_log, zero_penalty)


@numba.njit(cache=True, nogil=True, inline="always")
def _bleu_of_row(correct, r, sys_len, ref_len, log, total_log, zero_penalty):
    """sacrebleu's ``BLEU.compute_bleu`` (exp smoothing, effective order) / 100 of row ``r``.

    With t_n = L - n + 1 n-grams of order n <= e = min(L, 4), sacrebleu's precisions are 100 c_n / t_n,
    or 100 / (2^j t_n) for the j-th order with c_n = 0, so

        log BLEU/100 = (sum_{c_n>0} log c_n - sum_{n<=e} log t_n - ln2 * z(z+1)/2) / e + log BP,

    z being the number of zero-match orders. Both sums come from tables of logs (``log`` with log 0 := 0,
    ``total_log``, ``zero_penalty``), so a row costs a handful of operations whatever its length.

    Args:
        correct: (4, N) clipped n-gram matches c_n, order-major.
        r: the row.
        sys_len: its hypothesis length L (>= 1 wherever correct[0, r] > 0).
        ref_len: its reference length.
    """
    if correct[0, r] == 0:
        return 0.0
    eff_order = min(sys_len, MAX_ORDER)
    log_sum = 0.0
    zeros = 0
    for n in range(MAX_ORDER):
        log_sum += log[correct[n, r]]
        zeros += correct[n, r] == 0
    zeros -= MAX_ORDER - eff_order
    log_sum = log_sum - total_log[sys_len] - zero_penalty[zeros]
    log_bp = min(1.0 - ref_len / sys_len, 0.0)
    return np.exp(log_sum / eff_order + log_bp)


_LOG = np.zeros(0)  # log i, with log 0 := 0
_TOTAL_LOG = np.zeros(0)  # sum_{n <= min(L, 4)} log(L - n + 1): the log n-gram totals of a length-L prefix
_ZERO_PENALTY = np.log(2.0) * np.array([z * (z + 1) / 2 for z in range(MAX_ORDER + 1)])  # exp smoothing


def _ensure_log_tables(n: int) -> None:
    """Make the tables of logs cover lengths below n."""
    if n > len(_LOG):
        _grow_log_tables(n)


def _grow_log_tables(n: int) -> None:
    """The tables of logs for lengths below n, grown by doubling."""
    global _LOG, _TOTAL_LOG
    n = max(n, 2 * len(_LOG), 1024)
    _LOG = np.log(np.maximum(np.arange(n, dtype=np.float64), 1.0))
    cumulative = np.cumsum(_LOG)
    lengths = np.arange(n)
    _TOTAL_LOG = cumulative - cumulative[np.maximum(lengths - MAX_ORDER, 0)]


_grow_log_tables(1024)


#: The order of a BLEU point's 10 values, as sacrebleu's statistics: output and reference length, then the
#: clipped matches and the totals of the 1- to 4-grams (``sys_len, ref_len, *counts, *totals``).
POINT_FIELDS = ("sys_len", "ref_len", "correct_1", "correct_2", "correct_3", "correct_4",
                "total_1", "total_2", "total_3", "total_4")  # fmt: skip


def check_bleu_point(point) -> np.ndarray:
    """The 10 mean per-sentence BLEU statistics of a linearisation point (``POINT_FIELDS``), checked."""
    try:
        arr = np.asarray(point, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"bleu_point must be 10 numbers {POINT_FIELDS}, got {point!r}") from None
    if arr.shape != (len(POINT_FIELDS),):
        raise ValueError(f"bleu_point must be 10 numbers {POINT_FIELDS}, got shape {arr.shape}")
    if not np.isfinite(arr).all() or (arr <= 0).any():
        raise ValueError(f"bleu_point values must be finite and > 0 (every n-gram order matched), got {arr.tolist()}")
    if (arr[2:6] > arr[6:10]).any():
        raise ValueError(f"bleu_point: the matches {arr[2:6].tolist()} exceed the totals {arr[6:10].tolist()}")
    return arr


class LinearBLEU(IncrementalBLEU):
    """Corpus BLEU, linearised: how much an output adds to the corpus BLEU of a system at a given point.

    Sentence BLEU is a poor proxy for the corpus BLEU that MT reports (Chiang et al., 2008; Tromble et
    al., 2008): its geometric mean makes a unigram match in a sentence without a 4-gram match worth
    almost nothing, and it charges the brevity penalty per sentence. Corpus BLEU sums the statistics of
    all sentences first. Linearised at a point (the mean per-sentence statistics of a system: output
    length c̄, reference length r̄, matches m̄_n and totals t̄_n), adding K times one output's statistics
    to a corpus of K sentences at that point changes corpus BLEU by, to first order,

        Phi(y) = B * ( sum_n (m_n / m̄_n - t_n / t̄_n) / 4  +  beta * c ),   beta = r̄ / c̄² if c̄ < r̄ else 0,

    B being the point's BLEU / 100, minus a term of the reference length alone (B r / c̄ where c̄ < r̄),
    which no output changes and is left out so that the empty output scores 0. Phi is linear in the
    output's counts, so every match of order n is worth the same everywhere, each output token costs
    its share of the totals, and (below the reference length) earns the brevity penalty's slope.

    The incremental state is ``IncrementalBLEU``'s (clipped matches per order), so a token costs O(1).
    Phi can be negative (an output of unmatched words); it is in BLEU / 100 units per sentence.
    """

    name = "linear_bleu"

    def __init__(self, examples: Examples, num_rows: int, point):
        super().__init__(examples, num_rows)
        self.set_point(point)

    def set_point(self, point) -> None:
        """Linearise at ``point`` from now on. Every row's Phi changes with it, so call it between episodes
        (a row in mid-episode would be paid by two points, and its instant rewards would not sum to its score)."""
        self.point = check_bleu_point(point)
        c, r = self.point[0], self.point[1]
        correct, total = self.point[2:6], self.point[6:10]
        self.bleu_at_point = _point_bleu(correct, total, c, r)
        b = self.bleu_at_point
        self._match_weight = b / (MAX_ORDER * correct)  # (4,)
        self._total_weight = b / (MAX_ORDER * total)
        self._length_weight = b * r / c**2 if c < r else 0.0

    def _push(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        super()._push(rows, tokens)
        return self._potential(rows)

    def _potential(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        length = self.length[rows]
        phi = self._length_weight * length
        for n in range(MAX_ORDER):  # term by term, in one order for every row: a row's value does not depend on
            # how many rows are scored with it (a matrix product's summation order may), so N = 1 equals N = 8
            phi += self._match_weight[n] * self.correct[n, rows] - self._total_weight[n] * np.maximum(length - n, 0)
        return phi


def _point_bleu(correct: np.ndarray, total: np.ndarray, sys_len: float, ref_len: float) -> float:
    """BLEU / 100 of a point's statistics (every order matched, so no smoothing applies)."""
    log_bp = min(1.0 - ref_len / sys_len, 0.0)
    return float(np.exp(np.mean(np.log(correct / total)) + log_bp))


def bleu_point_of(examples: Examples, example_ids: np.ndarray, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The mean per-sentence BLEU statistics (``POINT_FIELDS``) of N finished outputs, as the env counts them
    (a reference UNK matches nothing): output ``i`` is ``tokens[i, :lengths[i]]`` (no EOS) against the
    reference of ``example_ids[i]``. An n-gram order that nothing matched counts as matched once in the N
    outputs, so that the result is a valid ``bleu_point``."""
    n = len(example_ids)
    metric = IncrementalBLEU(examples, n)
    metric.reset(np.arange(n), np.asarray(example_ids, dtype=np.int64))
    lengths = np.asarray(lengths, dtype=np.int64)
    for t in range(int(lengths.max(initial=0))):
        rows = np.flatnonzero(lengths > t)
        metric.push(rows, tokens[rows, t])
    totals = np.maximum(metric.length[None, :] - np.arange(MAX_ORDER)[:, None], 0)
    return mean_bleu_point(np.column_stack([metric.length, metric.ref_len, metric.correct.T, totals.T]))


def mean_bleu_point(statistics: np.ndarray) -> np.ndarray:
    """The ``bleu_point`` of (N, 10) per-sentence BLEU statistics (``POINT_FIELDS`` order): their mean, with an
    n-gram order that nothing matched counted as matched once in the N sentences."""
    point = np.asarray(statistics, dtype=np.float64).mean(axis=0)
    point[2:6] = np.maximum(point[2:6], 1 / len(statistics))
    return point
