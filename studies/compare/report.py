"""The report of an optimizer comparison: a Markdown file beside its PNG plots (`Comparison.report`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.studies.compare.analysis import MIN_TIMED
from tunelab.studies.compare.plots import (
    ComparisonView,
    metric_name,
    plot_curves,
    plot_expected_best,
    plot_lr,
    plot_profile,
)
from tunelab.studies.compare.tables import verdict


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


def _cost(row: Any, reference: str) -> str:
    if not math.isfinite(row.cost_per_step):
        return "-"
    if row.optimizer == reference:
        return "1 (reference)"
    return f"{row.cost_per_step:.2f}x [{row.cost_per_step_lo:.2f}, {row.cost_per_step_hi:.2f}]"


def supported_ks(table: Any) -> tuple[list[str], str]:
    """The `best_val@k` columns one problem's table can show, and the heading of the full-budget column.

    A k is shown only when every arm ran at least k trials (no column of "-"); when every arm
    ran the same n trials, the full-budget column is headed `k=n (all)` and a k equal to n is
    left out.
    """
    ks = [c[len("best_val@"):] for c in table.columns if c.startswith("best_val@") and not c.endswith(("_lo", "_hi"))]
    full = {int(n) for n in table["trials"] if n > 0}
    fewest = min(full, default=0)
    numeric = [k for k in ks if k != "budget"]
    if len(full) == 1:  # k = n is the full-budget column
        return [k for k in numeric if int(k) < fewest], f"k={fewest} (all)"
    return [k for k in numeric if int(k) <= fewest], "k=all trials"


def markdown_table(comparison: ComparisonView, table: Any) -> list[str]:
    """The comparison's table as Markdown lines, one table per problem (k columns as `supported_ks`)."""
    lines = []
    reference = table.attrs.get("cost_reference", "")
    for problem in comparison.problems:
        rows = table[table.problem == problem]
        ks, head = supported_ks(rows)
        heads = [f"E[best val] k={k}" for k in ks] + [f"E[best val] {head}"]
        metric = metric_name(comparison, problem)
        lines += [
            f"### {problem} (validation and test {metric})",
            "",
            "| optimizer | one-shot test | " + " | ".join(heads)
            + " | best trial val | test of selected (mean ± sd [95% CI], n) | diverged | cost/step [95% CI] |",
            "|---|---:|" + "---:|" * len(heads) + "---:|---:|---:|---:|",
        ]
        for _, r in rows.iterrows():
            label = r.optimizer if len(comparison.schedules) == 1 else f"{r.optimizer} + {r.schedule}"
            test = "-"
            if math.isfinite(r.test_mean):
                spread = f" ± {r.test_std:.4f} [{r.test_lo:.3f}, {r.test_hi:.3f}]" if math.isfinite(r.test_std) else ""
                test = f"{r.test_mean:.4f}{spread}, n={r.test_n}"
            lines.append(
                f"| {label} | {_f(r.one_shot_test)} | " + " | ".join(_ci(r, f"best_val@{k}") for k in [*ks, "budget"])
                + f" | {_f(r.best_val)} | {test} | {_f(100 * r.diverged, 0)}% | {_cost(r, reference)} |"
            )
        lines.append("")
    return lines


def legend(comparison: ComparisonView, table: Any) -> list[str]:
    """What the verdict and each column of the results mean: one Markdown line each."""
    level = f"{100 * table.attrs.get('level', 0.95):g}%"
    if table.attrs["estimator"] == "dodge":
        best = (f"E[best val] k: the expected best validation metric of k trials drawn with replacement from this "
                f"arm's tuning trials (Dodge et al. 2019), with a {level} percentile-bootstrap interval over the "
                f"trials; it is never better than the best single trial found and usually worse (an expectation, "
                f"not the maximum), and only k up to the trials per study are shown.")
    else:
        best = (f"E[best val] k: the mean over study seeds of the best of each study's first k trials (the "
                f"strategy is adaptive, so trials are not independent draws), with a {level} bootstrap interval "
                f"over study seeds; only k up to the trials per study are shown.")
    return [
        f"- Verdict: an optimizer is named best only when the {level} interval of its E[best val] with all its "
        f"trials lies clear of every other optimizer's; overlapping intervals mean no optimizer is better.",
        f"- {best}",
        "- best trial val: the best validation value of a single tuning trial (the configuration selected and rerun).",
        "- one-shot test: the optimizer's default hyperparameters, untuned, trained on the rerun seeds (mean test).",
        f"- test of selected: the selected configuration retrained on fresh seeds: mean ± sd, {level} Student-t "
        f"interval, n runs.",
        "- diverged: the share of tuning trials that failed or diverged; each counts as the worst result seen on "
        "its problem.",
        f"- cost/step: median seconds per optimizer step over an arm's tuning trials divided by "
        f"{table.attrs['cost_reference']}'s, with a {level} bootstrap interval over the trials of both; an interval "
        f"that contains 1 is no measurable difference, and \"-\" means fewer than {MIN_TIMED} timed trials.",
        "",
    ]


def _time(r: dict[str, Any], p: str, runs: int, fastest: float) -> str:
    def t(v: float) -> str:
        return f"{v:.0f}" if math.isfinite(v) else "never"

    reached = round(r[f"reached@{p}"] * runs) if math.isfinite(r[f"reached@{p}"]) else 0
    tied = isinstance(r[f"tied@{p}"], (bool, np.bool_)) and bool(r[f"tied@{p}"])
    if tied:
        ratio = "fastest, 1x" if r[f"time@{p}"] == fastest else "tied, 1x"
    else:
        ratio = f"{r[f'ratio@{p}']:.2f}x" if math.isfinite(r[f"ratio@{p}"]) else "never"
    return f"{t(r[f'time@{p}'])} [{t(r[f'time@{p}_lo'])}, {t(r[f'time@{p}_hi'])}], {reached}/{runs} ({ratio})"


def time_to_target(comparison: ComparisonView, profile: Any) -> list[str]:
    """The time-to-target section: times with the spread of the reruns, the tie rule, and the score."""
    if not len(profile):
        return []
    targets = profile.attrs["targets"]
    runs = comparison.reruns * len(comparison.seeds)
    lines = [
        "## Time to target",
        "",
        f"- Target: the best value any arm's median rerun curve has after {100 * profile.attrs['target_fraction']:g}% "
        f"of its run (AlgoPerf).",
        "- Time: gradient evaluations until the arm's median rerun curve reaches the target, [fastest, slowest] of "
        "its reruns, and how many reruns reach it.",
        "- Tie rule: an arm whose fastest rerun reaches the target no later than the fastest arm's slowest rerun "
        "(never counts as a time) is tied with it and counts as fastest (1x); otherwise its ratio is its time over "
        "the fastest arm's.",
        f"- Score: AlgoPerf's area under the performance profile of these ratios up to tau = "
        f"{profile.attrs['tau_max']:g}, normalised: 1 is fastest or tied everywhere, 0 never within "
        f"{profile.attrs['tau_max']:g}x.",
        "",
        "| optimizer | " + " | ".join(f"{p} (target {targets[p]:.4f})" for p in targets) + " | score |",
        "|---|" + "---:|" * (len(targets) + 1),
    ]
    records = profile.to_dict("records")
    fastest = {p: min(r[f"time@{p}"] for r in records) for p in targets}
    for r in records:
        label = r["optimizer"] if len(comparison.schedules) == 1 else f"{r['optimizer']} + {r['schedule']}"
        cells = " | ".join(_time(r, p, runs, fastest[p]) for p in targets)
        lines.append(f"| {label} | {cells} | {r['score']:.2f} |")
    lines.append("")
    if len(comparison.problems) < 2:
        lines += ["No performance profile (`profile.png`): it compares times over two or more problems, and this "
                  "comparison has one.", ""]
    return lines


def write_report(comparison: ComparisonView, folder: Path, table: Any = None) -> Path:
    """Write `README.md` and the PNG plots of `comparison` into `folder`; return the Markdown path.

    `table` is `comparison.table()` when the caller has it already (the CLI prints its verdict too).
    """
    folder.mkdir(parents=True, exist_ok=True)
    table = comparison.table() if table is None else table
    images = [
        ("Expected best validation metric vs budget", plot_expected_best(comparison, folder / "expected_best.png")),
        ("Learning curves of the reruns", plot_curves(comparison, folder / "curves.png")),
        ("Learning-rate sensitivity", plot_lr(comparison, folder / "lr_sensitivity.png")),
    ]
    profile = comparison.profile()
    if len(comparison.problems) >= 2 and len(profile):
        images.append(("Performance profile", plot_profile(comparison, folder / "profile.png", profile)))
    budget = ", ".join(f"{v} {k}" for k, v in comparison.budget.items())
    lines = [
        f"# Optimizer comparison `{comparison.name}`",
        "",
        f"**Verdict:** {verdict(comparison, table)}",
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
        *legend(comparison, table),
        *markdown_table(comparison, table),
        "## Selected configurations",
        "",
        "| problem | optimizer | configuration |",
        "|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(f"| {r.problem} | {r.optimizer} | {_config(r.best_config, r.at_boundary)} |")
    lines.append("")
    lines += time_to_target(comparison, profile)
    from tunelab.studies.compare.importance import importance_section  # which hyperparameters mattered, per arm

    lines += importance_section(comparison)
    for title, path in images:
        lines += [f"## {title}", "", f"![{title}]({path.name})", ""]
    out = folder / "README.md"
    out.write_text("\n".join(lines))
    return out


__all__ = ["legend", "markdown_table", "supported_ks", "time_to_target", "write_report"]
