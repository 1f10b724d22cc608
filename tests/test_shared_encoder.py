"""The RLOO update encodes each distinct source of a minibatch once (``PPOConfig.share_encoder``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from agents.model import ModelConfig, PolicyModel
from agents.ppo import (
    ActionEvaluator,
    PPOConfig,
    advantages_for,
    encode_distinct,
    minibatch_order,
    ppo_update,
)
from agents.rollout import collect
from agents.supervised import reference_targets
from ir_env import PAD, BatchedInstantRewardEnv, make_task


def _rloo_rollout(task, num_envs: int = 16, k: int = 4, seed: int = 0):
    """A rollout of ``num_envs / k`` examples played k times each, as the trainer plays them for RLOO,
    with episodes of many lengths and each example's reference attached."""
    torch.manual_seed(seed)
    model = PolicyModel(ModelConfig.preset("tiny", len(task.vocab), task.max_source_len, task.max_generation_len))
    env = BatchedInstantRewardEnv(num_envs=num_envs, task=task, info_text=False, copy=False)
    examples = np.repeat(np.random.default_rng(seed).integers(len(task.examples("train").source_len), size=num_envs // k), k)
    batch = collect(model, env, seed=seed, generator=torch.Generator().manual_seed(seed), example_ids=examples)
    lengths = np.random.default_rng(seed + 1).integers(2, 16, size=num_envs)
    live = torch.arange(batch.actions.shape[1]) < torch.as_tensor(lengths)[:, None]
    references = torch.as_tensor(reference_targets(env.episodes.examples, task.max_generation_len))[batch.example_ids]
    batch = dataclasses.replace(batch, actions=batch.actions.masked_fill(~live, PAD), mask=live, lengths=lengths,
                                logprobs=batch.logprobs * live, values=batch.values * live,
                                rewards=batch.rewards * live, references=references)
    return model, batch


def test_minibatch_order_keeps_rloo_groups_whole_and_permutes_rows_otherwise():
    order = minibatch_order(16, PPOConfig(algo="rloo", num_envs=16, rloo_k=4), np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(16))
    groups = order.reshape(4, 4)
    assert all(g.tolist() == list(range(g[0], g[0] + 4)) and g[0] % 4 == 0 for g in groups)
    assert sorted(groups[:, 0].tolist()) == [0, 4, 8, 12]
    # PPO and REINFORCE: the same rows order as before groups existed (rng.permutation over rows)
    for algo in ("ppo", "reinforce"):
        order = minibatch_order(16, PPOConfig(algo=algo, num_envs=16), np.random.default_rng(5))
        assert order.tolist() == np.random.default_rng(5).permutation(16).tolist()


def test_encode_distinct_encodes_each_source_once_and_maps_every_row_to_it():
    task = make_task("translation")
    model, batch = _rloo_rollout(task)
    model.eval()
    minibatch = np.array([0, 1, 2, 3, 8, 9, 10, 11])  # two examples, four samples each
    source_len = (batch.source != PAD).sum(dim=1).numpy()
    memory, leaf, slot, pad = encode_distinct(ActionEvaluator(model), batch, minibatch, source_len)
    assert memory.shape[0] == 2 and leaf.requires_grad and leaf.grad_fn is None
    assert len(set(slot[minibatch[:4]].tolist())) == 1 and slot[0] != slot[8]
    width = memory.shape[1]
    assert width == source_len[minibatch].max()
    with torch.no_grad():
        for row in minibatch:
            own, own_pad = model.encode(batch.source[row : row + 1, :width])
            torch.testing.assert_close(memory[slot[row]], own[0], atol=1e-5, rtol=1e-5)
            assert torch.equal(pad[slot[row]], own_pad[0])


def test_forward_with_the_sources_encoded_is_the_forward_that_encodes_them():
    task = make_task("translation")
    model, batch = _rloo_rollout(task)
    model.eval()
    source, actions = batch.source[:4], batch.actions[:4]
    mask = torch.as_tensor(task.action_mask())
    plain = model.evaluate_actions(source, actions, mask)
    given = model.evaluate_actions(source, actions, mask, encoded=model.encode(source))
    for a, b in zip(plain, given):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="encoded has 3 rows but source has 4"):
        model.evaluate_actions(source, actions, mask, encoded=model.encode(source[:3]))


@pytest.mark.parametrize("groups, mle_coef", [(1, 0.0), (3, 0.0), (3, 0.5)])
def test_the_update_with_a_shared_encoder_is_the_update_that_encodes_every_row(groups, mle_coef):
    """Same weights and statistics, up to float rounding (dropout off; with it on, the k samples of one
    source would share its encoder's dropout mask)."""
    task = make_task("translation")
    start, batch = _rloo_rollout(task)
    mask = torch.as_tensor(task.action_mask())
    results = []
    for share in (False, True):
        model = PolicyModel(start.config).eval()
        model.load_state_dict(start.state_dict())
        config = PPOConfig(algo="rloo", num_envs=16, num_minibatches=2, rloo_k=4, length_groups=groups,
                           mle_coef=mle_coef, share_encoder=share)
        advantages, returns = advantages_for(batch, batch.rewards, config)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # the weights move by the gradients themselves
        stats = ppo_update(ActionEvaluator(model), optimizer, batch, advantages, returns, config, mask,
                           np.random.default_rng(0))
        results.append((stats, model.state_dict()))
    (plain, plain_weights), (shared, shared_weights) = results
    assert plain.keys() == shared.keys()
    for key in plain:
        assert shared[key] == pytest.approx(plain[key], rel=1e-4, abs=1e-6), key
    encoder_moved = False
    for name, weight in plain_weights.items():
        torch.testing.assert_close(shared_weights[name], weight, atol=2e-6, rtol=1e-4, msg=name)
        if name.startswith("encoder."):
            encoder_moved |= not torch.equal(weight, start.state_dict()[name])
    assert encoder_moved, "the encoder's backward must run with a shared encoder (the check can fail)"


@pytest.mark.parametrize("groups, share", [(1, False), (3, True)])
def test_the_mle_term_scores_each_examples_reference_once_with_the_same_update(monkeypatch, groups, share):
    """RLOO plays each example k times; ppo_update scores its reference once per minibatch
    (``first_of_each_example``). Minibatches hold whole groups, so the mean NLL and the update are those of
    scoring every row's reference (monkeypatched back), up to float rounding."""
    import agents.ppo as ppo_module

    task = make_task("translation")
    start, batch = _rloo_rollout(task)
    assert len(set(batch.example_ids.tolist())) == 4, "four distinct examples, four samples each"
    first = ppo_module.first_of_each_example(batch, np.arange(16))
    assert first.sum() == 4 and sorted(batch.example_ids[first].tolist()) == sorted(set(batch.example_ids.tolist()))
    mask = torch.as_tensor(task.action_mask())
    results = []
    for once in (True, False):
        if not once:
            monkeypatch.setattr(ppo_module, "first_of_each_example", lambda b, rows: np.ones(len(b.example_ids), bool))
        model = PolicyModel(start.config).eval()
        model.load_state_dict(start.state_dict())
        config = PPOConfig(algo="rloo", num_envs=16, num_minibatches=2, rloo_k=4, length_groups=groups,
                           mle_coef=0.5, share_encoder=share)
        advantages, returns = advantages_for(batch, batch.rewards, config)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        stats = ppo_update(ActionEvaluator(model), optimizer, batch, advantages, returns, config, mask,
                           np.random.default_rng(0))
        results.append((stats, model.state_dict()))
    (once_stats, once_weights), (every_stats, every_weights) = results
    assert once_stats["mle_nll"] > 0
    for key in every_stats:
        assert once_stats[key] == pytest.approx(every_stats[key], rel=1e-4, abs=1e-6), key
    for name, weight in every_weights.items():
        torch.testing.assert_close(once_weights[name], weight, atol=2e-6, rtol=1e-4, msg=name)


def test_a_rloo_rollout_encodes_each_distinct_source_once_on_the_columns_in_use(monkeypatch):
    """collect starts the decode with ``start_distinct``: the k samples of an example share one encoder
    row, and the trailing all-PAD columns of the env's padded sources are not encoded."""
    task = make_task("translation")
    torch.manual_seed(0)
    model = PolicyModel(ModelConfig.preset("tiny", len(task.vocab), task.max_source_len, task.max_generation_len)).eval()
    encoded = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda source, embedded=None: encoded.append(tuple(source.shape)) or encode(source, embedded))
    env = BatchedInstantRewardEnv(num_envs=16, task=task, info_text=False, copy=False)
    examples = np.repeat([3, 11, 3, 40], 4)  # three distinct examples, one of them in two groups
    batch = collect(model, env, seed=0, generator=torch.Generator().manual_seed(0), example_ids=examples)
    width = int(env.episodes.examples.source_len[examples].max())
    assert width < task.max_source_len, "the test needs sources shorter than the cap"
    assert encoded == [(3, width)]
    assert batch.source.shape == (16, task.max_source_len), "the rollout keeps the env's full-width sources"


@pytest.mark.parametrize("greedy", [True, False])
def test_a_rollout_started_on_distinct_sources_plays_the_episodes_of_the_plain_start(monkeypatch, greedy):
    """start_distinct only saves work: episodes, rewards and scores are those of ``model.start`` on the
    full (N, S) sources; log-probabilities and values up to float rounding."""
    import agents.rollout as rollout_module

    task = make_task("translation")
    torch.manual_seed(1)
    model = PolicyModel(ModelConfig.preset("tiny", len(task.vocab), task.max_source_len, task.max_generation_len)).eval()
    examples = np.repeat(np.random.default_rng(1).integers(len(task.examples("train").source_len), size=6), 4)
    batches = []
    for start in (rollout_module.start_distinct, lambda m, source: m.start(source)):
        monkeypatch.setattr(rollout_module, "start_distinct", start)
        env = BatchedInstantRewardEnv(num_envs=24, task=task, info_text=False, copy=False)
        batches.append(collect(model, env, seed=2, generator=torch.Generator().manual_seed(2), greedy=greedy,
                               example_ids=examples))
    shared, plain = batches
    np.testing.assert_array_equal(shared.lengths, plain.lengths)
    np.testing.assert_array_equal(shared.scores, plain.scores)
    for name in ("source", "actions", "mask", "rewards"):
        assert torch.equal(getattr(shared, name), getattr(plain, name)), name
    for name in ("logprobs", "values"):
        torch.testing.assert_close(getattr(shared, name), getattr(plain, name), atol=1e-5, rtol=0, msg=name)
    if not greedy:
        assert len({tuple(a.tolist()) for a in shared.actions}) > 6, "the samples of an example differ"
