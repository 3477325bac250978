"""Operational faults lose nothing measured: shared studies, atomic recovery, curves, disks, corrupt files."""

import errno
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import optuna
import pytest
import torch
from conftest import small_space
from optuna.trial import TrialState as OTS

from tunelab import search, studies, trainers
from tunelab.studies.driver import Budget, Driver
from tunelab.studies.executors import Outcome, Work, is_out_of_memory, run_work
from tunelab.studies.records import TrialState
from tunelab.studies.storage import writer
from tunelab.studies.storage.writer import write_trial


@pytest.fixture(scope="module")
def trainer6():
    return trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=6), epochs=6, seed=0)


def _driver(study, trials=1, **kw):
    args = {"n_workers": 1, "executor": "local", "progress": False, "checkpoint_seconds": None, "max_failures": 3,
            "flush_seconds": 0.0, **kw}
    driver = Driver(study, Budget(trials=trials), **args)
    driver.load()
    return driver


def _orphan(study, config):
    """A trial left running by a driver that died (a Driver that never ran is not alive)."""
    return _driver(study).recorder.create_trial(config, proposal=0, target=study.trainer.epochs, attrs={},
                                                state=TrialState.RUNNING)


def _curve(url, name, number):
    trial = optuna.load_study(study_name=name, storage=url).trials[number]
    return [trial.intermediate_values[k] for k in sorted(trial.intermediate_values)]


# ---------------------------------------------------------------------- several drivers, one study
def _drive(url, barrier, trials, artifacts):
    from conftest import small_space as space

    from tunelab import search as s
    from tunelab import studies as st
    from tunelab import trainers as tr

    trainer = tr.Trainer(tr.workloads.mnist1d(n_train=256, max_epochs=2), epochs=2, seed=0)
    study = st.create("shared", url, space=space(), trainer=trainer, strategy=s.Random(seed=0), artifacts=artifacts)
    barrier.wait()
    study.optimize(trials=trials, progress=False)


def test_two_drivers_of_one_study_share_its_budget_and_train_no_config_twice(tmp_path, small_trainer, db_url):
    url, art = db_url, tmp_path / "artifacts"  # an SQLite file, and a PostgreSQL server (drivers on several machines)
    studies.create("shared", url, space=small_space(), trainer=small_trainer, strategy=search.Random(seed=0),
                   artifacts=art)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_drive, args=(url, barrier, 12, art)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    trials = studies.load("shared", url, artifacts=art).trials
    assert len(trials) == 12 and all(t.state == "complete" for t in trials)
    assert len({str(sorted(t.config.items())) for t in trials}) == 12
    # the same proposals a single driver makes: proposal k is the strategy's k-th, whoever asked
    single = studies.create("single", url, space=small_space(), trainer=small_trainer, strategy=search.Random(seed=0),
                            artifacts=art)
    single.optimize(trials=12, progress=False)
    assert [t.config for t in single.trials] == [t.config for t in trials]


def test_the_study_lock_admits_one_holder_and_frees_a_dead_one(tmp_path, small_trainer, db_url):
    from tunelab.studies.storage.lock import LIVE, StudyLock

    study = studies.create("lock", db_url, space=small_space(), trainer=small_trainer, artifacts=tmp_path / "a")
    a = StudyLock(study.storage, study.study_id, "h:1:a")
    b = StudyLock(study.storage, study.study_id, "h:1:b")
    assert a.try_acquire() and not b.try_acquire()
    a.release()
    assert b.try_acquire()
    b.release()
    # a holder of this host whose process is gone is not waited for
    me = f"{os.uname().nodename}:{os.getpid()}:dead"
    dead = StudyLock(study.storage, study.study_id, me)
    assert dead.try_acquire()
    assert me not in LIVE and a.try_acquire()


# ---------------------------------------------------------------------- recovery is one transaction
def test_recovery_of_a_trial_commits_its_failure_and_its_rerun_together(tmp_path, small_trainer, monkeypatch,
                                                                         db_url):
    url = db_url
    study = studies.create("r", url, space=small_space(), trainer=small_trainer, artifacts=tmp_path / "a")
    _orphan(study, small_space().default())
    real = writer._upsert_attrs

    def crash(storage, session, model, rows):  # the process dies half-way through recovery's transaction
        if any(key == "tunelab:superseded" for _, key, _ in rows):
            raise KeyboardInterrupt
        return real(storage, session, model, rows)

    monkeypatch.setattr(writer, "_upsert_attrs", crash)
    with pytest.raises(KeyboardInterrupt):
        study.optimize(trials=1, progress=False)
    monkeypatch.undo()
    frozen = optuna.load_study(study_name="r", storage=url).trials
    assert len(frozen) == 1 and frozen[0].state == OTS.RUNNING  # nothing of the half-done recovery stayed
    study.optimize(trials=1, progress=False)
    trials = study.trials
    assert [t.state for t in trials] == ["failed", "complete"] and trials[1].retry_of == 0
    assert trials[0].error == ("interrupted: its process stopped before its first epoch ended; re-queued as trial 1")


def test_the_interrupted_message_says_when_a_checkpoint_is_missing_after_epochs(tmp_path, small_trainer):
    study = studies.create("m", f"sqlite:///{tmp_path / 'm.db'}", space=small_space(), trainer=small_trainer)
    row = _orphan(study, small_space().default())
    write_trial(study.storage, row.trial_id, new_values={1: 0.5}, user_attrs={"metrics": {"val_metric": [0.5]}})
    study.optimize(trials=1, progress=False)
    error = study.trials[0].error
    assert "before" not in error and "after 1 recorded epochs" in error and "deleted" in error
    assert error.endswith("re-queued as trial 1")


# ---------------------------------------------------------------------- curves after a resume
@pytest.mark.parametrize(("checkpoint_epoch", "stored_epochs"), [(4, 2), (2, 4)])
def test_optuna_curves_equal_an_uninterrupted_run_after_a_resume(tmp_path, trainer6, checkpoint_epoch, stored_epochs):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    config = small_space().default()
    twin = [e.val_metric for e in trainer6.fit(config).epochs]
    study = studies.create("c", url, space=small_space(), trainer=trainer6, strategy=search.Enqueue([config]))
    row = _orphan(study, config)
    trainer6.fit(config, until_epoch=checkpoint_epoch, checkpoint=study.artifacts / row.checkpoint)
    # the database lags (or, after a checkpoint older than its last flush, leads) the checkpoint
    stored = {i + 1: twin[i] for i in range(stored_epochs)}
    write_trial(study.storage, row.trial_id, new_values=stored,
                user_attrs={"metrics": {"val_metric": list(stored.values())}})
    study.optimize(trials=1, progress=False)
    assert study.trials[0].state == "complete"
    assert _curve(url, "c", 0) == twin == study.trials[0].curve


# ---------------------------------------------------------------------- corrupt checkpoints
def test_a_corrupt_checkpoint_of_a_crashed_trial_reruns_it_and_keeps_the_budget(tmp_path, small_trainer):
    config = small_space().default()
    study = studies.create("k", f"sqlite:///{tmp_path / 'k.db'}", space=small_space(), trainer=small_trainer,
                           strategy=search.Enqueue([config]))
    row = _orphan(study, config)
    (study.artifacts / row.checkpoint).write_bytes(b"\x00 not a checkpoint")
    study.optimize(trials=1, progress=False)
    trials = study.trials
    assert [t.state for t in trials] == ["failed", "complete"]
    assert "unreadable" in trials[0].error and trials[1].value == small_trainer.fit(config).val_metric


def test_a_corrupt_checkpoint_at_resume_restarts_the_run_from_scratch(tmp_path, small_trainer):
    config = small_space().default()
    path = tmp_path / "ck.pt"
    path.write_bytes(b"garbage")
    work = Work(trial_id=1, number=0, config=config, seed=0, until_epoch=None, checkpoint=str(path))
    outcome = run_work(small_trainer, work, lambda tid, e: None, multiprocessing.Event())
    assert outcome.result is not None and outcome.result.status == "complete"
    assert "could not be read" in outcome.restarted
    assert outcome.result.val_metric == small_trainer.fit(config).val_metric


# ---------------------------------------------------------------------- disk faults
def test_a_full_disk_keeps_every_result_and_stops_the_study_after_repeated_failures(tmp_path, small_trainer,
                                                                                   monkeypatch):
    import tunelab.trainers.trainer as trainer_module

    def full(path, state):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(trainer_module, "save_checkpoint", full)
    study = studies.create("d", f"sqlite:///{tmp_path / 'd.db'}", space=small_space(), trainer=small_trainer)
    with pytest.raises(studies.StorageError, match=r"last 3 trials could not write their checkpoints.*d\.artifacts"):
        study.optimize(trials=8, progress=False, max_failures=3, keep_checkpoints="all")
    trials = study.trials
    assert len(trials) == 3 and all(t.state == "complete" and t.value is not None for t in trials)
    frozen = optuna.load_study(study_name="d", storage=study.storage_url).trials
    assert all("No space left" in t.user_attrs["checkpoint_error"] for t in frozen)
    assert all(f"/trial-{t.number}.pt" in t.user_attrs["checkpoint_error"] for t in frozen)  # names the path


def test_a_read_only_artifact_folder_is_a_clear_error_before_any_training(tmp_path, small_trainer, monkeypatch):
    import pathlib

    study = studies.create("ro", f"sqlite:///{tmp_path / 'ro.db'}", space=small_space(), trainer=small_trainer)
    real = pathlib.Path.write_bytes

    def read_only(self, data):
        if study.artifacts in self.parents:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", read_only)
    with pytest.raises(studies.StorageError, match=r"cannot write checkpoints to the artifact folder .*ro\.artifacts"):
        study.optimize(trials=2, progress=False)
    assert study.trials == []


# ---------------------------------------------------------------------- smaller ones
def test_a_cuda_out_of_memory_runtime_error_is_classified_as_out_of_memory(small_trainer, monkeypatch):
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(torch.OutOfMemoryError("x")) and not is_out_of_memory(RuntimeError("shape mismatch"))

    def oom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(small_trainer, "fit", oom)
    work = Work(trial_id=1, number=0, config={}, seed=0, until_epoch=None, checkpoint=None)
    outcome = run_work(small_trainer, work, lambda tid, e: None, multiprocessing.Event())
    assert isinstance(outcome, Outcome) and outcome.error.startswith("out of memory")


def test_the_progress_bar_stops_at_its_total_on_a_resume_with_a_pending_trial(tmp_path, small_trainer):
    study = studies.create("p", f"sqlite:///{tmp_path / 'p.db'}", space=small_space(), trainer=small_trainer)
    _orphan(study, small_space().default())  # recovered into a pending re-run
    driver = Driver(study, Budget(trials=2), n_workers=1, executor="local", progress=True, checkpoint_seconds=None,
                    max_failures=3, flush_seconds=0.0)
    driver.run()
    assert driver.progress.bar.n == driver.progress.bar.total == 2
    assert sum(t.state == "complete" for t in study.trials) == 2


# ---------------------------------------------------------------------- orphaned workers
ORPHAN = textwrap.dedent(
    """
    import multiprocessing, os, sys, time
    from tunelab.studies.executors import die_with_parent

    def child(parent, ready):
        die_with_parent(parent)
        ready.set()
        time.sleep(600)  # until die_with_parent ends it with its parent (the test fails long before this)

    if __name__ == "__main__":
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Event()
        p = ctx.Process(target=child, args=(os.getpid(), ready))
        p.start()
        ready.wait()
        print(p.pid, flush=True)
        time.sleep(600)
    """
)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pids, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_exits_when_its_driver_is_killed(tmp_path):
    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    child = int(proc.stdout.readline())
    assert _alive(child)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _wait_gone([child]) == []


POOL = textwrap.dedent(
    """
    import sys
    from tunelab import search, spaces, studies, trainers

    if __name__ == "__main__":  # spawned workers import this script
        trainer = trainers.Trainer(trainers.workloads.mnist1d(max_epochs=200), epochs=200, seed=0)
        space = spaces.optimizers(["adamw"]) | spaces.mlp(width=spaces.Int(16, 64, log=True), depth=1)
        study = studies.create("pool", sys.argv[1], space=space, trainer=trainer, strategy=search.Random(seed=0))
        study.optimize(trials=4, n_workers=2, progress=False, checkpoint_seconds=0.0, flush_seconds=0.0)
    """
)


def _descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in os.listdir(f"/proc/{p}/task"):
            with open(f"/proc/{p}/task/{task}/children") as f:
                kids = [int(c) for c in f.read().split()]
            out += kids
            todo += kids
    return out


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_of_a_pool_driver_ends_its_workers_and_resource_tracker(tmp_path):
    script = tmp_path / "pool.py"
    script.write_text(POOL)
    url = f"sqlite:///{tmp_path / 'pool.db'}"
    proc = subprocess.Popen([sys.executable, str(script), url], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until both workers have reported an epoch (asserted below)
        time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read()
        try:
            running = [t for t in optuna.load_study(study_name="pool", storage=url).trials
                       if t.state == OTS.RUNNING and t.intermediate_values]
        except KeyError:
            continue
        if len(running) == 2:
            break
    else:
        raise AssertionError("waited 120 s for both pool workers to report an epoch")
    kids = _descendants(proc.pid)
    assert len(kids) >= 3  # two workers and multiprocessing's resource tracker
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _wait_gone(kids) == []


class Flaky(trainers.Trainer):
    """Raises once, in epoch 2 of its first run (a transient fault: a lost node, a driver hiccup)."""

    failed = False

    def fit(self, config, *, report=None, **kwargs):
        def flaky(epoch):
            if epoch.epoch == 2 and not Flaky.failed:
                Flaky.failed = True
                raise RuntimeError("transient fault")
            return report(epoch) if report is not None else None

        return super().fit(config, report=flaky, **kwargs)


@pytest.mark.parametrize("retries", [0, 1])
def test_max_retries_reruns_an_errored_trial_from_its_checkpoint(tmp_path, retries):
    Flaky.failed = False
    trainer = Flaky(trainers.workloads.mnist1d(n_train=256, max_epochs=4), epochs=4, seed=0)
    config = small_space().default()
    twin = trainers.Trainer(trainer.workload, epochs=4, seed=0).fit(config)
    url = f"sqlite:///{tmp_path / 'f.db'}"
    study = studies.create("f", url, space=small_space(), trainer=trainer, strategy=search.Enqueue([config]))
    study.optimize(trials=1, progress=False, max_retries=retries, checkpoint_seconds=0.0)
    (trial,) = study.trials
    if retries == 0:
        assert trial.state == "failed" and "transient fault" in trial.error
        return
    assert trial.state == "complete" and trial.value == twin.val_metric and trial.curve == [
        e.val_metric for e in twin.epochs]
    frozen = optuna.load_study(study_name="f", storage=url).trials[0]
    assert frozen.system_attrs["tunelab:retries"] == 1 and "transient fault" in frozen.user_attrs["retry_1_error"]


def test_a_study_is_created_with_its_recipe_in_one_transaction(tmp_path):
    from tunelab.studies.storage.writer import create_study

    storage = studies.open_storage(f"sqlite:///{tmp_path / 'a.db'}")
    with pytest.raises(TypeError):  # dies after the study row, before its last attribute
        create_study(storage, "half", "maximize", {"tunelab:space": {}, "tunelab:trainer": object()})
    assert storage.get_all_studies() == []
    study_id = create_study(storage, "whole", "minimize", {"tunelab:space": {"a": 1}})
    assert storage.get_study_user_attrs(study_id) == {"tunelab:space": {"a": 1}}
    assert storage.get_study_directions(study_id)[0].name == "MINIMIZE"
