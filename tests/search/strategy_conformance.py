"""The conformance suite every strategy passes (imitating optuna/testing): import and extend STRATEGIES.

A strategy joins the suite by adding a factory `seed -> Strategy` to STRATEGIES; the tests in
tests/search/test_conformance.py (this module: tests/search/strategy_conformance.py) then run it through:

- an ask/run loop of real trials on a tiny workload, through a real SQLite study;
- determinism: the same seed gives the same trials, in this process and in a fresh one;
- kill-then-resume: a study rebuilt from its database asks for the same next request, and a
  study stopped and continued proposes what an uninterrupted one does;
- convergence on a cheap toy objective (no training), where model-based strategies must
  also beat random search.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

import search
import spaces
from search import History, TrialView

STRATEGIES: dict[str, Callable[[int], search.Strategy]] = {
    "random": lambda seed: search.Random(seed=seed),
    "sobol": lambda seed: search.Random(seed=seed, quasi="sobol"),
    "halton": lambda seed: search.Random(seed=seed, quasi="halton"),
    "bayesian": lambda seed: search.Bayesian(
        seed=seed, n_initial=5, num_restarts=2, raw_samples=64, mc_samples=32, fit_maxiter=60
    ),
    "tpe": lambda seed: search.OptunaSampler("tpe", seed=seed),
    "optuna-gp": lambda seed: search.OptunaSampler("gp", seed=seed),
}
MODEL_BASED = ("bayesian", "tpe")


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
