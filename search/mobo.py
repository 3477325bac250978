"""Multi-objective Bayesian optimisation for `search.Bayesian` on a study with several objectives.

References:
    Daulton, Balandat & Bakshy, "Parallel Bayesian Optimization of Multiple Noisy Objectives
    with Expected Hypervolume Improvement", NeurIPS 2021 (qNEHVI).
    Ament, Daulton, Eriksson, Balandat & Bakshy, "Unexpected Improvements to Expected
    Improvement for Bayesian Optimization", NeurIPS 2023 (its log form, qLogNEHVI).
    Knowles, "ParEGO: A Hybrid Algorithm With On-Line Landscape Approximation for Expensive
    Multiobjective Optimization Problems", IEEE TEC 2006 (random augmented Chebyshev
    scalarisations), in BoTorch's qParEGO form (Daulton et al. 2020).

After the Sobol design (as for one objective), each objective gets its own GP on the study's
compact encoding (`SingleTaskGP`, or `MixedSingleTaskGP` with categories; BoTorch standardises
each outcome), fitted by marginal likelihood. Values are normalised to minimisation by the
study and negated here (BoTorch maximises). The reference point is BoTorch's
`infer_reference_point` of the observed Pareto front (its nadir, pushed out by 10% of the
front's range). The acquisition is qLogNEHVI with the in-flight trials as `X_pending`, whose
cost grows quickly with the number of objectives (box decompositions): beyond `MAX_EHVI`
objectives it is ParEGO, qLogNEI of a Chebyshev scalarisation with weights drawn uniformly
from the simplex for each proposal. The maximiser is found as for one objective
(`Bayesian.maximise_acquisition`). Failed trials, and trials outside a study's outcome
constraints, enter each objective's GP with that objective's worst observed value.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from tunelab.search.base import History, Request, config_key, seen_configs
from tunelab.search.encoding import MixedEncoding
from tunelab.search.gp_fit import FIT, fitted, load_fit
from tunelab.search.random import quasi_point

MAX_EHVI = 4  # more objectives than this: ParEGO
# The acquisition's quasi-MC samples, and the share of the single-objective optimiser's restarts and
# raw samples: a hypervolume acquisition costs samples x boxes per evaluation. On NAS-Bench-201's six
# categorical edges at 30 trials, one ask took 9.3 s with the single-objective settings (128 samples,
# 8 restarts, 256 raw samples) and 3.1 s with these (benchmarks/multi_objective.py measures the result).
MC_SAMPLES, SHARE = 32, 2
# A sequential ask (nothing in flight): "qlognehvi" (the noisy variant's per-sample fronts; the default) or
# "qlogehvi" (the observed front's boxes, once: 2-3x cheaper). With trials in flight: always qLogNEHVI. On
# NAS-Bench-201 at 100 evaluations (benchmarks/multi_objective.py, 4 paired seeds) qLogNEHVI's normalised
# hypervolume was higher on error vs latency on 4 of 4 seeds (median 0.9425 vs 0.9098) and lower on error vs
# size on 4 of 4 (0.9800 vs 0.9870).
SEQUENTIAL = "qlognehvi"


def observations(history: History) -> tuple[list[int], np.ndarray] | None:
    """Indices of the finished trials and their normalised values `(n, m)`; failed and infeasible ones at the worst.

    None while fewer than two trials have every objective.
    """
    m = len(history.objectives)
    finished = [i for i, t in enumerate(history.trials) if t.state in ("complete", "pruned", "failed")]
    good = {i: history.trials[i].values for i in finished
            if history.trials[i].values is not None and all(math.isfinite(v) for v in history.trials[i].values)
            and history.trials[i].violation <= 0}
    if len(good) < 2:
        return None
    worst = np.max(np.array(list(good.values())), axis=0)
    rows = [i for i in finished if i in good or history.trials[i].state == "failed"
            or history.trials[i].violation > 0]
    Y = np.array([good.get(i, worst) for i in rows], dtype=np.float64).reshape(len(rows), m)
    return rows, Y


def ask_multi(strategy: Any, history: History) -> Request:
    """The next configuration of a multi-objective study (Sobol design, then qLogNEHVI or ParEGO)."""
    enc = MixedEncoding(history.space)
    k = len(history.trials)
    seen = observations(history)
    if k < strategy.initial_points(enc.dim) or seen is None or enc.dim == 0:
        return Request.start(enc.from_unit(quasi_point("sobol", enc.dim, strategy.seed, k)), attrs={"phase": "sobol"})
    rows, Y = seen
    X = np.stack([enc.encode(history.trials[i].config) for i in rows])
    pending = [enc.encode(t.config) for t in history.trials if t.state in ("pending", "running", "paused")]
    seed = int(np.random.default_rng([strategy.seed, k]).integers(2**31 - 1))
    prior = None  # the last fit's hyperparameters (one dict per objective), stored with its proposal
    if len(rows) >= strategy.warm_after:
        prior = next((t.attrs[FIT] for t in reversed(history.trials)
                      if isinstance(t.attrs.get(FIT), list) and len(t.attrs[FIT]) == Y.shape[1]), None)
    try:
        x, how, fit = propose(strategy, enc, X, -Y, np.stack(pending) if pending else None, seed, prior)
    except Exception as err:  # a numerically degenerate fit must not stop the study
        return Request.start(history.space.sample(strategy.rng(history)), attrs={"phase": "random",
                                                                                 "reason": repr(err)})
    config = enc.decode(x)
    if config_key(config) in seen_configs(history.trials):
        return Request.start(history.space.sample(strategy.rng(history)),
                             attrs={"phase": "random", "reason": "dup", FIT: fit})
    return Request.start(config, attrs={"phase": how, FIT: fit})


def propose(strategy: Any, enc: MixedEncoding, X: np.ndarray, Y: np.ndarray, pending: np.ndarray | None,
            seed: int, prior: list[dict[str, list[float]]] | None = None
            ) -> tuple[np.ndarray, str, list[dict[str, list[float]]]]:
    """Fit one GP per objective to `X (n, d)`, `Y (n, m)` (maximised) and maximise the acquisition.

    `prior` holds each GP's hyperparameters from the previous fit: with `refit_maxiter` set, the
    fits start from them and stop after that many iterations (as for one objective).

    Returns:
        The point `(d,)`, the acquisition's name ("qlogehvi", "qlognehvi" or "parego") and the
        fitted hyperparameters (one dict per objective).
    """
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.acquisition.multi_objective.logei import (
        qLogExpectedHypervolumeImprovement,
        qLogNoisyExpectedHypervolumeImprovement,
    )
    from botorch.acquisition.objective import GenericMCObjective
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import MixedSingleTaskGP, ModelListGP, SingleTaskGP
    from botorch.sampling import SobolQMCNormalSampler
    from botorch.utils.multi_objective.box_decompositions.non_dominated import FastNondominatedPartitioning
    from botorch.utils.multi_objective.hypervolume import infer_reference_point
    from botorch.utils.multi_objective.pareto import is_non_dominated
    from botorch.utils.multi_objective.scalarization import get_chebyshev_scalarization
    from botorch.utils.sampling import sample_simplex
    from gpytorch.mlls import ExactMarginalLogLikelihood


    dtype = torch.float64
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # input-scaling and optimisation notices: inputs are already in [0, 1]
        torch.manual_seed(seed)
        train_x = torch.as_tensor(X, dtype=dtype)
        train_y = torch.as_tensor(Y, dtype=dtype)
        cat = sorted(enc.cat_dims)

        def gp(y: torch.Tensor) -> SingleTaskGP:
            return MixedSingleTaskGP(train_x, y, cat_dims=cat) if cat else SingleTaskGP(train_x, y)

        models = [gp(train_y[:, [j]]) for j in range(train_y.shape[1])]
        for j, sub in enumerate(models):
            warm = prior is not None and strategy.refit_maxiter is not None and load_fit(sub, prior[j])
            fit_gpytorch_mll(ExactMarginalLogLikelihood(sub.likelihood, sub), optimizer_kwargs={
                "options": {"maxiter": strategy.refit_maxiter if warm else strategy.fit_maxiter}})
        fit = [fitted(sub) for sub in models]
        model = ModelListGP(*models)
        sampler = SobolQMCNormalSampler(torch.Size([min(strategy.mc_samples, MC_SAMPLES)]), seed=seed)
        x_pending = torch.as_tensor(pending, dtype=dtype) if pending is not None else None
        if train_y.shape[1] <= MAX_EHVI and x_pending is None and SEQUENTIAL == "qlogehvi":  # the front's boxes
            front = train_y[is_non_dominated(train_y)]
            ref = infer_reference_point(front)
            acq = qLogExpectedHypervolumeImprovement(
                model, ref_point=ref.tolist(), partitioning=FastNondominatedPartitioning(ref_point=ref, Y=front),
                sampler=sampler)
            how = "qlogehvi"
        elif train_y.shape[1] <= MAX_EHVI:
            front = train_y[is_non_dominated(train_y)]
            acq = qLogNoisyExpectedHypervolumeImprovement(
                model, ref_point=infer_reference_point(front).tolist(), X_baseline=train_x, sampler=sampler,
                X_pending=x_pending, prune_baseline=True)
            how = "qlognehvi"
        else:
            weights = sample_simplex(train_y.shape[1], dtype=dtype).squeeze(0)
            scalarise = get_chebyshev_scalarization(weights, train_y)
            acq = qLogNoisyExpectedImprovement(model, X_baseline=train_x, sampler=sampler, X_pending=x_pending,
                                               objective=GenericMCObjective(lambda s, X=None: scalarise(s)),
                                               prune_baseline=True)
            how = "parego"
        return strategy.maximise_acquisition(acq, enc, share=SHARE), how, fit


__all__ = ["MAX_EHVI", "ask_multi", "observations", "propose"]
