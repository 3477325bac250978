"""NAS-Bench-201-style cell search space, in 1-D or 2-D.

Reference: Dong & Yang 2020, "NAS-Bench-201: Extending the Scope of Reproducible Neural
Architecture Search", ICLR 2020.

A cell is a directed acyclic graph of 4 nodes; node 0 is the cell's input and node 3 its
output; each of the 6 edges `i -> j` (`i < j`) carries one operation, and node `j` is the sum of
its incoming edges. The default operations are those of NAS-Bench-201: `none` (the edge is
absent), `skip` (identity), `conv1x1` and `conv3x3` (ReLU-Conv-BN) and `avgpool3x3`. Operations
are pluggable through `spaces.cell_ops.register`.

The network follows the benchmark's macro skeleton: a 3x3 convolution stem of `channels`
channels, then three stages of `cells` cells each, at `channels`, `2*channels` and
`4*channels`, joined by stride-2 residual blocks, then BN-ReLU, global average pooling and a
linear classifier.

A configuration names one operation per edge (`model.op_0_1`, ..., `model.op_2_3`); the
immutable `Genotype` is its readable form, in the benchmark's string notation
`|conv3x3~0|+|skip~0|conv1x1~1|+|none~0|avgpool3x3~1|conv3x3~2|` (for node 1, 2, 3: the
operation and the node it reads).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tunelab.spaces.errors import ConfigError
from tunelab.spaces.models import (
    ModelSpec,
    Reshape,
    batchnorm_class,
    conv_class,
    conv_input_shape,
    model_space,
    models,
)
from tunelab.spaces.params import Categorical, Int, Param, Value
from tunelab.spaces.registry import Registry
from tunelab.spaces.space import Space

#: The cell's edges `(from, to)` in the order of the genotype string.
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
N_NODES = 4
DEFAULT_OPS: tuple[str, ...] = ("none", "skip", "conv1x1", "conv3x3", "avgpool3x3")


def edge_name(i: int, j: int, prefix: str = "model") -> str:
    """The config name of edge `i -> j` (`model.op_0_1`)."""
    return f"{prefix}.op_{i}_{j}"


@dataclass(frozen=True)
class CellOp:
    """An operation an edge can carry.

    Attributes:
        build: `build(channels, dim) -> nn.Module`, a shape-preserving module for inputs of
            `channels` channels and `dim` spatial axes.
    """

    build: Callable[[int, int], nn.Module]


cell_ops: Registry[CellOp] = Registry("cell operation")


def relu_conv_bn(c_in: int, c_out: int, kernel: int, stride: int, dim: int) -> nn.Sequential:
    """ReLU, convolution without bias, batch norm (NAS-Bench-201's convolution unit)."""
    return nn.Sequential(
        nn.ReLU(),
        conv_class(dim)(c_in, c_out, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False),
        batchnorm_class(dim)(c_out),
    )


class Zero(nn.Module):
    """The `none` operation: an absent edge (outputs zeros)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return zeros shaped like `x`."""
        return x.mul(0.0)


class AvgPool3(nn.Module):
    """3-wide (1-D) or 3x3 (2-D) average pooling, stride 1, padding 1, padding not counted.

    The same numbers as `nn.AvgPool1d/2d(3, 1, 1, count_include_pad=False)` (bit for bit on the
    CPU, tested), computed as a sum of shifted views divided by the window's count: three
    times faster on small feature maps, which matters in a DARTS supernet that pools on every edge.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim not in (1, 2):
            raise ConfigError(f"AvgPool3 needs dim 1 or 2, got {dim!r}")
        self.dim = dim

    @staticmethod
    def _counts(n: int, like: torch.Tensor) -> torch.Tensor:
        c = torch.full((n,), 3.0, dtype=like.dtype, device=like.device)
        c[0] -= 1
        c[-1] -= 1
        return c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool `x` of shape `(N, C, L)` or `(N, C, H, W)`; the output has its shape."""
        if self.dim == 1:
            p = F.pad(x, (1, 1))
            return (p[..., :-2] + p[..., 1:-1] + p[..., 2:]) / self._counts(x.shape[-1], x)
        h, w = x.shape[-2:]
        p = F.pad(x, (1, 1, 1, 1))
        total = None
        for i in range(3):
            for j in range(3):
                v = p[..., i : i + h, j : j + w]
                total = v if total is None else total + v
        return total / (self._counts(h, x)[:, None] * self._counts(w, x)[None, :])


def _avgpool(c: int, dim: int) -> nn.Module:
    return AvgPool3(dim)


cell_ops.register("none", CellOp(lambda c, dim: Zero()))
cell_ops.register("skip", CellOp(lambda c, dim: nn.Identity()))
cell_ops.register("conv1x1", CellOp(lambda c, dim: relu_conv_bn(c, c, 1, 1, dim)))
cell_ops.register("conv3x3", CellOp(lambda c, dim: relu_conv_bn(c, c, 3, 1, dim)))
cell_ops.register("avgpool3x3", CellOp(_avgpool))


@dataclass(frozen=True)
class Genotype:
    """The operations of one cell, one per edge in `EDGES` order.

    Attributes:
        ops: Six operation names.
    """

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.ops) != len(EDGES):
            raise ConfigError(f"a genotype has {len(EDGES)} operations (one per edge), got {len(self.ops)}")

    @property
    def edges(self) -> tuple[tuple[str, int, int], ...]:
        """`(op, from, to)` for each edge."""
        return tuple((op, i, j) for op, (i, j) in zip(self.ops, EDGES, strict=False))

    def __str__(self) -> str:
        nodes = []
        for j in range(1, N_NODES):
            nodes.append("|" + "|".join(f"{op}~{i}" for op, i, jj in self.edges if jj == j) + "|")
        return "+".join(nodes)

    @classmethod
    def from_string(cls, text: str) -> Genotype:
        """Parse the string form (`|conv3x3~0|+|skip~0|conv1x1~1|+|...|`).

        Raises:
            ConfigError: The text is not a genotype string.
        """
        try:
            found: dict[tuple[int, int], str] = {}
            nodes = text.strip().split("+")
            if len(nodes) != N_NODES - 1:
                raise ValueError(f"expected {N_NODES - 1} nodes separated by '+'")
            for j, node in enumerate(nodes, start=1):
                for part in node.strip("|").split("|"):
                    op, src = part.split("~")
                    edge = (int(src), j)
                    if edge not in EDGES or edge in found or not op:
                        raise ValueError(f"node {j} lists {part!r}: an empty operation, a repeat or no such edge")
                    found[edge] = op
            return cls(tuple(found[e] for e in EDGES))
        except (ValueError, KeyError) as exc:
            raise ConfigError(
                f"{text!r} is not a genotype string like '|conv3x3~0|+|skip~0|conv1x1~1|+|none~0|skip~1|conv3x3~2|' "
                f"({exc})"
            ) from None

    @classmethod
    def from_config(cls, config: Mapping[str, Value], prefix: str = "model") -> Genotype:
        """Read the genotype of a cells configuration.

        Raises:
            ConfigError: The config lacks an edge.
        """
        try:
            return cls(tuple(str(config[edge_name(i, j, prefix)]) for i, j in EDGES))
        except KeyError as exc:
            raise ConfigError(f"the config has no {exc.args[0]}; is it a spaces.cells() config?") from None

    def to_config(self, prefix: str = "model") -> dict[str, str]:
        """The edge entries of a configuration."""
        return {edge_name(i, j, prefix): op for op, (i, j) in zip(self.ops, EDGES, strict=False)}


def cells(
    dim: int = 1,
    *,
    ops: Sequence[str] = DEFAULT_OPS,
    channels: Param | int = Categorical((8, 16, 32), default=16),
    cells_per_stage: Param | int = Int(1, 2, default=1),
) -> Space:
    """A NAS-Bench-201-style cell space stacked into a network (see the module docstring).

    Args:
        dim: 1 for sequences, 2 for images.
        ops: Operation names each edge chooses from (registered in `spaces.cell_ops`).
        channels: Channels of the first stage (doubled at each reduction).
        cells_per_stage: Cells in each of the three stages.

    Raises:
        UnknownNameError: An operation is not registered.
        ConfigError: `dim` is not 1 or 2, or fewer than two operations are given.
    """
    if dim not in (1, 2):
        raise ConfigError(f"cells(dim=...) must be 1 or 2, got {dim!r}")
    ops = cell_ops.resolve(tuple(ops))
    if len(ops) < 2:
        raise ConfigError(f"a cell space needs at least two operations to choose from, got {list(ops)}")
    edges = {f"op_{i}_{j}": Categorical(ops, default="conv3x3" if "conv3x3" in ops else ops[0]) for i, j in EDGES}
    return model_space("cells", dim=dim, channels=channels, cells_per_stage=cells_per_stage, **edges)


class Cell(nn.Module):
    """One cell of a fixed genotype; edges with `none` are not computed at all."""

    def __init__(self, genotype: Genotype, channels: int, dim: int) -> None:
        super().__init__()
        self.genotype = genotype
        self.ops = nn.ModuleDict()
        self.incoming: list[list[tuple[int, str]]] = [[] for _ in range(N_NODES)]
        for op, i, j in genotype.edges:
            if op == "none":
                continue
            key = f"{i}_{j}"
            self.ops[key] = cell_ops.get(op).build(channels, dim)
            self.incoming[j].append((i, key))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the cell's DAG on `x` of shape `(N, C, *spatial)`; returns the same shape."""
        nodes = [x]
        for j in range(1, N_NODES):
            terms = [self.ops[key](nodes[i]) for i, key in self.incoming[j]]
            nodes.append(torch.stack(terms).sum(0) if len(terms) > 1 else terms[0] if terms else torch.zeros_like(x))
        return nodes[-1]


class ResidualReduction(nn.Module):
    """NAS-Bench-201's stride-2 residual block between stages (channels `c_in -> c_out`)."""

    def __init__(self, c_in: int, c_out: int, dim: int) -> None:
        super().__init__()
        self.conv_a = relu_conv_bn(c_in, c_out, 3, 2, dim)
        self.conv_b = relu_conv_bn(c_out, c_out, 3, 1, dim)
        pool = nn.AvgPool1d if dim == 1 else nn.AvgPool2d
        self.shortcut = nn.Sequential(pool(2, stride=2, ceil_mode=True), conv_class(dim)(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Halve the spatial size and change the channels."""
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class CellNetwork(nn.Module):
    """Stem, three stages of cells with reductions between them, pooled linear head.

    Args:
        genotype: The cell (shared by every cell of the network, as in NAS-Bench-201).
        channels: Channels of the first stage.
        cells_per_stage: Cells per stage.
        input_shape: One example's shape, `(L,)`/`(C, L)` for dim 1 or `(H, W)`/`(C, H, W)` for dim 2.
        n_outputs: Number of outputs.
        dim: 1 or 2.
        cell_factory: Builds one cell from `(channels, dim)`; a relaxed (DARTS) cell plugs in here.
    """

    def __init__(
        self,
        genotype: Genotype | None,
        channels: int,
        cells_per_stage: int,
        input_shape: Sequence[int],
        n_outputs: int,
        dim: int = 1,
        cell_factory: Callable[[int, int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        shape = conv_input_shape(tuple(input_shape), dim, "cells")
        if cell_factory is None:
            if genotype is None:
                raise ConfigError("CellNetwork needs a genotype or a cell_factory")

            def cell_factory(c: int, d: int) -> nn.Module:
                return Cell(genotype, c, d)

        self.genotype = genotype
        layers: list[nn.Module] = [
            Reshape(shape),
            conv_class(dim)(shape[0], channels, 3, padding=1, bias=False),
            batchnorm_class(dim)(channels),
        ]
        c = channels
        for stage in range(3):
            if stage > 0:
                layers.append(ResidualReduction(c, 2 * c, dim))
                c *= 2
            layers += [cell_factory(c, dim) for _ in range(cells_per_stage)]
        pool = nn.AdaptiveAvgPool1d(1) if dim == 1 else nn.AdaptiveAvgPool2d(1)
        layers += [batchnorm_class(dim)(c), nn.ReLU(), pool, nn.Flatten(), nn.Linear(c, n_outputs)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape `(N, n_outputs)`."""
        return self.net(x)


def _build_cells(hp: Mapping[str, Value], input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    genotype = Genotype.from_config({f"model.{k}": v for k, v in hp.items()})
    for op in set(genotype.ops):
        cell_ops.get(op)
    dim = int(hp["dim"])
    if math.prod(input_shape) == 0:
        raise ConfigError(f"cells: empty input shape {input_shape}")
    return CellNetwork(genotype, int(hp["channels"]), int(hp["cells_per_stage"]), input_shape, n_outputs, dim)


# every cells parameter is part of the architecture: the operations, even parameter-free ones (skip,
# pooling, none), change the network's graph, so none is declared shape-free
models.register("cells", ModelSpec(_build_cells, "Dong & Yang 2020 (NAS-Bench-201)", shape_free=()))


def genotype(config: Mapping[str, Value]) -> Genotype:
    """The `Genotype` of a `spaces.cells()` configuration."""
    return Genotype.from_config(config)


def all_genotypes(ops: Iterable[str] = DEFAULT_OPS) -> Iterable[Genotype]:
    """Every genotype over `ops` (5^6 = 15,625 for the default operations)."""
    import itertools

    for combo in itertools.product(tuple(ops), repeat=len(EDGES)):
        yield Genotype(combo)


__all__ = [
    "DEFAULT_OPS",
    "EDGES",
    "AvgPool3",
    "Cell",
    "CellNetwork",
    "CellOp",
    "Genotype",
    "ResidualReduction",
    "all_genotypes",
    "cell_ops",
    "cells",
    "edge_name",
    "genotype",
    "relu_conv_bn",
]
