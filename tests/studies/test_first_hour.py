"""A new user's own data: the CLI reads any study from its database, bad data is refused, Ctrl-C, small things."""

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from conftest import small_space

from tunelab import search, spaces, studies, trainers
from tunelab.studies.cli import main

USER_DATA = textwrap.dedent(
    """
    import numpy as np
    from tunelab import trainers

    def make():
        rng = np.random.default_rng(0)
        x = rng.normal(size=(300, 6)).astype("float32")
        y = (x[:, 0] + x[:, 1] > 0).astype("int64")
        return trainers.Workload.from_tensors(x, y, name="blobs", max_epochs=2)
    """
)


@pytest.fixture
def user_study(tmp_path, monkeypatch):
    """A study on the user's own tensors, and the module that makes them (in the working directory)."""
    (tmp_path / "mydata.py").write_text(USER_DATA)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    import mydata

    url = f"sqlite:///{tmp_path / 'own.db'}"
    trainer = trainers.Trainer(mydata.make(), epochs=2, seed=0)
    study = studies.create("own", url, space=small_space(), trainer=trainer, strategy=search.Random(seed=0))
    study.optimize(trials=2, progress=False)
    yield study, url
    sys.modules.pop("mydata", None)


def test_read_only_commands_work_from_the_database_alone(user_study, tmp_path, capsys):
    study, url = user_study
    assert main(["list", "--storage", url]) == 0
    assert "2/2 complete" in capsys.readouterr().out
    assert main(["show", "--storage", url, "--study", "own"]) == 0
    out = capsys.readouterr().out
    assert "workload blobs" in out and out.count("complete") >= 2 and "val accuracy" in out
    assert main(["report", "--storage", url, "--study", "own", "--out", str(tmp_path / "rep")]) == 0
    assert "`blobs`" in (tmp_path / "rep" / "README.md").read_text()
    ro = studies.load("own", url, read_only=True)
    assert ro.read_only and ro.metric == "accuracy" and [t.value for t in ro.trials] == [t.value for t in study.trials]
    assert ro.report(tmp_path / "rep2").exists()
    with pytest.raises(studies.ReadOnlyStudyError, match="opened read-only"):
        ro.optimize(trials=3)


def test_resume_takes_the_users_workload(user_study, capsys):
    _, url = user_study
    assert main(["resume", "--storage", url, "--study", "own", "--trials", "3", "--quiet"]) == 2
    assert "--workload module:function" in capsys.readouterr().err
    assert main(["resume", "--storage", url, "--study", "own", "--trials", "3", "--quiet",
                 "--workload", "mydata:make"]) == 0
    assert [t.state for t in studies.load("own", url, read_only=True).trials] == ["complete"] * 3


def test_a_recipe_lets_a_trusted_load_rebuild_the_users_data(user_study):
    import mydata

    _, url = user_study
    w = mydata.make()
    recipe = {"factory": "mydata:make", "kwargs": {}}
    rw = trainers.Workload.from_tensors(w.train.x, w.train.y, x_val=w.val.x, y_val=w.val.y, name="blobs2",
                                        recipe=recipe)
    studies.create("rec", url, space=small_space(), trainer=trainers.Trainer(rw, epochs=2))
    with pytest.raises(studies.UntrustedImportError, match="mydata:make"):
        studies.load("rec", url)


def test_other_data_under_a_used_study_name_is_a_conflict(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(100, 4)).astype("float32"), rng.integers(0, 2, 100)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    first = trainers.Trainer(trainers.Workload.from_tensors(x, y, name="mine"), epochs=2)
    studies.create("s", url, space=small_space(), trainer=first)
    again = trainers.Trainer(trainers.Workload.from_tensors(x.copy(), y.copy(), name="mine"), epochs=2)
    studies.create("s", url, space=small_space(), trainer=again)  # the same data: the same study
    other = trainers.Trainer(trainers.Workload.from_tensors(x + 1, y, name="mine"), epochs=2)
    with pytest.raises(studies.StudyConflictError, match="other data under the same workload name"):
        studies.create("s", url, space=small_space(), trainer=other)
    with pytest.raises(studies.StudyConflictError, match="other data"):
        studies.load("s", url, trainer=other)


@pytest.mark.parametrize(("where", "match"), [("x", "x_train holds 3 non-finite"), ("y", "y_train holds 1 non-finite"),
                                              ("x_val", "x_val holds 3 non-finite")])
def test_non_finite_data_is_refused_with_the_rows_and_the_fix(where, match):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)), rng.normal(size=50)
    xv, yv = rng.normal(size=(10, 3)), rng.normal(size=10)
    {"x": x, "y": y, "x_val": xv}[where][3 if where != "y" else 7] = np.inf if where == "y" else np.nan
    with pytest.raises(studies.WorkloadError, match=rf"{match}.* in 1 examples \(rows \[\d\]\).*torch.isfinite"):
        trainers.Workload.from_tensors(x, y, x_val=xv, y_val=yv, task="regression")


def test_bad_shapes_and_labels_are_refused_or_warned_about():
    with pytest.raises(studies.WorkloadError, match=r"reshape\(-1, 1\)"):
        trainers.Workload.from_tensors(np.arange(20.0), np.arange(20) % 2)
    with pytest.raises(studies.WorkloadError, match="task='regression'"):
        trainers.Workload.from_tensors(np.ones((30, 2)), np.arange(30) * 7919)  # counts, not classes
    x, y = np.ones((40, 2)), np.array([0, 1] * 20)
    with pytest.warns(UserWarning, match=r"validation classes \[2\] never occur"):
        trainers.Workload.from_tensors(x, y, x_val=np.ones((3, 2)), y_val=np.array([0, 1, 2]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainers.Workload.from_tensors(x, y, x_val=np.ones((2, 2)), y_val=np.array([0, 1]))


def test_a_study_whose_first_trials_all_diverge_at_once_stops_and_blames_data_or_space(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(200, 4)) * 1e30).astype("float32")  # unscaled data: every run overflows at once
    y = rng.normal(size=200).astype("float32") * 1e30
    trainer = trainers.Trainer(trainers.Workload.from_tensors(x, y, task="regression"), epochs=3)
    study = studies.create("div", f"sqlite:///{tmp_path / 'd.db'}", space=small_space(), trainer=trainer)
    with pytest.raises(studies.TrialError, match=r"first epoch.*points at the data"):
        study.optimize(trials=10, progress=False, max_failures=3)
    assert len(study.trials) == 3 and all("diverged" in t.error for t in study.trials)


def test_report_into_a_file_and_list_on_a_mistyped_path_are_clear_errors(tmp_path, small_trainer, capsys):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    studies.create("r", url, space=small_space(), trainer=small_trainer).optimize(trials=1, progress=False)
    (tmp_path / "afile").write_text("x")
    assert main(["report", "--storage", url, "--study", "r", "--out", str(tmp_path / "afile")]) == 2
    assert "is a file" in capsys.readouterr().err
    typo = tmp_path / "tunlab.db"
    assert main(["list", "--storage", f"sqlite:///{typo}"]) == 2
    assert "no database at" in capsys.readouterr().err and not typo.exists()
    with pytest.raises(studies.StorageError, match="no database at"):
        studies.load("r", f"sqlite:///{typo}")
    assert not typo.exists()


def test_show_into_a_closed_pipe_ends_quietly(tmp_path, small_trainer):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    studies.create("p", url, space=small_space(), trainer=small_trainer).optimize(trials=3, progress=False)
    shown = subprocess.run(f"{sys.executable} -m studies.cli show --storage {url} | head -1", shell=True,
                           capture_output=True, text=True, check=True)
    assert shown.stdout.startswith("study 'p'") and "Error" not in shown.stderr


def test_resume_help_documents_the_budget_options(capsys):
    with pytest.raises(SystemExit):
        main(["resume", "--help"])
    out = capsys.readouterr().out
    assert "total trials of the study" in out and "--workload" in out


def test_torch_tensors_pass_the_checks_unchanged():
    x, y = torch.randn(64, 3), torch.randint(0, 3, (64,))
    w = trainers.Workload.from_tensors(x, y, val_fraction=0.25)
    assert w.n_outputs == 3 and len(w.train) == 48 and w.fingerprint() == w.fingerprint()


# ---------------------------------------------------------------------- ranges users choose
def test_a_widened_range_trains_and_an_impossible_one_is_refused_at_create(tmp_path, small_trainer):
    from tunelab.spaces import Float

    url = f"sqlite:///{tmp_path / 'w.db'}"
    wide = spaces.optimizers(["sgd", "adamw"]).replace(**{
        "sgd.lr": Float(1.0, 10.0, log=True), "adamw.weight_decay": Float(1e-9, 1e-6, log=True)}) | spaces.mlp()
    study = studies.create("wide", url, space=wide, trainer=small_trainer, strategy=search.Random(seed=0))
    study.optimize(trials=4, progress=False)
    for t in study.trials:  # a result (maybe a divergence), never "invalid config"
        assert t.state == "complete" or t.error.startswith("diverged"), t.error
    assert any(t.config["optimizer"] == "adamw" and t.state == "complete" for t in study.trials)
    bad = spaces.optimizers(["sgd"]).replace(**{"sgd.lr": Float(-1.0, 1.0)}) | spaces.mlp()
    with pytest.raises(studies.ConfigError, match=r"range of sgd\.lr .* includes -1\.0.*Invalid learning rate"):
        studies.create("bad", url, space=bad, trainer=small_trainer)


def test_replace_keeps_conditions_and_round_trips(tmp_path):
    from tunelab.spaces import Float, SpaceError

    space = spaces.optimizers(["sgd", "adamw"]).replace(**{"sgd.lr": Float(1e-3, 10.0, log=True)})
    assert space["sgd.lr"].high == 10.0
    configs = [space.sample(np.random.default_rng(i)) for i in range(20)]
    assert all(("sgd.lr" in c) == (c["optimizer"] == "sgd") for c in configs)
    assert spaces.Space.from_json(space.to_json()) == space
    with pytest.raises(SpaceError, match=r"no parameter 'sgd\.lrr'"):
        space.replace(**{"sgd.lrr": Float(1, 2)})
    with pytest.raises(SpaceError, match="Choice"):
        space.replace(optimizer=spaces.Fixed("sgd"))


def test_merge_conflicts_suggest_the_right_fix():
    from tunelab.spaces import SpaceError

    with pytest.raises(SpaceError, match=r"one call: spaces.optimizers\(\['sgd', 'adamw'"):
        spaces.optimizers(["sgd"]) | spaces.optimizers(["adamw"])
    with pytest.raises(SpaceError, match="one architecture family"):
        spaces.mlp() | spaces.cnn(dim=1)


def test_the_readme_evolution_space_trains(tmp_path, small_trainer):
    space = (spaces.Space(optimizer=spaces.Fixed("adamw"), schedule=spaces.Fixed("cosine"),
                          **{"adamw.lr": spaces.Float(1e-4, 1e-1, log=True),
                             "adamw.weight_decay": spaces.Float(1e-6, 1e-1, log=True)})
             | spaces.cells(dim=1, channels=16, cells_per_stage=1))
    study = studies.create("nas", f"sqlite:///{tmp_path / 'n.db'}", space=space, trainer=small_trainer,
                           strategy=search.Evolution(population=10, sample=3, seed=0, max_params=100_000))
    study.optimize(trials=2, progress=False)
    assert [t.state for t in study.trials] == ["complete", "complete"]


# ---------------------------------------------------------------------- small things
def test_rerunning_a_finished_study_says_it_is_complete(tmp_path, small_trainer, capsys):
    study = studies.create("f", f"sqlite:///{tmp_path / 'f.db'}", space=small_space(), trainer=small_trainer)
    study.optimize(trials=2, progress=False)
    capsys.readouterr()
    study.optimize(trials=2, progress=True)
    out = capsys.readouterr().out
    assert "is complete: its budget trials=2 is spent (2 complete trials)" in out


def test_warnings_for_settings_that_run_but_mislead(tmp_path, small_trainer):
    import os

    url = f"sqlite:///{tmp_path / 'w.db'}"
    with pytest.warns(UserWarning, match="searches for the worst"):
        studies.create("worst", url, space=small_space(), trainer=small_trainer, direction="minimize")
    study = studies.create("ok", url, space=small_space(), trainer=small_trainer)
    with pytest.warns(UserWarning, match="more than this machine's"), pytest.raises(studies.BudgetError, match="=0"):
        study.optimize(trials=0, n_workers=(os.cpu_count() or 1) + 1, progress=False)
    ft = studies.create("ft", url, space=small_space(), trainer=small_trainer, strategy=search.FreezeThaw(seed=0))
    with pytest.warns(UserWarning, match="give it epochs"), pytest.raises(studies.BudgetError, match="trains nothing"):
        ft.optimize(trials=0, progress=False)


def test_the_objective_is_named_for_optuna_dashboard(tmp_path, small_trainer):
    import optuna

    url = f"sqlite:///{tmp_path / 'm.db'}"
    studies.create("m", url, space=small_space(), trainer=small_trainer)
    assert optuna.load_study(study_name="m", storage=url).metric_names == ["accuracy"]


def test_another_applications_sqlite_file_is_left_alone(tmp_path, small_trainer):
    import sqlite3

    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    with pytest.raises(studies.StorageError, match=r"another application.*users"):
        studies.create("s", f"sqlite:///{path}", space=small_space(), trainer=small_trainer)
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["users"]
    (tmp_path / "notes.db").write_text("not a database at all, just text" * 100)
    with pytest.raises(studies.StorageError, match="not an SQLite database"):
        studies.create("s", f"sqlite:///{tmp_path / 'notes.db'}", space=small_space(), trainer=small_trainer)


def test_cmaes_without_its_package_fails_at_construction(monkeypatch):
    monkeypatch.setitem(sys.modules, "cmaes", None)  # as if it were not installed
    with pytest.raises(studies.ConfigError, match="pip install cmaes"):
        search.OptunaSampler("cmaes")


def test_the_demo_hint_names_a_command_that_works_from_here(monkeypatch, tmp_path):
    from tunelab.studies.cli import _self_command

    exe = tmp_path / ".venv" / "bin" / "tunelab"
    exe.parent.mkdir(parents=True)
    exe.write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(exe), "demo"])
    monkeypatch.setenv("PATH", "/nonexistent")
    assert _self_command() == ".venv/bin/tunelab"


def test_the_report_names_the_metric_and_qualifies_a_thin_importance_estimate(tmp_path, small_trainer):
    study = studies.create("rep", f"sqlite:///{tmp_path / 'r.db'}", space=small_space(), trainer=small_trainer,
                           strategy=search.Random(seed=0))
    study.optimize(trials=4, progress=False)
    md = study.report(tmp_path / "out").read_text()
    assert "![Parameter importance (fANOVA)](importance.png)" in md and "rough guide" in md
    assert (tmp_path / "out" / "curves.png").stat().st_size > 1000
