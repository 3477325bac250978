"""The local process pool: up to `n_workers` units of work at once in spawned processes on this machine."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import torch

from tunelab.studies.executors.base import EpochCallback, Flag, Outcome, Unit, resolve_routine, run_unit, works_of
from tunelab.studies.executors.threads import threads_per_worker
from tunelab.trainers import Trainer
from tunelab.trainers.routines import Routine

PARENT_POLL_S = 0.5
START_TIMEOUT_S = 120.0  # how long `check_start` waits for a first worker to answer
TRAINERS_KEPT = 4  # trainers a worker keeps unpickled (a comparison alternates between a few)

_WORKER: dict[str, Any] = {}
_IDLE: dict[tuple[int, int], list[ProcessExecutor]] = {}  # shared pools not in use, by (workers, threads)
_IDLE_LOCK = threading.Lock()


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


def _init_worker(events: Any, stop: Any, threads: int, parent: int | None = None) -> None:
    if parent is not None:
        die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides what Ctrl-C means
    torch.set_num_threads(threads)
    _WORKER.update(events=events, stop=stop, trainers={})


def _trainer(key: str, blob: bytes) -> Trainer:
    """The trainer `key`, unpickled from `blob` the first time this worker sees it."""
    cache: dict[str, Trainer] = _WORKER["trainers"]
    if key not in cache:
        if len(cache) >= TRAINERS_KEPT:
            cache.pop(next(iter(cache)))
        cache[key] = pickle.loads(blob)
    return cache[key]


def _worker_run(unit: Unit, key: str, blob: bytes, routine: Routine | None = None) -> list[Outcome]:
    events = _WORKER["events"]
    outcomes = run_unit(_trainer(key, blob), unit, lambda tid, e: events.put((tid, e)), _WORKER["stop"], routine)
    return [o.portable() for o in outcomes]


class ProcessExecutor:
    """Trains up to `n_workers` units of work at once in spawned worker processes on this machine.

    Each worker gets `threads` torch threads (default: `cores // n_workers`, 1 on a busy
    machine; see `threads.threads_per_worker`) so that workers do not oversubscribe the cores.
    A trainer is pickled once and unpickled once per worker. Epoch results come back
    through a queue; the driver alone writes the database. A worker that dies (killed, out of
    memory) breaks the pool: its units of work, and the others running then, come back `lost`
    and a fresh pool takes over.
    """

    populations = True

    def __init__(self, n_workers: int, threads: int | None = None) -> None:
        refuse_in_spawned_import()
        self.capacity = n_workers
        self._ctx = multiprocessing.get_context("spawn")
        self._events = self._ctx.Queue()
        self._stop_mp = self._ctx.Event()
        self._pause = Flag()
        self.threads = threads_per_worker(n_workers, threads)
        self._pool = self._new_pool()
        self._futures: dict[Future, Unit] = {}
        self._blobs: dict[int, tuple[Trainer, str, bytes]] = {}
        self._shared = False  # from `shared_pool`: `close` hands it back instead of stopping the workers

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.capacity,
            mp_context=self._ctx,
            initializer=_init_worker,
            initargs=(self._events, self._stop_mp, self.threads, os.getpid()),
        )

    def check_start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start a worker and wait until it answers, so a pool that cannot start fails before any trial exists.

        Raises:
            ConfigError: The workers died while starting; with the workers' own error when they
                said why (a script without `if __name__ == "__main__":`).
        """
        from tunelab.spaces import ConfigError

        report = start_error_file(os.getpid())
        report.unlink(missing_ok=True)
        try:
            self._pool.submit(_ping).result(timeout=timeout)
        except BrokenProcessPool as err:
            # wait for every worker to end first, so nothing a dying worker prints comes after the error
            self._pool.shutdown(wait=True, cancel_futures=True)
            said = report.read_text() if report.exists() else ""
            report.unlink(missing_ok=True)
            raise ConfigError(
                said or f"the worker processes of n_workers={self.capacity} died while starting ({err}), before "
                f"any trial; they import your main script: run it once with n_workers=1 to see its error"
            ) from None
        except TimeoutError:  # a slow machine: the pool is not known to be broken, so training goes ahead
            return

    @property
    def busy(self) -> int:
        """Units of work submitted and not yet returned."""
        return len(self._futures)

    def _blob(self, trainer: Trainer) -> tuple[str, bytes]:
        entry = self._blobs.get(id(trainer))
        if entry is None or entry[0] is not trainer:
            blob = pickle.dumps(trainer)
            # named by content: a pool serving another optimize call finds the trainer its workers unpickled,
            # unless it changed since (a trainer edited between calls is sent again)
            entry = (trainer, hashlib.blake2b(blob, digest_size=16).hexdigest(), blob)
            if len(self._blobs) >= TRAINERS_KEPT:  # a comparison moves on from study to study
                self._blobs.pop(next(iter(self._blobs)))
            self._blobs[id(trainer)] = entry
        return entry[1], entry[2]

    def submit(self, work: Unit, trainer: Trainer) -> None:
        """Start a unit of work (one work, or a population) on a free worker."""
        if not self._futures:
            self._pause.clear()
            self._stop_mp.clear()
        key, blob = self._blob(trainer)
        routine = resolve_routine(works_of(work)[0].routine)
        self._futures[self._pool.submit(_worker_run, work, key, blob, routine)] = work

    def pause(self) -> None:
        """Pause the running units of work at the end of their epoch (safe in a signal handler)."""
        self._pause.set()

    def _drain(self, on_epoch: EpochCallback, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                tid, epoch = self._events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            on_epoch(tid, epoch)

    def wait(self, on_epoch: EpochCallback, timeout: float | None = None) -> list[Outcome]:
        """Relay epoch results until a unit of work has ended (or `timeout` passed); return the ended ones."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._pause.is_set() and not self._stop_mp.is_set():
                self._stop_mp.set()
            self._drain(on_epoch, 0.05)
            done, _ = wait(list(self._futures), timeout=0.05, return_when=FIRST_COMPLETED)
            if not done:
                if deadline is not None and time.monotonic() >= deadline:
                    return []
                continue
            self._drain(on_epoch, 0.0)
            outcomes, broken = [], False
            for fut in done:
                unit = self._futures.pop(fut)
                try:
                    outcomes.extend(fut.result())
                except BrokenProcessPool as err:
                    broken = True
                    outcomes.extend(Outcome(w, error=f"worker process died: {err}", lost=True) for w in works_of(unit))
            if broken:  # every other unit of work of a broken pool is lost too; start a fresh pool
                for fut, unit in list(self._futures.items()):
                    outcomes.extend(Outcome(w, error="worker process died (the pool broke)", lost=True)
                                    for w in works_of(unit))
                    del self._futures[fut]
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
            return outcomes

    def close(self) -> None:
        """Stop the workers; a shared pool with nothing running goes back to be used by the next `optimize`."""
        if self._shared and not self._futures and not getattr(self._pool, "_broken", False):
            self._pause.clear()
            self._stop_mp.clear()
            self._blobs.clear()  # pickled again by the next call: its trainer may have changed in between
            with _IDLE_LOCK:
                _IDLE.setdefault((self.capacity, self.threads), []).append(self)
            return
        self.shutdown()

    def shutdown(self) -> None:
        """Stop the workers (also of a shared pool)."""
        self._shared = False
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._blobs.clear()


def _ping() -> int:
    return os.getpid()


def start_error_file(parent: int) -> Path:
    """Where a worker that cannot start leaves its reason for its driver (`parent`) to raise."""
    return Path(tempfile.gettempdir()) / f"tunelab-pool-start-{parent}.txt"


MAIN_GUARD = (
    "the study's worker processes cannot start: with n_workers > 1 the workers are spawned and import your main "
    "script, which starts the study again instead of waiting for work. Put the code that creates and runs the study "
    "under `if __name__ == \"__main__\":` (as Python's multiprocessing requires), then run the script again; "
    "nothing was trained and no budget was spent"
)


def refuse_in_spawned_import() -> None:
    """Refuse to run a study inside a worker process that is importing the user's script.

    A script without `if __name__ == "__main__":` runs its study again in every spawned worker.
    The worker says so to its driver (`start_error_file`), which raises the message in the
    user's process (`ProcessExecutor.check_start`), and stops here.

    Raises:
        ConfigError: In such a worker.
    """
    if not getattr(multiprocessing.current_process(), "_inheriting", False):
        return
    from tunelab.spaces import ConfigError

    with contextlib.suppress(OSError):
        start_error_file(os.getppid()).write_text(MAIN_GUARD)
    raise ConfigError(MAIN_GUARD)


def shared_pool(n_workers: int, threads: int | None = None) -> ProcessExecutor:
    """A process pool of `n_workers` whose workers outlive the `optimize` call that started them.

    Spawning workers costs seconds (each imports PyTorch and tunelab) and stopping them another
    one or two, on every `optimize` call and for every study of a comparison. A pool from here
    goes back to an idle list when its `optimize` ends (`close`) and the next call with as many
    workers takes it, trainers still unpickled in its workers. Idle pools stop when the
    interpreter exits, or on `close_pools()`. `threads` as in `ProcessExecutor` (a pool is
    shared only with calls that give its workers as many threads).
    """
    threads = threads_per_worker(n_workers, threads)
    with _IDLE_LOCK:
        pools = _IDLE.get((n_workers, threads), [])
        pool = pools.pop() if pools else None
    if pool is None:
        pool = ProcessExecutor(n_workers, threads)
        try:
            pool.check_start()
        except BaseException:
            pool.shutdown()
            raise
    pool._shared = True
    return pool


def close_pools() -> None:
    """Stop the workers of every idle shared pool (`studies.close_workers()`)."""
    with _IDLE_LOCK:
        pools = [p for ps in _IDLE.values() for p in ps]
        _IDLE.clear()
    for pool in pools:
        pool.shutdown()


atexit.register(close_pools)
