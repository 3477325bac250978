"""Multi-fidelity search: FreezeThaw, ASHA and Hyperband on the same budget of epochs.

A budget in epochs, not trials: a multi-fidelity strategy starts many configurations, trains
each a few epochs, pauses them, and continues only those whose curves promise the most.

    python examples/multi_fidelity.py                        # FreezeThaw, 200 epochs (~4 minutes on 2 cores)
    python examples/multi_fidelity.py --strategy asha        # ASHA on the same budget
    tunelab show --storage sqlite:///multi_fidelity.db
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from tunelab import search, spaces, studies, trainers

STRATEGIES = {"freeze_thaw": lambda: search.FreezeThaw(seed=0), "asha": lambda: search.ASHA(seed=0),
              "hyperband": lambda: search.Hyperband(seed=0)}


def main(argv: Sequence[str] | None = None) -> studies.TrialRecord | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=list(STRATEGIES), default="freeze_thaw")
    parser.add_argument("--epochs", type=int, default=200, help="the study's budget: epochs over all trials")
    parser.add_argument("--epochs-per-trial", type=int, default=20, help="a full training")
    parser.add_argument("--n-train", type=int, default=None, help="fewer training examples, for a quick run")
    parser.add_argument("--storage", default="sqlite:///multi_fidelity.db")
    args = parser.parse_args(argv)

    space = spaces.optimizers(["adamw", "sgd"]) | spaces.schedules(["constant", "cosine"]) | spaces.mlp()
    trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=args.n_train), epochs=args.epochs_per_trial)
    study = studies.create(f"multi_fidelity-{args.strategy}", args.storage, space=space, trainer=trainer,
                           strategy=STRATEGIES[args.strategy](), load_if_exists=True)
    best = study.optimize(epochs=args.epochs)  # a total: a rerun after a crash finishes the same budget
    trials = study.trials
    print(f"{len(trials)} configurations, {sum(t.epochs for t in trials)} epochs; "
          f"full trainings: {sum(t.epochs == args.epochs_per_trial for t in trials)}")
    if best is not None:
        print(f"best validation accuracy {best.value:.4f} after {best.epochs} epochs: {best.config}")
    else:
        print("no configuration has been trained to its last epoch yet: give a larger budget")
    return best


if __name__ == "__main__":
    main()
