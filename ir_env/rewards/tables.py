"""Per-example hash tables of reference items (n-grams, words) with counts, for O(1) lookups in bulk.

BLEU and token F1 both ask, for thousands of rows at once, "does this item occur in my example's
reference, and how often?". Every example of a split gets a small open-addressing table (linear
probing, at most a quarter full, plus one overflow slot per key so probing never wraps); all tables live
in one flat array, built once per split. A lookup reads the home slot and the next one for every query
(nearly all end there) and probes on only for the few that met two occupied slots.

A metric clips matches with a per-row counter per *slot* (``cell - start[example]``), which is why the
tables are per example rather than one global table.
"""

from __future__ import annotations

import numpy as np

_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits mix well


def _home(key: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Home slot of keys in tables of 2**(64 - shift) slots: the top bits of a Fibonacci hash."""
    return ((key * _HASH_MULTIPLIER) >> shift).view(np.int64)  # < 2**63 since shift >= 2


class ExampleHashTables:
    """Distinct (example, key) pairs with counts, stored as one hash table per example.

    Args:
        example: (K,) int example index of each entry, in [0, num_examples).
        key: (K,) uint64 keys, non-zero (0 marks an empty slot); distinct within an example.
        count: (K,) how often the key occurs in the example's reference.
        num_examples: M.
    """

    def __init__(self, example: np.ndarray, key: np.ndarray, count: np.ndarray, num_examples: int):
        key = np.asarray(key, dtype=np.uint64)
        if len(key) and (key == 0).any():
            raise ValueError("ExampleHashTables keys must be non-zero (0 marks an empty slot)")
        per_example = np.bincount(example, minlength=num_examples)
        bits = np.ceil(np.log2(np.maximum(4 * per_example, 4))).astype(np.int64)  # (M,)
        span = (1 << bits) + per_example  # home slots + overflow: probing never wraps
        self.start = np.zeros(num_examples, dtype=np.int64)
        self.start[1:] = np.cumsum(span)[:-1]
        self.shift = (64 - bits).astype(np.uint64)
        self.max_slots = int(span.max()) if num_examples else 1
        self.key = np.zeros(int(span.sum()) + 1, dtype=np.uint64)
        self.count = np.zeros(len(self.key), dtype=np.int32)
        # Vectorised linear probing: each round every unplaced key tries its next slot; one wins each slot.
        cell = self.start[example] + _home(key, self.shift[example])
        pending = np.arange(len(key))
        while len(pending):
            free = self.key[cell[pending]] == 0
            _, first = np.unique(np.where(free, cell[pending], -1), return_index=True)
            won = pending[first[free[first]]]
            self.key[cell[won]] = key[won]
            self.count[cell[won]] = count[won]
            pending = np.setdiff1d(pending, won, assume_unique=True)
            cell[pending] += 1

    def lookup(self, example: np.ndarray, key: np.ndarray) -> np.ndarray:
        """The cell holding each key in its example's table, or -1 where the reference lacks it.

        ``example`` and ``key`` broadcast together (any shape, e.g. (4, k) for four n-gram orders).
        """
        found, cell = self.find(self.start[example], self.shift[example], key)
        return np.where(found, cell, -1)

    def find(self, start: np.ndarray, shift: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``lookup`` for callers that keep each row's table ``start`` and ``shift``: (found, cell) arrays.

        ``cell`` is meaningful only where ``found``.
        """
        cell = start + _home(key, shift)
        stored0, stored1 = self.key[cell], self.key[cell + 1]
        at_home = stored0 == key
        found = at_home | (stored1 == key)
        cell += ~at_home  # where found: the slot holding the key
        # Rare: two occupied slots and no match yet; probe on until the key or an empty slot turns up.
        far = np.flatnonzero(~found & (stored0 != 0) & (stored1 != 0))
        if len(far):
            flat_found, flat_cell = found.reshape(-1), cell.reshape(-1)
            far_cell, far_key = flat_cell[far], np.broadcast_to(key, cell.shape).reshape(-1)[far]
            while len(far):
                far_cell = far_cell + 1
                stored = self.key[far_cell]
                hit = stored == far_key
                flat_found[far[hit]] = True
                flat_cell[far[hit]] = far_cell[hit]
                go_on = ~hit & (stored != 0)
                far, far_cell, far_key = far[go_on], far_cell[go_on], far_key[go_on]
        return found, cell
