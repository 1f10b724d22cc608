"""The statistics of the shaping study, on inputs whose answers are known by hand."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.stats import (
    binned_curve,
    bootstrap_ci,
    iqm,
    normalized_auc,
    paired_bootstrap,
    steps_to_threshold,
)


def test_iqm_drops_the_outer_quarters():
    assert iqm([1, 2, 3, 100]) == pytest.approx(2.5)  # middle two of four
    assert iqm([5.0]) == 5.0
    assert iqm(list(range(8))) == pytest.approx(np.mean([2, 3, 4, 5]))
    # five values: 1.25 dropped each side, so the 2nd and 4th count 3/4 and the middle one fully
    assert iqm([0, 10, 20, 30, 1000]) == pytest.approx((0.75 * 10 + 20 + 0.75 * 30) / 2.5)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=30))
def test_iqm_lies_between_the_quartiles(values):
    lo, hi = np.quantile(values, [0.0, 1.0])
    assert lo - 1e-9 <= iqm(values) <= hi + 1e-9
    assert iqm(values) == pytest.approx(iqm(sorted(values, reverse=True)))


def test_bootstrap_ci_of_a_constant_is_that_constant_and_widens_with_spread():
    assert bootstrap_ci([0.3] * 5) == (pytest.approx(0.3), pytest.approx(0.3))
    narrow = bootstrap_ci([0.49, 0.5, 0.51, 0.5, 0.5])
    wide = bootstrap_ci([0.1, 0.9, 0.2, 0.8, 0.5])
    assert narrow[0] <= 0.5 <= narrow[1] and wide[0] <= 0.5 <= wide[1]
    assert wide[1] - wide[0] > 10 * (narrow[1] - narrow[0])


def test_bootstrap_ci_covers_the_mean_of_normal_samples_at_about_its_level():
    rng = np.random.default_rng(1)
    covered = sum(lo <= 0.0 <= hi for lo, hi in (bootstrap_ci(rng.normal(size=30), resamples=1000, seed=i) for i in range(200)))
    assert 0.88 <= covered / 200 <= 0.99  # percentile bootstrap at n = 30 under-covers slightly


def test_bootstrap_ci_is_deterministic_given_its_seed():
    x = [0.1, 0.4, 0.35, 0.8]
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)


def test_steps_to_threshold_interpolates_and_reports_never_as_infinity():
    steps, scores = [0, 100, 200, 300], [0.0, 0.2, 0.6, 0.5]
    assert steps_to_threshold(steps, scores, 0.4) == pytest.approx(150.0)
    assert steps_to_threshold(steps, scores, 0.0) == 0.0
    assert steps_to_threshold(steps, scores, 0.6) == pytest.approx(200.0)
    assert math.isinf(steps_to_threshold(steps, scores, 0.7))


def test_normalized_auc_is_the_mean_height_of_the_curve():
    assert normalized_auc([0, 10], [0.0, 1.0]) == pytest.approx(0.5)
    assert normalized_auc([0, 1, 3], [1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert normalized_auc([0, 1, 2], [0.0, 1.0, 0.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="strictly increasing"):
        normalized_auc([0, 0], [1.0, 2.0])


def test_binned_curve_averages_within_bins_and_leaves_empty_bins_nan():
    out = binned_curve([0, 1, 5, 6, 25], [1.0, 3.0, 5.0, 7.0, 9.0], [0, 5, 10, 20, 30])
    assert out[:2].tolist() == [3.0, 7.0] and np.isnan(out[2]) and out[3] == 9.0  # bins are (a, b]
    weighted = binned_curve([5, 10], [0.0, 1.0], [0, 10, 20], weights=[1, 3])
    assert weighted[0] == 0.75 and np.isnan(weighted[1])


@pytest.mark.parametrize("bad", [[], [float("nan")], [1.0, float("inf")]])
def test_statistics_refuse_empty_or_non_finite_input(bad):
    with pytest.raises(ValueError, match="value"):
        iqm(bad)


def _ratio(column_sums):  # a corpus score: total of column 0 over total of column 1
    return column_sums[0] / column_sums[1]


def test_paired_bootstrap_of_a_constant_shift_is_that_shift_in_every_resample():
    rng = np.random.default_rng(1)
    a = np.stack([rng.uniform(0, 1, 50), np.ones(50)], axis=1)
    b = a + [0.25, 0.0]  # every item 0.25 better: the mean, and so every resample's, moves by 0.25
    r = paired_bootstrap(a, b, _ratio, resamples=300)
    assert r["delta"] == pytest.approx(0.25) and r["low"] == pytest.approx(0.25) and r["high"] == pytest.approx(0.25)
    assert r["p_not_better"] == 0.0
    same = paired_bootstrap(a, a, _ratio, resamples=300)
    assert same["delta"] == same["low"] == same["high"] == 0.0 and same["p_not_better"] == 1.0


def test_paired_bootstrap_interval_matches_the_normal_approximation():
    # B - A per item ~ N(0.1, 1): the mean difference's 95% interval is about 0.1 +- 1.96 / sqrt(n)
    rng = np.random.default_rng(2)
    n = 2000
    a = np.stack([rng.normal(0, 1, n), np.ones(n)], axis=1)
    b = a + np.stack([rng.normal(0.1, 1, n), np.zeros(n)], axis=1)
    r = paired_bootstrap(a, b, _ratio, resamples=2000, seed=3)
    half = 1.96 * np.std(b[:, 0] - a[:, 0]) / np.sqrt(n)
    assert r["low"] == pytest.approx(r["delta"] - half, abs=0.01)
    assert r["high"] == pytest.approx(r["delta"] + half, abs=0.01)
    assert r == paired_bootstrap(a, b, _ratio, resamples=2000, seed=3)  # seeded


def test_paired_bootstrap_refuses_mismatched_statistics():
    with pytest.raises(ValueError, match="one shape"):
        paired_bootstrap(np.ones((3, 2)), np.ones((4, 2)), _ratio)
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(np.ones((3, 2)), np.ones((3, 2)), _ratio, confidence=1.5)
