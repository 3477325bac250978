"""Tests for the learning-rate schedules and `build_schedule`."""

from __future__ import annotations

import io
import math
from itertools import pairwise

import pytest
import torch

from tunelab import spaces
from tunelab.spaces import ConfigError, Float, ScheduleSpec, Space, UnknownNameError


def mult(config: dict, total: int) -> spaces.Multiplier:
    return spaces.schedule_multiplier(config, total)


def _sgd(lr: float = 0.1) -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def test_registry_and_space() -> None:
    assert spaces.schedules.names()[:6] == ("constant", "cosine", "warmup_cosine", "step", "linear", "onecycle")
    space = spaces.schedules()
    assert space.names == ("schedule", "warmup_cosine.warmup", "step.gamma", "onecycle.pct_start")
    assert space.default() == {"schedule": "cosine"}
    assert spaces.schedules(["step", "linear"]).default() == {"schedule": "step", "step.gamma": 0.1}
    with pytest.raises(UnknownNameError, match="cosine"):
        spaces.schedules(["cosine", "exponential"])


def test_constant() -> None:
    f = mult({"schedule": "constant"}, 100)
    assert [f(s) for s in (0, 1, 50, 99, 100, 1000)] == [1.0] * 6
    assert f.constant
    # No schedule in the config: constant.
    assert mult({}, 10).name == "constant"
    assert not mult({"schedule": "cosine"}, 10).constant


def test_cosine() -> None:
    f = mult({"schedule": "cosine"}, 100)
    assert f(0) == 1.0
    assert f(50) == pytest.approx(0.5)
    assert f(25) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert f(100) == pytest.approx(0.0, abs=1e-15)
    assert f(150) == pytest.approx(0.0, abs=1e-15)  # clamped past the end
    values = [f(s) for s in range(101)]
    assert all(a > b for a, b in pairwise(values))


def test_warmup_cosine() -> None:
    f = mult({"schedule": "warmup_cosine", "warmup_cosine.warmup": 0.1}, 100)
    warm = [f(s) for s in range(10)]
    # Linear rise over the 10 warm-up steps ...
    assert warm[0] == pytest.approx(1 / 11)
    assert warm[-1] == pytest.approx(10 / 11)
    steps = [b - a for a, b in pairwise(warm)]
    assert steps == pytest.approx([1 / 11] * 9)
    # ... then a cosine over the remaining 90 steps.
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5)
    assert f(10 + 30) == pytest.approx((1 + math.cos(math.pi / 3)) / 2)
    assert f(100) == pytest.approx(0.0, abs=1e-15)
    cos = [f(s) for s in range(10, 101)]
    assert all(a > b for a, b in pairwise(cos))
    # No warm-up: a plain cosine.
    g = mult({"schedule": "warmup_cosine", "warmup_cosine.warmup": 0.0}, 100)
    c = mult({"schedule": "cosine"}, 100)
    assert [g(s) for s in range(101)] == pytest.approx([c(s) for s in range(101)])


def test_step() -> None:
    f = mult({"schedule": "step", "step.gamma": 0.1}, 100)
    assert [f(s) for s in (0, 49)] == [1.0, 1.0]
    assert [f(s) for s in (50, 74)] == pytest.approx([0.1, 0.1])
    assert [f(s) for s in (75, 99, 100)] == pytest.approx([0.01, 0.01, 0.01])
    g = mult({"schedule": "step", "step.gamma": 0.5}, 8)
    assert [g(s) for s in range(9)] == pytest.approx([1, 1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.25])


def test_linear() -> None:
    f = mult({"schedule": "linear"}, 200)
    assert f(0) == 1.0
    assert f(50) == pytest.approx(0.75)
    assert f(100) == pytest.approx(0.5)
    assert f(200) == 0.0
    assert f(300) == 0.0


def test_onecycle() -> None:
    f = mult({"schedule": "onecycle", "onecycle.pct_start": 0.3}, 100)
    assert f(0) == pytest.approx(1 / 25)
    assert f(30) == pytest.approx(1.0)
    assert max(f(s) for s in range(101)) == pytest.approx(1.0)
    assert f(15) == pytest.approx(1 / 25 + (1 - 1 / 25) / 2)  # half-way up the cosine
    assert f(100) == pytest.approx(1 / (25 * 1e4))
    up = [f(s) for s in range(31)]
    down = [f(s) for s in range(30, 101)]
    assert all(a < b for a, b in pairwise(up))
    assert all(a > b for a, b in pairwise(down))


@pytest.mark.parametrize("name", ["constant", "cosine", "warmup_cosine", "step", "linear", "onecycle"])
def test_every_schedule_is_bounded_and_pure(name: str) -> None:
    config = spaces.schedules([name]).default()
    f = mult(config, 37)
    g = mult(config, 37)
    values = [f(s) for s in range(38)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert values == [g(s) for s in range(38)]
    assert [f(s) for s in reversed(range(38))] == values[::-1]  # no hidden state
    assert f == g and hash(f) == hash(g)


# ---------------------------------------------------------------------------- build_schedule


@pytest.mark.parametrize(
    ("config", "total"),
    [
        ({"schedule": "cosine"}, 20),
        ({"schedule": "step", "step.gamma": 0.2}, 20),
        ({"schedule": "warmup_cosine", "warmup_cosine.warmup": 0.2}, 20),
        ({"schedule": "onecycle", "onecycle.pct_start": 0.25}, 20),
        ({"schedule": "linear"}, 20),
    ],
)
def test_build_schedule_scales_the_lr(config: dict, total: int) -> None:
    opt = _sgd(0.1)
    sched = spaces.build_schedule(config, opt, total)
    assert isinstance(sched, torch.optim.lr_scheduler.LambdaLR)
    f = sched.lr_lambdas[0]
    assert isinstance(f, spaces.Multiplier)
    assert f == mult(config, total)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * f(0))
    for k in range(1, total + 1):
        opt.step()
        sched.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * f(k), abs=1e-15), k
    assert sched.get_last_lr() == pytest.approx([0.1 * f(total)], abs=1e-15)


def test_build_schedule_known_lrs_and_param_groups() -> None:
    p, q = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p], "lr": 0.2}, {"params": [q], "lr": 0.02}])
    sched = spaces.build_schedule({"schedule": "cosine"}, opt, 10)
    for _ in range(5):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 0.01])
    for _ in range(5):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.0, 0.0], abs=1e-15)
    # Base lrs are kept for resuming.
    assert sched.base_lrs == [0.2, 0.02]


def test_state_dict_round_trips_through_torch_save() -> None:
    config = {"schedule": "warmup_cosine", "warmup_cosine.warmup": 0.25}
    total = 16
    ref_opt = _sgd(0.3)
    ref = spaces.build_schedule(config, ref_opt, total)
    ref_lrs = []
    for _ in range(total):
        ref_opt.step()
        ref.step()
        ref_lrs.append(ref_opt.param_groups[0]["lr"])

    opt = _sgd(0.3)
    sched = spaces.build_schedule(config, opt, total)
    for _ in range(5):
        opt.step()
        sched.step()
    buffer = io.BytesIO()
    torch.save({"sched": sched.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state["sched"]["last_epoch"] == 5
    assert state["sched"]["lr_lambdas"] == [{"name": "warmup_cosine", "total": 16, "params": (("warmup", 0.25),)}]

    # Build both, then load both (the order torch's schedulers expect).
    new_opt = _sgd(0.3)
    new_sched = spaces.build_schedule(config, new_opt, total)
    new_opt.load_state_dict(state["opt"])
    new_sched.load_state_dict(state["sched"])
    assert new_sched.lr_lambdas[0] == sched.lr_lambdas[0]
    assert new_opt.param_groups[0]["lr"] == pytest.approx(ref_lrs[4])
    lrs = []
    for _ in range(total - 5):
        new_opt.step()
        new_sched.step()
        lrs.append(new_opt.param_groups[0]["lr"])
    assert lrs == ref_lrs[5:]


def test_state_dict_restores_the_stored_schedule() -> None:
    # The stored multiplier wins over the one the scheduler was rebuilt with.
    opt = _sgd(1.0)
    sched = spaces.build_schedule({"schedule": "step", "step.gamma": 0.5}, opt, 4)
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    other = spaces.build_schedule({"schedule": "step", "step.gamma": 0.1}, _sgd(1.0), 4)
    other.load_state_dict(torch.load(buffer, weights_only=True))
    assert other.lr_lambdas[0](2) == 0.5


@pytest.mark.parametrize("total", [0, -5, 2.5, "10", None])
def test_total_steps_must_be_positive(total: object) -> None:
    with pytest.raises(ConfigError, match="total_steps"):
        spaces.build_schedule({"schedule": "cosine"}, _sgd(), total)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="total_steps"):
        spaces.schedule_multiplier({}, total)  # type: ignore[arg-type]


def test_bad_schedule_configs() -> None:
    # left-out parameters take the schedule's defaults; a widened range is the space's business
    assert spaces.build_schedule({"schedule": "step"}, _sgd(), 10) is not None
    assert spaces.build_schedule({"schedule": "step", "step.gamma": 0.9}, _sgd(), 10) is not None
    with pytest.raises(ConfigError, match=r"schedule 'step'.*gamma='half'"):
        spaces.build_schedule({"schedule": "step", "step.gamma": "half"}, _sgd(), 10)
    with pytest.raises(UnknownNameError, match="onecycle"):
        spaces.build_schedule({"schedule": "poly"}, _sgd(), 10)
    # Parameters of other schedules and other families are ignored.
    sched = spaces.build_schedule({"schedule": "cosine", "step.gamma": 0.1, "optimizer": "sgd"}, _sgd(), 10)
    assert sched.lr_lambdas[0].params == ()


def test_register_custom_schedule() -> None:
    name = "test_halving"

    def halving(step: int, total: int, every: float) -> float:
        return 0.5 ** (step // max(1, round(every * total)))

    spaces.schedules.register(name, ScheduleSpec(Space(every=Float(0.1, 0.5, default=0.25)), halving))
    space = spaces.schedules([name])
    assert space.default() == {"schedule": name, f"{name}.every": 0.25}
    opt = _sgd(0.8)
    sched = spaces.build_schedule(space.default(), opt, 8)
    lrs = []
    for _ in range(8):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.8, 0.4, 0.4, 0.2, 0.2, 0.1, 0.1, 0.05])
