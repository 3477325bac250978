"""`search.Evolution`: regularized (aging) evolution, or differential evolution, over any space.

References:
    Real, Aggarwal, Huang & Le, "Regularized Evolution for Image Classifier Architecture
    Search", AAAI 2019 (aging evolution, the default).
    Awad, Mallik & Hutter, "Differential Evolution for Neural Architecture Search", NAS
    workshop at ICLR 2020 (DE rand/1/bin on the unit-cube encoding, `method="differential"`),
    after Storn & Price, "Differential Evolution", J. Global Optimization 1997.
    Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020 (the ASHA
    promotion rule of the optional multi-fidelity mode).

Regularized evolution (Real et al. 2019, Algorithm 1): the first P trials are random
configurations. After that each new trial is a child: S members of the population (the P
youngest trials with a result) are sampled with replacement, the best of the sample is the
parent, and the child is the parent with one mutation. The oldest member leaves the population
when a child joins it - age, not fitness, decides who dies, which is the "regularization".
A mutation changes one active parameter, chosen uniformly: a number takes a Gaussian step in
its unit position, a categorical another value; for a cell edge of `spaces.cells` it is, with
equal chance, an *op mutation* (the edge takes another operation) or an *edge mutation* (the
node's input moves to another earlier node: the operations of two incoming edges of the node
swap, Real et al.'s "hidden state mutation" in NAS-Bench-201's encoding). An *identity
mutation* (the parent itself) happens with probability `identity`.

The paper uses P = 100 and S = 25 for 20,000 models. The defaults here, P = 10 and S = 3,
keep S/P near 1/4 for budgets of tens to hundreds of trials.

Differential evolution (Awad et al. 2020): every configuration is a point of [0, 1]^d, one
dimension per parameter (`search.MixedEncoding`; a categorical of k values takes
`floor(u * k)`). The first P trials are random points, one per population slot; then child n
targets slot `(n - P) mod P`: mutant `v = x_r1 + F (x_r2 - x_r3)` from three other slots, a
coordinate outside [0, 1] redrawn uniformly, binomial crossover with the target (rate CR, one
coordinate from the mutant always). A slot keeps the best of the trials proposed for it, so the
child replaces its target when it is at least as good (greedy selection) - asynchronously, as
soon as it finishes. F = CR = 0.5 as in the paper.

Everything is a function of the study's history: the population is rebuilt from the stored
trials (aging order is proposal order; a DE trial stores its slot and unit point with
`Request.attrs`), so a study killed and resumed continues with the same population. With
several workers a child is made whenever one is free, from the members finished by then.

Trials in a study share the trainer's seed, so an exact repeat of a configuration costs a trial
and returns the same value: children equal to an earlier trial are redrawn (an explicit identity
mutation excepted), and `identity` defaults to 0.

NSGA-II (`method="nsga2"`, Deb et al. 2002, steady-state as in Durillo et al. 2009; see
`search.nsga2`): the one evolution that searches several objectives (`studies.create(...,
objectives=...)`): parents by binary tournament in NSGA-II's crowded-comparison order, varied by
the mutation above, the population the best P of all complete trials in that order.

Options:
- `max_params` / `max_flops`: every proposed network respects the limit (measured with
  `spaces.model_size` on the study's workload shapes); configurations over it are redrawn.
- `max_latency_ms`: the same for the network's inference latency, timed on the study's device
  (`trainers.latency`: the median of repeated forward passes of one example, after warm-up),
  once per network.
- `short_epochs`: multi-fidelity. Children train `short_epochs` epochs and pause (with a
  checkpoint); fitness in tournaments and DE selection is the validation value at that epoch.
  A paused trial whose short value is in the top 1/eta of all short values so far is promoted:
  resumed from its checkpoint to the full run (ASHA's rule). Paused trials that left the
  population and are not in the top 1/eta are retired (pruned, checkpoint deleted).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunelab.search import nsga2
from tunelab.search.base import (
    History,
    Request,
    Strategy,
    TrialView,
    check_int,
    config_key,
    needs_curves,
    seen_configs,
)
from tunelab.search.encoding import MixedEncoding
from tunelab.search.limits import NetworkLimits
from tunelab.spaces import EDGES, Categorical, Config, ConfigError, Fixed, Space

METHODS = ("regularized", "differential", "nsga2")
ATTR = "evolution"
_EDGE = re.compile(r"^(?P<prefix>.+)\.op_(?P<i>\d+)_(?P<j>\d+)$")
_TRIES = 64
_RANDOM_TRIES = 300


@dataclass(frozen=True)
class Mutation:
    """The outcome of `mutate`.

    Attributes:
        config: The child configuration (valid in the space).
        kind: "identity", "param" (a hyperparameter), "op" (a cell edge's operation) or "edge"
            (a cell node's input moved to another node).
        name: The parameter changed (for "edge": the edge whose operation moved), or None.
    """

    config: Config
    kind: str
    name: str | None = None


def _cell_edge(name: str) -> tuple[str, int, int] | None:
    m = _EDGE.match(name)
    if m is None or (int(m["i"]), int(m["j"])) not in EDGES:
        return None
    return m["prefix"], int(m["i"]), int(m["j"])


def _rewire(space: Space, config: Config, edge: tuple[str, int, int], rng: np.random.Generator) -> Config | None:
    """Move node j's input on edge i->j to another earlier node (swap two incoming edges' ops)."""
    prefix, i, j = edge
    name = f"{prefix}.op_{i}_{j}"
    op = config[name]
    options = []
    for k in range(j):
        other = f"{prefix}.op_{k}_{j}"
        if k == i or other not in config or config[other] == op:
            continue
        p, q = space[name], space[other]
        if isinstance(p, Categorical) and isinstance(q, Categorical) and op in q.choices and config[other] in p.choices:
            options.append(other)
    if not options:
        return None
    other = options[int(rng.integers(len(options)))]
    child = dict(config)
    child[name], child[other] = config[other], op
    return child


def mutate(
    space: Space,
    config: Mapping[str, Any],
    rng: np.random.Generator,
    *,
    identity: float = 0.0,
    scale: float = 0.2,
) -> Mutation:
    """One mutation of regularized evolution (see the module docstring).

    Args:
        space: The space `config` belongs to.
        config: The parent, a valid configuration.
        rng: The generator of the mutation's choices.
        identity: Probability of the identity mutation.
        scale: Standard deviation of a numeric step in the unit interval.

    Returns:
        The child: valid, and different from the parent unless `kind == "identity"` (or the
        space has nothing to change).
    """
    parent = space.validate(config)
    if rng.random() < identity:
        return Mutation(dict(parent), "identity")
    names = [
        n for n in space.active(parent)
        if not isinstance(space[n], Fixed) and not (isinstance(space[n], Categorical) and len(space[n].choices) < 2)
    ]
    if not names:
        return Mutation(dict(parent), "identity")
    name = names[int(rng.integers(len(names)))]
    edge = _cell_edge(name)
    if edge is not None and rng.random() < 0.5:
        moved = _rewire(space, parent, edge, rng)
        if moved is not None:
            return Mutation(space.validate(moved), "edge", name)
    return Mutation(space.mutate(parent, rng, scale=scale, name=name), "param" if edge is None else "op", name)


class Evolution(Strategy):
    """Regularized (aging) evolution, Real et al. 2019; differential evolution as an option.

    Args:
        population: Population size P (DE: number of slots, at least 4).
        sample: Tournament size S, drawn with replacement (regularized evolution).
        seed: Seed of every random choice.
        method: "regularized" (aging evolution), "differential" (DE rand/1/bin) or "nsga2"
            (NSGA-II: several objectives).
        identity: Probability of an identity mutation (regularized evolution).
        scale: Standard deviation of a numeric mutation step in the unit interval.
        mutation_factor: DE's F.
        crossover: DE's crossover rate CR.
        max_params: Largest parameter count a proposed network may have (None: no limit).
        max_flops: Largest forward FLOPs per example a proposed network may have.
        max_latency_ms: Largest inference latency (milliseconds per example, timed on the
            study's device) a proposed network may have.
        short_epochs: Multi-fidelity: epochs of a child's first evaluation (None: full runs).
        eta: Multi-fidelity: a short run in the top 1/eta of all short runs is promoted.

    Raises:
        ConfigError: A setting out of range.
    """

    name = "evolution"

    def __init__(
        self,
        population: int = 10,
        sample: int = 3,
        seed: int = 0,
        *,
        method: str = "regularized",
        identity: float = 0.0,
        scale: float = 0.2,
        mutation_factor: float = 0.5,
        crossover: float = 0.5,
        max_params: int | None = None,
        max_flops: int | None = None,
        short_epochs: int | None = None,
        eta: int = 3,
        max_latency_ms: float | None = None,
    ) -> None:
        super().__init__(seed)
        if method not in METHODS:
            raise ConfigError(f"Evolution(method=...) must be one of {METHODS}, got {method!r}")
        low = 4 if method == "differential" else 1
        if not _is_int(population) or population < low:
            raise ConfigError(
                f"Evolution(population=...) must be an int >= {low}"
                f"{' (DE draws three slots besides the target)' if low == 4 else ''}, got {population!r}"
            )
        check_int("Evolution", "population", population, low)
        check_int("Evolution", "sample", sample)
        for label, value in (("identity", identity), ("crossover", crossover)):
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"Evolution({label}=...) must be a probability in [0, 1], got {value!r}")
        for label, value in (("scale", scale), ("mutation_factor", mutation_factor)):
            if not isinstance(value, (int, float)) or not 0.0 < value <= 2.0:
                raise ConfigError(f"Evolution({label}=...) must be a number in (0, 2], got {value!r}")
        for label, value in (("max_params", max_params), ("max_flops", max_flops)):
            check_int("Evolution", label, value, 1, 10**15, optional=True)
        check_int("Evolution", "short_epochs", short_epochs, optional=True)
        number = isinstance(max_latency_ms, (int, float)) and not isinstance(max_latency_ms, bool)
        if max_latency_ms is not None and not (number and 0.0 < max_latency_ms <= 1e7):
            raise ConfigError(f"Evolution(max_latency_ms=...) must be a positive number of milliseconds or None, got "
                              f"{max_latency_ms!r}")
        check_int("Evolution", "eta", eta, 2, 1_000)
        self.population = int(population)
        self.sample = int(sample)
        self.method = method
        self.identity = float(identity)
        self.scale = float(scale)
        self.mutation_factor = float(mutation_factor)
        self.crossover = float(crossover)
        self.max_params = max_params
        self.max_flops = max_flops
        self.short_epochs = short_epochs
        self.eta = int(eta)
        self.max_latency_ms = None if max_latency_ms is None else float(max_latency_ms)
        if method == "nsga2" and short_epochs is not None:
            raise ConfigError("Evolution(method='nsga2') ranks complete trials; it has no short_epochs mode: for "
                              "multi-fidelity search of several objectives use search.ASHA (MO-ASHA)")

    def check_objectives(self, objectives: Any) -> None:
        """Several objectives need `method="nsga2"`.

        Raises:
            ConfigError: Several objectives with another method.
        """
        if len(objectives) > 1 and self.method != "nsga2":
            raise ConfigError(f"Evolution(method={self.method!r}) optimises one objective, but the study has "
                              f"{len(objectives)} ({', '.join(objectives)}); use Evolution(method='nsga2')")

    # ------------------------------------------------------------------ fitness and population
    def _short(self, history: History) -> int | None:
        s = self.short_epochs
        return s if s is not None and s < history.max_epochs else None

    def fitness(self, trial: TrialView, history: History) -> float | None:
        """The value a trial competes with (lower is better), or None if it has none yet.

        Full runs: the final value of a complete trial. Multi-fidelity: the value at
        `short_epochs` of any trial that reached it and did not fail.
        """
        short = self._short(history)
        if short is None:
            ok = trial.state == "complete" and trial.value is not None and math.isfinite(trial.value)
            return float(trial.value) if ok else None
        if trial.state == "failed" or len(trial.curve) < short or not math.isfinite(trial.curve[short - 1]):
            return None
        return float(trial.curve[short - 1])

    def members(self, history: History) -> list[TrialView]:
        """The current population, oldest first.

        Regularized evolution: the P youngest trials (in proposal order) that have a fitness.
        Differential evolution: each slot's best trial, in slot order (slots without a
        finished trial are left out).
        """
        if self.method == "regularized":
            return [t for t in history.trials if self.fitness(t, history) is not None][-self.population :]
        if self.method == "nsga2":
            return nsga2.population(self.population, history)
        return [best for _, best in self._slots(history) if best is not None]

    def _slots(self, history: History) -> list[tuple[list[float] | None, TrialView | None]]:
        """DE slots: (current point, current best trial) per slot, rebuilt from the trials' attrs."""
        points: list[list[float] | None] = [None] * self.population
        best: list[TrialView | None] = [None] * self.population
        for t in history.trials:
            info = t.attrs.get(ATTR, {})
            slot = info.get("slot")
            if not isinstance(slot, int) or not 0 <= slot < self.population or "u" not in info:
                continue
            f = self.fitness(t, history)
            current = best[slot]
            if f is not None and (current is None or f <= self.fitness(current, history)):
                best[slot], points[slot] = t, list(info["u"])
            elif points[slot] is None:
                points[slot] = list(info["u"])
        return list(zip(points, best, strict=True))

    # ------------------------------------------------------------------ constraint
    def allows(self, config: Mapping[str, Any], history: History) -> bool:
        """Whether the network of `config` respects `max_params`, `max_flops` and `max_latency_ms` (`search.limits`)."""
        return self.limits.allows(config, history)

    @property
    def limits(self) -> NetworkLimits:
        """The limits on proposed networks."""
        return NetworkLimits("Evolution", self.max_params, self.max_flops, self.max_latency_ms)

    # ------------------------------------------------------------------ proposals
    def _draw(self, history: History, draw: Callable[[], tuple[Any, Config]], seen: set[str]) -> tuple[Any, Config]:
        """Call `draw() -> (point, config)` until a config within the limits, new if possible, comes out."""
        fallback = None
        for _ in range(_RANDOM_TRIES):
            point, config = draw()
            if not self.allows(config, history):
                continue
            if config_key(config) not in seen:
                return point, config
            fallback = fallback or (point, config)
        if fallback is not None:
            return fallback
        raise ConfigError(
            f"Evolution: none of {_RANDOM_TRIES} random configurations satisfies {self.limits}; raise the limit "
            "or narrow the space to smaller networks"
        )

    def _random(self, history: History, rng: np.random.Generator, seen: set[str]) -> Config:
        """A uniformly random configuration within the limits, new if possible."""
        return self._draw(history, lambda: (None, history.space.sample(rng)), seen)[1]

    def _unit_random(self, history: History, enc: MixedEncoding, rng: np.random.Generator,
                     seen: set[str]) -> tuple[np.ndarray, Config]:
        """A uniformly random point of the unit cube and its config, within the limits, new if possible."""

        def draw() -> tuple[np.ndarray, Config]:
            u = rng.random(enc.dim)
            return u, enc.from_unit(u)

        return self._draw(history, draw, seen)

    def check(self, space: Any, trainer: Any) -> None:
        """Refuse runs of one epoch for the multi-fidelity variant (`short_epochs`), and a bad cell space."""
        if self.short_epochs is not None:
            needs_curves(self, trainer)
        super().check(space, trainer)

    def ask(self, history: History) -> Request | None:
        """A promotion (multi-fidelity), a random initial trial, or a mutated child."""
        short = self._short(history)
        if short is not None:
            promote = self.promotable(history)
            if promote:
                info = {**promote[0].attrs.get(ATTR, {}), "promoted": True}
                return Request.resume(promote[0].number, attrs={ATTR: info})
        rng = self.rng(history)
        seen = seen_configs(history.trials)
        if self.method == "regularized":
            made = self._regularized_child(history, rng, seen)
        elif self.method == "nsga2":
            made = self._nsga2_child(history, rng, seen)
        else:
            made = self._differential_child(history, rng, seen)
        if made is None:
            return None
        config, info = made
        return Request.start(config, epochs=short, attrs={ATTR: info})

    def _regularized_child(self, history: History, rng: np.random.Generator,
                           seen: set[str]) -> tuple[Config, dict[str, Any]] | None:
        population = self.members(history)
        if len(history.trials) < self.population or not population:
            if population == [] and len(history.trials) >= self.population and history.in_flight:
                return None  # every initial trial is still running: wait for a parent
            return self._random(history, rng, seen), {"mutation": "random"}
        picks = rng.integers(len(population), size=self.sample)
        parent = min((population[int(i)] for i in picks), key=lambda t: self.fitness(t, history))
        for _ in range(_TRIES):
            m = mutate(history.space, parent.config, rng, identity=self.identity, scale=self.scale)
            if (m.kind == "identity" or config_key(m.config) not in seen) and self.allows(m.config, history):
                return m.config, {"parent": parent.number, "mutation": m.kind, "changed": m.name}
        # the parent's neighbourhood is used up (or over the limit): a random newcomer instead
        return self._random(history, rng, seen), {"parent": parent.number, "mutation": "random"}

    def _nsga2_child(self, history: History, rng: np.random.Generator,
                     seen: set[str]) -> tuple[Config, dict[str, Any]] | None:
        """NSGA-II (`search.nsga2`): a random initial trial, or a mutation of a binary tournament's winner."""
        members = nsga2.population(self.population, history)
        if len(history.trials) < self.population or not members:
            if not members and len(history.trials) >= self.population and history.in_flight:
                return None  # every initial trial is still running: wait for a parent
            return self._random(history, rng, seen), {"mutation": "random"}
        parent = nsga2.tournament(members, rng)
        for _ in range(_TRIES):
            m = mutate(history.space, parent.config, rng, identity=0.0, scale=self.scale)
            if config_key(m.config) not in seen and self.allows(m.config, history):
                return m.config, {"parent": parent.number, "mutation": m.kind, "changed": m.name}
        return self._random(history, rng, seen), {"parent": parent.number, "mutation": "random"}

    def _differential_child(self, history: History, rng: np.random.Generator,
                            seen: set[str]) -> tuple[Config, dict[str, Any]] | None:
        enc = MixedEncoding(history.space)
        n = len(history.trials)
        if n < self.population:
            u, config = self._unit_random(history, enc, rng, seen)
            return config, {"slot": n, "u": [float(v) for v in u], "mutation": "random"}
        slots = self._slots(history)
        target = (n - self.population) % self.population
        points = [np.asarray(p, dtype=np.float64) if p is not None and len(p) == enc.dim else None
                  for p, _ in slots]
        others = [k for k, p in enumerate(points) if p is not None and k != target]
        if points[target] is None or len(others) < 3:
            u, config = self._unit_random(history, enc, rng, seen)
            return config, {"slot": target, "u": [float(v) for v in u], "mutation": "random"}
        x = points[target]
        for _ in range(_TRIES):
            r1, r2, r3 = (int(k) for k in rng.choice(others, size=3, replace=False))
            v = points[r1] + self.mutation_factor * (points[r2] - points[r3])
            out = (v < 0.0) | (v > 1.0)
            v[out] = rng.random(int(out.sum()))
            mask = rng.random(enc.dim) < self.crossover
            mask[int(rng.integers(enc.dim))] = True
            u = np.where(mask, v, x)
            config = enc.from_unit(u)
            if config_key(config) not in seen and self.allows(config, history):
                return config, {"slot": target, "u": [float(c) for c in u], "mutation": "de",
                                "donors": [r1, r2, r3]}
        u, config = self._unit_random(history, enc, rng, seen)
        return config, {"slot": target, "u": [float(v) for v in u], "mutation": "random"}

    # ------------------------------------------------------------------ multi-fidelity
    def _top(self, history: History) -> list[TrialView]:
        """The trials whose short value is in the top 1/eta of all short values (best first)."""
        rung = [t for t in history.trials if self.fitness(t, history) is not None]
        rung.sort(key=lambda t: (self.fitness(t, history), t.number))
        return rung[: len(rung) // self.eta]

    def promotable(self, history: History) -> list[TrialView]:
        """Paused trials to resume to the full run, best first (multi-fidelity only)."""
        if self._short(history) is None:
            return []
        return [t for t in self._top(history) if t.state == "paused"]

    def retire(self, history: History) -> list[int]:
        """Paused trials that left the population and are not in the top 1/eta (multi-fidelity)."""
        if self._short(history) is None:
            return []
        keep = {t.number for t in self.members(history)} | {t.number for t in self._top(history)}
        return [t.number for t in history.paused if t.number not in keep]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


__all__ = ["METHODS", "Evolution", "Mutation", "mutate"]
