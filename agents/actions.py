"""Action masks and sampling for policies over a token vocabulary: the masked softmax as an additive
bias, the allowed subset of a static mask (logits of those rows only), and a cheap categorical draw."""

from __future__ import annotations

import weakref

import numpy as np
import torch


def _bool_mask(action_mask: torch.Tensor | np.ndarray, device: torch.device | str | None) -> torch.Tensor:
    """``action_mask`` as a tensor on ``device``; ValueError unless it is bool (True = allowed)."""
    mask = torch.as_tensor(action_mask, device=device)
    if mask.dtype != torch.bool:
        raise ValueError(f"action_mask must be bool (True = allowed), got dtype {mask.dtype}; "
                         "convert with .bool() or .astype(bool)")
    return mask


def apply_action_mask(logits: torch.Tensor, action_mask: torch.Tensor | np.ndarray | None) -> torch.Tensor:
    """``logits`` with the actions ``action_mask`` forbids set to the lowest finite value of their dtype.

    Args:
        logits: (..., V) scores.
        action_mask: None (everything allowed), or bool with True where an action is allowed (the env's
            ``action_masks()``), of shape (V,) or ``logits.shape``.

    The lowest finite value rather than -inf: a row whose every action is masked then gives a uniform
    softmax instead of NaN, and ``p * log p`` is 0 rather than NaN in the entropy. It is added as a bias
    (0 where allowed) rather than written with ``masked_fill``: on CPU the addition is ~10x faster, and
    ``logit + lowest`` rounds to ``lowest`` for any logit short of 1e31 in magnitude.
    """
    if action_mask is None:
        return logits
    action_mask = _bool_mask(action_mask, logits.device)
    if action_mask.shape != logits.shape[-1:] and action_mask.shape != logits.shape:
        raise ValueError(f"action_mask has shape {tuple(action_mask.shape)}; expected ({logits.shape[-1]},) "
                         f"or {tuple(logits.shape)}, the shape of the logits it masks")
    bias = torch.zeros(action_mask.shape, dtype=logits.dtype, device=logits.device)
    return logits + bias.masked_fill_(~action_mask, torch.finfo(logits.dtype).min)


def allowed_actions(action_mask: torch.Tensor | np.ndarray | None, vocab_size: int,
                    device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The actions a static (V,) mask allows, for computing logits over those rows of the output table only.

    Returns ``(ids, position)``: ``ids`` (K,) int64, the allowed actions in increasing order, and
    ``position`` (V,) int64, each action's index in ``ids`` (-1 where forbidden). None where there is
    nothing to restrict to: no mask, a per-row mask (a different set per row), or a mask that allows
    every action or none (the full softmax then handles them as ``apply_action_mask`` says).

    A softmax over the K allowed logits is the masked softmax over all V (the forbidden terms are exactly
    0 there), so this changes the cost, not the policy: on ``translation:multi30k`` K is 7,815 of 13,183
    (the German side), and the output projection is the largest matrix product of the small model.
    """
    if action_mask is None:
        return None
    # A learner passes the same mask tensor to every minibatch: reuse the last answer while the tensor is
    # unchanged (its _version counts in-place writes), since nonzero() waits for the GPU each time.
    key = (id(action_mask), getattr(action_mask, "_version", None), vocab_size, str(device))
    global _last_allowed
    cached = _last_allowed
    if isinstance(action_mask, torch.Tensor) and cached is not None and cached[0] == key and cached[1]() is action_mask:
        return cached[2]
    mask = _bool_mask(action_mask, device)
    if mask.dim() != 1:
        return None
    if mask.shape[0] != vocab_size:
        raise ValueError(f"action_mask has shape {tuple(mask.shape)}; expected ({vocab_size},), one entry per action")
    ids = mask.nonzero().squeeze(1)
    result = None
    if ids.numel() not in (0, vocab_size):
        position = torch.full((vocab_size,), -1, dtype=torch.int64, device=mask.device)
        position[ids] = torch.arange(ids.numel(), device=mask.device)
        result = ids, position
    if isinstance(action_mask, torch.Tensor):
        _last_allowed = (key, weakref.ref(action_mask), result)
    return result


_last_allowed: tuple | None = None  # (key, weak reference to the mask, answer) of the last tensor mask


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of (..., V) probabilities (unnormalised is fine), by inverting the row's CDF.

    The same distribution as ``torch.multinomial(probs, 1)``, at a fraction of its cost on CPU (one cumsum
    and a binary search per row: 0.4 ms against 6.8 ms for 16 x 13k on one core). An action of probability
    0 is never drawn: the CDF does not rise at it, and the uniform draw is kept strictly below the total.
    """
    cdf = probs.float().cumsum(-1)  # (..., V)
    total = cdf[..., -1:]
    u = torch.rand(total.shape, generator=generator, device=probs.device, dtype=cdf.dtype) * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))  # u < total even after rounding
    return torch.searchsorted(cdf, u, right=True).squeeze(-1)
