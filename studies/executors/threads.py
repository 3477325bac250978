"""Torch threads for trials trained on this machine: a default that does not oversubscribe the cores.

PyTorch starts one intra-op thread per core it sees. A study that trains in its own process on
a machine that is already busy (a test suite, another study, a notebook) then runs up to 20
times slower than on one thread, because the threads wait on each other for cores (measured on
a 2-core machine: 7-20x). The rule here:

- `threads=` given to `Study.optimize`: that many torch threads per worker, always.
- Otherwise `OMP_NUM_THREADS`, when set, caps it (the environment's own choice), and each
  worker gets `cores // workers` threads, where `cores` counts the cores this process may use
  (its CPU affinity and, in a container, its cgroup CPU quota).
- When the machine is oversubscribed at the start (the one-minute load average is above the
  cores), every worker trains on 1 thread and a `BusyMachineWarning` says so, naming `threads=`.

The driver sets the count around the work it runs in its own process and restores the caller's
count afterwards; pool workers set it once when they start.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

from tunelab.spaces import ConfigError


class BusyMachineWarning(UserWarning):
    """Trials train on 1 torch thread because the machine was oversubscribed when the study started."""


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup (v2 or v1) CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def _cgroup_quota() -> float | None:
    """The cgroup's CPU quota in cores, or None where there is none (or it cannot be read)."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return quota / period
    except (OSError, ValueError):
        pass
    return None


def load_average() -> float | None:
    """The one-minute load average (None where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def check_threads(threads: int | None) -> None:
    """Refuse a `threads=` that is not None or an int >= 1.

    Raises:
        ConfigError: Any other value.
    """
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ConfigError(f"threads must be an int >= 1 (torch threads per worker) or None (chosen from the cores "
                          f"and the load), got {threads!r}")


def threads_per_worker(workers: int, threads: int | None = None, *, warn: bool = True) -> int:
    """Torch threads for each of `workers` workers on this machine (see the module docstring).

    Args:
        workers: Workers training at once on this machine.
        threads: The caller's choice (returned as is), or None to choose.
        warn: Warn when the machine is oversubscribed and 1 thread was chosen for that reason.

    Returns:
        The thread count, at least 1.
    """
    if threads is not None:
        return threads
    cores = usable_cores()
    chosen = max(1, cores // max(1, workers))
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) >= 1:
        chosen = min(chosen, int(env))
    load = load_average()
    if chosen > 1 and load is not None and load > cores:
        if warn:
            warnings.warn(
                f"this machine is busy (load average {load:.1f} on {cores} cores): trials train on 1 torch thread per "
                f"worker instead of {chosen}, since more threads than free cores run several times slower; pass "
                f"threads=N to optimize to choose", BusyMachineWarning, stacklevel=3)
        chosen = 1
    return chosen
