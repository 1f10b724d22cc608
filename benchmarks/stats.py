"""Statistics for comparing learning curves over seeds: bootstrap confidence intervals, the interquartile
mean, steps to reach a threshold and the area under the curve; and a paired bootstrap for two systems
scored on one test set by a corpus-level metric (BLEU).

Following Agarwal et al. (2021, "Deep RL at the edge of the statistical precipice"): with a handful of
seeds, report an interval, not a bare mean, and prefer the interquartile mean (IQM) to the median.
Every function is plain numpy and deterministic given its ``seed``.
"""

from __future__ import annotations

import numpy as np


def _values(values) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("need at least one value, got none")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"values must be finite, got {x.tolist()}")
    return x


def iqm(values) -> float:
    """Interquartile mean: the mean of the middle 50% of the sorted values (trimmed 25% each side).

    With n values the lowest and highest n/4 are dropped, fractional values taking part with their
    fraction, so the IQM of 4 values is the mean of the middle 2 and of 1 value is that value.
    """
    x = np.sort(_values(values))
    n = x.size
    lo, hi = 0.25 * n, 0.75 * n
    # weight of sorted value i = overlap of [i, i+1) with [lo, hi)
    edges = np.arange(n)
    weights = np.clip(np.minimum(edges + 1, hi) - np.maximum(edges, lo), 0.0, 1.0)
    return float((weights * x).sum() / weights.sum())


def bootstrap_ci(values, statistic=np.mean, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over ``values`` (resampled with replacement).

    Returns (low, high). One value gives the degenerate interval (v, v).
    """
    x = _values(values)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(x.size, size=(resamples, x.size))
    stats = np.array([statistic(x[row]) for row in idx])
    alpha = (1.0 - confidence) / 2.0
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1.0 - alpha))


def steps_to_threshold(steps, scores, threshold: float) -> float:
    """The first step at which ``scores`` reaches ``threshold`` (linear interpolation between points),
    or ``inf`` if it never does."""
    s, y = _values(steps), _values(scores)
    if s.size != y.size:
        raise ValueError(f"steps and scores differ in length: {s.size} vs {y.size}")
    hit = np.flatnonzero(y >= threshold)
    if hit.size == 0:
        return float("inf")
    i = int(hit[0])
    if i == 0:
        return float(s[0])
    frac = (threshold - y[i - 1]) / (y[i] - y[i - 1])
    return float(s[i - 1] + frac * (s[i] - s[i - 1]))


def normalized_auc(steps, scores) -> float:
    """Area under the score-vs-steps curve (trapezoids) divided by the step range: the mean score over
    training, in the score's own units, so runs of different lengths compare."""
    s, y = _values(steps), _values(scores)
    if s.size != y.size:
        raise ValueError(f"steps and scores differ in length: {s.size} vs {y.size}")
    if s.size == 1:
        return float(y[0])
    if np.any(np.diff(s) <= 0):
        raise ValueError("steps must be strictly increasing")
    area = float(np.sum((y[1:] + y[:-1]) * np.diff(s)) / 2.0)
    return area / float(s[-1] - s[0])


def binned_curve(steps, scores, edges, weights=None) -> np.ndarray:
    """Weighted mean of ``scores`` per step bin (edges[k], edges[k+1]]; NaN for an empty bin.

    Points at or below edges[0] count in the first bin and points past the last edge in the last one.
    ``weights`` (default 1 each) is e.g. the number of episodes behind each point.
    """
    s, y = _values(steps), _values(scores)
    w = np.ones_like(y) if weights is None else _values(weights)
    e = np.asarray(edges, dtype=np.float64)
    idx = np.clip(np.searchsorted(e, s, side="left") - 1, 0, e.size - 2)
    total = np.bincount(idx, weights=y * w, minlength=e.size - 1)
    count = np.bincount(idx, weights=w, minlength=e.size - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1e-300), np.nan)


def paired_bootstrap(
    stats_a, stats_b, score, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Paired bootstrap of ``score(B) - score(A)`` for a corpus metric (Koehn 2004), e.g. corpus BLEU.

    Args:
        stats_a, stats_b: (n, k) additive sufficient statistics of each of the n test items under systems A
            and B (for BLEU: lengths, matches and totals per n-gram order); row i of both is item i.
        score: maps the column sums of an (n, k) block, a (k,) vector, to the corpus score.
        resamples: how many test sets of n items are drawn with replacement; A and B see the same draws.

    Returns ``delta`` (on the whole test set), ``low`` and ``high`` (the percentile interval of the resampled
    deltas) and ``p_not_better``: the share of resamples in which B does not beat A.
    """
    a, b = np.asarray(stats_a, dtype=np.float64), np.asarray(stats_b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] == 0:
        raise ValueError(f"need two (n, k) statistics arrays of one shape with n >= 1, got {a.shape} and {b.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    for i in range(resamples):
        idx = rng.integers(a.shape[0], size=a.shape[0])
        deltas[i] = score(b[idx].sum(0)) - score(a[idx].sum(0))
    alpha = (1.0 - confidence) / 2.0
    return {"delta": float(score(b.sum(0)) - score(a.sum(0))), "low": float(np.quantile(deltas, alpha)),
            "high": float(np.quantile(deltas, 1.0 - alpha)), "p_not_better": float(np.mean(deltas <= 0.0)),
            "resamples": resamples, "confidence": confidence, "seed": seed}


__all__ = ["binned_curve", "bootstrap_ci", "iqm", "normalized_auc", "paired_bootstrap", "steps_to_threshold"]
