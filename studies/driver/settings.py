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


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def check_settings(*, budget: Budget, strategy: Any, epochs_per_trial: int | None, n_workers: int,
                   executor: str | Executor, ray_address: str | None, resources: Mapping[str, float] | None,
                   max_retries: int, population: int, max_failures: int, keep_checkpoints: str,
                   checkpoint_seconds: float | None) -> dict[str, Any]:
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
    if not _whole(max_retries, 0):
        raise ConfigError(f"max_retries must be an int >= 0, got {max_retries!r}")
    if not _whole(population, 1):
        raise ConfigError(f"population must be an int >= 1 (trials of one architecture trained at once), got "
                          f"{population!r}")
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
                      f"much it trains; give it epochs (e.g. epochs={(budget.trials or 1) * (epochs_per_trial or 1)}) "
                      f"to compare it fairly with other strategies", stacklevel=3)
    if budget.empty:
        raise BudgetError(
            f"a budget of {budget.unit}=0 trains nothing: budgets are totals for the study (its finished trials "
            f"count), so give a positive one, e.g. optimize(trials=20); to read the best trial, use study.best")
    return options
