"""Population training: K configurations of one architecture trained at once, as one vectorised model.

Small trials waste a machine: a short MLP run is bound by per-step Python and kernel-launch
overhead, not by arithmetic. `Population.fit` trains K members that share an architecture in
one loop: their parameters are stacked into tensors of shape `(K, ...)`, one forward and
backward pass computes every member's loss and gradient, and one optimizer update
(`trainers.stacked_optim`) applies each member's own learning rate, schedule, weight decay and
momentum or betas as per-member tensors. This is the ensembling recipe of `torch.func`
(`stack_module_state` + `vmap` over `functional_call`), with the MLP's linear layers computed as
batched matrix products instead of through `vmap`, which measures faster on the CPU for small
layers.

Members share an architecture (`architecture`) when they have one architecture identity
(`spaces.models.shape_identity`: the `model.*` values that change tensor shapes) and batch size;
what their family declares shape-free may differ:

- dropout rates (`model.dropout`, `model.input_dropout`) and the input-noise standard deviation
  (`model.input_noise`) are per-member tensors: each member drops with its own probability (a
  Bernoulli mask with its own keep probability, kept activations scaled by its inverse, as
  `nn.Dropout` in training mode; the identity in evaluation) and adds noise of its own level;
- other shape-free choices (an activation, a random shift) cannot be tensors: members are
  sub-grouped by them (variants), rows of one stack that share its data, loss, backward pass
  and update, each variant's rows going through its own layer.

Networks that differ otherwise (a family whose declaration does not hold) train as separate
stacks, one after another.

What stays per member, so that each member is still its own run:

- its data order (its own generator, seeded from its seed as in `Trainer.fit`), its
  initialisation (built under its own seed), its learning-rate schedule and step count, its
  dropout rates, input-noise level and activation;
- its epochs, `report` decisions (continue / stop / pause), `until_epoch`, divergence (a member
  whose loss is not finite stops alone) and checkpoint, which is a plain `Trainer.fit`
  checkpoint: a member continues alone with the plain `Trainer`, and a plain checkpoint joins a
  population.

Equivalence: without dropout or input noise a member's run is `Trainer.fit`'s run of the same
config and seed up to floating-point rounding (batched products and per-member tensors round
differently; see `benchmarks/population.py` and the tests for the measured gap), whatever rates
the other members use. Dropout masks and input noise are drawn from the population's own random
stream (forked from the global generator, seeded from its first member's seed), not from the
member's: such a member is a valid run from the same distribution, not the same run.

Optimizers without a vectorised update (`stacked_optim.VECTORISED`), closure optimizers (SAM,
GSAM) and AdaHessian train one after another through `Trainer.fit`, with a warning.

Size: about 800 lines: the population's API, the split of members into stacks (templates,
per-member regularisers, variants), the stacked model (the MLP's batched products, `vmap` for
other networks) and the training loop share private state (slots, stacks) and are read
together; the optimizer updates and the flat parameter layout are `trainers.stacked_optim`.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tunelab.spaces import optimizer_spec
from tunelab.spaces.errors import ConfigError
from tunelab.spaces.models import ACTIVATIONS, build_model, shape_free_names, shape_identity
from tunelab.spaces.regularizers import InputNoise, NamedDropout, RandomShift
from tunelab.trainers.checkpoint import run_rng
from tunelab.trainers.stacked_optim import VECTORISED, StackedOptimizer, family_of, stack_flat
from tunelab.trainers.trainer import (
    EVAL_BATCH,
    Decision,
    EpochResult,
    RunControl,
    RunState,
    Trainer,
    TrainResult,
    best_metric,
)

MemberReport = Callable[[int, EpochResult], Decision | None]


@dataclass(frozen=True)
class Member:
    """One run of a population: what `Trainer.fit` takes for one configuration.

    Attributes:
        config: The configuration.
        seed: The run's seed (default: the trainer's).
        until_epoch: Pause after this epoch (default: the trainer's `epochs`).
        checkpoint: The run's checkpoint file: continued from if it exists, written as
            `Trainer.fit` writes it.
        keep_final: As `Trainer.fit`'s: whether a run that ends writes its final checkpoint
            (None: always).
    """

    config: Mapping[str, Any]
    seed: int | None = None
    until_epoch: int | None = None
    checkpoint: str | os.PathLike[str] | None = None
    keep_final: Callable[[EpochResult], bool] | None = None


#: Shape-free parameters a population realises as per-member tensors (when the family declares
#: them shape-free, `spaces.ModelSpec.shape_free`): its networks' `NamedDropout` / `InputNoise` layers.
PER_MEMBER: tuple[str, ...] = ("model.dropout", "model.input_dropout", "model.input_noise")


def architecture(config: Mapping[str, Any], trainer: Trainer) -> tuple[Any, ...]:
    """What members of one population must share: the architecture identity and the batch size.

    The architecture identity (`spaces.models.shape_identity`) is every `model.*` value but
    those the family declares shape-free (`spaces.ModelSpec.shape_free`); a family that declares
    nothing groups by every `model.*` value.
    """
    return (*shape_identity(config), ("batch_size", int(config.get("batch_size", trainer.batch_size))))


def why_not_vectorised(config: Mapping[str, Any]) -> str | None:
    """Why a config trains alone (its optimizer has no vectorised update), or None when it can join."""
    family = family_of(config)
    if family not in VECTORISED:
        return f"optimizer {family!r} has no vectorised update (vectorised: {', '.join(VECTORISED)})"
    if optimizer_spec(config).style != "standard":
        return f"optimizer {family!r} needs a closure or second-order graph"
    return None


class Population:
    """Trains several configurations of one architecture at once (see the module docstring).

    Args:
        trainer: The trainer whose workload, epochs, batch size, device, precision, seed and
            checkpoint settings every member uses.
        min_members: Fewer vectorisable members than this train one after another.

    Raises:
        ConfigError: `trainer` is not a `Trainer`.
    """

    def __init__(self, trainer: Trainer, *, min_members: int = 2) -> None:
        if not isinstance(trainer, Trainer):
            raise ConfigError(f"Population needs a trainers.Trainer, got {type(trainer).__name__}")
        self.trainer = trainer
        self.min_members = max(1, int(min_members))

    def fit(
        self,
        members: Sequence[Member | Mapping[str, Any]],
        *,
        report: MemberReport | None = None,
        checkpoint_seconds: float | None = None,
    ) -> list[TrainResult]:
        """Train every member; return their `TrainResult`s in order.

        Args:
            members: `Member`s (or bare configs), all of one architecture (`architecture`);
                their shape-free `model.*` values (dropout, activation, ...) may differ.
            report: Called as `report(i, epoch_result)` after each epoch of member `i`; returns
                continue / stop / pause for that member alone.
            checkpoint_seconds: As in `Trainer.fit`, per member.

        Raises:
            ConfigError: No members, members of different architectures, or a bad member.
            CheckpointError: A member's checkpoint belongs to another config or seed.
        """
        members = [m if isinstance(m, Member) else Member(m) for m in members]
        if not members:
            raise ConfigError("Population.fit needs at least one member")
        trainer = self.trainer
        keys = [architecture(m.config, trainer) for m in members]
        if len(set(keys)) > 1:
            other = next(i for i, k in enumerate(keys) if k != keys[0])
            diff = sorted(set(keys[other]) ^ set(keys[0]))
            raise ConfigError(
                f"members of a population must share an architecture (every model.* value but those the model "
                f"family declares shape-free, and the batch size); "
                f"member 0 and member {other} differ in {diff}. Group configs with trainers.population.architecture "
                f"and fit each group as its own population"
            )
        results: list[TrainResult | None] = [None] * len(members)
        alone = {i: why for i, m in enumerate(members) if (why := why_not_vectorised(m.config)) is not None}
        together = [i for i in range(len(members)) if i not in alone]
        if len(together) < self.min_members:
            alone.update({i: "too few members to vectorise" for i in together})
            together = []
        reasons = sorted({why for why in alone.values() if why != "too few members to vectorise"})
        if reasons:
            warnings.warn(f"{len(alone)} of {len(members)} members train one after another: {'; '.join(reasons)}",
                          stacklevel=2)
        if together:
            trained = _Run(trainer, [members[i] for i in together],
                           None if report is None else (lambda j, e: report(together[j], e)),
                           checkpoint_seconds).fit()
            for i, r in zip(together, trained, strict=True):
                results[i] = r
        for i in sorted(alone):
            m = members[i]
            results[i] = trainer.fit(m.config, until_epoch=m.until_epoch, checkpoint=m.checkpoint, seed=m.seed,
                                     report=None if report is None else (lambda e, i=i: report(i, e)),
                                     checkpoint_seconds=checkpoint_seconds, keep_final=m.keep_final)
        return [r for r in results if r is not None]


# ---------------------------------------------------------------------------- per-member layers


def member_dropout(x: torch.Tensor, keep: torch.Tensor, scale: torch.Tensor | None = None, *,
                   vmapped: bool = False) -> torch.Tensor:
    """Inverted dropout of `x` with keep probabilities `keep` broadcast against it (one per member).

    Each element is kept with its member's probability and scaled by its inverse, as
    `nn.Dropout(p=1 - keep)` in training mode: a member with `keep == 1` is returned unchanged,
    one with `keep == 0` is all zeros. Draws come from the global generator.

    Args:
        x: Activations, e.g. `(K, B, width)`.
        keep: Keep probabilities broadcastable against `x`, e.g. `(K, 1, 1)`.
        scale: `1 / keep` (0 where `keep` is 0), when the caller has it already.
        vmapped: Called under `torch.func.vmap` (which has no batching rule for the in-place
            comparison the direct call uses).
    """
    keep = keep.to(torch.float32)
    if scale is None:
        scale = torch.where(keep > 0, keep.reciprocal(), torch.zeros_like(keep))
    draws = torch.rand_like(x, dtype=torch.float32)
    mask = (draws < keep).to(torch.float32) if vmapped else draws.lt_(keep)  # 1 where kept, else 0
    return x * mask.mul_(scale).to(x.dtype)


def member_noise(x: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """`x` plus Gaussian noise of standard deviations `std` broadcast against it (one per member), as `InputNoise`.

    A member with `std == 0` gets `x` back; draws come from the global generator.
    """
    return x + (std.to(torch.float32) * torch.randn_like(x, dtype=torch.float32)).to(x.dtype)


def class_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per example of logits `(..., C)` and class indices `(...)` (all valid, none ignored).

    What `F.cross_entropy(..., reduction="none")` computes, as a log-sum-exp less the target's
    logit: two reductions over the class axis, about 4x faster on the CPU than its log-softmax
    when there are a few classes and many rows (a population's `K x B`); equal up to rounding.
    """
    return logits.logsumexp(-1) - logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)


_RATE = "population_rate"  # the buffer of a per-member regulariser's rate


class _MemberRate(nn.Module):
    """A per-member regulariser whose rate is a buffer, so that `vmap` gives every member its own.

    Subclasses say how the rate acts (`apply`): `_MemberDropout` stands for a `NamedDropout`,
    `_MemberNoise` for an `InputNoise`.
    """

    def __init__(self, hyper: str) -> None:
        super().__init__()
        self.hyper, self.active = hyper, True
        self.register_buffer(_RATE, torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.active):
            return x
        return self.apply_rate(x, getattr(self, _RATE))

    def apply_rate(self, x: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class _MemberDropout(_MemberRate):
    """A `NamedDropout` with a per-member rate."""

    def apply_rate(self, x: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
        return member_dropout(x, 1 - rate, vmapped=True)


class _MemberNoise(_MemberRate):
    """An `InputNoise` with a per-member standard deviation."""

    def apply_rate(self, x: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
        return member_noise(x, rate)


_PER_MEMBER_LAYERS = (NamedDropout, InputNoise)  # realised as per-member rates
_MEMBER_LAYERS = (_MemberRate,)
_VARIANT_LAYERS = (*ACTIVATIONS.values(), nn.Identity, RandomShift)  # parameter-free: applied to their rows
_PLACEHOLDER = {"model.dropout": 0.5, "model.input_dropout": 0.5, "model.input_noise": 1.0}


def _signature(model: nn.Module, *, loose: bool) -> tuple[Any, ...]:
    """Every layer and tensor shape; `loose`: per-member regularisers left out, variant layers as one kind."""
    layers = []
    for m in model.modules():
        if loose and isinstance(m, _PER_MEMBER_LAYERS):
            continue
        layers.append(("variant",) if loose and isinstance(m, _VARIANT_LAYERS) else (type(m).__qualname__,
                                                                                     m.extra_repr()))
    return tuple(layers), tuple(tuple(t.shape) for t in (*model.parameters(), *model.buffers()))


def _hypers(model: nn.Module) -> dict[str, float]:
    """The rates of a network's per-member regularisers, by the hyperparameter each realises."""
    return {m.hyper: float(m.p) if isinstance(m, NamedDropout) else float(m.std)
            for m in model.modules() if isinstance(m, _PER_MEMBER_LAYERS)}


def _replace(model: nn.Module, kinds: tuple[type, ...], make: Callable[[int, nn.Module], nn.Module]) -> None:
    """Replace, in place, the `i`-th submodule of `model` of one of `kinds` by `make(i, module)`."""
    found = [(name, m) for name, m in model.named_modules() if name and isinstance(m, kinds)]
    for i, (name, module) in enumerate(found):
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, make(i, module))


@dataclass
class _Part:
    """Members that train as one stacked model, and what differs between them.

    `template` is a network of their parameter shapes with each per-member regulariser any of
    them has replaced by a `_MemberDropout` / `_MemberNoise` (`hypers[j]` is the hyperparameter
    of the `j`-th); `values[i][j]` is member `i`'s rate of it (0 where its network has none).
    Members differ also in their variant layers (activations, shifts): `variant[i]` indexes
    `variants`, each the variant layers of one kind of member, in network order.
    """

    slots: list[_Slot]
    template: nn.Module
    hypers: list[str]
    values: list[list[float]]
    variant: list[int]
    variants: list[list[nn.Module]]


def _parts(trainer: Trainer, slots: list[_Slot]) -> list[_Part]:
    """Split members into stacks: members whose networks differ only in per-member regularisers and variant layers.

    The template of a stack is built from its first member's config with every per-member rate
    set to a placeholder, so that it has each regulariser any member has. Members whose networks
    do not fit that template (a family that builds other layers from a parameter it declares
    shape-free) train in stacks of equal networks instead, on a copy of their own network.
    """
    groups: dict[tuple[Any, ...], list[_Slot]] = {}
    for slot in slots:
        groups.setdefault(_signature(slot.run.model, loose=True), []).append(slot)
    parts: list[_Part] = []
    w = trainer.workload
    for signature, group in groups.items():
        config = dict(group[0].run.config)
        present = {k for s in group for k in s.run.config} & set(shape_free_names(config))
        config.update({k: v for k, v in _PLACEHOLDER.items() if k in present})
        with torch.random.fork_rng(devices=[]):  # its initial values are never used
            template = build_model(config, w.input_shape, w.n_outputs).to(trainer.device)
        have = set(_hypers(template))
        if _signature(template, loose=True) == signature and all(set(_hypers(s.run.model)) <= have for s in group):
            parts.append(_part(group, template))
            continue
        exact: dict[tuple[Any, ...], list[_Slot]] = {}
        for slot in group:
            exact.setdefault(_signature(slot.run.model, loose=False), []).append(slot)
        parts += [_part(g, copy.deepcopy(g[0].run.model)) for g in exact.values()]
    return parts


def _part(slots: list[_Slot], template: nn.Module) -> _Part:
    hypers: list[str] = []

    def member_layer(i: int, module: nn.Module) -> nn.Module:
        hypers.append(module.hyper)
        return (_MemberDropout if isinstance(module, NamedDropout) else _MemberNoise)(module.hyper)

    _replace(template, _PER_MEMBER_LAYERS, member_layer)
    values = [[_hypers(s.run.model).get(h, 0.0) for h in hypers] for s in slots]
    keys: dict[tuple[Any, ...], int] = {}
    variant, variants = [], []
    for s in slots:
        layers = [m for m in s.run.model.modules() if isinstance(m, _VARIANT_LAYERS)]
        key = tuple((type(m).__qualname__, m.extra_repr()) for m in layers)
        if key not in keys:
            keys[key] = len(variants)
            variants.append([copy.deepcopy(m).train() for m in layers])
        variant.append(keys[key])
    return _Part(slots, template, hypers, values, variant, variants)


def _mlp_plan(model: nn.Module) -> list[tuple[str, Any]] | None:
    """The layers of an MLP template as `(kind, detail)`, or None if it is not one.

    Kinds: flatten, linear (detail: parameter indices), variant (the index of the variant layer),
    member (the index of the per-member regulariser, and whether it is a dropout) and dropout (a
    plain one; its rate).
    """
    if not isinstance(model, nn.Sequential):
        return None
    names = [n for n, _ in model.named_parameters()]
    if any(not n.endswith(f".{_RATE}") for n, _ in model.named_buffers()):
        return None
    plan: list[tuple[str, Any]] = []
    counts = {"variant": 0, "member": 0}
    for idx, module in enumerate(model):
        if isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1:
            plan.append(("flatten", None))
        elif isinstance(module, nn.Linear):
            w = names.index(f"{idx}.weight")
            b = names.index(f"{idx}.bias") if module.bias is not None else None
            plan.append(("linear", (w, b)))
        elif isinstance(module, (*_VARIANT_LAYERS, *_MEMBER_LAYERS)):
            kind = "variant" if isinstance(module, _VARIANT_LAYERS) else "member"
            detail = counts[kind] if kind == "variant" else (counts[kind], isinstance(module, _MemberDropout))
            plan.append((kind, detail))
            counts[kind] += 1
        elif isinstance(module, nn.Dropout):
            plan.append(("dropout", float(module.p)))
        else:
            return None
    return plan


# ---------------------------------------------------------------------------- one population run


@dataclass
class _Slot:
    """One member while it trains: its plain run (the source of truth between stacks) and loop state."""

    run: RunState
    until: int
    batch_size: int
    total_steps: int
    control: RunControl
    rng: torch.Tensor  # the global CPU RNG state of its run after it was built (what its checkpoint stores)
    status: str | None = None
    result: TrainResult | None = None
    test_metric: float | None = None  # measured by its stack when it completed


class _Run:
    """Trains the vectorisable members of one population to their ends."""

    def __init__(self, trainer: Trainer, members: list[Member], report: MemberReport | None,
                 checkpoint_seconds: float | None) -> None:
        self.trainer = trainer
        self.slots = [self._slot(i, m, report, checkpoint_seconds) for i, m in enumerate(members)]

    def _slot(self, i: int, m: Member, report: MemberReport | None, checkpoint_seconds: float | None) -> _Slot:
        trainer = self.trainer
        config = dict(m.config)
        seed = trainer.seed if m.seed is None else int(m.seed)
        until = trainer.epochs if m.until_epoch is None else int(m.until_epoch)
        if until < 1:
            raise ConfigError(f"until_epoch must be >= 1, got {m.until_epoch!r} (member {i})")
        until = min(until, trainer.epochs)
        batch_size = int(config.get("batch_size", trainer.batch_size))
        total_steps = trainer.epochs * trainer.steps_per_epoch(batch_size)
        path = Path(m.checkpoint) if m.checkpoint is not None else None
        with run_rng(trainer.device, seed):
            model, optimizer, scheduler = trainer.build(config, total_steps)
            run = RunState(config, seed, model, optimizer, scheduler, optimizer_spec(config), trainer.generator(seed))
            if path is not None and path.exists():
                trainer.restore(run, path)
            rng = torch.get_rng_state()
        member_report = None if report is None else (lambda e, i=i: report(i, e))
        control = RunControl(path, until, member_report, checkpoint_seconds, trainer.checkpoint_every,
                             final=trainer.epochs, keep_final=m.keep_final)
        return _Slot(run, until, batch_size, total_steps, control, rng)

    def fit(self) -> list[TrainResult]:
        trainer = self.trainer
        for slot in self.slots:  # members whose checkpoint is already at their end
            if slot.run.epoch >= slot.until:
                _end(trainer, slot, "complete" if slot.run.epoch >= trainer.epochs else "paused")
        with run_rng(trainer.device, self.slots[0].run.seed):  # dropout and noise: the population's own stream
            for part in _parts(trainer, [s for s in self.slots if s.status is None]):
                model = _StackedModel(trainer, part)
                while True:
                    active = [i for i, s in enumerate(part.slots) if s.status is None]
                    if not active:
                        break
                    stack = _Stack(trainer, model, active)
                    stack.train_until_change()
                    stack.write_back()
        return [s.result for s in self.slots]  # type: ignore[misc]


class _StackedModel:
    """The network of one part, computed for a stack of its members: forward passes over stacked tensors."""

    def __init__(self, trainer: Trainer, part: _Part) -> None:
        self.trainer, self.part = trainer, part
        self.plan = _mlp_plan(part.template)
        splits = [trainer.split(n) for n in ("train", "val", "test")]
        self.class_indices = trainer.workload.task == "classification" and all(  # what `class_losses` takes
            s is None or (not s.y.is_floating_point() and s.y.dim() == 1 and int(s.y.min()) >= 0) for s in splits)
        self.shifts = [all(isinstance(v[i], RandomShift) for v in part.variants) for i in range(len(part.variants[0]))]
        self.models: list[nn.Module] = []  # one per variant (vmap only): the template with the variant's layers
        self.calls: list[tuple[Any, Any]] = []
        if self.plan is not None:
            return
        from torch.func import functional_call, vmap

        for layers in part.variants:
            model = copy.deepcopy(part.template)
            _replace(model, _VARIANT_LAYERS, lambda i, _, layers=layers: copy.deepcopy(layers[i]))

            def call(params: dict[str, torch.Tensor], x: torch.Tensor, model: nn.Module = model) -> torch.Tensor:
                return functional_call(model, params, (x,))

            self.models.append(model)
            self.calls.append((vmap(call, in_dims=(0, 0), randomness="different"),
                               vmap(call, in_dims=(0, None), randomness="different")))

    def prepare(self, rows: list[int]) -> tuple[list[tuple[int, int, int]], list[torch.Tensor]]:
        """What a stack of the part's members `rows` (in stack order) needs.

        Returns:
            The runs `(start, stop, variant)` of members of one variant, and the rates `(K,)` of
            each per-member regulariser (whether any is non-zero is set into the vmapped models).
        """
        part = self.part
        runs: list[tuple[int, int, int]] = []
        for i, row in enumerate(rows):
            v = part.variant[row]
            if runs and runs[-1][2] == v:
                runs[-1] = (runs[-1][0], i + 1, v)
            else:
                runs.append((i, i + 1, v))
        rates = torch.tensor([part.values[r] for r in rows], dtype=torch.float32,
                             device=self.trainer.device).reshape(len(rows), len(part.hypers)).t()
        for model in self.models:
            for j, module in enumerate(m for m in model.modules() if isinstance(m, _MEMBER_LAYERS)):
                module.active = bool((rates[j] > 0).any())
        return runs, list(rates)

    def forward(self, stack: _Stack, x: torch.Tensor, *, shared: bool, training: bool) -> torch.Tensor:
        """Outputs `(K, B, ...)` for inputs `(K, B, ...)`, or for one batch `(B, ...)` every member sees."""
        if self.plan is None:
            tensors = {**dict(zip(stack.names, stack.params, strict=True)),
                       **dict(zip(stack.buffer_names, stack.buffers, strict=True)), **stack.rate_tensors}
            if len(stack.runs) == 1:
                self.models[stack.runs[0][2]].train(training)
                train_fn, eval_fn = self.calls[stack.runs[0][2]]
                return eval_fn(tensors, x) if shared else train_fn(tensors, x)
            pieces = {n: t.split(stack.run_sizes) for n, t in tensors.items()}
            inputs = [x] * len(stack.runs) if shared else x.split(stack.run_sizes)
            outs = []
            for r, (_, _, v) in enumerate(stack.runs):
                self.models[v].train(training)
                train_fn, eval_fn = self.calls[v]
                mine = {n: t[r] for n, t in pieces.items()}
                outs.append(eval_fn(mine, x) if shared else train_fn(mine, inputs[r]))
            return torch.cat(outs)
        k = len(stack.slots)
        h = x
        for kind, detail in self.plan:
            if kind == "flatten":
                h = h.flatten(1 if shared else 2)
            elif kind == "linear":
                w, b = stack.params[detail[0]], None if detail[1] is None else stack.params[detail[1]]
                if shared:
                    h = torch.matmul(h, w.transpose(1, 2))
                    h = h if b is None else h + b.unsqueeze(1)
                    shared = False
                elif b is None:
                    h = torch.bmm(h, w.transpose(1, 2))
                else:
                    h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            elif kind == "variant":
                if not training and self.shifts[detail]:
                    continue  # a random shift acts in training only
                if shared:  # a variant layer before any linear one: every member's own input from here
                    h, shared = h.unsqueeze(0).expand(k, *h.shape), False
                h = self._variant(stack, h, detail, training)
            elif not training:
                continue  # regularisers act in training only, where inputs are per member `(K, B, ...)`
            elif kind == "member" and stack.active[detail[0]]:
                j, dropout = detail
                h = member_dropout(h, stack.keep[j], stack.scale[j]) if dropout else member_noise(h, stack.std[j])
            elif kind == "dropout" and detail > 0:
                h = F.dropout(h, detail, training=True)
        return h if not shared else h.unsqueeze(0).expand(k, *h.shape)

    def _variant(self, stack: _Stack, h: torch.Tensor, index: int, training: bool) -> torch.Tensor:
        """Variant layer `index` applied to each run of members with its own layer."""
        def apply(layer: nn.Module, rows: torch.Tensor) -> torch.Tensor:
            if isinstance(layer, RandomShift):  # per example, along the last axis of the flattened input
                return layer(rows.reshape(-1, rows.shape[-1])).reshape(rows.shape) if training else rows
            return layer(rows)

        variants = self.part.variants
        if len(stack.runs) == 1:
            return apply(variants[stack.runs[0][2]][index], h)
        # `split`, not slices: its backward is one `cat`, where each slice's would fill a full-size zero tensor
        pieces = h.split(stack.run_sizes)
        return torch.cat([apply(variants[v][index], rows) for rows, (_, _, v) in zip(pieces, stack.runs, strict=True)])


class _Stack:
    """The stacked (flat) parameters, buffers, optimizer states and rates of the active members of a part.

    Rows are ordered by optimizer family, then variant, so that each family's rows are one slice
    of the flat parameters and each variant's rows few slices of a batch.
    """

    def __init__(self, trainer: Trainer, model: _StackedModel, rows: list[int]) -> None:
        part = model.part
        families: dict[str, int] = {}
        for r in rows:
            families.setdefault(family_of(part.slots[r].run.config), len(families))
        rows = sorted(rows, key=lambda r: (families[family_of(part.slots[r].run.config)], part.variant[r]))
        self.trainer, self.model = trainer, model
        self.slots = slots = [part.slots[r] for r in rows]
        self.runs, self.rates = model.prepare(rows)
        self.active = [bool((r > 0).any()) for r in self.rates]
        self.run_sizes = [b - a for a, b, _ in self.runs]
        self.std = [r.view(-1, 1, 1) for r in self.rates]  # (K, 1, 1): against an MLP's `(K, B, width)`
        self.keep = [1 - r for r in self.std]
        self.scale = [torch.where(q > 0, q.reciprocal(), torch.zeros_like(q)) for q in self.keep]
        members = [n for n, m in part.template.named_modules() if isinstance(m, _MEMBER_LAYERS)]
        self.rate_tensors = {f"{n}.{_RATE}": r for n, r in zip(members, self.rates, strict=True)}
        self.names = [n for n, _ in part.template.named_parameters()]  # the template's: members' own may differ
        self.buffer_names = [n for n, _ in part.template.named_buffers() if not n.endswith(f".{_RATE}")]
        per_run = [list(s.run.model.parameters()) for s in slots]  # by position: the template's order
        self.flats, layout, self.params = stack_flat(per_run)
        self.groups = [[j for j, where in enumerate(layout) if where[0] == g] for g in range(len(self.flats))]
        self.buffers = [torch.stack(b) for b in zip(*(list(s.run.model.buffers()) for s in slots), strict=True)]
        self.optimizers = []
        for family in families:
            mine = [i for i, s in enumerate(slots) if family_of(s.run.config) == family]
            opt = StackedOptimizer(family, [slots[i].run.config for i in mine], self.flats, layout, mine)
            for j, i in enumerate(mine):
                opt.load(j, slots[i].run.optimizer, slots[i].run.step)
            self.optimizers.append(opt)
        self.base_lr = [float(s.run.optimizer.param_groups[0]["initial_lr"]) for s in slots]
        self.multiplier = [s.run.scheduler.lr_lambdas[0] for s in slots]
        self.grad_evals = [s.run.spec.grad_evals for s in slots]

    def forward(self, x: torch.Tensor, *, shared: bool, training: bool) -> torch.Tensor:
        """Outputs `(K, B, ...)` for inputs `(K, B, ...)`, or for one batch `(B, ...)` every member sees."""
        return self.model.forward(self, x, shared=shared, training=training)

    def flat_grads(self) -> list[torch.Tensor]:
        """The gradients of the flat parameters `(K, N)` (zeros for a parameter that got none); clears them."""
        k = len(self.slots)
        out = []
        for group in self.groups:
            grads = [self.params[j].grad if self.params[j].grad is not None else torch.zeros_like(self.params[j])
                     for j in group]
            out.append(torch.cat([g.reshape(k, -1) for g in grads], 1) if len(grads) > 1 else grads[0].reshape(k, -1))
        for p in self.params:
            p.grad = None
        return out


    def member_losses(self, out: torch.Tensor, y: torch.Tensor, *, per_example: bool = False) -> torch.Tensor:
        """Mean training loss of each member `(K,)`, or `(K, B)` per example, as `Workload.loss` computes it.

        Args:
            out: Outputs `(K, B, ...)`.
            y: Targets `(K, B, ...)`.
            per_example: Return every example's loss instead of each member's mean.
        """
        workload = self.trainer.workload
        k, b = y.shape[0], y.shape[1]
        if workload.task == "classification" and self.model.class_indices:
            err = class_losses(out.reshape(k, b, -1), y)
        elif workload.task == "classification":
            err = F.cross_entropy(out.reshape(k * b, -1), y.reshape(k * b), reduction="none").view(k, b)
        else:
            err = F.mse_loss(out.reshape(y.shape), y, reduction="none").reshape(k, b, -1).mean(2)
        return err if per_example else err.mean(1)

    @torch.no_grad()
    def evaluate(self, split: str) -> list[tuple[float, float]]:
        """`(loss, metric)` of every member on a split (one batched forward per chunk)."""
        trainer = self.trainer
        workload = trainer.workload
        k = len(self.slots)
        loss_sum = torch.zeros(k, device=trainer.device)
        metric_sum = torch.zeros(k, device=trainer.device)
        n = 0
        for x, y in trainer.batches(split, batch_size=max(trainer.batch_size, EVAL_BATCH)):
            with trainer.autocast():
                out = self.forward(x, shared=True, training=False)
            out = out.float()
            if workload.task == "classification":  # the task's own loss and metric (`Workload.standard`), batched
                loss_sum += self.member_losses(out, y.unsqueeze(0).expand(k, *y.shape), per_example=True).sum(1)
                metric_sum += (out.argmax(2) == y).sum(1)
            else:
                errors = self.member_losses(out, y.unsqueeze(0).expand(k, *y.shape), per_example=True).sum(1)
                loss_sum += errors
                metric_sum += errors
            n += int(y.shape[0])
        if n == 0:
            return [(math.nan, math.nan)] * k
        values = torch.stack([loss_sum, metric_sum]).tolist()  # one host sync; divided as `evaluate` divides
        return [(a / n, b / n) for a, b in zip(values[0], values[1], strict=True)]

    # ------------------------------------------------------------------ training
    def _lrs(self, steps: int) -> torch.Tensor:
        """Learning rate of every member at each of the next `steps` steps, `(steps, K)` (float64 products)."""
        rows = []
        for s, base, m in zip(self.slots, self.base_lr, self.multiplier, strict=True):
            if m.constant:
                rows.append([base] * steps)
            else:
                rows.append([base * m(s.run.step + j) for j in range(steps)])
        like = self.flats[0]
        return torch.tensor(rows, dtype=torch.float64).t().to(like.dtype).to(like.device)

    def train_until_change(self) -> None:
        """Train epochs until a member leaves (its end, a pause, a stop, divergence)."""
        trainer = self.trainer
        train = trainer.split("train")
        if not hasattr(train, "x"):
            raise ConfigError("Population trains on tensor workloads (Workload.from_tensors and the built-in ones)")
        n = train.x.shape[0]
        bs = self.slots[0].batch_size
        steps = math.ceil(n / bs)
        k = len(self.slots)
        while True:
            t0 = time.perf_counter()
            perms = []
            for s in self.slots:
                s.run.epoch += 1
                g = s.run.generator
                perm = torch.randperm(n, generator=g, device=g.device)
                perms.append(perm.to(train.x.device))
            perms_t = torch.stack(perms)
            lrs = self._lrs(steps)
            own_lrs = [opt.own(lrs.t()).t() for opt in self.optimizers]
            losses, sizes = [], []
            for j in range(steps):
                idx = perms_t[:, j * bs:(j + 1) * bs]
                xb, yb = train.x[idx], train.y[idx]
                with trainer.autocast():
                    out = self.forward(xb, shared=False, training=True)
                    loss = self.member_losses(out.float(), yb)
                loss.sum().backward()
                grads = self.flat_grads()
                for opt, opt_lrs in zip(self.optimizers, own_lrs, strict=True):
                    opt.step(opt_lrs[j], grads)
                losses.append(loss.detach())
                sizes.append(idx.shape[1])
            weights = torch.tensor(sizes, dtype=torch.float32, device=trainer.device)
            train_loss = (torch.stack(losses).float() * weights[:, None]).sum(0).div(n).tolist()
            for s, ge in zip(self.slots, self.grad_evals, strict=True):
                s.run.step += steps
                s.run.grad_evals += steps * ge
            finite = [math.isfinite(v) for v in train_loss]
            evals = self.evaluate("val") if any(finite) else []
            seconds = (time.perf_counter() - t0) / k
            leaving = False
            for i, s in enumerate(self.slots):
                lr = self._lr_now(i)
                if not finite[i]:
                    s.run.history.append(EpochResult(s.run.epoch, train_loss[i], math.nan, math.nan, lr, seconds,
                                                     s.run.grad_evals))
                    s.status = "diverged"
                    leaving = True
                    continue
                val_loss, val_metric = evals[i]
                result = EpochResult(s.run.epoch, train_loss[i], val_loss, val_metric, lr, seconds, s.run.grad_evals)
                s.run.history.append(result)
                status = s.control.after_epoch(result, lambda p, i=i, s=s: self._save_one(i, s, p))
                if status is None and s.run.epoch >= s.until:
                    status = "complete" if s.run.epoch >= trainer.epochs else "paused"
                if status is not None:
                    s.status = status
                    leaving = True
            if leaving:
                if any(s.status == "complete" for s in self.slots) and trainer.split("test") is not None:
                    for s, (_, metric) in zip(self.slots, self.evaluate("test"), strict=True):  # one batched pass
                        s.test_metric = metric if s.status == "complete" else None
                return

    def _lr_now(self, i: int) -> float:
        s = self.slots[i]
        m = self.multiplier[i]
        return self.base_lr[i] if m.constant else self.base_lr[i] * m(s.run.step)

    def _save_one(self, i: int, slot: _Slot, path: Path) -> None:
        self._write_member(i, slot)
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(slot.rng)
            self.trainer.save(slot.run, path)

    @torch.no_grad()
    def _write_member(self, i: int, slot: _Slot) -> None:
        """Copy member `i`'s stacked state into its plain model, optimizer and schedule."""
        run = slot.run
        for own, p in zip(run.model.parameters(), self.params, strict=True):  # by position (names may differ)
            own.copy_(p[i])
        for own, b in zip(run.model.buffers(), self.buffers, strict=True):
            own.copy_(b[i])
        for opt in self.optimizers:
            if i in opt.members:
                opt.export(opt.members.index(i), run.optimizer)
        if not self.multiplier[i].constant:
            run.scheduler.last_epoch = run.step
            run.scheduler._step_count = run.step + 1
            lr = self._lr_now(i)
            run.scheduler._last_lr = [lr]
            for group in run.optimizer.param_groups:
                group["lr"] = lr

    def write_back(self) -> None:
        """Hand every member's state back to its plain run, and finish those that left."""
        for i, slot in enumerate(self.slots):
            self._write_member(i, slot)
        for slot in self.slots:
            if slot.status is not None and slot.result is None:
                _end(self.trainer, slot, slot.status)


def _end(trainer: Trainer, slot: _Slot, status: str) -> None:
    """Finish one member's run as `Trainer._train` finishes a run (its plain run holds its state)."""
    run = slot.run
    checkpoint_file = slot.control.settle(status)  # type: ignore[arg-type]
    test_metric = slot.test_metric
    if status == "complete" and test_metric is None and trainer.split("test") is not None:
        test_metric = trainer.evaluate(run.model, "test")[1]
    slot.status = status
    slot.result = TrainResult(
        status=status,  # type: ignore[arg-type]
        epochs=list(run.history),
        val_metric=run.history[-1].val_metric if run.history else None,
        best_val_metric=best_metric(run.history, trainer.workload),
        test_metric=test_metric,
        checkpoint=checkpoint_file,
        seed=run.seed,
        checkpoint_error=slot.control.save_error,
    )


__all__ = ["PER_MEMBER", "Member", "MemberReport", "Population", "architecture", "class_losses", "member_dropout",
           "member_noise", "why_not_vectorised"]
