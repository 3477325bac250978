"""Where trials are trained: in the driver's process, or in a local pool of worker processes.

Both executors run the same function, `run_work`, which trains one unit of work with the
routine it names (`search.routines`: `"train"` is `Trainer.fit`, `"darts"` a DARTS search, ...)
and reports every epoch through `send`. Workers never touch the database: in the
pool they put epoch results on a queue and return the final `TrainResult`; the driver writes.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import torch

from search.routines import Routine, routines
from spaces.errors import CheckpointError, UnknownNameError
from trainers import EpochResult, Trainer, TrainResult


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


@dataclass(frozen=True)
class Outcome:
    """How a unit of work ended: a `TrainResult`, or an error with its traceback."""

    work: Work
    result: TrainResult | None = None
    error: str | None = None
    traceback: str | None = None
    exception: BaseException | None = None
    restarted: str | None = None


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

    def fit() -> TrainResult:
        return routine.run(
            trainer,
            work.config,
            until_epoch=work.until_epoch,
            checkpoint=work.checkpoint,
            report=report,
            seed=work.seed,
            checkpoint_seconds=work.checkpoint_seconds,
            options=work.options,
        )

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
        return Outcome(work, result=result, restarted=restarted)
    except Exception as err:
        if is_out_of_memory(err):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            return Outcome(work, error=f"out of memory: {err}", traceback=traceback.format_exc(), restarted=restarted)
        return Outcome(work, error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(), exception=err,
                       restarted=restarted)


class LocalExecutor:
    """Trains one trial at a time in the driver's process."""

    def __init__(self, trainer: Trainer, stop: threading.Event) -> None:
        self.trainer, self.stop = trainer, stop
        self.capacity = 1
        self._queue: list[Work] = []

    @property
    def busy(self) -> int:
        """Units of work submitted and not yet returned."""
        return len(self._queue)

    def submit(self, work: Work) -> None:
        """Queue `work`; it runs in the next `wait`."""
        self._queue.append(work)

    def wait(self, on_epoch: Callable[[int, EpochResult], None]) -> list[Outcome]:
        """Run the next unit of work to its end."""
        work = self._queue.pop(0)
        return [run_work(self.trainer, work, on_epoch, self.stop, resolve_routine(work.routine))]

    def close(self) -> None:
        """Nothing to release."""


# --------------------------------------------------------------------- process pool
_WORKER: dict[str, Any] = {}


PARENT_POLL_S = 0.5


def die_with_parent(parent: int) -> None:
    """End this worker process as soon as its driver (`parent`) is gone, without writing anything.

    On Linux the kernel delivers SIGKILL when the parent dies (`prctl(PR_SET_PDEATHSIG)`); everywhere
    a daemon thread also polls the parent id every `PARENT_POLL_S` seconds and leaves with
    `os._exit`, so an orphaned worker never trains on, writes a checkpoint, or holds the driver's
    output open.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):  # no libc symbol: the watcher thread below still covers it
            pass
    if os.getppid() != parent:  # the driver died before the request above took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="tunelab-parent-watch", daemon=True).start()


def _init_worker(trainer: Trainer, events: Any, stop: Any, threads: int, parent: int | None = None) -> None:
    if parent is not None:
        die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides what Ctrl-C means
    torch.set_num_threads(threads)
    _WORKER.update(trainer=trainer, events=events, stop=stop)


def _worker_run(work: Work, routine: Routine | None = None) -> Outcome:
    events = _WORKER["events"]
    outcome = run_work(_WORKER["trainer"], work, lambda tid, e: events.put((tid, e)), _WORKER["stop"], routine)
    if outcome.exception is not None:  # exceptions may not pickle; their text and traceback do
        outcome = Outcome(outcome.work, outcome.result, outcome.error, outcome.traceback, restarted=outcome.restarted)
    return outcome


class ProcessExecutor:
    """Trains up to `n_workers` trials at once in spawned worker processes on this machine.

    Each worker gets `cpu_count // n_workers` torch threads so that workers do not oversubscribe
    the cores. Epoch results come back through a queue; the driver alone writes the database.
    """

    def __init__(self, trainer: Trainer, n_workers: int, stop: threading.Event) -> None:
        self.trainer, self.capacity = trainer, n_workers
        self._ctx = multiprocessing.get_context("spawn")
        self._events = self._ctx.Queue()
        self._stop_mp = self._ctx.Event()
        self._stop_local = stop
        self._threads = max(1, (os.cpu_count() or 1) // n_workers)
        self._pool = self._new_pool()
        self._futures: dict[Future, Work] = {}

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.capacity,
            mp_context=self._ctx,
            initializer=_init_worker,
            initargs=(self.trainer, self._events, self._stop_mp, self._threads, os.getpid()),
        )

    @property
    def busy(self) -> int:
        """Units of work submitted and not yet returned."""
        return len(self._futures)

    def submit(self, work: Work) -> None:
        """Start `work` on a free worker."""
        self._futures[self._pool.submit(_worker_run, work, resolve_routine(work.routine))] = work

    def _drain(self, on_epoch: Callable[[int, EpochResult], None], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                tid, epoch = self._events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            on_epoch(tid, epoch)

    def wait(self, on_epoch: Callable[[int, EpochResult], None]) -> list[Outcome]:
        """Relay epoch results until at least one unit of work has ended; return the ended ones."""
        while True:
            if self._stop_local.is_set():
                self._stop_mp.set()
            self._drain(on_epoch, 0.05)
            done, _ = wait(list(self._futures), timeout=0.05, return_when=FIRST_COMPLETED)
            if not done:
                continue
            self._drain(on_epoch, 0.0)
            outcomes, broken = [], False
            for fut in done:
                work = self._futures.pop(fut)
                try:
                    outcomes.append(fut.result())
                except BrokenProcessPool as err:
                    broken = True
                    outcomes.append(Outcome(work, error=f"worker process died: {err}"))
            if broken:  # every other unit of work of a broken pool is lost too; start a fresh pool
                for fut, work in list(self._futures.items()):
                    outcomes.append(Outcome(work, error="worker process died (the pool broke)"))
                    del self._futures[fut]
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
            return outcomes

    def close(self) -> None:
        """Stop the workers."""
        self._pool.shutdown(wait=True, cancel_futures=True)
