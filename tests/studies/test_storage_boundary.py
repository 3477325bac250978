"""The one storage boundary: `studies.storage.rdb` alone uses Optuna's private RDB API, and says when it moved."""

import ast
import json
import shutil
import sqlite3
from pathlib import Path

import optuna
import pytest

from tunelab import search, studies
from tunelab.studies.storage import rdb

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"


def test_the_private_optuna_api_tunelab_needs_is_where_it_expects():
    rdb.check_api()  # the installed Optuna is one the boundary was tested with
    assert rdb.TESTED[0] <= ".".join(optuna.__version__.split(".")[:2]) <= rdb.TESTED[1]


def test_a_moved_private_symbol_is_named_with_the_tested_versions(monkeypatch):
    from optuna.storages._rdb import models

    monkeypatch.delattr(models, "TrialValueModel")
    with pytest.raises(studies.StorageError, match=r"optuna\.storages\._rdb\.models\.TrialValueModel.*tested with "
                                                  r"optuna 4\.0 to 5\.0.*pip install 'optuna>=4\.0,<5\.1'"):
        rdb.check_api()
    monkeypatch.undo()
    from optuna.storages._rdb import storage

    monkeypatch.delattr(storage, "_create_scoped_session")
    with pytest.raises(studies.StorageError, match=r"optuna\.storages\._rdb\.storage\._create_scoped_session"):
        rdb.check_api()


def test_no_other_module_uses_optunas_private_rdb_api():
    users = []
    for path in sorted((ROOT / "studies").rglob("*.py")) + sorted(ROOT.glob("s*/*.py")) + sorted(
            ROOT.glob("trainers/*.py")):
        if path.name == "rdb.py":
            continue
        text = path.read_text()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.Attribute) and node.attr.endswith("_without_commit"):
                names = [node.attr]
            users += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                      if "_rdb" in n or n.endswith("_without_commit") or n == "_create_scoped_session"]
    assert users == []


def test_a_0_3_0_strategy_named_by_its_old_class_path_opens_without_trust(tmp_path):
    shutil.copy(DATA / "study-0.3.0.db", tmp_path / "old.db")
    shutil.copytree(DATA / "study-0.3.0.artifacts", tmp_path / "old.artifacts")
    with sqlite3.connect(tmp_path / "old.db") as conn:
        spec = json.loads(conn.execute("SELECT value_json FROM study_user_attributes WHERE key='tunelab:strategy'")
                          .fetchone()[0])
        spec["name"] = "search.hyperband:ASHA"  # how 0.3.0 named a class by its path
        conn.execute("UPDATE study_user_attributes SET value_json=? WHERE key='tunelab:strategy'", (json.dumps(spec),))
    study = studies.load("asha", f"sqlite:///{tmp_path / 'old.db'}")
    assert isinstance(study.strategy, search.ASHA) and study.strategy.seed == 0
    assert study.trainer.workload.name == "mnist1d"  # its stored factory "trainers.workloads:mnist1d" too


# ---------------------------------------------------------------------------------------------- the Core writer
class _PublicOnly:
    """An RDB storage seen without its tables: the writer falls back to Optuna's public API on it."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        if name in ("engine", "scoped_session"):
            raise AttributeError(name)
        return getattr(self._inner, name)


def _script(storage):
    """One life of a study through every writer function both paths implement."""
    from datetime import datetime

    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import TrialState

    from tunelab.studies.storage import writer

    study_id = writer.create_study(storage, "s", "maximize", {"spec": {"a": [1, 2.5, None]}}, metric="accuracy")
    dists = {"lr": FloatDistribution(1e-4, 1.0, log=True), "opt": CategoricalDistribution(["adamw", "sgd"]),
             "depth": IntDistribution(1, 4),  # two distributions Optuna finds equal (0.0 == False), two JSONs:
             "wd": CategoricalDistribution((0.0,)), "nesterov": CategoricalDistribution((False,))}

    def new(state, **kw):
        start = None if state == TrialState.WAITING else datetime.now()
        params = {"lr": 0.01, "opt": "sgd", "depth": 3, "wd": 0.0, "nesterov": False}
        return writer.NewTrial(state=state, params=params, distributions=dists, datetime_start=start, **kw)

    first, _ = writer.create_trial(storage, study_id, new(TrialState.RUNNING, user_attrs={"u": [1, 2]},
                                                          system_attrs={"tunelab:x": {"k": 1}}),
                                   lambda tid, n: ({"tunelab:claim": f"d1-{n}"}, []))
    queued, _ = writer.create_trial(storage, study_id, new(TrialState.WAITING), lambda tid, n: ({}, []))
    writer.write_trial(storage, first, new_values={0: 0.5, 1: 0.6}, user_attrs={"epoch_s": 0.25})
    writer.write_trials(storage, [writer.TrialWrite(first, values={1: 0.65, 2: float("nan")},
                                                    system_attrs={"tunelab:x": {"k": 2}}),
                                  writer.TrialWrite(queued, state=TrialState.RUNNING)])
    writer.write_trials(storage, [writer.TrialWrite(first, new_values={3: float("inf")}, state=TrialState.COMPLETE,
                                                    value=0.7, user_attrs={"epochs": 4}),
                                  writer.TrialWrite(queued, user_attrs={"reason": "diverged"}, state=TrialState.FAIL)])
    lost, _ = writer.create_trial(storage, study_id, new(TrialState.RUNNING), lambda tid, n: ({}, []))

    def requeue(tid, n):
        failed = writer.TrialWrite(lost, user_attrs={"requeued_as": n}, state=TrialState.FAIL)
        return {"tunelab:rerun_of": lost}, [failed]

    writer.create_trial(storage, study_id, new(TrialState.RUNNING, intermediate_values={0: -float("inf")}), requeue)
    writer.set_study_attr(storage, study_id, "seconds", 1.5)


def _rows(url):
    """Every row of Optuna's tables, surrogate ids and clock times left out, trials named by number."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    out = {}
    with engine.connect() as conn:
        number = dict(conn.execute(sa.text("SELECT trial_id, number FROM trials")).all())
        for name, table in vars(rdb.tables()).items():
            rows = []
            for row in conn.execute(sa.select(table)).mappings():
                surrogate = [k for k in row if k.endswith("_id") and k not in ("trial_id", "study_id")]
                kept = {k: (number[v] if k == "trial_id" else v) for k, v in row.items()
                        if not k.startswith("datetime") and k not in surrogate}
                if name == "trials":
                    kept.pop("trial_id")
                rows.append(tuple(sorted((k, repr(v)) for k, v in kept.items())))
            out[name] = sorted(rows)
    engine.dispose()
    return out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_core_writer_writes_the_rows_optunas_public_api_writes(backend, tmp_path, request):
    if backend == "sqlite":
        urls = [f"sqlite:///{tmp_path / 'core.db'}", f"sqlite:///{tmp_path / 'public.db'}"]
    else:
        import pg_server

        server = request.getfixturevalue("postgres")
        urls = [pg_server.new_database(server), pg_server.new_database(server)]
    core, public = (optuna.storages.RDBStorage(u) for u in urls)
    assert rdb.has_tables(core) and not rdb.has_tables(_PublicOnly(public))
    _script(core)
    _script(_PublicOnly(public))
    for storage in (core, public):
        storage.engine.dispose()
    written, expected = _rows(urls[0]), _rows(urls[1])
    assert written["trial_intermediate_values"]  # the script wrote what it should
    assert written == expected
