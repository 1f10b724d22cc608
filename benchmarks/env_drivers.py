"""The envs under test and the policy that drives them, for ``benchmarks.throughput``.

``ActionStream`` simulates the copy-or-random policy ahead of the env (so timing covers the env alone);
the drivers wrap the scalar env, the naive baseline, ``SyncVectorEnv`` and the batched env behind one
``Driver`` interface.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from benchmarks.long_targets import METRICS, POLARITY_TOKENS
from ir_env import EOS, BatchedInstantRewardEnv, InstantRewardEnv
from ir_env.episodes import ExampleSampler
from ir_env.rewards.base import PotentialFn
from ir_env.tasks.base import Task

COPY_PROB = 0.5  # the policy copies the reference token with this probability


# -- the policy ----------------------------------------------------------------------------------------
class ActionStream:
    """The copy-or-random policy's actions for N rows, simulated ahead of an env reset with ``seed``.

    It mirrors the env's episode bookkeeping (one ``ExampleSampler`` RNG per row, seeded ``seed + i`` as
    the env seeds row i; an episode ends at EOS or at the length cap), so the actions it returns are those
    the policy would take on the env's own episodes, while the policy's cost stays out of the timing.

    Args:
        task: the task the env runs.
        num_rows: N.
        seed: the seed the env is reset with.
        split: the env's split.
        copy_prob: probability of copying the reference token.
    """

    def __init__(self, task: Task, num_rows: int, seed: int, split: str = "train", copy_prob: float = COPY_PROB):
        examples = task.examples(split)
        self.reference, self.reference_len = examples.reference, examples.reference_len
        self.max_len = task.max_generation_len
        mask = task.action_mask().copy()
        mask[EOS] = False
        self.tokens = np.flatnonzero(mask)  # the random half never ends an episode
        self.seed, self.num_rows, self.copy_prob = seed, num_rows, copy_prob
        self.sampler = ExampleSampler(len(examples), [seeding.np_random(seed + i)[0] for i in range(num_rows)])
        self.rng = np.random.default_rng([seed, 1])
        self.example = self.sampler.draw(np.arange(num_rows))  # (N,)
        self.length = np.zeros(num_rows, dtype=np.int64)  # (N,)
        self.first_stop = self.rng.integers(1, self.max_len + 1, size=num_rows)  # staggers the first episodes
        self.fresh = np.ones(num_rows, dtype=bool)
        self.episodes = 0

    def next(self, calls: int) -> np.ndarray:
        """(calls, N) int64 actions of the next ``calls`` steps."""
        n, width = self.num_rows, self.reference.shape[1]
        copy = self.rng.random((calls, n)) < self.copy_prob
        random_tokens = self.tokens[self.rng.integers(len(self.tokens), size=(calls, n))]
        out = np.empty((calls, n), dtype=np.int64)
        for t in range(calls):
            pos, e = self.length, self.example
            target = np.where(pos < self.reference_len[e], self.reference[e, np.minimum(pos, width - 1)], EOS)
            action = np.where(copy[t], target, random_tokens[t])
            action[self.fresh & (pos == self.first_stop)] = EOS
            out[t] = action
            self.length = pos + (action != EOS)
            ended = np.flatnonzero((action == EOS) | (self.length >= self.max_len))
            if len(ended):
                self.example[ended] = self.sampler.draw(ended)
                self.length[ended] = 0
                self.fresh[ended] = False
                self.episodes += len(ended)
        return out

    def check(self, example_ids: np.ndarray, lengths: np.ndarray) -> None:
        """Raise if the env's episodes left the simulated ones (the timing would no longer be of this policy)."""
        if not (np.array_equal(example_ids, self.example) and np.array_equal(lengths, self.length)):
            raise RuntimeError(
                "the env's episodes differ from the ActionStream's simulation; was it reset with its seed?"
            )


# -- envs under test -----------------------------------------------------------------------------------
@dataclass
class Driver:
    """One env under test: how to reset it, run a chunk of actions, and read its episode state."""

    num_rows: int
    reset: Callable[[int], object]
    run: Callable[[object], None]
    state: Callable[[], tuple[np.ndarray, np.ndarray]]
    prepare: Callable[[np.ndarray], object] = lambda chunk: chunk  # untimed conversion of a chunk


def scalar_driver(task: Task, reward: str = "instant", potential: PotentialFn | None = None) -> Driver:
    """``InstantRewardEnv``, reset by the caller at every episode end as a user loop does."""
    env = InstantRewardEnv(task=task, reward=reward, potential=potential)

    def run(actions: list[int]) -> None:
        step, reset = env.step, env.reset
        for a in actions:
            if step(a)[2]:
                reset()

    def state() -> tuple[np.ndarray, np.ndarray]:
        return env.episodes.example_ids, env.episodes.length

    return Driver(1, lambda seed: env.reset(seed=seed), run, state, lambda chunk: chunk[:, 0].tolist())


def _step_each(env: BatchedInstantRewardEnv | SyncVectorEnv) -> Callable[[np.ndarray], None]:
    def run(actions: np.ndarray) -> None:  # (calls, N)
        step = env.step
        for a in actions:
            step(a)

    return run


def batched_driver(
    task: Task, num_envs: int, reward: str = "instant", info_text: bool = True, copy: bool = True
) -> Driver:
    """``BatchedInstantRewardEnv`` (what ``gym.make_vec(id, num_envs=N)`` returns)."""
    env = BatchedInstantRewardEnv(num_envs=num_envs, task=task, reward=reward, info_text=info_text, copy=copy)

    def state() -> tuple[np.ndarray, np.ndarray]:
        return env.episodes.example_ids, env.episodes.length

    return Driver(num_envs, lambda seed: env.reset(seed=seed), _step_each(env), state)


def reward_path_driver(task: Task, num_envs: int, reward: str = "instant") -> Driver:
    """The batched env's reward path alone: ``EpisodeBatch.step`` (bookkeeping, metric, shaping) and the
    reset of the rows that ended, as the env runs them, without building observations or infos."""
    env = BatchedInstantRewardEnv(num_envs=num_envs, task=task, reward=reward)
    episodes, sampler = env.episodes, env.sampler

    def run(actions: np.ndarray) -> None:  # (calls, N)
        for a in actions:
            ended = np.flatnonzero(episodes.step(a).done)
            if len(ended):
                episodes.reset_rows(ended, sampler.draw(ended))

    def state() -> tuple[np.ndarray, np.ndarray]:
        return episodes.example_ids, episodes.length

    return Driver(num_envs, lambda seed: env.reset(seed=seed), run, state)


def sync_driver(task: Task, num_envs: int, reward: str = "instant") -> Driver:
    """``gymnasium.vector.SyncVectorEnv`` of scalar envs with same-step autoreset."""
    fns = [functools.partial(InstantRewardEnv, task=task, reward=reward) for _ in range(num_envs)]
    env = SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)

    def state() -> tuple[np.ndarray, np.ndarray]:
        eps = [e.episodes for e in env.envs]
        return np.array([ep.example_ids[0] for ep in eps]), np.array([ep.length[0] for ep in eps])

    return Driver(num_envs, lambda seed: env.reset(seed=seed), _step_each(env), state)


def naive_potential(task: Task) -> PotentialFn:
    """Phi recomputed from scratch on the whole prefix text by the metric's reference package, as RL4LMs does.

    The function takes (source ids, prefix ids, reference ids) as ``potential=`` expects; the reference's
    text is remembered per reference (a peer keeps reference strings), the prefix's is rebuilt every step.
    """
    vocab, name = task.vocab, task.metric_name
    references: dict[bytes, str] = {}

    def words(ids: np.ndarray) -> str:  # BLEU's text: the tokens joined by spaces (tokenize="none")
        return " ".join([vocab.tokens[i] for i in ids.tolist()])

    def reference_text(ids: np.ndarray, text: Callable[[np.ndarray], str]) -> str:
        key = ids.tobytes()
        if key not in references:
            references[key] = text(ids)
        return references[key]

    if name == "bleu":
        from sacrebleu.metrics import BLEU

        bleu = BLEU(tokenize="none", effective_order=True)  # what sacrebleu.sentence_bleu builds every call
        return lambda s, p, r: bleu.sentence_score(words(p), [reference_text(r, words)]).score / 100
    if name == "f1":
        from ir_env.rewards.f1 import squad_f1

        return lambda s, p, r: squad_f1(vocab.detokenize(p), reference_text(r, vocab.detokenize))
    if name == "rouge_l":
        from rouge_score.rouge_scorer import RougeScorer

        scorer = RougeScorer(["rougeL"], use_stemmer=False)
        return lambda s, p, r: scorer.score(reference_text(r, vocab.detokenize), vocab.detokenize(p))["rougeL"].fmeasure
    if name == "vader":
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        analyzer = SentimentIntensityAnalyzer()
        sign = {vocab.id(POLARITY_TOKENS[0]): 1.0, vocab.id(POLARITY_TOKENS[1]): -1.0}  # the source's first token
        return lambda s, p, r: sign[int(s[0])] * analyzer.polarity_scores(vocab.detokenize(p))["compound"]
    raise ValueError(f"no naive baseline for metric {name!r}; expected one of {list(METRICS)}")
