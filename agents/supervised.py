"""Maximum-likelihood warm start: teacher-forced cross-entropy on the task's reference outputs.

The usual start before RL on text: the policy first learns to imitate the references (reference
translations, answers, fluent sentiment continuations), then RL optimises the task score from there. The
same model later serves as the frozen reference of the KL penalty.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from agents.model import PolicyModel, allowed_actions, make_adam
from ir_env import BOS, EOS, PAD
from ir_env.tasks.base import Examples, Task


@dataclass
class MLEConfig:
    """Hyper-parameters of the warm start."""

    steps: int = 1000
    """Optimiser steps."""
    batch_size: int = 128
    """Sequences per step."""
    learning_rate: float = 2e-3
    """Peak Adam step size, reached after ``warmup_steps`` of linear warm-up."""
    warmup_steps: int = 100
    """Steps of linear learning-rate warm-up."""
    schedule: str = "linear"
    """After the warm-up: "linear" decays to 10% of the peak at ``steps``; "inverse_sqrt" multiplies the peak
    by sqrt(warmup_steps / step) (Vaswani et al. 2017), which does not depend on the step budget, so a run
    cut by ``max_seconds`` ends on a schedule as sound as a finished one."""
    label_smoothing: float = 0.0
    """Cross-entropy label smoothing."""
    max_grad_norm: float = 1.0
    """Gradient norm clip."""
    adam_beta2: float = 0.999
    """Adam's second-moment decay (Transformer recipes for translation use 0.98)."""
    length_buckets: bool = False
    """Draw each batch from examples of similar length (a random pool of 64 batches, sorted by length and
    cut into batches, served in random order), so less of each batch is padding. False draws every batch
    uniformly at random. Either way the columns that are padding in every row are cut off each batch."""
    max_seconds: float | None = None
    """Stop after this much training time (optimiser steps only, not ``on_step``'s own time) even if
    fewer than ``steps`` are done; None: no time limit."""
    output_mask: bool = True
    """Normalise over the task's allowed actions (``Task.action_mask()``) only, the distribution the env
    lets the policy act with, leaving forbidden reference tokens (UNK) out of the loss; also cheaper where
    the allowed set is a fraction of the vocabulary (translation: the target language's words). False:
    over the whole vocabulary, UNK targets included."""
    ema_decay: float | None = None
    """If set, keep an exponential moving average of the weights (``WeightAverage``) and leave the model
    holding it at the end (unless the caller passes its own ``average`` to ``mle_train``); None: the last
    weights."""

    def __post_init__(self) -> None:
        if self.schedule not in ("linear", "inverse_sqrt"):
            raise ValueError(f"MLEConfig.schedule must be 'linear' or 'inverse_sqrt', got {self.schedule!r}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"MLEConfig.ema_decay must be None or in (0, 1), got {self.ema_decay!r}")


def reference_targets(examples: Examples, max_len: int) -> np.ndarray:
    """(M, max_len) int64 targets: each reference followed by EOS (if it fits), PAD after."""
    m, width = examples.reference.shape
    out = np.full((m, max_len), PAD, dtype=np.int64)
    w = min(width, max_len)
    out[:, :w] = examples.reference[:, :w]
    has_room = examples.reference_len < max_len
    out[np.flatnonzero(has_room), examples.reference_len[has_room]] = EOS
    return out


def sequence_loss(model: PolicyModel, source: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0,
                  action_mask: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """Mean token cross-entropy of ``targets`` (B, T) given ``source`` (B, S); PAD targets are ignored.

    ``action_mask`` (V,) bool: the softmax runs over the allowed actions only (the distribution the env
    lets the policy act with; label smoothing spreads over them too), and reference tokens it forbids
    (UNK: rare words) are left out of the loss like PAD. None: over the whole vocabulary.
    """
    bos = torch.full_like(targets[:, :1], BOS)
    target_in = torch.cat([bos, targets[:, :-1]], dim=1)
    subset = allowed_actions(action_mask, model.config.vocab_size, targets.device)
    if subset is None:
        logits, _ = model(source, target_in)  # (B, T, V)
        labels = targets
    else:
        ids, position = subset
        logits, _ = model(source, target_in, output_ids=ids)  # (B, T, K)
        labels = position[targets]  # (B, T): -1 where forbidden, PAD included (never allowed)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                           ignore_index=PAD if subset is None else -1, label_smoothing=label_smoothing)


class WeightAverage:
    """An exponential moving average of a model's weights (Polyak averaging), updated after each optimiser
    step: the running form of the checkpoint averaging that Transformer translation recipes use (Vaswani et
    al. 2017 average the last 5 checkpoints). Parameters only: buffers keep the model's own values."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay!r}")
        self.model, self.decay = model, decay
        self.params = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self) -> None:
        """avg <- decay * avg + (1 - decay) * weights."""
        torch._foreach_lerp_(self.params, [p.detach() for p in self.model.parameters()], 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module | None = None) -> None:
        """Write the averaged weights into ``model`` (default: the averaged model itself)."""
        for target, avg in zip((model or self.model).parameters(), self.params):
            target.copy_(avg)


def mle_train(
    model: PolicyModel,
    task: Task,
    config: MLEConfig,
    seed: int = 0,
    autocast: torch.autocast | None = None,
    on_step: Callable[[int, float], None] | None = None,
    average: WeightAverage | None = None,
) -> list[float]:
    """Train ``model`` on ``task``'s train references; returns the loss of every step.

    ``average``, if given (a ``WeightAverage``, or anything with an ``update()`` method), is updated after
    every optimiser step (inside the timed step, so it counts against ``max_seconds``); the model keeps its
    own weights, the caller copies the average in if it wants.
    Without one, ``config.ema_decay`` makes an average here and copies it into the model at the end.
    """
    own_average = average is None and config.ema_decay is not None
    if own_average:
        average = WeightAverage(model, config.ema_decay)
    device = next(model.parameters()).device
    examples = task.examples("train")
    targets_np = reference_targets(examples, model.config.max_target_len)  # (M, T)
    targets = torch.as_tensor(targets_np, device=device)
    sources = torch.as_tensor(examples.source, device=device)
    action_mask = torch.as_tensor(task.action_mask(), device=device) if config.output_mask else None
    optimizer = make_adam(model.parameters(), lr=config.learning_rate, betas=(0.9, config.adam_beta2))
    warmup = max(config.warmup_steps, 1)

    def lr_factor(step: int) -> float:
        if config.schedule == "inverse_sqrt":
            return min((step + 1) / warmup, (warmup / (step + 1)) ** 0.5)
        return min(1.0, (step + 1) / warmup) * max(0.1, 1.0 - step / max(config.steps, 1))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    rng = np.random.default_rng(seed)
    # Used length of each row: sources are PAD-filled on the right, targets end with EOS then PAD.
    source_len = (examples.source != PAD).sum(axis=1)
    target_len = (targets_np != PAD).sum(axis=1)
    batches = _batch_indices(rng, len(examples), config.batch_size, source_len + target_len, config.length_buckets)
    losses = []
    trained = 0.0  # seconds spent in optimiser steps
    model.train()
    for step in range(config.steps):
        if config.max_seconds is not None and trained >= config.max_seconds:
            break
        t0 = time.perf_counter()
        rows = next(batches)
        idx = torch.as_tensor(rows, device=device)
        s_len, t_len = int(source_len[rows].max()), int(target_len[rows].max())
        source, target = sources[idx, :max(s_len, 1)], targets[idx, :max(t_len, 1)]  # all-PAD columns cut
        with autocast if autocast is not None else contextlib.nullcontext():
            loss = sequence_loss(model, source, target, config.label_smoothing, action_mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        schedule.step()
        if average is not None:
            average.update()
        losses.append(loss.detach().item())
        trained += time.perf_counter() - t0
        if on_step is not None:
            on_step(step, losses[-1])
    if own_average:
        average.copy_to()
    return losses


def _batch_indices(rng: np.random.Generator, n: int, batch_size: int, lengths: np.ndarray,
                   buckets: bool) -> Iterator[np.ndarray]:
    """Endless row-index batches: uniform draws, or length-sorted slices of random pools of 64 batches."""
    if not buckets:
        while True:
            yield rng.integers(n, size=batch_size)
    pool_size = 64 * batch_size
    while True:
        pool = rng.permutation(n)[:pool_size]
        pool = pool[np.argsort(lengths[pool], kind="stable")]
        chunks = [pool[i:i + batch_size] for i in range(0, len(pool), batch_size)]
        for k in rng.permutation(len(chunks)):
            yield chunks[k]
