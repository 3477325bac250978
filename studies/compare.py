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
  the budget, with bootstrap bands (`studies.stats`).

Equal budgets by construction: `compare` takes one budget and gives it to every arm. A trial
of an optimizer that pays g gradient evaluations per step (SAM, GSAM, AdaHessian: g = 2) trains
`epochs // g` epochs (`equalize="grad_evals"`, the default), so every trial of every arm costs
the same number of gradient evaluations, and "20 trials" is the same compute for every arm.

Storage layout (one database): a manifest study named `name` holds the comparison's arguments;
each (problem, optimizer, schedule, study seed) has a tuning study `name/problem/optimizer/
schedule/seed<s>` and, once tuned, a runs study `.../seed<s>/runs` that trains the selected
configuration and the defaults on the same fresh seeds (`search.Enqueue`). Every one is an
ordinary tunelab study: killed at any point, the same `compare` call continues where it stopped.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import search
import spaces
from spaces import ConfigError, Space, optimizer_spec
from spaces.trust import Trust
from studies import _batch, stats
from studies.driver import Budget
from studies.errors import BudgetError, StudyConflictError, StudyNotFoundError, TrialError
from studies.executors import Executor, open_executor
from studies.problems import Problem, as_problem
from studies.recipes import build_trainer
from studies.records import TrialRecord, TrialState
from studies.storage import DEFAULT_STORAGE, open_storage
from studies.study import Study, create, load
from trainers import Trainer

MANIFEST = "tunelab:comparison"
EQUALIZE = ("grad_evals", "epochs")
KS = (1, 5, 20)
RERUN_SEED_STRIDE = 10_000
BOUNDARY = 0.05


@dataclass(frozen=True)
class Arm:
    """One competitor on one problem: an optimizer family with a schedule."""

    problem: str
    optimizer: str
    schedule: str

    def label(self, schedules: Sequence[str]) -> str:
        """`optimizer`, or `optimizer+schedule` when a comparison has several schedules."""
        return self.optimizer if len(schedules) == 1 else f"{self.optimizer}+{self.schedule}"


# ---------------------------------------------------------------------- argument checks
def _names(kind: str, registry: Any, names: Any) -> list[str]:
    if isinstance(names, str):
        names = [names]
    try:
        return list(registry.resolve(list(names)))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    except TypeError:
        raise ConfigError(f"{kind}s must be a list of names ({', '.join(registry.names())}), got {names!r}") from None


def _budget(budget: Any) -> dict[str, int]:
    """`{"trials": n}` or `{"grad_evals": n}`: the budget of every tuning study."""
    if isinstance(budget, bool):
        raise BudgetError(f"budget must be trials per study (an int) or trials=/grad_evals=, got {budget!r}")
    if isinstance(budget, (int, np.integer)):
        budget = {"trials": int(budget)}
    elif isinstance(budget, Budget):
        budget = {k: v for k, v in budget.as_dict().items() if v is not None}
    elif not isinstance(budget, Mapping):
        raise BudgetError(f"budget must be trials per study (an int), a dict or a studies.Budget, got {budget!r}")
    given = {k: v for k, v in dict(budget).items() if v is not None}
    if set(given) - {"trials", "grad_evals"} or len(given) != 1:
        raise BudgetError(
            f"a comparison's budget is counted in one unit that is the same compute for every optimizer: trials "
            f"(of equal length in gradient evaluations) or grad_evals, e.g. budget=20 or budget={{'grad_evals': "
            f"100000}}; got {dict(budget)!r} (epochs and seconds would favour cheap or fast updates)"
        )
    (unit, value), = given.items()
    Budget(**{unit: value})  # the study's own checks
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise BudgetError(f"budget {unit}={value!r} must be a positive int")
    return {unit: int(value)}


def _seeds(seeds: Any) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ConfigError(f"seeds must be >= 1 (the number of independent studies per arm), got {seeds!r}")
        return list(range(int(seeds)))
    if isinstance(seeds, Sequence) and seeds and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                     for s in seeds):
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"study seeds must not repeat, got {list(seeds)}")
        return [int(s) for s in seeds]
    raise ConfigError(f"seeds must be a number of studies (int >= 1) or a list of distinct ints >= 0, got {seeds!r}")


def _pauses_trials(strategy: search.Strategy) -> bool:
    return isinstance(strategy, (search.FreezeThaw, search.ASHA, search.Hyperband, search.Enqueue)) or bool(
        getattr(strategy, "short_epochs", None)
    )


def _seeded(strategy: search.Strategy, seed: int) -> search.Strategy:
    """The template strategy with its seed offset by the study seed."""
    spec = json.loads(json.dumps(strategy.spec()))
    spec["args"]["seed"] = int(spec["args"].get("seed", 0)) + seed
    return type(strategy)(**spec["args"])  # the class is already imported: nothing to trust


def _manifest(problems: list[Problem], opts: list[str], scheds: list[str], budget: dict[str, int],
              strategy: search.Strategy, seeds: list[int], reruns: int, equalize: str, one_shot: bool) -> dict:
    return json.loads(json.dumps({
        "problems": [p.spec() for p in problems],
        "optimizers": opts,
        "schedules": scheds,
        "budget": budget,
        "strategy": strategy.spec(),
        "seeds": seeds,
        "reruns": reruns,
        "equalize": equalize,
        "one_shot": one_shot,
    }))


# ---------------------------------------------------------------------- compare
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


class Comparison:
    """An optimizer comparison in a database: its arms, studies and results.

    Build one with `studies.compare` (which also runs it) or `Comparison.load`.

    Attributes:
        name: The comparison's name.
        storage_url: Its database.
        problems: Problem name -> `Problem`.
        optimizers, schedules: The families and schedules compared.
        budget: The budget of every tuning study (`{"trials": n}` or `{"grad_evals": n}`).
        strategy: The template strategy (study seed s uses its seed + s).
        seeds: The study seeds.
        reruns: Fresh seeds per selected configuration.
        equalize: "grad_evals" or "epochs".
        one_shot: Whether the defaults are trained.
    """

    def __init__(self, name: str, storage_url: str, manifest: Mapping[str, Any], problems: Mapping[str, Problem],
                 *, trust: Trust = None):
        self.name = name
        self.storage_url = storage_url
        self.manifest = dict(manifest)
        self.problems = dict(problems)
        self.optimizers: list[str] = list(manifest["optimizers"])
        self.schedules: list[str] = list(manifest["schedules"])
        self.budget: dict[str, int] = dict(manifest["budget"])
        self.trust = trust
        self.strategy = search.Strategy.from_spec(manifest["strategy"], trust=trust)
        self.seeds: list[int] = list(manifest["seeds"])
        self.reruns = int(manifest["reruns"])
        self.equalize: str = manifest["equalize"]
        self.one_shot = bool(manifest["one_shot"])
        self._studies: dict[tuple[Arm, int, bool], Study] = {}
        self._records: dict[tuple[Arm, int, bool], list[TrialRecord]] = {}

    def __repr__(self) -> str:
        return (f"Comparison({self.name!r}, problems={list(self.problems)}, optimizers={self.optimizers}, "
                f"schedules={self.schedules}, budget={self.budget}, seeds={self.seeds}, reruns={self.reruns})")

    # ------------------------------------------------------------------ create / load
    @classmethod
    def create(cls, problems: Any, *, optimizers: Sequence[str], schedules: Sequence[str] | None, budget: Any,
               strategy: search.Strategy | None, seeds: Any, reruns: int, storage: str, name: str,
               equalize: str, one_shot: bool, device: str = "auto") -> Comparison:
        """Check the arguments and store (or check against) the comparison's manifest; trains nothing."""
        if not isinstance(name, str) or not name.strip() or "/" in name:
            raise ConfigError(f"a comparison needs a non-empty name without '/', got {name!r}")
        items = list(problems) if isinstance(problems, (list, tuple)) else [problems]
        if not items:
            raise ConfigError("compare needs at least one problem (e.g. 'mnist1d_mlp')")
        probs = [as_problem(p, device=device) for p in items]
        names = [p.name for p in probs]
        if len(set(names)) != len(names):
            raise ConfigError(f"problem names must be unique in a comparison, got {names}; build studies.Problem"
                              f"(name, trainer, model) with distinct names")
        opts = _names("optimizer", spaces.optimizers, optimizers)
        scheds = _names("schedule", spaces.schedules, ["cosine"] if schedules is None else schedules)
        spent = _budget(budget)
        strategy = search.Random(seed=0, quasi=True) if strategy is None else strategy
        if not isinstance(strategy, search.Strategy):
            raise ConfigError(f"strategy must be a search.Strategy (e.g. search.Random(quasi=True)), got {strategy!r}")
        if "trials" in spent and _pauses_trials(strategy):
            raise ConfigError(
                f"{strategy!r} pauses or shortens trials, so trials are not of equal length; give it a budget in "
                f"gradient evaluations (budget={{'grad_evals': n}}) or use search.Random(quasi=True) or "
                f"search.Bayesian()"
            )
        if not isinstance(reruns, int) or isinstance(reruns, bool) or reruns < 1:
            raise ConfigError(f"reruns must be an int >= 1 (fresh seeds per selected configuration), got {reruns!r}")
        if equalize not in EQUALIZE:
            raise ConfigError(f"equalize must be one of {EQUALIZE}, got {equalize!r}")
        study_seeds = _seeds(seeds)
        for p in probs:
            for opt in opts:
                g = optimizer_spec({"optimizer": opt}).grad_evals
                if equalize == "grad_evals" and p.trainer.epochs < g:
                    raise ConfigError(f"problem {p.name!r} trains {p.trainer.epochs} epochs per run, fewer than the "
                                      f"{g} gradient evaluations per step of {opt!r}; give it at least {g} epochs")
        manifest = _manifest(probs, opts, scheds, spent, strategy, study_seeds, reruns, equalize, bool(one_shot))
        st = open_storage(storage)
        try:
            study_id = st.get_study_id_from_name(name)
        except KeyError:
            study_id = None
        if study_id is None:
            _batch.create_study(st, name, "maximize", {MANIFEST: manifest})  # a kill leaves all of it or none
        else:
            stored = st.get_study_user_attrs(study_id).get(MANIFEST)
            if stored is None:
                raise StudyConflictError(f"{name!r} in {storage} is a study, not a comparison; choose another name")
            if stored != manifest:
                diff = [k for k in manifest if stored.get(k) != manifest[k]]
                shown = "; ".join(f"{k}: stored {stored.get(k)!r}, given {manifest[k]!r}" for k in diff)
                raise StudyConflictError(
                    f"the comparison {name!r} in {storage} was started with other arguments ({shown}). Rerun it with "
                    f"the stored arguments to continue it (studies.Comparison.load({name!r}, {storage!r})), or give "
                    f"the new comparison another name"
                )
        # the caller handed us the strategy object, so the code it names is already theirs to trust
        given = [path.partition(":")[0] for path in type(strategy).stored_imports(manifest["strategy"]["args"])]
        return cls(name, storage, manifest, {p.name: p for p in probs}, trust=given)

    @classmethod
    def load(cls, name: str, storage: str = DEFAULT_STORAGE, *, problems: Sequence[Problem] | None = None,
             device: str = "auto", trust: Trust = None) -> Comparison:
        """Open a stored comparison (its problems rebuilt from the database, or given).

        As with `studies.load`, the database imports no code outside tunelab unless its package
        is in `trust` (or the problems are given).

        Raises:
            UntrustedImportError: The manifest names code outside tunelab that `trust` does not cover.
            StudyNotFoundError: No comparison of that name.
            WorkloadError: A problem's workload cannot be rebuilt and `problems` was not given.
        """
        st = open_storage(storage, create=False)
        try:
            study_id = st.get_study_id_from_name(name)
        except KeyError:
            study_id = None
        manifest = st.get_study_user_attrs(study_id).get(MANIFEST) if study_id is not None else None
        if manifest is None:
            found = [s.study_name for s in st.get_all_studies() if MANIFEST in s.user_attrs]
            raise StudyNotFoundError(f"no comparison named {name!r} in {storage}; it holds "
                                     f"{found if found else 'no comparisons'} (run one with studies.compare)")
        given = {p.name: p for p in problems or []}
        built = {}
        for spec in manifest["problems"]:
            if spec["name"] in given:
                if json.loads(json.dumps(given[spec["name"]].spec())) != spec:
                    raise StudyConflictError(
                        f"the problem {spec['name']!r} given to load differs from the comparison's (stored: {spec}, "
                        f"given: {given[spec['name']].spec()}); pass the same workload, epochs, seed and model"
                    )
                built[spec["name"]] = given[spec["name"]]
            else:
                trainer = build_trainer(spec["trainer"], device=device, trust=trust)
                built[spec["name"]] = Problem(spec["name"], trainer, spec["model"])
        return cls(name, storage, manifest, built, trust=trust)

    # ------------------------------------------------------------------ arms and their studies
    def arms(self) -> list[Arm]:
        """Every (problem, optimizer, schedule), in the order they run."""
        return [Arm(p, o, s) for p in self.problems for o in self.optimizers for s in self.schedules]

    def epochs(self, arm: Arm) -> int:
        """Epochs of one trial of `arm` (fewer for optimizers that pay for extra passes under equalize="grad_evals")."""
        full = self.problems[arm.problem].trainer.epochs
        g = optimizer_spec({"optimizer": arm.optimizer}).grad_evals
        return full // g if self.equalize == "grad_evals" else full

    def trainer(self, arm: Arm, seed: int) -> Trainer:
        """The trainer of `arm`'s tuning study of seed `seed`."""
        base = self.problems[arm.problem].trainer
        return base.derive(epochs=self.epochs(arm), seed=base.seed + seed)

    def space(self, arm: Arm) -> Space:
        """The tuned space of `arm`: the problem's fixed model, the family and the schedule."""
        return (self.problems[arm.problem].space | spaces.optimizers([arm.optimizer])
                | spaces.schedules([arm.schedule]))

    def rerun_seeds(self, problem: str, seed: int) -> list[int]:
        """The fresh seeds of the runs of study seed `seed` on `problem` (disjoint from every tuning seed)."""
        base = self.problems[problem].trainer.seed
        return [base + RERUN_SEED_STRIDE * (seed + 1) + r for r in range(self.reruns)]

    def study_name(self, arm: Arm, seed: int, runs: bool = False) -> str:
        """`name/problem/optimizer/schedule/seed<s>` (and `/runs` for the reruns)."""
        base = f"{self.name}/{arm.problem}/{arm.optimizer}/{arm.schedule}/seed{seed}"
        return f"{base}/runs" if runs else base

    def study(self, arm: Arm, seed: int, *, runs: bool = False) -> Study | None:
        """The tuning (or runs) study of `arm` and study seed `seed`, or None if not started."""
        key = (arm, seed, runs)
        if key not in self._studies:
            try:
                self._studies[key] = load(self.study_name(arm, seed, runs), self.storage_url,
                                          trainer=self.trainer(arm, seed), trust=self.trust)
            except StudyNotFoundError:
                return None
        return self._studies[key]

    def records(self, arm: Arm, seed: int, *, runs: bool = False) -> list[TrialRecord]:
        """The trials of a tuning (or runs) study in proposal order (a re-queued trial in its original's place)."""
        key = (arm, seed, runs)
        if key not in self._records:
            study = self.study(arm, seed, runs=runs)
            if study is None:
                return []
            self._records[key] = _ordered(study.trials)
        return self._records[key]

    def _tuning_study(self, arm: Arm, seed: int) -> Study:
        key = (arm, seed, False)
        if key not in self._studies:
            self._studies[key] = create(self.study_name(arm, seed), self.storage_url, space=self.space(arm),
                                        trainer=self.trainer(arm, seed), strategy=_seeded(self.strategy, seed))
        return self._studies[key]

    def _runs_study(self, arm: Arm, seed: int, selected: Mapping[str, Any]) -> Study:
        key = (arm, seed, True)
        if key not in self._studies:
            space = self.space(arm)
            seeds = self.rerun_seeds(arm.problem, seed)
            configs = [dict(selected)] * self.reruns + ([space.default()] * self.reruns if self.one_shot else [])
            strategy = search.Enqueue(configs, seeds=seeds * (2 if self.one_shot else 1))
            self._studies[key] = create(self.study_name(arm, seed, runs=True), self.storage_url, space=space,
                                        trainer=self.trainer(arm, seed), strategy=strategy)
        return self._studies[key]

    # ------------------------------------------------------------------ running
    def run(self, *, n_workers: int = 1, progress: bool = True, executor: str | Executor = "local",
            ray_address: str | None = None, resources: Mapping[str, float] | None = None,
            population: int = 1) -> bool:
        """Tune every arm, then rerun its selected configuration; skip what is already done.

        One executor (`executor`, `n_workers`, `ray_address`, `resources` as in `Study.optimize`)
        trains the trials of every study; an `Executor` instance given is left open. `population`
        is `Study.optimize`'s.

        Returns:
            True when everything is done; False when interrupted (Ctrl-C paused a study), or
            when every trial of an arm failed (its reason is printed; the arm's row of the table
            is empty) so that nothing could be rerun; call `run` again to continue.
        """
        if isinstance(executor, str):
            options = {"ray_address": ray_address, "resources": resources} if executor == "ray" else {}
            if not options and (ray_address is not None or resources is not None):
                raise ConfigError("ray_address and resources apply to executor='ray' only")
            opened = open_executor(executor, n_workers, **options)
            try:
                return self._run(opened, progress, population)
            finally:
                opened.close()
        return self._run(executor, progress, population)

    def _run(self, executor: Executor, progress: bool, population: int = 1) -> bool:
        jobs = [(arm, s) for arm in self.arms() for s in self.seeds]
        complete = True
        for i, (arm, s) in enumerate(jobs, start=1):
            self._records.clear()
            t0 = time.monotonic()
            where = f"[{i}/{len(jobs)}] {arm.problem} {arm.optimizer} {arm.schedule} seed {s}"
            tuning = self._tuning_study(arm, s)
            if _all_failed(tuning, self.budget, executor, f"{where}, tuning" if progress else None, population):
                complete = False
                continue
            if _interrupted(tuning):
                _say_paused(self, progress)
                return False
            best = tuning.best
            if best is None:
                complete = False
                if progress:
                    print(f"{where}: no trial completed, nothing to rerun")
                continue
            runs = self._runs_study(arm, s, best.config)
            n_runs = self.reruns * (2 if self.one_shot else 1)
            if _all_failed(runs, {"trials": n_runs}, executor, f"{where}, reruns" if progress else None,
                           population):
                complete = False
                continue
            if _interrupted(runs):
                _say_paused(self, progress)
                return False
            if progress:
                test = stats.mean_interval([t.test_metric if t.test_metric is not None else math.nan
                                            for t in self.records(arm, s, runs=True)[: self.reruns]])[0]
                print(f"{where}: best val {best.value:.4f} of {len(tuning.trials)} trials, reruns test {test:.4f} "
                      f"({time.monotonic() - t0:.0f} s)", flush=True)
        self._records.clear()
        return complete

    # ------------------------------------------------------------------ reading results
    def _floor(self, problem: str, maximize: bool) -> float:
        """The worst finite validation value of any tuning trial of `problem` (what a failed trial counts as)."""
        values = [t.value for arm in self.arms() if arm.problem == problem for s in self.seeds
                  for t in self.records(arm, s) if t.value is not None]
        if not values:
            return math.nan
        return min(values) if maximize else max(values)

    def _maximize(self, problem: str) -> bool:
        return self.problems[problem].trainer.workload.direction == "maximize"

    def results(self) -> Any:
        """Every tuning trial as a pandas DataFrame.

        Columns: problem, optimizer, schedule, seed, number, state, value (validation metric),
        diverged, test_metric, epochs, grad_evals, seconds, lr, error, and `params.<name>`.
        """
        import pandas as pd

        rows = []
        for arm in self.arms():
            for s in self.seeds:
                for t in self.records(arm, s):
                    rows.append({
                        "problem": arm.problem, "optimizer": arm.optimizer, "schedule": arm.schedule, "seed": s,
                        "number": t.number, "state": str(t.state), "value": t.value, "diverged": _diverged(t),
                        "test_metric": t.test_metric, "epochs": t.epochs, "grad_evals": t.grad_evals,
                        "seconds": t.seconds, "lr": _lr(t.config), "error": t.error,
                        **{f"params.{k}": v for k, v in t.config.items() if not k.startswith("model")},
                    })
        return pd.DataFrame(rows)

    def runs(self) -> Any:
        """The reruns of selected configurations and the one-shot runs of the defaults (a DataFrame).

        Columns: problem, optimizer, schedule, seed (study seed), run_seed, kind ("selected" or
        "default"), state, value, test_metric, epochs, grad_evals, and curve (validation per epoch).
        """
        import pandas as pd

        rows = []
        for arm in self.arms():
            for s in self.seeds:
                for i, t in enumerate(self.records(arm, s, runs=True)):
                    rows.append({
                        "problem": arm.problem, "optimizer": arm.optimizer, "schedule": arm.schedule, "seed": s,
                        "run_seed": t.seed, "kind": "selected" if i < self.reruns else "default",
                        "state": str(t.state), "value": t.value, "test_metric": t.test_metric, "epochs": t.epochs,
                        "grad_evals": t.grad_evals, "curve": list(t.curve),
                    })
        return pd.DataFrame(rows)

    def rerun_curves(self, arm: Arm) -> list[list[float]]:
        """Validation curves (NaN where a run diverged) of the reruns of `arm`'s selected configurations."""
        curves = []
        for s in self.seeds:
            for t in self.records(arm, s, runs=True)[: self.reruns]:
                curves.append([math.nan if v is None else float(v) for v in t.curve])
        return curves

    def _samples(self, arm: Arm) -> list[list[float]]:
        """Per study seed, the tuning results in proposal order (failed trials at the problem's floor)."""
        floor = self._floor(arm.problem, self._maximize(arm.problem))
        out = []
        for s in self.seeds:
            records = [t for t in self.records(arm, s) if t.state in (TrialState.COMPLETE,
                                                                                    TrialState.FAILED,
                                                                                    TrialState.PRUNED)]
            values = [t.value if t.value is not None else floor for t in records]
            values = [v for v in values if v is not None and math.isfinite(v)]
            if values:
                out.append(values)
        return out

    @property
    def iid(self) -> bool:
        """Whether trials are independent draws (random search), so Dodge et al.'s estimator applies."""
        return isinstance(self.strategy, search.Random)

    def expected_best(self, arm: Arm, ks: Sequence[int], *, level: float = stats.LEVEL,
                      rng: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Expected best validation metric of k trials for each k, with its bootstrap interval.

        Random search: Dodge et al.'s estimator over the trials of all study seeds pooled (NaN
        where k exceeds a study's trials). Adaptive strategies: the mean over study seeds of the
        best of the first k trials, bootstrapped over seeds.
        """
        samples = self._samples(arm)
        nan = np.full(len(ks), math.nan)
        if not samples:
            return nan, nan.copy(), nan.copy()
        maximize = self._maximize(arm.problem)
        if self.iid:
            per_study = min(len(v) for v in samples)
            pooled = [v for vs in samples for v in vs]
            est, lo, hi = stats.expected_max_interval(pooled, [min(k, per_study) for k in ks], maximize=maximize,
                                                      level=level, rng=rng)
            over = np.array([k > per_study for k in ks])
            for a in (est, lo, hi):
                a[over] = math.nan
            return est, lo, hi
        return stats.best_so_far_interval(samples, ks, maximize=maximize, level=level, rng=rng)

    def trials_per_study(self, arm: Arm) -> int:
        """Finished tuning trials of the arm's smallest study (the full budget in trials)."""
        samples = self._samples(arm)
        return min(len(v) for v in samples) if samples else 0

    def table(self, ks: Sequence[int] = KS, *, level: float = stats.LEVEL) -> Any:
        """The comparison, one row per problem, optimizer and schedule (a pandas DataFrame).

        Columns:
            problem, optimizer, schedule: the arm.
            trials: Tuning trials per study; epochs: epochs of one trial; grad_evals_per_step.
            one_shot_val, one_shot_test: the defaults' mean validation and test metric over the
                rerun seeds (Schmidt et al.'s one-shot setting).
            best_val@k, best_val@k_lo, best_val@k_hi: the expected best validation metric of k
                trials and its bootstrap interval (k in `ks`, and "budget" for the full budget).
            test_mean, test_std, test_lo, test_hi, test_n: test metric of the selected
                configuration over its reruns (all study seeds), with a Student-t interval.
            diverged: Share of tuning trials that diverged or failed.
            cost_per_step: Median seconds per optimizer step (validation included), relative to
                AdamW's (or the first optimizer's) on the same problem and schedule.
            best_config: The selected configuration of the best study (model entries left out).
            at_boundary: Its numeric hyperparameters within 5% of an end of their range (the range
                may be too narrow there).

        `table().attrs` holds "estimator" ("dodge" or "best_so_far") and "level".
        """
        import pandas as pd

        runs = self.runs()
        rows, seconds = [], {}
        for arm in self.arms():
            base = self.problems[arm.problem].trainer
            full = self.trials_per_study(arm)
            est, lo, hi = self.expected_best(arm, [*ks, max(full, 1)], level=level)
            mine = _of(runs, arm)
            default, selected = (mine[mine.kind == kind] if len(mine) else mine for kind in ("default", "selected"))
            tests = selected["test_metric"].astype(float).to_numpy() if len(selected) else np.array([])
            mean, std, tlo, thi = stats.mean_interval(tests, level)
            records = [t for s in self.seeds for t in self.records(arm, s)
                       if t.state in (TrialState.COMPLETE, TrialState.FAILED, TrialState.PRUNED)]
            steps = base.steps_per_epoch(base.batch_size)
            per_step = [t.seconds / (t.epochs * steps) for t in records if t.state == TrialState.COMPLETE and t.epochs]
            seconds[arm] = float(np.median(per_step)) if per_step else math.nan
            best = self.best(arm)
            row: dict[str, Any] = {
                "problem": arm.problem, "optimizer": arm.optimizer, "schedule": arm.schedule,
                "trials": full, "epochs": self.epochs(arm),
                "grad_evals_per_step": optimizer_spec({"optimizer": arm.optimizer}).grad_evals,
                "one_shot_val": _mean(default["value"]) if len(default) else math.nan,
                "one_shot_test": _mean(default["test_metric"]) if len(default) else math.nan,
            }
            for j, k in enumerate([*ks, "budget"]):
                row[f"best_val@{k}"], row[f"best_val@{k}_lo"], row[f"best_val@{k}_hi"] = est[j], lo[j], hi[j]
            row.update({
                "test_mean": mean, "test_std": std, "test_lo": tlo, "test_hi": thi,
                "test_n": int(np.isfinite(tests).sum()),
                "diverged": sum(t.state == TrialState.FAILED for t in records) / len(records) if records else math.nan,
                "cost_per_step": math.nan,
                "best_config": {k: v for k, v in best.config.items() if not k.startswith("model")} if best else None,
                "at_boundary": tuple(_at_boundary(self.space(arm), best.config)) if best else (),
            })
            rows.append(row)
        reference = "adamw" if "adamw" in self.optimizers else self.optimizers[0]
        for row, arm in zip(rows, self.arms(), strict=True):
            ref = seconds.get(Arm(arm.problem, reference, arm.schedule), math.nan)
            if ref and math.isfinite(ref):
                row["cost_per_step"] = seconds[arm] / ref
        frame = pd.DataFrame(rows)
        frame.attrs.update({"estimator": "dodge" if self.iid else "best_so_far", "level": level,
                            "cost_reference": reference})
        return frame

    def best(self, arm: Arm) -> TrialRecord | None:
        """The tuning trial of best validation metric over the arm's study seeds."""
        done = [st.best for s in self.seeds if (st := self.study(arm, s)) is not None and st.best is not None]
        if not done:
            return None
        sign = 1.0 if self._maximize(arm.problem) else -1.0
        return max(done, key=lambda t: sign * t.value)

    def profile(self, *, target_fraction: float = 0.75, tau_max: float = 4.0) -> Any:
        """Time to target on each problem and the AlgoPerf-style score of each arm (a pandas DataFrame).

        The target of a problem is the best, over arms, of the value that the median validation
        curve of the arm's reruns (the selected configuration on fresh seeds) has after
        `target_fraction` of its run. AlgoPerf sets targets from what the best baseline reaches
        with 75% of the budget, so that others can reach them too. An arm's time is the number
        of gradient evaluations until its median curve first reaches the target (inf: never).
        The score is the normalised area under the performance profile on `[1, tau_max]`
        (`stats.profile_score`).

        Returns:
            One row per optimizer and schedule: `time@<problem>` per problem (gradient
            evaluations), `ratio@<problem>`, and `score`. `attrs["targets"]`: problem -> target.
        """
        import pandas as pd

        targets: dict[str, float] = {}
        times: dict[str, dict[str, float]] = {}
        for problem in self.problems:
            maximize = self._maximize(problem)
            sign = 1.0 if maximize else -1.0
            medians = {arm: _median_curve(self.rerun_curves(arm)) for arm in self.arms() if arm.problem == problem}
            reached = []
            for arm, curve in medians.items():
                at = max(1, math.ceil(target_fraction * self.epochs(arm)))
                if len(curve) >= at and math.isfinite(curve[at - 1]):
                    reached.append(sign * curve[at - 1])
            if not reached:
                continue
            targets[problem] = sign * max(reached)
            base = self.problems[problem].trainer
            for arm, curve in medians.items():
                per_epoch = base.steps_per_epoch(base.batch_size) * optimizer_spec(
                    {"optimizer": arm.optimizer}).grad_evals
                times.setdefault(f"{arm.optimizer}|{arm.schedule}", {})[problem] = stats.time_to_target(
                    curve, targets[problem], per_epoch, maximize=maximize)
        ratios = stats.performance_ratios(times)
        scores = stats.profile_score(times, tau_max) if times else {}
        rows = []
        for label, per in times.items():
            opt, sched = label.split("|")
            row = {"optimizer": opt, "schedule": sched}
            row.update({f"time@{p}": per.get(p, math.inf) for p in targets})
            row.update({f"ratio@{p}": ratios[label].get(p, math.inf) for p in targets})
            row["score"] = scores[label]
            rows.append(row)
        frame = pd.DataFrame(rows)
        frame.attrs.update({"targets": targets, "tau_max": tau_max, "target_fraction": target_fraction})
        return frame

    def plot(self, path: str | Path) -> Path:
        """Save the expected best validation metric vs budget (with bootstrap bands) as a PNG."""
        from studies.compare_report import plot_expected_best

        return plot_expected_best(self, Path(path))

    def report(self, folder: str | Path) -> Path:
        """Write `README.md` with the table and PNG plots into `folder`; return the Markdown file."""
        from studies.compare_report import write_report

        return write_report(self, Path(folder))


# ---------------------------------------------------------------------- helpers
def _ordered(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Proposals in proposal order: a re-queued trial takes the place of the interrupted one it reruns."""
    parent = {t.number: t.retry_of for t in records if t.retry_of is not None}

    def root(n: int) -> int:
        while n in parent:
            n = parent[n]
        return n

    retried = set(parent.values())
    return sorted((t for t in records if t.number not in retried), key=lambda t: root(t.number))


def _all_failed(study: Study, budget: Mapping[str, int], executor: Executor, say: str | None,
                population: int = 1) -> bool:
    """Run `study` to `budget` on `executor`; True (after printing why, after `say`) when every trial failed."""
    try:
        study.optimize(**budget, executor=executor, progress=False, population=population)
    except TrialError as err:
        if say is not None:
            print(f"{say}: {err}")
        return True
    return False


def _interrupted(study: Study) -> bool:
    return any(t.state in (TrialState.PAUSED, TrialState.RUNNING, TrialState.PENDING) for t in study.trials)


def _say_paused(comparison: Comparison, progress: bool) -> None:
    if progress:
        print(f"comparison {comparison.name!r} paused; run the same call again to continue where it stopped")


def _diverged(t: TrialRecord) -> bool:
    return t.state == TrialState.FAILED and (t.error or "").startswith("diverged")


def _mean(values: Any) -> float:
    v = np.asarray(list(values), dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def _lr(config: Mapping[str, Any]) -> float | None:
    """The base learning rate of a config (`<family>.lr`, or `<family>.<base>.lr` for SAM/GSAM)."""
    for k, v in config.items():
        if k.endswith(".lr") and k.startswith(str(config.get("optimizer", ""))):
            return float(v)
    return None


def _at_boundary(space: Space, config: Mapping[str, Any]) -> list[str]:
    """Numeric parameters of `config` within `BOUNDARY` of an end of their range (integers: at an end)."""
    from spaces import Float, Int

    out = []
    for k, v in config.items():
        if k not in space or not isinstance(space[k], (Float, Int)) or space[k].low == space[k].high:
            continue
        p = space[k]
        edge = not BOUNDARY < p.to_unit(v) < 1.0 - BOUNDARY if isinstance(p, Float) else v in (p.low, p.high)
        if edge:
            out.append(k)
    return out


def _of(frame: Any, arm: Arm) -> Any:
    """The rows of `arm` in a frame with problem / optimizer / schedule columns."""
    if not len(frame):
        return frame
    return frame[(frame.problem == arm.problem) & (frame.optimizer == arm.optimizer) & (frame.schedule == arm.schedule)]


def _median_curve(curves: list[list[float]]) -> list[float]:
    """Epoch-wise median of curves (over the epochs all of them have; NaN where all are NaN)."""
    n = min((len(c) for c in curves), default=0)
    if n == 0:
        return []
    data = np.array([c[:n] for c in curves], dtype=np.float64)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN epochs of diverged reruns
        return [float(v) for v in np.nanmedian(data, axis=0)]


__all__ = ["Arm", "Comparison", "compare"]
