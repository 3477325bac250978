"""Tests for the optimizer families, their spaces and `build_optimizer`."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from tunelab import spaces
from tunelab.spaces import ConfigError, Float, OptimizerSpec, Space, UnknownNameError

ALL = spaces.optimizers.names()
BUILTIN = (
    "sgd",
    "adam",
    "adamw",
    "nadam",
    "radam",
    "adabelief",
    "acprop",
    "lion",
    "lamb",
    "diffgrad",
    "pnm",
    "adapnm",
    "adahessian",
    "mars",
    "sam",
    "gsam",
)


class Net(nn.Module):
    """A tiny regression network that counts its forward passes (BatchNorm included for SAM/GSAM)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 1))
        self.calls = 0
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for layer in (self.body[0], self.body[3]):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) / math.sqrt(layer.in_features))
                layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.body(x).squeeze(1)


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=gen)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.5
    return x, y


def train_step(style: str, model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    """One optimisation step the way `style` requires (mirrors the trainer, written out here)."""
    loss_fn = nn.functional.mse_loss
    opt.zero_grad(set_to_none=True)
    if style == "standard":
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    elif style == "create_graph":
        loss = loss_fn(model(x), y)
        # Gradients that keep their graph (AdaHessian differentiates them); autograd.grad avoids
        # backward(create_graph=True)'s reference cycle.
        params = [p for g in opt.param_groups for p in g["params"]]
        for p, g in zip(params, torch.autograd.grad(loss, params, create_graph=True), strict=True):
            p.grad = g
        opt.step()
    elif style == "sam":
        loss = loss_fn(model(x), y)
        loss.backward()

        def closure() -> torch.Tensor:
            perturbed = loss_fn(model(x), y)
            perturbed.backward()
            return perturbed

        opt.step(closure)
    elif style == "gsam":

        def gsam_closure() -> tuple[torch.Tensor, torch.Tensor]:
            opt.zero_grad(set_to_none=True)
            with torch.enable_grad():
                outputs = model(x)
                value = loss_fn(outputs, y)
            value.backward()
            return outputs, value.detach()

        _, loss = opt.step(gsam_closure)
    else:
        raise AssertionError(style)
    opt.zero_grad(set_to_none=True)
    # Free graphs kept for second-order steps.
    for p in model.parameters():
        p.grad = None
    return float(loss.detach())


def _default_config(name: str) -> dict:
    return spaces.optimizers([name]).default()


def test_registry_holds_the_documented_families() -> None:
    assert set(BUILTIN) <= set(ALL)
    assert ALL[: len(BUILTIN)] == BUILTIN
    space = spaces.optimizers()
    assert space["optimizer"].choices == ALL
    assert space.default()["optimizer"] == "adamw"
    assert spaces.optimizers(["sgd", "lion"]).default()["optimizer"] == "sgd"


@pytest.fixture
def own_rng() -> Iterator[None]:
    """AdaHessian's probes draw from the global torch RNG: fix it for the test, restore it after."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield


@pytest.mark.parametrize("name", BUILTIN)
def test_default_config_builds_and_trains(name: str, own_rng: None) -> None:
    config = _default_config(name)
    spec = spaces.optimizer_spec(config)
    model = Net()
    opt = spaces.build_optimizer(config, model)
    assert isinstance(opt, torch.optim.Optimizer)
    x, y = _data()
    before = [p.detach().clone() for p in model.parameters()]

    calls = model.calls
    first = train_step(spec.style, model, opt, x, y)
    # The step evaluates the model as often as the family's cost says (AdaHessian's second
    # evaluation is a Hessian-vector product, not a forward pass).
    expected_forwards = spec.grad_evals if spec.style in ("sam", "gsam") else 1
    assert model.calls - calls == expected_forwards
    assert math.isfinite(first)
    after = list(model.parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after, strict=True)), "the step changed nothing"
    assert all(torch.isfinite(p).all() for p in after)

    losses = [first] + [train_step(spec.style, model, opt, x, y) for _ in range(14)]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], f"{name}: loss did not decrease ({losses[0]:.4f} -> {losses[-1]:.4f})"


@pytest.mark.parametrize("name", ["sam", "gsam"])
@pytest.mark.parametrize("base", ["sgd", "adamw"])
def test_sam_family_wraps_both_bases(name: str, base: str) -> None:
    space = spaces.optimizers([name])
    config = space.default()
    config = space.validate(
        {k: v for k, v in config.items() if not k.startswith(f"{name}.sgd.")}
        | {f"{name}.base": base}
        | {f"{name}.{base}.{k}": v for k, v in spaces.optimizers.get(base).space.default().items()}
    )
    model = Net()
    opt = spaces.build_optimizer(config, model)
    inner = opt.base_optimizer
    assert isinstance(inner, torch.optim.SGD if base == "sgd" else torch.optim.AdamW)
    assert inner.param_groups[0]["lr"] == pytest.approx(0.1 if base == "sgd" else 1e-3)
    x, y = _data()
    losses = [train_step(spaces.optimizer_spec(config).style, model, opt, x, y) for _ in range(10)]
    assert losses[-1] < losses[0]


def test_grad_evals_and_styles() -> None:
    for name in ALL:
        spec = spaces.optimizer_spec({"optimizer": name})
        assert spec is spaces.optimizers.get(name)
        assert spec.grad_evals == (2 if name in ("sam", "gsam", "adahessian") else 1), name
    assert spaces.optimizer_spec({"optimizer": "sam"}).style == "sam"
    assert spaces.optimizer_spec({"optimizer": "gsam"}).style == "gsam"
    assert spaces.optimizer_spec({"optimizer": "adahessian"}).style == "create_graph"
    assert spaces.optimizer_spec({"optimizer": "lion"}).style == "standard"
    # No optimizer in the config: AdamW.
    assert spaces.optimizer_spec({}) is spaces.optimizers.get("adamw")


def test_unknown_optimizer_lists_valid_names() -> None:
    for call in (
        lambda: spaces.optimizers(["sgd", "adamx"]),
        lambda: spaces.build_optimizer({"optimizer": "adamx"}, Net()),
        lambda: spaces.optimizer_spec({"optimizer": "adamx"}),
    ):
        with pytest.raises(UnknownNameError) as info:
            call()
        message = str(info.value)
        assert "adamx" in message
        for name in BUILTIN:
            assert name in message
        assert isinstance(info.value, KeyError)
    with pytest.raises(ValueError, match="at least one"):
        spaces.optimizers([])
    with pytest.raises(ValueError, match="repeat"):
        spaces.optimizers(["sgd", "sgd"])


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("sgd", "sgd.lr", 0.1),
        ("sgd", "sgd.momentum", 0.9),
        ("adam", "adam.lr", 1e-3),
        ("adamw", "adamw.lr", 1e-3),
        ("adamw", "adamw.weight_decay", 1e-2),
        ("nadam", "nadam.lr", 2e-3),
        ("lion", "lion.lr", 1e-4),
        ("pnm", "pnm.lr", 0.1),
        ("adahessian", "adahessian.lr", 0.15),
        ("mars", "mars.lr", 3e-3),
        ("mars", "mars.gamma", 0.025),
        ("sam", "sam.rho", 0.05),
        ("sam", "sam.base", "sgd"),
        ("sam", "sam.sgd.lr", 0.1),
        ("gsam", "gsam.rho", 0.05),
        ("gsam", "gsam.alpha", 0.1),
    ],
)
def test_paper_defaults(name: str, key: str, value: object) -> None:
    space = spaces.optimizers([name])
    default = space.default()
    assert default[key] == value
    assert space.validate(default) == default
    if isinstance(value, float):
        assert space[key].contains(value)


def test_every_lr_range_contains_its_default_and_spans_decades() -> None:
    space = spaces.optimizers()
    for name in ALL:
        lr_name = f"{name}.lr" if f"{name}.lr" in space else None
        if lr_name is None:  # SAM / GSAM: the base's lr
            continue
        lr = space[lr_name]
        assert isinstance(lr, Float) and lr.log
        assert lr.low <= lr.default_value() <= lr.high
        assert lr.high / lr.low >= 100


def test_built_hyperparameters_land_in_the_optimizer() -> None:
    model = Net()
    sgd = spaces.build_optimizer(
        {"optimizer": "sgd", "sgd.lr": 0.05, "sgd.momentum": 0.5, "sgd.nesterov": True, "sgd.weight_decay": 1e-4},
        model,
    )
    assert isinstance(sgd, torch.optim.SGD)
    group = sgd.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (0.05, 0.5, True, 1e-4)
    # Nesterov needs momentum; without it the flag is dropped instead of torch raising.
    sgd0 = spaces.build_optimizer(
        {"optimizer": "sgd", "sgd.lr": 0.05, "sgd.momentum": 0.0, "sgd.nesterov": True, "sgd.weight_decay": 1e-4},
        model.parameters(),
    )
    assert sgd0.param_groups[0]["nesterov"] is False

    adamw = spaces.build_optimizer(
        {"optimizer": "adamw", "adamw.lr": 3e-4, "adamw.beta1": 0.8, "adamw.weight_decay": 0.1}, model
    )
    assert isinstance(adamw, torch.optim.AdamW)
    group = adamw.param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (3e-4, (0.8, 0.999), 0.1)

    # A config without an optimizer builds AdamW at its defaults.
    default = spaces.build_optimizer({"model": "mlp"}, model)
    assert type(default) is torch.optim.AdamW
    assert default.param_groups[0]["lr"] == 1e-3
    assert default.param_groups[0]["weight_decay"] == 1e-2

    from tunelab.spaces._acprop import ACProp

    assert isinstance(spaces.build_optimizer(_default_config("acprop"), model), ACProp)


def test_build_accepts_params_and_param_groups() -> None:
    model = Net()
    config = _default_config("adam")
    opt = spaces.build_optimizer(config, list(model.parameters()))
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    groups = [{"params": model.body[0].parameters()}, {"params": model.body[3].parameters(), "lr": 0.5}]
    opt = spaces.build_optimizer(config, groups)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 0.5]
    with pytest.raises(ConfigError, match="no parameters"):
        spaces.build_optimizer(config, [])


def test_ranges_belong_to_the_space_and_impossible_values_raise_config_error() -> None:
    # a user's space may widen a family's range: the builder accepts any value of the right type
    wide = {"optimizer": "sgd", "sgd.lr": 5.0, "sgd.momentum": 0.9, "sgd.nesterov": False, "sgd.weight_decay": 1e-9}
    assert spaces.build_optimizer(wide, Net()).param_groups[0]["lr"] == 5.0
    with pytest.raises(ConfigError, match=r"optimizer 'sgd'.*Invalid learning rate"):
        spaces.build_optimizer({**wide, "sgd.lr": -1.0}, Net())
    with pytest.raises(ConfigError, match=r"optimizer 'sgd'.*lr='fast' is not valid"):
        spaces.build_optimizer({**wide, "sgd.lr": "fast"}, Net())
    # what a config leaves out takes the family's defaults
    adamw = spaces.build_optimizer({"optimizer": "adamw", "adamw.lr": 1e-3}, Net())
    assert adamw.param_groups[0]["betas"][0] == spaces.optimizers.get("adamw").space.default()["beta1"]


def test_gsam_needs_the_model() -> None:
    model = Net()
    config = _default_config("gsam")
    with pytest.raises(ConfigError, match="model"):
        spaces.build_optimizer(config, model.parameters())
    with pytest.raises(ConfigError, match=r"nn\.Module"):
        spaces.build_optimizer(config, list(model.parameters()))
    assert spaces.build_optimizer(config, model) is not None


def test_gsam_rho_follows_the_learning_rate() -> None:
    model = Net()
    config = _default_config("gsam") | {"gsam.rho": 0.2, "schedule": "linear"}
    opt = spaces.build_optimizer(config, model)
    assert opt.rho_t == pytest.approx(0.2)
    scheduler = spaces.build_schedule(config, opt, total_steps=10)
    x, y = _data()
    for _ in range(5):
        train_step("gsam", model, opt, x, y)
        scheduler.step()
        opt.update_rho_t()
    # Linear schedule at half way: lr and rho both halved.
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert opt.rho_t == pytest.approx(0.1)


# ---------------------------------------------------------------------------- registering a family


def test_register_custom_optimizer() -> None:
    name = "test_scaled_sgd"
    built = []

    def build(hp: dict, params: list, model: nn.Module | None) -> torch.optim.Optimizer:
        built.append((dict(hp), model))
        return torch.optim.SGD(params, lr=hp["lr"] * hp["scale"])

    spec = OptimizerSpec(
        Space(lr=Float(1e-3, 1.0, log=True, default=0.02), scale=Float(0.5, 2.0, default=1.5)),
        build,
        grad_evals=1,
        reference="test",
    )
    assert spaces.optimizers.register(name, spec) is spec
    assert name in spaces.optimizers

    space = spaces.optimizers([name, "sgd"])
    assert space.names[:3] == ("optimizer", f"{name}.lr", f"{name}.scale")
    assert space.default()["optimizer"] == name
    config = space.default()
    assert config == {"optimizer": name, f"{name}.lr": 0.02, f"{name}.scale": 1.5}
    model = Net()
    opt = spaces.build_optimizer(config, model)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.03)
    assert built == [({"lr": 0.02, "scale": 1.5}, model)]
    assert spaces.optimizer_spec(config) is spec
    # It is part of the full space too, and its samples build.
    full = spaces.optimizers()
    assert name in full["optimizer"].choices
    rng = np.random.default_rng(0)
    sampled = space.sample(rng)
    while sampled["optimizer"] != name:
        sampled = space.sample(rng)
    spaces.build_optimizer(sampled, model)

    with pytest.raises(ValueError, match="already registered"):
        spaces.optimizers.register(name, spec)
    spaces.optimizers.register(name, spec, replace=True)


def test_register_rejects_bad_names_and_specs() -> None:
    spec = spaces.optimizers.get("sgd")
    with pytest.raises(ValueError, match="identifiers"):
        spaces.optimizers.register("my-opt", spec)
    with pytest.raises(ValueError, match="already registered"):
        spaces.optimizers.register("sgd", spec)
    with pytest.raises(ValueError, match="style"):
        OptimizerSpec(Space(), spec.build, style="closure")
    with pytest.raises(ValueError, match="grad_evals"):
        OptimizerSpec(Space(), spec.build, grad_evals=0)
    assert "my-opt" not in spaces.optimizers


def test_optimizer_config_extracts_the_family() -> None:
    config = {"optimizer": "sgd", "sgd.lr": 0.1, "adamw.lr": 1.0, "schedule": "cosine", "model.depth": 2}
    assert spaces.optimizer_config(config) == {"optimizer": "sgd", "sgd.lr": 0.1}
    assert spaces.optimizer_config({"schedule": "cosine"}) == {
        "optimizer": "adamw",
        "adamw.lr": 1e-3,
        "adamw.beta1": 0.9,
        "adamw.weight_decay": 1e-2,
    }


def test_adahessian_uses_rademacher_probes_and_the_official_eps():
    """Yao et al. 2021 estimate the Hessian diagonal with Rademacher probes (Hutchinson); the official
    code uses eps=1e-4. Both are set explicitly, whatever the pinned pytorch-optimizer defaults to."""
    import inspect

    import pytorch_optimizer

    model = nn.Linear(3, 1)
    opt = spaces.build_optimizer(spaces.optimizers(["adahessian"]).default(), model)
    assert isinstance(opt, pytorch_optimizer.AdaHessian)
    assert opt.distribution == "rademacher"
    assert opt.param_groups[0]["eps"] == 1e-4
    # the pinned version's own default (checked so that a version bump that changes it is noticed)
    assert inspect.signature(pytorch_optimizer.AdaHessian).parameters["hessian_distribution"].default == "rademacher"
    # one step drives the probe: its Hessian estimate is the diagonal of a quadratic's Hessian
    x = torch.randn(256, 3, generator=torch.Generator().manual_seed(0))
    from tunelab import trainers

    step = trainers.make_step("create_graph", model, opt, lambda out, y: (out.squeeze(1) - y).pow(2).mean())
    step(x, x.sum(1))
    hess = opt.state[model.weight]["hessian"]
    expected = 2 * (x**2).mean(0)  # d2/dw2 of mean (w.x + b - y)^2 along each coordinate, probe-weighted
    assert hess.shape == model.weight.shape and torch.all(hess > 0)
    assert torch.allclose(hess.squeeze(0), expected, rtol=0.6)
