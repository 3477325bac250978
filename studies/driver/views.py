"""What a strategy sees of a study: its mirror's rows as `TrialView`s, normalised to minimisation."""

from __future__ import annotations

import math
from typing import Any

from tunelab.search import History, TrialView
from tunelab.studies.driver.mirror import Mirror, Row
from tunelab.studies.records import TrialState


def view_of(row: Row, sign: float) -> TrialView:
    """`row` as the strategy sees it: values and curve times `sign` (-1 for a study that maximises)."""
    curve = tuple(sign * v for v in row.curve)
    value = None
    if row.state == TrialState.COMPLETE and row.value is not None:
        value = sign * float(row.value)
    elif row.state == TrialState.PRUNED:
        finite_curve = [v for v in curve if math.isfinite(v)]
        value = finite_curve[-1] if finite_curve else None
    return TrialView(number=row.number, state=str(row.state), config=dict(row.config), value=value, curve=curve,
                     epochs=row.epochs, target_epochs=row.target, error=row.error, attrs=dict(row.attrs),
                     routine=row.routine, results=dict(row.results), seconds=float(row.seconds))


def cached_view(row: Row, sign: float) -> TrialView:
    """`view_of(row)`, built once per change of the row (a row forgets its view when it changes)."""
    if row.view is None:
        object.__setattr__(row, "view", view_of(row, sign))
    return row.view


def history_of(study: Any, mirror: Mirror, sign: float) -> History:
    """The `History` a strategy decides from: every proposal of `mirror` in proposal order.

    Args:
        study: The study (its space and trainer: a full run's epochs, the workload's shape).
        mirror: The study's trials.
        sign: -1.0 when the study maximises, else 1.0.
    """
    trainer = study.trainer
    return History(
        space=study.space,
        trials=mirror.views(lambda row: cached_view(row, sign)),
        max_epochs=trainer.epochs,
        input_shape=trainer.input_shape,
        n_outputs=trainer.n_outputs,
    )
