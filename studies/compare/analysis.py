"""The analysis of a comparison: pure functions over trial records and plain arrays (no database, no plots).

Shapes are given in each docstring; `stats` holds the estimators they use (Dodge et al.'s
expected maximum, bootstrap and Student-t intervals, performance profiles).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tunelab.spaces import Float, Int, Space
from tunelab.studies.compare import stats
from tunelab.studies.compare.manifest import BOUNDARY
from tunelab.studies.records import TrialRecord, TrialState

FINISHED = (TrialState.COMPLETE, TrialState.FAILED, TrialState.PRUNED)


def ordered(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Proposals in proposal order: a re-queued trial takes the place of the interrupted one it reruns."""
    parent = {t.number: t.retry_of for t in records if t.retry_of is not None}

    def root(n: int) -> int:
        while n in parent:
            n = parent[n]
        return n

    retried = set(parent.values())
    return sorted((t for t in records if t.number not in retried), key=lambda t: root(t.number))


def floor(values: Sequence[float], maximize: bool) -> float:
    """The worst of `values` (what a failed trial counts as); NaN for none."""
    if not values:
        return math.nan
    return min(values) if maximize else max(values)


def samples(per_seed: Sequence[Sequence[TrialRecord]], worst: float) -> list[list[float]]:
    """Per study seed, the finished tuning results in proposal order, a failed trial counted as `worst`.

    Args:
        per_seed: The tuning trials of each study seed (`S` lists, in proposal order).
        worst: The problem's floor.

    Returns:
        `S'` lists of finite values (seeds with none left out).
    """
    out = []
    for records in per_seed:
        values = [t.value if t.value is not None else worst for t in records if t.state in FINISHED]
        values = [v for v in values if v is not None and math.isfinite(v)]
        if values:
            out.append(values)
    return out


def expected_best(per_seed: Sequence[Sequence[float]], ks: Sequence[int], *, iid: bool, maximize: bool,
                  level: float = stats.LEVEL, rng: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected best validation metric of k trials for each k in `ks`, with its bootstrap interval.

    Random search (`iid`): Dodge et al.'s estimator over the trials of all study seeds pooled
    (NaN where k exceeds a study's trials). Adaptive strategies: the mean over study seeds of
    the best of the first k trials, bootstrapped over seeds.

    Args:
        per_seed: `S` lists of tuning results.
        ks: `K` budgets.
        iid: Whether the trials are independent draws (random search).
        maximize: Whether larger values are better.
        level: The interval's confidence level.
        rng: The bootstrap's seed.

    Returns:
        `(estimate, low, high)`, each of shape `(K,)`.
    """
    nan = np.full(len(ks), math.nan)
    if not per_seed:
        return nan, nan.copy(), nan.copy()
    if iid:
        per_study = min(len(v) for v in per_seed)
        pooled = [v for vs in per_seed for v in vs]
        est, lo, hi = stats.expected_max_interval(pooled, [min(k, per_study) for k in ks], maximize=maximize,
                                                  level=level, rng=rng)
        over = np.array([k > per_study for k in ks])
        for a in (est, lo, hi):
            a[over] = math.nan
        return est, lo, hi
    return stats.best_so_far_interval(per_seed, ks, maximize=maximize, level=level, rng=rng)


MIN_TIMED = 3


def step_seconds(records: Sequence[TrialRecord], steps_per_epoch: int) -> list[float]:
    """Seconds per optimizer step of each complete trial (validation included): one timing per trial."""
    return [t.seconds / (t.epochs * steps_per_epoch) for t in records
            if t.state == TrialState.COMPLETE and t.epochs and t.seconds and t.seconds > 0]


def cost_ratio(mine: Sequence[float], reference: Sequence[float], *, level: float = stats.LEVEL,
               min_timed: int = MIN_TIMED, rng: int = 0) -> tuple[float, float, float]:
    """Median seconds per step of an arm relative to the reference arm's, with a bootstrap interval.

    Args:
        mine: The arm's seconds per step, one per trial (`step_seconds`).
        reference: The reference arm's.
        level: The interval's confidence level.
        min_timed: Fewest timings on each side for an interval; with fewer, all three are NaN
            (a cost without an interval is left out rather than shown as a bare ratio).
        rng: The bootstrap's seed.

    Returns:
        `(ratio, low, high)`.
    """
    if len(mine) < min_timed or len(reference) < min_timed:
        return math.nan, math.nan, math.nan
    return stats.median_ratio_interval(mine, reference, level=level, rng=rng)


def diverged_share(records: Sequence[TrialRecord]) -> float:
    """Share of finished trials that failed or diverged; NaN for none."""
    done = [t for t in records if t.state in FINISHED]
    return sum(t.state == TrialState.FAILED for t in done) / len(done) if done else math.nan


def diverged(t: TrialRecord) -> bool:
    """Whether a trial failed because its training loss became non-finite."""
    return t.state == TrialState.FAILED and (t.error or "").startswith("diverged")


def mean(values: Any) -> float:
    """The mean of the finite `values` (NaN for none)."""
    v = np.asarray(list(values), dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def learning_rate(config: Mapping[str, Any]) -> float | None:
    """The base learning rate of a config (`<family>.lr`, or `<family>.<base>.lr` for SAM/GSAM)."""
    for k, v in config.items():
        if k.endswith(".lr") and k.startswith(str(config.get("optimizer", ""))):
            return float(v)
    return None


def at_boundary(space: Space, config: Mapping[str, Any]) -> list[str]:
    """Numeric parameters of `config` within `BOUNDARY` of an end of their range (integers: at an end)."""
    out = []
    for k, v in config.items():
        if k not in space or not isinstance(space[k], (Float, Int)) or space[k].low == space[k].high:
            continue
        p = space[k]
        edge = not BOUNDARY < p.to_unit(v) < 1.0 - BOUNDARY if isinstance(p, Float) else v in (p.low, p.high)
        if edge:
            out.append(k)
    return out


def median_curve(curves: Sequence[Sequence[float]]) -> list[float]:
    """Epoch-wise median of `R` curves over the `E` epochs all of them have (NaN where all are NaN): length `E`."""
    n = min((len(c) for c in curves), default=0)
    if n == 0:
        return []
    data = np.array([list(c[:n]) for c in curves], dtype=np.float64)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN epochs of diverged reruns
        return [float(v) for v in np.nanmedian(data, axis=0)]


def targets_and_times(medians: Mapping[Any, Sequence[float]], epochs: Mapping[Any, int],
                      cost_per_epoch: Mapping[Any, float], *, maximize: bool,
                      target_fraction: float) -> tuple[float | None, dict[Any, float]]:
    """One problem's target, and each arm's time to reach it (AlgoPerf, Dahl et al. 2023).

    The target is the best, over arms, of the value an arm's median rerun curve has after
    `target_fraction` of its run; an arm's time is the cost (gradient evaluations) until its
    median curve first reaches the target (inf: never).

    Args:
        medians: Arm -> its median rerun curve.
        epochs: Arm -> epochs of one of its runs.
        cost_per_epoch: Arm -> gradient evaluations per epoch.
        maximize: Whether the metric is better when larger.
        target_fraction: Where on each curve the candidate targets are read.

    Returns:
        `(target, {arm: time})`; `(None, {})` when no arm's curve is long and finite enough.
    """
    sign = 1.0 if maximize else -1.0
    reached = []
    for arm, curve in medians.items():
        at = max(1, math.ceil(target_fraction * epochs[arm]))
        if len(curve) >= at and math.isfinite(curve[at - 1]):
            reached.append(sign * curve[at - 1])
    if not reached:
        return None, {}
    target = sign * max(reached)
    times = {arm: stats.time_to_target(curve, target, cost_per_epoch[arm], maximize=maximize)
             for arm, curve in medians.items()}
    return target, times


def run_times(curves: Sequence[Sequence[float]], target: float, cost_per_epoch: float, *,
              maximize: bool) -> list[float]:
    """Each rerun curve's cost until it first reaches `target` (inf: never): length `R`."""
    return [stats.time_to_target(c, target, cost_per_epoch, maximize=maximize) for c in curves]


def ties(times: Mapping[Any, float], spans: Mapping[Any, tuple[float, float]]) -> dict[Any, bool]:
    """Which arms are tied with the fastest on one problem (the tie rule of time to target).

    The fastest arm is the one whose median curve reaches the target first (`times`). Another
    arm is tied with it when its fastest rerun reaches the target no later than the fastest
    arm's slowest rerun does: their spans of rerun times overlap. "Never" (inf) counts as a
    time, so when a rerun of the fastest arm never reaches the target, every arm is tied: the
    reruns cannot tell them apart.

    Args:
        times: Arm -> time of its median rerun curve (inf: never).
        spans: Arm -> `(fastest, slowest)` of its reruns' times (inf: a rerun never reaches it).

    Returns:
        Arm -> whether it is tied with (or is) the fastest; all False when no arm reaches the target.
    """
    finite = {arm: t for arm, t in times.items() if math.isfinite(t)}
    if not finite:
        return {arm: False for arm in times}
    fastest = min(finite, key=finite.__getitem__)
    slowest_of_fastest = spans[fastest][1]
    return {arm: arm == fastest or spans[arm][0] <= slowest_of_fastest for arm in times}
