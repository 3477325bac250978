"""Several writes to one trial in one database transaction.

Optuna's storage API commits every intermediate value and every attribute separately; a
60-epoch trial would cost some 80 SQLite transactions (~1.5 ms each here), which alone is
over 2% of a short MNIST-1D trial. `write_trial` groups them into one transaction through the
same per-item routines `RDBStorage` itself uses (`_set_trial_intermediate_value_without_commit`,
`_set_trial_attr_without_commit`, in optuna 4.x-5.x). These are private: if a future Optuna
removes them, `write_trial` falls back to the public one-commit-per-item API (same result,
slower), and `tests/studies` notices through its overhead-independent checks of what is stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

METRIC_NAMES = "study:metric_names"  # where optuna.Study.set_metric_names keeps the objective's name


def _batched(storage: Any) -> bool:
    return all(
        hasattr(storage, name)
        for name in ("scoped_session", "_set_trial_intermediate_value_without_commit", "_set_trial_attr_without_commit")
    )


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
    values, new_values = values or {}, new_values or {}
    user_attrs, system_attrs = user_attrs or {}, system_attrs or {}
    if not (values or new_values or user_attrs or system_attrs):
        return
    if not _batched(storage):
        for step, v in {**values, **new_values}.items():
            storage.set_trial_intermediate_value(trial_id, step, v)
        for k, v in user_attrs.items():
            storage.set_trial_user_attr(trial_id, k, v)
        for k, v in system_attrs.items():
            storage.set_trial_system_attr(trial_id, k, v)
        return
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    model = models.TrialIntermediateValueModel
    with _create_scoped_session(storage.scoped_session, True) as session:
        if new_values:
            trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
            storage.check_trial_is_updatable(trial_id, trial.state)
            rows = []
            for step, v in new_values.items():
                stored, kind = model.intermediate_value_to_stored_repr(float(v))
                rows.append(
                    model(trial_id=trial_id, step=step, intermediate_value=stored, intermediate_value_type=kind)
                )
            session.add_all(rows)
        for step, v in values.items():
            storage._set_trial_intermediate_value_without_commit(session, trial_id, step, v)
        for k, v in user_attrs.items():
            storage._set_trial_attr_without_commit(session, models.TrialUserAttributeModel, trial_id, k, v)
        for k, v in system_attrs.items():
            storage._set_trial_attr_without_commit(session, models.TrialSystemAttributeModel, trial_id, k, v)


@dataclass(frozen=True)
class TrialWrite:
    """Writes to an existing trial that commit together with a new trial (see `create_trial`).

    Attributes:
        trial_id: The trial written.
        user_attrs: User attributes to set.
        system_attrs: System attributes to set.
        state: A finished Optuna state to move it to (None: leave its state).
    """

    trial_id: int
    user_attrs: Mapping[str, Any] = field(default_factory=dict)
    system_attrs: Mapping[str, Any] = field(default_factory=dict)
    state: Any = None


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
    if not (_batched(storage) and hasattr(storage, "_get_prepared_new_trial")):
        trial_id = storage.create_new_trial(study_id, template_trial=template)
        number = storage.get_trial_number_from_id(trial_id)
        system, writes = extra(trial_id, number)
        for k, v in system.items():
            storage.set_trial_system_attr(trial_id, k, v)
        for w in writes:
            for k, v in w.user_attrs.items():
                storage.set_trial_user_attr(w.trial_id, k, v)
            for k, v in w.system_attrs.items():
                storage.set_trial_system_attr(w.trial_id, k, v)
            if w.state is not None:
                storage.set_trial_state_values(w.trial_id, w.state)
        return trial_id, number
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(storage.scoped_session) as session:
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)  # numbers trials one at a time
        trial = storage._get_prepared_new_trial(study_id, template, session)
        session.flush()
        trial_id, number = int(trial.trial_id), int(trial.number)
        system, writes = extra(trial_id, number)
        for k, v in system.items():
            storage._set_trial_attr_without_commit(session, models.TrialSystemAttributeModel, trial_id, k, v)
        for w in writes:
            for k, v in w.user_attrs.items():
                storage._set_trial_attr_without_commit(session, models.TrialUserAttributeModel, w.trial_id, k, v)
            for k, v in w.system_attrs.items():
                storage._set_trial_attr_without_commit(session, models.TrialSystemAttributeModel, w.trial_id, k, v)
            if w.state is not None:
                other = models.TrialModel.find_or_raise_by_id(w.trial_id, session, for_update=True)
                storage.check_trial_is_updatable(w.trial_id, other.state)
                other.state = w.state
                if w.state.is_finished():
                    other.datetime_complete = datetime.now()
    return trial_id, number


def drop_steps_after(storage: Any, trial_id: int, last: int) -> None:
    """Delete a trial's intermediate values after step `last` (a curve replaced by a shorter, truer one)."""
    if not _batched(storage):
        return  # Optuna's public API cannot delete a step; the stale tail stays visible there
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    model = models.TrialIntermediateValueModel
    with _create_scoped_session(storage.scoped_session) as session:
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
    if not hasattr(storage, "scoped_session"):
        study_id = storage.create_new_study(directions, name)
        for k, v in user_attrs.items():
            storage.set_study_user_attr(study_id, k, v)
        if metric is not None:
            storage.set_study_system_attr(study_id, METRIC_NAMES, [metric])
        return study_id
    import sqlalchemy.exc
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    try:
        with _create_scoped_session(storage.scoped_session) as session:
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
