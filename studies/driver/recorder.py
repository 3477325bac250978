"""The recorder: the driver's only writer of trials, keeping the mirror in step with what it committed.

Every change to a trial goes through here: its insertion (claimed by this driver in the same
transaction that numbers it), its claim, its epochs (batched: at most one write every
`flush_seconds` per trial, and every running trial that is due in the same transaction), how it
ended (last epochs, attributes, state and value in one transaction), a retry, a pause, a prune,
a re-queue. Each method changes the mirror's row only after its write committed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from tunelab.studies.artifacts import checkpoint_name
from tunelab.studies.driver.context import Context
from tunelab.studies.driver.mirror import Row
from tunelab.studies.objectives import violation
from tunelab.studies.records import (
    CHECKPOINT,
    LEASE,
    METRIC_KEYS,
    METRICS,
    OPTUNA_CONSTRAINTS,
    OWNER,
    PAUSED_BY,
    PROPOSAL,
    RETRIES,
    RETRY_OF,
    ROUTINE,
    ROUTINE_OPTIONS,
    RUN_SEED,
    STATE,
    SUPERSEDED,
    TARGET,
    TrialState,
    compact_metrics,
    finite,
    microseconds,
    optuna_state,
)
from tunelab.studies.storage import writer
from tunelab.studies.storage.writer import TrialWrite
from tunelab.trainers import EpochResult

LEASE_TTL_S = 60.0  # a running trial's lease lasts this long past its last renewal


class Recorder:
    """Writes trials for one driver.

    Args:
        ctx: The driver's shared state.
        flush_seconds: Write a running trial's epochs at most this often.
    """

    def __init__(self, ctx: Context, flush_seconds: float) -> None:
        self.ctx = ctx
        self.flush_seconds = flush_seconds

    @property
    def storage(self) -> Any:
        """The study's storage."""
        return self.ctx.storage

    # ------------------------------------------------------------------ new trials
    def create_trial(self, config: dict[str, Any], *, proposal: int, target: int, attrs: Mapping[str, Any],
                     state: TrialState, retry_of: int | None = None, seed: int | None = None,
                     writes: Callable[[int], list[TrialWrite]] = lambda number: [],
                     routine: str = "train", options: Mapping[str, Any] | None = None) -> Row:
        """Insert a trial with its params and mirror it (`seed`: its run's, if not the trainer's).

        A trial created `running` is claimed by this driver in the same transaction that numbers
        it. A trial of a routine other than "train" stores the routine's name and options, so
        that a resume, a recovery or another driver runs it the same way. `writes(number)` are
        changes to other trials that must commit with it (recovery's "failed, re-queued as
        trial <number>").
        """
        study = self.ctx.study
        system: dict[str, Any] = {PROPOSAL: proposal, TARGET: target}
        if retry_of is not None:
            system[RETRY_OF] = retry_of
        if seed is not None:
            system[RUN_SEED] = int(seed)
        if routine != "train":
            system[ROUTINE] = routine
            system[ROUTINE_OPTIONS] = dict(options or {})
        if state == TrialState.RUNNING:  # claimed in the same transaction
            system.update({STATE: "running", OWNER: self.ctx.owner, LEASE: time.time() + LEASE_TTL_S})
        user: dict[str, Any] = {"strategy": dict(attrs)} if attrs else {}
        user.update(study.trainer.size(config))
        objectives = getattr(study, "objectives", None)
        if objectives is not None and objectives.measures_latency:
            from tunelab.trainers.latency import LATENCY_BATCH

            user.update(latency_ms=study.trainer.latency_ms(config), latency_batch=LATENCY_BATCH)
        now = datetime.now() if state == TrialState.RUNNING else None
        frozen = writer.NewTrial(optuna_state(state), config, study.space.distributions(config), user_attrs=user,
                                 system_attrs=system, datetime_start=now)

        def extra(trial_id: int, number: int) -> tuple[dict[str, Any], list[TrialWrite]]:
            # the checkpoint is an artifact of the Optuna artifact store, registered the way
            # optuna.artifacts.upload_artifact registers one (the trainer writes the file in place)
            artifact = checkpoint_name(study.folder, trial_id, number)
            meta = {"artifact_id": artifact, "filename": f"trial-{number}.pt", "mimetype": "application/octet-stream",
                    "encoding": None}
            return {CHECKPOINT: artifact, f"artifacts:{artifact}": json.dumps(meta)}, list(writes(number))

        trial_id, number = writer.create_trial(self.storage, study.study_id, frozen, extra)
        row = Row(trial_id=trial_id, number=number, state=state, config=dict(config), proposal=proposal,
                  target=target, attrs=dict(attrs), checkpoint=checkpoint_name(study.folder, trial_id, number),
                  owner=system.get(OWNER), lease=float(system.get(LEASE, 0.0)), retry_of=retry_of, seed=seed,
                  routine=routine, options=dict(options or {}),
                  measures={k: float(user[k]) for k in ("n_params", "flops", "latency_ms") if user.get(k) is not None})
        self.ctx.mirror.put(row)
        return row

    def claim(self, row: Row) -> None:
        """Mark `row` running, owned by this driver (one transaction)."""
        # its first epochs wait `flush_seconds` like the rest: a trial shorter than that is written once, at its end
        row.last_flush = time.monotonic()
        if row.state == TrialState.RUNNING and row.owner == self.ctx.owner:  # created claimed
            self.ctx.in_flight.add(row.trial_id)
            return
        lease = time.time() + LEASE_TTL_S
        state = optuna_state(TrialState.RUNNING) if row.state == TrialState.PENDING else None
        writer.write_trials(self.storage, [TrialWrite(row.trial_id, state=state, system_attrs={
            STATE: "running", PAUSED_BY: None, OWNER: self.ctx.owner, LEASE: lease})])
        row.state, row.paused_by, row.owner, row.lease = TrialState.RUNNING, None, self.ctx.owner, lease
        self.ctx.in_flight.add(row.trial_id)

    # ------------------------------------------------------------------ epochs
    def flush(self, row: Row, end: Mapping[str, Any] | None = None, **user_attrs: Any) -> None:
        """Write the epochs of `row` not yet in the database (and `user_attrs`), in one transaction.

        `end` holds further `TrialWrite` fields that commit with them: how the trial ended (its
        finished `state` and `value`, or the system attributes of a pause) and `drop_after`.
        """
        self.flush_many([row], user_attrs, end=end)

    def flush_many(self, rows: list[Row], user_attrs: Mapping[str, Any] | None = None,
                   end: Mapping[str, Any] | None = None) -> None:
        """Write the unwritten epochs of several rows in one transaction (`user_attrs` to each, `end` to the first)."""
        items = []
        for row in rows:
            values: dict[int, float] = {}
            new_values: dict[int, float] = {}
            for i in range(row.flushed, row.epochs):  # the curve, stored once: step e is epoch e (NaN: diverged)
                v = row.metrics["val_metric"][i]
                (values if i + 1 <= row.stored_steps else new_values)[i + 1] = math.nan if v is None else float(v)
            attrs = dict(user_attrs or {})
            if row.flushed < row.epochs:
                attrs = {METRICS: compact_metrics(row.metrics), "epochs": row.epochs, **attrs}
            items.append(TrialWrite(row.trial_id, values, new_values, attrs))
        if end:
            items[0] = replace(items[0], **end)
        writer.write_trials(self.storage, items)
        now = time.monotonic()
        for row, item in zip(rows, items, strict=True):  # the mirror follows only what was committed
            row.stored_steps = max(row.stored_steps, *item.new_values) if item.new_values else row.stored_steps
            row.flushed = row.epochs
            row.last_flush = now

    def on_epoch(self, trial_id: int, epoch: EpochResult) -> bool:
        """Mirror one epoch result; write it when the trial's last write is `flush_seconds` old.

        Returns:
            Whether the epoch belonged to a trial this driver runs.
        """
        row = self.ctx.rows.get(trial_id)
        if row is None or trial_id not in self.ctx.in_flight:
            return False
        if epoch.epoch <= row.epochs:  # re-trained after a resume from an older checkpoint: replace
            keep = epoch.epoch - 1
            row.metrics = {k: v[:keep] for k, v in row.metrics.items()}
            row.seconds = sum(v or 0.0 for v in row.metrics["seconds"])
            row.flushed = min(row.flushed, keep)
        append(row, epoch)
        if time.monotonic() - row.last_flush >= self.flush_seconds:
            # every running trial with unwritten epochs goes in the same transaction: the members of a
            # population report together, so a population costs one write per flush, not one per member
            due = [r for tid in self.ctx.in_flight if (r := self.ctx.rows[tid]).flushed < r.epochs and r is not row]
            self.flush_many([row, *due])
        return True

    def drop_stale_tail(self, row: Row) -> None:
        """Delete stored curve steps past the row's epochs (its run started over, or its checkpoint is older)."""
        if row.stored_steps > row.epochs:
            writer.drop_steps_after(self.storage, row.trial_id, row.epochs)
            row.stored_steps = row.epochs

    # ------------------------------------------------------------------ endings
    def end(self, row: Row, state: TrialState | None, value: float | None, user_attrs: Mapping[str, Any], *,
            paused_by: str = "strategy", forget_checkpoint: bool = False,
            values: tuple[float, ...] | None = None, constraints: tuple[float, ...] | None = None) -> None:
        """Record how `row`'s run ended, in one transaction: its last epochs, `user_attrs`, and state and value.

        A complete trial of a multi-objective study stores `values` (its objectives') as its
        Optuna values; `value` (the metric's) stays in the mirror for the strategy's view. A
        constrained study's `constraints` values go where Optuna keeps them (a system attribute).

        `state` None is a pause (by `paused_by`). A finished trial drops the bookkeeping it no
        longer needs (its owner and lease stay: a reader that saw it running an instant before
        must not find it ownerless), and with `forget_checkpoint` its checkpoint's registration.
        """
        end: dict[str, Any] = {"drop_after": row.epochs} if row.stored_steps > row.epochs else {}
        if state is None:
            end["system_attrs"] = {STATE: "paused", PAUSED_BY: paused_by, LEASE: 0.0}
        else:
            drop = [STATE, PAUSED_BY]
            if forget_checkpoint and row.checkpoint is not None:
                drop += [CHECKPOINT, f"artifacts:{row.checkpoint}"]
            end.update(state=optuna_state(state), value=value, drop_system=tuple(drop), objective_values=values)
            if getattr(self.ctx.study, "objectives", None) is not None and values is None:
                end["value"] = None  # a multi-objective trial stores all its objectives' values or none
            if constraints is not None:
                end["system_attrs"] = {OPTUNA_CONSTRAINTS: list(constraints)}
        self.flush(row, end=end, **user_attrs)
        row.stored_steps = min(row.stored_steps, row.epochs)
        if state is None:
            row.state, row.paused_by, row.lease = TrialState.PAUSED, paused_by, 0.0
        else:
            row.state, row.value, row.paused_by, row.values = state, value, None, values
            row.violation = violation(constraints)
            if forget_checkpoint:
                row.checkpoint = None

    def retry(self, row: Row, error: str) -> None:
        """Pause an errored trial to run again (its `retries` counted, its error kept as `retry_<n>_error`)."""
        row.retries += 1
        self.flush(row)
        writer.write_trial(self.storage, row.trial_id,
                           system_attrs={STATE: "paused", PAUSED_BY: "interrupt", LEASE: 0.0, RETRIES: row.retries},
                           user_attrs={f"retry_{row.retries}_error": error})
        row.state, row.paused_by, row.lease = TrialState.PAUSED, "interrupt", 0.0

    def pause(self, row: Row) -> None:
        """Pause a trial whose driver died, to be continued from its checkpoint."""
        writer.write_trial(self.storage, row.trial_id,
                           system_attrs={STATE: "paused", PAUSED_BY: "interrupt", LEASE: 0.0})
        row.state, row.paused_by, row.lease = TrialState.PAUSED, "interrupt", 0.0

    def fail(self, row: Row, error: str) -> None:
        """Record a paused trial failed (its checkpoint is gone, so it cannot be continued)."""
        writer.write_trials(self.storage, [TrialWrite(row.trial_id, user_attrs={"error": error},
                                                      drop_system=(STATE, PAUSED_BY),
                                                      state=optuna_state(TrialState.FAILED))])
        row.error, row.state = error, TrialState.FAILED

    def prune(self, row: Row, value: float | None, *, forget_checkpoint: bool) -> None:
        """Prune a paused trial the strategy retired (one transaction, with its checkpoint's registration)."""
        drop = (STATE, PAUSED_BY) + ((CHECKPOINT, f"artifacts:{row.checkpoint}") if forget_checkpoint else ())
        stored = None if getattr(self.ctx.study, "objectives", None) is not None else value  # not one of several
        writer.write_trials(self.storage, [TrialWrite(row.trial_id, user_attrs={"retired": True}, drop_system=drop,
                                                      state=optuna_state(TrialState.PRUNED), value=stored)])
        row.state, row.value, row.paused_by = TrialState.PRUNED, value, None
        if forget_checkpoint:
            row.checkpoint = None

    def forget_checkpoint(self, row: Row) -> None:
        """Drop a finished trial's checkpoint registration (retention deleted the file)."""
        if row.checkpoint is not None:
            writer.drop_system_attrs(self.storage, row.trial_id, (CHECKPOINT, f"artifacts:{row.checkpoint}"))
            row.checkpoint = None

    def extend(self, row: Row, until: int, attrs: Mapping[str, Any] | None) -> None:
        """Ask a paused trial for more epochs (`attrs` merged into the strategy's data stored with it)."""
        user = {}
        if attrs:
            row.attrs.update(attrs)
            row.view = None
            user = {"strategy": dict(row.attrs)}
        writer.write_trial(self.storage, row.trial_id, system_attrs={TARGET: until}, user_attrs=user)
        row.target = until

    def requeue(self, row: Row, reason: str) -> Row:
        """Mark `row` failed ("interrupted") and insert its re-run (same config and proposal) in one transaction."""
        messages: dict[str, str] = {}

        def writes(number: int) -> list[TrialWrite]:
            messages["error"] = f"interrupted: {reason}; re-queued as trial {number}"
            return [TrialWrite(row.trial_id, user_attrs={"error": messages["error"]},
                               system_attrs={SUPERSEDED: True, LEASE: 0.0}, state=optuna_state(TrialState.FAILED))]

        rerun = self.create_trial(row.config, proposal=row.proposal if row.proposal is not None else row.number,
                                  target=row.target or self.ctx.study.trainer.epochs, attrs=row.attrs,
                                  state=TrialState.PENDING, retry_of=row.number, seed=row.seed, writes=writes,
                                  routine=row.routine, options=row.options)
        row.state, row.error, row.superseded, row.lease = TrialState.FAILED, messages["error"], True, 0.0
        return rerun

    def reconcile(self, row: Row, history: list[EpochResult]) -> None:
        """Make the stored curve and metrics of `row` those of `history` (its checkpoint's), step for step."""
        stored = list(row.metrics["val_metric"])
        row.grad_evals = 0
        adopt(row, history)
        new = row.metrics["val_metric"]
        differ = (i for i, (a, b) in enumerate(zip(stored, new, strict=False)) if a != b)
        same = next(differ, min(len(stored), len(new)))  # the first step that differs
        self.drop_stale_tail(row)
        row.flushed = same
        self.flush(row, **{METRICS: compact_metrics(row.metrics), "epochs": row.epochs,
                           "seconds": round(row.seconds, 4), "grad_evals": row.grad_evals})

    # ------------------------------------------------------------------ the study
    def renew_leases(self, trial_ids: list[int]) -> None:
        """Extend the lease of trials this driver runs (the heartbeat)."""
        writer.renew_leases(self.storage, trial_ids, LEASE, time.time() + LEASE_TTL_S)

    def release(self, row: Row) -> None:
        """Write what `row` measured and end its lease, so the next driver recovers it at once."""
        self.flush(row)
        writer.write_trial(self.storage, row.trial_id, system_attrs={LEASE: 0.0})

    def set_study_attr(self, key: str, value: Any) -> None:
        """Set one of the study's own attributes (its budget, the seconds it has spent)."""
        writer.set_study_attr(self.storage, self.ctx.study.study_id, key, value)


def append(row: Row, e: EpochResult) -> None:
    """Add one epoch result to `row`'s metrics (measurements exactly; times to the microsecond)."""
    m = row.metrics
    n = len(m["val_metric"])
    for key in METRIC_KEYS:
        value = getattr(e, key)
        m[key].append(int(value) if key == "grad_evals" else microseconds(value) if key == "seconds"
                      else finite(value))
    for key in {*e.extra, *(k for k in m if k not in METRIC_KEYS)}:  # named metrics: one list each, None-padded
        values = m.setdefault(key, [None] * n)
        values.append(finite(e.extra.get(key)))
    row.seconds += e.seconds
    row.grad_evals = e.grad_evals


def adopt(row: Row, epochs: list[EpochResult]) -> None:
    """Take a run's full history: a result's (epochs from before a resume, unflushed ones) or a checkpoint's."""
    row.metrics = {k: [] for k in METRIC_KEYS}
    row.seconds = 0.0
    flushed = row.flushed
    for e in epochs:
        append(row, e)
    row.flushed = min(flushed, row.epochs)
