"""BatchedInstantRewardEnv: N InstantReward episodes stepped together on arrays.

It runs the same ``EpisodeBatch`` as the scalar env, with N rows instead of one, so its rewards are
those of N scalar envs by construction; tests check it step for step against ``SyncVectorEnv``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numba
import numpy as np
from gymnasium.error import ResetNeeded
from gymnasium.spaces import Discrete, MultiDiscrete
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from ir_env.env import observation_space
from ir_env.episodes import EpisodeBatch, ExampleSampler, PotentialSpec
from ir_env.rewards.shaping import REWARD_PARTS, Shaping
from ir_env.tasks import make_task
from ir_env.tasks.base import Task


class BatchedInstantRewardEnv(VectorEnv):
    """N episodes of ``InstantRewardEnv`` in lock-step, with same-step autoreset.

    Same arguments as ``InstantRewardEnv`` plus ``num_envs`` and ``max_episode_steps`` (truncation, as
    ``TimeLimit`` does for the scalar env). Row i is seeded with ``seed + i`` on ``reset(seed=seed)``,
    exactly as ``SyncVectorEnv`` seeds its i-th env, so both produce the same episodes and rewards.

    Step returns arrays: observations ``{"source": (N, S), "generated": (N, T)}`` int64 (fresh arrays;
    read-only views of the env's own buffers with ``copy=False``),
    rewards (N,) float64, terminated and truncated (N,) bool, and infos as dict-of-arrays with ``_key``
    masks. A row whose episode ends is reset within the same step (``AutoresetMode.SAME_STEP``): the
    returned observation starts its next episode, ``info["final_obs"]`` (object array) holds the last
    observation and ``info["final_info"]`` the last info (with ``score``, ``text``, ``reference``).
    ``info["action_mask"]`` is a read-only (N, V) int8 broadcast of the task's mask (the same every
    step); ``action_masks()`` returns it as a fresh bool array.

    ``copy`` is gymnasium's ``SyncVectorEnv(copy=...)`` option. With the default ``True``, every reset and
    step returns new observation arrays. With ``False`` they return read-only views of the env's (N, S)
    sources and (N, T) outputs, which the next step or reset changes in place: this saves copying the
    whole prefix, O(T) per token step, for a caller that reads each observation before stepping again
    (our trainer; SB3 keeps observations across steps and needs the default).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["ansi"]}

    def __init__(
        self,
        num_envs: int = 1,
        task: str | Task = "translation",
        reward: str = "instant",
        gamma: float = 1.0,
        split: str = "train",
        reward_weights: Mapping[str, float] | None = None,
        potential: PotentialSpec | None = None,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        info_text: bool = True,
        copy: bool = True,
        **task_kwargs: Any,
    ):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        if max_episode_steps is not None and (not isinstance(max_episode_steps, (int, np.integer)) or max_episode_steps < 1):
            raise ValueError(f"max_episode_steps must be a positive integer or None, got {max_episode_steps!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unknown render_mode {render_mode!r}; expected one of {self.metadata['render_modes']} or None")
        self.num_envs = int(num_envs)
        self.task = make_task(task, **task_kwargs)
        self.shaping = Shaping(reward, gamma, reward_weights)
        self.episodes = EpisodeBatch(self.task, split, self.num_envs, self.shaping, potential)
        self.sampler = ExampleSampler(len(self.episodes.examples), [seeding.np_random()[0] for _ in range(self.num_envs)])
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.info_text = info_text
        self.copy = bool(copy)
        self._views = {"source": _read_only(self.episodes.sources), "generated": _read_only(self.episodes.generated)}

        self.single_observation_space = observation_space(self.task)
        self.single_action_space = Discrete(len(self.task.vocab))
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = MultiDiscrete(np.full(self.num_envs, len(self.task.vocab)))
        self._mask = self.task.action_mask()
        self._mask_int8 = np.broadcast_to(self._mask.astype(np.int8), (self.num_envs, len(self._mask)))
        self._all_rows = np.arange(self.num_envs)
        self._steps = np.zeros(self.num_envs, dtype=np.int64)
        self._started = False
        self._reference_text: np.ndarray | None = None

    # -- Gymnasium API -------------------------------------------------------------------------------
    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        seeds = self._seeds(seed)
        super().reset(seed=seed if isinstance(seed, (int, np.integer)) else None)  # the base class takes one int
        for i, s in enumerate(seeds):
            if s is not None or not self._started:
                self.sampler.reseed(i, seeding.np_random(s)[0])
        rows = self._all_rows
        examples = self.sampler.draw(rows)
        if options and options.get("example_index") is not None:
            examples = self._example_indices(options["example_index"])
        self.episodes.reset_rows(rows, examples)
        self._steps[:] = 0
        self._started = True
        info = {
            "action_mask": self._mask_int8,
            "_action_mask": np.ones(self.num_envs, dtype=bool),
            "example_index": examples.copy(),
            "_example_index": np.ones(self.num_envs, dtype=bool),
        }
        return self._observation(), info

    def step(self, actions: Any):
        if not self._started:
            raise ResetNeeded("call reset() before step()")
        actions = self._check_actions(actions)
        ep = self.episodes
        result = ep.step(actions)
        self._steps += 1
        terminated = result.done
        truncated = np.zeros(self.num_envs, dtype=bool)
        if self.max_episode_steps is not None:
            truncated = ~terminated & (self._steps >= self.max_episode_steps)
        ended = terminated | truncated
        live = ~ended

        # Every per-row info value in one pass: the step's values where the row lives on, the final ones
        # where it ended (what SyncVectorEnv's info and final_info hold), 0 elsewhere.
        n = self.num_envs
        live_values, final_values = np.empty((len(INFO_VALUES), n)), np.empty((len(INFO_VALUES), n))
        final_score, final_length = np.empty(n), np.empty(n, dtype=np.int64)
        step_values = np.stack([*(result.parts[part] for part in REWARD_PARTS), result.potential])  # INFO_VALUES order
        _split_info_values(
            ended, terminated, step_values, result.score, ep.length, live_values, final_values, final_score, final_length,
        )  # fmt: skip
        infos: dict[str, Any] = {}
        if live.any():  # as SyncVectorEnv: a key appears only if some row reports it
            for key, values in zip(INFO_VALUES, live_values):
                infos[key], infos[f"_{key}"] = values, live
        infos["action_mask"] = self._mask_int8
        infos["_action_mask"] = np.ones(n, dtype=bool)

        rows = np.flatnonzero(ended)
        if len(rows):
            final_info = self._final_info(terminated, ended, final_values, final_score, final_length)
            infos["final_obs"], infos["_final_obs"] = self._final_obs(rows), ended
            infos["final_info"], infos["_final_info"] = final_info, ended
            new_examples = self.sampler.draw(rows)
            ep.reset_rows(rows, new_examples)
            self._steps[rows] = 0
            example_index = np.zeros(self.num_envs, dtype=np.int64)
            example_index[rows] = new_examples
            infos["example_index"], infos["_example_index"] = example_index, ended
        return self._observation(), result.reward, terminated, truncated, infos

    def render(self) -> str | None:
        if self.render_mode is None:
            return None
        vocab, ep = self.task.vocab, self.episodes
        lines = [f"[{i}] {vocab.detokenize(ep.generated[i, : ep.length[i]])}" for i in range(min(self.num_envs, 8))]
        return "\n".join(lines)

    # -- training hooks --------------------------------------------------------------------------------
    def action_masks(self) -> np.ndarray:
        """(N, V) bool: the tokens the policy may emit, for every row."""
        return np.broadcast_to(self._mask, (self.num_envs, len(self._mask))).copy()

    def set_reward_weights(self, weights: Mapping[str, float]) -> None:
        """Change the shaping weights of every row from the next step on."""
        self.shaping.set_weights(weights)

    def set_bleu_point(self, point) -> None:
        """Move the ``LinearBLEU`` metric of a task built with ``bleu_point=`` to a new linearisation point
        (``ir_env.rewards.bleu.POINT_FIELDS``). Call it between episodes: a row in mid-episode would be paid
        by two points."""
        self.episodes.set_bleu_point(point)

    def set_length_target(self, ratio: float) -> None:
        """Aim the ``"length"`` part at ``ratio`` times each reference's length: -|c - ratio * r|/r per episode
        (default 1). A ratio above 1 pays for outputs longer than the references (``PPOConfig.hold_greedy_length``
        moves it during training). Call it between episodes, like ``set_bleu_point``."""
        self.episodes.set_length_target(ratio)

    def get_reward_weights(self) -> dict[str, float]:
        """The current shaping weights of every part."""
        return dict(self.shaping.weights)

    # -- helpers ---------------------------------------------------------------------------------------
    def _seeds(self, seed: int | list[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            return [int(seed) + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset(seed=...) got {len(seeds)} seeds for {self.num_envs} envs")
        return seeds

    def _example_indices(self, value: Any) -> np.ndarray:
        n = len(self.episodes.examples)
        idx = np.broadcast_to(np.asarray(value), (self.num_envs,)).astype(np.int64)
        if not np.issubdtype(np.asarray(value).dtype, np.integer) or (idx < 0).any() or (idx >= n).any():
            raise ValueError(f"options['example_index'] must be integers in [0, {n}), one or {self.num_envs} of them, got {value!r}")
        return idx.copy()

    def _check_actions(self, actions: Any) -> np.ndarray:
        """Validate a whole batch before any row changes: one bad row rejects the step, corrupting nothing."""
        arr = np.asarray(actions)
        v = self.single_action_space.n
        if arr.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape ({self.num_envs},) (one token id per env), got shape {arr.shape}")
        if arr.dtype.kind not in "iu":
            raise ValueError(f"actions must be integer token ids in [0, {v}), got dtype {arr.dtype}")
        if arr.min() < 0 or arr.max() >= v:  # two reductions; the rows are found only when some are bad
            bad = np.flatnonzero((arr < 0) | (arr >= v))
            raise ValueError(
                f"actions must lie in [0, {v}); rows {bad[:10].tolist()} hold {arr[bad[:10]].tolist()}"
            )
        return arr.astype(np.int64, copy=False)

    def _observation(self) -> dict[str, np.ndarray]:
        if not self.copy:
            return dict(self._views)
        return {"source": self.episodes.source(), "generated": self.episodes.generated.copy()}

    def _final_obs(self, rows: np.ndarray) -> np.ndarray:
        source, generated = self.episodes.source(rows), self.episodes.generated[rows]  # fresh (k, .) arrays
        out = np.empty(self.num_envs, dtype=object)  # None where no episode ended
        for r, s, g in zip(rows.tolist(), source, generated):  # item by item: numpy would inspect a list of dicts
            out[r] = {"source": s, "generated": g}
        return out

    def _reference_texts(self) -> np.ndarray:
        """The detokenised reference of every example of the split (object array), built on first use."""
        if self._reference_text is None:
            ex = self.episodes.examples
            self._reference_text = np.array(self.task.vocab.detokenize_rows(ex.reference, ex.reference_len), dtype=object)
        return self._reference_text

    def _final_info(
        self, terminated: np.ndarray, ended: np.ndarray, values: np.ndarray, score: np.ndarray, length: np.ndarray
    ) -> dict[str, Any]:
        """The final info of the rows that ended: ``values`` (4, N) from _split_info_values, then the score,
        length and (with ``info_text``) text of the terminated ones."""
        info: dict[str, Any] = {}
        for key, column in zip(INFO_VALUES, values):
            info[key], info[f"_{key}"] = column, ended
        info["action_mask"], info["_action_mask"] = self._mask_int8, ended
        if terminated.any():
            info["score"], info["_score"] = score, terminated
            info["length"], info["_length"] = length, terminated
            if self.info_text:
                ep, done = self.episodes, np.flatnonzero(terminated)
                text = np.empty(self.num_envs, dtype=object)  # None where no episode ended
                text[done] = self.task.vocab.detokenize_rows(ep.generated[done], ep.length[done])
                reference = np.empty(self.num_envs, dtype=object)
                reference[done] = self._reference_texts()[ep.example_ids[done]]
                info["text"], info["_text"] = text, terminated
                info["reference"], info["_reference"] = reference, terminated
        return info


def _read_only(array: np.ndarray) -> np.ndarray:
    """A view of ``array`` that cannot be written through (the array itself stays writable)."""
    view = array.view()
    view.flags.writeable = False
    return view


#: The per-row float info values of every step: the reward parts and the potential, in this order.
INFO_VALUES: tuple[str, ...] = (*(f"reward_{part}" for part in REWARD_PARTS), "potential")


@numba.njit(cache=True, nogil=True)
def _split_info_values(ended, terminated, values, score, length, live_values, final_values, final_score,
                       final_length):  # fmt: skip
    """Each row's step values (``values``: (len(INFO_VALUES), N), the reward parts and the potential) into
    ``live_values`` (rows that go on) or ``final_values`` (rows that ended), 0 in the other; the score and
    length of terminated rows, 0 elsewhere."""
    for i in range(len(ended)):
        for k in range(values.shape[0]):
            live_values[k, i] = 0.0 if ended[i] else values[k, i]
            final_values[k, i] = values[k, i] if ended[i] else 0.0
        final_score[i] = score[i] if terminated[i] else 0.0
        final_length[i] = length[i] if terminated[i] else 0
