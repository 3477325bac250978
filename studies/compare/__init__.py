"""`studies.compare`: optimizers compared under equal tuning budgets, stored, resumable and reported.

The method follows the literature on fair optimizer comparison:

- Choi et al. 2019 ("On Empirical Comparisons of Optimizers for Deep Learning"): every
  hyperparameter an update depends on is tuned, over the spaces of `spaces.optimizers`.
- Schmidt et al. 2021 ("Descending through a Crowded Valley"): the same budget of trials for
  every optimizer, a one-shot run of each optimizer's defaults, and the selected configuration
  rerun on fresh seeds.
- Dahl et al. 2023 (AlgoPerf, "Benchmarking Neural Network Training Algorithms"): quasi-random
  search (the default strategy is `search.Random(quasi=True)`, scrambled Halton), several
  independent studies, and performance profiles over workloads.
- Dodge et al. 2019 ("Show Your Work"): the expected best validation metric as a function of
  the budget, with bootstrap bands (`studies.compare.stats`); the verdict (`Comparison.verdict`)
  names a winner only where its band at the full budget clears every other arm's.

Equal budgets by construction: `compare` takes one budget and gives it to every arm. A trial
of an optimizer that pays g gradient evaluations per step (SAM, GSAM, AdaHessian: g = 2) trains
`epochs // g` epochs (`equalize="grad_evals"`, the default), so every trial of every arm costs
the same number of gradient evaluations, and "20 trials" is the same compute for every arm.

The package, one job per module:

| module | job |
|---|---|
| `manifest` | the checked arguments, stored once; `Arm` |
| `comparison` | `Comparison`: the arms' studies in the database |
| `runner` | tuning every arm, then rerunning what it selected |
| `analysis` | pure functions over trial records (expected best, floors, costs, time to target) |
| `stats` | the estimators (Dodge et al.'s expected maximum, intervals, performance profiles) |
| `tables` | the results as pandas tables |
| `verdict` | the one-line verdict: a winner only where its interval of expected best clears every other's |
| `plots`, `report` | the PNGs and the Markdown report |
| `fronts` | `studies.compare_fronts`: search strategies compared by hypervolume (several objectives) |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tunelab import search
from tunelab.studies.compare.comparison import Comparison
from tunelab.studies.compare.manifest import KS, MANIFEST, Arm
from tunelab.studies.driver import Budget
from tunelab.studies.executors import Executor
from tunelab.studies.problems import Problem
from tunelab.studies.storage import DEFAULT_STORAGE
from tunelab.trainers import Trainer


def compare(
    problems: Problem | Trainer | str | Sequence[Problem | Trainer | str],
    *,
    optimizers: Sequence[str],
    schedules: Sequence[str] | None = None,
    budget: int | Mapping[str, int] | Budget,
    strategy: search.Strategy | None = None,
    seeds: int | Sequence[int] = 1,
    reruns: int = 3,
    storage: str = DEFAULT_STORAGE,
    name: str = "compare",
    equalize: str = "grad_evals",
    one_shot: bool = True,
    n_workers: int = 1,
    progress: bool = True,
    device: str = "auto",
    executor: str | Executor = "local",
    ray_address: str | None = None,
    resources: Mapping[str, float] | None = None,
    population: int = 1,
) -> Comparison:
    """Compare optimizers under equal tuning budgets, and return the `Comparison`.

    For every problem, optimizer, schedule and study seed: tune the optimizer's hyperparameters
    (and the schedule's) with `strategy` within `budget`, select the configuration of best
    validation metric, and rerun it, and the family's defaults (the one-shot baseline), on
    `reruns` fresh seeds to measure test metrics. Calling it again with the same arguments
    continues an interrupted comparison and trains only what is missing.

    Args:
        problems: One or several problems: built-in names (`"mnist1d_mlp"`, `"mnist1d_cnn"`,
            `"digits_cnn"`), `studies.Problem`s, or trainers (an MLP on their workload).
        optimizers: Optimizer families (`spaces.optimizers.names()`), e.g. `["sgd", "adamw", "sam"]`.
        schedules: Learning-rate schedules (`spaces.schedules.names()`); default `["cosine"]`.
        budget: Per tuning study: trials (an int, or `{"trials": n}`), or `{"grad_evals": n}`.
        strategy: The tuner of every study (default `search.Random(quasi=True)`); study seed s
            uses its seed + s. Strategies that pause trials are refused with a trials budget.
        seeds: Independent tuning studies per arm: a count, or a list of study seeds.
        reruns: Fresh seeds on which the selected configuration (and the defaults) are retrained.
        storage: SQLAlchemy URL of the database.
        name: The comparison's name; its studies are named `name/...`.
        equalize: "grad_evals" (default): trials of optimizers that pay g gradient evaluations
            per step train `epochs // g` epochs, so every trial costs the same; "epochs": every
            trial trains the same epochs (SAM then spends twice the compute).
        one_shot: Also train every family's default configuration on the rerun seeds.
        n_workers: Trials trained at once (a local process pool when > 1, or Ray actors).
        progress: Print one line per finished study.
        device: Device of the problems built from names.
        executor: "local", "ray" or an `Executor` instance (see `Study.optimize`). One executor
            serves every study of the comparison: its workers start once, not once per study.
        ray_address: With executor="ray": None starts Ray here, "auto" or "host:port" joins a cluster.
        resources: With executor="ray": what each trial reserves (default one CPU).
        population: Trials of one architecture trained at once as one vectorised model (see
            `Study.optimize`); the tuning trials of an arm and its reruns share one.

    Returns:
        The `Comparison` (complete unless interrupted; rerun the call to finish it).

    Raises:
        UnknownNameError: An unknown optimizer, schedule or problem (the message lists the valid ones).
        BudgetError: A budget that is not trials or gradient evaluations.
        ConfigError: Other bad arguments.
        StudyConflictError: A comparison of this name exists with other arguments.
    """
    comparison = Comparison.create(problems, optimizers=optimizers, schedules=schedules, budget=budget,
                                   strategy=strategy, seeds=seeds, reruns=reruns, storage=storage, name=name,
                                   equalize=equalize, one_shot=one_shot, device=device)
    comparison.run(n_workers=n_workers, progress=progress, executor=executor, ray_address=ray_address,
                   resources=resources, population=population)
    return comparison


__all__ = ["KS", "MANIFEST", "Arm", "Comparison", "compare"]
