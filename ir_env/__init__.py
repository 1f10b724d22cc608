"""instant-reward, environment side: text generation as a Gymnasium env with exact instant token rewards.

Importing this package registers the environments::

    import gymnasium as gym
    import ir_env  # noqa: F401

    env = gym.make("InstantReward-v0")                           # translation, instant reward
    env = gym.make("InstantReward-Sentiment-v0", reward="sparse")
    envs = gym.make_vec("InstantReward-v0", num_envs=1024)       # BatchedInstantRewardEnv
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from ir_env.env import InstantRewardEnv
from ir_env.rewards.base import CallablePotential, PrefixMetric
from ir_env.rewards.shaping import REWARD_MODES, REWARD_PARTS, Shaping
from ir_env.tasks import TASKS, Task, make_task, task_names
from ir_env.tokenizer import BOS, EOS, PAD, UNK, Vocabulary
from ir_env.vector import BatchedInstantRewardEnv

#: registered id -> default task
ENV_IDS: dict[str, str] = {
    "InstantReward-v0": "translation",
    "InstantReward-Translation-v0": "translation",
    "InstantReward-Sentiment-v0": "sentiment",
    "InstantReward-Matching-v0": "matching:qa",
}

for _env_id, _task in ENV_IDS.items():
    if _env_id not in registry:
        register(
            id=_env_id,
            entry_point="ir_env.env:InstantRewardEnv",
            vector_entry_point="ir_env.vector:BatchedInstantRewardEnv",
            kwargs={"task": _task},
        )

__all__ = [
    "BOS",
    "EOS",
    "ENV_IDS",
    "PAD",
    "REWARD_MODES",
    "REWARD_PARTS",
    "TASKS",
    "UNK",
    "BatchedInstantRewardEnv",
    "CallablePotential",
    "InstantRewardEnv",
    "PrefixMetric",
    "Shaping",
    "Task",
    "Vocabulary",
    "make_task",
    "task_names",
]
