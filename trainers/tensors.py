"""Tensors in memory: a split (`TensorSplit`) and the checks that turn a user's arrays into one.

Every check raises a `WorkloadError` that names the problem and its fix (or warns, where the
data may be meant as it is).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from tunelab.spaces.errors import WorkloadError


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


def check_finite(t: torch.Tensor, name: str) -> None:
    """Refuse NaN / inf values: they would be scored as results or make every trial diverge."""
    bad = ~torch.isfinite(t)
    if bad.any():
        rows = bad.reshape(t.shape[0], -1).any(dim=1).nonzero().flatten().tolist()
        raise WorkloadError(
            f"{name} holds {int(bad.sum())} non-finite values (NaN or inf) in {len(rows)} examples (rows {rows[:5]}"
            f"{'...' if len(rows) > 5 else ''}); drop or impute them first, e.g. keep = torch.isfinite(x).all(dim=1) "
            f"& torch.isfinite(y); x, y = x[keep], y[keep]"
        )


def as_tensor(a: Any, name: str) -> torch.Tensor:
    """`a` (a tensor, an array or a list) as a CPU tensor; text or objects refused with the fix."""
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


def tensor_split(x: Any, y: Any, split: str, task: str, input_dtype: torch.dtype | None,
                 own_targets: bool) -> TensorSplit:
    """One split's inputs and targets, checked and typed (see `Workload.from_tensors`).

    Raises:
        WorkloadError: Naming the problem and the fix.
    """
    xt, yt = as_tensor(x, f"x_{split}"), as_tensor(y, f"y_{split}")
    if xt.ndim < 2:
        raise WorkloadError(
            f"x_{split} has shape {tuple(xt.shape)}; inputs need an example axis and a feature axis, "
            f"(N, *features). For one feature per example pass x.reshape(-1, 1)"
        )
    if xt.shape[0] != yt.shape[0]:
        raise WorkloadError(
            f"x_{split} has {xt.shape[0]} examples but y_{split} has {yt.shape[0]}; they must match"
        )
    if input_dtype is not None:
        xt = xt.to(input_dtype)
    elif not xt.is_floating_point():
        xt = xt.float()
    check_finite(xt, f"x_{split}")
    if yt.is_floating_point():
        check_finite(yt, f"y_{split}")
    if own_targets:
        return TensorSplit(xt.float() if xt.dtype == torch.float64 else xt, yt)
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


def check_labels(train: TensorSplit, val: TensorSplit, test: TensorSplit | None) -> None:
    """Refuse class labels that do not start at 0; warn of classes that never occur or occur only in validation.

    Raises:
        WorkloadError: Labels that start above 0 with every class below missing.
    """
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
                      f"it", stacklevel=4)
    unseen = sorted(set(val.y.tolist()) - set(train.y.tolist()))
    if unseen:
        warnings.warn(
            f"validation classes {unseen[:10]} never occur in the training data, so no trial can learn them; "
            f"split with stratification (e.g. sklearn's train_test_split(..., stratify=y)) unless you mean it",
            stacklevel=4,
        )
