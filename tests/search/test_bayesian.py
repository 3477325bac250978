import numpy as np

from tunelab import search, spaces
from tunelab.search import History, TrialView
from tunelab.search.random import quasi_point


def space1d():
    return spaces.Space(x=spaces.Float(0.0, 1.0))


def complete(i, config, value):
    return TrialView(i, "complete", config, value=value, curve=(value,), epochs=1)


def test_initial_design_is_the_scrambled_sobol_sequence():
    space = spaces.mlp()
    enc = search.MixedEncoding(space)
    strategy = search.Bayesian(seed=3, n_initial=4)
    trials = []
    for i in range(4):
        r = strategy.ask(History(space, tuple(trials)))
        assert r.attrs["phase"] == "sobol"
        assert r.config == enc.from_unit(quasi_point("sobol", enc.dim, 3, i))
        trials.append(complete(i, r.config, float(i)))
    assert strategy.ask(History(space, tuple(trials))).attrs["phase"] == "gp"


def test_failed_trials_count_as_bad():
    # values improve towards x = 1, but everything above 0.75 failed: the GP must not go there
    xs = [0.05, 0.2, 0.35, 0.5, 0.6]
    trials = [complete(i, {"x": x}, -x) for i, x in enumerate(xs)]
    trials += [TrialView(5 + i, "failed", {"x": x}, error="diverged") for i, x in enumerate([0.8, 0.9, 1.0])]
    for seed in range(3):
        r = search.Bayesian(seed=seed, n_initial=2).ask(History(space1d(), tuple(trials)))
        assert r.attrs["phase"] == "gp"
        assert 0.5 < r.config["x"] < 0.8, r.config


def test_pending_trials_are_not_proposed_again():
    rng = np.random.default_rng(0)
    xs = rng.random(6)
    trials = [complete(i, {"x": float(x)}, (x - 0.3) ** 2) for i, x in enumerate(xs)]
    strategy = search.Bayesian(seed=0, n_initial=2)
    first = strategy.ask(History(space1d(), tuple(trials))).config["x"]
    running = TrialView(6, "running", {"x": first})
    second = strategy.ask(History(space1d(), (*trials, running))).config["x"]
    assert abs(second - first) > 1e-3


def test_categorical_spaces_use_the_mixed_gp_and_propose_valid_configs():
    space = spaces.optimizers(["sgd", "adamw"]) | spaces.mlp()
    rng = np.random.default_rng(1)
    trials = []
    for i in range(6):
        c = space.sample(rng)
        trials.append(complete(i, c, 1.0 if c["optimizer"] == "sgd" else 0.0))
    r = search.Bayesian(seed=0, n_initial=3).ask(History(space, tuple(trials)))
    assert r.attrs["phase"] == "gp"
    assert space.validate(r.config) == r.config


def test_each_fit_starts_from_the_last_one_stored_with_its_proposal(monkeypatch):
    """The warm start reads the previous fit from the history, so a fresh instance (a resume) decides the same."""
    space = spaces.optimizers(["sgd", "adamw"]) | spaces.mlp()
    enc = search.MixedEncoding(space)
    rng = np.random.default_rng(0)

    def value(config):
        x = enc.encode(config)
        return float(np.sum((x - 0.3) ** 2))

    trials = []
    for i in range(8):
        config = space.sample(rng)
        trials.append(complete(i, config, value(config)))
    first = search.Bayesian(seed=1, n_initial=4, warm_after=8).ask(History(space, tuple(trials)))
    assert first.attrs["phase"] == "gp" and first.attrs["gp_fit"]
    trials.append(TrialView(8, "complete", first.config, value=value(first.config), curve=(0.0,), epochs=1,
                            attrs=dict(first.attrs)))
    starts = []
    real = search.bayesian.load_fit
    monkeypatch.setattr(search.bayesian, "load_fit", lambda model, values: starts.append(values) or real(model, values))
    again = [search.Bayesian(seed=1, n_initial=4, warm_after=8).ask(History(space, tuple(trials))) for _ in range(2)]
    assert starts == [first.attrs["gp_fit"]] * 2  # from the stored fit, by two fresh instances
    assert again[0].config == again[1].config and again[0].attrs["gp_fit"] == again[1].attrs["gp_fit"]
    cold = search.Bayesian(seed=1, n_initial=4, refit_maxiter=None).ask(History(space, tuple(trials)))
    early = search.Bayesian(seed=1, n_initial=4, warm_after=10).ask(History(space, tuple(trials)))
    assert len(starts) == 2 and cold.attrs["phase"] == early.attrs["phase"] == "gp"  # from scratch: no start read
