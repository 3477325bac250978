"""Running a comparison: every arm's tuning study, then the reruns of what it selected, on one executor.

Each step is an ordinary study with a budget that is a total, so calling `run` again after an
interruption trains only what is missing: finished studies stop at once, and an interrupted one
continues where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tunelab.studies.compare import stats
from tunelab.studies.errors import TrialError
from tunelab.studies.executors import Executor
from tunelab.studies.records import TrialState


def optimize_or_report(study: Any, budget: Mapping[str, int], executor: Executor, say: str | None,
                       population: int = 1) -> bool:
    """Run `study` to `budget` on `executor`; False (after printing why, after `say`) when every trial failed."""
    try:
        study.optimize(**budget, executor=executor, progress=False, population=population)
    except TrialError as err:
        if say is not None:
            print(f"{say}: {err}")
        return False
    return True


def interrupted(study: Any) -> bool:
    """Whether a study has trials that are not finished (Ctrl-C paused it)."""
    return any(t.state in (TrialState.PAUSED, TrialState.RUNNING, TrialState.PENDING) for t in study.trials)


def run_all(comparison: Any, executor: Executor, progress: bool, population: int = 1) -> bool:
    """Tune every arm on every study seed, then rerun the selected configuration (see `Comparison.run`).

    Returns:
        True when everything is done; False when interrupted, or when every trial of an arm failed.
    """
    jobs = [(arm, s) for arm in comparison.arms() for s in comparison.seeds]
    complete = True
    for i, (arm, s) in enumerate(jobs, start=1):
        comparison.forget_records()
        t0 = time.monotonic()
        where = f"[{i}/{len(jobs)}] {arm.problem} {arm.optimizer} {arm.schedule} seed {s}"
        tuning = comparison.tuning_study(arm, s)
        if not optimize_or_report(tuning, comparison.budget, executor, f"{where}, tuning" if progress else None,
                                  population):
            complete = False
            continue
        if interrupted(tuning):
            return _paused(comparison, progress)
        best = tuning.best
        if best is None:
            complete = False
            if progress:
                print(f"{where}: no trial completed, nothing to rerun")
            continue
        runs = comparison.runs_study(arm, s, best.config)
        n_runs = comparison.reruns * (2 if comparison.one_shot else 1)
        if not optimize_or_report(runs, {"trials": n_runs}, executor, f"{where}, reruns" if progress else None,
                                  population):
            complete = False
            continue
        if interrupted(runs):
            return _paused(comparison, progress)
        if progress:
            test = stats.mean_interval([t.test_metric if t.test_metric is not None else float("nan")
                                        for t in comparison.records(arm, s, runs=True)[: comparison.reruns]])[0]
            print(f"{where}: best val {best.value:.4f} of {len(tuning.trials)} trials, reruns test {test:.4f} "
                  f"({time.monotonic() - t0:.0f} s)", flush=True)
    comparison.forget_records()
    return complete


def _paused(comparison: Any, progress: bool) -> bool:
    if progress:
        print(f"comparison {comparison.name!r} paused; run the same call again to continue where it stopped")
    return False
