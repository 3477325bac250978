"""The study layer's one storage boundary: every read and write of a study's database goes through here.

- `connect`: opening a database (`open_storage`: any SQLAlchemy URL; SQLite in WAL mode) and
  where checkpoints live (`artifact_dir`);
- `rdb`: the only module that uses Optuna's private RDB API (checked by `rdb.check_api`);
- `reader`: trials and studies read with one query per table, every value checked (`limits`);
- `writer`: every write, grouped into the transactions a trial's life needs;
- `lock`: the study lock several drivers share;
- `limits`: what a database may hold (a database is untrusted input);
- `faults`: database failures as `StorageError`s naming the cause.
"""

from __future__ import annotations

from tunelab.studies.storage.connect import BUSY_TIMEOUT_S, DEFAULT_STORAGE, artifact_dir, open_storage, sqlite_path
from tunelab.studies.storage.faults import is_storage_fault, storage_fault, storage_faults

__all__ = ["BUSY_TIMEOUT_S", "DEFAULT_STORAGE", "artifact_dir", "is_storage_fault", "open_storage", "sqlite_path",
           "storage_fault", "storage_faults"]
