"""What one run reports and how it ends: `EpochResult`, `TrainResult`, and `RunControl`, which every loop shares.

`Trainer.fit`, `Replay.fit`, the gradient-based routines (`trainers.routines.run_epochs`) and
populations all report an `EpochResult` per epoch and return a `TrainResult`; `RunControl`
makes them report, pause, stop and checkpoint by the same rules.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunelab.trainers.workload import Workload

Decision = Literal["continue", "stop", "pause"]
Status = Literal["complete", "stopped", "paused", "diverged"]
DECISIONS = ("continue", "stop", "pause")


@dataclass(frozen=True)
class EpochResult:
    """What one epoch measured.

    Attributes:
        epoch: 1-based epoch number within the run.
        train_loss: Mean training loss over the epoch's steps (at the weights each step saw).
        val_loss: Validation loss after the epoch.
        val_metric: Validation metric after the epoch (`Workload.metric`).
        lr: Learning rate of the first parameter group at the end of the epoch.
        seconds: Wall time of the epoch (training and validation).
        grad_evals: Gradient evaluations of the run so far (steps x the optimizer's cost per step).
        extra: Every other named metric of the epoch (a workload's own metrics, what a
            `trainers.Function` reports, an `Objective`'s other results).
    """

    epoch: int
    train_loss: float
    val_loss: float
    val_metric: float
    lr: float
    seconds: float
    grad_evals: int
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    """The outcome of `Trainer.fit`.

    Attributes:
        status: "complete", "stopped" (report said stop), "paused" (report said pause, or
            `until_epoch` was reached) or "diverged" (non-finite training loss; the last entry of
            `epochs` is that epoch, with NaN validation values).
        epochs: Every epoch of the run so far, including those before a resumed checkpoint.
        val_metric: Validation metric of the last epoch (NaN if it diverged; None if no epoch ran).
        best_val_metric: Best finite validation metric over the epochs (None if none).
        test_metric: Test metric after the last epoch of a complete run, else None.
        checkpoint: Path of the run's checkpoint, or None.
        seed: The run's seed.
        checkpoint_error: Why the last checkpoint could not be written (a full disk, a read-only
            folder), or None. Training goes on without it: a result is never thrown away for a
            file, and `checkpoint` then names an older checkpoint or None.
        attrs: What a routine learned that is not a config value (DARTS alphas and genotype, an
            STN hyperparameter schedule), JSON-ready; studies store it as the trial's user
            attribute named after the routine. Empty for the standard loop (a replay answered
            by a nearest recorded configuration says so here: `{"replay": {"nearest": ...}}`).
        reason: Why a "diverged" run ended, in words, when it was not its training loss (a
            `Function` or `Objective` whose objective was not finite); None otherwise.
    """

    status: Status
    epochs: list[EpochResult] = field(default_factory=list)
    val_metric: float | None = None
    best_val_metric: float | None = None
    test_metric: float | None = None
    checkpoint: str | None = None
    seed: int = 0
    checkpoint_error: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None

    @property
    def grad_evals(self) -> int:
        """Gradient evaluations spent by the run."""
        return self.epochs[-1].grad_evals if self.epochs else 0

    @property
    def seconds(self) -> float:
        """Wall time of the run's epochs."""
        return sum(e.seconds for e in self.epochs)

    @property
    def curve(self) -> list[float]:
        """Validation metric per epoch."""
        return [e.val_metric for e in self.epochs]


@dataclass
class RunControl:
    """What every training loop does after an epoch: report it, obey the decision, checkpoint when due.

    `Trainer.fit` and the gradient-based strategies' routines share it, so they pause, stop and
    checkpoint by the same rules: a checkpoint is written on pause or stop, at `until`, and
    periodically (every `checkpoint_every` epochs, or every `checkpoint_seconds` of training);
    a checkpoint that cannot be written (full disk, read-only folder) is recorded in
    `save_error` and training goes on, since a measured result is never thrown away for a file.

    A run that ends (its last epoch `final`, or a "stop") writes its final checkpoint only when
    `keep_final` is None or says yes for its last epoch: a study writes the final weights of a
    trial only when they will be kept (`optimize(keep_checkpoints=...)`), and then removes an
    earlier periodic checkpoint of a run that ended without one (`settle`).

    Attributes:
        path: The run's checkpoint file, or None.
        until: The epoch at which the run pauses.
        report: The caller's callback (continue / stop / pause, or None).
        checkpoint_seconds: Periodic checkpoints by time instead of by epochs, if given.
        checkpoint_every: Periodic checkpoints every this many epochs.
        final: The run's last epoch (its full length), or None when unknown.
        keep_final: Whether an ending run's last epoch is worth a checkpoint (None: always).
        save_error: Why the last checkpoint could not be written, or None.
        dropped: The run ended without its final checkpoint (`keep_final` said no).
    """

    path: Path | None
    until: int
    report: Callable[[EpochResult], Decision | None] | None = None
    checkpoint_seconds: float | None = None
    checkpoint_every: int = 1
    final: int | None = None
    keep_final: Callable[[EpochResult], bool] | None = None
    save_error: str | None = None
    dropped: bool = False
    last_save: float = field(default_factory=time.perf_counter)

    def after_epoch(self, result: EpochResult, save: Callable[[Path], None]) -> Status | None:
        """Report `result`, checkpoint with `save(path)` when due; "stopped" or "paused" if the run must end.

        Raises:
            ValueError: `report` returned something other than continue / stop / pause.
        """
        decision = self.report(result) if self.report is not None else None
        decision = "continue" if decision is None else decision
        if decision not in DECISIONS:
            raise ValueError(f"report returned {decision!r}; it must return one of {DECISIONS} (or None)")
        if self.checkpoint_seconds is None:
            periodic = result.epoch % self.checkpoint_every == 0
        else:
            periodic = time.perf_counter() - self.last_save >= self.checkpoint_seconds
        # a pause always checkpoints (even at the last epoch: the trial is continued from it)
        ends = decision == "stop" or (decision == "continue" and self.final is not None and result.epoch >= self.final)
        if ends and self.keep_final is not None and not self.keep_final(result):
            self.dropped = True
            return {"stop": "stopped", "pause": "paused"}.get(decision)  # type: ignore[return-value]
        if self.path is not None and (decision != "continue" or result.epoch == self.until or periodic):
            try:
                save(self.path)
                self.save_error = None
            except OSError as err:  # the measured epochs are kept; the caller decides what a lost file means
                self.save_error = f"could not write the checkpoint {self.path}: {type(err).__name__}: {err}"
            self.last_save = time.perf_counter()
        return {"stop": "stopped", "pause": "paused"}.get(decision)  # type: ignore[return-value]

    def settle(self, status: Status) -> str | None:
        """Finish the run's file: an older checkpoint must not pass for a finished run's state. Returns its path."""
        if (self.save_error is not None or self.dropped) and status != "paused" and self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)
        return str(self.path) if self.path is not None and self.path.exists() else None


def best_metric(history: list[EpochResult], workload: Workload) -> float | None:
    """The best finite validation metric of a run's epochs (None if none is finite)."""
    best = None
    for e in history:
        if math.isfinite(e.val_metric) and (best is None or workload.better(e.val_metric, best)):
            best = e.val_metric
    return best


__all__ = ["DECISIONS", "Decision", "EpochResult", "RunControl", "Status", "TrainResult", "best_metric"]
