"""What a strategy sees of a study: its mirror's rows as `TrialView`s, normalised to minimisation."""

from __future__ import annotations

import math
from typing import Any

from tunelab.search import History, TrialView
from tunelab.studies.driver.mirror import Mirror, Row
from tunelab.studies.records import TrialState


def view_of(row: Row, sign: float, objectives: Any = None) -> TrialView:
    """`row` as the strategy sees it: values and curve times `sign` (-1 for a study that maximises).

    In a multi-objective study (`objectives`, a `studies.objectives.Objectives`), each objective
    is normalised by its own direction too: the complete trial's `values`, and `vectors` per epoch.
    """
    values: tuple[float, ...] | None = None
    vectors: tuple[tuple[float, ...], ...] = ()
    if objectives is not None:
        signs = objectives.signs
        vectors = tuple(tuple(s * v for s, v in zip(signs, objectives.vector(row.metrics, row.measures, e),
                                                    strict=True))
                        for e in range(1, row.epochs + 1))
        if row.state == TrialState.COMPLETE and row.values is not None and len(row.values) == len(signs):
            values = tuple(s * float(v) for s, v in zip(signs, row.values, strict=True))
    curve = tuple(sign * v for v in row.curve)
    value = None
    if row.state == TrialState.COMPLETE and row.value is not None:
        value = sign * float(row.value)
    elif row.state == TrialState.PRUNED:
        finite_curve = [v for v in curve if math.isfinite(v)]
        value = finite_curve[-1] if finite_curve else None
    return TrialView(number=row.number, state=str(row.state), config=dict(row.config), value=value, curve=curve,
                     epochs=row.epochs, target_epochs=row.target, error=row.error, attrs=dict(row.attrs),
                     routine=row.routine, results=dict(row.results), seconds=float(row.seconds), values=values,
                     vectors=vectors, violation=row.violation)


def cached_view(row: Row, sign: float, objectives: Any = None) -> TrialView:
    """`view_of(row)`, built once per change of the row (a row forgets its view when it changes)."""
    if row.view is None:
        object.__setattr__(row, "view", view_of(row, sign, objectives))
    return row.view


def history_of(study: Any, mirror: Mirror, sign: float) -> History:
    """The `History` a strategy decides from: every proposal of `mirror` in proposal order.

    Args:
        study: The study (its space and trainer: a full run's epochs, the workload's shape).
        mirror: The study's trials.
        sign: -1.0 when the study maximises, else 1.0.
    """
    trainer = study.trainer
    objectives = getattr(study, "objectives", None)
    return History(
        space=study.space,
        trials=mirror.views(lambda row: cached_view(row, sign, objectives)),
        max_epochs=trainer.epochs,
        input_shape=trainer.input_shape,
        n_outputs=trainer.n_outputs,
        objectives=objectives.names if objectives is not None else (),
        device=str(trainer.device) if getattr(trainer, "trains_models", False) else None,
    )
