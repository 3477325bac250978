"""Population training: K configurations of one architecture trained at once, as one vectorised model.

Small trials waste a machine: a short MLP run is bound by per-step Python and kernel-launch
overhead, not by arithmetic. `Population.fit` trains K members that share an architecture (the
same `model.*` values and batch size) in one loop: their parameters are stacked into tensors
of shape `(K, ...)`, one forward and backward pass computes every member's loss and gradient,
and one optimizer update (`trainers.stacked_optim`) applies each member's own learning rate,
schedule, weight decay and momentum or betas as per-member tensors. This is the ensembling
recipe of `torch.func` (`stack_module_state` + `vmap` over `functional_call`), with the
MLP's linear layers computed as batched matrix products instead of through `vmap`, which
measures faster on the CPU for small layers.

What stays per member, so that each member is still its own run:

- its data order (its own generator, seeded from its seed as in `Trainer.fit`), its
  initialisation (built under its own seed), its learning-rate schedule and step count;
- its epochs, `report` decisions (continue / stop / pause), `until_epoch`, divergence (a member
  whose loss is not finite stops alone) and checkpoint, which is a plain `Trainer.fit`
  checkpoint: a member continues alone with the plain `Trainer`, and a plain checkpoint joins a
  population.

Equivalence: without dropout or input noise a member's run is `Trainer.fit`'s run of the same
config and seed up to floating-point rounding (batched products and per-member tensors round
differently; see `benchmarks/population.py` and the tests for the measured gap). Dropout and
input-noise draws differ per member but come from the population's random stream, not from the
member's own: such a member is a valid run from the same distribution, not the same run.

Optimizers without a vectorised update (`stacked_optim.VECTORISED`), closure optimizers (SAM,
GSAM) and AdaHessian train one after another through `Trainer.fit`, with a warning.
"""

from __future__ import annotations

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
from tunelab.spaces.models import ACTIVATIONS
from tunelab.spaces.regularizers import NamedDropout
from tunelab.trainers.checkpoint import run_rng
from tunelab.trainers.stacked_optim import VECTORISED, StackedOptimizer, family_of
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
    """

    config: Mapping[str, Any]
    seed: int | None = None
    until_epoch: int | None = None
    checkpoint: str | os.PathLike[str] | None = None


def architecture(config: Mapping[str, Any], trainer: Trainer) -> tuple[Any, ...]:
    """What members of one population must share: every `model.*` value and the batch size."""
    model = tuple(sorted((k, repr(v)) for k, v in config.items() if k == "model" or k.startswith("model.")))
    return (*model, ("batch_size", int(config.get("batch_size", trainer.batch_size))))


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
            members: `Member`s (or bare configs), all of one architecture (`architecture`).
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
                f"members of a population must share an architecture (every model.* value and the batch size); "
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
                                     checkpoint_seconds=checkpoint_seconds)
        return [r for r in results if r is not None]


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


_ELEMENTWISE = (*ACTIVATIONS.values(), nn.Identity)


def _mlp_plan(model: nn.Module) -> list[tuple[str, Any]] | None:
    """The layers of an MLP as ("flatten" | "linear" | "act" | "dropout", detail), or None if it is not one."""
    if not isinstance(model, nn.Sequential):
        return None
    names = [n for n, _ in model.named_parameters()]
    if any(True for _ in model.buffers()):
        return None
    plan: list[tuple[str, Any]] = []
    for idx, module in enumerate(model):
        if isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1:
            plan.append(("flatten", None))
        elif isinstance(module, nn.Linear):
            w = names.index(f"{idx}.weight")
            b = names.index(f"{idx}.bias") if module.bias is not None else None
            plan.append(("linear", (w, b)))
        elif isinstance(module, _ELEMENTWISE):
            plan.append(("act", module))
        elif isinstance(module, (nn.Dropout, NamedDropout)):
            plan.append(("dropout", float(module.p)))
        else:
            return None
    return plan


class _Run:
    """Trains the vectorisable members of one population to their ends."""

    def __init__(self, trainer: Trainer, members: list[Member], report: MemberReport | None,
                 checkpoint_seconds: float | None) -> None:
        self.trainer = trainer
        self.slots = [self._slot(i, m, report, checkpoint_seconds) for i, m in enumerate(members)]
        self.plan = _mlp_plan(self.slots[0].run.model)

    # ------------------------------------------------------------------ members
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
        control = RunControl(path, until, member_report, checkpoint_seconds, trainer.checkpoint_every)
        return _Slot(run, until, batch_size, total_steps, control, rng)

    # ------------------------------------------------------------------ loop
    def fit(self) -> list[TrainResult]:
        for slot in self.slots:  # members whose checkpoint is already at their end
            if slot.run.epoch >= slot.until:
                _end(self.trainer, slot, "complete" if slot.run.epoch >= self.trainer.epochs else "paused")
        while True:
            active = [s for s in self.slots if s.status is None]
            if not active:
                break
            stack = _Stack(self.trainer, active, self.plan)
            stack.train_until_change(self)
            stack.write_back()
        return [s.result for s in self.slots]  # type: ignore[misc]


class _Stack:
    """The stacked parameters, buffers and optimizer states of the active members."""

    def __init__(self, trainer: Trainer, slots: list[_Slot], plan: list[tuple[str, Any]] | None) -> None:
        self.trainer, self.slots, self.plan = trainer, slots, plan
        runs = [s.run for s in slots]
        self.names = [n for n, _ in runs[0].model.named_parameters()]
        self.buffer_names = [n for n, _ in runs[0].model.named_buffers()]
        per_run = [dict(r.model.named_parameters()) for r in runs]
        self.params = [torch.stack([p[n].detach() for p in per_run]).requires_grad_(True) for n in self.names]
        buffers = [dict(r.model.named_buffers()) for r in runs]
        self.buffers = [torch.stack([b[n] for b in buffers]) for n in self.buffer_names]
        families: dict[str, list[int]] = {}
        for row, s in enumerate(slots):
            families.setdefault(family_of(s.run.config), []).append(row)
        self.optimizers = []
        for family, rows in families.items():
            opt = StackedOptimizer(family, [slots[r].run.config for r in rows], self.params, rows)
            for j, r in enumerate(rows):
                opt.load(j, slots[r].run.optimizer, slots[r].run.step)
            self.optimizers.append(opt)
        self.base_lr = [float(s.run.optimizer.param_groups[0]["initial_lr"]) for s in slots]
        self.multiplier = [s.run.scheduler.lr_lambdas[0] for s in slots]
        self.grad_evals = [s.run.spec.grad_evals for s in slots]
        self.model = runs[0].model
        if plan is None:
            from torch.func import functional_call, vmap

            def call(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
                return functional_call(self.model, params, (x,))

            self._train_fn = vmap(call, in_dims=(0, 0), randomness="different")
            self._eval_fn = vmap(call, in_dims=(0, None), randomness="different")

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, *, shared: bool, training: bool) -> torch.Tensor:
        """Outputs `(K, B, ...)` for inputs `(K, B, ...)`, or for one batch `(B, ...)` every member sees."""
        if self.plan is None:
            self.model.train(training)
            tensors = {**dict(zip(self.names, self.params, strict=True)),
                       **dict(zip(self.buffer_names, self.buffers, strict=True))}
            return (self._eval_fn if shared else self._train_fn)(tensors, x)
        h = x
        for kind, detail in self.plan:
            if kind == "flatten":
                h = h.flatten(1 if shared else 2)
            elif kind == "linear":
                w, b = self.params[detail[0]], None if detail[1] is None else self.params[detail[1]]
                if shared:
                    h = torch.matmul(h, w.transpose(1, 2))
                    h = h if b is None else h + b.unsqueeze(1)
                    shared = False
                elif b is None:
                    h = torch.bmm(h, w.transpose(1, 2))
                else:
                    h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            elif kind == "act":
                h = detail(h)
            elif training and detail > 0:
                h = F.dropout(h, detail, training=True)
        return h if not shared else h.unsqueeze(0).expand(len(self.slots), *h.shape)

    def member_losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean training loss of each member `(K,)` for outputs `(K, B, ...)` and targets `(K, B, ...)`."""
        workload = self.trainer.workload
        k, b = y.shape[0], y.shape[1]
        if workload.task == "classification":
            return F.cross_entropy(out.reshape(k * b, -1), y.reshape(k * b), reduction="none").view(k, b).mean(1)
        err = F.mse_loss(out.reshape(y.shape), y, reduction="none").reshape(k, b, -1).mean(2)
        return err.mean(1)

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
            for i in range(k):
                loss_sum[i] += workload.loss(out[i], y, reduction="sum").float()
                metric_sum[i] += workload.metric_sum(out[i], y).float()
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
        return torch.tensor(rows, dtype=torch.float64).t().to(self.params[0].dtype).to(self.params[0].device)

    def train_until_change(self, run: _Run) -> None:
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
            losses, sizes = [], []
            for j in range(steps):
                idx = perms_t[:, j * bs:(j + 1) * bs]
                xb, yb = train.x[idx], train.y[idx]
                with trainer.autocast():
                    out = self.forward(xb, shared=False, training=True)
                    loss = self.member_losses(out.float(), yb)
                loss.sum().backward()
                for opt in self.optimizers:
                    opt.step(lrs[j] if opt.everyone else lrs[j].index_select(0, opt.index))
                for p in self.params:
                    p.grad = None
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
        own = dict(run.model.named_parameters())
        for name, p in zip(self.names, self.params, strict=True):
            own[name].copy_(p[i])
        own_buffers = dict(run.model.named_buffers())
        for name, b in zip(self.buffer_names, self.buffers, strict=True):
            own_buffers[name].copy_(b[i])
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
    test_metric = None
    if status == "complete" and trainer.split("test") is not None:
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


__all__ = ["Member", "MemberReport", "Population", "architecture", "why_not_vectorised"]
