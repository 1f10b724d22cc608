"""RL after a maximum-likelihood warm start (issue 4): PPO on the instant reward raises the greedy valid BLEU
of the built-in translation task.

The recipe: the ``tiny`` policy is trained by maximum likelihood until it is half-trained (the mean loss of the
last 20 steps below 1.7: 350-740 steps by seed, greedy valid BLEU/100 0.20-0.39 on seeds 0-9), then PPO runs
30k tokens with rollouts at temperature 0.2 and 256 episodes per Adam step. Measured on seeds 0-4 it raises
the greedy valid BLEU/100 by +0.025 to +0.048 (all 1000 valid examples); on seeds 5-9 by +0.006 to +0.054.
The two settings that matter, from the same five warm starts (mean change): the rollout temperature (at
temperature 1 PPO lowers BLEU by 0.025, and by 0.15 with the default 64 episodes in 16-episode minibatches)
and large minibatches (at temperature 0.2 with 16-episode minibatches BLEU still drops by 0.04; 64-episode
minibatches do as well as 256). Seed 2 runs by default (its warm start is the shortest, about a minute in
all on one CPU thread); the other seeds of the 5-seed check are marked slow. These figures were measured
with the whole-vocabulary MLE loss; with the loss over the allowed actions (``MLEConfig.output_mask``, the
default since 2026-11-29) seeds 0-4 still pass (``-m slow``), the per-seed gains not re-measured.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agents.checkpoint import export_weights
from agents.ppo import PPOConfig
from agents.rollout import evaluate
from agents.supervised import MLEConfig, mle_train
from agents.trainer import RunConfig, build_model, train
from ir_env import make_task

TASK = "translation"
HALF_TRAINED_LOSS = 1.7
"""The warm start stops once its mean training loss over ``LOSS_WINDOW`` steps falls below this: halfway
through the tiny policy's drop from a plateau near 3.5 (greedy BLEU/100 about 0.07) to near-perfect
translations, which comes anywhere between steps 300 and 750 depending on the seed, so a fixed step count
would leave some seeds untrained and others saturated."""
LOSS_WINDOW = 20
MAX_WARM_START_STEPS = 1000
EVAL_EXAMPLES = 1000  # the whole valid split: the gain is measured on the same 1000 sentences before and after
RL_TOKENS = 30_000
PPO = PPOConfig(
    temperature=0.2,  # samples near the greedy policy that is evaluated; at 1.0 greedy BLEU falls
    learning_rate=1e-4,
    num_envs=256,
    num_minibatches=1,  # 256 episodes per Adam step; 16-episode minibatches make the warm start worse
    update_epochs=3,
    lr_warmup_updates=3,  # 30k tokens are only 12 updates of 256 episodes
    value_warmup_updates=2,
)
MIN_GAIN = 0.01
"""Required rise of greedy valid BLEU/100; the smallest gain on seeds 0-4 is +0.025 (seed 2: +0.041)."""


class _HalfTrained(Exception):
    """Raised by the warm start's ``on_step`` callback to end ``mle_train`` once the policy is half-trained."""


def half_trained_warm_start(seed: int, path: Path) -> float:
    """Maximum-likelihood training of the tiny policy until it is half-trained; saves the weights to ``path``
    and returns their greedy valid BLEU/100."""
    task = make_task(TASK)
    model = build_model(RunConfig(task=TASK, seed=seed), task, torch.device("cpu"))
    losses: list[float] = []

    def stop_when_half_trained(step: int, loss: float) -> None:
        losses.append(loss)
        if len(losses) >= LOSS_WINDOW and sum(losses[-LOSS_WINDOW:]) / LOSS_WINDOW < HALF_TRAINED_LOSS:
            raise _HalfTrained

    # inverse_sqrt: the learning rate does not depend on the step budget, so stopping early is sound.
    config = MLEConfig(steps=MAX_WARM_START_STEPS, schedule="inverse_sqrt")
    with pytest.raises(_HalfTrained):  # the loss target is reached within MAX_WARM_START_STEPS
        mle_train(model, task, config, seed=seed, on_step=stop_when_half_trained)
    export_weights(model, path)
    return evaluate(model.eval(), TASK, "valid", max_examples=EVAL_EXAMPLES)["score"]


@pytest.mark.parametrize("seed", [2, *(pytest.param(s, marks=pytest.mark.slow) for s in (0, 1, 3, 4))])
def test_ppo_on_the_instant_reward_raises_valid_bleu_from_a_half_trained_warm_start(tmp_path, seed):
    warm = tmp_path / "warm.safetensors"
    before = half_trained_warm_start(seed, warm)
    assert 0.1 < before < 0.9, f"the warm start should be half-trained; greedy valid BLEU/100 {before:.4f}"

    summary = train(RunConfig(
        task=TASK, reward="instant", seed=seed, init=str(warm), total_tokens=RL_TOKENS, device="cpu",
        out=str(tmp_path / "rl"), ppo=PPO, eval_every=0, eval_examples=EVAL_EXAMPLES, checkpoint_every=10**9,
        progress=False,
    ))
    after = summary["valid"]["score"]
    assert summary["tokens"] >= RL_TOKENS and summary["valid"]["episodes"] == EVAL_EXAMPLES
    assert after > before + MIN_GAIN, f"greedy valid BLEU/100 {before:.4f} -> {after:.4f} after {summary['tokens']} tokens"
