"""The settings of one `Study.optimize` call, checked before anything runs (typed errors naming the fix)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

from tunelab.spaces import ConfigError
from tunelab.studies.driver.budget import Budget
from tunelab.studies.driver.retention import KEEP
from tunelab.studies.errors import BudgetError
from tunelab.studies.executors import EXECUTORS, Executor
from tunelab.studies.executors.threads import check_threads


def portable(trainer: Any) -> None:
    """Refuse a trainer that workers (other processes, Ray actors) cannot receive, before anything starts.

    Raises:
        ConfigError: It cannot be pickled (a lambda or a local function as `fn`), or its function
            lives in an interactive session that workers cannot import.
    """
    import pickle
    import sys

    fn = getattr(trainer, "fn", None)
    if fn is not None and getattr(fn, "__module__", None) == "__main__" and not getattr(
            sys.modules.get("__main__"), "__file__", None):
        raise ConfigError(
            f"{trainer!r} runs a function defined in an interactive session, which worker processes cannot import; "
            f"put it in a module (or a script run with python), or train with n_workers=1")
    try:
        pickle.dumps(trainer)
    except Exception as err:
        raise ConfigError(f"{trainer!r} cannot be sent to worker processes ({type(err).__name__}: {err}); define "
                          f"its function at the top level of a module or script, or train with n_workers=1") from err


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def check_settings(*, budget: Budget, strategy: Any, trainer: Any, n_workers: int,
                   executor: str | Executor, ray_address: str | None, resources: Mapping[str, float] | None,
                   max_retries: int, population: int, max_failures: int, keep_checkpoints: str,
                   checkpoint_seconds: float | None, threads: int | None = None) -> dict[str, Any]:
    """Check `optimize`'s settings and warn about the ones that run but mislead; return the executor's options.

    Raises:
        ConfigError: A setting out of its range, or Ray options without `executor="ray"`.
        BudgetError: A budget that trains nothing.
    """
    if not _whole(n_workers, 1):
        raise ConfigError(f"n_workers must be an int >= 1, got {n_workers!r}")
    if isinstance(executor, str):
        if executor not in EXECUTORS:
            raise ConfigError(f"executor must be one of {EXECUTORS} or an Executor instance, got {executor!r}")
    elif not isinstance(executor, Executor):
        raise ConfigError(f"executor must be one of {EXECUTORS} or an Executor instance, got {executor!r}")
    elif n_workers not in (1, executor.capacity):
        raise ConfigError(f"n_workers={n_workers} but the executor given has {executor.capacity} worker slots; "
                          f"leave n_workers out when you pass an executor")
    options: dict[str, Any] = {}
    if ray_address is not None or resources is not None:
        if executor != "ray":
            raise ConfigError("ray_address and resources apply to executor='ray' only; with an executor instance, "
                              "give them to studies.RayExecutor(...)")
        options = {"ray_address": ray_address, "resources": resources}
    check_threads(threads)
    if threads is not None:
        if not isinstance(executor, str):
            raise ConfigError("threads= applies to the executor optimize opens; give it to the executor you made "
                              "(studies.ProcessExecutor(n, threads=...), studies.LocalExecutor(threads=...))")
        if executor == "ray":
            raise ConfigError("threads= applies to trials trained on this machine; a Ray actor trains on as many "
                              "threads as its resources' num_cpus: pass resources={'num_cpus': N}")
        options["threads"] = threads
    if not _whole(max_retries, 0):
        raise ConfigError(f"max_retries must be an int >= 0, got {max_retries!r}")
    if not _whole(population, 1):
        raise ConfigError(f"population must be an int >= 1 (trials of one architecture trained at once), got "
                          f"{population!r}")
    if population > 1 and not trainer.vectorises:
        raise ConfigError(
            f"population={population} trains several trials as one vectorised model of the shared trainer, on data "
            f"in memory with the task's own loss; {trainer!r} cannot be vectorised. Leave population out (or 1)")
    if n_workers > 1 or executor == "ray":
        portable(trainer)
    if population > 1 and not isinstance(executor, str) and not getattr(executor, "populations", False):
        warnings.warn(f"population={population} but {type(executor).__name__} trains one trial per unit of work: "
                      f"every trial trains on its own", stacklevel=3)
    if not _whole(max_failures, 1):
        raise ConfigError(f"max_failures must be an int >= 1, got {max_failures!r}")
    if keep_checkpoints not in KEEP:
        raise ConfigError(f"keep_checkpoints must be 'best', 'all' or 'none', got {keep_checkpoints!r}")
    if checkpoint_seconds is not None and not checkpoint_seconds >= 0:
        raise ConfigError(f"checkpoint_seconds must be >= 0 or None, got {checkpoint_seconds!r}")
    cores = os.cpu_count() or 1
    if n_workers > cores and executor == "local":
        warnings.warn(f"n_workers={n_workers} is more than this machine's {cores} cores: workers will compete for "
                      f"them and each trial will be slower; n_workers={cores} or fewer is usually faster",
                      stacklevel=3)
    if budget.unit == "trials" and getattr(strategy, "pauses_trials", False):
        warnings.warn(f"{type(strategy).__name__} pauses and resumes trials, so a budget in trials does not say how "
                      f"much it trains; give it epochs (e.g. epochs={(budget.trials or 1) * (trainer.epochs or 1)}) "
                      f"to compare it fairly with other strategies", stacklevel=3)
    if budget.empty:
        raise BudgetError(
            f"a budget of {budget.unit}=0 trains nothing: budgets are totals for the study (its finished trials "
            f"count), so give a positive one, e.g. optimize(trials=20); to read the best trial, use study.best")
    return options
