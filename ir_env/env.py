"""InstantRewardEnv: one text-generation episode, one token per step, an exact instant reward per token."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from ir_env.episodes import EpisodeBatch, ExampleSampler, PotentialSpec, StepResult
from ir_env.rewards.shaping import REWARD_PARTS, Shaping
from ir_env.tasks import make_task
from ir_env.tasks.base import Task

_ROW = np.zeros(1, dtype=np.int64)  # the one row of the scalar env's EpisodeBatch


def observation_space(task: Task) -> spaces.Dict:
    """The Dict observation space of one episode of ``task``."""
    v = len(task.vocab)
    return spaces.Dict(
        {
            "source": spaces.Box(0, v - 1, (task.max_source_len,), dtype=np.int64),
            "generated": spaces.Box(0, v - 1, (task.max_generation_len,), dtype=np.int64),
        }
    )


def check_action(action: Any, num_actions: int) -> int:
    """The action as a Python int, or ValueError naming the valid range and what was given."""
    value = action
    if isinstance(value, np.ndarray):
        if value.shape != ():
            raise ValueError(f"action must be a single integer in [0, {num_actions}), got an array of shape {value.shape}")
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(
            f"action must be an integer token id in [0, {num_actions}), got {action!r} of type {type(action).__name__}"
        )
    value = int(value)
    if not 0 <= value < num_actions:
        raise ValueError(f"action {value} is out of range: token ids lie in [0, {num_actions})")
    return value


class InstantRewardEnv(gym.Env):
    """
    ## Description
    Text generation as an episodic MDP. Each episode draws one example of a task (a source sentence and
    its reference output, or a prompt and a wanted sentiment); the agent writes the output one token per
    step. Every step is answered with an **instant reward**: how much that token moved the output's task
    score (BLEU, token F1, ROUGE-L, VADER sentiment). With the default shaping the rewards of an episode
    add up exactly to the score of the finished output.

    ## Action Space
    `Discrete(V)`: the id of the next token in the task's vocabulary (`task.vocab`). `EOS` (id 2) ends
    the output. Tokens the task does not expect the policy to emit (PAD, BOS, UNK, source-only words) are
    masked out in `info["action_mask"]` (int8, shape (V,)) and `action_masks()` (bool, for
    sb3-contrib's MaskablePPO); a masked token is still accepted and scored like any other wrong token.

    ## Observation Space
    `Dict(source=Box(0, V-1, (S,), int64), generated=Box(0, V-1, (T,), int64))`: the source ids and the
    output so far, both PAD-filled (PAD = 0). S and T are the task's `max_source_len` and
    `max_generation_len`. Each call returns fresh arrays.

    ## Rewards
    Let Phi(prefix) be the task metric of the output so far (Phi(empty) = 0) and R(y) the score of the
    finished output. `reward` selects the shaping (see `ir_env.rewards.shaping`):
    - `"instant"` (default): `gamma * Phi(y<=t) - Phi(y<t)` per token, `R(y) - Phi(y<T)` at the last step
      (Phi(end) = 0): potential-based, so the optimal policy is unchanged; with gamma = 1 the return is R(y).
    - `"sparse"`: R(y) at the last step, 0 before.
    - `"token"`: 1/|y*| for each token equal to the reference token at its position (a naive control).
    - `"mixed"`: a weighted sum of the parts above and `"length"` (`reward_weights`, default sparse 0.5 +
      instant 0.5). `length` is a length penalty, -|c - r|/r per episode for c output words against a
      reference of r: -1/r for each word past r, -(r - c)/r when a short output ends (0 without a reference);
      `set_length_target(k)` aims it at k r instead: -|c - k r|/r.
    Weights can be changed during training with `set_reward_weights` (reachable through `env.unwrapped`
    or a vector env's `call`). `potential` replaces Phi by a user PrefixMetric or a function
    (source ids, prefix ids, reference ids) -> float; R(y) stays the task's score. Every step's info holds
    each part: `reward_sparse`, `reward_instant`, `reward_token`, `reward_length`, and `potential` (Phi after the step).

    ## Starting State
    An example drawn uniformly from the split with `self.np_random`; `reset(options={"example_index": i})`
    picks example i instead.

    ## Episode End
    Terminated when the agent emits EOS or the output reaches the task's length cap T; either way the
    output is scored. `truncated` is only set by an outer `TimeLimit` (`max_episode_steps`). At the end
    `info` holds `score` (R(y)), `text` (the output) and `reference` (the reference output).

    ## Arguments
    - `task`: a task name (`"translation"`, `"sentiment"`, `"matching:qa"` = `"matching"`,
      `"matching:summary"`) or a `Task`; the task's own keywords (`seed`, sizes) pass through `**task_kwargs`.
    - `reward`: `"instant"`, `"sparse"`, `"token"` or `"mixed"`.
    - `gamma`: discount used in the potential difference, in (0, 1]; match your learner's.
    - `split`: `"train"`, `"valid"` or `"test"`.
    - `reward_weights`: part weights for `"mixed"`.
    - `potential`: optional user potential (see Rewards).
    - `render_mode`: `"ansi"` (returns a string) or `"human"` (prints it).
    - `info_text`: put `text` and `reference` strings in the final info (default True).

    ## Vectorized environment
    `gym.make_vec("InstantReward-v0", num_envs=N)` returns `BatchedInstantRewardEnv`: N episodes stepped
    on arrays with the same reward code, identical rewards to N of these envs seeded seed, seed+1, ...

    ## Version History
    - v0: initial release.
    """

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 4}

    def __init__(
        self,
        task: str | Task = "translation",
        reward: str = "instant",
        gamma: float = 1.0,
        split: str = "train",
        reward_weights: Mapping[str, float] | None = None,
        potential: PotentialSpec | None = None,
        render_mode: str | None = None,
        info_text: bool = True,
        **task_kwargs: Any,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unknown render_mode {render_mode!r}; expected one of {self.metadata['render_modes']} or None")
        self.task = make_task(task, **task_kwargs)
        self.shaping = Shaping(reward, gamma, reward_weights)
        self.episodes = EpisodeBatch(self.task, split, 1, self.shaping, potential)
        self.sampler = ExampleSampler(len(self.episodes.examples), [self.np_random])
        self.render_mode = render_mode
        self.info_text = info_text
        self.observation_space = observation_space(self.task)
        self.action_space = spaces.Discrete(len(self.task.vocab))
        self._mask = self.task.action_mask()
        self._mask_int8 = self._mask.astype(np.int8)
        self._active = False
        self._token_rewards: list[float] = []
        self._last_info: dict[str, Any] = {}

    # -- Gymnasium API -------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None or self.sampler.rngs[0] is not self.np_random:
            self.sampler.reseed(0, self.np_random)
        example = self._example_from(options)
        self.episodes.reset_rows(_ROW, np.array([example]))
        self._active = True
        self._token_rewards = []
        info = {"action_mask": self._mask_int8.copy(), "example_index": example}
        if self.render_mode == "human":
            self.render()
        return self._observation(), info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        if not self._active:
            raise ResetNeeded("call reset() before step(): the episode has ended or was never started")
        token = check_action(action, self.action_space.n)
        result = self.episodes.step(np.array([token], dtype=np.int64))
        reward = float(result.reward[0])
        terminated = bool(result.done[0])
        self._token_rewards.append(reward)
        info = self._step_info(result)
        if terminated:
            self._active = False
        if self.render_mode == "human":
            self.render()
        return self._observation(), reward, terminated, False, info

    def render(self) -> str | None:
        if self.render_mode is None:
            gym.logger.warn("render() was called without a render_mode; pass render_mode='ansi' or 'human'")
            return None
        text = self._render_text()
        if self.render_mode == "human":
            print(text)
            return None
        return text

    # -- training hooks --------------------------------------------------------------------------------
    def action_masks(self) -> np.ndarray:
        """(V,) bool: the tokens the policy may emit (sb3-contrib's MaskablePPO calls this)."""
        return self._mask.copy()

    def set_reward_weights(self, weights: Mapping[str, float]) -> None:
        """Change the shaping weights from the next step on, e.g. ``{"instant": 0.7, "sparse": 0.3}``."""
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
    def _example_from(self, options: dict[str, Any] | None) -> int:
        if options and options.get("example_index") is not None:
            i = options["example_index"]
            n = len(self.episodes.examples)
            if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < n:
                raise ValueError(f"options['example_index'] must be an integer in [0, {n}), got {i!r}")
            return int(i)
        return int(self.sampler.draw(_ROW)[0])

    def _observation(self) -> dict[str, np.ndarray]:
        return {"source": self.episodes.source(_ROW)[0], "generated": self.episodes.generated[0].copy()}

    def _step_info(self, result: StepResult) -> dict[str, Any]:
        info: dict[str, Any] = {f"reward_{part}": float(result.parts[part][0]) for part in REWARD_PARTS}
        info["potential"] = float(result.potential[0])
        info["action_mask"] = self._mask_int8.copy()
        if result.done[0]:
            info["score"] = float(result.score[0])
            info["length"] = int(self.episodes.length[0])
            if self.info_text:
                info["text"] = self.task.vocab.detokenize(self.episodes.generated[0, : self.episodes.length[0]])
                info["reference"] = self.task.vocab.detokenize(self.episodes.reference(0))
        return info

    def _render_text(self) -> str:
        vocab, ep = self.task.vocab, self.episodes
        source = vocab.detokenize(ep.source(_ROW)[0])
        words = vocab.decode(ep.generated[0, : ep.length[0]], strip_special=False)
        if len(self._token_rewards) > len(words):
            words.append("<eos>")
        shown = " ".join(f"{w}({r:+.3f})" for w, r in zip(words, self._token_rewards))
        total = sum(self._token_rewards)
        return f"source:    {source}\nreference: {vocab.detokenize(ep.reference(0))}\noutput:    {shown}\nreturn:    {total:+.4f}"
