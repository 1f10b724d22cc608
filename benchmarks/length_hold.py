"""Hold a policy's greedy output length where its RL phase started: the EOS logit bias that brings the greedy
outputs on a fixed set of training sources back to the length the starting model gave them.

Why: on Multi30k, RL on the instant BLEU reward shortens the *greedy* outputs even where the *sampled* ones
keep their length (the length term holds the samples, 0.985 -> 0.980 of the references' length on seed 0, while
the greedy valid outputs went from 0.978 to 0.955). The MLE model's greedy outputs are already shorter than the
references on valid (0.976-0.988) and longer on test2016 (1.014-1.021): the splits' German/English length ratios
differ (train 0.956, valid 0.965, test2016 0.934 in sacrebleu's 13a tokens of the raw files). So corpus BLEU's
brevity penalty takes RL's shortening back on valid and not on test, and valid and test disagree about RL
(``benchmarks/results/multi30k_runs.md``).

How: greedy length falls monotonically as EOS's logit rises (raising it can only make EOS the argmax sooner on
the same prefix), so bisection over the bias finds where the total length on the sources crosses the target, and
the bias it tried that came closest is kept. The calibration reads training sources and the model's own outputs
only: no references, and no valid or test data. ``benchmarks.quality --rl-hold-length N`` uses the first N
training sources.

Measured (``benchmarks/results/quality_multi30k_length_hold.md``, seed 0, 60 minutes): it does not work. RL had
taken 91 of 12,392 tokens off the 1,000 training outputs, and no bias the search tried in [-4, 0) came closer to
12,392 than no bias at all. RL shortens outputs inside the sentence (dropped clauses, fewer repeated words), not
by ending them sooner, which is all an EOS bias can change: 1,013 of the RL arm's start's 1,014 valid outputs and
all of the RL arm's end with a full stop, and a bias large enough to overturn EOS after it would append words
there instead of restoring the dropped ones. On seed 1 (``quality_multi30k_length_hold_seed1.md``) the search
settled on -3.5 logits, which brought back few of the 131 tokens RL had taken off (valid length 0.968 with and
without it). The option stays, as the measurements' reproduction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from benchmarks.corpus_bleu import greedy_decode
from ir_env.tokenizer import EOS, PAD

DEFAULT_BOUND = 4.0
"""The bias is searched in [-bound, bound] (logits); the module's docstring says why a wider range would not help."""
DEFAULT_ITERATIONS = 12
"""Bisection steps: the search runs on one side of 0, so bound / 2**12 = 0.001 logits of resolution."""


def greedy_length(model, task, rows: Sequence[int], eos_bias: float = 0.0, batch_size: int = 200) -> int:
    """Total tokens (EOS and padding excluded) of ``model``'s greedy outputs for the training sources ``rows``
    of ``task``, with ``eos_bias`` added to EOS's logit."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 1 or rows.size == 0:
        raise ValueError(f"rows must be a non-empty 1-d sequence of training example indices, got shape {rows.shape}")
    sources = task.examples("train").source[rows]
    total = 0
    for out in greedy_decode(model, task, sources, batch_size, eos_bias):
        total += int(((out != EOS) & (out != PAD)).sum())
    return total


def hold_length(model, task, target: int, rows: Sequence[int], bound: float = DEFAULT_BOUND,
                iterations: int = DEFAULT_ITERATIONS) -> tuple[float, int]:
    """The EOS bias in [-bound, bound] whose greedy length on ``rows`` is closest to ``target`` tokens (ties: the
    smaller bias in magnitude), and that length. 0 if the model already gives ``target``."""
    if not target >= 0:
        raise ValueError(f"target must be a number of tokens >= 0, got {target!r}")
    if not (bound > 0 and iterations >= 1):
        raise ValueError(f"bound must be > 0 and iterations >= 1, got bound={bound!r}, iterations={iterations!r}")
    best = (0.0, greedy_length(model, task, rows))
    if best[1] == target:
        return best
    # too short: EOS must lose (bias below 0); too long: EOS must win sooner (bias above 0)
    low, high = (-bound, 0.0) if best[1] < target else (0.0, bound)
    for _ in range(iterations):
        bias = (low + high) / 2
        length = greedy_length(model, task, rows, eos_bias=bias)
        if (abs(length - target), abs(bias)) < (abs(best[1] - target), abs(best[0])):
            best = (bias, length)
        if length == target:
            break
        if length > target:  # still too long: a larger bias
            low = bias
        else:
            high = bias
    return best
