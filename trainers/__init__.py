"""How configurations are trained: `Workload`, `Trainer`, `Function`, `Objective`, populations and checkpoints.

Everything a study trains with is a `Trainable` (`trainers.protocol`): the shared `Trainer` on a
`Workload`, a recorded table (`Replay`), your own training loop (`Function`) or any black-box
function of a configuration (`Objective`).

The pieces the gradient-based strategies reuse are public: `batches` (device-ready batch
iterators), `evaluate`, `make_step` (one optimisation step per optimizer style),
`save_checkpoint` / `load_checkpoint`, and `Trainer.build` / `Trainer.split`.
"""

from __future__ import annotations

from tunelab.trainers import workloads
from tunelab.trainers.checkpoint import capture_rng, load_checkpoint, restore_rng, run_rng, save_checkpoint
from tunelab.trainers.data import batches, to_device
from tunelab.trainers.evaluation import evaluate, evaluate_all, resolve_device, resolve_precision
from tunelab.trainers.function import Function, Run, RunStopped
from tunelab.trainers.objective import Objective
from tunelab.trainers.population import Member, Population
from tunelab.trainers.protocol import Trainable, is_trainable
from tunelab.trainers.replay import Replay, ReplayTable, TableError
from tunelab.trainers.routines import RunRequest
from tunelab.trainers.run import DECISIONS, EpochResult, RunControl, TrainResult, best_metric
from tunelab.trainers.steps import frozen_bn_stats, make_step
from tunelab.trainers.trainer import Trainer
from tunelab.trainers.workload import TensorSplit, Workload

__all__ = [
    "DECISIONS",
    "EpochResult",
    "Function",
    "Member",
    "Objective",
    "Population",
    "Replay",
    "ReplayTable",
    "Run",
    "RunControl",
    "RunRequest",
    "RunStopped",
    "TableError",
    "TensorSplit",
    "TrainResult",
    "Trainable",
    "Trainer",
    "Workload",
    "batches",
    "best_metric",
    "capture_rng",
    "evaluate",
    "evaluate_all",
    "frozen_bn_stats",
    "is_trainable",
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
