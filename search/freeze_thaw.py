"""`search.FreezeThaw`: freeze-thaw Bayesian optimisation over learning curves.

The surrogate is Swersky, Snoek & Adams, "Freeze-Thaw Bayesian Optimization" (arXiv:1406.3896,
2014): a GP over configurations for the asymptote of each learning curve and an
exponential-decay GP over epochs for each curve (`search.curves.FreezeThawGP`). Training runs
in small increments (one epoch by default): at every decision the strategy either starts a new
configuration or thaws a paused trial from its checkpoint for one more increment, then the trial
pauses again.

The decision uses MFPI-random, the acquisition of Rakotoarison, Adriaensen, Mallik, Garibov,
Bergman & Hutter, "In-Context Freeze-Thaw Bayesian Optimization for Hyperparameter
Optimization", ICML 2024 (ifBO): at each decision a horizon `h` is drawn uniformly from
`1..max_epochs` and an improvement threshold `tau = f_best - scale * 10^u` with `u ~ U(-4, -1)`;
every candidate (each paused trial at `epochs + h`, and random new configurations at `h`) is
scored by the probability that its predicted value there beats `tau`, and the best candidate
gets the next increment. Random horizons and thresholds mix exploitation of curves that are
about to improve with exploration of long-range bets, without the tuning of a fixed horizon.
(Swersky et al. choose with entropy search over a small basket of candidates; MFPI-random is
as good or better in ifBO's benchmarks at a fraction of the cost.) `scale` is the standard
deviation of all observed values, since a study's metric has no known optimum in general.

Failures do not poison the model: non-finite values are never fitted; a trial that failed or
diverged contributes its finite prefix plus one observation equal to the worst value seen,
at the epoch where it broke, so its region looks bad without wrecking the kernel's scale.

Fitting the hyperparameters (L-BFGS, ~1 s) at every one-epoch decision would cost more than
the epochs on small workloads, so the strategy refits only when the number of observed epochs
has grown by `refit_growth` since the last fit, and otherwise conditions on the data with the
last fitted hyperparameters. Those are stored with the request (`Request.attrs`), so a resumed
study reads them back and decides exactly as one that never stopped.

Retention (`retire`): a paused trial whose probability of beating the best value seen, at the
end of its run, is below `retire_below`, or that ranks below the `keep_paused` most promising
paused trials, is retired: the study marks it pruned and deletes its checkpoint. The trial that
holds the best value seen is never retired.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import norm, qmc

from search.base import History, Request, Strategy, TrialView
from search.curves import FreezeThawGP
from search.encoding import MixedEncoding
from search.random import quasi_point
from spaces import ConfigError

HYPER = "ft_hyper"
FIT_AT = "ft_fit_at"


class FreezeThaw(Strategy):
    """Freeze-thaw BO: Swersky et al. 2014's learning-curve GP with ifBO's MFPI-random acquisition.

    Args:
        seed: Seed of every random choice.
        n_initial: Configurations of the initial design (Sobol points), trained `initial_epochs`
            each before the model decides (default: `max(3, min(10, d // 2))` for `d` searchable
            parameters).
        initial_epochs: Epochs of each initial configuration (default: a quarter of the run), so
            the model sees how curves bend before it extrapolates one-epoch curves.
        increment: Epochs trained per decision.
        candidates: New random configurations scored at each decision.
        refit_growth: Refit the hyperparameters when the observed epochs have grown by this factor.
        retire_below: Retire paused trials whose chance of beating the best value seen is below this.
        keep_paused: Most paused trials (checkpoints) kept; the least promising beyond it are retired.
        fit_maxiter: L-BFGS iterations of a hyperparameter fit.

    Raises:
        ConfigError: Settings out of range.
    """

    name = "freeze_thaw"

    def __init__(
        self,
        seed: int = 0,
        n_initial: int | None = None,
        initial_epochs: int | None = None,
        increment: int = 1,
        candidates: int = 256,
        refit_growth: float = 1.25,
        retire_below: float = 1e-3,
        keep_paused: int = 64,
        fit_maxiter: int = 50,
    ) -> None:
        super().__init__(seed)
        for key, value, low in (("n_initial", n_initial, 1), ("initial_epochs", initial_epochs, 1),
                                ("increment", increment, 1), ("candidates", candidates, 1),
                                ("keep_paused", keep_paused, 1), ("fit_maxiter", fit_maxiter, 1)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
                raise ConfigError(f"FreezeThaw({key}=...) must be an int >= {low}, got {value!r}")
        if not isinstance(refit_growth, (int, float)) or refit_growth < 1.0:
            raise ConfigError(f"FreezeThaw(refit_growth=...) must be a number >= 1, got {refit_growth!r}")
        if not isinstance(retire_below, (int, float)) or not 0.0 <= retire_below < 1.0:
            raise ConfigError(f"FreezeThaw(retire_below=...) must be in [0, 1), got {retire_below!r}")
        self.n_initial = n_initial
        self.initial_epochs = initial_epochs
        self.increment = increment
        self.candidates = candidates
        self.refit_growth = float(refit_growth)
        self.retire_below = float(retire_below)
        self.keep_paused = keep_paused
        self.fit_maxiter = fit_maxiter
        self._cache: tuple[Any, Any] | None = None

    # ------------------------------------------------------------------ data
    @staticmethod
    def _key(history: History) -> tuple:
        return tuple((t.number, t.state, t.epochs) for t in history.trials)

    def initial_points(self, dim: int) -> int:
        """Configurations started before the model decides."""
        return self.n_initial if self.n_initial is not None else max(3, min(10, dim // 2))

    @staticmethod
    def observations(history: History) -> tuple[list[TrialView], list[list[float]]]:
        """The trials the model learns from and their curves (failures imputed with the worst value)."""
        finite = [v for t in history.trials for v in t.curve if math.isfinite(v)]
        worst = max(finite) if finite else 1.0
        trials, curves = [], []
        for t in history.trials:
            prefix: list[float] = []
            for v in t.curve:
                if not math.isfinite(v):
                    break
                prefix.append(float(v))
            broken = t.state == "failed" or len(prefix) < len(t.curve)
            if broken and len(prefix) < history.max_epochs:
                prefix.append(worst)
            if prefix:
                trials.append(t)
                curves.append(prefix)
        return trials, curves

    def _model(self, history: History) -> tuple[FreezeThawGP, list[TrialView], dict[str, Any]] | None:
        """The surrogate fitted to `history` (cached for the last history seen), or None if too little data."""
        key = self._key(history)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        trials, curves = self.observations(history)
        if len(trials) < 2:
            return None
        X = np.stack([history.space.encode(t.config) for t in trials])
        n_obs = sum(len(c) for c in curves)
        last = max((t for t in history.trials if HYPER in t.attrs), key=lambda t: t.attrs[FIT_AT], default=None)
        model = FreezeThawGP(fit_maxiter=self.fit_maxiter)
        if last is not None and n_obs < self.refit_growth * last.attrs[FIT_AT]:
            model.fit(X, curves, init=last.attrs[HYPER], optimize=False)
            info: dict[str, Any] = {}
        else:
            model.fit(X, curves, init=last.attrs[HYPER] if last is not None else None)
            info = {HYPER: model.state(), FIT_AT: n_obs}
        out = (model, trials, info)
        self._cache = (key, out)
        return out

    # ------------------------------------------------------------------ decisions
    def ask(self, history: History) -> Request:
        """Start a new configuration or thaw a paused trial, for one increment (MFPI-random)."""
        space, T = history.space, history.max_epochs
        enc = MixedEncoding(space)
        k = len(history.trials)
        inc = min(self.increment, T)
        if k < self.initial_points(enc.dim):
            config = enc.from_unit(quasi_point("sobol", enc.dim, self.seed, k))
            first = self.initial_epochs if self.initial_epochs is not None else max(inc, T // 4)
            return Request.start(config, epochs=min(first, T), attrs={"phase": "sobol"})
        try:
            fitted = self._model(history)
        except Exception as err:  # a degenerate fit must not stop the study
            return Request.start(space.sample(self.rng(history)), epochs=inc, attrs={"phase": "random",
                                                                                  "reason": repr(err)})
        if fitted is None:
            return Request.start(space.sample(self.rng(history)), epochs=inc, attrs={"phase": "random"})
        model, trials, info = fitted
        rng = self.rng(history)
        h = int(rng.integers(1, T + 1))
        u = rng.uniform(-4.0, -1.0)
        threshold = self.incumbent(trials) - model.y_std * 10.0**u  # tau = f_best - scale * 10^u
        # candidates: paused trials at epochs + h, new configurations at h
        paused = [(i, t) for i, t in enumerate(trials) if t.state == "paused" and t.epochs < T]
        scores: list[float] = []
        means: list[float] = []
        if paused:
            mu, var = model.predict_curve([i for i, _ in paused], [min(t.epochs + h, T) for _, t in paused])
            scores += list(norm.logcdf((threshold - mu) / np.sqrt(var)))
            means += list(mu)
        units = qmc.Sobol(d=max(enc.dim, 1), scramble=True, rng=rng).random(self.candidates)[:, : enc.dim]
        configs = [enc.from_unit(u) for u in units]
        mu, var = model.predict_new(np.stack([space.encode(c) for c in configs]), min(h, T))
        scores += list(norm.logcdf((threshold - mu) / np.sqrt(var)))
        means += list(mu)
        best = min(range(len(scores)), key=lambda j: (-scores[j], means[j]))
        attrs = {"phase": "mfpi", "horizon": h, **info}
        if best < len(paused):
            t = paused[best][1]
            return Request.resume(t.number, until_epoch=min(t.epochs + inc, T), attrs=info)
        return Request.start(configs[best - len(paused)], epochs=inc, attrs=attrs)

    def retire(self, history: History) -> list[int]:
        """Paused trials unlikely to beat the best value seen by the end of their run, or beyond `keep_paused`."""
        paused_all = history.paused
        if not paused_all:
            return []
        try:
            fitted = self._model(history)
        except Exception:  # no model: keep everything
            return []
        if fitted is None:
            return []
        model, trials, _ = fitted
        T = history.max_epochs
        paused = [(i, t) for i, t in enumerate(trials) if t.state == "paused"]
        if not paused:
            return []
        mu, var = model.predict_curve([i for i, _ in paused], [T] * len(paused))
        p_win = norm.cdf((self.incumbent(trials) - mu) / np.sqrt(var))
        order = np.argsort(-p_win, kind="stable")
        out = {paused[j][1].number for j in order[self.keep_paused:]}
        out |= {paused[j][1].number for j in range(len(paused)) if p_win[j] < self.retire_below}
        best = min(trials, key=lambda t: min((v for v in t.curve if math.isfinite(v)), default=math.inf))
        out.discard(best.number)  # the trial that reached the incumbent value is never retired
        return sorted(out)

    @staticmethod
    def incumbent(trials: list[TrialView]) -> float:
        """The best value seen, at any epoch of any trial (ifBO's f_best)."""
        return min((v for t in trials for v in t.curve if math.isfinite(v)), default=math.inf)
