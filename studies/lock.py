"""A mutex over one study, held in its database, so several drivers can share one study.

Optuna users run one study from several processes or machines on purpose: each process asks
its sampler and tells results to the shared storage. tunelab's drivers do the same, and the
budget (a study total) and the proposal numbering must hold across them. A driver therefore
holds `StudyLock` while it re-reads the trials others wrote, recovers dead ones, asks its
strategy and inserts (claims) the new trial; training happens outside the lock.

Each acquisition numbers itself (`seq`, one more than the last holder's), and a release leaves
the number behind, so a holder knows whether any other driver held the lock since it last
did (`others_since`): if none did, no trial changed state except those other drivers were
already running, and the driver need not re-read the rest (`Driver.refresh`).

The lock is one study system attribute, `tunelab:driver_lock`, changed by compare-and-set:
`UPDATE ... WHERE value_json = <the value just read>` succeeds for exactly one of several
racing drivers, on SQLite and on any server database, with no table of our own. A holder that
died is detected by its lease running out, or at once when it ran on this host and its process
is gone.
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
import uuid
from typing import Any

LOCK = "tunelab:driver_lock"
LOCK_TTL_S = 120.0
LIVE: set[str] = set()  # owners of the drivers running in this process (Driver.run adds and removes itself)


def make_owner() -> str:
    """`host:pid:token`, unique to one driver (two drivers in one process do not share it)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str | None) -> bool | None:
    """Whether the driver `owner` is alive: True / False when it ran on this host, None when unknown.

    A driver of this very process is alive only while its `run` is (it is in `LIVE`).
    """
    parts = (owner or "").split(":")
    if len(parts) < 2 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return None
    if int(parts[1]) == os.getpid():
        return owner in LIVE
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def gone(owner: str | None, until: float) -> bool:
    """Whether a claim (a trial's lease, the study lock) no longer holds: its time ran out or its owner died."""
    return until < time.time() or owner_alive(owner) is False


class StudyLock:
    """A lease-based mutex of one study shared by every driver of it.

    Args:
        storage: The study's `optuna.storages.RDBStorage`.
        study_id: The study's id.
        owner: The driver's `make_owner()` string.
        ttl: Seconds a holder's claim lasts (a holder that dies on another host blocks others at
            most this long).
    """

    def __init__(self, storage: Any, study_id: int, owner: str, ttl: float = LOCK_TTL_S) -> None:
        self.storage, self.study_id, self.owner, self.ttl = storage, study_id, owner, ttl
        self._held: str | None = None
        self._rng = random.Random(owner)
        self.seq = 0  # the number of this driver's current (or last) acquisition
        self.previous = -1  # the number of the acquisition before it (by any driver)
        self._released = -2  # the number of this driver's last acquisition, once released

    def _model(self) -> Any:
        from optuna.storages._rdb.models import StudySystemAttributeModel

        return StudySystemAttributeModel

    def _free(self, value: str | None) -> bool:
        holder = json.loads(value) if value else None
        if not holder or not holder.get("owner"):
            return True
        if holder.get("owner") == self.owner:
            return True
        return gone(holder.get("owner"), float(holder.get("until", 0.0)))

    def try_acquire(self) -> bool:
        """Take the lock if it is free (or its holder is gone); never waits."""
        import sqlalchemy as sa

        model = self._model()
        where = (model.study_id == self.study_id, model.key == LOCK)
        try:
            with self.storage.engine.begin() as conn:
                current = conn.execute(sa.select(model.value_json).where(*where)).scalar_one_or_none()
                last = json.loads(current) if current else None
                previous = int(last.get("seq", 0)) if isinstance(last, dict) else 0
                mine = json.dumps({"owner": self.owner, "until": time.time() + self.ttl, "token": uuid.uuid4().hex,
                                   "seq": previous + 1})
                if current is None:
                    conn.execute(sa.insert(model).values(study_id=self.study_id, key=LOCK, value_json=mine))
                elif not self._free(current):
                    return False
                else:
                    done = conn.execute(sa.update(model).where(*where, model.value_json == current)
                                        .values(value_json=mine))
                    if done.rowcount != 1:
                        return False  # another driver changed it between our read and our write
        except sa.exc.IntegrityError:
            return False  # another driver inserted the lock row first
        except sa.exc.OperationalError as err:  # SQLite: a writer held the database past the busy timeout
            if "locked" in str(err):
                return False
            raise
        self._held = mine
        self.seq, self.previous = previous + 1, previous
        return True

    def others_since(self) -> bool:
        """Whether another driver held the lock between this driver's last release and its current hold."""
        return self.previous != self._released

    def acquire(self) -> None:
        """Wait until the lock is ours (polls with jitter; a dead holder is detected by lease or pid)."""
        delay = 0.005
        while not self.try_acquire():
            time.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, 0.2)

    def release(self) -> None:
        """Give the lock back (only if this driver still holds it)."""
        import sqlalchemy as sa

        held, self._held = self._held, None
        if held is None:
            return
        model = self._model()
        with self.storage.engine.begin() as conn:
            done = conn.execute(sa.update(model).where(model.study_id == self.study_id, model.key == LOCK,
                                                       model.value_json == held)
                                .values(value_json=json.dumps({"owner": None, "seq": self.seq})))
        if done.rowcount == 1:
            self._released = self.seq

    def __enter__(self) -> StudyLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
