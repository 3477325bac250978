"""The multi-objective part of a study's report: the Pareto front's table and plot, hypervolume over trials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunelab.studies.records import TrialState


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.5g}" if isinstance(v, float) else str(v)


def hypervolume_curve(study: Any, trials: list[Any]) -> list[tuple[int, float]]:
    """`(trials so far, hypervolume)` after each complete trial, against the worst values of all of them.

    Args:
        study: A multi-objective `studies.Study`.
        trials: Its records.
    """
    from tunelab.spaces.pareto import hypervolume

    done, points = study.points_of(trials)
    if not done:
        return []
    ref = points.max(axis=0)
    out = []
    for k in range(1, len(done) + 1):
        out.append((done[k - 1].number + 1, hypervolume(points[:k], ref)))
    return out


def pareto_section(study: Any, trials: list[Any], out: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Markdown lines and `(title, file)` images of a multi-objective study's front (nothing for one objective)."""
    goals = study.objectives
    if goals is None:
        return [], []
    import matplotlib.pyplot as plt

    front = study.pareto_front_of(trials)
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None
            and len(t.values) == len(goals.names)]
    lines = ["## Pareto front", "",
             f"{len(front)} of {len(done)} complete trials are on the front of "
             + ", ".join(f"{n} ({d})" for n, d in goals.as_dict().items()) + ".", "",
             "| trial | " + " | ".join(goals.names) + " | config |",
             "|---:|" + "---:|" * len(goals.names) + "---|"]
    for t in front:
        config = ", ".join(f"{k}={_fmt(v)}" for k, v in t.config.items())[:120].replace("|", "/")
        lines.append(f"| {t.number} | " + " | ".join(_fmt(v) for v in t.values) + f" | {config} |")
    lines.append("")
    images = []
    if done:
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5))
        x, y = goals.names[0], goals.names[1]
        ax.scatter([t.values[0] for t in done], [t.values[1] for t in done], s=12, color="0.6", label="trials")
        ax.plot([t.values[0] for t in front], [t.values[1] for t in front], "o-", color="tab:red", ms=5,
                drawstyle="steps-post" if goals.directions[0] == goals.directions[1] else "default",
                label="Pareto front")
        ax.set_xlabel(f"{x} ({goals.directions[0]})")
        ax.set_ylabel(f"{y} ({goals.directions[1]})")
        ax.set_title("Pareto front" + (f" (first two of {len(goals.names)} objectives)" if len(goals.names) > 2
                                       else ""))
        ax.legend()
        curve = hypervolume_curve(study, trials)
        bx.plot([n for n, _ in curve], [h for _, h in curve], color="tab:blue")
        bx.set_xlabel("trials")
        bx.set_ylabel("hypervolume")
        bx.set_title("Hypervolume so far (reference: the worst values)")
        fig.tight_layout()
        fig.savefig(out / "pareto.png", dpi=110)
        plt.close(fig)
        images.append(("Pareto front and hypervolume", "pareto.png"))
    return lines, images


__all__ = ["hypervolume_curve", "pareto_section"]
