"""Reading a study's trials from Optuna's tables: one query per table, incremental by trial id.

`RDBStorage.get_all_trials` builds an SQLAlchemy ORM object for every parameter, attribute
and intermediate value (some 50 per trial), about 2 ms a trial on SQLite: reading a study of
5,000 trials took 8 s before its first new trial could start. `read_trials` runs one plain
`SELECT` per table of Optuna's schema (Optuna's own tables, through `rdb`, so column
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
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tunelab.studies.errors import StorageError
from tunelab.studies.records import METRICS
from tunelab.studies.storage import rdb
from tunelab.studies.storage.limits import loads

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

    loads(text, "a parameter's distribution")  # the depth check: Optuna parses it with json.loads
    return json_to_distribution(text)


def _param(name: str, value: float, dist: str, number: int) -> Any:
    """A stored parameter's value as the config holds it (a damaged one is a StorageError naming it)."""
    try:
        return _distribution(dist).to_external_repr(value)
    except StorageError:
        raise
    except Exception as err:  # Optuna's parser and converters raise several types on a damaged row
        raise StorageError(f"trial {number}'s parameter {name!r} is damaged ({type(err).__name__}: "
                           f"{str(err)[:100]}); restore the database from a copy, or delete the trial") from err


def read_trials(
    storage: Any,
    study_id: int,
    *,
    include: Collection[int] = (),
    after: int | None = -1,
    curves: bool = True,
) -> list[StoredTrial]:
    """The study's trials whose id is in `include` or greater than `after`, by trial id.

    Args:
        storage: An `optuna.storages.RDBStorage` (another storage is read through its public API).
        study_id: The study's id.
        include: Trial ids to read even when not greater than `after`.
        after: Read trials with a larger id; -1 reads every trial, None only those in `include`.
        curves: Read per-epoch data (intermediate values, the `metrics` attribute). Without it
            the trials have empty `intermediate_values` and no `metrics` attribute.
    """
    if not rdb.has_tables(storage):  # e.g. an in-memory or journal storage: no tables to read
        return _read_public(storage, study_id, set(include), after)
    named = set(include)
    picked = None
    if len(named) > IN_LIMIT:  # beyond what every database accepts in one IN list: read all, pick here
        picked, named, after = (named, -1 if after is None else after), set(), -1
    if after is None:  # only the named trials
        shape = "named"
    elif after > -1:
        shape = "named_or_after" if named else "after"
    else:
        shape = "all"
    bound = {"b_study": study_id, "b_named": sorted(named), "b_after": after}
    try:
        result = _select(storage, _statements(shape, curves), {k: v for k, v in bound.items()
                                                                if k == "b_study" or k[2:] in shape})
    except (LookupError, ValueError, TypeError, OverflowError) as err:  # a column holds what its type cannot
        # (a state Optuna does not define, a date that is no date): SQLAlchemy's own conversions raise these
        raise StorageError(f"a trial's row is damaged ({type(err).__name__}: {str(err)[:200]}); restore the database "
                           f"from a copy, or delete the trial") from err
    if picked is not None:
        wanted, above = picked
        result = [t for t in result if t._trial_id in wanted or t._trial_id > above]
    if not curves:
        return result
    for t in result:  # steps in order, as Optuna's FrozenTrial has them
        t.intermediate_values = dict(sorted(t.intermediate_values.items()))
    return result


@functools.cache
def _statements(shape: str, curves: bool) -> Any:
    """The `SELECT`s of `read_trials` for one shape of its `WHERE`, built once with bound parameters.

    `shape`: "all" trials of the study (`b_study`), the "named" ones (`b_named`), those "after" an
    id (`b_after`), or "named_or_after". Building statements costs more than running them on
    SQLite; built once, a read only binds values.
    """
    import types

    import sqlalchemy as sa

    models = rdb.models()
    trials = models.TrialModel.__table__
    named = trials.c.trial_id.in_(sa.bindparam("b_named", expanding=True))
    newer = trials.c.trial_id > sa.bindparam("b_after")
    where = [trials.c.study_id == sa.bindparam("b_study")]
    where += {"all": [], "named": [named], "after": [newer], "named_or_after": [sa.or_(named, newer)]}[shape]
    ids = sa.select(trials.c.trial_id).where(*where)

    def child(model: Any, *cols: str, extra: Any = None) -> Any:
        table = model.__table__
        stmt = sa.select(table.c.trial_id, *(table.c[c] for c in cols)).where(table.c.trial_id.in_(ids))
        return stmt.where(extra) if extra is not None else stmt

    user = models.TrialUserAttributeModel
    iv = models.TrialIntermediateValueModel
    return types.SimpleNamespace(
        trials=sa.select(trials.c.trial_id, trials.c.number, trials.c.state, trials.c.datetime_start,
                         trials.c.datetime_complete).where(*where).order_by(trials.c.trial_id),
        params=child(models.TrialParamModel, "param_name", "param_value", "distribution_json"),
        values=child(models.TrialValueModel, "objective", "value", "value_type"),
        user=child(user, "key", "value_json", extra=None if curves else user.__table__.c.key != METRICS),
        system=child(models.TrialSystemAttributeModel, "key", "value_json"),
        steps=child(iv, "step", "intermediate_value", "intermediate_value_type") if curves else None,
    )


def _select(storage: Any, st: Any, bound: dict[str, Any]) -> list[StoredTrial]:
    out: dict[int, StoredTrial] = {}
    with storage.engine.connect() as conn:
        for tid, number, state, start, complete in conn.execute(st.trials, bound):
            if not isinstance(number, int) or isinstance(number, bool) or number < 0:
                raise StorageError(f"the trial with id {tid} has the number {number!r}, not a whole number >= 0; the "
                                   f"database was edited or damaged; restore it from a copy, or delete the trial")
            out[tid] = StoredTrial(tid, number, state, datetime_start=start, datetime_complete=complete)
        if not out:
            return []
        for tid, name, value, dist in conn.execute(st.params, bound):
            if tid in out:
                out[tid].params[name] = _param(name, value, dist, out[tid].number)
        found: dict[int, list[tuple[int, float]]] = {}
        for tid, objective, value, kind in conn.execute(st.values, bound):
            found.setdefault(tid, []).append((objective, rdb.value_from_stored(value, kind)))
        for tid, pairs in found.items():
            if tid in out:
                out[tid].values = [v for _, v in sorted(pairs)]
        for tid, key, text in conn.execute(st.user, bound):
            if tid in out:
                out[tid].user_attrs[key] = loads(text, f"trial {out[tid].number}'s user attribute {key!r}")
        for tid, key, text in conn.execute(st.system, bound):
            if tid in out:
                out[tid].system_attrs[key] = loads(text, f"trial {out[tid].number}'s system attribute {key!r}")
        if st.steps is not None:
            for tid, step, value, kind in conn.execute(st.steps, bound):
                if tid in out:
                    out[tid].intermediate_values[step] = rdb.step_from_stored(value, kind)
    return list(out.values())


def _read_public(storage: Any, study_id: int, include: set[int], after: int | None) -> list[StoredTrial]:
    """`read_trials` through the public storage API (storages without SQL tables)."""
    return [
        StoredTrial(t._trial_id, t.number, t.state, dict(t.params), list(t.values) if t.values else None,
                    dict(t.user_attrs), dict(t.system_attrs), dict(t.intermediate_values), t.datetime_start,
                    t.datetime_complete)
        for t in storage.get_all_trials(study_id, deepcopy=False)
        if t._trial_id in include or (after is not None and t._trial_id > after)
    ]


@dataclass(frozen=True)
class StoredStudy:
    """A study of a storage as tunelab lists it.

    Attributes:
        study_id: Its id.
        name: Its name.
        directions: "minimize" / "maximize" per objective.
    """

    study_id: int
    name: str
    directions: tuple[str, ...]


def read_studies(storage: Any) -> list[StoredStudy]:
    """Every study of a storage by id (names and directions only: no attribute is parsed)."""
    if not rdb.has_tables(storage):
        return [StoredStudy(s._study_id, s.study_name, tuple(d.name.lower() for d in s.directions))
                for s in storage.get_all_studies()]
    import sqlalchemy as sa
    models = rdb.models()

    studies_t, dirs_t = models.StudyModel.__table__, models.StudyDirectionModel.__table__
    directions: dict[int, list[tuple[int, str]]] = {}
    try:
        with storage.engine.connect() as conn:
            names = list(conn.execute(sa.select(studies_t.c.study_id, studies_t.c.study_name)
                                      .order_by(studies_t.c.study_id)))
            for sid, objective, direction in conn.execute(sa.select(dirs_t.c.study_id, dirs_t.c.objective,
                                                                    dirs_t.c.direction)):
                directions.setdefault(sid, []).append((objective, _direction(direction)))
    except LookupError as err:
        raise StorageError(f"a study's direction is damaged ({err}); restore the database from a copy") from err
    return [StoredStudy(sid, name, tuple(d for _, d in sorted(directions.get(sid, []))))
            for sid, name in names]


def _direction(value: Any) -> str:
    name = getattr(value, "name", str(value))
    return "maximize" if str(name).upper().endswith("MAXIMIZE") else "minimize"


def read_study_attrs(storage: Any, study_id: int, *, system: bool = False) -> dict[str, Any]:
    """A study's user attributes (or system attributes), each parsed with the limits of `studies.limits`.

    Raises:
        StorageError: An attribute is not JSON or nests too deeply.
    """
    if not rdb.has_tables(storage):
        return dict(storage.get_study_system_attrs(study_id) if system else storage.get_study_user_attrs(study_id))
    import sqlalchemy as sa
    models = rdb.models()

    model = models.StudySystemAttributeModel if system else models.StudyUserAttributeModel
    table = model.__table__
    kind = "system" if system else "user"
    with storage.engine.connect() as conn:
        rows = list(conn.execute(sa.select(table.c.key, table.c.value_json).where(table.c.study_id == study_id)))
    return {key: loads(text, f"the study's {kind} attribute {key!r}") for key, text in rows}


def study_direction(storage: Any, study_id: int) -> str:
    """The direction ("minimize" / "maximize") of a study's first objective."""
    for study in read_studies(storage):
        if study.study_id == study_id:
            if not study.directions:
                raise StorageError(f"the study {study.name!r} has no stored direction; the database is damaged")
            return study.directions[0]
    raise StorageError(f"no study with id {study_id} in the storage")
