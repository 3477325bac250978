"""`search.CurvePruner`: stop a trial early when its learning curve cannot win (LC-PFN-style).

Adriaensen, Rakotoarison, Müller & Hutter, "Efficient Bayesian Learning Curve Extrapolation
using Prior-Data Fitted Networks" (NeurIPS 2023), section 5: after each epoch of a run, a PFN
extrapolates the curve so far and the run stops when the predicted probability that it ends
better than the best run so far falls below a threshold. Here the predictor is tunelab's shipped
curve PFN (`search.pfn`), which also reads the other trials' curves and configurations as context
(as ifBO's FT-PFN does), so a curve is judged against what similar configurations did.

The pruner wraps any strategy that trains full runs (Random, Bayesian, Evolution,
OptunaSampler...): the wrapped strategy chooses every configuration as it would alone; the
pruner trains each for `every` epochs at a time, pauses it, and either continues it or prunes it.
A trial is pruned when `P(its value at the last epoch < best value of the other trials) <
threshold`. Nothing is decided before a trial has `min_epochs` epochs, nor before some other
trial has a value to beat. Each decision is a function of the history (the PFN is deterministic
and fits nothing), so a study resumed from its database decides as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from tunelab.search.base import History, Request, Strategy, check_int, strategies
from tunelab.search.random import Random
from tunelab.spaces import ConfigError


class CurvePruner(Strategy):
    """Early stopping by the curve PFN around any strategy that trains full runs.

    Args:
        base: The strategy that chooses configurations (a `Strategy`, or a built-in one's spec
            `{"name": ..., "args": {...}}` as a study stores it); default `Random(seed=0)`.
        threshold: Prune a trial when its predicted probability of ending below the best value of
            the other trials falls under this (LC-PFN used 0.05 and below).
        every: Epochs trained between two decisions on a trial.
        min_epochs: Epochs a trial trains before it can be pruned.

    Raises:
        ConfigError: Out-of-range settings, or a base strategy that pauses trials itself.
    """

    name = "curve_pruner"
    pauses_trials = True

    def __init__(self, base: Strategy | Mapping[str, Any] | None = None, threshold: float = 0.05, every: int = 1,
                 min_epochs: int = 1) -> None:
        if isinstance(base, Mapping):  # a stored spec: only built-in strategies whose arguments name no code
            name, args = str(base.get("name", "")), base.get("args", {})
            cls = None if ":" in name or name not in strategies.names() else strategies.get(name)
            if cls is None or not cls.__module__.startswith("tunelab.") or (
                    isinstance(args, Mapping) and cls.stored_imports(args)):
                raise ConfigError(f"CurvePruner rebuilds only built-in strategies whose arguments name no code "
                                  f"from a stored spec, not {name!r}; pass the strategy object itself "
                                  f"(CurvePruner(MyStrategy(...)))")
            base = Strategy.from_spec(base)
        base = base if base is not None else Random(seed=0)
        if not isinstance(base, Strategy):
            raise ConfigError(f"CurvePruner(base=...) must be a search strategy, got {base!r}")
        if base.pauses_trials:
            raise ConfigError(f"CurvePruner wraps strategies that train full runs; {type(base).__name__} pauses and "
                              f"stops trials itself (use it alone)")
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0.0 <= threshold < 1.0:
            raise ConfigError(f"CurvePruner(threshold=...) must be in [0, 1), got {threshold!r}")
        check_int("CurvePruner", "every", every)
        check_int("CurvePruner", "min_epochs", min_epochs)
        super().__init__(base.seed)
        self.base = base
        self.threshold = float(threshold)
        self.every = every
        self.min_epochs = min_epochs
        self._cache: tuple[Any, dict[int, float]] | None = None

    def spec(self) -> dict[str, Any]:
        """The wrapped strategy is stored as its own spec."""
        return {"name": self.name, "args": {"base": self.base.spec(), "threshold": self.threshold,
                                            "every": self.every, "min_epochs": self.min_epochs}}

    def check(self, space: Any, trainer: Any) -> None:
        """The wrapped strategy's checks, and runs long enough to stop early."""
        self.base.check(space, trainer)
        super().check(space, trainer)

    def chances(self, history: History) -> dict[int, float]:
        """Paused trial number -> predicted probability of ending below the best value of the other trials.

        Trials with fewer than `min_epochs` epochs, or with no other trial to beat yet, get 1.
        """
        key = tuple((t.number, t.state, t.epochs) for t in history.trials)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        paused = [t for t in history.trials if t.state == "paused"]
        out = {t.number: 1.0 for t in paused}
        ready = [t for t in paused if t.epochs >= self.min_epochs]
        from tunelab.search.freeze_thaw import FreezeThaw

        observed = list(zip(*FreezeThaw.observations(history), strict=True)) if ready else []  # failures: the worst
        if len(observed) >= 2:
            from tunelab.search.pfn import PFNCurves, features

            model = PFNCurves(history.max_epochs).condition(
                features(history.space, [t.config for t, _ in observed]), [c for _, c in observed])
            row = {t.number: i for i, (t, _) in enumerate(observed)}
            judged = []  # (trial number, its row, the best value of the other trials)
            for t in ready:
                best = min((min(c) for u, c in observed if u.number != t.number), default=math.inf)
                if math.isfinite(best) and t.number in row:
                    judged.append((t.number, row[t.number], best))
            if judged:  # one forward pass for every judged trial, each against its own best
                probs = model.probs_curve([i for _, i, _ in judged], [history.max_epochs] * len(judged))
                chance = np.exp(model.log_below(probs, np.array([best for _, _, best in judged])))
                out.update({number: float(c) for (number, _, _), c in zip(judged, chance, strict=True)})
        self._cache = (key, out)
        return out

    def ask(self, history: History) -> Request | None:
        """Continue the oldest paused trial that can still win, else start the wrapped strategy's next choice."""
        chances = self.chances(history)
        for t in sorted(history.paused, key=lambda t: t.number):
            if chances.get(t.number, 1.0) >= self.threshold:
                until = min(t.epochs + self.every, history.max_epochs)
                return Request.resume(t.number, until_epoch=until, attrs={"win_chance": round(chances[t.number], 6)})
        request = self.base.ask(history)
        if request is None or request.kind != "start" or request.routine != "train":
            return request
        end = history.max_epochs if request.epochs is None else min(request.epochs, history.max_epochs)
        return replace(request, epochs=min(self.every, end))

    def retire(self, history: History) -> list[int]:
        """Paused trials whose chance of winning is below `threshold`: the study prunes them."""
        chances = self.chances(history)
        return sorted(n for n, p in chances.items() if p < self.threshold)

