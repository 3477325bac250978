"""Tests for the architecture spaces `mlp` / `cnn` and `build_model`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from tunelab import spaces
from tunelab.spaces import ConfigError, Int, ModelSpec, UnknownNameError


def _inputs(shape: tuple[int, ...], n: int = 5) -> torch.Tensor:
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(0))


def _cnn_config(dim: int, **overrides: object) -> dict:
    config = spaces.cnn(dim=dim).default()
    config.update({f"model.{k}": v for k, v in overrides.items()})
    return config


def test_mlp_space() -> None:
    space = spaces.mlp()
    assert space.names == ("model", "model.depth", "model.width", "model.dropout", "model.activation")
    assert space.default() == {
        "model": "mlp",
        "model.depth": 2,
        "model.width": 128,
        "model.dropout": 0.0,
        "model.activation": "relu",
    }
    fixed = spaces.mlp(depth=3, width=Int(16, 32))
    assert fixed["model.depth"] == spaces.Fixed(3)
    assert fixed.default()["model.depth"] == 3


@pytest.mark.parametrize("shape", [(40,), (1, 40), (1, 8, 8), (3, 4, 4)])
def test_mlp_builds_for_any_shape(shape: tuple[int, ...]) -> None:
    model = spaces.build_model(spaces.mlp().default(), shape, 10)
    out = model(_inputs(shape))
    assert out.shape == (5, 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(math.prod(shape), 128), (128, 128), (128, 10)]


def test_mlp_hyperparameters_shape_the_network() -> None:
    config = {
        "model": "mlp",
        "model.depth": 3,
        "model.width": 20,
        "model.dropout": 0.25,
        "model.activation": "gelu",
    }
    model = spaces.build_model(config, (7,), 3)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(7, 20), (20, 20), (20, 20), (20, 3)]
    assert sum(isinstance(m, nn.GELU) for m in model.modules()) == 3
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 3 and all(d.p == 0.25 for d in dropouts)
    assert spaces.build_model({**config, "model.dropout": 0.0}, (7,), 3)(_inputs((7,))).shape == (5, 3)
    assert not any(
        isinstance(m, nn.Dropout) for m in spaces.build_model({**config, "model.dropout": 0.0}, (7,), 3).modules()
    )


def test_config_without_model_keys_builds_the_default_mlp() -> None:
    for config in ({}, {"optimizer": "sgd", "sgd.lr": 0.1, "schedule": "cosine"}):
        model = spaces.build_model(config, (40,), 10)
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        assert [(m.in_features, m.out_features) for m in linears] == [(40, 128), (128, 128), (128, 10)]
        assert model(_inputs((40,))).shape == (5, 10)


@pytest.mark.parametrize(("dim", "shape"), [(1, (40,)), (1, (1, 40)), (1, (3, 40)), (2, (1, 8, 8)), (2, (8, 8))])
def test_cnn_output_shapes(dim: int, shape: tuple[int, ...]) -> None:
    model = spaces.build_model(_cnn_config(dim), shape, 10)
    out = model(_inputs(shape))
    assert out.shape == (5, 10)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    assert len(convs) == 3
    assert all(isinstance(c, nn.Conv1d if dim == 1 else nn.Conv2d) for c in convs)
    assert convs[0].in_channels == (shape[0] if len(shape) == dim + 1 else 1)


def test_cnn_mnist1d_baseline_geometry() -> None:
    config = _cnn_config(1, depth=3, channels=25, kernel=5)
    model = spaces.build_model(config, (40,), 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (1, 25, (5,), (2,), (2,)),
        (25, 25, (5,), (2,), (2,)),
        (25, 25, (5,), (2,), (2,)),
    ]
    (linear,) = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linear.in_features == 125  # 40 -> 20 -> 10 -> 5 positions x 25 channels
    assert linear.out_features == 10
    assert model(_inputs((40,))).shape == (5, 10)


def test_cnn_2d_geometry() -> None:
    model = spaces.build_model(_cnn_config(2, depth=2, channels=8, kernel=3), (1, 8, 8), 4)
    (linear,) = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linear.in_features == 8 * 2 * 2
    assert model(_inputs((1, 8, 8))).shape == (5, 4)


def test_cnn_norm_dropout_activation() -> None:
    config = _cnn_config(1, depth=2, norm="batch", dropout=0.1, activation="silu")
    model = spaces.build_model(config, (16,), 2)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == 2
    assert sum(isinstance(m, nn.SiLU) for m in model.modules()) == 2
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2
    assert model(_inputs((16,))).shape == (5, 2)
    with pytest.raises(ConfigError, match="activation"):
        spaces.build_model({**config, "model.activation": "swish"}, (16,), 2)


def test_cnn_with_the_wrong_dim_says_which_dim_to_use() -> None:
    with pytest.raises(ConfigError, match=r"dim=1") as info:
        spaces.build_model(_cnn_config(2), (40,), 10)
    assert "(40,)" in str(info.value)
    with pytest.raises(ConfigError, match=r"dim=2"):
        spaces.build_model(_cnn_config(1), (3, 8, 8), 10)
    with pytest.raises(ConfigError, match="reshape"):
        spaces.build_model(_cnn_config(1), (2, 3, 4, 5), 10)


def test_too_deep_cnn_on_tiny_input_raises() -> None:
    config = _cnn_config(1, depth=4, kernel=2)
    with pytest.raises(ConfigError, match=r"model\.depth") as info:
        spaces.build_model(config, (4,), 10)  # 4 -> 2 -> 1 -> 0
    assert "block 3" in str(info.value)
    assert spaces.build_model({**config, "model.depth": 2}, (4,), 10)(_inputs((4,))).shape == (5, 10)
    with pytest.raises(ConfigError, match="shrinks"):
        spaces.build_model(_cnn_config(2, depth=3, kernel=2), (2, 2), 3)


def test_cnn_space_definition() -> None:
    space = spaces.cnn(dim=2)
    assert space["model.dim"] == spaces.Fixed(2)
    assert space.default()["model"] == "cnn"
    with pytest.raises(ConfigError, match="1 or 2"):
        spaces.cnn(dim=3)


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_sampled_architectures_build(family: str) -> None:
    space = spaces.mlp() if family == "mlp" else spaces.cnn(dim=1)
    rng = np.random.default_rng(0)
    for _ in range(8):
        config = space.sample(rng)
        model = spaces.build_model(config, (40,), 10)
        assert model(_inputs((40,), n=2)).shape == (2, 10)


def test_build_model_errors() -> None:
    with pytest.raises(UnknownNameError, match="mlp"):
        spaces.build_model({"model": "transformer"}, (40,), 10)
    with pytest.raises(ConfigError, match=r"model\.width"):
        spaces.build_model({"model": "mlp", "model.depth": 2}, (40,), 10)
    for bad in (0, -1, 2.0):
        with pytest.raises(ConfigError, match="n_outputs"):
            spaces.build_model({}, (40,), bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- registering a model


class Bilinear(nn.Module):
    def __init__(self, n_in: int, n_out: int, rank: int) -> None:
        super().__init__()
        self.a = nn.Linear(n_in, rank)
        self.b = nn.Linear(rank, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x.flatten(1)))


def test_register_custom_model() -> None:
    name = "test_bilinear"
    seen = []

    def build(hp: dict, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
        seen.append((dict(hp), input_shape, n_outputs))
        return Bilinear(math.prod(input_shape), n_outputs, int(hp["rank"]))

    spaces.models.register(name, ModelSpec(build, reference="test"))
    space = spaces.model_space(name, rank=Int(2, 16, default=4), tag="x")
    assert space.names == ("model", "model.rank", "model.tag")
    config = space.default()
    model = spaces.build_model(config, [1, 8, 8], 3)
    assert isinstance(model, Bilinear)
    assert model.a.out_features == 4 and model.a.in_features == 64
    assert seen == [({"rank": 4, "tag": "x"}, (1, 8, 8), 3)]
    assert model(_inputs((1, 8, 8))).shape == (5, 3)
    # It merges with the other spaces like a built-in.
    full = spaces.optimizers(["sgd"]) | space
    assert spaces.build_model(full.sample(1), (64,), 2)(_inputs((64,))).shape == (5, 2)


def test_model_space_needs_a_registered_family() -> None:
    with pytest.raises(UnknownNameError, match="cnn"):
        spaces.model_space("not_registered", depth=2)
