"""Studies with `population`: trials of one architecture trained together, each still its own trial."""

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from waiting import wait_for

from tunelab import search, spaces, studies, trainers

TOL = 0.02  # final validation accuracy of a trial vs the same trial trained alone (see test_population.py)


def _space():
    return (spaces.optimizers(["adamw", "sgd", "nadam"]) | spaces.schedules(["constant", "cosine"])
            | spaces.mlp(width=24, depth=2, dropout=0.0, activation="relu"))


def _study(tmp_path, name, epochs=2):
    trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=epochs), epochs=epochs, seed=0)
    return studies.create(name, f"sqlite:///{tmp_path / 'p.db'}", space=_space(), trainer=trainer,
                          strategy=search.Random(seed=5))


def _similar(a, b):
    """The same trials (configs, states, epochs), values within TOL."""
    assert [t.config for t in a.trials] == [t.config for t in b.trials]
    assert [t.state for t in a.trials] == [t.state for t in b.trials]
    assert [t.epochs for t in a.trials] == [t.epochs for t in b.trials]
    for x, y in zip(a.trials, b.trials, strict=True):
        assert abs(x.value - y.value) <= TOL, (x.number, x.value, y.value)


@pytest.mark.parametrize("n_workers", [1, 2])
def test_a_study_with_populations_makes_the_trials_of_one_without(tmp_path, n_workers):
    alone = _study(tmp_path, "alone")
    alone.optimize(trials=8, progress=False)
    together = _study(tmp_path, f"together-{n_workers}")
    together.optimize(trials=8, population=4, n_workers=n_workers, progress=False)
    _similar(together, alone)
    assert all(len(t.curve) == 2 and t.seconds > 0 for t in together.trials)  # each its own curve and time


def test_a_trials_budget_and_a_strategy_that_gives_one_request_at_a_time_still_hold(tmp_path):
    study = _study(tmp_path, "budget")
    study.optimize(trials=5, population=4, progress=False)  # 4 together, then 1 alone
    assert len(study.trials) == 5 and {t.state for t in study.trials} == {"complete"}
    study.optimize(trials=7, population=16, progress=False)  # a total: 2 more
    assert len(study.trials) == 7


def test_bad_population_is_refused(tmp_path):
    study = _study(tmp_path, "bad")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(studies.ConfigError, match="population must be an int >= 1"):
            study.optimize(trials=1, population=bad, progress=False)
    assert study.trials == []


SCRIPT = textwrap.dedent(
    """
    import json, sys
    from tunelab import search, spaces, studies, trainers

    space = (spaces.optimizers(["adamw", "sgd", "nadam"]) | spaces.schedules(["constant", "cosine"])
             | spaces.mlp(width=24, depth=2, dropout=0.0, activation="relu"))
    trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=1000, max_epochs=4), epochs=4, seed=0)
    study = studies.create(sys.argv[2], sys.argv[1], space=space, trainer=trainer, strategy=search.Random(seed=5),
                           load_if_exists=True)
    study.optimize(trials=8, population=4, progress=False, checkpoint_seconds=0, flush_seconds=0)
    print(json.dumps([(t.config, t.value, t.state, t.epochs) for t in study.trials]))
    """
)


def _epochs_written(db):
    with sqlite3.connect(db, timeout=30) as con:
        return con.execute("select count(*) from trial_intermediate_values").fetchone()[0]


def test_a_population_killed_mid_epoch_resumes_with_no_trial_lost_or_repeated(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    url = f"sqlite:///{tmp_path / 'k.db'}"
    reference = subprocess.run([sys.executable, str(script), url, "reference"], capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr[-3000:]
    proc = subprocess.Popen([sys.executable, str(script), url, "killed"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    before = _epochs_written(tmp_path / "k.db")
    def past_second_epoch() -> bool:
        # every member's second epoch recorded: the checkpoint of its first (written before the second
        # epoch trains) exists, so the kill lands mid-epoch on trials that can continue from a checkpoint
        # (a kill before any checkpoint is the re-queue path, tested in test_kill.py)
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        return _epochs_written(tmp_path / "k.db") >= before + 8

    wait_for(past_second_epoch, "the first population to pass its second epoch")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run([sys.executable, str(script), url, "killed"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = json.loads(resumed.stdout.strip().splitlines()[-1])
    want = json.loads(reference.stdout.strip().splitlines()[-1])
    assert [g[0] for g in got] == [w[0] for w in want]  # the same proposals, none lost or repeated
    assert [g[2:] for g in got] == [["complete", 4]] * 8
    assert all(abs(g[1] - w[1]) <= TOL for g, w in zip(got, want, strict=True))


def test_the_cli_trains_populations(tmp_path, capsys):
    from tunelab.studies.cli import main as cli

    study = _study(tmp_path, "cli")
    study.optimize(trials=1, progress=False)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    assert cli(["resume", "--storage", url, "--study", "cli", "--trials", "5", "--population", "4", "--quiet"]) == 0
    assert [t.state for t in studies.load("cli", url).trials] == ["complete"] * 5
    assert cli(["resume", "--storage", url, "--study", "cli", "--trials", "6", "--population", "0", "--quiet"]) == 2
    assert "population must be an int >= 1" in capsys.readouterr().err


def _population_sizes(monkeypatch):
    """The member counts of every population the study trains (what `run_population` builds)."""
    import tunelab.trainers.population as module

    sizes = []

    class Counted(module.Population):
        def fit(self, members, **kwargs):
            sizes.append(len(members))
            return super().fit(members, **kwargs)

    monkeypatch.setattr(module, "Population", Counted)
    return sizes


def test_on_a_realistic_space_trials_of_one_shape_form_one_population(tmp_path, monkeypatch):
    from tunelab.trainers.population import architecture

    space = spaces.optimizers(["adamw", "sgd"]) | spaces.mlp(depth=2, width=24)  # default dropout and activation
    trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=1), epochs=1, seed=0)
    configs = [space.sample(np.random.default_rng(i)) for i in range(16)]
    every_model_value = {tuple(sorted((k, v) for k, v in c.items() if k.startswith("model"))) for c in configs}
    assert len(every_model_value) == 16  # what grouped members before: 16 groups of one
    assert len({architecture(c, trainer) for c in configs}) == 1  # now: one

    def study(name, population):
        s = studies.create(name, f"sqlite:///{tmp_path / 'r.db'}", space=space, trainer=trainer,
                           strategy=search.Random(seed=1))
        s.optimize(trials=32, population=population, progress=False)
        return s

    sizes = _population_sizes(monkeypatch)
    together = study("together", 16)
    assert sizes == [16, 16]
    alone = study("alone", 1)
    assert [t.config for t in together.trials] == [t.config for t in alone.trials]  # the same trials, same order
    assert {len({t.config["model.activation"] for t in together.trials})} == {3}  # mixed activations together


def test_the_planner_asks_ahead_to_fill_populations_without_changing_the_trials(tmp_path, monkeypatch):
    space = (spaces.optimizers(["adamw", "sgd"])
             | spaces.mlp(depth=1, width=spaces.Categorical((8, 16, 24)), dropout=0.0, activation="relu"))
    trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=1), epochs=1, seed=0)

    def study(name, population):
        s = studies.create(name, f"sqlite:///{tmp_path / 'f.db'}", space=space, trainer=trainer,
                           strategy=search.Random(seed=2))
        s.optimize(trials=24, population=population, progress=False)
        return s

    sizes = _population_sizes(monkeypatch)
    together = study("together", 4)
    alone = study("alone", 1)
    assert [t.config for t in together.trials] == [t.config for t in alone.trials]
    assert [t.number for t in together.trials] == list(range(24))
    assert {t.state for t in together.trials} == {"complete"}
    widths = [t.config["model.width"] for t in together.trials]
    # asking K at a time and grouping each ask's trials (the planner before) makes a unit per width per 4 asks
    before = sum(len(set(widths[i:i + 4])) for i in range(0, 24, 4))
    units = len(sizes) + (24 - sum(sizes))  # populations, and trials that trained alone
    assert units < before and sizes.count(4) >= 4, (sizes, before)
