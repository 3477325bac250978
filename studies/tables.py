"""A study's learning curves as a replay table (`trainers.replay`), to replay with any strategy.

Every trial that trained to the end (or diverged on the way) becomes one row with its whole
curve, so a study recorded once on real data can be searched again and again, by new
strategies or peers' libraries, in seconds (`trainers.Replay`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tunelab.spaces.errors import ConfigError
from tunelab.spaces.space import config_key
from tunelab.studies.records import TrialState
from tunelab.trainers.replay import METRICS, Curve, ReplayTable, TableHeader
from tunelab.trainers.run import EpochResult


def study_curves(study: Any) -> list[Curve]:
    """The full-length curves of `study`: complete trials, and trials that diverged (one per config and seed)."""
    epochs = study.epochs
    out: dict[tuple[str, int], Curve] = {}
    for t in study.trials:
        diverged = t.state == TrialState.FAILED and (t.error or "").startswith("diverged")
        if not diverged and not (t.state == TrialState.COMPLETE and t.epochs >= (epochs or 0)):
            continue
        m = t.metrics
        if not m or any(k not in m for k in METRICS):
            continue
        n = len(m["val_metric"])
        rows = [EpochResult(i + 1, *(float("nan") if m[k][i] is None else m[k][i] for k in METRICS[:-1]),
                            int(m["grad_evals"][i] or 0)) for i in range(n)]
        seed = int(t.seed if t.seed is not None else 0)
        status = "diverged" if diverged else "complete"
        out[(config_key(t.config), seed)] = Curve(dict(t.config), seed, tuple(rows), status, t.test_metric, t.n_params,
                                               t.flops)
    return list(out.values())


def table_header(study: Any, name: str | None = None, notes: str = "") -> TableHeader:
    """The header of a table of `study`'s curves (the study needs its trainer: it knows the data's shape).

    Raises:
        ConfigError: The study was opened read-only, without a trainer.
    """
    trainer = study.trainer
    if trainer is None:
        raise ConfigError(f"the study {study.name!r} was opened without a trainer; a table needs the workload's shape: "
                          f"open it with studies.load(name, storage) (or trainer=...) instead of read_only=True")
    w = trainer.workload
    return TableHeader(
        name=name or study.name, space=json.loads(study.space.to_json()), metric=w.metric, direction=w.direction,
        epochs=int(trainer.epochs),
        workload={"name": w.name, "task": w.task, "input_shape": list(w.input_shape), "n_outputs": int(w.n_outputs),
                  "batch_size": int(trainer.batch_size),
                  "steps_per_epoch": int(trainer.steps_per_epoch(trainer.batch_size))},
        notes=notes)


def to_table(study: Any, path: str | os.PathLike[str], *, name: str | None = None, notes: str = "",
             merge: bool = False) -> Path:
    """Write `study`'s full-length curves as a replay table file (gzip JSON lines).

    Args:
        study: A `studies.Study` opened with its trainer.
        path: The table file to write (`.json.gz`).
        name: The table's name (default: the study's).
        notes: How it was recorded (stored in the header).
        merge: Keep the rows of an existing table at `path` that the study does not hold (a
            recording continued in a new study); its header must describe the same space.

    Returns:
        The path written.

    Raises:
        ConfigError: The study has no trainer, or `merge` finds a table of another space.
        TableError: `merge` finds an unreadable table.
    """
    header = table_header(study, name, notes)
    curves = {(config_key(c.config), c.seed): c for c in study_curves(study)}
    if merge and Path(path).exists():
        old = ReplayTable.load(path)
        if old.header.space != header.space:
            raise ConfigError(f"the table at {path} holds another space than the study {study.name!r}; write to a new "
                              f"file")
        curves = {**{(config_key(c.config), c.seed): c for c in old.curves}, **curves}
    return ReplayTable(header, list(curves.values())).write(path)


__all__ = ["study_curves", "table_header", "to_table"]
