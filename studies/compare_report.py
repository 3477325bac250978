"""The report of an optimizer comparison: a Markdown file and PNG plots (`Comparison.report`).

Plots: expected best validation metric vs budget with bootstrap bands (Dodge et al. 2019),
learning curves of the reruns of the selected configurations, validation metric vs learning
rate over all tuning trials (sensitivity), and, with several problems, the performance profile
with AlgoPerf scores (Dahl et al. 2023).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from studies.compare import Arm, Comparison


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


def _colors(comparison: Comparison) -> dict[tuple[str, str], Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    keys = [(o, s) for o in comparison.optimizers for s in comparison.schedules]
    return {k: cmap(i % 10) for i, k in enumerate(keys)}


def _metric(comparison: Comparison, problem: str) -> str:
    return comparison.problems[problem].trainer.workload.metric


def plot_expected_best(comparison: Comparison, path: Path) -> Path:
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
        ax.set_ylabel(f"expected best validation {_metric(comparison, problem)}")
        ax.set_title(problem)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_curves(comparison: Comparison, path: Path) -> Path:
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
        ax.set_ylabel(f"validation {_metric(comparison, problem)}")
        ax.set_title(f"{problem}: reruns of the selected configurations")
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_lr(comparison: Comparison, path: Path) -> Path:
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
        ax.set_ylabel(f"validation {_metric(comparison, problem)}")
        ax.set_title(f"{problem}: lr sensitivity (x: diverged)")
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_profile(comparison: Comparison, path: Path, profile: Any) -> Path:
    """Performance profiles: share of problems an arm reaches the target within tau x the fastest time."""
    from studies import stats

    plt = _pyplot()
    colors = _colors(comparison)
    problems = list(profile.attrs["targets"])
    tau_max = profile.attrs["tau_max"]
    taus = np.linspace(1.0, tau_max, 301)
    records = profile.to_dict("records")
    times = {f"{r['optimizer']}|{r['schedule']}": {p: r[f"time@{p}"] for p in problems} for r in records}
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
    from spaces import optimizer_spec

    return optimizer_spec({"optimizer": arm.optimizer}).grad_evals


def _f(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _ci(row: Any, key: str) -> str:
    est, lo, hi = row[key], row[f"{key}_lo"], row[f"{key}_hi"]
    if not math.isfinite(est):
        return "-"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return _f(est)
    return f"{est:.4f} [{lo:.3f}, {hi:.3f}]"


def _config(config: dict[str, Any] | None, boundary: tuple[str, ...]) -> str:
    if not config:
        return "-"
    parts = []
    for k, v in config.items():
        if k in ("optimizer", "schedule"):
            continue
        text = f"{v:.3g}" if isinstance(v, float) else str(v)
        parts.append(f"{k}={text}{' (at bound)' if k in boundary else ''}")
    return ", ".join(parts)


def markdown_table(comparison: Comparison, table: Any) -> list[str]:
    """The comparison's table as Markdown lines, one table per problem.

    When every arm ran the same number of trials n, the full-budget column is headed `k=n (all)`
    and a `k` column equal to it is left out.
    """
    ks = [c[len("best_val@"):] for c in table.columns if c.startswith("best_val@") and not c.endswith(("_lo", "_hi"))]
    full = set(table["trials"])
    heads = {k: f"k={k}" for k in ks}
    if len(full) == 1:
        n = full.pop()
        ks = [k for k in ks if k != str(n)]
        heads["budget"] = f"k={n} (all)"
    lines = []
    for problem in comparison.problems:
        rows = table[table.problem == problem]
        metric = _metric(comparison, problem)
        lines += [
            f"### {problem} (validation and test {metric})",
            "",
            "| optimizer | one-shot test | " + " | ".join(f"E[best val] {heads[k]}" for k in ks)
            + " | test of selected (mean ± sd [95% CI], n) | diverged | cost/step |",
            "|---|---:|" + "---:|" * len(ks) + "---:|---:|---:|",
        ]
        for _, r in rows.iterrows():
            label = r.optimizer if len(comparison.schedules) == 1 else f"{r.optimizer} + {r.schedule}"
            test = "-"
            if math.isfinite(r.test_mean):
                spread = f" ± {r.test_std:.4f} [{r.test_lo:.3f}, {r.test_hi:.3f}]" if math.isfinite(r.test_std) else ""
                test = f"{r.test_mean:.4f}{spread}, n={r.test_n}"
            lines.append(
                f"| {label} | {_f(r.one_shot_test)} | " + " | ".join(_ci(r, f"best_val@{k}") for k in ks)
                + f" | {test} | {_f(100 * r.diverged, 0)}% | {_f(r.cost_per_step, 2)}x |"
            )
        lines.append("")
    return lines


def write_report(comparison: Comparison, folder: Path) -> Path:
    """Write `README.md` and the PNG plots of `comparison` into `folder`; return the Markdown path."""
    folder.mkdir(parents=True, exist_ok=True)
    table = comparison.table()
    images = [
        ("Expected best validation metric vs budget", plot_expected_best(comparison, folder / "expected_best.png")),
        ("Learning curves of the reruns", plot_curves(comparison, folder / "curves.png")),
        ("Learning-rate sensitivity", plot_lr(comparison, folder / "lr_sensitivity.png")),
    ]
    profile = comparison.profile()
    if len(comparison.problems) >= 2 and len(profile):
        images.append(("Performance profile", plot_profile(comparison, folder / "profile.png", profile)))
    estimator = ("Dodge et al. 2019's estimator over the trials of all study seeds (random search draws are "
                 "independent)" if table.attrs["estimator"] == "dodge" else
                 "the mean over study seeds of the best of the first k trials (the strategy is adaptive)")
    budget = ", ".join(f"{v} {k}" for k, v in comparison.budget.items())
    lines = [
        f"# Optimizer comparison `{comparison.name}`",
        "",
        "- problems: " + ", ".join(f"`{p}` ({c.trainer.epochs} epochs per run)"
                                   for p, c in comparison.problems.items()),
        f"- optimizers: {', '.join(comparison.optimizers)}; schedules: {', '.join(comparison.schedules)}",
        f"- tuning: `{comparison.strategy!r}`, {budget} per study, {len(comparison.seeds)} study seed(s); "
        f"trials equalized in {comparison.equalize.replace('_', ' ')}",
        f"- selected configurations rerun on {comparison.reruns} fresh seeds"
        + ("; the defaults trained on the same seeds (one-shot)" if comparison.one_shot else ""),
        f"- storage: `{comparison.storage_url}`",
        "",
        "## Results",
        "",
        f"E[best val] k: expected best validation metric of k trials with its 95% bootstrap interval, by {estimator}. "
        f"A failed or diverged trial counts as the worst result seen on its problem. Test: the selected "
        f"configuration retrained on fresh seeds, Student-t interval. Cost/step: median seconds per step relative to "
        f"{table.attrs['cost_reference']}.",
        "",
        *markdown_table(comparison, table),
        "## Selected configurations",
        "",
        "| problem | optimizer | configuration |",
        "|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(f"| {r.problem} | {r.optimizer} | {_config(r.best_config, r.at_boundary)} |")
    lines.append("")
    if len(profile):
        targets = profile.attrs["targets"]
        lines += [
            "## Time to target",
            "",
            "Target of a problem: the best value that any arm's median rerun curve has after "
            f"{int(100 * profile.attrs['target_fraction'])}% of its run. Time: gradient evaluations until the arm's "
            "median rerun curve first reaches the target (`inf`: never), and its ratio to the fastest arm. Score: "
            f"AlgoPerf's normalised area under the performance profile up to tau = {profile.attrs['tau_max']:g}.",
            "",
            "| optimizer | " + " | ".join(f"{p} (target {targets[p]:.4f})" for p in targets) + " | score |",
            "|---|" + "---:|" * (len(targets) + 1),
        ]
        for r in profile.to_dict("records"):
            label = r["optimizer"] if len(comparison.schedules) == 1 else f"{r['optimizer']} + {r['schedule']}"
            cells = [f"{r[f'time@{p}']:.0f} ({r[f'ratio@{p}']:.2f}x)" if math.isfinite(r[f"time@{p}"]) else "inf"
                     for p in targets]
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {r['score']:.2f} |")
        lines.append("")
    for title, path in images:
        lines += [f"## {title}", "", f"![{title}]({path.name})", ""]
    out = folder / "README.md"
    out.write_text("\n".join(lines))
    return out


__all__ = ["markdown_table", "plot_curves", "plot_expected_best", "plot_lr", "plot_profile", "write_report"]
