"""Generated data sets cached on disk, so that only the first process on a machine generates them.

A built-in workload whose data is generated (MNIST-1D: about 3 s of NumPy per process) stores
the arrays once, as an `.npz` file in the user's cache folder:

- the folder is `$TUNELAB_CACHE_DIR` if set, else `$XDG_CACHE_HOME/tunelab`, else
  `~/.cache/tunelab`;
- the file is named by a key: the SHA-256 of the generator's name, its arguments, its package's
  version and this module's format, so other arguments or another release of the generator
  never read an old file;
- the file holds, beside the arrays, that key and a fingerprint (the SHA-256 of the arrays'
  names, dtypes, shapes and bytes); a file that cannot be read, holds another key or does not
  match its fingerprint is generated again and replaced, without a word to the user;
- it is read with `np.load(..., allow_pickle=False)` (never unpickled) and written atomically
  (a temporary file in the same folder, then `os.replace`), so a reader never sees half a file
  and two processes that generate at once both leave a whole one;
- where nothing can be written (a read-only home, no home), the data is generated in memory
  each time, silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

CACHE_DIR_ENV = "TUNELAB_CACHE_DIR"
FORMAT = 1  # of the files this module writes; a change makes every key new
KEY = "__tunelab_key__"  # the entries stored beside the arrays
FINGERPRINT = "__tunelab_fingerprint__"

Arrays = dict[str, np.ndarray]


def cache_dir() -> Path | None:
    """The folder of tunelab's cached data: `$TUNELAB_CACHE_DIR`, `$XDG_CACHE_HOME/tunelab` or `~/.cache/tunelab`.

    Returns:
        The folder (it may not exist yet), or None where the home folder cannot be found.
    """
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():  # the XDG spec: a relative path is invalid and ignored
        return Path(xdg) / "tunelab"
    try:
        return Path.home() / ".cache" / "tunelab"
    except (RuntimeError, KeyError):
        return None


def cache_key(generator: str, args: Mapping[str, Any], version: str) -> str:
    """The key of a generated data set: SHA-256 (hex) of the generator, its JSON arguments and its version.

    Args:
        generator: What generates the data, e.g. `"mnist1d.data:make_dataset"`.
        args: The generator's arguments (JSON values).
        version: The version of the generator's package.
    """
    text = json.dumps({"generator": generator, "args": dict(args), "version": version, "format": FORMAT},
                      sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 (hex) of arrays: their names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def cache_path(generator: str, args: Mapping[str, Any], version: str) -> Path | None:
    """The file that caches the data of `generator(args)` at `version` (None where there is no cache folder)."""
    folder = cache_dir()
    if folder is None:
        return None
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", generator.partition(":")[0].split(".")[0])[:40] or "data"
    return folder / f"{stem}-{cache_key(generator, args, version)[:32]}.npz"


def cached_arrays(generator: str, args: Mapping[str, Any], version: str, make: Callable[[], Mapping[str, np.ndarray]]
                  ) -> Arrays:
    """The arrays `make()` returns, read from the cache when a whole file for this key is there.

    Args:
        generator: What generates the data (part of the key), e.g. `"mnist1d.data:make_dataset"`.
        args: The arguments `make` passes to it (part of the key; JSON values).
        version: The generator package's version (part of the key).
        make: Generates the arrays (numeric arrays only; names must not start with `__tunelab`).

    Returns:
        The arrays by name: read from the cache, or made (and then stored, where the folder is writable).
    """
    path = cache_path(generator, args, version)
    key = cache_key(generator, args, version)
    if path is not None:
        found = _read(path, key)
        if found is not None:
            return found
    arrays = {name: np.asarray(a) for name, a in make().items()}
    if path is not None:
        _write(path, key, arrays)
    return arrays


def _read(path: Path, key: str) -> Arrays | None:
    """The arrays of a cache file, or None when it is missing, unreadable, another key's or damaged."""
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as stored:  # closed here whatever np.load does
            arrays = {name: stored[name] for name in stored.files}
    except Exception:  # missing, truncated, not a zip, an object array (refused): generated again
        return None
    stored_key, stored_print = arrays.pop(KEY, None), arrays.pop(FINGERPRINT, None)
    if stored_key is None or stored_print is None or str(stored_key) != key or not arrays:
        return None
    return arrays if str(stored_print) == fingerprint(arrays) else None


def _write(path: Path, key: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Store the arrays with their key and fingerprint, atomically; do nothing where that cannot be done."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays, **{KEY: np.str_(key), FINGERPRINT: np.str_(fingerprint(arrays))})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError:  # a read-only or full disk: the data lives in memory only
        pass
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


__all__ = ["CACHE_DIR_ENV", "cache_dir", "cache_key", "cache_path", "cached_arrays", "fingerprint"]
