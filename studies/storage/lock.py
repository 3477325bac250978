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

import functools
import json
import os
import random
import socket
import sys
import time
import uuid
from typing import Any

LOCK = "tunelab:driver_lock"
LOCK_TTL_S = 120.0
LOCK_WAIT_S = 300.0  # the longest `acquire` waits (TUNELAB_LOCK_WAIT overrides it)
NOTICE_S = 2.0  # a wait longer than this prints who holds the lock
NOTICE_EVERY_S = 30.0
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
    except (OverflowError, ValueError):  # not a pid this host can have (a damaged value)
        return None
    except PermissionError:
        return True
    return True


def gone(owner: str | None, until: float) -> bool:
    """Whether a claim (a trial's lease, the study lock) no longer holds: its time ran out or its owner died."""
    return until < time.time() or owner_alive(owner) is False


def lock_wait_seconds() -> float:
    """How long `StudyLock.acquire` waits before it gives up: `TUNELAB_LOCK_WAIT` seconds (default 300)."""
    try:
        value = float(os.environ.get("TUNELAB_LOCK_WAIT", LOCK_WAIT_S))
    except ValueError:
        return LOCK_WAIT_S
    return value if value >= 0 else LOCK_WAIT_S


def describe_holder(holder: Any) -> str:
    """`host <h>, pid <p>, lease until <time>` of a stored lock value (what a waiting driver prints)."""
    if not isinstance(holder, dict) or not holder.get("owner"):
        return "nobody"
    parts = str(holder.get("owner"))[:200].split(":")
    host, pid = parts[0], parts[1] if len(parts) > 1 else "?"
    until = holder.get("until")
    if isinstance(until, (int, float)) and not isinstance(until, bool) and 0 < until < 1e11:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(until))
        left = until - time.time()
        lease = f"lease until {when} ({left:.0f} s from now)" if left > 0 else f"lease ended {when}"
    else:
        lease = f"lease until {until!r} (not a time this host can read)"
    return f"host {host}, pid {pid}, {lease}"


@functools.cache
def _statements() -> Any:
    """The lock's three statements (read, insert, compare-and-set), built once per process with bound parameters."""
    import types

    import sqlalchemy as sa

    from tunelab.studies.storage import rdb

    t = rdb.models().StudySystemAttributeModel.__table__
    where = (t.c.study_id == sa.bindparam("b_study"), t.c.key == sa.bindparam("b_key"))
    return types.SimpleNamespace(
        read=sa.select(t.c.value_json).where(*where),
        insert=sa.insert(t).values(study_id=sa.bindparam("b_study"), key=sa.bindparam("b_key"),
                                   value_json=sa.bindparam("b_new")),
        swap=sa.update(t).where(*where, t.c.value_json == sa.bindparam("b_old"))
        .values(value_json=sa.bindparam("b_new")),
    )


class StudyLock:
    """A lease-based mutex of one study shared by every driver of it.

    Waiting is bounded twice. A holder's lease counts for at most `ttl` seconds from the moment
    this driver first saw it, whatever the stored lease end says (a host whose clock is ahead, a
    damaged value, a pid that happens to be alive here). And `acquire` gives up after `wait`
    seconds with `StudyLockedError`, printing who holds the lock while it waits.

    Args:
        storage: The study's `optuna.storages.RDBStorage`.
        study_id: The study's id.
        owner: The driver's `make_owner()` string.
        ttl: Seconds a holder's claim lasts (a holder that dies on another host blocks others at
            most this long): the lease length the study was created with.
        wait: Seconds `acquire` waits at most (default `lock_wait_seconds()`).
        label: The study, as messages name it ("study 'x' in sqlite:///tunelab.db").
    """

    def __init__(self, storage: Any, study_id: int, owner: str, ttl: float = LOCK_TTL_S, *,
                 wait: float | None = None, label: str = "the study") -> None:
        self.storage, self.study_id, self.owner, self.ttl = storage, study_id, owner, ttl
        self.wait = lock_wait_seconds() if wait is None else wait
        self.label = label
        self._held: str | None = None
        self._rng = random.Random(owner)
        self.seq = 0  # the number of this driver's current (or last) acquisition
        self.previous = -1  # the number of the acquisition before it (by any driver)
        self._released = -2  # the number of this driver's last acquisition, once released
        self._first_seen: dict[str, float] = {}  # a holder's stored value -> when this driver first saw it
        self.holder: Any = None  # the last holder seen while waiting

    def _model(self) -> Any:
        from tunelab.studies.storage import rdb

        return rdb.models().StudySystemAttributeModel


    def _free(self, value: str | None) -> bool:
        holder = parse_lock(value)
        self.holder = holder
        if not holder or not holder.get("owner"):
            return True
        if holder.get("owner") == self.owner:
            return True
        until = holder.get("until")
        until = float(until) if isinstance(until, (int, float)) and not isinstance(until, bool) else 0.0
        seen = self._first_seen.setdefault(value or "", time.monotonic())
        if time.monotonic() - seen > self.ttl:  # held unchanged for longer than any lease lasts: stale
            return True
        return gone(str(holder.get("owner")), until)

    def try_acquire(self) -> bool:
        """Take the lock if it is free (or its holder is gone); never waits."""
        import sqlalchemy as sa

        st = _statements()
        key = {"b_study": self.study_id, "b_key": LOCK}
        try:
            with self.storage.engine.begin() as conn:
                current = conn.execute(st.read, key).scalar_one_or_none()
                last = parse_lock(current)
                previous = _seq(last)
                mine = json.dumps({"owner": self.owner, "until": time.time() + self.ttl, "token": uuid.uuid4().hex,
                                   "seq": previous + 1})
                if current is None:
                    conn.execute(st.insert, {**key, "b_new": mine})
                elif not self._free(current):
                    return False
                else:
                    done = conn.execute(st.swap, {**key, "b_old": current, "b_new": mine})
                    if done.rowcount != 1:
                        return False  # another driver changed it between our read and our write
        except sa.exc.IntegrityError:
            return False  # another driver inserted the lock row first
        # an OperationalError (SQLite: a writer held the database past its busy timeout; a read-only file)
        # is the database failing, not the study lock being taken: it reaches the caller as a StorageError
        self._held = mine
        self.seq, self.previous = previous + 1, previous
        return True

    def others_since(self) -> bool:
        """Whether another driver held the lock between this driver's last release and its current hold."""
        return self.previous != self._released

    def acquire(self) -> None:
        """Wait until the lock is ours, at most `wait` seconds (polls with jitter).

        A dead holder is detected by its lease, its pid on this host, or by holding the lock
        unchanged for longer than `ttl`. While it waits more than a couple of seconds, it prints
        who holds the lock.

        Raises:
            StudyLockedError: The lock was not free within `wait` seconds.
        """
        delay = 0.005
        start = time.monotonic()
        told = start + NOTICE_S
        while not self.try_acquire():
            now = time.monotonic()
            if now - start >= self.wait:
                from tunelab.studies.errors import StudyLockedError

                raise StudyLockedError(
                    f"{self.label} is locked by another driver ({describe_holder(self.holder)}) and the lock was not "
                    f"free within {self.wait:.0f} s. If that driver is still deciding, run again later; if it is "
                    f"dead (its host is down or its clock is wrong), break the lock with `tunelab unlock "
                    f"--storage URL --study NAME` (or set TUNELAB_LOCK_WAIT to wait longer)")
            if now >= told:
                print(f"tunelab: waiting for the lock of {self.label}, held by {describe_holder(self.holder)} "
                      f"(giving up in {self.wait - (now - start):.0f} s)", file=sys.stderr, flush=True)
                told = now + NOTICE_EVERY_S
            time.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, 0.2)

    def release(self) -> None:
        """Give the lock back (only if this driver still holds it)."""
        held, self._held = self._held, None
        if held is None:
            return
        with self.storage.engine.begin() as conn:
            done = conn.execute(_statements().swap, {"b_study": self.study_id, "b_key": LOCK, "b_old": held,
                                                          "b_new": json.dumps({"owner": None, "seq": self.seq})})
        if done.rowcount == 1:
            self._released = self.seq

    def __enter__(self) -> StudyLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def parse_lock(value: str | None) -> dict[str, Any] | None:
    """A stored lock value as a dict; None when absent, and {} when damaged (a damaged lock is free)."""
    if not value:
        return None
    from tunelab.studies.errors import StorageError
    from tunelab.studies.storage.limits import loads

    try:
        holder = loads(value, "the study lock")
    except StorageError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _seq(holder: dict[str, Any] | None) -> int:
    seq = (holder or {}).get("seq", 0)
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq < 2**62 else 0


def read_lock(storage: Any, study_id: int) -> dict[str, Any] | None:
    """The study lock's stored value (None when nobody ever held it)."""
    import sqlalchemy as sa

    model = StudyLock(storage, study_id, "reader")._model()
    with storage.engine.connect() as conn:
        value = conn.execute(sa.select(model.value_json).where(model.study_id == study_id, model.key == LOCK)
                             ).scalar_one_or_none()
    return parse_lock(value)


def break_lock(storage: Any, study_id: int) -> None:
    """Free the study lock whoever holds it (`tunelab unlock`); the next driver takes it at once."""
    import sqlalchemy as sa

    model = StudyLock(storage, study_id, "breaker")._model()
    seq = _seq(read_lock(storage, study_id))
    with storage.engine.begin() as conn:
        conn.execute(sa.update(model).where(model.study_id == study_id, model.key == LOCK)
                     .values(value_json=json.dumps({"owner": None, "seq": seq + 1})))
