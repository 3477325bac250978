"""Evolution: mutation validity, the aging and DE population rules, limits, multi-fidelity, resume."""

import math

import numpy as np
import pytest
from strategy_conformance import best, toy_loop, toy_space

from tunelab import search, spaces
from tunelab.search import History, TrialView
from tunelab.search.evolution import mutate
from tunelab.spaces import EDGES, Genotype

SHAPES = {"input_shape": (40,), "n_outputs": 10}


def cell_space():
    lr = spaces.Space(lr=spaces.Float(1e-4, 1e-1, log=True), wd=spaces.Float(1e-6, 1e-1, log=True))
    return lr | spaces.cells(dim=1)


def fake_value(config):
    """A deterministic stand-in for validation error: convolutions help, a good lr helps."""
    ops = [config[f"model.op_{i}_{j}"] for i, j in EDGES]
    v = 1.0 - 0.1 * sum(op == "conv3x3" for op in ops) - 0.05 * sum(op == "conv1x1" for op in ops)
    return v + 0.1 * abs(math.log10(config.get("lr", 1e-2)) + 2.0)


def complete(number, config, value, attrs=None):
    return TrialView(number, "complete", config, value=value, curve=(value,), epochs=1, target_epochs=1,
                     attrs=attrs or {})


def loop(strategy, space, n, objective, **history_kw):
    trials = []
    for i in range(n):
        request = strategy.ask(History(space, tuple(trials), max_epochs=1, **history_kw))
        config = space.validate(request.config)
        trials.append(complete(i, config, objective(config), dict(request.attrs)))
    return trials


# ----------------------------------------------------------------------------- mutation
@pytest.mark.parametrize("make_space", [cell_space, toy_space])
def test_mutation_is_valid_and_changes_exactly_what_it_says(make_space):
    space = make_space()
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(400):
        parent = space.sample(rng)
        m = mutate(space, parent, rng, identity=0.1)
        kinds.add(m.kind)
        assert space.validate(m.config) == m.config
        changed = {k for k in set(parent) | set(m.config) if parent.get(k) != m.config.get(k)}
        if m.kind == "identity":
            assert m.config == parent
            continue
        assert changed, f"a {m.kind} mutation of {m.name} changed nothing"
        if m.kind == "op":
            assert changed == {m.name}
        elif m.kind == "edge":  # node j's input moved: two incoming edges of j swapped their operations
            assert len(changed) == 2 and m.name in changed
            nodes = {k.rsplit("_", 1)[1] for k in changed}
            assert len(nodes) == 1
            a, b = sorted(changed)
            assert (parent[a], parent[b]) == (m.config[b], m.config[a])
        else:
            # one parameter, plus whatever a changed choice activates or deactivates
            assert m.name in changed
            assert all(k == m.name or k not in parent or k not in m.config for k in changed)
    expected = {"identity", "param", "op", "edge"} if make_space is cell_space else {"identity", "param"}
    assert kinds == expected


def test_edge_mutation_rewires_a_node_and_keeps_its_operations():
    space = cell_space()
    rng = np.random.default_rng(1)
    seen = 0
    for _ in range(300):
        parent = space.sample(rng)
        m = mutate(space, parent, rng)
        if m.kind != "edge":
            continue
        seen += 1
        g0, g1 = Genotype.from_config(parent), Genotype.from_config(m.config)
        assert str(g0) != str(g1)
        j = int(m.name.rsplit("_", 1)[1])
        incoming = [k for k, (_, jj) in enumerate(EDGES) if jj == j]
        assert sorted(g0.ops[k] for k in incoming) == sorted(g1.ops[k] for k in incoming)
        assert all(g0.ops[k] == g1.ops[k] for k in range(len(EDGES)) if k not in incoming)
    assert seen > 20


def test_mutation_of_a_space_with_nothing_to_change_is_the_identity():
    space = spaces.Space(a=spaces.Fixed(1))
    m = mutate(space, {"a": 1}, np.random.default_rng(0))
    assert m.kind == "identity" and m.config == {"a": 1}


# ----------------------------------------------------------------------------- aging evolution
def test_population_is_the_p_youngest_finished_trials_and_the_oldest_dies_first():
    space = toy_space()
    evo = search.Evolution(population=3, sample=2, seed=0)
    configs = [space.sample(np.random.default_rng(i)) for i in range(6)]
    trials = [complete(0, configs[0], 0.0)]  # the best ever: it still dies of age
    trials += [complete(i, configs[i], 1.0 + i) for i in range(1, 4)]
    trials.append(TrialView(4, "failed", configs[4], error="diverged"))
    trials.append(TrialView(5, "running", configs[5]))
    history = History(space, tuple(trials))
    assert [t.number for t in evo.members(history)] == [1, 2, 3]


def test_child_is_a_one_step_mutation_of_the_best_of_its_tournament():
    space = toy_space()
    evo = search.Evolution(population=4, sample=2, seed=7)
    trials = loop(evo, space, 30, lambda c: float(np.random.default_rng(len(str(c))).random()))
    by_number = {t.number: t for t in trials}
    children = [t for t in trials[4:] if t.attrs["evolution"]["mutation"] not in ("random",)]
    assert len(children) >= 20
    for child in children:
        info = child.attrs["evolution"]
        parent = by_number[info["parent"]]
        history = History(space, tuple(trials[: child.number]))
        population = evo.members(history)
        assert parent in population
        # the parent won its tournament: the best of S members drawn with replacement
        picks = evo.rng(history).integers(len(population), size=2)
        assert parent.value == min(population[int(i)].value for i in picks)
        assert child.config != parent.config
        assert search.config_key(child.config) not in {search.config_key(t.config) for t in trials[: child.number]}


def test_asks_are_a_function_of_the_history_so_resume_rebuilds_the_same_population():
    space = cell_space()
    evo = search.Evolution(population=5, sample=2, seed=3)
    trials = loop(evo, space, 15, fake_value)
    history = History(space, tuple(trials), max_epochs=1)
    again = search.Strategy.from_spec(evo.spec())  # as a reloaded study rebuilds it
    assert [t.number for t in again.members(history)] == [t.number for t in evo.members(history)]
    assert again.ask(history) == evo.ask(history)


@pytest.mark.parametrize(("method", "n"), [("regularized", 60), ("differential", 100)])
def test_evolution_beats_random_search_on_the_toy_objective(method, n):
    # DE moves a whole population per generation: with P = 10 it needs ~10 generations
    seeds = range(5)
    evo = np.median([best(toy_loop(search.Evolution(seed=s, method=method), n)) for s in seeds])
    rand = np.median([best(toy_loop(search.Random(seed=s), n)) for s in seeds])
    assert evo < 0.5 * rand, f"{method} evolution {evo:.3f} vs random {rand:.3f} after {n} evaluations"


def test_evolution_beats_random_search_on_a_cell_space():
    space = cell_space()
    n, seeds = 40, range(5)
    evo = np.median([min(t.value for t in loop(search.Evolution(seed=s), space, n, fake_value)) for s in seeds])
    rand = np.median([min(t.value for t in loop(search.Random(seed=s), space, n, fake_value)) for s in seeds])
    assert evo < rand, f"evolution {evo:.3f} vs random {rand:.3f}"


def test_waits_for_a_parent_when_every_initial_trial_is_in_flight():
    space = toy_space()
    evo = search.Evolution(population=2, sample=2, seed=0)
    running = tuple(TrialView(i, "running", space.sample(np.random.default_rng(i))) for i in range(2))
    assert evo.ask(History(space, running)) is None
    failed = tuple(TrialView(i, "failed", space.sample(np.random.default_rng(i)), error="x") for i in range(2))
    assert evo.ask(History(space, failed)).kind == "start"  # nothing to wait for: a random newcomer


# ----------------------------------------------------------------------------- differential evolution
def test_de_child_crosses_its_target_with_a_rand_1_mutant_and_slots_keep_the_best():
    space = toy_space()
    evo = search.Evolution(population=4, seed=2, method="differential")
    trials = loop(evo, space, 12, lambda c: float(np.random.default_rng(len(str(c))).random()))
    for t in trials[:4]:
        assert t.attrs["evolution"]["slot"] == t.number and t.attrs["evolution"]["mutation"] == "random"
    for t in trials[4:]:
        info = t.attrs["evolution"]
        assert info["slot"] == (t.number - 4) % 4
        assert all(0.0 <= u <= 1.0 for u in info["u"])
        if info["mutation"] == "de":
            assert info["slot"] not in info["donors"] and len(set(info["donors"])) == 3
            history = History(space, tuple(trials[: t.number]))
            target = np.asarray(evo._slots(history)[info["slot"]][0])
            # binomial crossover: at least one coordinate comes from the mutant
            assert not np.array_equal(np.asarray(info["u"]), target)
    history = History(space, tuple(trials))
    for slot, (_, occupant) in enumerate(evo._slots(history)):
        mine = [t for t in trials if t.attrs["evolution"]["slot"] == slot]
        assert occupant.value == min(t.value for t in mine)


# ----------------------------------------------------------------------------- limits
def test_a_parameter_limit_is_never_violated():
    space = cell_space()
    sizes = [spaces.param_count(space.sample(np.random.default_rng(i)), **SHAPES) for i in range(40)]
    limit = int(np.quantile(sizes, 0.3))
    for method in ("regularized", "differential"):
        evo = search.Evolution(population=5, sample=2, seed=0, method=method, max_params=limit)
        trials = loop(evo, space, 25, fake_value, **SHAPES)
        got = [spaces.param_count(t.config, **SHAPES) for t in trials]
        assert max(got) <= limit, (method, max(got), limit)
        assert len({search.config_key(t.config) for t in trials}) == 25


def test_limits_need_shapes_and_must_be_satisfiable():
    space = cell_space()
    with pytest.raises(spaces.ConfigError, match="input_shape"):
        search.Evolution(max_params=10_000).ask(History(space, ()))
    with pytest.raises(spaces.ConfigError, match="max_params=10"):
        search.Evolution(max_params=10).ask(History(space, (), **SHAPES))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"population": 0}, "population"),
        ({"population": 3, "method": "differential"}, "population"),
        ({"sample": 0}, "sample"),
        ({"method": "genetic"}, "method"),
        ({"identity": 1.5}, "identity"),
        ({"max_params": -1}, "max_params"),
        ({"short_epochs": 0}, "short_epochs"),
        ({"eta": 1}, "eta"),
    ],
)
def test_bad_settings_are_refused_with_the_rule(kwargs, match):
    with pytest.raises(spaces.ConfigError, match=match):
        search.Evolution(**kwargs)


# ----------------------------------------------------------------------------- multi-fidelity
def test_short_runs_promote_the_top_third_and_retire_aged_out_losers():
    space = toy_space()
    evo = search.Evolution(population=3, sample=2, seed=0, short_epochs=2, eta=3)
    configs = [space.sample(np.random.default_rng(i)) for i in range(6)]
    shorts = [0.5, 0.1, 0.9, 0.8, 0.7, 0.6]
    trials = tuple(TrialView(i, "paused", configs[i], curve=(1.0, v), epochs=2, target_epochs=2)
                   for i, v in enumerate(shorts))
    history = History(space, trials, max_epochs=6)
    # top 6 // 3 = 2 short values: trials 1 (0.1) and 0 (0.5); trial 1 first
    assert [t.number for t in evo.promotable(history)] == [1, 0]
    request = evo.ask(history)
    assert (request.kind, request.trial, request.until_epoch) == ("resume", 1, None)
    # population = the 3 youngest (3, 4, 5); 2 is neither a member nor in the top third
    assert evo.retire(history) == [2]
    new = search.Evolution(population=3, sample=2, seed=0, short_epochs=2).ask(History(space, (), max_epochs=6))
    assert new.kind == "start" and new.epochs == 2
    # a short run as long as the full one is no fidelity at all: plain full runs
    assert search.Evolution(short_epochs=6).ask(History(space, (), max_epochs=6)).epochs is None
