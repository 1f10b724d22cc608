"""CorpusTask: the base of the tasks on real data (``ir_env.tasks.real``), and what they share.

Each task reads its files from the data folder (``data_dir``, else ``$IR_DATA_DIR``; see
``ir_env.tasks.data``), tokenises them into words, builds one word vocabulary from its training split and
stores its splits as the same PAD-filled arrays as the generated tasks, scored by the same metrics.

Rules shared by all four (``CorpusTask``):

- Vocabulary: the words seen at least ``min_freq`` times (default 2) in the training split, most frequent
  first, at most ``max_vocab`` of them; every other word is UNK (id 3). UNK is never an allowed action,
  and the metrics never match a reference UNK (not even with an output UNK), so a reference word outside
  the vocabulary can never be earned: an honest ceiling on the score.
- Length caps: ``max_source_len`` S and ``max_generation_len`` T are keyword arguments; by default each
  is a percentile of the training split's lengths (99th, 90th for SQuAD's long contexts) rounded up to
  a multiple of 8. A longer source or reference, in any split, keeps its first S or T tokens; the counts
  are in ``task.truncated``.
- ``max_train`` keeps only the first training examples (in file order), for quick runs and tests; the
  vocabulary and caps then come from those examples only.
- Splits are deterministic: fixed files, or a fixed seeded assignment of whole groups (SQuAD articles,
  MRPC sentence clusters), so no paragraph or sentence appears in two splits.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ir_env.tasks.base import SPLITS, Examples, Task, check_split
from ir_env.tasks.data import (
    DataError,
    length_cap,
)
from ir_env.tasks.generation import check_count
from ir_env.tokenizer import EOS, UNK, Vocabulary

if TYPE_CHECKING:
    from ir_env.rewards.base import PrefixMetric

#: A tokenised example: (source words, reference words).
WordPair = tuple[list[str], list[str]]
DataDir = str | os.PathLike[str] | None

#: Default caps: this percentile of the training lengths, rounded up to a multiple of 8.
LENGTH_PERCENTILE = 99.0
#: Seed of the group permutation that assigns SQuAD articles and MRPC clusters to splits.
SPLIT_SEED = 0
#: Share of the examples held out for each of valid and test, where a task draws its own splits.
HELD_OUT_SHARE = 0.1


def _optional_count(name: str, value: object) -> int | None:
    return None if value is None else check_count(name, value)


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def assign_splits(groups: Sequence[Hashable], seed: int = SPLIT_SEED, held_out: float = HELD_OUT_SHARE) -> list[str]:
    """The split of each item, keeping every group (an item's ``groups`` entry) within one split.

    The distinct groups, sorted, are visited in the order of a seeded permutation; each goes to ``test``
    until test holds at least ``held_out`` of the items, then to ``valid`` likewise, then to ``train``.
    Groups must be sortable (strings or ints), so the result does not depend on hash order.
    """
    sizes: dict[Hashable, int] = {}
    for g in groups:
        sizes[g] = sizes.get(g, 0) + 1
    names = sorted(sizes)  # type: ignore[type-var]
    quota = held_out * len(groups)
    filled = {"test": 0, "valid": 0}
    split_of: dict[Hashable, str] = {}
    for i in np.random.default_rng(seed).permutation(len(names)).tolist():
        g = names[i]
        split_of[g] = next((s for s in ("test", "valid") if filled[s] < quota), "train")
        if split_of[g] in filled:
            filled[split_of[g]] += sizes[g]
    return [split_of[g] for g in groups]


class CorpusTask(Task):
    """Shared machinery of the real-data tasks: option checks, vocabulary, caps, truncation, arrays.

    A subclass reads and tokenises its data into word pairs per split and calls ``_build``.

    Attributes:
        data_dir: the data folder argument as given (None: ``$IR_DATA_DIR``).
        output_words: the words the policy may emit (the action mask, with EOS).
        truncated: split -> (sources cut to S, references cut to T).
    """

    MARKERS: tuple[str, ...] = ()
    #: The percentile of training source lengths that sets the default S.
    SOURCE_PERCENTILE: float = LENGTH_PERCENTILE

    def _check_options(
        self,
        data_dir: DataDir,
        min_freq: object,
        max_vocab: object,
        max_train: object,
        max_source_len: object = None,
        max_generation_len: object = None,
    ) -> None:
        self.data_dir = data_dir
        self.min_freq = check_count("min_freq", min_freq)
        self.max_vocab = _optional_count("max_vocab", max_vocab)
        self.max_train = _optional_count("max_train", max_train)
        self._source_cap = _optional_count("max_source_len", max_source_len)
        self._generation_cap = _optional_count("max_generation_len", max_generation_len)

    def _caps(self, train: list[WordPair]) -> tuple[int, int]:
        """(S, T): the keyword arguments, else percentiles of the training lengths."""
        source = self._source_cap or length_cap([len(s) for s, _ in train], self.SOURCE_PERCENTILE)
        generation = self._generation_cap or length_cap([len(r) for _, r in train], LENGTH_PERCENTILE)
        return source, generation

    def _build(
        self,
        pairs: dict[str, list[WordPair]],
        output_words: list[str],
        source_words: list[str],
        attributes: dict[str, list[int]] | None = None,
    ) -> None:
        """Vocabulary (markers, output words, then source-only words), caps and the arrays of every split.

        Sources are encoded with the whole vocabulary, references with ``output_words`` only (anything else
        is UNK), so the action mask allows every reference token but UNK.
        """
        for split in SPLITS:
            if not pairs[split]:
                raise DataError(
                    f"{self.name}: the {split} split has no examples; check the data files and the task's options"
                )
        self.max_source_len, self.max_generation_len = self._caps(pairs["train"])
        output = set(output_words)
        self.output_words = list(output_words)
        self.vocab = Vocabulary([*self.MARKERS, *output_words, *(w for w in source_words if w not in output)])
        index = self.vocab.index
        reference_index = {w: index[w] for w in output_words}
        s_cap, t_cap = self.max_source_len, self.max_generation_len
        self.truncated: dict[str, tuple[int, int]] = {}
        self._splits: dict[str, Examples] = {}
        for split in SPLITS:
            sources = [np.array([index.get(w, UNK) for w in s[:s_cap]], dtype=np.int64) for s, _ in pairs[split]]
            references = [
                np.array([reference_index.get(w, UNK) for w in r[:t_cap]], dtype=np.int64) for _, r in pairs[split]
            ]
            self.truncated[split] = (
                sum(len(s) > s_cap for s, _ in pairs[split]),
                sum(len(r) > t_cap for _, r in pairs[split]),
            )
            attribute = None if attributes is None else np.asarray(attributes[split], dtype=np.int64)
            self._splits[split] = Examples.from_sequences(sources, references, s_cap, t_cap, attribute)

    def examples(self, split: str) -> Examples:
        return self._splits[check_split(split)]

    def action_mask(self) -> np.ndarray:
        """The output words plus EOS (never PAD, BOS, UNK or a marker)."""
        mask = self.vocab.mask(self.output_words)
        mask[EOS] = True
        return mask

    def describe(self) -> str:
        sizes = "/".join(f"{len(self._splits[s]):,}" for s in SPLITS)
        return f"{super().describe()}, {sizes} train/valid/test examples"



class BleuCorpusTask(CorpusTask):
    """A corpus task scored by sentence BLEU (``IncrementalBLEU``) on its word tokens, or, given a
    ``bleu_point``, by linearised corpus BLEU (``LinearBLEU``: what an output adds to the corpus BLEU of a
    system whose mean per-sentence BLEU statistics are that point)."""

    metric_name = "bleu"
    #: None (sentence BLEU), or the 10 mean per-sentence statistics ``LinearBLEU`` linearises at
    bleu_point: np.ndarray | None = None

    def _set_bleu_point(self, point) -> None:
        """Score by ``LinearBLEU`` at ``point`` (10 numbers, ``ir_env.rewards.bleu.POINT_FIELDS``) unless None."""
        if point is None:
            return
        from ir_env.rewards.bleu import check_bleu_point

        self.bleu_point = check_bleu_point(point)
        self.metric_name = "linear_bleu"

    def _check_bleu_ids(self) -> None:
        from ir_env.rewards.bleu import MAX_TOKEN_ID

        if len(self.vocab) - 1 > MAX_TOKEN_ID:
            raise ValueError(
                f"{self.name}: a vocabulary of {len(self.vocab)} tokens is over IncrementalBLEU's "
                f"{MAX_TOKEN_ID + 1}; raise min_freq or pass max_vocab"
            )

    def metric(self, examples: Examples, num_rows: int) -> PrefixMetric:
        from ir_env.rewards.bleu import IncrementalBLEU, LinearBLEU

        if self.bleu_point is not None:
            return LinearBLEU(examples, num_rows, self.bleu_point)
        return IncrementalBLEU(examples, num_rows)
