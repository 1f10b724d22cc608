"""stable-baselines3 on the InstantReward envs: a VecEnv adapter, a Transformer features extractor, and
``make_sb3_model`` for PPO, A2C and sb3-contrib's MaskablePPO.

    from agents.sb3 import make_sb3_model

    model = make_sb3_model("maskable_ppo", task="matching:summary", num_envs=16)
    model.learn(total_timesteps=50_000)

SB3 has no KV cache: every step its policy re-reads the whole source and prefix (``TransformerExtractor``),
so it costs about T times what ``agents.ppo`` pays per token. It is here to compare against a standard
learner, not to replace ``agents.ppo``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from agents.model import ModelConfig, PolicyModel, _attention_mask
from ir_env.tokenizer import BOS, PAD
from ir_env.vector import BatchedInstantRewardEnv

#: env methods whose result is one value per row (sliced by ``indices``); every other attribute and method
#: belongs to the one batched env that all rows share.
PER_ROW_METHODS = frozenset({"action_masks"})

ALGOS = ("ppo", "a2c", "maskable_ppo")

#: Defaults of ``make_sb3_model`` per algorithm, for episodes of 8-23 tokens and 16 envs. gamma = 1 matches
#: the env's default potential shaping (rewards then add up to the score); ``make_sb3_model`` passes the
#: algorithm's gamma to the env so the two always agree.
ALGO_DEFAULTS: dict[str, dict[str, Any]] = {
    # 16 envs x 64 steps = 1024 transitions (~60 episodes) per update, 4 epochs of minibatches of 256.
    "ppo": {"n_steps": 64, "batch_size": 256, "n_epochs": 4, "learning_rate": 1e-3, "gamma": 1.0,
            "gae_lambda": 0.95},
    # A2C updates every 16 x 8 = 128 transitions; RMSprop as in SB3, a smaller step than PPO's.
    "a2c": {"n_steps": 8, "learning_rate": 3e-4, "gamma": 1.0, "gae_lambda": 0.95},
    "maskable_ppo": {"n_steps": 64, "batch_size": 256, "n_epochs": 4, "learning_rate": 1e-3, "gamma": 1.0,
                     "gae_lambda": 0.95},
}


class InstantRewardVecEnv(VecEnv):
    """An SB3 ``VecEnv`` over one ``BatchedInstantRewardEnv``: no per-env Python objects, one array step.

    Args:
        env: the batched env to adapt; if None, one is built from ``env_kwargs`` (``num_envs``, ``task``,
            ``reward``, ``gamma``, ``max_episode_steps``, ... as ``BatchedInstantRewardEnv`` takes them).
        env_kwargs: only without ``env``.

    Step returns the batched env's Dict observation (``source`` (N, S), ``generated`` (N, T), int64), rewards
    (N,) float32, dones = terminated | truncated, and one info dict per env. Rows still running get an empty
    dict (SB3 reads only finished rows). A finished row's dict holds ``terminal_observation`` (its last
    observation), ``TimeLimit.truncated`` (truncated and not terminated), ``episode`` = ``{"r", "l", "t"}``
    as SB3's ``Monitor`` writes it (so the adapter needs no ``VecMonitor``; do not add one, it would count
    episodes twice), and, when the episode terminated (EOS or the length cap), ``score``, the task score.

    Seeding follows SB3's ``DummyVecEnv``: ``seed(s)`` stores ``s + i`` for row i, applied at the next
    ``reset()`` and then forgotten; row i then draws the examples of a scalar env seeded ``s + i``.
    ``set_options`` passes ``{"example_index": ...}`` through (one index per row, or the same for all).

    Attributes and methods are those of the shared batched env: ``get_attr`` returns its value once per
    requested index, ``env_method`` calls it once (``set_reward_weights`` changes the one shared shaping)
    and repeats the result, except ``action_masks``, which returns each row's (V,) bool mask as
    sb3-contrib's ``get_action_masks`` expects. ``set_attr`` and state-changing ``env_method`` calls on a
    subset of rows are refused: the state they change is shared by every row.
    """

    def __init__(self, env: BatchedInstantRewardEnv | None = None, **env_kwargs: Any):
        if env is None:
            env = BatchedInstantRewardEnv(**env_kwargs)
        elif env_kwargs:
            raise ValueError(f"pass either a BatchedInstantRewardEnv or the keywords to build one, not both; "
                             f"got an env and {sorted(env_kwargs)}")
        if not isinstance(env, BatchedInstantRewardEnv):
            raise ValueError(f"env must be a BatchedInstantRewardEnv (gym.make_vec(..., num_envs=N).unwrapped), "
                             f"got {type(env).__name__}")
        if not env.copy:
            raise ValueError("the SB3 adapter needs an env built with copy=True (the default): SB3 keeps each "
                             "observation across the next step, which a copy=False env changes in place")
        self.env = env
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        n = env.num_envs
        self._returns = np.zeros(n, dtype=np.float64)
        self._lengths = np.zeros(n, dtype=np.int64)
        self._t_start = time.time()
        self._actions: np.ndarray | None = None

    # -- VecEnv API -----------------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        obs, info = self.env.reset(seed=self._batched_seed(), options=self._batched_options())
        self.reset_infos = [{"example_index": int(e)} for e in info["example_index"]]
        self._returns[:] = 0.0
        self._lengths[:] = 0
        # Seeds and options are used once, as in DummyVecEnv.
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async(actions)")
        obs, rewards, terminated, truncated, info = self.env.step(self._actions)
        self._actions = None
        self._returns += rewards
        self._lengths += 1
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        rows = np.flatnonzero(dones)
        if len(rows):
            final_obs = info["final_obs"]
            score = info["final_info"].get("score")
            elapsed = round(time.time() - self._t_start, 6)
            for i, ret, length in zip(rows.tolist(), self._returns[rows].tolist(), self._lengths[rows].tolist()):
                row = infos[i]
                row["terminal_observation"] = final_obs[i]
                row["TimeLimit.truncated"] = bool(truncated[i])  # the batched env never sets both
                row["episode"] = {"r": ret, "l": length, "t": elapsed}
                if terminated[i]:
                    row["score"] = float(score[i])
            self._returns[rows] = 0.0
            self._lengths[rows] = 0
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.env, attr_name)  # AttributeError, as SB3's has_attr expects
        return [value] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        self._require_all_rows(indices, f"set_attr({attr_name!r})")
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        rows = self._indices(indices)
        method = getattr(self.env, method_name)
        if method_name in PER_ROW_METHODS:
            return list(method(*method_args, **method_kwargs)[rows])
        self._require_all_rows(indices, f"env_method({method_name!r})")
        return [method(*method_args, **method_kwargs)] * len(rows)

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def get_images(self) -> list[None]:
        return [None] * self.num_envs  # text envs have no images; render() gives the batched env's text

    # -- helpers --------------------------------------------------------------------------------------
    def _indices(self, indices: VecEnvIndices) -> np.ndarray:
        rows = np.arange(self.num_envs) if indices is None else np.atleast_1d(np.asarray(indices, dtype=np.int64))
        if rows.size and (rows.min() < -self.num_envs or rows.max() >= self.num_envs):
            raise ValueError(f"indices {rows.tolist()} out of range for {self.num_envs} envs")
        return rows

    def _require_all_rows(self, indices: VecEnvIndices, what: str) -> None:
        if indices is not None and len(np.unique(self._indices(indices) % self.num_envs)) != self.num_envs:
            raise ValueError(f"{what} with indices={indices!r}: every row shares one batched env, so this would "
                             "change all rows; call it with indices=None")

    def _batched_seed(self) -> list[int | None] | None:
        """SB3's per-env seeds for the batched env (row i gets ``seeds[i]``; ``seed(s)`` sets ``s + i``)."""
        if all(s is None for s in self._seeds):
            return None
        return list(self._seeds)

    def _batched_options(self) -> dict[str, Any] | None:
        """SB3's per-env options -> the batched env's one options dict (only ``example_index`` is per row)."""
        if not any(self._options):
            return None
        keys = {k for o in self._options for k in o}
        if keys != {"example_index"} or not all(self._options):
            raise ValueError(f"set_options supports {{'example_index': i}} for every env, got {self._options!r}")
        return {"example_index": np.array([o["example_index"] for o in self._options])}


class TransformerExtractor(BaseFeaturesExtractor):
    """The encoder-decoder trunk of ``agents.model.PolicyModel`` as an SB3 features extractor.

    The source is encoded, the decoder reads BOS and the generated prefix (causal self-attention, cross-
    attention to the source), and the final hidden state at the current position (the number of non-PAD
    generated tokens) is the feature vector, of size d_model. SB3's ``action_net`` and ``value_net`` sit on
    top (use ``net_arch=[]``). The trunk is a whole ``PolicyModel`` (its own heads unused), so weights of an
    ``agents`` checkpoint load with ``extractor.trunk.load_state_dict``.

    Args:
        observation_space: the env's Dict(source, generated) space; fixes V, S and T.
        preset: a name of ``agents.model.PRESETS``.
        **overrides: ``ModelConfig`` fields replacing the preset's (e.g. ``d_model=128``).
    """

    def __init__(self, observation_space: spaces.Dict, preset: str = "tiny", **overrides: Any):
        if not isinstance(observation_space, spaces.Dict) or set(observation_space.spaces) != {"source", "generated"}:
            raise ValueError(f"TransformerExtractor needs the InstantReward Dict(source, generated) observation space, "
                             f"got {observation_space}")
        source, generated = observation_space["source"], observation_space["generated"]
        config = ModelConfig.preset(preset, vocab_size=int(source.high.max()) + 1, max_source_len=source.shape[0],
                                    max_target_len=generated.shape[0], **overrides)
        super().__init__(observation_space, features_dim=config.d_model)
        self.trunk = PolicyModel(config)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        # SB3 hands Box observations over as float32; token ids < 2**24 are exact in it.
        source = observations["source"].long()  # (B, S)
        generated = observations["generated"].long()  # (B, T)
        T = generated.shape[1]
        # The current position is one past the last non-PAD token (a PAD the policy emitted mid-output still
        # counts); a finished output of T tokens, seen only as a terminal observation, reads position T-1.
        steps = torch.arange(1, T + 1, device=generated.device)  # (T,)
        position = (steps * (generated != PAD)).amax(-1).clamp(max=T - 1)  # (B,)
        n = int(position.max()) + 1  # causal: positions past the longest prefix change nothing before it
        bos = generated.new_full((generated.shape[0], 1), BOS)
        target_in = torch.cat([bos, generated[:, : n - 1]], dim=1)  # (B, n)

        trunk = self.trunk
        memory, pad = trunk.encode(source)  # (B, S, C), (B, S)
        memory_mask = _attention_mask(pad)  # (B, 1, 1, S)
        x = trunk._embed_target(target_in, torch.arange(n, device=target_in.device))  # (B, n, C)
        for block in trunk.decoder:
            x = block(x, block.cross_attn.keys_values(memory), memory_mask)
        h = trunk.ln_decoder(x)  # (B, n, C)
        return h[torch.arange(h.shape[0], device=h.device), position]  # (B, C)


def make_sb3_model(
    algo: str = "ppo",
    task: str = "translation",
    num_envs: int = 16,
    model_preset: str = "tiny",
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    model_overrides: Mapping[str, Any] | None = None,
    tie_action_head: bool = True,
    **algo_kwargs: Any,
) -> BaseAlgorithm:
    """A ready SB3 model (``MultiInputPolicy`` with ``TransformerExtractor``) on an ``InstantRewardVecEnv``.

    Args:
        algo: ``"ppo"``, ``"a2c"`` or ``"maskable_ppo"`` (sb3-contrib; its policy masks with the env's
            ``action_masks``).
        task: a built-in task name (``"translation"``, ``"sentiment"``, ``"matching:qa"``, ``"matching:summary"``).
        num_envs: rows of the batched env.
        model_preset: ``agents.model.PRESETS`` name of the trunk.
        seed: seeds SB3 (torch, numpy, action space) and the env (row i: ``seed + i``).
        env_kwargs: further ``BatchedInstantRewardEnv`` keywords (``reward``, ``split``, ``max_episode_steps``,
            ...). The env's ``gamma`` is the algorithm's unless given here.
        model_overrides: ``ModelConfig`` fields replacing the preset's.
        tie_action_head: share the token table between the trunk and SB3's ``action_net`` (``tie_action_net``).
        **algo_kwargs: the algorithm's own keywords; they replace ``ALGO_DEFAULTS[algo]`` (e.g. ``n_steps``,
            ``learning_rate``, ``device``, ``verbose``). ``policy_kwargs`` entries are merged into ours.

    Returns:
        The SB3 model; call ``learn(total_timesteps=...)``. Episode returns and lengths are logged as
        ``rollout/ep_rew_mean`` and ``ep_len_mean``; ``model.ep_info_buffer`` holds the latest ones.
    """
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; expected one of {ALGOS}")
    if algo == "maskable_ppo":
        from sb3_contrib import (
            MaskablePPO,  # optional dependency, imported only when asked for
        )
        algo_class = MaskablePPO  # its "MultiInputPolicy" is MaskableMultiInputActorCriticPolicy
    else:
        algo_class = {"ppo": PPO, "a2c": A2C}[algo]
    kwargs = {**ALGO_DEFAULTS[algo], **algo_kwargs}
    env_kwargs = {"gamma": kwargs["gamma"], **(env_kwargs or {})}
    env = InstantRewardVecEnv(num_envs=num_envs, task=task, **env_kwargs)
    policy_kwargs = {
        "features_extractor_class": TransformerExtractor,
        "features_extractor_kwargs": {"preset": model_preset, **(model_overrides or {})},
        "ortho_init": False,  # orthogonal init would overwrite the Transformer's N(0, 0.02) init
        "net_arch": [],  # the heads read the Transformer's features directly
        **kwargs.pop("policy_kwargs", {}),
    }
    model = algo_class("MultiInputPolicy", env, seed=seed, policy_kwargs=policy_kwargs, **kwargs)
    if kwargs.get("tensorboard_log") is None:
        # SB3's default logger makes an empty SB3-<date> folder in the temp directory on every learn()
        from stable_baselines3.common.logger import HumanOutputFormat, Logger

        model.set_logger(Logger(folder=None, output_formats=[HumanOutputFormat(sys.stdout)] if model.verbose else []))
    if tie_action_head:
        tie_action_net(model)
    return model


def tie_action_net(model: BaseAlgorithm) -> None:
    """Make the policy's ``action_net`` read the trunk's token table, as ``PolicyModel``'s tied head does.

    Logits are then the similarity of the decoder state to each token's embedding, so writing a token seen in
    the source (copying) is close to the encoder's own representation from the first update. The optimizer is
    rebuilt over the shared parameter (``parameters()`` lists it once).
    """
    policy = model.policy
    extractor = policy.features_extractor
    if not isinstance(extractor, TransformerExtractor) or extractor.trunk.policy_head is not None:
        raise ValueError("tie_action_net needs a TransformerExtractor with tied embeddings (ModelConfig.tie_embeddings)")
    policy.action_net.weight = extractor.trunk.token_embedding.weight  # (V, C)
    torch.nn.init.zeros_(policy.action_net.bias)
    policy.optimizer = policy.optimizer_class(policy.parameters(), lr=model.lr_schedule(1), **policy.optimizer_kwargs)
