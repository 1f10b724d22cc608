"""BatchedInstantRewardEnv: step-for-step parity with SyncVectorEnv of scalar envs, and bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from ir_env import EOS, REWARD_MODES, BatchedInstantRewardEnv, InstantRewardEnv

TASKS = ["translation", "sentiment", "matching:qa", "matching:summary"]
NUM_ENVS = 8


def assert_same(a, b, where: str) -> None:
    """Equal values, recursively through dicts and object arrays (NaN == NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, np.ndarray) and a.dtype == object:
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_infos(a: dict, b: dict, where: str) -> None:
    """Infos agree on their keys, their masks, and their values wherever the mask is set."""
    assert set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))} differ"
    for key in a:
        if key.startswith("_"):
            continue
        mask = a[f"_{key}"]
        assert np.array_equal(mask, b[f"_{key}"]), f"{where}: mask of {key}"
        if key == "final_info":
            assert_same_infos(a[key], b[key], f"{where}.final_info")
            continue
        for i in np.flatnonzero(mask):
            assert_same(a[key][i], b[key][i], f"{where}.{key}[{i}]")


def rollout_actions(rng: np.random.Generator, refs: list[np.ndarray], lengths: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Copy the reference, emit a random allowed token or end early: scores spread, episodes end often."""
    actions = []
    for ref, t in zip(refs, lengths):
        u = rng.random()
        if u < 0.1:
            actions.append(EOS)
        elif u < 0.6 and t < len(ref):
            actions.append(int(ref[t]))
        else:
            actions.append(int(rng.choice(allowed)))
    return np.array(actions, dtype=np.int64)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("reward", REWARD_MODES)
def test_batched_env_equals_sync_vector_env_step_for_step(task, reward):
    kwargs = {"task": task, "reward": reward, "gamma": 0.97}
    batched = BatchedInstantRewardEnv(num_envs=NUM_ENVS, **kwargs)
    sync = SyncVectorEnv([lambda: InstantRewardEnv(**kwargs) for _ in range(NUM_ENVS)], autoreset_mode=AutoresetMode.SAME_STEP)
    rng = np.random.default_rng(0)
    allowed = np.flatnonzero(batched.task.action_mask())

    obs_b, info_b = batched.reset(seed=11)
    obs_s, info_s = sync.reset(seed=11)
    assert_same(obs_b, obs_s, "reset obs")
    assert_same_infos(info_b, info_s, "reset info")
    episodes = 0
    for step in range(2000):
        ep = batched.episodes
        refs = [ep.reference(i) for i in range(NUM_ENVS)]
        actions = rollout_actions(rng, refs, ep.length, allowed)
        out_b = batched.step(actions)
        out_s = sync.step(actions)
        for name, x, y in zip(("obs", "reward", "terminated", "truncated"), out_b[:4], out_s[:4]):
            assert_same(x, y, f"step {step} {name}")
        assert_same_infos(out_b[4], out_s[4], f"step {step} info")
        episodes += int(out_b[2].sum())
    assert episodes > 500, "the run must cover many autoresets"


def test_max_episode_steps_truncates_like_time_limit():
    batched = gym.make_vec("InstantReward-v0", num_envs=4, max_episode_steps=5)
    sync = SyncVectorEnv(
        [lambda: gym.make("InstantReward-v0", max_episode_steps=5) for _ in range(4)], autoreset_mode=AutoresetMode.SAME_STEP
    )
    word = int(np.flatnonzero(batched.unwrapped.task.action_mask())[-1])
    assert_same(batched.reset(seed=3)[0], sync.reset(seed=3)[0], "reset")
    for step in range(12):
        actions = np.full(4, word)
        out_b, out_s = batched.step(actions), sync.step(actions)
        for x, y in zip(out_b[:4], out_s[:4]):
            assert_same(x, y, f"step {step}")
        assert_same_infos(out_b[4], out_s[4], f"step {step}")
    assert out_b[3].any() or batched.unwrapped._steps.max() < 5


@pytest.mark.parametrize(
    "actions, message",
    [
        (np.zeros(3, dtype=np.int64), r"shape \(4,\)"),
        (np.zeros((4, 1), dtype=np.int64), r"shape \(4,\)"),
        (np.zeros(4, dtype=np.float64), "integer"),
        (np.array([5, 5, -1, 5]), r"rows \[2\]"),
        (np.array([5, 10**6, 5, 5]), r"rows \[1\]"),
    ],
)
def test_bad_action_batches_are_rejected_without_touching_any_row(actions, message):
    env = BatchedInstantRewardEnv(num_envs=4)
    env.reset(seed=0)
    env.step(np.full(4, 5))
    before = (env.episodes.generated.copy(), env.episodes.length.copy(), env.episodes.phi.copy())
    with pytest.raises(ValueError, match=message):
        env.step(actions)
    after = (env.episodes.generated, env.episodes.length, env.episodes.phi)
    for x, y in zip(before, after):
        assert np.array_equal(x, y)


def test_step_before_reset_raises():
    env = BatchedInstantRewardEnv(num_envs=2)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.array([5, 5]))


def test_bad_constructor_values():
    with pytest.raises(ValueError, match="num_envs"):
        BatchedInstantRewardEnv(num_envs=0)
    with pytest.raises(ValueError, match="max_episode_steps"):
        BatchedInstantRewardEnv(num_envs=2, max_episode_steps=0)
    with pytest.raises(ValueError, match="unknown reward"):
        gym.make_vec("InstantReward-v0", num_envs=2, reward="dense")


def test_reward_weights_reach_every_row():
    env = gym.make_vec("InstantReward-v0", num_envs=3, reward="mixed")
    env.unwrapped.set_reward_weights({"token": 1.0})
    assert env.unwrapped.get_reward_weights()["token"] == 1.0
    env.reset(seed=0)
    refs = np.array([env.unwrapped.episodes.reference(i)[0] for i in range(3)])
    _, rewards, *_ = env.step(refs)
    assert np.all(rewards > 0)


def test_observations_are_fresh_arrays():
    env = BatchedInstantRewardEnv(num_envs=2)
    obs, _ = env.reset(seed=0)
    obs["source"][:] = 0
    obs2, *_ = env.step(np.array([5, 5]))
    assert obs2["source"].any() and obs2["generated"][:, 0].tolist() == [5, 5]


def test_copy_false_returns_read_only_views_with_the_same_values():
    copied = BatchedInstantRewardEnv(num_envs=4, task="matching:qa")
    shared = gym.make_vec("InstantReward-v0", num_envs=4, task="matching:qa", copy=False).unwrapped
    assert shared.copy is False
    obs_a, _ = copied.reset(seed=3)
    obs_b, _ = shared.reset(seed=3)
    first = obs_b["generated"]
    rng = np.random.default_rng(0)
    allowed = np.flatnonzero(copied.task.action_mask())
    for t in range(60):  # several episodes end and restart in place
        assert_same(obs_a, obs_b, f"step {t}")
        assert not obs_b["source"].flags.writeable and not obs_b["generated"].flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            obs_b["generated"][0, 0] = 5
        actions = rng.choice(allowed, size=4)
        obs_a, *_ = copied.step(actions)
        obs_b, *_ = shared.step(actions)
    assert np.shares_memory(first, obs_b["generated"])  # one buffer, changed in place: the caller must copy
    assert not np.shares_memory(obs_a["generated"], copied.step(actions)[0]["generated"])


def test_reset_takes_one_seed_per_row():
    env = BatchedInstantRewardEnv(num_envs=3)
    listed, _ = env.reset(seed=[7, 8, 9])
    consecutive, _ = env.reset(seed=7)
    assert np.array_equal(listed["source"], consecutive["source"])
    with pytest.raises(ValueError, match="3 envs"):
        env.reset(seed=[1, 2])
