"""The executor protocol, and the one function every executor runs on its workers.

An executor trains units of work (`Work`) somewhere: in the driver's process
(`LocalExecutor`), in a local pool of processes (`ProcessExecutor`) or on a Ray cluster
(`RayExecutor`). Each of them runs `run_work`, which trains one unit of work with the routine
it names (`trainers.routines`: `"train"` is `Trainer.fit`, `"darts"` a DARTS search, ...) and
reports every epoch through `send`. Workers never touch the database: they send epoch results
and outcomes back, and the driver alone writes them.
"""

from __future__ import annotations

import math
import os
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from tunelab.spaces.errors import CheckpointError, UnknownNameError
from tunelab.trainers import EpochResult, Trainer, TrainResult
from tunelab.trainers.routines import Routine, RunRequest, routines


@dataclass(frozen=True)
class Work:
    """One unit of work: train trial `trial_id` (from its checkpoint if one exists) until `until_epoch`."""

    trial_id: int
    number: int
    config: dict[str, Any]
    seed: int
    until_epoch: int | None
    checkpoint: str | None
    routine: str = "train"
    checkpoint_seconds: float | None = 30.0
    options: dict[str, Any] = field(default_factory=dict)
    # the final checkpoint: written, not, or `(value, sign)`: only if the run ends better than `value` in the
    # study's direction (`sign * metric < sign * value`; sign -1 when the study maximizes)
    keep_final: bool | tuple[float, float] = True


@dataclass(frozen=True)
class Outcome:
    """How a unit of work ended: a `TrainResult`, or an error with its traceback."""

    work: Work
    result: TrainResult | None = None
    error: str | None = None
    traceback: str | None = None
    exception: BaseException | None = None
    restarted: str | None = None
    lost: bool = False
    device: str | None = None

    def portable(self) -> Outcome:
        """This outcome without its exception object (which may not pickle; its text and traceback do)."""
        if self.exception is None:
            return self
        return Outcome(self.work, self.result, self.error, self.traceback, restarted=self.restarted, lost=self.lost,
                       device=self.device)


EpochCallback = Callable[[int, EpochResult], None]
Unit = Work | tuple[Work, ...]
"""What `Executor.submit` takes: one unit of work, or several "train" works of one architecture (a population)."""


def works_of(unit: Unit) -> tuple[Work, ...]:
    """The works of a unit, in order."""
    return (unit,) if isinstance(unit, Work) else tuple(unit)


@runtime_checkable
class Executor(Protocol):
    """Where units of work run. The driver talks to executors through these members only.

    `capacity` is how many units of work may run at once and `busy` how many are submitted and
    not yet returned by `wait`. An executor may outlive one driver (`studies.compare` keeps one
    across all its studies): the trainer travels with each unit of work, and an executor sends
    each distinct trainer to its workers once.
    """

    capacity: int
    populations: bool  # whether `submit` takes a population (several works trained as one unit)

    @property
    def busy(self) -> int:
        """Units of work submitted and not yet returned by `wait`."""
        ...

    def submit(self, work: Unit, trainer: Trainer) -> None:
        """Start (or queue) a unit of work on `trainer`; the caller keeps `busy < capacity`.

        A tuple of works (only where `populations` is True) is one unit: its members train
        together (`run_unit`) and each comes back as its own `Outcome`.
        """
        ...

    def wait(self, on_epoch: EpochCallback, timeout: float | None = None) -> list[Outcome]:
        """Relay epoch results to `on_epoch(trial_id, epoch)` until a unit of work ends or `timeout` passes.

        Returns the units of work that ended (possibly none after `timeout`). A unit whose worker
        died (process killed, node lost) comes back with `lost=True` and no result.
        """
        ...

    def pause(self) -> None:
        """Ask every running unit of work to pause at the end of its epoch (it checkpoints and returns).

        Only sets a flag, so it is safe in a signal handler; calling it again is harmless. The
        next `submit` to an idle executor clears it.
        """
        ...

    def close(self) -> None:
        """Stop the workers and release what the executor holds."""
        ...


class Flag:
    """A pause flag that a signal handler may set: a plain attribute, no lock to deadlock on."""

    def __init__(self) -> None:
        self.value = False

    def set(self) -> None:
        """Raise the flag."""
        self.value = True

    def clear(self) -> None:
        """Lower the flag."""
        self.value = False

    def is_set(self) -> bool:
        """Whether the flag is raised."""
        return self.value


def is_out_of_memory(err: BaseException) -> bool:
    """Whether `err` is an out-of-memory error (torch's typed one, or a RuntimeError that says so)."""
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def resolve_routine(name: str) -> Routine | None:
    """The registered routine `name`, or None (then `run_work` records why it is unknown)."""
    try:
        return routines.get(name)
    except UnknownNameError:
        return None


def final_rule(keep: bool | tuple[float, float]) -> Callable[[EpochResult], bool] | None:
    """`Work.keep_final` as `RunRequest.keep_final`: None (always write), never, or "ends better than the best"."""
    if keep is True:
        return None
    if keep is False:
        return lambda epoch: False
    value, sign = float(keep[0]), float(keep[1])
    return lambda epoch: math.isfinite(epoch.val_metric) and sign * epoch.val_metric < sign * value


def run_work(trainer: Trainer, work: Work, send: Callable[[int, EpochResult], None], stop: Any,
             routine: Routine | None = None) -> Outcome:
    """Run `work`'s routine on `trainer`; `send(trial_id, epoch)` after every epoch; pause when `stop` is set.

    `routine` is the driver's lookup of `work.routine`, sent with the work so that a pool worker
    runs a routine its process has not imported (unpickling the function imports its module);
    None looks it up here.

    A checkpoint that cannot be read (corrupt, truncated, or another run's) is deleted and the
    run starts over from scratch with the same config and seed, as Ray Tune's `restart_errored`
    does, instead of failing the trial for good.
    """
    reported = []

    def report(epoch: EpochResult) -> str | None:
        reported.append(epoch.epoch)
        send(work.trial_id, epoch)
        return "pause" if stop.is_set() else None

    request = RunRequest(work.config, until_epoch=work.until_epoch, checkpoint=work.checkpoint, report=report,
                         seed=work.seed, checkpoint_seconds=work.checkpoint_seconds, options=work.options,
                         keep_final=final_rule(work.keep_final))

    def fit() -> TrainResult:
        return routine.run(trainer, request)

    restarted = None
    try:
        if routine is None:
            routine = routines.get(work.routine)
        try:
            result = fit()
        except CheckpointError as err:
            if reported or work.checkpoint is None or not os.path.exists(work.checkpoint):
                raise
            os.unlink(work.checkpoint)
            restarted = f"its checkpoint could not be read ({err}); the run started over from epoch 1"
            result = fit()
        return Outcome(work, result=result, restarted=restarted, device=str(trainer.device))
    except Exception as err:
        if is_out_of_memory(err):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            return Outcome(work, error=f"out of memory: {err}", traceback=traceback.format_exc(), restarted=restarted)
        return Outcome(work, error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(), exception=err,
                       restarted=restarted)




def run_population(trainer: Trainer, works: Sequence[Work], send: Callable[[int, EpochResult], None],
                   stop: Any) -> list[Outcome]:
    """Train "train" works of one architecture together (`trainers.Population`); one `Outcome` per member.

    A member checkpoint that cannot be read (or belongs to another run) makes every member run
    alone through `run_work`, which restarts that one run from scratch.
    """
    from tunelab.trainers.population import Member, Population

    def report(i: int, epoch: EpochResult) -> str | None:
        send(works[i].trial_id, epoch)
        return "pause" if stop.is_set() else None

    members = [Member(w.config, seed=w.seed, until_epoch=w.until_epoch, checkpoint=w.checkpoint,
                      keep_final=final_rule(w.keep_final)) for w in works]
    try:
        results = Population(trainer).fit(members, report=report, checkpoint_seconds=works[0].checkpoint_seconds)
    except CheckpointError:  # raised before anything trained: let each member recover on its own
        return [run_work(trainer, w, send, stop) for w in works]
    except Exception as err:
        error = f"out of memory: {err}" if is_out_of_memory(err) else f"{type(err).__name__}: {err}"
        text = traceback.format_exc()
        if is_out_of_memory(err) and torch.cuda.is_available():
            torch.cuda.empty_cache()
        return [Outcome(w, error=f"{error} (in a population of {len(works)})", traceback=text) for w in works]
    device = str(trainer.device)
    return [Outcome(w, result=r, device=device) for w, r in zip(works, results, strict=True)]


def run_unit(trainer: Trainer, unit: Unit, send: Callable[[int, EpochResult], None], stop: Any,
             routine: Routine | None = None) -> list[Outcome]:
    """Run a unit of work: one work through its routine, or a population; one `Outcome` per work."""
    works = works_of(unit)
    if len(works) == 1:
        return [run_work(trainer, works[0], send, stop, routine if routine is not None else
                         resolve_routine(works[0].routine))]
    return run_population(trainer, works, send, stop)
