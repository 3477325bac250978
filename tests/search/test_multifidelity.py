"""FreezeThaw's learning-curve surrogate, its data handling, and Hyperband / ASHA's rung logic."""

import json
import math

import numpy as np
import pytest
from strategy_conformance import toy_space

from tunelab import search, studies
from tunelab.search import History, TrialView
from tunelab.search.hyperband import asha_rungs


def synthetic_curves(seed, n=24, d=3):
    """Exponential-decay curves y(t) = a(x) + b exp(-c t) whose asymptote a is smooth in x."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, d))
    asym = 0.2 + 0.5 * np.sin(3 * X[:, 0]) + 0.3 * X[:, 1] ** 2
    curves = []
    for i in range(n):
        t = np.arange(1, rng.integers(4, 13) + 1)
        b, c = 0.4 + 0.4 * rng.uniform(), 0.15 + 0.25 * rng.uniform()
        curves.append(asym[i] + b * np.exp(-c * t) + 0.003 * rng.normal(size=t.size))
    return X, curves, asym


@pytest.mark.parametrize("seed", [0, 1])
def test_surrogate_extrapolates_exponential_decay_curves_to_their_asymptote(seed):
    X, curves, asym = synthetic_curves(seed)
    model = search.FreezeThawGP().fit(X, curves)
    mean, _ = model.predict_curve(range(len(curves)), [500] * len(curves))
    err = np.abs(mean - asym)
    naive = np.abs(np.array([c[-1] for c in curves]) - asym)  # "the curve stays where it is"
    assert np.median(err) < 0.03, np.median(err)
    assert np.median(err) < 0.3 * np.median(naive)
    # the asymptote GP agrees with the far end of the curves and is calibrated to within 3 sigma
    amean, avar = model.asymptote(X)
    assert np.allclose(amean, mean, atol=1e-3)
    assert np.mean(err < 3 * np.sqrt(avar) + 0.01) > 0.8
    # a config never trained: its predicted asymptote follows the smooth function
    rng = np.random.default_rng(seed + 10)
    Xn = rng.uniform(size=(100, 3))
    truth = 0.2 + 0.5 * np.sin(3 * Xn[:, 0]) + 0.3 * Xn[:, 1] ** 2
    pm, _ = model.asymptote(Xn)
    assert np.corrcoef(pm, truth)[0, 1] > 0.9


def test_surrogate_prediction_tightens_with_more_epochs_and_reuses_hyperparameters():
    X, curves, _ = synthetic_curves(3)
    model = search.FreezeThawGP().fit(X, curves)
    lengths = np.array([len(c) for c in curves])
    _, var = model.predict_curve(range(len(curves)), lengths + 1)
    _, var_far = model.predict_curve(range(len(curves)), lengths + 30)
    assert np.all(var <= var_far + 1e-12)  # one epoch ahead is surer than thirty
    again = search.FreezeThawGP().fit(X, curves, init=model.state(), optimize=False)
    for key, value in model.hyperparameters.items():
        assert again.hyperparameters[key] == pytest.approx(value)
    m1, _ = model.predict_curve([0, 1], [20, 20])
    m2, _ = again.predict_curve([0, 1], [20, 20])
    assert np.allclose(m1, m2)
    with pytest.raises(ValueError, match="finite"):
        search.FreezeThawGP().fit(X[:2], [[0.1, math.nan], [0.2]])


def test_failed_and_diverged_trials_enter_with_the_worst_value_and_never_as_nan():
    space = toy_space()
    cfg = space.sample(np.random.default_rng(0))
    trials = (
        TrialView(0, "paused", cfg, curve=(0.9, 0.5), epochs=2),
        TrialView(1, "failed", cfg, curve=(0.7, math.nan), epochs=2, error="diverged"),
        TrialView(2, "failed", cfg, curve=(), epochs=0, error="ValueError"),
        TrialView(3, "running", cfg, curve=(), epochs=0),
    )
    kept, curves = search.FreezeThaw.observations(History(space, trials, max_epochs=5))
    assert [t.number for t in kept] == [0, 1, 2]
    assert curves == [[0.9, 0.5], [0.7, 0.9], [0.9]]  # 0.9 is the worst value seen


def test_freeze_thaw_retires_hopeless_paused_trials_but_never_the_incumbent():
    space = toy_space()
    rng = np.random.default_rng(0)
    trials = []
    for i in range(12):
        cfg = space.sample(rng)
        final = 0.1 if i == 0 else 0.5 + 0.05 * i
        curve = tuple(final + 0.5 * math.exp(-0.5 * t) for t in range(1, 7))
        trials.append(TrialView(i, "paused", cfg, curve=curve, epochs=6, target_epochs=6))
    strategy = search.FreezeThaw(seed=0, keep_paused=5)
    retired = strategy.retire(History(space, tuple(trials), max_epochs=20))
    assert 0 not in retired
    assert len(retired) >= 12 - 5 and set(retired) <= set(range(1, 12))
    request = strategy.ask(History(space, tuple(trials), max_epochs=20))
    assert request.kind in ("start", "resume")
    if request.kind == "resume":
        assert request.until_epoch == 7


def test_rungs_and_brackets_follow_the_papers():
    assert asha_rungs(20, 1, 3) == [1, 3, 9, 20]
    assert asha_rungs(81, 1, 3) == [1, 3, 9, 27, 81]
    # Li et al. 2018, table 1 (R = 81, eta = 3): n_i configurations at r_i epochs per bracket
    table = search.Hyperband(eta=3).brackets(81)
    assert [(s, e, c) for s, e, c in table] == [
        (4, [1, 3, 9, 27, 81], [81, 27, 9, 3, 1]),
        (3, [3, 9, 27, 81], [34, 11, 3, 1]),
        (2, [9, 27, 81], [15, 5, 1]),
        (1, [27, 81], [8, 2]),
        (0, [81], [5]),
    ]
    with pytest.raises(studies.ConfigError, match="eta"):
        search.ASHA(eta=1)
    with pytest.raises(studies.ConfigError, match="min_epochs"):
        search.Hyperband(min_epochs=0)
    with pytest.raises(studies.ConfigError, match="retire_below"):
        search.FreezeThaw(retire_below=1.5)


def test_asha_promotes_only_the_top_third_of_a_rung():
    space = toy_space()
    rng = np.random.default_rng(0)
    values = [0.5, 0.2, 0.9, 0.4, 0.8, 0.7]
    trials = tuple(TrialView(i, "paused", space.sample(rng), curve=(v,), epochs=1, target_epochs=1)
                   for i, v in enumerate(values))
    request = search.ASHA(seed=0).ask(History(space, trials, max_epochs=9))
    assert (request.kind, request.trial, request.until_epoch) == ("resume", 1, 3)
    thawed = TrialView(1, "paused", trials[1].config, curve=(0.2, 0.1, 0.1), epochs=3, target_epochs=3)
    promoted = (*trials[:1], thawed, *trials[2:])
    request = search.ASHA(seed=0).ask(History(space, promoted, max_epochs=9))
    assert (request.kind, request.trial) == ("resume", 3)  # the second slot of 6 // 3 = 2
    request = search.ASHA(seed=0).ask(History(space, promoted[:5], max_epochs=9))
    assert request.kind == "start" and request.epochs == 1  # 5 // 3 = 1 slot, already used


def test_hyperband_waits_for_a_rung_then_promotes_and_retires():
    space = toy_space()
    hb = search.Hyperband(seed=0, eta=3)
    epochs, counts = hb._bracket(9, 0)
    assert (epochs, counts) == ([1, 3, 9], [9, 3, 1])
    rng = np.random.default_rng(0)
    trials = [TrialView(i, "paused", space.sample(rng), curve=(0.1 * i,), epochs=1, target_epochs=1,
                        attrs={"bracket": 0}) for i in range(8)]
    running = TrialView(8, "running", space.sample(rng), curve=(), epochs=0, target_epochs=1, attrs={"bracket": 0})
    history = History(space, (*trials, running), max_epochs=9)
    nxt = hb.ask(history)  # bracket 0 waits for trial 8: bracket 1 starts meanwhile
    assert nxt.kind == "start" and nxt.attrs == {"bracket": 1} and nxt.epochs == 3
    assert hb.retire(history) == []
    done = TrialView(8, "paused", running.config, curve=(0.05,), epochs=1, target_epochs=1, attrs={"bracket": 0})
    history = History(space, (*trials, done), max_epochs=9)
    request = hb.ask(history)  # the top 3 of 9 at epoch 1 are trials 0 (0.0), 8 (0.05) and 1 (0.1)
    assert (request.kind, request.trial, request.until_epoch) == ("resume", 0, 3)
    assert hb.retire(history) == [2, 3, 4, 5, 6, 7]


def test_freeze_thaw_refines_its_power_laws_every_few_epochs_and_a_fresh_process_decides_alike(monkeypatch):
    import dataclasses

    from tunelab.search.freeze_thaw import REFINED, SNAPSHOT
    from tunelab.search.power_laws import PowerLawEnsemble

    space = toy_space()
    rng = np.random.default_rng(1)
    trials = [TrialView(i, "paused", space.sample(rng), curve=tuple(0.3 + 0.4 * math.exp(-0.4 * t) + 0.02 * i
                                                                     for t in range(1, 4)), epochs=3)
              for i in range(12)]
    refines = []
    real = PowerLawEnsemble.refine

    def counted(self, X, curves, steps):
        if steps:
            refines.append(sum(len(c) for c in curves))
        return real(self, X, curves, steps)

    monkeypatch.setattr(PowerLawEnsemble, "refine", counted)

    def history():
        return History(space, tuple(trials), max_epochs=20)

    def grow(i, epochs):
        t = trials[i]
        trials[i] = dataclasses.replace(t, curve=t.curve + (t.curve[-1],) * epochs, epochs=t.epochs + epochs)

    strategy = search.FreezeThaw(seed=0, n_initial=3, surrogate="power_law")  # refine_every=4 by default
    first = strategy.ask(history())
    assert SNAPSHOT in first.attrs and first.attrs[REFINED]["at"] == 36 and refines == [36]
    trials[0] = dataclasses.replace(trials[0], attrs=dict(first.attrs))  # stored with its request
    grow(1, 1)
    second = strategy.ask(history())
    assert REFINED not in second.attrs and refines == [36]  # one new epoch: the last refinement serves
    again = search.FreezeThaw(seed=0, n_initial=3, surrogate="power_law").ask(history())  # a fresh process: same
    assert refines == [36, 36]
    assert (again.kind, again.trial, again.until_epoch, again.config) == (second.kind, second.trial,
                                                                         second.until_epoch, second.config)
    grow(2, 3)
    assert strategy.ask(history()).attrs[REFINED]["at"] == 40 and refines == [36, 36, 40]  # four new epochs
    every = search.FreezeThaw(seed=0, n_initial=3, refine_every=1, surrogate="power_law").ask(history())
    assert REFINED not in every.attrs and refines[-1] == 40  # 1: every decision refines on what it sees


def test_freeze_thaw_never_starts_a_configuration_it_has_started_before(monkeypatch):
    from tunelab.search.power_laws import PowerLawEnsemble

    space = toy_space()
    strategy = search.FreezeThaw(seed=0, n_initial=3, candidates=4, surrogate="power_law")
    pool, _ = strategy._pool(space)
    rng = np.random.default_rng(0)
    trials = [TrialView(i, "complete", space.validate(c), curve=(0.5 + 0.01 * i,) * 3, epochs=3, target_epochs=3)
              for i, c in enumerate(pool[:28])]  # 28 of the pool's 32 points are trials already
    trials += [TrialView(28 + i, "complete", space.sample(rng), curve=(0.9,) * 3, epochs=3) for i in range(3)]
    # whatever the model says, a started point must never come back as a new trial
    monkeypatch.setattr(PowerLawEnsemble, "predict_new", lambda self, X, epochs: (np.zeros(len(X)), np.ones(len(X))))
    started = {json.dumps(t.config, sort_keys=True) for t in trials}
    for _ in range(6):
        request = strategy.ask(History(space, tuple(trials), max_epochs=10))
        assert request.kind == "start" and json.dumps(request.config, sort_keys=True) not in started
