"""Where and how a run computes (device, precision) and how a network is judged on a split (`evaluate`)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from tunelab.spaces.errors import ConfigError
from tunelab.trainers.workload import Workload

EVAL_BATCH = 2048  # examples per validation batch (no gradients: larger than training batches)


def resolve_device(device: str | torch.device) -> torch.device:
    """`"auto"` -> CUDA when available, else CPU; anything else as `torch.device`.

    Raises:
        ConfigError: CUDA was asked for but is not available.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={str(device)!r} but CUDA is not available here; use device='auto' or 'cpu'")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """`"auto"` -> "bf16" on CUDA devices that support it, else "fp32".

    Raises:
        ConfigError: Unknown precision.
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return precision


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Iterator[tuple[torch.Tensor, torch.Tensor]] | Any,
    workload: Workload,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[float, float]:
    """Mean loss and metric (the workload's objective) of `model` over batches.

    Args:
        model: The network; it is put in eval mode (and left there).
        data: An iterable of `(x, y)` batches (e.g. `trainers.batches(split, 2048)`).
        workload: Supplies the loss and metric.
        autocast: Mixed-precision context factory.

    Returns:
        `(loss, metric)` as Python floats (NaN for an empty iterable).
    """
    loss, metrics = evaluate_all(model, data, workload, autocast)
    return loss, metrics.get(workload.metric, loss if workload.metric == "loss" else math.nan)


@torch.no_grad()
def evaluate_all(
    model: nn.Module,
    data: Iterator[tuple[torch.Tensor, torch.Tensor]] | Any,
    workload: Workload,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[float, dict[str, float]]:
    """Mean loss and every metric of `model` over batches.

    A workload with the task's own metric sums loss and metric batch by batch on the device,
    with one host sync at the end. A workload with its own `metrics` keeps the outputs of the
    whole split and computes each metric on all of them at once (exact for F1, AUROC, ...).

    Returns:
        `(loss, {metric name: value})` as Python floats (NaN for an empty iterable).
    """
    model.eval()
    loss_sum = metric_sum = None
    outputs, targets = [], []
    n = 0
    for x, y in data:
        with autocast():
            out = model(x)
        out = out.float()
        batch_loss = workload.loss(out, y, reduction="sum")
        loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
        if workload.metrics is None:
            batch_metric = workload.metric_sum(out, y)
            metric_sum = batch_metric if metric_sum is None else metric_sum + batch_metric
        else:
            outputs.append(out)
            targets.append(y)
        n += int(y.shape[0])
    if n == 0:
        return math.nan, {}
    if workload.metrics is None:
        values = torch.stack([loss_sum.float(), metric_sum.float()]).tolist()
        return values[0] / n, {workload.metric: values[1] / n}
    loss = float(loss_sum) / n
    return loss, {"loss": loss, **workload.measure(torch.cat(outputs), torch.cat(targets))}
