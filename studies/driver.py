"""The driver loop of `Study.optimize`: budgets, recovery, the ask/train/record cycle.

The driver is the only writer of the database. It keeps an in-memory mirror of the study's
trials, asks the strategy for work whenever an executor slot is free, and records every epoch
(batched: at most one write every `flush_seconds` per trial, then everything when the trial
ends) and every outcome. A heartbeat thread renews a lease on the trials it is running, so
another process can tell a live trial from one whose driver died.

Recovery on start (DESIGN section 5): a running trial whose driver is gone continues from its
checkpoint when it has one; otherwise it is marked failed ("interrupted") and re-queued with
the same config as a pending trial, which runs before the strategy is asked for anything new.
Trials paused by Ctrl-C are continued before new work too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from search import History, Request, TrialView
from search.routines import is_comparable, routines
from spaces import ConfigError, optimizer_spec
from spaces.errors import CheckpointError
from studies import _batch
from studies._batch import TrialValues, TrialWrite, drop_steps_after, write_trial, write_trials
from studies.artifacts import claim, owns
from studies.errors import BudgetError, StorageError, StrategyError, TrialError, TunelabError
from studies.executors import Executor, Outcome, Unit, Work, open_executor, works_of
from studies.limits import number as stored_number
from studies.lock import LIVE, LOCK_TTL_S, StudyLock, gone, make_owner
from studies.mirror import Mirror, Row, row_of
from studies.reader import read_trials
from studies.records import (
    CHECKPOINT,
    LEASE,
    METRIC_KEYS,
    METRICS,
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
    TrialRecord,
    TrialState,
    checkpoint_name,
    checkpoint_path,
    compact_metrics,
    finite,
    microseconds,
    record_of,
)
from studies.storage import storage_fault, storage_faults
from trainers import EpochResult, TensorSplit, load_checkpoint

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import search as search_types
    from spaces import Space
    from trainers import Trainer


class StudyHandle(Protocol):
    """What the driver needs of a study (`studies.Study` is one); the driver does not import the study module."""

    name: str
    direction: str
    space: Space
    strategy: search_types.Strategy
    trainer: Trainer
    artifacts: Path
    _storage: Any
    _study_id: int

    def _study_attrs(self) -> dict[str, Any]: ...

SECONDS_SPENT = "tunelab:seconds_spent"
BUDGET = "tunelab:budget"
LOCK_TTL = "tunelab:lock_ttl"  # the lease length of the study lock, fixed when the study is created
LEASE_TTL_S = 60.0
WAIT_S = 1.0  # the longest the loop waits on the executor before it looks at `stop` and the seconds budget again
LOST_LIMIT = 3  # a trial whose worker died this many times in one optimize call is recorded failed
LEASE_EVERY_S = 15.0


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


class Driver:
    """Runs one `Study.optimize` call. Not public: use `Study.optimize`."""

    def __init__(
        self,
        study: StudyHandle,
        budget: Budget,
        *,
        n_workers: int,
        executor: str | Executor,
        progress: bool,
        checkpoint_seconds: float | None,
        max_failures: int,
        flush_seconds: float,
        keep_checkpoints: str = "best",
        max_retries: int = 0,
        executor_options: Mapping[str, Any] | None = None,
        population: int = 1,
        mirror: Mirror | None = None,
    ) -> None:
        self.study = study
        self.population = population
        self.held: list[Unit] = []  # units formed from one gathering of requests, waiting for a free slot
        self.max_retries = max_retries
        self.storage = study._storage
        self.budget = budget
        self.n_workers = n_workers
        self.executor_spec = executor
        self.executor_options: dict[str, Any] = dict(executor_options or {})
        self.executor: Executor | None = None
        self.lost: dict[int, int] = {}
        self.progress = progress
        self.checkpoint_seconds = checkpoint_seconds
        self.max_failures = max_failures
        self.flush_seconds = flush_seconds
        self.keep_checkpoints = keep_checkpoints
        self.owner = make_owner()
        attrs = study._study_attrs()
        ttl = stored_number(attrs.get(LOCK_TTL), f"the study's attribute {LOCK_TTL!r}")
        self.lock = StudyLock(self.storage, study._study_id, self.owner,
                              ttl=min(max(ttl, 1.0), 3600.0) if ttl is not None else LOCK_TTL_S,
                              label=f"study {study.name!r}")
        self.stop = threading.Event()
        self.sign = -1.0 if study.direction == "maximize" else 1.0
        # a mirror carried over from the study's last optimize call in this process: its first refresh
        # re-reads every unfinished trial and the new ones (a new lock has seen other drivers since)
        self.mirror = mirror if mirror is not None else Mirror(self.sign)
        self.in_flight: set[int] = set()
        self.exhausted = False
        self.interrupted = False
        self.started = 0
        self.failures: list[Outcome] = []
        self.fatal: TunelabError | None = None
        self.storage_faults: list[str] = []
        self.early_divergences = 0
        self._bar: Any = None
        self._lock = threading.Lock()
        self.t0 = time.monotonic()
        self.seconds_before = stored_number(attrs.get(SECONDS_SPENT), f"the study's attribute {SECONDS_SPENT!r}") or 0.0
        self._clock: Callable[[], float] | None = None  # an executor's simulated clock, when it has one

    # ------------------------------------------------------------------ views
    @property
    def rows(self) -> dict[int, Row]:
        """The mirror's rows by trial id (read-only use: add rows through `self.mirror.put`)."""
        return self.mirror.rows

    def load(self) -> None:
        """Mirror the stored trials (refusing checkpoint names that point outside the artifact folder)."""
        mirror = Mirror(self.sign)
        self._take(read_trials(self.storage, self.study._study_id), mirror)
        self.mirror = mirror

    def _take(self, trials: list[Any], mirror: Mirror) -> None:
        """Put the rows of stored `trials` (but those this driver is running) into `mirror`.

        Raises:
            StorageError: A trial names a checkpoint outside the artifact folder (raised before
                any row is used).
        """
        rows = [row_of(t) for t in trials if t._trial_id not in self.in_flight]
        for row in rows:
            self._checkpoint_path(row)
        for row in rows:
            mirror.put(row)

    def proposals(self) -> list[Row]:
        """Trials the strategy proposed, in proposal order (re-queued ones replaced by their re-run)."""
        return self.mirror.proposals()

    def view(self, row: Row) -> TrialView:
        """A row as the strategy sees it (normalised to minimisation); built once per change of the row."""
        if row.view is None:
            object.__setattr__(row, "view", self._view(row))
        return row.view

    def _view(self, row: Row) -> TrialView:
        curve = tuple(self.sign * v for v in row.curve)
        value = None
        if row.state == TrialState.COMPLETE and row.value is not None:
            value = self.sign * float(row.value)
        elif row.state == TrialState.PRUNED:
            finite_curve = [v for v in curve if math.isfinite(v)]
            value = finite_curve[-1] if finite_curve else None
        return TrialView(
            number=row.number,
            state=str(row.state),
            config=dict(row.config),
            value=value,
            curve=curve,
            epochs=row.epochs,
            target_epochs=row.target,
            error=row.error,
            attrs=dict(row.attrs),
            routine=row.routine,
            results=dict(row.results),
            seconds=float(row.seconds),
        )

    def history(self) -> History:
        """What the strategy sees."""
        return History(
            space=self.study.space,
            trials=self.mirror.views(self.view),
            max_epochs=self.study.trainer.epochs,
            input_shape=self.study.trainer.workload.input_shape,
            n_outputs=self.study.trainer.workload.n_outputs,
        )

    # ------------------------------------------------------------------ budget
    def elapsed(self) -> float:
        """Seconds spent in optimize, over all calls (simulated seconds on an executor with a `clock`)."""
        if self._clock is not None:
            return self.seconds_before + self._clock() - self.t0
        return self.seconds_before + time.monotonic() - self.t0

    def planned_grad_evals(self, config: Mapping[str, Any], epochs: int) -> int:
        """Gradient evaluations a run of `epochs` epochs of `config` costs."""
        trainer = self.study.trainer
        steps = trainer.steps_per_epoch(int(config.get("batch_size", trainer.batch_size)))
        return epochs * steps * optimizer_spec(config).grad_evals

    def spent(self) -> dict[str, float]:
        """Budget used so far, counting the planned remainder of trials in flight."""
        epochs, grad = (float(x) for x in self.mirror.totals())
        for r in self.mirror.unfinished():  # finished trials are running totals: O(unfinished), not O(trials)
            if r.state in (TrialState.PENDING, TrialState.RUNNING) and not r.superseded:
                rest = max(0, (r.target or self.study.trainer.epochs) - r.epochs)
                epochs += rest
                grad += self.planned_grad_evals(r.config, rest)
        return {"trials": self.mirror.n_proposals(), "epochs": epochs, "grad_evals": grad,
                "seconds": self.elapsed()}

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

    # ------------------------------------------------------------------ writes
    def _set_system(self, row: Row, **attrs: Any) -> None:
        write_trial(self.storage, row.trial_id, system_attrs=attrs)

    @property
    def folder(self) -> Path:
        """The study's own checkpoint folder (its marker names the study and the database)."""
        return self.study.artifacts / str(self.study.folder)

    def _remove(self, path: Path | None) -> None:
        """Delete a checkpoint tunelab owns (only while the study's folder is still its own; see `studies.artifacts`).

        A file system that refuses is logged, not fatal.
        """
        if path is None or not path.exists():
            return
        if not owns(self.folder, str(self.study.uid), self.study.database):
            logger.warning("kept the checkpoint %s: the marker of %s no longer names study %r of %s", path,
                           self.folder, self.study.name, self.study.database)
            return
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            logger.warning("could not delete the checkpoint %s: %s", path, err)

    def _checkpoint_path(self, row: Row) -> Path | None:
        return checkpoint_path(self.study.artifacts, self.study.folder, row.trial_id, row.number, row.checkpoint)

    def create_trial(self, config: dict[str, Any], *, proposal: int, target: int, attrs: Mapping[str, Any],
                     state: Any, retry_of: int | None = None, seed: int | None = None,
                     writes: Callable[[int], list[TrialWrite]] = lambda number: [],
                     routine: str = "train", options: Mapping[str, Any] | None = None) -> Row:
        """Insert a trial with its params and mirror it (`seed`: its run's, if not the trainer's).

        A trial of a routine other than "train" stores the routine's name and options, so that
        a resume, a recovery or another driver runs it the same way.

        One transaction holds the insert and `writes(number)`: changes to other trials that must
        commit with it (recovery's "failed, re-queued as trial <number>").
        """
        from optuna.trial import TrialState as OTS
        from optuna.trial import create_trial

        system: dict[str, Any] = {PROPOSAL: proposal, TARGET: target}
        if retry_of is not None:
            system[RETRY_OF] = retry_of
        if seed is not None:
            system[RUN_SEED] = int(seed)
        if routine != "train":
            system[ROUTINE] = routine
            system[ROUTINE_OPTIONS] = dict(options or {})
        if state == OTS.RUNNING:  # claimed in the same transaction
            system.update({STATE: "running", OWNER: self.owner, LEASE: time.time() + LEASE_TTL_S})
        user: dict[str, Any] = {"strategy": dict(attrs)} if attrs else {}
        user.update(self.size_attrs(config))
        frozen = create_trial(
            state=state,
            params=config,
            distributions=self.study.space.distributions(config),
            user_attrs=user,
            system_attrs=system,
        )
        def extra(trial_id: int, number: int) -> tuple[dict[str, Any], list[TrialWrite]]:
            # the checkpoint is an artifact of the Optuna artifact store, registered the way
            # optuna.artifacts.upload_artifact registers one (the trainer writes the file in place)
            artifact = checkpoint_name(self.study.folder, trial_id, number)
            meta = {"artifact_id": artifact, "filename": f"trial-{number}.pt", "mimetype": "application/octet-stream",
                    "encoding": None}
            return {CHECKPOINT: artifact, f"artifacts:{artifact}": json.dumps(meta)}, list(writes(number))

        trial_id, number = _batch.create_trial(self.storage, self.study._study_id, frozen, extra)
        artifact = checkpoint_name(self.study.folder, trial_id, number)
        self._remove(self.study.artifacts / artifact)  # left by a database restored from an older copy: not this run's
        row = Row(trial_id=trial_id, number=number, state=state_of_ots(state), config=dict(config), proposal=proposal,
                  target=target, attrs=dict(attrs), checkpoint=artifact, owner=system.get(OWNER),
                  lease=float(system.get(LEASE, 0.0)), retry_of=retry_of, seed=seed, routine=routine,
                  options=dict(options or {}))
        self.mirror.put(row)
        return row

    def size_attrs(self, config: Mapping[str, Any]) -> dict[str, int]:
        """`{"n_params": ..., "flops": ...}` of the network `config` builds ({} if it cannot be measured)."""
        return self.study.trainer.size(config)

    def claim(self, row: Row) -> None:
        """Mark `row` running, owned by this driver."""
        from optuna.trial import TrialState as OTS

        # its first epochs wait `flush_seconds` like the rest: a trial shorter than that is written once, at its end
        row.last_flush = time.monotonic()
        if row.state == TrialState.RUNNING and row.owner == self.owner:  # created claimed
            self.in_flight.add(row.trial_id)
            return
        if row.state == TrialState.PENDING:
            self.storage.set_trial_state_values(row.trial_id, OTS.RUNNING)
        row.state, row.paused_by, row.owner = TrialState.RUNNING, None, self.owner
        row.lease = time.time() + LEASE_TTL_S
        self._set_system(row, **{STATE: "running", PAUSED_BY: None, OWNER: self.owner, LEASE: row.lease})
        self.in_flight.add(row.trial_id)

    def flush(self, row: Row, end: Mapping[str, Any] | None = None, **user_attrs: Any) -> None:
        """Write the epochs of `row` not yet in the database (and `user_attrs`), in one transaction.

        `end` holds further `TrialValues` fields that commit with them: how the trial ended (its
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
            items.append(TrialValues(row.trial_id, values, new_values, attrs))
        if end:
            items[0] = replace(items[0], **end)
        write_trials(self.storage, items)
        now = time.monotonic()
        for row, item in zip(rows, items, strict=True):  # the mirror follows only what was committed
            row.stored_steps = max(row.stored_steps, *item.new_values) if item.new_values else row.stored_steps
            row.flushed = row.epochs
            row.last_flush = now

    def on_epoch(self, trial_id: int, epoch: EpochResult) -> None:
        """Mirror one epoch result; write it when the trial's last write is `flush_seconds` old."""
        row = self.rows.get(trial_id)
        if row is None or trial_id not in self.in_flight:
            return
        if epoch.epoch <= row.epochs:  # re-trained after a resume from an older checkpoint: replace
            keep = epoch.epoch - 1
            row.metrics = {k: v[:keep] for k, v in row.metrics.items()}
            row.seconds = sum(v or 0.0 for v in row.metrics["seconds"])
            row.flushed = min(row.flushed, keep)
        self._append(row, epoch)
        if time.monotonic() - row.last_flush >= self.flush_seconds:
            # every running trial with unwritten epochs goes in the same transaction: the members of a
            # population report together, so a population costs one write per flush, not one per member
            due = [r for tid in self.in_flight if (r := self.rows[tid]).flushed < r.epochs and r is not row]
            self.flush_many([row, *due])
        if self._bar is not None and self.budget.unit == "epochs" and self._bar.n < (self._bar.total or 0):
            self._bar.update(1)

    def _append(self, row: Row, e: EpochResult) -> None:
        m = row.metrics
        for key in METRIC_KEYS:
            value = getattr(e, key)
            # measurements exactly; a time to the microsecond (the rest of its digits are noise)
            m[key].append(int(value) if key == "grad_evals" else microseconds(value) if key == "seconds"
                          else finite(value))
        row.seconds += e.seconds
        row.grad_evals = e.grad_evals

    def _adopt(self, row: Row, epochs: list[EpochResult]) -> None:
        """Take a run's full history: a result's (epochs from before a resume, unflushed ones) or a checkpoint's."""
        row.metrics = {k: [] for k in METRIC_KEYS}
        row.seconds = 0.0
        flushed = row.flushed
        for e in epochs:
            self._append(row, e)
        row.flushed = min(flushed, row.epochs)

    def _drop_stale_tail(self, row: Row) -> None:
        """Delete stored curve steps past the row's epochs (its run started over, or its checkpoint is older)."""
        if row.stored_steps > row.epochs:
            drop_steps_after(self.storage, row.trial_id, row.epochs)
            row.stored_steps = row.epochs

    def finish(self, outcome: Outcome) -> None:
        """Record how a unit of work ended."""
        from optuna.trial import TrialState as OTS

        row = self.rows[outcome.work.trial_id]
        self.in_flight.discard(row.trial_id)
        if outcome.lost:
            self.lost[row.trial_id] = self.lost.get(row.trial_id, 0) + 1
            if self.lost[row.trial_id] < LOST_LIMIT:
                self._continue_lost(row, outcome)
                return
            outcome = replace(outcome, error=f"{outcome.error} (its worker died {LOST_LIMIT} times, so the trial is "
                                              f"recorded failed instead of being continued again)")
        result = outcome.result
        if result is None and row.retries < self.max_retries and not self.stop.is_set():
            self._retry(row, outcome)
            return
        if result is not None:
            self._adopt(row, result.epochs)
        ua: dict[str, Any] = {
            "epochs": row.epochs,
            "grad_evals": row.grad_evals,
            "seconds": round(row.seconds, 4),
            "device": outcome.device or str(self.study.trainer.device),
            "seed": outcome.work.seed,
        }
        state, value, error = None, None, None
        if result is None:
            error = outcome.error or "unknown error"
            state = OTS.FAIL
        elif result.status == "complete":
            state, value = OTS.COMPLETE, float(result.val_metric)
            ua["test_metric"] = finite(result.test_metric)
        elif result.status == "stopped":
            state = OTS.PRUNED
        elif result.status == "diverged":
            last = result.epochs[-1]
            error = f"diverged: the training loss became non-finite in epoch {last.epoch} (lr {last.lr:.3g})"
            state = OTS.FAIL
        if result is not None:
            ua["best_value"] = finite(result.best_val_metric)
            if result.checkpoint_error is not None:
                ua["checkpoint_error"] = result.checkpoint_error
                path = self._checkpoint_path(row)
                if state is None and (path is None or not path.exists()):
                    # a pause that kept no checkpoint cannot be continued: keep what it measured, as failed
                    state, error = OTS.FAIL, f"paused, but {result.checkpoint_error}"
        if outcome.work.routine != "train":  # shown beside its results in optuna-dashboard (user attributes)
            ua["routine"] = outcome.work.routine
        if outcome.restarted is not None:
            ua["restarted"] = outcome.restarted
        if result is not None and result.attrs:  # a routine's findings; for "train", a replay's nearest-answer label
            row.results = dict(result.attrs)
            ua[row.routine] = row.results
            warning = row.results.get("warning")
            if warning:
                warnings.warn(f"trial {row.number}: {warning}", stacklevel=2)
                logger.warning("trial %s: %s", row.number, warning)
        if error is not None:
            ua["error"] = error
        row.error = error
        # one transaction: the last epochs, the attributes, the end of a curve that started over, the outcome
        end: dict[str, Any] = {"drop_after": row.epochs} if row.stored_steps > row.epochs else {}
        by = "interrupt" if self.stop.is_set() or row.epochs < (row.target or 0) else "strategy"
        if state is None:  # paused: by Ctrl-C / a crash, or because the request asked for fewer epochs
            end["system_attrs"] = {STATE: "paused", PAUSED_BY: by, LEASE: 0.0}
        dropped = None
        if state is not None:  # a finished trial is neither running nor paused any more: those attributes go
            # (its owner and lease stay: a reader that saw it running an instant before must not find it ownerless)
            drop = [STATE, PAUSED_BY]
            if row.checkpoint is not None and not self._keeps(row, state, value):
                # its checkpoint is deleted below: so is its registration as an artifact
                dropped = self._checkpoint_path(row)
                drop += [CHECKPOINT, f"artifacts:{row.checkpoint}"]
            end.update(state=state, value=value, drop_system=tuple(drop))
        self.flush(row, end=end, **ua)
        row.stored_steps = min(row.stored_steps, row.epochs)
        self._track_storage(outcome)
        if state is None:
            row.state, row.paused_by, row.lease = TrialState.PAUSED, by, 0.0
        else:
            row.state, row.value = state_of_ots(state), value
            row.paused_by = None
            if dropped is not None:  # not kept (a failed run's can never be continued): free the disk
                row.checkpoint = None
                self._remove(dropped)
            if state != OTS.FAIL:
                self._retain(row)
        self._track_failure(outcome, row)
        self._announce(row)

    def _keeps(self, row: Row, state: Any, value: float | None) -> bool:
        """Whether `keep_checkpoints` keeps the checkpoint of `row`, which is ending in `state` with `value`."""
        from optuna.trial import TrialState as OTS

        if state == OTS.FAIL or self.keep_checkpoints == "none":
            return False
        if self.keep_checkpoints == "all":
            return True
        if state != OTS.COMPLETE or value is None or not is_comparable(row.routine):
            return False
        best = self.study_best()
        return best is None or self.sign * float(value) < self.sign * best[1]

    def _retain(self, row: Row) -> None:
        """Delete the checkpoints of finished trials that `keep_checkpoints` does not keep.

        Only trials that may still have one are looked at: `row`, which just finished, and the
        ones kept so far (the best); the first call also looks at every trial finished before this
        driver started. So a finish costs O(1) file operations, not one per trial of the study.
        """
        if self.keep_checkpoints == "all":
            return
        finished = (TrialState.COMPLETE, TrialState.PRUNED)
        kept = self.mirror.kept
        if kept is None:
            kept = self.mirror.kept = {tid for tid, r in self.rows.items() if r.state in finished}
        kept.add(row.trial_id)
        best = self.study_best() if self.keep_checkpoints == "best" else None
        for tid in sorted(kept):
            r = self.rows.get(tid)
            if r is None or r.state not in finished:
                kept.discard(tid)
            elif best is None or r.number != best[0]:
                path = self._checkpoint_path(r)
                if path is not None and r is not row and r.checkpoint is not None:
                    # no longer the best: its file goes, and so does the trial's registration of it
                    _batch.drop_system_attrs(self.storage, r.trial_id, (CHECKPOINT, f"artifacts:{r.checkpoint}"))
                    r.checkpoint = None
                if path is not None:
                    self._remove(path)
                kept.discard(tid)

    def _retry(self, row: Row, outcome: Outcome) -> None:
        """Queue an errored trial to run again from its last checkpoint (or from scratch without one)."""
        row.retries += 1
        row.state, row.paused_by, row.lease = TrialState.PAUSED, "interrupt", 0.0
        self.flush(row)
        write_trial(self.storage, row.trial_id,
                    system_attrs={STATE: "paused", PAUSED_BY: "interrupt", LEASE: 0.0, RETRIES: row.retries},
                    user_attrs={f"retry_{row.retries}_error": outcome.error or "unknown error"})
        if self.progress:
            line = f"trial {row.number:>3}  raised {outcome.error}; retry {row.retries} of {self.max_retries}"
            (self._bar.write if self._bar is not None else print)(line)

    def _track_early_divergence(self, row: Row) -> None:
        """Stop a study whose first trials all diverge in their first epoch: the data or the space is at fault."""
        self.early_divergences += 1
        any_complete = self.mirror.any_complete()
        if self.early_divergences >= self.max_failures and not any_complete:
            self.fatal = TrialError(
                f"the last {self.early_divergences} trials all diverged (non-finite training loss) in their first "
                f"epoch and no trial has completed, so the study stopped instead of spending its budget. Different "
                f"learning rates failing the same way points at the data (extreme or unscaled inputs, e.g. "
                f"standardise x and y) or at the space (ranges no configuration can train with), not at one bad "
                f"configuration. Last: trial {row.number}, {row.error}"
            )
            self.stop.set()

    def _track_storage(self, outcome: Outcome) -> None:
        """Stop the study when checkpoints keep failing to be written (a full disk would burn the budget)."""
        problem = outcome.result.checkpoint_error if outcome.result is not None else None
        if problem is None:
            if outcome.result is not None:
                self.storage_faults.clear()
            return
        logger.warning("trial %s: %s (its result is recorded)", outcome.work.number, problem)
        self.storage_faults.append(problem)
        if len(self.storage_faults) >= self.max_failures:
            self.fatal = StorageError(
                f"the last {len(self.storage_faults)} trials could not write their checkpoints to "
                f"{str(self.study.artifacts)!r}, so the study stopped instead of spending its budget (their results "
                f"are recorded). Last: {problem}. Free disk space or make the folder writable, then run optimize again"
            )
            self.stop.set()

    def _track_failure(self, outcome: Outcome, row: Row) -> None:
        result = outcome.result
        if result is not None and result.status == "diverged" and len(result.epochs) == 1:
            self._track_early_divergence(row)
            return
        if result is not None or (outcome.error or "").startswith("out of memory"):
            self.failures.clear()
            self.early_divergences = 0
            return
        self.failures.append(outcome)
        any_complete = self.mirror.any_complete()
        if len(self.failures) >= self.max_failures and not any_complete:
            last = self.failures[-1]
            self.fatal = TrialError(
                f"the last {len(self.failures)} trials all raised and no trial of the study has completed, so "
                f"the study stopped (this looks like a bug, not a bad configuration). Last error, trial "
                f"{row.number}: {last.error}\n{last.traceback or ''}"
            )
            self.stop.set()

    def _announce(self, row: Row) -> None:
        if not self.progress or (row.state == TrialState.PAUSED and row.paused_by == "strategy"):
            return  # a multi-fidelity strategy pauses trials at every increment: the bar shows progress
        metric = self.study.trainer.workload.metric
        if row.state == TrialState.COMPLETE:
            what = f"{metric} {row.value:.4f}"
        elif row.state == TrialState.PAUSED:
            what = f"paused at epoch {row.epochs}"
        else:
            what = f"{row.state}: {row.error}" if row.error else str(row.state)
        best = self.study_best()
        tail = f"  best {best[1]:.4f} (trial {best[0]})" if best else ""
        line = f"trial {row.number:>3}  {what}  ({row.epochs} epochs, {row.seconds:.1f} s){tail}"
        if self._bar is not None:
            self._bar.write(line)
            if self.budget.unit == "trials":
                self._bar.n = min(self.finished_proposals(), self._bar.total or 0)
                self._bar.refresh()
            elif self.budget.unit == "seconds":
                self._bar.n = round(min(self.elapsed(), self._bar.total or 0.0), 1)
                self._bar.refresh()
            elif self.budget.unit == "grad_evals":
                self._bar.n = min(int(self.mirror.totals()[1]), self._bar.total or 0)
                self._bar.refresh()
        else:
            print(line)

    def _budget_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.budget.as_dict().items() if v is not None)

    def finished_proposals(self) -> int:
        """Proposals whose trial has finished (what the progress bar counts for a budget in trials)."""
        return self.mirror.finished_proposals()

    def study_best(self) -> tuple[int, float] | None:
        """(number, value) of the best complete trial (of a routine whose values are comparable)."""
        return self.mirror.study_best()

    def best_record(self) -> TrialRecord | None:
        """The study's best trial (`Study.best`), from the mirror brought up to date and one trial read."""
        with self.lock:
            self.refresh()
        best = self.study_best()
        if best is None:
            return None
        row = self.mirror.by_number[best[0]]
        return record_of(self.storage.get_trial(row.trial_id), list(self.study.space.names))

    # ------------------------------------------------------------------ recovery
    def _dead(self, row: Row) -> bool:
        """Whether a running trial's driver is gone (its lease ran out, or its process on this host is)."""
        if row.trial_id in self.in_flight:
            return False
        return gone(row.owner, row.lease)

    def recover(self) -> None:
        """Continue or re-queue trials whose driver died (DESIGN section 5). Call it holding the study lock.

        A dead trial with a readable checkpoint is paused to be continued, and its stored curve is
        made to match the checkpoint's history step for step (the database may lag the checkpoint
        by up to `flush_seconds`, or lead it by up to `checkpoint_seconds`). A dead trial without
        one, or with a corrupt one, is marked failed and re-queued with the same config and
        proposal, in the same transaction that inserts its re-run.
        """
        for row in self.mirror.unfinished():
            if row.state == TrialState.RUNNING and self._dead(row):
                self._recover_one(row)

    def _recover_one(self, row: Row) -> None:
        """Pause `row` to continue from its checkpoint, or re-queue it (failed, "interrupted") without a usable one."""
        path = self._checkpoint_path(row)
        reason = None
        if path is not None and path.exists():
            try:
                state = load_checkpoint(path)
                stored = state.get("config")
                # a routine may complete the trial's config before it trains (a schedule replay adds the
                # values it sets): the checkpoint must agree with every value the trial has
                if not isinstance(stored, dict) or any(stored.get(k) != v for k, v in row.config.items()):
                    raise CheckpointError(f"{path} holds another configuration")
            except CheckpointError as err:
                reason = f"its checkpoint was unreadable ({err})"
                self._remove(path)
            else:
                self._reconcile(row, [EpochResult(**e) for e in state["history"]])
                row.state, row.paused_by, row.lease = TrialState.PAUSED, "interrupt", 0.0
                self._set_system(row, **{STATE: "paused", PAUSED_BY: "interrupt", LEASE: 0.0})
                return
        elif row.epochs == 0:
            reason = "its process stopped before its first epoch ended"
        else:
            reason = (f"its process stopped after {row.epochs} recorded epochs with no checkpoint to continue "
                      f"from (none was written yet, or it was deleted)")
        self._requeue(row, reason)

    def _continue_lost(self, row: Row, outcome: Outcome) -> None:
        """A unit of work whose worker died: continue its trial from the last checkpoint the driver holds."""
        self.flush(row)
        with self.lock:
            self._recover_one(row)
        if self.progress:
            how = (f"continues from its checkpoint at epoch {row.epochs}" if row.state == TrialState.PAUSED
                   else "is re-queued from scratch")
            line = f"trial {row.number:>3}  {outcome.error}; it {how}"
            (self._bar.write if self._bar is not None else print)(line)
        logger.warning("trial %s: %s", row.number, outcome.error)

    def _requeue(self, row: Row, reason: str) -> Row:
        """Mark `row` failed ("interrupted") and insert its re-run, in one transaction."""
        from optuna.trial import TrialState as OTS

        messages: dict[str, str] = {}

        def writes(number: int) -> list[TrialWrite]:
            messages["error"] = f"interrupted: {reason}; re-queued as trial {number}"
            return [TrialWrite(row.trial_id, user_attrs={"error": messages["error"]},
                               system_attrs={SUPERSEDED: True, LEASE: 0.0}, state=OTS.FAIL)]

        rerun = self.create_trial(row.config, proposal=row.proposal if row.proposal is not None else row.number,
                                  target=row.target or self.study.trainer.epochs, attrs=row.attrs,
                                  state=OTS.WAITING, retry_of=row.number, seed=row.seed, writes=writes,
                                  routine=row.routine, options=row.options)
        row.state, row.error, row.superseded, row.lease = TrialState.FAILED, messages["error"], True, 0.0
        return rerun

    def _reconcile(self, row: Row, history: list[EpochResult]) -> None:
        """Make the stored curve and metrics of `row` those of `history` (its checkpoint's), step for step."""
        stored = list(row.metrics["val_metric"])
        row.grad_evals = 0
        self._adopt(row, history)
        new = row.metrics["val_metric"]
        differ = (i for i, (a, b) in enumerate(zip(stored, new, strict=False)) if a != b)
        same = next(differ, min(len(stored), len(new)))  # the first step that differs
        self._drop_stale_tail(row)
        row.flushed = same
        self.flush(row, **{METRICS: compact_metrics(row.metrics), "epochs": row.epochs,
                           "seconds": round(row.seconds, 4), "grad_evals": row.grad_evals})

    # ------------------------------------------------------------------ the loop
    def refresh(self) -> None:
        """Re-read what other drivers of the study changed: trials not finished in the mirror, and new ones.

        Called holding the study lock. Pending and paused trials change only under the lock, so
        when no other driver held it since this one last did, only the trials other drivers
        were running (and new ones: none then) can have changed, and only those are read.
        """
        quiet = not self.lock.others_since()
        open_ids = {r.trial_id for r in self.mirror.unfinished() if r.trial_id not in self.in_flight
                    and not (quiet and (r.state != TrialState.RUNNING or r.owner == self.owner))}
        self._take(read_trials(self.storage, self.study._study_id, include=open_ids, after=self.mirror.last_id),
                   self.mirror)

    def next_work(self) -> Work | None:
        """The next unit of work (re-queued trials, then interrupted ones, then the strategy's request).

        Decided holding the study lock, after re-reading what other drivers did, so that several
        drivers of one study share its budget and never train one proposal twice.
        """
        if self.stop.is_set() or self.exhausted:
            return None
        with self.lock:
            self.refresh()
            self.recover()
            return self._next_work()

    def next_unit(self, populations: bool) -> Unit | None:
        """The next unit of work: one work, or up to `population` "train" works of one architecture.

        With `population` > 1 the strategy is asked for up to that many starts at once (each
        created trial is pending in the history of the next ask), and those that share an
        architecture and have a vectorised optimizer form one unit. The other units formed from
        the same asks are held and submitted first, as slots free up.
        """
        if self.held:
            return self.held.pop(0)
        first = self.next_work()
        if first is None or not populations or self.population <= 1 or self._group_key(first) is None:
            return first
        works = [first]
        while len(works) < self.population:
            work = self.next_work()
            if work is None:
                break
            works.append(work)
        groups: dict[Any, list[Work]] = {}
        for work in works:
            groups.setdefault(self._group_key(work) or ("alone", work.trial_id), []).append(work)
        units: list[Unit] = [tuple(g) if len(g) > 1 else g[0] for g in groups.values()]
        self.held = units[1:]
        return units[0]

    def _group_key(self, work: Work) -> Any:
        """What works must share to train as one population, or None if `work` trains alone."""
        from trainers.population import architecture, why_not_vectorised

        trainer = self.study.trainer
        if work.routine != "train" or why_not_vectorised(work.config) is not None:
            return None
        if not isinstance(trainer.workload.train, TensorSplit):
            return None
        return architecture(work.config, trainer)

    def _next_work(self) -> Work | None:
        for row in self.mirror.unfinished():
            if row.trial_id in self.in_flight:
                continue
            if row.state == TrialState.PENDING and not row.superseded:
                path = self._checkpoint_path(row)
                if path is not None:
                    self._remove(path)
                return self._work(row, row.target)
            if row.state == TrialState.PAUSED and row.paused_by == "interrupt":
                return self._work(row, row.target)
        if not self.fits(None, 0, new_trial=True):
            self.exhausted = True
            return None
        for _ in range(len(self.rows) + 1):  # a resume of a trial whose checkpoint is gone is refused; ask again
            history = self.history()
            strategy = self.study.strategy
            with strategy_faults(strategy):
                request = strategy.ask(history)
                keep = request.trial if request is not None and request.kind == "resume" else None
                retired = [n for n in strategy.retire(history) if n != keep]
            self.retire(retired)
            if request is None:
                return None
            if request.kind == "resume" and not self._resumable(request.trial):
                continue
            return self._from_request(request)
        return None

    def row_of_number(self, number: int | None) -> Row | None:
        """The mirror of trial `number`, or None."""
        return self.mirror.by_number.get(number) if number is not None else None

    def _resumable(self, number: int | None) -> bool:
        """Whether paused trial `number` still has its checkpoint; if not, it is recorded failed."""
        from optuna.trial import TrialState as OTS

        row = self.row_of_number(number)
        if row is None or row.state != TrialState.PAUSED:
            return True  # _from_request explains the mistake
        path = self._checkpoint_path(row)
        if path is not None and path.exists():
            return True
        row.error = f"its checkpoint {path} is missing, so it cannot be resumed"
        write_trial(self.storage, row.trial_id, system_attrs={STATE: None, PAUSED_BY: None},
                    user_attrs={"error": row.error})
        self.storage.set_trial_state_values(row.trial_id, OTS.FAIL)
        row.state = TrialState.FAILED
        return False

    def retire(self, numbers: list[int]) -> None:
        """Prune paused trials the strategy will never resume, and delete their checkpoints."""
        from optuna.trial import TrialState as OTS

        for number in numbers:
            row = self.row_of_number(number)
            if row is None or row.state != TrialState.PAUSED or row.trial_id in self.in_flight:
                continue
            finite_curve = [v for v in row.curve if math.isfinite(v)]
            value = finite_curve[-1] if finite_curve else None
            path = self._checkpoint_path(row)
            drop = (STATE, PAUSED_BY) + ((CHECKPOINT, f"artifacts:{row.checkpoint}") if path is not None else ())
            # one transaction: pruned, and no longer naming the checkpoint deleted below
            write_trials(self.storage, [TrialValues(row.trial_id, user_attrs={"retired": True}, drop_system=drop,
                                                    state=OTS.PRUNED, value=value)])
            row.state, row.value, row.paused_by, row.checkpoint = TrialState.PRUNED, value, None, None
            if path is not None:
                self._remove(path)

    def _from_request(self, request: Request) -> Work | None:
        from optuna.trial import TrialState as OTS

        full = self.study.trainer.epochs
        if request.warm_start is not None:
            raise ConfigError(
                "Request.warm_start is not supported by the 'train' routine of this release; start from scratch "
                "(warm_start=None) or resume a paused trial with Request.resume"
            )
        if request.kind == "resume":
            row = self.row_of_number(request.trial)
            if row is None or row.state != TrialState.PAUSED:
                raise ConfigError(f"the strategy asked to resume trial {request.trial}, which is not paused")
            if row.routine != "train":  # a routine's run has its own length, fixed when it started
                full = row.target or full
            until = min(request.until_epoch or full, full)
            if until <= row.epochs:
                raise ConfigError(f"the strategy asked to resume trial {request.trial} until epoch {until}, but it "
                                  f"has trained {row.epochs} epochs already")
            if not self.fits(row.config, until - row.epochs, new_trial=False):
                self.exhausted = True
                return None
            row.target = until
            self._set_system(row, **{TARGET: until})
            if request.attrs:
                row.attrs.update(request.attrs)
                row.view = None
                write_trial(self.storage, row.trial_id, user_attrs={"strategy": dict(row.attrs)})
            return self._work(row, until)
        if request.routine not in routines:
            raise ConfigError(f"the strategy asked for the unknown routine {request.routine!r} (registered: "
                              f"{', '.join(routines.names())}); register it with search.routines.register(name, "
                              f"search.Routine(run))")
        routine = routines.get(request.routine)
        if request.routine == "train" and request.options:
            raise ConfigError(f"the 'train' routine takes no options, but the request gives {dict(request.options)}")
        config = self._validate(request.config or {}, routine.free(self.study.space, request.options))
        # a routine's run (a DARTS search) has its own length, not the trainer's
        epochs = min(request.epochs or full, full) if request.routine == "train" else request.epochs or full
        if not self.fits(config, epochs, new_trial=True):
            self.exhausted = True
            return None
        row = self.create_trial(config, proposal=self.mirror.n_proposals(), target=epochs, attrs=request.attrs,
                                state=OTS.RUNNING, seed=request.seed, routine=request.routine,
                                options=request.options)
        return self._work(row, epochs)

    def _validate(self, config: Mapping[str, Any], free: tuple[str, ...]) -> dict[str, Any]:
        """The canonical form of a requested config; `free` parameters (chosen by the routine) are left out."""
        if not free:
            return self.study.space.validate(config)
        given = [k for k in free if k in config]
        if given:
            raise ConfigError(f"the request sets {given}, which its routine chooses itself; leave them out")
        full = self.study.space.complete(config)
        return {k: v for k, v in self.study.space.validate(full).items() if k not in free}

    def _work(self, row: Row, until: int | None) -> Work:
        self.claim(row)
        path = self._checkpoint_path(row)
        return Work(
            trial_id=row.trial_id,
            number=row.number,
            config=dict(row.config),
            seed=self.study.trainer.seed if row.seed is None else row.seed,
            until_epoch=until,
            checkpoint=str(path) if path is not None else None,
            routine=row.routine,
            checkpoint_seconds=self.checkpoint_seconds,
            options=dict(row.options),
        )

    def _heartbeat(self, done: threading.Event) -> None:
        while not done.wait(LEASE_EVERY_S):
            with self._lock:
                ids = list(self.in_flight)
            for tid in ids:
                try:
                    self.storage.set_trial_system_attr(tid, LEASE, time.time() + LEASE_TTL_S)
                except Exception:  # a finished trial cannot be updated any more; nothing to renew
                    continue

    def _make_bar(self) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        unit = self.budget.unit
        total = self.budget.as_dict()[unit]
        initial = self.finished_proposals() if unit == "trials" else 0
        if unit in ("epochs", "grad_evals"):
            initial = int(self.mirror.totals()[0 if unit == "epochs" else 1])
        return tqdm(total=total, initial=min(initial, total), unit=unit[:-1] if unit.endswith("s") else unit,
                    desc=self.study.name, dynamic_ncols=True)

    def check_artifacts(self) -> None:
        """Fail early, naming the folder, when checkpoints cannot be written there."""
        folder = self.folder
        claim(folder, uid=str(self.study.uid), name=self.study.name, database=self.study.database)
        probe = folder / f".tunelab-write-check-{self.owner.replace(':', '-')}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as err:
            raise StorageError(
                f"cannot write checkpoints to the artifact folder {str(folder)!r} ({type(err).__name__}: {err}); make "
                f"it writable or free space, or open the study with artifacts='another/folder'"
            ) from err

    def run(self) -> None:
        """Recover, then fill executor slots until the budget or the strategy is exhausted.

        Raises:
            StorageError: The database failed (read-only, locked past the busy timeout, a disk
                error: named with its real cause), or checkpoints cannot be written.
        """
        with storage_faults(self.study.storage_url):
            self.check_artifacts()
            LIVE.add(self.owner)
            try:
                self._run()
            finally:
                LIVE.discard(self.owner)

    def _run(self) -> None:
        with self.lock:
            self.refresh()  # reads every trial on the first call (the mirror starts empty), then only what changed
            self.recover()
        self.storage.set_study_user_attr(self.study._study_id, BUDGET, self.budget.as_dict())
        trainer = self.study.trainer
        owned = isinstance(self.executor_spec, str)
        executor = (open_executor(self.executor_spec, self.n_workers, **self.executor_options) if owned
                    else self.executor_spec)
        self.executor = executor
        self._clock = getattr(executor, "clock", None)
        if self._clock is not None:
            self.t0 = self._clock()
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self._on_sigint)
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(done,), daemon=True)
        beat.start()
        self._bar = self._make_bar()
        spent_written = time.monotonic()
        try:
            while True:
                while executor.busy < executor.capacity:
                    unit = self.next_unit(getattr(executor, "populations", False))
                    if unit is None:
                        break
                    executor.submit(unit, trainer)
                    self.started += len(works_of(unit))
                if executor.busy == 0:
                    break
                if self.stop.is_set():  # Ctrl-C, or a study that must stop: running work pauses at its epoch end
                    executor.pause()
                outcomes = executor.wait(self.on_epoch, timeout=WAIT_S)
                for outcome in outcomes:
                    self.finish(outcome)
                if outcomes and time.monotonic() - spent_written >= self.flush_seconds:
                    # at most one write every flush_seconds (a kill loses at most that much of the seconds count)
                    self.storage.set_study_user_attr(self.study._study_id, SECONDS_SPENT, round(self.elapsed(), 3))
                    spent_written = time.monotonic()
        finally:
            done.set()
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            for tid in list(self.in_flight):  # an exception left these running: let the next driver recover them
                try:
                    self.flush(self.rows[tid])
                    self.storage.set_trial_system_attr(tid, LEASE, 0.0)
                except Exception:  # the database itself may be the failure; recovery handles it
                    continue
            if owned:
                executor.close()
            self.executor = None
            try:  # recorded when the database lets it be; a failing database must not hide the first error
                self.storage.set_study_user_attr(self.study._study_id, SECONDS_SPENT, round(self.elapsed(), 3))
            except Exception as err:
                fault = storage_fault(err, self.study.storage_url)
                logger.warning("could not record the study's seconds spent: %s", fault)
            if self._clock is not None:  # the next optimize may run elsewhere: carry the simulated seconds over
                self.seconds_before, self._clock = self.elapsed(), None
                self.t0 = time.monotonic()
            if self._bar is not None:
                self._bar.close()
        if self.fatal is not None:
            raise self.fatal
        if self.progress and self.stop.is_set():
            paused = self.mirror.count(TrialState.PAUSED)
            print(f"study {self.study.name!r} paused ({paused} trials paused); run optimize again to continue")
        if self.progress and self.started == 0 and self.exhausted and not self.stop.is_set():
            done = self.mirror.count(TrialState.COMPLETE)
            print(f"study {self.study.name!r} is complete: its budget {self._budget_text()} is spent ({done} complete "
                  f"trials); give a larger total to continue it")
        if self.interrupted:  # as Optuna does: the caller's script must not go on as if the study had finished
            raise KeyboardInterrupt

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.interrupted = True
        self.stop.set()
        if self.executor is not None:
            self.executor.pause()  # sets a flag only: safe here
        if self.progress:
            print("\nCtrl-C: pausing running trials at the end of their epoch (Ctrl-C again to abort)", flush=True)


@contextlib.contextmanager
def strategy_faults(strategy: Any) -> Iterator[None]:
    """Inside, an exception a strategy raises while deciding becomes a `StrategyError` naming it.

    A strategy decides from the study's history, which includes what it stored with earlier
    trials; a damaged database can make it fail, and so can a bug in a custom strategy. Either
    way the caller gets a typed error naming the strategy (the original is chained to it).
    """
    try:
        yield
    except TunelabError:
        raise
    except Exception as err:
        raise StrategyError(
            f"the strategy {strategy!r} failed while choosing the next trial ({type(err).__name__}: {str(err)[:300]}). "
            f"If the database was edited or damaged, restore it; if this is your own strategy, its traceback is "
            f"chained to this error") from err


def state_of_ots(state: Any) -> TrialState:
    """Tunelab's state of a finished Optuna state."""
    from optuna.trial import TrialState as OTS

    return {
        OTS.COMPLETE: TrialState.COMPLETE,
        OTS.PRUNED: TrialState.PRUNED,
        OTS.RUNNING: TrialState.RUNNING,
        OTS.WAITING: TrialState.PENDING,
    }.get(state, TrialState.FAILED)
