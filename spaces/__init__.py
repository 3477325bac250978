"""What can be searched: parameters, `Space`, and the optimizer, schedule and architecture spaces.

Submodules: `regularizers` (dropout, input noise and shift layers, named after their
hyperparameters) and `stn` (hyperlayers: the self-tuning variant of the MLP and CNN).

`spaces` imports nothing else of tunelab; `trainers` builds models and optimizers through it.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below, for readers and type checkers; at run time each loads on first use
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

# public name -> the submodule that defines it. Importing `tunelab.spaces` imports none of them, so that
# `tunelab.spaces.errors` and `tunelab.spaces.trust` stay cheap (the CLI's `--help` needs no torch). The light
# modules load one by one; the first name of a module that needs torch loads all of those together, because
# they fill one another's registries (`cells` registers the "cells" model family in `models`).
_LIGHT = {
    "errors": ("CheckpointError", "ConfigError", "SpaceError", "TunelabError", "UnknownNameError",
               "UntrustedImportError", "WorkloadError"),
    "params": ("Categorical", "Fixed", "Float", "Int", "Param"),
    "registry": ("Registry",),
    "space": ("Choice", "Config", "Entry", "Slot", "Space", "as_rng", "branch", "config_key"),
}
_HEAVY = {  # in import order
    "regularizers": (),
    "models": ("PLAIN", "Layers", "ModelSpec", "build_model", "cnn", "cnn_network", "mlp", "mlp_network",
               "model_space", "models"),
    "cells": ("DEFAULT_OPS", "EDGES", "CellNetwork", "CellOp", "Genotype", "cell_ops", "cells", "genotype"),
    "optimizers": ("OptimizerSpec", "build_optimizer", "optimizer_config", "optimizer_spec", "optimizers"),
    "schedules": ("Multiplier", "ScheduleSpec", "build_schedule", "schedule_multiplier", "schedules"),
    "size": ("ModelSize", "model_size", "param_count"),
    "stn": (),
}
_SUBMODULES = ("regularizers", "stn")  # exported as modules
_WHERE = {name: module for group in (_LIGHT, _HEAVY) for module, names in group.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES or _WHERE.get(name) in _HEAVY:
        for module, names in _HEAVY.items():
            loaded = importlib.import_module(f"{__name__}.{module}")
            globals().update({n: getattr(loaded, n) for n in names})
        globals().update({n: sys.modules[f"{__name__}.{n}"] for n in _SUBMODULES})
    elif name in _WHERE:
        globals()[name] = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return globals()[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE, *_SUBMODULES})


class _Package(types.ModuleType):
    """This package's module type: `spaces.models`, `optimizers`, `schedules` and `cells` keep their public meaning.

    Importing a submodule sets the package attribute of its name to the module; eagerly imported,
    the registry of the same name was bound after it. Loaded lazily, the submodule may come later
    (another module may import `tunelab.spaces.models` directly), so that binding is refused here
    and the name keeps meaning the registry (or the function `cells`).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _WHERE.get(name) == name:
            return  # a registry bound before stays; otherwise `__getattr__` loads it when it is asked for
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

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
