"""Every Python block of the README and of the documentation runs (so neither can rot).

Each page's blocks run in order, in one namespace of their own (a page may build on its earlier
blocks, never on another page's).

The blocks run as written, on small data and short budgets: MNIST-1D with 256 training
examples, trainers of at most 2 epochs, `optimize` capped at 2 trials (or 6 epochs), a DARTS
search of one epoch, and a comparison of one problem, two optimizers and one trial per arm. The
Ray block joins the test session's Ray cluster (`ray_cluster`).
Names a block uses but the page leaves to the reader (`workload`, `space`, `my_workload`,
`MyOpt`, `MyNet`, `SepConv`, the `bowl` function of the own-code tutorial) are defined by a
small prelude.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from tunelab import search, spaces, studies, trainers

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.S)


def bowl(config):
    return {"value": (config["x"] - 0.3) ** 2 + config["y"] ** 2, "radius": abs(config["x"])}


class MyNet(nn.Module):
    def __init__(self, **hp):
        super().__init__()
        self.fc = nn.LazyLinear(10)

    def forward(self, x):
        return self.fc(x.flatten(1))


class SepConv(nn.Module):
    def __init__(self, channels, dim):
        super().__init__()
        conv = nn.Conv1d if dim == 1 else nn.Conv2d
        self.depth = conv(channels, channels, 3, padding=1, groups=channels)
        self.point = conv(channels, channels, 1)

    def forward(self, x):
        return self.point(self.depth(x))


@pytest.fixture
def fast(monkeypatch, tmp_path, ray_cluster):
    """Small data and short budgets for every study and trainer the README builds."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "benchmarks").symlink_to(README.parent / "benchmarks")  # the README runs from the repository root
    mnist1d, digits = trainers.workloads.mnist1d, trainers.workloads.digits
    monkeypatch.setattr(trainers.workloads, "mnist1d", lambda **kw: mnist1d(**{"n_train": 256, **kw}))
    init = trainers.Trainer.__init__

    def short_init(self, workload, *, epochs=None, **kw):
        init(self, workload, epochs=min(epochs or workload.max_epochs, 2), **kw)

    monkeypatch.setattr(trainers.Trainer, "__init__", short_init)
    optimize = studies.Study.optimize

    def short_optimize(self, trials=None, epochs=None, **kw):
        if ray_cluster is None and kw.get("executor") == "ray":  # Ray is not installed here: the local pool
            kw["executor"] = "local"
        return optimize(self, trials=None if trials is None else min(trials, 2),
                        epochs=None if epochs is None else min(epochs, 6), **kw)

    monkeypatch.setattr(studies.Study, "optimize", short_optimize)
    darts = search.Darts

    class ShortDarts(darts):
        name = ""  # not registered: the real Darts stays the one studies load by name

        def __init__(self, seed=0, **kw):
            super().__init__(seed, **{**kw, "epochs": 1, "pt_interval": 1})

    monkeypatch.setattr(search, "Darts", ShortDarts)
    compare = studies.compare

    def small_compare(problems, *, optimizers, budget, reruns=3, **kw):
        return compare(problems[:1], optimizers=optimizers[:2], budget=1, reruns=1, **kw)

    monkeypatch.setattr(studies, "compare", small_compare)
    return {
        "__name__": "__main__",  # the blocks run as a script does: functions they define are `__main__:name`
        "workload": trainers.workloads.mnist1d(),
        "space": spaces.optimizers(["adamw"]) | spaces.mlp(width=spaces.Int(8, 32, log=True), depth=1),
        "my_workload": digits(),
        "MyOpt": lambda params, lr: torch.optim.SGD(params, lr=lr),
        "MyNet": MyNet,
        "SepConv": SepConv,
        "bowl": bowl,
        "search": search, "spaces": spaces, "studies": studies, "trainers": trainers,
    }


def test_the_pages_hold_python_blocks():
    assert sum(len(blocks(p)) for p in PAGES) >= 15
    assert blocks(README), "the README's quick start is a python block"


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_block_of_a_page_runs(fast, page):
    namespace = dict(fast)
    name = page.relative_to(ROOT)
    for i, code in enumerate(blocks(page)):
        try:
            exec(compile(code, f"{name} python block {i}", "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"{name} python block {i} fails: {type(err).__name__}: {err}\n{code}") from err
    # the blocks did what they say
    if page == README:
        assert namespace["study"].best is not None and namespace["box"].best is not None
    if "search_trial" in namespace:
        assert namespace["search_trial"].results["genotype"] and namespace["retrained"].routine == "train"
    if "result" in namespace and hasattr(namespace["result"], "status"):
        assert namespace["result"].status == "complete"
