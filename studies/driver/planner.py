"""The planner: what to train next, decided under the study lock, and grouped into populations.

Work comes, in order, from re-queued trials, trials paused by an interruption, and then the
strategy's request. Each decision is taken holding the study lock after re-reading what other
drivers changed, so several drivers of one study share its budget and never train one proposal
twice. A request the budget cannot pay for ends the planning (`exhausted`).

With `population=K`, "train" works that share an architecture (`trainers.population.architecture`:
the architecture identity `spaces.models.shape_identity` and the batch size) and have a
vectorised optimizer form one unit of work (`trainers.Population`). To fill such groups the
planner asks the strategy for more starts in a row, each created (recorded, in the strategy's
order) and claimed when asked, and holds them in per-architecture groups: it asks until a group
has K works, the strategy or the budget has nothing more, or `LOOKAHEAD` x K works are held,
then submits the fullest group (the oldest first among equals). One gathering is one hold of the
study lock. Held works are submitted before the strategy is asked again; a work that trains
alone is submitted at once. The planner never skips, re-asks or reorders proposals: every
proposal is recorded, in the strategy's order. A strategy that does not learn from results
(Random, Sobol, a queue) proposes the same trials as with `population=1`, which only changes the
order in which they start; an adaptive one proposes with the held trials pending in its history,
as with as many parallel workers. After a Ctrl-C the held trials still start, and pause after
their first epoch like every running trial.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

from tunelab.search import History, Request
from tunelab.spaces import ConfigError
from tunelab.studies.driver.budget import Meter
from tunelab.studies.driver.context import Context
from tunelab.studies.driver.mirror import Row, row_of
from tunelab.studies.driver.recorder import Recorder
from tunelab.studies.driver.recovery import Recovery
from tunelab.studies.driver.retention import Retention
from tunelab.studies.driver.views import history_of
from tunelab.studies.errors import StrategyError, TunelabError
from tunelab.studies.executors import Unit, Work
from tunelab.studies.records import TrialState
from tunelab.studies.storage.reader import read_trials
from tunelab.trainers.routines import routines

#: How many works, in units of the population size K, the planner may hold while it fills groups.
LOOKAHEAD = 2


class Planner:
    """Chooses and claims the next units of work for one driver.

    Args:
        ctx: The driver's shared state.
        meter: The budget's meter.
        recorder: Creates and claims trials.
        retention: Checkpoint paths (a resume needs its file).
        recovery: Recovers dead trials before each decision.
        population: Starts to gather into populations (1: none).
        checkpoint_seconds: How often a running trial checkpoints (sent with its work).
    """

    def __init__(self, ctx: Context, meter: Meter, recorder: Recorder, retention: Retention, recovery: Recovery, *,
                 population: int = 1, checkpoint_seconds: float | None = 30.0) -> None:
        self.ctx, self.meter, self.recorder = ctx, meter, recorder
        self.retention, self.recovery = retention, recovery
        self.population, self.checkpoint_seconds = population, checkpoint_seconds
        self.groups: dict[Any, list[Work]] = {}  # created works waiting for their population to fill
        self.alone: list[Work] = []  # created works that train alone, waiting for a free slot
        self.exhausted = False

    # ------------------------------------------------------------------ the mirror
    def take(self, trials: list[Any]) -> None:
        """Put the rows of stored `trials` (but those this driver is running) into the mirror.

        Raises:
            StorageError: A trial names a checkpoint outside the artifact folder (raised before
                any row is used).
        """
        rows = [row_of(t) for t in trials if t._trial_id not in self.ctx.in_flight]
        for row in rows:
            self.retention.path(row)
        for row in rows:
            self.ctx.mirror.put(row)

    def refresh(self) -> None:
        """Re-read what other drivers of the study changed: trials not finished in the mirror, and new ones.

        Called holding the study lock. Pending and paused trials change only under the lock, so
        when no other driver held it since this one last did, only the trials other drivers
        were running (and new ones: none then) can have changed, and only those are read.
        """
        ctx = self.ctx
        quiet = not ctx.lock.others_since()
        open_ids = {r.trial_id for r in ctx.mirror.unfinished() if r.trial_id not in ctx.in_flight
                    and not (quiet and (r.state != TrialState.RUNNING or r.owner == ctx.owner))}
        self.take(read_trials(ctx.storage, ctx.study.study_id, include=open_ids, after=ctx.mirror.last_id))

    def history(self) -> History:
        """What the strategy sees."""
        return history_of(self.ctx.study, self.ctx.mirror, self.ctx.sign)

    # ------------------------------------------------------------------ decisions
    def next_unit(self, populations: bool) -> Unit | None:
        """The next unit of work: one work, or up to `population` "train" works of one architecture."""
        if not populations or self.population <= 1:
            return self.next_work()
        unit = self.ready(final=False)
        if unit is not None or self.ctx.stop.is_set() or self.exhausted:
            return unit if unit is not None else self.ready(final=True)
        with self.ctx.lock:  # one hold for the whole gathering: each decision still sees every earlier one
            self.refresh()
            self.recovery.recover()
            while unit is None and sum(map(len, self.groups.values())) < LOOKAHEAD * self.population:
                work = None if self.exhausted or self.ctx.stop.is_set() else self._decide()
                if work is None:
                    break
                key = self.group_key(work)
                if key is None:
                    self.alone.append(work)
                else:
                    self.groups.setdefault(key, []).append(work)
                unit = self.ready(final=False)
        return unit if unit is not None else self.ready(final=True)

    def ready(self, *, final: bool) -> Unit | None:
        """A held unit to submit: a work that trains alone, a full group, or (`final`) the fullest group."""
        if self.alone:
            return self.alone.pop(0)
        if not self.groups:
            return None
        key = max(self.groups, key=lambda k: len(self.groups[k]))  # the first of the fullest: the oldest
        if not final and len(self.groups[key]) < self.population:
            return None
        group = self.groups[key]
        unit, rest = group[: self.population], group[self.population:]
        if rest:
            self.groups[key] = rest
        else:
            del self.groups[key]
        return tuple(unit) if len(unit) > 1 else unit[0]

    def group_key(self, work: Work) -> Any:
        """What works must share to train as one population, or None if `work` trains alone."""
        from tunelab.trainers.population import architecture, why_not_vectorised

        trainer = self.ctx.study.trainer
        if not trainer.vectorises or work.routine != "train" or why_not_vectorised(work.config) is not None:
            return None
        return architecture(work.config, trainer)

    def next_work(self) -> Work | None:
        """The next unit of work (re-queued trials, then interrupted ones, then the strategy's request)."""
        if self.ctx.stop.is_set() or self.exhausted:
            return None
        with self.ctx.lock:
            self.refresh()
            self.recovery.recover()
            return self._decide()

    def _decide(self) -> Work | None:
        for row in self.ctx.mirror.unfinished():
            if row.trial_id in self.ctx.in_flight:
                continue
            if row.state == TrialState.PENDING and not row.superseded:
                self.retention.remove(self.retention.path(row))  # a re-run starts from scratch
                return self.work(row, row.target)
            if row.state == TrialState.PAUSED and row.paused_by == "interrupt":
                return self.work(row, row.target)
        if not self.meter.fits(None, 0, new_trial=True):
            self.exhausted = True
            return None
        strategy = self.ctx.study.strategy
        for _ in range(len(self.ctx.rows) + 1):  # a resume of a trial whose checkpoint is gone is refused; ask again
            history = self.history()
            with strategy_faults(strategy):
                request = strategy.ask(history)
                keep = request.trial if request is not None and request.kind == "resume" else None
                retired = [n for n in strategy.retire(history) if n != keep]
            self.retire(retired)
            if request is None:
                return None
            if request.kind == "resume" and not self.resumable(request.trial):
                continue
            return self.from_request(request)
        return None

    def resumable(self, number: int | None) -> bool:
        """Whether paused trial `number` still has its checkpoint; if not, it is recorded failed."""
        row = self.ctx.row_of_number(number)
        if row is None or row.state != TrialState.PAUSED:
            return True  # from_request explains the mistake
        path = self.retention.path(row)
        if path is not None and path.exists():
            return True
        self.recorder.fail(row, f"its checkpoint {path} is missing, so it cannot be resumed")
        return False

    def retire(self, numbers: list[int]) -> None:
        """Prune paused trials the strategy will never resume, and delete their checkpoints."""
        for number in numbers:
            row = self.ctx.row_of_number(number)
            if row is None or row.state != TrialState.PAUSED or row.trial_id in self.ctx.in_flight:
                continue
            finite_curve = [v for v in row.curve if math.isfinite(v)]
            path = self.retention.path(row)
            self.recorder.prune(row, finite_curve[-1] if finite_curve else None, forget_checkpoint=path is not None)
            self.retention.remove(path)

    def from_request(self, request: Request) -> Work | None:
        """The work a strategy's request asks for (a new trial, claimed; or a paused one, extended).

        Raises:
            ConfigError: The request is impossible (resume a trial that is not paused, an unknown
                routine, options for "train", a warm start).
        """
        full = self.ctx.study.trainer.epochs
        if request.warm_start is not None:
            raise ConfigError(
                "Request.warm_start is not supported by the 'train' routine of this release; start from scratch "
                "(warm_start=None) or resume a paused trial with Request.resume"
            )
        if request.kind == "resume":
            row = self.ctx.row_of_number(request.trial)
            if row is None or row.state != TrialState.PAUSED:
                raise ConfigError(f"the strategy asked to resume trial {request.trial}, which is not paused")
            if row.routine != "train":  # a routine's run has its own length, fixed when it started
                full = row.target or full
            until = min(request.until_epoch or full, full)
            if until <= row.epochs:
                raise ConfigError(f"the strategy asked to resume trial {request.trial} until epoch {until}, but it "
                                  f"has trained {row.epochs} epochs already")
            if not self.meter.fits(row.config, until - row.epochs, new_trial=False):
                self.exhausted = True
                return None
            self.recorder.extend(row, until, request.attrs)
            return self.work(row, until)
        if request.routine not in routines:
            raise ConfigError(f"the strategy asked for the unknown routine {request.routine!r} (registered: "
                              f"{', '.join(routines.names())}); register it with search.routines.register(name, "
                              f"search.Routine(run))")
        routine = routines.get(request.routine)
        if request.routine == "train" and request.options:
            raise ConfigError(f"the 'train' routine takes no options, but the request gives {dict(request.options)}")
        config = self.validate(request.config or {}, routine.free(self.ctx.study.space, request.options))
        # a routine's run (a DARTS search) has its own length, not the trainer's
        epochs = min(request.epochs or full, full) if request.routine == "train" else request.epochs or full
        if not self.meter.fits(config, epochs, new_trial=True):
            self.exhausted = True
            return None
        row = self.recorder.create_trial(config, proposal=self.ctx.mirror.n_proposals(), target=epochs,
                                         attrs=request.attrs, state=TrialState.RUNNING, seed=request.seed,
                                         routine=request.routine, options=request.options)
        return self.work(row, epochs)

    def validate(self, config: Mapping[str, Any], free: tuple[str, ...]) -> dict[str, Any]:
        """The canonical form of a requested config; `free` parameters (chosen by the routine) are left out."""
        space = self.ctx.study.space
        if not free:
            return space.validate(config)
        given = [k for k in free if k in config]
        if given:
            raise ConfigError(f"the request sets {given}, which its routine chooses itself; leave them out")
        return {k: v for k, v in space.validate(space.complete(config)).items() if k not in free}

    def work(self, row: Row, until: int | None) -> Work:
        """Claim `row` and describe its unit of work."""
        self.recorder.claim(row)
        path = self.retention.path(row)
        return Work(
            trial_id=row.trial_id,
            number=row.number,
            config=dict(row.config),
            seed=self.ctx.study.trainer.seed if row.seed is None else row.seed,
            until_epoch=until,
            checkpoint=str(path) if path is not None else None,
            routine=row.routine,
            checkpoint_seconds=self.checkpoint_seconds,
            options=dict(row.options),
            keep_final=self.retention.final_policy(row),
        )


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
