"""Errors of the study layer (members of the `TunelabError` family)."""

from __future__ import annotations

from tunelab.spaces.errors import ConfigError, TunelabError


class StorageError(TunelabError):
    """A storage URL cannot be opened, or the database is not a tunelab/Optuna database."""


class StudyNotFoundError(TunelabError, LookupError):
    """`studies.load` (or the CLI) named a study that the storage does not hold."""


class StudyConflictError(TunelabError):
    """A study exists under this name with a different space, strategy or trainer."""


class ReadOnlyStudyError(TunelabError):
    """The study was opened read-only (`studies.load(..., read_only=True)`) and cannot train."""


class BudgetError(ConfigError):
    """A budget is missing, negative or not a number."""


class TrialError(TunelabError):
    """Every trial of a study failed the same way (a bug in user code, not a bad configuration)."""


class StudyLockedError(TunelabError):
    """Another driver held the study's lock for longer than `acquire` waits (`tunelab unlock` breaks it)."""


class StrategyError(TunelabError):
    """A strategy raised while choosing the next trial (a damaged stored history, or a bug in a custom strategy)."""


class TooFewTrialsError(TunelabError, ValueError):
    """A study has too few complete trials for what was asked (e.g. hyperparameter importance): run more trials."""
