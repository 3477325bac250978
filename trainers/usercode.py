"""What `Function` and `Objective` share: the user's function named by reference, and saveable state.

A study stores the user's function as `module:qualified.name` and a worker (a pool process, a
Ray actor) imports it from there; a study reopened from its database imports it only under the
trust rules of `spaces.trust` (`trust=["mypkg"]`, CLI `--trust mypkg`). A function defined in the
script that runs the study (`__main__`) is stored as `__main__:name`: rerunning the script
reopens the study, and `tunelab show / report / list` read it without importing anything.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from tunelab.spaces.errors import CheckpointError, ConfigError

DIRECTIONS = ("minimize", "maximize")
STATE_DEPTH = 32
MAX_BOUND_CHARS = 100_000  # JSON of the arguments a functools.partial binds, stored with the study


def reference(fn: Callable[..., Any], what: str) -> str:
    """`module:qualified.name` of a function a worker can import (of the function a `functools.partial` binds).

    Raises:
        ConfigError: `fn` is not a function importable by name (a lambda, a local function, a
            bound method), or a partial binds values that are not plain JSON: a worker or a
            reopened study could not rebuild it.
    """
    if isinstance(fn, functools.partial):
        bound(fn, what)
        return reference(fn.func, what)
    if not callable(fn):
        raise ConfigError(f"{what} needs a function, got {fn!r}")
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise ConfigError(
            f"{what} needs a function defined at the top level of a module or script (workers import it by name), "
            f"got {qualname or fn!r}; move it out of the function or lambda it is defined in")
    return f"{module}:{qualname}"


def bound(fn: Callable[..., Any], what: str) -> dict[str, Any] | None:
    """The arguments a `functools.partial` binds, `{"args": [...], "kwargs": {...}}` (None for a plain function).

    Raises:
        ConfigError: They are not plain JSON values (numbers, strings, lists, dicts), which a
            study stores to rebuild the partial.
    """
    if not isinstance(fn, functools.partial):
        return None
    if isinstance(fn.func, functools.partial):
        raise ConfigError(f"{what} takes one functools.partial of a top-level function, not a partial of a partial")
    values = {"args": list(fn.args), "kwargs": dict(fn.keywords)}
    try:
        text = json.dumps(values, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{what}: the functools.partial binds {values!r}, which a study cannot store ({err}); bind "
                          f"plain numbers, strings, lists and dicts only") from None
    if len(text) > MAX_BOUND_CHARS:
        raise ConfigError(f"{what}: the functools.partial binds {len(text)} characters of JSON, more than "
                          f"{MAX_BOUND_CHARS}; pass large data another way (a file the function reads)")
    return json.loads(text)


def rebind(fn: Callable[..., Any], values: Any, where: str) -> Callable[..., Any]:
    """`functools.partial(fn, *args, **kwargs)` of stored `bound` values (`fn` as is when there are none).

    Raises:
        ConfigError: The stored values are not `{"args": list, "kwargs": dict of str}`.
    """
    if values is None:
        return fn
    if (not isinstance(values, dict) or not isinstance(values.get("args"), list)
            or not isinstance(values.get("kwargs"), dict) or not all(isinstance(k, str) for k in values["kwargs"])):
        raise ConfigError(f"{where}: the bound arguments must be {{'args': [...], 'kwargs': {{...}}}}, got "
                          f"{str(values)[:200]}")
    return functools.partial(fn, *values["args"], **values["kwargs"])


def function_name(fn: Callable[..., Any], default: str) -> str:
    """The name of `fn` (of the function a partial binds)."""
    return getattr(fn.func if isinstance(fn, functools.partial) else fn, "__name__", default)


def check_objective(metric: Any, direction: Any, what: str) -> None:
    """Refuse a metric that is not a name, or a direction that is not minimize / maximize.

    Raises:
        ConfigError: Naming the argument and what it takes.
    """
    if not isinstance(metric, str) or not metric:
        raise ConfigError(f"{what}(metric=...) must name the reported value to optimise, got {metric!r}")
    if direction not in DIRECTIONS:
        raise ConfigError(f"{what}(direction=...) must be 'minimize' or 'maximize', got {direction!r}")


def number(value: Any, name: str, what: str) -> float:
    """A reported value as a float (NaN and inf included).

    Raises:
        ConfigError: The value is not a number (naming it).
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # numpy scalars
        except (TypeError, ValueError):
            raise ConfigError(f"{what} reported {name}={value!r}, which is not a number") from None
    return float(value)


def check_state(state: Any, path: str = "state", depth: int = 0) -> None:
    """Refuse what a checkpoint cannot hold: `torch.load(weights_only=True)` reads tensors and plain values only.

    Raises:
        CheckpointError: Naming the offending key and its type, and the fix.
    """
    if depth > STATE_DEPTH:
        raise CheckpointError(f"run.save: {path} nests deeper than {STATE_DEPTH} levels")
    if state is None or isinstance(state, (bool, int, float, str, torch.Tensor)):
        if isinstance(state, float) and not math.isfinite(state):
            return
        return
    if isinstance(state, Mapping):
        for k, v in state.items():
            if not isinstance(k, (str, int)):
                raise CheckpointError(f"run.save: {path} has the key {k!r} of type {type(k).__name__}; use str or "
                                      f"int keys")
            check_state(v, f"{path}[{k!r}]", depth + 1)
        return
    if isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            check_state(v, f"{path}[{i}]", depth + 1)
        return
    hint = ("call .state_dict() on it" if hasattr(state, "state_dict") else
            "convert it with torch.as_tensor(...)" if hasattr(state, "__array__") else
            "keep tensors, numbers, strings, lists and dicts only")
    raise CheckpointError(f"run.save: {path} is a {type(state).__module__}.{type(state).__qualname__}, which a "
                          f"checkpoint cannot hold (they load with torch.load(weights_only=True)); {hint}")


class UserCode:
    """What `Function` and `Objective` share as `Trainable`s: no tunelab network, and the user's names.

    Subclasses set `_name`, `_metric` and `_direction`.
    """

    trains_models = False
    vectorises = False
    input_shape = None
    n_outputs = None
    batch_size = 1
    _name: str
    _metric: str
    _direction: str

    @property
    def name(self) -> str:
        """The workload's name (the function's)."""
        return self._name

    @property
    def metric(self) -> str:
        """The optimised value's name."""
        return self._metric

    @property
    def direction(self) -> str:
        """"minimize" or "maximize"."""
        return self._direction

    def size(self, config: Mapping[str, Any]) -> dict[str, int]:
        """{}: the user's code builds whatever it trains; tunelab measures no network."""
        return {}

    def _bound(self) -> dict[str, Any]:
        """`{"bound": ...}` for a spec when the function is a `functools.partial` (else {})."""
        values = bound(getattr(self, "fn", None), type(self).__name__)
        return {} if values is None else {"bound": values}
