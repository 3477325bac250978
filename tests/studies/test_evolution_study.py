"""Evolution in real studies: cell spaces with sizes and genotypes, limits, workers, kill and resume."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import optuna
import pytest
from conftest import small_space
from freezing import FREEZE, run_until_frozen

from tunelab import search, spaces, studies
from tunelab.studies.cli import main as cli

SHAPES = {"input_shape": (40,), "n_outputs": 10}


def cell_space():
    return spaces.optimizers(["adamw"]) | spaces.cells(dim=1, channels=8, cells_per_stage=1)


def test_cell_study_records_size_and_genotype_and_respects_a_parameter_limit(tmp_path, small_trainer, capsys):
    space = cell_space()
    sizes = [spaces.param_count(space.sample(np.random.default_rng(i)), **SHAPES) for i in range(30)]
    limit = int(np.median(sizes))
    url = f"sqlite:///{tmp_path / 'c.db'}"
    study = studies.create("cells", url, space=space, trainer=small_trainer,
                           strategy=search.Evolution(population=3, sample=2, seed=0, max_params=limit))
    study.optimize(trials=6, progress=False)
    trials = studies.load("cells", url).trials
    assert [t.state for t in trials] == ["complete"] * 6
    for t in trials:
        size = spaces.model_size(t.config, **SHAPES)
        assert t.n_params == size.params <= limit and t.flops == size.flops > 0
        assert t.genotype == str(spaces.genotype(t.config))
    assert any(t.attrs["evolution"]["mutation"] in ("op", "edge", "param") for t in trials)
    frame = study.dataframe()
    assert {"n_params", "flops", "genotype"} <= set(frame.columns)
    assert frame["n_params"].tolist() == [t.n_params for t in trials]
    assert cli(["show", "--storage", url, "--study", "cells"]) == 0
    out = capsys.readouterr().out
    assert all(t.genotype in out for t in trials)


def test_mlp_trials_record_their_size_too(tmp_path, small_trainer):
    study = studies.create("m", f"sqlite:///{tmp_path / 'm.db'}", space=small_space(), trainer=small_trainer,
                           strategy=search.Random(seed=0))
    study.optimize(trials=2, progress=False)
    for t in study.trials:
        width = t.config["model.width"]
        assert t.n_params == 40 * width + width + width * 10 + 10  # one hidden layer
        assert t.flops == 2 * (40 * width + width * 10) and t.genotype is None


def test_asynchronous_workers_breed_children_from_finished_parents(tmp_path, small_trainer):
    study = studies.create("a", f"sqlite:///{tmp_path / 'a.db'}", space=small_space(), trainer=small_trainer,
                           strategy=search.Evolution(population=3, sample=2, seed=1))
    study.optimize(trials=9, n_workers=2, progress=False)
    trials = study.trials
    assert [t.state for t in trials] == ["complete"] * 9
    children = [t for t in trials if "parent" in t.attrs["evolution"]]
    assert len(children) >= 5
    for child in children:
        parent = trials[child.attrs["evolution"]["parent"]]
        assert parent.number < child.number and parent.state == "complete"


SCRIPT = FREEZE + textwrap.dedent(
    """
    import sys
    from tunelab import search, spaces, studies, trainers

    url = sys.argv[1]
    trainer = freeze_at(trainers.Trainer(trainers.workloads.mnist1d(n_train=512), epochs=8, seed=0))
    space = spaces.optimizers(["adamw", "sgd"]) | spaces.mlp(width=spaces.Int(8, 64, log=True), depth=1)
    study = studies.create("evo", url, space=space, trainer=trainer,
                           strategy=search.Evolution(population=4, sample=2, seed=0))
    study.optimize(trials=12, progress=False, flush_seconds=0.0)
    """
)


def population(url, what="number"):
    study = studies.load("evo", url)
    return [getattr(t, what) for t in study.strategy.members(study.history())]


@pytest.mark.slow  # about 20 s: three study processes
def test_population_after_a_sigkill_and_resume_equals_the_population_before(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    ref_url = f"sqlite:///{tmp_path / 'ref.db'}"
    subprocess.run([sys.executable, str(script), ref_url], check=True, timeout=1200)
    reference = studies.load("evo", ref_url).trials

    url = f"sqlite:///{tmp_path / 'k.db'}"
    proc = run_until_frozen(script, [url], tmp_path / "frozen", 6 * 8 + 4)  # 6 trials done, the 7th at epoch 4
    trials = optuna.load_study(study_name="evo", storage=url).get_trials()
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 6
    assert any(t.state == optuna.trial.TrialState.RUNNING and t.intermediate_values for t in trials)
    before = population(url)  # what the process would breed its next child from
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(before) == 4
    assert population(url) == before  # rebuilt from the database alone, by a new process's load

    resumed = subprocess.run([sys.executable, str(script), url], capture_output=True, text=True, timeout=1200)
    assert resumed.returncode == 0, resumed.stderr
    trials = [t for t in studies.load("evo", url).trials if t.state == "complete"]

    def bred(ts):  # a re-queued trial gets a new number: compare what was bred, not where it sits
        return sorted(repr((t.config, t.attrs["evolution"].get("parent") is not None, t.value)) for t in ts)

    # the continued study bred exactly the children of the uninterrupted one, and ends with its population
    assert bred(trials) == bred(reference)
    assert population(url, "config") == population(ref_url, "config")


def test_demo_cli_offers_evolution():
    from tunelab.studies.cli import STRATEGIES, _strategy

    assert "evolution" in STRATEGIES and _strategy("evolution", 3) == search.Evolution(seed=3)
