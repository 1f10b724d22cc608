"""Maximum-likelihood loss: over the task's allowed actions (the default of ``mle_train``) or the whole
vocabulary, checked against the masked softmax written out by hand."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from agents.model import ModelConfig, PolicyModel, apply_action_mask
from agents.supervised import MLEConfig, mle_train, sequence_loss
from ir_env import BOS, EOS, PAD, UNK, make_task

V, S, T = 40, 8, 6


def tiny_model(seed: int = 0) -> PolicyModel:
    torch.manual_seed(seed)
    return PolicyModel(ModelConfig.preset("tiny", V, S, T))


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    source = torch.randint(5, V, (4, S), generator=g)
    mask = torch.zeros(V, dtype=torch.bool)
    mask[[EOS, *range(20, 35)]] = True
    targets = torch.randint(20, 35, (4, T), generator=g)
    targets[0, 2] = UNK  # a rare reference word: not an action the policy may take
    targets[1, 4:] = torch.tensor([EOS, PAD])
    targets[2, 3:] = torch.tensor([EOS, PAD, PAD])
    return source, targets, mask


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_masked_loss_is_the_cross_entropy_of_the_masked_softmax_without_forbidden_targets(smoothing):
    source, targets, mask = batch()
    model = tiny_model()
    loss = sequence_loss(model, source, targets, smoothing, action_mask=mask)

    target_in = torch.cat([torch.full((4, 1), BOS), targets[:, :-1]], dim=1)
    logits, _ = model(source, target_in)
    logp = F.log_softmax(apply_action_mask(logits, mask), dim=-1)  # (B, T, V)
    kept = mask[targets]  # PAD and UNK are not allowed, so left out
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    uniform = -logp[..., mask].mean(-1)  # label smoothing spreads over the allowed actions only
    expected = ((1 - smoothing) * nll + smoothing * uniform)[kept].mean()
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)
    assert int(kept.sum()) == 4 * T - 1 - 1 - 2, "one UNK and three PADs are left out"


def test_without_a_mask_the_loss_covers_the_whole_vocabulary_and_unk_targets():
    source, targets, mask = batch()
    model = tiny_model()
    target_in = torch.cat([torch.full((4, 1), BOS), targets[:, :-1]], dim=1)
    logits, _ = model(source, target_in)
    expected = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=PAD)
    torch.testing.assert_close(sequence_loss(model, source, targets), expected)
    assert sequence_loss(model, source, targets, action_mask=mask) < expected, "fewer classes, lower loss at init"


@pytest.mark.parametrize("output_mask", [True, False])
def test_mle_learns_the_references_with_and_without_the_output_mask(output_mask):
    task = make_task("translation")
    torch.manual_seed(0)
    model = PolicyModel(ModelConfig.preset("tiny", len(task.vocab), task.max_source_len, task.max_generation_len))
    losses = mle_train(model, task, MLEConfig(steps=60, batch_size=32, learning_rate=3e-3, warmup_steps=10,
                                              output_mask=output_mask), seed=0)
    assert sum(losses[-10:]) / 10 < 0.85 * sum(losses[:3]) / 3, losses[::10]
