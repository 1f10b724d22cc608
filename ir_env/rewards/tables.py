"""Per-example hash tables of reference items (n-grams, words) with counts, for O(1) lookups in bulk.

BLEU, token F1 and ROUGE-L all ask, for thousands of rows at once, "does this item occur in my example's
reference, and how often?". Every example of a split gets a small open-addressing table (linear
probing, at most half full, plus one overflow slot per key so probing never wraps); all tables live
in one flat array, built once per split. A lookup reads the key's home slot and walks on until it finds
the key or an empty slot (two or three slots on average at half load).

The probing is compiled with numba (``probe``), so that a metric's own compiled step can call it per row
and the bulk ``find`` runs as one loop rather than a dozen numpy passes.

A metric clips matches with a per-row counter per *slot* (``cell - start[example]``), which is why the
tables are per example rather than one global table.

Keys are stored in 32 bits where every key fits, else in 64: a table read at random every step costs its
size in cache misses, so a table of half the bytes is a faster one.
"""

from __future__ import annotations

import numba
import numpy as np

HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits mix well
COUNT_MAX = np.iinfo(np.int16).max  # counts are int16: tables read at random every step stay small


@numba.njit(cache=True, nogil=True, inline="always")
def probe(table_key: np.ndarray, start: int, shift: np.uint64, multiplier: np.uint64, key: np.uint64) -> int:
    """The cell holding ``key`` in the table of 2**(64 - shift) home slots at ``start``, or -1.

    ``table_key`` may be uint32 or uint64; the key is hashed as uint64 either way."""
    cell = start + np.int64((key * multiplier) >> shift)  # the home slot: the hash's top bits
    while True:
        stored = table_key[cell]
        if stored == key:
            return cell
        if stored == 0:
            return -1
        cell += 1


@numba.njit(cache=True, nogil=True, inline="always")
def insert(table_key: np.ndarray, start: int, shift: np.uint64, multiplier: np.uint64, key: np.uint64) -> int:
    """The cell holding ``key`` in the table at ``start``, stored there first if absent (the first empty slot
    from its home on). The caller has sized the table for every key it inserts."""
    cell = start + np.int64((key * multiplier) >> shift)
    while table_key[cell] != 0 and table_key[cell] != key:
        cell += 1
    table_key[cell] = key
    return cell


@numba.njit(cache=True, nogil=True)
def _find(table_key, start, shift, multiplier, key, cell):  # flat arrays of one length
    for i in range(len(key)):
        cell[i] = probe(table_key, start[i], shift[i], multiplier, key[i])


@numba.njit(cache=True, nogil=True)
def _build(table_key, table_count, start, shift, multiplier, example, key, count):
    for i in range(len(key)):  # keys are distinct within an example: each lands in an empty slot
        cell = insert(table_key, start[example[i]], shift[example[i]], multiplier, key[i])
        table_count[cell] = count[i]


class ExampleHashTables:
    """Distinct (example, key) pairs with counts, stored as one hash table per example.

    Args:
        example: (K,) int example index of each entry, in [0, num_examples).
        key: (K,) keys, non-zero (0 marks an empty slot); distinct within an example.
        count: (K,) how often the key occurs in the example's reference.
        num_examples: M.

    The table stores the keys as uint32 where every key fits in 32 bits, else as uint64.
    """

    def __init__(self, example: np.ndarray, key: np.ndarray, count: np.ndarray, num_examples: int):
        key = np.ascontiguousarray(key, dtype=np.uint64)
        if len(key) and (key == 0).any():
            raise ValueError("ExampleHashTables keys must be non-zero (0 marks an empty slot)")
        key_dtype = np.uint32 if int(key.max(initial=0)) <= np.iinfo(np.uint32).max else np.uint64
        count = np.asarray(count)
        if len(count) and (count.min() < 1 or count.max() > COUNT_MAX):
            raise ValueError(f"ExampleHashTables counts must lie in [1, {COUNT_MAX}], got values up to {count.max()}")
        example = np.ascontiguousarray(example, dtype=np.int64)
        self._allocate(np.bincount(example, minlength=num_examples), key_dtype)
        _build(self.key, self.count, self.start, self.shift, self.multiplier, example, key, count.astype(np.int16))

    @classmethod
    def empty(cls, per_example: np.ndarray, key_dtype: type = np.uint64) -> ExampleHashTables:
        """Tables sized for ``per_example[e]`` distinct keys of each example, all slots empty, for a caller that
        inserts its keys itself (BLEU's n-gram tables, whose keys name the slot of another key)."""
        tables = cls.__new__(cls)
        tables._allocate(np.asarray(per_example, dtype=np.int64), key_dtype)
        return tables

    @staticmethod
    def home_bits(per_example: np.ndarray) -> np.ndarray:
        """log2 of each example's home slots: a power of two at least twice its keys (at most half full)."""
        return np.ceil(np.log2(np.maximum(2 * np.asarray(per_example), 4))).astype(np.int64)

    @staticmethod
    def spans(per_example: np.ndarray) -> np.ndarray:
        """Slots of each example's table: its home slots plus one overflow slot per key (probing never wraps)."""
        return (1 << ExampleHashTables.home_bits(per_example)) + np.asarray(per_example, dtype=np.int64)

    def _allocate(self, per_example: np.ndarray, key_dtype: type) -> None:
        num_examples = len(per_example)
        bits, span = self.home_bits(per_example), self.spans(per_example)  # (M,)
        self.start = np.zeros(num_examples, dtype=np.int64)
        self.start[1:] = np.cumsum(span)[:-1]
        self.shift = (64 - bits).astype(np.uint64)
        self.span = span  # (M,) slots of each example's table: a clipping counter per slot needs this many
        self.max_slots = int(span.max()) if num_examples else 1
        self.key = np.zeros(int(span.sum()) + 1, dtype=key_dtype)  # the last slot stays empty: probes stop
        self.count = np.zeros(len(self.key), dtype=np.int16)
        self.multiplier = HASH_MULTIPLIER  # read here, so that a test can make every key collide

    def lookup(self, example: np.ndarray, key: np.ndarray) -> np.ndarray:
        """The cell holding each key in its example's table, or -1 where the reference lacks it.

        ``example`` and ``key`` broadcast together (any shape, e.g. (4, k) for four n-gram orders).
        """
        example, key = np.broadcast_arrays(np.asarray(example, dtype=np.int64), np.asarray(key, dtype=np.uint64))
        return self.find(self.start[example], self.shift[example], key)[1]

    def find(self, start: np.ndarray, shift: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``lookup`` for callers that keep each row's table ``start`` and ``shift``: (found, cell) arrays.

        The three arrays broadcast together; ``cell`` is -1 where not ``found``.
        """
        start, shift, key = np.broadcast_arrays(
            np.asarray(start, dtype=np.int64), np.asarray(shift, dtype=np.uint64), np.asarray(key, dtype=np.uint64)
        )
        cell = np.empty(key.shape, dtype=np.int64)
        _find(self.key, start.ravel(), shift.ravel(), self.multiplier, key.ravel(), cell.reshape(-1))
        return cell >= 0, cell
