"""Fluency measures: perplexity under a reference model (against a direct cross-entropy), distinct-n."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from agents.fluency import generation_stats, perplexity
from agents.model import ModelConfig, PolicyModel
from ir_env import BOS, EOS, PAD

V, S, T = 20, 5, 6


@pytest.fixture(scope="module")
def model() -> PolicyModel:
    torch.manual_seed(0)
    return PolicyModel(ModelConfig.preset("tiny", V, S, T)).eval()


def direct_nll(model: PolicyModel, source: np.ndarray, output: list[int], with_eos: bool) -> tuple[float, int]:
    """Negative log-likelihood of one output by a plain teacher-forced pass and cross-entropy."""
    target = list(output) + ([EOS] if with_eos else [])
    target_in = torch.tensor([[BOS] + target[:-1]])
    with torch.no_grad():
        logits, _ = model(torch.as_tensor(source[None]), target_in)
    return float(F.cross_entropy(logits[0].double(), torch.tensor(target), reduction="sum")), len(target)


def test_perplexity_equals_exp_of_the_mean_token_cross_entropy(model):
    rng = np.random.default_rng(0)
    sources = rng.integers(4, V, size=(5, S))
    outputs = [list(rng.integers(4, V, size=n)) for n in (1, 3, 6, 2, 4)]  # the 6-token one hit T: no EOS
    total, count = 0.0, 0
    for s, o in zip(sources, outputs):
        nll, n = direct_nll(model, s, o, with_eos=len(o) < T)
        total, count = total + nll, count + n
    assert perplexity(model, sources, outputs, batch_size=2) == pytest.approx(math.exp(total / count), rel=1e-5)


def test_explicit_eos_flags_decide_whether_eos_is_scored(model):
    sources = np.full((1, S), 5)
    with_eos = perplexity(model, sources, [[6, 7]], ends_with_eos=[True])
    without = perplexity(model, sources, [[6, 7]], ends_with_eos=[False])
    nll, n = direct_nll(model, sources[0], [6, 7], with_eos=False)
    assert without == pytest.approx(math.exp(nll / n), rel=1e-5)
    assert with_eos != pytest.approx(without)


def test_the_models_own_greedy_output_is_less_surprising_than_random_tokens(model):
    rng = np.random.default_rng(1)
    sources = rng.integers(4, V, size=(32, S))
    greedy = model.sample(torch.as_tensor(sources), T, greedy=True).numpy()
    own = [[t for t in row if t not in (PAD, EOS)] for row in greedy]
    random = [list(rng.integers(4, V, size=max(1, len(o)))) for o in own]
    assert perplexity(model, sources, own) < perplexity(model, sources, random)


def test_perplexity_refuses_mismatched_or_overlong_inputs(model):
    with pytest.raises(ValueError, match="one source per output"):
        perplexity(model, np.zeros((2, S), dtype=np.int64), [[5]])
    with pytest.raises(ValueError, match="more than the model's T"):
        perplexity(model, np.zeros((1, S), dtype=np.int64), [[5] * (T + 1)])


def test_generation_stats_count_repeats_and_distinct_bigrams():
    stats = generation_stats([[5, 6, 5, 7], [5, 6]])
    assert stats["length"] == 3.0
    assert stats["repetition"] == pytest.approx(1 / 6)  # one repeated token out of six
    assert stats["distinct2"] == pytest.approx(3 / 4)  # (5,6) (6,5) (5,7) (5,6)
    assert math.isclose(generation_stats([[4]])["distinct2"], 0.0)
