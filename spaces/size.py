"""The size of the network a config describes: parameter count and forward FLOPs.

Measured without allocating or initialising weights: the network is built on PyTorch's `meta`
device and one example is pushed through it under `torch.utils.flop_counter.FlopCounterMode`,
which counts the floating-point operations of matrix multiplications and convolutions (a
multiply and an add count as two; elementwise operations, pooling and normalisation are not
counted, as in most NAS papers' FLOPs). Nothing touches a random generator.

Only the `model` part of a config decides the size, so results are cached on it: a search
that varies learning rates measures each architecture once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from tunelab.spaces.errors import ConfigError
from tunelab.spaces.models import build_model
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


def _model_part(config: Mapping[str, Value]) -> str:
    return json.dumps({k: v for k, v in config.items() if k == "model" or k.startswith("model.")}, sort_keys=True)


def _meta_model(model_json: str, input_shape: tuple[int, ...], n_outputs: int) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model(json.loads(model_json), input_shape, n_outputs)


@lru_cache(maxsize=8192)
def _count(model_json: str, input_shape: tuple[int, ...], n_outputs: int) -> int:
    return int(sum(p.numel() for p in _meta_model(model_json, input_shape, n_outputs).parameters()))


@lru_cache(maxsize=4096)
def _measure(model_json: str, input_shape: tuple[int, ...], n_outputs: int) -> ModelSize:
    model = _meta_model(model_json, input_shape, n_outputs)
    params = sum(p.numel() for p in model.parameters())
    model.eval()
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.empty((1, *input_shape), device="meta"))
    return ModelSize(params=int(params), flops=int(counter.get_total_flops()))


def param_count(config: Mapping[str, Value], input_shape: Sequence[int], n_outputs: int) -> int:
    """Parameter count of the network `config` describes (cheaper than `model_size`: no forward pass).

    Raises:
        ConfigError: The config does not build a network for this input.
    """
    return _guarded(_count, config, input_shape, n_outputs)


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
    return _guarded(_measure, config, input_shape, n_outputs)


def _guarded(measure: Any, config: Mapping[str, Value], input_shape: Sequence[int], n_outputs: int) -> Any:
    shape = tuple(int(s) for s in input_shape)
    try:
        return measure(_model_part(config), shape, int(n_outputs))
    except ConfigError:
        raise
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"cannot measure the network of {_model_part(config)} on input {shape}: {exc}. Its forward pass must "
            "run on the meta device (no .item() or data-dependent shapes) for parameter and FLOP counts"
        ) from None


__all__ = ["ModelSize", "model_size", "param_count"]
