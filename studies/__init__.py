"""The study layer: storage, budgets, the driver loop, resume, reports and the CLI.

study = studies.create("mnist1d", "sqlite:///tunelab.db", space=..., trainer=..., strategy=...)
study.optimize(trials=40)          # a total for the study; rerun after a crash to finish it
study.best, study.trials, study.dataframe(), study.curves()
study = studies.load("mnist1d", "sqlite:///tunelab.db")
comparison = studies.compare("mnist1d_mlp", optimizers=["sgd", "adamw", "sam"], budget=20)
comparison.table(), comparison.report("report/")
"""

from __future__ import annotations

from tunelab import __version__
from tunelab.spaces.errors import (
    CheckpointError,
    ConfigError,
    SpaceError,
    TunelabError,
    UnknownNameError,
    UntrustedImportError,
    WorkloadError,
)
from tunelab.studies.compare import Arm, Comparison, compare
from tunelab.studies.driver import Budget
from tunelab.studies.errors import (
    BudgetError,
    ReadOnlyStudyError,
    StorageError,
    StrategyError,
    StudyConflictError,
    StudyLockedError,
    StudyNotFoundError,
    TrialError,
)
from tunelab.studies.executors import Executor, LocalExecutor, ProcessExecutor, open_executor
from tunelab.studies.executors import close_pools as close_workers
from tunelab.studies.executors.threads import BusyMachineWarning
from tunelab.studies.opening import create, load, study_names
from tunelab.studies.problems import Problem, problems
from tunelab.studies.records import TrialRecord, TrialState
from tunelab.studies.storage import DEFAULT_STORAGE, open_storage
from tunelab.studies.study import Study
from tunelab.studies.tables import to_table


def __getattr__(name: str) -> object:
    if name == "RayExecutor":  # imported on use: Ray is an optional dependency (pip install 'tunelab[ray]')
        from tunelab.studies.executors.ray_cluster import RayExecutor

        return RayExecutor
    raise AttributeError(f"module 'studies' has no attribute {name!r}")


__all__ = [
    "DEFAULT_STORAGE",
    "Arm",
    "Budget",
    "BudgetError",
    "BusyMachineWarning",
    "CheckpointError",
    "Comparison",
    "ConfigError",
    "Executor",
    "LocalExecutor",
    "Problem",
    "ProcessExecutor",
    "RayExecutor",
    "ReadOnlyStudyError",
    "SpaceError",
    "StorageError",
    "StrategyError",
    "Study",
    "StudyConflictError",
    "StudyLockedError",
    "StudyNotFoundError",
    "TrialError",
    "TrialRecord",
    "TrialState",
    "TunelabError",
    "UnknownNameError",
    "UntrustedImportError",
    "WorkloadError",
    "__version__",
    "close_workers",
    "compare",
    "create",
    "load",
    "open_executor",
    "open_storage",
    "problems",
    "study_names",
    "to_table",
]
