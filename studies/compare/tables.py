"""A comparison's results as pandas tables: every tuning trial, the reruns, one row per arm, the time-to-target profile.

Each function reads a comparison through the few members it needs (`Comparison` is one) and
computes with `analysis` and `stats`; nothing here trains or writes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tunelab.spaces import optimizer_spec
from tunelab.studies.compare import analysis, stats
from tunelab.studies.compare.manifest import KS, Arm
from tunelab.studies.compare.verdict import Estimate
from tunelab.studies.compare.verdict import verdict as decide


def _of(frame: Any, arm: Arm) -> Any:
    """The rows of `arm` in a frame with problem / optimizer / schedule columns."""
    if not len(frame):
        return frame
    return frame[(frame.problem == arm.problem) & (frame.optimizer == arm.optimizer) & (frame.schedule == arm.schedule)]


def results(comparison: Any) -> Any:
    """Every tuning trial as a pandas DataFrame.

    Columns: problem, optimizer, schedule, seed, number, state, value (validation metric),
    diverged, test_metric, epochs, grad_evals, seconds, lr, error, and `params.<name>`.
    """
    import pandas as pd

    rows = []
    for arm in comparison.arms():
        for s in comparison.seeds:
            for t in comparison.records(arm, s):
                rows.append({
                    "problem": arm.problem, "optimizer": arm.optimizer, "schedule": arm.schedule, "seed": s,
                    "number": t.number, "state": str(t.state), "value": t.value, "diverged": analysis.diverged(t),
                    "test_metric": t.test_metric, "epochs": t.epochs, "grad_evals": t.grad_evals,
                    "seconds": t.seconds, "lr": analysis.learning_rate(t.config), "error": t.error,
                    **{f"params.{k}": v for k, v in t.config.items() if not k.startswith("model")},
                })
    return pd.DataFrame(rows)


def runs(comparison: Any) -> Any:
    """The reruns of selected configurations and the one-shot runs of the defaults (a DataFrame).

    Columns: problem, optimizer, schedule, seed (study seed), run_seed, kind ("selected" or
    "default"), state, value, test_metric, epochs, grad_evals, and curve (validation per epoch).
    """
    import pandas as pd

    rows = []
    for arm in comparison.arms():
        for s in comparison.seeds:
            for i, t in enumerate(comparison.records(arm, s, runs=True)):
                rows.append({
                    "problem": arm.problem, "optimizer": arm.optimizer, "schedule": arm.schedule, "seed": s,
                    "run_seed": t.seed, "kind": "selected" if i < comparison.reruns else "default",
                    "state": str(t.state), "value": t.value, "test_metric": t.test_metric, "epochs": t.epochs,
                    "grad_evals": t.grad_evals, "curve": list(t.curve),
                })
    return pd.DataFrame(rows)


def table(comparison: Any, ks: Sequence[int] = KS, *, level: float = stats.LEVEL) -> Any:
    """The comparison, one row per problem, optimizer and schedule (a pandas DataFrame).

    Columns:
        problem, optimizer, schedule: the arm.
        trials: Tuning trials per study; epochs: epochs of one trial; grad_evals_per_step.
        one_shot_val, one_shot_test: the defaults' mean validation and test metric over the
            rerun seeds (Schmidt et al.'s one-shot setting).
        best_val@k, best_val@k_lo, best_val@k_hi: the expected best validation metric of k
            trials and its bootstrap interval (k in `ks`, and "budget" for the full budget).
        test_mean, test_std, test_lo, test_hi, test_n: test metric of the selected
            configuration over its reruns (all study seeds), with a Student-t interval.
        best_val: The best validation metric of any tuning trial (over study seeds).
        diverged: Share of tuning trials that diverged or failed.
        seconds_per_step, timed_trials: Median seconds per optimizer step (validation
            included) over the arm's complete tuning trials, and how many were timed.
        cost_per_step, cost_per_step_lo, cost_per_step_hi: The median seconds per step
            relative to AdamW's (or the first optimizer's) on the same problem and schedule,
            with a bootstrap interval over the trials of both; NaN (left out) with fewer than
            `analysis.MIN_TIMED` timed trials on either side.
        best_config: The selected configuration of the best study (model entries left out).
        at_boundary: Its numeric hyperparameters within 5% of an end of their range (the range
            may be too narrow there).

    `table().attrs` holds "estimator" ("dodge" or "best_so_far") and "level".
    """
    import pandas as pd

    reruns = runs(comparison)
    rows, seconds = [], {}
    for arm in comparison.arms():
        base = comparison.problems[arm.problem].trainer
        full = comparison.trials_per_study(arm)
        est, lo, hi = comparison.expected_best(arm, [*ks, max(full, 1)], level=level)
        mine = _of(reruns, arm)
        default, selected = (mine[mine.kind == kind] if len(mine) else mine for kind in ("default", "selected"))
        tests = selected["test_metric"].astype(float).to_numpy() if len(selected) else np.array([])
        mean, std, tlo, thi = stats.mean_interval(tests, level)
        records = [t for s in comparison.seeds for t in comparison.records(arm, s)]
        seconds[arm] = analysis.step_seconds(records, base.steps_per_epoch(base.batch_size))
        best = comparison.best(arm)
        row: dict[str, Any] = {
            "problem": arm.problem, "optimizer": arm.optimizer, "schedule": arm.schedule,
            "trials": full, "epochs": comparison.epochs(arm),
            "grad_evals_per_step": optimizer_spec({"optimizer": arm.optimizer}).grad_evals,
            "one_shot_val": analysis.mean(default["value"]) if len(default) else math.nan,
            "one_shot_test": analysis.mean(default["test_metric"]) if len(default) else math.nan,
        }
        for j, k in enumerate([*ks, "budget"]):
            row[f"best_val@{k}"], row[f"best_val@{k}_lo"], row[f"best_val@{k}_hi"] = est[j], lo[j], hi[j]
        row.update({
            "test_mean": mean, "test_std": std, "test_lo": tlo, "test_hi": thi,
            "test_n": int(np.isfinite(tests).sum()),
            "best_val": best.value if best else math.nan,
            "diverged": analysis.diverged_share(records),
            "seconds_per_step": float(np.median(seconds[arm])) if seconds[arm] else math.nan,
            "timed_trials": len(seconds[arm]),
            "cost_per_step": math.nan, "cost_per_step_lo": math.nan, "cost_per_step_hi": math.nan,
            "best_config": {k: v for k, v in best.config.items() if not k.startswith("model")} if best else None,
            "at_boundary": tuple(analysis.at_boundary(comparison.space(arm), best.config)) if best else (),
        })
        rows.append(row)
    reference = "adamw" if "adamw" in comparison.optimizers else comparison.optimizers[0]
    for row, arm in zip(rows, comparison.arms(), strict=True):
        ref = seconds.get(Arm(arm.problem, reference, arm.schedule), [])
        cost = analysis.cost_ratio(seconds[arm], ref, level=level)
        if arm.optimizer == reference and math.isfinite(cost[0]):
            cost = (1.0, 1.0, 1.0)  # the unit: its interval against itself says nothing
        row["cost_per_step"], row["cost_per_step_lo"], row["cost_per_step_hi"] = cost
    frame = pd.DataFrame(rows)
    frame.attrs.update({"estimator": "dodge" if comparison.iid else "best_so_far", "level": level,
                        "cost_reference": reference})
    return frame


def profile(comparison: Any, *, target_fraction: float = 0.75, tau_max: float = 4.0) -> Any:
    """Time to target on each problem, with a tie rule, and the AlgoPerf-style score of each arm (a DataFrame).

    The target of a problem is the best, over arms, of the value that the median validation
    curve of the arm's reruns (the selected configuration on fresh seeds) has after
    `target_fraction` of its run. AlgoPerf sets targets from what the best baseline reaches
    with 75% of the budget, so that others can reach them too. An arm's time is the number
    of gradient evaluations until its median curve first reaches the target (inf: never).
    Each rerun's own time gives the time's spread. Tie rule (`analysis.ties`): an arm whose
    fastest rerun reaches the target no later than the fastest arm's slowest rerun is tied
    with it, and counts as fastest (ratio 1). The score is the normalised area under the
    performance profile of these ratios on `[1, tau_max]` (`stats.profile_score`).

    Returns:
        One row per optimizer and schedule; per problem: `time@<problem>` (gradient
        evaluations), `time@<problem>_lo` and `_hi` (its fastest and slowest rerun),
        `reached@<problem>` (share of reruns that reach the target), `tied@<problem>`,
        `ratio@<problem>` (1 when tied); and `score`. `attrs["targets"]`: problem -> target.
    """
    import pandas as pd

    targets: dict[str, float] = {}
    times: dict[str, dict[str, float]] = {}
    scored: dict[str, dict[str, float]] = {}  # times with a tied arm at the fastest's time
    extra: dict[str, dict[str, Any]] = {}
    for problem in comparison.problems:
        arms = [arm for arm in comparison.arms() if arm.problem == problem]
        base = comparison.problems[problem].trainer
        steps = base.steps_per_epoch(base.batch_size)
        cost = {arm: steps * optimizer_spec({"optimizer": arm.optimizer}).grad_evals for arm in arms}
        curves = {arm: comparison.rerun_curves(arm) for arm in arms}
        maximize = comparison.maximize(problem)
        target, reached = analysis.targets_and_times(
            {arm: analysis.median_curve(curves[arm]) for arm in arms}, {arm: comparison.epochs(arm) for arm in arms},
            cost, maximize=maximize, target_fraction=target_fraction)
        if target is None:
            continue
        targets[problem] = target
        runs = {arm: analysis.run_times(curves[arm], target, cost[arm], maximize=maximize) for arm in reached}
        spans = {arm: (min(r, default=math.inf), max(r, default=math.inf)) for arm, r in runs.items()}
        tied = analysis.ties(reached, spans)
        fastest = min(reached.values())
        for arm, time in reached.items():
            label = f"{arm.optimizer}|{arm.schedule}"
            times.setdefault(label, {})[problem] = time
            scored.setdefault(label, {})[problem] = fastest if tied[arm] else time
            extra.setdefault(label, {}).update({
                f"time@{problem}_lo": spans[arm][0], f"time@{problem}_hi": spans[arm][1],
                f"reached@{problem}": float(np.mean([math.isfinite(t) for t in runs[arm]])) if runs[arm] else 0.0,
                f"tied@{problem}": tied[arm]})
    ratios = stats.performance_ratios(scored)
    scores = stats.profile_score(scored, tau_max) if scored else {}
    rows = []
    for label, per in times.items():
        opt, sched = label.split("|")
        row: dict[str, Any] = {"optimizer": opt, "schedule": sched}
        for p in targets:
            row[f"time@{p}"] = per.get(p, math.inf)
            for key in (f"time@{p}_lo", f"time@{p}_hi", f"reached@{p}", f"tied@{p}"):
                row[key] = extra[label].get(key, math.nan)
            row[f"ratio@{p}"] = ratios[label].get(p, math.inf)
        row["score"] = scores[label]
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs.update({"targets": targets, "tau_max": tau_max, "target_fraction": target_fraction})
    return frame


def verdict(comparison: Any, table: Any) -> str:
    """The comparison's one-line verdict from `table`'s expected best at the full budget (`verdict.verdict`).

    Args:
        comparison: The comparison (`Comparison` is one).
        table: Its `table()`.

    Returns:
        The sentence: the optimizer whose interval lies clear of every other's, or that none is better.
    """
    per_problem = {
        problem: [Estimate(Arm(r["problem"], r["optimizer"], r["schedule"]).label(comparison.schedules),
                           float(r["best_val@budget"]), float(r["best_val@budget_lo"]),
                           float(r["best_val@budget_hi"]), int(r["trials"]))
                  for r in table.to_dict("records") if r["problem"] == problem]
        for problem in comparison.problems
    }
    reliable = table.attrs.get("estimator") == "dodge" or len(comparison.seeds) >= 2
    return decide(per_problem, maximize={p: comparison.maximize(p) for p in comparison.problems},
                  metric={p: comparison.problems[p].trainer.workload.metric for p in comparison.problems},
                  reliable=reliable, level=table.attrs.get("level", stats.LEVEL))
