"""The driver's mirror of a study: one `Row` per trial, and the totals its decisions read, kept as rows change.

The driver asks, for every trial it starts, how much of the budget is spent, which trials are
proposals and in what order, which is best, which are pending or paused, and which trial has a
given number. Walking every row for each answer made a trial's bookkeeping grow with the study
(65 ms a trial at 5,000 trials). `Mirror` keeps those answers as running totals over finished
trials, which never change again, plus the few unfinished ones, which it walks: a trial costs
O(unfinished trials), not O(trials).

Rows change by assignment (`row.state = ...`) all over the driver; the mirror does not watch
them. Every query first `settle`s: it moves unfinished rows that have finished since into the
totals. Only rows that are unfinished in the mirror are ever replaced by a re-read (`put`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tunelab.studies.objectives import violation
from tunelab.studies.records import (
    CHECKPOINT,
    LEASE,
    METRIC_KEYS,
    METRIC_VALUE,
    OPTUNA_CONSTRAINTS,
    OWNER,
    PAUSED_BY,
    PROPOSAL,
    RETRIES,
    RETRY_OF,
    ROUTINE,
    ROUTINE_OPTIONS,
    RUN_SEED,
    SUPERSEDED,
    TARGET,
    TrialState,
    state_of,
    stored_constraints,
    stored_metrics,
)
from tunelab.studies.storage.limits import MAX_EPOCHS, count, mapping, number, optional_count, text
from tunelab.trainers.routines import is_comparable

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED)
UNFINISHED = (TrialState.PENDING, TrialState.RUNNING, TrialState.PAUSED)


@dataclass
class Row:
    """The driver's mirror of one trial."""

    trial_id: int
    number: int
    state: TrialState
    config: dict[str, Any]
    proposal: int | None = None
    target: int | None = None
    metrics: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in METRIC_KEYS})
    seconds: float = 0.0
    grad_evals: int = 0
    value: float | None = None
    error: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    superseded: bool = False
    retry_of: int | None = None
    paused_by: str | None = None
    seed: int | None = None
    checkpoint: str | None = None
    retries: int = 0
    owner: str | None = None
    lease: float = 0.0
    flushed: int = 0
    stored_steps: int = 0
    last_flush: float = field(default=0.0, compare=False)  # this driver's clock: not part of the trial
    routine: str = "train"
    options: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    values: tuple[float, ...] | None = None  # a multi-objective study's values (complete trials)
    measures: dict[str, float] = field(default_factory=dict)  # n_params, flops, latency_ms when measured
    violation: float = 0.0  # a constrained study's total constraint violation (complete trials; 0: feasible)
    view: Any = field(default=None, init=False, repr=False, compare=False)  # the strategy's TrialView until a change

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "view":  # any change makes the cached view stale (in-place edits reset `view` themselves)
            object.__setattr__(self, "view", None)
        object.__setattr__(self, name, value)
        changed = self.__dict__.get("_changed")
        if changed is not None:  # the mirror holding the row rebuilds its view at the next history
            changed.add(self.trial_id)

    @property
    def epochs(self) -> int:
        """Epochs trained."""
        return len(self.metrics["val_metric"])

    @property
    def curve(self) -> list[float]:
        """Validation metric per epoch (NaN where it diverged)."""
        return [math.nan if v is None else float(v) for v in self.metrics["val_metric"]]


def measures_of(ua: Mapping[str, Any], where: str) -> dict[str, float]:
    """A stored trial's measurements from its creation (`n_params`, `flops`, `latency_ms`), each checked."""
    out: dict[str, float] = {}
    for key in ("n_params", "flops"):
        if ua.get(key) is not None:
            out[key] = float(optional_count(ua.get(key), f"{where} {key!r}"))
    latency = number(ua.get("latency_ms"), f"{where} 'latency_ms'")
    if latency is not None:
        out["latency_ms"] = latency
    return out


def row_of(trial: Any) -> Row:
    """The mirror of a stored `FrozenTrial`.

    Raises:
        StorageError: A stored attribute has the wrong type or is out of range (see `studies.limits`).
    """
    sa, ua = trial.system_attrs, trial.user_attrs
    metrics = stored_metrics(trial)
    system = f"trial {trial.number}'s system attribute"
    user = f"trial {trial.number}'s user attribute"
    routine = text(sa.get(ROUTINE), f"{system} {ROUTINE!r}") or "train"
    results = ua.get(routine)
    seconds = number(ua.get("seconds"), f"{user} 'seconds'")
    grad_evals = ua.get("grad_evals", next((v for v in reversed(metrics["grad_evals"]) if v), 0))
    stored = list(trial.values) if trial.values else []
    value, values = (stored[0] if stored else None), None
    if len(stored) > 1:  # a multi-objective study: the values are the objectives', the curve the metric's
        values = tuple(float(v) for v in stored)
        value = number(ua.get(METRIC_VALUE), f"{user} {METRIC_VALUE!r}")
    return Row(
        trial_id=trial._trial_id,
        number=trial.number,
        state=state_of(trial),
        config=dict(trial.params),
        proposal=optional_count(sa.get(PROPOSAL), f"{system} {PROPOSAL!r}"),
        target=optional_count(sa.get(TARGET), f"{system} {TARGET!r}", limit=MAX_EPOCHS),
        metrics=metrics,
        seconds=seconds if seconds is not None else float(sum(v or 0.0 for v in metrics["seconds"])),
        grad_evals=count(grad_evals, f"{user} 'grad_evals'"),
        value=value,
        values=values,
        measures=measures_of(ua, user),
        violation=violation(stored_constraints(sa.get(OPTUNA_CONSTRAINTS), trial.number)),
        error=text(ua.get("error"), f"{user} 'error'"),
        attrs=mapping(ua.get("strategy"), f"{user} 'strategy'"),
        superseded=bool(sa.get(SUPERSEDED, False)),
        retry_of=optional_count(sa.get(RETRY_OF), f"{system} {RETRY_OF!r}"),
        paused_by=text(sa.get(PAUSED_BY), f"{system} {PAUSED_BY!r}"),
        seed=optional_count(sa.get(RUN_SEED), f"{system} {RUN_SEED!r}", low=-(2**63), limit=2**64),
        checkpoint=sa.get(CHECKPOINT),
        retries=count(sa.get(RETRIES, 0), f"{system} {RETRIES!r}"),
        owner=text(sa.get(OWNER), f"{system} {OWNER!r}", limit=300),
        lease=number(sa.get(LEASE, 0.0), f"{system} {LEASE!r}") or 0.0,
        flushed=len(metrics["val_metric"]),
        stored_steps=max(trial.intermediate_values, default=0),
        routine=routine,
        options=mapping(sa.get(ROUTINE_OPTIONS), f"{system} {ROUTINE_OPTIONS!r}"),
        results=dict(results) if isinstance(results, Mapping) else {},
    )


def _key(row: Row) -> tuple[int, int]:
    return (row.proposal if row.proposal is not None else 10**9, row.number)


class Mirror:
    """Rows of a study by trial id, with totals over its finished trials.

    Args:
        sign: -1.0 for a study that maximises, 1.0 for one that minimises (which value is best).
    """

    def __init__(self, sign: float) -> None:
        self.sign = sign
        self.rows: dict[int, Row] = {}
        self.by_number: dict[int, Row] = {}
        self.open: set[int] = set()  # trial ids of unfinished rows (as of the last `settle`)
        self.last_id = -1
        self.kept: set[int] | None = None  # finished trials whose checkpoint may exist (the driver's `_retain`)
        self._order: list[int] | None = []  # trial ids of the proposals in proposal order (None: to sort)
        self._views: list[Any] = []  # the strategy's views of `_order`'s rows, as far as built
        self._position: dict[int, int] = {}  # trial id -> index in `_views`
        self._changed: set[int] = set()  # trial ids of rows changed since their view was built
        self.done_epochs = 0
        self.done_grad_evals = 0
        self.done_proposals = 0  # finished trials that are proposals (not superseded by a re-run)
        self.complete = 0
        self.superseded = 0
        self.best: tuple[int, float] | None = None  # (number, value) of the best comparable complete trial

    def put(self, row: Row) -> None:
        """Add a row, or replace the mirror of a trial that is unfinished here."""
        tid = row.trial_id
        old = self.rows.get(tid)
        if old is not None and tid not in self.open:
            self._account(old, -1)  # a finished trial read again (not done by the driver): count it afresh
        self.open.discard(tid)
        self.rows[tid] = row
        object.__setattr__(row, "_changed", self._changed)
        self._changed.add(tid)
        self.by_number[row.number] = row
        self.last_id = max(self.last_id, tid)
        if old is None and self._order is not None and not row.superseded:
            if not self._order or _key(row) >= _key(self.rows[self._order[-1]]):
                self._order.append(tid)
            else:
                self._order = None  # a re-run takes the place of the trial it re-runs
        elif old is not None and (old.superseded != row.superseded or _key(old) != _key(row)):
            self._order = None
        if row.state in FINISHED:
            self._account(row, +1)
        else:
            self.open.add(tid)

    def settle(self) -> None:
        """Count the unfinished rows that have finished since into the totals."""
        for tid in [t for t in self.open if self.rows[t].state in FINISHED]:
            self.open.discard(tid)
            self._account(self.rows[tid], +1)

    def _account(self, row: Row, sign: int) -> None:
        self.done_epochs += sign * row.epochs
        self.done_grad_evals += sign * row.grad_evals
        self.superseded += sign * row.superseded
        self.done_proposals += sign * (not row.superseded)
        if row.superseded:
            self._order = None
        if row.state != TrialState.COMPLETE:
            return
        self.complete += sign
        if row.value is None or not is_comparable(row.routine):
            return
        if sign < 0:  # rare: recompute
            self.best = None
            for r in self.rows.values():
                if r is not row and r.trial_id not in self.open:
                    self._best_of(r)
        else:
            self._best_of(row)

    def _best_of(self, row: Row) -> None:
        if (row.state != TrialState.COMPLETE or row.value is None or not is_comparable(row.routine)
                or row.violation > 0):  # an infeasible trial is never best (as Optuna's constrained studies)
            return
        value = float(row.value)
        if self.best is None or self.sign * value < self.sign * self.best[1]:
            self.best = (row.number, value)

    def unfinished(self) -> list[Row]:
        """Unfinished rows by trial number."""
        self.settle()
        return sorted((self.rows[t] for t in self.open), key=lambda r: r.number)

    def proposals(self) -> list[Row]:
        """Trials the strategy proposed, in proposal order (re-queued ones replaced by their re-run)."""
        return [self.rows[t] for t in self._ordered()]

    def _ordered(self) -> list[int]:
        self.settle()
        if self._order is None:
            self._order = [r.trial_id for r in sorted((r for r in self.rows.values() if not r.superseded), key=_key)]
            self._views, self._position = [], {}
        return self._order

    def views(self, make: Any) -> tuple[Any, ...]:
        """`make(row)` of every proposal in proposal order, rebuilt only for rows new or changed since the last call.

        What the strategy's history holds: O(changed rows) per decision, not O(trials).
        """
        order = self._ordered()
        views, position = self._views, self._position
        for tid in self._changed:
            i = position.get(tid)
            if i is not None:
                views[i] = make(self.rows[tid])
        for i in range(len(views), len(order)):
            position[order[i]] = i
            views.append(make(self.rows[order[i]]))
        self._changed.clear()
        return tuple(views)

    def n_proposals(self) -> int:
        """`len(proposals())` without building the list."""
        self.settle()
        return len(self.rows) - self.superseded

    def finished_proposals(self) -> int:
        """Proposals whose trial has finished."""
        self.settle()
        return self.done_proposals

    def any_complete(self) -> bool:
        """Whether a trial has completed."""
        self.settle()
        return self.complete > 0

    def study_best(self) -> tuple[int, float] | None:
        """(number, value) of the best complete trial of a routine whose values compete."""
        self.settle()
        return self.best

    def totals(self) -> tuple[float, float]:
        """(epochs, gradient evaluations) trained, over every trial."""
        self.settle()
        rows = [self.rows[t] for t in self.open]
        return (self.done_epochs + sum(r.epochs for r in rows),
                self.done_grad_evals + sum(r.grad_evals for r in rows))

    def count(self, state: TrialState) -> int:
        """Rows in `state` (O(trials) for finished states: for messages at the end of a run)."""
        return sum(r.state == state for r in self.rows.values())
