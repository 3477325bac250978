"""The report of an optimizer comparison: a Markdown file beside its PNG plots (`Comparison.report`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tunelab.studies.compare.plots import (
    ComparisonView,
    metric_name,
    plot_curves,
    plot_expected_best,
    plot_lr,
    plot_profile,
)


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


def markdown_table(comparison: ComparisonView, table: Any) -> list[str]:
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
        metric = metric_name(comparison, problem)
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


def write_report(comparison: ComparisonView, folder: Path) -> Path:
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


__all__ = ["markdown_table", "write_report"]
