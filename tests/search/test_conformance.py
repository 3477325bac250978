import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from strategy_conformance import MODEL_BASED, STRATEGIES, best, toy_loop, toy_space

from tunelab import search, spaces, studies, trainers
from tunelab.search import History, Request

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_trainer():
    workload = trainers.workloads.mnist1d(n_train=256, max_epochs=2)
    return trainers.Trainer(workload, epochs=2, seed=0)


def tiny_space():
    return spaces.optimizers(["adamw", "sgd"]) | spaces.mlp(width=spaces.Int(8, 64, log=True), depth=spaces.Int(1, 2))


def run_study(tmp_path, name, strategy, trainer, trials, db="s.db"):
    study = studies.create(name, f"sqlite:///{tmp_path / db}", space=tiny_space(), trainer=trainer, strategy=strategy)
    study.optimize(trials=trials, progress=False)
    return study


@pytest.mark.parametrize("key", list(STRATEGIES))
def test_ask_run_loop_on_tiny_workload(tmp_path, tiny_trainer, key):
    study = run_study(tmp_path, key, STRATEGIES[key](0), tiny_trainer, trials=6)
    trials = study.trials
    assert [t.number for t in trials] == list(range(6))
    assert all(t.state == "complete" for t in trials)
    for t in trials:
        assert study.space.validate(t.config) == t.config
        assert len(t.curve) == 2 and 0.0 <= t.value <= 1.0
    assert len({search.config_key(t.config) for t in trials}) == 6  # no duplicate proposals


@pytest.mark.parametrize("key", list(STRATEGIES))
def test_same_seed_same_trials(tmp_path, tiny_trainer, key):
    a = run_study(tmp_path, "a", STRATEGIES[key](3), tiny_trainer, trials=6, db="a.db")
    b = run_study(tmp_path, "b", STRATEGIES[key](3), tiny_trainer, trials=6, db="b.db")
    assert [t.config for t in a.trials] == [t.config for t in b.trials]
    assert [t.value for t in a.trials] == [t.value for t in b.trials]
    c = run_study(tmp_path, "c", STRATEGIES[key](4), tiny_trainer, trials=6, db="c.db")
    assert [t.config for t in c.trials] != [t.config for t in a.trials]


def _configs_in_fresh_process(key: str, n: int) -> list[dict]:
    code = (
        "import json, sys; sys.path.insert(0, 'tests/search');"
        "from strategy_conformance import STRATEGIES, toy_loop;"
        f"print(json.dumps([t.config for t in toy_loop(STRATEGIES[{key!r}](5), {n})]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("key", list(STRATEGIES))
def test_same_seed_same_trials_in_a_fresh_process(key):
    n = 7
    here = [t.config for t in toy_loop(STRATEGIES[key](5), n)]
    there = _configs_in_fresh_process(key, n)
    assert json.loads(json.dumps(here)) == there


@pytest.mark.parametrize("key", list(STRATEGIES))
def test_kill_then_resume_gives_the_same_next_request(tmp_path, tiny_trainer, key):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    study = studies.create("k", url, space=tiny_space(), trainer=tiny_trainer, strategy=STRATEGIES[key](1))
    study.optimize(trials=6, progress=False)
    before = study.strategy.ask(study.history())
    reloaded = studies.load("k", url)  # as a new process would: everything from the database
    assert reloaded.strategy == study.strategy and reloaded.strategy is not study.strategy
    after = reloaded.strategy.ask(reloaded.history())
    assert isinstance(after, Request) and after.kind == "start"
    assert after.config == before.config


@pytest.mark.parametrize("key", list(STRATEGIES))
def test_stopped_and_continued_study_proposes_like_an_uninterrupted_one(tmp_path, tiny_trainer, key):
    whole = run_study(tmp_path, "whole", STRATEGIES[key](2), tiny_trainer, trials=7, db="w.db")
    url = f"sqlite:///{tmp_path / 'p.db'}"
    part = studies.create("part", url, space=tiny_space(), trainer=tiny_trainer, strategy=STRATEGIES[key](2))
    part.optimize(trials=4, progress=False)
    again = studies.load("part", url)
    again.optimize(trials=7, progress=False)
    assert [t.config for t in again.trials] == [t.config for t in whole.trials]


# GP fits cost ~2 s per proposal on 2 cores: the default run checks Bayesian on one seed,
# `-m slow` on three like the others.
CONVERGENCE = [
    pytest.param(key, (0,), marks=()) if key == "bayesian" else pytest.param(key, (0, 1, 2))
    for key in STRATEGIES
] + [pytest.param("bayesian", (0, 1, 2), marks=pytest.mark.slow, id="bayesian-3-seeds")]


@pytest.mark.parametrize(("key", "seeds"), CONVERGENCE)
def test_converges_on_a_toy_objective(key, seeds):
    n = 24
    found = np.median([best(toy_loop(STRATEGIES[key](s), n)) for s in seeds])
    assert found < 1.5, f"{key}: median best {found:.3f} after {n} toy evaluations"
    if key in MODEL_BASED:
        rand = np.median([best(toy_loop(search.Random(seed=s), n)) for s in (0, 1, 2)])
        assert found < rand, f"{key} ({found:.3f}) should beat random search ({rand:.3f}) at equal budget"


def test_history_is_normalised_to_minimisation():
    space = toy_space()
    t = History(space, ())
    assert t.direction == "minimize" and t.best() is None


def test_strategy_spec_round_trips_and_rejects_bad_settings():
    from strategy_conformance import MULTI_FIDELITY

    for make in (*STRATEGIES.values(), *MULTI_FIDELITY.values()):
        s = make(9)
        assert search.Strategy.from_spec(json.loads(json.dumps(s.spec()))) == s
    with pytest.raises(studies.ConfigError, match="quasi"):
        search.Random(quasi="lattice")
    with pytest.raises(studies.ConfigError, match="n_initial"):
        search.Bayesian(n_initial=0)
    with pytest.raises(studies.ConfigError, match="unknown Optuna sampler"):
        search.OptunaSampler("nope")
    with pytest.raises(studies.ConfigError, match="seed"):
        search.Random(seed="0")


def test_quasi_random_covers_the_unit_cube_evenly():
    from tunelab.search.random import quasi_point

    pts = np.stack([quasi_point("sobol", 2, 0, i) for i in range(64)])
    counts = np.histogram2d(pts[:, 0], pts[:, 1], bins=4, range=[[0, 1], [0, 1]])[0]
    assert counts.min() == counts.max() == 4  # a (0, m, 2)-net: every cell of the 4x4 grid holds 4 of 64
    enc = search.MixedEncoding(toy_space())
    cfgs = [enc.from_unit(quasi_point("halton", enc.dim, 1, i)) for i in range(30)]
    assert {c["act"] for c in cfgs} == {"relu", "tanh", "gelu"}


# ----------------------------------------------------------------------------- multi-fidelity
# Strategies that pause and resume trials run the same checks with budgets in epochs.
from strategy_conformance import MULTI_FIDELITY, best_final, toy_mf_loop  # noqa: E402


@pytest.fixture(scope="module")
def mf_trainer():
    workload = trainers.workloads.mnist1d(n_train=256, max_epochs=4)
    return trainers.Trainer(workload, epochs=4, seed=0)


def run_mf(tmp_path, name, strategy, trainer, epochs, db="s.db"):
    study = studies.create(name, f"sqlite:///{tmp_path / db}", space=tiny_space(), trainer=trainer, strategy=strategy)
    study.optimize(epochs=epochs, progress=False)
    return study


def trained(study):
    return sum(t.epochs for t in study.trials)


@pytest.mark.parametrize("key", list(MULTI_FIDELITY))
def test_mf_ask_run_loop_pauses_and_resumes(tmp_path, mf_trainer, key):
    study = run_mf(tmp_path, key, MULTI_FIDELITY[key](0), mf_trainer, epochs=30)
    trials = study.trials
    assert trained(study) <= 30 and trained(study) >= 26  # the budget holds and is used
    assert all(1 <= t.epochs <= 4 and len(t.curve) == t.epochs for t in trials)
    assert all(study.space.validate(t.config) == t.config for t in trials)
    assert {t.state for t in trials} <= {"complete", "paused", "pruned", "failed"}
    # every strategy here starts trials at 1 epoch of 4 (Hyperband's first bracket too), so a trial
    # with more epochs was paused and continued from its checkpoint
    assert any(t.epochs > 1 for t in trials)
    for t in trials:  # paused trials keep their checkpoint; retired (pruned) ones lose it
        path = study.checkpoint(t.number)
        assert (path is not None and path.exists()) == (t.state == "paused")  # keep_checkpoints="none"


@pytest.mark.parametrize("key", list(MULTI_FIDELITY))
def test_mf_same_seed_same_trials(tmp_path, mf_trainer, key):
    a = run_mf(tmp_path, "a", MULTI_FIDELITY[key](3), mf_trainer, epochs=20, db="a.db")
    b = run_mf(tmp_path, "b", MULTI_FIDELITY[key](3), mf_trainer, epochs=20, db="b.db")
    assert [(t.config, t.curve, t.state) for t in a.trials] == [(t.config, t.curve, t.state) for t in b.trials]


@pytest.mark.slow  # ~25 s; the in-process determinism test above runs by default
@pytest.mark.parametrize("key", list(MULTI_FIDELITY))
def test_mf_same_seed_same_trials_in_a_fresh_process(key):
    code = (
        "import json, sys; sys.path.insert(0, 'tests/search');"
        "from strategy_conformance import MULTI_FIDELITY, toy_mf_loop;"
        f"print(json.dumps([[t.config, t.epochs] for t in toy_mf_loop(MULTI_FIDELITY[{key!r}](5), 30)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    here = [[t.config, t.epochs] for t in toy_mf_loop(MULTI_FIDELITY[key](5), 30)]
    assert json.loads(json.dumps(here)) == json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("key", list(MULTI_FIDELITY))
def test_mf_kill_then_resume_gives_the_same_next_request(tmp_path, mf_trainer, key):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    study = studies.create("k", url, space=tiny_space(), trainer=mf_trainer, strategy=MULTI_FIDELITY[key](1))
    study.optimize(epochs=20, progress=False)
    before = study.strategy.ask(study.history())
    reloaded = studies.load("k", url)
    assert reloaded.strategy == study.strategy and reloaded.strategy is not study.strategy
    after = reloaded.strategy.ask(reloaded.history())
    assert (after.kind, after.config, after.trial, after.epochs, after.until_epoch) == (
        before.kind, before.config, before.trial, before.epochs, before.until_epoch)


@pytest.mark.parametrize("key", [pytest.param(k, marks=pytest.mark.slow) if k == "freeze_thaw" else k
                                 for k in MULTI_FIDELITY])  # freeze-thaw's GP fits make it ~20 s: in the slow set
def test_mf_stopped_and_continued_study_runs_like_an_uninterrupted_one(tmp_path, mf_trainer, key):
    whole = run_mf(tmp_path, "whole", MULTI_FIDELITY[key](2), mf_trainer, epochs=24, db="w.db")
    url = f"sqlite:///{tmp_path / 'p.db'}"
    part = studies.create("part", url, space=tiny_space(), trainer=mf_trainer, strategy=MULTI_FIDELITY[key](2))
    part.optimize(epochs=11, progress=False)
    again = studies.load("part", url)
    again.optimize(epochs=24, progress=False)
    assert [(t.config, t.curve, t.state) for t in again.trials] == [(t.config, t.curve, t.state) for t in whole.trials]


@pytest.mark.parametrize("key", [pytest.param(k, marks=pytest.mark.slow) if k == "freeze_thaw" else k
                                 for k in MULTI_FIDELITY])  # FreezeThaw's 30 s: -m slow (and benchmarks/)
def test_mf_beats_random_search_at_equal_epochs_on_toy_curves(key):
    budget, seeds = 90, (0, 1, 2)
    found = np.median([best_final(toy_mf_loop(MULTI_FIDELITY[key](s), budget)) for s in seeds])
    rand = np.median([best_final(toy_mf_loop(search.Random(seed=s), budget)) for s in seeds])
    assert found < rand, f"{key} ({found:.3f}) should beat random search ({rand:.3f}) at {budget} epochs"


# ----------------------------------------------------------------------------- routine strategies
from strategy_conformance import ROUTINE_STRATEGIES  # noqa: E402


@pytest.mark.parametrize("key", list(ROUTINE_STRATEGIES))
def test_routine_strategy_spec_round_trips(key):
    s = ROUTINE_STRATEGIES[key][0](9)
    assert search.Strategy.from_spec(json.loads(json.dumps(s.spec()))) == s


@pytest.mark.parametrize("key", list(ROUTINE_STRATEGIES))
def test_routine_strategy_stopped_and_continued_runs_like_an_uninterrupted_one(tmp_path, tiny_trainer, key):
    make, space = ROUTINE_STRATEGIES[key]
    whole = studies.create("whole", f"sqlite:///{tmp_path / 'w.db'}", space=space(), trainer=tiny_trainer,
                           strategy=make(2))
    whole.optimize(trials=2, progress=False)
    trials = whole.trials
    assert [t.state for t in trials] == ["complete", "complete"]
    assert {t.routine for t in trials} - {"train"} and whole.best is not None
    url = f"sqlite:///{tmp_path / 'p.db'}"
    part = studies.create("part", url, space=space(), trainer=tiny_trainer, strategy=make(2))
    part.optimize(trials=1, progress=False)
    before = part.strategy.ask(part.history())
    again = studies.load("part", url)  # everything from the database, as a new process would
    assert again.strategy.ask(again.history()) == before
    again.optimize(trials=2, progress=False)
    got = again.trials
    assert [(t.config, t.value, t.routine, t.results) for t in got] == [
        (t.config, t.value, t.routine, t.results) for t in trials]
