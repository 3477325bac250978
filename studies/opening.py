"""Creating and opening studies: `studies.create`, `studies.load`, and the checks they make first.

`create` checks the space against the workload (it builds a few of its models and optimizers)
and the strategy against both, then creates the study with its recipe in one transaction, or
opens the existing one of the same name after comparing recipes. `load` rebuilds a study from
its database alone; a database is untrusted input, so nothing outside tunelab is imported unless
the caller trusts it, and every value read is checked (`studies.storage.limits`). Both give the
study its own checkpoint folder (`studies.artifacts`). `load(..., read_only=True)` and
`study_names` import neither `search` nor `trainers` (so no torch): `tunelab show` and `list`.
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.spaces import ConfigError, Space
from tunelab.spaces.trust import Trust, trusted_prefixes
from tunelab.studies.artifacts import check_uid, claim, database_identity, folder_name, sweep
from tunelab.studies.errors import StorageError, StudyConflictError, StudyNotFoundError, TunelabError
from tunelab.studies.objectives import (
    CONSTRAINTS,
    METRIC_DIRECTION,
    OBJECTIVES,
    Constraints,
    Objectives,
    parse_constraints,
)
from tunelab.studies.objectives import parse as parse_objectives
from tunelab.studies.recipes import SEED, SPACE, STRATEGY, TRAINER, UID, VERSION, build_trainer, trainer_conflict
from tunelab.studies.storage import DEFAULT_STORAGE, artifact_dir, open_storage, storage_faults, writer
from tunelab.studies.storage.limits import mapping
from tunelab.studies.storage.lock import LOCK_TTL_S
from tunelab.studies.storage.reader import read_studies, read_study_attrs, study_direction
from tunelab.studies.study import Study

if TYPE_CHECKING:  # `search` and `trainers` (torch) load when a study is created or opened to train, not to be read
    from tunelab import search
    from tunelab.trainers.protocol import Trainable


def _version() -> str:
    from tunelab import __version__

    return __version__


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
    from tunelab import search

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
    trainer: Trainable,
    strategy: search.Strategy | None = None,
    direction: str | None = None,
    load_if_exists: bool = True,
    artifacts: str | Path | None = None,
    objectives: Mapping[str, str] | None = None,
    constraints: Mapping[str, Any] | None = None,
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
        objectives: Several objectives, `{name: "minimize" | "maximize"}` (a multi-objective
            study; see `studies.objectives`): any recorded measurement, such as the trainer's
            metric, a metric a `Function` reports, `n_params`, `flops`, `seconds` or
            `latency_ms` (timed on the study's device). None (the default): the trainer's
            metric is the one objective.
        constraints: Outcome constraints, `{name: upper bound}` or `{name: (">=", lower bound)}`
            over recorded measurements (`studies.objectives.Constraints`): a complete trial
            outside them is recorded infeasible, as Optuna records one (never best, never on the
            Pareto front).

    Returns:
        The `Study`.

    Raises:
        StorageError: The storage cannot be opened.
        StudyConflictError: The name exists with another space, strategy, trainer, objectives
            or constraints (or `load_if_exists=False`).
        ConfigError: Bad arguments, or a space whose models the workload cannot build; an
            objective the trainer does not record, or a strategy that optimises one objective
            given several.
    """
    with storage_faults(storage if isinstance(storage, str) else "?"):
        return _create(name, storage, space=space, trainer=trainer, strategy=strategy, direction=direction,
                       load_if_exists=load_if_exists, artifacts=artifacts, objectives=objectives,
                       constraints=constraints)


def _create(name: str, storage: str, *, space: Space, trainer: Trainable, strategy: search.Strategy | None,
            direction: str | None, load_if_exists: bool, artifacts: str | Path | None,
            objectives: Mapping[str, str] | None, constraints: Mapping[str, Any] | None) -> Study:
    import optuna

    from tunelab import search
    from tunelab.studies.driver import LOCK_TTL
    from tunelab.trainers.protocol import is_trainable

    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"a study needs a non-empty name, got {name!r}")
    if not isinstance(space, Space):
        raise ConfigError(f"space must be a spaces.Space, got {type(space).__name__}")
    if not is_trainable(trainer):
        raise ConfigError(f"trainer must be a trainers.Trainer, trainers.Function or trainers.Objective (a "
                          f"trainers.Trainable), got {type(trainer).__name__}")
    strategy = search.Random(seed=0) if strategy is None else strategy
    if not isinstance(strategy, search.Strategy):
        raise ConfigError(f"strategy must be a search.Strategy (e.g. search.Bayesian()), got {strategy!r}")
    if direction is not None and direction != trainer.direction and direction in ("maximize", "minimize"):
        warnings.warn(f"direction={direction!r}, but the metric {trainer.metric!r} is best when it is "
                      f"{trainer.direction}d: this study searches for the worst configurations. Leave direction out "
                      f"to use the metric's own", stacklevel=2)
    direction = direction or trainer.direction
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    goals = parse_objectives(objectives, trainer)
    limits = parse_constraints(constraints, trainer)
    trainer.check(space)  # a Trainer builds a few models of the space; a Replay checks its table holds them
    strategy.check(space, trainer)
    strategy.check_objectives(goals.names if goals is not None else (trainer.metric,))
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
        stored_goals = attrs.get(OBJECTIVES)
        if stored_goals != (goals.spec() if goals is not None else None):
            problems.append(f"different objectives (stored: {_shown_objectives(stored_goals)}, given: "
                            f"{_shown_objectives(goals.spec() if goals is not None else None)})")
        if attrs.get(CONSTRAINTS) != (limits.spec() if limits is not None else None):
            problems.append(f"different constraints (stored: {str(attrs.get(CONSTRAINTS))[:200]}, given: "
                            f"{limits.spec() if limits is not None else None})")
        stored_dir = attrs.get(METRIC_DIRECTION) if stored_goals is not None else study_direction(st, study_id)
        if stored_dir != direction:
            problems.append(f"a different direction (stored: {stored_dir})")
        if problems:
            raise StudyConflictError(
                f"the study {name!r} in {storage} exists with {'; '.join(problems)}. Continue it with "
                f"studies.load({name!r}, {storage!r}), or create the new search under another name"
            )
    else:
        attrs = {**recipe, VERSION: _version(), SEED: strategy.seed, LOCK_TTL: LOCK_TTL_S, UID: uuid.uuid4().hex}
        if goals is not None:
            attrs.update({OBJECTIVES: goals.spec(), METRIC_DIRECTION: direction})
        if limits is not None:
            attrs[CONSTRAINTS] = limits.spec()
        try:
            study_id = writer.create_study(st, name, goals.directions if goals else direction, attrs,
                                           metric=goals.names if goals else trainer.metric)
        except optuna.exceptions.DuplicatedStudyError:  # another process created it a moment ago: check it
            return create(name, storage, space=space, trainer=trainer, strategy=strategy, direction=direction,
                          load_if_exists=load_if_exists, artifacts=artifacts, objectives=objectives,
                          constraints=constraints)
    root = artifact_dir(storage, artifacts)
    return Study(name=name, storage_url=storage, storage=st, study_id=study_id, space=space, trainer=trainer,
                 strategy=strategy, direction=direction, artifacts=root, uid=_claim(st, study_id, name, storage, root),
                 objectives=goals, constraints=limits)


def _shown_objectives(spec: Any) -> str:
    if spec is None:
        return "one, the trainer's metric"
    text = str(dict(spec) if isinstance(spec, list) and all(isinstance(p, list) and len(p) == 2 for p in spec)
               else spec)
    return text if len(text) <= 200 else text[:197] + "..."


def stored_objectives(attrs: Mapping[str, Any], metric: str) -> Objectives | None:
    """A stored study's objectives (None: one objective), checked (`Objectives.from_spec`)."""
    spec = attrs.get(OBJECTIVES)
    return None if spec is None else Objectives.from_spec(spec, metric)


def stored_constraints(attrs: Mapping[str, Any], metric: str) -> Constraints | None:
    """A stored study's outcome constraints (None: none), checked (`Constraints.from_spec`)."""
    spec = attrs.get(CONSTRAINTS)
    return None if spec is None else Constraints.from_spec(spec, metric)


def _claim(storage: Any, study_id: int, name: str, url: str, root: Path) -> str:
    """The study's identity, given to it now if it has none (a study of 0.3.0), with its folder claimed.

    Leftover temporary checkpoint files of killed processes are removed from the folder (and
    from the root, where 0.3.0 wrote them).

    Raises:
        StorageError: The folder belongs to another study or database (`studies.artifacts.claim`).
    """
    uid = check_uid(writer.set_study_attr_once(storage, study_id, UID, uuid.uuid4().hex), name)
    folder = root / folder_name(name, uid)
    claim(folder, uid=uid, name=name, database=database_identity(url))
    sweep(folder)
    sweep(root)
    return uid


def load(
    name: str,
    storage: str = DEFAULT_STORAGE,
    *,
    trainer: Trainable | None = None,
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


def _load(name: str, storage: str, *, trainer: Trainable | None, strategy: search.Strategy | None, trust: Trust,
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
    metric = mapping(attrs.get(TRAINER), "the study's trainer").get("metric", "objective")
    goals = stored_objectives(attrs, str(metric))
    limits = stored_constraints(attrs, str(metric))
    direction = study_direction(st, study_id) if goals is None else attrs.get(METRIC_DIRECTION)
    if direction not in ("minimize", "maximize"):
        raise StorageError(f"the study {name!r} stores the direction {str(direction)[:50]!r}; the database is damaged")
    if read_only:
        uid = check_uid(attrs[UID], name) if UID in attrs else None
        return Study(name=name, storage_url=storage, storage=st, study_id=study_id, space=space, trainer=trainer,
                     strategy=strategy, direction=direction, artifacts=artifact_dir(storage, artifacts, create=False),
                     uid=uid, objectives=goals, constraints=limits)
    from tunelab import search

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
                 strategy=strategy, direction=direction, artifacts=root, uid=_claim(st, study_id, name, storage, root),
                 objectives=goals, constraints=limits)
