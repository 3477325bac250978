"""Which hyperparameters matter for each optimizer of a comparison (SGD's learning rate, AdamW's weight decay, ...).

For every arm (problem, optimizer, schedule), the complete tuning trials of all its study seeds
are pooled (one space: the arm's) and ranked by Optuna's PED-ANOVA evaluator
(`studies.importance`). Fixed parameters (the problem's model, the schedule's name, the
optimizer's family) are left out. The comparison's report shows one line per arm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from tunelab.studies.errors import TooFewTrialsError
from tunelab.studies.importance import MIN_TRIALS, Importance, importance_of

if TYPE_CHECKING:
    from tunelab.studies.compare.manifest import Arm
    from tunelab.studies.records import TrialRecord


class Arms(Protocol):
    """What importance reads of a comparison (`studies.compare.Comparison` is one)."""

    problems: dict[str, Any]
    schedules: list[str]
    seeds: list[int]

    def arms(self) -> list[Arm]:
        """Every (problem, optimizer, schedule)."""
        ...

    def space(self, arm: Arm) -> Any:
        """The arm's tuned space."""
        ...

    def records(self, arm: Arm, seed: int) -> list[TrialRecord]:
        """The trials of the arm's tuning study of one study seed."""
        ...

    def maximize(self, problem: str) -> bool:
        """Whether the problem's metric is better when larger."""
        ...


def arm_importance(comparison: Arms, arm: Arm, method: str = "ped_anova", *, seed: int = 0,
                   min_trials: int = MIN_TRIALS) -> Importance:
    """The hyperparameter importance of one arm, over the tuning trials of all its study seeds.

    Args:
        comparison: The comparison.
        arm: One of `comparison.arms()`.
        method: "ped_anova" (default) or "fanova".
        seed: The seed of fANOVA's random forest.
        min_trials: The fewest complete trials to compute on.

    Returns:
        The arm's `Importance` of its problem's validation metric.

    Raises:
        TooFewTrialsError: The arm's studies hold fewer than `min_trials` complete trials.
        ConfigError: An unknown method.
    """
    trials = [t for s in comparison.seeds for t in comparison.records(arm, s)]
    direction = "maximize" if comparison.maximize(arm.problem) else "minimize"
    metric = str(getattr(comparison.problems[arm.problem].trainer, "metric", "validation metric"))
    return importance_of(trials, comparison.space(arm), directions=(direction,), objective=f"validation {metric}",
                         method=method, seed=seed, min_trials=min_trials,
                         what=f"arm {arm.problem}/{arm.label(comparison.schedules)}")


def importance_section(comparison: Arms) -> list[str]:
    """The report's "Hyperparameter importance per optimizer" section, as Markdown lines (PED-ANOVA: fast).

    Args:
        comparison: The comparison.

    Returns:
        The section's lines: one table row per arm, its parameters largest first, or why it has none.
    """
    rows = []
    for arm in comparison.arms():
        try:
            found = arm_importance(comparison, arm)
        except TooFewTrialsError as err:
            rows.append(f"| {arm.problem} | {arm.label(comparison.schedules)} | - | skipped: {err} |")
            continue
        except (ValueError, RuntimeError) as err:  # Optuna refusing unusual data must not cost the whole report
            rows.append(f"| {arm.problem} | {arm.label(comparison.schedules)} | - | not available "
                        f"({type(err).__name__}) |")
            continue
        scores = ", ".join(f"`{k}` {v:.2f}" for k, v in found.scores.items()) or "no varied parameter"
        rows.append(f"| {arm.problem} | {arm.label(comparison.schedules)} | {found.n_trials} | {scores} |")
    return [
        "## Hyperparameter importance per optimizer",
        "",
        "Which hyperparameters mattered for each optimizer: PED-ANOVA importance (Optuna's "
        "PedAnovaImportanceEvaluator, Watanabe et al. 2023) of the validation metric over the arm's complete tuning "
        f"trials of every study seed (at least {MIN_TRIALS}): how much a hyperparameter's values among the arm's best "
        "trials (its top 10%, and at least 5 trials) differ from its values over all of them. Each row sums to 1; "
        "fixed parameters are left out.",
        "",
        "| problem | optimizer | trials | importance, largest first |",
        "|---|---|---:|---|",
        *rows,
        "",
    ]


__all__ = ["Arms", "arm_importance", "importance_section"]
