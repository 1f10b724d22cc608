"""Sampling helpers shared by the built-in generated tasks (translation, sentiment, matching).

Generators draw from a ``UniformStream`` (pure function of the seed), keep distinct examples with
``draw_unique`` and cut them into disjoint splits with ``build_splits``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import TypeVar

import numpy as np

from ir_env.tasks.base import SPLITS, Examples, check_disjoint

#: A generated example as (source ids, reference ids).
Pair = tuple[list[int], list[int]]
T = TypeVar("T")
_BLOCK = 1 << 16
#: Each requested example may cost this many draws before the generator gives up (grammar too small).
MAX_DRAWS_PER_EXAMPLE = 50


class UniformStream:
    """Uniform floats in [0, 1) read from blocks drawn by one ``numpy.random.Generator``.

    A scalar Generator call costs microseconds; the generators draw tens of numbers per example, so they
    read them from blocks instead (``uniform`` is a C-level ``next``). The stream, and all data drawn from
    it, is a pure function of the seed.
    """

    def __init__(self, rng: np.random.Generator):
        def blocks() -> Iterator[float]:
            while True:
                yield from rng.random(_BLOCK).tolist()

        #: The next float in [0, 1).
        self.uniform: Callable[[], float] = blocks().__next__

    def index(self, n: int) -> int:
        """A uniform integer in [0, n) (``u * n < n`` holds exactly in floating point for u < 1)."""
        return int(self.uniform() * n)

    def choice(self, items: Sequence[T]) -> T:
        """A uniform element of ``items``."""
        return items[int(self.uniform() * len(items))]

    def chance(self, p: float) -> bool:
        """True with probability ``p``."""
        return self.uniform() < p

    def sample(self, items: Sequence[T], k: int) -> list[T]:
        """``k`` distinct elements of ``items`` in random order."""
        pool = list(items)
        return [pool.pop(int(self.uniform() * len(pool))) for _ in range(k)]


def check_count(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum``, else raise ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r} ({type(value).__name__})")
    return int(value)


def check_sizes(seed: object, num_train: object, num_valid: object, num_test: object) -> tuple[int, dict[str, int]]:
    """The validated seed (an int >= 0, as ``default_rng`` wants) and split sizes (ints >= 1) by split."""
    sizes = {"train": num_train, "valid": num_valid, "test": num_test}
    return check_count("seed", seed, minimum=0), {k: check_count(f"num_{k}", v) for k, v in sizes.items()}


def draw_unique(sample: Callable[[int], Pair], total: int, key: Callable[[Pair], Hashable] | None = None) -> list[Pair]:
    """Call ``sample(i)`` until ``total`` examples with distinct keys are found, in draw order.

    ``i`` is the index of the example being drawn (a generator may use it, e.g. to alternate labels). The
    default key is the (source, reference) pair. Raises ValueError when the grammar runs dry.
    """
    pairs: list[Pair] = []
    seen: set[Hashable] = set()
    for _ in range(MAX_DRAWS_PER_EXAMPLE * total):
        if len(pairs) == total:
            break
        pair = sample(len(pairs))
        k = key(pair) if key is not None else (tuple(pair[0]), tuple(pair[1]))
        if k not in seen:
            seen.add(k)
            pairs.append(pair)
    if len(pairs) < total:
        raise ValueError(
            f"the grammar gave only {len(pairs)} distinct examples in {MAX_DRAWS_PER_EXAMPLE * total} draws, "
            f"fewer than the {total} requested; ask for fewer examples"
        )
    return pairs


def build_splits(
    pairs: list[Pair],
    sizes: dict[str, int],
    source_width: int,
    reference_width: int,
    attributes: Sequence[int] | None = None,
) -> dict[str, Examples]:
    """Cut ``pairs`` (and ``attributes``) into consecutive splits of ``sizes``, checked disjoint."""
    splits: dict[str, Examples] = {}
    keys: dict[str, list] = {}
    start = 0
    for split in SPLITS:
        chunk = pairs[start : start + sizes[split]]
        keys[split] = [(tuple(s), tuple(r)) for s, r in chunk]
        splits[split] = Examples.from_sequences(
            [np.array(s, dtype=np.int64) for s, _ in chunk],
            [np.array(r, dtype=np.int64) for _, r in chunk],
            source_width,
            reference_width,
            None if attributes is None else np.asarray(attributes[start : start + sizes[split]]),
        )
        start += sizes[split]
    check_disjoint(keys)
    return splits
