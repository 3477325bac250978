"""Built-in workloads; nothing is downloaded.

- `mnist1d()`: MNIST-1D (Greydanus & Kobak 2024, "Scaling Down Deep Learning with MNIST-1D",
  ICML 2024), generated offline by `mnist1d.data.make_dataset` with the package's default
  arguments, which reproduce the published data set: 4000 training examples (the last 800 held
  out for validation) and 1000 test examples, each a length-40 signal of one of 10 classes.
- `mnist1d_published()`: the same data split as the published baselines used it (all 4000
  training signals for training, scored on the test set); for reproducing numbers, not for search.
- `digits()`: scikit-learn's bundled 8x8 handwritten digits (1797 images), split 60/20/20
  with a fixed seed.
"""

from __future__ import annotations

import functools
import random

import numpy as np
import torch

from tunelab.spaces.errors import WorkloadError
from tunelab.trainers.workload import TensorSplit, Workload


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset seeds numpy's and Python's global generators; keep the caller's state intact.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return data["x"], data["y"], data["x_test"], data["y_test"]


def mnist1d(
    *, batch_size: int = 100, max_epochs: int = 60, n_val: int = 800, n_train: int | None = None
) -> Workload:
    """MNIST-1D: 3200 train / 800 val / 1000 test signals of length 40, 10 classes.

    Args:
        batch_size: Default batch size (100, as in the published baselines).
        max_epochs: A full run's length (the published CNN baseline trains for about 60 epochs).
        n_val: Training examples held out for validation (the last ones; the data is shuffled).
        n_train: Keep only the first `n_train` training examples (smoke tests, quick demos).
    """
    x, y, x_test, y_test = _mnist1d_arrays()
    n_fit = len(y) - n_val
    if n_train is not None and not (isinstance(n_train, int) and 1 <= n_train <= n_fit):
        raise WorkloadError(f"n_train must be an int in [1, {n_fit}], got {n_train!r}")
    n_keep = n_fit if n_train is None else n_train
    xs, ys = torch.from_numpy(x).float(), torch.from_numpy(y).long()
    kwargs = {"batch_size": batch_size, "max_epochs": max_epochs, "n_val": n_val}
    if n_train is not None:
        kwargs["n_train"] = n_train
    return Workload(
        "mnist1d",
        TensorSplit(xs[:n_keep].clone(), ys[:n_keep].clone()),
        TensorSplit(xs[n_fit:].clone(), ys[n_fit:].clone()),
        TensorSplit(torch.from_numpy(x_test).float(), torch.from_numpy(y_test).long()),
        task="classification",
        n_outputs=10,
        batch_size=batch_size,
        max_epochs=max_epochs,
        recipe={"factory": "tunelab.trainers.workloads:mnist1d", "kwargs": kwargs},
    )


def mnist1d_published(*, batch_size: int = 100, max_epochs: int = 60) -> Workload:
    """MNIST-1D as its baselines were published: trained on all 4000 training signals.

    Only for reproducing published numbers: the validation split *is* the test split, so this
    workload must never be searched on (use `mnist1d()` for that).
    """
    x, y, x_test, y_test = _mnist1d_arrays()
    test = TensorSplit(torch.from_numpy(x_test).float(), torch.from_numpy(y_test).long())
    return Workload(
        "mnist1d-published",
        TensorSplit(torch.from_numpy(x).float(), torch.from_numpy(y).long()),
        test,
        test,
        task="classification",
        n_outputs=10,
        batch_size=batch_size,
        max_epochs=max_epochs,
        recipe={
            "factory": "tunelab.trainers.workloads:mnist1d_published",
            "kwargs": {"batch_size": batch_size, "max_epochs": max_epochs},
        },
    )


def digits(*, batch_size: int = 64, max_epochs: int = 30, seed: int = 0) -> Workload:
    """scikit-learn's 8x8 digits as `(1, 8, 8)` images in [0, 1]: 1077 train / 360 val / 360 test.

    Args:
        batch_size: Default batch size.
        max_epochs: A full run's length.
        seed: Seed of the fixed split.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.from_numpy(data.images / 16.0).float().unsqueeze(1)
    y = torch.from_numpy(data.target).long()
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))
    n_test = n_val = round(0.2 * len(y))
    test, val, train = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    return Workload(
        "digits",
        TensorSplit(x[train], y[train]),
        TensorSplit(x[val], y[val]),
        TensorSplit(x[test], y[test]),
        task="classification",
        n_outputs=10,
        batch_size=batch_size,
        max_epochs=max_epochs,
        recipe={
            "factory": "tunelab.trainers.workloads:digits",
            "kwargs": {"batch_size": batch_size, "max_epochs": max_epochs, "seed": seed},
        },
    )


__all__ = ["digits", "mnist1d", "mnist1d_published"]
