"""Inference latency of the network a config describes, timed on a device (hardware-aware search).

Latency is what a hardware-aware search trades accuracy against (FBNet, ProxylessNAS and
Once-for-All measure it on the target device rather than counting FLOPs, because FLOPs predict
it badly across operations). `forward_latency_ms` times a network the way those papers' lookup
tables are built: in evaluation mode and without autograd, after warm-up passes, the median of
repeated forward passes of one batch, with CUDA synchronised around each pass on a GPU (so the
time is the kernels', not their launch's). Inputs are zeros: no random generator is touched.

`LatencyCache` keys results on the config's `model` entries, the input shape, the batch and the
device, so a study that varies learning rates times each network once per process.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

LATENCY_BATCH = 1  # the batch timed: one example, a deployed network's usual request
WARMUP, REPEATS = 3, 15


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_latency_ms(model: nn.Module, input_shape: tuple[int, ...], *, device: torch.device,
                       batch: int = LATENCY_BATCH, warmup: int = WARMUP, repeats: int = REPEATS) -> float:
    """Median milliseconds of one forward pass of `model` on a batch of `batch` examples.

    Args:
        model: The network (moved to `device` by the caller).
        input_shape: One example's shape.
        device: Where it runs.
        batch: Examples per pass.
        warmup: Untimed passes first (allocator, kernels' first-call costs, caches).
        repeats: Timed passes; their median is returned.
    """
    x = torch.zeros((batch, *input_shape), device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            _sync(device)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(x)
                _sync(device)
                times.append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return 1000.0 * statistics.median(times)


class LatencyCache:
    """Latencies by (the config's model entries, input shape, outputs, batch, device); thread-safe."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self.entries: dict[tuple[Any, ...], float] = {}
        self.lock = threading.Lock()

    def get(self, config: Mapping[str, Any], input_shape: tuple[int, ...], n_outputs: int, device: torch.device,
            batch: int = LATENCY_BATCH) -> float:
        """The latency of `config`'s network, timed on first use."""
        from tunelab.spaces import build_model
        from tunelab.spaces.models import model_part

        key = (json.dumps(model_part(config), sort_keys=True, default=str), tuple(input_shape), n_outputs, batch,
               str(device))
        with self.lock:
            if key in self.entries:
                return self.entries[key]
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # init draws: nobody else's
            model = build_model(dict(config), input_shape, n_outputs).to(device)
        value = round(forward_latency_ms(model, tuple(input_shape), device=device, batch=batch), 6)
        with self.lock:
            if len(self.entries) >= self.limit:
                self.entries.pop(next(iter(self.entries)))
            self.entries[key] = value
        return value


LATENCIES = LatencyCache()

__all__ = ["LATENCIES", "LATENCY_BATCH", "LatencyCache", "forward_latency_ms"]
