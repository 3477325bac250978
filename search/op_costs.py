"""Hardware-aware DARTS: a per-operation cost table measured on the device, and its expected cost.

References:
    Wu et al., "FBNet: Hardware-Aware Efficient ConvNet Design via Differentiable Neural
    Architecture Search", CVPR 2019 (a latency lookup table per operation; the loss adds the
    architecture's expected latency, differentiable in its softmax weights).
    Cai, Zhu & Han, "ProxylessNAS: Direct Neural Architecture Search on Target Task and
    Hardware", ICLR 2019 (expected latency `sum_e sum_k p_ek * lat_k` as a loss term).

`cost_table(ops, channels, dim, length, device, kind)` measures each candidate operation of a
cell edge once, at the cell's shape: `kind="latency"` times it on the device
(`trainers.latency.forward_latency_ms`, one example after warm-up, median), `kind="flops"`
counts its forward FLOPs (`torch.utils.flop_counter`). The table is divided by its largest
entry, so the expected cost `sum_e sum_k softmax(alpha_e)_k * c_k` (`expected_cost`) lies in
[0, edges] and `cost_weight` is comparable across devices. The DARTS routine adds
`cost_weight * expected_cost` to the architecture loss (`search.Darts(cost="latency",
cost_weight=...)`); sweeping the weight trades accuracy for cost and traces a front.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

KINDS = ("latency", "flops")


def cost_table(ops: Sequence[str], channels: int, dim: int, length: int, device: torch.device,
               kind: str) -> torch.Tensor:
    """Each operation's cost at one edge of the cell, divided by the largest, shape `(ops,)`.

    Args:
        ops: The candidate operations (`spaces.cell_ops` names).
        channels: The cell's channels.
        dim: 1 or 2 (the cell's spatial dimensions).
        length: The cell's spatial size (sequence length, or image side).
        device: Where latency is timed.
        kind: "latency" or "flops".
    """
    from torch.utils.flop_counter import FlopCounterMode

    from tunelab.search.supernet import search_op
    from tunelab.trainers.latency import forward_latency_ms

    shape = (channels, *([length] * dim))
    costs = []
    for name in ops:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            op = search_op(name, channels, dim).to(device).eval()
        if kind == "latency":
            costs.append(forward_latency_ms(op, shape, device=device))
        else:
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                op(torch.zeros((1, *shape), device=device))
            costs.append(float(counter.get_total_flops()))
    table = torch.tensor(costs, dtype=torch.float32)
    top = float(table.max())
    return table / top if top > 0 else table


def expected_cost(alphas: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """`sum_e sum_k softmax(alphas_e)_k * table_k`, differentiable in `alphas (edges, ops)`; a scalar."""
    return (torch.softmax(alphas, dim=-1) * table.to(alphas.device, alphas.dtype)).sum()


def cost_gradient(alphas: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The gradient of `expected_cost` in the alphas `(edges, ops)`, and the expected cost."""
    a = alphas.detach().requires_grad_(True)
    cost = expected_cost(a, table)
    (grad,) = torch.autograd.grad(cost, [a])
    return grad, float(cost.detach())


__all__ = ["KINDS", "cost_gradient", "cost_table", "expected_cost"]
