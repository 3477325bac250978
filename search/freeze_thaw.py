"""`search.FreezeThaw`: freeze-thaw Bayesian optimisation over learning curves.

Training runs in small increments (one epoch by default): at every decision the strategy either
starts a new configuration or thaws a paused trial from its checkpoint for one more increment,
then the trial pauses again. The learning-curve surrogate is one of:

- `surrogate="power_law"` (the default): Deep Power Laws, Kadra, Janowski, Wistuba & Grabocka,
  "Scaling Laws for Hyperparameter Optimization", NeurIPS 2023 (`search.power_laws`): an ensemble
  of networks maps each configuration to its own power law `alpha + beta * b^-gamma`, so the
  model can learn that some configurations keep improving while others have levelled off.
- `surrogate="deep_kernel"`: DyHPO's deep-kernel GP over (configuration, budget, curve so far),
  Wistuba, Kadra & Grabocka, NeurIPS 2022 (`search.deep_kernel`).
- `surrogate="pfn"`: the learning-curve PFN that ships with tunelab (`search.pfn`), ifBO's design
  (Rakotoarison et al., ICML 2024): a transformer trained once on curves from a prior predicts
  each candidate's value at any later epoch in context, with no fit at all; its bar distribution
  gives MFPI's probability exactly.
- `surrogate="swersky"`: Swersky, Snoek & Adams, "Freeze-Thaw Bayesian Optimization"
  (arXiv:1406.3896, 2014): a GP over configurations for the asymptote of each learning curve and
  an exponential-decay GP over epochs for each curve (`search.curves.FreezeThawGP`), whose decay
  shape every configuration shares.

The default was chosen by measurement on the four replay tables (`benchmarks/replay.py`, 50
seeds): averaged over the tables, Deep Power Laws' mean normalised regret is lower than the PFN's
at 5 full trainings (0.303 against 0.316) and at 20 (0.159 against 0.167). The PFN is better on
the cell table at 20 (0.246 against 0.329) and level or close on the MLP tables, at a third of
the study time, but clearly worse on the character-LM table, a workload its prior was not built
on (0.180 against 0.062 at 20), so it stays an option (`surrogate="pfn"`).

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

Fitting a surrogate from scratch (~0.5 s) at every one-epoch decision would cost more than the
epochs on small workloads, so the strategy fits from scratch only when the number of observed
epochs has grown by `refit_growth` since the last fit, and otherwise adapts the last fit to the
current data: Swersky's GP conditions on it with the last fitted hyperparameters, the power laws
train `refine_steps` more Adam steps once `refine_every` new epochs have arrived (refining at
every one-epoch decision was 60% of a replayed study's time), the deep kernel takes the exact GP
posterior. What a fresh process needs to rebuild the last fit and the last refinement is stored
with the request (`Request.attrs`: Swersky's hyperparameters, or the networks' training
snapshots: which trials, how many epochs of each), so a resumed study decides exactly as one
that never stopped.

Cost: each request records the process time of its decision. With `increment="auto"` a
decision buys enough epochs that deciding costs at most 5% of the training it buys
(`FreezeThaw.step`); the default, one epoch per decision, is the most sample-efficient and is
reproducible bit for bit from the seed.

Retention (`retire`): a paused trial whose probability of beating the best value seen, at the
end of its run, is below `retire_below` (Swersky's GP only, by default: the neural surrogates'
uncertainty is too narrow to act on; retiring on it cost 0.05 of regret on `mnist1d_mlp`), or
that ranks below the `keep_paused` most promising paused trials, is retired: the study marks it
pruned and deletes its checkpoint. The trial that holds the best value seen is never retired.

The acquisition is MFPI-random rather than expected improvement at the end of the run (the
choice of Deep Power Laws and DyHPO): with the power laws, EI was worse on all three replay
tables (6 seeds each; README).

Size: a little over 500 lines: one strategy whose decision, retirement and resumable fits serve
four surrogates behind one interface (the surrogates themselves live in their own modules).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from tunelab.search.base import LIMIT, History, Request, Strategy, TrialView, check_int
from tunelab.search.curves import FreezeThawGP
from tunelab.search.encoding import MixedEncoding
from tunelab.search.random import quasi_point
from tunelab.spaces import ConfigError

HYPER = "ft_hyper"
FIT_AT = "ft_fit_at"
SNAPSHOT = "ft_snapshot"
REFINED = "ft_refined"  # what the last refinement of the power laws trained on (a snapshot like SNAPSHOT)
SURROGATES = ("swersky", "power_law", "deep_kernel", "pfn")
COST = "ft_cost_s"  # [epochs observed when deciding, process seconds the decision took]
AUTO_SHARE = 0.05  # increment="auto": a decision costs at most this share of the training it buys


class FreezeThaw(Strategy):
    """Freeze-thaw BO: a learning-curve surrogate (Deep Power Laws by default) and ifBO's MFPI-random acquisition.

    Size: over 300 lines: the paper's decision (initial design, surrogate fit from a stored
    snapshot, acquisition, retirement) with four surrogates behind one interface.

    Args:
        seed: Seed of every random choice.
        n_initial: Configurations of the initial design (Sobol points), trained `initial_epochs`
            each before the model decides (default: `max(3, min(10, d // 2))` for `d` searchable
            parameters).
        initial_epochs: Epochs of each initial configuration (default: a quarter of the run), so
            the model sees how curves bend before it extrapolates one-epoch curves.
        increment: Epochs trained per decision, or "auto": enough that a decision costs at most 5%
            of the training it buys (see `step`; timing-dependent, so not reproducible bit for bit).
        candidates: New random configurations scored at each decision (drawn from a pool of
            8 times as many Sobol points, built once).
        refit_growth: Fit the surrogate from scratch when the observed epochs have grown by this factor.
        retire_below: Retire paused trials whose chance of beating the best value seen is below this
            (None: 1e-3 with Swersky's GP, 0 with the neural surrogates, whose ensemble spread or
            deep-kernel variance is not calibrated enough to act on; measured on the replay tables).
        keep_paused: Most paused trials (checkpoints) kept; the least promising beyond it are retired.
        fit_maxiter: L-BFGS iterations of a hyperparameter fit (surrogate "swersky").
        surrogate: "power_law" (Deep Power Laws; the default), "pfn" (the shipped learning-curve
            PFN, in context, as ifBO), "deep_kernel" (DyHPO) or "swersky" (Swersky 2014).
        refine_steps: Adam steps that adapt the power laws to newer data.
        refine_every: Adapt the power laws (`refine_steps`) only once this many epochs have been
            observed since their last adaptation; decisions in between use that adaptation (each
            costs about a tenth of one that refines). 1 refines at every decision (0.3.0).
        acquisition: "mfpi" (ifBO's MFPI-random) or "ei" (expected improvement at the end of the
            run over the best value seen, as Deep Power Laws and DyHPO decide).

    Raises:
        ConfigError: Settings out of range.
    """

    name = "freeze_thaw"
    pauses_trials = True

    def __init__(
        self,
        seed: int = 0,
        n_initial: int | None = None,
        initial_epochs: int | None = None,
        increment: int | str = 1,
        candidates: int = 256,
        refit_growth: float = 1.25,
        retire_below: float | None = None,
        keep_paused: int = 64,
        fit_maxiter: int = 50,
        surrogate: str = "power_law",
        refine_steps: int = 20,
        acquisition: str = "mfpi",
        refine_every: int = 4,
    ) -> None:
        super().__init__(seed)
        if surrogate not in SURROGATES:
            raise ConfigError(f"FreezeThaw(surrogate=...) must be one of {SURROGATES}, got {surrogate!r}")
        if acquisition not in ("mfpi", "ei"):
            raise ConfigError(f'FreezeThaw(acquisition=...) must be "mfpi" or "ei", got {acquisition!r}')
        check_int("FreezeThaw", "refine_steps", refine_steps, 0)
        check_int("FreezeThaw", "refine_every", refine_every)
        for key, value, optional in (("n_initial", n_initial, True), ("initial_epochs", initial_epochs, True),
                                     ("candidates", candidates, False), ("keep_paused", keep_paused, False),
                                     ("fit_maxiter", fit_maxiter, False)):
            check_int("FreezeThaw", key, value, optional=optional)
        if increment != "auto" and (not isinstance(increment, int) or isinstance(increment, bool)
                                    or not 1 <= increment <= LIMIT):
            raise ConfigError(f'FreezeThaw(increment=...) must be an int from 1 to {LIMIT:,} or "auto", got '
                              f'{increment!r}')
        if not isinstance(refit_growth, (int, float)) or refit_growth < 1.0:
            raise ConfigError(f"FreezeThaw(refit_growth=...) must be a number >= 1, got {refit_growth!r}")
        if retire_below is not None and (not isinstance(retire_below, (int, float)) or isinstance(retire_below, bool)
                                         or not 0.0 <= retire_below < 1.0):
            raise ConfigError(f"FreezeThaw(retire_below=...) must be None or in [0, 1), got {retire_below!r}")
        self.n_initial = n_initial
        self.initial_epochs = initial_epochs
        self.increment = increment
        self.candidates = candidates
        self.refit_growth = float(refit_growth)
        self.retire_below = None if retire_below is None else float(retire_below)
        self.keep_paused = keep_paused
        self.fit_maxiter = fit_maxiter
        self.surrogate = surrogate
        self.refine_steps = refine_steps
        self.refine_every = refine_every
        self.acquisition = acquisition
        self._cache: tuple[Any, Any] | None = None
        self._base: tuple[Any, Any] | None = None
        self._refined: tuple[Any, Any] | None = None  # (refinement snapshot key, the refined power laws)
        self._keys: tuple[Any, list[str]] | None = None  # (the pool, its configurations' keys)
        self._candidates: tuple[Any, Any] | None = None  # (snapshot key, the surrogate fitted from scratch on it)

    @classmethod
    def stored_args(cls, args: dict[str, Any]) -> dict[str, Any]:
        """How a study stored by an older version decided: it goes on deciding so.

        Before the surrogate could be chosen, studies used Swersky's GP; before `refine_every`
        existed, the power laws were refined at every decision.
        """
        return {"surrogate": "swersky", "refine_every": 1, **args}

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
        worst = _worst(history)
        trials, curves = [], []
        for t in history.trials:
            prefix = _finite_prefix(t)
            broken = t.state == "failed" or len(prefix) < len(t.curve)
            if broken and len(prefix) < history.max_epochs:
                prefix.append(worst)
            if prefix:
                trials.append(t)
                curves.append(prefix)
        return trials, curves

    def _model(self, history: History) -> tuple[Any, list[TrialView], dict[str, Any]] | None:
        """The surrogate fitted to `history` (cached for the last history seen), or None if too little data."""
        key = self._key(history)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        trials, curves = self.observations(history)
        if len(trials) < 2:
            return None
        if self.surrogate == "pfn":  # in context: nothing to fit, nothing to store
            from tunelab.search.pfn import PFNCurves, features

            model = PFNCurves(history.max_epochs).condition(features(history.space, [t.config for t in trials]),
                                                            curves)
            self._cache = (key, (model, trials, {}))
            return self._cache[1]
        X = np.stack([history.space.encode(t.config) for t in trials])
        fit = self._swersky if self.surrogate == "swersky" else self._neural
        made = fit(history, trials, X, curves)
        out = None if made is None else (made[0], trials, made[1])
        self._cache = (key, out)
        return out

    def _swersky(self, history: History, trials: list[TrialView], X: np.ndarray, curves: list[list[float]]
                 ) -> tuple[FreezeThawGP, dict[str, Any]]:
        """Swersky's GP: hyperparameters refitted on growth and stored with the request, else reused."""
        n_obs = sum(len(c) for c in curves)
        last = max((t for t in history.trials if HYPER in t.attrs), key=lambda t: t.attrs[FIT_AT], default=None)
        model = FreezeThawGP(fit_maxiter=self.fit_maxiter)
        if last is not None and n_obs < self.refit_growth * last.attrs[FIT_AT]:
            model.fit(X, curves, init=last.attrs[HYPER], optimize=False)
            return model, {}
        model.fit(X, curves, init=last.attrs[HYPER] if last is not None else None)
        return model, {HYPER: model.state(), FIT_AT: n_obs}

    def _neural(self, history: History, trials: list[TrialView], X: np.ndarray, curves: list[list[float]]
                ) -> tuple[Any, dict[str, Any]] | None:
        """Deep Power Laws or DyHPO's deep kernel: trained from scratch on a snapshot, refined on the present.

        A fit from scratch happens when the observed epochs have grown by `refit_growth`; its
        training data (which trials, how many epochs of each, the imputed worst value) are stored
        with the request as a snapshot, so after a restart the same fit is rebuilt from the
        database. Every decision then adapts that fit to the current data: `refine_steps` more
        Adam steps for the power laws (once `refine_every` new epochs have arrived; the
        refinement's data is stored as a snapshot too), the exact GP posterior for the deep kernel.
        """
        n_obs = sum(len(c) for c in curves)
        last = max((t for t in history.trials if SNAPSHOT in t.attrs), key=lambda t: t.attrs[FIT_AT], default=None)
        info: dict[str, Any] = {}
        if last is None or n_obs >= self.refit_growth * last.attrs[FIT_AT]:
            snap = {**self._snapshot(history, trials, curves), "fit_at": n_obs}
            info = {SNAPSHOT: snap, FIT_AT: n_obs}
        else:
            snap = last.attrs[SNAPSHOT]
        base = self._fit_snapshot(history, snap)
        if base is None:
            return None
        if self.surrogate != "power_law":
            return base.condition(X, curves), info
        if self.refine_every == 1:  # as 0.3.0: every decision refines on all the data it sees
            return base.refine(X, curves, self.refine_steps), info
        ours = [t.attrs[REFINED] for t in history.trials
                if isinstance(t.attrs.get(REFINED), dict) and t.attrs[REFINED].get("base") == snap["fit_at"]]
        latest = max(ours, key=lambda r: r["at"], default=None)
        if SNAPSHOT in info or latest is None or n_obs >= latest["at"] + self.refine_every:
            latest = {**self._snapshot(history, trials, curves), "at": n_obs, "base": snap["fit_at"]}
            info[REFINED] = latest
        refined = self._refine_snapshot(history, base, snap, latest)
        return refined.refine(X, curves, 0), info  # the refined networks, bound to the current data

    @staticmethod
    def _snapshot(history: History, trials: list[TrialView], curves: list[list[float]]) -> dict[str, Any]:
        """The data a fit trains on, as the study can rebuild it: finished or paused trials' epochs, the worst value."""
        durable = [(t, c) for t, c in zip(trials, curves, strict=True) if t.state != "running"]
        return {"trials": [[t.number, len(c)] for t, c in durable], "worst": _worst(history)}

    def _snapshot_data(self, history: History, snap: dict[str, Any]) -> tuple[list[np.ndarray], list[list[float]]]:
        """The configurations (encoded) and curves a snapshot names, rebuilt from the study."""
        by_number = {t.number: t for t in history.trials}
        X, curves = [], []
        for number, n in snap["trials"]:
            t = by_number.get(number)
            if t is None:
                continue
            prefix = _finite_prefix(t)[:n]
            if len(prefix) < n:  # the trial had broken by then: its imputed last value
                prefix.append(float(snap["worst"]))
            X.append(history.space.encode(t.config))
            curves.append(prefix)
        return X, curves

    def _refine_snapshot(self, history: History, base: Any, snap: dict[str, Any], refined: dict[str, Any]) -> Any:
        """`base` refined on the data of snapshot `refined` (cached: one refinement per snapshot per process)."""
        key = (repr(snap), repr(refined))
        if self._refined is None or self._refined[0] != key:
            X, curves = self._snapshot_data(history, refined)
            model = base.refine(np.stack(X), curves, self.refine_steps) if len(curves) >= 2 else base
            self._refined = (key, model)
        return self._refined[1]

    def _fit_snapshot(self, history: History, snap: dict[str, Any]) -> Any:
        """The surrogate trained from scratch on a snapshot's data (cached: one fit per snapshot per process)."""
        from tunelab.search.deep_kernel import DeepKernelCurves
        from tunelab.search.power_laws import PowerLawEnsemble

        key = (self.surrogate, repr(snap))
        if self._base is not None and self._base[0] == key:
            return self._base[1]
        X, curves = self._snapshot_data(history, snap)
        if len(curves) < 2:
            return None
        seed = int(np.random.SeedSequence([self.seed, int(snap["fit_at"])]).generate_state(1)[0])
        kind = PowerLawEnsemble if self.surrogate == "power_law" else DeepKernelCurves
        model = kind(history.max_epochs, seed=seed).fit(np.stack(X), curves)
        self._base = (key, model)
        return model

    # ------------------------------------------------------------------ decisions
    def _pool(self, space: Any) -> tuple[list[dict[str, Any]], np.ndarray]:
        """The new-configuration candidates: `8 * candidates` scrambled Sobol points, built once per space.

        Returns:
            The configurations and their encoding (the PFN's `features` with `surrogate="pfn"`).
        """
        if self._candidates is not None and self._candidates[0] == space:
            return self._candidates[1]
        enc = MixedEncoding(space)
        from scipy.stats import qmc  # imported on use: scipy.stats costs a second to import

        units = qmc.Sobol(d=max(enc.dim, 1), scramble=True, rng=np.random.default_rng(self.seed))
        configs = [enc.from_unit(u[: enc.dim]) for u in units.random(8 * self.candidates)]
        if self.surrogate == "pfn":
            from tunelab.search.pfn import features

            pool = (configs, features(space, configs))
        else:
            pool = (configs, np.stack([space.encode(c) for c in configs]))
        self._candidates = (space, pool)
        return pool

    def _pool_keys(self, space: Any, pool: list[dict[str, Any]]) -> list[str]:
        """`_config_key` of each pool configuration in the space's canonical form (as trials store it), once."""
        if self._keys is None or self._keys[0] is not pool:
            self._keys = (pool, [_config_key(space.validate(c)) for c in pool])
        return self._keys[1]

    def step(self, history: History) -> int:
        """Epochs per decision: `increment`, or with "auto" enough that deciding costs <= 5% of the training.

        The "auto" rule: with `c` the median cost of the last 5 decisions (each request stores its
        own, `ft_cost_s`) and `e` the median seconds per epoch of the trials not running now, a
        decision buys `ceil(c / (0.05 e))` epochs, rounded up to a power of two, at most the run.
        Both numbers are read from the study, so a resumed study continues with the same rule.
        """
        T = history.max_epochs
        if self.increment != "auto":
            return min(int(self.increment), T)
        costs = sorted((t.attrs[COST][0], t.attrs[COST][1]) for t in history.trials if COST in t.attrs)[-5:]
        per_epoch = [t.seconds / t.epochs for t in history.trials
                     if t.state != "running" and t.epochs > 0 and t.seconds > 0]
        if not costs or not per_epoch:
            return 1
        need = float(np.median([c for _, c in costs])) / (AUTO_SHARE * float(np.median(per_epoch)))
        inc = 1
        while inc < need and inc < T:
            inc *= 2
        return min(inc, T)

    def ask(self, history: History) -> Request:
        """Start a new configuration or thaw a paused trial, for one increment (MFPI-random)."""
        space, T = history.space, history.max_epochs
        enc = MixedEncoding(space)
        k = len(history.trials)
        inc = self.step(history)
        if k < self.initial_points(enc.dim):
            config = enc.from_unit(quasi_point("sobol", enc.dim, self.seed, k))
            first = self.initial_epochs if self.initial_epochs is not None else max(inc, T // 4)
            return Request.start(config, epochs=min(first, T), attrs={"phase": "sobol"})
        started = time.process_time()
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
        if self.acquisition == "ei":  # multi-fidelity EI at the end of the run (DPL, DyHPO): tau = f_best
            h, threshold = T, self.incumbent(trials)
        else:
            threshold = self.incumbent(trials) - model.y_std * 10.0**u  # tau = f_best - scale * 10^u
        # candidates: paused trials at epochs + h, new configurations at h
        paused = [(i, t) for i, t in enumerate(trials) if t.state == "paused" and t.epochs < T]
        scores: list[float] = []
        means: list[float] = []
        if paused:
            sc, mu = self._predict(model, [i for i, _ in paused], [min(t.epochs + h, T) for _, t in paused],
                                   threshold)
            scores += list(sc)
            means += list(mu)
        pool, encoded = self._pool(space)
        pick = np.sort(rng.choice(len(pool), size=min(self.candidates, len(pool)), replace=False))
        tried = {_config_key(t.config) for t in history.trials}  # a started point is a trial, not a candidate
        keys = self._pool_keys(space, pool)
        pick = np.array([i for i in pick if keys[int(i)] not in tried], dtype=int)
        if pick.size:
            sc, mu = self._predict(model, None, min(h, T), threshold, encoded[pick])
            scores += list(sc)
            means += list(mu)
        if not scores:  # every candidate drawn was started already and nothing is paused
            return Request.start(space.sample(rng), epochs=inc, attrs={"phase": "random"})
        best = min(range(len(scores)), key=lambda j: (-scores[j], means[j]))
        observed = sum(t.epochs for t in history.trials)
        info = {**info, COST: [observed, round(time.process_time() - started, 6)]}
        if best < len(paused):
            t = paused[best][1]
            return Request.resume(t.number, until_epoch=min(t.epochs + inc, T), attrs=info)
        return Request.start(pool[int(pick[best - len(paused)])], epochs=inc,
                             attrs={"phase": "mfpi", "horizon": h, **info})

    def _predict(self, model: Any, indices: list[int] | None, epochs: Any, threshold: float,
                 X: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Acquisition scores and predicted means of conditioned curves (`indices`) or new configurations (`X`).

        The PFN's bar distribution gives MFPI's probability exactly; the other surrogates' Gaussian
        predictions go through `_score`.
        """
        if hasattr(model, "probs_curve"):
            p = model.probs_curve(indices, epochs) if X is None else model.probs_new(X, epochs)
            mu, var = model.moments(p)
            scores = model.log_below(p, threshold) if self.acquisition == "mfpi" else self._score(mu, var, threshold)
            return scores, mu
        mu, var = model.predict_curve(indices, epochs) if X is None else model.predict_new(X, epochs)
        return self._score(mu, var, threshold), mu

    def _score(self, mu: np.ndarray, var: np.ndarray, threshold: float) -> np.ndarray:
        """Log probability of improving on `threshold` (MFPI), or expected improvement (EI), for minimisation."""
        from scipy.stats import norm

        sd = np.sqrt(var)
        z = (threshold - mu) / sd
        if self.acquisition == "ei":
            return (threshold - mu) * norm.cdf(z) + sd * norm.pdf(z)
        return norm.logcdf(z)

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
        from scipy.stats import norm

        if hasattr(model, "probs_curve"):  # the PFN's own probability of ending below the best value seen
            p_win = np.exp(model.log_below(model.probs_curve([i for i, _ in paused], [T] * len(paused)),
                                           self.incumbent(trials)))
        else:
            mu, var = model.predict_curve([i for i, _ in paused], [T] * len(paused))
            p_win = norm.cdf((self.incumbent(trials) - mu) / np.sqrt(var))
        order = np.argsort(-p_win, kind="stable")
        out = {paused[j][1].number for j in order[self.keep_paused:]}
        below = self.retire_below
        if below is None:  # a GP's probabilities are calibrated enough to act on; an ensemble's spread is not
            below = 1e-3 if self.surrogate == "swersky" else 0.0
        out |= {paused[j][1].number for j in range(len(paused)) if p_win[j] < below}
        best = min(trials, key=lambda t: min((v for v in t.curve if math.isfinite(v)), default=math.inf))
        out.discard(best.number)  # the trial that reached the incumbent value is never retired
        return sorted(out)

    @staticmethod
    def incumbent(trials: list[TrialView]) -> float:
        """The best value seen, at any epoch of any trial (ifBO's f_best)."""
        return min((v for t in trials for v in t.curve if math.isfinite(v)), default=math.inf)


def _config_key(config: Mapping[str, Any]) -> str:
    """A configuration's identity, to tell a started one from a new candidate."""
    return json.dumps(config, sort_keys=True, default=repr)


def _finite_prefix(t: TrialView) -> list[float]:
    """A trial's curve up to its first non-finite value."""
    prefix: list[float] = []
    for v in t.curve:
        if not math.isfinite(v):
            break
        prefix.append(float(v))
    return prefix


def _worst(history: History) -> float:
    """The worst finite value seen (what a failed or diverged trial is imputed with), 1 before any."""
    return max((v for t in history.trials for v in t.curve if math.isfinite(v)), default=1.0)
