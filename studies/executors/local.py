"""The in-process executor: one unit of work at a time, in the driver's own process."""

from __future__ import annotations

import torch

from tunelab.studies.executors.base import EpochCallback, Flag, Outcome, Unit, run_unit
from tunelab.studies.executors.threads import threads_per_worker
from tunelab.trainers import Trainer


class LocalExecutor:
    """Trains one unit of work at a time in the driver's process (`n_workers=1`).

    Args:
        threads: Torch threads while a unit of work runs (None: chosen from the cores and the
            load, `threads.threads_per_worker`); the caller's own count is restored after each.
    """

    populations = True

    def __init__(self, threads: int | None = None) -> None:
        self.capacity = 1
        self.threads = threads_per_worker(1, threads)
        self._queue: list[tuple[Unit, Trainer]] = []
        self._pause = Flag()

    @property
    def busy(self) -> int:
        """Units of work submitted and not yet returned."""
        return len(self._queue)

    def submit(self, work: Unit, trainer: Trainer) -> None:
        """Queue a unit of work; it runs in the next `wait`."""
        if not self._queue:
            self._pause.clear()
        self._queue.append((work, trainer))

    def wait(self, on_epoch: EpochCallback, timeout: float | None = None) -> list[Outcome]:
        """Run the next unit of work to its end (`timeout` does not apply: the work runs here)."""
        work, trainer = self._queue.pop(0)
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return run_unit(trainer, work, on_epoch, self._pause)
        finally:
            torch.set_num_threads(before)

    def pause(self) -> None:
        """Pause the running unit of work at the end of its epoch (safe in a signal handler)."""
        self._pause.set()

    def close(self) -> None:
        """Nothing to release."""
