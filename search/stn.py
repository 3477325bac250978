"""`search.SelfTuning`: regularisation hyperparameters learned online, in one run (STN, Delta-STN).

References:
- MacKay, Vicol, Lorraine, Duvenaud & Grosse 2019, "Self-Tuning Networks: Bilevel Optimization of
  Hyperparameters using Structured Best-Response Functions", ICLR.
- Bae & Grosse 2020, "Delta-STN: Efficient Bilevel Optimization for Neural Networks using
  Structured Response Jacobians", NeurIPS.

A self-tuning study runs `runs` STN trials (routine `"stn"`, see `search.stn_routine`): each
trains the STN variant of the config's network once, tuning the chosen regularisation
hyperparameters as it goes, and records their schedule. Its value is the trained network's
validation metric at the hyperparameters it ended with, a trial like any other. With `replay`,
each schedule is then replayed in an ordinary network trained from scratch (routine
`"schedule"`), as the paper's "schedule replay" experiment does.

What it tunes, chosen from the space: `model.dropout` (one rate per hidden layer or block, all
starting at the config's value), `model.input_dropout`, `model.input_noise` and `model.shift`
(discrete, floored where it acts), each within its range in the space (a `Float` or `Int`).
The architecture and the optimizer come from the config: the space's defaults, or `config=`.

Defaults are the papers' (STN: 5 warm-up epochs, 2 weight steps per hyperparameter step, Adam
3e-3 for hyperparameters and scales, initial scale 0.5; Delta-STN: 5 weight steps per
hyperparameter step, zero-initialised response). `tau` is 1e-3, the value both reference
commands use (the STN code's own default is 1e-5). Scaled for MNIST-1D where the benchmark says
so (README).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tunelab.search.base import History, Request, Strategy, TrialView, check_int
from tunelab.search.stn_routine import StnSettings
from tunelab.spaces import ConfigError, Space
from tunelab.spaces.params import Float, Int
from tunelab.spaces.stn import TUNABLE, expand

ROLE = "stn"


class SelfTuning(Strategy):
    """Self-tuning networks: one run learns a schedule of regularisation hyperparameters.

    Args:
        seed: The strategy's seed (each run's seed derives from it).
        tune: Config names to tune (see the module docstring).
        delta: Delta-STN instead of STN.
        warmup: Epochs of weight training before hyperparameters move.
        train_steps: Weight steps per round of hyperparameter steps (None: 2 for STN, 5 for Delta-STN).
        val_steps: Hyperparameter steps per round.
        hyper_lr: Adam learning rate of the hyperparameters.
        scale_lr: Adam learning rate of the perturbation scales.
        tau: Weight of the perturbation's entropy.
        init_scale: Initial perturbation scale (softplus of the unconstrained one).
        linearize: Delta-STN's linearised response (a Jacobian-vector product).
        tune_scales: Learn the perturbation scales.
        runs: STN runs in the study (each on its own seed).
        replay: Replay each found schedule in a plain network trained from scratch.
        config: Values of the space's other parameters (and start values of the tuned ones).

    Raises:
        ConfigError: A setting is out of range, or `tune` names something an STN cannot tune.
    """

    name = "self_tuning"

    def __init__(
        self,
        seed: int = 0,
        *,
        tune: Sequence[str] = ("model.dropout",),
        delta: bool = False,
        warmup: int = 5,
        train_steps: int | None = None,
        val_steps: int = 1,
        hyper_lr: float = 3e-3,
        scale_lr: float = 3e-3,
        tau: float = 1e-3,
        init_scale: float = 0.5,
        linearize: bool = True,
        tune_scales: bool = True,
        runs: int = 1,
        replay: bool = True,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(seed)
        if not isinstance(tune, (str, list, tuple)):
            raise ConfigError(f"SelfTuning: tune must name the hyperparameters to tune, e.g. tune=['model.dropout'] "
                              f"(one of {list(TUNABLE)}), got {tune!r}")
        tune = [tune] if isinstance(tune, str) else list(tune)
        if not tune or len(set(tune)) != len(tune):
            raise ConfigError(f"SelfTuning: tune must name at least one hyperparameter, without repeats, got {tune}")
        bad = [t for t in tune if t not in TUNABLE]
        if bad:
            raise ConfigError(f"SelfTuning tunes regularisation hyperparameters it can differentiate through, one of "
                              f"{list(TUNABLE)}; it cannot tune {bad} (structural and optimizer hyperparameters are "
                              f"for the study's other strategies)")
        for key, value in (("delta", delta), ("linearize", linearize), ("tune_scales", tune_scales),
                           ("replay", replay)):
            if not isinstance(value, bool):
                raise ConfigError(f"SelfTuning: {key} must be True or False, got {value!r}")
        check_int("SelfTuning", "runs", runs, 1, 10_000)
        if config is not None and not isinstance(config, Mapping):
            raise ConfigError(f"SelfTuning: config must be a dict of parameter values, got {config!r}")
        self.tune, self.delta, self.warmup, self.train_steps = tune, delta, warmup, train_steps
        self.val_steps, self.hyper_lr, self.scale_lr, self.tau = val_steps, hyper_lr, scale_lr, tau
        self.init_scale, self.linearize, self.tune_scales = init_scale, linearize, tune_scales
        self.runs, self.replay = runs, replay
        self.config = dict(config) if config is not None else None
        self._settings(["model.x"], [0.0], [1.0], [False], [0.5])  # every setting is checked now

    def _settings(self, names: Sequence[str], low: Sequence[float], high: Sequence[float],
                  integer: Sequence[bool], init: Sequence[float]) -> StnSettings:
        steps = self.train_steps if self.train_steps is not None else (5 if self.delta else 2)
        return StnSettings(tune=tuple(self.tune), names=tuple(names), low=tuple(low), high=tuple(high),
                           integer=tuple(integer), init=tuple(init), delta=self.delta, warmup=self.warmup,
                           train_steps=steps, val_steps=self.val_steps, hyper_lr=self.hyper_lr,
                           scale_lr=self.scale_lr, tau=self.tau, init_scale=self.init_scale,
                           linearize=self.linearize, tune_scales=self.tune_scales)

    def base_config(self, space: Space) -> dict[str, Any]:
        """The space's defaults updated with `config`, tuned hyperparameters at their start values.

        Raises:
            ConfigError: A tuned name is not in the space, not a range, or `config` does not fit.
        """
        full = space.validate(space.complete(self.config or {}))
        expand(full, [])  # the model must have a self-tuning variant
        for name in self.tune:
            if name not in full:
                raise ConfigError(
                    f"SelfTuning tunes {name}, which the space does not have (or is inactive in the config): add it to "
                    f"the model space, e.g. spaces.mlp(dropout=spaces.Float(0.0, 0.8), input_noise=spaces.Float(0.0, "
                    f"1.0), shift=spaces.Int(0, 8))"
                )
            if not isinstance(space[name], (Float, Int)):
                raise ConfigError(f"SelfTuning tunes {name} within its range in the space, but the space fixes it "
                                  f"({space[name].describe()}); give it a range such as spaces.Float(0.0, 0.8)")
        return full

    def settings(self, space: Space) -> tuple[StnSettings, dict[str, Any]]:
        """The routine's settings for `space`, and the run's config (tuned hyperparameters left out)."""
        base = self.base_config(space)
        names = expand(base, self.tune)
        low, high, integer, init = [], [], [], []
        for name in names:
            source = next(t for t in self.tune if name == t or name.startswith(t + "."))
            param = space[source]
            low.append(float(param.low))
            high.append(float(param.high))
            integer.append(isinstance(param, Int))
            init.append(float(base[source]))
        config = {k: v for k, v in base.items() if k not in self.tune}
        return self._settings(names, low, high, integer, init), config

    def check(self, space: Space, trainer: Any) -> None:
        """Refuse a space or trainer this strategy cannot tune, before anything trains (called by `studies.create`)."""
        Strategy.needs_models(self, trainer)
        self.settings(space)

    def run_seed(self, index: int) -> int:
        """The seed of STN run number `index`."""
        return int(np.random.default_rng([self.seed, index, 0x57]).integers(2**31 - 1))

    def ask(self, history: History) -> Request | None:
        """Replay a finished run's schedule, else start the next STN run, else wait (None)."""
        settings, config = self.settings(history.space)
        runs = [t for t in history.trials if _role(t) == "run"]
        replayed = {t.attrs[ROLE].get("run") for t in history.trials if _role(t) == "replay"}
        if self.replay:
            for t in runs:
                schedule = t.results.get("schedule") if t.state == "complete" else None
                if schedule and t.number not in replayed:
                    integer = dict(zip(settings.names, settings.integer, strict=True))
                    options = {"tune": list(self.tune), "schedule": schedule, "integer": integer}
                    return Request.start(config, routine="schedule", options=options,
                                         attrs={ROLE: {"role": "replay", "run": t.number}})
        if len(runs) < self.runs:
            index = len(runs)
            return Request.start(config, routine="stn", options=settings.to_options(), seed=self.run_seed(index),
                                 attrs={ROLE: {"role": "run", "index": index}})
        return None


def _role(trial: TrialView) -> str | None:
    data = trial.attrs.get(ROLE)
    return data.get("role") if isinstance(data, Mapping) else None


__all__ = ["SelfTuning"]
