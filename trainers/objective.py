"""`Objective`: any black-box function of a configuration, tuned like a trainer (Optuna's `objective(trial)`).

    def cross_validated(config):                     # scikit-learn, XGBoost, a simulator, ...
        model = GradientBoostingClassifier(learning_rate=config["lr"], max_depth=config["depth"])
        scores = cross_val_score(model, X, y, cv=5)
        return {"accuracy": scores.mean(), "spread": scores.std()}

    objective = trainers.Objective(cross_validated, metric="accuracy", direction="maximize")
    study = studies.create("gbm", space=space, trainer=objective, strategy=search.Bayesian(seed=0))

`fn(config)` returns a number or a mapping of named numbers that holds `metric`; every other
entry is recorded with the trial (`TrialRecord.metrics`). One evaluation is one "epoch" of a
run of one epoch, so budgets in trials and seconds work, and so do every strategy that does
not need learning curves (Random, Bayesian, `OptunaSampler`, Evolution on hyperparameter
spaces, `Enqueue`) and every executor (in process, a process pool, Ray). Strategies that pause
and resume trials, and routines that train tunelab's networks, refuse it with a typed error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from tunelab.spaces.errors import ConfigError
from tunelab.trainers.run import Decision, EpochResult, TrainResult
from tunelab.trainers.usercode import UserCode, check_objective, function_name, number, reference


class Objective(UserCode):
    """A black-box objective `fn(config) -> float | {name: float}` as a `trainers.Trainable`.

    Args:
        fn: The function; it must be importable by name (defined at the top level of a module or
            of the script that runs the study) so that workers and a reopened study find it.
        metric: The name of the value to optimise; a plain number returned is this value.
        direction: "minimize" or "maximize".
        seed: Passed to `fn` as `seed=` when `fn` accepts it (otherwise unused).
        name: The workload's name in listings (default: the function's name).

    Raises:
        ConfigError: `fn` is not a named top-level function, or a bad metric or direction.
    """

    epochs = 1
    def __init__(self, fn: Callable[..., Any], *, metric: str = "value", direction: str = "minimize",
                 seed: int = 0, name: str | None = None) -> None:
        self.path = reference(fn, "trainers.Objective")
        check_objective(metric, direction, "trainers.Objective")
        self.fn, self._metric, self._direction = fn, metric, direction
        self.seed = int(seed)
        self._name = name or function_name(fn, "objective")
        self.device = torch.device("cpu")
        self._takes_seed = _accepts(fn, "seed")

    def __repr__(self) -> str:
        return f"Objective({self.path}, metric={self._metric!r}, direction={self._direction!r})"

    # ------------------------------------------------------------------ `Trainable`
    def spec(self) -> dict[str, Any]:
        """What a study stores: the function's import path, its metric and direction."""
        return {"objective": self.path, "workload": {"name": self._name, "objective": self.path, **self._bound()},
                "workload_name": self._name, "metric": self._metric, "direction": self._direction, "epochs": 1,
                "seed": self.seed}

    def derive(self, *, epochs: int | None = None, seed: int | None = None) -> Objective:
        """The same objective with another seed (an objective has no epochs to change)."""
        if epochs not in (None, 1):
            raise ConfigError(f"an Objective evaluates once: it has no epochs={epochs} to run")
        return Objective(self.fn, metric=self._metric, direction=self._direction,
                         seed=self.seed if seed is None else seed, name=self._name)

    def check(self, space: Any) -> None:
        """Nothing to check: `fn` defines what a configuration means."""
        return None

    def planned_grad_evals(self, config: Mapping[str, Any], epochs: int) -> int:
        """0: an objective's cost is its time."""
        return 0

    def steps_per_epoch(self, batch_size: int) -> int:
        """1: one evaluation."""
        return 1

    def fit(self, config: Mapping[str, Any], *, until_epoch: int | None = None, checkpoint: Any = None,
            report: Callable[[EpochResult], Decision | None] | None = None, seed: int | None = None,
            checkpoint_seconds: float | None = None,
            keep_final: Callable[[EpochResult], bool] | None = None) -> TrainResult:
        """Evaluate `fn(config)` once: a run of one epoch whose `val_metric` is the objective.

        A non-finite objective ends the run as "diverged" (its error names the metric).

        Raises:
            ConfigError: `fn` returned no number for `metric`, or values that are not numbers.
        """
        t0 = time.perf_counter()
        kwargs = {"seed": self.seed if seed is None else int(seed)} if self._takes_seed else {}
        value = self.fn(dict(config), **kwargs)
        seconds = time.perf_counter() - t0
        objective, extra = self._split(value)
        result = EpochResult(1, math.nan, math.nan, objective, math.nan, seconds, 0, extra)
        if report is not None:
            report(result)
        status = "complete" if math.isfinite(objective) else "diverged"
        return TrainResult(status=status, epochs=[result], val_metric=objective,
                           best_val_metric=objective if math.isfinite(objective) else None, test_metric=None,
                           checkpoint=None, seed=self.seed if seed is None else int(seed),
                           reason=f"the objective {self._metric!r} was {objective}" if status == "diverged" else None)

    def _split(self, value: Any) -> tuple[float, dict[str, float]]:
        what = f"the objective {self.path}"
        if isinstance(value, Mapping):
            if self._metric not in value:
                raise ConfigError(f"{what} returned {sorted(map(str, value))[:10]} without {self._metric!r}, the "
                                  f"metric it optimises; return it (or set metric= to one of those names)")
            extra = {str(k): number(v, str(k), what) for k, v in value.items() if k != self._metric}
            return number(value[self._metric], self._metric, what), extra
        return number(value, self._metric, what), {}


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


__all__ = ["Objective"]
