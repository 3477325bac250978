"""Device-ready batch iterators over a workload's splits.

Tensor splits live on the device and are batched by slicing an index permutation drawn from
the run's own `torch.Generator` (no DataLoader workers, no per-step host transfer). Other
datasets go through a `DataLoader` whose shuffling uses the same generator.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

from tunelab.trainers.tensors import Split, TensorSplit

Batch = tuple[torch.Tensor, torch.Tensor]


def batches(
    split: Split,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Iterator[Batch]:
    """Yield `(x, y)` mini-batches of a split.

    Args:
        split: A `TensorSplit` (already on `device` for the fast path) or a `Dataset`.
        batch_size: Examples per batch; the last batch may be smaller.
        shuffle: Visit examples in a random order drawn from `generator`.
        generator: The run's generator (on the split's device for tensor splits); required
            when `shuffle` is True, so that every run owns its randomness.
        device: Where batches of a `Dataset` are moved (tensor splits stay where they are).

    Raises:
        ValueError: `shuffle` without a generator, or a non-positive batch size.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if shuffle and generator is None:
        raise ValueError("shuffle=True needs the run's torch.Generator (no global randomness)")
    if isinstance(split, TensorSplit):
        x, y = split.x, split.y
        n = x.shape[0]
        if shuffle:
            perm = torch.randperm(n, generator=generator, device=generator.device)
            if perm.device != x.device:
                perm = perm.to(x.device)
            for i in range(0, n, batch_size):
                idx = perm[i : i + batch_size]
                yield x[idx], y[idx]
        else:
            for i in range(0, n, batch_size):
                yield x[i : i + batch_size], y[i : i + batch_size]
        return
    sampler = RandomSampler(split, generator=generator) if shuffle else SequentialSampler(split)
    pin = device is not None and torch.device(device).type == "cuda"
    for xb, yb in DataLoader(split, batch_size=batch_size, sampler=sampler, pin_memory=pin):
        if device is not None:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        yield xb, yb


def to_device(split: Split | None, device: torch.device) -> Split | None:
    """Move a tensor split to `device` (datasets are left as they are and batched to it)."""
    if isinstance(split, TensorSplit):
        return split.to(device)
    return split


__all__ = ["Batch", "batches", "to_device"]
