"""Torch threads of trials trained on this machine: `optimize(threads=...)` and the default from cores and load."""

import warnings

import pytest
import torch

from tunelab import spaces, studies, trainers
from tunelab.studies.executors import threads as threads_module

SPACE = spaces.Space(x=spaces.Float(0.0, 1.0))


def threads_seen(config):
    """An objective that reports the torch threads it ran on."""
    return {"value": config["x"], "threads": torch.get_num_threads()}


@pytest.fixture
def machine(monkeypatch):
    """A machine of `cores` cores at `load` (set the attributes)."""

    class Machine:
        cores, load = 8, 0.5

    monkeypatch.setattr(threads_module, "usable_cores", lambda: Machine.cores)
    monkeypatch.setattr(threads_module, "load_average", lambda: Machine.load)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    return Machine


def test_the_default_shares_the_cores_and_drops_to_one_thread_on_a_busy_machine(machine):
    assert threads_module.threads_per_worker(1) == 8
    assert threads_module.threads_per_worker(3) == 2
    assert threads_module.threads_per_worker(16) == 1
    assert threads_module.threads_per_worker(2, threads=5) == 5  # the caller's choice, whatever the load
    machine.load = 9.0
    with pytest.warns(studies.BusyMachineWarning, match=r"load average 9.0 on 8 cores.*pass threads=N"):
        assert threads_module.threads_per_worker(1) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert threads_module.threads_per_worker(2, threads=3) == 3  # no warning when the caller chose


def test_omp_num_threads_caps_the_default(machine, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_module.threads_per_worker(1) == 3
    assert threads_module.threads_per_worker(4) == 2


def test_a_study_trains_on_the_threads_asked_for_and_restores_the_callers(tmp_path):
    before = torch.get_num_threads()
    wanted = 2 if before != 2 else 3
    study = studies.create("t", f"sqlite:///{tmp_path / 't.db'}", space=SPACE, trainer=trainers.Objective(threads_seen))
    study.optimize(trials=2, threads=wanted, progress=False)
    assert [t.metrics["threads"] for t in study.trials] == [[wanted], [wanted]]
    assert torch.get_num_threads() == before


def test_bad_threads_are_refused_naming_the_fix(tmp_path):
    study = studies.create("t", f"sqlite:///{tmp_path / 't.db'}", space=SPACE, trainer=trainers.Objective(threads_seen))
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(studies.ConfigError, match=r"threads must be an int >= 1"):
            study.optimize(trials=1, threads=bad, progress=False)
    with pytest.raises(studies.ConfigError, match=r"resources=\{'num_cpus': N\}"):
        study.optimize(trials=1, threads=2, executor="ray", progress=False)
    with pytest.raises(studies.ConfigError, match=r"give it to the executor you made"):
        study.optimize(trials=1, threads=2, executor=studies.LocalExecutor(), progress=False)
    assert study.trials == []
