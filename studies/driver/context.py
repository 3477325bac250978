"""What the driver's parts share: the study, its database, the mirror of its trials, the trials in flight."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tunelab.studies.driver.mirror import Mirror, Row

if TYPE_CHECKING:
    from tunelab.search import Strategy
    from tunelab.spaces import Space
    from tunelab.studies.storage.lock import StudyLock


class StudyHandle(Protocol):
    """What the driver needs of a study (`studies.Study` is one); the driver does not import the study module.

    Attributes:
        name: The study's name.
        direction: "minimize" or "maximize".
        space: Its space.
        strategy: Its strategy.
        trainer: Its trainer.
        artifacts: The artifact root; the study's checkpoints are in `artifacts / folder`.
        folder: The name of the study's own checkpoint folder.
        uid: The study's identity.
        database: The database's identity (what the folder's marker records).
        storage: The `optuna.storages.RDBStorage` it lives in.
        storage_url: Its URL.
        study_id: Its id in the storage.
    """

    name: str
    direction: str
    space: Space
    strategy: Strategy
    trainer: Any
    artifacts: Path
    folder: str | None
    uid: str | None
    database: str
    storage: Any
    storage_url: str
    study_id: int

    def attrs(self) -> dict[str, Any]:
        """The study's stored user attributes (checked, see `studies.storage.limits`)."""
        ...


@dataclass
class Context:
    """The state every part of one `optimize` call reads.

    Attributes:
        study: The study.
        owner: This driver's `host:pid:token` (trials it claims name it).
        lock: The study lock shared by every driver of the study.
        mirror: The driver's mirror of the study's trials.
        sign: -1.0 when the study maximises, 1.0 when it minimises.
        in_flight: Trial ids this driver is running (its mirror, not the database, is the truth for them).
        stop: Set when the study must stop starting work (Ctrl-C, a fatal failure).
    """

    study: StudyHandle
    owner: str
    lock: StudyLock
    mirror: Mirror
    sign: float
    in_flight: set[int] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def storage(self) -> Any:
        """The study's storage."""
        return self.study.storage

    @property
    def rows(self) -> dict[int, Row]:
        """The mirror's rows by trial id (read-only use: add rows through `mirror.put`)."""
        return self.mirror.rows

    @property
    def folder(self) -> Path:
        """The study's own checkpoint folder (its marker names the study and the database)."""
        return self.study.artifacts / str(self.study.folder)

    def row_of_number(self, number: int | None) -> Row | None:
        """The mirror of trial `number`, or None."""
        return self.mirror.by_number.get(number) if number is not None else None
