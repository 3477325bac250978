"""The study layer: storage, budgets, the driver loop, resume, reports and the CLI.

study = studies.create("mnist1d", "sqlite:///tunelab.db", space=..., trainer=..., strategy=...)
study.optimize(trials=40)          # a total for the study; rerun after a crash to finish it
study.best, study.trials, study.dataframe(), study.curves()
study = studies.load("mnist1d", "sqlite:///tunelab.db")
comparison = studies.compare("mnist1d_mlp", optimizers=["sgd", "adamw", "sam"], budget=20)
comparison.table(), comparison.report("report/")
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from tunelab import __version__, lazy_name
from tunelab.spaces.errors import (
    CheckpointError,
    ConfigError,
    SpaceError,
    TunelabError,
    UnknownNameError,
    UntrustedImportError,
    WorkloadError,
)
from tunelab.studies.errors import (
    BudgetError,
    ReadOnlyStudyError,
    StorageError,
    StrategyError,
    StudyConflictError,
    StudyLockedError,
    StudyNotFoundError,
    TooFewTrialsError,
    TrialError,
)

if TYPE_CHECKING:  # the names below, for readers and type checkers; at run time each loads on first use
    from tunelab.studies.compare import Arm, Comparison, compare
    from tunelab.studies.compare.fronts import FrontComparison, compare_fronts
    from tunelab.studies.driver import Budget
    from tunelab.studies.executors import Executor, LocalExecutor, ProcessExecutor, open_executor
    from tunelab.studies.executors import close_pools as close_workers
    from tunelab.studies.executors.ray_cluster import RayExecutor
    from tunelab.studies.executors.threads import BusyMachineWarning
    from tunelab.studies.importance import Importance
    from tunelab.studies.opening import create, load, study_names
    from tunelab.studies.problems import Problem, problems
    from tunelab.studies.records import TrialRecord, TrialState
    from tunelab.studies.storage import DEFAULT_STORAGE, open_storage
    from tunelab.studies.study import Study
    from tunelab.studies.tables import to_table

# public name -> "submodule:name". Importing `tunelab.studies` loads none of them: the CLI's `--help` and `list`
# import only what they use, and torch loads with the first name that needs it. RayExecutor needs Ray, an
# optional dependency (pip install 'tunelab[ray]').
_WHERE: dict[str, str] = {
    "Arm": "compare:Arm",
    "Comparison": "compare:Comparison",
    "compare": "compare:compare",
    "compare_fronts": "compare.fronts:compare_fronts",
    "FrontComparison": "compare.fronts:FrontComparison",
    "Budget": "driver:Budget",
    "Executor": "executors:Executor",
    "LocalExecutor": "executors:LocalExecutor",
    "ProcessExecutor": "executors:ProcessExecutor",
    "open_executor": "executors:open_executor",
    "close_workers": "executors:close_pools",
    "RayExecutor": "executors.ray_cluster:RayExecutor",
    "BusyMachineWarning": "executors.threads:BusyMachineWarning",
    "Importance": "importance:Importance",
    "create": "opening:create",
    "load": "opening:load",
    "study_names": "opening:study_names",
    "Problem": "problems:Problem",
    "problems": "problems:problems",
    "TrialRecord": "records:TrialRecord",
    "TrialState": "records:TrialState",
    "DEFAULT_STORAGE": "storage:DEFAULT_STORAGE",
    "open_storage": "storage:open_storage",
    "Study": "study:Study",
    "to_table": "tables:to_table",
}


def __getattr__(name: str) -> Any:
    return lazy_name(globals(), _WHERE, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


class _Package(types.ModuleType):
    """This package's module type: `studies.compare` and `studies.problems` stay the function and the registry.

    Importing a submodule sets the package attribute of its name to the module; eagerly imported,
    the function of the same name was bound after it. Loaded lazily, the submodule may come later,
    so that binding is refused here and the name keeps its public meaning.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _WHERE.get(name, "").partition(":")[0] == name:
            return  # a function bound before stays; otherwise `__getattr__` loads it when it is asked for
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
    "FrontComparison",
    "Importance",
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
    "TooFewTrialsError",
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
    "compare_fronts",
    "create",
    "load",
    "open_executor",
    "open_storage",
    "problems",
    "study_names",
    "to_table",
]
