"""The study layer: storage, budgets, the driver loop, resume, reports and the CLI.

study = studies.create("mnist1d", "sqlite:///tunelab.db", space=..., trainer=..., strategy=...)
study.optimize(trials=40)          # a total for the study; rerun after a crash to finish it
study.best, study.trials, study.dataframe(), study.curves()
study = studies.load("mnist1d", "sqlite:///tunelab.db")
"""

from __future__ import annotations

from spaces.errors import (
    CheckpointError,
    ConfigError,
    SpaceError,
    TunelabError,
    UnknownNameError,
    WorkloadError,
)

__version__ = "0.2.0"

from studies.driver import Budget
from studies.errors import (
    BudgetError,
    StorageError,
    StudyConflictError,
    StudyNotFoundError,
    TrialError,
)
from studies.records import TrialRecord, TrialState
from studies.storage import DEFAULT_STORAGE, open_storage
from studies.study import Study, create, load, study_names

__all__ = [
    "DEFAULT_STORAGE",
    "Budget",
    "BudgetError",
    "CheckpointError",
    "ConfigError",
    "SpaceError",
    "StorageError",
    "Study",
    "StudyConflictError",
    "StudyNotFoundError",
    "TrialError",
    "TrialRecord",
    "TrialState",
    "TunelabError",
    "UnknownNameError",
    "WorkloadError",
    "__version__",
    "create",
    "load",
    "open_storage",
    "study_names",
]
