"""Optimizer families, their default search spaces, and `build_optimizer`.

`spaces.optimizers(names)` is a `Choice("optimizer", ...)` over registered families; family
`f`'s hyperparameters are named `f.lr`, `f.weight_decay`, ... Each family records how many
gradient evaluations one step costs (SAM and GSAM 2, AdaHessian 2 for its Hessian-vector
product) and how the trainer must drive it (`style`):

- "standard": `loss.backward(); optimizer.step()`.
- "create_graph": `loss.backward(create_graph=True); optimizer.step()` (AdaHessian's Hutchinson
  probe differentiates the gradient).
- "sam": gradients at the weights, then `optimizer.step(closure)` re-evaluates them at the
  perturbed weights (batch-norm running statistics frozen in the second pass).
- "gsam": `optimizer.step(closure)` with a closure returning `(outputs, loss)`; after each
  learning-rate change `optimizer.update_rho_t()`.

Search spaces. Every family tunes its learning rate on a log scale over about three decades
around the default of its paper, its first momentum coefficient, and its weight decay (log
scale), following the protocol of Choi et al. 2019 ("On Empirical Comparisons of Optimizers
for Deep Learning": tune every hyperparameter that the update depends on) within the
single-stage budgets of Schmidt et al. 2021 ("Descending through a Crowded Valley"); the other
hyperparameters stay at their paper defaults. Defaults (the one-shot configuration) are each
paper's recommended values:

| family     | implementation                       | default lr | reference                              |
|------------|--------------------------------------|-----------:|----------------------------------------|
| sgd        | torch.optim.SGD (momentum, nesterov) | 0.1        | Sutskever et al. 2013                  |
| adam       | torch.optim.Adam (L2 decay)          | 1e-3       | Kingma & Ba 2015                       |
| adamw      | torch.optim.AdamW                    | 1e-3       | Loshchilov & Hutter 2019               |
| nadam      | torch.optim.NAdam, decoupled decay   | 2e-3       | Dozat 2016; AlgoPerf NAdamW baseline   |
| radam      | torch.optim.RAdam, decoupled decay   | 1e-3       | Liu et al. 2020                        |
| adabelief  | pytorch_optimizer.AdaBelief          | 1e-3       | Zhuang et al. 2020 (eps 1e-16)         |
| acprop     | spaces._acprop.ACProp (ours)         | 1e-3       | Zhuang et al. 2021                     |
| lion       | pytorch_optimizer.Lion               | 1e-4       | Chen et al. 2023 (lr 3-10x below AdamW)|
| lamb       | pytorch_optimizer.Lamb               | 1e-3       | You et al. 2020                        |
| diffgrad   | pytorch_optimizer.DiffGrad           | 1e-3       | Dubey et al. 2020                      |
| pnm        | pytorch_optimizer.PNM                | 0.1        | Xie et al. 2021 (an SGD-momentum method)|
| adapnm     | pytorch_optimizer.AdaPNM             | 1e-3       | Xie et al. 2021                        |
| adahessian | pytorch_optimizer.AdaHessian         | 0.15       | Yao et al. 2021 (Rademacher probes)    |
| mars       | pytorch_optimizer.MARS (AdamW type)  | 3e-3       | Yuan et al. 2024 (gamma 0.025)         |
| sam        | pytorch_optimizer.SAM over sgd/adamw | base's     | Foret et al. 2021 (rho 0.05)           |
| gsam       | pytorch_optimizer.GSAM over sgd/adamw| base's     | Zhuang et al. 2022 (rho 0.05, alpha 0.1)|
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from tunelab.spaces.errors import ConfigError
from tunelab.spaces.params import Categorical, Float, Value
from tunelab.spaces.registry import Registry
from tunelab.spaces.space import Choice, Config, Space, branch

STYLES = ("standard", "create_graph", "sam", "gsam")

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]
Builder = Callable[[Mapping[str, Value], list[Any], "nn.Module | None"], torch.optim.Optimizer]


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer family.

    Attributes:
        space: Its hyperparameters, without the family prefix (`lr`, `weight_decay`, ...).
        build: `build(hp, params, model) -> Optimizer`, with `hp` the family's part of the config
            (prefix removed), `params` a list of tensors or param-group dicts, and `model` the
            module when the caller gave one (GSAM needs it), else None.
        grad_evals: Gradient evaluations (forward+backward passes) one step costs.
        style: How the trainer drives a step: one of `STYLES`.
        reference: The paper the update and defaults come from.
    """

    space: Space
    build: Builder
    grad_evals: int = 1
    style: str = "standard"
    reference: str = ""

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {self.style!r}")
        if not isinstance(self.grad_evals, int) or self.grad_evals < 1:
            raise ValueError(f"grad_evals must be a positive int, got {self.grad_evals!r}")


class OptimizerRegistry(Registry[OptimizerSpec]):
    """The optimizer families; call it to get a search space over some of them."""

    def __call__(self, names: str | list[str] | tuple[str, ...] | None = None, *, default: str | None = None) -> Space:
        """A `Choice("optimizer", ...)` over the named families (all if None).

        Args:
            names: Family names; see `optimizers.names()`.
            default: The family of the one-shot config (adamw when selected, else the first).

        Raises:
            UnknownNameError: A name is not registered (the message lists the valid ones).
        """
        selected = self.resolve(names)
        if default is None:
            default = "adamw" if "adamw" in selected else selected[0]
        return Space(Choice("optimizer", {n: self.get(n).space for n in selected}, default=default))


optimizers = OptimizerRegistry("optimizer")

# ---------------------------------------------------------------------------- spaces


def _lr(low: float, high: float, default: float) -> Float:
    return Float(low, high, log=True, default=default)


def _wd_l2(default: float = 1e-4) -> Float:
    """Coupled (L2) weight decay, added to the gradient."""
    return Float(1e-6, 1e-2, log=True, default=default)


def _wd_decoupled(default: float = 1e-2) -> Float:
    """Decoupled weight decay, multiplied by the lr (torch's AdamW convention; default 0.01)."""
    return Float(1e-5, 1.0, log=True, default=default)


def _beta1(default: float = 0.9) -> Float:
    return Float(0.5, 0.99, default=default)


SGD_SPACE = Space(
    lr=_lr(1e-3, 1.0, 0.1),
    momentum=Float(0.0, 0.99, default=0.9),
    nesterov=Categorical((False, True), default=False),
    weight_decay=_wd_l2(5e-4),
)
ADAMW_SPACE = Space(lr=_lr(1e-5, 1e-1, 1e-3), beta1=_beta1(), weight_decay=_wd_decoupled())


def _adam_like(lr: float, low: float = 1e-5, high: float = 1e-1, wd: Float | None = None) -> Space:
    return Space(lr=_lr(low, high, lr), beta1=_beta1(), weight_decay=wd or _wd_decoupled())


# ---------------------------------------------------------------------------- builders


def _torch(cls: type[torch.optim.Optimizer], beta2: float = 0.999, **fixed: Any) -> Builder:
    def build(hp: Mapping[str, Value], params: list[Any], model: nn.Module | None) -> torch.optim.Optimizer:
        return cls(params, lr=hp["lr"], betas=(hp["beta1"], beta2), weight_decay=hp["weight_decay"], **fixed)

    return build


def _po(name: str, betas: tuple[float, ...] = (0.999,), **fixed: Any) -> Builder:
    def build(hp: Mapping[str, Value], params: list[Any], model: nn.Module | None) -> torch.optim.Optimizer:
        import pytorch_optimizer

        cls = getattr(pytorch_optimizer, name)
        return cls(params, lr=hp["lr"], betas=(hp["beta1"], *betas), weight_decay=hp["weight_decay"], **fixed)

    return build


def _build_sgd(hp: Mapping[str, Value], params: list[Any], model: nn.Module | None) -> torch.optim.Optimizer:
    nesterov = bool(hp["nesterov"]) and hp["momentum"] > 0
    return torch.optim.SGD(
        params, lr=hp["lr"], momentum=hp["momentum"], nesterov=nesterov, weight_decay=hp["weight_decay"]
    )


def _build_acprop(hp: Mapping[str, Value], params: list[Any], model: nn.Module | None) -> torch.optim.Optimizer:
    from tunelab.spaces._acprop import ACProp

    return ACProp(params, lr=hp["lr"], betas=(hp["beta1"], 0.999), eps=1e-8, weight_decay=hp["weight_decay"])


def _build_lion(hp: Mapping[str, Value], params: list[Any], model: nn.Module | None) -> torch.optim.Optimizer:
    import pytorch_optimizer

    return pytorch_optimizer.Lion(params, lr=hp["lr"], betas=(hp["beta1"], 0.99), weight_decay=hp["weight_decay"])


def _build_mars(hp: Mapping[str, Value], params: list[Any], model: nn.Module | None) -> torch.optim.Optimizer:
    import pytorch_optimizer

    betas = (hp["beta1"], 0.99)
    return pytorch_optimizer.MARS(
        params,
        lr=hp["lr"],
        betas=betas,
        gamma=hp["gamma"],
        weight_decay=hp["weight_decay"],
        optimize_1d=True,
        lr_1d=hp["lr"],
        betas_1d=betas,
        weight_decay_1d=hp["weight_decay"],
    )


def _build_adahessian(hp: Mapping[str, Value], params: list[Any], model: nn.Module | None) -> torch.optim.Optimizer:
    import pytorch_optimizer

    return pytorch_optimizer.AdaHessian(
        params,
        lr=hp["lr"],
        betas=(hp["beta1"], 0.999),
        weight_decay=hp["weight_decay"],
        weight_decouple=False,
        hessian_power=1.0,
        hessian_distribution="rademacher",
        eps=1e-4,  # the official AdaHessian code uses 1e-4 (pytorch-optimizer defaults to 1e-16)
    )


_SAM_BASES: dict[str, tuple[type[torch.optim.Optimizer], Callable[[Mapping[str, Value]], dict[str, Any]]]] = {
    "sgd": (
        torch.optim.SGD,
        lambda hp: {
            "lr": hp["lr"],
            "momentum": hp["momentum"],
            "weight_decay": hp["weight_decay"],
            "nesterov": bool(hp["nesterov"]) and hp["momentum"] > 0,
        },
    ),
    "adamw": (
        torch.optim.AdamW,
        lambda hp: {"lr": hp["lr"], "betas": (hp["beta1"], 0.999), "weight_decay": hp["weight_decay"]},
    ),
}


def _build_sam(hp: Mapping[str, Value], params: list[Any], model: nn.Module | None) -> torch.optim.Optimizer:
    import pytorch_optimizer

    base = hp["base"]
    cls, kwargs = _SAM_BASES[base]
    return pytorch_optimizer.SAM(params, base_optimizer=cls, rho=hp["rho"], **kwargs(branch(hp, base)))


def _build_gsam(hp: Mapping[str, Value], params: list[Any], model: nn.Module | None) -> torch.optim.Optimizer:
    import pytorch_optimizer

    if model is None:
        raise ConfigError(
            "gsam needs the model (it freezes batch-norm statistics in its second pass): "
            "call build_optimizer(config, model) with the nn.Module instead of its parameters"
        )
    base = hp["base"]
    cls, kwargs = _SAM_BASES[base]
    base_hp = kwargs(branch(hp, base))
    base_opt = cls(params, **base_hp)
    # rho_t follows the learning rate (Zhuang et al. 2022, Sec. 5.1): rho_t = rho * lr_t / lr_peak.
    # ProportionScheduler reads the current lr from `.optimizer` when given no torch scheduler.
    rho_scheduler = pytorch_optimizer.ProportionScheduler(
        SimpleNamespace(optimizer=base_opt), max_lr=base_hp["lr"], min_lr=0.0, max_value=hp["rho"], min_value=0.0
    )
    return pytorch_optimizer.GSAM(
        base_opt.param_groups, base_optimizer=base_opt, model=model, rho_scheduler=rho_scheduler, alpha=hp["alpha"]
    )


def _sam_space(**extra: Any) -> Space:
    return Space(Choice("base", {"sgd": SGD_SPACE, "adamw": ADAMW_SPACE}, default="sgd"), **extra)


# ---------------------------------------------------------------------------- registry

_DECOUPLED_NADAM = {"decoupled_weight_decay": True}
optimizers.register("sgd", OptimizerSpec(SGD_SPACE, _build_sgd, reference="Sutskever et al. 2013"))
optimizers.register(
    "adam",
    OptimizerSpec(_adam_like(1e-3, wd=_wd_l2(1e-6)), _torch(torch.optim.Adam), reference="Kingma & Ba 2015"),
)
optimizers.register(
    "adamw", OptimizerSpec(ADAMW_SPACE, _torch(torch.optim.AdamW), reference="Loshchilov & Hutter 2019")
)
optimizers.register(
    "nadam", OptimizerSpec(_adam_like(2e-3), _torch(torch.optim.NAdam, **_DECOUPLED_NADAM), reference="Dozat 2016")
)
optimizers.register(
    "radam", OptimizerSpec(_adam_like(1e-3), _torch(torch.optim.RAdam, **_DECOUPLED_NADAM), reference="Liu et al. 2020")
)
optimizers.register(
    "adabelief",
    OptimizerSpec(_adam_like(1e-3), _po("AdaBelief", eps=1e-16, weight_decouple=True), reference="Zhuang et al. 2020"),
)
optimizers.register("acprop", OptimizerSpec(_adam_like(1e-3), _build_acprop, reference="Zhuang et al. 2021"))
optimizers.register(
    "lion",
    OptimizerSpec(
        Space(lr=_lr(1e-6, 1e-2, 1e-4), beta1=_beta1(), weight_decay=Float(1e-4, 10.0, log=True, default=0.1)),
        _build_lion,
        reference="Chen et al. 2023",
    ),
)
optimizers.register(
    "lamb", OptimizerSpec(_adam_like(1e-3), _po("Lamb", weight_decouple=True), reference="You et al. 2020")
)
optimizers.register("diffgrad", OptimizerSpec(_adam_like(1e-3), _po("DiffGrad"), reference="Dubey et al. 2020"))
optimizers.register(
    "pnm",
    OptimizerSpec(
        _adam_like(0.1, 1e-3, 1.0, _wd_decoupled(5e-4)), _po("PNM", betas=(1.0,)), reference="Xie et al. 2021"
    ),
)
optimizers.register(
    "adapnm", OptimizerSpec(_adam_like(1e-3), _po("AdaPNM", betas=(0.999, 1.0)), reference="Xie et al. 2021")
)
optimizers.register(
    "adahessian",
    OptimizerSpec(
        Space(lr=_lr(1e-3, 1.0, 0.15), beta1=_beta1(), weight_decay=_wd_l2(5e-4)),
        _build_adahessian,
        grad_evals=2,
        style="create_graph",
        reference="Yao et al. 2021",
    ),
)
optimizers.register(
    "mars",
    OptimizerSpec(
        Space(
            lr=_lr(1e-4, 1e-1, 3e-3),
            beta1=Float(0.5, 0.99, default=0.95),
            gamma=Float(0.005, 0.1, log=True, default=0.025),
            weight_decay=_wd_decoupled(),
        ),
        _build_mars,
        reference="Yuan et al. 2024",
    ),
)
optimizers.register(
    "sam",
    OptimizerSpec(
        _sam_space(rho=Float(0.01, 0.5, log=True, default=0.05)),
        _build_sam,
        grad_evals=2,
        style="sam",
        reference="Foret et al. 2021",
    ),
)
optimizers.register(
    "gsam",
    OptimizerSpec(
        _sam_space(rho=Float(0.01, 0.5, log=True, default=0.05), alpha=Float(0.01, 0.5, log=True, default=0.1)),
        _build_gsam,
        grad_evals=2,
        style="gsam",
        reference="Zhuang et al. 2022",
    ),
)

#: The config the trainer uses when a config names no optimizer.
DEFAULT_OPTIMIZER: Config = {"optimizer": "adamw", **{f"adamw.{k}": v for k, v in ADAMW_SPACE.default().items()}}


# ---------------------------------------------------------------------------- building


def optimizer_spec(config: Mapping[str, Value]) -> OptimizerSpec:
    """The family a config selects (AdamW when it names none).

    Raises:
        UnknownNameError: The config names an unregistered optimizer.
    """
    return optimizers.get(config.get("optimizer", "adamw"))


def optimizer_config(config: Mapping[str, Value]) -> Config:
    """The optimizer part of a config, filled with AdamW defaults when it names none."""
    if "optimizer" not in config:
        return dict(DEFAULT_OPTIMIZER)
    name = config["optimizer"]
    return {"optimizer": name, **{f"{name}.{k}": v for k, v in branch(config, name).items()}}


def build_optimizer(config: Mapping[str, Value], params: nn.Module | Params) -> torch.optim.Optimizer:
    """Build the optimizer a config describes.

    Args:
        config: A configuration; its `optimizer` entry selects the family (AdamW defaults if absent);
            hyperparameters it leaves out take the family's defaults.
        params: The model (preferred: GSAM needs it) or an iterable of its parameters / param groups.

    Returns:
        A `torch.optim.Optimizer`; drive it as `optimizer_spec(config).style` says.

    Raises:
        UnknownNameError: Unknown family.
        ConfigError: The family's hyperparameters are missing or invalid.
    """
    config = optimizer_config(config)
    name = config["optimizer"]
    spec = optimizers.get(name)
    try:
        hp = spec.space.validate(spec.space.complete(branch(config, name)), ranges=False)
    except ConfigError as exc:
        raise ConfigError(f"optimizer {name!r}: {exc}") from None
    model = params if isinstance(params, nn.Module) else None
    plist = list(params.parameters() if model is not None else params)
    if not plist:
        raise ConfigError("build_optimizer got no parameters; pass the model or a non-empty parameter list")
    try:
        return spec.build(hp, plist, model)
    except ValueError as exc:  # torch's own checks of impossible values (lr < 0, beta >= 1, ...)
        raise ConfigError(f"optimizer {name!r}: {exc} (config {hp})") from None


__all__ = [
    "STYLES",
    "OptimizerRegistry",
    "OptimizerSpec",
    "build_optimizer",
    "optimizer_config",
    "optimizer_spec",
    "optimizers",
]
