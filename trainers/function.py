"""`Function`: your own training loop, tuned, paused, resumed and recovered like the shared trainer's.

    def train(config, run):                          # a language model, a contrastive loss, distillation, ...
        model = build_my_model(config)
        optimizer = spaces.build_optimizer(config, model)
        state = run.load()                           # None on a fresh run
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        for epoch in range(run.start_epoch + 1, run.until_epoch + 1):
            train_one_epoch(model, optimizer, seed=run.seed + epoch)
            decision = run.report(val_loss=validate(model), train_loss=..., grad_evals=steps)
            run.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()})
            if decision != "continue":
                return

    trainer = trainers.Function(train, epochs=20, metric="val_loss", direction="minimize")

The contract is Ray Tune's function trainables' and Syne Tune's `Reporter`'s: `run.report`
once per epoch returns "continue", "stop" (the strategy prunes the trial) or "pause" (a
multi-fidelity strategy will continue it later, or Ctrl-C): save and return. `run.save(state)`
writes a checkpoint (atomically, where tunelab keeps checkpoints; tensors and plain values, read
back with `weights_only=True`); a resumed trial, a retried one (`max_retries`) and one whose
worker was killed continue from the last `run.save`, with `run.start_epoch` epochs done and
the random state the run had then (restored by `run.load()`). Everything that pauses and continues trials works on it:
FreezeThaw, Hyperband, ASHA, `max_retries`, Ctrl-C, SIGKILL recovery.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from tunelab.spaces.errors import CheckpointError, ConfigError
from tunelab.trainers.checkpoint import load_checkpoint, run_rng, save_checkpoint
from tunelab.trainers.evaluation import resolve_device
from tunelab.trainers.run import DECISIONS, Decision, EpochResult, TrainResult
from tunelab.trainers.usercode import UserCode, check_objective, check_state, function_name, number, reference

RESERVED = ("train_loss", "val_loss", "lr", "grad_evals")  # what `run.report` maps onto an epoch's own fields


class RunStopped(ConfigError):
    """`run.report` was called after tunelab answered "stop" or "pause" (the loop must return then)."""


class Run:
    """What `fn(config, run)` gets: the run's seed, device and epochs, and the way to report and save.

    Attributes:
        seed: The run's seed (a trial's own; reruns on fresh seeds set it).
        device: Where to train (`torch.device`; the study's, "auto" resolved on the worker).
        start_epoch: Epochs already done (0 on a fresh run; the saved epoch when continued).
        until_epoch: Train until this epoch, then report it and expect "pause" (or the end).
        epochs: A full run's length.
    """

    def __init__(self, *, seed: int, device: torch.device, start_epoch: int, until_epoch: int, epochs: int,
                 metric: str, history: list[EpochResult], state: Any, path: Path | None,
                 report: Callable[[EpochResult], Decision | None] | None, config: dict[str, Any],
                 rng: Mapping[str, torch.Tensor] | None = None, write_every: float | None = None,
                 keep_final: Callable[[EpochResult], bool] | None = None) -> None:
        self.seed, self.device, self.epochs = seed, device, epochs
        self.start_epoch, self.until_epoch = start_epoch, until_epoch
        self.history = list(history)
        self._metric, self._state, self._path, self._report, self._config = metric, state, path, report, config
        self._rng = rng
        self._write_every, self._written = write_every, time.monotonic()
        self._keep_final = keep_final
        self._last = time.perf_counter()
        self._grad_evals = history[-1].grad_evals if history else 0
        self.decision: str = "continue"
        self.saved_epoch = start_epoch if state is not None else -1
        self.diverged: str | None = None

    @property
    def epoch(self) -> int:
        """Epochs reported so far (the saved ones included)."""
        return len(self.history)

    def report(self, **metrics: Any) -> str:
        """Report one epoch: `metric` (the study's objective) and any other named values.

        `train_loss`, `val_loss`, `lr` and `grad_evals` (gradient evaluations of this epoch: a
        budget in `grad_evals` counts what is reported) go to the epoch's own fields; every other
        name is recorded as a metric of the trial.

        Returns:
            "continue", "stop" (return; the trial is pruned) or "pause" (save with `run.save`,
            then return; the trial continues later from there).

        Raises:
            RunStopped: Called after tunelab answered "stop" or "pause".
            ConfigError: The objective is missing, or a value is not a number.
        """
        if self.decision != "continue":
            answered = "stop" if self.decision == "done" else self.decision
            raise RunStopped(f"run.report was called after tunelab answered {answered!r}; the loop must return "
                             f"when report gives 'stop' or 'pause' (after run.save(...) for a pause)")
        if self._metric not in metrics:
            raise ConfigError(f"run.report({', '.join(sorted(metrics))}) has no {self._metric!r}, the metric the "
                              f"study optimises; report it every epoch")
        what = "run.report"
        values = {k: number(v, k, what) for k, v in metrics.items()}
        now = time.perf_counter()
        self._grad_evals += int(values.get("grad_evals", 0))
        extra = {k: v for k, v in values.items() if k not in (*RESERVED, self._metric)}
        result = EpochResult(self.epoch + 1, values.get("train_loss", math.nan), values.get("val_loss", math.nan),
                             values[self._metric], values.get("lr", math.nan), now - self._last, self._grad_evals,
                             extra)
        self._last = now
        self.history.append(result)
        decision = self._report(result) if self._report is not None else None
        decision = "continue" if decision is None else decision
        if decision not in DECISIONS:
            raise ValueError(f"report returned {decision!r}; it must return one of {DECISIONS} (or None)")
        if not math.isfinite(result.val_metric):
            self.diverged = f"the objective {self._metric!r} was {result.val_metric}"
            decision = "stop"
        elif decision == "continue" and result.epoch >= self.until_epoch:
            decision = "pause" if result.epoch < self.epochs else "stop"
        self.decision = decision if result.epoch < self.epochs or decision != "stop" else "done"
        return "stop" if self.decision == "done" else decision

    def save(self, state: Mapping[str, Any]) -> None:
        """Keep `state` (tensors and plain values: state dicts, counters) as the run's checkpoint at this epoch.

        The checkpoint file is written when the run pauses or ends, and while it continues at
        most every `checkpoint_seconds` of `Function.fit` (a study's `optimize(checkpoint_seconds=)`,
        30 s by default; every call when None), so a crash loses at most that much training.

        Raises:
            CheckpointError: `state` holds something a `weights_only` checkpoint cannot (the
                message names the key and its type), or the file cannot be written.
        """
        if not isinstance(state, Mapping):
            raise CheckpointError(f"run.save takes a dict of tensors and plain values, got {type(state).__name__}")
        check_state(state)
        self._state = dict(state)
        self.saved_epoch = self.epoch
        due = (self._write_every is None or self.decision != "continue" or self.epoch >= self.until_epoch
               or time.monotonic() - self._written >= self._write_every)
        ends = self.decision in ("stop", "done")
        if ends and self._keep_final is not None and self.history and not self._keep_final(self.history[-1]):
            if self._path is not None:  # the run ended and its weights will not be kept: no file, not even an old one
                self._path.unlink(missing_ok=True)
            return
        if self._path is not None and due:
            rng = {"cpu": torch.get_rng_state()}
            if self.device.type == "cuda":
                rng["cuda"] = torch.cuda.get_rng_state(self.device)
            save_checkpoint(self._path, {"config": self._config, "seed": self.seed, "epoch": self.epoch,
                                         "history": [asdict(e) for e in self.history], "state": self._state,
                                         "rng": rng, "function": True})
            self._written = time.monotonic()

    def load(self) -> dict[str, Any] | None:
        """The state of the last `run.save` this run continues from (None on a fresh run).

        The first call also restores torch's random state as it was at that save (dropout,
        `torch.randperm` without a generator), so call it after building the model and before
        training: the run then continues exactly as an uninterrupted one.
        """
        rng, self._rng = self._rng, None
        if rng is not None:
            torch.set_rng_state(rng["cpu"])
            if self.device.type == "cuda" and "cuda" in rng:
                torch.cuda.set_rng_state(rng["cuda"], self.device)
        return self._state


class Function(UserCode):
    """Your own iterative training code `fn(config, run)` as a `trainers.Trainable`.

    Args:
        fn: The training loop (see the module docstring); importable by name (defined at the top
            level of a module or of the script that runs the study), so that workers and a
            reopened study find it.
        epochs: A full run's length (the epochs `fn` reports when it is never paused).
        metric: The name of the reported value the study optimises.
        direction: "minimize" or "maximize".
        seed: The default seed of runs (`run.seed`).
        device: Where runs train: "auto" (CUDA when present), "cpu", "cuda", ...
        name: The workload's name in listings (default: the function's name).
        steps_per_epoch: Optimizer steps of one epoch, if known (comparisons report costs per step).

    Raises:
        ConfigError: `fn` is not a named top-level function, or a bad epochs, metric or direction.
    """

    def __init__(self, fn: Callable[..., Any], *, epochs: int, metric: str, direction: str, seed: int = 0,
                 device: str | torch.device = "auto", name: str | None = None, steps_per_epoch: int = 1) -> None:
        self.path = reference(fn, "trainers.Function")
        check_objective(metric, direction, "trainers.Function")
        for key, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"trainers.Function({key}=...) must be a positive int, got {value!r}")
        self.fn, self.epochs, self._metric, self._direction = fn, epochs, metric, direction
        self.seed, self._name, self._steps = int(seed), name or function_name(fn, "function"), steps_per_epoch
        self._device_arg = device
        self.device = resolve_device(device)

    def __repr__(self) -> str:
        return f"Function({self.path}, epochs={self.epochs}, metric={self._metric!r}, direction={self._direction!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["device"] = None  # resolved again where it trains ("auto" means that machine's)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.device = resolve_device(self._device_arg)

    # ------------------------------------------------------------------ `Trainable`
    def spec(self) -> dict[str, Any]:
        """What a study stores: the function's import path, its epochs, metric, direction and seed."""
        return {"function": self.path, "workload": {"name": self._name, "function": self.path, **self._bound()},
                "workload_name": self._name, "metric": self._metric, "direction": self._direction,
                "epochs": self.epochs, "seed": self.seed}

    def derive(self, *, epochs: int | None = None, seed: int | None = None) -> Function:
        """The same function with another run length or seed."""
        return Function(self.fn, epochs=self.epochs if epochs is None else epochs, metric=self._metric,
                        direction=self._direction, seed=self.seed if seed is None else seed,
                        device=self._device_arg, name=self._name, steps_per_epoch=self._steps)

    def check(self, space: Any) -> None:
        """Check the optimizer and schedule ranges of a space that has them (`fn` builds them with `spaces`)."""
        if "optimizer" in getattr(space, "names", ()):
            from tunelab.trainers.checks import check_trains

            check_trains(space)

    def planned_grad_evals(self, config: Mapping[str, Any], epochs: int) -> int | None:
        """None: gradient evaluations are counted when `fn` reports them (a budget plans at their mean rate)."""
        return None

    def steps_per_epoch(self, batch_size: int) -> int:
        """Optimizer steps of one epoch (as given; 1 when unknown)."""
        return self._steps

    def fit(self, config: Mapping[str, Any], *, until_epoch: int | None = None, checkpoint: Any = None,
            report: Callable[[EpochResult], Decision | None] | None = None, seed: int | None = None,
            checkpoint_seconds: float | None = None,
            keep_final: Callable[[EpochResult], bool] | None = None) -> TrainResult:
        """Run (or continue, from the checkpoint of its last `run.save`) `fn(config, run)`.

        Args:
            config: The configuration `fn` trains.
            until_epoch: Report "pause" after this epoch (None: the full `epochs`).
            checkpoint: The checkpoint file (None: `run.save` keeps the state in memory only).
            report: Called with each reported epoch; returns "continue", "stop" or "pause".
            seed: The run's seed (default: the function's).
            checkpoint_seconds: Write the checkpoint at most this often while the run continues
                (it is always written when the run pauses or ends); None writes on every `run.save`.
            keep_final: Whether a run that ends (its last epoch, or "stop") writes its final
                checkpoint, given that epoch (None: always; an earlier file is removed when not).

        Raises:
            ConfigError: `until_epoch` < 1, or `fn` misused `run` (named in the message).
            CheckpointError: The checkpoint belongs to another configuration or seed.
        """
        config = dict(config)
        seed = self.seed if seed is None else int(seed)
        until = self.epochs if until_epoch is None else min(int(until_epoch), self.epochs)
        if until < 1:
            raise ConfigError(f"until_epoch must be >= 1, got {until_epoch!r}")
        path = Path(checkpoint) if checkpoint is not None else None
        saved = self._saved(path, config, seed)
        history = [EpochResult(**e) for e in saved["history"]] if saved else []
        run = Run(seed=seed, device=self.device, start_epoch=len(history), until_epoch=until, epochs=self.epochs,
                  metric=self._metric, history=history, state=saved["state"] if saved else None, path=path,
                  report=report, config=config, rng=saved.get("rng") if saved else None,
                  write_every=checkpoint_seconds, keep_final=keep_final)
        with run_rng(self.device, seed):  # the caller's random state is left as it was
            self.fn(config, run)
        return self._result(run, path)

    def _saved(self, path: Path | None, config: dict[str, Any], seed: int) -> dict[str, Any] | None:
        if path is None or not path.exists():
            return None
        saved = load_checkpoint(path)
        if not saved.get("function") or saved.get("config") != config or saved.get("seed") != seed:
            raise CheckpointError(f"checkpoint {path} belongs to another run (not this function's config and seed); "
                                  f"delete it to start the run over")
        return saved

    def _result(self, run: Run, path: Path | None) -> TrainResult:
        history = run.history
        if not history:
            raise ConfigError(f"{self.path} returned without reporting an epoch; call run.report({self._metric}=...) "
                              f"once per epoch")
        last = history[-1]
        error = None
        if run.diverged is not None:
            status = "diverged"
        elif run.decision == "stop":
            status = "stopped"
        elif run.decision == "pause" or (run.decision == "continue" and last.epoch < self.epochs
                                          and last.epoch >= run.until_epoch):
            status = "paused"
            if run.saved_epoch != last.epoch:
                error = (f"{self.path} returned after a pause at epoch {last.epoch} without run.save(...) of that "
                         f"epoch, so the run cannot continue; save the model and optimizer state before returning")
        else:
            status = "complete"  # every epoch, or the loop ended early on its own
        if status in ("complete", "stopped") and run.saved_epoch != last.epoch and path is not None:
            path.unlink(missing_ok=True)  # an earlier epoch's file must not pass for the finished run's state
        finite = [e.val_metric for e in history if math.isfinite(e.val_metric)]
        sign = 1.0 if self._direction == "minimize" else -1.0
        return TrainResult(
            status=status, epochs=list(history), val_metric=last.val_metric,
            best_val_metric=min(finite, key=lambda v: sign * v) if finite else None, test_metric=None,
            checkpoint=str(path) if path is not None and path.exists() else None, seed=run.seed,
            checkpoint_error=error, reason=run.diverged)


__all__ = ["Function", "Run", "RunStopped"]
