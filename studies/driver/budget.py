"""Budgets: totals for a study, and the meter that says how much of one is spent.

A budget is a total for the study, over every `optimize` call and every driver: rerunning a
script after a crash finishes the same study and never spends a budget twice. The meter counts
finished trials from the mirror's running totals and adds the planned remainder of trials in
flight, so several drivers sharing a study never start more than the budget allows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tunelab.studies.driver.mirror import Mirror
from tunelab.studies.errors import BudgetError
from tunelab.studies.records import TrialState


@dataclass(frozen=True)
class Budget:
    """Totals for a study; the study stops starting work when any one is reached.

    Attributes:
        trials: Trials proposed by the strategy (a re-run of an interrupted trial is not a new one).
        epochs: Epochs trained, summed over trials (the fair unit across strategies).
        seconds: Wall time spent in `optimize`, summed over calls (running trials finish).
        grad_evals: Gradient evaluations (SAM, GSAM and AdaHessian pay 2 per step).
    """

    trials: int | None = None
    epochs: int | None = None
    seconds: float | None = None
    grad_evals: int | None = None

    def __post_init__(self) -> None:
        given = {k: v for k, v in self.as_dict().items() if v is not None}
        if not given:
            raise BudgetError(
                "no budget given: pass at least one of trials=, epochs=, seconds= or grad_evals= "
                "(totals for the study, e.g. study.optimize(trials=40))"
            )
        for key, value in given.items():
            ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
            if key != "seconds":
                ok_type = ok_type and float(value).is_integer()
            if not ok_type or not math.isfinite(value) or value < 0:
                kind = "a number of seconds" if key == "seconds" else "a whole number"
                raise BudgetError(f"budget {key}={value!r} is invalid: it must be {kind} >= 0 (a total for the study)")

    def as_dict(self) -> dict[str, Any]:
        """The budget as a dict (None for units not given)."""
        return {"trials": self.trials, "epochs": self.epochs, "seconds": self.seconds, "grad_evals": self.grad_evals}

    @property
    def unit(self) -> str:
        """The first unit given (the progress bar counts it)."""
        return next(k for k, v in self.as_dict().items() if v is not None)

    @property
    def empty(self) -> bool:
        """Whether every unit given is zero (such a budget trains nothing)."""
        return all(v == 0 for v in self.as_dict().values() if v is not None)

    def text(self) -> str:
        """`trials=40, epochs=600`: the units given."""
        return ", ".join(f"{k}={v}" for k, v in self.as_dict().items() if v is not None)


class Meter:
    """How much of a budget a study has spent, counting the planned rest of the trials in flight.

    Args:
        budget: The totals.
        mirror: The driver's mirror of the study (its running totals over finished trials).
        trainer: The study's trainer (a full run's epochs, steps per epoch).
        seconds_before: Seconds spent by earlier `optimize` calls (stored with the study).
    """

    def __init__(self, budget: Budget, mirror: Mirror, trainer: Any, seconds_before: float) -> None:
        self.budget, self.mirror, self.trainer = budget, mirror, trainer
        self.seconds_before = seconds_before
        self.t0 = time.monotonic()
        self._clock: Callable[[], float] | None = None  # an executor's simulated clock, when it has one

    def use_clock(self, clock: Callable[[], float] | None) -> None:
        """Count seconds on an executor's simulated clock from now on (None: the wall clock)."""
        if clock is not None:
            self._clock, self.t0 = clock, clock()

    def release_clock(self) -> None:
        """Carry the simulated seconds over to the wall clock (the next `optimize` may run elsewhere)."""
        if self._clock is not None:
            self.seconds_before, self._clock = self.elapsed(), None
            self.t0 = time.monotonic()

    def elapsed(self) -> float:
        """Seconds spent in optimize, over all calls (simulated seconds on an executor with a `clock`)."""
        now = self._clock() if self._clock is not None else time.monotonic()
        return self.seconds_before + now - self.t0

    def planned_grad_evals(self, config: Mapping[str, Any], epochs: int) -> float:
        """Gradient evaluations a run of `epochs` epochs of `config` costs.

        Where only the run can tell (a `trainers.Function` reports them), the plan is the mean rate
        per epoch of what was trained so far (0 before the first epoch is reported).
        """
        planned = self.trainer.planned_grad_evals(config, epochs)
        if planned is not None:
            return planned
        trained_epochs, trained_grad = self.mirror.totals()
        return epochs * trained_grad / trained_epochs if trained_epochs else 0.0

    def spent(self) -> dict[str, float]:
        """Budget used so far, counting the planned remainder of trials in flight."""
        epochs, grad = (float(x) for x in self.mirror.totals())
        for r in self.mirror.unfinished():  # finished trials are running totals: O(unfinished), not O(trials)
            if r.state in (TrialState.PENDING, TrialState.RUNNING) and not r.superseded:
                rest = max(0, (r.target or self.trainer.epochs) - r.epochs)
                epochs += rest
                grad += self.planned_grad_evals(r.config, rest)
        return {"trials": self.mirror.n_proposals(), "epochs": epochs, "grad_evals": grad, "seconds": self.elapsed()}

    def fits(self, config: Mapping[str, Any] | None, epochs: int, new_trial: bool) -> bool:
        """Whether starting `epochs` more epochs of `config` stays within every budget."""
        b, s = self.budget, self.spent()
        if b.seconds is not None and s["seconds"] >= b.seconds:
            return False
        if b.trials is not None and new_trial and s["trials"] + 1 > b.trials:
            return False
        if b.epochs is not None and s["epochs"] + epochs > b.epochs:
            return False
        return not (
            b.grad_evals is not None
            and config is not None
            and s["grad_evals"] + self.planned_grad_evals(config, epochs) > b.grad_evals
        )
