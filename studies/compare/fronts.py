"""`studies.compare_fronts`: search strategies compared by hypervolume at equal budgets (several objectives).

`studies.compare` asks which *optimizer* trains a network best; with several objectives the
question is which *strategy* finds the better trade-off curve for the same budget. Every
strategy runs `seeds` independent multi-objective studies (seed `s` rebuilds the strategy from
its spec with its seed + s) of the same trainer, space, objectives and budget, in one database
(`<name>/<strategy>/<seed>`), so a call that was interrupted continues, and a finished one only
reads.

The measure is the normalised hypervolume of each study's front after n trials (in proposal
order, as Zitzler et al.'s indicator is reported over a budget): every objective is min-max
normalised over the complete trials of all the compared studies (a maximised one is negated
first), the reference point is 1 in each, and the value is divided by the hypervolume of the
front of all those trials together (1.0: a study found everything any study found). At each
checkpoint of the budget the table gives each strategy's median and interquartile range over
seeds, and each pair of strategies their paired wins and losses over seeds.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.spaces.errors import ConfigError
from tunelab.studies.storage import DEFAULT_STORAGE


@dataclass
class FrontComparison:
    """Strategies' multi-objective studies, compared by normalised hypervolume.

    Attributes:
        name: The comparison's name (its studies are `name/strategy/seed`).
        studies: `{strategy: {seed: Study}}`.
        budget: Trials per study.
    """

    name: str
    studies: dict[str, dict[int, Any]]
    budget: int

    @functools.cached_property
    def _normalised(self) -> tuple[dict[str, dict[int, np.ndarray]], np.ndarray, np.ndarray, float]:
        """Each study's points (proposal order, minimised), the bounds, and the hypervolume of the joint front.

        Read once: `table`, `pairs` and `report` all start from it.
        """
        from tunelab.spaces.pareto import hypervolume

        points: dict[str, dict[int, np.ndarray]] = {}
        for strategy, by_seed in self.studies.items():
            for seed, study in by_seed.items():
                done, pts = study.points_of(sorted(study.records(curves=False), key=lambda t: t.number))
                points.setdefault(strategy, {})[seed] = np.column_stack(
                    [np.array([t.number for t in done], dtype=np.float64), pts])  # (n, 1 + objectives)
        every = np.vstack([p[:, 1:] for by_seed in points.values() for p in by_seed.values() if len(p)])
        low, high = every.min(axis=0), every.max(axis=0)
        span = np.where(high > low, high - low, 1.0)
        best = hypervolume((every - low) / span, np.ones(every.shape[1]))
        return points, low, span, best

    def hypervolumes(self, checkpoints: Sequence[int] | None = None) -> dict[str, dict[int, dict[int, float]]]:
        """`{strategy: {checkpoint: {seed: normalised hypervolume after that many trials}}}`.

        Args:
            checkpoints: Trial counts (default: a quarter, half and all of the budget).
        """
        from tunelab.spaces.pareto import hypervolume

        checkpoints = list(checkpoints or sorted({max(1, self.budget // 4), max(1, self.budget // 2), self.budget}))
        points, low, span, best = self._normalised
        out: dict[str, dict[int, dict[int, float]]] = {}
        for strategy, by_seed in points.items():
            for n in checkpoints:
                for seed, p in by_seed.items():
                    first = p[p[:, 0] < n, 1:]
                    hv = hypervolume((first - low) / span, np.ones(len(low))) if len(first) else 0.0
                    out.setdefault(strategy, {}).setdefault(n, {})[seed] = hv / best if best > 0 else 0.0
        return out

    def table(self, checkpoints: Sequence[int] | None = None) -> Any:
        """A pandas DataFrame: strategy, trials, seeds, median, q25, q75 of the normalised hypervolume."""
        import pandas as pd

        rows = []
        for strategy, by_n in self.hypervolumes(checkpoints).items():
            for n, by_seed in by_n.items():
                hv = np.array(list(by_seed.values()))
                rows.append({"strategy": strategy, "trials": n, "seeds": len(hv), "median": float(np.median(hv)),
                             "q25": float(np.quantile(hv, 0.25)), "q75": float(np.quantile(hv, 0.75))})
        return pd.DataFrame(rows)

    def pairs(self, checkpoints: Sequence[int] | None = None) -> Any:
        """A pandas DataFrame of paired comparisons: strategy a, strategy b, trials, a's wins, losses, seeds."""
        import pandas as pd

        hv = self.hypervolumes(checkpoints)
        rows = []
        names = list(hv)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                for n in hv[a]:
                    seeds = sorted(set(hv[a][n]) & set(hv[b].get(n, {})))
                    wins = sum(hv[a][n][s] > hv[b][n][s] + 1e-12 for s in seeds)
                    losses = sum(hv[b][n][s] > hv[a][n][s] + 1e-12 for s in seeds)
                    rows.append({"a": a, "b": b, "trials": n, "wins": wins, "losses": losses, "seeds": len(seeds)})
        return pd.DataFrame(rows)

    def report(self, folder: str | Path) -> Path:
        """Write `README.md` (the table, the paired counts) and `hypervolume.png` into `folder`; return the file.

        The plot is the median normalised hypervolume over seeds after each number of trials,
        with the interquartile band, one line per strategy.
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        steps = sorted({*np.linspace(1, self.budget, num=min(self.budget, 25)).astype(int).tolist(), self.budget})
        curves = self.hypervolumes(steps)
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for strategy, by_n in curves.items():
            hv = np.array([[by_n[n][s] for s in sorted(by_n[n])] for n in steps])
            ax.plot(steps, np.median(hv, axis=1), label=strategy)
            ax.fill_between(steps, np.quantile(hv, 0.25, axis=1), np.quantile(hv, 0.75, axis=1), alpha=0.2)
        ax.set_xlabel("trials")
        ax.set_ylabel("normalised hypervolume (median, IQR)")
        ax.set_title(f"{self.name}: fronts found at equal budgets")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "hypervolume.png", dpi=110)
        plt.close(fig)
        table, pairs = self.table(), self.pairs()
        lines = [f"# Fronts compared: `{self.name}`", "",
                 "Normalised hypervolume (1.0: the front of every compared study's trials together; "
                 "`studies.compare.fronts`).", "",
                 "| strategy | trials | seeds | median | IQR |", "|---|---:|---:|---:|---|"]
        lines += [f"| {r.strategy} | {r.trials} | {r.seeds} | {r.median:.4f} | [{r.q25:.4f}, {r.q75:.4f}] |"
                  for r in table.itertuples()]
        lines += ["", "| a | b | trials | a wins | a loses | seeds |", "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r.a} | {r.b} | {r.trials} | {r.wins} | {r.losses} | {r.seeds} |" for r in pairs.itertuples()]
        lines += ["", "![hypervolume](hypervolume.png)", ""]
        path = out / "README.md"
        path.write_text("\n".join(lines))
        return path


def compare_fronts(
    trainer: Any,
    space: Any,
    *,
    strategies: Mapping[str, Any],
    objectives: Mapping[str, str],
    trials: int,
    seeds: int | Sequence[int] = 5,
    storage: str = DEFAULT_STORAGE,
    name: str = "fronts",
    progress: bool = False,
    **optimize: Any,
) -> FrontComparison:
    """Run (or continue) every strategy's multi-objective studies and return the comparison.

    Args:
        trainer: What trains a configuration (a `trainers.Trainer`, `Function` or `Objective`).
        space: The space searched.
        strategies: `{label: strategy}`; seed `s` runs the strategy rebuilt with its seed + s.
        objectives: Two or more `{name: direction}` (see `studies.create`).
        trials: The budget of every study, in trials.
        seeds: Studies per strategy: a count (seeds 0 .. n-1) or a list.
        storage: SQLAlchemy URL of the database.
        name: The comparison's name.
        progress: Print one line per finished study.
        **optimize: Further `Study.optimize` arguments (`n_workers`, `executor`, `threads`, ...).

    Raises:
        ConfigError: No strategies, one objective, a bad budget or seeds.
    """
    from tunelab import search
    from tunelab.studies.opening import create

    if not strategies or not all(isinstance(s, search.Strategy) for s in strategies.values()):
        raise ConfigError(f"strategies must be a dict of label -> search.Strategy, got {strategies!r}")
    if not isinstance(objectives, Mapping) or len(objectives) < 2:
        raise ConfigError(f"compare_fronts compares fronts of several objectives; got objectives={objectives!r} (for "
                          f"one objective, compare the studies' best values)")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"trials must be a positive int, got {trials!r}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ConfigError(f"seeds must be a positive count or a list of seeds, got {seeds!r}")
    runs: dict[str, dict[int, Any]] = {}
    for label, strategy in strategies.items():
        spec = strategy.spec()
        for seed in seed_list:
            seeded = search.Strategy.from_spec({**spec, "args": {**spec["args"], "seed": strategy.seed + seed}})
            study = create(f"{name}/{label}/{seed}", storage, space=space, trainer=trainer, strategy=seeded,
                           objectives=objectives)
            study.optimize(trials=trials, progress=False, **optimize)
            runs.setdefault(label, {})[seed] = study
            if progress:
                print(f"{name}: {label} seed {seed} done ({len(study.pareto_front)} trials on its front)", flush=True)
    return FrontComparison(name, runs, trials)


__all__ = ["FrontComparison", "compare_fronts"]
