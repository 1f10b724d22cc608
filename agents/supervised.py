"""Maximum-likelihood warm start: teacher-forced cross-entropy on the task's reference outputs.

The usual start before RL on text: the policy first learns to imitate the references (reference
translations, answers, fluent sentiment continuations), then RL optimises the task score from there. The
same model later serves as the frozen reference of the KL penalty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from agents.model import PolicyModel
from ir_env import EOS, PAD
from ir_env.tasks.base import Examples, Task


@dataclass
class MLEConfig:
    """Hyper-parameters of the warm start."""

    steps: int = 1000
    """Optimiser steps."""
    batch_size: int = 128
    """Sequences per step."""
    learning_rate: float = 2e-3
    """Peak Adam step size: linear warm-up over ``warmup_steps``, then linear decay to 10%."""
    warmup_steps: int = 100
    """Steps of linear learning-rate warm-up."""
    label_smoothing: float = 0.0
    """Cross-entropy label smoothing."""
    max_grad_norm: float = 1.0
    """Gradient norm clip."""


def reference_targets(examples: Examples, max_len: int) -> np.ndarray:
    """(M, max_len) int64 targets: each reference followed by EOS (if it fits), PAD after."""
    m, width = examples.reference.shape
    out = np.full((m, max_len), PAD, dtype=np.int64)
    w = min(width, max_len)
    out[:, :w] = examples.reference[:, :w]
    has_room = examples.reference_len < max_len
    out[np.flatnonzero(has_room), examples.reference_len[has_room]] = EOS
    return out


def sequence_loss(model: PolicyModel, source: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean token cross-entropy of ``targets`` (B, T) given ``source`` (B, S); PAD targets are ignored."""
    bos = torch.full_like(targets[:, :1], 1)
    logits, _ = model(source, torch.cat([bos, targets[:, :-1]], dim=1))  # (B, T, V)
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD, label_smoothing=label_smoothing
    )


def mle_train(
    model: PolicyModel,
    task: Task,
    config: MLEConfig,
    seed: int = 0,
    autocast: torch.autocast | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``model`` on ``task``'s train references; returns the loss of every step."""
    device = next(model.parameters()).device
    examples = task.examples("train")
    targets = torch.as_tensor(reference_targets(examples, model.config.max_target_len), device=device)
    sources = torch.as_tensor(examples.source, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    def lr_factor(step: int) -> float:
        return min(1.0, (step + 1) / max(config.warmup_steps, 1)) * max(0.1, 1.0 - step / max(config.steps, 1))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    rng = np.random.default_rng(seed)
    losses = []
    model.train()
    for step in range(config.steps):
        idx = torch.as_tensor(rng.integers(len(examples), size=config.batch_size), device=device)
        if autocast is not None:
            with autocast:
                loss = sequence_loss(model, sources[idx], targets[idx], config.label_smoothing)
        else:
            loss = sequence_loss(model, sources[idx], targets[idx], config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        schedule.step()
        losses.append(loss.detach().item())
        if on_step is not None:
            on_step(step, losses[-1])
    return losses
