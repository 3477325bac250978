"""`search.Bayesian`: GP-based Bayesian optimisation with BoTorch.

The method is the standard one of BoTorch (Balandat et al., "BoTorch: A Framework for
Efficient Monte-Carlo Bayesian Optimization", NeurIPS 2020) with the acquisition of Ament et
al., "Unexpected Improvements to Expected Improvement for Bayesian Optimization", NeurIPS 2023:

1. the first `n_initial` proposals are points of a scrambled Sobol sequence;
2. afterwards a Gaussian process is fitted (by marginal likelihood, float64) to every finished
   trial: `SingleTaskGP` when the space is all numbers, `MixedSingleTaskGP` (a continuous kernel
   times/plus a Hamming-distance categorical kernel) when it has categorical parameters or
   choices. Inputs are the space's compact encoding (numbers as unit positions, so they are
   normalised to [0, 1]; categories as indices), outcomes are standardised;
3. the next point maximises `qLogNoisyExpectedImprovement` with the in-flight trials as
   `X_pending` (so parallel workers do not all pick the same point), by L-BFGS-B over the
   continuous dimensions alternating with local search over the categorical ones
   (`optimize_acqf_mixed_alternating`), or plain `optimize_acqf` without categories.

Failed trials (errors, divergence, out of memory) count as bad: they enter the GP with the worst
value observed so far, so the model learns to avoid their region. Conditional parameters that a
config leaves inactive take neutral values in the encoding. Everything random (Sobol
scrambling, MC samples, restarts) is seeded from `(seed, number of proposals)`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from search.base import History, Request, Strategy, config_key, seen_configs
from search.encoding import MixedEncoding
from search.random import quasi_point
from spaces import ConfigError


class Bayesian(Strategy):
    """Bayesian optimisation: Sobol start, GP surrogate, qLogNEI acquisition (BoTorch).

    Args:
        seed: Seed of every random choice.
        n_initial: Sobol points before the GP takes over (default: `min(10, max(5, d // 2))`
            for a space of `d` searchable parameters, at least 2).
        num_restarts: Restarts of the acquisition optimiser.
        raw_samples: Random points scored to pick the restarts.
        mc_samples: Quasi-MC samples of the acquisition function.
        fit_maxiter: L-BFGS iterations of the GP hyperparameter fit.

    Raises:
        ConfigError: Non-positive settings.
    """

    name = "bayesian"

    def __init__(
        self,
        seed: int = 0,
        n_initial: int | None = None,
        num_restarts: int = 8,
        raw_samples: int = 256,
        mc_samples: int = 128,
        fit_maxiter: int = 200,
    ) -> None:
        super().__init__(seed)
        for key, value, low in (
            ("n_initial", n_initial, 1),
            ("num_restarts", num_restarts, 1),
            ("raw_samples", raw_samples, 1),
            ("mc_samples", mc_samples, 1),
            ("fit_maxiter", fit_maxiter, 1),
        ):
            if value is not None and (not isinstance(value, int) or value < low):
                raise ConfigError(f"Bayesian({key}=...) must be an int >= {low}, got {value!r}")
        self.n_initial = n_initial
        self.num_restarts = num_restarts
        self.raw_samples = raw_samples
        self.mc_samples = mc_samples
        self.fit_maxiter = fit_maxiter

    def initial_points(self, dim: int) -> int:
        """How many Sobol points start a study over `dim` searchable parameters."""
        if self.n_initial is not None:
            return self.n_initial
        return min(10, max(5, dim // 2))

    def ask(self, history: History) -> Request:
        """Next configuration: a Sobol point during the initial design, then the qLogNEI maximiser."""
        enc = MixedEncoding(history.space)
        k = len(history.trials)
        observed = [t for t in history.trials if t.state in ("complete", "pruned", "failed")]
        values = [t.value for t in observed if t.state != "failed" and t.value is not None and math.isfinite(t.value)]
        if k < self.initial_points(enc.dim) or len(values) < 2 or enc.dim == 0:
            return Request.start(enc.from_unit(quasi_point("sobol", enc.dim, self.seed, k)), attrs={"phase": "sobol"})
        worst = max(values)
        ys = [t.value if t.state != "failed" and t.value is not None and math.isfinite(t.value) else worst
              for t in observed]
        X = np.stack([enc.encode(t.config) for t in observed])
        pending = [enc.encode(t.config) for t in history.trials if t.state in ("pending", "running", "paused")]
        seed = int(np.random.default_rng([self.seed, k]).integers(2**31 - 1))
        try:
            x = self._maximise(enc, X, -np.asarray(ys), np.stack(pending) if pending else None, seed)
        except Exception as err:  # a numerically degenerate fit must not stop the study
            fallback = history.space.sample(self.rng(history))
            return Request.start(fallback, attrs={"phase": "random", "reason": repr(err)})
        config = enc.decode(x)
        if config_key(config) in seen_configs(history.trials):  # a finite space can run out of new points
            return Request.start(history.space.sample(self.rng(history)), attrs={"phase": "random", "reason": "dup"})
        return Request.start(config, attrs={"phase": "gp"})

    def _maximise(self, enc: MixedEncoding, X: np.ndarray, y: np.ndarray, pending: np.ndarray | None,
                  seed: int) -> np.ndarray:
        """Fit the GP to `(X, y)` (y maximised) and return the acquisition's maximiser, shape `(dim,)`."""
        from botorch.acquisition.logei import qLogNoisyExpectedImprovement
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import MixedSingleTaskGP, SingleTaskGP
        from botorch.optim import optimize_acqf, optimize_acqf_mixed_alternating
        from botorch.sampling import SobolQMCNormalSampler
        from gpytorch.mlls import ExactMarginalLogLikelihood

        dtype = torch.float64
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # input-scaling and optimisation notices: inputs are already in [0, 1]
            torch.manual_seed(seed)
            train_x = torch.as_tensor(X, dtype=dtype)
            train_y = torch.as_tensor(y, dtype=dtype).reshape(-1, 1)
            cat = sorted(enc.cat_dims)
            model = MixedSingleTaskGP(train_x, train_y, cat_dims=cat) if cat else SingleTaskGP(train_x, train_y)
            # L-BFGS on the mixed kernel's hyperparameters needs ~1,400 iterations to meet scipy's
            # tolerance (10 s here) for a marginal-likelihood gain that does not change the
            # proposal; 200 iterations cost ~1.5 s at 25-100 trials.
            fit_gpytorch_mll(
                ExactMarginalLogLikelihood(model.likelihood, model),
                optimizer_kwargs={"options": {"maxiter": self.fit_maxiter}},
            )
            acq = qLogNoisyExpectedImprovement(
                model,
                X_baseline=train_x,
                sampler=SobolQMCNormalSampler(torch.Size([self.mc_samples]), seed=seed),
                X_pending=torch.as_tensor(pending, dtype=dtype) if pending is not None else None,
                prune_baseline=True,
            )
            upper = [float(enc.cat_dims[i] - 1) if i in enc.cat_dims else 1.0 for i in range(enc.dim)]
            bounds = torch.tensor([[0.0] * enc.dim, upper], dtype=dtype)
            options: dict[str, Any] = {"maxiter_alternating": 16}
            if cat:
                cands, _ = optimize_acqf_mixed_alternating(
                    acq,
                    bounds,
                    cat_dims={i: [float(j) for j in range(enc.cat_dims[i])] for i in cat},
                    q=1,
                    num_restarts=self.num_restarts,
                    raw_samples=self.raw_samples,
                    options=options,
                )
            else:
                cands, _ = optimize_acqf(acq, bounds, q=1, num_restarts=self.num_restarts, raw_samples=self.raw_samples)
        return cands.detach().cpu().numpy().reshape(-1)
