"""`Trainer`: trains one configuration on a workload, epoch by epoch.

The loop is small and composed of public pieces the gradient-based strategies reuse
(`trainers.batches`, `trainers.evaluate`, `trainers.make_step`, `spaces.build_*`,
`trainers.save_checkpoint` / `load_checkpoint`):

- data lives on the device and is batched by permutation; losses and metrics accumulate on the
  device and are read once per epoch (no host sync per step);
- `report(EpochResult)` after every epoch decides "continue", "stop" (prune) or "pause"
  (checkpoint and return, to be continued by a later `fit` with the same checkpoint);
- the learning rate is a pure function of the step over the whole planned run, so a run
  trained in increments (`until_epoch`) equals one trained in one go; on the CPU, bit for bit;
- a non-finite training loss ends the run with status "diverged" (a result, not an exception);
- every run owns its randomness: the global torch RNG is forked for the run and seeded from
  the run's seed, so nothing outside the run sees or disturbs it.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunelab.spaces import build_model, build_optimizer, build_schedule, model_size, optimizer_spec
from tunelab.spaces.errors import CheckpointError, ConfigError
from tunelab.trainers.checkpoint import capture_rng, load_checkpoint, restore_rng, run_rng, save_checkpoint
from tunelab.trainers.checks import check_fits, check_trains
from tunelab.trainers.data import batches, to_device
from tunelab.trainers.evaluation import EVAL_BATCH, evaluate, evaluate_all, resolve_device, resolve_precision
from tunelab.trainers.run import Decision, EpochResult, RunControl, Status, TrainResult, best_metric
from tunelab.trainers.steps import make_step
from tunelab.trainers.workload import Split, TensorSplit, Workload


class Trainer:
    """Trains configurations on one workload.

    Size: about 300 lines: `fit` and the pieces the other loops reuse (batches, evaluation,
    checkpoint save and restore, devices, precision, model sizes).

    Args:
        workload: The data, loss and metric.
        epochs: Length of a full run (default: the workload's `max_epochs`).
        batch_size: Examples per step (default: the workload's); a config's `batch_size` wins.
        device: "auto" (CUDA when present), "cpu", "cuda", "cuda:1", ...
        precision: "auto" (bf16 autocast on CUDA, fp32 on CPU), "fp32" or "bf16".
        seed: Default seed of runs (model initialisation, data order, dropout, probes).
        compile: Wrap the model in `torch.compile` for training (worth it on CUDA).
        checkpoint_every: When `fit` has a checkpoint path, also write it every this many epochs
            (besides on pause and at the end), so a killed run loses at most that many epochs.

    Raises:
        ConfigError: Bad epochs, batch size, device or precision.
    """

    def __init__(
        self,
        workload: Workload,
        *,
        epochs: int | None = None,
        batch_size: int | None = None,
        device: str | torch.device = "auto",
        precision: str = "auto",
        seed: int = 0,
        compile: bool = False,
        checkpoint_every: int = 1,
    ) -> None:
        if not isinstance(workload, Workload):
            raise ConfigError(f"Trainer needs a trainers.Workload, got {type(workload).__name__}")
        epochs = workload.max_epochs if epochs is None else epochs
        if not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"epochs must be a positive int, got {epochs!r}")
        batch_size = workload.batch_size if batch_size is None else batch_size
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be a positive int, got {checkpoint_every!r}")
        self.workload = workload
        self.epochs = epochs
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        # "auto" means the device of the process that trains: a Ray worker with a GPU resolves it again
        self._auto = (isinstance(device, str) and device == "auto", precision == "auto")
        self.seed = int(seed)
        self.compile = bool(compile)
        self.checkpoint_every = checkpoint_every
        self._splits: dict[str, Split | None] | None = None

    trains_models = True  # `Trainable`: it builds and trains tunelab's models (DARTS, STN, sizes, latency)

    # ------------------------------------------------------------------ `Trainable`
    @property
    def name(self) -> str:
        """The workload's name."""
        return self.workload.name

    @property
    def metric(self) -> str:
        """The objective's name: the workload's validation metric."""
        return self.workload.metric

    @property
    def direction(self) -> str:
        """"minimize" or "maximize" (the workload metric's)."""
        return self.workload.direction

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """One example's shape."""
        return self.workload.input_shape

    @property
    def n_outputs(self) -> int | None:
        """The network's outputs."""
        return self.workload.n_outputs

    @property
    def vectorises(self) -> bool:
        """Whether trials can train as one vectorised population: in-memory data and the task's own loss."""
        return isinstance(self.workload.train, TensorSplit) and self.workload.standard

    def check(self, space: Any) -> None:
        """Build a few models, optimizers and schedules of `space` for this workload (`trainers.checks`).

        Raises:
            ConfigError: The workload cannot build a model of the space, or a range cannot train.
        """
        check_fits(space, self.workload)
        check_trains(space)

    def planned_grad_evals(self, config: Mapping[str, Any], epochs: int) -> int:
        """Gradient evaluations of `epochs` epochs of `config` (steps x the optimizer's cost per step)."""
        steps = self.steps_per_epoch(int(config.get("batch_size", self.batch_size)))
        return epochs * steps * optimizer_spec(config).grad_evals

    def __getstate__(self) -> dict[str, Any]:
        # Process-pool workers receive trainers by pickling: send the data once, not its device copies.
        state = self.__dict__.copy()
        state["_splits"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        auto_device, auto_precision = state.get("_auto", (False, False))
        if auto_device:
            self.device = resolve_device("auto")
        if auto_precision:
            self.precision = resolve_precision("auto", self.device)

    # ------------------------------------------------------------------ pieces
    def split(self, name: str) -> Split | None:
        """The split `"train"`, `"val"` or `"test"`, on this trainer's device (moved once)."""
        if self._splits is None:
            w = self.workload
            self._splits = {
                n: to_device(s, self.device) for n, s in (("train", w.train), ("val", w.val), ("test", w.test))
            }
        return self._splits[name]

    def batches(self, name: str, *, batch_size: int | None = None, generator: torch.Generator | None = None):
        """Device-ready batches of a split; shuffled when a generator is given (training)."""
        bs = batch_size or (self.batch_size if generator is not None else max(self.batch_size, EVAL_BATCH))
        return batches(self.split(name), bs, shuffle=generator is not None, generator=generator, device=self.device)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The mixed-precision context of this trainer (a no-op in fp32)."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def evaluate(self, model: nn.Module, split: str = "val") -> tuple[float, float]:
        """`(loss, metric)` of `model` on a split of this trainer's workload."""
        data = self.split(split)
        if data is None:
            raise ConfigError(f"the workload {self.workload.name!r} has no {split} split")
        return evaluate(model, self.batches(split), self.workload, self.autocast)

    def generator(self, seed: int) -> torch.Generator:
        """A data-order generator for a run, on the device where permutations are drawn."""
        on_device = self.device.type == "cuda" and isinstance(self.workload.train, TensorSplit)
        dev = self.device if on_device else torch.device("cpu")  # DataLoader samplers need a CPU generator
        return torch.Generator(device=dev).manual_seed(int(seed))

    def steps_per_epoch(self, batch_size: int) -> int:
        """Optimizer steps in one epoch."""
        return math.ceil(len(self.workload.train) / batch_size)

    def build(self, config: Mapping[str, Any], total_steps: int) -> tuple[nn.Module, Any, Any]:
        """Model (on the device), optimizer and schedule of a config; call inside the run's RNG scope."""
        model = build_model(config, self.workload.input_shape, self.workload.n_outputs).to(self.device)
        optimizer = build_optimizer(config, model)
        scheduler = build_schedule(config, optimizer, total_steps)
        return model, optimizer, scheduler

    def size(self, config: Mapping[str, Any]) -> dict[str, int]:
        """`{"n_params": ..., "flops": ...}` of the network `config` builds ({} if it cannot be measured)."""
        w = self.workload
        try:
            size = model_size(config, w.input_shape, w.n_outputs)
        except Exception:  # a size is extra information; the trial itself reports a bad model
            return {}
        return {"n_params": size.params, "flops": size.flops}

    def latency_ms(self, config: Mapping[str, Any]) -> float:
        """Inference latency of `config`'s network on this trainer's device, in milliseconds.

        The median of repeated forward passes of a batch of `trainers.latency.LATENCY_BATCH`
        examples after warm-up, synchronised on a GPU (`trainers.latency.forward_latency_ms`),
        timed once per network and process. A study with `latency_ms` among its objectives
        records it with every trial.
        """
        from tunelab.trainers.latency import LATENCIES

        w = self.workload
        return LATENCIES.get(config, w.input_shape, w.n_outputs, self.device)

    def derive(self, *, epochs: int | None = None, seed: int | None = None) -> Trainer:
        """This trainer with another run length or seed (everything else the same)."""
        return Trainer(self.workload, epochs=self.epochs if epochs is None else epochs, batch_size=self.batch_size,
                       device=self.device, precision=self.precision, seed=self.seed if seed is None else seed,
                       compile=self.compile, checkpoint_every=self.checkpoint_every)

    def spec(self) -> dict[str, Any]:
        """A JSON-ready description (stored with studies so they can be rebuilt)."""
        return {
            "workload": self.workload.recipe or {"name": self.workload.name},
            "workload_name": self.workload.name,
            "metric": self.workload.metric,
            "data": self.workload.fingerprint(),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "precision": self.precision,
            "seed": self.seed,
            "compile": self.compile,
        }

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        config: Mapping[str, Any],
        *,
        until_epoch: int | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        report: Callable[[EpochResult], Decision | None] | None = None,
        seed: int | None = None,
        checkpoint_seconds: float | None = None,
        before_epoch: Callable[[nn.Module, int], None] | None = None,
        keep_final: Callable[[EpochResult], bool] | None = None,
    ) -> TrainResult:
        """Train one configuration.

        Args:
            config: A configuration (`model.*`, `optimizer` + its family's entries, `schedule` +
                its entries, optionally `batch_size`). Missing parts default to an MLP, AdamW
                and a constant learning rate.
            until_epoch: Stop after this epoch (of `epochs`) with status "paused"; a later `fit`
                with the same `checkpoint` continues the same run.
            checkpoint: File of this run's checkpoint. If it exists, the run continues from it;
                it is written on pause, at the end and every `checkpoint_every` epochs.
            report: Called after every epoch; returns "continue" (or None), "stop" or "pause".
            seed: The run's seed (default: the trainer's).
            checkpoint_seconds: If given, periodic checkpoints are written when this many seconds
                of training have passed since the last one, instead of every `checkpoint_every`
                epochs (studies use this: per-epoch saves cost ~9% of a short MLP epoch).
            before_epoch: Called as `before_epoch(model, epoch)` before each epoch trains (epoch
                1-based), to set what a schedule of hyperparameters says for it (the replay of an
                STN schedule sets the regularisers this way). It must be a pure function of the
                epoch, so a resumed run is the same run.
            keep_final: Called with the last epoch of a run that ends (its full length, or a
                "stop"): whether to write its final checkpoint (None: always). A study passes
                its `keep_checkpoints` policy here, so a trial's final weights are written only
                when they will be kept.

        Returns:
            A `TrainResult`.

        Raises:
            ConfigError: The config cannot be built for this workload.
            CheckpointError: The checkpoint belongs to another config or seed.
            ValueError: `report` returned something other than continue / stop / pause.
        """
        config = dict(config)
        seed = self.seed if seed is None else int(seed)
        until = self.epochs if until_epoch is None else int(until_epoch)
        if until < 1:
            raise ConfigError(f"until_epoch must be >= 1, got {until_epoch!r}")
        until = min(until, self.epochs)
        batch_size = int(config.get("batch_size", self.batch_size))
        total_steps = self.epochs * self.steps_per_epoch(batch_size)
        spec = optimizer_spec(config)
        path = Path(checkpoint) if checkpoint is not None else None
        with run_rng(self.device, seed):
            model, optimizer, scheduler = self.build(config, total_steps)
            run = RunState(config, seed, model, optimizer, scheduler, spec, self.generator(seed))
            if path is not None and path.exists():
                self.restore(run, path)
            return self._train(run, until, batch_size, path, report, checkpoint_seconds, before_epoch, keep_final)

    def restore(self, run: RunState, path: Path) -> None:
        """Load `run`'s state from its checkpoint at `path` (its config and seed must match).

        Raises:
            CheckpointError: The file belongs to another run, or cannot be read.
        """
        state = load_checkpoint(path)
        if state.get("config") != run.config or state.get("seed") != run.seed:
            raise CheckpointError(
                f"checkpoint {path} belongs to another run (config or seed differ); "
                f"use a new path for this configuration or delete the file"
            )
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        if hasattr(run.optimizer, "update_rho_t"):  # GSAM: rho follows the restored learning rate
            run.optimizer.update_rho_t()
        restore_rng(state["rng"], self.device, run.generator)
        run.epoch, run.step, run.grad_evals = state["epoch"], state["step"], state["grad_evals"]
        run.history = [EpochResult(**e) for e in state["history"]]

    def save(self, run: RunState, path: Path) -> None:
        """Write `run`'s checkpoint to `path` (atomically)."""
        save_checkpoint(
            path,
            {
                "config": run.config,
                "seed": run.seed,
                "epoch": run.epoch,
                "step": run.step,
                "grad_evals": run.grad_evals,
                "model": run.model.state_dict(),
                "optimizer": run.optimizer.state_dict(),
                "scheduler": run.scheduler.state_dict(),
                "rng": capture_rng(self.device, run.generator),
                "history": [asdict(e) for e in run.history],
            },
        )

    def _train(
        self,
        run: RunState,
        until: int,
        batch_size: int,
        path: Path | None,
        report: Callable[[EpochResult], Decision | None] | None,
        checkpoint_seconds: float | None = None,
        before_epoch: Callable[[nn.Module, int], None] | None = None,
        keep_final: Callable[[EpochResult], bool] | None = None,
    ) -> TrainResult:
        workload, model, optimizer, scheduler = self.workload, run.model, run.optimizer, run.scheduler
        train_model = torch.compile(model) if self.compile else model
        autocast = self.autocast
        step_fn = make_step(run.spec.style, train_model, optimizer, workload.loss, autocast)
        step_schedule = not scheduler.lr_lambdas[0].constant
        after_schedule = getattr(optimizer, "update_rho_t", None) if step_schedule else None
        train = self.split("train")
        status: Status | None = None
        control = RunControl(path, until, report, checkpoint_seconds, self.checkpoint_every, final=self.epochs,
                             keep_final=keep_final)
        while run.epoch < until:
            t0 = time.perf_counter()
            run.epoch += 1
            if before_epoch is not None:
                before_epoch(model, run.epoch)
            model.train()
            losses, sizes = [], []  # kept on the device; reduced once per epoch
            for x, y in batches(train, batch_size, shuffle=True, generator=run.generator, device=self.device):
                losses.append(step_fn(x, y))
                sizes.append(y.shape[0])
                if step_schedule:
                    scheduler.step()
                    if after_schedule is not None:
                        after_schedule()
            run.step += len(losses)
            run.grad_evals += len(losses) * run.spec.grad_evals
            weights = torch.tensor(sizes, dtype=torch.float32, device=self.device)
            train_loss = torch.dot(torch.stack(losses).float(), weights).item() / len(train)
            lr = float(optimizer.param_groups[0]["lr"])
            if not math.isfinite(train_loss):
                seconds = time.perf_counter() - t0
                run.history.append(EpochResult(run.epoch, train_loss, math.nan, math.nan, lr, seconds, run.grad_evals))
                status = "diverged"
                break
            val_loss, measured = evaluate_all(model, self.batches("val"), workload, autocast)
            val_metric = measured.get(workload.metric, val_loss if workload.metric == "loss" else math.nan)
            extra = {k: v for k, v in measured.items() if k not in (workload.metric, "loss")}
            result = EpochResult(
                run.epoch, train_loss, val_loss, val_metric, lr, time.perf_counter() - t0, run.grad_evals, extra
            )
            run.history.append(result)
            status = control.after_epoch(result, lambda p: self.save(run, p))
            if status is not None:
                break
        if status is None:
            status = "complete" if run.epoch >= self.epochs else "paused"
        checkpoint_file = control.settle(status)
        test_metric = None
        if status == "complete" and self.split("test") is not None:
            test_metric = evaluate(model, self.batches("test"), workload, autocast)[1]
        return TrainResult(
            status=status,
            epochs=list(run.history),
            val_metric=run.history[-1].val_metric if run.history else None,
            best_val_metric=best_metric(run.history, workload),
            test_metric=test_metric,
            checkpoint=checkpoint_file,
            seed=run.seed,
            checkpoint_error=control.save_error,
        )


@dataclass
class RunState:
    """Everything one run carries between epochs (and into its checkpoint)."""

    config: dict[str, Any]
    seed: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    spec: Any
    generator: torch.Generator
    epoch: int = 0
    step: int = 0
    grad_evals: int = 0
    history: list[EpochResult] = field(default_factory=list)


__all__ = ["RunState", "Trainer"]
