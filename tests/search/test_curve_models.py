"""FreezeThaw's configuration-conditioned curve models: Deep Power Laws and DyHPO's deep kernel."""

import math
from pathlib import Path

import numpy as np
import pytest
from strategy_conformance import toy_space

from tunelab import search, studies, trainers
from tunelab.search import History, TrialView
from tunelab.search.deep_kernel import DeepKernelCurves
from tunelab.search.freeze_thaw import COST
from tunelab.search.power_laws import PowerLawEnsemble
from tunelab.trainers.replay import table_space

TABLES = Path(__file__).resolve().parents[2] / "benchmarks" / "tables"


def rate_dependent_curves(seed, n=48, d=3, T=30):
    """Power-law curves whose rate depends on the configuration: the best configurations learn slowest.

    y(x, t) = a(x) + 0.6 t^-r(x), with a falling and r falling in x0 (good configurations keep
    improving long after poor ones have levelled off). Every curve is seen for 3-10 epochs only.
    """
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, d))
    q = X[:, 0]
    t = np.arange(1, T + 1)
    full = (0.5 - 0.4 * q)[:, None] + 0.6 * t[None, :] ** (-(1.5 - 1.2 * q)[:, None])
    full = full + 0.002 * rng.normal(size=full.shape)
    lengths = rng.integers(3, 11, size=n)
    return X, [list(full[i, : lengths[i]]) for i in range(n)], full[:, -1]


@pytest.mark.parametrize("seed", [0, 1])
def test_power_laws_extrapolate_configuration_dependent_rates_better_than_swersky(seed):
    X, curves, ends = rate_dependent_curves(seed)
    index, at = range(len(curves)), [30] * len(curves)
    swersky, _ = search.FreezeThawGP().fit(X, curves).predict_curve(index, at)
    dpl, var = PowerLawEnsemble(30, seed=0, steps=1000).fit(X, curves).predict_curve(index, at)
    err_dpl, err_swersky = np.abs(dpl - ends).mean(), np.abs(swersky - ends).mean()
    naive = np.abs(np.array([c[-1] for c in curves]) - ends).mean()  # "the curve stays where it is"
    assert err_dpl < 0.8 * err_swersky, (err_dpl, err_swersky)
    assert err_dpl < 0.3 * naive
    assert np.all(var > 0) and np.all(np.isfinite(var))


def test_power_law_fit_and_refine_are_deterministic_and_refine_copies():
    X, curves, _ = rate_dependent_curves(3, n=16)
    a = PowerLawEnsemble(30, seed=5, steps=50).fit(X, curves)
    b = PowerLawEnsemble(30, seed=5, steps=50).fit(X, curves)
    m_a, v_a = a.predict_new(X[:4], 30)
    assert np.array_equal(m_a, b.predict_new(X[:4], 30)[0]) and np.array_equal(v_a, b.predict_new(X[:4], 30)[1])
    longer = [[*c, c[-1] - 0.01] for c in curves]
    r = a.refine(X, longer, steps=10)
    assert np.array_equal(a.predict_new(X[:4], 30)[0], m_a)  # the base is untouched
    assert not np.array_equal(r.predict_new(X[:4], 30)[0], m_a)
    assert np.array_equal(r.predict_new(X[:4], 30)[0], b.refine(X, longer, steps=10).predict_new(X[:4], 30)[0])
    with pytest.raises(ValueError, match="finite"):
        PowerLawEnsemble(30).fit(X[:2], [[0.1, math.nan], [0.2]])
    with pytest.raises(RuntimeError, match="fit first"):
        PowerLawEnsemble(30).refine(X, curves, steps=1)


def test_deep_kernel_conditions_on_new_epochs_without_training():
    X, curves, _ = rate_dependent_curves(4, n=20)
    model = DeepKernelCurves(30, seed=0, steps=40).fit(X, curves)
    again = DeepKernelCurves(30, seed=0, steps=40).fit(X, curves)
    m0, v0 = model.predict_curve([0, 1], [12, 12])
    assert np.array_equal(m0, again.predict_curve([0, 1], [12, 12])[0])
    # the next epoch of curve 0 observed far below the prediction pulls the curve's prediction down
    lower = [list(c) for c in curves]
    lower[0] = lower[0] + [lower[0][-1] - 0.3]
    conditioned = model.condition(X, lower)
    m1, _ = conditioned.predict_curve([0], [len(lower[0]) + 1])
    m_before, _ = model.predict_curve([0], [len(lower[0]) + 1])
    assert m1[0] < m_before[0] - 0.02
    assert np.all(v0 > 0)


def test_auto_increment_buys_enough_epochs_that_a_decision_costs_five_percent():
    space = toy_space()
    cfg = space.sample(np.random.default_rng(0))

    def history(cost_s, epoch_s):
        trials = tuple(TrialView(i, "paused", cfg, curve=(0.5,) * 2, epochs=2, seconds=2 * epoch_s,
                                 attrs={COST: [i, cost_s]}) for i in range(6))
        return History(space, trials, max_epochs=20)

    auto = search.FreezeThaw(seed=0, increment="auto")
    assert auto.step(history(0.001, 1.0)) == 1  # 1 ms against 1 s epochs: one epoch per decision
    assert auto.step(history(0.04, 0.1)) == 8  # 40 ms against 5 ms (5% of 0.1 s): 8 epochs
    assert auto.step(history(5.0, 0.01)) == 20  # never beyond the run
    assert auto.step(History(space, (), max_epochs=20)) == 1  # nothing measured yet
    assert search.FreezeThaw(seed=0, increment=3).step(history(5.0, 0.01)) == 3
    with pytest.raises(studies.ConfigError, match="increment"):
        search.FreezeThaw(increment="fast")
    with pytest.raises(studies.ConfigError, match="surrogate"):
        search.FreezeThaw(surrogate="gp")


@pytest.mark.parametrize("surrogate", [pytest.param("power_law", marks=pytest.mark.slow),
                                       pytest.param("deep_kernel", marks=pytest.mark.slow)])
def test_a_study_reopened_by_a_new_process_decides_as_one_that_never_stopped(tmp_path, surrogate):
    """The from-scratch fit is rebuilt from the snapshot stored with the request, not from memory."""
    replay = trainers.Replay(TABLES / "digits_mlp.json.gz")

    def make(name):
        return studies.create(name, f"sqlite:///{tmp_path / name}.db", space=table_space(replay), trainer=replay,
                              strategy=search.FreezeThaw(seed=1, surrogate=surrogate, n_initial=3, candidates=32))

    whole = make("whole")
    whole.optimize(epochs=70, executor="simulated", progress=False)
    parts = make("parts")
    parts.optimize(epochs=40, executor="simulated", progress=False)
    again = studies.load("parts", f"sqlite:///{tmp_path / 'parts'}.db", trainer=replay)  # a fresh strategy instance
    assert again.strategy is not parts.strategy
    again.optimize(epochs=70, executor="simulated", progress=False)
    snapshots = [t for t in whole.history().trials if "ft_snapshot" in t.attrs]
    assert len(snapshots) >= 2  # refits happened after the first run's end as well
    expected = [(t.config, t.curve) for t in whole.history().trials]
    assert [(t.config, t.curve) for t in again.history().trials] == expected


def test_only_swersky_retires_on_probability_by_default():
    """A hopeless paused trial within `keep_paused`: the GP's probability retires it, the ensemble's does not."""
    space = toy_space()
    rng = np.random.default_rng(0)
    trials = []
    for i in range(8):
        final = 0.1 if i == 0 else 0.6 + 0.05 * i
        curve = tuple(final + 0.5 * math.exp(-0.5 * t) for t in range(1, 7))
        trials.append(TrialView(i, "paused", space.sample(rng), curve=curve, epochs=6, target_epochs=6))
    history = History(space, tuple(trials), max_epochs=20)
    assert search.FreezeThaw(seed=0, surrogate="swersky").retire(history)  # far behind: retired on probability
    assert search.FreezeThaw(seed=0, surrogate="power_law").retire(history) == []  # only the keep_paused cap applies
    assert search.FreezeThaw(seed=0, surrogate="power_law", retire_below=0.5).retire(history)  # unless asked to
    assert search.FreezeThaw(seed=0, surrogate="pfn").retire(history) == []  # the PFN too: retires on the cap alone
    with pytest.raises(studies.ConfigError, match="retire_below"):
        search.FreezeThaw(retire_below=True)
    with pytest.raises(studies.ConfigError, match="acquisition"):
        search.FreezeThaw(acquisition="ucb")


@pytest.mark.slow  # about 30 s
def test_four_workers_decide_several_increments_at_once_and_never_thaw_a_running_trial(tmp_path):
    from tunelab.studies.executors import SimulatedExecutor

    replay = trainers.Replay(TABLES / "digits_mlp.json.gz")
    seen_running: list[set[int]] = []
    strategy = search.FreezeThaw(seed=2, n_initial=3, candidates=32)
    ask = strategy.ask

    def watching(history):
        request = ask(history)
        running = {t.number for t in history.trials if t.state in ("pending", "running")}
        seen_running.append(running)
        assert request.kind == "start" or request.trial not in running  # a thaw is never of a trial in flight
        return request

    strategy.ask = watching
    study = studies.create("w4", f"sqlite:///{tmp_path / 'w4.db'}", space=table_space(replay), trainer=replay,
                           strategy=strategy)
    study.optimize(epochs=80, executor=SimulatedExecutor(4), progress=False)
    trials = study.history().trials
    assert sum(t.epochs for t in trials) <= 80 and all(t.epochs <= replay.epochs for t in trials)
    assert max(len(r) for r in seen_running) >= 3  # decisions were taken with several units in flight
    assert any(t.epochs > 5 for t in trials)  # thawed beyond the initial design's quarter run


def test_a_study_stored_before_surrogates_existed_reopens_with_swersky():
    old = {"name": "freeze_thaw", "args": {"seed": 3, "increment": 1, "retire_below": 0.001}}
    strategy = search.Strategy.from_spec(old)
    assert strategy.surrogate == "swersky" and strategy.seed == 3
    assert search.Strategy.from_spec(search.FreezeThaw(seed=1).spec()).surrogate == "power_law"
    assert search.Strategy.from_spec(search.FreezeThaw(seed=1, surrogate="pfn").spec()).surrogate == "pfn"
