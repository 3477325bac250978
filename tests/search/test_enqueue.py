"""`search.Enqueue` and per-trial run seeds (`Request.start(seed=...)`)."""

import pytest

from tunelab import search, spaces
from tunelab.search import History, Request, TrialView


def test_proposes_the_configs_in_order_then_nothing():
    space = spaces.optimizers(["adamw"])
    configs = [space.default(), {**space.default(), "adamw.lr": 0.01}]
    strategy = search.Enqueue(configs, seeds=[5, 6])
    history = History(space)
    first = strategy.ask(history)
    assert first.config == configs[0] and first.seed == 5
    history = History(space, trials=(TrialView(0, "complete", configs[0], value=0.1),))
    assert strategy.ask(history).seed == 6 and strategy.ask(history).config == configs[1]
    history = History(space, trials=(*history.trials, TrialView(1, "failed", configs[1])))
    assert strategy.ask(history) is None
    rebuilt = search.Strategy.from_spec(strategy.spec())
    assert rebuilt == strategy and rebuilt.seeds == [5, 6]
    assert search.Enqueue(configs).ask(History(space)).seed is None  # the trainer's seed


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([],), "non-empty"),
        (({"a": 1},), "list"),
        (([1],), "dict"),
        (([{"a": object()}],), "JSON"),
        (([{"a": 1}], [1, 2]), "one seed per"),
        (([{"a": 1}], [1.5]), "ints"),
    ],
)
def test_bad_arguments(args, match):
    with pytest.raises(spaces.ConfigError, match=match):
        search.Enqueue(*args)


def test_request_seed_must_be_an_int():
    assert Request.start({}, seed=3).seed == 3
    with pytest.raises(spaces.ConfigError, match="seed"):
        Request.start({}, seed="3")
