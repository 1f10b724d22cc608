"""benchmarks/length_hold.py and PolicyModel.sample's eos_bias: greedy length falls as EOS's logit rises, and
hold_length finds the bias where the length crosses its target."""

from __future__ import annotations

import pytest
import torch

from agents.model import ModelConfig, PolicyModel
from agents.supervised import MLEConfig, mle_train
from benchmarks.length_hold import greedy_length, hold_length
from ir_env.tasks import make_task
from ir_env.tokenizer import EOS

ROWS = range(48)


@pytest.fixture(scope="module")
def task():
    return make_task("translation")


@pytest.fixture(scope="module")
def model(task):
    """A tiny model after a few maximum-likelihood steps: it ends some outputs early and some late (a model at
    its initial weights never picks EOS, which would leave nothing to calibrate)."""
    torch.manual_seed(0)
    config = ModelConfig.preset("tiny", len(task.vocab), task.max_source_len, task.max_generation_len)
    model = PolicyModel(config)
    mle_train(model, task, MLEConfig(steps=40, batch_size=32, warmup_steps=10), seed=0)
    return model.eval()


def test_a_zero_bias_is_plain_greedy_and_extreme_biases_end_at_once_or_never(task, model):
    source = torch.as_tensor(task.examples("train").source[:16])
    mask = torch.as_tensor(task.action_mask())
    plain = model.sample(source, task.max_generation_len, action_mask=mask, greedy=True)
    assert torch.equal(model.sample(source, task.max_generation_len, action_mask=mask, greedy=True, eos_bias=0.0), plain)
    first = model.sample(source, task.max_generation_len, action_mask=mask, greedy=True, eos_bias=1e4)
    assert first.shape[1] == 1 and bool((first[:, 0] == EOS).all())
    assert greedy_length(model, task, ROWS, eos_bias=1e4) == 0
    never = model.sample(source, task.max_generation_len, action_mask=mask, greedy=True, eos_bias=-1e4)
    assert not bool((never == EOS).any()) and never.shape[1] == task.max_generation_len


def test_greedy_length_never_grows_as_the_bias_rises(task, model):
    lengths = [greedy_length(model, task, ROWS, eos_bias=b) for b in (-4.0, -1.0, -0.3, 0.0, 0.3, 1.0, 4.0)]
    assert lengths == sorted(lengths, reverse=True)
    assert lengths[0] > lengths[-1]  # the range moves the length at all, so the order above says something


@pytest.mark.parametrize("towards", ["longer", "shorter"])
def test_hold_length_stops_where_the_length_crosses_the_target(task, model, towards):
    start = greedy_length(model, task, ROWS)
    ends = greedy_length(model, task, ROWS, eos_bias=-4.0), greedy_length(model, task, ROWS, eos_bias=4.0)
    target = (start + ends[0]) // 2 if towards == "longer" else (start + ends[1]) // 2
    assert target != start
    bias, length = hold_length(model, task, target, ROWS)
    assert (bias < 0) == (towards == "longer")
    assert length == greedy_length(model, task, ROWS, eos_bias=bias)
    # within the bisection's resolution (4 / 2**12 logits) of the bias, the length is on both sides of the target
    step = 0.01
    assert greedy_length(model, task, ROWS, eos_bias=bias - step) >= target >= greedy_length(model, task, ROWS, eos_bias=bias + step)


def test_hold_length_keeps_a_model_that_already_gives_the_target(task, model):
    assert hold_length(model, task, greedy_length(model, task, ROWS), ROWS) == (0.0, greedy_length(model, task, ROWS))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "1"])
def test_a_bias_that_is_not_a_finite_number_is_refused(task, model, bad):
    with pytest.raises(ValueError, match="eos_bias must be a finite number"):
        model.sample(torch.as_tensor(task.examples("train").source[:2]), 4, greedy=True, eos_bias=bad)


def test_bad_targets_and_rows_are_refused(task, model):
    with pytest.raises(ValueError, match="target must be a number of tokens >= 0"):
        hold_length(model, task, -1, ROWS)
    with pytest.raises(ValueError, match="non-empty 1-d sequence"):
        greedy_length(model, task, [])
