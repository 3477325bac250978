"""The published MNIST-1D CNN baseline through `Trainer.fit`, over several seeds.

Recipe of Greydanus & Kobak 2024: three Conv1d layers of 25 channels, Adam lr 1e-2, batch 100;
here 60 epochs. Printed: test accuracy (mean, standard deviation, min, max) on the published
split (all 4000 training signals) and on tunelab's split (800 of them held out for validation),
for the published network and for `spaces.cnn(dim=1)` at depth 3, 25 channels, kernel 5.

    python benchmarks/mnist1d_baseline.py [--seeds 5] [--epochs 60]
"""

from __future__ import annotations

import argparse
import statistics
import time

from tunelab import spaces, trainers

ADAM = {"optimizer": "adam", "adam.lr": 1e-2, "adam.beta1": 0.9, "adam.weight_decay": 1e-6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    models = {
        "published CNN": {**ADAM, "model": "mnist1d_cnn"},
        "spaces.cnn(d3,c25,k5)": {
            **ADAM,
            **spaces.cnn(dim=1, depth=3, channels=25, kernel=5, norm="none", dropout=0.0).default(),
        },
    }
    splits = {
        "published split (4000 train)": trainers.workloads.mnist1d_published(),
        "tunelab split (3200 train / 800 val)": trainers.workloads.mnist1d(),
    }
    print(f"{'workload':38s} {'model':24s} {'test acc mean':>13s} {'sd':>6s} {'min':>6s} {'max':>6s} {'s/run':>6s}")
    for split_name, workload in splits.items():
        trainer = trainers.Trainer(workload, epochs=args.epochs, device=args.device)
        for model_name, config in models.items():
            t0 = time.perf_counter()
            accs = [trainer.fit(config, seed=s).test_metric for s in range(args.seeds)]
            per_run = (time.perf_counter() - t0) / args.seeds
            print(
                f"{split_name:38s} {model_name:24s} {statistics.mean(accs):13.4f} {statistics.stdev(accs):6.4f} "
                f"{min(accs):6.4f} {max(accs):6.4f} {per_run:6.1f}"
            )


if __name__ == "__main__":
    main()
