from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from tunelab import spaces, trainers
from tunelab.spaces import WorkloadError


def test_mnist1d_sizes_and_shapes(mnist1d):
    w = mnist1d
    assert (len(w.train), len(w.val), len(w.test)) == (3200, 800, 1000)
    assert w.input_shape == (40,)
    assert w.n_outputs == 10
    assert w.train.x.dtype == torch.float32 and w.train.y.dtype == torch.int64
    assert set(w.train.y.unique().tolist()) == set(range(10))
    assert (w.metric, w.direction, w.batch_size) == ("accuracy", "maximize", 100)
    assert w.recipe["factory"] == "tunelab.trainers.workloads:mnist1d"


def test_mnist1d_is_deterministic_and_leaves_global_rngs_alone(mnist1d):
    trainers.workloads._mnist1d_arrays.cache_clear()
    np_before = np.random.get_state()[1].copy()
    py_before = random.getstate()
    again = trainers.workloads.mnist1d()
    assert np.array_equal(np.random.get_state()[1], np_before)
    assert random.getstate() == py_before
    assert torch.equal(again.train.x, mnist1d.train.x) and torch.equal(again.test.y, mnist1d.test.y)
    # train and val do not overlap (val is held out of the 4000 training signals)
    assert not torch.equal(mnist1d.train.x[:800], mnist1d.val.x)


def test_digits(digits):
    assert digits.input_shape == (1, 8, 8)
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert len(digits.val) == len(digits.test) == 359
    assert float(digits.train.x.max()) <= 1.0


def test_from_tensors_holds_out_validation():
    x = torch.randn(100, 5)
    y = torch.randint(0, 3, (100,))
    w = trainers.Workload.from_tensors(x, y, val_fraction=0.25, name="toy")
    assert (len(w.train), len(w.val), w.test) == (75, 25, None)
    assert w.n_outputs == 3 and w.input_shape == (5,)
    # all examples are used exactly once
    both = torch.cat([w.train.x, w.val.x])
    assert torch.equal(both[both[:, 0].argsort()], x[x[:, 0].argsort()])


def test_from_tensors_regression_and_numpy():
    x = np.random.default_rng(0).normal(size=(50, 3))
    y = x.sum(1)
    w = trainers.Workload.from_tensors(x, y, task="regression")
    assert w.train.y.shape[1:] == (1,) and w.n_outputs == 1
    assert (w.metric, w.direction) == ("mse", "minimize")
    assert w.train.x.dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"x_train": torch.randn(10, 2), "y_train": torch.zeros(9, dtype=torch.long)}, "must match"),
        ({"x_train": torch.randn(10, 2), "y_train": torch.rand(10)}, "task='regression'"),
        (
            {"x_train": torch.randn(10, 2), "y_train": torch.zeros(10, dtype=torch.long), "val_fraction": 1.5},
            "val_fraction",
        ),
        (
            {"x_train": torch.randn(10, 2), "y_train": torch.zeros(10, dtype=torch.long), "x_val": torch.randn(3, 2)},
            "both x_val and y_val",
        ),
        ({"x_train": torch.randn(10, 2), "y_train": torch.zeros(10, dtype=torch.long), "task": "ranking"}, "task"),
        ({"x_train": torch.randn(10, 2), "y_train": -torch.ones(10, dtype=torch.long)}, ">= 0"),
    ],
)
def test_from_tensors_rejects_bad_input(kwargs, match):
    x, y = kwargs.pop("x_train"), kwargs.pop("y_train")
    with pytest.raises(WorkloadError, match=match):
        trainers.Workload.from_tensors(x, y, **kwargs)


def test_from_datasets_materialises_small_datasets():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 4, generator=g), torch.randint(0, 2, (60,), generator=g)
    w = trainers.Workload.from_datasets(TensorDataset(x[:40], y[:40]), TensorDataset(x[40:], y[40:]))
    assert isinstance(w.train, trainers.TensorSplit) and len(w.train) == 40 and w.n_outputs == 2


class _Squares(Dataset):
    """A map-style dataset that is not a TensorDataset."""

    def __init__(self, n: int, offset: int = 0) -> None:
        g = torch.Generator().manual_seed(offset)
        self.x = torch.randn(n, 6, generator=g)
        self.y = (self.x.sum(1) > 0).long()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])


def test_dataset_path_trains_through_dataloader():
    w = trainers.Workload.from_datasets(
        _Squares(256), _Squares(64, 1), task="classification", n_outputs=2, materialize=False, batch_size=32
    )
    assert not isinstance(w.train, trainers.TensorSplit)
    t = trainers.Trainer(w, epochs=5, seed=0)
    config = {
        "optimizer": "adamw",
        "adamw.lr": 1e-2,
        "adamw.beta1": 0.9,
        "adamw.weight_decay": 1e-4,
        **spaces.mlp(depth=1, width=32, dropout=0.0, activation="relu").default(),
    }
    a, b = t.fit(config), t.fit(config)
    assert a.status == "complete" and a.val_metric > 0.85
    assert [e.train_loss for e in a.epochs] == [e.train_loss for e in b.epochs]  # owned seeds, also via DataLoader


def test_datasets_too_large_need_n_outputs():
    with pytest.raises(WorkloadError, match="n_outputs"):
        trainers.Workload.from_datasets(_Squares(8), _Squares(8), materialize=False)
