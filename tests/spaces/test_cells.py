"""Tests for the NAS-Bench-201-style cell space (`spaces.cells`, `Genotype`, `CellNetwork`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tunelab import spaces
from tunelab.spaces import DEFAULT_OPS, EDGES, CellNetwork, CellOp, ConfigError, Genotype, UnknownNameError
from tunelab.spaces.cells import Cell, all_genotypes, edge_name

EXAMPLE = Genotype(("conv3x3", "skip", "conv1x1", "none", "avgpool3x3", "conv3x3"))
EXAMPLE_STR = "|conv3x3~0|+|skip~0|conv1x1~1|+|none~0|avgpool3x3~1|conv3x3~2|"


def _x(shape: tuple[int, ...], n: int = 3) -> torch.Tensor:
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------------- Genotype


def test_constants() -> None:
    assert EDGES == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    assert DEFAULT_OPS == ("none", "skip", "conv1x1", "conv3x3", "avgpool3x3")


def test_genotype_string_uses_nas_bench_201_notation() -> None:
    assert str(EXAMPLE) == EXAMPLE_STR
    assert str(Genotype(("skip",) * 6)) == "|skip~0|+|skip~0|skip~1|+|skip~0|skip~1|skip~2|"
    assert EXAMPLE.edges == (
        ("conv3x3", 0, 1),
        ("skip", 0, 2),
        ("conv1x1", 1, 2),
        ("none", 0, 3),
        ("avgpool3x3", 1, 3),
        ("conv3x3", 2, 3),
    )


def test_genotype_string_round_trip() -> None:
    assert Genotype.from_string(EXAMPLE_STR) == EXAMPLE
    assert Genotype.from_string("  " + EXAMPLE_STR + "\n") == EXAMPLE
    rng = np.random.default_rng(0)
    for _ in range(200):
        g = Genotype(tuple(rng.choice(DEFAULT_OPS, size=6).tolist()))
        assert Genotype.from_string(str(g)) == g
    # The order of a node's inputs in the text does not matter.
    shuffled = "|conv3x3~0|+|conv1x1~1|skip~0|+|conv3x3~2|none~0|avgpool3x3~1|"
    assert Genotype.from_string(shuffled) == EXAMPLE


def test_genotype_is_immutable_and_hashable() -> None:
    assert hash(Genotype.from_string(EXAMPLE_STR)) == hash(EXAMPLE)
    assert len({EXAMPLE, Genotype.from_string(EXAMPLE_STR)}) == 1
    with pytest.raises(AttributeError):
        EXAMPLE.ops = ("none",) * 6  # type: ignore[misc]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "|conv3x3~0|",
        "|conv3x3~0|+|skip~0|conv1x1~1|",  # two nodes
        "|conv3x3~0|+|skip~0|conv1x1~1|+|none~0|avgpool3x3~1|",  # an edge missing
        "|conv3x3~0|+|skip~0|conv1x1~1|+|none~0|avgpool3x3~1|conv3x3~2|+|skip~0|",  # four nodes
        "|conv3x3-0|+|skip~0|conv1x1~1|+|none~0|avgpool3x3~1|conv3x3~2|",  # no ~
        "|conv3x3~a|+|skip~0|conv1x1~1|+|none~0|avgpool3x3~1|conv3x3~2|",  # node not an int
        "|conv3x3~0|+|skip~0|conv1x1~1|+|none~0|avgpool3x3~1|conv3x3~3|",  # node 3 reading itself
        "|conv3x3~0|skip~1|+|skip~0|conv1x1~1|+|none~0|avgpool3x3~1|conv3x3~2|",  # node 1 reading node 1
        "|conv3x3~0|+|skip~0|conv1x1~1|+|none~0|avgpool3x3~1|conv3x3~2|skip~2|",  # edge 2->3 twice
        "|conv3x3~0|+|skip~0|conv1x1~1|+|none~0|avgpool3x3~1|~2|",  # empty operation
    ],
)
def test_bad_genotype_strings_raise(text: str) -> None:
    with pytest.raises(ConfigError, match="not a genotype string"):
        Genotype.from_string(text)


def test_genotype_needs_six_ops() -> None:
    with pytest.raises(ConfigError, match="6 operations"):
        Genotype(("skip",) * 5)


def test_genotype_config_round_trip() -> None:
    space = spaces.cells()
    rng = np.random.default_rng(1)
    for _ in range(50):
        config = space.sample(rng)
        g = Genotype.from_config(config)
        assert g == spaces.genotype(config)
        assert g.ops == tuple(config[edge_name(i, j)] for i, j in EDGES)
        edges = g.to_config()
        assert list(edges) == [f"model.op_{i}_{j}" for i, j in EDGES]
        assert edges.items() <= config.items()
        assert Genotype.from_config(edges) == g
    assert EXAMPLE.to_config()["model.op_1_2"] == "conv1x1"
    assert EXAMPLE.to_config(prefix="arch") == {
        f"arch.op_{i}_{j}": op for op, (i, j) in zip(EXAMPLE.ops, EDGES, strict=True)
    }
    assert Genotype.from_config(EXAMPLE.to_config(prefix="arch"), prefix="arch") == EXAMPLE
    with pytest.raises(ConfigError, match=r"model\.op_2_3"):
        Genotype.from_config({k: v for k, v in EXAMPLE.to_config().items() if k != "model.op_2_3"})


def test_all_genotypes() -> None:
    genotypes = list(all_genotypes())
    assert len(genotypes) == 5**6
    assert len(set(genotypes)) == 5**6
    assert genotypes[0] == Genotype(("none",) * 6)
    assert EXAMPLE in set(genotypes)
    assert len(list(all_genotypes(["skip", "conv3x3"]))) == 2**6


# ---------------------------------------------------------------------------- the space


def test_cells_space() -> None:
    space = spaces.cells()
    assert space.names == (
        "model",
        "model.dim",
        "model.channels",
        "model.cells_per_stage",
        *(f"model.op_{i}_{j}" for i, j in EDGES),
    )
    assert space["model.op_0_1"].choices == DEFAULT_OPS
    default = space.default()
    assert default["model"] == "cells" and default["model.dim"] == 1
    assert Genotype.from_config(default) == Genotype(("conv3x3",) * 6)
    assert spaces.cells(dim=2).default()["model.dim"] == 2
    small = spaces.cells(ops=["skip", "avgpool3x3"])
    assert small["model.op_2_3"].choices == ("skip", "avgpool3x3")
    assert small.default()["model.op_2_3"] == "skip"
    with pytest.raises(ConfigError, match="1 or 2"):
        spaces.cells(dim=3)
    with pytest.raises(ConfigError, match="at least two"):
        spaces.cells(ops=["skip"])


def test_unknown_ops_raise() -> None:
    with pytest.raises(UnknownNameError, match="sep_conv") as info:
        spaces.cells(ops=["skip", "sep_conv"])
    for name in DEFAULT_OPS:
        assert name in str(info.value)
    config = {**spaces.cells().default(), "model.op_0_1": "sep_conv"}
    with pytest.raises(UnknownNameError, match="sep_conv"):
        spaces.build_model(config, (16,), 3)
    with pytest.raises(UnknownNameError):
        Cell(Genotype(("sep_conv",) + ("skip",) * 5), 4, 1)


# ---------------------------------------------------------------------------- networks


@pytest.mark.parametrize(("dim", "shape"), [(1, (40,)), (1, (2, 24)), (2, (1, 8, 8)), (2, (8, 8))])
def test_cell_networks_build_and_run(dim: int, shape: tuple[int, ...]) -> None:
    space = spaces.cells(dim=dim, channels=8, cells_per_stage=1)
    rng = np.random.default_rng(2)
    for _ in range(2):
        config = space.sample(rng)
        model = spaces.build_model(config, shape, 10)
        assert isinstance(model, CellNetwork)
        assert model.genotype == Genotype.from_config(config)
        out = model(_x(shape))
        assert out.shape == (3, 10)
        assert torch.isfinite(out).all()
        out.sum().backward()
        convs = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
        assert all(isinstance(c, nn.Conv1d if dim == 1 else nn.Conv2d) for c in convs)
    with pytest.raises(ConfigError, match=f"dim={3 - dim}"):
        spaces.build_model(space.default(), (40,) if dim == 2 else (1, 8, 8), 10)


def test_network_skeleton() -> None:
    config = {**spaces.cells(dim=1).default(), "model.channels": 8, "model.cells_per_stage": 2}
    model = spaces.build_model(config, (32,), 5)
    cells = [m for m in model.modules() if isinstance(m, Cell)]
    assert len(cells) == 3 * 2
    # Channels double at each of the two reductions: 8, 16, 32.
    widths = [next(iter(c.ops.values()))[1].in_channels for c in cells]
    assert widths == [8, 8, 16, 16, 32, 32]
    (head,) = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert (head.in_features, head.out_features) == (32, 5)


def test_cell_dag_semantics() -> None:
    x = _x((4, 6))
    # skip everywhere: n1 = x, n2 = x + n1 = 2x, n3 = x + n1 + n2 = 4x.
    assert torch.allclose(Cell(Genotype(("skip",) * 6), 4, 1)(x), 4 * x)
    # Only the direct edge 0 -> 3.
    only_direct = Genotype(("none", "none", "none", "skip", "none", "none"))
    assert torch.equal(Cell(only_direct, 4, 1)(x), x)
    # A path 0 -> 1 -> 3 through average pooling.
    pool_path = Genotype(("avgpool3x3", "none", "none", "none", "skip", "none"))
    expected = nn.functional.avg_pool1d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert torch.allclose(Cell(pool_path, 4, 1)(x), expected)
    # 2-D cells keep the shape.
    img = _x((4, 5, 5))
    assert Cell(EXAMPLE, 4, 2)(img).shape == img.shape


def test_none_edges_create_no_modules() -> None:
    cell = Cell(EXAMPLE, 4, 1)
    assert set(cell.ops) == {"0_1", "0_2", "1_2", "1_3", "2_3"}
    g = Genotype(("none", "skip", "conv1x1", "none", "none", "conv3x3"))
    cell = Cell(g, 4, 1)
    assert set(cell.ops) == {"0_2", "1_2", "2_3"}
    # Parameters only from the two convolution units (conv weight + BN weight and bias each).
    conv1 = 4 * 4 * 1 + 2 * 4
    conv3 = 4 * 4 * 3 + 2 * 4
    assert sum(p.numel() for p in cell.parameters()) == conv1 + conv3
    assert len(list(Cell(Genotype(("none",) * 6), 4, 1).parameters())) == 0


def test_all_none_cell_runs_and_outputs_zeros() -> None:
    x = _x((4, 6))
    cell = Cell(Genotype(("none",) * 6), 4, 1)
    out = cell(x)
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(x))

    config = {**spaces.cells().default(), "model.channels": 8}
    config.update(Genotype(("none",) * 6).to_config())
    model = spaces.build_model(config, (16,), 3)
    inputs = _x((16,), n=4)
    out = model(inputs)
    assert out.shape == (4, 3)
    # Nothing reaches the head but its bias: every example gets the same logits.
    (head,) = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert torch.allclose(out, head.bias.detach().expand(4, 3), atol=1e-6)
    out.sum().backward()
    assert head.bias.grad is not None


def test_cell_factory_plugs_in() -> None:
    made = []

    def factory(c: int, dim: int) -> nn.Module:
        made.append((c, dim))
        return nn.Identity()

    net = CellNetwork(None, 4, 1, (12,), 2, dim=1, cell_factory=factory)
    assert made == [(4, 1), (8, 1), (16, 1)]
    assert net(_x((12,))).shape == (3, 2)
    with pytest.raises(ConfigError, match="genotype or a cell_factory"):
        CellNetwork(None, 4, 1, (12,), 2)


# ---------------------------------------------------------------------------- custom operations


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * x


def test_register_custom_op() -> None:
    name = "test_triple"
    built = []

    def build(c: int, dim: int) -> nn.Module:
        built.append((c, dim))
        return Scale(3.0)

    spaces.cell_ops.register(name, CellOp(build))
    assert name in spaces.cell_ops
    space = spaces.cells(ops=["none", "skip", name])
    assert space["model.op_0_1"].choices == ("none", "skip", name)
    assert space.default()["model.op_0_1"] == "none"  # no conv3x3: the first op

    g = Genotype(("none", "none", "none", name, "none", "none"))
    x = _x((4, 6))
    assert torch.allclose(Cell(g, 4, 1)(x), 3 * x)
    assert built == [(4, 1)]

    config = {
        **space.default(),
        "model.channels": 8,
        **Genotype((name, "skip", name, "none", "skip", name)).to_config(),
    }
    model = spaces.build_model(space.validate(config), (16,), 3)
    assert model(_x((16,))).shape == (3, 3)
    assert sum(isinstance(m, Scale) for m in model.modules()) == 3 * 3  # 3 edges x 3 cells
    rng = np.random.default_rng(3)
    assert any(name in spaces.genotype(space.sample(rng)).ops for _ in range(10))


@pytest.mark.parametrize("shape", [(4, 3, 13), (2, 3, 1), (2, 2, 2), (3, 2, 7, 9), (2, 2, 1, 5), (2, 1, 1, 1)])
def test_avgpool3_gives_torchs_numbers_bit_for_bit_and_the_same_gradients(shape):
    from tunelab.spaces.cells import AvgPool3

    dim = len(shape) - 2
    reference = (torch.nn.AvgPool1d if dim == 1 else torch.nn.AvgPool2d)(3, stride=1, padding=1,
                                                                         count_include_pad=False)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(len(shape)), requires_grad=True)
    ours, theirs = AvgPool3(dim)(x), reference(x)
    assert torch.equal(ours, theirs)
    g = torch.randn(ours.shape, generator=torch.Generator().manual_seed(1))
    (a,) = torch.autograd.grad(ours, x, g)
    (b,) = torch.autograd.grad(theirs, x, g)
    torch.testing.assert_close(a, b)
