"""The step logic shared by the scalar and the batched environment: N episodes as arrays.

``InstantRewardEnv`` runs an ``EpisodeBatch`` of one row and ``BatchedInstantRewardEnv`` one of N rows,
so both compute every observation, reward and score with the same code. ``ExampleSampler`` draws the
example of each new episode from one RNG per row in blocks, identically for both.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

import numba
import numpy as np

from ir_env.rewards.base import CallablePotential, PrefixMetric
from ir_env.rewards.shaping import Shaping
from ir_env.tasks.base import Task, check_split
from ir_env.tokenizer import EOS, PAD, UNK

#: What a user may pass as ``potential``: a PrefixMetric factory (examples, num_rows) -> PrefixMetric, or
#: a plain function (source ids, prefix ids, reference ids) -> float.
PotentialSpec = Union[Callable[..., PrefixMetric], Callable[[np.ndarray, np.ndarray, np.ndarray], float]]

SAMPLER_BLOCK = 64  # examples drawn per RNG call


class ExampleSampler:
    """Draws example indices uniformly with replacement, one RNG per row, ``SAMPLER_BLOCK`` at a time.

    Drawing in blocks keeps the batched env's per-step cost free of per-row RNG calls; the scalar env
    draws through the same class, so a batched row seeded with ``seed + i`` sees exactly the examples of
    a scalar env seeded with ``seed + i``.
    """

    def __init__(self, num_examples: int, rngs: list[np.random.Generator]):
        self.num_examples = num_examples
        self.rngs = list(rngs)
        self.buffer = np.zeros((len(self.rngs), SAMPLER_BLOCK), dtype=np.int64)
        self.cursor = np.full(len(self.rngs), SAMPLER_BLOCK, dtype=np.int64)  # empty: refill on first draw

    def reseed(self, row: int, rng: np.random.Generator) -> None:
        """Give ``row`` a new RNG and drop the examples it had drawn ahead."""
        self.rngs[row] = rng
        self.cursor[row] = SAMPLER_BLOCK

    def draw(self, rows: np.ndarray) -> np.ndarray:
        """The next example index of each of ``rows`` (distinct rows)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty(len(rows), dtype=np.int64)
        empty = _take_drawn(rows, self.buffer, self.cursor, out)
        while empty >= 0:  # a row has used up its block: refill it from its RNG, then go on from that row
            r = rows[empty]
            self.buffer[r] = self.rngs[r].integers(self.num_examples, size=SAMPLER_BLOCK)
            self.cursor[r] = 0
            empty = _take_drawn(rows, self.buffer, self.cursor, out, empty)
        return out


@numba.njit(cache=True, nogil=True)
def _take_drawn(rows, buffer, cursor, out, first=0):
    """The next drawn example of rows[first:] into ``out``, advancing their cursors, up to the first row whose
    block is used up: returns its index in ``rows`` (nothing of it taken), or -1 when all are done."""
    for i in range(first, len(rows)):
        r = rows[i]
        if cursor[r] >= SAMPLER_BLOCK:
            return i
        out[i] = buffer[r, cursor[r]]
        cursor[r] += 1
    return -1


@dataclass
class StepResult:
    """What one step of an EpisodeBatch produced, for all N rows (arrays of shape (N,))."""

    reward: np.ndarray
    done: np.ndarray
    parts: dict[str, np.ndarray]
    potential: np.ndarray  # Phi after the step (0 where done)
    score: np.ndarray  # R(y) where done, NaN elsewhere


class EpisodeBatch:
    """N text-generation episodes in lock-step.

    Args:
        task: the task.
        split: the split episodes draw examples from.
        num_rows: N.
        shaping: the reward shaping.
        potential: optional user potential replacing the task metric as Phi (the score R(y) stays the
            task metric's).
    """

    def __init__(self, task: Task, split: str, num_rows: int, shaping: Shaping, potential: PotentialSpec | None = None):
        self.task = task
        self.split = check_split(split)
        self.examples = task.examples(split)
        self.num_rows = num_rows
        self.shaping = shaping
        self.max_len = task.max_generation_len
        self.metric = task.metric(self.examples, num_rows)
        self.potential_metric = self.metric if potential is None else self._make_potential(potential)
        self.example_ids = np.zeros(num_rows, dtype=np.int64)
        self.generated = np.full((num_rows, self.max_len), PAD, dtype=np.int64)
        self.sources = np.full((num_rows, task.max_source_len), PAD, dtype=np.int64)  # each row's source
        # Each row's reference, copied in at reset: a step reads it row by row, not scattered over the split.
        self.references = np.full((num_rows, self.examples.reference.shape[1]), PAD, dtype=np.int64)
        self.reference_len = np.zeros(num_rows, dtype=np.int64)
        self.length = np.zeros(num_rows, dtype=np.int64)
        self.phi = np.zeros(num_rows, dtype=np.float64)
        self.length_target = 1.0  # k of the length penalty -|c - k r|/r

    def _make_potential(self, potential: PotentialSpec) -> PrefixMetric:
        if isinstance(potential, type) and issubclass(potential, PrefixMetric):
            return potential(self.examples, self.num_rows)
        if not callable(potential):
            raise TypeError(
                "potential must be a PrefixMetric class/factory (examples, num_rows) or a function "
                f"(source, prefix, reference) -> float, got {type(potential).__name__}"
            )
        try:
            takes_three = len(inspect.signature(potential).parameters) == 3
        except (TypeError, ValueError):  # builtins without a signature: treat as a plain function
            takes_three = True
        if takes_three:
            return CallablePotential(potential, self.examples, self.num_rows, self.max_len)
        made = potential(self.examples, self.num_rows)
        if not isinstance(made, PrefixMetric):
            raise TypeError(f"the potential factory returned {type(made).__name__}, not a PrefixMetric")
        return made

    def reset_rows(self, rows: np.ndarray, example_ids: np.ndarray) -> None:
        """Start new episodes in ``rows`` (sorted) on ``example_ids``."""
        rows, example_ids = np.asarray(rows, dtype=np.int64), np.asarray(example_ids, dtype=np.int64)
        ex = self.examples
        _start_episodes(
            rows, example_ids, ex.source, ex.reference, ex.reference_len, self.example_ids, self.sources,
            self.references, self.reference_len, self.generated, self.length,
        )  # fmt: skip
        phi0 = self.metric.reset(rows, example_ids)
        if self.potential_metric is not self.metric:
            phi0 = self.potential_metric.reset(rows, example_ids)
        self.phi[rows] = phi0

    def step(self, actions: np.ndarray) -> StepResult:
        """Append one token per row (EOS ends the row's episode); actions must be valid ids, (N,) int64."""
        n = self.num_rows
        token_match = np.empty(n, dtype=np.float64)
        length_gap = np.empty(n, dtype=np.float64)
        done = np.empty(n, dtype=bool)
        rows = np.empty(n, dtype=np.int64)
        grown = _append_tokens(
            actions, self.length, self.generated, self.references, self.reference_len, self.max_len,
            self.length_target, token_match, length_gap, done, rows,
        )  # fmt: skip
        all_grow = grown == n
        rows = rows[:grown]
        at = slice(None) if all_grow else rows
        tokens = actions if all_grow else actions[rows]

        phi_next = self.phi.copy()
        if len(rows):
            pushed = self.metric.push(rows, tokens)
            if self.potential_metric is not self.metric:
                pushed = self.potential_metric.push(rows, tokens)
            phi_next[at] = pushed

        score = np.empty(n)
        score.fill(np.nan)
        ended = np.flatnonzero(done)
        if len(ended):
            if self.potential_metric is self.metric and self.metric.score_is_potential:
                score[ended] = phi_next[ended]  # R(y) = Phi(y), just computed
            else:
                score[ended] = self.metric.score(ended)
        reward, parts = self.shaping.rewards(self.phi, phi_next, done, score, token_match, length_gap)
        self.phi = np.where(done, 0.0, phi_next)
        return StepResult(reward=reward, done=done, parts=parts, potential=self.phi.copy(), score=score)

    def set_bleu_point(self, point) -> None:
        """Move the ``LinearBLEU`` metric to a new point (the envs' ``set_bleu_point``)."""
        from ir_env.rewards.bleu import LinearBLEU

        if not isinstance(self.metric, LinearBLEU):
            raise ValueError(f"set_bleu_point needs a BLEU task built with bleu_point=..., not metric {self.metric.name!r}")
        self.metric.set_point(point)

    def set_length_target(self, ratio: float) -> None:
        """Aim the length penalty at ``ratio`` times each reference's length (the envs' ``set_length_target``)."""
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not (np.isfinite(ratio) and ratio > 0):
            raise ValueError(f"the length target must be a finite ratio > 0, got {ratio!r}")
        self.length_target = float(ratio)

    def source(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """(k, S) source ids of ``rows`` (a fresh array)."""
        return self.sources[rows].copy() if isinstance(rows, slice) else self.sources[rows]

    def reference(self, row: int) -> np.ndarray:
        """The reference ids of ``row``'s example."""
        e = self.example_ids[row]
        return self.examples.reference[e, : self.examples.reference_len[e]]


@numba.njit(cache=True, nogil=True)
def _append_tokens(actions, length, generated, reference, reference_len, max_len, length_target, token_match, length_gap,
                   done, rows):  # fmt: skip
    """The bookkeeping of one step in one pass: append each non-EOS action to its row's output, the naive
    per-position match reward (1/|y*| where the token equals the reference's at its position, UNK matching
    nothing), the length penalty -|c - k r|/r of an output of c words against a reference of r (k =
    ``length_target``), paid as it accrues: -(the part of this word past k r)/r for a word, -(k r - c)/r when
    an output of c < k r words ends (0 without a reference), and which rows end. With k = 1: -1/r for each
    word past r, -(r - c)/r at the end of a short output. Fills ``rows`` with the rows that grew and returns
    how many did."""
    grown = 0
    for r in range(len(actions)):
        token = actions[r]
        token_match[r] = 0.0
        length_gap[r] = 0.0
        ref_len = reference_len[r]
        target = length_target * ref_len
        if token == EOS:
            done[r] = True
            if ref_len > 0 and length[r] < target:
                length_gap[r] = -(target - length[r]) / ref_len
            continue
        position = length[r]
        if position < ref_len and reference[r, position] == token and token != UNK:
            token_match[r] = 1.0 / ref_len
        generated[r, position] = token
        length[r] = position + 1
        done[r] = position + 1 >= max_len
        if ref_len > 0:
            if position + 1 > target:  # the part of this word past the target
                length_gap[r] = -(position + 1 - max(float(position), target)) / ref_len
            elif done[r]:  # the length cap ended it short of the target
                length_gap[r] = -(target - (position + 1)) / ref_len
        rows[grown] = r
        grown += 1
    return grown


@numba.njit(cache=True, nogil=True)
def _start_episodes(rows, new_example_ids, example_source, example_reference, example_reference_len, example_ids,
                    sources, references, reference_len, generated, length):  # fmt: skip
    """Empty outputs in ``rows``, each with its new example's source and reference."""
    for i in range(len(rows)):
        r, e = rows[i], new_example_ids[i]
        example_ids[r] = e
        sources[r, :] = example_source[e, :]
        references[r, :] = example_reference[e, :]
        reference_len[r] = example_reference_len[e]
        generated[r, :] = PAD
        length[r] = 0
