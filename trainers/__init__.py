"""How configurations are trained: `Workload`, `Trainer`, `Population`, checkpoints and built-in workloads.

The pieces the gradient-based strategies reuse are public: `batches` (device-ready batch
iterators), `evaluate`, `make_step` (one optimisation step per optimizer style),
`save_checkpoint` / `load_checkpoint`, and `Trainer.build` / `Trainer.split`.
"""

from __future__ import annotations

from tunelab.trainers import workloads
from tunelab.trainers.checkpoint import capture_rng, load_checkpoint, restore_rng, run_rng, save_checkpoint
from tunelab.trainers.data import batches, to_device
from tunelab.trainers.population import Member, Population
from tunelab.trainers.replay import Replay, ReplayTable, TableError
from tunelab.trainers.steps import frozen_bn_stats, make_step
from tunelab.trainers.trainer import (
    DECISIONS,
    EpochResult,
    RunControl,
    Trainer,
    TrainResult,
    best_metric,
    evaluate,
    resolve_device,
    resolve_precision,
)
from tunelab.trainers.workload import TensorSplit, Workload

__all__ = [
    "DECISIONS",
    "EpochResult",
    "Member",
    "Population",
    "Replay",
    "ReplayTable",
    "RunControl",
    "TableError",
    "TensorSplit",
    "TrainResult",
    "Trainer",
    "Workload",
    "batches",
    "best_metric",
    "capture_rng",
    "evaluate",
    "frozen_bn_stats",
    "load_checkpoint",
    "make_step",
    "resolve_device",
    "resolve_precision",
    "restore_rng",
    "run_rng",
    "save_checkpoint",
    "to_device",
    "workloads",
]
