"""`spaces.pareto` against brute force: dominance, fronts, crowding order and hypervolume."""

import itertools

import numpy as np
import pytest

from tunelab.spaces import pareto


def brute_front(points):
    return [i for i, p in enumerate(points)
            if not any(pareto.dominates(q, p) for j, q in enumerate(points) if j != i)]


def brute_hypervolume(points, ref):
    """Inclusion-exclusion over every subset: the union of the boxes [p, ref]."""
    points = [p for p in points if np.all(p < ref)]
    total = 0.0
    for k in range(1, len(points) + 1):
        for subset in itertools.combinations(points, k):
            corner = np.max(np.array(subset), axis=0)
            total += (-1) ** (k + 1) * float(np.prod(np.asarray(ref) - corner))
    return total


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("seed", range(5))
def test_front_and_hypervolume_agree_with_brute_force(m, seed):
    rng = np.random.default_rng(seed)
    points = rng.random((9, m)).round(1)  # rounding makes ties and duplicates
    mask = pareto.non_dominated(points)
    assert np.flatnonzero(mask).tolist() == brute_front(points)
    ref = np.full(m, 1.05)
    assert pareto.hypervolume(points, ref) == pytest.approx(brute_hypervolume(points, ref), rel=1e-9, abs=1e-12)


def test_fronts_partition_the_points_and_each_front_is_the_next_nondominated_layer():
    rng = np.random.default_rng(7)
    points = rng.random((30, 2))
    fronts = pareto.fronts(points)
    assert sorted(np.concatenate(fronts).tolist()) == list(range(30))
    left = list(range(30))
    for front in fronts:
        layer = [left[i] for i in brute_front(points[left])]
        assert sorted(front.tolist()) == sorted(layer)
        left = [i for i in left if i not in set(layer)]


def test_crowding_gives_the_extremes_infinity_and_the_order_prefers_lonely_points():
    front = np.array([[0.0, 1.0], [0.1, 0.9], [0.5, 0.5], [0.9, 0.1], [1.0, 0.0]])
    dist = pareto.crowding(front)
    assert dist[0] == dist[-1] == np.inf
    assert dist[2] > dist[1] and dist[2] > dist[3]  # the middle point is alone
    order = pareto.rank_order(np.vstack([front, [[1.0, 1.0]]]))  # a dominated point comes last
    assert order[-1] == 5 and order[2] == 2


def test_hypervolume_ignores_points_outside_the_reference_and_needs_one_value_per_objective():
    assert pareto.hypervolume([[2.0, 0.0]], [1.0, 1.0]) == 0.0
    assert pareto.hypervolume([[0.0, 0.0], [2.0, 2.0]], [1.0, 1.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one value per objective"):
        pareto.hypervolume([[0.0, 0.0]], [1.0])
