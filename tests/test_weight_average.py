"""agents.supervised.WeightAverage: the exponential moving average of weights used to score MLE runs."""

from __future__ import annotations

import pytest
import torch

from agents.supervised import WeightAverage


def test_the_average_follows_the_ema_recursion_and_copies_into_the_model():
    model = torch.nn.Linear(3, 2)
    start = [p.detach().clone() for p in model.parameters()]
    average = WeightAverage(model, decay=0.9)
    expected = [s.clone() for s in start]
    for k in range(1, 4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(float(k))
        average.update()
        expected = [0.9 * e + 0.1 * p.detach() for e, p in zip(expected, model.parameters())]
    for avg, e in zip(average.params, expected):
        torch.testing.assert_close(avg, e)
    # the model still holds its own (last) weights until the average is copied in
    for p, s in zip(model.parameters(), start):
        torch.testing.assert_close(p.detach(), s + 6.0)
    other = torch.nn.Linear(3, 2)
    average.copy_to(other)
    average.copy_to()
    for a, b, e in zip(model.parameters(), other.parameters(), expected):
        torch.testing.assert_close(a.detach(), e)
        torch.testing.assert_close(b.detach(), e)


def test_the_average_of_constant_weights_is_those_weights():
    model = torch.nn.Linear(4, 4)
    average = WeightAverage(model, decay=0.998)
    for _ in range(10):
        average.update()
    for avg, p in zip(average.params, model.parameters()):
        torch.testing.assert_close(avg, p.detach())


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 2.0])
def test_a_decay_outside_zero_one_is_refused(decay):
    with pytest.raises(ValueError, match="decay must be in"):
        WeightAverage(torch.nn.Linear(2, 2), decay)


def test_mle_with_ema_decay_ends_holding_the_average_of_its_own_run():
    from agents.model import ModelConfig, PolicyModel
    from agents.supervised import MLEConfig, mle_train
    from ir_env import make_task

    task = make_task("translation")

    def fresh() -> PolicyModel:
        torch.manual_seed(0)
        return PolicyModel(ModelConfig.preset("tiny", len(task.vocab), task.max_source_len, task.max_generation_len))

    config = dict(steps=6, batch_size=8)
    by_config = fresh()
    mle_train(by_config, task, MLEConfig(**config, ema_decay=0.5), seed=1)
    by_hand, raw = fresh(), fresh()
    average = WeightAverage(by_hand, 0.5)
    mle_train(by_hand, task, MLEConfig(**config), seed=1, average=average)
    mle_train(raw, task, MLEConfig(**config), seed=1)
    for p, q, r in zip(by_config.parameters(), by_hand.parameters(), raw.parameters()):
        torch.testing.assert_close(q, r)  # an average passed in is the caller's: the model keeps its weights
    average.copy_to()
    for p, q in zip(by_config.parameters(), by_hand.parameters()):
        torch.testing.assert_close(p, q)
    assert any(not torch.equal(p, r) for p, r in zip(by_config.parameters(), raw.parameters()))
    with pytest.raises(ValueError, match="ema_decay"):
        MLEConfig(ema_decay=1.0)
