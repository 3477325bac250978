"""Architecture families (`mlp`, `cnn`, `cells`) and `build_model`.

A model space holds `model` (a constant naming the family) and the family's parameters under
`model.` (`model.depth`, `model.width`, ...). `build_model` looks the family up in the
`spaces.models` registry, so a user's own architecture plugs in with
`spaces.models.register("mine", ModelSpec(build=...))` and a space that sets `model="mine"`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from tunelab.spaces.errors import ConfigError, UnknownNameError
from tunelab.spaces.params import Categorical, Fixed, Float, Int, Param, Value, as_param
from tunelab.spaces.registry import Registry
from tunelab.spaces.regularizers import InputNoise, NamedDropout, RandomShift
from tunelab.spaces.space import Space, branch

ModelBuilder = Callable[[Mapping[str, Value], tuple[int, ...], int], nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """One architecture family.

    Attributes:
        build: `build(hp, input_shape, n_outputs) -> nn.Module`, with `hp` the config's `model.`
            entries (prefix removed), `input_shape` one example's shape without the batch
            dimension, and `n_outputs` the number of classes (or regression targets). It raises
            `ConfigError` when the architecture cannot take that input.
        reference: Where the architecture comes from.
        shape_free: The family's parameters (names without `model.`) that change no tensor
            shape and no counted FLOP of the network it builds: dropout rates, activation
            functions, input noise. Two configs that differ only in these have one architecture
            identity (`shape_identity`): `spaces.model_size` measures them once, and a population
            (`trainers.Population`) trains them together. Empty by default, so every `model.*`
            value of a family that declares nothing is part of its identity.
        size: Optional `(hp, input_shape, n_outputs) -> (params, flops)` computed without
            building the network, equal to what `spaces.model_size` counts on the built one (a
            test checks the MLP's); None measures the built network on the meta device.
    """

    build: ModelBuilder
    reference: str = ""
    shape_free: tuple[str, ...] = ()
    size: Callable[[Mapping[str, Value], tuple[int, ...], int], tuple[int, int]] | None = None


models: Registry[ModelSpec] = Registry("model")

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def model_space(family: str, **params: Param | Value) -> Space:
    """A space for the registered family `family` with the given `model.` parameters.

    Args:
        family: A name registered in `spaces.models`.
        **params: Parameter name (without `model.`) -> parameter or plain value (fixed).
    """
    models.get(family)
    return Space(model=Fixed(family), **{f"model.{k}": as_param(v) for k, v in params.items()})


def _input_regularizers(**given: Param | float | int | None) -> dict[str, Param | Value]:
    """The optional input regularisers a caller asked for (left out of the space when None)."""
    return {k: v for k, v in given.items() if v is not None}


def mlp(
    *,
    depth: Param | int = Int(1, 4, default=2),
    width: Param | int = Int(32, 512, log=True, default=128),
    dropout: Param | float = Float(0.0, 0.5, default=0.0),
    activation: Param | str = Categorical(("relu", "gelu", "silu"), default="relu"),
    input_noise: Param | float | None = None,
    shift: Param | int | None = None,
    input_dropout: Param | float | None = None,
) -> Space:
    """A multilayer perceptron: `depth` hidden layers of `width` units (inputs are flattened).

    Every argument takes a parameter (searched) or a plain value (fixed). `dropout` follows every
    hidden layer. The input regularisers (`spaces.regularizers`) are in the space only when given:
    `input_noise` (Gaussian standard deviation), `shift` (random shift of each example by up to
    that many positions along its last axis) and `input_dropout`, e.g.
    `spaces.mlp(input_noise=spaces.Float(0.0, 1.0), shift=spaces.Int(0, 8))`.
    """
    extra = _input_regularizers(input_noise=input_noise, shift=shift, input_dropout=input_dropout)
    return model_space("mlp", depth=depth, width=width, dropout=dropout, activation=activation, **extra)


def cnn(
    dim: int = 1,
    *,
    depth: Param | int = Int(1, 4, default=3),
    channels: Param | int = Int(8, 64, log=True, default=25),
    kernel: Param | int = Categorical((3, 5, 7), default=5),
    norm: Param | str = Categorical(("none", "batch"), default="none"),
    dropout: Param | float = Float(0.0, 0.5, default=0.0),
    activation: Param | str = "relu",
    input_noise: Param | float | None = None,
    shift: Param | int | None = None,
    input_dropout: Param | float | None = None,
) -> Space:
    """A plain convolutional network, 1-D or 2-D.

    `depth` blocks of convolution (stride 2, "same"-style padding `(kernel - 1) // 2`), optional
    batch norm and an activation, then a linear layer on the flattened features. With depth 3,
    25 channels and kernel 5 it is the MNIST-1D CNN baseline of Greydanus & Kobak 2024
    (three stride-2 Conv1d layers of 25 channels and a linear read-out).

    Args:
        dim: 1 for sequences `(L,)` / `(C, L)`, 2 for images `(H, W)` / `(C, H, W)`.
        depth: Number of convolution blocks.
        channels: Channels of every block.
        kernel: Kernel size.
        norm: "none" or "batch".
        dropout: Dropout after every block.
        activation: One of `ACTIVATIONS`.
        input_noise: Gaussian input noise (in the space only when given), as for `mlp`.
        shift: Random shift of each example along its last axis (only when given).
        input_dropout: Dropout of the input (only when given).
    """
    if dim not in (1, 2):
        raise ConfigError(f"cnn(dim=...) must be 1 or 2, got {dim!r}")
    extra = _input_regularizers(input_noise=input_noise, shift=shift, input_dropout=input_dropout)
    return model_space("cnn", dim=dim, depth=depth, channels=channels, kernel=kernel, norm=norm, dropout=dropout,
                       activation=activation, **extra)


# ---------------------------------------------------------------------------- builders


class Reshape(nn.Module):
    """Views each example as `shape` (e.g. adds the channel axis a convolution needs)."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: Any) -> Any:
        """Reshape `(N, ...)` to `(N, *shape)`."""
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        """Shown by `print(model)`."""
        return f"shape={self.shape}"


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; use one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class Layers:
    """How the MLP and CNN builders make their layers.

    The plain builders use this class; the self-tuning variant of a model (`spaces.stn`) passes
    a subclass that makes hyperlayers and tuned regularisers, so one builder, and one config,
    describes both networks.
    """

    def linear(self, n_in: int, n_out: int) -> nn.Module:
        """A fully connected layer."""
        return nn.Linear(n_in, n_out)

    def conv(self, dim: int, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> nn.Module:
        """A convolution."""
        return conv_class(dim)(c_in, c_out, kernel, stride=stride, padding=padding)

    def regularizer(self, kind: str, name: str, value: float) -> nn.Module | None:
        """A regulariser (`kind`: dropout, noise or shift) realising hyperparameter `name`, or None when off."""
        if kind == "dropout":
            return NamedDropout(value, name) if value > 0 else None
        if kind == "noise":
            return InputNoise(value, name) if value > 0 else None
        return RandomShift(value, name) if value >= 1 else None

    def network(self, layers: list[nn.Module]) -> nn.Module:
        """The network of `layers`, in order."""
        return nn.Sequential(*layers)


PLAIN = Layers()


def _input_layers(hp: Mapping[str, Value], make: Layers) -> list[nn.Module]:
    """The input regularisers a config turns on: shift, then noise, then input dropout."""
    out = [
        make.regularizer("shift", "model.shift", float(hp.get("shift", 0) or 0)),
        make.regularizer("noise", "model.input_noise", float(hp.get("input_noise", 0.0) or 0.0)),
        make.regularizer("dropout", "model.input_dropout", float(hp.get("input_dropout", 0.0) or 0.0)),
    ]
    return [m for m in out if m is not None]


def mlp_network(hp: Mapping[str, Value], input_shape: tuple[int, ...], n_outputs: int,
                make: Layers = PLAIN) -> nn.Module:
    """The MLP of `hp` (a config's `model.` entries), with layers made by `make`."""
    layers: list[nn.Module] = [nn.Flatten(), *_input_layers(hp, make)]
    width_in = math.prod(input_shape)
    for i in range(int(hp["depth"])):
        layers += [make.linear(width_in, int(hp["width"])), _activation(hp["activation"])]
        drop = make.regularizer("dropout", f"model.dropout.{i + 1}", float(hp["dropout"]))
        if drop is not None:
            layers.append(drop)
        width_in = int(hp["width"])
    layers.append(make.linear(width_in, n_outputs))
    return make.network(layers)


def _build_mlp(hp: Mapping[str, Value], input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    return mlp_network(hp, input_shape, n_outputs)


def _mlp_size(hp: Mapping[str, Value], input_shape: tuple[int, ...], n_outputs: int) -> tuple[int, int]:
    """Parameters and forward FLOPs of `mlp_network(hp, ...)`: its linear layers (a multiply-add counts as two).

    Activations, dropout and input regularisers have no parameters and no counted FLOPs. Building
    a network on the meta device and running it costs milliseconds; this costs microseconds, and
    an MLP space with a free width has a new shape at nearly every trial.
    """
    depth = int(hp["depth"])
    width = int(hp["width"]) if depth > 0 else 1
    if depth < 0 or width < 1 or n_outputs < 1 or str(hp["activation"]) not in ACTIVATIONS:
        raise ConfigError(f"no MLP has depth {hp['depth']!r}, width {hp.get('width')!r}, activation "
                          f"{hp['activation']!r} and {n_outputs!r} outputs (activations: {sorted(ACTIVATIONS)})")
    widths = [math.prod(input_shape)] + [width] * depth + [n_outputs]
    pairs = list(itertools.pairwise(widths))
    return sum(a * b + b for a, b in pairs), sum(2 * a * b for a, b in pairs)


def conv_input_shape(input_shape: tuple[int, ...], dim: int, family: str) -> tuple[int, ...]:
    """`(C, *spatial)` for a `dim`-D convolution, adding a channel axis when the input has none.

    Raises:
        ConfigError: The input has the wrong number of axes for `dim`.
    """
    if len(input_shape) == dim:
        return (1, *input_shape)
    if len(input_shape) == dim + 1:
        return tuple(input_shape)
    want = "(L,) or (C, L)" if dim == 1 else "(H, W) or (C, H, W)"
    other = 2 if dim == 1 else 1
    raise ConfigError(
        f"a {dim}-D {family} needs examples of shape {want}, but this workload's examples have shape "
        f"{tuple(input_shape)}; use spaces.{family}(dim={other}) or reshape the data"
        if len(input_shape) in (other, other + 1)
        else f"a {dim}-D {family} needs examples of shape {want}, but this workload's examples have shape "
        f"{tuple(input_shape)}; reshape the data or use spaces.mlp()"
    )


def conv_class(dim: int) -> type[nn.Module]:
    """`nn.Conv1d` or `nn.Conv2d`."""
    return nn.Conv1d if dim == 1 else nn.Conv2d


def batchnorm_class(dim: int) -> type[nn.Module]:
    """`nn.BatchNorm1d` or `nn.BatchNorm2d`."""
    return nn.BatchNorm1d if dim == 1 else nn.BatchNorm2d


def cnn_network(hp: Mapping[str, Value], input_shape: tuple[int, ...], n_outputs: int,
                make: Layers = PLAIN) -> nn.Module:
    """The CNN of `hp` (a config's `model.` entries), with layers made by `make`."""
    dim = int(hp["dim"])
    shape = conv_input_shape(input_shape, dim, "cnn")
    c_in, spatial = shape[0], list(shape[1:])
    k, c = int(hp["kernel"]), int(hp["channels"])
    pad = (k - 1) // 2
    layers: list[nn.Module] = [Reshape(shape), *_input_layers(hp, make)]
    for i in range(int(hp["depth"])):
        spatial = [(s + 2 * pad - k) // 2 + 1 for s in spatial]
        if min(spatial) < 1:
            raise ConfigError(
                f"cnn: block {i + 1} of {hp['depth']} (kernel {k}, stride 2) shrinks inputs of shape "
                f"{tuple(input_shape)} to nothing; lower model.depth or model.kernel in the space"
            )
        layers.append(make.conv(dim, c_in, c, k, 2, pad))
        if hp["norm"] == "batch":
            layers.append(batchnorm_class(dim)(c))
        layers.append(_activation(hp["activation"]))
        drop = make.regularizer("dropout", f"model.dropout.{i + 1}", float(hp["dropout"]))
        if drop is not None:
            layers.append(drop)
        c_in = c
    layers += [nn.Flatten(), make.linear(c * math.prod(spatial), n_outputs)]
    return make.network(layers)


def _build_cnn(hp: Mapping[str, Value], input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    return cnn_network(hp, input_shape, n_outputs)


class PublishedCNN1d(nn.Module):
    """The MNIST-1D CNN baseline as published (Greydanus & Kobak 2024, `mnist1d` repository).

    Three Conv1d layers of `channels` channels (kernels 5, 3, 3; stride 2; padding 1) with ReLU,
    and a linear read-out of the flattened features.
    """

    def __init__(self, length: int, n_outputs: int, channels: int = 25) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        for k in (5, 3, 3):
            length = (length + 2 - k) // 2 + 1
        self.linear = nn.Linear(channels * length, n_outputs)

    def forward(self, x: Any) -> Any:
        """Logits for signals of shape `(N, L)` or `(N, 1, L)`."""
        h = x.reshape(x.shape[0], 1, x.shape[-1])
        h = self.conv3(self.conv2(self.conv1(h).relu()).relu()).relu()
        return self.linear(h.flatten(1))


def _build_published_cnn(hp: Mapping[str, Value], input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    shape = conv_input_shape(input_shape, 1, "cnn")
    if shape[0] != 1 or shape[1] < 8:
        raise ConfigError(
            f"mnist1d_cnn takes single-channel signals of length >= 8, got examples of shape {input_shape}"
        )
    return PublishedCNN1d(shape[1], n_outputs, int(hp.get("channels", 25)))


#: What the MLP and CNN builders make without parameters: activations, and regularisers that act
#: in training mode only (`spaces.regularizers`); parameter shapes and FLOPs do not depend on them.
REGULARIZER_PARAMS: tuple[str, ...] = ("dropout", "activation", "input_noise", "input_dropout", "shift")

models.register("mlp", ModelSpec(_build_mlp, shape_free=REGULARIZER_PARAMS, size=_mlp_size))
models.register("mnist1d_cnn", ModelSpec(_build_published_cnn, "Greydanus & Kobak 2024 (published MNIST-1D CNN)"))
models.register("cnn", ModelSpec(_build_cnn, "Greydanus & Kobak 2024 (MNIST-1D baseline CNN)",
                                 shape_free=REGULARIZER_PARAMS))

#: The model config the trainer uses when a config names no model.
DEFAULT_MODEL = {"model": "mlp", **{k: v for k, v in mlp().default().items() if k != "model"}}


def model_part(config: Mapping[str, Value]) -> dict[str, Value]:
    """The entries of a config that describe its network: `model` and every `model.*`."""
    return {k: v for k, v in config.items() if k == "model" or k.startswith("model.")}


def shape_free_names(config: Mapping[str, Value]) -> tuple[str, ...]:
    """The config names (`model.dropout`, ...) its family declares shape-free (`ModelSpec.shape_free`).

    A config without `model` builds the default MLP; an unregistered family declares nothing.
    """
    name = config.get("model", DEFAULT_MODEL["model"])
    if not isinstance(name, str) or name not in models:
        return ()
    return tuple(f"model.{p}" for p in models.get(name).shape_free)


def shape_identity(config: Mapping[str, Value]) -> tuple[tuple[str, str], ...]:
    """The architecture identity of a config: its model entries less the shape-free ones, sorted.

    Configs with one identity build networks with the same parameter shapes and the same counted
    FLOPs; they differ at most in what their family declares shape-free (`ModelSpec.shape_free`).
    Values are compared by `repr`, so `64` and `64.0` are different identities.
    """
    free = set(shape_free_names(config))
    return tuple(sorted((k, repr(v)) for k, v in model_part(config).items() if k not in free))


def build_model(config: Mapping[str, Value], input_shape: Sequence[int], n_outputs: int) -> nn.Module:
    """Build the network a config describes.

    Args:
        config: A configuration; `model` selects the family (`mlp` defaults if absent) and
            `model.*` holds its parameters.
        input_shape: One example's shape, without the batch dimension.
        n_outputs: Number of outputs (classes, or regression targets).

    Returns:
        A freshly initialised `nn.Module` (on the CPU, initialised from the global torch RNG: call
        it under the trainer's own seeded generator state).

    Raises:
        UnknownNameError: Unknown family.
        ConfigError: Missing parameters, or an architecture that cannot take `input_shape`.
    """
    if "model" not in config:
        config = {**DEFAULT_MODEL, **config}
    name = config["model"]
    spec = models.get(name)
    if not isinstance(n_outputs, int) or n_outputs < 1:
        raise ConfigError(f"n_outputs must be a positive int, got {n_outputs!r}")
    hp = branch(config, "model")
    try:
        return spec.build(hp, tuple(int(s) for s in input_shape), n_outputs)
    except UnknownNameError:  # a KeyError too, but not a missing parameter (e.g. an unknown cell op)
        raise
    except KeyError as exc:
        raise ConfigError(f"model {name!r}: the config lacks model.{exc.args[0]}; include the model space") from None


__all__ = [
    "ACTIVATIONS",
    "DEFAULT_MODEL",
    "PLAIN",
    "REGULARIZER_PARAMS",
    "Layers",
    "ModelSpec",
    "Reshape",
    "batchnorm_class",
    "build_model",
    "cnn",
    "cnn_network",
    "conv_class",
    "conv_input_shape",
    "mlp",
    "mlp_network",
    "model_part",
    "model_space",
    "models",
    "shape_free_names",
    "shape_identity",
]
