"""Deep Power Laws: an ensemble of networks that map a configuration to its learning curve's power law.

Reference: Kadra, Janowski, Wistuba & Grabocka, "Scaling Laws for Hyperparameter Optimization"
(NeurIPS 2023; arXiv:2302.00441). Each member of the ensemble is a small feed-forward network
`g(x) -> (alpha, beta, gamma)` and predicts the value of configuration `x` after a fraction
`b = epochs / max_epochs` of its run as the power law

    y(x, b) = alpha(x) + beta(x) * b ** -gamma(x),   beta, gamma >= 0,

so every configuration has its own asymptote, scale and rate: the model can learn that good
configurations keep improving while others have levelled off, which a curve kernel shared by all
configurations (Swersky et al. 2014) cannot. Members are trained on every observed
(configuration, epoch, value) with the L1 loss, as in the paper, from different random
initialisations; the prediction is the ensemble mean and its uncertainty the members' spread.

Differences from the paper, for cost: the members are trained together as one batched network
(one `torch.bmm` per layer); data are full batches; and a fit has two parts: `fit` trains from
scratch (the paper's 250 epochs) and `refine` continues a fitted ensemble for a few steps on newer
data (the paper refines for a few epochs per iteration as well). Both are deterministic functions
of their inputs and seed, which is what lets `search.FreezeThaw` rebuild them after a restart.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch

DTYPE = torch.float64


def standardisation(curves: Sequence[Sequence[float]]) -> tuple[float, float]:
    """Mean and standard deviation of all values of `curves` (1 when they are constant)."""
    flat = np.concatenate([np.asarray(c, dtype=np.float64) for c in curves]) if len(curves) else np.zeros(0)
    mean = float(flat.mean()) if flat.size else 0.0
    return mean, float(flat.std()) if flat.size > 1 and flat.std() > 1e-12 else 1.0


def curve_arrays(curves: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Flatten curves into (curve index, epoch) pairs and their values.

    Args:
        curves: `curves[n][e]` is the value of curve n after epoch e + 1.

    Returns:
        An int array of shape (P, 2) (curve index, epoch) and the P values.

    Raises:
        ValueError: An empty or non-finite curve.
    """
    if any(len(c) == 0 or not np.all(np.isfinite(c)) for c in curves):
        raise ValueError("every curve needs at least one value, all finite")
    idx = np.array([(n, e + 1) for n, c in enumerate(curves) for e in range(len(c))], dtype=np.int64)
    values = np.concatenate([np.asarray(c, dtype=np.float64) for c in curves])
    return idx.reshape(-1, 2), values


class _Members(torch.nn.Module):
    """E independent MLPs `d -> hidden -> hidden -> 3`, evaluated as one batched network."""

    def __init__(self, members: int, d: int, hidden: int, generator: torch.Generator) -> None:
        super().__init__()
        shapes = [(d, hidden), (hidden, hidden), (hidden, 3)]
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for fan_in, fan_out in shapes:
            bound = 1.0 / math.sqrt(max(fan_in, 1))  # PyTorch's default Linear initialisation
            w = (torch.rand(members, fan_in, fan_out, generator=generator, dtype=DTYPE) * 2 - 1) * bound
            b = (torch.rand(members, 1, fan_out, generator=generator, dtype=DTYPE) * 2 - 1) * bound
            self.weights.append(torch.nn.Parameter(w))
            self.biases.append(torch.nn.Parameter(b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Power-law parameters of shape (E, N, 3) for inputs of shape (N, d)."""
        h = x.unsqueeze(0).expand(self.weights[0].shape[0], -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = torch.nn.functional.leaky_relu(h)
        return h


class PowerLawEnsemble:
    """Deep Power Laws (Kadra et al. 2023): per-configuration power-law curves from an ensemble of networks.

    Args:
        max_epochs: Length of a full run (budgets are fractions of it).
        seed: Seed of the members' initialisation.
        members: Networks in the ensemble (the paper's 5).
        hidden: Units of each of the two hidden layers.
        steps: Adam steps of a fit from scratch.
        lr: Adam's learning rate.

    Attributes:
        y_mean, y_std: The standardisation of values, fixed by `fit`.
    """

    def __init__(self, max_epochs: int, seed: int = 0, members: int = 5, hidden: int = 64, steps: int = 300,
                 lr: float = 1e-2) -> None:
        if max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
        self.max_epochs = max_epochs
        self.seed = seed
        self.members = members
        self.hidden = hidden
        self.steps = steps
        self.lr = lr
        self.y_mean, self.y_std = 0.0, 1.0
        self._net: _Members | None = None

    # ------------------------------------------------------------------ training
    def _data(self, X: np.ndarray, curves: Sequence[Sequence[float]]) -> None:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != len(curves) or X.shape[0] == 0:
            raise ValueError(f"fit needs X of shape (N, d) and N curves, got {X.shape} and {len(curves)} curves")
        idx, values = curve_arrays(curves)
        self._X = torch.as_tensor(X, dtype=DTYPE)
        self._rows = torch.as_tensor(idx[:, 0])
        self._b = torch.as_tensor(idx[:, 1] / self.max_epochs, dtype=DTYPE)
        self._y = torch.as_tensor((values - self.y_mean) / self.y_std, dtype=DTYPE)

    def _fitted(self) -> _Members:
        if self._net is None:
            raise RuntimeError("the ensemble is not fitted: call fit first")
        return self._net

    def _train(self, steps: int) -> None:
        net = self._fitted()
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        for _ in range(steps):
            opt.zero_grad()
            pred = self._curve(net(self._X)[:, self._rows], self._b)
            loss = (pred - self._y).abs().mean()  # L1, summed over members: each member its own loss
            (loss * self.members).backward()
            opt.step()

    @staticmethod
    def _curve(params: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The power law `alpha + softplus(beta) * b^-softplus(gamma)`, for parameters (E, N, 3) and budgets (N,)."""
        alpha, beta, gamma = params.unbind(-1)
        sp = torch.nn.functional.softplus
        return alpha + sp(beta) * torch.exp(-sp(gamma) * torch.log(b))

    def fit(self, X: np.ndarray, curves: Sequence[Sequence[float]]) -> PowerLawEnsemble:
        """Train the ensemble from scratch on configurations `X` (N, d) in [0, 1] and their curves.

        Returns:
            self.

        Raises:
            ValueError: Shapes that do not match, or an empty or non-finite curve.
        """
        self.y_mean, self.y_std = standardisation(curves)
        self._data(X, curves)
        gen = torch.Generator().manual_seed(int(self.seed))
        self._net = _Members(self.members, self._X.shape[1], self.hidden, gen)
        with torch.enable_grad():
            self._train(self.steps)
        return self

    def refine(self, X: np.ndarray, curves: Sequence[Sequence[float]], steps: int) -> PowerLawEnsemble:
        """A copy of this fitted ensemble trained `steps` more Adam steps on newer data (same standardisation).

        Raises:
            RuntimeError: The ensemble was never fitted.
        """
        out = copy.copy(self)
        out._net = copy.deepcopy(self._fitted())
        out._data(X, curves)
        if steps > 0:
            with torch.enable_grad():
                out._train(steps)
        return out

    # ------------------------------------------------------------------ prediction
    def _predict(self, X: torch.Tensor, epochs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        net = self._fitted()
        b = torch.as_tensor(np.asarray(epochs, dtype=np.float64) / self.max_epochs, dtype=DTYPE)
        with torch.no_grad():
            values = self._curve(net(X), b)  # (E, n)
            mean = values.mean(0)
            var = values.var(0, unbiased=False) + 1e-6
        return mean.numpy() * self.y_std + self.y_mean, var.numpy() * self.y_std**2

    def predict_new(self, X: np.ndarray, epochs: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of the value after `epochs` of configurations `X` (shape (n, d))."""
        Xs = torch.as_tensor(np.asarray(X, dtype=np.float64), dtype=DTYPE)
        return self._predict(Xs, np.broadcast_to(np.asarray(epochs), (Xs.shape[0],)))

    def predict_curve(self, index: Sequence[int], epochs: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of fitted curve `index[i]` after `epochs[i]` epochs."""
        return self._predict(self._X[torch.as_tensor(np.asarray(index, dtype=np.int64))], np.asarray(epochs))
