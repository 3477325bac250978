"""`studies.create`, `studies.load` and `Study`: a search persisted in an Optuna RDB database.

A tunelab study is an Optuna study with its recipe stored in the study's user attributes
(tunelab version, space JSON, strategy, trainer and workload, seed, budget, time spent), the
config of each trial as Optuna params, its learning curve as intermediate values and every
metric as trial user attributes. `optuna.load_study`, `optuna.visualization` and
optuna-dashboard read it as any Optuna study.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.spaces import Space
from tunelab.studies.artifacts import checkpoint_path, database_identity, folder_name
from tunelab.studies.errors import (
    ReadOnlyStudyError,
)
from tunelab.studies.recipes import BUDGET, STRATEGY, TRAINER
from tunelab.studies.records import CHECKPOINT, TrialRecord, TrialState, curves_frame, record_of, trials_frame
from tunelab.studies.storage import storage_faults
from tunelab.studies.storage.limits import mapping
from tunelab.studies.storage.reader import read_study_attrs, read_trials

if TYPE_CHECKING:  # the driver, executors, `search` and `trainers` (torch) load when a study trains, not to read it
    from tunelab import search
    from tunelab.studies.driver import Mirror
    from tunelab.studies.executors import Executor
    from tunelab.studies.importance import Importance
    from tunelab.studies.objectives import Constraints, Objectives
    from tunelab.trainers import Trainer


class Study:
    """A study: space, trainer and strategy, with its trials in a database.

    Size: about 300 lines, most of them `optimize`'s documented arguments; the work is the
    driver's, the checks `driver.settings`', opening `studies.opening`'s.

    Build one with `studies.create` or `studies.load`, not directly.

    Attributes:
        name: The study's name (unique in its storage).
        storage_url: The SQLAlchemy URL of its database.
        storage: Its `optuna.storages.RDBStorage`.
        study_id: Its id in that storage.
        space: The search space.
        trainer: The trainer every trial runs on (None when opened with `read_only=True`).
        strategy: The search strategy (None when opened with `read_only=True`).
        direction: "maximize" or "minimize".
        artifacts: The artifact root (an Optuna `FileSystemArtifactStore`): the study's checkpoints
            are in its own folder there, `artifacts / folder` (see `studies.artifacts`).
        folder: The name of the study's own folder under `artifacts`.
        uid: The study's identity (a UUID stored in the database; its folder's marker names it).
        objectives: A multi-objective study's objectives (`studies.objectives.Objectives`: names
            and directions); None for a study with one objective, the trainer's metric.
        constraints: Its outcome constraints (`studies.objectives.Constraints`), or None.
    """

    def __init__(self, *, name: str, storage_url: str, storage: Any, study_id: int, space: Space,
                 trainer: Trainer | None, strategy: search.Strategy | None, direction: str, artifacts: Path,
                 uid: str | None = None, objectives: Objectives | None = None,
                 constraints: Constraints | None = None) -> None:
        self.name = name
        self.objectives = objectives
        self.constraints = constraints
        self.uid = uid  # the study's identity (None: a study of tunelab 0.3.0 opened read-only)
        self.folder = folder_name(name, uid) if uid is not None else None  # its folder under `artifacts`
        self.database = database_identity(storage_url)
        self.storage_url = storage_url
        self.storage = storage
        self.study_id = study_id
        self.space = space
        self.trainer = trainer
        self.strategy = strategy
        self.direction = direction
        self.artifacts = artifacts
        self._mirror: Mirror | None = None  # the driver's mirror after the last optimize (the next starts from it)
        self._records: dict[int, TrialRecord] = {}  # records read so far, by trial id (finished ones never change)
        self._open_ids: set[int] = set()  # trial ids of the unfinished ones among them

    def __repr__(self) -> str:
        return f"Study({self.name!r}, storage={self.storage_url!r}, strategy={self.strategy_text})"

    # ------------------------------------------------------------------ what is stored
    @property
    def read_only(self) -> bool:
        """Whether the study was opened without a trainer or strategy (it can be read, not optimized)."""
        return self.trainer is None or self.strategy is None

    @functools.cached_property
    def _recipe(self) -> dict[str, Any]:
        """The stored trainer and strategy specs (written once, at create: read once)."""
        attrs = self.attrs()
        return {key: mapping(attrs.get(key), f"the study's attribute {key!r}") for key in (TRAINER, STRATEGY)}

    @property
    def stored_trainer(self) -> dict[str, Any]:
        """The trainer's spec as the study stored it when it was created (`Trainable.spec()`)."""
        return self._recipe[TRAINER]

    @property
    def metric(self) -> str:
        """Name of the objective's metric (the workload's validation metric)."""
        if self.trainer is not None:
            return self.trainer.metric
        return str(self.stored_trainer.get("metric", "objective"))

    @property
    def workload_name(self) -> str:
        """Name of the study's workload."""
        if self.trainer is not None:
            return self.trainer.name
        spec = self.stored_trainer
        return str(spec.get("workload_name") or (spec.get("workload") or {}).get("name", "?"))

    @property
    def epochs(self) -> int | None:
        """Epochs of a full trial."""
        return self.trainer.epochs if self.trainer is not None else self.stored_trainer.get("epochs")

    @property
    def strategy_text(self) -> str:
        """The strategy as `Name(arg=value, ...)`, from the object or, read-only, from the stored spec."""
        if self.strategy is not None:
            return repr(self.strategy)
        spec = self._recipe[STRATEGY]
        args = mapping(spec.get("args"), "the stored strategy's arguments")
        text = f"{spec.get('name', '?')}({', '.join(f'{k}={v!r}' for k, v in args.items())})"
        return text if len(text) <= 300 else text[:297] + "..."

    def _writable(self, what: str) -> None:
        if self.read_only:
            raise ReadOnlyStudyError(
                f"study {self.name!r} was opened read-only, so it cannot {what}; open it with "
                f"studies.load({self.name!r}, {self.storage_url!r}) (add trainer=... for a workload built from your "
                f"own tensors)"
            )

    # ------------------------------------------------------------------ storage access
    def attrs(self) -> dict[str, Any]:
        """The study's stored user attributes (its recipe, budget, seconds spent), each checked when read."""
        return read_study_attrs(self.storage, self.study_id)

    @property
    def optuna(self) -> Any:
        """The `optuna.Study` view of this study (for Optuna's visualisation and analysis tools)."""
        import optuna

        return optuna.load_study(study_name=self.name, storage=self.storage)

    @property
    def artifact_store(self) -> Any:
        """The `optuna.artifacts.FileSystemArtifactStore` holding the checkpoints."""
        from optuna.artifacts import FileSystemArtifactStore

        return FileSystemArtifactStore(str(self.artifacts))

    # ------------------------------------------------------------------ results
    @property
    def trials(self) -> list[TrialRecord]:
        """Every trial, by number (interrupted-and-re-queued ones included, as failed).

        Read incrementally: the first access reads the study, later ones only its unfinished and
        new trials (a finished trial never changes).
        """
        return self.records()

    def records(self, *, curves: bool = True) -> list[TrialRecord]:
        """Every trial, by number; `curves=False` reads a summary (faster on large studies).

        Args:
            curves: Read each trial's per-epoch data. Without it, `curve` and `metrics` are
                empty (`epochs`, `value`, `best_value` and the rest are there): what listings
                and `dataframe()` show. A summary read is not kept; `trials` keeps what it read.
        """
        with storage_faults(self.storage_url):
            return self._records_read(curves)

    def _records_read(self, curves: bool) -> list[TrialRecord]:
        order = list(self.space.names)
        if not curves:
            return [record_of(t, order) for t in read_trials(self.storage, self.study_id, curves=False)]
        from tunelab.studies.driver import UNFINISHED

        last = max(self._records, default=-1)
        for t in read_trials(self.storage, self.study_id, include=self._open_ids, after=last):
            record = self._records[t._trial_id] = record_of(t, order)
            if record.state in UNFINISHED:
                self._open_ids.add(t._trial_id)
            else:
                self._open_ids.discard(t._trial_id)
        return list(self._records.values())

    @property
    def best(self) -> TrialRecord | None:
        """The complete trial with the best value (None before any completes).

        Only trials whose value is a trained network's validation metric compete: a DARTS
        search trial (its supernet's accuracy on half of the training split) never is best; the
        retrained trial of its genotype is.
        """
        return self.best_of(self.trials)

    def best_of(self, trials: list[TrialRecord]) -> TrialRecord | None:
        """The best of `trials` as `best` chooses it (for a caller that has already read the trials)."""
        done = [t for t in trials
                if t.state == TrialState.COMPLETE and t.value is not None and t.comparable and t.feasible]
        if not done:
            return None
        key = (lambda t: -t.value) if self.direction == "maximize" else (lambda t: t.value)
        return min(done, key=key)

    @property
    def pareto_front(self) -> list[TrialRecord]:
        """The complete trials no other complete trial dominates, by their first objective's value.

        A multi-objective study's Pareto front (`TrialRecord.values`, in `objectives`' order);
        with one objective, the best trial (every trial of equal best value). Trials whose
        values were damaged (another number of them than the objectives) are left out.
        """
        return self.pareto_front_of(self.records(curves=False))

    def pareto_front_of(self, trials: list[TrialRecord]) -> list[TrialRecord]:
        """The Pareto front of `trials` (for a caller that has already read them; see `pareto_front`)."""
        from tunelab.spaces.pareto import non_dominated

        done, points = self.points_of(trials)
        if not done:
            return []
        mask = non_dominated(points)
        front = [t for t, keep in zip(done, mask, strict=True) if keep]
        return sorted(front, key=lambda t: (t.values or (t.value,))[0])

    def points_of(self, trials: list[TrialRecord]) -> tuple[list[TrialRecord], Any]:
        """Complete feasible trials with finite values, and their values normalised to minimisation `(n, m)`."""
        import math

        import numpy as np

        signs = self.objectives.signs if self.objectives is not None else (-1.0 if self.direction == "maximize"
                                                                           else 1.0,)
        done = []
        for t in trials:
            vals = t.values if self.objectives is not None else (t.value,) if t.value is not None else None
            if (t.state == TrialState.COMPLETE and vals is not None and len(vals) == len(signs) and t.comparable
                    and t.feasible and all(math.isfinite(v) for v in vals)):
                done.append(t)
        points = np.array([[s * v for s, v in zip(signs, t.values or (t.value,), strict=True)] for t in done])
        return done, points.reshape(len(done), len(signs))

    def hypervolume(self, reference: Mapping[str, float] | None = None, *, trials: int | None = None) -> float:
        """The hypervolume of the Pareto front (larger is better), in the objectives' own units.

        Args:
            reference: The reference point, one value per objective (a maximised objective's
                worst acceptable value, a minimised one's largest); default: the worst value of
                each objective over the study's complete trials, so the default grows with the
                study: pass a fixed one to compare studies.
            trials: Only the first this many trials (by number): the front after that budget.

        Raises:
            ConfigError: A study with one objective, or a reference without every objective.
        """
        from tunelab.spaces import ConfigError
        from tunelab.spaces.pareto import hypervolume

        if self.objectives is None:
            raise ConfigError(f"study {self.name!r} has one objective; a hypervolume needs several "
                              f"(studies.create(..., objectives={{...}}))")
        records = self.records(curves=False)
        done, points = self.points_of(records)
        if not done:
            return 0.0
        signs = self.objectives.signs
        if reference is None:
            ref = points.max(axis=0)
        else:
            if set(reference) != set(self.objectives.names):
                raise ConfigError(f"reference must give a value for each objective {list(self.objectives.names)}, "
                                  f"got {sorted(reference)}")
            ref = [s * float(reference[n]) for s, n in zip(signs, self.objectives.names, strict=True)]
        if trials is not None:
            keep = [i for i, t in enumerate(done) if t.number < trials]
            points = points[keep]
        return hypervolume(points, ref) if len(points) else 0.0

    def checkpoint(self, number: int) -> Path | None:
        """Path of trial `number`'s checkpoint (`trainers.load_checkpoint` reads it), or None."""
        for t in read_trials(self.storage, self.study_id, curves=False):
            if t.number == number and t.system_attrs.get(CHECKPOINT):
                path = checkpoint_path(self.artifacts, self.folder, t._trial_id, t.number,
                                       t.system_attrs[CHECKPOINT])
                return path if path is not None and path.exists() else None
        return None

    def dataframe(self) -> Any:
        """All trials as a pandas DataFrame.

        Columns: number, state, value, best_value, test_metric, epochs, grad_evals, seconds,
        error, n_params and flops (of the network), genotype (cell spaces only), and one
        `params.<name>` column per parameter.
        """
        return trials_frame(self.records(curves=False))

    def curves(self) -> Any:
        """Learning curves: a pandas DataFrame indexed by epoch (1..), one column per trial number."""
        return curves_frame(self.trials)

    def report(self, folder: str | Path) -> Path:
        """Write a Markdown report with PNG plots into `folder` (what `tunelab report` writes); return its path.

        Works on a study opened with `read_only=True`: it needs only what the database stores.
        """
        from tunelab.studies.report import report

        return report(self, folder)

    def importance(self, method: str = "ped_anova", *, objective: str | None = None,
                   where: Mapping[str, Any] | None = None, seed: int = 0) -> Importance:
        """Which hyperparameters matter for the objective, by Optuna's evaluators (see `studies.importance`).

        Works on a study opened with `read_only=True`.

        Args:
            method: "ped_anova" (default; PED-ANOVA, Watanabe et al. 2023) or "fanova" (fANOVA,
                Hutter et al. 2014; slower, only parameters every trial has).
            objective: The objective's name: required for a multi-objective study.
            where: Only trials whose configuration has these values, e.g. `{"optimizer": "sgd"}`.
            seed: The seed of fANOVA's random forest.

        Returns:
            An `Importance`: `scores` (largest first, summing to 1), `left_out`, `table()`.

        Raises:
            ConfigError: An unknown method or objective, or a multi-objective study without one.
            TooFewTrialsError: Fewer than 10 complete trials with a finite objective value.
        """
        from tunelab.studies.importance import importance

        with storage_faults(self.storage_url):
            return importance(self, method, objective=objective, where=where, seed=seed)

    def budget(self) -> dict[str, Any] | None:
        """The budget of the last `optimize` call (None before the first)."""
        return self.attrs().get(BUDGET)

    # ------------------------------------------------------------------ search
    def optimize(
        self,
        trials: int | None = None,
        *,
        epochs: int | None = None,
        seconds: float | None = None,
        grad_evals: int | None = None,
        n_workers: int = 1,
        executor: str | Executor = "local",
        ray_address: str | None = None,
        resources: Mapping[str, float] | None = None,
        progress: bool = True,
        checkpoint_seconds: float | None = 30.0,
        max_failures: int = 3,
        flush_seconds: float = 2.0,
        keep_checkpoints: str = "none",
        max_retries: int = 0,
        population: int = 1,
        threads: int | None = None,
    ) -> TrialRecord | None:
        """Run the study until its budget (a total for the study, over all calls) is spent.

        Calling it again with the same budget after a crash or Ctrl-C finishes the same study
        and stops; it never spends a budget twice. Ctrl-C pauses running trials at the end of
        their epoch, then raises `KeyboardInterrupt` (as Optuna does), so the rest of a script
        does not run as if the study had finished (a second Ctrl-C aborts at once).

        Args:
            trials: Total trials proposed by the strategy.
            epochs: Total epochs trained, summed over trials.
            seconds: Total wall time in `optimize` (running trials finish after it is reached);
                simulated seconds with executor="simulated".
            grad_evals: Total gradient evaluations.
            n_workers: Trials trained at once; >1 uses a local process pool (or that many Ray actors).
            executor: "local" (this machine: in process, or a process pool for `n_workers > 1`),
                "ray" (a Ray cluster: `studies.RayExecutor`), "simulated" (`n_workers` workers on a
                simulated clock that charges each epoch its reported seconds: for replayed trainers,
                `trainers.Replay`), or an `Executor` instance the caller made and will close (to
                keep one across several studies).
            ray_address: With executor="ray": None starts Ray on this machine, "auto" or
                "host:port" joins a running cluster.
            resources: With executor="ray": what each trial reserves, e.g. `{"num_cpus": 1,
                "num_gpus": 0.25}` (four trials share a GPU); default one CPU.
            progress: Show a progress bar and one line per finished trial.
            checkpoint_seconds: Save a running trial's checkpoint every this many seconds (None:
                every `trainer.checkpoint_every` epochs), so a crash loses at most that much.
            max_failures: Stop with `TrialError` when this many trials in a row raise and none
                of the study has completed.
            flush_seconds: Write a running trial's epochs to the database at most this often.
            keep_checkpoints: Which finished trials keep their final weights: "none" (the
                default: a trial that ends writes no final checkpoint), "best" (the best complete
                trial's, for `study.checkpoint(study.best.number)`; only runs that end better
                than the best so far write one) or "all". Paused trials always keep theirs, and
                "none" leaves the files that earlier calls kept.
            max_retries: Run a trial that raised again, up to this many times, from its last
                checkpoint (from scratch without one), as Ray Tune's `FailureConfig(max_failures)`;
                0 (the default) records it failed at once. Out-of-memory errors are retried too.
            population: Ask the strategy for up to this many trials at once and train those that
                share an architecture (every `model.*` value and the batch size) and have a
                vectorised optimizer (sgd, adam, adamw, nadam, lion) as one vectorised model
                (`trainers.Population`) on one worker; each is still its own trial. 1 (the
                default) trains one trial per unit of work. Every built-in executor takes populations
                (on Ray, a population trains on one actor).
            threads: Torch threads for each trial trained on this machine (in this process, or
                per pool worker). None (the default) gives each worker `cores // n_workers`,
                capped by `OMP_NUM_THREADS` when it is set, and 1 when the machine is already
                busy (load average above the cores, with a `studies.BusyMachineWarning`): more threads than
                free cores train several times slower. This process's own count is restored
                after each trial. Ray actors use their `resources`' `num_cpus` instead.

        Returns:
            The best trial so far (None if none has completed).

        Raises:
            BudgetError: No budget, or a negative one.
            ConfigError: Bad `n_workers`, `executor` or settings.
            TrialError: Every trial fails with an error (a bug rather than a bad configuration).
            StorageError: Checkpoints cannot be written to the artifact folder.
            KeyboardInterrupt: Ctrl-C, after running trials were paused (the study stays resumable).
        """
        from tunelab.studies.driver import Budget, Driver
        from tunelab.studies.driver.settings import check_settings
        from tunelab.studies.executors.pool import refuse_in_spawned_import

        self._writable("optimize")
        refuse_in_spawned_import()  # a worker importing a script without a main guard: stop before any write
        budget = Budget(trials=trials, epochs=epochs, seconds=seconds, grad_evals=grad_evals)
        executor_options = check_settings(
            budget=budget, strategy=self.strategy, trainer=self.trainer, n_workers=n_workers,
            executor=executor, ray_address=ray_address, resources=resources, max_retries=max_retries,
            population=population, max_failures=max_failures, keep_checkpoints=keep_checkpoints,
            checkpoint_seconds=checkpoint_seconds, threads=threads)
        driver = Driver(
            self,
            budget,
            n_workers=n_workers,
            executor=executor,
            progress=progress,
            checkpoint_seconds=checkpoint_seconds,
            max_failures=max_failures,
            flush_seconds=flush_seconds,
            keep_checkpoints=keep_checkpoints,
            max_retries=max_retries,
            executor_options=executor_options,
            population=population,
            mirror=self._mirror,
        )
        self._mirror = None  # carried over only from a run that ended cleanly (the next reads the study afresh)
        driver.run()
        self._mirror = driver.mirror
        return driver.best_record()  # what `self.best` returns, without reading every trial again

    def history(self) -> search.History:
        """The normalised view a strategy gets (for inspecting what a strategy would do next)."""
        from tunelab.studies.driver import Mirror, history_of, row_of

        self._writable("build a strategy's history")
        sign = -1.0 if self.direction == "maximize" else 1.0
        mirror = Mirror(sign)
        for trial in read_trials(self.storage, self.study_id):
            mirror.put(row_of(trial))
        return history_of(self, mirror, sign)
