"""The plots of an optimizer comparison (`Comparison.plot`, `Comparison.report`).

Expected best validation metric vs budget with bootstrap bands (Dodge et al. 2019), learning
curves of the reruns of the selected configurations, validation metric vs learning rate over all
tuning trials (sensitivity), and, with several problems, the performance profile with AlgoPerf
scores (Dahl et al. 2023). Each reads the comparison through `ComparisonView`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tunelab.spaces import optimizer_spec
from tunelab.studies.compare import stats
from tunelab.studies.compare.manifest import Arm


class ComparisonView(Protocol):
    """What the plots and the report read of a comparison (`studies.compare.Comparison` is one)."""

    name: str
    storage_url: str
    problems: dict[str, Any]
    optimizers: list[str]
    schedules: list[str]
    budget: dict[str, int]
    strategy: Any
    seeds: list[int]
    reruns: int
    equalize: str
    one_shot: bool

    def arms(self) -> list[Arm]: ...  # noqa: D102

    def trials_per_study(self, arm: Arm) -> int: ...  # noqa: D102

    def expected_best(self, arm: Arm, ks: Any) -> tuple[Any, Any, Any]: ...  # noqa: D102

    def rerun_curves(self, arm: Arm) -> list[list[float]]: ...  # noqa: D102

    def results(self) -> Any: ...  # noqa: D102

    def table(self) -> Any: ...  # noqa: D102

    def profile(self) -> Any: ...  # noqa: D102

    def maximize(self, problem: str) -> bool: ...  # noqa: D102


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panels(n: int) -> tuple[Any, list[Any]]:
    plt = _pyplot()
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.9 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _log_axis(ax: Any, plain: bool = True) -> None:
    """A log x axis; with `plain`, ticks read 1, 2, 5, 10, 20 rather than powers of ten."""
    from matplotlib import ticker

    ax.set_xscale("log")
    if plain:
        ax.xaxis.set_major_locator(ticker.FixedLocator([1, 2, 5, 10, 20, 50, 100, 200, 500]))
        ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def _colors(comparison: ComparisonView) -> dict[tuple[str, str], Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    keys = [(o, s) for o in comparison.optimizers for s in comparison.schedules]
    return {k: cmap(i % 10) for i, k in enumerate(keys)}


def metric_name(comparison: ComparisonView, problem: str) -> str:
    """The name of `problem`'s metric (such as accuracy)."""
    return comparison.problems[problem].trainer.workload.metric


def plot_expected_best(comparison: ComparisonView, path: Path) -> Path:
    """Expected best validation metric of k trials, k = 1..budget, with bootstrap bands; one panel per problem."""
    colors = _colors(comparison)
    problems = list(comparison.problems)
    fig, axes = _panels(len(problems))
    for ax, problem in zip(axes, problems, strict=True):
        for arm in (a for a in comparison.arms() if a.problem == problem):
            full = comparison.trials_per_study(arm)
            if full < 1:
                continue
            ks = list(range(1, full + 1))
            est, lo, hi = comparison.expected_best(arm, ks)
            color = colors[(arm.optimizer, arm.schedule)]
            ax.plot(ks, est, color=color, label=arm.label(comparison.schedules))
            ax.fill_between(ks, lo, hi, color=color, alpha=0.15, lw=0)
        _log_axis(ax)
        ax.set_xlabel("budget k (trials)")
        ax.set_ylabel(f"expected best validation {metric_name(comparison, problem)}")
        ax.set_title(problem)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_curves(comparison: ComparisonView, path: Path) -> Path:
    """Validation curves of the reruns of each selected configuration (median, min-max band) vs gradient evaluations."""
    colors = _colors(comparison)
    problems = list(comparison.problems)
    fig, axes = _panels(len(problems))
    for ax, problem in zip(axes, problems, strict=True):
        base = comparison.problems[problem].trainer
        steps = base.steps_per_epoch(base.batch_size)
        for arm in (a for a in comparison.arms() if a.problem == problem):
            curves = comparison.rerun_curves(arm)
            if not curves:
                continue
            n = min(len(c) for c in curves)
            if n == 0:
                continue
            data = np.array([c[:n] for c in curves], dtype=np.float64)
            g = _grad_evals(arm)
            x = np.arange(1, n + 1) * g  # one-pass-optimizer epochs of compute
            color = colors[(arm.optimizer, arm.schedule)]
            with np.errstate(all="ignore"):
                ax.plot(x, np.nanmedian(data, axis=0), color=color, label=arm.label(comparison.schedules))
                ax.fill_between(x, np.nanmin(data, axis=0), np.nanmax(data, axis=0), color=color, alpha=0.15, lw=0)
        ax.set_xlabel(f"compute (epochs of {steps} single-gradient steps)")
        ax.set_ylabel(f"validation {metric_name(comparison, problem)}")
        ax.set_title(f"{problem}: reruns of the selected configurations")
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_lr(comparison: ComparisonView, path: Path) -> Path:
    """Final validation metric of every tuning trial against its learning rate; diverged trials as crosses."""
    colors = _colors(comparison)
    frame = comparison.results()
    problems = list(comparison.problems)
    fig, axes = _panels(len(problems))
    for ax, problem in zip(axes, problems, strict=True):
        mine = frame[frame.problem == problem] if len(frame) else frame
        finite = mine["value"].dropna() if len(mine) else []
        low = float(np.min(finite)) if len(finite) else 0.0
        for arm in (a for a in comparison.arms() if a.problem == problem):
            rows = mine[(mine.optimizer == arm.optimizer) & (mine.schedule == arm.schedule)] if len(mine) else mine
            if not len(rows):
                continue
            color = colors[(arm.optimizer, arm.schedule)]
            ok = rows[rows.value.notna() & rows.lr.notna()]
            ax.scatter(ok.lr, ok.value, s=14, color=color, alpha=0.8, label=arm.label(comparison.schedules))
            bad = rows[rows.value.isna() & rows.lr.notna()]
            if len(bad):
                ax.scatter(bad.lr, [low] * len(bad), s=22, marker="x", color=color, alpha=0.8)
        _log_axis(ax, plain=False)
        ax.set_xlabel("learning rate (base lr of the schedule)")
        ax.set_ylabel(f"validation {metric_name(comparison, problem)}")
        ax.set_title(f"{problem}: lr sensitivity (x: diverged)")
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_profile(comparison: ComparisonView, path: Path, profile: Any) -> Path:
    """Performance profiles: share of problems an arm reaches the target within tau x the fastest time."""
    plt = _pyplot()
    colors = _colors(comparison)
    problems = list(profile.attrs["targets"])
    tau_max = profile.attrs["tau_max"]
    taus = np.linspace(1.0, tau_max, 301)
    records = profile.to_dict("records")
    # the ratios after the tie rule (1 for the fastest and the arms tied with it) are the times to profile
    times = {f"{r['optimizer']}|{r['schedule']}": {p: r[f"ratio@{p}"] for p in problems} for r in records}
    curves = stats.performance_profile(times, taus)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in records:
        opt, sched = r["optimizer"], r["schedule"]
        label = opt if len(comparison.schedules) == 1 else f"{opt}+{sched}"
        ax.step(taus, curves[f"{opt}|{sched}"], where="post", color=colors[(opt, sched)],
                label=f"{label} (score {r['score']:.2f})")
    ax.set_xlabel("tau: time to target / fastest time (gradient evaluations)")
    ax.set_ylabel("share of problems")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"Performance profile over {len(problems)} problems")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _grad_evals(arm: Arm) -> int:
    return optimizer_spec({"optimizer": arm.optimizer}).grad_evals


__all__ = ["ComparisonView", "metric_name", "plot_curves", "plot_expected_best", "plot_lr", "plot_profile"]
