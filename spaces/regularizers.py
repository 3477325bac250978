"""Regularisation layers of the built-in models, each named after the hyperparameter that sets it.

`spaces.mlp` and `spaces.cnn` take, besides `dropout` (after every hidden layer or block),
three optional regularisers of the input: `input_noise` (Gaussian noise of that standard
deviation), `shift` (a random shift of each example along its last axis by up to that many
positions, zeros shifted in: data augmentation for signals such as MNIST-1D) and
`input_dropout`. All act in training mode only.

Every module carries `hyper`, the config name it realises (`model.dropout.2` is the dropout
after hidden layer 2), so that a schedule of values can be replayed into a built network
(`set_regularization`) and the self-tuning variant of a model (`spaces.stn`) can give each of
them its own, per-example value.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


def dropout_mask(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Inverted dropout of `x` with per-example rates `p` (shape `(N,)`), in the run's RNG."""
    keep = (1.0 - p).clamp_min(1e-6).reshape(-1, *([1] * (x.dim() - 1)))
    return x * (torch.rand_like(x) < keep).to(x.dtype) / keep


def shift_examples(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Shift each example of `x` along its last axis by `shifts` (ints, shape `(N,)`), filling with zeros."""
    n = x.shape[-1]
    pos = torch.arange(n, device=x.device).reshape(*([1] * (x.dim() - 1)), n)
    src = pos - shifts.reshape(-1, *([1] * (x.dim() - 1)))
    valid = (src >= 0) & (src < n)
    gathered = torch.gather(x, -1, src.clamp(0, n - 1).expand_as(x))
    return gathered * valid.to(x.dtype)


def random_shifts(magnitude: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A shift drawn uniformly from `[-m, m]` for each example, `m = floor(magnitude)` (shape `(N,)`)."""
    m = magnitude.detach().floor().clamp_min(0)
    u = torch.rand(m.shape, device=like.device, dtype=torch.float32)
    return (u * (2 * m + 1)).floor().long() - m.long()


class NamedDropout(nn.Dropout):
    """`nn.Dropout` that knows which hyperparameter sets it (`hyper`)."""

    def __init__(self, p: float, hyper: str) -> None:
        super().__init__(p)
        self.hyper = hyper


class InputNoise(nn.Module):
    """Adds Gaussian noise of standard deviation `std` in training mode."""

    def __init__(self, std: float, hyper: str = "model.input_noise") -> None:
        super().__init__()
        self.std, self.hyper = float(std), hyper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x + std * N(0, 1)` when training, `x` otherwise."""
        return x + self.std * torch.randn_like(x) if self.training and self.std > 0 else x

    def extra_repr(self) -> str:
        """Shown by `print(model)`."""
        return f"std={self.std}"


class RandomShift(nn.Module):
    """Shifts each example along its last axis by a random amount in `[-max_shift, max_shift]` when training."""

    def __init__(self, max_shift: float, hyper: str = "model.shift") -> None:
        super().__init__()
        self.max_shift, self.hyper = float(max_shift), hyper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The shifted batch (training), or `x`."""
        if not self.training or self.max_shift < 1:
            return x
        magnitude = torch.full((x.shape[0],), self.max_shift, device=x.device)
        return shift_examples(x, random_shifts(magnitude, x))

    def extra_repr(self) -> str:
        """Shown by `print(model)`."""
        return f"max_shift={self.max_shift}"


REGULARIZERS = (NamedDropout, InputNoise, RandomShift)


def regularization_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The regularisation layers of a built model, by the hyperparameter name each realises."""
    return {m.hyper: m for m in model.modules() if isinstance(m, REGULARIZERS)}


def set_regularization(model: nn.Module, values: Mapping[str, float]) -> None:
    """Set the strength of a built model's regularisers (`{"model.dropout.1": 0.3, "model.shift": 2, ...}`).

    Names the model lacks are ignored (a network built without that regulariser).
    """
    for name, module in regularization_modules(model).items():
        if name not in values:
            continue
        value = float(values[name])
        if isinstance(module, NamedDropout):
            module.p = min(max(value, 0.0), 1.0)
        elif isinstance(module, InputNoise):
            module.std = max(value, 0.0)
        else:
            module.max_shift = max(value, 0.0)


__all__ = [
    "InputNoise",
    "NamedDropout",
    "RandomShift",
    "dropout_mask",
    "random_shifts",
    "regularization_modules",
    "set_regularization",
    "shift_examples",
]
