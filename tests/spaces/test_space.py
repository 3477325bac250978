"""Tests for `Space` and `Choice`: conditional spaces, configs, encoding, moves, serialisation."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

from tunelab import spaces
from tunelab.spaces import Categorical, Choice, ConfigError, Fixed, Float, Int, Space, SpaceError

N_SEEDS = 150


def big_space() -> Space:
    return spaces.optimizers() | spaces.schedules() | spaces.cnn(dim=1)


SPACES = {
    "big": big_space,
    "cells": spaces.cells,
    "cells2d": lambda: spaces.cells(dim=2),
    "mlp": spaces.mlp,
    "mixed": lambda: Space(
        Choice(
            "c",
            {"a": Space(x=Float(0, 1), k=Int(1, 9)), "b": Space(y=Categorical([None, True, 3, "s"])), "e": None},
        ),
        z=Float(1e-3, 10.0, log=True),
        n=Int(1, 64, log=True),
        f=Fixed("const"),
    ),
}


@pytest.fixture(params=sorted(SPACES))
def space(request: pytest.FixtureRequest) -> Space:
    return SPACES[request.param]()


def assert_same_config(a: dict, b: dict) -> None:
    """Equal keys; floats approximately, everything else exactly (type included)."""
    assert set(a) == set(b)
    for k in a:
        if isinstance(a[k], float):
            assert isinstance(b[k], float), k
            assert b[k] == pytest.approx(a[k], rel=1e-9, abs=1e-12), k
        else:
            assert b[k] == a[k] and type(b[k]) is type(a[k]), k


# ---------------------------------------------------------------------------- structure


def test_choice_gives_flat_dotted_names() -> None:
    space = spaces.optimizers(["sgd", "adamw"])
    assert space.names == (
        "optimizer",
        "sgd.lr",
        "sgd.momentum",
        "sgd.nesterov",
        "sgd.weight_decay",
        "adamw.lr",
        "adamw.beta1",
        "adamw.weight_decay",
    )
    assert space["optimizer"] == Categorical(("sgd", "adamw"), default="adamw")
    assert space["sgd.lr"] == Float(1e-3, 1.0, log=True, default=0.1)
    by_name = {e.name: e for e in space.entries}
    assert by_name["optimizer"].is_choice and by_name["optimizer"].when == ()
    assert by_name["sgd.lr"].when == (("optimizer", "sgd"),)
    assert by_name["adamw.beta1"].when == (("optimizer", "adamw"),)
    assert "sgd.lr" in space and "lr" not in space
    assert len(space) == 8


def test_nested_choice_names() -> None:
    space = spaces.optimizers(["sam"])
    assert space.names == (
        "optimizer",
        "sam.rho",
        "sam.base",
        "sam.sgd.lr",
        "sam.sgd.momentum",
        "sam.sgd.nesterov",
        "sam.sgd.weight_decay",
        "sam.adamw.lr",
        "sam.adamw.beta1",
        "sam.adamw.weight_decay",
    )
    by_name = {e.name: e for e in space.entries}
    # A single branch is a constant, not a categorical.
    assert space["optimizer"] == Fixed("sam")
    assert by_name["sam.base"].is_choice
    assert by_name["sam.base"].when == (("optimizer", "sam"),)
    assert by_name["sam.sgd.lr"].when == (("optimizer", "sam"), ("sam.base", "sgd"))
    assert by_name["sam.adamw.lr"].when == (("optimizer", "sam"), ("sam.base", "adamw"))


def test_choice_branch_without_parameters() -> None:
    space = Space(Choice("schedule", {"constant": None, "step": Space(gamma=Float(0.01, 0.5))}))
    assert space.names == ("schedule", "step.gamma")
    assert space.active({"schedule": "constant"}) == ("schedule",)
    assert space.validate({"schedule": "constant"}) == {"schedule": "constant"}


def test_layout_slots_are_contiguous() -> None:
    space = big_space()
    pos = 0
    for slot in space.layout:
        assert slot.start == pos
        param = space[slot.name]
        if slot.kind == "categorical":
            assert slot.stop - slot.start == len(param.choices)
        else:
            assert slot.stop - slot.start == 1
            assert slot.kind == param.kind
        pos = slot.stop
    assert pos == space.dim
    # Constants (and single-branch choices) take no dimension.
    laid_out = {s.name for s in space.layout}
    assert "model" not in laid_out and "model.dim" not in laid_out
    assert Space(a=Fixed(1), b=Float(0, 1), c=Categorical(["x", "y", "z"])).dim == 4


def test_getitem_unknown_name() -> None:
    with pytest.raises(KeyError, match=r"sgd\.lr"):
        spaces.optimizers(["sgd"])["adamw.lr"]


# ---------------------------------------------------------------------------- definition errors


def test_duplicate_names_raise() -> None:
    with pytest.raises(SpaceError, match=r"'a\.x' is defined twice"):
        Space(Choice("opt", {"a": Space(x=Float(0, 1)), "b": None}), **{"a.x": Float(0, 1)})
    with pytest.raises(SpaceError, match=r"'sam\.base' is defined twice"):
        Space(Choice("optimizer", {"sam": spaces.optimizers.get("sam").space}), **{"sam.base": "sgd"})
    with pytest.raises(SpaceError, match="'c' is defined twice"):
        Space(Choice("c", {"a": None, "b": None}), c=Float(0, 1))


def test_bad_space_definitions_raise() -> None:
    with pytest.raises(SpaceError, match="Choice"):
        Space(Float(0, 1))  # positional arguments must be Choices
    with pytest.raises(SpaceError, match="Choice"):
        Space(sub=Space(x=Float(0, 1)))
    with pytest.raises(SpaceError, match="one name"):
        Space(foo=Choice("bar", {"a": None, "b": None}))
    with pytest.raises(SpaceError, match="non-empty"):
        Choice("c", {})
    with pytest.raises(SpaceError, match="without dots"):
        Choice("c", {"a.b": None})
    with pytest.raises(SpaceError, match="default"):
        Choice("c", {"a": None, "b": None}, default="z")
    with pytest.raises(SpaceError, match="must be a Space"):
        Choice("c", {"a": Float(0, 1)})
    with pytest.raises(SpaceError, match="names"):
        Space(**{"a b": Float(0, 1)})


# ---------------------------------------------------------------------------- sample / validate / active / default


def test_sample_gives_only_active_params_and_validates(space: Space) -> None:
    rng = np.random.default_rng(0)
    branches_seen = set()
    for _ in range(N_SEEDS):
        config = space.sample(rng)
        assert tuple(config) == space.active(config)
        assert space.validate(config) == config
        if "optimizer" in config:
            branches_seen.add(config["optimizer"])
    if "optimizer" in space:
        assert branches_seen == set(spaces.optimizers.names())


def test_sample_of_optimizer_space_holds_one_branch() -> None:
    space = spaces.optimizers(["sgd", "adamw"])
    for seed in range(30):
        config = space.sample(seed)
        chosen = config["optimizer"]
        other = "adamw" if chosen == "sgd" else "sgd"
        assert any(k.startswith(chosen + ".") for k in config)
        assert not any(k.startswith(other + ".") for k in config)
    config = spaces.optimizers(["sam"]).sample(np.random.default_rng(3))
    base = config["sam.base"]
    other = "adamw" if base == "sgd" else "sgd"
    assert f"sam.{base}.lr" in config and f"sam.{other}.lr" not in config


def test_same_seed_same_sample_and_generator_advances() -> None:
    space = big_space()
    assert space.sample(42) == space.sample(42)
    assert space.sample(np.random.default_rng(7)) == space.sample(np.random.default_rng(7))
    rng = np.random.default_rng(7)
    before = rng.bit_generator.state
    first = space.sample(rng)
    assert rng.bit_generator.state != before
    second = space.sample(rng)
    assert first != second
    # Sampling with a fresh generator of the same seed twice reproduces both draws in order.
    rng2 = np.random.default_rng(7)
    assert [space.sample(rng2), space.sample(rng2)] == [first, second]
    assert space.sample(1) != space.sample(2)


def test_default_validates(space: Space) -> None:
    config = space.default()
    assert space.validate(config) == config


def test_default_values() -> None:
    config = big_space().default()
    assert config["optimizer"] == "adamw"
    assert config["adamw.lr"] == 1e-3
    assert config["schedule"] == "cosine"
    assert (config["model.depth"], config["model.channels"], config["model.kernel"]) == (3, 25, 5)
    assert spaces.optimizers(default="sgd").default()["optimizer"] == "sgd"
    assert Space(Choice("c", {"a": None, "b": Space(x=Float(0, 1))})).default() == {"c": "a"}


def test_active() -> None:
    space = spaces.optimizers(["sgd", "sam"])
    assert space.active({}) == ("optimizer",)
    assert space.active({"optimizer": "sgd"}) == (
        "optimizer",
        "sgd.lr",
        "sgd.momentum",
        "sgd.nesterov",
        "sgd.weight_decay",
    )
    assert space.active({"optimizer": "sam"}) == ("optimizer", "sam.rho", "sam.base")
    assert space.active({"optimizer": "sam", "sam.base": "adamw"}) == (
        "optimizer",
        "sam.rho",
        "sam.base",
        "sam.adamw.lr",
        "sam.adamw.beta1",
        "sam.adamw.weight_decay",
    )


def test_validate_canonicalises_types() -> None:
    space = Space(x=Float(0, 1), k=Int(1, 9), c=Categorical([3, 5, 7]), f=Fixed(2))
    out = space.validate({"x": np.float32(0.5), "k": 4.0, "c": np.int64(5), "f": 2.0})
    assert out == {"x": 0.5, "k": 4, "c": 5, "f": 2}
    assert [type(v) for v in out.values()] == [float, int, int, int]
    # Key order follows the layout, not the input.
    assert list(space.validate({"k": 1, "f": 2, "c": 3, "x": 0})) == ["x", "k", "c", "f"]


def test_validate_lists_every_problem() -> None:
    space = spaces.optimizers(["sgd", "adamw"])
    bad = {
        "optimizer": "sgd",
        "sgd.lr": 5.0,  # out of range
        "sgd.nesterov": "yes",  # not a choice
        "sgd.weight_decay": 1e-4,
        # sgd.momentum missing
        "adamw.lr": 1e-3,  # inactive
        "typo.lr": 0.1,  # unknown
    }
    with pytest.raises(ConfigError) as info:
        space.validate(bad)
    message = str(info.value)
    for fragment in ("typo.lr", "sgd.lr=5.0", "sgd.nesterov='yes'", "sgd.momentum is missing", "adamw.lr is inactive"):
        assert fragment in message
    assert "sgd.weight_decay=" not in message and "sgd.weight_decay is" not in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"x": 0.5, "k": 2, "extra": 1}, "unknown parameters ['extra']"),
        ({"x": 0.5}, "k is missing"),
        ({"x": 1.5, "k": 2}, "x=1.5 is not valid"),
        ({"x": 0.5, "k": 10}, "k=10 is not valid"),
        ({"x": 0.5, "k": 2.5}, "k=2.5 is not valid"),
        ({"x": float("nan"), "k": 2}, "x=nan is not valid"),
        ({"x": "0.5", "k": 2}, "x='0.5' is not valid"),
    ],
)
def test_validate_rejects(config: dict, fragment: str) -> None:
    space = Space(x=Float(0, 1), k=Int(1, 9))
    with pytest.raises(ConfigError, match="invalid config") as info:
        space.validate(config)
    assert fragment in str(info.value)


def test_validate_rejects_inactive_nested_params_and_wrong_branch() -> None:
    space = spaces.optimizers(["sam", "sgd"])
    config = space.validate(
        {
            "optimizer": "sam",
            "sam.rho": 0.05,
            "sam.base": "adamw",
            "sam.adamw.lr": 1e-3,
            "sam.adamw.beta1": 0.9,
            "sam.adamw.weight_decay": 0.01,
        }
    )
    assert config["sam.base"] == "adamw"
    with pytest.raises(ConfigError, match=r"sam\.sgd\.lr is inactive"):
        space.validate({**config, "sam.sgd.lr": 0.1})
    with pytest.raises(ConfigError, match="optimizer='adam'"):
        space.validate({"optimizer": "adam"})
    with pytest.raises(ConfigError, match="dict"):
        space.validate([("optimizer", "sgd")])


# ---------------------------------------------------------------------------- encode / decode


def test_encode_layout_and_decode_round_trip(space: Space) -> None:
    rng = np.random.default_rng(1)
    for _ in range(N_SEEDS):
        config = space.sample(rng)
        x = space.encode(config)
        assert x.shape == (space.dim,)
        assert x.dtype == np.float64
        assert np.all((x >= 0.0) & (x <= 1.0))
        for slot in space.layout:
            block = x[slot.start : slot.stop]
            param = space[slot.name]
            if slot.name in config:
                if slot.kind == "categorical":
                    assert sorted(block.tolist()) == [0.0] * (len(block) - 1) + [1.0]
                    assert param.choices[int(np.argmax(block))] == config[slot.name]
                else:
                    assert block[0] == pytest.approx(param.to_unit(config[slot.name]))
            elif slot.kind == "categorical":
                assert np.allclose(block, 1.0 / len(block))  # inactive one-hot block: neutral
            else:
                assert block[0] == 0.5  # inactive number: neutral
        assert_same_config(config, space.decode(x))


def test_encode_known_values() -> None:
    space = Space(
        Choice("opt", {"a": Space(lr=Float(1e-4, 1.0, log=True)), "b": Space(k=Int(0, 4))}),
        act=Categorical(["relu", "gelu", "silu"]),
        model=Fixed("mlp"),
    )
    assert space.dim == 3 + 2 + 1 + 1
    layout = {s.name: (s.start, s.stop) for s in space.layout}
    assert layout == {"act": (0, 3), "opt": (3, 5), "a.lr": (5, 6), "b.k": (6, 7)}
    x = space.encode({"act": "gelu", "model": "mlp", "opt": "a", "a.lr": 1e-2})
    np.testing.assert_allclose(x, [0, 1, 0, 1, 0, 0.5, 0.5])
    x = space.encode({"act": "silu", "model": "mlp", "opt": "b", "b.k": 4})
    np.testing.assert_allclose(x, [0, 0, 1, 0, 1, 0.5, 0.9])
    # Configs that differ only in what is inactive in them encode alike.
    assert np.array_equal(space.encode({"opt": "b"}), space.encode({"opt": "b", "a.lr": 0.3}))


def test_decode_of_random_points_always_validates(space: Space) -> None:
    rng = np.random.default_rng(2)
    for _ in range(N_SEEDS):
        x = rng.random(space.dim)
        config = space.decode(x)
        assert space.validate(config) == config
        assert tuple(config) == space.active(config)
    # Points outside the cube are clipped into range.
    config = space.decode(rng.normal(0.5, 3.0, space.dim))
    assert space.validate(config) == config
    assert space.validate(space.decode(np.zeros(space.dim))) is not None
    assert space.validate(space.decode(np.ones(space.dim))) is not None


def test_decode_wrong_length_raises() -> None:
    space = big_space()
    with pytest.raises(ConfigError, match=f"length {space.dim}"):
        space.decode(np.zeros(space.dim + 1))


# ---------------------------------------------------------------------------- mutate


def _changed(space: Space, before: dict, after: dict) -> None:
    """Assert `after` differs from `before` in one value plus what a changed choice (de)activates."""
    by_name = {e.name: e for e in space.entries}
    common = [k for k in before if k in after]
    changed = [k for k in common if before[k] != after[k] or type(before[k]) is not type(after[k])]
    assert len(changed) == 1, (before, after)
    key = changed[0]
    toggled = set(before) ^ set(after)
    if toggled:
        assert by_name[key].is_choice
        for name in toggled:
            assert key in [cond for cond, _ in by_name[name].when], (key, name)
        # Exactly the params the new branch activates were added, the old branch's removed.
        assert set(after) == set(space.active(after))
        assert set(before) - set(after) == set(space.active(before)) - set(space.active(after))


def test_mutate_returns_valid_config_differing_in_one_place(space: Space) -> None:
    rng = np.random.default_rng(3)
    keys_changed = set()
    for _ in range(N_SEEDS):
        config = space.sample(rng)
        mutated = space.mutate(config, rng)
        assert space.validate(mutated) == mutated
        assert mutated != config
        _changed(space, config, mutated)
        keys_changed.update(k for k in config if mutated.get(k) != config[k])
    assert len(keys_changed) > 3  # mutations spread over parameters


def test_mutate_is_deterministic_for_a_seed_and_leaves_input_alone() -> None:
    space = big_space()
    config = space.sample(0)
    copy = dict(config)
    assert space.mutate(config, 5) == space.mutate(config, 5)
    assert config == copy


def test_mutate_integers_move_and_numbers_stay_in_bounds() -> None:
    space = Space(k=Int(1, 2), x=Float(0, 1))
    rng = np.random.default_rng(4)
    for _ in range(200):
        config = space.sample(rng)
        mutated = space.mutate(config, rng, scale=1e-6)  # tiny steps: integers must still move
        assert mutated != config
        assert space.validate(mutated) == mutated
    assert space.mutate({"k": 2, "x": 1.0}, 0, scale=5.0)["x"] <= 1.0


def test_mutate_identity_for_constant_spaces() -> None:
    space = Space(a=Fixed(1), b=Fixed("x"), c=Choice("c", {"only": Space(d=Fixed(None))}))
    config = space.default()
    assert config == {"a": 1, "b": "x", "c": "only", "only.d": None}
    assert space.mutate(config, 0) == config
    assert Space().mutate({}, 0) == {}
    with pytest.raises(ConfigError):
        space.mutate({"a": 2, "b": "x", "c": "only", "only.d": None}, 0)


# ---------------------------------------------------------------------------- neighbors


def test_neighbors(space: Space) -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        config = space.sample(rng)
        nbs = space.neighbors(config)
        assert nbs
        keys = [json.dumps(n, sort_keys=True) for n in nbs]
        assert len(set(keys)) == len(keys)
        assert json.dumps(config, sort_keys=True) not in keys
        for nb in nbs:
            assert space.validate(nb) == nb
            _changed(space, config, nb)
        # Every other value of every active categorical (choices included) appears.
        for name in config:
            param = space[name]
            if isinstance(param, Categorical):
                seen = {repr(nb[name]) for nb in nbs if name in nb}
                others = {repr(c) for c in param.choices if not (type(c) is type(config[name]) and c == config[name])}
                assert others <= seen, name


def test_neighbors_known_values() -> None:
    space = Space(
        Choice("c", {"a": Space(x=Float(0, 1, default=0.3)), "b": None}),
        k=Int(1, 5),
    )
    nbs = space.neighbors({"k": 1, "c": "a", "a.x": 0.5})
    assert nbs == [
        {"k": 2, "c": "a", "a.x": 0.5},
        {"k": 1, "c": "b"},
        {"k": 1, "c": "a", "a.x": pytest.approx(0.4)},
        {"k": 1, "c": "a", "a.x": pytest.approx(0.6)},
    ]
    # A new branch starts at its defaults.
    assert {"k": 1, "c": "a", "a.x": 0.3} in space.neighbors({"k": 1, "c": "b"})
    # At a bound, the clipped move is not a neighbour.
    assert space.neighbors({"k": 5, "c": "a", "a.x": 1.0}) == [
        {"k": 4, "c": "a", "a.x": 1.0},
        {"k": 5, "c": "b"},
        {"k": 5, "c": "a", "a.x": pytest.approx(0.9)},
    ]
    log_space = Space(lr=Float(1e-6, 10.0, log=True))
    assert log_space.neighbors({"lr": 1e-6}) == [{"lr": pytest.approx(10 ** (-6 + 0.7))}]


def test_neighbors_of_constant_space_is_empty() -> None:
    space = Space(a=Fixed(1))
    assert space.neighbors({"a": 1}) == []


# ---------------------------------------------------------------------------- optuna


def test_distributions_match_active_names_and_work_with_optuna(space: Space) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    rng = np.random.default_rng(6)
    configs = [space.sample(rng) for _ in range(60)] + [space.default()]
    for config in configs:
        dists = space.distributions(config)
        assert tuple(dists) == space.active(config) == tuple(config)
        for name, dist in dists.items():
            assert dist == space[name].distribution()
            assert dist._contains(dist.to_internal_repr(config[name]))
        trial = optuna.trial.create_trial(params=config, distributions=dists, value=0.0)
        # The same name always means the same distribution, so one study holds every branch.
        study.add_trial(trial)
    for trial, config in zip(study.trials, configs, strict=True):
        assert space.validate(trial.params) == config
    assert set(space.distributions()) == set(space.names)


def test_distributions_for_nested_branch() -> None:
    space = spaces.optimizers(["sam"])
    config = space.default()
    assert set(space.distributions(config)) == {
        "optimizer",
        "sam.rho",
        "sam.base",
        "sam.sgd.lr",
        "sam.sgd.momentum",
        "sam.sgd.nesterov",
        "sam.sgd.weight_decay",
    }
    assert space.distributions(config)["optimizer"] == optuna.distributions.CategoricalDistribution(("sam",))
    assert space.distributions(config)["sam.rho"] == optuna.distributions.FloatDistribution(0.01, 0.5, log=True)


# ---------------------------------------------------------------------------- JSON


def test_json_round_trip(space: Space) -> None:
    text = space.to_json()
    assert isinstance(text, str)
    back = Space.from_json(text)
    assert back == space
    assert hash(back) == hash(space)
    assert back.names == space.names
    assert back.dim == space.dim
    assert back.to_json() == text
    assert Space.from_json(json.loads(text)) == space
    config = space.sample(8)
    assert back.validate(config) == config
    np.testing.assert_array_equal(back.encode(config), space.encode(config))
    assert back.default() == space.default()


def test_from_json_rejects_garbage() -> None:
    with pytest.raises(SpaceError, match="not a tunelab space"):
        Space.from_json("not json")
    with pytest.raises(SpaceError, match="not a tunelab space"):
        Space.from_json('{"params": [{"name": "x"}]}')
    with pytest.raises(SpaceError, match="unknown parameter type"):
        Space.from_json('{"params": [{"name": "x", "param": {"type": "weird"}, "when": [], "choice": false}]}')
    bad = {"params": [{"name": "lr", "param": Float(1, 0).to_json(), "when": [], "choice": False}]}
    with pytest.raises(SpaceError, match="lr"):
        Space.from_json(json.dumps(bad))
    dangling = {"params": [{"name": "a.x", "param": Float(0, 1).to_json(), "when": [["a", "a"]], "choice": False}]}
    with pytest.raises(SpaceError, match="not a Choice"):
        Space.from_json(dangling)


# ---------------------------------------------------------------------------- merging


def test_merge() -> None:
    a = spaces.optimizers(["sgd", "adamw"])
    b = spaces.schedules()
    merged = a | b
    assert merged.names == a.names + b.names
    assert merged.dim == a.dim + b.dim
    # Identical definitions are kept once.
    assert (merged | a) == merged
    assert (a | a) == a
    assert len(merged | spaces.schedules()) == len(merged)
    assert (Space(x=Float(0, 1)) | Space(x=Float(0, 1), y=Int(1, 3))).names == ("x", "y")
    config = merged.sample(0)
    assert merged.validate(config) == config
    assert a.validate({k: v for k, v in config.items() if k in a}) is not None


def test_merge_conflicts_raise() -> None:
    with pytest.raises(SpaceError, match="'x' is defined differently"):
        Space(x=Float(0, 1)) | Space(x=Float(0, 2))
    with pytest.raises(SpaceError, match="optimizer"):
        spaces.optimizers(["sgd"]) | spaces.optimizers(["adamw"])
    with pytest.raises(SpaceError, match="model"):
        spaces.mlp() | spaces.cnn()
    # A plain categorical and a Choice of the same values are different definitions.
    with pytest.raises(SpaceError):
        Space(c=Categorical(["a", "b"])) | Space(Choice("c", {"a": None, "b": None}))
    with pytest.raises(TypeError):
        Space(x=Float(0, 1)) | {"y": 1}


def test_space_equality() -> None:
    assert Space(x=Float(0, 1)) == Space(x=Float(0, 1))
    assert Space(x=Float(0, 1)) != Space(x=Float(0, 1, log=False, default=0.5))
    assert Space(x=Float(0, 1)) != Space(y=Float(0, 1))
    assert big_space() == big_space()
    assert "x: float [0, 1]" in repr(Space(x=Float(0, 1)))


def test_branch_helper() -> None:
    config = {"optimizer": "adamw", "adamw.lr": 1e-3, "adamw.beta1": 0.9, "adam.lr": 2.0}
    assert spaces.branch(config, "adamw") == {"lr": 1e-3, "beta1": 0.9}
    assert spaces.as_rng(np.random.default_rng(0)) is not None
    rng = np.random.default_rng(0)
    assert spaces.as_rng(rng) is rng
