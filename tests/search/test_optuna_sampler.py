"""OptunaSampler's incremental mirror proposes exactly what a rebuild from the whole history would."""

import math

import numpy as np
import pytest
from strategy_conformance import toy_space

from tunelab import search
from tunelab.search import History, TrialView


def objective(config):
    return sum((v - 0.3) ** 2 for v in config.values() if isinstance(v, float)) + 0.1 * len(config)


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_the_incremental_mirror_proposes_what_a_rebuild_proposes(sampler):
    """Trials arrive running, gain epochs, finish complete / failed / pruned; some asks are discarded."""
    space = toy_space()
    rng = np.random.default_rng(0)
    kept = search.OptunaSampler(sampler, seed=3)
    trials: list[TrialView] = []
    for k in range(40):
        history = History(space, tuple(trials), max_epochs=3)
        fresh = search.OptunaSampler(sampler, seed=3).ask(history)  # rebuilt from the whole history
        mine = kept.ask(history)
        assert mine.config == fresh.config and dict(mine.attrs) == dict(fresh.attrs), k
        if k % 7 == 3:
            continue  # the driver did not take this proposal (it did not fit the budget, say)
        trials.append(TrialView(len(trials), "running", mine.config, attrs=dict(mine.attrs)))
        # the running trials move on: one more epoch, and the oldest finishes one way or another
        for i, t in enumerate(trials):
            if t.state != "running":
                continue
            value = objective(t.config)
            curve = (*t.curve, value + 0.1 / (len(t.curve) + 1))
            if len(curve) < 3 and rng.uniform() < 0.7:
                trials[i] = TrialView(t.number, "running", t.config, curve=curve, epochs=len(curve), attrs=t.attrs)
                continue
            state = rng.choice(["complete", "complete", "failed", "pruned"])
            if state == "failed":
                curve = (*curve[:-1], math.nan)
            trials[i] = TrialView(t.number, str(state), t.config, curve=curve, epochs=len(curve), attrs=t.attrs,
                                  value=None if state == "failed" else curve[-1])
    assert kept._study is not None and len(kept._signatures) >= 30


def test_a_history_that_is_not_an_extension_rebuilds_the_mirror():
    space = toy_space()
    strategy = search.OptunaSampler("tpe", seed=0)
    configs = [space.sample(np.random.default_rng(i)) for i in range(6)]
    done = tuple(TrialView(i, "complete", c, value=objective(c), curve=(objective(c),), epochs=1)
                 for i, c in enumerate(configs))
    strategy.ask(History(space, done, max_epochs=1))
    first = strategy._study
    other = tuple(TrialView(i, "complete", c, value=objective(c) + 1, curve=(objective(c) + 1,), epochs=1)
                  for i, c in enumerate(configs))  # the same trials with other values: not an extension
    again = strategy.ask(History(space, other, max_epochs=1))
    assert strategy._study is not first
    assert again.config == search.OptunaSampler("tpe", seed=0).ask(History(space, other, max_epochs=1)).config
