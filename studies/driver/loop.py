"""The loop of `Study.optimize`: fill free executor slots with planned work, record what comes back.

`Driver` composes the parts, each with one job (see `studies.driver`): the planner decides and
claims work under the study lock, the executor trains it, the recorder writes every epoch and
outcome, retention keeps or deletes checkpoints, recovery brings back trials whose worker died,
the failure policy stops a study that cannot succeed, and the progress callback reports. The
loop itself only moves units of work between them.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from tunelab.studies.artifacts import claim
from tunelab.studies.driver.budget import Budget, Meter
from tunelab.studies.driver.context import Context, StudyHandle
from tunelab.studies.driver.guards import CtrlC, Heartbeat
from tunelab.studies.driver.mirror import Mirror, Row
from tunelab.studies.driver.outcomes import ending_of, with_objectives
from tunelab.studies.driver.planner import Planner
from tunelab.studies.driver.policy import FailurePolicy
from tunelab.studies.driver.progress import Progress
from tunelab.studies.driver.recorder import Recorder, adopt
from tunelab.studies.driver.recovery import Recovery
from tunelab.studies.driver.retention import Retention
from tunelab.studies.errors import StorageError
from tunelab.studies.executors import Executor, Outcome, Work, open_executor, works_of
from tunelab.studies.recipes import BUDGET
from tunelab.studies.records import TrialRecord, TrialState, record_of
from tunelab.studies.storage.faults import storage_fault, storage_faults
from tunelab.studies.storage.limits import number as stored_number
from tunelab.studies.storage.lock import LIVE, LOCK_TTL_S, StudyLock, make_owner
from tunelab.studies.storage.reader import read_trials

logger = logging.getLogger(__name__)

SECONDS_SPENT = "tunelab:seconds_spent"
LOCK_TTL = "tunelab:lock_ttl"  # the lease length of the study lock, fixed when the study is created
WAIT_S = 1.0  # the longest the loop waits on the executor before it looks at `stop` and the seconds budget again
LOST_LIMIT = 3  # a trial whose worker died this many times in one optimize call is recorded failed


class Driver:
    """Runs one `Study.optimize` call (not public: use `Study.optimize`).

    Args:
        study: The study.
        budget: Its totals.
        n_workers: Units of work at once.
        executor: "local", "ray", "simulated", or an `Executor` the caller made (and closes).
        progress: Show a bar and one line per trial.
        checkpoint_seconds: A running trial checkpoints this often (None: every
            `trainer.checkpoint_every` epochs).
        max_failures: Failures of one kind in a row that stop the study (`FailurePolicy`).
        flush_seconds: A running trial's epochs are written at most this often.
        keep_checkpoints: "best", "all" or "none" (`Retention`).
        max_retries: Runs again a trial that raised, up to this many times.
        executor_options: `open_executor`'s Ray options.
        population: Trials of one architecture trained at once (`Planner`).
        mirror: The mirror the study's last `optimize` call left (its first refresh reads every
            unfinished trial and the new ones).
    """

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
        keep_checkpoints: str = "none",
        max_retries: int = 0,
        executor_options: Mapping[str, Any] | None = None,
        population: int = 1,
        mirror: Mirror | None = None,
    ) -> None:
        self.study, self.budget, self.max_retries = study, budget, max_retries
        self.n_workers, self.executor_spec = n_workers, executor
        self.executor_options: dict[str, Any] = dict(executor_options or {})
        self.executor: Executor | None = None
        attrs = study.attrs()
        owner = make_owner()
        ttl = stored_number(attrs.get(LOCK_TTL), f"the study's attribute {LOCK_TTL!r}")
        lock = StudyLock(study.storage, study.study_id, owner, label=f"study {study.name!r}",
                         ttl=min(max(ttl, 1.0), 3600.0) if ttl is not None else LOCK_TTL_S)
        sign = -1.0 if study.direction == "maximize" else 1.0
        self.ctx = Context(study=study, owner=owner, lock=lock, mirror=mirror if mirror is not None else Mirror(sign),
                           sign=sign)
        seconds = stored_number(attrs.get(SECONDS_SPENT), f"the study's attribute {SECONDS_SPENT!r}") or 0.0
        self.meter = Meter(budget, self.ctx.mirror, study.trainer, seconds)
        self.recorder = Recorder(self.ctx, flush_seconds)
        self.retention = Retention(self.ctx, self.recorder, keep_checkpoints)
        self.recovery = Recovery(self.ctx, self.recorder, self.retention)
        self.planner = Planner(self.ctx, self.meter, self.recorder, self.retention, self.recovery,
                               population=population, checkpoint_seconds=checkpoint_seconds)
        self.policy = FailurePolicy(self.ctx, max_failures)
        self.progress = Progress(progress, study.name, study.trainer.metric, budget, self.meter,
                                 self.ctx.mirror)
        self.lost: dict[int, int] = {}
        self.started = 0

    # ------------------------------------------------------------------ what tests and tools read
    @property
    def mirror(self) -> Mirror:
        """The mirror of the study's trials."""
        return self.ctx.mirror

    @property
    def rows(self) -> dict[int, Row]:
        """The mirror's rows by trial id."""
        return self.ctx.rows

    @property
    def in_flight(self) -> set[int]:
        """Trial ids this driver runs."""
        return self.ctx.in_flight

    @property
    def owner(self) -> str:
        """This driver's `host:pid:token`."""
        return self.ctx.owner

    @property
    def lock(self) -> StudyLock:
        """The study lock."""
        return self.ctx.lock

    def load(self) -> None:
        """Mirror every stored trial afresh (refusing checkpoint names that point outside the artifact folder)."""
        self.ctx.mirror = mirror = Mirror(self.ctx.sign)
        self.meter.mirror = self.progress.mirror = mirror
        self.planner.take(read_trials(self.study.storage, self.study.study_id))

    def proposals(self) -> list[Row]:
        """Trials the strategy proposed, in proposal order (re-queued ones replaced by their re-run)."""
        return self.ctx.mirror.proposals()

    def finished_proposals(self) -> int:
        """Proposals whose trial has finished (what the progress bar counts for a budget in trials)."""
        return self.ctx.mirror.finished_proposals()

    def study_best(self) -> tuple[int, float] | None:
        """(number, value) of the best complete trial (of a routine whose values are comparable)."""
        return self.ctx.mirror.study_best()

    def next_work(self) -> Work | None:
        """The next unit of work (see `Planner.next_work`)."""
        return self.planner.next_work()

    def on_epoch(self, trial_id: int, epoch: Any) -> None:
        """Relay one epoch result from the executor to the recorder and the bar."""
        if self.recorder.on_epoch(trial_id, epoch):
            self.progress.epoch()

    # ------------------------------------------------------------------ outcomes
    def finish(self, outcome: Outcome) -> None:
        """Record how a unit of work ended: continue a lost one, retry an errored one, or record its end."""
        row = self.ctx.rows[outcome.work.trial_id]
        self.ctx.in_flight.discard(row.trial_id)
        if outcome.lost:
            self.lost[row.trial_id] = self.lost.get(row.trial_id, 0) + 1
            if self.lost[row.trial_id] < LOST_LIMIT:
                self._continue_lost(row, outcome)
                return
            outcome = replace(outcome, error=f"{outcome.error} (its worker died {LOST_LIMIT} times, so the trial is "
                                              f"recorded failed instead of being continued again)")
        result = outcome.result
        if result is None and row.retries < self.max_retries and not self.ctx.stop.is_set():
            error = outcome.error or "unknown error"
            self.recorder.retry(row, error)
            self.progress.line(f"trial {row.number:>3}  raised {error}; retry {row.retries} of {self.max_retries}")
            return
        if result is not None:
            adopt(row, result.epochs)
        path = self.retention.path(row)
        end, values, limits = with_objectives(
            ending_of(outcome, row, device=str(self.study.trainer.device),
                      checkpoint_exists=path is not None and path.exists()),
            row, getattr(self.study, "objectives", None), getattr(self.study, "constraints", None))
        if end.results is not None:
            row.results = end.results
            if end.results.get("warning"):
                warnings.warn(f"trial {row.number}: {end.results['warning']}", stacklevel=2)
                logger.warning("trial %s: %s", row.number, end.results["warning"])
        row.error = end.error
        interrupted = self.ctx.stop.is_set() or row.epochs < (row.target or 0)
        forget = end.state is not None and row.checkpoint is not None and not self.retention.keeps(
            row, end.state, end.value)
        self.recorder.end(row, end.state, end.value, end.user_attrs, forget_checkpoint=forget,
                          paused_by="interrupt" if interrupted else "strategy", values=values, constraints=limits)
        self.policy.checkpoints(outcome)
        if forget:  # not kept (a failed run's can never be continued): free the disk
            self.retention.remove(path)
        if end.state in (TrialState.COMPLETE, TrialState.PRUNED):
            self.retention.retain(row)
        self.policy.outcome(outcome, row)
        self.progress.ended(row)

    def _continue_lost(self, row: Row, outcome: Outcome) -> None:
        """A unit of work whose worker died: continue its trial from the last checkpoint the driver holds."""
        self.recorder.flush(row)
        with self.ctx.lock:
            self.recovery.recover_one(row)
        how = (f"continues from its checkpoint at epoch {row.epochs}" if row.state == TrialState.PAUSED
               else "is re-queued from scratch")
        self.progress.line(f"trial {row.number:>3}  {outcome.error}; it {how}")
        logger.warning("trial %s: %s", row.number, outcome.error)

    def best_record(self) -> TrialRecord | None:
        """The study's best trial (`Study.best`), from the mirror brought up to date and one trial read."""
        with self.ctx.lock:
            self.planner.refresh()
        best = self.study_best()
        if best is None:
            return None
        row = self.ctx.mirror.by_number[best[0]]
        (trial,) = read_trials(self.study.storage, self.study.study_id, include=[row.trial_id], after=None)
        return record_of(trial, list(self.study.space.names))

    # ------------------------------------------------------------------ the loop
    def check_artifacts(self) -> None:
        """Fail early, naming the folder, when the study's folder is another's or cannot be written."""
        study, folder = self.study, self.ctx.folder
        claim(folder, uid=str(study.uid), name=study.name, database=study.database)
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
            TrialError: The failure policy stopped the study.
            KeyboardInterrupt: Ctrl-C, after running trials paused.
        """
        with storage_faults(self.study.storage_url):
            self.check_artifacts()
            LIVE.add(self.owner)
            try:
                self._run()
            finally:
                LIVE.discard(self.owner)

    def _run(self) -> None:
        with self.ctx.lock:
            self.planner.refresh()  # reads every trial on the first call (the mirror starts empty), then what changed
            self.recovery.recover()
        self.recorder.set_study_attr(BUDGET, self.budget.as_dict())
        owned = isinstance(self.executor_spec, str)
        executor = (open_executor(self.executor_spec, self.n_workers, **self.executor_options) if owned
                    else self.executor_spec)
        self.executor = executor
        self.meter.use_clock(getattr(executor, "clock", None))
        ctrl_c = CtrlC(self.ctx, executor.pause, self.progress.line)
        self.progress.start()
        try:
            with ctrl_c, Heartbeat(self.ctx, self.recorder):
                self._fill(executor)
        finally:
            self._release(executor, owned)
        if self.policy.fatal is not None:
            raise self.policy.fatal
        self.progress.summary(paused=self.ctx.stop.is_set() and ctrl_c.interrupted,
                              nothing_left=self.started == 0 and self.planner.exhausted and not self.ctx.stop.is_set())
        if ctrl_c.interrupted:  # as Optuna does: the caller's script must not go on as if the study had finished
            raise KeyboardInterrupt

    def _fill(self, executor: Executor) -> None:
        """Submit planned units while slots are free; record what ends; until nothing is left to run."""
        spent_written = time.monotonic()
        while True:
            while executor.busy < executor.capacity:
                unit = self.planner.next_unit(getattr(executor, "populations", False))
                if unit is None:
                    break
                executor.submit(unit, self.study.trainer)
                self.started += len(works_of(unit))
            if executor.busy == 0:
                return
            if self.ctx.stop.is_set():  # Ctrl-C, or a study that must stop: running work pauses at its epoch end
                executor.pause()
            outcomes = executor.wait(self.on_epoch, timeout=WAIT_S)
            for outcome in outcomes:
                self.finish(outcome)
            if outcomes and time.monotonic() - spent_written >= self.recorder.flush_seconds:
                # at most one write every flush_seconds (a kill loses at most that much of the seconds count)
                self.recorder.set_study_attr(SECONDS_SPENT, round(self.meter.elapsed(), 3))
                spent_written = time.monotonic()

    def _release(self, executor: Executor, owned: bool) -> None:
        """After the loop, also after an exception: hand running trials to the next driver, record the seconds."""
        for tid in list(self.ctx.in_flight):  # an exception left these running: let the next driver recover them
            try:
                self.recorder.release(self.ctx.rows[tid])
            except Exception:
                continue
        if owned:
            executor.close()
        self.executor = None
        try:  # recorded when the database lets it be; a failing database must not hide the first error
            self.recorder.set_study_attr(SECONDS_SPENT, round(self.meter.elapsed(), 3))
        except Exception as err:
            logger.warning("could not record the study's seconds spent: %s", storage_fault(err, self.study.storage_url))
        self.meter.release_clock()
        self.progress.close_bar()
