"""Opening a study database: Optuna's RDB schema through SQLAlchemy, SQLite in WAL mode.

Any SQLAlchemy URL works; SQLite (the default, `sqlite:///tunelab.db`) is opened with a busy
timeout and in write-ahead-log mode, so a dashboard or `tunelab show` can read while a study
writes. Checkpoints live in an `optuna.artifacts.FileSystemArtifactStore` beside the database:
`tunelab.db` keeps them in `tunelab.artifacts/`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from tunelab.studies.errors import StorageError

DEFAULT_STORAGE = "sqlite:///tunelab.db"
BUSY_TIMEOUT_S = 30.0
_TEMP_DIRS: list[tempfile.TemporaryDirectory] = []


def sqlite_path(url: str) -> Path | None:
    """The database file of an SQLite URL (None for other databases or in-memory SQLite)."""
    if not url.startswith("sqlite:"):
        return None
    rest = url.split(":///", 1)[1] if ":///" in url else ""
    rest = rest.split("?", 1)[0]
    if rest in ("", ":memory:"):
        return None
    return Path(rest)


def open_storage(url: str, *, create: bool = True) -> Any:
    """Open (creating if needed) the Optuna RDB storage at `url`.

    Args:
        url: An SQLAlchemy URL, e.g. `sqlite:///tunelab.db` or `postgresql://user@host/db`.
        create: Create a missing SQLite file. Readers (`studies.load`, `tunelab list/show`)
            pass False, so a mistyped path is an error instead of a new empty database.

    Returns:
        An `optuna.storages.RDBStorage`.

    Raises:
        StorageError: The URL is malformed, its driver is missing, or the database cannot be opened.
    """
    import optuna
    import sqlalchemy

    if not isinstance(url, str) or "://" not in url:
        raise StorageError(
            f"storage must be an SQLAlchemy URL such as 'sqlite:///tunelab.db', got {url!r}"
        )
    path = sqlite_path(url)
    if path is not None and not path.parent.exists():
        raise StorageError(
            f"cannot open storage {url!r}: the folder {str(path.parent)!r} does not exist; create it or "
            f"point the URL at an existing folder (sqlite:///relative/path.db or sqlite:////absolute/path.db)"
        )
    if path is not None and not create and not path.exists():
        raise StorageError(
            f"no database at {str(path)!r} (from {url!r}); check the path (sqlite:///relative/path.db is relative to "
            f"the working directory {str(Path.cwd())!r}, sqlite:////absolute/path.db is absolute)"
        )
    if path is not None and path.exists():
        _check_sqlite_file(path, url)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_S}
    for attempt in range(SCHEMA_RACE_RETRIES + 1):
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
            break
        except Exception as err:  # SQLAlchemy, driver import and schema errors all mean "cannot open"
            if attempt < SCHEMA_RACE_RETRIES and _schema_race(err):
                # another process created the schema while this one did: its tables are there now
                time.sleep(0.05 * (attempt + 1))
                continue
            raise StorageError(
                f"cannot open storage {url!r}: {type(err).__name__}: {err}. Check the URL, that its database "
                f"driver is installed and that the database is reachable (the default is {DEFAULT_STORAGE!r})"
            ) from err
    if path is not None:
        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
            cur.execute("PRAGMA synchronous=NORMAL")  # safe against process crashes in WAL mode
            cur.close()

        sqlalchemy.event.listen(storage.engine, "connect", _pragmas)
        storage.engine.dispose()  # connections made during set-up reconnect with the pragmas
    return storage


SCHEMA_RACE_RETRIES = 5


def _schema_race(err: BaseException) -> bool:
    """Whether opening failed because another process was creating the same new database's schema."""
    text = str(err).lower()
    return "already exists" in text or ("unique constraint" in text and "version_info" in text)


def _check_sqlite_file(path: Path, url: str) -> None:
    """Refuse an existing SQLite file of another application (Optuna would add its tables to it)."""
    import sqlite3

    if path.stat().st_size == 0:
        return
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as err:
        raise StorageError(f"{str(path)!r} (from {url!r}) is not an SQLite database ({err}); point the storage at a "
                           f"tunelab database or a new file") from err
    if tables and not {"studies", "version_info"} <= tables:
        shown = ", ".join(sorted(tables)[:6])
        raise StorageError(
            f"{str(path)!r} is the SQLite database of another application (tables: {shown}); tunelab would add "
            f"Optuna's tables to it. Keep studies in a file of their own, e.g. sqlite:///tunelab.db"
        )


def artifact_dir(url: str, artifacts: str | Path | None = None, *, create: bool = True) -> Path:
    """Where checkpoints of the studies in `url` live.

    `sqlite:///path/tunelab.db` -> `path/tunelab.artifacts`; other databases need `artifacts=`
    (default `./tunelab.artifacts`); in-memory SQLite uses a temporary folder.
    """
    if artifacts is not None:
        out = Path(artifacts)
    else:
        path = sqlite_path(url)
        if path is not None:
            out = path.with_name(path.stem + ".artifacts")
        elif url.startswith("sqlite"):
            tmp = tempfile.TemporaryDirectory(prefix="tunelab-artifacts-")
            _TEMP_DIRS.append(tmp)
            out = Path(tmp.name)
        else:
            out = Path("tunelab.artifacts")
    if artifacts is None and out.is_symlink():
        raise StorageError(
            f"the artifact folder {str(out)!r} beside the database is a symbolic link (to {str(out.resolve())!r}); "
            f"tunelab writes checkpoints only inside a folder the caller chose, so pass it yourself: "
            f"artifacts={str(out.resolve())!r}")
    if create:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(f"cannot use {str(out)!r} as the artifact folder ({type(err).__name__}: {err}); "
                               f"remove what is in the way, or open the study with artifacts='another/folder'") from err
    return out

