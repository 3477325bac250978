"""Reading studies: the SQL reader equals Optuna's, `Study.trials` reads incrementally, old databases still read."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from tunelab import search, spaces, studies, trainers
from tunelab.studies.driver import Budget, Driver
from tunelab.studies.storage.reader import read_trials
from tunelab.trainers.replay import Curve, ReplayTable, TableHeader, table_space

DATA = Path(__file__).parent / "data"
FIELDS = ("_trial_id", "number", "state", "params", "values", "user_attrs", "system_attrs", "intermediate_values",
          "datetime_start", "datetime_complete")


def old_table() -> ReplayTable:
    """The table `data/make_study_0_2_0.py` wrote its study from (one curve has a non-finite epoch)."""
    space = spaces.Space(x=spaces.Categorical(tuple(range(6))))
    curves = []
    for i in range(6):
        vals = [0.1 * (i + 1) * (e + 1) / 4 for e in range(4)]
        if i == 2:
            vals[1] = float("nan")
        curves.append(Curve({"x": i}, 0, tuple(trainers.EpochResult(e + 1, 1.0 / (e + 1), 2.0 / (e + 1), v, 0.01, 0.5,
                                                                    10 * (e + 1)) for e, v in enumerate(vals)),
                            test_metric=vals[-1]))
    header = TableHeader("old", json.loads(space.to_json()), "accuracy", "maximize", 4,
                         {"name": "old", "task": "classification", "input_shape": [2], "n_outputs": 2,
                          "batch_size": 4, "steps_per_epoch": 1})
    return ReplayTable(header, curves)


def nan_none(values: list) -> list:
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]


@pytest.fixture
def old_db(tmp_path):
    shutil.copy(DATA / "study-0.2.0.db", tmp_path / "old.db")
    return f"sqlite:///{tmp_path / 'old.db'}"


def test_a_database_written_by_tunelab_0_2_0_reads_as_it_did(old_db):
    expected = json.loads((DATA / "study-0.2.0.json").read_text())
    got = studies.load("old", old_db, read_only=True).trials
    assert [t.number for t in got] == [e["number"] for e in expected]
    for t, e in zip(got, expected, strict=True):
        assert (str(t.state), t.value, t.epochs, t.config) == (e["state"], e["value"], e["epochs"], e["config"])
        assert nan_none(t.curve) == e["curve"]
        assert {k: nan_none(v) for k, v in t.metrics.items()} == e["metrics"]
    assert any(None in e["curve"] for e in expected)  # the fixture has a non-finite epoch (the old layout skipped it)


def test_an_old_study_continues_and_its_resumed_trials_mix_both_layouts_correctly(old_db):
    replay = trainers.Replay(old_table())
    study = studies.load("old", old_db, trainer=replay)
    before = {t.number: t for t in study.trials}
    study.optimize(epochs=60, executor="simulated", progress=False)
    after = studies.load("old", old_db, trainer=replay).trials
    for t in after:
        if t.number in before and before[t.number].state == "paused" and t.epochs > before[t.number].epochs:
            old = before[t.number]
            assert t.curve[:old.epochs] == old.curve  # the old epochs, then the new ones
            assert all(len(v) == t.epochs for v in t.metrics.values())
    nan_trial = next(t for t in after if t.config == {"x": 2} and t.epochs == 4)
    assert math.isnan(nan_trial.curve[1]) and nan_trial.metrics["val_metric"][1] is None
    assert len(after) > len(before)


def test_the_sql_reader_equals_optunas_on_every_trial_and_reads_only_what_it_is_asked(old_db):
    study = studies.load("old", old_db, read_only=True)
    frozen = study.storage.get_all_trials(study.study_id, deepcopy=False)  # Optuna's own read
    ours = read_trials(study.storage, study.study_id)
    assert len(ours) == len(frozen) == 12
    for a, b in zip(frozen, ours, strict=True):
        for f in FIELDS:
            assert getattr(a, f) == getattr(b, f), f
    ids = [t._trial_id for t in frozen]
    part = read_trials(study.storage, study.study_id, include={ids[1], ids[4]}, after=ids[-3])
    assert [t._trial_id for t in part] == [ids[1], ids[4], ids[-2], ids[-1]]
    summary = read_trials(study.storage, study.study_id, curves=False)
    assert all(not t.intermediate_values and "metrics" not in t.user_attrs for t in summary)
    assert [t.user_attrs for t in summary] == [{k: v for k, v in t.user_attrs.items() if k != "metrics"}
                                               for t in frozen]


def test_study_trials_read_incrementally_equal_a_fresh_read(tmp_path):
    replay = trainers.Replay(old_table())
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = studies.create("s", url, space=table_space(replay), trainer=replay, strategy=search.Hyperband(seed=1))
    other = studies.load("s", url, trainer=replay)  # a second handle, writing while the first one reads
    for total in (10, 25, 40, 70):
        other.optimize(epochs=total, executor="simulated", progress=False)
        assert study.trials == studies.load("s", url, read_only=True).trials
        assert len(study._open_ids) == sum(t.state in ("pending", "running", "paused") for t in study.trials)
    summary = study.records(curves=False)
    assert [(t.number, t.state, t.value, t.epochs, t.config) for t in summary] == [
        (t.number, t.state, t.value, t.epochs, t.config) for t in study.trials]
    assert all(t.curve == [] for t in summary)


def test_a_mirror_carried_between_optimize_calls_equals_a_fresh_read(tmp_path):
    replay = trainers.Replay(old_table())
    url = f"sqlite:///{tmp_path / 'c.db'}"
    study = studies.create("c", url, space=table_space(replay), trainer=replay, strategy=search.Hyperband(seed=2))
    rng = np.random.default_rng(0)
    total = 0
    for _ in range(4):
        total += int(rng.integers(5, 25))
        study.optimize(epochs=total, executor="simulated", progress=False)
        carried = study._mirror
        fresh = Driver(study, Budget(trials=0), n_workers=1, executor="simulated", progress=False,
                       checkpoint_seconds=None, max_failures=1, flush_seconds=0.0)
        fresh.load()
        assert carried is not None and carried.rows == fresh.mirror.rows
        assert carried.totals() == fresh.mirror.totals() and carried.study_best() == fresh.mirror.study_best()
        assert [r.number for r in carried.proposals()] == [r.number for r in fresh.mirror.proposals()]


def test_a_strategy_stored_by_an_earlier_release_matches_the_unchanged_script(tmp_path):
    """Arguments added since a study was stored take their stored-study values, so the same script continues it."""
    replay = trainers.Replay(old_table())
    url = f"sqlite:///{tmp_path / 'u.db'}"
    made = {}
    for name, strategy, added in (("b", search.Bayesian(seed=0), ("alternations", "refit_maxiter", "warm_after")),
                                  ("f", search.FreezeThaw(seed=0), ("surrogate",))):
        made[name] = studies.create(name, url, space=table_space(replay), trainer=replay, strategy=strategy)
        spec = strategy.spec()
        old = {"name": spec["name"], "args": {k: v for k, v in spec["args"].items() if k not in added}}
        made[name].storage.set_study_user_attr(made[name].study_id, "tunelab:strategy", old)  # as 0.2.0 stored it
    # Bayesian's new arguments default to what the study was doing: the unchanged script goes on
    again = studies.create("b", url, space=table_space(replay), trainer=replay, strategy=search.Bayesian(seed=0))
    assert again.strategy == search.Bayesian(seed=0)
    assert studies.load("b", url, trainer=replay, strategy=search.Bayesian(seed=0)).strategy == again.strategy
    with pytest.raises(studies.StudyConflictError, match="a different strategy"):
        studies.create("b", url, space=table_space(replay), trainer=replay,
                       strategy=search.Bayesian(seed=0, warm_after=5))
    # a stored FreezeThaw went on with Swersky's GP: the new default (the curve PFN) is another search
    with pytest.raises(studies.StudyConflictError, match="a different strategy"):
        studies.create("f", url, space=table_space(replay), trainer=replay, strategy=search.FreezeThaw(seed=0))
    swersky = search.FreezeThaw(seed=0, surrogate="swersky")
    assert studies.create("f", url, space=table_space(replay), trainer=replay, strategy=swersky).strategy == swersky
