"""A simulated clock: n asynchronous workers whose units of work take the seconds their epochs report.

With a replayed trainer (`trainers.Replay`) a unit of work is answered at once, but its
epochs report the seconds they took when they were recorded. `SimulatedExecutor` runs each
unit when it is submitted, then hands its epochs and its outcome back in the order a real
cluster of `n_workers` would: a unit submitted at simulated time `t` ends at `t` plus the sum
of its epochs' seconds, and `wait` advances the clock to the earliest end among the units in
flight. The driver reads `clock()` instead of the wall clock, so `seconds` budgets, progress
and every asynchronous decision (ASHA's promotions, a strategy's asks while others run) happen
as they would have in real time. This is the design of Syne Tune's simulator back-end (Salinas
et al. 2022, "Syne Tune: A Library for Large Scale Hyperparameter Tuning and Reproducible
Research", AutoML Conf), behind tunelab's executor protocol.

It works with a real `Trainer` too (training then runs in the driver's process, one unit at a
time, and the clock charges the measured seconds): a way to ask what n workers would have done.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from tunelab.spaces.errors import ConfigError
from tunelab.studies.executors.base import EpochCallback, Flag, Outcome, Unit, run_unit
from tunelab.trainers import EpochResult, Trainer


@dataclass(order=True)
class _Running:
    end: float
    seq: int
    epochs: list[tuple[float, int, EpochResult]] = field(compare=False)  # (simulated time, trial id, epoch)
    outcomes: list[Outcome] = field(compare=False)
    sent: int = field(default=0, compare=False)


class SimulatedExecutor:
    """`n_workers` simulated workers on a simulated clock (see the module docstring).

    Args:
        n_workers: Units of work in flight at once.

    Raises:
        ConfigError: `n_workers` is not a positive int.
    """

    populations = False

    def __init__(self, n_workers: int = 1) -> None:
        if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 1:
            raise ConfigError(f"n_workers must be a positive int, got {n_workers!r}")
        self.capacity = n_workers
        self.now = 0.0
        self._running: list[_Running] = []
        self._seq = 0
        self._pause = Flag()

    def clock(self) -> float:
        """Simulated seconds since the executor was made."""
        return self.now

    @property
    def busy(self) -> int:
        """Units of work in flight on the simulated clock."""
        return len(self._running)

    def submit(self, work: Unit, trainer: Trainer) -> None:
        """Run `work` now; its epochs and outcome come back from `wait` at their simulated times.

        Raises:
            ConfigError: Every simulated worker is busy (the caller must keep `busy < capacity`).
        """
        if len(self._running) >= self.capacity:
            raise ConfigError(f"all {self.capacity} simulated workers are busy; wait for one before submitting")
        if not self._running:
            self._pause.clear()
        epochs: list[tuple[float, int, EpochResult]] = []
        t = self.now

        def send(trial_id: int, epoch: EpochResult) -> None:
            nonlocal t
            t += max(0.0, epoch.seconds)
            epochs.append((t, trial_id, epoch))

        outcomes = run_unit(trainer, work, send, self._pause)
        self._seq += 1
        heapq.heappush(self._running, _Running(t, self._seq, epochs, outcomes))

    def wait(self, on_epoch: EpochCallback, timeout: float | None = None) -> list[Outcome]:
        """Advance the clock to the earliest end of a unit in flight; relay every epoch up to then, in time order.

        `timeout` does not apply (simulated time passes only here). Returns [] when nothing is in
        flight.
        """
        if not self._running:
            return []
        first = heapq.heappop(self._running)
        due = [(t, r.seq, i, trial_id, epoch) for r in (first, *self._running)
               for i, (t, trial_id, epoch) in enumerate(r.epochs[r.sent:], r.sent) if t <= first.end]
        for _, _, _, trial_id, epoch in sorted(due, key=lambda d: d[:3]):
            on_epoch(trial_id, epoch)
        for r in self._running:
            r.sent += sum(1 for t, _, _ in r.epochs[r.sent:] if t <= first.end)
        self.now = max(self.now, first.end)
        return first.outcomes

    def pause(self) -> None:
        """Pause units submitted from now on at their first epoch's end (units in flight have run already)."""
        self._pause.set()

    def close(self) -> None:
        """Forget the units in flight."""
        self._running.clear()
