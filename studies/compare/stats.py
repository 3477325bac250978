"""The statistics of optimizer comparisons.

- Expected best validation metric of k trials (Dodge et al. 2019, "Show Your Work: Improved
  Reporting of Experimental Results", EMNLP 2019, Sec. 3). Given n random-search results with
  empirical distribution F_n, the best of k draws (with replacement) has
  `E[max_k] = sum_i v_(i) * ((i/n)^k - ((i-1)/n)^k)` over the sorted values v_(1) <= ... <= v_(n).
  Its 95% interval is a percentile bootstrap over the n results (Efron & Tibshirani 1993).
- Mean of reruns with a Student-t interval (a handful of seeds is too few to bootstrap).
- Ratio of two medians (cost per step relative to a reference optimizer) with a percentile
  bootstrap interval, each sample resampled on its own (Efron & Tibshirani 1993, Ch. 13).
- Performance profiles (Dolan & More 2002, "Benchmarking optimization software with
  performance profiles") over time-to-target, and the AlgoPerf score, the profile's normalised
  area up to a ratio of 4 (Dahl et al. 2023, "Benchmarking Neural Network Training
  Algorithms", Sec. 4.5).

Every function takes plain arrays and returns plain numbers, so they are tested against brute
force; `studies.compare` feeds them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from tunelab.spaces.errors import ConfigError

LEVEL = 0.95


def _sample(values: Sequence[float] | np.ndarray, maximize: bool) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ConfigError("the expected best of k trials needs at least one result")
    if not np.all(np.isfinite(v)):
        raise ConfigError("results must be finite: give failed or diverged trials a value first (e.g. the worst seen)")
    return v if maximize else -v


def _percentiles(dist: np.ndarray, level: float) -> tuple[float, float]:
    """The central `level` interval of a bootstrap distribution (percentile method)."""
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(dist, alpha)), float(np.quantile(dist, 1.0 - alpha))


def _generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _weights(n: int, k: int) -> np.ndarray:
    """P(the best of k draws with replacement is the i-th smallest of n), i = 1..n."""
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive int, got {k!r}")
    f = np.arange(n + 1, dtype=np.float64) / n
    return np.diff(f**k)


def expected_max(values: Sequence[float] | np.ndarray, k: int, *, maximize: bool = True) -> float:
    """Expected best of `k` trials drawn with replacement from `values` (Dodge et al. 2019).

    Args:
        values: The results of independent trials (e.g. random search's validation metrics).
        k: The budget, in trials.
        maximize: Whether larger is better (the expected minimum otherwise).

    Returns:
        `E[max of k]` (or min) under the empirical distribution of `values`.

    Raises:
        ConfigError: No values, a non-finite one, or k < 1.
    """
    v = np.sort(_sample(values, maximize))
    out = float(np.dot(_weights(v.size, k), v))
    return out if maximize else -out


def expected_max_interval(
    values: Sequence[float] | np.ndarray,
    ks: Sequence[int],
    *,
    maximize: bool = True,
    level: float = LEVEL,
    n_boot: int = 2000,
    rng: np.random.Generator | int | None = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`expected_max` at each k with a percentile-bootstrap interval.

    Args:
        values: The results of independent trials.
        ks: Budgets in trials.
        maximize: Whether larger is better.
        level: Coverage of the interval.
        n_boot: Bootstrap resamples of `values`.
        rng: Generator (or seed) of the resampling.

    Returns:
        `(estimate, low, high)`, arrays of `len(ks)`.

    The interval covers the population's expected best well when k is small next to n (95% at
    k = 5, n = 200 and 90% at k = 5, n = 60 for normal results: tests/studies/test_stats.py).
    As k nears n the plug-in estimate is biased low and the interval under-covers (46% at
    k = n = 20): there it shows the spread of this sample, not the uncertainty about the
    population.
    """
    v = _sample(values, maximize)
    if not 0.0 < level < 1.0:
        raise ConfigError(f"level must be in (0, 1), got {level!r}")
    boots = np.sort(v[_generator(rng).integers(0, v.size, size=(n_boot, v.size))], axis=1)
    srt = np.sort(v)
    est, lo, hi = [], [], []
    for k in ks:
        w = _weights(v.size, int(k))
        est.append(float(srt @ w))
        low, high = _percentiles(boots @ w, level)
        lo.append(low)
        hi.append(high)
    est_a, lo_a, hi_a = np.array(est), np.array(lo), np.array(hi)
    if maximize:
        return est_a, lo_a, hi_a
    return -est_a, -hi_a, -lo_a


def best_so_far_interval(
    runs: Sequence[Sequence[float]],
    ks: Sequence[int],
    *,
    maximize: bool = True,
    level: float = LEVEL,
    n_boot: int = 2000,
    rng: np.random.Generator | int | None = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over studies of the best of each study's first k trials, with a bootstrap over studies.

    The estimator for adaptive strategies, whose trials are not independent draws: each run is
    one study's results in proposal order. With a single study the interval is that study's
    value (there is nothing to resample).

    Returns:
        `(estimate, low, high)`, arrays of `len(ks)`; NaN where a k exceeds a study's trials.
    """
    sign = 1.0 if maximize else -1.0
    seqs = [sign * _sample(r, True) for r in runs]
    if not seqs:
        raise ConfigError("best_so_far_interval needs at least one study")
    gen = _generator(rng)
    est, lo, hi = [], [], []
    for k in ks:
        if any(len(s) < k for s in seqs):
            for column in (est, lo, hi):
                column.append(math.nan)
            continue
        best = np.array([s[:k].max() for s in seqs])
        dist = best[gen.integers(0, best.size, size=(n_boot, best.size))].mean(axis=1)
        est.append(float(best.mean()))
        low, high = _percentiles(dist, level)
        lo.append(low)
        hi.append(high)
    e, lo_a, hi_a = (sign * np.array(a) for a in (est, lo, hi))
    return (e, lo_a, hi_a) if maximize else (e, hi_a, lo_a)


def mean_interval(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> tuple[float, float, float, float]:
    """`(mean, std, low, high)` of `values` with a Student-t interval for the mean.

    NaN values are dropped; one value gives a NaN spread and interval.
    """
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (math.nan,) * 4
    mean = float(v.mean())
    if v.size == 1:
        return mean, math.nan, math.nan, math.nan
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2.0, v.size - 1)) * std / math.sqrt(v.size)
    return mean, std, mean - half, mean + half


def median_ratio_interval(
    values: Sequence[float] | np.ndarray,
    reference: Sequence[float] | np.ndarray,
    *,
    level: float = LEVEL,
    n_boot: int = 2000,
    rng: np.random.Generator | int | None = 0,
) -> tuple[float, float, float]:
    """`median(values) / median(reference)` with a percentile-bootstrap interval.

    The two samples are independent (e.g. seconds per step of the trials of two optimizers),
    so each is resampled on its own.

    Args:
        values: Positive measurements of one arm.
        reference: Positive measurements of the reference arm.
        level: Coverage of the interval.
        n_boot: Bootstrap resamples.
        rng: Generator (or seed) of the resampling.

    Returns:
        `(ratio, low, high)`.

    Raises:
        ConfigError: An empty sample, or a value that is not finite and positive.
    """
    a, b = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (values, reference))
    if a.size == 0 or b.size == 0:
        raise ConfigError("a ratio of medians needs at least one value on each side")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(a > 0) and np.all(b > 0)):
        raise ConfigError("a ratio of medians needs finite, positive values (e.g. seconds per step)")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"level must be in (0, 1), got {level!r}")
    gen = _generator(rng)
    top = np.median(a[gen.integers(0, a.size, size=(n_boot, a.size))], axis=1)
    bottom = np.median(b[gen.integers(0, b.size, size=(n_boot, b.size))], axis=1)
    low, high = _percentiles(top / bottom, level)
    return float(np.median(a) / np.median(b)), low, high


def time_to_target(curve: Sequence[float], target: float, cost_per_epoch: float, *, maximize: bool = True) -> float:
    """Cost (e.g. gradient evaluations) until the first epoch whose value reaches `target` (inf if none)."""
    for epoch, value in enumerate(curve, start=1):
        if value is not None and math.isfinite(value) and (value >= target if maximize else value <= target):
            return epoch * cost_per_epoch
    return math.inf


def performance_ratios(times: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """`times[arm][workload]` divided by the fastest arm's time on that workload (inf: never reached)."""
    workloads = sorted({w for per in times.values() for w in per})
    best = {w: min((per.get(w, math.inf) for per in times.values()), default=math.inf) for w in workloads}
    return {
        arm: {
            w: (per.get(w, math.inf) / best[w] if math.isfinite(best[w]) and best[w] > 0 else math.inf)
            for w in workloads
        }
        for arm, per in times.items()
    }


def performance_profile(times: Mapping[str, Mapping[str, float]], taus: Sequence[float]) -> dict[str, np.ndarray]:
    """Dolan & More's profile: for each arm, the share of workloads it solves within `tau` x the best time."""
    ratios = performance_ratios(times)
    t = np.asarray(taus, dtype=np.float64)
    return {arm: np.array([np.mean([r <= tau for r in per.values()]) for tau in t]) for arm, per in ratios.items()}


def profile_score(times: Mapping[str, Mapping[str, float]], tau_max: float = 4.0) -> dict[str, float]:
    """AlgoPerf's benchmark score: the area under the profile on `[1, tau_max]`, divided by `tau_max - 1`.

    1.0 means fastest on every workload; 0.0 means never within `tau_max` x the fastest. The
    profile is a step function, so the area is exact: a workload solved at ratio r <= tau_max
    contributes `(tau_max - r) / (tau_max - 1)` divided by the number of workloads.
    """
    if not tau_max > 1.0:
        raise ConfigError(f"tau_max must be > 1, got {tau_max!r}")
    ratios = performance_ratios(times)
    out = {}
    for arm, per in ratios.items():
        parts = [(tau_max - max(r, 1.0)) / (tau_max - 1.0) if r <= tau_max else 0.0 for r in per.values()]
        out[arm] = float(np.mean(parts)) if parts else math.nan
    return out


__all__ = [
    "LEVEL",
    "best_so_far_interval",
    "expected_max",
    "expected_max_interval",
    "mean_interval",
    "median_ratio_interval",
    "performance_profile",
    "performance_ratios",
    "profile_score",
    "time_to_target",
]
