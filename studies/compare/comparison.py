"""`Comparison`: an optimizer comparison in a database, its studies, and its results as tables.

Storage layout (one database): a manifest study named `name` holds the comparison's arguments
(`manifest`); each (problem, optimizer, schedule, study seed) has a tuning study
`name/problem/optimizer/schedule/seed<s>` and, once tuned, a runs study `.../seed<s>/runs` that
trains the selected configuration and the defaults on the same fresh seeds (`search.Enqueue`).
Every one is an ordinary tunelab study. Running is `runner`'s job, the numbers `analysis`'s,
the pictures and the Markdown `plots`' and `report`'s.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tunelab import search, spaces
from tunelab.spaces import ConfigError, Space, optimizer_spec
from tunelab.spaces.trust import Trust
from tunelab.studies.compare import analysis, manifest, runner, stats
from tunelab.studies.compare.manifest import KS, RERUN_SEED_STRIDE, Arm
from tunelab.studies.errors import StudyConflictError, StudyNotFoundError
from tunelab.studies.executors import Executor, open_executor
from tunelab.studies.opening import create, load
from tunelab.studies.problems import Problem, as_problem
from tunelab.studies.recipes import build_trainer
from tunelab.studies.records import TrialRecord
from tunelab.studies.storage import DEFAULT_STORAGE, open_storage
from tunelab.studies.study import Study
from tunelab.trainers import Trainer


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

    def __init__(self, name: str, storage_url: str, stored: Mapping[str, Any], problems: Mapping[str, Problem],
                 *, trust: Trust = None):
        self.name = name
        self.storage_url = storage_url
        self.manifest = dict(stored)
        self.problems = dict(problems)
        self.optimizers: list[str] = list(stored["optimizers"])
        self.schedules: list[str] = list(stored["schedules"])
        self.budget: dict[str, int] = dict(stored["budget"])
        self.trust = trust
        self.strategy = search.Strategy.from_spec(stored["strategy"], trust=trust)
        self.seeds: list[int] = list(stored["seeds"])
        self.reruns = int(stored["reruns"])
        self.equalize: str = stored["equalize"]
        self.one_shot = bool(stored["one_shot"])
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
        opts = manifest.check_names("optimizer", spaces.optimizers, optimizers)
        scheds = manifest.check_names("schedule", spaces.schedules, ["cosine"] if schedules is None else schedules)
        spent = manifest.check_budget(budget)
        strategy = search.Random(seed=0, quasi=True) if strategy is None else strategy
        if not isinstance(strategy, search.Strategy):
            raise ConfigError(f"strategy must be a search.Strategy (e.g. search.Random(quasi=True)), got {strategy!r}")
        if "trials" in spent and manifest.pauses_trials(strategy):
            raise ConfigError(
                f"{strategy!r} pauses or shortens trials, so trials are not of equal length; give it a budget in "
                f"gradient evaluations (budget={{'grad_evals': n}}) or use search.Random(quasi=True) or "
                f"search.Bayesian()"
            )
        if not isinstance(reruns, int) or isinstance(reruns, bool) or reruns < 1:
            raise ConfigError(f"reruns must be an int >= 1 (fresh seeds per selected configuration), got {reruns!r}")
        if equalize not in manifest.EQUALIZE:
            raise ConfigError(f"equalize must be one of {manifest.EQUALIZE}, got {equalize!r}")
        study_seeds = manifest.check_seeds(seeds)
        manifest.check_epochs(probs, opts, equalize)
        stored = manifest.make(probs, opts, scheds, spent, strategy, study_seeds, reruns, equalize, bool(one_shot))
        manifest.store(open_storage(storage), storage, name, stored)
        # the caller handed us the strategy object, so the code it names is already theirs to trust
        given = [path.partition(":")[0] for path in type(strategy).stored_imports(stored["strategy"]["args"])]
        return cls(name, storage, stored, {p.name: p for p in probs}, trust=given)

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
        stored = manifest.read(open_storage(storage, create=False), storage, name)
        given = {p.name: p for p in problems or []}
        built = {}
        for spec in stored["problems"]:
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
        return cls(name, storage, stored, built, trust=trust)

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
            self._records[key] = analysis.ordered(study.trials)
        return self._records[key]

    def forget_records(self) -> None:
        """Read the trials again at the next `records` (a study has trained since)."""
        self._records.clear()

    def tuning_study(self, arm: Arm, seed: int) -> Study:
        """`arm`'s tuning study of seed `seed`, created if missing."""
        key = (arm, seed, False)
        if key not in self._studies:
            self._studies[key] = create(self.study_name(arm, seed), self.storage_url, space=self.space(arm),
                                        trainer=self.trainer(arm, seed),
                                        strategy=manifest.seeded(self.strategy, seed))
        return self._studies[key]

    def runs_study(self, arm: Arm, seed: int, selected: Mapping[str, Any]) -> Study:
        """The study that reruns `selected` (and the defaults) of `arm` and seed `seed` on fresh seeds."""
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
            population: int = 1, threads: int | None = None) -> bool:
        """Tune every arm, then rerun its selected configuration; skip what is already done.

        One executor (`executor`, `n_workers`, `ray_address`, `resources`, `threads` as in
        `Study.optimize`) trains the trials of every study; an `Executor` instance given is left
        open. `population` is `Study.optimize`'s.

        Returns:
            True when everything is done; False when interrupted (Ctrl-C paused a study), or
            when every trial of an arm failed (its reason is printed; the arm's row of the table
            is empty) so that nothing could be rerun; call `run` again to continue.
        """
        if isinstance(executor, str):
            options = {"ray_address": ray_address, "resources": resources} if executor == "ray" else {}
            if not options and (ray_address is not None or resources is not None):
                raise ConfigError("ray_address and resources apply to executor='ray' only")
            opened = open_executor(executor, n_workers, **options, threads=threads)
            try:
                return runner.run_all(self, opened, progress, population)
            finally:
                opened.close()
        return runner.run_all(self, executor, progress, population)

    # ------------------------------------------------------------------ reading results
    def maximize(self, problem: str) -> bool:
        """Whether `problem`'s metric is better when larger."""
        return self.problems[problem].trainer.direction == "maximize"

    def floor(self, problem: str) -> float:
        """The worst finite validation value of any tuning trial of `problem` (what a failed trial counts as)."""
        values = [t.value for arm in self.arms() if arm.problem == problem for s in self.seeds
                  for t in self.records(arm, s) if t.value is not None]
        return analysis.floor(values, self.maximize(problem))

    def samples(self, arm: Arm) -> list[list[float]]:
        """Per study seed, `arm`'s tuning results in proposal order (failed trials at the problem's floor)."""
        return analysis.samples([self.records(arm, s) for s in self.seeds], self.floor(arm.problem))

    @property
    def iid(self) -> bool:
        """Whether trials are independent draws (random search), so Dodge et al.'s estimator applies."""
        return isinstance(self.strategy, search.Random)

    def expected_best(self, arm: Arm, ks: Sequence[int], *, level: float = stats.LEVEL,
                      rng: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Expected best validation metric of k trials for each k, with its bootstrap interval (`analysis`)."""
        return analysis.expected_best(self.samples(arm), ks, iid=self.iid, maximize=self.maximize(arm.problem),
                                      level=level, rng=rng)

    def trials_per_study(self, arm: Arm) -> int:
        """Finished tuning trials of the arm's smallest study (the full budget in trials)."""
        samples = self.samples(arm)
        return min(len(v) for v in samples) if samples else 0

    def rerun_curves(self, arm: Arm) -> list[list[float]]:
        """Validation curves (NaN where a run diverged) of the reruns of `arm`'s selected configurations."""
        return [[math.nan if v is None else float(v) for v in t.curve]
                for s in self.seeds for t in self.records(arm, s, runs=True)[: self.reruns]]

    def best(self, arm: Arm) -> TrialRecord | None:
        """The tuning trial of best validation metric over the arm's study seeds."""
        done = [st.best for s in self.seeds if (st := self.study(arm, s)) is not None and st.best is not None]
        if not done:
            return None
        sign = 1.0 if self.maximize(arm.problem) else -1.0
        return max(done, key=lambda t: sign * t.value)

    def results(self) -> Any:
        """Every tuning trial as a pandas DataFrame (see `tables.results`)."""
        from tunelab.studies.compare.tables import results

        return results(self)

    def runs(self) -> Any:
        """The reruns of selected configurations and the one-shot runs of the defaults (see `tables.runs`)."""
        from tunelab.studies.compare.tables import runs

        return runs(self)

    def table(self, ks: Sequence[int] = KS, *, level: float = stats.LEVEL) -> Any:
        """The comparison, one row per problem, optimizer and schedule (see `tables.table`)."""
        from tunelab.studies.compare.tables import table

        return table(self, ks, level=level)

    @property
    def verdict(self) -> str:
        """One line: the optimizer whose expected best is clear of every other's, or that none is (`tables.verdict`)."""
        from tunelab.studies.compare.tables import verdict

        return verdict(self, self.table())

    def profile(self, *, target_fraction: float = 0.75, tau_max: float = 4.0) -> Any:
        """Time to target on each problem and the AlgoPerf-style score of each arm (see `tables.profile`)."""
        from tunelab.studies.compare.tables import profile

        return profile(self, target_fraction=target_fraction, tau_max=tau_max)

    def plot(self, path: str | Path) -> Path:
        """Save the expected best validation metric vs budget (with bootstrap bands) as a PNG."""
        from tunelab.studies.compare.plots import plot_expected_best

        return plot_expected_best(self, Path(path))

    def report(self, folder: str | Path) -> Path:
        """Write `README.md` with the table and PNG plots into `folder`; return the Markdown file."""
        from tunelab.studies.compare.report import write_report

        return write_report(self, Path(folder))
