"""Your own training loop, tuned by ASHA or FreezeThaw: `trainers.Function`.

The loop below is plain PyTorch: a small 1-D convolutional network on MNIST-1D signals, mixup
augmentation (Zhang et al. 2018) and a label-smoothed cross-entropy (Szegedy et al. 2016) as
its own loss, an optimizer and schedule built from the configuration. tunelab adds three calls:
`run.load()` to continue a paused or interrupted run, `run.report(...)` once per epoch, and
`run.save(...)` after it. Everything else is yours.

    python examples/own_loop.py                          # ASHA, 60 epochs of budget
    python examples/own_loop.py --strategy freeze_thaw   # FreezeThaw on the same budget
    tunelab show --storage sqlite:///own_loop.db

The study is stored in `own_loop.db`; running the script again continues it. The data order of
each epoch comes from a generator seeded by the run's seed and the epoch, so a run continued from
its last save trains exactly as an uninterrupted one would.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tunelab import search, spaces, studies, trainers

EPOCHS = 12


@functools.lru_cache(maxsize=1)
def data(n_train: int | None = None) -> dict[str, torch.Tensor]:
    """MNIST-1D signals: train and validation tensors (made once per process)."""
    workload = trainers.workloads.mnist1d(n_train=n_train)
    return {"x": workload.train.x, "y": workload.train.y, "x_val": workload.val.x, "y_val": workload.val.y}


class ConvNet(nn.Module):
    """Three stride-2 convolutions and a linear read-out (the MNIST-1D baseline's shape)."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(1, channels, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(channels, channels, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(channels, channels, 5, stride=2, padding=2), nn.ReLU(),
            nn.Flatten(), nn.Dropout(dropout))
        self.head = nn.LazyLinear(10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Signals `(B, 40)` -> logits `(B, 10)`."""
        return self.head(self.body(x.unsqueeze(1)))


def smoothed_loss(logits: torch.Tensor, soft_targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Cross-entropy against label-smoothed soft targets `(B, 10)`."""
    targets = soft_targets * (1 - smoothing) + smoothing / soft_targets.shape[1]
    return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()


def train(config: Mapping[str, Any], run: trainers.Run) -> None:
    """One trial: train `config` from `run.start_epoch` to `run.until_epoch`, reporting every epoch."""
    d = data(config.get("n_train"))
    x, y = d["x"].to(run.device), d["y"].to(run.device)
    model = ConvNet(int(config["channels"]), float(config["dropout"])).to(run.device)
    model(x[:2])  # materialise the lazy layer before the optimizer sees the parameters
    optimizer = spaces.build_optimizer(config, model)
    batch = 100
    steps = (len(y) + batch - 1) // batch
    schedule = spaces.build_schedule(config, optimizer, total_steps=run.epochs * steps)
    state = run.load()  # None on a fresh run; the last run.save otherwise
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
    for epoch in range(run.start_epoch + 1, run.until_epoch + 1):
        model.train()
        g = torch.Generator().manual_seed(run.seed * 10_000 + epoch)
        rng = np.random.default_rng(run.seed * 10_000 + epoch)
        order = torch.randperm(len(y), generator=g).to(run.device)
        total = 0.0
        for i in range(steps):
            idx = order[i * batch:(i + 1) * batch]
            xb, yb = x[idx], F.one_hot(y[idx], 10).float()
            lam = float(rng.beta(config["mixup"], config["mixup"])) if config["mixup"] > 0 else 1.0
            mix = torch.randperm(len(idx), generator=g).to(run.device)
            xb, yb = lam * xb + (1 - lam) * xb[mix], lam * yb + (1 - lam) * yb[mix]
            loss = smoothed_loss(model(xb), yb, float(config["smoothing"]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        model.eval()
        with torch.no_grad():
            logits = model(d["x_val"].to(run.device))
            y_val = d["y_val"].to(run.device)
            accuracy = float((logits.argmax(1) == y_val).float().mean())
            val_loss = float(F.cross_entropy(logits, y_val))
        decision = run.report(accuracy=accuracy, val_loss=val_loss, train_loss=total / steps, grad_evals=steps)
        run.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "schedule": schedule.state_dict()})
        if decision != "continue":
            return


def space(n_train: int | None = None) -> spaces.Space:
    """AdamW or SGD with their learning rates, a warm-up-cosine schedule, width, dropout, mixup and smoothing."""
    extra = {} if n_train is None else {"n_train": spaces.Fixed(n_train)}
    return (spaces.optimizers(["adamw", "sgd"]) | spaces.schedules(["warmup_cosine"])
            | spaces.Space(channels=spaces.Int(8, 64, log=True), dropout=spaces.Float(0.0, 0.5),
                           mixup=spaces.Float(0.0, 0.4), smoothing=spaces.Float(0.0, 0.2), **extra))


STRATEGIES = {
    "asha": lambda seed: search.ASHA(seed=seed, min_epochs=1),
    "freeze_thaw": lambda seed: search.FreezeThaw(seed=seed),
    "random": lambda seed: search.Random(seed=seed),
}


def main(argv: Sequence[str] | None = None) -> studies.TrialRecord | None:
    """Run (or continue) the study the command line describes; return its best trial."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=sorted(STRATEGIES), default="asha")
    parser.add_argument("--epochs", type=int, default=60, help="budget in epochs, summed over trials")
    parser.add_argument("--epochs-per-trial", type=int, default=EPOCHS)
    parser.add_argument("--n-train", type=int, default=None, help="fewer training signals (quick runs)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", default="sqlite:///own_loop.db")
    args = parser.parse_args(argv)
    trainer = trainers.Function(train, epochs=args.epochs_per_trial, metric="accuracy", direction="maximize")
    study = studies.create(f"own_loop-{args.strategy}-{args.seed}", args.storage, space=space(args.n_train),
                           trainer=trainer, strategy=STRATEGIES[args.strategy](args.seed))
    best = study.optimize(epochs=args.epochs, n_workers=args.workers)
    if best is not None:
        print(f"best validation accuracy {best.value:.4f} after {best.epochs} epochs ({best.config})")
    return best


if __name__ == "__main__":
    main()
