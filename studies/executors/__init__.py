"""Executors: where the driver's units of work are trained.

`Executor` is the protocol the driver talks to; `LocalExecutor` (in the driver's process),
`ProcessExecutor` (a local process pool) and `RayExecutor` (a Ray cluster) implement it, each in
its own module, and all run `run_work` on their workers. `open_executor` makes one from
`Study.optimize`'s arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunelab.spaces import ConfigError
from tunelab.studies.executors.base import (
    EpochCallback,
    Executor,
    Flag,
    Outcome,
    Unit,
    Work,
    is_out_of_memory,
    resolve_routine,
    run_population,
    run_unit,
    run_work,
    works_of,
)
from tunelab.studies.executors.local import LocalExecutor
from tunelab.studies.executors.pool import ProcessExecutor, close_pools, die_with_parent, shared_pool
from tunelab.studies.executors.simulated import SimulatedExecutor
from tunelab.studies.executors.threads import check_threads, threads_per_worker

EXECUTORS = ("local", "ray", "simulated")


def open_executor(name: str, n_workers: int, *, ray_address: str | None = None,
                  resources: Mapping[str, float] | None = None, shared_artifacts: bool | None = None,
                  threads: int | None = None) -> Executor:
    """The executor `name`: "local", "ray" or "simulated".

    "local" runs in process for one worker and in a process pool for more (a shared one: its
    workers serve the next `optimize` call too, see `shared_pool`); "ray" on a Ray
    cluster; "simulated" on `n_workers` simulated workers with a simulated clock (for replayed
    trainers). `threads`: torch threads per local worker (None: chosen from the cores and the
    load, see `threads.threads_per_worker`); Ray actors get their `num_cpus`.

    Raises:
        ConfigError: An unknown name, Ray options without `executor="ray"`, `threads` with
            executor="ray", or a Ray problem (`RayExecutor` says which).
    """
    check_threads(threads)
    if name not in EXECUTORS:
        raise ConfigError(f"executor must be one of {EXECUTORS} or an Executor instance, got {name!r}")
    if name == "ray":
        from tunelab.studies.executors.ray_cluster import RayExecutor

        if threads is not None:
            raise ConfigError("threads= applies to trials trained on this machine; a Ray actor trains on as many "
                              "threads as its resources' num_cpus: pass resources={'num_cpus': N}")
        return RayExecutor(n_workers, address=ray_address, resources=resources, shared_artifacts=shared_artifacts)
    given = {k: v for k, v in (("ray_address", ray_address), ("resources", resources),
                               ("shared_artifacts", shared_artifacts)) if v is not None}
    if given:
        raise ConfigError(f"{', '.join(given)} apply to executor='ray' only, but executor={name!r}")
    if name == "simulated":
        return SimulatedExecutor(n_workers)
    return LocalExecutor(threads) if n_workers == 1 else shared_pool(n_workers, threads)


def __getattr__(name: str) -> Any:
    if name == "RayExecutor":  # imported on use: Ray is an optional dependency
        from tunelab.studies.executors.ray_cluster import RayExecutor

        return RayExecutor
    raise AttributeError(name)


__all__ = [
    "EXECUTORS",
    "EpochCallback",
    "Executor",
    "Flag",
    "LocalExecutor",
    "Outcome",
    "ProcessExecutor",
    "RayExecutor",
    "SimulatedExecutor",
    "Unit",
    "Work",
    "close_pools",
    "die_with_parent",
    "is_out_of_memory",
    "open_executor",
    "resolve_routine",
    "run_population",
    "run_unit",
    "run_work",
    "shared_pool",
    "threads_per_worker",
    "works_of",
]
