"""The size of the network a config describes: parameter count and forward FLOPs.

Measured without allocating or initialising weights: the network is built on PyTorch's `meta`
device and one example is pushed through it under `torch.utils.flop_counter.FlopCounterMode`,
which counts the floating-point operations of matrix multiplications and convolutions (a
multiply and an add count as two; elementwise operations, pooling and normalisation are not
counted, as in most NAS papers' FLOPs). Nothing touches a random generator.

Only a config's architecture identity (`spaces.models.shape_identity`: its `model` entries less
those its family declares shape-free, such as dropout rates and activations) decides the size,
so results are cached on it: a search that varies learning rates, dropout or activations
measures each architecture once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tunelab.spaces.errors import ConfigError
from tunelab.spaces.models import build_model, model_part, models, shape_identity
from tunelab.spaces.params import Value


@dataclass(frozen=True)
class ModelSize:
    """Size of a network.

    Attributes:
        params: Trainable and frozen parameters (elements of every `nn.Parameter`).
        flops: Floating-point operations of one forward pass of one example.
    """

    params: int
    flops: int


class _Cache:
    """Sizes by `(architecture identity, input shape, outputs)`, the oldest dropped past `limit` entries."""

    def __init__(self, measure: Callable[[Mapping[str, Value], tuple[int, ...], int], Any], limit: int) -> None:
        self.measure, self.limit = measure, limit
        self.entries: dict[tuple[Any, ...], Any] = {}
        self.lock = threading.Lock()

    def get(self, config: Mapping[str, Value], input_shape: tuple[int, ...], n_outputs: int) -> Any:
        key = (shape_identity(config), input_shape, n_outputs)
        with self.lock:
            if key in self.entries:
                return self.entries[key]
        value = self.measure(config, input_shape, n_outputs)  # any config of this identity gives this value
        with self.lock:
            if len(self.entries) >= self.limit:
                self.entries.pop(next(iter(self.entries)))
            self.entries[key] = value
        return value


def _meta_model(config: Mapping[str, Value], input_shape: tuple[int, ...], n_outputs: int) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model(model_part(config), input_shape, n_outputs)


def _analytic(config: Mapping[str, Value], input_shape: tuple[int, ...], n_outputs: int) -> ModelSize | None:
    """The size from the family's `ModelSpec.size`, when it has one and the config names the family."""
    name = config.get("model")
    spec = models.get(name) if isinstance(name, str) and name in models else None
    if spec is None or spec.size is None:
        return None
    hp = {k[len("model."):]: v for k, v in config.items() if k.startswith("model.")}
    try:
        params, flops = spec.size(hp, input_shape, n_outputs)
    except KeyError as exc:
        raise ConfigError(f"model {name!r}: the config lacks model.{exc.args[0]}; include the model space") from None
    return ModelSize(params=int(params), flops=int(flops))


def _count(config: Mapping[str, Value], input_shape: tuple[int, ...], n_outputs: int) -> int:
    known = _analytic(config, input_shape, n_outputs)
    if known is not None:
        return known.params
    return int(sum(p.numel() for p in _meta_model(config, input_shape, n_outputs).parameters()))


def _measure(config: Mapping[str, Value], input_shape: tuple[int, ...], n_outputs: int) -> ModelSize:
    known = _analytic(config, input_shape, n_outputs)
    if known is not None:
        return known
    model = _meta_model(config, input_shape, n_outputs)
    params = sum(p.numel() for p in model.parameters())
    model.eval()
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.empty((1, *input_shape), device="meta"))
    return ModelSize(params=int(params), flops=int(counter.get_total_flops()))


_COUNTS = _Cache(_count, 8192)
_SIZES = _Cache(_measure, 4096)


def cached_sizes() -> int:
    """How many measurements `model_size` holds (one per architecture identity, input shape and outputs)."""
    return len(_SIZES.entries)


def param_count(config: Mapping[str, Value], input_shape: Sequence[int], n_outputs: int) -> int:
    """Parameter count of the network `config` describes (cheaper than `model_size`: no forward pass).

    Raises:
        ConfigError: The config does not build a network for this input.
    """
    return _guarded(_COUNTS, config, input_shape, n_outputs)


def model_size(config: Mapping[str, Value], input_shape: Sequence[int], n_outputs: int) -> ModelSize:
    """Parameter count and forward FLOPs per example of the network `config` describes.

    Args:
        config: A configuration with a model part (`model`, `model.*`).
        input_shape: One example's shape, without the batch dimension.
        n_outputs: Number of outputs.

    Returns:
        The network's `ModelSize`.

    Raises:
        ConfigError: The config does not build a network for this input, or the network
            cannot run on the meta device (a custom module that reads tensor values).
    """
    return _guarded(_SIZES, config, input_shape, n_outputs)


def _guarded(cache: _Cache, config: Mapping[str, Value], input_shape: Sequence[int], n_outputs: int) -> Any:
    shape = tuple(int(s) for s in input_shape)
    try:
        return cache.get(config, shape, int(n_outputs))
    except ConfigError:
        raise
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
        part = json.dumps(model_part(config), sort_keys=True, default=repr)
        raise ConfigError(
            f"cannot measure the network of {part} on input {shape}: {exc}. Its forward pass must "
            "run on the meta device (no .item() or data-dependent shapes) for parameter and FLOP counts"
        ) from None


__all__ = ["ModelSize", "cached_sizes", "model_size", "param_count"]
