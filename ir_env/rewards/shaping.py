"""Reward shaping: how the stream of potentials Phi and the end of an episode become per-token rewards.

Parts, computed every step for every row (so they can be logged and mixed):

- ``sparse``:  R(y) at the last step, 0 before.
- ``instant``: potential-based shaping (Ng, Harada & Russell 1999) on top of ``sparse``:
  ``r_t = sparse_t + gamma * Phi(s_{t+1}) - Phi(s_t)`` with ``Phi(terminal) = 0``. When Phi is the task
  metric and gamma = 1 this is ``Phi(y<=t) - Phi(y<t)`` before the end and ``R(y) - Phi(y<T)`` at the end,
  so an episode's rewards sum to exactly ``R(y) - Phi(empty)`` (= R(y) for every built-in metric).
- ``token``: the naive negative control, ``1/|y*|`` whenever the token equals the reference token at the
  same position; it ignores the sequence metric entirely.
- ``length``: a length penalty for mixing with the others, ``-|c - r| / r`` per episode for an output of
  ``c`` words against a reference of ``r``, paid as soon as it is known: ``-1/r`` for each word past ``r``,
  and ``-(r - c)/r`` at the end of an output that stopped short. 0 where the example has no reference
  (r = 0). Sentence-level BLEU alone rewards dropping uncertain words (Nakov, Guzman & Vogel 2012,
  "Optimizing for sentence-level BLEU+1 yields short translations"); this part holds the length.

The reward is ``sum_k weights[k] * part_k``. The modes ``sparse``, ``instant`` and ``token`` put weight 1
on one part; ``mixed`` takes user weights (default half sparse, half instant). ``set_weights`` changes them
at run time: a learner (or ``VectorEnv.call("set_reward_weights", ...)``) can schedule them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numba
import numpy as np

REWARD_PARTS: tuple[str, ...] = ("sparse", "instant", "token", "length")
REWARD_MODES: tuple[str, ...] = ("sparse", "instant", "token", "mixed")
DEFAULT_MIXED_WEIGHTS: dict[str, float] = {"sparse": 0.5, "instant": 0.5}


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Validate shaping weights: known part names, finite numbers; missing parts get weight 0."""
    if not isinstance(weights, Mapping):
        raise TypeError(f"reward weights must be a mapping of {list(REWARD_PARTS)} to numbers, got {type(weights).__name__}")
    unknown = sorted(set(weights) - set(REWARD_PARTS))
    if unknown:
        raise ValueError(f"unknown reward part(s) {unknown}; expected names from {list(REWARD_PARTS)}")
    out = {part: 0.0 for part in REWARD_PARTS}
    for part, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)) or not np.isfinite(w):
            raise ValueError(f"reward weight {part!r} must be a finite number, got {w!r}")
        out[part] = float(w)
    return out


class Shaping:
    """Turns potentials and episode ends into rewards.

    Args:
        mode: one of REWARD_MODES.
        gamma: the discount of the potential difference, in (0, 1]; use the learner's discount.
        weights: the part weights for ``mixed`` (ignored, and not allowed, for the other modes).
    """

    def __init__(self, mode: str = "instant", gamma: float = 1.0, weights: Mapping[str, float] | None = None):
        if mode not in REWARD_MODES:
            raise ValueError(f"unknown reward {mode!r}; expected one of {list(REWARD_MODES)}")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.integer, np.floating)) or not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be a number in (0, 1], got {gamma!r}")
        if weights is not None and mode != "mixed":
            raise ValueError(f"reward_weights apply to reward='mixed' only, got reward={mode!r}")
        self.mode = mode
        self.gamma = float(gamma)
        self.weights = check_weights(weights if weights is not None else DEFAULT_MIXED_WEIGHTS if mode == "mixed" else {mode: 1.0})

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Replace the part weights (any mode; parts left out get 0)."""
        self.weights = check_weights(weights)

    def rewards(
        self,
        phi_prev: np.ndarray,
        phi_next: np.ndarray,
        done: np.ndarray,
        final_score: np.ndarray,
        token_match: np.ndarray,
        length_gap: np.ndarray,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Rewards of one step for k rows.

        Args:
            phi_prev: (k,) Phi before the step.
            phi_next: (k,) Phi after the step (ignored where done: Phi(terminal) = 0).
            done: (k,) bool, the episode ended at this step.
            final_score: (k,) R(y), read where done.
            token_match: (k,) the naive per-position match reward 1/|y*| or 0.
            length_gap: (k,) the length penalty of this step (0, -1/r or -(r - c)/r).

        Returns:
            the (k,) reward and the dict of (k,) parts.
        """
        k = len(phi_prev)
        reward, sparse, instant = np.empty(k), np.empty(k), np.empty(k)
        w = self.weights
        _shape(
            phi_prev, phi_next, done, final_score, token_match, length_gap, self.gamma,
            w["sparse"], w["instant"], w["token"], w["length"], reward, sparse, instant,
        )  # fmt: skip
        return reward, {"sparse": sparse, "instant": instant, "token": token_match, "length": length_gap}


@numba.njit(cache=True, nogil=True)
def _shape(phi_prev, phi_next, done, final_score, token_match, length_gap, gamma, w_sparse, w_instant, w_token,
           w_length, reward, sparse, instant):  # fmt: skip
    """The parts and the weighted reward of each row, in one pass (parts with weight 0 are left out of the sum)."""
    for i in range(len(phi_prev)):
        sparse[i] = final_score[i] if done[i] else 0.0
        instant[i] = sparse[i] + (0.0 if done[i] else gamma * phi_next[i]) - phi_prev[i]
        r = 0.0
        if w_sparse:
            r += w_sparse * sparse[i]
        if w_instant:
            r += w_instant * instant[i]
        if w_token:
            r += w_token * token_match[i]
        if w_length:
            r += w_length * length_gap[i]
        reward[i] = r
