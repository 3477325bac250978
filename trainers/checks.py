"""Checks of a space against what trains it, made when a study is created (before anything trains).

A space the workload cannot build (`spaces.cnn(dim=2)` on 1-D signals) or a range no optimizer
accepts (a learning rate <= 0) would fail every trial that draws it; these checks refuse it
at once with a `ConfigError` that names the parameter.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tunelab.spaces import ConfigError, Float, Int, Space, build_model, build_optimizer, build_schedule
from tunelab.trainers.workload import Workload


def check_fits(space: Space, workload: Workload) -> None:
    """Build the models of a few configs of `space` for `workload`; raise ConfigError if one cannot be."""
    w = workload
    x = w.train.x[:2] if hasattr(w.train, "x") else torch.stack([torch.as_tensor(w.train[i][0]) for i in range(2)])
    configs = [space.default(), *(space.sample(np.random.default_rng([7, i])) for i in range(4))]
    for config in configs:
        try:
            model = build_model(config, w.input_shape, w.n_outputs)
            with torch.no_grad():
                model.eval()(x.float() if x.is_floating_point() else x)  # token ids stay integers
        except Exception as err:
            shown = {k: v for k, v in config.items() if k.startswith("model")}
            raise ConfigError(
                f"the space does not fit the workload {w.name!r} (input shape {w.input_shape}, {w.n_outputs} "
                f"outputs): building the model of {shown} failed with {type(err).__name__}: {err}. Use a model "
                f"space for this input (e.g. spaces.cnn(dim={len(w.input_shape) - 1 if len(w.input_shape) > 1 else 1})"
                f" or spaces.mlp())"
            ) from err


def check_trains(space: Space) -> None:
    """Build the optimizer and schedule at both ends of every numeric range of `space`; ConfigError if one cannot be.

    A user-widened range is valid (the space defines it), but a value no optimizer accepts
    (a learning rate <= 0, a momentum >= 1) would fail every trial that draws it, so it is refused
    here, naming the parameter, instead of 40 trials later.
    """
    if space in _TRAINABLE:
        return
    # The first torch optimizer a process builds imports torch._dynamo (about 2 s): torch 2.13 wraps
    # `Optimizer.add_param_group` (and `step`, `zero_grad`) in `torch._disable_dynamo`, which imports it on first
    # call. No `step()` is taken here; the first trial would pay the same import when it builds its optimizer.
    probe = torch.nn.Linear(2, 2)
    rng = np.random.default_rng(11)
    seen: dict[tuple[str, ...], dict[str, Any]] = {}
    for config in [space.default(), *(space.sample(rng) for _ in range(40))]:
        seen.setdefault(tuple(sorted(config)), config)  # one config per set of active branches
    for config in seen.values():
        for name in config:
            param = space[name]
            if not isinstance(param, (Float, Int)) or name.startswith("model"):
                continue
            for end in (param.low, param.high):
                trial = {**config, name: end}
                try:
                    optimizer = build_optimizer(trial, probe)
                    build_schedule(trial, optimizer, 10)
                except Exception as err:
                    raise ConfigError(
                        f"the space's range of {name} ({param.describe()}) includes {end!r}, which cannot train: "
                        f"{type(err).__name__}: {err}. Narrow it with space.replace(**{{{name!r}: ...}})"
                    ) from err
    _TRAINABLE.add(space)


_TRAINABLE: set[Space] = set()  # spaces already checked in this process (spaces are immutable)
