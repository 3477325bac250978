"""A prior over learning curves that depend on hyperparameters: the data a curve PFN is trained on.

The prior follows the published description of ifBO's FT-PFN prior (Rakotoarison, Adriaensen,
Mallik, Garibov, Bergman & Hutter, "In-Context Freeze-Thaw Bayesian Optimization for
Hyperparameter Optimization", ICML 2024, section 4 and appendix): a task is a random function
from hyperparameters to the parameters of a curve; a curve is a weighted combination of
parametric basis curves; observations carry noise. The basis families are those LC-PFN's prior
mixes (Adriaensen, Rakotoarison, Müller & Hutter, "Efficient Bayesian Learning Curve
Extrapolation using Prior-Data Fitted Networks", NeurIPS 2023): exponential, power law
(pow3-like), logarithmic (ilog2-like) and Janoschek. This module is written from those
descriptions; its constants are tunelab's own (version `PRIOR_VERSION`).

One task (all tensors batched over `B` tasks):

- `d ~ U{1..D_MAX}` active hyperparameters; `n` configurations `x ~ U[0, 1]^d`, zero-padded to
  `D_MAX` columns (a space with fewer dimensions looks like this to the network).
- A random two-layer tanh network `z = W2 tanh(W1 x + b1)` per task gives each configuration
  `P = 10` curve parameters; a task-level offset and scale per parameter set how much the
  hyperparameters matter (from not at all to dominating).
- The curve of a configuration at training progress `t in (0, 1]` (epoch / max epochs):
  `y(t) = y0 + (y_inf - y0) * sum_k w_k g_k(beta t) - drop(t)` with asymptote `y_inf` and start
  `y0 < y_inf` in [0, 1], rate `beta`, basis weights `w = softmax(.)` over
  `g_1 = 1 - exp(-s)`, `g_2 = 1 - (1 + s)^-alpha`, `g_3 = log(1 + s) / (1 + log(1 + s))`,
  `g_4 = 1 - exp(-s^delta)`, and for some configurations an over-fitting decline
  `drop(t) = o * max(0, t - t_peak)` or a divergence to a floor after `t_div`.
- Observations: `y(t) + eps`, `eps ~ N(0, sigma^2)` with a task-level `sigma` log-uniform in
  `[1e-3, 0.05]`, clipped to [0, 1]. Higher is better.

Properties the prior is built to have (tested in `tests/search/test_curve_pfn.py`): curves rise
in expectation, saturate (the gain of the last half of training is smaller than the first
half's), and depend on the hyperparameters (configurations close in `x` have close curves).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PRIOR_VERSION = "tunelab-curve-prior-1"
D_MAX = 24  # hyperparameter columns the network reads (wider spaces are projected: see search.pfn)
N_PARAMS = 10
HIDDEN = 16


@dataclass(frozen=True)
class Tasks:
    """A batch of sampled tasks.

    Attributes:
        x: `(B, n, D_MAX)` configurations in [0, 1] (zero beyond each task's `d`).
        t: `(T,)` training progress of each epoch, `epoch / T`.
        y: `(B, n, T)` noisy observed curves in [0, 1] (higher is better).
        clean: `(B, n, T)` the same curves without noise.
    """

    x: torch.Tensor
    t: torch.Tensor
    y: torch.Tensor
    clean: torch.Tensor


def curves(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Curves from per-configuration parameters.

    Args:
        z: `(..., N_PARAMS)` unconstrained parameters (see the module docstring for their roles).
        t: `(T,)` training progress in (0, 1].

    Returns:
        `(..., T)` noise-free curves in [0, 1].
    """
    y_inf = torch.sigmoid(z[..., 0:1])
    y0 = y_inf * torch.sigmoid(z[..., 1:2] - 1.0)  # a start below the asymptote
    beta = torch.exp(1.5 + 1.2 * torch.tanh(z[..., 2:3] / 2))  # rate: curves saturate within the run or not
    w = torch.softmax(z[..., 3:7], dim=-1)
    alpha = torch.exp(0.6 * torch.tanh(z[..., 7:8]))
    delta = torch.exp(0.5 * torch.tanh(z[..., 8:9]))
    s = beta * t
    g = torch.stack([1 - torch.exp(-s), 1 - (1 + s) ** (-alpha), torch.log1p(s) / (1 + torch.log1p(s)),
                     1 - torch.exp(-(s ** delta))], dim=-1)
    rise = y0 + (y_inf - y0) * (g * w.unsqueeze(-2)).sum(-1)
    # over-fitting: past a peak, some configurations decline (z[..., 9] > 1, about 16% of them)
    peak = torch.sigmoid(z[..., 9:10] * 2.0)
    slope = torch.relu(z[..., 9:10] - 1.0) * 0.15
    return (rise - slope * torch.relu(t - peak)).clamp(0.0, 1.0)


def sample(batch: int, n: int, T: int, generator: torch.Generator) -> Tasks:
    """Sample `batch` tasks of `n` configurations with curves of `T` epochs.

    Args:
        batch: Tasks.
        n: Configurations per task.
        T: Epochs per curve.
        generator: The random generator (the caller owns it).

    Returns:
        The tasks.
    """
    g = generator
    d = torch.randint(1, D_MAX + 1, (batch, 1, 1), generator=g)
    x = torch.rand(batch, n, D_MAX, generator=g) * (torch.arange(D_MAX).view(1, 1, -1) < d)
    w1 = torch.randn(batch, D_MAX, HIDDEN, generator=g) * (3.0 / d.float().sqrt())
    b1 = torch.randn(batch, 1, HIDDEN, generator=g)
    w2 = torch.randn(batch, HIDDEN, N_PARAMS, generator=g) / HIDDEN**0.5
    h = torch.tanh(x @ w1 + b1) @ w2  # (B, n, P): how the hyperparameters move each curve parameter
    offset = torch.randn(batch, 1, N_PARAMS, generator=g) * 1.2
    offset[..., 0] += 0.8  # asymptotes mostly above one half
    scale = torch.rand(batch, 1, N_PARAMS, generator=g) * 4.0  # 0: the hyperparameters do not matter
    z = offset + scale * h
    t = torch.arange(1, T + 1, dtype=torch.float32) / T
    clean = curves(z, t)
    # divergence: in some tasks, configurations with a high "instability" fall to a floor after t_div
    unstable = (torch.rand(batch, 1, 1, generator=g) < 0.2) & (h[..., 2:3] * scale[..., 2:3] > 1.5)
    t_div = torch.rand(batch, n, 1, generator=g)
    floor = torch.rand(batch, 1, 1, generator=g) * 0.2
    clean = torch.where(unstable & (t > t_div), floor.expand_as(clean), clean)
    sigma = torch.exp(torch.empty(batch, 1, 1).uniform_(-6.9, -3.0, generator=g))  # [1e-3, 0.05]
    y = (clean + sigma * torch.randn(clean.shape, generator=g)).clamp(0.0, 1.0)
    return Tasks(x=x, t=t, y=y, clean=clean)
