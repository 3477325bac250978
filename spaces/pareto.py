"""Objective spaces: Pareto dominance, non-dominated sorting, crowding distance and hypervolume.

Every function takes points to *minimise*, an array `(n, m)`: n points, m objectives (negate a
maximised objective first). They are small NumPy functions, without torch, so that reading a
study (`tunelab show`) can print its Pareto front; strategies (NSGA-II, MO-ASHA) and the study
layer share them.

References:
    Deb, Pratap, Agarwal & Meyarivan, "A Fast and Elitist Multiobjective Genetic Algorithm:
    NSGA-II", IEEE Trans. Evolutionary Computation 2002 (non-dominated sorting, crowding
    distance).
    Zitzler & Thiele, "Multiobjective Evolutionary Algorithms: A Comparative Case Study and the
    Strength Pareto Approach", IEEE TEC 1999 (the hypervolume indicator). The hypervolume of
    more than two objectives is BoTorch's exact `Hypervolume` (box decomposition).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _points(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    y = np.asarray(points, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"points must be an array (n, m) of n points with m objectives, got shape {y.shape}")
    return y


def dominates(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> bool:
    """Whether `a` Pareto-dominates `b` (minimisation): no worse in every objective, better in one.

    Args:
        a: One point, shape `(m,)`.
        b: Another, shape `(m,)`.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return bool(np.all(a <= b) and np.any(a < b))


def non_dominated(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Mask of the points no other point dominates (minimisation); duplicates of a front point are kept.

    Args:
        points: `(n, m)`.

    Returns:
        Boolean mask, shape `(n,)`.
    """
    y = _points(points)
    n = len(y)
    if n == 0:
        return np.zeros(0, dtype=bool)
    # d[i, j]: point j dominates point i
    no_worse = np.all(y[None, :, :] <= y[:, None, :], axis=2)
    better = np.any(y[None, :, :] < y[:, None, :], axis=2)
    return ~np.any(no_worse & better, axis=1)


def fronts(points: np.ndarray | Sequence[Sequence[float]]) -> list[np.ndarray]:
    """Non-dominated sorting (Deb et al. 2002): indices of front 0 (the Pareto front), front 1, ...

    Args:
        points: `(n, m)`.

    Returns:
        One index array per front, best front first; together they hold every point once.
    """
    y = _points(points)
    n = len(y)
    if n == 0:
        return []
    no_worse = np.all(y[None, :, :] <= y[:, None, :], axis=2)
    better = np.any(y[None, :, :] < y[:, None, :], axis=2)
    dominated_by = no_worse & better  # [i, j]: j dominates i
    count = dominated_by.sum(axis=1)
    out: list[np.ndarray] = []
    left = np.ones(n, dtype=bool)
    while left.any():
        front = np.flatnonzero(left & (count == 0))
        out.append(front)
        left[front] = False
        count = count - dominated_by[:, front].sum(axis=1)
        count[~left] = -1
    return out


def ranks(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Each point's non-domination rank (0 on the Pareto front), shape `(n,)`."""
    out = np.zeros(len(_points(points)), dtype=np.int64)
    for r, front in enumerate(fronts(points)):
        out[front] = r
    return out


def crowding(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Crowding distance of the points of one front (Deb et al. 2002): larger is lonelier.

    Each objective adds the gap between a point's two neighbours along it, divided by the
    objective's range; the extreme points of each objective get infinity.

    Args:
        points: `(n, m)`, one front.

    Returns:
        Shape `(n,)`.
    """
    y = _points(points)
    n, m = y.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(y[:, k], kind="stable")
        span = y[order[-1], k] - y[order[0], k]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (y[order[2:], k] - y[order[:-2], k]) / span
    return dist


def rank_order(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Indices from best to worst by NSGA-II's order: non-domination rank, then larger crowding distance.

    Ties (equal rank and distance) keep the input order, so the order is deterministic.

    Args:
        points: `(n, m)`.

    Returns:
        A permutation of `range(n)`.
    """
    y = _points(points)
    order: list[int] = []
    for front in fronts(y):
        dist = crowding(y[front])
        order.extend(int(i) for i in front[np.lexsort((front, -dist))])
    return np.asarray(order, dtype=np.int64)


def hypervolume(points: np.ndarray | Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """The volume dominated by `points` and bounded by `reference` (minimisation; larger is better).

    Points not strictly better than the reference in every objective add nothing. Two
    objectives use an exact sweep; more use BoTorch's exact box decomposition.

    Args:
        points: `(n, m)`.
        reference: The reference (nadir) point, shape `(m,)`.

    Returns:
        The hypervolume (0.0 without points inside the reference box).
    """
    y = _points(points)
    ref = np.asarray(reference, dtype=np.float64)
    if ref.shape != (y.shape[1],):
        raise ValueError(f"reference must have one value per objective ({y.shape[1]}), got shape {ref.shape}")
    y = y[np.all(y < ref, axis=1)]
    if len(y) == 0:
        return 0.0
    y = y[non_dominated(y)]
    if y.shape[1] == 1:
        return float(ref[0] - y[:, 0].min())
    if y.shape[1] == 2:
        y = y[np.lexsort((y[:, 1], y[:, 0]))]
        volume, ceiling = 0.0, ref[1]
        for x0, x1 in y:
            if x1 < ceiling:
                volume += (ref[0] - x0) * (ceiling - x1)
                ceiling = x1
        return float(volume)
    import torch
    from botorch.utils.multi_objective.hypervolume import Hypervolume

    return float(Hypervolume(-torch.as_tensor(ref)).compute(-torch.as_tensor(y)))


__all__ = ["crowding", "dominates", "fronts", "hypervolume", "non_dominated", "rank_order", "ranks"]
