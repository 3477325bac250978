"""Hard limits on the networks a strategy proposes: parameters, FLOPs and latency on the study's device.

`NetworkLimits.allows(config, history)` measures the network a config describes on the study's
workload shapes (`History.input_shape`, `n_outputs`): its parameter count analytically where
possible (`spaces.param_count`), its FLOPs on the meta device (`spaces.model_size`), and its
inference latency by timing it on the study's device (`trainers.latency`, once per network). A
strategy redraws configurations it does not allow (`search.Evolution`'s `max_params`,
`max_flops`, `max_latency_ms`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunelab.search.base import History
from tunelab.spaces import ConfigError, model_size, param_count


@dataclass(frozen=True)
class NetworkLimits:
    """The largest network a strategy may propose (None: no limit).

    Attributes:
        owner: The strategy's name, for messages.
        max_params: Parameters.
        max_flops: Forward FLOPs per example.
        max_latency_ms: Milliseconds per example on the study's device.
    """

    owner: str
    max_params: int | None = None
    max_flops: int | None = None
    max_latency_ms: float | None = None

    def __str__(self) -> str:
        parts = [f"{k}={v}" for k, v in (("max_params", self.max_params), ("max_flops", self.max_flops),
                                         ("max_latency_ms", self.max_latency_ms)) if v]
        return ", ".join(parts)

    def allows(self, config: Mapping[str, Any], history: History) -> bool:
        """Whether the network of `config` respects every limit.

        Raises:
            ConfigError: A limit is set but `history` does not say the workload's shapes (or,
                for latency, the device).
        """
        if self.max_params is None and self.max_flops is None and self.max_latency_ms is None:
            return True
        if history.input_shape is None or history.n_outputs is None:
            raise ConfigError(
                f"{self.owner}(max_params=/max_flops=/max_latency_ms=) measures networks on the study's workload, but "
                f"this history has no input_shape/n_outputs: run it in a study (of a trainers.Trainer), or build "
                f"History(..., input_shape=, n_outputs=)"
            )
        if self.max_latency_ms is not None and not self._fast_enough(config, history):
            return False
        if self.max_params is None and self.max_flops is None:
            return True
        if self.max_flops is None:  # the parameter count alone needs no forward pass
            return param_count(config, history.input_shape, history.n_outputs) <= self.max_params
        size = model_size(config, history.input_shape, history.n_outputs)
        return (self.max_params is None or size.params <= self.max_params) and size.flops <= self.max_flops

    def _fast_enough(self, config: Mapping[str, Any], history: History) -> bool:
        """Whether `config`'s network runs within `max_latency_ms` on the study's device (timed once per network)."""
        import torch

        from tunelab.trainers.latency import LATENCIES

        if history.device is None:
            raise ConfigError(f"{self.owner}(max_latency_ms=...) times networks on the study's device, but this "
                              f"history names none: run it in a study of a trainers.Trainer, or build "
                              f"History(device='cpu')")
        latency = LATENCIES.get(config, history.input_shape, history.n_outputs, torch.device(history.device))
        return latency <= self.max_latency_ms


__all__ = ["NetworkLimits"]
