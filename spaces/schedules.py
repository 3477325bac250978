"""Learning-rate schedules as pure functions of the step, and `build_schedule`.

`spaces.schedules(names)` is a `Choice("schedule", ...)`; schedule `s`'s parameters are named
`s.<param>`. Every schedule is a multiplier `f(step)` of the optimizer's base learning rate
(the family's `lr`), computed from the step alone, as in minGPT / nanoGPT: resuming at step k
gives exactly the learning rate an uninterrupted run has at step k, whatever the increments.
`build_schedule` wraps the multiplier in `torch.optim.lr_scheduler.LambdaLR`.

| name          | multiplier of the base lr at progress p = step / total            | reference                 |
|---------------|-------------------------------------------------------------------|---------------------------|
| constant      | 1                                                                 |                           |
| cosine        | (1 + cos(pi p)) / 2                                               | Loshchilov & Hutter 2017  |
| warmup_cosine | linear warm-up over `warmup` of the steps, then cosine to 0        | Goyal et al. 2017         |
| step          | `gamma` after 50% and again after 75% of the steps                | He et al. 2016            |
| linear        | 1 - p                                                             | Defazio et al. 2023       |
| onecycle      | cosine from 1/25 up to 1 over `pct_start`, then down to 1/(25*1e4) | Smith & Topin 2019        |
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from tunelab.spaces.errors import ConfigError
from tunelab.spaces.params import Float, Value
from tunelab.spaces.registry import Registry
from tunelab.spaces.space import Choice, Space, branch


@dataclass(frozen=True)
class ScheduleSpec:
    """One schedule family.

    Attributes:
        space: Its parameters, without the prefix.
        multiplier: `multiplier(step, total_steps, **params) -> float`, a pure function.
        reference: Where it comes from.
    """

    space: Space
    multiplier: Callable[..., float]
    reference: str = ""


class ScheduleRegistry(Registry[ScheduleSpec]):
    """The schedule families; call it to get a search space over some of them."""

    def __call__(self, names: str | list[str] | tuple[str, ...] | None = None, *, default: str | None = None) -> Space:
        """A `Choice("schedule", ...)` over the named schedules (all if None).

        Raises:
            UnknownNameError: A name is not registered (the message lists the valid ones).
        """
        selected = self.resolve(names)
        if default is None:
            default = "cosine" if "cosine" in selected else selected[0]
        return Space(Choice("schedule", {n: self.get(n).space for n in selected}, default=default))


schedules = ScheduleRegistry("schedule")


def _progress(step: int, total: int) -> float:
    return min(1.0, max(0.0, step / max(1, total)))


def _constant(step: int, total: int) -> float:
    return 1.0


def _cosine(step: int, total: int) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * _progress(step, total)))


def _warmup_cosine(step: int, total: int, warmup: float) -> float:
    w = round(warmup * total)
    if step < w:
        return (step + 1) / (w + 1)
    return 0.5 * (1.0 + math.cos(math.pi * _progress(step - w, total - w)))


def _step(step: int, total: int, gamma: float) -> float:
    p = _progress(step, total)
    return gamma ** ((p >= 0.5) + (p >= 0.75))


def _linear(step: int, total: int) -> float:
    return 1.0 - _progress(step, total)


def _onecycle(step: int, total: int, pct_start: float, div: float = 25.0, final_div: float = 1e4) -> float:
    up = max(1, round(pct_start * total))
    start, low = 1.0 / div, 1.0 / (div * final_div)
    if step < up:
        return start + (1.0 - start) * (1.0 - math.cos(math.pi * step / up)) / 2.0
    return low + (1.0 - low) * (1.0 + math.cos(math.pi * _progress(step - up, total - up))) / 2.0


schedules.register("constant", ScheduleSpec(Space(), _constant))
schedules.register("cosine", ScheduleSpec(Space(), _cosine, "Loshchilov & Hutter 2017"))
schedules.register(
    "warmup_cosine",
    ScheduleSpec(Space(warmup=Float(0.0, 0.3, default=0.05)), _warmup_cosine, "Goyal et al. 2017"),
)
schedules.register("step", ScheduleSpec(Space(gamma=Float(0.01, 0.5, log=True, default=0.1)), _step, "He et al. 2016"))
schedules.register("linear", ScheduleSpec(Space(), _linear, "Defazio et al. 2023"))
schedules.register(
    "onecycle", ScheduleSpec(Space(pct_start=Float(0.05, 0.5, default=0.3)), _onecycle, "Smith & Topin 2019")
)


@dataclass(frozen=True)
class Multiplier:
    """The learning-rate multiplier of one schedule over `total` steps: call it with a step.

    It is a frozen dataclass, not a closure, so that `LambdaLR.state_dict()` can store it.
    """

    name: str
    total: int
    params: tuple[tuple[str, float], ...] = field(default=())

    @property
    def constant(self) -> bool:
        """Whether the multiplier is 1 at every step (the trainer then skips the scheduler)."""
        return self.name == "constant"

    def __call__(self, step: int) -> float:
        """The multiplier of the base learning rate after `step` optimizer steps."""
        return schedules.get(self.name).multiplier(step, self.total, **dict(self.params))


def schedule_multiplier(config: Mapping[str, Value], total_steps: int) -> Multiplier:
    """The pure multiplier `f(step)` of the base lr that a config's schedule describes.

    Args:
        config: A configuration; `schedule` selects the family (constant if absent).
        total_steps: Optimizer steps of the whole planned run.

    Raises:
        UnknownNameError: Unknown schedule.
        ConfigError: Missing or invalid schedule parameters, or `total_steps < 1`.
    """
    if not isinstance(total_steps, int) or total_steps < 1:
        raise ConfigError(f"total_steps must be a positive int, got {total_steps!r}")
    name = config.get("schedule", "constant")
    spec = schedules.get(name)
    try:
        params = spec.space.validate(spec.space.complete(branch(config, name)), ranges=False)
    except ConfigError as exc:
        raise ConfigError(f"schedule {name!r}: {exc}") from None
    return Multiplier(name, total_steps, tuple(sorted(params.items())))


def build_schedule(
    config: Mapping[str, Value], optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Wrap the config's schedule around `optimizer` (call `.step()` once per optimizer step).

    Args:
        config: A configuration; `schedule` selects the family (constant if absent).
        optimizer: The optimizer whose learning rates the schedule scales.
        total_steps: Optimizer steps of the whole planned run (not of one increment).

    Returns:
        A `LambdaLR` whose multiplier (`.lr_lambdas[0]`) is a `Multiplier`.
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_multiplier(config, total_steps))


__all__ = ["Multiplier", "ScheduleRegistry", "ScheduleSpec", "build_schedule", "schedule_multiplier", "schedules"]
