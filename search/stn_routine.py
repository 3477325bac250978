"""The `"stn"` routine (a self-tuning network's one run) and the `"schedule"` routine (its replay).

References:
- MacKay, Vicol, Lorraine, Duvenaud & Grosse 2019, "Self-Tuning Networks: Bilevel Optimization of
  Hyperparameters using Structured Best-Response Functions", ICLR (algorithm 1; reference code
  asteroidhouse/self-tuning-networks `hypertrain.py`).
- Bae & Grosse 2020, "Delta-STN: Efficient Bilevel Optimization for Neural Networks using
  Structured Response Jacobians", NeurIPS (reference code pomonam/Self-Tuning-Networks).

One run trains the STN variant of the config's network (`spaces.stn`) and its hyperparameters
at once. The hyperparameters live unconstrained: `lambda` maps to `low + (high - low) *
sigmoid(lambda)` inside the space's range of each (a stretched logit; discrete ones are floored
where they act, the paper's rounding), and each has a learned perturbation scale `sigma =
softplus(s)`. After `warmup` epochs of weight training only, every `train_steps` weight steps are
followed by `val_steps` hyperparameter steps:

- weight step (training split, training mode): each example draws `lambda + sigma * eps`; its
  regularisers act at that value and the hyperlayers see it; the config's optimizer and
  learning-rate schedule update the weights (`trainers.make_step`, so closure optimizers work);
- hyperparameter step (validation split, evaluation mode: no dropout, noise or shift): the
  validation loss at `lambda + sigma * eps`, minus `tau` times the entropy of the perturbation
  (`sum log(sigma * sqrt(2 pi e))`), is minimised by Adam over `lambda` and `s`.

Delta-STN (`delta=True`): the hyperlayers see the centred offset `h - lambda` (their response
starts at zero), the weight step is split into a step of the general weights at the unperturbed
`lambda` and a step of the response weights at the perturbed one, through the linearised
network `f(x; 0) + J (h - lambda)` (a Jacobian-vector product, `torch.func.jvp`) when
`linearize`, each with its own optimizer of the config's family.

The run's epochs report the training loss and the validation loss and metric at the current
`lambda` (evaluation mode), like any trial, and its result holds the hyperparameter schedule:
the value and the perturbation scale of each hyperparameter after every epoch. The `"schedule"`
routine trains the plain network of the same config from scratch with such a schedule replayed
epoch by epoch (`Trainer.fit(before_epoch=...)`).

Everything the run carries (weights, `lambda`, `s`, every optimizer and schedule, the data-order
generators, the forked RNG, the schedule so far) is in its checkpoint: a paused or killed run
continues bit for bit on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch.func import jvp

from tunelab.spaces import ConfigError, Space, build_optimizer, build_schedule, optimizer_spec
from tunelab.spaces.errors import CheckpointError
from tunelab.spaces.regularizers import set_regularization
from tunelab.spaces.stn import StnModel, build_stn_model
from tunelab.trainers import (
    EpochResult,
    TensorSplit,
    Trainer,
    TrainResult,
    batches,
    evaluate,
    load_checkpoint,
    make_step,
)
from tunelab.trainers.routines import Routine, RunRequest, routines, run_epochs, started

ENTROPY_CONST = 0.5 * math.log(2 * math.pi * math.e)


@dataclass(frozen=True)
class StnSettings:
    """The `"stn"` routine's options (see `search.SelfTuning` for their meaning).

    Attributes:
        tune: The tuned config names as given (`model.dropout` stands for one rate per layer).
        names: Their per-layer expansion, the hyperparameters in the order the network sees them.
        low, high, integer: Each hyperparameter's range in the space, and whether it is discrete.
        init: Each hyperparameter's start value.
    """

    tune: tuple[str, ...]
    names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    integer: tuple[bool, ...]
    init: tuple[float, ...]
    delta: bool = False
    warmup: int = 5
    train_steps: int = 2
    val_steps: int = 1
    hyper_lr: float = 3e-3
    scale_lr: float = 3e-3
    tau: float = 1e-3
    init_scale: float = 0.5
    linearize: bool = True
    tune_scales: bool = True

    def __post_init__(self) -> None:
        n = len(self.names)
        if n == 0 or not all(len(v) == n for v in (self.low, self.high, self.integer, self.init)):
            raise ConfigError(f"STN options: names, low, high, integer and init must be equal, non-empty lists, got "
                              f"{self}")
        for name, lo, hi in zip(self.names, self.low, self.high, strict=True):
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ConfigError(f"STN: the range of {name} must be finite with low < high, got [{lo}, {hi}]")
        for key in ("warmup", "train_steps", "val_steps"):
            value = getattr(self, key)
            minimum = 0 if key == "warmup" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"SelfTuning: {key} must be an int >= {minimum}, got {value!r}")
        for key in ("hyper_lr", "scale_lr", "init_scale"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ConfigError(f"SelfTuning: {key} must be a positive number, got {value!r}")
        if not isinstance(self.tau, (int, float)) or isinstance(self.tau, bool) or self.tau < 0:
            raise ConfigError(f"SelfTuning: tau must be a number >= 0, got {self.tau!r}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> StnSettings:
        """Settings from stored options (unknown keys refused, lists turned into tuples)."""
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown STN options {unknown}; known: {sorted(known)}")
        for key in ("tune", "names", "low", "high", "integer", "init"):
            if key in options and isinstance(options[key], list):
                options[key] = tuple(options[key])
        try:
            return cls(**options)
        except TypeError as exc:
            raise ConfigError(f"STN options are incomplete: {exc}") from None

    def to_options(self) -> dict[str, Any]:
        """JSON-ready options."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def to_value(u: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Unconstrained hyperparameters -> values in their ranges (a stretched logistic)."""
    return low + (high - low) * torch.sigmoid(u)


def to_unconstrained(v: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Values -> unconstrained (the inverse of `to_value`; values at a bound are moved 2% inside)."""
    margin = 0.02 * (high - low)
    p = ((v.clamp(low + margin, high - margin)) - low) / (high - low)
    return torch.log(p) - torch.log1p(-p)


def inverse_softplus(x: float) -> float:
    """`s` with `softplus(s) = x`."""
    return x + math.log(-math.expm1(-x))


def _complete(config: Mapping[str, Any], settings: StnSettings) -> dict[str, Any]:
    """The config with each tuned entry present (at its start value), so the builders make its layer."""
    full = dict(config)
    for tuned in settings.tune:
        if tuned not in full:
            values = [v for n, v in zip(settings.names, settings.init, strict=True) if n.startswith(tuned)]
            full[tuned] = max(values) if values else 0.0
    return full


@dataclass
class _Run:
    config: dict[str, Any]
    seed: int
    model: StnModel
    lam: torch.nn.Parameter
    scale: torch.nn.Parameter
    optimizers: list[torch.optim.Optimizer]
    schedules: list[Any]
    hyper_opt: torch.optim.Adam
    scale_opt: torch.optim.Adam
    train_gen: torch.Generator
    val_gen: torch.Generator
    epoch: int = 0
    step: int = 0
    grad_evals: int = 0
    history: list[EpochResult] = field(default_factory=list)
    values: list[list[float]] = field(default_factory=list)
    scales: list[list[float]] = field(default_factory=list)


def _build(trainer: Trainer, config: dict[str, Any], settings: StnSettings, seed: int, total_steps: int) -> _Run:
    w = trainer.workload
    full = _complete(config, settings)  # the builders need a value for every regulariser they place
    model = build_stn_model(full, w.input_shape, w.n_outputs, settings.names, zero_init=settings.delta)
    model = model.to(trainer.device)
    dev = trainer.device
    low, high = torch.tensor(settings.low, device=dev), torch.tensor(settings.high, device=dev)
    lam = torch.nn.Parameter(to_unconstrained(torch.tensor(settings.init, device=dev), low, high))
    scale = torch.nn.Parameter(torch.full((len(settings.names),), inverse_softplus(settings.init_scale), device=dev))
    delta_groups = [model.general_parameters(), model.response_parameters()]
    groups = delta_groups if settings.delta else [list(model.parameters())]
    optimizers = [build_optimizer(full, g) for g in groups]
    schedules = [build_schedule(full, o, total_steps) for o in optimizers]
    return _Run(config, seed, model, lam, scale, optimizers, schedules,
                torch.optim.Adam([lam], lr=settings.hyper_lr), torch.optim.Adam([scale], lr=settings.scale_lr),
                trainer.generator(seed), trainer.generator(seed + 1))


def _state(run: _Run, device: torch.device) -> dict[str, Any]:
    rng = {"cpu": torch.get_rng_state(), "data": run.train_gen.get_state(), "val": run.val_gen.get_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return {
        "routine": "stn", "config": run.config, "seed": run.seed, "epoch": run.epoch, "step": run.step,
        "grad_evals": run.grad_evals, "model": run.model.state_dict(), "lambda": run.lam.detach(),
        "scale": run.scale.detach(), "optimizers": [o.state_dict() for o in run.optimizers],
        "schedules": [s.state_dict() for s in run.schedules], "hyper_opt": run.hyper_opt.state_dict(),
        "scale_opt": run.scale_opt.state_dict(), "rng": rng, "history": [asdict(e) for e in run.history],
        "values": run.values, "scales": run.scales,
    }


def _restore(run: _Run, path: Path, device: torch.device) -> None:
    state = load_checkpoint(path)
    if state.get("routine") != "stn" or state.get("config") != run.config or state.get("seed") != run.seed:
        raise CheckpointError(f"checkpoint {path} belongs to another run (not this STN run's config and seed); "
                              f"delete the file to start the run over")
    run.model.load_state_dict(state["model"])
    with torch.no_grad():
        run.lam.copy_(state["lambda"])
        run.scale.copy_(state["scale"])
    for o, s in zip(run.optimizers, state["optimizers"], strict=True):
        o.load_state_dict(s)
    for sch, s in zip(run.schedules, state["schedules"], strict=True):
        sch.load_state_dict(s)
    run.hyper_opt.load_state_dict(state["hyper_opt"])
    run.scale_opt.load_state_dict(state["scale_opt"])
    rng = state["rng"]
    torch.set_rng_state(rng["cpu"])
    run.train_gen.set_state(rng["data"])
    run.val_gen.set_state(rng["val"])
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"], device)
    run.epoch, run.step, run.grad_evals = state["epoch"], state["step"], state["grad_evals"]
    run.history = [EpochResult(**e) for e in state["history"]]
    run.values, run.scales = state["values"], state["scales"]


def sample_batch(trainer: Trainer, split: str, batch_size: int, generator: torch.Generator) -> tuple[Any, Any]:
    """A batch drawn with replacement from a split (a hyperparameter step's batch; resumable: no iterator state)."""
    data = trainer.split(split)
    idx = torch.randint(len(data), (batch_size,), generator=generator, device=generator.device)
    if isinstance(data, TensorSplit):
        idx = idx.to(data.x.device)
        return data.x[idx], data.y[idx]
    items = [data[int(i)] for i in idx.tolist()]
    x = torch.stack([torch.as_tensor(a) for a, _ in items]).to(trainer.device)
    y = torch.stack([torch.as_tensor(b) for _, b in items]).to(trainer.device)
    return x, y


def run_stn(trainer: Trainer, request: RunRequest) -> TrainResult:
    """Run (or continue, from its checkpoint) one self-tuning network; `fit`'s contract (see `trainers.routines`).

    Args:
        trainer: The study's trainer (workload, epochs, batch size, device, precision).
        request: The run: `config` is the config without the tuned hyperparameters
            (architecture, optimizer, schedule), and `options` are the `StnSettings`.

    Returns:
        A `TrainResult` whose `attrs` hold the hyperparameter schedule (value and scale per epoch).
    """
    settings = StnSettings.from_options(request.options)
    config = dict(request.config)
    batch_size = int(config.get("batch_size", trainer.batch_size))
    total_steps = trainer.epochs * trainer.steps_per_epoch(batch_size)
    with started(trainer, request, trainer.epochs) as (seed, until, path):
        run = _build(trainer, config, settings, seed, total_steps)
        if path is not None and path.exists():
            _restore(run, path, trainer.device)
        return run_epochs(_Epochs(run, settings, trainer, batch_size), trainer.workload, total=trainer.epochs,
                          until=until, path=path, request=request)


class _Epochs:
    """One STN run as `trainers.routines.run_epochs` trains it (`EpochRun`): weight and hyperparameter steps."""

    def __init__(self, run: _Run, settings: StnSettings, trainer: Trainer, batch_size: int) -> None:
        self.run, self.settings, self.trainer, self.batch_size = run, settings, trainer, batch_size
        dev = trainer.device
        self.low, self.high = torch.tensor(settings.low, device=dev), torch.tensor(settings.high, device=dev)
        self.spec = optimizer_spec(run.config)
        self.steps = [make_step(self.spec.style, run.model, o, trainer.workload.loss, trainer.autocast)
                      for o in run.optimizers]
        self.step_schedule = not run.schedules[0].lr_lambdas[0].constant
        self.seed, self.history = run.seed, run.history

    @property
    def epoch(self) -> int:
        """Epochs done."""
        return self.run.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.run.epoch = value

    @property
    def grad_evals(self) -> int:
        """Gradient evaluations so far."""
        return self.run.grad_evals

    def _perturbed(self, size: int) -> torch.Tensor:
        run = self.run
        eps = torch.randn(size, len(self.settings.names), device=self.trainer.device)
        return run.lam + torch.nn.functional.softplus(run.scale) * eps

    def _hyper_step(self) -> None:
        run, settings, trainer = self.run, self.settings, self.trainer
        model, n = run.model, len(settings.names)
        x, y = sample_batch(trainer, "val", self.batch_size, run.val_gen)
        model.eval()  # the validation loss without dropout, noise or shift (as the paper)
        h = self._perturbed(x.shape[0]) if settings.tune_scales else run.lam.expand(x.shape[0], n)
        inputs = h - run.lam.detach() if settings.delta else h
        model.set_hyper(inputs, to_value(h, self.low, self.high))
        with trainer.autocast():
            out = model(x)
        entropy = (torch.log(torch.nn.functional.softplus(run.scale)) + ENTROPY_CONST).sum()
        loss = trainer.workload.loss(out.float(), y) - settings.tau * entropy
        grads = torch.autograd.grad(loss, [run.lam, run.scale])
        run.lam.grad, run.scale.grad = grads
        run.hyper_opt.step()
        run.scale_opt.step()
        run.hyper_opt.zero_grad(set_to_none=True)
        run.scale_opt.zero_grad(set_to_none=True)
        model.train()

    def _weight_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        run, settings, trainer = self.run, self.settings, self.trainer
        model, low, high = run.model, self.low, self.high
        model.zero_grad(set_to_none=True)  # Delta-STN's two steps must not see each other's gradients
        with torch.no_grad():
            h = self._perturbed(x.shape[0])
        if not settings.delta:
            model.set_hyper(h, to_value(h, low, high))
            return self.steps[0](x, y)
        lam = run.lam.detach().expand(x.shape[0], len(settings.names))
        model.set_hyper(torch.zeros_like(h), to_value(lam, low, high))  # general weights at the unperturbed lambda
        loss = self.steps[0](x, y)
        model.zero_grad(set_to_none=True)
        offset = h - lam
        values = to_value(h, low, high)
        if settings.linearize:
            def logits(p: torch.Tensor) -> torch.Tensor:
                model.set_hyper(p, values)
                with trainer.autocast():
                    return model(x).float()

            primal, tangent = jvp(logits, (torch.zeros_like(offset),), (offset,))
            response_loss = trainer.workload.loss(primal + tangent, y)
            response_loss.backward(inputs=model.response_parameters())
            run.optimizers[1].step()
            run.optimizers[1].zero_grad(set_to_none=True)
        else:
            model.set_hyper(offset, values)
            self.steps[1](x, y)
        return loss

    def train_epoch(self) -> tuple[float, float]:
        """Weight steps over the training split, with hyperparameter steps every `train_steps` after warm-up."""
        run, settings, trainer = self.run, self.settings, self.trainer
        dev = trainer.device
        run.model.train()
        losses, sizes = [], []
        tuning = run.epoch > settings.warmup
        for i, (x, y) in enumerate(batches(trainer.split("train"), self.batch_size, shuffle=True,
                                           generator=run.train_gen, device=dev)):
            losses.append(self._weight_step(x, y))
            sizes.append(y.shape[0])
            if self.step_schedule:
                for sch in run.schedules:
                    sch.step()
            if tuning and (run.step + i + 1) % settings.train_steps == 0:  # counted over the run, not the epoch
                for _ in range(settings.val_steps):
                    self._hyper_step()
        run.step += len(losses)
        per_step = self.spec.grad_evals * (2 if settings.delta else 1)
        run.grad_evals += len(losses) * per_step
        weights = torch.tensor(sizes, dtype=torch.float32, device=dev)
        train_loss = torch.dot(torch.stack(losses).float(), weights).item() / float(weights.sum())
        lr = float(run.optimizers[0].param_groups[0]["lr"])
        with torch.no_grad():
            values = to_value(run.lam, self.low, self.high).tolist()
            scales = torch.nn.functional.softplus(run.scale).tolist()
        run.values.append([round(v, 6) for v in values])
        run.scales.append([round(v, 6) for v in scales])
        return train_loss, lr

    def validate(self) -> tuple[float, float]:
        """Loss and metric on the validation split at the current hyperparameters (no perturbation)."""
        _at_lambda(self.run, self.settings, self.low, self.high)
        trainer = self.trainer
        return evaluate(self.run.model, trainer.batches("val"), trainer.workload, trainer.autocast)

    def state(self) -> dict[str, Any]:
        """The run's checkpoint."""
        return _state(self.run, self.trainer.device)

    def test(self) -> float | None:
        """The test metric at the final hyperparameters (None without a test split)."""
        trainer = self.trainer
        if trainer.split("test") is None:
            return None
        _at_lambda(self.run, self.settings, self.low, self.high)
        return evaluate(self.run.model, trainer.batches("test"), trainer.workload, trainer.autocast)[1]

    def results(self) -> dict[str, Any]:
        """The hyperparameter schedule (value and scale per epoch) and the final values."""
        return _results(self.run, self.settings)


def _at_lambda(run: _Run, settings: StnSettings, low: torch.Tensor, high: torch.Tensor) -> None:
    """Set the network to the current hyperparameters (no perturbation) for evaluation."""
    lam = run.lam.detach().unsqueeze(0)
    run.model.set_hyper(torch.zeros_like(lam) if settings.delta else lam, to_value(lam, low, high))


def _results(run: _Run, settings: StnSettings) -> dict[str, Any]:
    schedule = {name: [row[k] for row in run.values] for k, name in enumerate(settings.names)}
    scales = {name: [row[k] for row in run.scales] for k, name in enumerate(settings.names)}
    final = {name: (math.floor(v[-1]) if settings.integer[k] else v[-1]) for k, (name, v) in
             enumerate(schedule.items()) if v}
    return {"tune": list(settings.tune), "names": list(settings.names), "delta": settings.delta,
            "schedule": schedule, "scales": scales, "final": final, "warmup": settings.warmup}


def _free_stn(space: Space, options: Mapping[str, Any]) -> tuple[str, ...]:
    tune = options.get("tune") or ()
    return tuple(t for t in tune if isinstance(t, str))


routines.register("stn", Routine(
    run_stn,
    free=_free_stn,
    comparable=True,
    doc="Self-Tuning Networks (MacKay et al. 2019) / Delta-STN (Bae & Grosse 2020): hyperparameters learned in one run",
))


# ------------------------------------------------------------------------------------ replay
def schedule_at(schedule: Mapping[str, Sequence[float]], integer: Mapping[str, bool], epoch: int) -> dict[str, float]:
    """The values a schedule gives for (1-based) `epoch`; past its end, its last values."""
    out = {}
    for name, values in schedule.items():
        if values:
            v = float(values[min(epoch, len(values)) - 1])
            out[name] = math.floor(v) if integer.get(name) else v
    return out


def run_schedule(trainer: Trainer, request: RunRequest) -> TrainResult:
    """Train the plain network of `request.config` with a hyperparameter schedule replayed epoch by epoch.

    `request.options`: `{"tune": [...], "schedule": {name: [value per epoch]}, "integer": {name:
    bool}}` (what an STN run found). The tuned regularisers are built at their largest scheduled
    value and set, before every epoch, to the schedule's value for it.

    Raises:
        ConfigError: Options without a schedule.
    """
    options = dict(request.options or {})
    schedule, integer = options.get("schedule"), dict(options.get("integer") or {})
    tune = options.get("tune") or []
    if not isinstance(schedule, Mapping) or not schedule or not isinstance(tune, list):
        raise ConfigError(f"the 'schedule' routine needs options {{'tune': [...], 'schedule': {{name: [values]}}}}, "
                          f"got {options}")
    full = dict(request.config)
    for tuned in tune:
        values = [float(v) for n, vs in schedule.items() if n.startswith(tuned) for v in vs]
        full[tuned] = max(values) if values else 0.0

    def before_epoch(model: torch.nn.Module, epoch: int) -> None:
        set_regularization(model, schedule_at(schedule, integer, epoch))

    result = trainer.fit(full, until_epoch=request.until_epoch, checkpoint=request.checkpoint, report=request.report,
                         seed=request.seed, checkpoint_seconds=request.checkpoint_seconds, before_epoch=before_epoch)
    return TrainResult(**{**result.__dict__, "attrs": {"replayed": dict(schedule), "tune": tune}})


def _free_schedule(space: Space, options: Mapping[str, Any]) -> tuple[str, ...]:
    return _free_stn(space, options)


routines.register("schedule", Routine(
    run_schedule,
    free=_free_schedule,
    comparable=True,
    doc="the plain network trained with a hyperparameter schedule replayed (an STN's schedule)",
))


__all__ = ["StnSettings", "inverse_softplus", "run_schedule", "run_stn", "schedule_at", "to_unconstrained",
           "to_value"]
