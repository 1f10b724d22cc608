"""The PrefixMetric contract: a sequence metric computed incrementally, one token at a time, for N rows.

One implementation serves both environments: the scalar env holds a metric of one row, the batched env
one of N rows, so the two cannot drift apart.

Life of a row::

    phi0 = metric.reset(rows, example_ids)   # Phi(empty prefix) of each row, usually 0
    phi = metric.push(rows, tokens)          # Phi of each row's prefix after appending its token
    ...
    final = metric.score(rows)               # R(y) of each row's finished output

``rows`` is a 1-D int array of distinct row indices in [0, N); ``tokens`` holds one token id per row.
EOS is never pushed: the env ends the episode instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from ir_env.tasks.base import Examples
from ir_env.tokenizer import Vocabulary


class PrefixMetric(ABC):
    """A batched, incremental sequence metric (the potential Phi of instant shaping).

    Args:
        examples: the split whose references the rows are scored against.
        num_rows: N, the number of episodes tracked at once.
    """

    #: short name used in listings and infos
    name: str = "metric"
    #: Phi(empty prefix) is 0 (true of every built-in metric): reset() then skips computing it
    empty_is_zero: bool = False

    def __init__(self, examples: Examples, num_rows: int):
        if num_rows < 1:
            raise ValueError(f"num_rows must be >= 1, got {num_rows}")
        self.examples = examples
        self.num_rows = num_rows
        self.example_ids = np.zeros(num_rows, dtype=np.int64)
        self.length = np.zeros(num_rows, dtype=np.int64)

    def reset(self, rows: np.ndarray, example_ids: np.ndarray) -> np.ndarray:
        """Start new, empty outputs in ``rows`` against ``example_ids``; returns Phi(empty), (len(rows),)."""
        self.example_ids[rows] = example_ids
        self.length[rows] = 0
        self._reset(rows)
        return np.zeros(len(rows)) if self.empty_is_zero else self._potential(rows)

    def push(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Append ``tokens[i]`` to row ``rows[i]``; returns the new Phi of those rows, float64."""
        if len(rows) == self.num_rows:  # rows are distinct: this is every row
            self.length += 1
        else:
            self.length[rows] += 1
        phi = self._push(rows, tokens)
        return self._potential(rows) if phi is None else phi

    def score(self, rows: np.ndarray) -> np.ndarray:
        """R(y) of each row's current output. Default: the potential, since Phi of the whole output is R(y).

        A subclass whose final score differs from its potential overrides this method.
        """
        return self._potential(rows)

    @property
    def score_is_potential(self) -> bool:
        """True when ``score`` is the inherited one, so a caller holding the last Phi need not recompute."""
        return type(self).score is PrefixMetric.score

    @abstractmethod
    def _reset(self, rows: np.ndarray) -> None:
        """Clear the incremental state of ``rows`` (example_ids and length are already set)."""

    @abstractmethod
    def _push(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray | None:
        """Update the incremental state of ``rows`` with one token each (length is already incremented).

        May return the rows' new Phi when the update computes it anyway (one pass instead of two);
        ``None`` makes ``push`` call ``_potential``.
        """

    @abstractmethod
    def _potential(self, rows: np.ndarray) -> np.ndarray:
        """The metric of the current prefix of ``rows``, float64 (len(rows),)."""


#: A user potential: (source ids, prefix ids, reference ids) -> float.
PotentialFn = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


class CallablePotential(PrefixMetric):
    """Wraps a plain Python function of (source, prefix, reference) id arrays as a PrefixMetric.

    It recomputes the function on the whole prefix at every token (one Python call per row and step):
    convenient for experiments, not fast.
    """

    name = "callable"

    def __init__(self, fn: PotentialFn, examples: Examples, num_rows: int, max_len: int):
        if not callable(fn):
            raise TypeError(f"potential must be callable, got {type(fn).__name__}")
        super().__init__(examples, num_rows)
        self.fn = fn
        self.prefix = np.zeros((num_rows, max_len), dtype=np.int64)

    def _reset(self, rows: np.ndarray) -> None:
        self.prefix[rows] = 0

    def _push(self, rows: np.ndarray, tokens: np.ndarray) -> None:
        self.prefix[rows, self.length[rows] - 1] = tokens

    def _potential(self, rows: np.ndarray) -> np.ndarray:
        ex = self.examples
        out = np.empty(len(rows), dtype=np.float64)
        for i, r in enumerate(rows):
            e = self.example_ids[r]
            value = self.fn(
                ex.source[e, : ex.source_len[e]].copy(),
                self.prefix[r, : self.length[r]].copy(),
                ex.reference[e, : ex.reference_len[e]].copy(),
            )
            value = float(value)
            if not np.isfinite(value):
                raise ValueError(f"the potential function returned {value} (not finite) for row {int(r)}")
            out[i] = value
        return out


def check_prefix_room(rows: np.ndarray, length: np.ndarray, max_len: int) -> None:
    """Raise ValueError if a row's prefix (``length`` tokens, after the push) outgrew a metric's ``max_len``
    buffer: for the metrics that keep each row's prefix ids (VADER, the classifier)."""
    if int(length.max(initial=0)) > max_len:
        row = int(rows[np.argmax(length)])
        raise ValueError(
            f"row {row} reached {int(length.max())} tokens, more than max_len={max_len}; "
            "pass max_len >= the task's max_generation_len"
        )


def check_reference_ids(examples: Examples, vocab: Vocabulary) -> None:
    """Raise ValueError if a reference id of ``examples`` lies outside ``vocab``."""
    if examples.reference.size and int(examples.reference.max()) >= len(vocab):
        raise ValueError(f"reference id {int(examples.reference.max())} is outside the vocabulary ({len(vocab)} ids)")
