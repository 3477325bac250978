"""DyHPO's deep-kernel GP over (configuration, budget, learning curve so far).

Reference: Wistuba, Kadra & Grabocka, "Supervising the Multi-Fidelity Race of Hyperparameter
Configurations" (NeurIPS 2022; arXiv:2202.09774). A feature extractor reads a configuration, a
budget (the epoch to predict, as a fraction of the run) and the curve observed before it (a 1-D
convolution over the padded curve, max-pooled, as in the paper); a GP with a squared-exponential
kernel on the extracted features predicts the value at that budget. The network and the GP's
hyperparameters are trained together by maximising the exact marginal likelihood (GPyTorch).

DyHPO predicts one budget step ahead, so it trains on (curve before epoch t, value at t). Freeze-
thaw decisions look further ahead (the MFPI-random horizon), so every observed value also enters
with a shorter prefix, drawn from the model's own generator: the model learns to predict epoch t
from epochs 1..j for any j < t, including j = 0, a configuration never trained.

For cost, `fit` trains on at most `max_points` of those examples (a seeded subsample), and
`condition` reuses a fitted network and kernel on newer data: an exact GP posterior with fixed
hyperparameters, one Cholesky factorisation, no training. Both are deterministic functions of
their inputs and seed.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import gpytorch
import numpy as np
import torch

from tunelab.search.power_laws import curve_arrays, standardisation

DTYPE = torch.float64


class _Features(torch.nn.Module):
    """(configuration, budget, padded prefix, mask) -> features: a conv over the curve, then an MLP."""

    def __init__(self, d: int, T: int, hidden: int, out: int, channels: int = 8) -> None:
        super().__init__()
        self.d, self.T = d, T
        self.conv = torch.nn.Conv1d(2, channels, kernel_size=3, padding=1)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(d + 2 + channels, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, out),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x, b = z[:, : self.d], z[:, self.d : self.d + 1]
        curve = z[:, self.d + 1 :].reshape(-1, 2, self.T)  # values and mask
        conv = torch.relu(self.conv(curve)) * curve[:, 1:2] - (1 - curve[:, 1:2]) * 1e3
        pooled = conv.max(-1).values.clamp_min(0.0)  # an empty prefix pools to 0
        last = (curve[:, 0] * curve[:, 1]).sum(-1, keepdim=True) / curve[:, 1].sum(-1, keepdim=True).clamp_min(1.0)
        return self.mlp(torch.cat([x, b, pooled, last * (curve[:, 1].sum(-1, keepdim=True) > 0)], -1))


class _GP(gpytorch.models.ExactGP):
    def __init__(self, train_x: torch.Tensor, train_y: torch.Tensor, likelihood: gpytorch.likelihoods.Likelihood,
                 features: _Features) -> None:
        super().__init__(train_x, train_y, likelihood)
        self.features = features
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())

    def forward(self, z: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        f = self.features(z)
        return gpytorch.distributions.MultivariateNormal(self.mean_module(f), self.covar_module(f))


class DeepKernelCurves:
    """DyHPO's deep-kernel GP (Wistuba et al. 2022) as a freeze-thaw curve model.

    Args:
        max_epochs: Length of a full run.
        seed: Seed of the network's initialisation and of the prefixes drawn.
        hidden: Units of the feature extractor's hidden layers.
        features: Dimension of the features the kernel sees.
        steps: Adam steps of a fit.
        lr: Adam's learning rate.
        max_points: Training examples of a fit at most (a seeded subsample).

    Attributes:
        y_mean, y_std: The standardisation of values, fixed by `fit`.
    """

    def __init__(self, max_epochs: int, seed: int = 0, hidden: int = 64, features: int = 16, steps: int = 150,
                 lr: float = 1e-2, max_points: int = 384) -> None:
        if max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
        self.max_epochs, self.seed = max_epochs, seed
        self.hidden, self.n_features, self.steps, self.lr, self.max_points = hidden, features, steps, lr, max_points
        self.y_mean, self.y_std = 0.0, 1.0
        self._gp: _GP | None = None

    # ------------------------------------------------------------------ inputs
    def _inputs(self, X: np.ndarray, rows: np.ndarray, epochs: np.ndarray, prefix: np.ndarray,
                curves: Sequence[Sequence[float]]) -> torch.Tensor:
        """Inputs that predict curve `rows[i]` at `epochs[i]` from its `prefix[i]` first values."""
        T = self.max_epochs
        n = len(rows)
        vals, mask = np.zeros((n, T)), np.zeros((n, T))
        for i, (r, j) in enumerate(zip(rows, prefix, strict=True)):
            j = int(min(j, T))
            if j:
                vals[i, :j] = (np.asarray(curves[r][:j]) - self.y_mean) / self.y_std
                mask[i, :j] = 1.0
        z = np.concatenate([X[rows], (np.asarray(epochs, dtype=np.float64) / T)[:, None], vals, mask], 1)
        return torch.as_tensor(z, dtype=DTYPE)

    def _examples(self, X: np.ndarray, curves: Sequence[Sequence[float]], rng: np.random.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        idx, values = curve_arrays(curves)
        rows, t = idx[:, 0], idx[:, 1]
        short = np.floor(rng.uniform(size=t.size) * t).astype(np.int64)  # a random prefix j in [0, t - 1]
        rows2, t2 = np.concatenate([rows, rows]), np.concatenate([t, t])
        prefix = np.concatenate([t - 1, short])
        y = (np.concatenate([values, values]) - self.y_mean) / self.y_std
        return self._inputs(X, rows2, t2, prefix, curves), torch.as_tensor(y, dtype=DTYPE)

    def _store(self, X: np.ndarray, curves: Sequence[Sequence[float]]) -> None:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != len(curves) or X.shape[0] == 0:
            raise ValueError(f"fit needs X of shape (N, d) and N curves, got {X.shape} and {len(curves)} curves")
        self._X = X
        self._curves = [list(map(float, c)) for c in curves]

    # ------------------------------------------------------------------ fitting
    def fit(self, X: np.ndarray, curves: Sequence[Sequence[float]]) -> DeepKernelCurves:
        """Train the network and kernel from scratch on configurations `X` (N, d) in [0, 1] and their curves.

        Raises:
            ValueError: Shapes that do not match, or an empty or non-finite curve.
        """
        self.y_mean, self.y_std = standardisation(curves)
        self._store(X, curves)
        rng = np.random.default_rng(self.seed)
        z, y = self._examples(self._X, self._curves, rng)
        if len(y) > self.max_points:
            keep = np.sort(rng.choice(len(y), size=self.max_points, replace=False))
            z, y = z[keep], y[keep]
        with torch.random.fork_rng(devices=[]):  # the layers' initialisation, without touching the caller's stream
            torch.manual_seed(int(self.seed))
            features = _Features(self._X.shape[1], self.max_epochs, self.hidden, self.n_features).to(DTYPE)
        likelihood = gpytorch.likelihoods.GaussianLikelihood(
            noise_constraint=gpytorch.constraints.GreaterThan(1e-5)).to(DTYPE)
        gp = _GP(z, y, likelihood, features).to(DTYPE)
        gp.train()
        likelihood.train()
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, gp)
        opt = torch.optim.Adam(gp.parameters(), lr=self.lr)
        with warnings.catch_warnings(), torch.enable_grad():
            warnings.simplefilter("ignore")
            for _ in range(self.steps):
                opt.zero_grad()
                loss = -mll(gp(z), y)
                if not torch.isfinite(loss):
                    break
                loss.backward()
                opt.step()
        self._gp = gp
        self._posterior(X, curves)
        return self

    def condition(self, X: np.ndarray, curves: Sequence[Sequence[float]]) -> DeepKernelCurves:
        """The fitted model's posterior on (possibly newer) data, with the network and kernel unchanged.

        Raises:
            RuntimeError: The model was never fitted.
        """
        if self._gp is None:
            raise RuntimeError("condition needs a fitted model: call fit first")
        out = copy.copy(self)
        out._gp = copy.deepcopy(self._gp)
        out._posterior(X, curves)
        return out

    def _posterior(self, X: np.ndarray, curves: Sequence[Sequence[float]]) -> None:
        """Condition this model's GP on `X` and `curves` in place (exact posterior, fixed hyperparameters)."""
        self._store(X, curves)
        z, y = self._examples(self._X, self._curves, np.random.default_rng(self.seed))
        self._gp.set_train_data(z, y, strict=False)
        self._gp.eval()
        self._gp.likelihood.eval()

    # ------------------------------------------------------------------ prediction
    def _predict(self, z: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        if self._gp is None:
            raise RuntimeError("the model is not fitted: call fit first")
        with torch.no_grad(), gpytorch.settings.fast_pred_var(False), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = self._gp(z)
            mean, var = post.mean, post.variance.clamp_min(1e-10)
        return mean.numpy() * self.y_std + self.y_mean, var.numpy() * self.y_std**2

    def predict_new(self, X: np.ndarray, epochs: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of the value after `epochs` of configurations `X` (n, d) never trained."""
        X = np.asarray(X, dtype=np.float64)
        n = X.shape[0]
        z = self._inputs(X, np.arange(n), np.broadcast_to(np.asarray(epochs), (n,)), np.zeros(n, dtype=np.int64),
                         [[]] * n)
        return self._predict(z)

    def predict_curve(self, index: Sequence[int], epochs: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of fitted curve `index[i]` after `epochs[i]` epochs, given everything it has observed."""
        rows = np.asarray(index, dtype=np.int64)
        prefix = np.array([len(self._curves[r]) for r in rows], dtype=np.int64)
        return self._predict(self._inputs(self._X, rows, np.asarray(epochs), prefix, self._curves))
