"""What can be searched: parameters, `Space`, and the optimizer, schedule and architecture spaces.

Submodules: `regularizers` (dropout, input noise and shift layers, named after their
hyperparameters) and `stn` (hyperlayers: the self-tuning variant of the MLP and CNN).

`spaces` imports nothing else of tunelab; `trainers` builds models and optimizers through it.
"""

from __future__ import annotations

from tunelab.spaces import regularizers, stn
from tunelab.spaces.cells import DEFAULT_OPS, EDGES, CellNetwork, CellOp, Genotype, cell_ops, cells, genotype
from tunelab.spaces.errors import (
    CheckpointError,
    ConfigError,
    SpaceError,
    TunelabError,
    UnknownNameError,
    UntrustedImportError,
    WorkloadError,
)
from tunelab.spaces.models import (
    PLAIN,
    Layers,
    ModelSpec,
    build_model,
    cnn,
    cnn_network,
    mlp,
    mlp_network,
    model_space,
    models,
)
from tunelab.spaces.optimizers import OptimizerSpec, build_optimizer, optimizer_config, optimizer_spec, optimizers
from tunelab.spaces.params import Categorical, Fixed, Float, Int, Param
from tunelab.spaces.registry import Registry
from tunelab.spaces.schedules import Multiplier, ScheduleSpec, build_schedule, schedule_multiplier, schedules
from tunelab.spaces.size import ModelSize, model_size, param_count
from tunelab.spaces.space import Choice, Config, Entry, Slot, Space, as_rng, branch, config_key

__all__ = [
    "DEFAULT_OPS",
    "EDGES",
    "PLAIN",
    "Categorical",
    "CellNetwork",
    "CellOp",
    "CheckpointError",
    "Choice",
    "Config",
    "ConfigError",
    "Entry",
    "Fixed",
    "Float",
    "Genotype",
    "Int",
    "Layers",
    "ModelSize",
    "ModelSpec",
    "Multiplier",
    "OptimizerSpec",
    "Param",
    "Registry",
    "ScheduleSpec",
    "Slot",
    "Space",
    "SpaceError",
    "TunelabError",
    "UnknownNameError",
    "UntrustedImportError",
    "WorkloadError",
    "as_rng",
    "branch",
    "build_model",
    "build_optimizer",
    "build_schedule",
    "cell_ops",
    "cells",
    "cnn",
    "cnn_network",
    "config_key",
    "genotype",
    "mlp",
    "mlp_network",
    "model_size",
    "model_space",
    "models",
    "optimizer_config",
    "optimizer_spec",
    "optimizers",
    "param_count",
    "regularizers",
    "schedule_multiplier",
    "schedules",
    "stn",
]
