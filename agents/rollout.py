"""Generate whole episodes on the batched env with the policy's KV cache, and evaluate a policy.

A rollout resets every row of a ``BatchedInstantRewardEnv`` and steps until every row has finished one
episode, so it returns complete sequences, (N, T) arrays, ready for one teacher-forced pass in the update.
A row that finished early keeps being stepped with EOS (the env has auto-reset it; those one-step
episodes are not recorded and not counted as generated tokens).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from agents.model import (
    COMPACT_AT,
    DecodeState,
    PolicyModel,
    allowed_actions,
    apply_action_mask,
    sample_categorical,
)
from ir_env import BOS, EOS, PAD, BatchedInstantRewardEnv


@dataclass
class Rollout:
    """N complete episodes; per-step arrays are (N, T) with T the task's length cap, zero past each end."""

    source: torch.Tensor  # (N, S) int64
    actions: torch.Tensor  # (N, T) int64, PAD after the last step
    logprobs: torch.Tensor  # (N, T) float32 log pi_old(a_t | s_t)
    values: torch.Tensor  # (N, T) float32 V(s_t)
    rewards: torch.Tensor  # (N, T) float32 env rewards
    mask: torch.Tensor  # (N, T) bool: step t belongs to the episode
    scores: np.ndarray  # (N,) R(y) of each finished output
    lengths: np.ndarray  # (N,) number of steps (tokens, counting a final EOS)
    example_ids: np.ndarray  # (N,) the examples played
    env_seconds: float = 0.0  # wall time spent inside env.step
    references: torch.Tensor | None = None  # (N, T) int64: each example's reference, EOS, PAD (for mle_coef)

    @property
    def num_tokens(self) -> int:
        """Env steps that belong to the recorded episodes."""
        return int(self.lengths.sum())


def _policy_dist(logits: torch.Tensor, action_mask: torch.Tensor | None, temperature: float) -> torch.Tensor:
    """Log-probabilities of the masked (None: already restricted to the allowed actions), tempered policy,
    in float32."""
    return torch.log_softmax(apply_action_mask(logits.float() / temperature, action_mask), dim=-1)


def start_distinct(model: PolicyModel, source: torch.Tensor) -> DecodeState:
    """``model.start(source)`` that encodes each distinct source once, on the columns some source uses.

    RLOO plays every example k times, so a rollout's rows repeat each source k-fold, and the env pads every
    source to the task's cap (Multi30k: 32 columns for sentences of 13 tokens on average): encoding the
    (N, S) block as it comes costs k times the distinct rows at S / longest columns each. The trailing
    columns that are PAD in every row are cut (attention ignores PAD and positions count from the left, so
    the other positions' outputs are unchanged up to float rounding), the distinct rows are encoded, and
    the state is expanded back to one row per source (``select_rows`` copies, so rows stay independent).
    The state's memory is ``width`` columns wide: restart rows with ``reset_rows`` only on a full-width
    ``model.start``. ``benchmarks.rollout_start`` measures the saving."""
    used = torch.nonzero((source != PAD).any(0))
    width = int(used.max()) + 1 if used.numel() else 1
    source = source[:, :width]
    distinct, inverse = torch.unique(source, dim=0, return_inverse=True)
    if len(distinct) == len(source):
        return model.start(source)
    return model.select_rows(model.start(distinct), inverse)


@torch.no_grad()
def collect(
    model: PolicyModel,
    env: BatchedInstantRewardEnv,
    seed: int,
    generator: torch.Generator | None = None,
    greedy: bool = False,
    temperature: float = 1.0,
    example_ids: np.ndarray | None = None,
) -> Rollout:
    """Play one episode in every row of ``env`` with ``model``.

    Args:
        model: the policy (its device is used; eval-mode forward is the caller's choice).
        env: the batched env; it is reset with ``seed`` (row i with seed + i).
        seed: the env seed of this rollout.
        generator: torch RNG for sampling (on the model's device).
        greedy: argmax decoding instead of sampling.
        temperature: softmax temperature of sampling (1 = the policy itself).
        example_ids: optional (N,) examples to play (evaluation, RLOO groups); default: drawn by the env.
    """
    device = next(model.parameters()).device
    options = None if example_ids is None else {"example_index": np.asarray(example_ids)}
    obs, info = env.reset(seed=seed, options=options)
    played = np.asarray(info["example_index"]).copy()
    n, t_max = env.num_envs, env.task.max_generation_len
    action_mask = torch.as_tensor(env.task.action_mask(), device=device)
    # Logits of the allowed actions only where the mask is a proper subset: same policy, less work.
    subset = allowed_actions(action_mask, model.config.vocab_size, device)
    ids, step_mask = (None, action_mask) if subset is None else (subset[0], None)
    source = torch.tensor(obs["source"], device=device)  # a copy: with copy=False obs is a read-only view
    state = start_distinct(model, source)

    actions = torch.zeros((n, t_max), dtype=torch.int64, device=device)
    logprobs = torch.zeros((n, t_max), dtype=torch.float32, device=device)
    values = torch.zeros((n, t_max), dtype=torch.float32, device=device)
    rewards = np.zeros((n, t_max), dtype=np.float32)
    mask = np.zeros((n, t_max), dtype=bool)
    scores = np.zeros(n)
    lengths = np.zeros(n, dtype=np.int64)
    active = np.ones(n, dtype=bool)
    prev = torch.full((n,), BOS, dtype=torch.int64, device=device)
    held = np.arange(n)  # the env rows the decode state holds (finished ones are dropped from it)
    held_t = torch.arange(n, device=device)
    env_seconds = 0.0
    for t in range(t_max):
        logits, value = model.step(state, prev, ids)  # (R, V) or (R, K), (R,) for the R held rows
        logp = _policy_dist(logits, step_mask, temperature)  # (R, V) or (R, K)
        if greedy:
            choice = logp.argmax(-1)
        else:
            choice = sample_categorical(logp.exp(), generator)
        action = choice if ids is None else ids[choice]
        live = torch.as_tensor(active[held], device=device)
        action = torch.where(live, action, torch.full_like(action, EOS))  # finished rows: a throwaway EOS
        actions[held_t, t] = torch.where(live, action, torch.zeros_like(action))
        logprobs[held_t, t] = logp.gather(-1, choice[:, None])[:, 0] * live
        values[held_t, t] = value.float() * live
        action_np = np.full(n, EOS, dtype=np.int64)  # rows no longer held finished earlier: EOS too
        action_np[held] = action.cpu().numpy()
        tick = time.perf_counter()
        _, reward, terminated, _, info = env.step(action_np)
        env_seconds += time.perf_counter() - tick
        rewards[active, t] = reward[active]
        mask[active, t] = True
        ended = active & terminated
        if ended.any():
            scores[ended] = info["final_info"]["score"][ended]
            lengths[ended] = t + 1
        active &= ~terminated
        if not active.any():
            break
        prev = action
        keep = active[held]
        if keep.sum() <= COMPACT_AT * len(held):  # drop finished rows: later steps compute only the live ones
            state = model.select_rows(state, keep)
            held, prev = held[keep], prev[torch.as_tensor(keep, device=device)]
            held_t = torch.as_tensor(held, device=device)
    if active.any():  # cannot happen: the env ends every episode at the length cap
        raise RuntimeError(f"rows {np.flatnonzero(active)[:5].tolist()} did not finish within {t_max} steps")
    return Rollout(
        source=source,
        actions=actions,
        logprobs=logprobs,
        values=values,
        rewards=torch.as_tensor(rewards, device=device),
        mask=torch.as_tensor(mask, device=device),
        scores=scores,
        lengths=lengths,
        example_ids=played,
        env_seconds=env_seconds,
    )


@torch.no_grad()
def evaluate(
    model: PolicyModel,
    task: str,
    split: str = "valid",
    greedy: bool = True,
    num_envs: int = 256,
    max_examples: int | None = None,
    seed: int = 0,
    task_kwargs: dict | None = None,
) -> dict[str, float]:
    """Mean task score of ``model`` over the examples of ``split`` (each example once, in order).

    Returns ``{"score": mean, "length": mean output length, "episodes": count}``.
    """
    env = BatchedInstantRewardEnv(num_envs=num_envs, task=task, split=split, info_text=False, copy=False, **(task_kwargs or {}))
    total = len(env.episodes.examples) if max_examples is None else min(max_examples, len(env.episodes.examples))
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    scores, lengths = [], []
    for start in range(0, total, num_envs):
        ids = np.arange(start, start + num_envs) % len(env.episodes.examples)
        out = collect(model, env, seed=seed + start, generator=generator, greedy=greedy, example_ids=ids)
        keep = min(num_envs, total - start)
        scores.append(out.scores[:keep])
        lengths.append(out.lengths[:keep])
    s, l = np.concatenate(scores), np.concatenate(lengths)
    return {"score": float(s.mean()), "length": float(l.mean()), "episodes": float(len(s))}
