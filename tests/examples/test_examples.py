"""Every example in `examples/` runs, on small settings (the examples' own command-line options)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tunelab import studies

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def examples(monkeypatch, tmp_path):
    """The examples importable by name (as when run from their folder); the working directory a temporary one."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_character_language_model_tunes_bits_per_character_on_the_shared_trainer(examples):
    import char_lm

    url = f"sqlite:///{examples / 'lm.db'}"
    best = char_lm.main(["--chars", "20000", "--block", "32", "--trials", "2", "--epochs-per-trial", "2",
                         "--storage", url])
    study = studies.load("char_lm-random-0", url, trust=["char_lm"])
    trials = study.trials
    assert study.direction == "minimize" and len(trials) == 2 and all(len(t.curve) == 2 for t in trials)
    assert 0.5 < best.value < 7.0  # bits per character: below a uniform guess over 128 characters
    assert {t.config["optimizer"] for t in trials} <= {"adamw", "lion", "sgd"}
    assert all(t.config["model"] == "char_transformer" for t in trials)


@pytest.mark.parametrize("strategy", ["asha", "freeze_thaw"])
def test_the_hand_written_loop_is_tuned_by_multi_fidelity_strategies(examples, strategy):
    import own_loop

    url = f"sqlite:///{examples / 'loop.db'}"
    own_loop.main(["--strategy", strategy, "--epochs", "10", "--epochs-per-trial", "4", "--n-train", "300",
                   "--storage", url])
    trials = studies.load(f"own_loop-{strategy}-0", url, read_only=True).trials
    assert sum(t.epochs for t in trials) <= 10 and len(trials) >= 3
    assert all(t.state in ("complete", "paused", "pruned") for t in trials)
    assert all(0.0 <= t.curve[-1] <= 1.0 for t in trials)


def test_the_scikit_learn_objective_is_tuned_by_bayesian_search(examples):
    import sklearn_objective

    best = sklearn_objective.main(["--trials", "3", "--storage", f"sqlite:///{examples / 'sk.db'}"])
    assert 0.0 < best.value < 0.7 and 0.5 < best.metrics["accuracy"][-1] <= 1.0


def test_your_own_module_registered_as_a_family_trains_in_a_study(examples):
    import own_model

    best = own_model.main(["--trials", "2", "--epochs-per-trial", "2", "--storage",
                           f"sqlite:///{examples / 'own.db'}"])
    assert best.config["model"] == "small_convnet" and 0.0 <= best.value <= 1.0


def test_rerunning_a_script_whose_loop_lives_in_main_continues_its_study(tmp_path):
    command = [sys.executable, str(EXAMPLES / "own_loop.py"), "--strategy", "asha", "--epochs-per-trial", "2",
               "--n-train", "200", "--storage", f"sqlite:///{tmp_path / 'script.db'}"]
    first = subprocess.run([*command, "--epochs", "4"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    url = f"sqlite:///{tmp_path / 'script.db'}"
    before = {t.number: t.epochs for t in studies.load("own_loop-asha-0", url, read_only=True).trials}
    again = subprocess.run([*command, "--epochs", "7"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    study = studies.load("own_loop-asha-0", url, read_only=True)
    after = {t.number: t.epochs for t in study.trials}
    assert sum(before.values()) <= 4 < sum(after.values()) <= 7  # a total budget: the rerun adds what is left
    assert all(after[n] >= e for n, e in before.items())  # nothing trained before was lost or started over
    assert study.stored_trainer["workload"]["function"] == "__main__:train"


@pytest.mark.parametrize("strategy", ["freeze_thaw", "asha"])
def test_the_multi_fidelity_tutorial_script_spends_an_epoch_budget(examples, strategy):
    import multi_fidelity

    url = f"sqlite:///{examples / 'mf.db'}"
    multi_fidelity.main(["--strategy", strategy, "--epochs", "12", "--epochs-per-trial", "4", "--n-train", "300",
                         "--storage", url])
    trials = studies.load(f"multi_fidelity-{strategy}", url, read_only=True).trials
    assert sum(t.epochs for t in trials) <= 12 and len(trials) >= 3  # many configurations, few epochs each


@pytest.mark.parametrize("strategy", ["evolution", "darts"])
def test_the_architecture_search_tutorial_script_finds_a_cell(examples, strategy):
    import architecture_search

    best = architecture_search.main(["--strategy", strategy, "--trials", "3", "--epochs", "1", "--search-epochs", "1",
                                     "--n-train", "300", "--storage", f"sqlite:///{examples / 'arch.db'}"])
    assert best.genotype.count("~") == 6 and best.n_params > 0  # a whole cell: six edges


def test_the_self_tuning_tutorial_script_learns_and_replays_a_schedule(examples):
    import self_tuning

    best = self_tuning.main(["--epochs", "2", "--n-train", "300", "--storage", f"sqlite:///{examples / 'stn.db'}"])
    run, replay = studies.load("self-tuning", f"sqlite:///{examples / 'stn.db'}", read_only=True).trials
    assert set(run.results["schedule"]) >= {"model.input_dropout", "model.input_noise", "model.shift"}
    assert best is not None and replay.state == "complete"


@pytest.mark.parametrize("strategy", ["nsga2", "asha"])
def test_the_several_objectives_tutorial_script_prints_a_front(examples, strategy, capsys):
    import several_objectives

    front = several_objectives.main(["--strategy", strategy, "--trials", "4", "--epochs", "2", "--n-train", "300",
                                     "--storage", f"sqlite:///{examples / 'mo.db'}"])
    assert front and all(len(t.values) == 2 and t.values[1] > 0 for t in front)
    assert "hypervolume" in capsys.readouterr().out
