"""`report(study, folder)`: a Markdown summary of a study with PNG plots.

Plots: optimisation history and parameter importances from `optuna.visualization.matplotlib`
(fANOVA importances over the parameters every complete trial shares), the learning curves of
every trial from the study's stored curves, for each DARTS search its architecture weights
(softmax of alpha) per edge over the epochs, and for each self-tuning run its hyperparameter
schedule. Sections: the best trial, architecture searches, the Pareto front, hyperparameter
importance (PED-ANOVA's table, `studies.importance`) and every trial.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Protocol

from tunelab.studies.importance import in_memory_study
from tunelab.studies.importance import report_section as importance_section
from tunelab.studies.pareto_report import pareto_section
from tunelab.studies.records import TrialRecord, TrialState


class Study(Protocol):
    """What a report reads of a study (`studies.Study` is one; a study opened read-only is enough)."""

    name: str
    storage_url: str
    space: Any
    direction: str
    metric: str
    workload_name: str
    epochs: int | None
    strategy_text: str

    @property
    def trials(self) -> list[TrialRecord]: ...  # noqa: D102

    @property
    def best(self) -> TrialRecord | None: ...  # noqa: D102

    def curves(self) -> Any: ...  # noqa: D102

    def budget(self) -> dict[str, Any] | None: ...  # noqa: D102


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def _save(ax_or_fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = ax_or_fig.figure if hasattr(ax_or_fig, "figure") and not hasattr(ax_or_fig, "savefig") else ax_or_fig
    if isinstance(fig, (list, tuple)) or not hasattr(fig, "savefig"):
        fig = plt.gcf()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close("all")


def _plotted(plot: Any, trial: Any, path: Path, notes: list[str]) -> bool:
    """`plot(trial, path)`; what a routine stored that cannot be plotted becomes a note, not a failed report."""
    import matplotlib.pyplot as plt

    try:
        return bool(plot(trial, path))
    except Exception as err:  # a routine's results are whatever the database holds: damaged ones are skipped
        plt.close("all")
        notes.append(f"Trial {trial.number}'s {trial.routine} results cannot be plotted ({type(err).__name__}).")
        return False


def _plot_alphas(trial: Any, path: Path) -> bool:
    """Softmax of a DARTS search's alphas per edge over its epochs (one panel per edge); False if it has none."""
    import matplotlib.pyplot as plt

    alphas, ops = trial.results.get("alphas"), trial.results.get("ops")
    edges = trial.results.get("edges") or []
    if not alphas or not ops:
        return False
    epochs = range(1, len(alphas) + 1)
    cols = 3
    rows = max(1, math.ceil(len(edges) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(10, 2.7 * rows), sharex=True, sharey=True, squeeze=False)
    for e, ax in enumerate(axes.flat):
        if e >= len(edges):
            ax.axis("off")
            continue
        for k, op in enumerate(ops):
            ax.plot(epochs, [a[e][k] for a in alphas], label=op)
        ax.set_title(f"edge {edges[e]}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.supxlabel("epoch")
    fig.supylabel("softmax(alpha)")
    fig.suptitle(f"trial {trial.number}: {trial.results.get('genotype') or 'no genotype yet'}", fontsize=9)
    _save(fig, path)
    return True


def _plot_schedule(trial: Any, path: Path) -> bool:
    """A self-tuning run's hyperparameters over its epochs, and their perturbation scales (dashed, right axis)."""
    import matplotlib.pyplot as plt

    schedule, scales = trial.results.get("schedule") or {}, trial.results.get("scales") or {}
    if not schedule:
        return False
    names = list(schedule)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        values = schedule[name]
        ax.plot(range(1, len(values) + 1), values, color="C0")
        if scales.get(name):
            twin = ax.twinx()
            twin.plot(range(1, len(scales[name]) + 1), scales[name], color="C1", ls="--", lw=0.8)
            twin.tick_params(axis="y", labelcolor="C1", labelsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(f"trial {trial.number}: hyperparameter values (solid) and perturbation scales (dashed, right)",
                 fontsize=8)
    _save(fig, path)
    return True


def _optuna_copy(study: Study, trials: list[Any]) -> Any:
    """An in-memory Optuna study of the complete trials, for Optuna's plots and importance evaluators.

    Built from the records tunelab read and checked (`studies.limits`), never by Optuna reading the
    database itself: a damaged attribute or a gap in the trial numbers cannot break a plot.
    """
    from optuna.trial import create_trial

    frozen = []
    for t in trials:
        if t.state != TrialState.COMPLETE or t.value is None or not t.comparable:
            continue
        try:
            frozen.append(create_trial(params=t.config, distributions=study.space.distributions(t.config),
                                       value=t.value))
        except Exception:  # a config its space no longer describes cannot be placed in a plot's axes
            continue
    return in_memory_study(frozen, [study.direction])


def report(study: Study, folder: str | Path) -> Path:
    """Write `README.md` and PNG plots about `study` into `folder`; return the Markdown file's path.

    Needs only what the database stores: a study opened with `studies.load(..., read_only=True)`
    (no workload rebuilt, nothing imported) reports as well as a full one.

    Raises:
        ConfigError: `folder` exists and is not a folder.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    out = Path(folder)
    if out.exists() and not out.is_dir():
        from tunelab.spaces.errors import ConfigError

        raise ConfigError(f"the report folder {str(out)!r} is a file; give a folder path (it is created if missing)")
    out.mkdir(parents=True, exist_ok=True)
    trials = study.trials
    metric = study.metric
    counts = {s.value: sum(t.state == s for t in trials) for s in TrialState}
    ostudy = _optuna_copy(study, trials)
    images: list[tuple[str, str]] = []
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's matplotlib backend is marked experimental
        if counts["complete"]:
            _save(ovm.plot_optimization_history(ostudy, target_name=f"validation {metric}"), out / "history.png")
            images.append(("Optimisation history", "history.png"))
        curves = study.curves()
        searches = [t for t in trials if not t.comparable]  # a DARTS supernet's curve is another kind of number
        curves = curves.drop(columns=[t.number for t in searches if t.number in curves.columns])
        if not curves.empty:
            fig, ax = plt.subplots(figsize=(7, 4.5))
            best = study.best
            for number in curves.columns:
                is_best = best is not None and number == best.number
                ax.plot(curves.index, curves[number], lw=2.2 if is_best else 0.8, alpha=1.0 if is_best else 0.4,
                        label=f"best (trial {number})" if is_best else None, color="C3" if is_best else "0.55",
                        zorder=3 if is_best else 1)  # the best in colour, in front of the grey rest
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"validation {metric}")
            ax.set_title(f"Learning curves of {len(curves.columns)} trials")
            if best is not None:
                ax.legend()
            _save(fig, out / "curves.png")
            images.append(("Learning curves", "curves.png"))
        for t in searches[:8]:
            name = f"alphas-{t.number}.png"
            if _plotted(_plot_alphas, t, out / name, notes):
                images.append((f"Architecture weights of search trial {t.number} ({t.routine})", name))
        for t in [t for t in trials if t.results.get("schedule")][:8]:
            name = f"schedule-{t.number}.png"
            if _plotted(_plot_schedule, t, out / name, notes):
                images.append((f"Hyperparameter schedule of self-tuning trial {t.number}", name))
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        varied = sorted({k for t in done for k in t.config
                         if len({repr(d.config.get(k)) for d in done if k in d.config}) > 1})
        if len(done) >= 3 and varied:
            try:
                _save(ovm.plot_param_importances(ostudy, params=varied, target_name=f"validation {metric}"),
                      out / "importance.png")
                images.append(("Parameter importance (fANOVA)", "importance.png"))
                if len(done) < 10 * len(varied):
                    notes.append(f"Parameter importance from {len(done)} complete trials over {len(varied)} varied "
                                 f"parameters is a rough guide: fANOVA's random forest needs many more trials than "
                                 f"parameters to rank them reliably.")
            except (ValueError, RuntimeError) as err:
                notes.append(f"Parameter importance is not available: {err}")
        else:
            notes.append("Parameter importance needs at least 3 complete trials with a parameter that varies "
                         "(fixed parameters are left out).")
    lines = [
        f"# Study `{study.name}`",
        "",
        f"- storage: `{study.storage_url}`",
        f"- strategy: `{study.strategy_text}`",
        f"- workload: `{study.workload_name}`, {study.epochs} epochs per trial, objective: "
        f"validation {metric} ({study.direction})",
        f"- budget: {study.budget()}",
        "- trials: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v),
        f"- optuna {optuna.__version__}",
        "",
    ]
    best = study.best
    if best is not None:
        lines += [
            "## Best trial",
            "",
            f"Trial {best.number}: validation {metric} {_fmt(best.value)} (best epoch {_fmt(best.best_value)}), "
            f"test {metric} {_fmt(best.test_metric)}, {best.epochs} epochs, {best.seconds:.1f} s.",
            "",
            "| parameter | value |",
            "|---|---|",
            *(f"| `{k}` | {_fmt(v)} |" for k, v in best.config.items()),
            "",
        ]
    found = [t for t in trials if t.results.get("genotype") or t.results.get("alphas")]
    if found:
        lines += [
            "## Architecture searches",
            "",
            "Search trials train a supernet; their value (its metric on half of the training split) is not "
            "comparable with ordinary trials, which retrain what they found.",
            "",
            "| search trial | state | selection | genotype | parameter-free share | collapsed |",
            "|---:|---|---|---|---:|---|",
            *(f"| {t.number} | {t.state} | {t.results.get('selection', '-')} | `{t.results.get('genotype') or '-'}` | "
              f"{_fmt(t.results.get('parameter_free_share'))} | {_fmt(t.results.get('collapsed'))} |" for t in found),
            "",
        ]
    front_lines, front_images = pareto_section(study, trials, out)
    lines += front_lines
    lines += importance_section(study, trials)  # PED-ANOVA's table (fast), or why it is skipped
    images = front_images + images
    sign = -1.0 if study.direction == "maximize" else 1.0
    ranked = sorted(trials, key=lambda t: (t.value is None, sign * (t.value or 0.0)))
    lines += [
        "## Trials",
        "",
        f"| trial | state | val {metric} | test {metric} | epochs | seconds | optimizer | note |",
        "|---:|---|---:|---:|---:|---:|---|---|",
    ]
    for t in ranked:
        note = (t.error or "")[:80].replace("|", "/")
        lines.append(
            f"| {t.number} | {t.state} | {_fmt(t.value)} | {_fmt(t.test_metric)} | {t.epochs} | {t.seconds:.1f} | "
            f"{t.config.get('optimizer', '-')} | {note} |"
        )
    lines.append("")
    for title, name in images:
        lines += [f"## {title}", "", f"![{title}]({name})", ""]
    lines += [f"_{n}_" for n in notes]
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
