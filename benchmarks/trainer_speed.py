"""Trainer overhead: epoch time of `Trainer.fit` vs a plain PyTorch loop, measured alternately.

Both sides train the same network (built once per side from the same config and seed), on the
same MNIST-1D tensors, with the same batch size, optimizer, thread count and a validation pass
per epoch. The plain loop is the lean loop a user writes by hand (index permutation, forward,
backward, step, then one validation pass). Epochs alternate, one Trainer epoch then one plain
epoch (run from the Trainer's `report` hook), so that machine noise hits both; the ratio of
median epoch times is printed.

    python benchmarks/trainer_speed.py [--rounds 7] [--epochs 4] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from tunelab import spaces, trainers

CONFIGS = {
    "mlp": {
        "optimizer": "adam",
        "adam.lr": 1e-3,
        "adam.beta1": 0.9,
        "adam.weight_decay": 1e-6,
        "model": "mlp",
        "model.depth": 2,
        "model.width": 128,
        "model.dropout": 0.0,
        "model.activation": "relu",
    },
    "cnn": {
        "optimizer": "adam",
        "adam.lr": 1e-2,
        "adam.beta1": 0.9,
        "adam.weight_decay": 1e-6,
        **spaces.cnn(dim=1, depth=3, channels=25, kernel=5, norm="none", dropout=0.0).default(),
    },
}


class PlainLoop:
    """The hand-written loop: same network, data, batch size and optimizer as the Trainer's run."""

    def __init__(self, config: dict, workload: trainers.Workload, batch_size: int, device: torch.device, seed: int):
        torch.manual_seed(seed)
        self.model = spaces.build_model(config, workload.input_shape, workload.n_outputs).to(device)
        self.opt = torch.optim.Adam(
            self.model.parameters(), lr=config["adam.lr"], weight_decay=config["adam.weight_decay"]
        )
        self.x, self.y = workload.train.x.to(device), workload.train.y.to(device)
        self.xv, self.yv = workload.val.x.to(device), workload.val.y.to(device)
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.batch_size, self.device = batch_size, device

    def epoch(self) -> float:
        """Train one epoch and validate; return its wall time."""
        t0 = time.perf_counter()
        model, opt, x, y, n = self.model, self.opt, self.x, self.y, self.x.shape[0]
        model.train()
        perm = torch.randperm(n, generator=self.gen, device=self.device)
        for i in range(0, n, self.batch_size):
            idx = perm[i : i + self.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        model.eval()
        with torch.no_grad():
            out = model(self.xv)
            _ = (F.cross_entropy(out, self.yv).item(), (out.argmax(1) == self.yv).float().mean().item())
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0


def paired_epochs(config: dict, trainer: trainers.Trainer, seed: int) -> tuple[list[float], list[float]]:
    """Run `Trainer.fit`; after each of its epochs (from its `report` hook) run one plain epoch.

    Returns the Trainer's epoch seconds (its `EpochResult.seconds`) and the plain loop's.
    """
    plain = PlainLoop(config, trainer.workload, trainer.batch_size, trainer.device, seed)
    plain_times: list[float] = []
    result = trainer.fit(config, seed=seed, report=lambda r: plain_times.append(plain.epoch()))
    return [e.seconds for e in result.epochs], plain_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    workload = trainers.workloads.mnist1d()
    device = trainers.resolve_device(args.device)
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} batch={workload.batch_size}")
    print(
        f"{'model':6s} {'trainer s/epoch':>16s} {'plain s/epoch':>14s} {'ratio':>7s}  (median of {args.rounds} rounds"
        f" x {args.epochs} epochs, alternating epoch by epoch)"
    )
    for name, config in CONFIGS.items():
        trainer = trainers.Trainer(workload, epochs=args.epochs, device=device, precision=args.precision)
        paired_epochs(config, trainer, 0)  # warm-up
        t_tr, t_pl = [], []
        for r in range(args.rounds):
            a, b = paired_epochs(config, trainer, r)
            t_tr += a
            t_pl += b
        a, b = statistics.median(t_tr), statistics.median(t_pl)
        print(f"{name:6s} {a:16.4f} {b:14.4f} {a / b:7.3f}")


if __name__ == "__main__":
    main()
