"""Hardening 2: what a hostile database or a careless set-up can no longer do (one test per defect found)."""

import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import small_space

from tunelab import search, studies, trainers
from tunelab.studies.cli import main
from tunelab.studies.storage.lock import LOCK, StudyLock, break_lock, read_lock

DATA = Path(__file__).parent / "data"


@pytest.fixture
def two_trials(tmp_path, small_trainer):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    study = studies.create("h", url, space=small_space(), trainer=small_trainer, strategy=search.Random(seed=0))
    study.optimize(trials=2, progress=False)
    return study, url, tmp_path / "h.db"


def sql(path, statement, *args):
    with sqlite3.connect(path) as conn:
        conn.execute(statement, args)


def set_trial_attr(path, number, key, text, table="trial_user_attributes"):
    sql(path, f"UPDATE {table} SET value_json = ? WHERE key = ? AND trial_id = "
              f"(SELECT trial_id FROM trials WHERE number = ?)", text, key, number)


def set_study_attr(path, key, text, table="study_user_attributes"):
    with sqlite3.connect(path) as conn:
        if conn.execute(f"UPDATE {table} SET value_json = ? WHERE key = ? AND study_id = 1", (text, key)).rowcount == 0:
            conn.execute(f"INSERT INTO {table} (study_id, key, value_json) VALUES (1, ?, ?)", (key, text))


# ---------------------------------------------------------------------------------------------- 1. bounded reads
def test_a_curve_step_of_a_billion_is_refused_before_anything_is_allocated(two_trials, capsys, tmp_path):
    _, url, path = two_trials
    sql(path, "INSERT INTO trial_intermediate_values (trial_id, step, intermediate_value, intermediate_value_type) "
              "VALUES (1, 1000000000, 0.5, 'FINITE')")
    with pytest.raises(studies.StorageError, match=r"trial 0 stores a learning-curve step 1000000000.*100000"):
        _ = studies.load("h", url, read_only=True).trials
    assert main(["report", "--storage", url, "--study", "h", "--out", str(tmp_path / "r")]) == 2
    assert "learning-curve step 1000000000" in capsys.readouterr().err
    assert main(["resume", "--storage", url, "--study", "h", "--trials", "3", "--quiet"]) == 2


@pytest.mark.parametrize(("name", "args", "limit"), [("evolution", {"sample": 10**9}, "sample"),
                                                     ("freeze_thaw", {"candidates": 10**9}, "candidates"),
                                                     ("bayesian", {"raw_samples": 10**12}, "raw_samples")])
def test_stored_strategy_arguments_have_upper_bounds(two_trials, capsys, name, args, limit):
    _, url, path = two_trials
    set_study_attr(path, "tunelab:strategy", json.dumps({"name": name, "args": args}))
    with pytest.raises(studies.ConfigError, match=rf"{limit}=\.\.\.\) must be an int from 1 to"):
        studies.load("h", url)
    assert main(["resume", "--storage", url, "--study", "h", "--trials", "3", "--quiet"]) == 2
    assert f"{limit}=...) must be an int" in capsys.readouterr().err


def test_stored_strategy_arguments_it_does_not_take_are_a_typed_error(two_trials):
    _, url, path = two_trials
    set_study_attr(path, "tunelab:strategy", json.dumps({"name": "random", "args": {"seed": 0, "what": 1}}))
    with pytest.raises(studies.ConfigError, match=r"do not fit it.*takes \['seed', 'quasi'\]"):
        studies.load("h", url)


def test_deep_json_is_a_typed_error_and_one_damaged_study_does_not_hide_the_others(two_trials, capsys, small_trainer):
    _, url, path = two_trials
    studies.create("other", url, space=small_space(), trainer=small_trainer).optimize(trials=1, progress=False)
    deep = "[" * 100_000 + "]" * 100_000
    sql(path, "INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (1, 'deep', ?)", deep)
    with pytest.raises(studies.StorageError, match=r"trial 0's user attribute 'deep' nests JSON deeper than"):
        _ = studies.load("h", url, read_only=True).trials
    assert main(["show", "--storage", url, "--study", "h"]) == 2
    set_study_attr(path, "tunelab:budget", deep)
    with pytest.raises(studies.StorageError, match=r"study's user attribute 'tunelab:budget' nests JSON"):
        studies.load("h", url, read_only=True)
    capsys.readouterr()
    assert main(["list", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "h " in out and "cannot be read: StorageError" in out
    assert "other" in out and "1/1 complete" in out  # the undamaged study is listed as ever


def test_damaged_types_of_stored_numbers_are_typed_errors_naming_the_attribute(two_trials):
    _, url, path = two_trials
    set_trial_attr(path, 1, "epochs", '"many"')
    with pytest.raises(studies.StorageError, match=r"trial 1's user attribute 'epochs' is 'many'"):
        _ = studies.load("h", url, read_only=True).trials
    set_trial_attr(path, 1, "epochs", "2")
    set_trial_attr(path, 0, "tunelab:target_epochs", "1e300", table="trial_system_attributes")
    with pytest.raises(studies.StorageError, match=r"tunelab:target_epochs.*from 1 to 100000|from 0 to 100000"):
        studies.load("h", url).optimize(trials=3, progress=False)


def test_a_report_reads_a_study_whose_trial_numbers_have_gaps(two_trials, tmp_path, small_trainer):
    study, url, path = two_trials
    study.optimize(trials=4, progress=False)
    sql(path, "UPDATE trials SET number = number * 10")
    assert main(["report", "--storage", url, "--study", "h", "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "history.png").exists()


# ---------------------------------------------------------------------------------------------- 3. locks
def _hold(storage, study_id, owner, until):
    import sqlalchemy as sa

    model = StudyLock(storage, study_id, "x")._model()
    value = json.dumps({"owner": owner, "until": until, "token": "t", "seq": 7})
    with storage.engine.begin() as conn:
        conn.execute(sa.delete(model).where(model.study_id == study_id, model.key == LOCK))
        conn.execute(sa.insert(model).values(study_id=study_id, key=LOCK, value_json=value))


def test_a_lock_held_forever_by_another_host_gives_up_with_who_holds_it(two_trials, capsys):
    study, _url, _ = two_trials
    _hold(study.storage, study.study_id, "far-away-host:4242:abcd", 1e18)
    lock = StudyLock(study.storage, study.study_id, "me:1:x", wait=3.0, label="study 'h'")
    with pytest.raises(studies.StudyLockedError, match=r"host far-away-host, pid 4242.*tunelab unlock"):
        lock.acquire()
    assert "waiting for the lock of study 'h', held by host far-away-host, pid 4242" in capsys.readouterr().err


@pytest.mark.parametrize("owner", ["far-away-host:4242:abcd", f"{socket.gethostname()}:1:abcd"])
def test_a_lease_from_a_clock_far_ahead_or_a_live_pid_counts_only_the_studys_lease_length(two_trials, owner):
    study, _, _ = two_trials
    _hold(study.storage, study.study_id, owner, 1e18)
    lock = StudyLock(study.storage, study.study_id, "me:1:x", ttl=0.5, wait=60.0)
    start = time.monotonic()
    with lock:
        assert read_lock(study.storage, study.study_id)["owner"] == "me:1:x"
    assert time.monotonic() - start >= 0.5  # it waited out the lease length, not the stored lease end


def test_tunelab_unlock_breaks_a_lock_after_asking(two_trials, capsys, monkeypatch):
    study, url, _ = two_trials
    _hold(study.storage, study.study_id, "far-away-host:4242:abcd", 1e18)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: it must not break the lock unasked
    assert main(["unlock", "--storage", url, "--study", "h"]) == 2
    assert "--yes" in capsys.readouterr().err
    assert read_lock(study.storage, study.study_id)["owner"] == "far-away-host:4242:abcd"
    assert main(["unlock", "--storage", url, "--study", "h", "--yes"]) == 0
    assert "locked by host far-away-host, pid 4242" in capsys.readouterr().out
    assert read_lock(study.storage, study.study_id)["owner"] is None
    assert main(["unlock", "--storage", url, "--study", "h"]) == 0
    assert "is not locked" in capsys.readouterr().out
    break_lock(study.storage, study.study_id)  # breaking a free lock is harmless
    study.optimize(trials=3, progress=False)


def test_a_damaged_lock_value_counts_as_free(two_trials):
    study, _, path = two_trials
    set_study_attr(path, LOCK, "[" * 10_000 + "]" * 10_000, table="study_system_attributes")
    study.optimize(trials=3, progress=False)
    assert len(study.trials) == 3


# ---------------------------------------------------------------------------------------------- 5. artifact folders
def _checkpoints(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.pt"))


def test_two_databases_beside_each_other_keep_their_checkpoints_apart(tmp_path, small_trainer):
    made = []
    for file in ("exp.db", "exp.sqlite"):
        url = f"sqlite:///{tmp_path / file}"
        study = studies.create("s", url, space=small_space(), trainer=small_trainer)
        study.optimize(trials=3, progress=False, keep_checkpoints="all")
        made.append(study)
    a, b = made
    assert a.artifacts == b.artifacts == tmp_path / "exp.artifacts"  # one root...
    assert a.folder != b.folder  # ...and a folder of its own for each study
    on_disk = _checkpoints(tmp_path / "exp.artifacts")
    assert on_disk == sorted(f"{s.folder}/trial-{n}.pt" for s in made for n in range(3))
    for s in made:
        assert [s.checkpoint(n).name for n in range(3)] == ["trial-0.pt", "trial-1.pt", "trial-2.pt"]
        marker = json.loads((s.artifacts / s.folder / "tunelab-study.json").read_text())
        assert marker["uid"] == s.uid and marker["database"] == s.database


def test_a_copy_of_a_database_is_refused_its_originals_folder_naming_both(tmp_path, small_trainer):
    url = f"sqlite:///{tmp_path / 'exp.db'}"
    studies.create("s", url, space=small_space(), trainer=small_trainer).optimize(trials=2, progress=False)
    with sqlite3.connect(tmp_path / "exp.db") as conn:  # what a copy of a file in WAL mode needs first
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(tmp_path / "exp.db", tmp_path / "exp.bak")
    bak = f"sqlite:///{tmp_path / 'exp.bak'}"
    shutil.copytree(tmp_path / "exp.artifacts", tmp_path / "exp.bak-root")
    with pytest.raises(studies.StorageError, match=r"exp\.bak.*is a copy of the same study in .*exp\.db"):
        studies.load("s", bak, artifacts=tmp_path / "exp.artifacts")
    assert len(studies.load("s", bak, read_only=True).trials) == 2  # reading is fine
    moved = tmp_path / "moved.db"
    os.replace(tmp_path / "exp.db", moved)  # a moved database takes its folder over
    study = studies.load("s", f"sqlite:///{moved}", artifacts=tmp_path / "exp.artifacts")
    study.optimize(trials=3, progress=False)


def test_a_folder_whose_marker_names_another_study_is_refused(tmp_path, small_trainer):
    url = f"sqlite:///{tmp_path / 'exp.db'}"
    study = studies.create("s", url, space=small_space(), trainer=small_trainer)
    marker = study.artifacts / study.folder / "tunelab-study.json"
    marker.write_text(json.dumps({"uid": "0" * 32, "study": "someone", "database": "/elsewhere.db"}))
    with pytest.raises(studies.StorageError, match=r"belongs to another study \('someone'.*not to study 's'"):
        studies.load("s", url)


def test_checkpoints_are_named_by_trial_number_and_a_deleted_one_is_no_longer_named(tmp_path, small_trainer):
    url = f"sqlite:///{tmp_path / 'n.db'}"
    study = studies.create("n", url, space=small_space(), trainer=small_trainer, strategy=search.Random(seed=3))
    study.optimize(trials=5, progress=False, keep_checkpoints="best")
    best = study.best
    import optuna

    names = {t.number: t.system_attrs.get("tunelab:checkpoint")
             for t in optuna.load_study(study_name="n", storage=url).trials}
    assert names == {n: (f"{study.folder}/trial-{n}.pt" if n == best.number else None) for n in range(5)}
    assert _checkpoints(study.artifacts) == [f"{study.folder}/trial-{best.number}.pt"]


def test_a_0_3_0_study_adopts_a_marker_and_resumes_from_its_old_checkpoints(tmp_path):
    shutil.copy(DATA / "study-0.3.0.db", tmp_path / "study-0.3.0.db")
    shutil.copytree(DATA / "study-0.3.0.artifacts", tmp_path / "study-0.3.0.artifacts")
    url = f"sqlite:///{tmp_path / 'study-0.3.0.db'}"
    expected = json.loads((DATA / "study-0.3.0.json").read_text())
    old = studies.load("asha", url, read_only=True)
    assert old.uid is None and old.folder is None  # reading writes nothing, not even an identity
    assert [(t.number, str(t.state), t.value, t.epochs, t.config, t.curve) for t in old.trials] == [
        (e["number"], e["state"], e["value"], e["epochs"], e["config"], e["curve"]) for e in expected]
    paused = [e["number"] for e in expected if e["state"] == "paused"]
    assert paused and all(old.checkpoint(n).name.startswith("tunelab-trial-") for n in paused)
    leftover = tmp_path / "study-0.3.0.artifacts" / ".tunelab-trial-1.pt.abc123.tmp"  # 0.3.0's name: no owner
    leftover.write_bytes(b"half")
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    study = studies.load("asha", url)
    assert study.uid is not None and not leftover.exists()
    assert (study.artifacts / study.folder / "tunelab-study.json").exists()
    study.optimize(epochs=12, progress=False)
    after = {t.number: t for t in study.trials}
    for e in expected:  # the paused trials continued from their 0.3.0 checkpoints: their first epochs are the old
        assert after[e["number"]].curve[:len(e["curve"])] == e["curve"]
    assert any(after[n].epochs > next(e["epochs"] for e in expected if e["number"] == n) for n in paused)
    new = [t for t in study.trials if t.number >= len(expected)]
    assert new and all(study.checkpoint(t.number) is None or study.checkpoint(t.number).parent.name == study.folder
                       for t in new)


def test_leftover_temporary_checkpoints_of_dead_processes_are_removed_at_the_next_open(tmp_path, small_trainer):
    from tunelab.trainers.checkpoint import tmp_prefix

    url = f"sqlite:///{tmp_path / 't.db'}"
    study = studies.create("t", url, space=small_space(), trainer=small_trainer)
    folder = study.artifacts / study.folder
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    mine = folder / f"{tmp_prefix(folder / 'trial-3.pt')}abc.tmp"
    theirs = folder / f"{tmp_prefix(folder / 'trial-4.pt').replace(f'~{os.getpid()}.', f'~{pid}.')}abc.tmp"
    for f in (mine, theirs):
        f.write_bytes(b"half a checkpoint")
    studies.load("t", url)
    assert mine.exists() and not theirs.exists()  # a live writer's file stays; a dead one's goes


# ---------------------------------------------------------------------------------------------- 6. replay tables
def _table(tmp_path, rows_epochs, n_params=None):
    from tunelab.trainers.replay import Curve, ReplayTable, TableHeader

    space = search.Random().spec()  # any JSON; the header's space is only parsed when used
    curves = [Curve({"x": i}, 0, tuple(trainers.EpochResult(e + 1, 1.0, 1.0, 0.5, 0.1, 0.1, 1) for e in range(n)),
                    n_params=n_params) for i, n in enumerate(rows_epochs)]
    header = TableHeader("t", {"params": [], **space}, "accuracy", "maximize", 4,
                         {"name": "t", "task": "classification", "input_shape": [2], "n_outputs": 2})
    return ReplayTable(header, curves).write(tmp_path / "t.json.gz")


def test_a_replay_table_that_promises_more_epochs_than_a_row_holds_is_refused_when_opened(tmp_path):
    from tunelab.trainers.replay import ReplayTable, TableError

    with pytest.raises(TableError, match=r"row 2 .* has 3 epochs, but the header promises 4"):
        ReplayTable.load(_table(tmp_path, [4, 3]))
    with pytest.raises(TableError, match=r"row 1 .* has n_params 'many'"):
        ReplayTable.load(_table(tmp_path, [4], n_params="many"))


# ---------------------------------------------------------------------------------------------- 7. storage faults
def test_a_read_only_database_is_a_storage_error_before_anything_trains(two_trials):
    import sqlalchemy

    study, _url, _ = two_trials

    def query_only(conn, _record):
        conn.execute("PRAGMA query_only = ON")

    sqlalchemy.event.listen(study.storage.engine, "connect", query_only)
    study.storage.engine.dispose()
    with pytest.raises(studies.StorageError, match=r"h\.db.*readonly.*read-only.*read_only=True"):
        study.optimize(trials=4, progress=False)
    sqlalchemy.event.remove(study.storage.engine, "connect", query_only)
    study.storage.engine.dispose()
    assert len(study.trials) == 2  # nothing was trained or recorded, and the study continues normally
    study.optimize(trials=3, progress=False)


def test_a_database_locked_past_the_busy_timeout_names_the_cause(two_trials, monkeypatch):
    import tunelab.studies.storage.connect as storage_module

    _study, url, path = two_trials
    monkeypatch.setattr(storage_module, "BUSY_TIMEOUT_S", 0.2)
    reopened = studies.load("h", url)
    blocker = sqlite3.connect(path, timeout=0.1)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(studies.StorageError, match=r"database is locked.*write lock"):
            reopened.optimize(trials=4, progress=False)
    finally:
        blocker.rollback()
        blocker.close()
    reopened.optimize(trials=3, progress=False)
    assert len(reopened.trials) == 3


# ---------------------------------------------------------------------------------------------- 9. main guard
def test_a_script_without_a_main_guard_stops_at_once_with_the_fix(tmp_path):
    script = tmp_path / "newcomer.py"
    script.write_text(textwrap.dedent(f"""
        from tunelab import search, spaces, studies, trainers
        trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=2), epochs=2)
        study = studies.create("g", "sqlite:///{tmp_path / 'g.db'}", trainer=trainer,
                               space=spaces.optimizers(["adamw"]) | spaces.mlp(depth=1))
        study.optimize(trials=4, n_workers=2, progress=False)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(studies.__file__).parents[1])})
    assert done.returncode != 0
    # the driver's own error, its last exception (a worker killed while it starts may print too, before it)
    last = [line for line in done.stderr.splitlines() if not line.startswith((" ", "Traceback"))][-1]
    assert last.startswith("tunelab.spaces.errors.ConfigError") and 'if __name__ == "__main__":' in last, done.stderr
    assert "nothing was trained" in last
    assert studies.load("g", f"sqlite:///{tmp_path / 'g.db'}", read_only=True).trials == []


# ---------------------------------------------------------------------------------------------- 8, 10. smaller ones
def test_tunelab_list_names_built_in_workloads(two_trials, capsys):
    _, url, _ = two_trials
    assert main(["list", "--storage", url]) == 0
    assert "mnist1d" in capsys.readouterr().out


def test_self_tuning_without_hyperparameters_is_a_config_error():
    with pytest.raises(studies.ConfigError, match=r"tune must name the hyperparameters"):
        search.SelfTuning(tune=None)


def test_class_labels_must_start_at_zero_and_text_labels_say_how_to_encode_them():
    x = np.random.default_rng(0).normal(size=(30, 4)).astype("float32")
    with pytest.raises(studies.WorkloadError, match=r"class labels start at 1, not 0.*classes \[0\] would never"):
        trainers.Workload.from_tensors(x, np.tile([1, 2, 3], 10))
    with pytest.raises(studies.WorkloadError, match=r"y_train holds text \('a', 'b', 'c'.*LabelEncoder"):
        trainers.Workload.from_tensors(x, np.array(["a", "b", "c"] * 10))
    with pytest.warns(UserWarning, match=r"classes \[1\] never occur"):
        trainers.Workload.from_tensors(x, np.tile([0, 2], 15))


def test_a_budget_of_zero_is_refused_instead_of_returning_nothing(two_trials):
    study, _, _ = two_trials
    with pytest.raises(studies.BudgetError, match=r"trials=0 trains nothing.*study\.best"):
        study.optimize(trials=0, progress=False)
