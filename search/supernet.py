"""The continuous relaxation of a `spaces.cells` space: a supernet of mixed operations.

Reference: Liu, Simonyan & Yang 2019, "DARTS: Differentiable Architecture Search", ICLR
(section 2.2; reference code quark0/darts `cnn/model_search.py`).

Every edge of the cell carries all candidate operations at once and outputs their mixture
`sum_k softmax(alpha_e)_k * op_k(x)`. The architecture parameters `alpha` (edges x operations)
are shared by every cell of the network, as in the paper. The macro skeleton is
`spaces.CellNetwork` itself, with `MixedCell` plugged in through its `cell_factory`, so the
supernet and every network it selects share stem, reductions and head.

Operations come from the `spaces.cell_ops` registry (pluggable, 1-D or 2-D). Their batch norms
are rebuilt without affine parameters, as in the paper's search networks (and NAS-Bench-201's
DARTS): a learned scale after an operation would compete with its architecture weight. The
`none` operation is never computed (its output is zero), but its weight takes part in the
softmax, as in the paper.

For DARTS-PT (Wang et al. 2021) an edge can be fixed to one operation (its weight becomes
one-hot) and one operation of an edge can be masked (its weight set to zero, the others left
as they are, as the reference code does) while the supernet is scored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from tunelab.spaces import EDGES, CellNetwork, ConfigError, Genotype, cell_ops

N_EDGES = len(EDGES)


def _without_affine(module: nn.Module) -> nn.Module:
    """`module` with every affine batch norm inside it replaced by one without affine parameters."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return type(module)(module.num_features, eps=module.eps, momentum=module.momentum, affine=False,
                            track_running_stats=module.track_running_stats)
    for name, child in module.named_children():
        setattr(module, name, _without_affine(child))
    return module


def search_op(name: str, channels: int, dim: int) -> nn.Module:
    """The registered operation `name` as the supernet uses it (batch norms without affine parameters)."""
    return _without_affine(cell_ops.get(name).build(channels, dim))


def parameter_free(name: str, dim: int) -> bool:
    """Whether operation `name` has no trainable parameters (`none`, `skip`, pooling): DARTS' collapse mode."""
    return sum(p.numel() for p in cell_ops.get(name).build(4, dim).parameters()) == 0


class ArchWeights:
    """The mixing weights of the current forward pass, shared by every cell of one supernet.

    Attributes:
        weights: Tensor of shape `(edges, ops)`, set by `Supernet.forward` before the cells run.
        active: For each edge, the indices of the operations worth computing (not `none`, not
            of weight exactly zero by a fix or a mask).
    """

    def __init__(self) -> None:
        self.weights: torch.Tensor | None = None
        self.active: tuple[tuple[int, ...], ...] = ()


class MixedOp(nn.Module):
    """All candidate operations of one edge; `forward(x, weights, active)` returns their weighted sum."""

    def __init__(self, ops: Sequence[str], channels: int, dim: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList([search_op(name, channels, dim) for name in ops])

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[int]) -> torch.Tensor:
        """Mix the operations in `active` with `weights` (shape `(ops,)`); zeros if none is active."""
        out = None
        for k in active:
            term = weights[k] * self.ops[k](x)
            out = term if out is None else out + term
        return x.mul(0.0) if out is None else out


class MixedCell(nn.Module):
    """A cell whose six edges are `MixedOp`s weighted by the supernet's shared `ArchWeights`."""

    def __init__(self, channels: int, dim: int, ops: Sequence[str], arch: ArchWeights) -> None:
        super().__init__()
        self.edges = nn.ModuleList([MixedOp(ops, channels, dim) for _ in EDGES])
        self._arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the cell's DAG: node j is the sum of its mixed incoming edges."""
        weights, active = self._arch.weights, self._arch.active
        nodes = [x]
        for j in range(1, 4):
            total = None
            for e, (i, jj) in enumerate(EDGES):
                if jj != j:
                    continue
                term = self.edges[e](nodes[i], weights[e], active[e])
                total = term if total is None else total + term
            nodes.append(total)
        return nodes[-1]


class Supernet(nn.Module):
    """The DARTS supernet of a cell space.

    Args:
        ops: Candidate operation names (the same for every edge), in the order of `alpha`'s columns.
        channels: Channels of the first stage.
        cells_per_stage: Cells per stage.
        input_shape: One example's shape.
        n_outputs: Number of outputs.
        dim: 1 or 2.

    Attributes:
        alphas: Architecture parameters, shape `(6, len(ops))`, initialised `1e-3 * N(0, 1)` as in the paper.
        fixed: Edge index -> operation index of edges DARTS-PT has decided (their weight is one-hot).
        masked: `(edge, op)` whose weight is zeroed while scoring, or None.
    """

    def __init__(self, ops: Sequence[str], channels: int, cells_per_stage: int, input_shape: Sequence[int],
                 n_outputs: int, dim: int = 1) -> None:
        super().__init__()
        self.ops = tuple(ops)
        if len(self.ops) < 2 or len(set(self.ops)) != len(self.ops):
            raise ConfigError(f"a supernet needs at least two distinct operations per edge, got {list(self.ops)}")
        self._arch = ArchWeights()
        self.alphas = nn.Parameter(1e-3 * torch.randn(N_EDGES, len(self.ops)))
        self.network = CellNetwork(None, channels, cells_per_stage, input_shape, n_outputs, dim,
                                   cell_factory=lambda c, d: MixedCell(c, d, self.ops, self._arch))
        self.fixed: dict[int, int] = {}
        self.masked: tuple[int, int] | None = None
        self._none = self.ops.index("none") if "none" in self.ops else None

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every trainable parameter but `alphas` (what the weight optimizer updates)."""
        return [p for name, p in self.named_parameters() if name != "alphas"]

    def mixing_weights(self) -> torch.Tensor:
        """Softmax of `alphas` per edge, with fixed edges one-hot and the masked operation zeroed."""
        w = torch.softmax(self.alphas, dim=-1)
        if self.fixed or self.masked is not None:
            keep = torch.ones_like(w)
            hard = torch.zeros_like(w)
            for e, k in self.fixed.items():
                keep[e] = 0.0
                hard[e, k] = 1.0
            if self.masked is not None:
                keep[self.masked] = 0.0
                hard[self.masked] = 0.0
            w = w * keep + hard
        return w

    def _active(self) -> tuple[tuple[int, ...], ...]:
        active = []
        for e in range(N_EDGES):
            ks = (self.fixed[e],) if e in self.fixed else tuple(range(len(self.ops)))
            if self.masked is not None and self.masked[0] == e:
                ks = tuple(k for k in ks if k != self.masked[1])
            active.append(tuple(k for k in ks if k != self._none))
        return tuple(active)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape `(N, n_outputs)` under the current mixing weights."""
        self._arch.weights = self.mixing_weights()
        self._arch.active = self._active()
        return self.network(x)

    @contextlib.contextmanager
    def without(self, edge: int, op: int) -> Iterator[None]:
        """Inside, operation `op` of edge `edge` is removed (its weight zero): DARTS-PT's perturbation."""
        self.masked = (edge, op)
        try:
            yield
        finally:
            self.masked = None

    def fix(self, edge: int, op: int) -> None:
        """Decide edge `edge`: from now on it carries operation `op` alone (weight one)."""
        self.fixed[int(edge)] = int(op)

    def argmax_genotype(self) -> Genotype:
        """The strongest operation other than `none` on each edge (decided edges keep their operation)."""
        probs = torch.softmax(self.alphas.detach(), dim=-1)
        ops = []
        for e in range(N_EDGES):
            if e in self.fixed:
                ops.append(self.ops[self.fixed[e]])
                continue
            order = torch.argsort(probs[e], descending=True).tolist()
            ops.append(next(self.ops[k] for k in order if k != self._none))
        return Genotype(tuple(ops))


__all__ = ["ArchWeights", "MixedCell", "MixedOp", "Supernet", "parameter_free", "search_op"]
