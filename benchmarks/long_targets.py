"""LongTargetTask: synthetic examples whose references hold exactly L random words, for length sweeps.

The built-in tasks stop at 8-23 output tokens, too short to show how a metric's per-token cost grows
with the length of the output. Here every reference is L words drawn uniformly from a vocabulary of
about a thousand, the output cap is L, and the metric is one of the real metric classes, so a sweep over
L measures exactly the code the built-in tasks run::

    task = LongTargetTask(length=256, metric="bleu")
    env = BatchedInstantRewardEnv(num_envs=1024, task=task)
"""

from __future__ import annotations

import numpy as np

from ir_env.rewards.base import PrefixMetric
from ir_env.tasks.base import SPLITS, Examples, Task, check_split
from ir_env.tokenizer import EOS, NUM_SPECIAL, Vocabulary

#: metric name -> what it scores (the classes are imported when a metric is built)
METRICS: dict[str, str] = {
    "bleu": "IncrementalBLEU (sentence BLEU / 100)",
    "f1": "TokenF1 (SQuAD token F1)",
    "rouge_l": "RougeL (ROUGE-L F-measure)",
    "vader": "VaderCompound (signed VADER compound)",
}

#: Sources open with one of these, as in the sentiment task: the wanted polarity (+1, -1).
POLARITY_TOKENS: tuple[str, str] = ("<positive>", "<negative>")

#: Words from VADER's lexicon, so that the sentiment metric has something to score; the rest are neutral.
_SENTIMENT_TEXT = (
    "good great excellent love wonderful happy nice best fine enjoy bad terrible awful hate worst sad "
    "boring poor ugly horrible not never very really"
)
SENTIMENT_WORDS: tuple[str, ...] = tuple(_SENTIMENT_TEXT.split())

DEFAULT_NUM_WORDS = 1000
DEFAULT_NUM_EXAMPLES = 512
SOURCE_WORDS = 3  # words after the polarity token


class LongTargetTask(Task):
    """References of exactly ``length`` random words; the output cap is ``length`` too.

    Args:
        length: L, the number of words in every reference and the output cap.
        metric: one of ``METRICS`` (``"bleu"``, ``"f1"``, ``"rouge_l"``, ``"vader"``).
        num_words: the number of output words in the vocabulary (neutral made-up words plus a few
            sentiment words).
        num_examples: examples per split.
        seed: chooses the examples; each split draws from its own stream.
    """

    def __init__(
        self,
        length: int,
        metric: str = "bleu",
        num_words: int = DEFAULT_NUM_WORDS,
        num_examples: int = DEFAULT_NUM_EXAMPLES,
        seed: int = 0,
    ):
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise ValueError(f"length must be a positive integer, got {length!r}")
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {list(METRICS)}")
        if num_words <= len(SENTIMENT_WORDS):
            raise ValueError(f"num_words must exceed {len(SENTIMENT_WORDS)} (the sentiment words), got {num_words}")
        if num_examples < 1:
            raise ValueError(f"num_examples must be >= 1, got {num_examples}")
        self.length = int(length)
        self.name = f"long:{metric}:{self.length}"
        self.metric_name = metric
        neutral = [f"w{i:04d}" for i in range(num_words - len(SENTIMENT_WORDS))]
        self.vocab = Vocabulary(list(POLARITY_TOKENS) + list(SENTIMENT_WORDS) + neutral)
        self.max_source_len = 1 + SOURCE_WORDS
        self.max_generation_len = self.length
        first_word = NUM_SPECIAL + len(POLARITY_TOKENS)
        self._splits = {
            split: _random_examples(
                np.random.default_rng([seed, i]), num_examples, self.length, first_word, len(self.vocab)
            )
            for i, split in enumerate(SPLITS)
        }

    def examples(self, split: str) -> Examples:
        return self._splits[check_split(split)]

    def metric(self, examples: Examples, num_rows: int) -> PrefixMetric:
        if self.metric_name == "bleu":
            from ir_env.rewards.bleu import IncrementalBLEU

            return IncrementalBLEU(examples, num_rows)
        if self.metric_name == "f1":
            from ir_env.rewards.f1 import TokenF1

            return TokenF1(examples, num_rows, self.vocab)
        if self.metric_name == "rouge_l":
            from ir_env.rewards.rouge import RougeL

            return RougeL(examples, num_rows, self.vocab)
        from ir_env.rewards.sentiment import VaderCompound

        return VaderCompound(examples, num_rows, self.vocab, max_len=self.length)

    def action_mask(self) -> np.ndarray:
        """Every output word plus EOS (not the specials, not the polarity tokens)."""
        mask = np.zeros(len(self.vocab), dtype=bool)
        mask[NUM_SPECIAL + len(POLARITY_TOKENS) :] = True
        mask[EOS] = True
        return mask


def _random_examples(
    rng: np.random.Generator, num_examples: int, length: int, first_word: int, vocab_size: int
) -> Examples:
    """Sources ``<polarity> w w w`` and references of ``length`` uniform words; polarity alternates +1, -1."""
    attribute = np.where(np.arange(num_examples) % 2 == 0, 1, -1)
    polarity = np.where(attribute > 0, NUM_SPECIAL, NUM_SPECIAL + 1)  # ids of "<positive>", "<negative>"
    words = rng.integers(first_word, vocab_size, size=(num_examples, SOURCE_WORDS))
    source = np.concatenate([polarity[:, None], words], axis=1).astype(np.int64)  # (M, 1 + SOURCE_WORDS)
    reference = rng.integers(first_word, vocab_size, size=(num_examples, length)).astype(np.int64)  # (M, L)
    return Examples(
        source=source,
        source_len=np.full(num_examples, source.shape[1], dtype=np.int64),
        reference=reference,
        reference_len=np.full(num_examples, length, dtype=np.int64),
        attribute=attribute.astype(np.int64),
    )
