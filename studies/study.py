"""`studies.create`, `studies.load` and `Study`: a search persisted in an Optuna RDB database.

A tunelab study is an Optuna study with its recipe stored in the study's user attributes
(tunelab version, space JSON, strategy, trainer and workload, seed, budget, time spent), the
config of each trial as Optuna params, its learning curve as intermediate values and every
metric as trial user attributes. `optuna.load_study`, `optuna.visualization` and
optuna-dashboard read it as any Optuna study.
"""

from __future__ import annotations

import functools
import json
import os
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

import search
from spaces import ConfigError, Space, build_model
from spaces.trust import Trust, trusted_prefixes
from studies import _batch
from studies.artifacts import check_uid, claim, database_identity, folder_name, sweep
from studies.driver import BUDGET, LOCK_TTL, Budget, Driver
from studies.errors import (
    BudgetError,
    ReadOnlyStudyError,
    StorageError,
    StudyConflictError,
    StudyNotFoundError,
    TunelabError,
)
from studies.executors import EXECUTORS, Executor
from studies.executors.pool import refuse_in_spawned_import
from studies.lock import LOCK_TTL_S
from studies.mirror import UNFINISHED, Mirror
from studies.reader import read_studies, read_study_attrs, read_trials, study_direction
from studies.recipes import build_trainer, trainer_conflict
from studies.records import CHECKPOINT, TrialRecord, TrialState, checkpoint_path, record_of
from studies.storage import DEFAULT_STORAGE, artifact_dir, open_storage, storage_faults
from trainers import Trainer
from trainers.replay import Replay

VERSION = "tunelab:version"
SPACE = "tunelab:space"
STRATEGY = "tunelab:strategy"
TRAINER = "tunelab:trainer"
SEED = "tunelab:seed"
UID = "tunelab:uid"  # the study's identity: its artifact folder's marker names it


def _version() -> str:
    from studies import __version__

    return __version__


class Study:
    """A study: space, trainer and strategy, with its trials in a database.

    Build one with `studies.create` or `studies.load`, not directly.

    Attributes:
        name: The study's name (unique in its storage).
        storage_url: The SQLAlchemy URL of its database.
        space: The search space.
        trainer: The trainer every trial runs on (None when opened with `read_only=True`).
        strategy: The search strategy (None when opened with `read_only=True`).
        direction: "maximize" or "minimize".
        artifacts: The artifact root (an Optuna `FileSystemArtifactStore`): the study's checkpoints
            are in its own folder there, `artifacts / folder` (see `studies.artifacts`).
        folder: The name of the study's own folder under `artifacts`.
        uid: The study's identity (a UUID stored in the database; its folder's marker names it).
    """

    def __init__(self, *, name: str, storage_url: str, storage: Any, study_id: int, space: Space,
                 trainer: Trainer | None, strategy: search.Strategy | None, direction: str, artifacts: Path,
                 uid: str | None = None) -> None:
        self.name = name
        self.uid = uid  # the study's identity (None: a study of tunelab 0.3.0 opened read-only)
        self.folder = folder_name(name, uid) if uid is not None else None  # its folder under `artifacts`
        self.database = database_identity(storage_url)
        self.storage_url = storage_url
        self._storage = storage
        self._study_id = study_id
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
        attrs = self._study_attrs()
        return {TRAINER: dict(attrs.get(TRAINER) or {}), STRATEGY: dict(attrs.get(STRATEGY) or {})}

    def _stored_trainer(self) -> dict[str, Any]:
        return self._recipe[TRAINER]

    @property
    def metric(self) -> str:
        """Name of the objective's metric (the workload's validation metric)."""
        if self.trainer is not None:
            return self.trainer.workload.metric
        return str(self._stored_trainer().get("metric", "objective"))

    @property
    def workload_name(self) -> str:
        """Name of the study's workload."""
        if self.trainer is not None:
            return self.trainer.workload.name
        spec = self._stored_trainer()
        return str(spec.get("workload_name") or (spec.get("workload") or {}).get("name", "?"))

    @property
    def epochs(self) -> int | None:
        """Epochs of a full trial."""
        return self.trainer.epochs if self.trainer is not None else self._stored_trainer().get("epochs")

    @property
    def strategy_text(self) -> str:
        """The strategy as `Name(arg=value, ...)`, from the object or, read-only, from the stored spec."""
        if self.strategy is not None:
            return repr(self.strategy)
        spec = self._recipe[STRATEGY]
        args = ", ".join(f"{k}={v!r}" for k, v in (spec.get("args") or {}).items())
        return f"{spec.get('name', '?')}({args})"

    def _writable(self, what: str) -> None:
        if self.read_only:
            raise ReadOnlyStudyError(
                f"study {self.name!r} was opened read-only, so it cannot {what}; open it with "
                f"studies.load({self.name!r}, {self.storage_url!r}) (add trainer=... for a workload built from your "
                f"own tensors)"
            )

    # ------------------------------------------------------------------ storage access
    def _study_attrs(self) -> dict[str, Any]:
        return read_study_attrs(self._storage, self._study_id)

    @property
    def optuna(self) -> Any:
        """The `optuna.Study` view of this study (for Optuna's visualisation and analysis tools)."""
        import optuna

        return optuna.load_study(study_name=self.name, storage=self._storage)

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
            return [record_of(t, order) for t in read_trials(self._storage, self._study_id, curves=False)]
        last = max(self._records, default=-1)
        for t in read_trials(self._storage, self._study_id, include=self._open_ids, after=last):
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
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and t.comparable]
        if not done:
            return None
        key = (lambda t: -t.value) if self.direction == "maximize" else (lambda t: t.value)
        return min(done, key=key)

    def checkpoint(self, number: int) -> Path | None:
        """Path of trial `number`'s checkpoint (`trainers.load_checkpoint` reads it), or None."""
        for t in read_trials(self._storage, self._study_id, curves=False):
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
        import pandas as pd

        rows = []
        for t in self.records(curves=False):
            row: dict[str, Any] = {
                "number": t.number,
                "state": str(t.state),
                "value": t.value,
                "best_value": t.best_value,
                "test_metric": t.test_metric,
                "epochs": t.epochs,
                "grad_evals": t.grad_evals,
                "seconds": t.seconds,
                "error": t.error,
                "n_params": t.n_params,
                "flops": t.flops,
            }
            if t.genotype is not None:
                row["genotype"] = t.genotype
            row.update({f"params.{k}": v for k, v in t.config.items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def curves(self) -> Any:
        """Learning curves: a pandas DataFrame indexed by epoch (1..), one column per trial number."""
        import pandas as pd

        data = {t.number: pd.Series(t.curve, index=range(1, len(t.curve) + 1), dtype=float)
                for t in self.trials if t.curve}
        frame = pd.DataFrame(data)
        frame.index.name = "epoch"
        return frame

    def report(self, folder: str | Path) -> Path:
        """Write a Markdown report with PNG plots into `folder` (what `tunelab report` writes); return its path.

        Works on a study opened with `read_only=True`: it needs only what the database stores.
        """
        from studies.report import report

        return report(self, folder)

    def budget(self) -> dict[str, Any] | None:
        """The budget of the last `optimize` call (None before the first)."""
        return self._study_attrs().get(BUDGET)

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
        keep_checkpoints: str = "best",
        max_retries: int = 0,
        population: int = 1,
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
            keep_checkpoints: Which finished trials keep their final checkpoint: "best" (the
                best complete trial; default), "all" or "none". Paused trials always keep theirs.
            max_retries: Run a trial that raised again, up to this many times, from its last
                checkpoint (from scratch without one), as Ray Tune's `FailureConfig(max_failures)`;
                0 (the default) records it failed at once. Out-of-memory errors are retried too.
            population: Ask the strategy for up to this many trials at once and train those that
                share an architecture (every `model.*` value and the batch size) and have a
                vectorised optimizer (sgd, adam, adamw, nadam, lion) as one vectorised model
                (`trainers.Population`) on one worker; each is still its own trial. 1 (the
                default) trains one trial per unit of work. Every built-in executor takes populations
                (on Ray, a population trains on one actor).

        Returns:
            The best trial so far (None if none has completed).

        Raises:
            BudgetError: No budget, or a negative one.
            ConfigError: Bad `n_workers`, `executor` or settings.
            TrialError: Every trial fails with an error (a bug rather than a bad configuration).
            StorageError: Checkpoints cannot be written to the artifact folder.
            KeyboardInterrupt: Ctrl-C, after running trials were paused (the study stays resumable).
        """
        self._writable("optimize")
        refuse_in_spawned_import()  # a worker importing a script without a main guard: stop before any write
        budget = Budget(trials=trials, epochs=epochs, seconds=seconds, grad_evals=grad_evals)
        if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 1:
            raise ConfigError(f"n_workers must be an int >= 1, got {n_workers!r}")
        if isinstance(executor, str):
            if executor not in EXECUTORS:
                raise ConfigError(f"executor must be one of {EXECUTORS} or an Executor instance, got {executor!r}")
        elif not isinstance(executor, Executor):
            raise ConfigError(f"executor must be one of {EXECUTORS} or an Executor instance, got {executor!r}")
        elif n_workers not in (1, executor.capacity):
            raise ConfigError(f"n_workers={n_workers} but the executor given has {executor.capacity} worker slots; "
                              f"leave n_workers out when you pass an executor")
        executor_options: dict[str, Any] = {}
        if ray_address is not None or resources is not None:
            if executor != "ray":
                raise ConfigError("ray_address and resources apply to executor='ray' only; with an executor instance, "
                                  "give them to studies.RayExecutor(...)")
            executor_options = {"ray_address": ray_address, "resources": resources}
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ConfigError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if not isinstance(population, int) or isinstance(population, bool) or population < 1:
            raise ConfigError(f"population must be an int >= 1 (trials of one architecture trained at once), got "
                              f"{population!r}")
        if population > 1 and not isinstance(executor, str) and not getattr(executor, "populations", False):
            warnings.warn(f"population={population} but {type(executor).__name__} trains one trial per unit of work: "
                          f"every trial trains on its own", stacklevel=2)
        if not isinstance(max_failures, int) or max_failures < 1:
            raise ConfigError(f"max_failures must be an int >= 1, got {max_failures!r}")
        if keep_checkpoints not in ("best", "all", "none"):
            raise ConfigError(f"keep_checkpoints must be 'best', 'all' or 'none', got {keep_checkpoints!r}")
        if checkpoint_seconds is not None and not checkpoint_seconds >= 0:
            raise ConfigError(f"checkpoint_seconds must be >= 0 or None, got {checkpoint_seconds!r}")
        cores = os.cpu_count() or 1
        if n_workers > cores and executor == "local":
            warnings.warn(f"n_workers={n_workers} is more than this machine's {cores} cores: workers will compete for "
                          f"them and each trial will be slower; n_workers={cores} or fewer is usually faster",
                          stacklevel=2)
        if budget.unit == "trials" and isinstance(self.strategy, (search.FreezeThaw, search.ASHA, search.Hyperband)):
            warnings.warn(f"{type(self.strategy).__name__} pauses and resumes trials, so a budget in trials does not "
                          f"say how much it trains; give it epochs (e.g. epochs={(trials or 1) * (self.epochs or 1)}) "
                          f"to compare it fairly with other strategies", stacklevel=2)
        if all(v == 0 for v in budget.as_dict().values() if v is not None):
            raise BudgetError(
                f"a budget of {budget.unit}=0 trains nothing: budgets are totals for the study (its finished trials "
                f"count), so give a positive one, e.g. optimize(trials=20); to read the best trial, use study.best")
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
        self._writable("build a strategy's history")
        driver = Driver(self, Budget(trials=0), n_workers=1, executor="local", progress=False,
                        checkpoint_seconds=None, max_failures=1, flush_seconds=0.0)
        driver.load()
        return driver.history()


# ---------------------------------------------------------------------- create / load
def _check_fits(space: Space, trainer: Trainer) -> None:
    """Build the models of a few configs of `space` for the workload; raise ConfigError if one cannot be."""
    w = trainer.workload
    x = w.train.x[:2] if hasattr(w.train, "x") else torch.stack([torch.as_tensor(w.train[i][0]) for i in range(2)])
    configs = [space.default(), *(space.sample(np.random.default_rng([7, i])) for i in range(4))]
    for config in configs:
        try:
            model = build_model(config, w.input_shape, w.n_outputs)
            with torch.no_grad():
                model.eval()(x.float())
        except Exception as err:
            shown = {k: v for k, v in config.items() if k.startswith("model")}
            raise ConfigError(
                f"the space does not fit the workload {w.name!r} (input shape {w.input_shape}, {w.n_outputs} "
                f"outputs): building the model of {shown} failed with {type(err).__name__}: {err}. Use a model "
                f"space for this input (e.g. spaces.cnn(dim={len(w.input_shape) - 1 if len(w.input_shape) > 1 else 1})"
                f" or spaces.mlp())"
            ) from err


def _check_trains(space: Space) -> None:
    """Build the optimizer and schedule at both ends of every numeric range of `space`; ConfigError if one cannot be.

    A user-widened range is valid (the space defines it), but a value no optimizer accepts
    (a learning rate <= 0, a momentum >= 1) would fail every trial that draws it, so it is refused
    here, naming the parameter, instead of 40 trials later.
    """
    from spaces import Float, Int, build_optimizer, build_schedule

    if space in _TRAINABLE:
        return
    probe = torch.nn.Linear(2, 2)
    rng = np.random.default_rng(11)
    seen: dict[tuple[str, ...], dict[str, Any]] = {}
    for config in [space.default(), *(space.sample(rng) for _ in range(40))]:
        seen.setdefault(tuple(sorted(config)), config)  # one config per set of active branches
    for config in seen.values():
        for name in config:
            param = space[name]
            if not isinstance(param, (Float, Int)) or name.startswith("model"):
                continue
            for end in (param.low, param.high):
                trial = {**config, name: end}
                try:
                    optimizer = build_optimizer(trial, probe)
                    build_schedule(trial, optimizer, 10)
                except Exception as err:
                    raise ConfigError(
                        f"the space's range of {name} ({param.describe()}) includes {end!r}, which cannot train: "
                        f"{type(err).__name__}: {err}. Narrow it with space.replace(**{{{name!r}: ...}})"
                    ) from err
    _TRAINABLE.add(space)


_TRAINABLE: set[Space] = set()  # spaces already checked in this process (spaces are immutable)


def _same_strategy(stored: Mapping[str, Any], given: Mapping[str, Any]) -> bool:
    """Whether the stored strategy spec is `given`, the stored one read as this version reads it.

    A spec stored by an earlier release lacks the arguments added since; rebuilt by
    `Strategy.from_spec`, they take the values that release behaved with (`stored_args`) or the
    defaults, so rerunning an unchanged script continues its study after an upgrade. A spec that
    cannot be rebuilt without importing code (untrusted) compares as stored.
    """
    given = json.loads(json.dumps(given))
    if stored == given:
        return True
    try:
        rebuilt = search.Strategy.from_spec(stored)
    except Exception:  # unknown or untrusted: no rebuilding here, the stored spec is what it is
        return False
    return json.loads(json.dumps(rebuilt.spec())) == given


def stored_space(spec: Any, name: str) -> Space:
    """The space stored with study `name` (a damaged description is a typed error naming the study)."""
    try:
        return Space.from_json(spec if isinstance(spec, Mapping) else json.dumps(spec))
    except TunelabError:
        raise
    except Exception as err:  # Space.from_json names what it expects; anything else means damaged data
        raise StorageError(f"the space stored with study {name!r} is damaged ({type(err).__name__}: {err}); restore "
                           f"the database from a copy") from err


def _study_id(storage: Any, name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None


def study_names(storage: str | Any) -> list[str]:
    """Names of the studies in a storage (a URL or an opened storage)."""
    st = open_storage(storage, create=False) if isinstance(storage, str) else storage
    return [s.name for s in read_studies(st)]


def create(
    name: str,
    storage: str = DEFAULT_STORAGE,
    *,
    space: Space,
    trainer: Trainer,
    strategy: search.Strategy | None = None,
    direction: str | None = None,
    load_if_exists: bool = True,
    artifacts: str | Path | None = None,
) -> Study:
    """Create a study, or open the existing one of the same name and recipe.

    Args:
        name: Unique name in the storage.
        storage: SQLAlchemy URL (default `sqlite:///tunelab.db`).
        space: What to search.
        trainer: How each configuration is trained.
        strategy: How the next configuration is chosen (default `search.Random(seed=0)`).
        direction: "maximize" or "minimize" (default: the workload metric's direction).
        load_if_exists: Open an existing study of this name (its space, strategy and trainer
            must equal the given ones); if False, an existing name is an error.
        artifacts: Folder for checkpoints (default: beside an SQLite file, `<db>.artifacts`).

    Returns:
        The `Study`.

    Raises:
        StorageError: The storage cannot be opened.
        StudyConflictError: The name exists with another space, strategy or trainer (or
            `load_if_exists=False`).
        ConfigError: Bad arguments, or a space whose models the workload cannot build.
    """
    with storage_faults(storage if isinstance(storage, str) else "?"):
        return _create(name, storage, space=space, trainer=trainer, strategy=strategy, direction=direction,
                       load_if_exists=load_if_exists, artifacts=artifacts)


def _create(name: str, storage: str, *, space: Space, trainer: Trainer, strategy: search.Strategy | None,
            direction: str | None, load_if_exists: bool, artifacts: str | Path | None) -> Study:
    import optuna

    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"a study needs a non-empty name, got {name!r}")
    if not isinstance(space, Space):
        raise ConfigError(f"space must be a spaces.Space, got {type(space).__name__}")
    if not isinstance(trainer, Trainer):
        raise ConfigError(f"trainer must be a trainers.Trainer, got {type(trainer).__name__}")
    strategy = search.Random(seed=0) if strategy is None else strategy
    if not isinstance(strategy, search.Strategy):
        raise ConfigError(f"strategy must be a search.Strategy (e.g. search.Bayesian()), got {strategy!r}")
    if direction is not None and direction != trainer.workload.direction and direction in ("maximize", "minimize"):
        warnings.warn(f"direction={direction!r}, but the workload's metric {trainer.workload.metric!r} is best when "
                      f"it is {trainer.workload.direction}d: this study searches for the worst configurations. Leave "
                      f"direction out to use the metric's own", stacklevel=2)
    direction = direction or trainer.workload.direction
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    if isinstance(trainer, Replay):  # nothing is built: the table answers, and must hold what the space proposes
        trainer.check_space(space)
    else:
        _check_fits(space, trainer)
        _check_trains(space)
    strategy.check(space, trainer)
    st = open_storage(storage)
    recipe = {
        SPACE: json.loads(space.to_json()),
        STRATEGY: strategy.spec(),
        TRAINER: trainer.spec(),
    }
    study_id = _study_id(st, name)
    if study_id is not None:
        if not load_if_exists:
            raise StudyConflictError(
                f"a study named {name!r} already exists in {storage}; pass load_if_exists=True to continue it, "
                f"or choose another name"
            )
        attrs = read_study_attrs(st, study_id)
        if SPACE not in attrs:
            raise StudyConflictError(
                f"the study {name!r} in {storage} was not created by tunelab; choose another name"
            )
        problems = []
        if attrs[SPACE] != recipe[SPACE]:
            problems.append("a different space")
        if not _same_strategy(attrs[STRATEGY], recipe[STRATEGY]):
            problems.append(f"a different strategy (stored: {attrs[STRATEGY]}, given: {recipe[STRATEGY]})")
        conflict = trainer_conflict(attrs[TRAINER], recipe[TRAINER])
        if conflict:
            problems.append(conflict)
        stored_dir = study_direction(st, study_id)
        if stored_dir != direction:
            problems.append(f"a different direction (stored: {stored_dir})")
        if problems:
            raise StudyConflictError(
                f"the study {name!r} in {storage} exists with {'; '.join(problems)}. Continue it with "
                f"studies.load({name!r}, {storage!r}), or create the new search under another name"
            )
    else:
        try:
            study_id = _batch.create_study(st, name, direction, {**recipe, VERSION: _version(), SEED: strategy.seed,
                                                                 LOCK_TTL: LOCK_TTL_S, UID: uuid.uuid4().hex},
                                           metric=trainer.workload.metric)
        except optuna.exceptions.DuplicatedStudyError:  # another process created it a moment ago: check it
            return create(name, storage, space=space, trainer=trainer, strategy=strategy, direction=direction,
                          load_if_exists=load_if_exists, artifacts=artifacts)
    root = artifact_dir(storage, artifacts)
    return Study(name=name, storage_url=storage, storage=st, study_id=study_id, space=space, trainer=trainer,
                 strategy=strategy, direction=direction, artifacts=root, uid=_claim(st, study_id, name, storage, root))


def _claim(storage: Any, study_id: int, name: str, url: str, root: Path) -> str:
    """The study's identity, given to it now if it has none (a study of 0.3.0), with its folder claimed.

    Leftover temporary checkpoint files of killed processes are removed from the folder (and
    from the root, where 0.3.0 wrote them).

    Raises:
        StorageError: The folder belongs to another study or database (`studies.artifacts.claim`).
    """
    uid = check_uid(_batch.set_study_attr_once(storage, study_id, UID, uuid.uuid4().hex), name)
    folder = root / folder_name(name, uid)
    claim(folder, uid=uid, name=name, database=database_identity(url))
    sweep(folder)
    sweep(root)
    return uid


def load(
    name: str,
    storage: str = DEFAULT_STORAGE,
    *,
    trainer: Trainer | None = None,
    strategy: search.Strategy | None = None,
    trust: Trust = None,
    device: str = "auto",
    artifacts: str | Path | None = None,
    read_only: bool = False,
) -> Study:
    """Open a study from its database alone: space, strategy and (built-in or trusted) workload.

    A database is untrusted input: built-in workloads, strategies and Optuna samplers load by
    name, and nothing else is imported unless its package is in `trust` or the object itself is
    passed (`trainer=`, `strategy=`).

    Args:
        name: The study's name.
        storage: Its SQLAlchemy URL.
        trainer: The trainer, needed when the workload was built from in-memory data (or from a
            factory you would rather not import by name).
        strategy: The strategy, instead of rebuilding it from the stored spec (must equal it).
        trust: Packages whose code the stored recipe may import, e.g. `["mypkg"]` for a workload
            factory `mypkg.data:make_workload` (see `spaces.trust`).
        device: Device of the rebuilt trainer.
        artifacts: Checkpoint folder, if not the default one beside the database.
        read_only: Open only what is stored: trials, records, curves, reports. No workload is
            rebuilt and no strategy built, so nothing is imported and any study opens (one on
            your own in-memory data too); `optimize` then raises `ReadOnlyStudyError`.

    Raises:
        StorageError: The storage cannot be opened, or the study was not created by tunelab.
        StudyNotFoundError: No study of that name; the message lists the names there are.
        UntrustedImportError: The recipe names code outside tunelab that `trust` does not cover.
        WorkloadError: The workload cannot be rebuilt and no trainer was given.
        StudyConflictError: The given trainer or strategy differs from the stored one.
    """
    with storage_faults(storage if isinstance(storage, str) else "?"):
        return _load(name, storage, trainer=trainer, strategy=strategy, trust=trust, device=device,
                     artifacts=artifacts, read_only=read_only)


def _load(name: str, storage: str, *, trainer: Trainer | None, strategy: search.Strategy | None, trust: Trust,
          device: str, artifacts: str | Path | None, read_only: bool) -> Study:
    trusted_prefixes(trust)  # a bad trust value fails before the database is opened
    st = open_storage(storage, create=False)
    study_id = _study_id(st, name)
    if study_id is None:
        names = study_names(st)
        raise StudyNotFoundError(
            f"no study named {name!r} in {storage}; it holds {names if names else 'no studies'} "
            f"(create one with studies.create)"
        )
    attrs = read_study_attrs(st, study_id)
    if SPACE not in attrs:
        raise StorageError(f"the study {name!r} in {storage} was not created by tunelab (it has no tunelab recipe)")
    space = stored_space(attrs[SPACE], name)
    direction = study_direction(st, study_id)
    if read_only:
        uid = check_uid(attrs[UID], name) if UID in attrs else None
        return Study(name=name, storage_url=storage, storage=st, study_id=study_id, space=space, trainer=trainer,
                     strategy=strategy, direction=direction, artifacts=artifact_dir(storage, artifacts, create=False),
                     uid=uid)
    if strategy is None:
        strategy = search.Strategy.from_spec(attrs[STRATEGY], trust=trust)
    elif not _same_strategy(attrs[STRATEGY], strategy.spec()):
        raise StudyConflictError(
            f"the strategy given to load differs from the study's (stored: {attrs[STRATEGY]}, given: "
            f"{strategy.spec()}); pass an equal strategy, or none to rebuild the stored one"
        )
    if trainer is None:
        trainer = build_trainer(attrs[TRAINER], device=device, trust=trust)
    elif conflict := trainer_conflict(attrs[TRAINER], trainer.spec()):
        raise StudyConflictError(
            f"the trainer given to load differs from the study's: {conflict}; pass the same workload (the same "
            f"data), epochs, batch size and seed"
        )
    root = artifact_dir(storage, artifacts)
    return Study(name=name, storage_url=storage, storage=st, study_id=study_id, space=space, trainer=trainer,
                 strategy=strategy, direction=direction, artifacts=root, uid=_claim(st, study_id, name, storage, root))
