"""How a unit of work's outcome becomes a trial's ending: a pure function of the outcome and the trial.

| outcome | state | value | error |
|---|---|---|---|
| the routine raised (or its worker died too often) | failed | - | the exception's text |
| complete | complete | last epoch's validation metric | - |
| stopped (pruned by the strategy) | pruned | - | - |
| diverged (a non-finite training loss) | failed | - | "diverged: ... in epoch e (lr ...)" |
| paused with a checkpoint | None (paused) | - | - |
| paused, but its checkpoint could not be written | failed | - | "paused, but <why>" |
| complete, in a multi-objective study without every objective recorded | failed | - | which are missing |
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from tunelab.studies.driver.mirror import Row
from tunelab.studies.executors import Outcome
from tunelab.studies.records import METRIC_VALUE, TrialState, finite


@dataclass(frozen=True)
class Ending:
    """What the recorder writes when a trial's run ends.

    Attributes:
        state: The trial's new state; None for a pause.
        value: The objective of a complete trial.
        error: Why it failed.
        user_attrs: The trial user attributes to set (epochs, seconds, device, seed, ...).
        results: What its routine learned (`TrainResult.attrs`), if anything.
    """

    state: TrialState | None
    value: float | None = None
    error: str | None = None
    user_attrs: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] | None = None


def ending_of(outcome: Outcome, row: Row, *, device: str, checkpoint_exists: bool) -> Ending:
    """The ending of `row`, whose run came back as `outcome` (its epochs already adopted into `row`).

    Args:
        outcome: What the executor returned.
        row: The trial (epochs, seconds and gradient evaluations of its whole run).
        device: The trainer's device, for an outcome that does not name the device it ran on.
        checkpoint_exists: Whether the trial's checkpoint file exists (a pause needs one).
    """
    result = outcome.result
    ua: dict[str, Any] = {"epochs": row.epochs, "grad_evals": row.grad_evals, "seconds": round(row.seconds, 4),
                          "device": outcome.device or device, "seed": outcome.work.seed}
    state: TrialState | None = None
    value = error = None
    if result is None:
        state, error = TrialState.FAILED, outcome.error or "unknown error"
    elif result.status == "complete":
        state, value = TrialState.COMPLETE, float(result.val_metric)
        ua["test_metric"] = finite(result.test_metric)
    elif result.status == "stopped":
        state = TrialState.PRUNED
    elif result.status == "diverged":
        last = result.epochs[-1]
        state = TrialState.FAILED
        error = (f"diverged: {result.reason} in epoch {last.epoch}" if result.reason else
                 f"diverged: the training loss became non-finite in epoch {last.epoch} (lr {last.lr:.3g})")
    results = None
    if result is not None:
        ua["best_value"] = finite(result.best_val_metric)
        if result.checkpoint_error is not None:
            ua["checkpoint_error"] = result.checkpoint_error
            if state is None and not checkpoint_exists:
                # a pause that kept no checkpoint cannot be continued: keep what it measured, as failed
                state, error = TrialState.FAILED, f"paused, but {result.checkpoint_error}"
        if result.attrs:  # a routine's findings; for "train", a replay's nearest-answer label
            results = dict(result.attrs)
            ua[row.routine] = results
    if outcome.work.routine != "train":  # shown beside its results in optuna-dashboard (user attributes)
        ua["routine"] = outcome.work.routine
    if outcome.restarted is not None:
        ua["restarted"] = outcome.restarted
    if error is not None:
        ua["error"] = error
    return Ending(state, value, error, ua, results)


def with_objectives(end: Ending, row: Row, objectives: Any, constraints: Any = None
                    ) -> tuple[Ending, tuple[float, ...] | None, tuple[float, ...] | None]:
    """`end` in a study with several objectives or outcome constraints (`studies.objectives`).

    Returns the ending, the complete trial's objective values (None with one objective) and its
    constraint values (None without constraints). A complete run that did not record every
    objective or constrained measurement (a `Function` that never reported one) is failed, its
    error naming what is missing and what the trial recorded.
    """
    if end.state != TrialState.COMPLETE or (objectives is None and constraints is None):
        return end, None, None
    limits = constraints.values(row.metrics, row.measures) if constraints is not None else None
    why = objectives.missing(row.metrics, row.measures) if objectives is not None else None
    if why is None and limits is not None and any(math.isnan(v) for v in limits):
        gone = [n for n, v in zip(constraints.names, limits, strict=True) if math.isnan(v)]
        why = f"the constrained measurement(s) {gone} were not recorded at the run's last epoch; report them"
    if why is not None:
        return replace(end, state=TrialState.FAILED, value=None, error=why,
                       user_attrs={**end.user_attrs, "error": why}), None, None
    if objectives is None:
        return end, None, limits
    # Optuna's values are the objectives'; the metric's final value is kept beside them for readers
    values = objectives.vector(row.metrics, row.measures)
    return replace(end, user_attrs={**end.user_attrs, METRIC_VALUE: end.value}), values, limits
