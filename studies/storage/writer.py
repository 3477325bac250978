"""Every write tunelab makes to a study's database: the study layer's only writer of results.

Optuna's storage API commits every intermediate value and every attribute separately; a
60-epoch trial would cost some 80 SQLite transactions (~1.5 ms each here), which alone is
over 2% of a short MNIST-1D trial. The functions here group what belongs together into one
transaction (a trial's last epochs, attributes and outcome; a trial's insertion with its claim;
recovery's "failed, re-queued as trial n" with the re-run's insertion) through the same
per-item routines `RDBStorage` itself uses, which `rdb` wraps (the only module touching
Optuna's private API). A storage without tables (Optuna's in-memory or journal storage) gets
the same writes through the public API, one commit per item.
"""

from __future__ import annotations

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
                storage.set_trial_state_values(item.trial_id, item.state,
                                               values=[item.value] if item.value is not None else None)
        return
    with rdb.session(storage, ignore_integrity_error=True) as session:
        _apply(storage, session, items)


def _apply(storage: Any, session: Any, items: Sequence[TrialWrite]) -> None:
    """Write `items` inside `session` (the body of `write_trials`, also used by `create_trial`)."""
    models = rdb.models()
    model = models.TrialIntermediateValueModel
    user: list[tuple[int, str, Any]] = []
    system: list[tuple[int, str, Any]] = []
    ending: list[tuple[Any, TrialWrite]] = []
    for item in items:
        trial_id = item.trial_id
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=item.state is not None)
        rdb.check_updatable(storage, trial_id, trial.state)
        if item.drop_after is not None:
            session.query(model).filter(model.trial_id == trial_id, model.step > item.drop_after).delete(
                synchronize_session=False)
        if item.drop_system:
            system_model = models.TrialSystemAttributeModel
            session.query(system_model).filter(system_model.trial_id == trial_id,
                                               system_model.key.in_(item.drop_system)).delete(
                synchronize_session=False)
        if item.state is not None:
            ending.append((trial, item))
        if item.new_values:
            rows = []
            for step, v in item.new_values.items():
                stored, kind = rdb.step_to_stored(v)
                rows.append(
                    model(trial_id=trial_id, step=step, intermediate_value=stored, intermediate_value_type=kind)
                )
            session.add_all(rows)
        for step, v in item.values.items():
            rdb.set_intermediate_value(storage, session, trial_id, step, v)
        user += [(trial_id, k, v) for k, v in item.user_attrs.items()]
        system += [(trial_id, k, v) for k, v in item.system_attrs.items()]
    _upsert_attrs(storage, session, models.TrialUserAttributeModel, user)
    _upsert_attrs(storage, session, models.TrialSystemAttributeModel, system)
    for trial, item in ending:  # what RDBStorage.set_trial_state_values does
        if item.value is not None:
            rdb.set_trial_value(storage, session, trial, 0, item.value)
        trial.state = item.state
        if item.state.is_finished():
            trial.datetime_complete = datetime.now()
        elif item.state.name == "RUNNING":  # a pending trial claimed: it starts now
            trial.datetime_start = datetime.now()


def _upsert_attrs(storage: Any, session: Any, model_cls: Any, rows: Sequence[tuple[int, str, Any]]) -> None:
    """Set trial attributes `(trial_id, key, value)`: one multi-row upsert on SQLite and PostgreSQL.

    Optuna's per-attribute routine looks the trial up and flushes for every attribute (~2 ms
    each on SQLite); a trial's end writes a dozen. Other databases go through that routine.
    """
    if not rows:
        return
    name = storage.engine.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        for trial_id, key, value in rows:
            rdb.set_trial_attr(storage, session, model_cls, trial_id, key, value)
        return
    latest = {(t, k): v for t, k, v in rows}  # one row per key: a statement may not set a key twice
    stmt = insert(model_cls).values([{"trial_id": t, "key": k, "value_json": json.dumps(v, separators=(",", ":"))}
                                     for (t, k), v in latest.items()])
    stmt = stmt.on_conflict_do_update(index_elements=[model_cls.trial_id, model_cls.key],
                                      set_={"value_json": stmt.excluded.value_json})
    session.execute(stmt)


def create_trial(
    storage: Any,
    study_id: int,
    template: Any,
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
        trial_id = storage.create_new_trial(study_id, template_trial=template)
        number = storage.get_trial_number_from_id(trial_id)
        system, writes = extra(trial_id, number)
        for k, v in system.items():
            storage.set_trial_system_attr(trial_id, k, v)
        write_trials(storage, writes)
        return trial_id, number
    models = rdb.models()

    with rdb.session(storage) as session:
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)  # numbers trials one at a time
        trial = _insert_trial(storage, session, study_id, template)
        trial_id, number = int(trial.trial_id), int(trial.number)
        system, writes = extra(trial_id, number)
        session.add_all(models.TrialSystemAttributeModel(trial_id=trial_id, key=k, value_json=json.dumps(v))
                        for k, v in {**template.system_attrs, **system}.items())
        _apply(storage, session, writes)
    return trial_id, number


def _insert_trial(storage: Any, session: Any, study_id: int, template: Any) -> Any:
    """Insert the trial `template` describes (its system attributes excepted) with bulk inserts; its model.

    What `RDBStorage._get_prepared_new_trial` does, without its one lookup query per parameter
    (a compatibility check of the parameter's distribution with the study's earlier trials:
    tunelab validates every config against the study's space before it gets here) and per
    attribute (an upsert: a new trial has no attributes to update). A trial costs 3 statements
    instead of about 60.
    """
    import sqlalchemy as sa
    from optuna.distributions import distribution_to_json
    models = rdb.models()
    from optuna.trial import TrialState

    trial = models.TrialModel(study_id=study_id, number=None, state=TrialState.RUNNING,
                              datetime_start=template.datetime_start, datetime_complete=template.datetime_complete)
    session.add(trial)
    session.flush()
    trial_id = trial.trial_id
    rows: list[Any] = [
        models.TrialParamModel(trial_id=trial_id, param_name=name,
                               param_value=template.distributions[name].to_internal_repr(value),
                               distribution_json=distribution_to_json(template.distributions[name]))
        for name, value in template.params.items()
    ]
    rows += [models.TrialUserAttributeModel(trial_id=trial_id, key=k, value_json=json.dumps(v))
             for k, v in template.user_attrs.items()]
    session.add_all(rows)
    if template.value is not None:
        rdb.set_trial_value(storage, session, trial, 0, template.value)
    for step, v in template.intermediate_values.items():
        rdb.set_intermediate_value(storage, session, trial_id, step, v)
    trial.state = template.state
    # Optuna numbers a trial by counting the study's earlier trials (a scan of the whole study); the
    # study row is locked above, numbers are consecutive by trial id: the previous trial's number + 1
    table = models.TrialModel.__table__
    earlier = sa.select(table.c.number).where(table.c.study_id == study_id, table.c.trial_id < trial_id)
    previous = session.execute(earlier.order_by(table.c.trial_id.desc()).limit(1)).scalar_one_or_none()
    trial.number = 0 if previous is None else int(previous) + 1
    session.add(trial)
    session.flush()
    return trial


def drop_steps_after(storage: Any, trial_id: int, last: int) -> None:
    """Delete a trial's intermediate values after step `last` (a curve replaced by a shorter, truer one)."""
    if not rdb.has_tables(storage):
        return  # Optuna's public API cannot delete a step; the stale tail stays visible there
    models = rdb.models()

    model = models.TrialIntermediateValueModel
    with rdb.session(storage) as session:
        session.query(model).filter(model.trial_id == trial_id, model.step > last).delete(synchronize_session=False)


def create_study(storage: Any, name: str, direction: str, user_attrs: Mapping[str, Any],
                 metric: str | None = None) -> int:
    """Create a study with its user attributes in one transaction (a kill never leaves a study without them).

    `metric` names the objective the way `optuna.Study.set_metric_names` does, so optuna-dashboard
    shows "accuracy" instead of "Objective 0".

    Returns:
        The study's id.

    Raises:
        optuna.exceptions.DuplicatedStudyError: Another process created `name` first.
    """
    import optuna
    from optuna.study import StudyDirection

    directions = [StudyDirection.MAXIMIZE if direction == "maximize" else StudyDirection.MINIMIZE]
    if not rdb.has_tables(storage):
        study_id = storage.create_new_study(directions, name)
        for k, v in user_attrs.items():
            storage.set_study_user_attr(study_id, k, v)
        if metric is not None:
            storage.set_study_system_attr(study_id, METRIC_NAMES, [metric])
        return study_id
    import sqlalchemy.exc
    models = rdb.models()

    try:
        with rdb.session(storage) as session:
            study = models.StudyModel(study_name=name, directions=[
                models.StudyDirectionModel(objective=0, direction=directions[0])])
            session.add(study)
            session.flush()
            for k, v in user_attrs.items():
                session.add(models.StudyUserAttributeModel(study_id=study.study_id, key=k, value_json=json.dumps(v)))
            if metric is not None:
                session.add(models.StudySystemAttributeModel(study_id=study.study_id, key=METRIC_NAMES,
                                                             value_json=json.dumps([metric])))
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
