"""`Workload`: the data, loss and metric a configuration is trained and judged on.

A workload has train / val / test splits, a task ("classification": cross-entropy loss and
accuracy, maximised; "regression": mean squared error, minimised), the shape of one example
(`input_shape`, no batch axis), `n_outputs`, a default `batch_size` and `max_epochs`.
Selection always uses the validation split; test is reported, never selected on.

Splits that fit in memory are `TensorSplit`s: the trainer moves them to the device once and
batches them by index permutation. Other `torch.utils.data.Dataset`s are read through a
`DataLoader`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from tunelab.spaces.errors import WorkloadError
from tunelab.trainers.tensors import Split, TensorSplit, check_labels, tensor_split

TASKS = ("classification", "regression")


TASK_HOOKS = ("loss", "metrics", "objective", "direction")


def task_hooks(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The `Workload` task hooks among a constructor's extra keywords (anything else is refused, named)."""
    unknown = sorted(set(kwargs) - set(TASK_HOOKS))
    if unknown:
        raise WorkloadError(f"unexpected keyword arguments {unknown}; a workload's own task takes {list(TASK_HOOKS)}")
    return dict(kwargs)


def varies(dataset: Any) -> bool:
    """Whether reading the same item of `dataset` twice gives different data (random augmentation)."""
    a, b = dataset[0], dataset[0]
    return any(not torch.equal(torch.as_tensor(u), torch.as_tensor(v)) for u, v in zip(a, b, strict=False))


class TaskMetric:
    """The selection metric of a task ("classification" or "regression") and its direction.

    Shared by `Workload` and by a replayed trainer's `trainers.replay.ReplayWorkload`. A workload
    with its own metrics names its objective (`objective`, `objective_direction`) instead.
    """

    task: str
    objective: str | None = None
    objective_direction: str | None = None

    @property
    def metric(self) -> str:
        """Name of the selection metric: the workload's objective, else "accuracy" or "mse"."""
        if self.objective is not None:
            return self.objective
        return "accuracy" if self.task == "classification" else "mse"

    @property
    def direction(self) -> str:
        """Either "maximize" (accuracy) or "minimize" (mse), or the objective's own direction."""
        if self.objective_direction is not None:
            return self.objective_direction
        return "maximize" if self.task == "classification" else "minimize"

    def better(self, a: float, b: float) -> bool:
        """Whether metric value `a` is better than `b` in this workload's direction."""
        return a > b if self.direction == "maximize" else a < b


class Workload(TaskMetric):
    """Data, loss and metric of a training problem.

    Size: over 300 lines, most of them the checks of `from_tensors` and `from_datasets`, which
    turn a user's data into typed errors naming the fix.

    Args:
        name: A short name (stored with studies).
        train: Training split (`TensorSplit` or `Dataset` of `(x, y)` pairs).
        val: Validation split, used for selection.
        test: Test split, reported only; may be None.
        task: "classification" or "regression".
        input_shape: One example's shape; inferred from the data if None.
        n_outputs: Classes (classification) or targets (regression); inferred if None.
        batch_size: Default batch size of trainers on this workload.
        max_epochs: A full training run's length, for strategies that schedule fidelities.
        recipe: How to rebuild the workload elsewhere: `{"factory": "module:function", "kwargs": {...}}`.
        loss: The training loss, `loss(outputs, y) -> scalar tensor` (mean over the batch), instead
            of the task's (cross-entropy or mean squared error): a contrastive loss, label
            smoothing, a language model's token-level cross-entropy.
        metrics: Named validation metrics, `name -> metric(outputs, y) -> float`, computed on the
            whole split's outputs at once (so F1, AUROC or perplexity are exact), instead of the
            task's metric. Every one is recorded per epoch; `objective` names the one selected on.
        objective: The metric selected on: a key of `metrics`, or "loss" (the validation loss).
        direction: The objective's direction, "minimize" or "maximize" (required with `objective`).

    Raises:
        WorkloadError: Inconsistent splits, an unknown task, bad sizes, or an objective that is
            not one of the metrics (or has no direction).
    """

    def __init__(
        self,
        name: str,
        train: Split,
        val: Split,
        test: Split | None = None,
        *,
        task: str = "classification",
        input_shape: tuple[int, ...] | None = None,
        n_outputs: int | None = None,
        batch_size: int = 128,
        max_epochs: int = 30,
        recipe: Mapping[str, Any] | None = None,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        metrics: Mapping[str, Callable[[torch.Tensor, torch.Tensor], Any]] | None = None,
        objective: str | None = None,
        direction: str | None = None,
    ) -> None:
        self._set_task_hooks(loss, metrics, objective, direction)
        if task not in TASKS:
            raise WorkloadError(f"task must be one of {TASKS}, got {task!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise WorkloadError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(max_epochs, int) or max_epochs < 1:
            raise WorkloadError(f"max_epochs must be a positive int, got {max_epochs!r}")
        for split_name, split in (("train", train), ("val", val)):
            if split is None or len(split) == 0:
                raise WorkloadError(f"the {split_name} split is empty; a workload needs train and val examples")
        self.name = name
        self.train, self.val, self.test = train, val, test
        self.task = task
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.recipe = dict(recipe) if recipe is not None else None
        first_x = train.x[0] if isinstance(train, TensorSplit) else train[0][0]
        self.input_shape = tuple(int(s) for s in (input_shape or tuple(torch.as_tensor(first_x).shape)))
        if n_outputs is None:
            n_outputs = self._infer_outputs()
        if not isinstance(n_outputs, int) or n_outputs < 1:
            raise WorkloadError(f"n_outputs must be a positive int, got {n_outputs!r}")
        self.n_outputs = n_outputs
        self._fingerprint: dict[str, Any] | None = None

    def _set_task_hooks(self, loss: Any, metrics: Any, objective: str | None, direction: str | None) -> None:
        if loss is not None and not callable(loss):
            raise WorkloadError(f"loss must be a function loss(outputs, y) -> scalar tensor, got {loss!r}")
        if metrics is not None:
            if not isinstance(metrics, Mapping) or not metrics:
                raise WorkloadError(f"metrics must be a dict of name -> metric(outputs, y) -> float, got {metrics!r}")
            bad = [k for k, f in metrics.items() if not isinstance(k, str) or not callable(f) or k == "loss"]
            if bad:
                raise WorkloadError(f"metrics {bad} must map a name (not 'loss') to a function metric(outputs, y)")
        if (objective is None) != (direction is None):
            raise WorkloadError("give objective= and direction= together (e.g. objective='f1', direction='maximize')")
        if objective is not None:
            names = [*(metrics or {}), "loss"]
            if objective not in names:
                raise WorkloadError(f"objective={objective!r} is not one of the workload's metrics {names}; add it "
                                    f"to metrics= or select on one of them")
            if direction not in ("minimize", "maximize"):
                raise WorkloadError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
        elif metrics is not None:
            raise WorkloadError(f"a workload with its own metrics names its objective: objective=<one of "
                                f"{list(metrics)}> and its direction=")
        self.custom_loss = loss
        self.metrics = dict(metrics) if metrics is not None else None
        self.objective, self.objective_direction = objective, direction

    @property
    def standard(self) -> bool:
        """Whether it uses the task's own loss and metric (what populations vectorise and sums batch by batch)."""
        return self.custom_loss is None and self.metrics is None and self.objective is None

    def measure(self, outputs: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Every metric of outputs and targets of a whole split (a workload with its own `metrics`)."""
        out: dict[str, float] = {}
        for name, fn in (self.metrics or {}).items():
            value = fn(outputs, y)
            out[name] = float(value.item() if isinstance(value, torch.Tensor) else value)
        return out

    def fingerprint(self) -> dict[str, Any]:
        """Shapes, dtypes and a SHA-256 of the data: what tells two workloads of one name apart.

        Studies store it with their trainer, so reusing a study name with other data is a
        conflict instead of two datasets mixed in one study. Datasets that are not in memory are
        described by their lengths only.
        """
        if self._fingerprint is None:
            digest = hashlib.sha256()
            parts: dict[str, Any] = {}
            for split, data in (("train", self.train), ("val", self.val), ("test", self.test)):
                if data is None:
                    continue
                if isinstance(data, TensorSplit):
                    parts[split] = [list(data.x.shape), str(data.x.dtype), list(data.y.shape), str(data.y.dtype)]
                    for t in (data.x, data.y):
                        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
                else:
                    parts[split] = [len(data)]
            self._fingerprint = {**parts, "sha256": digest.hexdigest()[:32]}
        return dict(self._fingerprint)

    def _infer_outputs(self) -> int:
        splits = [s for s in (self.train, self.val, self.test) if s is not None]
        if not all(isinstance(s, TensorSplit) for s in splits):
            raise WorkloadError("pass n_outputs= for workloads built from Datasets (it cannot be read cheaply)")
        if self.task == "classification":
            return int(max(int(s.y.max()) for s in splits)) + 1
        y = self.train.y
        return 1 if y.ndim == 1 else int(math.prod(y.shape[1:]))

    # ------------------------------------------------------------------ task
    def loss(self, outputs: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Training loss: the workload's own, or cross-entropy on logits, or mean squared error."""
        if self.custom_loss is not None:
            mean = self.custom_loss(outputs, y)
            return mean if reduction == "mean" else mean * y.shape[0]
        if self.task == "classification":
            return F.cross_entropy(outputs, y, reduction=reduction)
        err = F.mse_loss(outputs.reshape(y.shape), y, reduction="none").reshape(y.shape[0], -1).mean(1)
        return err.mean() if reduction == "mean" else err.sum()

    def metric_sum(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The metric summed over the batch (correct predictions, or squared errors per example)."""
        if self.task == "classification":
            return (outputs.argmax(1) == y).sum()
        return self.loss(outputs, y, reduction="sum")

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{n}={len(s)}" for n, s in (("train", self.train), ("val", self.val), ("test", self.test)) if s is not None
        )
        return (
            f"Workload({self.name!r}, {self.task}, input_shape={self.input_shape}, n_outputs={self.n_outputs}, {sizes})"
        )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_tensors(
        cls,
        x_train: Any,
        y_train: Any,
        *,
        x_val: Any = None,
        y_val: Any = None,
        x_test: Any = None,
        y_test: Any = None,
        val_fraction: float = 0.2,
        task: str = "classification",
        name: str | None = None,
        batch_size: int = 128,
        max_epochs: int = 30,
        seed: int = 0,
        recipe: Mapping[str, Any] | None = None,
        n_outputs: int | None = None,
        input_dtype: torch.dtype | None = None,
        **task_kw: Any,
    ) -> Workload:
        """A workload from in-memory arrays or tensors.

        The data are checked: non-finite values, inputs without a feature axis, class labels
        that look like regression targets and validation classes never seen in training are
        refused (or warned about) with the fix, instead of surfacing as failed trials.

        Args:
            x_train: Training inputs, shape `(N, *input_shape)`.
            y_train: Training targets: integer class labels `(N,)` for classification, floats
                `(N,)` or `(N, k)` for regression.
            x_val: Validation inputs; if None, `val_fraction` of the training data is held out
                (a seeded random subset).
            y_val: Validation targets (with `x_val`).
            x_test: Optional test inputs.
            y_test: Optional test targets.
            val_fraction: Share of the training data held out when `x_val` is None, in (0, 1).
            task: "classification" or "regression".
            name: Workload name (default "tensors").
            batch_size: Default batch size.
            max_epochs: Length of a full run.
            seed: Seed of the hold-out split.
            recipe: How to rebuild this workload elsewhere, `{"factory": "module:function",
                "kwargs": {...}}`: lets `studies.load(..., trust=["module's package"])` and
                `tunelab resume` rebuild the study's data without `trainer=`.
            n_outputs: The model's outputs (inferred from the labels or targets when None).
            input_dtype: The inputs' dtype. None turns integer inputs into float32 (features);
                `torch.long` keeps token ids for a model that embeds them.
            **task_kw: The workload's own `loss`, `metrics`, `objective` and `direction` (see
                `Workload`). With its own `loss`, the targets are that loss's: any shape (for
                example a language model's `(N, T)` next tokens), checked only for their length
                and finite values.

        Raises:
            WorkloadError: Mismatched lengths, wrong target types, non-finite values, 1-D
                inputs, or a bad `val_fraction`.
        """
        task_args = dict(task_kw)
        if task not in TASKS:
            raise WorkloadError(f"task must be one of {TASKS}, got {task!r}")
        own_targets = task_args.get("loss") is not None  # the targets are the user's loss's business

        if (x_val is None) != (y_val is None):
            raise WorkloadError("pass both x_val and y_val, or neither")
        if (x_test is None) != (y_test is None):
            raise WorkloadError("pass both x_test and y_test, or neither")
        train = tensor_split(x_train, y_train, "train", task, input_dtype, own_targets)
        if x_val is None:
            if not 0.0 < val_fraction < 1.0:
                raise WorkloadError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
            n = len(train)
            n_val = max(1, round(n * val_fraction))
            if n - n_val < 1:
                raise WorkloadError(f"{n} training examples are too few to hold out a validation split")
            perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
            val = TensorSplit(train.x[perm[:n_val]], train.y[perm[:n_val]])
            train = TensorSplit(train.x[perm[n_val:]], train.y[perm[n_val:]])
        else:
            val = tensor_split(x_val, y_val, "val", task, input_dtype, own_targets)
        test = tensor_split(x_test, y_test, "test", task, input_dtype, own_targets) if x_test is not None else None
        if task == "classification" and not own_targets:
            check_labels(train, val, test)
        if train.x.shape[1:] != val.x.shape[1:] or (test is not None and test.x.shape[1:] != train.x.shape[1:]):
            raise WorkloadError(
                f"all splits need the same example shape; train {tuple(train.x.shape[1:])}, val "
                f"{tuple(val.x.shape[1:])}" + (f", test {tuple(test.x.shape[1:])}" if test is not None else "")
            )
        return cls(name or "tensors", train, val, test, task=task, batch_size=batch_size, max_epochs=max_epochs,
                   recipe=recipe, n_outputs=n_outputs, **task_hooks(task_args))

    @classmethod
    def from_datasets(
        cls,
        train: Dataset,
        val: Dataset,
        test: Dataset | None = None,
        *,
        task: str = "classification",
        n_outputs: int | None = None,
        name: str | None = None,
        batch_size: int = 128,
        max_epochs: int = 30,
        materialize: bool | None = None,
        max_bytes: int = 2 << 30,
        **task_kw: Any,
    ) -> Workload:
        """A workload from `torch.utils.data.Dataset`s yielding `(x, y)` pairs.

        Datasets that fit in memory and give the same item every time are read once into
        tensors (the fast path: data on the device, batched by index). A dataset whose items are
        random (augmentation in `__getitem__`: random crops, flips, noise) is never read once:
        it goes through a `DataLoader` every epoch, so every epoch sees new draws, made by the
        run's own random generator. `materialize=False` forces the `DataLoader` path,
        `materialize=True` reads once whatever the data (freezing any randomness in them).

        Args:
            train: Training dataset.
            val: Validation dataset.
            test: Optional test dataset.
            task: "classification" or "regression".
            n_outputs: Number of classes / targets; required unless the data is materialised.
            name: Workload name (default "datasets").
            batch_size: Default batch size.
            max_epochs: Length of a full run.
            materialize: Read into tensors; None decides: only datasets whose items do not vary
                (the first item read twice is the same) and that fit in `max_bytes`.
            max_bytes: Size limit of automatic materialisation.
            **task_kw: The workload's own `loss`, `metrics`, `objective` and `direction` (see `Workload`).

        Raises:
            WorkloadError: Empty datasets or examples that are not `(x, y)` pairs.
        """
        for split_name, ds in (("train", train), ("val", val)):
            if ds is None or len(ds) == 0:
                raise WorkloadError(f"the {split_name} dataset is empty")
        try:
            x0, _ = train[0]
        except (TypeError, ValueError) as exc:
            raise WorkloadError(f"datasets must yield (x, y) pairs; train[0] gave {exc}") from None
        x0 = torch.as_tensor(x0)
        total = sum(len(d) for d in (train, val, test) if d is not None)
        hooks = task_hooks(task_kw)
        if materialize is None:
            materialize = total * x0.numel() * x0.element_size() <= max_bytes and not varies(train)
        if materialize:

            def stack(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
                xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)
                return torch.stack([torch.as_tensor(x) for x in xs]), torch.as_tensor(np.asarray(ys))

            tr, va = stack(train), stack(val)
            te = stack(test) if test is not None else (None, None)
            return cls.from_tensors(
                *tr,
                x_val=va[0],
                y_val=va[1],
                x_test=te[0],
                y_test=te[1],
                task=task,
                name=name or "datasets",
                batch_size=batch_size,
                max_epochs=max_epochs,
                n_outputs=n_outputs,
                **hooks,
            )
        if n_outputs is None:
            raise WorkloadError("pass n_outputs= for datasets too large to read into memory")
        return cls(
            name or "datasets",
            train,
            val,
            test,
            task=task,
            n_outputs=n_outputs,
            input_shape=tuple(x0.shape),
            batch_size=batch_size,
            max_epochs=max_epochs,
            **hooks,
        )
