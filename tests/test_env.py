"""InstantRewardEnv: the Gymnasium contract, exact returns, determinism, robustness and bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import ir_env
from ir_env import ENV_IDS, EOS, REWARD_MODES, InstantRewardEnv, PrefixMetric

TASKS = ["translation", "sentiment", "matching:qa", "matching:summary"]


def make(task: str = "translation", **kwargs) -> InstantRewardEnv:
    return InstantRewardEnv(task=task, **kwargs)


def play(env: InstantRewardEnv, actions: list[int], seed: int | None = 0, **reset_kwargs):
    """Reset, then step through ``actions`` until the episode ends; returns (rewards, last info)."""
    env.reset(seed=seed, **reset_kwargs)
    rewards, info = [], {}
    for a in actions:
        _, r, terminated, truncated, info = env.step(a)
        rewards.append(r)
        if terminated or truncated:
            break
    return rewards, info


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
@pytest.mark.parametrize("reward", REWARD_MODES)
def test_gymnasium_and_sb3_checkers_pass(env_id, reward):
    env = gym.make(env_id, reward=reward, disable_env_checker=True).unwrapped
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(gym.make(env_id, reward=reward), warn=False)
    assert isinstance(env, InstantRewardEnv)


def test_make_vec_returns_the_native_batched_env():
    envs = gym.make_vec("InstantReward-v0", num_envs=3)
    assert isinstance(envs.unwrapped, ir_env.BatchedInstantRewardEnv)
    assert envs.num_envs == 3


@pytest.fixture(scope="module", params=TASKS)
def task_env(request):
    return make(request.param)


@pytest.mark.parametrize("reward", ["sparse", "instant"])
@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), data=st.data())
def test_return_equals_final_score_with_gamma_one(task_env, reward, seed, data):
    env = task_env
    env.set_reward_weights({reward: 1.0})
    env.reset(seed=seed)
    reference = env.episodes.reference(0).tolist()
    allowed = np.flatnonzero(env.action_masks())
    # mix copies of the reference with random allowed tokens, so scores span the whole range
    actions = []
    for i in range(env.task.max_generation_len + 1):
        if data.draw(st.booleans()) and i < len(reference):
            actions.append(reference[i])
        else:
            actions.append(int(allowed[data.draw(st.integers(0, len(allowed) - 1))]))
    rewards, info = play(env, actions, seed=seed)
    assert "score" in info, "every episode ends within max_generation_len + 1 steps"
    assert sum(rewards) == pytest.approx(info["score"], abs=1e-9)
    assert all(np.isfinite(rewards))


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), data=st.data())
def test_length_part_sums_to_minus_the_relative_length_error(task_env, seed, data):
    env = task_env
    env.set_reward_weights({"length": 1.0})
    env.reset(seed=seed)
    r = len(env.episodes.reference(0))
    words = np.setdiff1d(np.flatnonzero(env.action_masks()), [EOS])
    stop = data.draw(st.integers(0, env.task.max_generation_len + 1))  # EOS here (or the length cap first)
    actions = [int(words[data.draw(st.integers(0, len(words) - 1))]) for _ in range(stop)] + [EOS]
    rewards, info = play(env, actions, seed=seed)
    c = min(stop, env.task.max_generation_len)
    expected = -abs(c - r) / r if r else 0.0
    assert sum(rewards) == pytest.approx(expected, abs=1e-12)
    # paid as soon as it is known: nothing while the output is shorter than the reference, -1/r per word past it
    for t, reward in enumerate(rewards[:c]):
        if t + 1 < c or c > r:
            assert reward == pytest.approx(-1 / r if r and t >= r else 0.0, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.floats(0.3, 2.5), data=st.data())
def test_length_part_with_a_target_sums_to_minus_the_relative_error_against_it(task_env, seed, k, data):
    env = task_env
    env.set_reward_weights({"length": 1.0})
    env.set_length_target(k)
    try:
        env.reset(seed=seed)
        r = len(env.episodes.reference(0))
        words = np.setdiff1d(np.flatnonzero(env.action_masks()), [EOS])
        stop = data.draw(st.integers(0, env.task.max_generation_len + 1))
        actions = [int(words[data.draw(st.integers(0, len(words) - 1))]) for _ in range(stop)] + [EOS]
        rewards, info = play(env, actions, seed=seed)
    finally:
        env.set_length_target(1.0)  # the fixture's env is shared
    c = min(stop, env.task.max_generation_len)
    assert sum(rewards) == pytest.approx(-abs(c - k * r) / r if r else 0.0, abs=1e-12)
    assert all(reward <= 0.0 for reward in rewards)
    # nothing is paid before the output passes k r words, or ends short of it
    assert all(reward == 0.0 for t, reward in enumerate(rewards[:c]) if t + 1 <= k * r and t + 1 < c)


@pytest.mark.parametrize("ratio", [0, -1.0, float("nan"), float("inf"), "1", True, None])
def test_length_target_must_be_a_finite_positive_ratio(ratio):
    for env in (make(), ir_env.BatchedInstantRewardEnv(num_envs=2)):
        with pytest.raises(ValueError, match="length target must be a finite ratio > 0"):
            env.set_length_target(ratio)


@pytest.mark.parametrize("task", TASKS)
def test_following_the_reference_scores_the_reference(task):
    env = make(task)
    for seed in range(5):
        env.reset(seed=seed)
        reference = env.episodes.reference(0).tolist()
        rewards, info = play(env, reference + [EOS], seed=seed)
        if env.task.metric_name == "vader":
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            wanted = env.episodes.examples.attribute[env.episodes.example_ids[0]]
            expected = wanted * SentimentIntensityAnalyzer().polarity_scores(info["reference"])["compound"]
            assert info["score"] == pytest.approx(expected, abs=1e-9)
            assert info["score"] > 0, "reference continuations express the requested polarity"
        else:
            assert info["score"] == pytest.approx(1.0, abs=1e-9)  # BLEU 100, F1 1, ROUGE-L 1
        assert info["text"] == info["reference"]
        assert sum(rewards) == pytest.approx(info["score"], abs=1e-9)


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_same_episodes_other_seed_other_episodes(task):
    def run(seed):
        env = make(task)
        rng = np.random.default_rng(123)
        out = []
        env.reset(seed=seed)
        for _ in range(300):
            obs, r, term, trunc, info = env.step(int(rng.integers(len(env.task.vocab))))
            out.append((obs["source"].tobytes(), obs["generated"].tobytes(), r))
            if term:
                env.reset()
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)


@pytest.mark.parametrize("task", TASKS)
def test_ten_thousand_random_steps_raise_nothing_and_rewards_are_finite(task):
    env = make(task, reward="mixed", reward_weights={"sparse": 0.3, "instant": 0.4, "token": 0.3, "length": 0.2})
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    rewards, episodes = [], 0
    for _ in range(10_000):
        obs, r, term, trunc, info = env.step(int(rng.integers(len(env.task.vocab))))
        rewards.append(r)
        assert env.observation_space.contains(obs)
        if term:
            episodes += 1
            assert np.isfinite(info["score"])
            env.reset()
    assert np.all(np.isfinite(rewards))
    assert episodes > 100


def test_observation_arrays_are_fresh_and_types_are_python():
    env = make()
    obs, info = env.reset(seed=0)
    obs2, reward, terminated, truncated, info = env.step(int(env.episodes.reference(0)[0]))
    obs2["generated"][:] = 0
    obs3, *_ = env.step(EOS)
    assert obs3["generated"][0] != 0
    assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
    assert info["action_mask"].dtype == np.int8 and env.action_masks().dtype == bool
    assert np.array_equal(info["action_mask"].astype(bool), env.action_masks())
    assert {"reward_sparse", "reward_instant", "reward_token", "reward_length", "potential"} <= set(info)


def test_length_cap_terminates_and_scores():
    env = make()
    env.reset(seed=0)
    word = int(np.flatnonzero(env.action_masks())[-1])
    for t in range(env.task.max_generation_len):
        _, _, terminated, truncated, info = env.step(word)
    assert terminated and not truncated and "score" in info
    assert info["length"] == env.task.max_generation_len


def test_time_limit_truncates_without_scoring():
    env = gym.make("InstantReward-v0", max_episode_steps=3)
    env.reset(seed=0)
    word = int(np.flatnonzero(env.unwrapped.action_masks())[-1])
    results = [env.step(word) for _ in range(3)]
    assert results[-1][3] is True and results[-1][2] is False
    assert "score" not in results[-1][4]


def test_gamma_discounts_the_potential_difference():
    env = make(gamma=0.9)
    env.reset(seed=3)
    ref = env.episodes.reference(0).tolist()
    _, r0, *_ , info0 = env.step(ref[0])
    _, r1, *_ , info1 = env.step(ref[1])
    assert r1 == pytest.approx(0.9 * info1["potential"] - info0["potential"], abs=1e-12)


def test_reward_weights_change_at_run_time_through_vector_call():
    envs = gym.vector.SyncVectorEnv([lambda: make(reward="mixed") for _ in range(2)])
    envs.call("set_reward_weights", {"token": 1.0})
    assert envs.call("get_reward_weights")[0] == {"sparse": 0.0, "instant": 0.0, "token": 1.0, "length": 0.0}
    envs.reset(seed=0)
    refs = [e.episodes.reference(0)[0] for e in envs.envs]
    _, rewards, _, _, infos = envs.step(np.array(refs))
    assert np.allclose(rewards, infos["reward_token"])
    assert np.all(rewards > 0)


def test_user_potential_function_keeps_the_return_at_the_task_score():
    calls = []

    def length_potential(source, prefix, reference):
        calls.append(len(prefix))
        return 0.01 * len(prefix)

    env = make(potential=length_potential)
    env.reset(seed=0)
    ref = env.episodes.reference(0).tolist()
    rewards, info = play(env, ref[:3] + [EOS])
    assert rewards[1] == pytest.approx(0.01)  # Phi grows by 0.01 per token; the task metric is not the potential
    assert sum(rewards) == pytest.approx(info["score"])
    assert calls


def test_user_prefix_metric_class_is_used_as_potential():
    class Length(PrefixMetric):
        name = "length"

        def _reset(self, rows):
            pass

        def _push(self, rows, tokens):
            pass

        def _potential(self, rows):
            return self.length[rows] * 0.5

    env = make(potential=Length)
    env.reset(seed=0)
    _, r, *_ = env.step(int(env.episodes.reference(0)[0]))
    assert r == pytest.approx(0.5)


def test_render_ansi_shows_source_output_and_token_rewards():
    env = make(render_mode="ansi")
    env.reset(seed=0)
    env.step(int(env.episodes.reference(0)[0]))
    text = env.render()
    assert "source:" in text and "output:" in text and "(+" in text


def test_reset_can_pick_an_example():
    env = make()
    obs, info = env.reset(seed=0, options={"example_index": 5})
    assert info["example_index"] == 5
    assert np.array_equal(obs["source"], env.episodes.examples.source[5])


# -- bad input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", [-1, 10**6, 3.0, float("nan"), "5", None, np.array([1, 2]), True])
def test_bad_actions_raise_value_error_naming_the_range(action):
    env = make()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"\[0, \d+\)"):
        env.step(action)


def test_numpy_integer_actions_are_accepted():
    env = make()
    env.reset(seed=0)
    env.step(np.int32(5))
    obs, *_ = env.step(np.array(6))
    assert obs["generated"][:2].tolist() == [5, 6]


def test_step_before_reset_and_after_the_end_raise():
    env = make()
    with pytest.raises(ResetNeeded, match="reset"):
        env.step(5)
    env.reset(seed=0)
    env.step(EOS)
    with pytest.raises(ResetNeeded, match="reset"):
        env.step(5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task": "poetry"}, "unknown task 'poetry'.*translation"),
        ({"reward": "dense"}, "unknown reward 'dense'.*instant"),
        ({"split": "dev"}, "unknown split 'dev'.*valid"),
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": 1.5}, "gamma"),
        ({"reward": "instant", "reward_weights": {"token": 1}}, "mixed"),
        ({"reward": "mixed", "reward_weights": {"bonus": 1}}, "unknown reward part"),
        ({"reward": "mixed", "reward_weights": {"token": float("nan")}}, "finite"),
        ({"render_mode": "rgb_array"}, "render_mode"),
    ],
)
def test_bad_arguments_raise_value_error_listing_valid_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make("InstantReward-v0", **kwargs)


@pytest.mark.parametrize("bad", [{"num_train": -5}, {"num_valid": 0}, {"seed": "x"}])
def test_bad_task_sizes_raise_value_error(bad):
    with pytest.raises((ValueError, TypeError)):
        make("translation", **bad)


def test_cli_lists_tasks_and_shapings_and_plays_episodes(capsys):
    from agents.cli import main as cli_main

    assert cli_main(["list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in ("translation", "sentiment", "matching:qa", "matching:summary"))
    assert all(mode in listing for mode in REWARD_MODES) and "InstantReward-v0" in listing
    assert cli_main(["play", "--task", "matching:summary", "--episodes", "1"]) == 0
    played = capsys.readouterr().out
    assert "reference policy" in played and "random policy" in played and "score 1.0000" in played


def test_cli_rejects_an_unknown_task():
    from agents.cli import main as cli_main

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["play", "--task", "poetry"])
    assert exit_info.value.code == 2
