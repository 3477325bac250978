"""Self-tuning networks: dropout, input noise and shift learned during one training run.

A hypernetwork (MacKay et al. 2019) learns the regularisation hyperparameters as schedules while
the network trains; trial 1 then replays the learned schedule in a plain network.

    python examples/self_tuning.py                 # 100 epochs of one STN run and its replay (~5 min)
    tunelab show --storage sqlite:///self_tuning.db
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from tunelab import search, spaces, studies, trainers


def main(argv: Sequence[str] | None = None) -> studies.TrialRecord | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--n-train", type=int, default=None, help="fewer training examples, for a quick run")
    parser.add_argument("--storage", default="sqlite:///self_tuning.db")
    args = parser.parse_args(argv)

    space = (spaces.Space(optimizer=spaces.Fixed("adam"), schedule=spaces.Fixed("constant"))
             | spaces.mlp(depth=2, width=256, dropout=spaces.Float(0.0, 0.8, default=0.05),
                          input_dropout=spaces.Float(0.0, 0.5, default=0.05),
                          input_noise=spaces.Float(0.0, 1.0, default=0.05), shift=spaces.Int(0, 8, default=1)))
    tune = ["model.dropout", "model.input_dropout", "model.input_noise", "model.shift"]
    study = studies.create("self-tuning", args.storage, space=space,
                           trainer=trainers.Trainer(trainers.workloads.mnist1d(n_train=args.n_train),
                                                    epochs=args.epochs),
                           strategy=search.SelfTuning(seed=0, tune=tune), load_if_exists=True)
    best = study.optimize(trials=2)  # trial 0: the STN run; trial 1: its schedule replayed
    run = study.trials[0]
    for name, values in run.results["schedule"].items():
        print(f"{name}: {values[0]:.3g} -> {values[-1]:.3g}")
    if best is not None:
        print(f"best validation accuracy {best.value:.4f} (trial {best.number}), test {best.test_metric:.4f}")
    return best


if __name__ == "__main__":
    main()
