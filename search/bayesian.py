"""`search.Bayesian`: GP-based Bayesian optimisation with BoTorch.

The method is the standard one of BoTorch (Balandat et al., "BoTorch: A Framework for
Efficient Monte-Carlo Bayesian Optimization", NeurIPS 2020) with the acquisition of Ament et
al., "Unexpected Improvements to Expected Improvement for Bayesian Optimization", NeurIPS 2023:

1. the first `n_initial` proposals are points of a scrambled Sobol sequence;
2. afterwards a Gaussian process is fitted (by marginal likelihood, float64) to every finished
   trial; from `warm_after` trials on, starting from the hyperparameters of the previous fit
   (stored with its proposal: one more trial moves the optimum little then, and a warm start
   costs a fraction of a cold one):
   `SingleTaskGP` when the space is all numbers, `MixedSingleTaskGP` (a continuous kernel
   times/plus a Hamming-distance categorical kernel) when it has categorical parameters or
   choices. Inputs are the space's compact encoding (numbers as unit positions, so they are
   normalised to [0, 1]; categories as indices), outcomes are standardised;
3. the next point maximises log expected improvement over the incumbent (the largest posterior
   mean at the observed points; Ament et al. 2023): analytic, with the GP's training solve done
   once per ask (`search.acquisition.CachedLogEI`), when nothing else is in flight, and
   `qLogNoisyExpectedImprovement` with the in-flight trials as `X_pending` otherwise (so
   parallel workers do not all pick the same point). The maximiser is found by L-BFGS-B over
   the continuous dimensions alternating with local search over the categorical ones
   (`optimize_acqf_mixed_alternating`, its local searches started around the five best
   observed points and from a continuous relaxation), or plain `optimize_acqf` without
   categories.

Failed trials (errors, divergence, out of memory) count as bad: they enter the GP with the worst
value observed so far, so the model learns to avoid their region. Conditional parameters that a
config leaves inactive take neutral values in the encoding. Everything random (Sobol
scrambling, MC samples, restarts) is seeded from `(seed, number of proposals)`.

A study with several objectives (`studies.create(..., objectives=...)`) is searched by
`search.mobo`: qLogNEHVI on one GP per objective, or ParEGO beyond a few objectives.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from tunelab.search.base import History, Request, Strategy, check_int, config_key, seen_configs
from tunelab.search.encoding import MixedEncoding
from tunelab.search.gp_fit import FIT, fitted, load_fit
from tunelab.search.random import quasi_point


class Bayesian(Strategy):
    """Bayesian optimisation: Sobol start, GP surrogate, qLogNEI acquisition (BoTorch).

    Args:
        seed: Seed of every random choice.
        n_initial: Sobol points before the GP takes over (default: `min(10, max(5, d // 2))`
            for a space of `d` searchable parameters, at least 2).
        num_restarts: Restarts of the acquisition optimiser.
        raw_samples: Random points scored to pick the restarts.
        mc_samples: Quasi-MC samples of the acquisition function.
        fit_maxiter: L-BFGS iterations of a GP hyperparameter fit from BoTorch's initial values.
        alternations: Rounds of the mixed acquisition optimiser (continuous L-BFGS-B, then local
            search over the categories).
        refit_maxiter: L-BFGS iterations of a fit that starts from the previous fit's
            hyperparameters (stored with each proposal as the attribute `gp_fit`, so a resumed
            study starts from the same ones); None fits every time from scratch.
        warm_after: Finished trials from which fits start from the previous one (before, each
            fit starts from BoTorch's initial values; with few trials a fit is cheap).

    Raises:
        ConfigError: Non-positive settings.
    """

    name = "bayesian"
    multi_objective = True  # qLogNEHVI / ParEGO (search.mobo)

    def __init__(
        self,
        seed: int = 0,
        n_initial: int | None = None,
        num_restarts: int = 8,
        raw_samples: int = 256,
        mc_samples: int = 128,
        fit_maxiter: int = 200,
        alternations: int = 16,
        refit_maxiter: int | None = 40,
        warm_after: int = 10,
    ) -> None:
        super().__init__(seed)
        for key, value, high, optional in (
            ("n_initial", n_initial, 10_000, True),
            ("num_restarts", num_restarts, 1_000, False),
            ("raw_samples", raw_samples, 100_000, False),
            ("mc_samples", mc_samples, 100_000, False),
            ("fit_maxiter", fit_maxiter, 100_000, False),
            ("alternations", alternations, 10_000, False),
            ("refit_maxiter", refit_maxiter, 100_000, True),
            ("warm_after", warm_after, 10**9, False),
        ):
            check_int("Bayesian", key, value, 1, high, optional=optional)
        self.n_initial = n_initial
        self.num_restarts = num_restarts
        self.raw_samples = raw_samples
        self.mc_samples = mc_samples
        self.fit_maxiter = fit_maxiter
        self.alternations = alternations
        self.refit_maxiter = refit_maxiter
        self.warm_after = warm_after

    def initial_points(self, dim: int) -> int:
        """How many Sobol points start a study over `dim` searchable parameters."""
        if self.n_initial is not None:
            return self.n_initial
        return min(10, max(5, dim // 2))

    def ask(self, history: History) -> Request:
        """Next configuration: a Sobol point during the initial design, then the qLogNEI maximiser.

        A study with several objectives: qLogNEHVI (or ParEGO), see `search.mobo`.
        """
        if history.multi_objective:
            from tunelab.search.mobo import ask_multi

            return ask_multi(self, history)
        enc = MixedEncoding(history.space)
        k = len(history.trials)
        observed = [t for t in history.trials if t.state in ("complete", "pruned", "failed")]
        def good(t: Any) -> bool:  # failed and infeasible (outcome constraints) trials count as the worst seen
            return t.state != "failed" and t.value is not None and math.isfinite(t.value) and t.violation <= 0

        values = [t.value for t in observed if good(t)]
        if k < self.initial_points(enc.dim) or len(values) < 2 or enc.dim == 0:
            return Request.start(enc.from_unit(quasi_point("sobol", enc.dim, self.seed, k)), attrs={"phase": "sobol"})
        worst = max(values)
        ys = [t.value if good(t) else worst for t in observed]
        X = np.stack([enc.encode(t.config) for t in observed])
        pending = [enc.encode(t.config) for t in history.trials if t.state in ("pending", "running", "paused")]
        seed = int(np.random.default_rng([self.seed, k]).integers(2**31 - 1))
        # the last fit's hyperparameters, stored with its proposal: a resumed study warm-starts the same way
        prior = None
        if len(observed) >= self.warm_after:
            prior = next((t.attrs[FIT] for t in reversed(history.trials) if isinstance(t.attrs.get(FIT), dict)), None)
        try:
            x, fit = self._maximise(enc, X, -np.asarray(ys), np.stack(pending) if pending else None, seed, prior)
        except Exception as err:  # a numerically degenerate fit must not stop the study
            fallback = history.space.sample(self.rng(history))
            return Request.start(fallback, attrs={"phase": "random", "reason": repr(err)})
        config = enc.decode(x)
        if config_key(config) in seen_configs(history.trials):  # a finite space can run out of new points
            return Request.start(history.space.sample(self.rng(history)),
                                 attrs={"phase": "random", "reason": "dup", FIT: fit})
        return Request.start(config, attrs={"phase": "gp", FIT: fit})

    def _maximise(self, enc: MixedEncoding, X: np.ndarray, y: np.ndarray, pending: np.ndarray | None,
                  seed: int, prior: dict[str, list[float]] | None = None) -> tuple[np.ndarray, dict[str, list[float]]]:
        """Fit the GP to `(X, y)` (y maximised); the acquisition's maximiser, shape `(dim,)`, and the fit.

        `prior` holds the hyperparameters of the previous fit (by parameter name); with
        `refit_maxiter` set, the fit starts from them and stops after that many iterations.
        """
        from botorch.acquisition.logei import qLogNoisyExpectedImprovement
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import MixedSingleTaskGP, SingleTaskGP
        from botorch.sampling import SobolQMCNormalSampler
        from gpytorch.mlls import ExactMarginalLogLikelihood

        from tunelab.search.acquisition import CachedLogEI  # BoTorch: imported when a GP is fitted

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
            # proposal; 200 iterations cost ~1.5 s at 25-100 trials. One more trial moves the
            # optimum little: from the previous fit, `refit_maxiter` iterations do (as Optuna's
            # GPSampler reuses its last kernel parameters).
            maxiter = self.fit_maxiter
            if prior is not None and self.refit_maxiter is not None and load_fit(model, prior):
                maxiter = self.refit_maxiter
            fit_gpytorch_mll(
                ExactMarginalLogLikelihood(model.likelihood, model),
                optimizer_kwargs={"options": {"maxiter": maxiter}},
            )
            fit = fitted(model)
            if pending is None:  # one point at a time: analytic log EI, the training solve done once
                model.eval()
                acq = CachedLogEI(model)
            else:  # in-flight trials: their joint posterior with the candidate (Monte Carlo)
                acq = qLogNoisyExpectedImprovement(
                    model,
                    X_baseline=train_x,
                    sampler=SobolQMCNormalSampler(torch.Size([self.mc_samples]), seed=seed),
                    X_pending=torch.as_tensor(pending, dtype=dtype),
                    prune_baseline=True,
                )
            x = self.maximise_acquisition(acq, enc)
        return x, fit

    def maximise_acquisition(self, acq: Any, enc: MixedEncoding, share: int = 1) -> np.ndarray:
        """The point of the encoding's box that maximises `acq`, shape `(dim,)`.

        L-BFGS-B alternating with local search over the categories
        (`optimize_acqf_mixed_alternating`), or `optimize_acqf` for an all-numeric space; the
        caller seeds torch's generator. `share` divides the restarts and raw samples (a costly
        acquisition, such as a hypervolume's).
        """
        num_restarts, raw_samples = self.num_restarts, self.raw_samples
        if share > 1:
            num_restarts, raw_samples = max(2, num_restarts // share), max(16, raw_samples // share)
        from botorch.optim import optimize_acqf, optimize_acqf_mixed_alternating

        cat = sorted(enc.cat_dims)
        upper = [float(enc.cat_dims[i] - 1) if i in enc.cat_dims else 1.0 for i in range(enc.dim)]
        bounds = torch.tensor([[0.0] * enc.dim, upper], dtype=torch.float64)
        options: dict[str, Any] = {"maxiter_alternating": self.alternations}
        if cat:
            cands, _ = optimize_acqf_mixed_alternating(
                acq,
                bounds,
                cat_dims={i: [float(j) for j in range(enc.cat_dims[i])] for i in cat},
                q=1,
                num_restarts=num_restarts,
                raw_samples=raw_samples,
                options=options,
            )
        else:
            cands, _ = optimize_acqf(acq, bounds, q=1, num_restarts=num_restarts, raw_samples=raw_samples)
        return cands.detach().cpu().numpy().reshape(-1)
