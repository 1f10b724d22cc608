"""Fluency and diversity of generated text: perplexity under a reference model, length, repetition, distinct-n.

A policy that games its reward (VADER rewards "good good good", BLEU rewards frequent n-grams) drifts
away from fluent text; these numbers show it next to the reward. Perplexity is measured under a fixed
reference model (the maximum-likelihood model the RL run started from): how surprising the policy's
outputs are to a model of the task's real text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from agents.model import PolicyModel
from ir_env import EOS, PAD


def generation_stats(rows: Sequence[Sequence[int]]) -> dict[str, float]:
    """Mean length, repetition (share of tokens that repeat an earlier token of the same output) and
    distinct-2 (distinct bigrams / all bigrams, over all outputs) of token-id outputs, EOS excluded."""
    lengths = np.array([len(r) for r in rows], dtype=float)
    repeats = sum(len(r) - len(set(r)) for r in rows)
    bigrams = [tuple(r[i : i + 2]) for r in rows for i in range(len(r) - 1)]
    return {
        "length": float(lengths.mean()) if len(rows) else 0.0,
        "repetition": repeats / max(1.0, lengths.sum()),
        "distinct2": len(set(bigrams)) / len(bigrams) if bigrams else 0.0,
    }


@torch.no_grad()
def perplexity(model: PolicyModel, sources: np.ndarray, outputs: Sequence[Sequence[int]], batch_size: int = 256,
               ends_with_eos: Sequence[bool] | None = None, action_mask: np.ndarray | None = None) -> float:
    """Token-level perplexity of ``outputs`` given ``sources`` under ``model``: exp(-sum log p / tokens).

    Args:
        model: the reference model (temperature 1: the distribution it was trained to be).
        sources: (B, S) int64 source ids, PAD-filled.
        outputs: B token-id outputs, EOS excluded.
        batch_size: rows per forward pass.
        ends_with_eos: per output, whether the episode ended by EOS (then EOS is scored as a token too);
            None: every output that is shorter than the model's T ended with EOS.
        action_mask: (V,) bool, the allowed actions the model was trained to choose among (``mle_train``
            normalises over ``Task.action_mask()`` by default); None: the whole vocabulary.

    Returns:
        The perplexity over all scored tokens (EOS included where it was emitted).
    """
    if len(outputs) != len(sources):
        raise ValueError(f"perplexity needs one source per output, got {len(sources)} sources for {len(outputs)} outputs")
    T = model.config.max_target_len
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    mask = None if action_mask is None else torch.as_tensor(action_mask, device=device)
    total, count = 0.0, 0
    for start in range(0, len(outputs), batch_size):
        chunk = outputs[start:start + batch_size]
        actions = np.full((len(chunk), T), PAD, dtype=np.int64)
        for i, out in enumerate(chunk):
            if len(out) > T:
                raise ValueError(f"output {start + i} has {len(out)} tokens, more than the model's T={T}")
            actions[i, :len(out)] = out
            eos = ends_with_eos[start + i] if ends_with_eos is not None else len(out) < T
            if eos:
                actions[i, len(out)] = EOS
        scored = torch.as_tensor(actions != PAD, device=device)  # (b, T)
        source = torch.as_tensor(np.asarray(sources[start:start + batch_size]), device=device)
        logprobs, _, _ = model.evaluate_actions(source, torch.as_tensor(actions, device=device), mask)  # (b, T)
        total += float(logprobs[scored].double().sum())
        count += int(scored.sum())
    model.train(was_training)
    return float(np.exp(-total / max(count, 1)))
