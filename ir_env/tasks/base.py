"""The Task contract: what an environment needs to know about a text-generation problem.

A task owns a vocabulary, three disjoint splits of examples stored as PAD-filled integer arrays (so a
batched env can gather thousands of episodes' data with one fancy index), the metric its outputs are
scored by, length caps, and an optional action mask.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ir_env.tokenizer import EOS, PAD, Vocabulary, pad_batch

if TYPE_CHECKING:
    from ir_env.rewards.base import PrefixMetric

SPLITS: tuple[str, ...] = ("train", "valid", "test")


@dataclass(frozen=True, eq=False)  # identity hash: metrics cache per-split tables on it
class Examples:
    """One split of a task, as arrays.

    Attributes:
        source: (M, S) int64 source ids, PAD-filled.
        source_len: (M,) int64 number of real source tokens.
        reference: (M, R) int64 reference output ids (no BOS/EOS), PAD-filled.
        reference_len: (M,) int64 number of reference tokens.
        attribute: (M,) int64 task-specific target attribute (sentiment: +1 positive, -1 negative), or
            zeros where the task has none.
    """

    source: np.ndarray
    source_len: np.ndarray
    reference: np.ndarray
    reference_len: np.ndarray
    attribute: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        m = len(self.source)
        if self.attribute is None:
            object.__setattr__(self, "attribute", np.zeros(m, dtype=np.int64))
        for name in ("source_len", "reference", "reference_len", "attribute"):
            if len(getattr(self, name)) != m:
                raise ValueError(f"Examples.{name} has {len(getattr(self, name))} rows, source has {m}")
        if m == 0:
            raise ValueError("a split must hold at least one example, got an empty one")

    def __len__(self) -> int:
        return len(self.source)

    @classmethod
    def from_sequences(
        cls,
        sources: list[np.ndarray],
        references: list[np.ndarray],
        source_width: int,
        reference_width: int,
        attribute: np.ndarray | None = None,
    ) -> Examples:
        """Build a split from lists of id arrays, padding them to the given widths."""
        source, source_len = pad_batch(sources, source_width)
        reference, reference_len = pad_batch(references, reference_width)
        if attribute is not None:
            attribute = np.asarray(attribute, dtype=np.int64)
        return cls(source, source_len, reference, reference_len, attribute)


class Task(ABC):
    """A text-generation problem: data, vocabulary, metric and caps.

    Subclasses set the attributes below in ``__init__`` and implement ``examples`` and ``metric``.

    Attributes:
        name: the registry name, e.g. ``"translation"`` or ``"matching:summary"``.
        vocab: the vocabulary shared by sources and outputs.
        max_source_len: S, the width of the ``source`` observation.
        max_generation_len: T, the length cap on the output; the episode ends (terminated) after T tokens.
        metric_name: the sequence score, e.g. ``"bleu"``, in [0, 1] for every built-in task except
            sentiment, whose signed VADER compound is in [-1, 1], and ``"linear_bleu"`` (a BLEU task
            given ``bleu_point``), which has no fixed range and is negative for unmatched output.
    """

    name: str
    vocab: Vocabulary
    max_source_len: int
    max_generation_len: int
    metric_name: str

    @abstractmethod
    def examples(self, split: str) -> Examples:
        """The examples of ``split`` (one of SPLITS)."""

    @abstractmethod
    def metric(self, examples: Examples, num_rows: int) -> PrefixMetric:
        """A fresh batched prefix metric for ``num_rows`` episodes drawn from ``examples``."""

    def action_mask(self) -> np.ndarray:
        """(V,) bool: tokens the policy may emit. Default: every token but PAD, BOS and UNK."""
        mask = np.ones(len(self.vocab), dtype=bool)
        mask[[PAD, 1, 3]] = False
        mask[EOS] = True
        return mask

    def describe(self) -> str:
        """One line for listings."""
        return (
            f"{self.name}: metric {self.metric_name}, vocabulary {len(self.vocab)}, "
            f"source <= {self.max_source_len} tokens, output <= {self.max_generation_len} tokens"
        )


def check_split(split: str) -> str:
    """Return ``split`` if it is a valid split name, else raise ValueError listing the valid ones."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    return split


def check_disjoint(splits: dict[str, list[tuple[tuple[int, ...], ...]]]) -> None:
    """Raise if any example key appears in two splits (a generator bug, caught at construction)."""
    seen: dict[tuple, str] = {}
    for name, keys in splits.items():
        for key in keys:
            if key in seen and seen[key] != name:
                raise AssertionError(f"example {key} is in both {seen[key]!r} and {name!r}")
            seen[key] = name
