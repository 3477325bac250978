"""Routines: the functions that turn one unit of work into a `TrainResult`.

`"train"` is `Trainer.fit`; the gradient-based strategies register their own loops (`"darts"`,
`"stn"`, `"schedule"`). Every executor looks a routine up by name in `routines` and calls it
with a `RunRequest`, so no executor branches on a routine's name, and a routine pauses,
checkpoints and resumes exactly like the standard loop.

A routine keeps `fit`'s contract: `report(EpochResult)` after every epoch returns continue /
stop / pause, `until_epoch` pauses after that epoch, the checkpoint file continues the run bit
for bit on the CPU, and the result is a `TrainResult` whose `attrs` hold what the routine
learned. `options` are the routine's own settings, JSON-ready and stored with the trial, so a
resumed trial runs with exactly the settings it started with; a routine checks them itself,
because a database is untrusted input.

Routines that train their own network epoch by epoch (DARTS, STN) share one skeleton,
`run_epochs`: they say how one epoch trains, how the network is validated, what a checkpoint
holds and what the run learned (`EpochRun`); the skeleton does the rest the same way for both
(reporting, pausing, stopping, checkpoints, divergence, the result).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tunelab.spaces import ConfigError, Registry, Space
from tunelab.trainers.checkpoint import run_rng, save_checkpoint
from tunelab.trainers.trainer import Decision, EpochResult, RunControl, TrainResult, best_metric


@dataclass(frozen=True)
class RunRequest:
    """One run of a routine: the configuration and how to run it (what `Trainer.fit` takes as keywords).

    Attributes:
        config: The configuration to train.
        until_epoch: Pause after this epoch (None: to the end of the run).
        checkpoint: The run's checkpoint file (continued from when it exists), or None.
        report: Called after every epoch with its `EpochResult`; returns continue / stop / pause.
        seed: The run's seed (None: the trainer's).
        checkpoint_seconds: Periodic checkpoints every this many seconds (None: every
            `checkpoint_every` epochs).
        options: The routine's own settings (JSON-ready; "train" takes none).
        keep_final: Whether a run that ends writes its final checkpoint, given its last epoch
            (None: always; see `trainers.run.RunControl`).
    """

    config: Mapping[str, Any]
    until_epoch: int | None = None
    checkpoint: str | os.PathLike[str] | None = None
    report: Callable[[EpochResult], Decision | None] | None = None
    seed: int | None = None
    checkpoint_seconds: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    keep_final: Callable[[EpochResult], bool] | None = None


RunFn = Callable[[Any, RunRequest], TrainResult]


def _no_free(space: Space, options: Mapping[str, Any]) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class Routine:
    """A registered routine.

    Attributes:
        run: `run(trainer, request) -> TrainResult` (see the module docstring).
        free: `free(space, options) -> names`: parameters of the space the routine chooses itself
            (DARTS the cell's operations, STN the hyperparameters it tunes). They are left out of
            the trial's config, which holds only what the run was given.
        comparable: Whether the trial's value is the study's validation metric of a network
            trained as an ordinary trial would be. Only comparable trials compete for
            `study.best`: a DARTS search reports its supernet's accuracy on half of the
            training split, which is not the same kind of number.
        doc: One line for listings.
    """

    run: RunFn
    free: Callable[[Space, Mapping[str, Any]], tuple[str, ...]] = _no_free
    comparable: bool = True
    doc: str = ""


routines: Registry[Routine] = Registry("routine")


@functools.lru_cache(maxsize=64)
def _takes_keep_final(kind: type) -> bool:
    """Whether a trainable class's `fit` accepts `keep_final` (added in 0.4.0; a trainable written before may not)."""
    try:
        params = inspect.signature(kind.fit).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "keep_final" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _train(trainer: Any, request: RunRequest) -> TrainResult:
    if request.options:
        raise ConfigError(f"the 'train' routine takes no options, got {dict(request.options)}")
    extra = {"keep_final": request.keep_final} if request.keep_final is not None and _takes_keep_final(
        type(trainer)) else {}  # a trainable without it writes its final checkpoint, which retention then removes
    return trainer.fit(request.config, until_epoch=request.until_epoch, checkpoint=request.checkpoint,
                       report=request.report, seed=request.seed, checkpoint_seconds=request.checkpoint_seconds,
                       **extra)


routines.register("train", Routine(_train, doc="Trainer.fit: the standard training loop"))


def is_comparable(routine: str | None) -> bool:
    """Whether trials of `routine` compete for the study's best (unknown names count as comparable)."""
    if routine is None or routine not in routines:
        return True
    return routines.get(routine).comparable


# ------------------------------------------------------------------------------------ the skeleton
class EpochRun(Protocol):
    """What a routine's run says about itself for `run_epochs`.

    Attributes:
        epoch: Epochs done (the skeleton advances it before each `train_epoch`).
        seed: The run's seed.
        grad_evals: Gradient evaluations so far.
        history: Its `EpochResult`s so far.
    """

    epoch: int
    seed: int
    grad_evals: int
    history: list[EpochResult]

    def train_epoch(self) -> tuple[float, float]:
        """Train epoch `epoch`: its steps, and what the routine records per epoch. Returns (train loss, lr)."""
        ...

    def validate(self) -> tuple[float, float]:
        """The network's (validation loss, validation metric) after the epoch."""
        ...

    def state(self) -> dict[str, Any]:
        """Everything a checkpoint holds to continue the run bit for bit."""
        ...

    def test(self) -> float | None:
        """The test metric of a complete run (None if the routine has none)."""
        ...

    def results(self) -> dict[str, Any]:
        """What the run learned (`TrainResult.attrs`)."""
        ...


@contextlib.contextmanager
def started(trainer: Any, request: RunRequest, total: int) -> Iterator[tuple[int, int, Path | None]]:
    """Inside the run's own random state: `(seed, until, checkpoint path)` of `request` for a run of `total` epochs.

    Raises:
        ConfigError: `until_epoch` < 1.
    """
    seed = trainer.seed if request.seed is None else int(request.seed)
    until = total if request.until_epoch is None else min(total, int(request.until_epoch))
    if until < 1:
        raise ConfigError(f"until_epoch must be >= 1, got {request.until_epoch!r}")
    path = Path(request.checkpoint) if request.checkpoint is not None else None
    with run_rng(trainer.device, seed):
        yield seed, until, path


def run_epochs(run: EpochRun, workload: Any, *, total: int, until: int, path: Path | None,
               request: RunRequest) -> TrainResult:
    """Train `run` epoch by epoch until `until` (of `total`), reporting, pausing and checkpointing like `fit`.

    An epoch whose training loss is not finite ends the run as "diverged" (its result keeps the
    epoch, with NaN validation values). A checkpoint that cannot be written is recorded in the
    result, and the run goes on.
    """
    control = RunControl(path, until, request.report, request.checkpoint_seconds, final=total,
                         keep_final=request.keep_final)
    status = None
    while run.epoch < until:
        t0 = time.perf_counter()
        run.epoch += 1
        train_loss, lr = run.train_epoch()
        if not math.isfinite(train_loss):
            run.history.append(EpochResult(run.epoch, train_loss, math.nan, math.nan, lr, time.perf_counter() - t0,
                                           run.grad_evals))
            status = "diverged"
            break
        val_loss, val_metric = run.validate()
        result = EpochResult(run.epoch, train_loss, val_loss, val_metric, lr, time.perf_counter() - t0,
                             run.grad_evals)
        run.history.append(result)
        status = control.after_epoch(result, lambda p: save_checkpoint(p, run.state()))
        if status is not None:
            break
    if status is None:
        status = "complete" if run.epoch >= total else "paused"
    return TrainResult(
        status=status,  # type: ignore[arg-type]
        epochs=list(run.history),
        val_metric=run.history[-1].val_metric if run.history else None,
        best_val_metric=best_metric(run.history, workload),
        test_metric=run.test() if status == "complete" else None,
        checkpoint=control.settle(status),  # type: ignore[arg-type]
        seed=run.seed,
        checkpoint_error=control.save_error,
        attrs=run.results(),
    )


__all__ = ["EpochRun", "Routine", "RunFn", "RunRequest", "is_comparable", "routines", "run_epochs", "started"]
