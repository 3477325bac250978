"""A GP's fitted hyperparameters as stored with a proposal, and loaded back to warm-start the next fit.

`search.Bayesian` (one objective) and `search.mobo` (one GP per objective) store the raw
hyperparameters of the fit a proposal was made with under the request attribute `FIT`, so a
resumed study warm-starts its next fit exactly as an uninterrupted one does.
"""

from __future__ import annotations

from typing import Any

import torch

FIT = "gp_fit"  # request attribute: the GP hyperparameters the proposal was made with


def fitted(model: Any) -> dict[str, list[float]]:
    """`model`'s raw hyperparameters by parameter name (JSON-ready)."""
    return {name: [float(v) for v in p.detach().reshape(-1)] for name, p in model.named_parameters()}


def load_fit(model: Any, values: dict[str, list[float]]) -> bool:
    """Set `model`'s raw hyperparameters to `values` if they name every one with its size; whether it did."""
    params = dict(model.named_parameters())
    if set(params) != set(values) or any(p.numel() != len(values[n]) for n, p in params.items()):
        return False
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(torch.as_tensor(values[name], dtype=p.dtype).reshape(p.shape))
    return True


__all__ = ["FIT", "fitted", "load_fit"]
