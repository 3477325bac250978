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

The tables are `trainers.replay_table`'s: the whole curve of every recorded run, with its
configuration, seed, test metric and model size; `studies.to_table` writes one from any study
and `benchmarks/record_tables.py` records the shipped ones.

`Replay` is a `Trainer` to every caller: studies, strategies, budgets, executors and
`studies.compare` run unchanged, and strategies see only the study's history, never the table.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from tunelab.spaces.errors import CheckpointError, ConfigError
from tunelab.spaces.space import Space, config_key
from tunelab.trainers.checkpoint import load_checkpoint, save_checkpoint
from tunelab.trainers.replay_table import METRICS, OUTSIDE, Curve, ReplayTable, TableError, TableHeader
from tunelab.trainers.trainer import Decision, EpochResult, RunControl, Status, Trainer, TrainResult, best_metric
from tunelab.trainers.workload import TaskMetric


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
    objective: str | None = None
    objective_direction: str | None = None
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
                batch_size=int(w["batch_size"]), max_epochs=int(h.epochs), digest=self.table.digest,
                objective=h.metric, objective_direction=h.direction)  # a recorded task's own metric (e.g. bpc)
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

    trains_models = False  # it answers from a table: nothing to differentiate through or measure
    measures_size = True  # `size` answers from the table (n_params and flops as recorded)
    vectorises = False

    def check(self, space: Any) -> None:
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
        keep_final: Callable[[EpochResult], bool] | None = None,
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
        control = RunControl(path, until, report, checkpoint_seconds, self.checkpoint_every, final=self.epochs,
                             keep_final=keep_final)

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
