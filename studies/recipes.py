"""How a study's trainer and workload are stored and rebuilt from the database alone."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from spaces.errors import WorkloadError
from trainers import Trainer


def identity(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a trainer spec that define what a trial measures (device and precision excluded)."""
    return {k: spec.get(k) for k in ("workload", "epochs", "batch_size", "seed")}


def build_trainer(spec: Mapping[str, Any], *, device: str = "auto") -> Trainer:
    """Rebuild the trainer of a stored spec (`Trainer.spec()`).

    Raises:
        WorkloadError: The workload has no recipe (it was built from in-memory tensors) or its
            factory cannot be imported.
    """
    recipe = spec.get("workload") or {}
    factory = recipe.get("factory")
    if not factory:
        raise WorkloadError(
            f"the study's workload {recipe.get('name')!r} was built from in-memory data and has no recipe to "
            f"rebuild it; pass the trainer again: studies.load(name, storage, trainer=Trainer(workload, ...)), "
            f"or give the Workload a recipe={{'factory': 'module:function', 'kwargs': {{...}}}}"
        )
    module, _, func = str(factory).partition(":")
    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as err:
        raise WorkloadError(
            f"cannot import the workload factory {factory!r} stored with the study ({err}); make it importable "
            f"or pass trainer= to studies.load"
        ) from err
    workload = fn(**dict(recipe.get("kwargs") or {}))
    return Trainer(
        workload,
        epochs=spec.get("epochs"),
        batch_size=spec.get("batch_size"),
        device=device,
        seed=int(spec.get("seed", 0)),
        compile=bool(spec.get("compile", False)),
    )
