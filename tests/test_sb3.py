"""agents.sb3: the SB3 VecEnv adapter, the Transformer extractor, and PPO / A2C / MaskablePPO end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sb3_contrib.common.maskable.utils import get_action_masks
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.vec_env import VecCheckNan, VecEnvWrapper

from agents.sb3 import InstantRewardVecEnv, TransformerExtractor, make_sb3_model
from benchmarks.baselines import policy_scores
from ir_env import EOS, BatchedInstantRewardEnv, InstantRewardEnv

TASKS = ["translation", "sentiment", "matching:qa", "matching:summary"]
ALGOS = ["ppo", "a2c", "maskable_ppo"]
N = 8


def word_actions(env: BatchedInstantRewardEnv, rng: np.random.Generator) -> np.ndarray:
    """A random allowed token other than EOS for every row: episodes run until the cap or a time limit."""
    allowed = np.flatnonzero(env.task.action_mask())
    return rng.choice(allowed[allowed != EOS], size=env.num_envs)


class ScoreRecorder(BaseCallback):
    """Collects the task score of every terminated episode during ``learn``."""

    def __init__(self):
        super().__init__()
        self.scores: list[float] = []

    def _on_step(self) -> bool:
        self.scores += [info["score"] for info in self.locals["infos"] if "score" in info]
        return True


class ActionRecorder(VecEnvWrapper):
    """Records every action batch an algorithm sends, with the masks the env gave for that step."""

    def __init__(self, venv):
        super().__init__(venv)
        self.actions: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []

    def reset(self):
        return self.venv.reset()

    def step_async(self, actions):
        self.actions.append(np.array(actions))
        self.masks.append(np.stack(self.venv.env_method("action_masks")))
        self.venv.step_async(actions)

    def step_wait(self):
        return self.venv.step_wait()


# -- the adapter -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("task", TASKS)
def test_reset_and_step_shapes_and_dtypes(task):
    venv = InstantRewardVecEnv(num_envs=N, task=task)
    obs = venv.reset()
    space = venv.observation_space
    assert set(obs) == {"source", "generated"}
    for key in obs:
        assert obs[key].shape == (N, *space[key].shape) and obs[key].dtype == np.int64
    obs, rewards, dones, infos = venv.step(word_actions(venv.env, np.random.default_rng(0)))
    assert obs["generated"].shape == (N, space["generated"].shape[0]) and (obs["generated"][:, 0] != 0).all()
    assert rewards.shape == (N,) and rewards.dtype == np.float32
    assert dones.shape == (N,) and dones.dtype == bool
    assert isinstance(infos, list) and len(infos) == N and all(isinstance(i, dict) for i in infos)


def test_rewards_equal_the_batched_envs():
    reference = BatchedInstantRewardEnv(num_envs=N, task="matching:summary")
    venv = InstantRewardVecEnv(BatchedInstantRewardEnv(num_envs=N, task="matching:summary"))
    reference.reset(seed=3)
    venv.seed(3)
    venv.reset()
    rng = np.random.default_rng(0)
    allowed = np.flatnonzero(reference.task.action_mask())
    for _ in range(60):  # several episodes per row, with autoresets
        actions = rng.choice(allowed, size=N)
        ref_obs, ref_rewards, terminated, truncated, _ = reference.step(actions)
        obs, rewards, dones, _ = venv.step(actions)
        np.testing.assert_array_equal(rewards, ref_rewards.astype(np.float32))
        np.testing.assert_array_equal(dones, terminated | truncated)
        np.testing.assert_array_equal(obs["generated"], ref_obs["generated"])


def test_seed_applies_at_the_next_reset_only_and_matches_the_batched_env():
    venv = InstantRewardVecEnv(num_envs=N, task="translation")
    assert venv.seed(7) == [7 + i for i in range(N)]
    first = venv.reset()["source"]
    assert venv._seeds == [None] * N  # used once, as DummyVecEnv does
    reference, _ = BatchedInstantRewardEnv(num_envs=N, task="translation").reset(seed=7)
    np.testing.assert_array_equal(first, reference["source"])
    venv.seed(7)
    np.testing.assert_array_equal(venv.reset()["source"], first)


def test_set_options_picks_the_examples():
    venv = InstantRewardVecEnv(num_envs=N, task="matching:qa")
    venv.set_options([{"example_index": i} for i in range(N)])
    venv.reset()
    assert [info["example_index"] for info in venv.reset_infos] == list(range(N))


def test_truncated_rows_report_terminal_observation_and_time_limit():
    venv = InstantRewardVecEnv(num_envs=N, task="translation", max_episode_steps=3)
    venv.reset()
    rng = np.random.default_rng(0)
    sent = []
    for step in range(3):
        actions = word_actions(venv.env, rng)
        sent.append(actions)
        obs, _, dones, infos = venv.step(actions)
        assert dones.all() == (step == 2)
    for i, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is True
        assert "score" not in info  # only a terminated (EOS or length cap) output is scored
        terminal = info["terminal_observation"]
        np.testing.assert_array_equal(terminal["generated"][:3], [a[i] for a in sent])
        assert (terminal["generated"][3:] == 0).all()
        assert info["episode"]["l"] == 3
    assert (obs["generated"] == 0).all()  # every row restarted


def test_terminated_rows_report_score_and_episode_return():
    venv = InstantRewardVecEnv(num_envs=N, task="matching:summary")  # instant shaping, gamma 1: return = score
    venv.reset()
    rng = np.random.default_rng(1)
    returns = np.zeros(N)
    for _ in range(2):
        _, rewards, dones, _ = venv.step(word_actions(venv.env, rng))
        returns += rewards
        assert not dones.any()
    _, rewards, dones, infos = venv.step(np.full(N, EOS))
    returns += rewards
    assert dones.all()
    for i, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is False
        assert info["episode"]["l"] == 3
        assert info["episode"]["r"] == pytest.approx(returns[i], abs=1e-5)
        assert info["episode"]["r"] == pytest.approx(info["score"], abs=1e-5)
        assert info["terminal_observation"]["generated"][1] != 0


def test_running_rows_get_empty_infos():
    venv = InstantRewardVecEnv(num_envs=N, task="translation")
    venv.reset()
    actions = word_actions(venv.env, np.random.default_rng(0))
    actions[:2] = EOS
    _, _, dones, infos = venv.step(actions)
    np.testing.assert_array_equal(dones, np.arange(N) < 2)
    assert all(info == {} for info in infos[2:])


def test_action_masks_through_env_method():
    venv = InstantRewardVecEnv(num_envs=N, task="translation")
    venv.reset()
    masks = venv.env_method("action_masks")
    assert len(masks) == N and all(m.shape == (len(venv.env.task.vocab),) and m.dtype == bool for m in masks)
    np.testing.assert_array_equal(get_action_masks(venv), venv.env.action_masks())
    assert not masks[0].all()  # translation masks source-only words
    assert len(venv.env_method("action_masks", indices=[1, 3])) == 2


def test_set_reward_weights_through_env_method_reaches_the_shared_shaping():
    venv = InstantRewardVecEnv(num_envs=N, task="translation", reward="mixed")
    assert venv.env_method("set_reward_weights", {"instant": 0.25, "sparse": 0.75}) == [None] * N
    weights = venv.env.get_reward_weights()
    assert weights["instant"] == 0.25 and weights["sparse"] == 0.75
    assert venv.env_method("get_reward_weights") == [weights] * N


def test_attributes_are_the_batched_envs():
    venv = InstantRewardVecEnv(num_envs=N, task="translation")
    assert venv.get_attr("num_envs", indices=[0, 1]) == [N, N]
    assert venv.has_attr("action_masks") and not venv.has_attr("no_such_attribute")
    venv.set_attr("info_text", False)
    assert venv.env.info_text is False
    assert venv.env_is_wrapped(object) == [False] * N
    with pytest.raises(ValueError, match="every row shares one batched env"):
        venv.set_attr("info_text", True, indices=[0])
    with pytest.raises(ValueError, match="every row shares one batched env"):
        venv.env_method("set_reward_weights", {"instant": 1.0}, indices=0)


def test_bad_construction_is_refused():
    with pytest.raises(ValueError, match="not both"):
        InstantRewardVecEnv(BatchedInstantRewardEnv(num_envs=2), num_envs=2)
    with pytest.raises(ValueError, match="BatchedInstantRewardEnv"):
        InstantRewardVecEnv(InstantRewardEnv())
    with pytest.raises(ValueError, match="copy=True"):
        InstantRewardVecEnv(num_envs=2, copy=False)


def test_scalar_env_passes_sb3_check_env():
    check_env(InstantRewardEnv(task="matching:summary"), warn=True)


def test_vec_check_nan_runs_over_the_adapter():
    venv = VecCheckNan(InstantRewardVecEnv(num_envs=N, task="sentiment"), raise_exception=True)
    venv.reset()
    rng = np.random.default_rng(0)
    for _ in range(20):
        _, rewards, _, _ = venv.step(rng.integers(3, venv.action_space.n, size=N))
        assert np.isfinite(rewards).all()


# -- the extractor ---------------------------------------------------------------------------------------

def test_extractor_reads_the_current_position_and_ignores_what_follows():
    venv = InstantRewardVecEnv(num_envs=2, task="matching:summary")
    extractor = TransformerExtractor(venv.observation_space, preset="tiny")
    obs = venv.reset()
    source = torch.as_tensor(obs["source"]).float()
    generated = torch.zeros(2, venv.observation_space["generated"].shape[0])
    generated[:, :3] = torch.tensor([[10, 11, 12], [10, 11, 12]])
    generated[1, 3:5] = torch.tensor([40, 41])  # row 1 is two tokens further on
    features = extractor({"source": source, "generated": generated})
    assert features.shape == (2, extractor.features_dim) == (2, 64)
    longer = generated.clone()
    longer[0, 3] = 50  # row 0 one token further: its feature changes, row 1's does not
    moved = extractor({"source": source, "generated": longer})
    assert not torch.allclose(moved[0], features[0])
    torch.testing.assert_close(moved[1], features[1])


# -- the algorithms end to end ---------------------------------------------------------------------------

@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("algo", ALGOS)
def test_learn_runs_on_every_task(algo, task):
    fast = {"n_epochs": 1, "batch_size": 512} if algo != "a2c" else {}
    model = make_sb3_model(algo, task=task, num_envs=16, device="cpu", **fast)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=2048)
    assert model.num_timesteps >= 2048
    episodes = list(model.ep_info_buffer)
    assert episodes and all(np.isfinite(e["r"]) and 1 <= e["l"] <= model.env.observation_space["generated"].shape[0]
                            for e in episodes)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters()))  # it updated


def test_maskable_ppo_never_emits_a_masked_token():
    model = make_sb3_model("maskable_ppo", task="translation", num_envs=16, device="cpu", n_epochs=1, batch_size=512)
    recorder = ActionRecorder(model.get_env())
    model.set_env(recorder)
    model.learn(total_timesteps=2048)
    actions, masks = np.stack(recorder.actions), np.stack(recorder.masks)  # (steps, N), (steps, N, V)
    assert actions.size >= 2048 and (~masks).any()
    allowed = np.take_along_axis(masks, actions[..., None], axis=-1)
    assert allowed.all()


def test_models_share_the_token_table_with_the_action_head():
    model = make_sb3_model("ppo", task="matching:qa", num_envs=4, device="cpu")
    policy = model.policy
    assert policy.action_net.weight is policy.features_extractor.trunk.token_embedding.weight
    params = [p for group in policy.optimizer.param_groups for p in group["params"]]
    assert any(p is policy.action_net.weight for p in params) and len(params) == len({id(p) for p in params})


def test_bad_algo_is_refused():
    with pytest.raises(ValueError, match="unknown algo 'dqn'"):
        make_sb3_model("dqn")


# -- learning --------------------------------------------------------------------------------------------

#: PPO on matching:summary, the easy configuration: 64 envs x 16 steps per update, 4 epochs, lr 3e-3.
LEARNING = {"num_envs": 64, "n_steps": 16, "batch_size": 256, "n_epochs": 4, "learning_rate": 3e-3}


def ppo_scores(total_timesteps: int) -> np.ndarray:
    model = make_sb3_model("ppo", task="matching:summary", device="cpu", **LEARNING)
    recorder = ScoreRecorder()
    model.learn(total_timesteps=total_timesteps, callback=recorder)
    return np.array(recorder.scores)


def test_ppo_raises_the_score_above_random():
    """20k steps: at 12k, seed 0 ended at 1.38x random on an AMD EPYC (floating point differs by CPU) and
    1.4x+ on a Xeon; at 20k seeds 0 and 1 reach 1.87x there."""
    random = policy_scores("matching:summary", "random", episodes=1000, split="train").mean()
    scores = ppo_scores(20_000)
    assert scores[-200:].mean() > 1.4 * random, (scores[:200].mean(), scores[-200:].mean(), random)


@pytest.mark.slow
def test_ppo_doubles_the_random_score():
    random = policy_scores("matching:summary", "random", episodes=1000, split="train").mean()
    scores = ppo_scores(30_000)
    assert scores[-300:].mean() > 2.0 * random, (scores[:300].mean(), scores[-300:].mean(), random)
