"""The freeze-thaw learning-curve surrogate (Swersky, Snoek & Adams 2014).

Reference: Swersky, Snoek & Adams, "Freeze-Thaw Bayesian Optimization", arXiv:1406.3896.
The model (section 3 of the paper):

- every configuration `x_n` has an asymptote `f(x_n)`, the value its learning curve converges
  to; the asymptotes are a GP over configurations with a constant mean `m` and a Matern-5/2 ARD
  kernel `K_x` (GPyTorch `ScaleKernel(MaternKernel)`);
- given its asymptote, curve n is `y_n(t) = f(x_n) + g_n(t) + noise`, where the `g_n` are
  independent GPs over epochs with the exponential-decay kernel
  `k(t, t') = s * beta^alpha / (t + t' + beta)^alpha` (an infinite mixture of exponentially
  decaying basis functions; BoTorch's `ExponentialDecayKernel` with its offset fixed to 0);
- so all observations are jointly Gaussian with covariance `O K_x O^T + blockdiag(K_t,n + s2 I)`.

Inference exploits that structure as the paper does: with `A_n = K_t,n + s2 I`,
`lambda_n = 1^T A_n^-1 1` and `gamma_n = 1^T A_n^-1 (y_n - m)`, the asymptotes' posterior is a
GP regression of the per-curve targets `gamma_n / lambda_n` with heteroscedastic noise
`1 / lambda_n`, and the marginal likelihood follows from Woodbury's identity. The cost is
`O(N^3 + N T^3)` for N curves of at most T epochs instead of `O((N T)^3)`. Hyperparameters
(the kernels', `m`, noise) are fitted by maximising the marginal likelihood plus log-priors
(MAP; the paper slice-samples them, which costs tens of fits per decision) with L-BFGS from a
fixed starting point, so a fit is a deterministic function of the data.

Prediction of a trained curve n at a future epoch t (the paper's eq. 8-9): with
`w = A_n^-1 k_t(t_n, t)` and `Omega = 1 - 1^T w`, the mean is `m + w^T (y_n - m) +
Omega (mu_n - m)` and the variance `k_t(t, t) - w^T k_t(t_n, t) + Omega^2 C_nn`, where
`mu_n, C_nn` are the asymptote's posterior mean and variance. A new configuration predicts its
asymptote's posterior plus the prior variance of the curve at that epoch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch

DTYPE = torch.float64


class FreezeThawGP:
    """Swersky et al. 2014's GP over learning curves, fitted by MAP.

    The model does not care whether values are minimised; strategies feed it normalised values.

    Args:
        fit_maxiter: L-BFGS iterations of the hyperparameter fit.
        fit_curves: The hyperparameters are fitted on at most this many curves (the longest);
            the posterior always conditions on all of them.

    Attributes:
        hyperparameters: The fitted values (after `fit`): mean, noise, x outputscale and
            lengthscales, t outputscale, alpha, beta.
    """

    def __init__(self, fit_maxiter: int = 100, fit_curves: int = 64) -> None:
        self.fit_maxiter = fit_maxiter
        self.fit_curves = fit_curves
        self.hyperparameters: dict[str, float | list[float]] = {}

    # ------------------------------------------------------------------ model
    def _build(self, d: int) -> None:
        from botorch.models.kernels import ExponentialDecayKernel
        from gpytorch.constraints import GreaterThan, Interval
        from gpytorch.kernels import MaternKernel, ScaleKernel
        from gpytorch.priors import GammaPrior, LogNormalPrior, NormalPrior

        kx = ScaleKernel(
            MaternKernel(
                nu=2.5,
                ard_num_dims=d,
                lengthscale_prior=LogNormalPrior(math.sqrt(2) + math.log(d) / 2, math.sqrt(3)),
                lengthscale_constraint=GreaterThan(2.5e-2),
            ),
            outputscale_prior=GammaPrior(2.0, 2.0),
        )
        kx.base_kernel.lengthscale = 0.2 * math.sqrt(d)
        kx.outputscale = 1.0
        decay = ExponentialDecayKernel(
            power_constraint=Interval(0.1, 10.0),
            lengthscale_constraint=Interval(0.1, 100.0),
        )
        decay.power = 1.0
        decay.lengthscale = 1.0
        decay.raw_offset.data.fill_(-30.0)  # offset ~1e-13: a constant offset would make asymptotes unidentifiable
        decay.raw_offset.requires_grad_(False)
        kt = ScaleKernel(decay, outputscale_prior=GammaPrior(2.0, 4.0))
        kt.outputscale = 0.5
        self.kx, self.kt = kx.to(DTYPE), kt.to(DTYPE)
        self.mean = torch.zeros((), dtype=DTYPE, requires_grad=True)
        self.drop = torch.ones((), dtype=DTYPE, requires_grad=True)
        self.drop_prior = NormalPrior(1.0, 1.0)
        self.raw_noise = torch.tensor(math.log(math.expm1(1e-2)), dtype=DTYPE, requires_grad=True)
        self.noise_prior = LogNormalPrior(-4.0, 1.0)

    def _phi(self, t: torch.Tensor) -> torch.Tensor:
        """The mean curve above the asymptote: `drop * (beta / (t + beta))^alpha`, the kernel's own basis."""
        decay = self.kt.base_kernel
        return self.drop * (1.0 + t / decay.lengthscale.reshape(())).pow(-decay.power.reshape(()))

    def _noise(self) -> torch.Tensor:
        return torch.nn.functional.softplus(self.raw_noise) + 1e-6

    def _params(self) -> list[torch.Tensor]:
        return [p for p in (*self.kx.parameters(), *self.kt.parameters()) if p.requires_grad] + [
            self.mean,
            self.drop,
            self.raw_noise,
        ]

    def _log_prior(self) -> torch.Tensor:
        total = self.noise_prior.log_prob(self._noise()).sum() + self.drop_prior.log_prob(self.drop).sum()
        for module in (self.kx, self.kt):
            for _, mod, prior, closure, _ in module.named_priors():
                total = total + prior.log_prob(closure(mod)).sum()
        return total

    def _curve_terms(self) -> dict[str, torch.Tensor]:
        """Per-curve Cholesky factors and the sufficient statistics lambda, gamma."""
        Y, M = self._Y, self._M
        T = Y.shape[1]
        kt = self.kt(self._t.unsqueeze(-1)).to_dense()  # (T, T)
        mm = M.unsqueeze(-1) * M.unsqueeze(-2)
        eye = torch.eye(T, dtype=DTYPE)
        diag = torch.where(M.bool(), self._noise(), torch.ones((), dtype=DTYPE))
        A = kt.unsqueeze(0) * mm + torch.diag_embed(diag) + 1e-9 * eye
        L = torch.linalg.cholesky(A)
        r = (Y - self.mean - self._phi(self._t)) * M
        Ainv1 = torch.cholesky_solve(M.unsqueeze(-1), L).squeeze(-1)
        Ainvr = torch.cholesky_solve(r.unsqueeze(-1), L).squeeze(-1)
        return {
            "L": L,
            "kt": kt,
            "r": r,
            "lam": (M * Ainv1).sum(-1),
            "gam": (M * Ainvr).sum(-1),
            "quad": (r * Ainvr).sum(),
            "logdet": 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(),
        }

    def _global_terms(self, c: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The asymptote GP's factors: B = I + L^1/2 K_x L^1/2 and a = (I + Lambda K_x)^-1 gamma."""
        N = self._X.shape[0]
        Kx = self.kx(self._X).to_dense() + 1e-8 * torch.eye(N, dtype=DTYPE)
        sl = torch.sqrt(c["lam"])
        B = torch.eye(N, dtype=DTYPE) + sl.unsqueeze(-1) * Kx * sl.unsqueeze(0)
        LB = torch.linalg.cholesky(B)
        a = sl * torch.cholesky_solve((c["gam"] / sl).unsqueeze(-1), LB).squeeze(-1)
        return {"Kx": Kx, "sl": sl, "LB": LB, "a": a}

    def _mll(self) -> torch.Tensor:
        c = self._curve_terms()
        g = self._global_terms(c)
        Kg = g["Kx"] @ c["gam"]
        v = torch.linalg.solve_triangular(g["LB"], (g["sl"] * Kg).unsqueeze(-1), upper=False)
        quad = c["quad"] - (c["gam"] @ Kg - (v**2).sum())
        logdet = c["logdet"] + 2 * torch.log(torch.diagonal(g["LB"])).sum()
        n = self._M.sum()
        return -0.5 * (quad + logdet + n * math.log(2 * math.pi))

    # ------------------------------------------------------------------ public
    def state(self) -> dict[str, list[float]]:
        """The fitted hyperparameters in raw (unconstrained) form, JSON-ready: `fit(init=...)` takes them."""
        out = {f"kx.{k}": v.detach().reshape(-1).tolist() for k, v in self.kx.named_parameters()}
        out.update({f"kt.{k}": v.detach().reshape(-1).tolist() for k, v in self.kt.named_parameters()})
        out["mean"] = [float(self.mean.detach())]
        out["drop"] = [float(self.drop.detach())]
        out["raw_noise"] = [float(self.raw_noise.detach())]
        return out

    def _load(self, init: dict[str, list[float]]) -> None:
        named = {f"kx.{k}": v for k, v in self.kx.named_parameters()}
        named.update({f"kt.{k}": v for k, v in self.kt.named_parameters()})
        named.update(mean=self.mean, drop=self.drop, raw_noise=self.raw_noise)
        with torch.no_grad():
            for key, value in init.items():
                if key in named and named[key].numel() == len(value):
                    named[key].copy_(torch.as_tensor(value, dtype=DTYPE).reshape(named[key].shape))

    def fit(
        self,
        X: np.ndarray,
        curves: Sequence[Sequence[float]],
        *,
        init: dict[str, list[float]] | None = None,
        optimize: bool = True,
    ) -> FreezeThawGP:
        """Fit to configurations `X` (shape `(N, d)`, features in [0, 1]) and their observed curves.

        Args:
            X: One row per configuration.
            curves: `curves[n][e]` is the value of configuration n after epoch e + 1 (finite values
                only; every curve has at least one).
            init: Hyperparameters (`state()` of an earlier fit) to start from instead of the defaults.
            optimize: False to condition on the data with `init` as they are (no optimisation).

        Returns:
            self.

        Raises:
            ValueError: Shapes that do not match, or an empty curve.
        """
        import gpytorch  # here, not at import: a study that never fits this model never loads gpytorch

        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != len(curves) or X.shape[0] == 0:
            raise ValueError(f"fit needs X of shape (N, d) and N curves, got {X.shape} and {len(curves)} curves")
        if any(len(c) == 0 or not np.all(np.isfinite(c)) for c in curves):
            raise ValueError("every curve needs at least one value, all finite")
        T = max(len(c) for c in curves)
        flat = np.concatenate([np.asarray(c, dtype=np.float64) for c in curves])
        self.y_mean = float(flat.mean())
        self.y_std = float(flat.std()) if flat.size > 1 and flat.std() > 1e-12 else 1.0
        Y = np.zeros((len(curves), T))
        M = np.zeros((len(curves), T))
        for n, c in enumerate(curves):
            Y[n, : len(c)] = (np.asarray(c) - self.y_mean) / self.y_std
            M[n, : len(c)] = 1.0
        self._build(X.shape[1])
        if init:
            self._load(init)
        # hyperparameters are fitted on at most `fit_curves` curves, the longest ones (they carry
        # the shape of the decay); the posterior then conditions on every curve
        order = sorted(range(len(curves)), key=lambda i: (-len(curves[i]), i))[: self.fit_curves]
        sub = np.array(sorted(order))
        if optimize:
            self._set(X[sub], Y[sub], M[sub])
            self._optimize(float(M[sub].sum()))
        self._set(X, Y, M)
        with torch.no_grad(), gpytorch.settings.lazily_evaluate_kernels(False):
            if not torch.isfinite(self._mll()):
                raise RuntimeError("the marginal likelihood is not finite at the fitted hyperparameters")
            self._c = self._curve_terms()
            self._g = self._global_terms(self._c)
            self._mu = self.mean + self._g["Kx"] @ self._g["a"]  # asymptote posterior means (standardised)
            V = torch.linalg.solve_triangular(self._g["LB"], self._g["sl"].unsqueeze(-1) * self._g["Kx"], upper=False)
            self._C = torch.diagonal(self._g["Kx"]) - (V**2).sum(0)
        decay = self.kt.base_kernel
        with torch.no_grad():
            self.hyperparameters = self._summary(decay)
        return self

    def _summary(self, decay: torch.nn.Module) -> dict[str, float | list[float]]:
        return {
            "mean": float(self.mean.detach()) * self.y_std + self.y_mean,
            "drop": float(self.drop.detach()) * self.y_std,
            "noise": float(self._noise().detach()) * self.y_std**2,
            "x_outputscale": float(self.kx.outputscale.detach()),
            "x_lengthscales": [float(v) for v in self.kx.base_kernel.lengthscale.reshape(-1)],
            "t_outputscale": float(self.kt.outputscale.detach()),
            "alpha": float(decay.power),
            "beta": float(decay.lengthscale),
        }

    def _set(self, X: np.ndarray, Y: np.ndarray, M: np.ndarray) -> None:
        self._X = torch.as_tensor(X, dtype=DTYPE)
        self._Y, self._M = torch.as_tensor(Y, dtype=DTYPE), torch.as_tensor(M, dtype=DTYPE)
        self._t = torch.arange(1, Y.shape[1] + 1, dtype=DTYPE)

    def _optimize(self, n: float) -> None:
        """MAP hyperparameters by L-BFGS; a degenerate step (a failed Cholesky) keeps the starting point."""
        import gpytorch

        params = self._params()
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=self.fit_maxiter, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = -(self._mll() + self._log_prior()) / n
            loss.backward()
            return loss

        start = [p.detach().clone() for p in params]
        with warnings.catch_warnings(), gpytorch.settings.lazily_evaluate_kernels(False):
            warnings.simplefilter("ignore")
            try:
                opt.step(closure)
                if not torch.isfinite(closure()):
                    raise RuntimeError("non-finite marginal likelihood")
            except RuntimeError:
                with torch.no_grad():
                    for p, s in zip(params, start, strict=True):
                        p.copy_(s)

    def _kt(self, t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
        return self.kt(t1.reshape(-1, 1), t2.reshape(-1, 1)).to_dense()

    def asymptote(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance of the asymptotes of configurations `X` (shape `(n, d)`)."""
        with torch.no_grad():
            Xs = torch.as_tensor(np.asarray(X, dtype=np.float64), dtype=DTYPE)
            ks = self.kx(self._X, Xs).to_dense()  # (N, n)
            mean = self.mean + ks.T @ self._g["a"]
            V = torch.linalg.solve_triangular(self._g["LB"], self._g["sl"].unsqueeze(-1) * ks, upper=False)
            var = (self.kx.outputscale - (V**2).sum(0)).clamp_min(1e-12)
        return self._out(mean, var)

    def predict_new(self, X: np.ndarray, epochs: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of the (noise-free) value after `epochs` of configurations never trained."""
        mean, var = self.asymptote(X)
        t = torch.as_tensor(np.broadcast_to(np.asarray(epochs, dtype=np.float64), mean.shape).copy(), dtype=DTYPE)
        with torch.no_grad():
            prior = self.kt(t.reshape(-1, 1), diag=True).reshape(-1).numpy()
            shift = self._phi(t).numpy()
        return mean + shift * self.y_std, var + prior * self.y_std**2

    def predict_curve(self, index: Sequence[int], epochs: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of training curve `index[i]` after `epochs[i]` epochs (noise-free)."""
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
        ts = torch.as_tensor(np.asarray(epochs, dtype=np.float64), dtype=DTYPE)
        with torch.no_grad():
            M = self._M[idx]  # (n, T)
            L = self._c["L"][idx]
            kts = self._kt(self._t, ts).T * M  # (n, T): k_t(t_obs, t*) per curve
            w = torch.cholesky_solve(kts.unsqueeze(-1), L).squeeze(-1)
            omega = 1.0 - (w * M).sum(-1)
            mean = (self.mean + self._phi(ts) + (w * self._c["r"][idx]).sum(-1)
                    + omega * (self._mu[idx] - self.mean))
            kss = self.kt(ts.reshape(-1, 1), diag=True).reshape(-1)
            var = (kss - (w * kts).sum(-1) + omega**2 * self._C[idx]).clamp_min(1e-12)
        return self._out(mean, var)

    def _out(self, mean: torch.Tensor, var: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        return mean.numpy() * self.y_std + self.y_mean, var.numpy() * self.y_std**2
