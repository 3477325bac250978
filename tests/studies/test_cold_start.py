"""Cold start: what the CLI and the packages import before they need it (each case in a fresh process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("torch", "gpytorch", "botorch")


def _run(code: str, tmp_path, *args: str) -> dict:
    """Run `code` in a fresh interpreter (with `HEAVY` defined); it must print one JSON line last."""
    env = {**os.environ, "TUNELAB_CACHE_DIR": str(tmp_path / "cache")}
    code = f"HEAVY = {HEAVY!r}\n" + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


CLI = """
    import contextlib, io, json, sys
    from tunelab.studies.cli import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = main(sys.argv[1:])
        except SystemExit as stop:
            code = stop.code
    print(json.dumps({"code": code, "out": out.getvalue(), "heavy": [m for m in HEAVY if m in sys.modules]}))
"""


@pytest.mark.parametrize("argv", [["--help"], ["list", "--help"], ["show", "--help"], ["--version"]])
def test_help_imports_no_torch(argv, tmp_path):
    got = _run(CLI, tmp_path, *argv)
    assert got["code"] == 0
    assert "tunelab" in got["out"]
    assert got["heavy"] == []


def test_list_of_an_empty_database_imports_no_torch(tmp_path):
    from tunelab import studies

    studies.open_storage(f"sqlite:///{tmp_path / 'x.db'}")  # Optuna's tables, no study
    got = _run(CLI, tmp_path, "list", "--storage", "sqlite:///x.db")
    assert (got["code"], got["out"].strip()) == (0, "no studies in sqlite:///x.db")
    assert got["heavy"] == []


def test_importing_the_packages_loads_nothing_heavy_until_a_name_is_used(tmp_path):
    got = _run("""
        import json, sys
        import tunelab.studies, tunelab.spaces
        from tunelab.studies import DEFAULT_STORAGE, StudyNotFoundError, TunelabError
        from tunelab.spaces import ConfigError, Float, Space
        from tunelab.spaces.trust import resolve
        before = [m for m in HEAVY if m in sys.modules]
        from tunelab import search  # every strategy (they register themselves): torch, but no gpytorch or BoTorch
        strategy = search.FreezeThaw  # until a curve model is fitted
        print(json.dumps({"before": before, "after": [m for m in HEAVY if m in sys.modules]}))
    """, tmp_path)
    assert got["before"] == []
    assert got["after"] == ["torch"], "a search module imports gpytorch or BoTorch at import time: import it in the " \
                                      "function that fits the model (the first trial of any study pays it otherwise)"


def test_every_public_name_still_resolves_to_what_it_was(tmp_path):
    got = _run("""
        import json, types
        # submodules imported directly first: the package names that shadow them must keep their meaning
        import tunelab.spaces.models, tunelab.spaces.cells, tunelab.spaces.optimizers, tunelab.spaces.schedules
        import tunelab.studies.compare, tunelab.studies.problems
        from tunelab import search, spaces, studies
        from tunelab.spaces.registry import Registry
        missing = [f"{p.__name__}.{n}" for p in (spaces, studies, search) for n in p.__all__
                   if n != "RayExecutor" and getattr(p, n, None) is None]
        print(json.dumps({
            "missing": missing,
            "registries": [isinstance(spaces.models, Registry), callable(spaces.cells),
                           isinstance(spaces.optimizers, Registry), isinstance(spaces.schedules, Registry),
                           isinstance(studies.problems, Registry)],
            "compare": isinstance(studies.compare, types.FunctionType) and studies.compare.__name__ == "compare",
            "cells_model": "cells" in spaces.models,  # registered by spaces/cells.py into spaces/models.py's registry
            "strategies": sorted(search.strategies.names()),
            "modules": [spaces.regularizers.__name__, spaces.stn.__name__],
        }))
    """, tmp_path)
    assert got["missing"] == []
    assert got["registries"] == [True] * 5
    assert got["compare"] and got["cells_model"]
    assert {"random", "bayesian", "freeze_thaw", "asha", "hyperband", "darts", "evolution"} <= set(got["strategies"])
    assert got["modules"] == ["tunelab.spaces.regularizers", "tunelab.spaces.stn"]


def test_the_public_api_is_unchanged_in_this_process():
    import types

    from tunelab import search, spaces, studies
    from tunelab.spaces.registry import Registry
    from tunelab.studies.opening import create
    from tunelab.studies.problems import problems

    assert studies.create is create and studies.problems is problems
    assert isinstance(studies.compare, types.FunctionType) and isinstance(spaces.models, Registry)
    assert {"create", "load", "Study", "RayExecutor", "close_workers"} <= set(dir(studies))
    assert {"mlp", "Space", "regularizers"} <= set(dir(spaces)) and "FreezeThawGP" in dir(search)
    with pytest.raises(AttributeError):
        studies.no_such_name  # noqa: B018
    with pytest.raises(AttributeError):
        spaces.no_such_name  # noqa: B018


@pytest.fixture(scope="module")
def stored(tmp_path_factory, small_trainer):
    """A database with two finished studies of 2 trials each: random search and Optuna's TPE (a sampler by name)."""
    from conftest import small_space

    from tunelab import search, studies

    url = f"sqlite:///{tmp_path_factory.mktemp('stored') / 'small.db'}"
    for name, strategy in (("small", search.Random(seed=0)), ("small-tpe", search.OptunaSampler("tpe", seed=0))):
        study = studies.create(name, url, space=small_space(), trainer=small_trainer, strategy=strategy)
        study.optimize(trials=2, progress=False)
    return url


def test_list_of_stored_studies_imports_no_torch(stored, tmp_path):
    got = _run(CLI, tmp_path, "list", "--storage", stored)
    assert got["code"] == 0 and got["heavy"] == []
    lines = got["out"].splitlines()
    assert lines[0].split() == ["study", "strategy", "workload", "trials", "best"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"small", "small-tpe"}
    assert rows["small"][1:5] == ["random", "mnist1d", "2/2", "complete"]
    assert rows["small-tpe"][1:5] == ["optuna", "mnist1d", "2/2", "complete"]
    assert "untrusted" not in got["out"]


def test_show_of_a_stored_study_imports_no_torch(stored, tmp_path):
    from tunelab import studies

    got = _run(CLI, tmp_path, "show", "--storage", stored, "--study", "small")
    assert got["code"] == 0 and got["heavy"] == []
    out = got["out"]
    assert out.startswith(f"study 'small' in {stored}: random(seed=0, quasi=False), workload mnist1d, 2 epochs")
    trials = studies.load("small", stored, read_only=True).trials
    best = max((t for t in trials if t.value is not None), key=lambda t: t.value)
    assert f"best: trial {best.number}, validation accuracy {best.value:.4f}" in out
    table = out.split("config / error\n", 1)[1].splitlines()
    assert [row.split()[:3] for row in table] == [[str(t.number), "complete", f"{t.value:.4f}"] for t in trials]
    assert all("optimizer=" in row for row in table)


def test_loading_to_train_still_rebuilds_the_trainer_and_the_strategy(stored):
    from tunelab import search, studies

    study = studies.load("small-tpe", stored)
    assert not study.read_only and study.trainer.epochs == 2
    assert isinstance(study.strategy, search.OptunaSampler) and study.strategy.spec()["args"]["sampler"] == "tpe"
    assert study.budget() == {"trials": 2, "epochs": None, "seconds": None, "grad_evals": None}


def test_recipe_checks_without_search_answer_as_with_it(tmp_path):
    """`untrusted_imports` and `TrialRecord.comparable` before `search` is imported equal their answers after."""
    got = _run("""
        import json, sys
        from tunelab.studies.recipes import untrusted_imports
        from tunelab.studies.records import TrialRecord, TrialState
        mnist = {"workload": {"name": "mnist1d", "factory": "tunelab.trainers.workloads:mnist1d"}}
        light = [  # answered without importing `search`
            ({}, {"name": "random", "args": {"seed": 0, "quasi": True}}),
            (mnist, {"name": "bayesian", "args": {"seed": 1, "n_initial": None}}),
            ({"workload": {"factory": "mypkg.data:make"}}, {"name": "darts", "args": {"tune": ["a:b"]}}),
            (mnist, {"name": "optuna", "args": {"sampler": "tpe", "seed": 0}}),
            (mnist, {"name": "optuna", "args": "not a mapping"}),
            ({"function": "mypkg.train:fit"}, {"name": "mypkg.search:Mine", "args": {}}),
        ]
        heavy = [  # these need the registry
            ({}, {"name": "optuna", "args": {"sampler": "mypkg.samplers:Mine"}}),
            ({}, {"name": "optuna", "args": {"sampler": None}}),
            ({}, {"name": "no_such_strategy", "args": {}}),
        ]
        before = [untrusted_imports(*case) for case in light]
        train = TrialRecord(number=0, state=TrialState.COMPLETE, config={}).comparable
        loaded = sorted(m for m in sys.modules if m in HEAVY or m == "tunelab.search")
        darts = TrialRecord(number=1, state=TrialState.COMPLETE, config={}, routine="darts").comparable
        after = [untrusted_imports(*case) for case in light + heavy]
        print(json.dumps({"before": before, "after": after, "loaded": loaded, "train": train, "darts": darts}))
    """, tmp_path)
    assert got["loaded"] == []
    assert got["before"] == got["after"][: len(got["before"])]
    assert got["before"] == [[], [], ["mypkg.data:make"], [], [], ["mypkg.train:fit", "mypkg.search:Mine"]]
    assert got["after"][len(got["before"]):] == [["mypkg.samplers:Mine"], ["None"], []]
    assert got["train"] is True and got["darts"] is False  # a DARTS search trial never competes for the best


def test_the_light_constants_equal_what_they_mirror():
    import importlib

    from tunelab import search, trainers
    from tunelab.search.base import Strategy
    from tunelab.studies import driver, recipes
    from tunelab.studies.compare import manifest

    assert sorted(recipes.BUILTIN_WORKLOADS) == sorted(trainers.workloads.__all__)
    own = {n: search.strategies.get(n) for n in search.strategies.names()
           if search.strategies.get(n).__module__.startswith("tunelab.")}
    plain = {n for n, cls in own.items() if cls.stored_imports.__func__ is Strategy.stored_imports.__func__}
    assert sorted(recipes.CODE_FREE_STRATEGIES) == sorted(plain)
    assert set(own) - plain == {"optuna"}  # `names_no_code` knows how its arguments name code
    assert recipes.BUDGET == driver.BUDGET
    compare = importlib.import_module("tunelab.studies.compare")  # the package (`studies.compare` is the function)
    assert recipes.MANIFEST == compare.MANIFEST == manifest.MANIFEST
