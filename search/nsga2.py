"""NSGA-II's selection for `search.Evolution(method="nsga2")`: several objectives, asynchronously.

References:
    Deb, Pratap, Agarwal & Meyarivan, "A Fast and Elitist Multiobjective Genetic Algorithm:
    NSGA-II", IEEE Trans. Evolutionary Computation 2002.
    Durillo, Nebro, Luna & Alba, "On the Effect of the Steady-State Selection Scheme in
    Multi-Objective Genetic Algorithms", EMO 2009 (the steady-state variant used here).

NSGA-II keeps a population of P members chosen by the crowded-comparison order: lower
non-domination rank first, and within a front larger crowding distance first (`spaces.pareto`).
Parents are picked by binary tournament in that order and varied; the next population is the
best P of parents and children together (elitism). Here a child is made whenever a worker is
free, so the generation is one child (Durillo et al.'s steady-state NSGA-II, which they find
converges at least as well as the generational one): the population is the best P of every
complete trial so far, which is what elitist survivor selection leaves after each child, and
it is rebuilt from the study's history at every proposal, so a resumed study continues alike.

Variation is `search.mutate`, the mutation of regularized evolution (one parameter; cell edges
by op or edge mutation), so NSGA-II searches architecture cells as the other evolutions do. The
first P trials are random. A study with one objective ranks by its value (NSGA-II then is an
elitist steady-state genetic algorithm).
"""

from __future__ import annotations

import math

import numpy as np

from tunelab.search.base import History, TrialView
from tunelab.spaces.pareto import rank_order


def objective_values(trial: TrialView, history: History) -> tuple[float, ...] | None:
    """A complete trial's normalised values (several objectives, or its one value), or None."""
    if trial.state != "complete":
        return None
    values = trial.values if history.multi_objective else (trial.value,) if trial.value is not None else None
    if values is None or not all(math.isfinite(v) for v in values):
        return None
    return tuple(values)


def population(size: int, history: History) -> list[TrialView]:
    """The best `size` complete trials in the crowded-comparison order, best first.

    With outcome constraints, Deb et al.'s constrained domination: every feasible trial comes
    before every infeasible one, and infeasible ones are ordered by their total violation.
    """
    done = [(t, v) for t in history.trials if (v := objective_values(t, history)) is not None]
    feasible = [(t, v) for t, v in done if t.violation <= 0]
    infeasible = sorted((t for t, _ in done if t.violation > 0), key=lambda t: (t.violation, t.number))
    ranked = []
    if feasible:
        order = rank_order(np.array([v for _, v in feasible]))
        ranked = [feasible[int(i)][0] for i in order]
    return (ranked + infeasible)[:size]


def tournament(members: list[TrialView], rng: np.random.Generator) -> TrialView:
    """Binary tournament in the crowded-comparison order (`members` best first): the better of two draws."""
    a, b = (int(i) for i in rng.integers(len(members), size=2))
    return members[min(a, b)]


__all__ = ["objective_values", "population", "tournament"]
