"""Architecture search on MNIST-1D cells: regularized evolution, then a DARTS-PT search of the same space.

    python examples/architecture_search.py                       # evolution, 40 trials of 4 epochs (~6 min)
    python examples/architecture_search.py --strategy darts      # one DARTS-PT search, then its cell retrained
    tunelab show --storage sqlite:///architecture_search.db
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from tunelab import search, spaces, studies, trainers


def main(argv: Sequence[str] | None = None) -> studies.TrialRecord | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=["evolution", "darts"], default="evolution")
    parser.add_argument("--trials", type=int, default=40, help="evolution's budget")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per trained network")
    parser.add_argument("--search-epochs", type=int, default=8, help="DARTS' search epochs")
    parser.add_argument("--n-train", type=int, default=None, help="fewer training examples, for a quick run")
    parser.add_argument("--storage", default="sqlite:///architecture_search.db")
    args = parser.parse_args(argv)

    lr = spaces.Float(1e-4, 1e-1, log=True) if args.strategy == "evolution" else spaces.Fixed(3e-3)
    space = (spaces.Space(optimizer=spaces.Fixed("adamw"), schedule=spaces.Fixed("cosine"),
                          **{"adamw.lr": lr, "adamw.weight_decay": spaces.Fixed(1e-4)})
             | spaces.cells(dim=1, channels=16, cells_per_stage=1))
    trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=args.n_train), epochs=args.epochs)
    if args.strategy == "evolution":
        strategy = search.Evolution(population=10, sample=3, seed=0, max_params=100_000)
        trials = args.trials
    else:
        strategy = search.Darts(seed=0, epochs=args.search_epochs, pt_interval=1, arch_lr=3e-3, channels=8)
        trials = 2  # the search, then its cell retrained by the shared trainer
    study = studies.create(f"architecture-{args.strategy}", args.storage, space=space, trainer=trainer,
                           strategy=strategy, load_if_exists=True)
    best = study.optimize(trials=trials)
    if best is not None:
        print(f"best validation accuracy {best.value:.4f}: cell {best.genotype}, "
              f"{best.n_params} parameters, {best.flops} FLOPs")
    return best


if __name__ == "__main__":
    main()
