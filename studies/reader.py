"""Reading a study's trials from Optuna's tables: one query per table, incremental by trial id.

`RDBStorage.get_all_trials` builds an SQLAlchemy ORM object for every parameter, attribute
and intermediate value (some 50 per trial), about 2 ms a trial on SQLite: reading a study of
5,000 trials took 8 s before its first new trial could start. `read_trials` runs one plain
`SELECT` per table of Optuna's schema (the tables of `optuna.storages._rdb.models`, so column
names follow Optuna's) and builds light `StoredTrial`s that carry the fields tunelab reads of
an `optuna.trial.FrozenTrial`. It reads either every trial or only the ones a caller names and
those inserted after a trial id, which is what keeps a study's mirror incremental.

The trials table is read first, then the tables that hang off it. A trial read as finished
had committed everything before that first query, and a finished trial never changes, so what
follows is complete; a trial read as unfinished may show newer attributes than its state,
which is harmless because a mirror reads its unfinished trials again at the next refresh.

`curves=False` is the summary path: it leaves out the per-epoch data (intermediate values and
the per-epoch metrics attribute) that listings and tables do not show.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from studies.records import METRICS

IN_LIMIT = 500  # more named trial ids than this are read with the rest of the study and picked out here


@dataclass
class StoredTrial:
    """What tunelab reads of one stored trial (the `FrozenTrial` fields it uses, under the same names)."""

    _trial_id: int
    number: int
    state: Any  # optuna.trial.TrialState
    params: dict[str, Any] = field(default_factory=dict)
    values: list[float] | None = None
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)
    intermediate_values: dict[int, float] = field(default_factory=dict)
    datetime_start: datetime | None = None
    datetime_complete: datetime | None = None

    @property
    def value(self) -> float | None:
        """The single objective's value (None until the trial completes)."""
        return self.values[0] if self.values else None


@functools.lru_cache(maxsize=1024)
def _distribution(text: str) -> Any:
    from optuna.distributions import json_to_distribution

    return json_to_distribution(text)


def read_trials(
    storage: Any,
    study_id: int,
    *,
    include: Collection[int] = (),
    after: int = -1,
    curves: bool = True,
) -> list[StoredTrial]:
    """The study's trials whose id is in `include` or greater than `after`, by trial id.

    Args:
        storage: An `optuna.storages.RDBStorage` (another storage is read through its public API).
        study_id: The study's id.
        include: Trial ids to read even when not greater than `after`.
        after: Read trials with a larger id; -1 reads every trial.
        curves: Read per-epoch data (intermediate values, the `metrics` attribute). Without it
            the trials have empty `intermediate_values` and no `metrics` attribute.
    """
    if not hasattr(storage, "engine"):  # e.g. an in-memory or journal storage: no tables to read
        return _read_public(storage, study_id, set(include), after)
    import sqlalchemy as sa
    from optuna.storages._rdb import models

    trials = models.TrialModel.__table__
    named = set(include)
    picked = None
    if len(named) > IN_LIMIT:  # beyond what every database accepts in one IN list: read all, pick here
        picked, named, after = (named, after), set(), -1
    where = [trials.c.study_id == study_id]
    if after > -1:
        newer = trials.c.trial_id > after
        where.append(sa.or_(trials.c.trial_id.in_(named), newer) if named else newer)
    ids = sa.select(trials.c.trial_id).where(*where)

    def child(model: Any, *cols: str, extra: Any = None) -> Any:
        table = model.__table__
        stmt = sa.select(table.c.trial_id, *(table.c[c] for c in cols)).where(table.c.trial_id.in_(ids))
        return stmt.where(extra) if extra is not None else stmt

    out: dict[int, StoredTrial] = {}
    with storage.engine.connect() as conn:
        for tid, number, state, start, complete in conn.execute(
            sa.select(trials.c.trial_id, trials.c.number, trials.c.state, trials.c.datetime_start,
                      trials.c.datetime_complete).where(*where).order_by(trials.c.trial_id)
        ):
            out[tid] = StoredTrial(tid, number, state, datetime_start=start, datetime_complete=complete)
        if not out:
            return []
        for tid, name, value, dist in conn.execute(child(models.TrialParamModel, "param_name", "param_value",
                                                         "distribution_json")):
            if tid in out:
                out[tid].params[name] = _distribution(dist).to_external_repr(value)
        value_model = models.TrialValueModel
        found: dict[int, list[tuple[int, float]]] = {}
        for tid, objective, value, kind in conn.execute(child(value_model, "objective", "value", "value_type")):
            found.setdefault(tid, []).append((objective, value_model.stored_repr_to_value(value, kind)))
        for tid, pairs in found.items():
            if tid in out:
                out[tid].values = [v for _, v in sorted(pairs)]
        user = models.TrialUserAttributeModel
        skip = None if curves else user.__table__.c.key != METRICS
        for tid, key, text in conn.execute(child(user, "key", "value_json", extra=skip)):
            if tid in out:
                out[tid].user_attrs[key] = json.loads(text)
        for tid, key, text in conn.execute(child(models.TrialSystemAttributeModel, "key", "value_json")):
            if tid in out:
                out[tid].system_attrs[key] = json.loads(text)
        if curves:
            iv = models.TrialIntermediateValueModel
            for tid, step, value, kind in conn.execute(child(iv, "step", "intermediate_value",
                                                             "intermediate_value_type")):
                if tid in out:
                    out[tid].intermediate_values[step] = iv.stored_repr_to_intermediate_value(value, kind)
    result = list(out.values())
    if picked is not None:
        wanted, above = picked
        result = [t for t in result if t._trial_id in wanted or t._trial_id > above]
    if not curves:
        return result
    for t in result:  # steps in order, as Optuna's FrozenTrial has them
        t.intermediate_values = dict(sorted(t.intermediate_values.items()))
    return result


def _read_public(storage: Any, study_id: int, include: set[int], after: int) -> list[StoredTrial]:
    """`read_trials` through the public storage API (storages without SQL tables)."""
    return [
        StoredTrial(t._trial_id, t.number, t.state, dict(t.params), list(t.values) if t.values else None,
                    dict(t.user_attrs), dict(t.system_attrs), dict(t.intermediate_values), t.datetime_start,
                    t.datetime_complete)
        for t in storage.get_all_trials(study_id, deepcopy=False)
        if t._trial_id in include or t._trial_id > after
    ]
