"""Replay tables: learning curves recorded by tunelab's own trainer, one gzip file of JSON lines.

A table is a header line (`{"tunelab_table": 1, ...}` with the space, metric, direction, epochs
and the workload's shape), then one line per recorded run: its configuration and seed, every
metric of every epoch (`train_loss`, `val_loss`, `val_metric`, `lr`, `seconds`, `grad_evals`),
its test metric, its model size and its status (`complete`, or `diverged` with the curve up to
the non-finite epoch). A table is checked when it is opened (header against rows, value types),
so a damaged one is refused with the row that is wrong. `studies.to_table` writes one from any
study; `trainers.Replay` answers `fit` from one.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.spaces.errors import ConfigError
from tunelab.spaces.space import Space, config_key
from tunelab.trainers.run import EpochResult

TABLE_FORMAT = 1
METRICS = ("train_loss", "val_loss", "val_metric", "lr", "seconds", "grad_evals")
OUTSIDE = ("error", "nearest")


class TableError(ConfigError):
    """A replay table cannot be read, or a configuration is not in it."""


@dataclass(frozen=True)
class Curve:
    """One recorded run: a configuration on a seed, epoch by epoch.

    Attributes:
        config: The configuration.
        seed: The run's seed.
        epochs: Its epochs, as the trainer reported them.
        status: "complete", or "diverged" (the last epoch is the non-finite one).
        test_metric: Test metric after the last epoch of a complete run (None if none).
        n_params: Parameters of its model (None if not recorded).
        flops: Forward FLOPs per example (None if not recorded).
    """

    config: dict[str, Any]
    seed: int
    epochs: tuple[EpochResult, ...]
    status: str = "complete"
    test_metric: float | None = None
    n_params: int | None = None
    flops: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The row's JSON form."""
        metrics = {m: [getattr(e, m) for e in self.epochs] for m in METRICS}
        return {"config": self.config, "seed": self.seed, "status": self.status, "metrics": metrics,
                "test_metric": self.test_metric, "n_params": self.n_params, "flops": self.flops}

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> Curve:
        """Read a row (raises KeyError / TypeError / ValueError on a malformed one)."""
        m = row["metrics"]
        n = len(m["val_metric"])
        if any(len(m[k]) != n for k in METRICS):
            raise ValueError(f"the metrics of a row differ in length: { {k: len(m[k]) for k in METRICS} }")
        epochs = tuple(EpochResult(epoch=i + 1, train_loss=float(m["train_loss"][i]), val_loss=float(m["val_loss"][i]),
                                   val_metric=float(m["val_metric"][i]), lr=float(m["lr"][i]),
                                   seconds=float(m["seconds"][i]), grad_evals=int(m["grad_evals"][i]))
                       for i in range(n))
        test = row.get("test_metric")
        return cls(dict(row["config"]), int(row["seed"]), epochs, str(row.get("status", "complete")),
                   None if test is None else float(test), row.get("n_params"), row.get("flops"))

    @property
    def final(self) -> float:
        """Validation metric of the last epoch (NaN for a diverged run)."""
        return self.epochs[-1].val_metric if self.epochs else math.nan


@dataclass(frozen=True)
class TableHeader:
    """What a table is about.

    Attributes:
        name: The table's name (`mnist1d_mlp`).
        space: The space its configurations come from, as `Space.to_json()` data.
        metric: The validation metric ("accuracy", "mse").
        direction: "maximize" or "minimize".
        epochs: A full run's length.
        workload: `{"name", "input_shape", "n_outputs", "task", "batch_size", "steps_per_epoch"}`
            of the recorded workload.
        notes: Free text: how it was recorded.
    """

    name: str
    space: dict[str, Any]
    metric: str
    direction: str
    epochs: int
    workload: dict[str, Any]
    notes: str = ""

    def to_json(self) -> dict[str, Any]:
        """The header line's JSON form."""
        return {"tunelab_table": TABLE_FORMAT, **asdict(self)}


@dataclass
class ReplayTable:
    """A table of recorded runs, indexed by configuration and seed.

    Args:
        header: What the table is about.
        curves: Its runs.
    """

    header: TableHeader
    curves: list[Curve]
    digest: str = ""
    _index: dict[tuple[str, int], Curve] = field(default_factory=dict, repr=False)
    _seeds: dict[str, list[int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for c in self.curves:
            key = config_key(c.config)
            self._index[(key, c.seed)] = c
            self._seeds.setdefault(key, []).append(c.seed)
        if not self.digest:
            self.digest = _digest(self._text())
        self._encoded: np.ndarray | None = None

    def _text(self) -> str:
        """The table as the file holds it (uncompressed): the header line, then one line per run."""
        return "".join(json.dumps(line) + "\n" for line in (self.header.to_json(), *(c.to_json() for c in self.curves)))

    # ------------------------------------------------------------------ files
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ReplayTable:
        """Read a table file (gzip JSON lines, header first).

        Raises:
            TableError: The file is missing, not a tunelab table, or has a malformed row.
        """
        path = Path(path)
        if not path.is_file():
            raise TableError(f"no replay table at {path}; record one (benchmarks/record_tables.py) or write one from a "
                             f"study with studies.to_table(study, path)")
        try:
            with gzip.open(path, "rt") as f:
                text = f.read()
            lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        except (OSError, ValueError, EOFError) as err:
            raise TableError(f"cannot read the replay table {path}: {err}") from err
        if not lines or not isinstance(lines[0], dict) or lines[0].get("tunelab_table") != TABLE_FORMAT:
            raise TableError(f"{path} is not a tunelab replay table (format {TABLE_FORMAT}): its first line must be "
                             f"the header {{\"tunelab_table\": {TABLE_FORMAT}, ...}}")
        head = dict(lines[0])
        head.pop("tunelab_table")
        try:
            header = TableHeader(**head)
            curves = [Curve.from_json(row) for row in lines[1:]]
        except (KeyError, TypeError, ValueError) as err:
            raise TableError(f"{path} has a malformed header or row: {type(err).__name__}: {err}") from err
        if not curves:
            raise TableError(f"the replay table {path} has no rows")
        _check_table(header, curves, path)
        return cls(header, curves, digest=_digest(text))

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the table (gzip JSON lines, header first; atomically) and return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:  # same rows, same bytes
            f.write(self._text().encode())
        os.replace(tmp, path)
        return path

    # ------------------------------------------------------------------ lookups
    def __len__(self) -> int:
        return len(self.curves)

    def configs(self) -> list[dict[str, Any]]:
        """Every recorded configuration, once (in table order)."""
        seen, out = set(), []
        for c in self.curves:
            key = config_key(c.config)
            if key not in seen:
                seen.add(key)
                out.append(c.config)
        return out

    def seeds(self, config: Mapping[str, Any]) -> list[int]:
        """The seeds `config` was recorded on ([] if it was not)."""
        return list(self._seeds.get(config_key(config), []))

    def get(self, config: Mapping[str, Any], seed: int) -> Curve | None:
        """The run of `config` on `seed`, or None."""
        return self._index.get((config_key(config), int(seed)))

    def finals(self, seed: int | None = None) -> np.ndarray:
        """Final validation metric of every configuration (on `seed`, or its first recorded seed); NaN if diverged."""
        out = []
        for config in self.configs():
            key = config_key(config)
            s = seed if seed is not None and seed in self._seeds[key] else self._seeds[key][0]
            out.append(self._index[(key, s)].final if self._index[(key, s)].status == "complete" else math.nan)
        return np.asarray(out, dtype=float)

    @functools.cached_property
    def space(self) -> Space:
        """The space of the table's configurations."""
        return Space.from_json(json.dumps(self.header.space))

    def nearest(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The recorded configuration nearest to `config` in the table space's encoding (Euclidean; first on ties)."""
        configs = self.configs()
        if self._encoded is None:
            self._encoded = np.stack([self.space.encode(c) for c in configs])
        try:
            x = self.space.encode(config)
        except (ValueError, KeyError) as err:
            raise TableError(f"the configuration {dict(config)} is outside the table's space ({err}), so no recorded "
                             f"configuration is near it") from err
        d = ((self._encoded - x) ** 2).sum(1)
        return configs[int(np.argmin(d))]


MAX_TABLE_EPOCHS = 100_000


def _check_table(header: TableHeader, curves: list[Curve], path: Path) -> None:
    """Refuse a table whose header and rows disagree, or whose values have the wrong types.

    A row that promised more epochs than it holds would never finish when replayed, and a
    model size that is not a number would fail inside a study: both are found when the table
    is opened, naming the row.

    Raises:
        TableError: The first problem found, with its row number (1 is the first row after the header).
    """
    def whole(value: Any, low: int = 0, high: int = 10**15) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

    if not whole(header.epochs, 1, MAX_TABLE_EPOCHS):
        raise TableError(f"the replay table {path} says a run has {header.epochs!r} epochs; its header needs a whole "
                         f"number from 1 to {MAX_TABLE_EPOCHS}")
    if header.direction not in ("maximize", "minimize") or not isinstance(header.metric, str):
        raise TableError(f"the replay table {path} has a malformed header: metric {header.metric!r}, direction "
                         f"{header.direction!r} (a name, and 'maximize' or 'minimize')")
    if not isinstance(header.space, dict) or not isinstance(header.workload, dict):
        raise TableError(f"the replay table {path} has a malformed header: its space and workload must be objects")
    for i, c in enumerate(curves, start=1):
        problem = None
        if c.status not in ("complete", "diverged"):
            problem = f"status {c.status!r} (complete or diverged)"
        elif c.status == "complete" and len(c.epochs) != header.epochs:
            problem = f"{len(c.epochs)} epochs, but the header promises {header.epochs} for a complete run"
        elif c.status == "diverged" and not 1 <= len(c.epochs) <= header.epochs:
            problem = f"{len(c.epochs)} epochs for a diverged run (1 to {header.epochs})"
        elif not whole(c.seed, -(2**63), 2**64):
            problem = f"seed {c.seed!r}"
        elif c.n_params is not None and not whole(c.n_params):
            problem = f"n_params {c.n_params!r} (a whole number or null)"
        elif c.flops is not None and not whole(c.flops):
            problem = f"flops {c.flops!r} (a whole number or null)"
        elif any(not whole(e.grad_evals) for e in c.epochs):
            problem = "a gradient-evaluation count that is negative"
        if problem is not None:
            raise TableError(f"row {i} of the replay table {path} ({c.config}) has {problem}; record the table again "
                             f"(benchmarks/record_tables.py) or fix the row")


def _digest(text: str) -> str:
    """A table's identity: the SHA-256 of its uncompressed text (16 hex digits)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]
