"""The exception family of tunelab.

Every error tunelab raises on purpose at its public boundary is a `TunelabError`. The family is
defined here, in the bottom layer, because `spaces` imports nothing of ours; `studies` re-exports
it as `studies.TunelabError`. Subclasses that concern a bad value also derive from `ValueError`
so that code written against the standard library keeps working.
"""

from __future__ import annotations


class TunelabError(Exception):
    """Base class of every error tunelab raises on purpose."""


class SpaceError(TunelabError, ValueError):
    """A search space is defined wrongly (bad bounds, clashing names, unknown entries)."""


class ConfigError(TunelabError, ValueError):
    """A configuration does not fit its space or cannot be built into a model or optimizer."""


class UnknownNameError(TunelabError, KeyError):
    """A registry was asked for a name it does not hold; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class WorkloadError(TunelabError, ValueError):
    """Data given to a workload is inconsistent (shapes, dtypes, sizes)."""


class CheckpointError(TunelabError):
    """A checkpoint cannot be read or does not belong to the run that tries to continue from it."""


class UntrustedImportError(TunelabError):
    """A database names code (a `module:attribute` import path) that the caller has not trusted.

    Attributes:
        path: The import path that was refused.
        what: What the database wanted to import it as (a workload factory, a strategy, ...).
    """

    def __init__(self, message: str, *, path: str = "", what: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.what = what
