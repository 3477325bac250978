"""The one place tunelab uses Optuna's private RDB storage API.

tunelab stores studies in Optuna's schema, so Optuna, optuna-dashboard and `optuna.load_study`
read them. Optuna's public storage API commits every value and attribute on its own, builds an
ORM object for every row it reads, and cannot delete a step or read a study in one query; the
study layer needs all of that to keep a trial's bookkeeping at a few statements (see
`writer` and `reader`). So it uses Optuna's table definitions (`optuna.storages._rdb.models`:
their tables for SQLAlchemy Core statements, their value encodings) and the storage's session
helper. Those are private: this module is the only one that touches them, `PRIVATE` lists every
symbol it needs, and `check_api()` (run when a storage is opened, and by
`tests/studies/test_storage_boundary.py`) says clearly which one moved when an Optuna release
changes them.

Tested with the Optuna versions in `TESTED`; `pyproject.toml` pins that range.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from tunelab.studies.errors import StorageError

TESTED = ("4.0", "5.0")  # the Optuna releases this module was tested with (first and last minor version)
MODELS = ("StudyModel", "StudyDirectionModel", "StudyUserAttributeModel", "StudySystemAttributeModel", "TrialModel",
          "TrialParamModel", "TrialValueModel", "TrialUserAttributeModel", "TrialSystemAttributeModel",
          "TrialIntermediateValueModel")
PRIVATE = {
    "optuna.storages._rdb.models": MODELS,
    "optuna.storages._rdb.storage": ("_create_scoped_session", "RDBStorage"),
}


def check_api() -> None:
    """Check that every private Optuna symbol tunelab uses is where this module expects it.

    Raises:
        StorageError: A symbol moved; the message names it, the installed Optuna and the tested
            versions, and the fix (install a tested Optuna).
    """
    import importlib

    import optuna

    missing = []
    for module, names in PRIVATE.items():
        try:
            found = importlib.import_module(module)
        except ImportError:
            missing.append(module)
            continue
        missing += [f"{module}.{n}" for n in names if not hasattr(found, n)]
    if missing:
        raise StorageError(
            f"tunelab uses private parts of Optuna's RDB storage that optuna {optuna.__version__} does not have: "
            f"{', '.join(missing)}. tunelab {_version()} was tested with optuna {TESTED[0]} to {TESTED[1]}: "
            f"install one of them (pip install 'optuna>={TESTED[0]},<{_next(TESTED[1])}')")


def _version() -> str:
    from tunelab import __version__

    return __version__


def _next(version: str) -> str:
    major, minor = version.split(".")[:2]
    return f"{major}.{int(minor) + 1}"


@functools.cache
def models() -> SimpleNamespace:
    """Optuna's ORM model classes, by name (`models().TrialModel`)."""
    check_api()
    from optuna.storages._rdb import models as m

    return SimpleNamespace(**{name: getattr(m, name) for name in MODELS})


@functools.cache
def tables() -> SimpleNamespace:
    """Optuna's tables as SQLAlchemy `Table`s for Core statements: `tables().trials`, `tables().trial_params`, ..."""
    m = models()
    return SimpleNamespace(
        studies=m.StudyModel.__table__,
        study_directions=m.StudyDirectionModel.__table__,
        study_user_attributes=m.StudyUserAttributeModel.__table__,
        study_system_attributes=m.StudySystemAttributeModel.__table__,
        trials=m.TrialModel.__table__,
        trial_params=m.TrialParamModel.__table__,
        trial_values=m.TrialValueModel.__table__,
        trial_user_attributes=m.TrialUserAttributeModel.__table__,
        trial_system_attributes=m.TrialSystemAttributeModel.__table__,
        trial_intermediate_values=m.TrialIntermediateValueModel.__table__,
    )


def has_tables(storage: Any) -> bool:
    """Whether `storage` is an RDB storage whose tables tunelab can read and write directly.

    Other storages (Optuna's in-memory or journal storage) go through Optuna's public API:
    the same results, one commit per item.
    """
    return hasattr(storage, "engine") and hasattr(storage, "scoped_session")


@contextlib.contextmanager
def session(storage: Any, *, ignore_integrity_error: bool = False) -> Iterator[Any]:
    """An ORM session of `storage` that commits at the end (Optuna's own scoped session helper)."""
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(storage.scoped_session, ignore_integrity_error) as s:
        yield s


def value_from_stored(value: Any, kind: Any) -> float:
    """A trial value as Optuna stores it (value and type columns) back to a float."""
    return models().TrialValueModel.stored_repr_to_value(value, kind)


def step_from_stored(value: Any, kind: Any) -> float:
    """An intermediate value as Optuna stores it back to a float."""
    return models().TrialIntermediateValueModel.stored_repr_to_intermediate_value(value, kind)


def value_to_stored(value: float) -> tuple[Any, Any]:
    """A trial value as Optuna stores it: (value, type)."""
    return models().TrialValueModel.value_to_stored_repr(float(value))


def step_to_stored(value: float) -> tuple[Any, Any]:
    """An intermediate value as Optuna stores it: (value, type)."""
    return models().TrialIntermediateValueModel.intermediate_value_to_stored_repr(float(value))
