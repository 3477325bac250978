"""A database someone hands you runs no code and touches no file outside its artifact folder."""

import sys
import textwrap

import optuna
import pytest
from conftest import small_space

from tunelab import search, studies
from tunelab.studies.cli import main
from tunelab.studies.recipes import STRATEGY, TRAINER, untrusted_imports

EVIL = textwrap.dedent(
    """
    import pathlib
    import optuna
    from tunelab import search
    from tunelab import trainers

    MARKER = pathlib.Path({marker!r})

    def workload(**kwargs):
        MARKER.write_text("workload factory ran")
        return trainers.workloads.mnist1d(n_train=256, max_epochs=2)

    class Strat(search.Random):
        name = ""  # not registered: only its import path names it

    class Sampler(optuna.samplers.RandomSampler):
        pass

    MARKER.write_text("module imported")
    """
)


@pytest.fixture
def evil(tmp_path, monkeypatch):
    """A module `evilpkg_x` on sys.path that leaves a marker file when it is imported or called."""
    marker = tmp_path / "pwned"
    (tmp_path / "evilpkg_x.py").write_text(EVIL.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop("evilpkg_x", None)


def _study(tmp_path, small_trainer, name="s", **kw):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study = studies.create(name, url, space=small_space(), trainer=small_trainer, strategy=search.Random(seed=0), **kw)
    return study, url


def _edit(url, name, key, value):
    st = optuna.storages.RDBStorage(url)
    st.set_study_user_attr(st.get_study_id_from_name(name), key, value)


def test_a_foreign_workload_factory_is_refused_by_load_and_cli_and_list_only_marks_it(tmp_path, small_trainer, evil,
                                                                                     capsys):
    study, url = _study(tmp_path, small_trainer)
    spec = study.attrs()[TRAINER]
    spec["workload"] = {"name": "mine", "factory": "evilpkg_x:workload", "kwargs": {}}
    _edit(url, "s", TRAINER, spec)

    with pytest.raises(studies.UntrustedImportError, match=r"evilpkg_x:workload.*trust=\['evilpkg_x'\]") as err:
        studies.load("s", url)
    assert err.value.path == "evilpkg_x:workload" and "--trust evilpkg_x" in str(err.value)
    assert not evil.exists() and "evilpkg_x" not in sys.modules

    assert main(["list", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "s " in out and "untrusted code: evilpkg_x:workload" in out
    assert main(["show", "--storage", url, "--study", "s"]) == 0  # reading needs only what is stored
    capsys.readouterr()
    assert main(["resume", "--storage", url, "--study", "s", "--trials", "3", "--quiet"]) == 2  # training needs code
    assert "--trust evilpkg_x" in capsys.readouterr().err
    assert not evil.exists() and "evilpkg_x" not in sys.modules

    # consent: the caller names the package, or passes the trainer itself
    loaded = studies.load("s", url, trust=["evilpkg_x"])
    assert evil.read_text() == "workload factory ran" and loaded.trainer.workload.name == "mnist1d"
    assert main(["list", "--storage", url, "--trust", "evilpkg_x"]) == 0
    assert "untrusted" not in capsys.readouterr().out


def test_os_system_as_a_factory_runs_nothing(tmp_path, small_trainer, capsys):
    study, url = _study(tmp_path, small_trainer)
    marker = tmp_path / "shell-ran"
    spec = study.attrs()[TRAINER]
    spec["workload"] = {"name": "x", "factory": "os:system", "kwargs": {"command": f"touch {marker}"}}
    _edit(url, "s", TRAINER, spec)
    assert main(["list", "--storage", url]) == 0
    assert "untrusted code: os:system" in capsys.readouterr().out
    with pytest.raises(studies.UntrustedImportError, match="os:system"):
        studies.load("s", url)
    assert not marker.exists()


@pytest.mark.parametrize("spec", [
    {"name": "evilpkg_x:Strat", "args": {"seed": 0}},
    {"name": "optuna", "args": {"sampler": "evilpkg_x:Sampler", "seed": 0}},
])
def test_a_foreign_strategy_or_sampler_is_refused_until_trusted(tmp_path, small_trainer, evil, spec):
    _, url = _study(tmp_path, small_trainer)
    _edit(url, "s", STRATEGY, spec)
    with pytest.raises(studies.UntrustedImportError, match="evilpkg_x"):
        studies.load("s", url)
    assert not evil.exists() and "evilpkg_x" not in sys.modules
    assert untrusted_imports({}, spec) == [spec["name"] if ":" in spec["name"] else spec["args"]["sampler"]]
    study = studies.load("s", url, trust="evilpkg_x")
    assert evil.exists() and study.strategy.spec()["args"]["seed"] == 0


def test_builtin_strategies_samplers_and_workloads_load_by_name_without_trust(tmp_path, small_trainer):
    import optuna as opt

    for i, strategy in enumerate((search.Bayesian(seed=1), search.OptunaSampler(opt.samplers.TPESampler(seed=0)),
                                  search.OptunaSampler("qmc"), search.Evolution(seed=2))):
        url = f"sqlite:///{tmp_path / f'{i}.db'}"
        studies.create("s", url, space=small_space(), trainer=small_trainer, strategy=strategy)
        assert studies.load("s", url).strategy == strategy


def test_a_sampler_path_must_name_a_sampler_class(tmp_path, small_trainer):
    _, url = _study(tmp_path, small_trainer)
    _edit(url, "s", STRATEGY, {"name": "optuna", "args": {"sampler": "optuna.samplers._base:abc", "seed": 0}})
    with pytest.raises(studies.ConfigError, match="not an Optuna sampler class"):
        studies.load("s", url)


def test_trust_entries_are_package_names_not_wildcards(tmp_path, small_trainer):
    _, url = _study(tmp_path, small_trainer)
    for bad in ("*", "../x", ["ok", 3]):
        with pytest.raises(studies.ConfigError, match="no wildcard"):
            studies.load("s", url, trust=bad)


def test_a_comparison_manifest_naming_foreign_code_is_refused(tmp_path, evil):
    from tunelab.studies.compare import MANIFEST

    url = f"sqlite:///{tmp_path / 'c.db'}"
    optuna.create_study(study_name="cmp", storage=url, direction="maximize")
    problem = studies.problems.get("mnist1d_mlp")(epochs=1)
    manifest = {"problems": [problem.spec()], "optimizers": ["sgd"], "schedules": ["constant"],
                "budget": {"trials": 2}, "strategy": {"name": "evilpkg_x:Strat", "args": {"seed": 0}}, "seeds": [0],
                "reruns": 1, "equalize": "epochs", "one_shot": False}
    manifest["problems"][0]["trainer"]["workload"]["factory"] = "evilpkg_x:workload"
    _edit(url, "cmp", MANIFEST, manifest)
    with pytest.raises(studies.UntrustedImportError, match="evilpkg_x:workload"):
        studies.Comparison.load("cmp", url)
    assert not evil.exists()


def test_list_marks_a_broken_study_and_lists_the_others(tmp_path, small_trainer, capsys):
    _, url = _study(tmp_path, small_trainer, name="good")
    studies.create("bad", url, space=small_space(), trainer=small_trainer)
    _edit(url, "bad", TRAINER, "not a dict")
    assert main(["list", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "bad" in out and "cannot be read" in out and "good" in out and "0/0 complete" in out


@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_a_stored_checkpoint_path_outside_the_artifact_folder_is_refused(tmp_path, small_trainer, where):
    from tunelab.studies.driver import Budget, Driver
    from tunelab.studies.records import CHECKPOINT, TrialState

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    study, _ = _study(tmp_path, small_trainer)
    driver = Driver(study, Budget(trials=1), n_workers=1, executor="local", progress=False, checkpoint_seconds=None,
                    max_failures=1, flush_seconds=0.0)
    driver.load()
    row = driver.recorder.create_trial(small_space().default(), proposal=0, target=2, attrs={},
                                       state=TrialState.RUNNING)
    stored = str(victim) if where == "absolute" else "../victim.txt"
    study.storage.set_trial_system_attr(row.trial_id, CHECKPOINT, stored)
    with pytest.raises(studies.StorageError, match=r"names its checkpoint .*victim\.txt.*refuses"):
        study.optimize(trials=1, progress=False)
    with pytest.raises(studies.StorageError, match="victim"):
        study.checkpoint(row.number)
    assert victim.read_text() == "precious"


def test_report_without_out_stays_in_the_working_directory(tmp_path, small_trainer, monkeypatch, capsys):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    study = studies.create("../../x", url, space=small_space(), trainer=small_trainer)
    study.optimize(trials=1, progress=False)
    monkeypatch.chdir(work)
    assert main(["report", "--storage", url, "--study", "../../x"]) == 0
    assert not (tmp_path / "x-report").exists()
    made = [p for p in work.iterdir() if p.is_dir()]
    assert len(made) == 1 and (made[0] / "README.md").exists() and ".." not in made[0].name.split("_")[0]
