"""The self-tuning variant of a model: hyperlayers whose weights respond to the hyperparameters.

References:
- MacKay, Vicol, Lorraine, Duvenaud & Grosse 2019, "Self-Tuning Networks: Bilevel Optimization of
  Hyperparameters using Structured Best-Response Functions", ICLR (section 4.2; reference code
  asteroidhouse/self-tuning-networks `hypermodels/hyperlinear.py`, `hyperconv2d.py`).
- Bae & Grosse 2020, "Delta-STN: Efficient Bilevel Optimization for Neural Networks using
  Structured Response Jacobians", NeurIPS (the centred parameterisation).

A hyperlayer's weights are an elementwise best-response function of the hyperparameters `h`
(one row per example), scaled per output unit:

    y = W_e x + b_e + (U h)[:out] * (W_h x) + (U h)[out:] * b_h

so `U = 0` gives the plain layer `W_e x + b_e` (tested). `U` starts at N(0, 0.01) as in the STN
reference, or at zero for Delta-STN (its response starts flat, and the hypernetwork input is the
centred `h - lambda`).

`build_stn_model(config, input_shape, n_outputs, names)` builds the STN variant of the config's
network with the same builder logic as the plain one (`spaces.mlp`, `spaces.cnn`): every linear
and convolution layer becomes a hyperlayer, and the regularisers named in `names`
(`model.dropout.<k>`, `model.input_dropout`, `model.input_noise`, `model.shift`) take their
strength per example from the hyperparameter values set with `set_hyper`. Regularisers not
tuned keep the config's fixed value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from tunelab.spaces.errors import ConfigError
from tunelab.spaces.models import Layers, cnn_network, mlp_network
from tunelab.spaces.params import Value
from tunelab.spaces.regularizers import dropout_mask, random_shifts, shift_examples
from tunelab.spaces.space import branch

#: Config names an STN can tune in the built-in models (`model.dropout` means one rate per layer).
TUNABLE = ("model.dropout", "model.input_dropout", "model.input_noise", "model.shift")


class HyperLinear(nn.Module):
    """`nn.Linear` whose weights respond to `n_hyper` hyperparameters (see the module docstring)."""

    def __init__(self, in_features: int, out_features: int, n_hyper: int, *, zero_init: bool = False) -> None:
        super().__init__()
        self.elem = nn.Linear(in_features, out_features)
        self.hyper = nn.Linear(in_features, out_features, bias=False)
        self.hyper_bias = nn.Parameter(torch.empty(out_features).uniform_(-1, 1) / math.sqrt(in_features))
        self.scale = nn.Linear(n_hyper, 2 * out_features, bias=False)
        nn.init.zeros_(self.scale.weight) if zero_init else nn.init.normal_(self.scale.weight, std=0.01)
        self.out_features = out_features

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """`x` of shape `(N, in)`, `h` of shape `(N, n_hyper)` -> `(N, out)`."""
        s = self.scale(h)
        out = self.out_features
        return self.elem(x) + s[:, :out] * self.hyper(x) + s[:, out:] * self.hyper_bias


class HyperConv(nn.Module):
    """`nn.Conv1d` / `nn.Conv2d` whose filters respond to the hyperparameters, per output channel."""

    def __init__(self, dim: int, c_in: int, c_out: int, kernel: int, n_hyper: int, *, stride: int = 1,
                 padding: int = 0, zero_init: bool = False) -> None:
        super().__init__()
        conv = nn.Conv1d if dim == 1 else nn.Conv2d
        self.elem = conv(c_in, c_out, kernel, stride=stride, padding=padding)
        self.hyper = conv(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.hyper_bias = nn.Parameter(torch.empty(c_out).uniform_(-1, 1) / math.sqrt(c_in * kernel**dim))
        self.scale = nn.Linear(n_hyper, 2 * c_out, bias=False)
        nn.init.zeros_(self.scale.weight) if zero_init else nn.init.normal_(self.scale.weight, std=0.01)
        self.c_out, self.dim = c_out, dim

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """`x` of shape `(N, C_in, *spatial)`, `h` of shape `(N, n_hyper)`."""
        s = self.scale(h).reshape(h.shape[0], 2 * self.c_out, *([1] * self.dim))
        c = self.c_out
        return self.elem(x) + s[:, :c] * self.hyper(x) + s[:, c:] * self.hyper_bias.reshape(1, c, *([1] * self.dim))


class TunedRegularizer(nn.Module):
    """A regulariser whose strength is hyperparameter `index`, one value per example (training mode only)."""

    def __init__(self, kind: str, name: str, index: int) -> None:
        super().__init__()
        self.kind, self.hyper, self.index = kind, name, index
        self._values: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply this regulariser at the per-example values set by `StnModel.set_hyper`."""
        if not self.training or self._values is None:
            return x
        v = self._values[:, self.index].detach()  # strengths act through the hypernetwork only (as the reference)
        if self.kind == "dropout":
            return dropout_mask(x, v)
        if self.kind == "noise":
            return x + v.reshape(-1, *([1] * (x.dim() - 1))) * torch.randn_like(x)
        return shift_examples(x, random_shifts(v, x))


class StnModel(nn.Module):
    """A network of hyperlayers and tuned regularisers, driven by per-example hyperparameters.

    Call `set_hyper(h, values)` before a forward pass: `h` (shape `(N, n_hyper)`) is what the
    hyperlayers see (unconstrained hyperparameters, or their centred offsets for Delta-STN),
    `values` the constrained strengths the regularisers apply. `model(x)` then works like any
    network, so the trainer's pieces (`make_step`, `evaluate`) drive it unchanged.

    Attributes:
        names: The tuned hyperparameters, in the order of `h`'s columns.
    """

    def __init__(self, layers: Sequence[nn.Module], names: Sequence[str]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.names = tuple(names)
        self._h: torch.Tensor | None = None

    def set_hyper(self, h: torch.Tensor, values: torch.Tensor) -> None:
        """Set the hypernetwork input and the regularisers' values for the next forward passes."""
        self._h = h
        for m in self.layers:
            if isinstance(m, TunedRegularizer):
                m._values = values

    def general_parameters(self) -> list[nn.Parameter]:
        """The plain layers' weights (`W_e`, `b_e`, norms): Delta-STN's general parameters."""
        response = {id(p) for p in self.response_parameters()}
        return [p for p in self.parameters() if id(p) not in response]

    def response_parameters(self) -> list[nn.Parameter]:
        """The hyperlayers' response weights (`W_h`, `b_h`, `U`): Delta-STN's response parameters."""
        out = []
        for m in self.modules():
            if isinstance(m, (HyperLinear, HyperConv)):
                out += [*m.hyper.parameters(), m.hyper_bias, *m.scale.parameters()]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for `x`, at the hyperparameters last set."""
        if self._h is None:
            raise ConfigError("StnModel: call set_hyper(h, values) before the forward pass")
        h = self._h
        if h.shape[0] != x.shape[0]:
            h = h.expand(x.shape[0], -1) if h.shape[0] == 1 else h
        for m in self.layers:
            x = m(x, h) if isinstance(m, (HyperLinear, HyperConv)) else m(x)
        return x


class StnLayers(Layers):
    """Makes the STN variant's layers for the shared MLP / CNN builders (`spaces.models.Layers`)."""

    def __init__(self, names: Sequence[str], zero_init: bool = False) -> None:
        self.names, self.zero_init = tuple(names), zero_init

    def linear(self, n_in: int, n_out: int) -> nn.Module:
        """A `HyperLinear`."""
        return HyperLinear(n_in, n_out, len(self.names), zero_init=self.zero_init)

    def conv(self, dim: int, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> nn.Module:
        """A `HyperConv`."""
        return HyperConv(dim, c_in, c_out, kernel, len(self.names), stride=stride, padding=padding,
                         zero_init=self.zero_init)

    def regularizer(self, kind: str, name: str, value: float) -> nn.Module | None:
        """A `TunedRegularizer` for a tuned name, else the plain one at the config's value."""
        if name in self.names:
            return TunedRegularizer(kind, name, self.names.index(name))
        return super().regularizer(kind, name, value)

    def network(self, layers: list[nn.Module]) -> nn.Module:
        """The `StnModel` of `layers`."""
        return StnModel(layers, self.names)


STN_BUILDERS = {"mlp": mlp_network, "cnn": cnn_network}


def layer_count(config: Mapping[str, Value]) -> int:
    """Hidden layers (MLP) or blocks (CNN) of a config: the layers that `model.dropout` covers."""
    return int(config["model.depth"])


def expand(config: Mapping[str, Value], tuned: Sequence[str]) -> list[str]:
    """The per-layer hyperparameter names of `tuned` (`model.dropout` -> `model.dropout.1`, ...).

    Raises:
        ConfigError: The model has no self-tuning variant, or a name cannot be tuned.
    """
    family = config.get("model")
    if family not in STN_BUILDERS:
        raise ConfigError(f"self-tuning networks exist for the built-in {sorted(STN_BUILDERS)} models, and the "
                          f"config's model is {family!r}; use spaces.mlp() or spaces.cnn()")
    names: list[str] = []
    for name in tuned:
        if name == "model.dropout":
            names += [f"model.dropout.{i + 1}" for i in range(layer_count(config))]
        elif name in TUNABLE:
            names.append(name)
        else:
            raise ConfigError(f"an STN tunes regularisation hyperparameters it can differentiate through: one of "
                              f"{list(TUNABLE)}; {name!r} is not one (structural and optimizer hyperparameters are "
                              f"tuned by the study's other strategies)")
    return names


def build_stn_model(config: Mapping[str, Value], input_shape: Sequence[int], n_outputs: int, names: Sequence[str],
                    *, zero_init: bool = False) -> StnModel:
    """The STN variant of the network `config` describes, tuning the hyperparameters `names` (expanded).

    Raises:
        ConfigError: No self-tuning variant of the family, or missing parameters.
    """
    family = config.get("model")
    if family not in STN_BUILDERS:
        raise ConfigError(f"no self-tuning variant of model {family!r}; use spaces.mlp() or spaces.cnn()")
    try:
        return STN_BUILDERS[family](branch(config, "model"), tuple(int(s) for s in input_shape), n_outputs,
                                    StnLayers(names, zero_init))
    except KeyError as exc:
        raise ConfigError(f"model {family!r}: the config lacks model.{exc.args[0]}") from None


__all__ = [
    "STN_BUILDERS",
    "TUNABLE",
    "HyperConv",
    "HyperLinear",
    "StnLayers",
    "StnModel",
    "TunedRegularizer",
    "build_stn_model",
    "expand",
]
