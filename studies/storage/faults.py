"""Database failures as `StorageError`s that name the database, the real cause and the fix.

SQLAlchemy wraps the driver's exception, and Optuna wraps SQLAlchemy's in a
`StorageInternalError` whose message ("exceeding max length") hides the cause. `storage_faults`
unwraps them to the driver's own message ("attempt to write a readonly database", "database is
locked", "disk I/O error") and adds what to do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tunelab.studies.errors import StorageError, TunelabError
from tunelab.studies.storage.connect import BUSY_TIMEOUT_S

_HINTS = (
    ("readonly", "the database file (or its folder: SQLite writes <db>-wal and <db>-shm beside it) is read-only; "
                 "make it writable, or read the study with studies.load(..., read_only=True) / tunelab show"),
    ("read-only", "the database is read-only; make it writable, or read the study with studies.load(..., "
                  "read_only=True) / tunelab show"),
    ("locked", f"another process held a write lock on the database longer than the {BUSY_TIMEOUT_S:.0f} s busy "
               f"timeout (a long transaction, or a process stopped while writing); close it and run again"),
    ("disk i/o", "the file system failed to read or write the database; check free space and the disk"),
    ("database or disk is full", "the disk is full; free space, then run again"),
    ("unable to open", "the database file or its folder cannot be opened; check that both exist and are "
                       "readable and writable"),
    ("malformed", "the database file is damaged; restore it from a copy"),
    ("connection", "the database server cannot be reached or closed the connection; check that it runs"),
)


def root_cause(err: BaseException) -> BaseException:
    """The database driver's own exception behind an SQLAlchemy or Optuna error (or `err` itself)."""
    seen: set[int] = set()
    cause: BaseException | None = err
    found = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        orig = getattr(cause, "orig", None)  # sqlalchemy.exc.DBAPIError wraps the driver's error
        if isinstance(orig, BaseException):
            return orig
        found = cause
        cause = cause.__cause__ or cause.__context__
    return found


def storage_fault(err: BaseException, url: str) -> StorageError:
    """A `StorageError` that names the database, the real cause and what to do about it."""
    cause = root_cause(err)
    text = f"{type(cause).__name__}: {cause}".strip()
    hint = next((h for key, h in _HINTS if key in text.lower()), "check the database and run again")
    return StorageError(f"the database {url!r} failed ({text[:300]}): {hint}. Nothing measured before this error is "
                        f"lost; run again to continue")


def is_storage_fault(err: BaseException) -> bool:
    """Whether `err` is a database failure (SQLAlchemy's, the driver's, or Optuna's storage error)."""
    import sqlite3

    import sqlalchemy
    from optuna.exceptions import StorageInternalError

    return isinstance(err, (sqlalchemy.exc.SQLAlchemyError, sqlite3.Error, StorageInternalError))


@contextlib.contextmanager
def storage_faults(url: str) -> Iterator[None]:
    """Inside, a database failure is raised as a `StorageError` naming `url` and its real cause."""
    try:
        yield
    except TunelabError:
        raise
    except Exception as err:
        if is_storage_fault(err):
            raise storage_fault(err, url) from err
        raise
