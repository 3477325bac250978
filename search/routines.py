"""Routines: the functions that turn one unit of work into a `TrainResult` (DESIGN section 4a).

`"train"` is `Trainer.fit`; the gradient-based strategies register their own loops (`"darts"`,
and later `"stn"`). Every executor looks a routine up by name in `routines` and calls it the
same way, so no executor branches on a routine's name, and a routine pauses, checkpoints and
resumes exactly like the standard loop.

A routine is called as::

    routine.run(trainer, config, until_epoch=..., checkpoint=..., report=..., seed=...,
                checkpoint_seconds=..., options={...})

with `Trainer.fit`'s contract: `report(EpochResult)` after every epoch returns continue / stop /
pause, `until_epoch` pauses after that epoch, the checkpoint file continues the run bit for bit
on the CPU, and the result is a `TrainResult` whose `attrs` hold what the routine learned.
`options` are the routine's own settings, JSON-ready and stored with the trial, so a resumed
trial runs with exactly the settings it started with; a routine checks them itself, because a
database is untrusted input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from spaces import ConfigError, Registry, Space
from trainers import Trainer, TrainResult

RunFn = Callable[..., TrainResult]


def _no_free(space: Space, options: Mapping[str, Any]) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class Routine:
    """A registered routine.

    Attributes:
        run: `run(trainer, config, *, until_epoch, checkpoint, report, seed, checkpoint_seconds,
            options) -> TrainResult` (see the module docstring).
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


def _train(
    trainer: Trainer,
    config: Mapping[str, Any],
    *,
    until_epoch: int | None = None,
    checkpoint: str | None = None,
    report: Callable[..., Any] | None = None,
    seed: int | None = None,
    checkpoint_seconds: float | None = None,
    options: Mapping[str, Any] | None = None,
) -> TrainResult:
    if options:
        raise ConfigError(f"the 'train' routine takes no options, got {dict(options)}")
    return trainer.fit(config, until_epoch=until_epoch, checkpoint=checkpoint, report=report, seed=seed,
                       checkpoint_seconds=checkpoint_seconds)


routines.register("train", Routine(_train, doc="Trainer.fit: the standard training loop"))


def is_comparable(routine: str | None) -> bool:
    """Whether trials of `routine` compete for the study's best (unknown names count as comparable)."""
    if routine is None or routine not in routines:
        return True
    return routines.get(routine).comparable


__all__ = ["Routine", "RunFn", "is_comparable", "routines"]
