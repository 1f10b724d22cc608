"""Token-level policy gradient on InstantReward: PPO with GAE, REINFORCE with a baseline, RLOO.

CleanRL-style: the config, then the loop, top to bottom. One update:

1. set the shaping weights of this update (``ShapingSchedule``) on the env;
2. roll out N complete episodes with the policy's KV cache (``agents.rollout.collect``);
3. optional per-token KL penalty to a frozen reference policy (fixed or adaptive coefficient, Ziegler et
   al. 2019), subtracted from the rewards;
4. advantages: GAE(gamma, lambda) for PPO; return-to-go minus the value for REINFORCE; return-to-go
   minus the leave-one-out mean of the other K samples of the same example for RLOO;
5. minibatches over sequences: one teacher-forced pass gives every token's new log-prob, entropy and
   value; clipped PPO loss + value loss - entropy bonus (+ an optional maximum-likelihood term on the
   played examples' references, Wu et al. 2016's mixed objective); gradient clipping.

Every update's randomness (env seeds, sampling, minibatch order) derives from (seed, rank, update), so a
run resumed from a checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from agents.model import PolicyModel
from agents.rollout import Rollout, collect
from ir_env import PAD, REWARD_PARTS

ALGOS = ("ppo", "reinforce", "rloo")
SCHEDULES = ("constant", "linear", "cosine", "adaptive")


@dataclass
class PPOConfig:
    """Hyper-parameters of the learner. Defaults suit the built-in tasks with a small model on a CPU."""

    algo: str = "ppo"
    """ppo (clipped surrogate + GAE), reinforce (return-to-go minus value baseline, one pass) or rloo
    (leave-one-out baseline over ``rloo_k`` samples of each example)."""
    num_envs: int = 64
    """Episodes per rollout and rank (the batched env's N)."""
    learning_rate: float = 3e-4
    """Adam step size."""
    anneal_lr: bool = False
    """Linearly decay the learning rate to 0 over the token budget."""
    lr_warmup_updates: int = 10
    """Ramp the learning rate up linearly over the first updates: Adam's first steps move every weight
    by about the full learning rate whatever its gradient, which can wreck a warm-started policy."""
    value_warmup_updates: int = 5
    """Train only the value head for the first updates, so that a fresh critic's errors do not reach the
    shared trunk through the value loss before its estimates mean anything (PPO only)."""
    gamma: float = 1.0
    """Discount. With gamma = 1 the instant reward's return is exactly the task score."""
    gae_lambda: float = 0.95
    """GAE's bias/variance trade-off (1 = Monte-Carlo returns)."""
    update_epochs: int = 4
    """Passes over each rollout (PPO only; REINFORCE and RLOO take one)."""
    num_minibatches: int = 4
    """Sequence minibatches per pass."""
    length_groups: int = 1
    """Score each minibatch in up to this many teacher-forced passes over groups of sequences of similar
    length (sorted by episode, then source length), each padded only to its own longest, and add their
    gradients before the one optimiser step. Each group's loss is divided by the whole minibatch's token
    count, so the update is the one pass's (up to float rounding) at less padding: it pays where lengths
    vary, as with a trained translation policy, and costs a little where every episode runs to the cap.
    1: one pass per minibatch."""
    relinearise_bleu: bool = False
    """On a BLEU task built with ``bleu_point=`` (``LinearBLEU``, linearised corpus BLEU): after each
    update's rollout, move the point to the mean BLEU statistics of that rollout's outputs, so that the
    reward stays the first-order change of corpus BLEU where the policy now is (a fixed point goes stale
    as the policy moves: past the references' length it still pays the brevity penalty's slope). The
    logged ``score`` is then each update's LinearBLEU at that update's own point, not one fixed scale.
    The point is kept in the checkpoint, so a resumed run continues from where it had moved; under
    torchrun it is the mean over ranks, so every rank moves to the whole rollout's statistics."""
    hold_greedy_length: int = 0
    """Hold the policy's *greedy* output length where training started, through the ``"length"`` reward
    part (the reward needs a length weight > 0): every ``hold_greedy_every`` updates, greedy-decode this
    many training sources (a fixed set drawn with the run's seed) and move the length part's target ratio k
    (the envs' ``set_length_target``) by ``hold_greedy_gain`` times how far their length over their
    references' has fallen below its value at the first update (integral control, k kept in [0.5, 2]).
    Why: on Multi30k the sampled rollouts (temperature 0.5) kept their length while RL shortened the greedy
    outputs that are scored, so a length term on the samples alone did not hold the greedy length
    (``benchmarks/results/multi30k_notes.md``). Measured there (256 sources, two RL seeds on one start): it
    held the greedy length in both; RL - MLE was -0.24 / +1.16 (valid / test2016) on one seed and +1.32 / +1.09
    on the other, against +0.07 / +0.98 and -0.04 / +0.62 without it. k and the start are kept in the
    checkpoint. 0: off."""
    hold_greedy_ratio: float = 0.0
    """The greedy output/reference length ratio (on ``hold_greedy_length``'s sources) that the hold aims at
    instead of the first update's: e.g. 1.0, the references' own length, so that a start whose greedy outputs
    run short of the references (and pay corpus BLEU's brevity penalty) is moved up to them. 0: the first
    update's ratio (hold where training started)."""
    hold_greedy_every: int = 4
    """Updates between two greedy decodes of ``hold_greedy_length``'s sources."""
    hold_greedy_gain: float = 0.5
    """Change of k per decode and unit of length ratio fallen (``hold_greedy_length``)."""
    weight_averages: tuple[float, ...] = ()
    """Decays of exponential moving averages of the policy's weights (``agents.supervised.WeightAverage``),
    updated after every update from the run's start (Polyak averaging of the RL iterates, as the MLE
    recipes average theirs). They do not act on training: each is kept in the checkpoint (a resumed run
    continues them) and written at the end to ``<out>/ema_<decay>.safetensors`` for ``load_weights``.
    With U updates the start keeps a share decay**U of an average. Empty: none."""
    clip_coef: float = 0.2
    """PPO's ratio clipping range."""
    clip_vloss: bool = False
    """Clip the value update like the policy's (CleanRL's option)."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus."""
    max_grad_norm: float = 1.0
    """Gradient norm clip."""
    norm_adv: bool = True
    """Normalise advantages over the rollout's tokens."""
    target_kl: float | None = None
    """Stop an update's epochs early once the approximate KL to the rollout policy exceeds this."""
    temperature: float = 1.0
    """Sampling temperature of rollouts."""
    kl_coef: float = 0.0
    """Per-token KL penalty to the frozen reference policy (the initial model); 0 turns it off."""
    kl_target: float | None = None
    """If set, adapt kl_coef towards this per-sequence KL (Ziegler et al. 2019: proportional control)."""
    kl_horizon: int = 10_000
    """Ziegler's horizon: how many sequences a full correction of the KL coefficient takes."""
    rloo_k: int = 4
    """Samples per example for RLOO (num_envs must be a multiple)."""
    share_encoder: bool = True
    """Run the encoder once per distinct source of a minibatch in the update, not once per row: RLOO's
    minibatches hold whole groups of ``rloo_k`` samples of one example, so its encoder work falls k-fold.
    The same gradients (up to float rounding) where dropout is off; with dropout on, the rows of one
    source share its encoder's dropout mask. Not under DistributedDataParallel (each rank encodes per row)."""
    mle_coef: float = 0.0
    """Weight of a maximum-likelihood term in every minibatch's loss: the mean negative log-likelihood of
    the references of the minibatch's examples under the policy that samples (its action mask and
    temperature), scored in the same teacher-forced pass (GNMT's mixed objective, Wu et al. 2016: RL
    fine-tuning that keeps learning from the data), each distinct example's once per minibatch however many
    times it was sampled. 0 turns it off. Needs ``Rollout.references``."""
    schedule: str = "constant"
    """How the shaping weights move during training: constant, linear, cosine, adaptive."""
    weights_start: dict[str, float] = field(default_factory=dict)
    """Shaping weights at the start (empty: the env's own, from its reward mode)."""
    weights_end: dict[str, float] = field(default_factory=dict)
    """Shaping weights at the end (linear, cosine) or at the adaptive target (adaptive)."""
    adaptive_target: float = 0.5
    """adaptive: the weights reach weights_end when the rollout's mean score reaches this."""

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"unknown algo {self.algo!r}; expected one of {list(ALGOS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; expected one of {list(SCHEDULES)}")
        if self.num_envs < 1 or self.num_minibatches < 1 or self.num_envs % self.num_minibatches:
            raise ValueError(f"num_envs ({self.num_envs}) must be a positive multiple of num_minibatches ({self.num_minibatches})")
        if self.length_groups < 1:
            raise ValueError(f"length_groups must be >= 1, got {self.length_groups}")
        if self.hold_greedy_length < 0 or self.hold_greedy_every < 1 or not (
                math.isfinite(self.hold_greedy_gain) and self.hold_greedy_gain > 0) or not (
                self.hold_greedy_ratio == 0 or 0 < self.hold_greedy_ratio < 10):
            raise ValueError("hold_greedy_length must be >= 0, hold_greedy_every >= 1, hold_greedy_gain a finite number > 0 "
                             "and hold_greedy_ratio 0 (the start's) or in (0, 10); got "
                             f"{self.hold_greedy_length}, {self.hold_greedy_every}, {self.hold_greedy_gain}, {self.hold_greedy_ratio}")
        self.weight_averages = tuple(float(d) for d in self.weight_averages)  # a list from JSON
        if any(not 0.0 < d < 1.0 for d in self.weight_averages) or len(set(self.weight_averages)) < len(self.weight_averages):
            raise ValueError(f"weight_averages must be distinct decays in (0, 1), got {list(self.weight_averages)}")
        if self.algo == "rloo" and (self.rloo_k < 2 or self.num_envs % self.rloo_k):
            raise ValueError(f"rloo needs rloo_k >= 2 dividing num_envs; got rloo_k={self.rloo_k}, num_envs={self.num_envs}")
        if not self.mle_coef >= 0.0:
            raise ValueError(f"mle_coef must be >= 0, got {self.mle_coef}")
        if not 0.0 < self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"gamma must be in (0, 1] and gae_lambda in [0, 1], got {self.gamma}, {self.gae_lambda}")
        if self.schedule in ("linear", "cosine", "adaptive") and not self.weights_end:
            raise ValueError(f"schedule {self.schedule!r} needs weights_end, e.g. {{'sparse': 1.0}}")
        for name in ("weights_start", "weights_end"):
            unknown = set(getattr(self, name)) - set(REWARD_PARTS)
            if unknown:
                raise ValueError(f"{name} has unknown parts {sorted(unknown)}; expected {list(REWARD_PARTS)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ShapingSchedule:
    """Shaping weights as a function of training progress (or, ``adaptive``, of the mean score)."""

    def __init__(self, config: PPOConfig, env_weights: dict[str, float]):
        self.kind = config.schedule
        self.start = {p: float(config.weights_start.get(p, 0.0)) for p in REWARD_PARTS} if config.weights_start else dict(env_weights)
        self.end = {p: float(config.weights_end.get(p, 0.0)) for p in REWARD_PARTS} if config.weights_end else dict(self.start)
        self.target = config.adaptive_target

    def weights(self, progress: float, mean_score: float | None) -> dict[str, float]:
        """The weights at ``progress`` in [0, 1] of the budget; ``mean_score`` drives ``adaptive``."""
        if self.kind == "constant":
            frac = 0.0
        elif self.kind == "linear":
            frac = progress
        elif self.kind == "cosine":
            frac = 0.5 * (1.0 - math.cos(math.pi * progress))
        else:
            frac = 0.0 if mean_score is None else min(max(mean_score / self.target, 0.0), 1.0)
        return {p: (1 - frac) * self.start[p] + frac * self.end[p] for p in REWARD_PARTS}


def masked_mean(x: torch.Tensor, mask: torch.Tensor, total: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over the True entries of ``mask`` (0 if there are none). With ``total``: their sum
    over ``total`` instead, this share of a mean over ``total`` entries (a group of a larger minibatch)."""
    return torch.where(mask, x, 0.0).sum() / (mask.sum().clamp(min=1) if total is None else max(total, 1))


def returns_to_go(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = sum_{k >= t} gamma^(k - t) r_k within each episode; (N, T)."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = torch.where(mask[:, t], rewards[:, t] + gamma * running, 0.0)
        out[:, t] = running
    return out


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns for whole episodes (the state after the end is terminal)."""
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] * mask[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = torch.where(mask[:, t], delta + gamma * lam * last, 0.0)
        advantages[:, t] = last
    return advantages, advantages + values


def rloo_advantages(rewards: torch.Tensor, mask: torch.Tensor, gamma: float, k: int) -> torch.Tensor:
    """Return-to-go minus the mean return-to-go of the other k-1 samples of the same example (rows in groups of k)."""
    g = returns_to_go(rewards, mask, gamma)  # (N, T)
    grouped = g.view(-1, k, g.shape[1])  # (N/k, k, T)
    baseline = (grouped.sum(1, keepdim=True) - grouped) / (k - 1)
    return (grouped - baseline).view_as(g)


class KLController:
    """The KL penalty coefficient: fixed, or adapted towards a target (Ziegler et al. 2019, eq. 2)."""

    def __init__(self, coef: float, target: float | None, horizon: int):
        self.value, self.target, self.horizon = coef, target, horizon

    def update(self, current_kl: float, num_sequences: int) -> None:
        if self.target is not None:
            error = float(np.clip(current_kl / self.target - 1.0, -0.2, 0.2))
            self.value *= 1.0 + error * num_sequences / self.horizon


class ActionEvaluator(torch.nn.Module):
    """``policy.evaluate_actions`` as a module's forward, so DistributedDataParallel syncs its gradients."""

    def __init__(self, policy: PolicyModel, temperature: float = 1.0, entropy_grad: bool = True):
        super().__init__()
        self.policy, self.temperature, self.entropy_grad = policy, temperature, entropy_grad

    def forward(self, source: torch.Tensor, actions: torch.Tensor, action_mask: torch.Tensor,
                encoded: tuple[torch.Tensor, torch.Tensor] | None = None):
        return self.policy.evaluate_actions(source, actions, action_mask, self.temperature, self.entropy_grad, encoded)


def minibatch_loss(
    model: torch.nn.Module,
    batch: Rollout,
    rows: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    config: PPOConfig,
    action_mask: torch.Tensor,
    autocast: torch.autocast | None = None,
    width: int | None = None,
    source_width: int | None = None,
    reference_width: int | None = None,
    token_total: int | None = None,
    reference_total: int | None = None,
    encoded: tuple[torch.Tensor, torch.Tensor] | None = None,
    reference_of: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of the sequences ``rows`` of a rollout (one teacher-forced pass), and its parts.

    ``model`` is an ``ActionEvaluator`` (possibly wrapped in DistributedDataParallel). ``width``: score only
    the first ``width`` steps (at least the longest of these episodes: the decoder is causal, so the steps
    after every episode's end change nothing); ``source_width``: the first ``source_width`` source columns (at
    least the longest of these sources: the columns cut are PAD in every row, which attention ignores).
    None: all of them. Both only save work; ``ppo_update`` passes the minibatch's own maxima.

    With ``config.mle_coef`` the same pass also scores the rows' references (``batch.references``, the
    first ``reference_width`` columns): their sequences are stacked under the sampled ones.
    ``reference_of``: positions in ``rows`` of the rows whose references are scored (``ppo_update`` passes
    one row per distinct example, as RLOO samples each example k times); None: every row's.

    ``token_total`` / ``reference_total``: where ``rows`` are one group of a larger minibatch, that
    minibatch's count of sampled tokens / scorable reference tokens. Every mean is then a sum over these
    rows divided by it, so the groups' losses and parts add up to the whole minibatch's. None: these rows'
    own counts (plain means).

    ``encoded``: the rows' sources already encoded, ``(memory, pad)`` of (B, S', C) and (B, S'): the pass
    runs the decoder only (``ppo_update`` encodes each distinct source of a minibatch once).
    """
    T = batch.actions.shape[1] if width is None else width
    S = batch.source.shape[1] if source_width is None else source_width
    m = batch.mask[rows, :T]
    source, actions = batch.source[rows, :S], batch.actions[rows, :T]
    if config.mle_coef:
        if batch.references is None:
            raise ValueError("mle_coef > 0 needs the rollout's references (Rollout.references)")
        R = batch.references.shape[1] if reference_width is None else reference_width
        at = torch.arange(len(rows), device=rows.device) if reference_of is None else reference_of
        references = batch.references[rows[at], :R]  # (B', R)
        width_both = max(T, R)
        source = torch.cat([source, source[at]])  # (B + B', S)
        if encoded is not None:
            encoded = (torch.cat([encoded[0], encoded[0][at]]), torch.cat([encoded[1], encoded[1][at]]))
        actions = torch.cat([F.pad(actions, (0, width_both - T)), F.pad(references, (0, width_both - R))])  # (B + B', T')
    with autocast if autocast is not None else contextlib.nullcontext():
        new_logp, entropy, new_values = model(source, actions, action_mask, encoded)  # (B, T) each, (B + B', T') with mle_coef
    new_logp, entropy, new_values = new_logp.float(), entropy.float(), new_values.float()
    if config.mle_coef:
        b = len(rows)
        ref_logp = new_logp[b:, :R]  # (B', R)
        # Reference tokens the action mask forbids (an UNK, say) have no finite log-probability: left out.
        ref_mask = (references != PAD) & (ref_logp > torch.finfo(ref_logp.dtype).min)
        mle_nll = -masked_mean(ref_logp, ref_mask, reference_total)
        new_logp, entropy, new_values = new_logp[:b, :T], entropy[:b, :T], new_values[:b, :T]
    logratio = torch.where(m, new_logp - batch.logprobs[rows, :T], 0.0)
    ratio = logratio.exp()
    adv, ret, old_values = advantages[rows, :T], returns[rows, :T], batch.values[rows, :T]
    if config.algo == "ppo":
        clipped_ratio = ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef)
        pg_loss = masked_mean(torch.max(-adv * ratio, -adv * clipped_ratio), m, token_total)
    else:
        pg_loss = masked_mean(-adv * torch.where(m, new_logp, 0.0), m, token_total)
    if config.algo == "rloo":  # no critic; 0 * values keeps every parameter in the graph for DDP
        v_loss = 0.0 * new_values.sum()
    elif config.clip_vloss:
        clipped = old_values + (new_values - old_values).clamp(-config.clip_coef, config.clip_coef)
        v_loss = 0.5 * masked_mean(torch.max((new_values - ret) ** 2, (clipped - ret) ** 2), m, token_total)
    else:
        v_loss = 0.5 * masked_mean((new_values - ret) ** 2, m, token_total)
    ent = masked_mean(entropy, m, token_total)
    loss = pg_loss + config.vf_coef * v_loss
    if config.mle_coef:
        loss = loss + config.mle_coef * mle_nll
    if config.ent_coef:  # without a bonus the entropy is a statistic: no backward through its (B, T, V) terms
        loss = loss - config.ent_coef * ent
    with torch.no_grad():
        parts = {
            "pg_loss": pg_loss.detach(),
            "v_loss": v_loss.detach(),
            "entropy": ent.detach(),
            "approx_kl": masked_mean((ratio - 1) - logratio, m, token_total),
            "clipfrac": masked_mean(((ratio - 1).abs() > config.clip_coef).float(), m, token_total),
        }
        if config.mle_coef:
            parts["mle_nll"] = mle_nll.detach()
    return loss, parts


def normalize_advantages(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Advantages scaled to zero mean and unit variance over the rollout's tokens."""
    mean = masked_mean(advantages, mask)
    std = masked_mean((advantages - mean) ** 2, mask).sqrt()
    return torch.where(mask, (advantages - mean) / (std + 1e-8), 0.0)


def ppo_update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Rollout,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    config: PPOConfig,
    action_mask: torch.Tensor,
    rng: np.random.Generator,
    autocast: torch.autocast | None = None,
    value_only: bool = False,
) -> dict[str, float]:
    """Optimise the policy on one rollout; returns the update's statistics (CleanRL's names).

    ``model`` is an ``ActionEvaluator`` (possibly wrapped in DistributedDataParallel). With ``value_only``
    only the value head's weights change (critic warm-up).
    """
    value_params = {id(p) for n, p in model.named_parameters() if "value_head" in n}
    if config.norm_adv:
        advantages = normalize_advantages(advantages, batch.mask)
    n = batch.actions.shape[0]
    epochs = config.update_epochs if config.algo == "ppo" else 1
    size = n // config.num_minibatches
    stats: dict[str, list[torch.Tensor]] = defaultdict(list)
    # Each minibatch's pass covers its longest episode and source only (one host copy per update).
    source_len = (batch.source != PAD).sum(dim=1).cpu().numpy()
    reference_len = None if batch.references is None else (batch.references != PAD).sum(dim=1).cpu().numpy()
    groups = config.length_groups
    reference_ok = None  # per row, the reference tokens the MLE term scores (not PAD, allowed by the mask)
    if groups > 1 and config.mle_coef and batch.references is not None:
        if action_mask is not None and action_mask.dim() != 1:
            groups = 1  # no per-row count without running the model: one pass
        else:
            ok = batch.references != PAD
            if action_mask is not None:
                ok &= action_mask.to(ok.device)[batch.references]
            reference_ok = ok.sum(dim=1).cpu().numpy()
    ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
    share = config.share_encoder and not ddp
    for _ in range(epochs):
        perm = minibatch_order(n, config, rng)
        for start in range(0, n, size):
            minibatch = perm[start : start + size]
            parts_of = split_by_length(minibatch, batch.lengths, source_len, groups)
            shared = encode_distinct(model, batch, minibatch, source_len, autocast) if share else None
            scores_reference = first_of_each_example(batch, minibatch) if config.mle_coef else None
            totals = {}
            if len(parts_of) > 1:
                totals["token_total"] = int(batch.lengths[minibatch].sum())
                if reference_ok is not None:
                    totals["reference_total"] = int(reference_ok[minibatch[scores_reference[minibatch]]].sum())
            optimizer.zero_grad(set_to_none=True)
            parts: dict[str, torch.Tensor] = {}
            for i, rows in enumerate(parts_of):
                width, source_width = max(int(batch.lengths[rows].max()), 1), max(int(source_len[rows].max()), 1)
                reference_of = reference_width = None
                if scores_reference is not None and reference_len is not None:
                    at = np.flatnonzero(scores_reference[rows])  # this group's rows whose references are scored
                    reference_of = torch.as_tensor(at, device=batch.mask.device)
                    reference_width = max(int(reference_len[rows[at]].max(initial=0)), 1)
                # DistributedDataParallel: gradients are averaged over ranks once, at the last group's backward
                with model.no_sync() if ddp and i < len(parts_of) - 1 else contextlib.nullcontext():
                    encoded = None
                    if shared is not None:
                        slots = torch.as_tensor(shared[2][rows], device=batch.mask.device)
                        encoded = (shared[1][slots, :source_width], shared[3][slots, :source_width])
                    loss, group_parts = minibatch_loss(
                        model, batch, torch.as_tensor(rows, device=batch.mask.device), advantages, returns, config,
                        action_mask, autocast, width, source_width, reference_width, **totals, encoded=encoded,
                        reference_of=reference_of)
                    loss.backward()
                for name, v in group_parts.items():
                    parts[name] = parts[name] + v if name in parts else v
            if shared is not None and shared[1].grad is not None:
                shared[0].backward(shared[1].grad)  # the encoder's backward, once for all groups
            if value_only:
                for p in model.parameters():
                    if id(p) not in value_params:
                        p.grad = None  # Adam skips parameters without a gradient
            grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], config.max_grad_norm)
            optimizer.step()
            for k, v in parts.items():
                stats[k].append(v)  # kept on the device: one host sync per update, not per minibatch
            stats["grad_norm"].append(grad_norm.detach())
        if config.target_kl is not None and stats["approx_kl"][-1].item() > config.target_kl:
            break
    return {k: float(torch.stack(v).float().mean()) for k, v in stats.items()}


def minibatch_order(n: int, config: PPOConfig, rng: np.random.Generator) -> np.ndarray:
    """A random order of a rollout's ``n`` rows, cut into minibatches by ``ppo_update``. RLOO keeps each
    group of ``rloo_k`` samples of one example (rows k*i .. k*i+k-1) together, so that a minibatch holds
    whole groups and its distinct sources are few (``encode_distinct``); the other algorithms permute rows."""
    k = config.rloo_k if config.algo == "rloo" and n % config.rloo_k == 0 else 1
    return (rng.permutation(n // k)[:, None] * k + np.arange(k)).ravel()


def first_of_each_example(batch: Rollout, minibatch: np.ndarray) -> np.ndarray:
    """(N,) bool: True at the first row of ``minibatch`` that plays each of its examples. The MLE term
    scores a reference once per minibatch, not once per sample of it (RLOO samples each example k times; a
    minibatch of whole groups gives the same mean at 1/k of the reference rows)."""
    first = np.zeros(batch.actions.shape[0], dtype=bool)
    _, at = np.unique(np.asarray(batch.example_ids)[minibatch], return_index=True)
    first[minibatch[at]] = True
    return first


def encode_distinct(
    model: torch.nn.Module, batch: Rollout, minibatch: np.ndarray, source_len: np.ndarray,
    autocast: torch.autocast | None = None,
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, torch.Tensor]:
    """Encode each distinct source of ``minibatch`` once (RLOO samples every example k times).

    Returns the encoder's output (D, S, C) in the autograd graph, the same values as a leaf that the
    minibatch's passes read from and accumulate gradients in (so the encoder's backward runs once, after
    them: ``memory.backward(leaf.grad)``), ``slot`` (N,) the row of each minibatch row's source in them,
    and the (D, S) pad mask. S is the minibatch's longest source. ``model``: an ``ActionEvaluator``."""
    width = max(int(source_len[minibatch].max()), 1)
    sources = batch.source[torch.as_tensor(minibatch, device=batch.source.device), :width]
    distinct, inverse = torch.unique(sources, dim=0, return_inverse=True)
    slot = np.zeros(batch.source.shape[0], dtype=np.int64)
    slot[minibatch] = inverse.cpu().numpy()
    with autocast if autocast is not None else contextlib.nullcontext():
        memory, pad = model.policy.encode(distinct)
    leaf = memory.detach().requires_grad_()
    return memory, leaf, slot, pad


def split_by_length(rows: np.ndarray, lengths: np.ndarray, source_len: np.ndarray, groups: int) -> list[np.ndarray]:
    """``rows`` in up to ``groups`` groups of near-equal size, sorted by episode length, then source length:
    each teacher-forced pass over a group is padded to that group's longest only. One group: ``rows``."""
    if groups <= 1 or len(rows) < 2:
        return [rows]
    order = np.lexsort((source_len[rows], lengths[rows]))  # last key first: episode length, then source
    return [g for g in np.array_split(rows[order], min(groups, len(rows))) if len(g)]


def advantages_for(batch: Rollout, rewards: torch.Tensor, config: PPOConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) of a rollout under the configured algorithm."""
    if config.algo == "ppo":
        return gae(rewards, batch.values, batch.mask, config.gamma, config.gae_lambda)
    g = returns_to_go(rewards, batch.mask, config.gamma)
    if config.algo == "reinforce":
        return torch.where(batch.mask, g - batch.values, 0.0), g
    return rloo_advantages(rewards, batch.mask, config.gamma, config.rloo_k), g


def kl_penalty(
    reference: PolicyModel | None, batch: Rollout, action_mask: torch.Tensor, kl: KLController, temperature: float = 1.0
) -> tuple[torch.Tensor, float]:
    """Rewards minus kl * (log pi(a) - log pi_ref(a)) per token, and the mean per-sequence KL estimate."""
    if reference is None:
        return batch.rewards, 0.0
    with torch.no_grad():
        ref_logp, _, _ = reference.evaluate_actions(batch.source, batch.actions, action_mask, temperature)
    per_token = torch.where(batch.mask, batch.logprobs - ref_logp.float(), 0.0)  # (N, T)
    seq_kl = float(per_token.sum(1).mean())
    return batch.rewards - kl.value * per_token, seq_kl


def all_reduce_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average logged scalars over ranks (identity without torch.distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


def rollout_examples(config: PPOConfig, rng: np.random.Generator, num_examples: int) -> np.ndarray | None:
    """RLOO plays each of num_envs / k examples k times; the other algorithms let the env draw."""
    if config.algo != "rloo":
        return None
    return np.repeat(rng.integers(num_examples, size=config.num_envs // config.rloo_k), config.rloo_k)


__all__ = [
    "ALGOS",
    "ActionEvaluator",
    "SCHEDULES",
    "KLController",
    "PPOConfig",
    "ShapingSchedule",
    "advantages_for",
    "all_reduce_mean",
    "collect",
    "encode_distinct",
    "gae",
    "kl_penalty",
    "masked_mean",
    "minibatch_loss",
    "minibatch_order",
    "normalize_advantages",
    "ppo_update",
    "returns_to_go",
    "rloo_advantages",
    "rollout_examples",
    "split_by_length",
]
