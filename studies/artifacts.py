"""Where a study's checkpoints live, and the marker that says whose they are.

Every study has its own folder under the artifact root (`<db>.artifacts/` beside an SQLite
file, `artifacts=` or `./tunelab.artifacts` for a server database): `<name>-<uid12>/`, named
after the study and its identity, a UUID stored in the database when the study is created
(`tunelab:uid`). The folder holds a marker, `tunelab-study.json`, with that identity and the
database it belongs to. Two studies therefore never share a folder, and tunelab deletes a
checkpoint only while the marker of the study's folder names this study and this database:

- two databases in one folder (`exp.db` and `exp.sqlite` both use `exp.artifacts`) keep their
  studies apart, because their identities differ;
- a copy of a database (`cp exp.db exp.bak`) has the same identities, so its studies find a
  marker naming the other database; while that database still exists, opening the copy for
  training is refused with a `StorageError` that names both (a moved database, whose old
  file is gone, takes its folder over);
- studies written by tunelab 0.3.0 get their identity (and folder) the first time they are
  opened for training; their earlier checkpoints stay where 0.3.0 wrote them, in the root,
  under the names their trials store (`tunelab-trial-<id>.pt`).

Checkpoints are written atomically through a temporary file named after the writing host and
process; `sweep` removes the ones a killed process left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from tunelab.studies.errors import StorageError
from tunelab.studies.records import CHECKPOINT

MARKER = "tunelab-study.json"
UID_PATTERN = re.compile(r"[0-9a-f]{32}")
STALE_TMP_S = 3600.0  # a temporary checkpoint file this old is left over whoever wrote it
_MARKER_BYTES = 65_536


def safe_name(name: str) -> str:
    """A study name as one file name: `../../x` -> `_.._x` (no separators, no leading dot)."""
    out = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".")
    return out or "study"


def check_uid(uid: Any, name: str) -> str:
    """A stored study identity (32 lowercase hex digits); anything else is refused.

    Raises:
        StorageError: The value is not an identity tunelab writes.
    """
    if not isinstance(uid, str) or not UID_PATTERN.fullmatch(uid):
        raise StorageError(f"the identity stored with study {name!r} ({str(uid)[:40]!r}) is not 32 hex digits; the "
                           f"database was edited or damaged")
    return uid


def folder_name(name: str, uid: str) -> str:
    """The name of a study's folder under the artifact root: `<safe name, 48 chars>-<first 12 of its uid>`."""
    return f"{safe_name(name)[:48]}-{uid[:12]}"


def database_identity(url: str) -> str:
    """The database a study lives in, as its marker records it: a file's absolute path, or a URL without password."""
    from tunelab.studies.storage import sqlite_path

    path = sqlite_path(url)
    if path is not None:
        return str(path.resolve())
    if url.startswith("sqlite"):
        return "sqlite:memory"
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not parseable here; the storage itself was opened, so the text identifies it
        return url.split("@")[-1]


def checkpoint_name(folder: str | None, trial_id: int, number: int) -> str:
    """The artifact id of a trial's checkpoint: the only name tunelab gives a trial's file.

    `<study folder>/trial-<number>.pt` under the artifact root; a study written by tunelab 0.3.0
    named its trials' files by trial id, `tunelab-trial-<id>.pt`, in the root (`folder` None).
    """
    if folder is None:
        return f"tunelab-trial-{int(trial_id)}.pt"
    return f"{folder}/trial-{int(number)}.pt"


def checkpoint_path(artifacts: Path, folder: str | None, trial_id: int, number: int, stored: Any) -> Path | None:
    """Where a trial's checkpoint lives, checking what the database says against the names allowed.

    A database is untrusted input: a stored checkpoint attribute that is anything but this trial's
    own artifact id (an absolute path, `../..`, another trial's file) is refused, so opening a
    study never reads, overwrites or deletes a file outside its artifact folder. The names allowed
    are the trial's name in its study's folder and, for a trial written by 0.3.0, its old name.

    Raises:
        StorageError: The stored name is not one of the trial's own.
    """
    if stored is None:
        return None
    allowed = {checkpoint_name(None, trial_id, number)}
    if folder is not None:
        allowed.add(checkpoint_name(folder, trial_id, number))
    if stored not in allowed:
        shown = " or ".join(repr(a) for a in sorted(allowed))
        raise StorageError(
            f"trial {number} names its checkpoint {str(stored)[:200]!r}, but a tunelab trial's checkpoint can only be "
            f"{shown} inside the artifact folder {str(artifacts)!r}; the database was edited or damaged, so tunelab "
            f"refuses to read, write or delete that path. Restore the attribute {CHECKPOINT!r} (or delete the "
            f"trial's row) and open the study again"
        )
    return artifacts / stored


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of `folder` (None when it has none; {} when it is not a marker tunelab wrote)."""
    path = folder / MARKER
    try:
        with open(path, "rb") as f:
            data = f.read(_MARKER_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise StorageError(f"cannot read the marker {str(path)!r} of the artifact folder ({err})") from err
    if len(data) > _MARKER_BYTES:
        return {}
    try:
        marker = json.loads(data)
    except (ValueError, RecursionError):
        return {}
    return marker if isinstance(marker, dict) else {}


def _write_marker(folder: Path, marker: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{MARKER}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(marker, indent=1))
    os.replace(tmp, folder / MARKER)


def claim(folder: Path, *, uid: str, name: str, database: str) -> None:
    """Make `folder` the study's own: write its marker, or check the one there.

    Raises:
        StorageError: The folder belongs to another study, or to the same study in another
            database that still exists (a copy); the message names both and the fix.
    """
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise StorageError(
            f"the study folder {str(folder)!r} is {'a symbolic link' if folder.is_symlink() else 'not a folder'}; "
            f"tunelab writes a study's checkpoints only into a real folder of its own under the artifact root. "
            f"Remove it (or open the study with artifacts='another/folder')")
    marker = read_marker(folder)
    if marker is None:
        try:
            _write_marker(folder, {"uid": uid, "study": name, "database": database, "tunelab": 1})
        except OSError as err:
            raise StorageError(f"cannot write the marker of the artifact folder {str(folder)!r} ({err}); make the "
                               f"folder writable, or open the study with artifacts='another/folder'") from err
        return
    theirs = marker.get("uid")
    if theirs != uid:
        raise StorageError(
            f"the artifact folder {str(folder)!r} belongs to another study ({marker.get('study')!r}, identity "
            f"{str(theirs)[:32]!r}, database {marker.get('database')!r}), not to study {name!r} (identity {uid}) of "
            f"{database!r}; tunelab never writes or deletes checkpoints in another study's folder. Open this study "
            f"with artifacts='another/folder'")
    other = marker.get("database")
    if other == database:
        return
    if isinstance(other, str) and other.startswith("/") and Path(other).exists():
        raise StorageError(
            f"study {name!r} of {database!r} is a copy of the same study in {other!r}, which still exists and owns "
            f"the artifact folder {str(folder)!r}: both would number new trials alike and overwrite each other's "
            f"checkpoints. Open the copy with its own folder (artifacts='{Path(database).stem}-copy.artifacts'), "
            f"or, if {other!r} is an old copy, delete it or the marker {str(folder / MARKER)!r}")
    _write_marker(folder, {**marker, "database": database})  # the database moved: its folder moves with it


def owns(folder: Path, uid: str, database: str) -> bool:
    """Whether the marker of `folder` still names this study and database (checked before any delete)."""
    try:
        marker = read_marker(folder)
    except StorageError:
        return False
    return bool(marker) and marker.get("uid") == uid and marker.get("database") == database


def sweep(folder: Path) -> list[Path]:
    """Remove the temporary checkpoint files that killed processes left in `folder`; return them.

    A temporary file is left over when the process that wrote it ran on this host and is gone,
    or when it is older than `STALE_TMP_S` (a checkpoint write takes seconds).
    """
    from tunelab.trainers.checkpoint import host_label, tmp_writer

    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now, here = time.time(), host_label()
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file(follow_symlinks=False)):
            continue
        writer = tmp_writer(entry.name)
        dead = writer is not None and writer[0] == here and not _alive(writer[1])
        try:
            old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_TMP_S
        except OSError:
            continue
        if dead or old:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
