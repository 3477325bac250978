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
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from tunelab.spaces.errors import WorkloadError

TASKS = ("classification", "regression")


@dataclass(frozen=True)
class TensorSplit:
    """One split held as two tensors: inputs `x` of shape `(N, *input_shape)` and targets `y`."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to(self, device: torch.device | str) -> TensorSplit:
        """The same split on `device`."""
        return TensorSplit(self.x.to(device), self.y.to(device))


Split = TensorSplit | Dataset


def _check_finite(t: torch.Tensor, name: str) -> None:
    """Refuse NaN / inf values: they would be scored as results or make every trial diverge."""
    bad = ~torch.isfinite(t)
    if bad.any():
        rows = bad.reshape(t.shape[0], -1).any(dim=1).nonzero().flatten().tolist()
        raise WorkloadError(
            f"{name} holds {int(bad.sum())} non-finite values (NaN or inf) in {len(rows)} examples (rows {rows[:5]}"
            f"{'...' if len(rows) > 5 else ''}); drop or impute them first, e.g. keep = torch.isfinite(x).all(dim=1) "
            f"& torch.isfinite(y); x, y = x[keep], y[keep]"
        )


def _as_tensor(a: Any, name: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu()
    array = np.asarray(a) if not isinstance(a, np.ndarray) else a
    if array.dtype.kind in "USO":  # strings or Python objects: class names, not class indices
        sample = ", ".join(repr(v) for v in array.ravel()[:3].tolist())
        raise WorkloadError(
            f"{name} holds {'text' if array.dtype.kind in 'US' else 'Python objects'} ({sample}, ...; dtype "
            f"{array.dtype}), but tunelab trains on numbers: encode labels as class indices 0..k-1 (e.g. "
            f"sklearn.preprocessing.LabelEncoder().fit_transform({name})) and features as floats"
        )
    try:
        return torch.as_tensor(array)
    except (TypeError, ValueError) as exc:
        raise WorkloadError(f"{name} cannot become a tensor (a {type(a).__name__} of dtype {array.dtype}: {exc}); "
                            f"pass a numeric NumPy array or torch tensor") from None


class TaskMetric:
    """The selection metric of a task ("classification" or "regression") and its direction.

    Shared by `Workload` and by a replayed trainer's `trainers.replay.ReplayWorkload`.
    """

    task: str

    @property
    def metric(self) -> str:
        """Name of the selection metric: "accuracy" or "mse"."""
        return "accuracy" if self.task == "classification" else "mse"

    @property
    def direction(self) -> str:
        """Either "maximize" (accuracy) or "minimize" (mse)."""
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

    Raises:
        WorkloadError: Inconsistent splits, an unknown task, or bad sizes.
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
    ) -> None:
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
        """Training loss: cross-entropy on logits, or mean squared error."""
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

        Raises:
            WorkloadError: Mismatched lengths, wrong target types, non-finite values, 1-D
                inputs, or a bad `val_fraction`.
        """
        if task not in TASKS:
            raise WorkloadError(f"task must be one of {TASKS}, got {task!r}")

        def pair(x: Any, y: Any, split: str) -> TensorSplit:
            xt, yt = _as_tensor(x, f"x_{split}"), _as_tensor(y, f"y_{split}")
            if xt.ndim < 2:
                raise WorkloadError(
                    f"x_{split} has shape {tuple(xt.shape)}; inputs need an example axis and a feature axis, "
                    f"(N, *features). For one feature per example pass x.reshape(-1, 1)"
                )
            if xt.shape[0] != yt.shape[0]:
                raise WorkloadError(
                    f"x_{split} has {xt.shape[0]} examples but y_{split} has {yt.shape[0]}; they must match"
                )
            if not xt.is_floating_point():
                xt = xt.float()
            _check_finite(xt, f"x_{split}")
            if yt.is_floating_point():
                _check_finite(yt, f"y_{split}")
            if task == "classification":
                if yt.is_floating_point() or yt.dtype == torch.bool or yt.ndim != 1:
                    raise WorkloadError(
                        f"classification targets y_{split} must be a 1-D integer tensor of class indices, got "
                        f"dtype {yt.dtype} and shape {tuple(yt.shape)}; pass task='regression' for real targets"
                    )
                if yt.numel() and int(yt.min()) < 0:
                    raise WorkloadError(f"class labels in y_{split} must be >= 0, got {int(yt.min())}")
                if yt.numel() and int(yt.max()) + 1 > max(2 * yt.numel(), 1000):
                    raise WorkloadError(
                        f"y_{split} has class labels up to {int(yt.max())} for {yt.numel()} examples: that would be a "
                        f"{int(yt.max()) + 1}-class problem. Integer targets that measure something are regression "
                        f"targets: pass task='regression' (or relabel classes as 0..k-1)"
                    )
                yt = yt.long()
            else:
                yt = yt.float()
                if yt.ndim == 1:
                    yt = yt.unsqueeze(1)
            return TensorSplit(xt.float() if xt.dtype == torch.float64 else xt, yt)

        if (x_val is None) != (y_val is None):
            raise WorkloadError("pass both x_val and y_val, or neither")
        if (x_test is None) != (y_test is None):
            raise WorkloadError("pass both x_test and y_test, or neither")
        train = pair(x_train, y_train, "train")
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
            val = pair(x_val, y_val, "val")
        test = pair(x_test, y_test, "test") if x_test is not None else None
        if task == "classification":
            labels = torch.cat([s.y for s in (train, val, test) if s is not None]).unique().tolist()
            missing = sorted(set(range(int(max(labels)) + 1)) - set(labels)) if labels else []
            if missing and missing[0] == 0 and len(missing) == int(min(labels)):
                raise WorkloadError(
                    f"class labels start at {int(min(labels))}, not 0: the model would get {int(max(labels)) + 1} "
                    f"outputs, and classes {missing[:10]} would never occur. tunelab reads labels as class indices "
                    f"0..k-1; shift them (y - {int(min(labels))}) or encode them with "
                    f"sklearn.preprocessing.LabelEncoder")
            if missing:
                warnings.warn(f"classes {missing[:10]} never occur in any split (labels run up to {int(max(labels))}), "
                              f"so the model gets outputs no example uses; relabel classes as 0..k-1 unless you mean "
                              f"it", stacklevel=2)
            unseen = sorted(set(val.y.tolist()) - set(train.y.tolist()))
            if unseen:
                warnings.warn(
                    f"validation classes {unseen[:10]} never occur in the training data, so no trial can learn them; "
                    f"split with stratification (e.g. sklearn's train_test_split(..., stratify=y)) unless you mean it",
                    stacklevel=2,
                )
        if train.x.shape[1:] != val.x.shape[1:] or (test is not None and test.x.shape[1:] != train.x.shape[1:]):
            raise WorkloadError(
                f"all splits need the same example shape; train {tuple(train.x.shape[1:])}, val "
                f"{tuple(val.x.shape[1:])}" + (f", test {tuple(test.x.shape[1:])}" if test is not None else "")
            )
        return cls(name or "tensors", train, val, test, task=task, batch_size=batch_size, max_epochs=max_epochs,
                   recipe=recipe)

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
    ) -> Workload:
        """A workload from `torch.utils.data.Dataset`s yielding `(x, y)` pairs.

        Datasets that fit in memory are read once into tensors (the fast path: data on the
        device, batched by index); others are read through a `DataLoader` each epoch.

        Args:
            train: Training dataset.
            val: Validation dataset.
            test: Optional test dataset.
            task: "classification" or "regression".
            n_outputs: Number of classes / targets; required unless the data is materialised.
            name: Workload name (default "datasets").
            batch_size: Default batch size.
            max_epochs: Length of a full run.
            materialize: Read into tensors; None decides by size (`max_bytes`).
            max_bytes: Size limit of automatic materialisation.

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
        if materialize is None:
            materialize = total * x0.numel() * x0.element_size() <= max_bytes
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
        )
