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
    monkeypatch.delattr(optuna.storages.RDBStorage, "_set_trial_attr_without_commit")
    with pytest.raises(studies.StorageError, match=r"RDBStorage\._set_trial_attr_without_commit"):
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
