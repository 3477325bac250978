"""Tests for the parameter types of spaces (Float, Int, Categorical, Fixed)."""

from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest

from tunelab import spaces
from tunelab.spaces import Categorical, Fixed, Float, Int, Space
from tunelab.spaces.params import as_param, param_from_json

# ---------------------------------------------------------------------------- bad definitions


@pytest.mark.parametrize(
    ("param", "fragment"),
    [
        (Float(1, 0), "low < high"),
        (Float(0.5, 0.5), "low < high"),
        (Float(0, 1, log=True), "low > 0"),
        (Float(-1.0, 1.0, log=True), "low > 0"),
        (Float(0, math.inf), "finite"),
        (Float(math.nan, 1.0), "finite"),
        (Float("0", 1), "numbers"),
        (Float(True, 2), "numbers"),
        (Float(0, 1, default=2.0), "default"),
        (Float(1e-3, 1, log=True, default=0.0), "default"),
        (Int(3, 1), "low < high"),
        (Int(2, 2), "low < high"),
        (Int(0, 8, log=True), "low >= 1"),
        (Int(0.5, 3), "integers"),
        (Int(0, 3.0), "integers"),
        (Int(0, 4, default=7), "default"),
        (Int(0, 4, default=2.5), "default"),
        (Categorical(["a"]), "at least two"),
        (Categorical("ab"), "at least two"),
        (Categorical([]), "at least two"),
        (Categorical(["a", "a"]), "repeat"),
        (Categorical([1, [2]]), "None, bool, int, float or str"),
        (Categorical(["a", "b"], default="c"), "default"),
        (Fixed([1, 2]), "None, bool, int, float or str"),
        (Fixed(object()), "None, bool, int, float or str"),
    ],
)
def test_bad_definition_raises_space_error_naming_the_parameter(param: spaces.Param, fragment: str) -> None:
    with pytest.raises(spaces.SpaceError) as info:
        Space(my_param=param)
    message = str(info.value)
    assert "my_param" in message
    assert fragment in message
    # SpaceError is a ValueError, so standard-library style handlers catch it.
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, spaces.TunelabError)


def test_name_is_bound_when_the_space_is_built() -> None:
    bad = Float(1, 0)  # constructing the parameter alone is allowed ...
    with pytest.raises(spaces.SpaceError, match=r"^lr: .*low=1, high=0"):
        Space(lr=bad)  # ... the space names it
    with pytest.raises(ValueError, match=r"model\.depth"):
        Space(**{"model.depth": Int(4, 1)})
    with pytest.raises(spaces.SpaceError, match="lr"):
        bad.check("lr")


def test_nested_bad_definition_names_the_inner_parameter() -> None:
    with pytest.raises(spaces.SpaceError, match="weight_decay"):
        Space(spaces.Choice("optimizer", {"sgd": Space(weight_decay=Float(0, 1, log=True))}))


def test_valid_definitions_do_not_raise() -> None:
    space = Space(
        a=Float(0, 1),
        b=Float(1e-5, 1.0, log=True, default=1e-3),
        c=Int(1, 8, log=True, default=1),
        d=Categorical([True, 1, "1", None, 1.5]),  # type-exact: True and 1 are different choices
        e=Fixed(None),
        f=3,
    )
    assert space.names == ("a", "b", "c", "d", "e", "f")
    assert space["f"] == Fixed(3)


def test_as_param_wraps_plain_values() -> None:
    assert as_param(5) == Fixed(5)
    f = Float(0, 1)
    assert as_param(f) is f


# ---------------------------------------------------------------------------- sampling


def test_float_samples_stay_in_bounds_and_are_uniform() -> None:
    p = Float(-2.0, 3.0)
    rng = np.random.default_rng(0)
    xs = np.array([p.sample(rng) for _ in range(5000)])
    assert xs.min() >= -2.0
    assert xs.max() <= 3.0
    assert all(type(x) is float for x in xs.tolist())
    assert np.median(xs) == pytest.approx(0.5, abs=0.15)
    # Each fifth of the range gets about a fifth of the samples.
    counts = np.histogram(xs, bins=5, range=(-2.0, 3.0))[0]
    assert np.all(np.abs(counts - 1000) < 120)


def test_log_float_samples_are_log_uniform() -> None:
    p = Float(1e-4, 1.0, log=True)
    rng = np.random.default_rng(1)
    xs = np.array([p.sample(rng) for _ in range(5000)])
    assert xs.min() >= 1e-4
    assert xs.max() <= 1.0
    # Log-uniform on four decades: median near 1e-2, each decade about a quarter of the mass.
    assert math.log10(np.median(xs)) == pytest.approx(-2.0, abs=0.1)
    decades = np.histogram(np.log10(xs), bins=4, range=(-4.0, 0.0))[0]
    assert np.all(np.abs(decades - 1250) < 125)
    # A uniform sampler would put ~99% of the mass above 1e-2.
    assert 0.45 < np.mean(xs < 1e-2) < 0.55


def test_int_samples_cover_every_integer_equally() -> None:
    p = Int(-2, 3)
    rng = np.random.default_rng(2)
    xs = [p.sample(rng) for _ in range(6000)]
    assert all(type(x) is int for x in xs)
    values, counts = np.unique(xs, return_counts=True)
    assert values.tolist() == [-2, -1, 0, 1, 2, 3]
    assert np.all(np.abs(counts - 1000) < 120)


def test_log_int_samples_are_log_uniform() -> None:
    p = Int(1, 1000, log=True)
    rng = np.random.default_rng(3)
    xs = np.array([p.sample(rng) for _ in range(5000)])
    assert xs.min() >= 1
    assert xs.max() <= 1000
    # Log-uniform over [0.5, 1000.5]: median near sqrt(0.5 * 1000.5) ~ 22.4.
    assert 17 <= np.median(xs) <= 29
    assert np.mean(xs <= 10) > 0.3  # uniform would give ~1%


def test_categorical_and_fixed_sampling() -> None:
    p = Categorical(["relu", "gelu", "silu"])
    rng = np.random.default_rng(4)
    xs = [p.sample(rng) for _ in range(3000)]
    values, counts = np.unique(xs, return_counts=True)
    assert sorted(values.tolist()) == ["gelu", "relu", "silu"]
    assert np.all(np.abs(counts - 1000) < 110)
    assert Fixed(7).sample(rng) == 7
    assert Fixed(None).sample(rng) is None


# ---------------------------------------------------------------------------- unit mapping


def test_int_unit_mapping_gives_every_integer_an_equal_share() -> None:
    p = Int(3, 9)
    n = p.high - p.low + 1
    grid = (np.arange(7000) + 0.5) / 7000
    values, counts = np.unique([p.from_unit(u) for u in grid], return_counts=True)
    assert values.tolist() == list(range(3, 10))
    assert np.all(counts == 1000)
    # Each integer's position is the centre of its share.
    for k in range(3, 10):
        assert p.to_unit(k) == pytest.approx((k - 3 + 0.5) / n)
    assert p.from_unit(0.0) == 3
    assert p.from_unit(1.0) == 9


def test_log_int_unit_mapping_gives_equal_log_shares() -> None:
    p = Int(1, 100, log=True)
    a, b = math.log(0.5), math.log(100.5)
    for k in (1, 2, 10, 50, 100):
        lo, hi = (math.log(k - 0.5) - a) / (b - a), (math.log(k + 0.5) - a) / (b - a)
        assert p.from_unit(lo + 1e-9) == k
        assert p.from_unit(hi - 1e-9) == k
        assert lo < p.to_unit(k) < hi


@pytest.mark.parametrize(
    "param",
    [Float(-3.0, 5.0), Float(1e-6, 10.0, log=True), Float(0, 1)],
)
def test_float_unit_round_trip(param: Float) -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        x = param.sample(rng)
        u = param.to_unit(x)
        assert 0.0 <= u <= 1.0
        assert param.from_unit(u) == pytest.approx(x, rel=1e-9, abs=1e-12)
    for u in np.linspace(0, 1, 11):
        assert param.to_unit(param.from_unit(u)) == pytest.approx(u, abs=1e-9)
    assert param.from_unit(0.0) == param.low
    assert param.from_unit(1.0) == param.high
    # Out-of-range positions are clipped, never leave the bounds.
    assert param.from_unit(-0.5) == param.low
    assert param.from_unit(1.5) == param.high


def test_log_float_unit_is_on_the_log_scale() -> None:
    p = Float(1e-4, 1.0, log=True)
    assert p.to_unit(1e-2) == pytest.approx(0.5)
    assert p.to_unit(1e-3) == pytest.approx(0.25)
    assert p.from_unit(0.75) == pytest.approx(1e-1)
    assert p.default_value() == pytest.approx(1e-2)
    assert Float(0, 10).default_value() == pytest.approx(5.0)


@pytest.mark.parametrize("param", [Int(-5, 5), Int(1, 512, log=True), Int(0, 1)])
def test_int_unit_round_trip_is_exact(param: Int) -> None:
    for k in range(param.low, param.high + 1):
        u = param.to_unit(k)
        assert 0.0 < u < 1.0
        assert param.from_unit(u) == k


# ---------------------------------------------------------------------------- contains / normalize / defaults


def test_contains_and_normalize() -> None:
    f = Float(0, 1)
    assert f.contains(0) and f.contains(1.0) and f.contains(np.float32(0.5))
    assert not f.contains(1.0001) and not f.contains(math.nan) and not f.contains(True) and not f.contains("0.5")
    assert type(f.normalize(np.float64(0.25))) is float

    i = Int(1, 4)
    assert i.contains(3) and i.contains(np.int64(4)) and i.contains(2.0)
    assert not i.contains(2.5) and not i.contains(5) and not i.contains(True)
    assert i.normalize(2.0) == 2 and type(i.normalize(np.int64(2))) is int

    c = Categorical([False, True])
    assert c.contains(True) and c.contains(False)
    assert not c.contains(1) and not c.contains("True")
    k = Categorical([3, 5, 7])
    assert k.contains(np.int64(5)) and k.index(7) == 2
    assert k.normalize(np.int64(5)) == 5 and type(k.normalize(np.int64(5))) is int

    x = Fixed(3)
    assert x.contains(3) and x.contains(3.0) and not x.contains(4) and not x.contains("3")
    assert Fixed(None).contains(None) and not Fixed(None).contains(0)


def test_defaults() -> None:
    assert Float(0, 1, default=0.3).default_value() == 0.3
    assert Int(0, 10).default_value() == 5
    assert Int(0, 10, default=2).default_value() == 2
    assert Categorical(["a", "b"]).default_value() == "a"
    assert Categorical(["a", "b"], default="b").default_value() == "b"
    assert Categorical([False, True], default=False).default_value() is False
    assert Fixed("x").default_value() == "x"


# ---------------------------------------------------------------------------- optuna equivalence


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        (Float(0, 1), optuna.distributions.FloatDistribution(0.0, 1.0)),
        (Float(1e-4, 1.0, log=True, default=1e-3), optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)),
        (Int(1, 4), optuna.distributions.IntDistribution(1, 4)),
        (Int(8, 64, log=True), optuna.distributions.IntDistribution(8, 64, log=True)),
        (Categorical(["relu", "gelu"]), optuna.distributions.CategoricalDistribution(("relu", "gelu"))),
        (Categorical([3, 5, 7], default=5), optuna.distributions.CategoricalDistribution((3, 5, 7))),
        (Fixed("cnn"), optuna.distributions.CategoricalDistribution(("cnn",))),
        (Fixed(1), optuna.distributions.CategoricalDistribution((1,))),
    ],
)
def test_distribution_is_the_matching_optuna_distribution(param: spaces.Param, expected: object) -> None:
    dist = param.distribution()
    assert type(dist) is type(expected)
    assert dist == expected
    if isinstance(param, (Float, Int)):
        assert (dist.low, dist.high, dist.log) == (param.low, param.high, param.log)


def test_sampled_values_are_inside_the_optuna_distribution() -> None:
    rng = np.random.default_rng(6)
    params = [Float(1e-4, 1.0, log=True), Float(-1, 1), Int(1, 9), Int(2, 300, log=True), Categorical(["a", "b"])]
    for p in params:
        dist = p.distribution()
        for _ in range(100):
            v = p.sample(rng)
            assert dist._contains(dist.to_internal_repr(v))
            assert dist.to_external_repr(dist.to_internal_repr(v)) == v


# ---------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    "param",
    [
        Float(0, 1),
        Float(1e-5, 0.1, log=True, default=1e-3),
        Int(1, 4, default=2),
        Int(8, 64, log=True),
        Categorical([False, True], default=False),
        Categorical(["none", None, 3, 2.5]),
        Fixed("cnn"),
        Fixed(None),
        Fixed(0.25),
    ],
)
def test_json_round_trip(param: spaces.Param) -> None:
    data = json.loads(json.dumps(param.to_json()))
    back = param_from_json(data)
    assert back == param
    assert type(back) is type(param)
    assert back.to_json() == param.to_json()
    assert back.default_value() == param.default_value()
    assert back.distribution() == param.distribution()


def test_param_from_json_rejects_unknown_types() -> None:
    with pytest.raises(spaces.SpaceError, match="unknown parameter type"):
        param_from_json({"type": "complex", "low": 0})


def test_registry_register_unregister_and_errors() -> None:
    reg = spaces.Registry("widget")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)
    assert reg.register("a", 3, replace=True) == 3 and reg.get("a") == 3
    with pytest.raises(ValueError, match="identifiers"):
        reg.register("not valid", 1)
    assert reg.unregister("a") == 3 and "a" not in reg
    with pytest.raises(spaces.UnknownNameError, match="unknown widget 'a'"):
        reg.unregister("a")
