"""Several objectives: validation accuracy against inference latency measured on this machine.

NSGA-II (`search.Evolution(method="nsga2")`) searches MLP depth and width with the optimizer;
`latency_ms` is timed by the trainer on the study's device (median of repeated forward passes of
one example). The study keeps the Pareto front of both.

    python examples/several_objectives.py                   # NSGA-II, 40 trials of 5 epochs (~3 min)
    python examples/several_objectives.py --strategy asha   # MO-ASHA on 200 epochs
    tunelab show --storage sqlite:///several_objectives.db  # prints the front
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from tunelab import search, spaces, studies, trainers


def main(argv: Sequence[str] | None = None) -> list[studies.TrialRecord]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=["nsga2", "bayesian", "asha", "random"], default="nsga2")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=5, help="epochs per trial")
    parser.add_argument("--n-train", type=int, default=None, help="fewer training examples, for a quick run")
    parser.add_argument("--storage", default="sqlite:///several_objectives.db")
    args = parser.parse_args(argv)

    strategy = {"nsga2": lambda: search.Evolution(method="nsga2", seed=0), "bayesian": lambda: search.Bayesian(seed=0),
                "asha": lambda: search.ASHA(seed=0), "random": lambda: search.Random(seed=0)}[args.strategy]()
    study = studies.create(f"several-{args.strategy}", args.storage,
                           space=spaces.optimizers(["adamw"]) | spaces.mlp(depth=spaces.Int(1, 3),
                                                                           width=spaces.Int(16, 512, log=True)),
                           trainer=trainers.Trainer(trainers.workloads.mnist1d(n_train=args.n_train),
                                                    epochs=args.epochs),
                           strategy=strategy, objectives={"accuracy": "maximize", "latency_ms": "minimize"},
                           load_if_exists=True)
    if args.strategy == "asha":  # pauses and continues trials: a budget in epochs
        study.optimize(epochs=args.trials * args.epochs)
    else:
        study.optimize(trials=args.trials)
    front = sorted(study.pareto_front, key=lambda t: t.values[1])
    for t in front:
        print(f"trial {t.number}: accuracy {t.values[0]:.4f}, latency {t.values[1]:.3f} ms, {t.n_params} parameters")
    print(f"hypervolume against (accuracy 0, 10 ms): {study.hypervolume({'accuracy': 0.0, 'latency_ms': 10.0}):.4f}")
    return front


if __name__ == "__main__":
    main()
