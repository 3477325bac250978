"""The conformance suite every strategy passes (imitating optuna/testing): import and extend STRATEGIES.

A strategy joins the suite by adding a factory `seed -> Strategy` to STRATEGIES; the tests in
tests/search/test_conformance.py (this module: tests/search/strategy_conformance.py) then run it through:

- an ask/run loop of real trials on a tiny workload, through a real SQLite study;
- determinism: the same seed gives the same trials, in this process and in a fresh one;
- kill-then-resume: a study rebuilt from its database asks for the same next request, and a
  study stopped and continued proposes what an uninterrupted one does;
- convergence on a cheap toy objective (no training), where model-based strategies must
  also beat random search.

Strategies that train through a routine of their own (`search.Darts`) join ROUTINE_STRATEGIES:
on a tiny cell workload the suite checks that their spec round-trips, that every unit of work
ends as a recorded trial, that the best trial is one of the comparable routine ("train"), and
that a study stopped, reloaded from its database and continued ends with the same trials,
values and routine results as one never stopped (which also checks same seed, same trials).
Whether they do their job better than random search is each family's own test and benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from tunelab import search, spaces
from tunelab.search import History, TrialView

STRATEGIES: dict[str, Callable[[int], search.Strategy]] = {
    "random": lambda seed: search.Random(seed=seed),
    "sobol": lambda seed: search.Random(seed=seed, quasi="sobol"),
    "halton": lambda seed: search.Random(seed=seed, quasi="halton"),
    "bayesian": lambda seed: search.Bayesian(
        seed=seed, n_initial=5, num_restarts=2, raw_samples=64, mc_samples=32, fit_maxiter=60
    ),
    "tpe": lambda seed: search.OptunaSampler("tpe", seed=seed),
    "optuna-gp": lambda seed: search.OptunaSampler("gp", seed=seed),
    # a small population, so that the few trials of these tests include mutated children
    "evolution": lambda seed: search.Evolution(population=4, sample=3, seed=seed),
    "evolution-de": lambda seed: search.Evolution(population=4, seed=seed, method="differential"),
    # NSGA-II on one objective (an elitist steady-state GA); its multi-objective study: test_multi_objective.py
    "evolution-nsga2": lambda seed: search.Evolution(population=4, seed=seed, method="nsga2"),
}
MODEL_BASED = ("bayesian", "tpe")
# Strategies that train through their own routine: a factory `seed -> Strategy` cheap enough for a tiny
# workload, and the space it searches (a factory too).
# Multi-fidelity strategies pause and resume trials; they run the suite with epoch budgets.
MULTI_FIDELITY: dict[str, Callable[[int], search.Strategy]] = {
    "freeze_thaw": lambda seed: search.FreezeThaw(seed=seed, candidates=64, fit_maxiter=40, surrogate="power_law"),
    "asha": lambda seed: search.ASHA(seed=seed),
    "hyperband": lambda seed: search.Hyperband(seed=seed),
    "evolution-mf": lambda seed: search.Evolution(seed=seed, short_epochs=1),
    "freeze_thaw-pfn": lambda seed: search.FreezeThaw(seed=seed, surrogate="pfn", candidates=64),
    "curve_pruner": lambda seed: search.CurvePruner(search.Random(seed=seed)),
}


def toy_space() -> spaces.Space:
    """A conditional space like the real ones: a choice of two branches, floats, an int, a categorical."""
    return spaces.Space(
        spaces.Choice(
            "opt",
            {
                "a": spaces.Space(lr=spaces.Float(1e-4, 1.0, log=True), m=spaces.Float(0.0, 1.0)),
                "b": spaces.Space(lr=spaces.Float(1e-4, 1.0, log=True)),
            },
        ),
        width=spaces.Int(1, 64, log=True),
        act=spaces.Categorical(("relu", "tanh", "gelu")),
    )


def cell_space() -> spaces.Space:
    """A cell architecture with everything else fixed (what routine strategies search)."""
    fixed = spaces.Space(optimizer=spaces.Fixed("adamw"), schedule=spaces.Fixed("cosine"),
                         **{"adamw.lr": spaces.Fixed(3e-3)})
    return fixed | spaces.cells(dim=1, channels=4, cells_per_stage=1)


def regularized_space() -> spaces.Space:
    """A small MLP with regularisation hyperparameters to tune (what self-tuning strategies search)."""
    fixed = spaces.Space(optimizer=spaces.Fixed("adam"), schedule=spaces.Fixed("constant"))
    return fixed | spaces.mlp(depth=1, width=16, dropout=spaces.Float(0.0, 0.9, default=0.1),
                              shift=spaces.Int(0, 8, default=1))


ROUTINE_STRATEGIES: dict[str, tuple[Callable[[int], search.Strategy], Callable[[], spaces.Space]]] = {
    "darts-pt": (lambda seed: search.Darts(seed=seed, epochs=1, pt_interval=1, batch_size=32, channels=4), cell_space),
    "darts-2-argmax": (lambda seed: search.Darts(seed=seed, order=2, selection="argmax", epochs=1, batch_size=32,
                                                 channels=4), cell_space),
    "stn": (lambda seed: search.SelfTuning(seed=seed, tune=["model.dropout", "model.shift"], warmup=1),
            regularized_space),
    "delta-stn": (lambda seed: search.SelfTuning(seed=seed, delta=True, warmup=1), regularized_space),
}


def toy_objective(config: dict) -> float:
    """Minimum 0 at opt=a, a.lr=1e-2, a.m=0.7, width=16, act=gelu."""
    if config["opt"] == "a":
        v = (math.log10(config["a.lr"]) + 2.0) ** 2 + 4 * (config["a.m"] - 0.7) ** 2
    else:
        v = 0.5 + (math.log10(config["b.lr"]) + 1.0) ** 2
    v += (math.log2(config["width"]) - 4.0) ** 2 / 4 + (0.0 if config["act"] == "gelu" else 0.3)
    return v


def toy_loop(strategy: search.Strategy, n: int, space: spaces.Space | None = None) -> list[TrialView]:
    """Ask `n` times, evaluating each config on the toy objective; return the trials."""
    space = space or toy_space()
    trials: list[TrialView] = []
    for i in range(n):
        request = strategy.ask(History(space, tuple(trials), max_epochs=1))
        assert request is not None and request.kind == "start"
        config = space.validate(request.config)
        trials.append(TrialView(i, "complete", config, value=toy_objective(config), curve=(toy_objective(config),),
                                epochs=1, target_epochs=1, attrs=dict(request.attrs)))
    return trials


def best(trials: list[TrialView]) -> float:
    return float(np.min([t.value for t in trials]))


def toy_curve(config: dict, epoch: int) -> float:
    """A learning curve that decays towards `toy_objective`, at a config-dependent rate."""
    final = toy_objective(config)
    rate = 0.25 + 0.2 * math.sin(3.0 * final) ** 2
    return final + 2.0 * math.exp(-rate * epoch)


def toy_mf_loop(strategy: search.Strategy, budget: int, max_epochs: int = 9,
                space: spaces.Space | None = None) -> list[TrialView]:
    """Run start/resume requests on toy curves until `budget` epochs are trained; return the trials."""
    space = space or toy_space()
    trials: dict[int, TrialView] = {}
    spent = 0
    while spent < budget:
        history = History(space, tuple(trials.values()), max_epochs=max_epochs)
        request = strategy.ask(history)
        assert request is not None
        retired = set(strategy.retire(history))
        assert all(trials[n].state == "paused" for n in retired)
        for n in retired:
            trials[n] = replace(trials[n], state="pruned", value=trials[n].curve[-1])
        if request.kind == "start":
            number, config, done = len(trials), space.validate(request.config), 0
            attrs = dict(request.attrs)
        else:
            old = trials[request.trial]
            assert old.state == "paused", f"asked to resume trial {old.number} in state {old.state}"
            number, config, done, attrs = old.number, old.config, old.epochs, {**old.attrs, **request.attrs}
        until = min((request.epochs if request.kind == "start" else request.until_epoch) or max_epochs, max_epochs)
        until = min(until, done + budget - spent)
        assert until > done
        curve = tuple(toy_curve(config, e) for e in range(1, until + 1))
        spent += until - done
        state = "complete" if until == max_epochs else "paused"
        trials[number] = TrialView(number, state, config, value=curve[-1] if state == "complete" else None,
                                   curve=curve, epochs=until, target_epochs=until, attrs=attrs)
    return list(trials.values())


def best_final(trials: list[TrialView]) -> float:
    """The best value seen at any epoch of any trial (the anytime incumbent)."""
    return float(min(v for t in trials for v in t.curve))
