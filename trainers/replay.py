"""Replayed training: `fit` answered from a table of learning curves recorded by tunelab's own trainer.

The idea is that of tabular and surrogate benchmarks for hyperparameter optimisation: train
every configuration of a space once, keep its whole learning curve, and let search strategies
"train" by looking curves up, so that a comparison of strategies costs seconds instead of
hours (Ying et al. 2019, "NAS-Bench-101", ICML; Klein & Hutter 2019, "Tabular Benchmarks for
Joint Architecture and Hyperparameter Optimization"; Zimmer et al. 2021, "Auto-PyTorch
Tabular", whose LCBench curves are such a table; Eggensperger et al. 2021, "HPOBench"). Each
replayed epoch reports the recorded seconds, which a simulated clock
(`studies.executors.SimulatedExecutor`) charges to its worker, as in Syne Tune's simulator
back-end (Salinas et al. 2022, "Syne Tune", AutoML Conf).

A table is one gzip file of JSON lines: a header line (`{"tunelab_table": 1, ...}` with the
space, metric, direction, epochs and the workload's shape), then one line per recorded run:
its configuration and seed, every metric of every epoch (`train_loss`, `val_loss`,
`val_metric`, `lr`, `seconds`, `grad_evals`), its test metric, its model size and its status
(`complete`, or `diverged` with the curve up to the non-finite epoch). `studies.to_table`
writes one from any study; `benchmarks/record_tables.py` records the shipped ones.

`Replay` is a `Trainer` to every caller: studies, strategies, budgets, executors and
`studies.compare` run unchanged, and strategies see only the study's history, never the table.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spaces.errors import CheckpointError, ConfigError
from spaces.space import Space, config_key
from trainers.checkpoint import load_checkpoint, save_checkpoint
from trainers.trainer import Decision, EpochResult, RunControl, Status, Trainer, TrainResult, best_metric
from trainers.workload import TaskMetric

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


@dataclass(frozen=True)
class ReplayWorkload(TaskMetric):
    """What a replayed trainer tells callers about the recorded workload (it holds no data).

    Attributes mirror `trainers.Workload`'s: `train`, `val` and `test` are None, since nothing
    is trained.
    """

    name: str
    task: str
    input_shape: tuple[int, ...]
    n_outputs: int
    batch_size: int
    max_epochs: int
    digest: str
    train: None = None
    val: None = None
    test: None = None
    recipe: None = None

    def fingerprint(self) -> dict[str, Any]:
        """The table's digest: replays of other tables are other data."""
        return {"replay": self.digest}


class Replay(Trainer):
    """A trainer that answers `fit` from a recorded table instead of training.

    Everything a study asks of a trainer works: `until_epoch`, pause and resume through a
    checkpoint (a small file that holds the epochs replayed so far), `report` decisions after
    every epoch, the test metric of a complete run, and each epoch's recorded `seconds` (which
    `studies.executors.SimulatedExecutor` charges to a simulated clock). A run of a diverged
    recording diverges again at the same epoch.

    Args:
        table: A table file, or a loaded `ReplayTable`.
        seed: Default seed of runs (the seed whose recordings answer; tables hold every
            configuration on seed 0 and a few on more seeds).
        outside: What a configuration that is not in the table gets: "error" (a `TableError`
            that says so), or "nearest": the curve of the nearest recorded configuration in the
            space's encoding, a surrogate, marked in the result's `attrs` as
            `{"replay": {"nearest": <config>}}` so results say so.
        seeds: "exact" (a run's seed must be recorded for its configuration) or "any" (a seed
            that was not recorded answers with the configuration's first recorded seed).

    Raises:
        TableError: The table cannot be read, or a bad `outside` / `seeds` value.
    """

    def __init__(self, table: str | os.PathLike[str] | ReplayTable, *, seed: int = 0, outside: str = "error",
                 seeds: str = "exact") -> None:
        if outside not in OUTSIDE:
            raise TableError(f"outside must be one of {OUTSIDE}, got {outside!r}")
        if seeds not in ("exact", "any"):
            raise TableError(f"seeds must be 'exact' or 'any', got {seeds!r}")
        self.table = table if isinstance(table, ReplayTable) else ReplayTable.load(table)
        self.path = None if isinstance(table, ReplayTable) else str(table)
        h = self.table.header
        w = h.workload
        try:
            self.workload = ReplayWorkload(  # type: ignore[assignment]
                name=str(w["name"]), task=str(w.get("task", "classification")),
                input_shape=tuple(int(s) for s in w["input_shape"]), n_outputs=int(w["n_outputs"]),
                batch_size=int(w["batch_size"]), max_epochs=int(h.epochs), digest=self.table.digest)
            self._steps = int(w["steps_per_epoch"])
        except (KeyError, TypeError, ValueError) as err:
            raise TableError(f"the table {h.name!r} has an incomplete workload header {w}: {err}") from err
        self.epochs = int(h.epochs)
        self.batch_size = self.workload.batch_size
        self.device = torch.device("cpu")
        self.precision = "fp32"
        self._auto = (False, False)
        self.seed = int(seed)
        self.compile = False
        self.checkpoint_every = 1
        self._splits = None
        self.outside = outside
        self.seeds = seeds

    def __repr__(self) -> str:
        return f"Replay({self.table.header.name!r}, rows={len(self.table)}, outside={self.outside!r})"

    # ------------------------------------------------------------------ what a trainer tells
    def spec(self) -> dict[str, Any]:
        """A JSON-ready description; the workload is the table (a replayed study reopens with `trainer=`)."""
        h = self.table.header
        return {
            "workload": {"name": self.workload.name, "replay": h.name, "table": self.table.digest},
            "workload_name": self.workload.name,
            "metric": self.workload.metric,
            "data": self.workload.fingerprint(),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "precision": self.precision,
            "seed": self.seed,
            "compile": False,
            "replay": {"table": h.name, "digest": self.table.digest, "outside": self.outside, "seeds": self.seeds},
        }

    def derive(self, *, epochs: int | None = None, seed: int | None = None) -> Replay:
        """This replay with another seed (`epochs` must be the table's: its schedules were recorded for that length).

        Raises:
            TableError: `epochs` differs from the table's.
        """
        if epochs is not None and epochs != self.epochs:
            raise TableError(f"the table {self.table.header.name!r} recorded {self.epochs}-epoch runs (their "
                             f"learning-rate schedules end there); a replay cannot shorten them to {epochs} epochs")
        return Replay(self.table, seed=self.seed if seed is None else seed, outside=self.outside, seeds=self.seeds)

    def steps_per_epoch(self, batch_size: int) -> int:
        """Optimizer steps per epoch of the recorded workload."""
        return self._steps

    def check_space(self, space: Any) -> None:
        """Raise `TableError` unless `space` is the table's own (outside="error") or nearest lookups may serve it."""
        if self.outside == "nearest":
            return
        if json.loads(space.to_json()) != self.table.header.space:
            raise TableError(
                f"the study's space is not the replay table {self.table.header.name!r}'s own: a strategy would propose "
                f"configurations it does not hold. Use its space (trainers.replay.table_space(replay)), or "
                f"Replay(..., outside='nearest') to answer with the nearest recorded configuration (a surrogate)")

    def size(self, config: Mapping[str, Any]) -> dict[str, int]:
        """The recorded model size of `config` ({} if not recorded or not in the table)."""
        curve = self._find(config, self.seed, quiet=True)
        if curve is None or curve[0].n_params is None:
            return {}
        out = {"n_params": int(curve[0].n_params)}
        if curve[0].flops is not None:
            out["flops"] = int(curve[0].flops)
        return out

    def _find(self, config: Mapping[str, Any], seed: int, quiet: bool = False) -> tuple[Curve, dict | None] | None:
        table = self.table
        key = config_key(config)
        recorded = table._seeds.get(key)
        nearest = None
        if recorded is None:
            if self.outside == "error":
                if quiet:
                    return None
                raise TableError(f"the configuration {dict(config)} is not in the replay table "
                                 f"{table.header.name!r} ({len(table._seeds)} configurations); propose from the "
                                 f"table's space, or use Replay(..., outside='nearest') for a surrogate answer")
            nearest = table.nearest(config)
            key = config_key(nearest)
            recorded = table._seeds[key]
        if seed not in recorded:
            if self.seeds == "exact":
                if quiet:
                    return None
                raise TableError(f"the configuration {dict(config)} was recorded on seeds {recorded}, not on seed "
                                 f"{seed}; replay seed {recorded[0]}, or Replay(..., seeds='any')")
            seed = recorded[0]
        return table._index[(key, seed)], nearest

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        config: Mapping[str, Any],
        *,
        until_epoch: int | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        report: Callable[[EpochResult], Decision | None] | None = None,
        seed: int | None = None,
        checkpoint_seconds: float | None = None,
        before_epoch: Callable[[Any, int], None] | None = None,
    ) -> TrainResult:
        """Replay one configuration's recorded run (same arguments and result as `Trainer.fit`).

        Raises:
            TableError: `config` (on that seed) is not in the table and `outside="error"`.
            CheckpointError: The checkpoint belongs to another configuration or seed.
            ValueError: `report` returned something other than continue / stop / pause.
        """
        config = dict(config)
        seed = self.seed if seed is None else int(seed)
        until = self.epochs if until_epoch is None else int(until_epoch)
        if until < 1:
            raise ConfigError(f"until_epoch must be >= 1, got {until_epoch!r}")
        until = min(until, self.epochs)
        curve, nearest = self._find(config, seed)  # type: ignore[misc]
        path = Path(checkpoint) if checkpoint is not None else None
        history: list[EpochResult] = []
        if path is not None and path.exists():
            state = load_checkpoint(path)
            if state.get("config") != config or state.get("seed") != seed or "replay" not in state:
                raise CheckpointError(f"{path} belongs to another run (config or seed differ, or not a replay)")
            history = [EpochResult(**e) for e in state["history"]]
        control = RunControl(path, until, report, checkpoint_seconds, self.checkpoint_every)

        def save(p: Path) -> None:
            save_checkpoint(p, {"config": config, "seed": seed, "replay": self.table.digest,
                                "history": [asdict(e) for e in history]}, durable=False)

        status: Status = "paused"
        attrs = {"replay": {"nearest": nearest}} if nearest is not None else {}
        for epoch in curve.epochs[len(history):until]:
            history.append(epoch)
            if not math.isfinite(epoch.train_loss):
                status = "diverged"
                break
            ended = control.after_epoch(epoch, save)
            if ended is not None:
                status = ended
                break
        else:
            if len(history) >= self.epochs:
                status = "complete"
        test = curve.test_metric if status == "complete" else None
        return TrainResult(status=status, epochs=history, val_metric=history[-1].val_metric if history else None,
                           best_val_metric=best_metric(history, self.workload),  # type: ignore[arg-type]
                           test_metric=test, checkpoint=control.settle(status), seed=seed,
                           checkpoint_error=control.save_error, attrs=attrs)

    # ------------------------------------------------------------------ nothing to train
    def _no_data(self, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError(f"{self!r} replays recorded curves and holds no data or models; this needs a real "
                          f"trainers.Trainer")

    split = batches = evaluate = build = generator = _no_data  # type: ignore[assignment]


def table_space(replay: Replay | ReplayTable) -> Space:
    """The space of a table's configurations, for a study that replays it."""
    return (replay.table if isinstance(replay, Replay) else replay).space


__all__ = ["METRICS", "Curve", "Replay", "ReplayTable", "ReplayWorkload", "TableError", "TableHeader",
           "table_space"]
