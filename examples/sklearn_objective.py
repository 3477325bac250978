"""A scikit-learn model tuned by Bayesian search: `trainers.Objective`, any black-box function.

Histogram gradient boosting (scikit-learn's LightGBM-style booster) on the breast-cancer data
that scikit-learn ships, scored by 5-fold cross-validated log loss. The objective returns the
value the study minimises and the cross-validated accuracy, which is recorded with every trial.
Nothing here is PyTorch: an objective can be any function of a configuration, a simulator or
an XGBoost model alike.

    python examples/sklearn_objective.py                 # 30 trials of Bayesian search
    python examples/sklearn_objective.py --strategy random
    tunelab show --storage sqlite:///sklearn_objective.db
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold, cross_validate

from tunelab import search, spaces, studies, trainers


@functools.lru_cache(maxsize=1)
def data() -> tuple[Any, Any]:
    """Breast-cancer features and labels (569 examples, 30 features)."""
    return load_breast_cancer(return_X_y=True)


def cross_validated(config: Mapping[str, Any]) -> dict[str, float]:
    """5-fold cross-validated log loss (the objective) and accuracy of one configuration."""
    x, y = data()
    model = HistGradientBoostingClassifier(
        learning_rate=config["learning_rate"], max_leaf_nodes=config["max_leaf_nodes"],
        min_samples_leaf=config["min_samples_leaf"], l2_regularization=config["l2_regularization"],
        max_iter=config["max_iter"], random_state=0)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    scores = cross_validate(model, x, y, cv=folds, scoring=("neg_log_loss", "accuracy"))
    return {"value": -float(scores["test_neg_log_loss"].mean()), "accuracy": float(scores["test_accuracy"].mean())}


SPACE = spaces.Space(
    learning_rate=spaces.Float(0.01, 0.5, log=True),
    max_leaf_nodes=spaces.Int(4, 64, log=True),
    min_samples_leaf=spaces.Int(2, 64, log=True),
    l2_regularization=spaces.Float(1e-4, 10.0, log=True),
    max_iter=spaces.Int(20, 200, log=True),
)

STRATEGIES = {"bayesian": lambda seed: search.Bayesian(seed=seed), "random": lambda seed: search.Random(seed=seed)}


def main(argv: Sequence[str] | None = None) -> studies.TrialRecord | None:
    """Run (or continue) the study; return its best trial."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=sorted(STRATEGIES), default="bayesian")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", default="sqlite:///sklearn_objective.db")
    args = parser.parse_args(argv)
    study = studies.create(f"hgb-{args.strategy}-{args.seed}", args.storage, space=SPACE,
                           trainer=trainers.Objective(cross_validated), strategy=STRATEGIES[args.strategy](args.seed))
    best = study.optimize(trials=args.trials)
    if best is not None:
        print(f"best cross-validated log loss {best.value:.4f}, accuracy {best.metrics['accuracy'][-1]:.4f}")
        print(best.config)
    return best


if __name__ == "__main__":
    main()
