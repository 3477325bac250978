"""The comparison statistics against brute force and known sampling distributions."""

import itertools
import math

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from tunelab.spaces import ConfigError
from tunelab.studies.compare import stats


def brute_force_max(values, k, maximize=True):
    """E[best of k draws with replacement], by enumerating all n^k equally likely draws."""
    pick = max if maximize else min
    return float(np.mean([pick(draw) for draw in itertools.product(values, repeat=k)]))


@pytest.mark.parametrize("values", [[0.3, 0.1, 0.7, 0.5, 0.2], [0.5, 0.5, 0.1, 0.9], [2.0], [1.0, 1.0, 1.0, 3.0, -2.0]])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_expected_max_equals_brute_force_enumeration(values, k):
    assert stats.expected_max(values, k) == pytest.approx(brute_force_max(values, k), abs=1e-12)
    assert stats.expected_max(values, k, maximize=False) == pytest.approx(brute_force_max(values, k, False), abs=1e-12)


def test_expected_max_limits():
    rng = np.random.default_rng(0)
    v = rng.normal(size=30)
    assert stats.expected_max(v, 1) == pytest.approx(v.mean())
    curve = [stats.expected_max(v, k) for k in range(1, 60)]
    assert all(b >= a for a, b in itertools.pairwise(curve))
    assert stats.expected_max(v, 10_000) == pytest.approx(v.max())


def true_expected_max_of_normal(k):
    """E[max of k iid N(0, 1)] = integral of x k phi(x) Phi(x)^(k-1)."""
    return integrate.quad(lambda x: x * k * sps.norm.pdf(x) * sps.norm.cdf(x) ** (k - 1), -10, 10)[0]


def test_bootstrap_interval_covers_the_population_value():
    """95% percentile-bootstrap intervals of E[best of 5] from 200 normal results cover the truth ~95% of the time."""
    k, n, reps = 5, 200, 300
    truth = true_expected_max_of_normal(k)
    assert truth == pytest.approx(1.16296, abs=1e-4)
    rng = np.random.default_rng(1)
    covered, widths = 0, []
    for _ in range(reps):
        sample = rng.normal(size=n)
        _, lo, hi = stats.expected_max_interval(sample, [k], n_boot=1000, rng=rng)
        covered += lo[0] <= truth <= hi[0]
        widths.append(hi[0] - lo[0])
    coverage = covered / reps
    assert 0.90 <= coverage <= 0.99, coverage
    # a useless interval (too wide) would also cover: its width must be near 2 * 1.96 standard errors
    assert 0.1 < float(np.mean(widths)) < 0.5


def test_bootstrap_interval_brackets_the_estimate_and_flips_for_minimisation():
    v = np.random.default_rng(2).uniform(size=25)
    est, lo, hi = stats.expected_max_interval(v, [1, 5, 25], rng=0)
    assert np.all(lo <= est) and np.all(est <= hi)
    est_min, lo_min, hi_min = stats.expected_max_interval(-v, [1, 5, 25], maximize=False, rng=0)
    np.testing.assert_allclose(est_min, -est)
    np.testing.assert_allclose(lo_min, -hi)
    np.testing.assert_allclose(hi_min, -lo)


def test_t_interval_of_three_reruns_has_nominal_coverage():
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(2000):
        _, _, lo, hi = stats.mean_interval(rng.normal(0.9, 0.01, size=3))
        hits += lo <= 0.9 <= hi
    assert 0.93 <= hits / 2000 <= 0.97
    mean, std, lo, hi = stats.mean_interval([0.5])
    assert mean == 0.5 and math.isnan(std) and math.isnan(lo)


def test_best_so_far_over_studies():
    runs = [[0.1, 0.4, 0.2], [0.3, 0.2, 0.5]]
    est, lo, hi = stats.best_so_far_interval(runs, [1, 2, 3, 4])
    np.testing.assert_allclose(est[:3], [0.2, 0.35, 0.45])
    assert math.isnan(est[3])
    assert np.all(lo[:3] <= est[:3]) and np.all(est[:3] <= hi[:3])
    est_min, _, _ = stats.best_so_far_interval(runs, [2], maximize=False)
    assert est_min[0] == pytest.approx((0.1 + 0.2) / 2)


def test_performance_profile_and_algoperf_score_by_hand():
    times = {"a": {"w1": 10.0, "w2": 40.0}, "b": {"w1": 20.0, "w2": 20.0}, "c": {"w1": math.inf, "w2": 100.0}}
    ratios = stats.performance_ratios(times)
    assert ratios["a"] == {"w1": 1.0, "w2": 2.0} and ratios["c"]["w2"] == 5.0
    profile = stats.performance_profile(times, [1.0, 2.0, 4.0])
    np.testing.assert_allclose(profile["a"], [0.5, 1.0, 1.0])
    np.testing.assert_allclose(profile["b"], [0.5, 1.0, 1.0])
    np.testing.assert_allclose(profile["c"], [0.0, 0.0, 0.0])
    score = stats.profile_score(times, tau_max=4.0)
    # a: w1 at ratio 1 contributes 1, w2 at ratio 2 contributes (4-2)/3; c never within 4x
    assert score["a"] == pytest.approx((1.0 + 2.0 / 3.0) / 2)
    assert score["b"] == pytest.approx(score["a"])
    assert score["c"] == 0.0
    assert stats.time_to_target([0.1, 0.5, 0.9], 0.5, 100) == 200
    assert stats.time_to_target([0.9, 0.5, 0.4], 0.5, 100, maximize=False) == 200
    assert stats.time_to_target([0.1, math.nan], 0.5, 100) == math.inf


def test_bad_inputs_are_refused():
    with pytest.raises(ConfigError, match="at least one"):
        stats.expected_max([], 1)
    with pytest.raises(ConfigError, match="finite"):
        stats.expected_max([0.1, math.nan], 1)
    with pytest.raises(ConfigError, match="positive int"):
        stats.expected_max([0.1], 0)


def test_ratio_of_medians_interval_covers_the_true_ratio_and_refuses_bad_timings():
    """Seconds per step of two arms (log-normal noise, true ratio 2): the 95% interval covers 2 ~95% of the time."""
    rng = np.random.default_rng(4)
    hits, reps = 0, 200
    for _ in range(reps):
        a = 2.0 * np.exp(rng.normal(0.0, 0.3, size=30))
        b = np.exp(rng.normal(0.0, 0.3, size=30))
        ratio, lo, hi = stats.median_ratio_interval(a, b, n_boot=500, rng=rng)
        assert lo <= ratio <= hi
        hits += lo <= 2.0 <= hi
    assert 0.88 <= hits / reps <= 0.995, hits / reps
    assert stats.median_ratio_interval([3.0, 3.0, 3.0], [1.5, 1.5, 1.5]) == (2.0, 2.0, 2.0)
    with pytest.raises(ConfigError, match="at least one"):
        stats.median_ratio_interval([], [1.0])
    with pytest.raises(ConfigError, match="positive"):
        stats.median_ratio_interval([1.0, 0.0], [1.0])
