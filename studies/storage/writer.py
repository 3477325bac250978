"""Every write tunelab makes to a study's database: the study layer's only writer of results.

Optuna's storage API commits every intermediate value and every attribute separately; a
60-epoch trial would cost some 80 SQLite transactions (~1.5 ms each here), which alone is
over 2% of a short MNIST-1D trial, and its ORM compiles and flushes an object per row. The
functions here group what belongs together into one transaction (a trial's last epochs,
attributes and outcome; a trial's insertion with its claim; recovery's "failed, re-queued as
trial n" with the re-run's insertion) and write it with SQLAlchemy Core statements on Optuna's
own tables (`rdb.tables()`): one multi-row statement per kind of row, built once and reused,
so the rows are exactly those Optuna's storage writes (a test compares them) at a fraction of
the cost. A storage without tables (Optuna's in-memory or journal storage) gets the same
writes through the public API, one commit per item.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tunelab.studies.storage import rdb

METRIC_NAMES = "study:metric_names"  # where optuna.Study.set_metric_names keeps the objective's name


def write_trial(
    storage: Any,
    trial_id: int,
    *,
    values: Mapping[int, float] | None = None,
    new_values: Mapping[int, float] | None = None,
    user_attrs: Mapping[str, Any] | None = None,
    system_attrs: Mapping[str, Any] | None = None,
) -> None:
    """Set intermediate values (step -> value), user and system attributes of one trial together.

    `values` may overwrite stored steps; `new_values` must be steps the trial does not have yet
    (inserted in bulk, without looking each one up first).
    """
    write_trials(storage, [TrialWrite(trial_id, values or {}, new_values or {}, user_attrs or {},
                                       system_attrs or {})])


@dataclass(frozen=True)
class TrialWrite:
    """Everything one transaction writes to one existing trial.

    Attributes:
        trial_id: The trial written.
        values: Curve steps (step -> value) that may overwrite stored ones.
        new_values: Curve steps the trial does not have yet (inserted in bulk, not looked up).
        user_attrs: User attributes to set.
        system_attrs: System attributes to set.
        drop_after: Delete the trial's intermediate values after this step (a run that started
            over ended before its old curve did), or None.
        drop_system: System attributes to delete (bookkeeping a finished trial no longer needs).
        state: An Optuna state to move the trial to, after everything else, or None (a finished
            one also stamps the trial's completion time).
        value: The objective value that goes with a finished `state` (None: no value).
        objective_values: A multi-objective study's values, in its objectives' order (instead of
            `value`; None: none).
    """

    trial_id: int
    values: Mapping[int, float] = field(default_factory=dict)
    new_values: Mapping[int, float] = field(default_factory=dict)
    user_attrs: Mapping[str, Any] = field(default_factory=dict)
    system_attrs: Mapping[str, Any] = field(default_factory=dict)
    drop_after: int | None = None
    drop_system: tuple[str, ...] = ()
    state: Any = None
    value: float | None = None
    objective_values: tuple[float, ...] | None = None

    @property
    def stored_values(self) -> list[float] | None:
        """The values the trial's outcome stores (Optuna's `trial.values`), or None."""
        if self.objective_values is not None:
            return list(self.objective_values)
        return None if self.value is None else [self.value]


def write_trials(storage: Any, items: Sequence[TrialWrite]) -> None:
    """`write_trial` for several trials in one transaction (the members of a population flush together)."""
    items = [i for i in items if i.values or i.new_values or i.user_attrs or i.system_attrs
             or i.drop_after is not None or i.drop_system or i.state is not None]
    if not items:
        return
    if not rdb.has_tables(storage):
        for item in items:
            for step, v in {**item.values, **item.new_values}.items():
                storage.set_trial_intermediate_value(item.trial_id, step, v)
            for k, v in item.user_attrs.items():
                storage.set_trial_user_attr(item.trial_id, k, v)
            for k, v in item.system_attrs.items():
                storage.set_trial_system_attr(item.trial_id, k, v)
            if item.state is not None:
                storage.set_trial_state_values(item.trial_id, item.state, values=item.stored_values)
        return
    with storage.engine.begin() as conn:
        _apply(storage, conn, items)


@functools.cache
def _statements() -> Any:
    """The statements of a trial's life, built once per process with bound parameters (`b_*`).

    Building a statement costs more than SQLite executing it (SQLAlchemy coerces every clause and
    computes its cache key); built once, each execution only binds values.
    """
    import types

    import sqlalchemy as sa

    t = rdb.tables()
    trials = t.trials
    by_id = trials.c.trial_id == sa.bindparam("b_trial")
    states = sa.select(trials.c.trial_id, trials.c.number, trials.c.state).where(
        trials.c.trial_id.in_(sa.bindparam("b_ids", expanding=True)))
    return types.SimpleNamespace(
        states=states,
        states_for_update=states.with_for_update(),
        end=sa.update(trials).where(by_id).values(state=sa.bindparam("b_state"),
                                                  datetime_complete=sa.bindparam("b_time")),
        claim=sa.update(trials).where(by_id).values(state=sa.bindparam("b_state"),
                                                    datetime_start=sa.bindparam("b_time")),
        state=sa.update(trials).where(by_id).values(state=sa.bindparam("b_state")),
        study_for_update=sa.select(t.studies.c.study_id).where(t.studies.c.study_id == sa.bindparam("b_study"))
        .with_for_update(),
        new_trial=sa.insert(trials).values(study_id=sa.bindparam("b_study"), number=None,
                                           state=sa.bindparam("b_state"), datetime_start=sa.bindparam("b_start"),
                                           datetime_complete=sa.bindparam("b_complete")),
        previous=sa.select(trials.c.number).where(trials.c.study_id == sa.bindparam("b_study"),
                                                  trials.c.trial_id < sa.bindparam("b_trial"))
        .order_by(trials.c.trial_id.desc()).limit(1),
        number=sa.update(trials).where(by_id).values(number=sa.bindparam("b_number")),
        params=sa.insert(t.trial_params),
        steps=sa.insert(t.trial_intermediate_values),
    )


def _apply(storage: Any, conn: Any, items: Sequence[TrialWrite]) -> None:
    """Write `items` on the open transaction `conn` (the body of `write_trials`, also used by `create_trial`).

    Each kind of row is one statement for every item together: the trials' states are read (and,
    on PostgreSQL, locked when a trial ends), then curve steps, attributes and values are
    upserted (a step or key written twice keeps the last value), and states set last.
    """
    import sqlalchemy as sa
    from optuna.exceptions import UpdateFinishedTrialError

    t, st = rdb.tables(), _statements()
    ids = sorted({i.trial_id for i in items})
    lock = storage.engine.dialect.name == "postgresql" and any(i.state is not None for i in items)
    found = {row[0]: (row[1], row[2]) for row in conn.execute(st.states_for_update if lock else st.states,
                                                              {"b_ids": ids})}
    for trial_id in ids:
        if trial_id not in found:
            raise KeyError(f"No trial with trial_id {trial_id} exists.")
        number, state = found[trial_id]
        if state.is_finished():  # what Optuna's storage refuses too: a finished trial is never changed
            raise UpdateFinishedTrialError(f"Trial#{number} has already finished and can not be updated.")
    steps = t.trial_intermediate_values
    for item in items:
        if item.drop_after is not None:
            conn.execute(sa.delete(steps).where(steps.c.trial_id == item.trial_id, steps.c.step > item.drop_after))
        if item.drop_system:
            table = t.trial_system_attributes
            conn.execute(sa.delete(table).where(table.c.trial_id == item.trial_id, table.c.key.in_(item.drop_system)))
    step_rows = {}
    for item in items:
        for step, v in {**item.new_values, **item.values}.items():
            stored, kind = rdb.step_to_stored(v)
            step_rows[(item.trial_id, step)] = {"trial_id": item.trial_id, "step": step, "intermediate_value": stored,
                                                "intermediate_value_type": kind}
    _upsert(storage, conn, steps, list(step_rows.values()), ("trial_id", "step"),
            ("intermediate_value", "intermediate_value_type"))
    _upsert_attrs(storage, conn, t.trial_user_attributes,
                  [(i.trial_id, k, v) for i in items for k, v in i.user_attrs.items()])
    _upsert_attrs(storage, conn, t.trial_system_attributes,
                  [(i.trial_id, k, v) for i in items for k, v in i.system_attrs.items()])
    ending = [i for i in items if i.state is not None]
    _upsert(storage, conn, t.trial_values, [_value_row(i.trial_id, k, v) for i in ending
                                            for k, v in enumerate(i.stored_values or ())],
            ("trial_id", "objective"), ("value", "value_type"))
    now = datetime.now()
    for item in ending:
        # a finished trial is stamped complete; a pending trial claimed starts now
        stmt = st.end if item.state.is_finished() else st.claim if item.state.name == "RUNNING" else st.state
        conn.execute(stmt, {"b_trial": item.trial_id, "b_state": item.state, "b_time": now})


def _value_row(trial_id: int, objective: int, value: float) -> dict[str, Any]:
    stored, kind = rdb.value_to_stored(value)
    return {"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind}


def _upsert_attrs(storage: Any, conn: Any, table: Any, rows: Sequence[tuple[int, str, Any]]) -> None:
    """Set trial attributes `(trial_id, key, value)` of `table` (user or system): one upsert for all of them."""
    latest = {(t, k): v for t, k, v in rows}  # one row per key: a statement may not set a key twice
    _upsert(storage, conn, table, [{"trial_id": t, "key": k, "value_json": json.dumps(v)}
                                   for (t, k), v in latest.items()], ("trial_id", "key"), ("value_json",))


def _upsert(storage: Any, conn: Any, table: Any, rows: list[dict[str, Any]], keys: tuple[str, ...],
            update: tuple[str, ...]) -> None:
    """Insert `rows` into `table`, replacing the `update` columns of rows whose `keys` exist (one executemany).

    `ON CONFLICT DO UPDATE` on SQLite and PostgreSQL, `ON DUPLICATE KEY UPDATE` on MySQL; any
    other database deletes the rows' keys, then inserts (in the same transaction).
    """
    if not rows:
        return
    stmt = _upsert_statement(storage.engine.dialect.name, table, keys, update)
    if isinstance(stmt, _DeleteThenInsert):
        stmt(conn, rows)
    else:
        conn.execute(stmt, rows)


@functools.lru_cache(maxsize=64)
def _upsert_statement(dialect: str, table: Any, keys: tuple[str, ...], update: tuple[str, ...]) -> Any:
    """The upsert statement of `table` on `dialect`, built once (SQLAlchemy then reuses its compiled form)."""
    if dialect in ("sqlite", "postgresql"):
        import importlib

        insert = importlib.import_module(f"sqlalchemy.dialects.{dialect}").insert
        stmt = insert(table)
        return stmt.on_conflict_do_update(index_elements=[table.c[k] for k in keys],
                                          set_={c: stmt.excluded[c] for c in update})
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert

        stmt = insert(table)
        return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in update})
    return _DeleteThenInsert(table, keys)


class _DeleteThenInsert:
    """An upsert for databases without one: delete each row's key, then insert the rows."""

    def __init__(self, table: Any, keys: tuple[str, ...]) -> None:
        import sqlalchemy as sa

        self.delete = sa.delete(table).where(*(table.c[k] == sa.bindparam(f"old_{k}") for k in keys))
        self.insert, self.keys = sa.insert(table), keys

    def __call__(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        conn.execute(self.delete, [{f"old_{k}": r[k] for k in self.keys} for r in rows])
        conn.execute(self.insert, rows)


@dataclass(frozen=True)
class NewTrial:
    """A trial to insert (what `create_trial` reads of Optuna's `FrozenTrial`, without its validation).

    Attributes:
        state: Its Optuna state (RUNNING for a trial claimed as it is made, WAITING for a queued one).
        params: Parameter name -> value (tunelab has validated the config against the study's space).
        distributions: Parameter name -> its Optuna distribution.
        user_attrs: User attributes.
        system_attrs: System attributes.
        value: Its value (None for an unfinished trial).
        intermediate_values: Curve steps (step -> value).
        datetime_start: When it started (None for a queued trial).
        datetime_complete: When it finished (None).
    """

    state: Any
    params: Mapping[str, Any]
    distributions: Mapping[str, Any]
    user_attrs: Mapping[str, Any] = field(default_factory=dict)
    system_attrs: Mapping[str, Any] = field(default_factory=dict)
    value: float | None = None
    intermediate_values: Mapping[int, float] = field(default_factory=dict)
    datetime_start: datetime | None = None
    datetime_complete: datetime | None = None

    def frozen(self) -> Any:
        """The same trial as Optuna's `FrozenTrial` (for storages without tables: Optuna's public API)."""
        from optuna.trial import create_trial

        return create_trial(state=self.state, params=dict(self.params), distributions=dict(self.distributions),
                            user_attrs=dict(self.user_attrs), system_attrs=dict(self.system_attrs), value=self.value,
                            intermediate_values=dict(self.intermediate_values))


def create_trial(
    storage: Any,
    study_id: int,
    template: NewTrial,
    extra: Callable[[int, int], tuple[Mapping[str, Any], Sequence[TrialWrite]]],
) -> tuple[int, int]:
    """Insert a trial from `template` and what depends on its id and number, in one transaction.

    `extra(trial_id, number)` returns the new trial's further system attributes and writes to
    other trials (recovery marks the interrupted trial failed in the same commit that inserts its
    re-run, so a kill in between cannot lose the proposal or run it twice).

    Returns:
        `(trial_id, number)` of the new trial.
    """
    if not rdb.has_tables(storage):
        trial_id = storage.create_new_trial(study_id, template_trial=template.frozen())
        number = storage.get_trial_number_from_id(trial_id)
        system, writes = extra(trial_id, number)
        for k, v in system.items():
            storage.set_trial_system_attr(trial_id, k, v)
        write_trials(storage, writes)
        return trial_id, number
    with storage.engine.begin() as conn:
        trial_id, number = _insert_trial(storage, conn, study_id, template)
        system, writes = extra(trial_id, number)
        t = rdb.tables()
        _upsert_attrs(storage, conn, t.trial_system_attributes,
                      [(trial_id, k, v) for k, v in {**template.system_attrs, **system}.items()])
        if writes:
            _apply(storage, conn, writes)
    return trial_id, number


def _insert_trial(storage: Any, conn: Any, study_id: int, template: NewTrial) -> tuple[int, int]:
    """Insert the trial `template` describes (its system attributes excepted); its `(trial_id, number)`.

    What `RDBStorage.create_new_trial` writes, in a handful of statements: the trial row, then
    its number (the study's previous trial's + 1: Optuna counts the study's trials, a scan of the
    whole study; the trial row inserted first holds SQLite's write lock, and other databases lock
    the study's row first, so two drivers never get one number), its parameters, user attributes, value
    and curve. Parameters are not checked against the study's earlier trials as Optuna does:
    tunelab validated the config against the study's space.
    """
    t, st = rdb.tables(), _statements()
    if storage.engine.dialect.name != "sqlite":  # SQLite: the trial row inserted first holds its write lock
        conn.execute(st.study_for_update, {"b_study": study_id})
    result = conn.execute(st.new_trial, {"b_study": study_id, "b_state": template.state,
                                         "b_start": template.datetime_start, "b_complete": template.datetime_complete})
    trial_id = int(result.inserted_primary_key[0])
    previous = conn.execute(st.previous, {"b_study": study_id, "b_trial": trial_id}).scalar_one_or_none()
    number = 0 if previous is None else int(previous) + 1
    conn.execute(st.number, {"b_trial": trial_id, "b_number": number})
    params = [{"trial_id": trial_id, "param_name": name,
               "param_value": template.distributions[name].to_internal_repr(value),
               "distribution_json": _distribution_json(template.distributions[name])}
              for name, value in template.params.items()]
    if params:
        conn.execute(st.params, params)
    _upsert_attrs(storage, conn, t.trial_user_attributes, [(trial_id, k, v) for k, v in template.user_attrs.items()])
    if template.value is not None:
        _upsert(storage, conn, t.trial_values, [_value_row(trial_id, template.value)], ("trial_id", "objective"),
                ("value", "value_type"))
    steps = [{"trial_id": trial_id, "step": step, **dict(zip(("intermediate_value", "intermediate_value_type"),
                                                             rdb.step_to_stored(v), strict=True))}
             for step, v in template.intermediate_values.items()]
    if steps:
        conn.execute(st.steps, steps)
    return trial_id, number


def _distribution_json(distribution: Any) -> str:
    """Optuna's JSON of a distribution (cached: a study's distributions repeat from trial to trial).

    Cached by the `repr` of the distribution's attributes, not by the distribution: Optuna's
    distributions compare and hash by value, so `CategoricalDistribution((False,))` equals
    `CategoricalDistribution((0.0,))`, which must not share a JSON.
    """
    key = (type(distribution).__name__, repr(sorted(vars(distribution).items())))
    found = _DISTRIBUTION_JSON.get(key)
    if found is None:
        from optuna.distributions import distribution_to_json

        if len(_DISTRIBUTION_JSON) >= 4096:
            _DISTRIBUTION_JSON.clear()
        found = _DISTRIBUTION_JSON[key] = distribution_to_json(distribution)
    return found


_DISTRIBUTION_JSON: dict[tuple[str, str], str] = {}


def drop_steps_after(storage: Any, trial_id: int, last: int) -> None:
    """Delete a trial's intermediate values after step `last` (a curve replaced by a shorter, truer one)."""
    if not rdb.has_tables(storage):
        return  # Optuna's public API cannot delete a step; the stale tail stays visible there
    import sqlalchemy as sa

    steps = rdb.tables().trial_intermediate_values
    with storage.engine.begin() as conn:
        conn.execute(sa.delete(steps).where(steps.c.trial_id == trial_id, steps.c.step > last))


def create_study(storage: Any, name: str, direction: str | Sequence[str], user_attrs: Mapping[str, Any],
                 metric: str | Sequence[str] | None = None) -> int:
    """Create a study with its user attributes in one transaction (a kill never leaves a study without them).

    `metric` names the objective the way `optuna.Study.set_metric_names` does, so optuna-dashboard
    shows "accuracy" instead of "Objective 0". A multi-objective study passes one direction and
    one name per objective.

    Returns:
        The study's id.

    Raises:
        optuna.exceptions.DuplicatedStudyError: Another process created `name` first.
    """
    import optuna
    from optuna.study import StudyDirection

    given = [direction] if isinstance(direction, str) else list(direction)
    directions = [StudyDirection.MAXIMIZE if d == "maximize" else StudyDirection.MINIMIZE for d in given]
    names = None if metric is None else [metric] if isinstance(metric, str) else list(metric)
    if not rdb.has_tables(storage):
        study_id = storage.create_new_study(directions, name)
        for k, v in user_attrs.items():
            storage.set_study_user_attr(study_id, k, v)
        if names is not None:
            storage.set_study_system_attr(study_id, METRIC_NAMES, names)
        return study_id
    import sqlalchemy.exc
    models = rdb.models()

    try:
        with rdb.session(storage) as session:
            study = models.StudyModel(study_name=name, directions=[
                models.StudyDirectionModel(objective=k, direction=d) for k, d in enumerate(directions)])
            session.add(study)
            session.flush()
            for k, v in user_attrs.items():
                session.add(models.StudyUserAttributeModel(study_id=study.study_id, key=k, value_json=json.dumps(v)))
            if names is not None:
                session.add(models.StudySystemAttributeModel(study_id=study.study_id, key=METRIC_NAMES,
                                                             value_json=json.dumps(names)))
    except sqlalchemy.exc.IntegrityError as err:
        raise optuna.exceptions.DuplicatedStudyError(f"a study named {name!r} exists") from err
    return storage.get_study_id_from_name(name)


def set_study_attr_once(storage: Any, study_id: int, key: str, value: Any) -> Any:
    """Set a study user attribute unless it is set already; return the stored value (the first writer's).

    Two processes that open an old study at once both try; the database's unique key on
    (study, key) lets one insert win, and the other reads what it wrote.
    """
    from tunelab.studies.storage.reader import read_study_attrs

    stored = read_study_attrs(storage, study_id)
    if key in stored:
        return stored[key]
    if not hasattr(storage, "engine"):
        storage.set_study_user_attr(study_id, key, value)
        return value
    import sqlalchemy as sa
    models = rdb.models()

    table = models.StudyUserAttributeModel.__table__
    try:
        with storage.engine.begin() as conn:
            conn.execute(sa.insert(table).values(study_id=study_id, key=key, value_json=json.dumps(value)))
    except sa.exc.IntegrityError:
        pass  # another process set it first
    return read_study_attrs(storage, study_id)[key]


def drop_system_attrs(storage: Any, trial_id: int, keys: Sequence[str]) -> None:
    """Delete system attributes of a trial, finished or not (Optuna's API updates unfinished trials only).

    What retention calls when it deletes the checkpoint of a trial that is no longer the best:
    the trial must not go on naming a file that is gone.
    """
    if not hasattr(storage, "engine"):
        return  # a storage without tables keeps the stale name; `Study.checkpoint` checks the file exists
    import sqlalchemy as sa
    models = rdb.models()

    table = models.TrialSystemAttributeModel.__table__
    with storage.engine.begin() as conn:
        conn.execute(sa.delete(table).where(table.c.trial_id == trial_id, table.c.key.in_(list(keys))))


def set_study_attr(storage: Any, study_id: int, key: str, value: Any) -> None:
    """Set one user attribute of a study (its budget, the seconds it has spent)."""
    storage.set_study_user_attr(study_id, key, value)


def renew_leases(storage: Any, trial_ids: Sequence[int], key: str, until: float) -> None:
    """Set the lease attribute `key` of each trial to `until`, one commit each; a trial that has finished is skipped.

    Each trial on its own: one that ended a moment ago cannot be updated any more, and must not
    stop the others' leases from being renewed.
    """
    for trial_id in trial_ids:
        try:
            write_trial(storage, trial_id, system_attrs={key: until})
        except Exception:
            continue
