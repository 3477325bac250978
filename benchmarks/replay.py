"""Replay leaderboard: every search strategy (tunelab's and peers') on recorded tables, many seeds, in minutes.

Each (table, strategy, seed) is one ordinary tunelab study on a replayed trainer
(`trainers.Replay`) and the simulated executor (one worker), with an equal budget in epochs:
20 full trainings. Strategies see only the study's history; the table answers `fit`. The
anytime curve of a study is the best validation metric seen after e epochs of total training
(at any epoch of any trial), read at 1, 5 and 20 full-training equivalents and turned into a
normalised regret: `(table best - found) / (table best - table median)` (table best: the best
validation metric any recorded run reached at any epoch; median: of the final metrics), so 0 is
the table's best and 1 is a median configuration.

Peers' libraries run through `benchmarks/peers/` (one virtual environment each, made once by
`benchmarks/peers/make_envs.sh`): tunelab's driver evaluates and records their proposals like
any strategy's (`benchmarks/peers/strategy.py`). A peer whose environment is missing is skipped
with a note.

    python benchmarks/replay.py run --seeds 50 --jobs 2        # resumable: finished studies are skipped
    python benchmarks/replay.py report                         # -> results/replay.json, docs/replay.png, a table
    python benchmarks/replay.py overhead                       # -> results/replay_overhead.json
    # this version against an older one (its runs unpacked from results/replay-studies.tar.gz):
    TUNELAB_REPLAY_RESULTS=DIR python benchmarks/replay.py run --strategies bayesian --seeds 50 --jobs 1
    TUNELAB_REPLAY_RESULTS=DIR python benchmarks/replay.py versus --before OLD/replay --strategies bayesian

Reported per table and budget: mean normalised regret with a 95% interval, the average rank
(per seed, among the strategies), and Kendall's tau between the rankings of two disjoint halves
of the seeds (the ranking's stability).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = Path(os.environ.get("TUNELAB_REPLAY_RESULTS", HERE / "results" / "replay"))  # another folder: a variant
TABLES = {"mnist1d_mlp": "error", "digits_mlp": "error", "mnist1d_cells": "nearest", "char_lm": "error"}
BUDGETS = (1, 5, 20)
# decisions that cost seconds (GP fits, networks trained, the driver's re-reads)
SLOW = ("bayesian", "bayesian_warm_early", "asha", "freeze_thaw", "freeze_thaw_swersky", "freeze_thaw_deep_kernel",
        "freeze_thaw_pfn", "freeze_thaw_pfn_ifbo", "random_pruned")


def _strategies() -> dict[str, Callable[[int], Any]]:
    from tunelab import search

    return {
        "random": lambda s: search.Random(seed=s),
        "quasi_random": lambda s: search.Random(seed=s, quasi="sobol"),
        "bayesian": lambda s: search.Bayesian(seed=s),  # 20 trainings: every fit from scratch (warm_after=50)
        "bayesian_warm_early": lambda s: search.Bayesian(seed=s, warm_after=1),  # each fit from the last one
        "tpe": lambda s: search.OptunaSampler("tpe", seed=s),
        "freeze_thaw": lambda s: search.FreezeThaw(seed=s, surrogate="power_law"),  # Deep Power Laws
        "freeze_thaw_swersky": lambda s: search.FreezeThaw(seed=s, surrogate="swersky"),
        "freeze_thaw_deep_kernel": lambda s: search.FreezeThaw(seed=s, surrogate="deep_kernel"),
        "freeze_thaw_pfn": lambda s: search.FreezeThaw(seed=s, surrogate="pfn"),  # the shipped curve PFN
        # ifBO's initial design: its configurations at the lowest fidelity (1 epoch), not a quarter of the run
        "freeze_thaw_pfn_ifbo": lambda s: search.FreezeThaw(seed=s, surrogate="pfn", initial_epochs=1),
        "random_pruned": lambda s: search.CurvePruner(search.Random(seed=s)),  # Random, stopped by the PFN
        "hyperband": lambda s: search.Hyperband(seed=s),
        "asha": lambda s: search.ASHA(seed=s),
        "evolution": lambda s: search.Evolution(seed=s),
        "de": lambda s: search.Evolution(seed=s, method="differential"),
    }


OURS = tuple(_strategies())


def _peer(name: str, seed: int) -> Any:
    from peers.strategy import PeerStrategy

    return PeerStrategy(name, seed=seed)


def table_path(table: str) -> Path:
    return HERE / "tables" / f"{table}.json.gz"


@functools.cache
def _replay(table: str) -> Any:
    """The replayed trainer of `table`, read once per process (reading a table costs about a second)."""
    from tunelab import trainers

    return trainers.Replay(table_path(table), outside=TABLES[table])


def run_one(table: str, strategy: str, seed: int, budget: int = max(BUDGETS)) -> dict[str, Any]:
    """One replayed study; returns its anytime curve (best validation metric after each epoch spent)."""
    from tunelab import studies
    from tunelab.studies.executors import SimulatedExecutor
    from tunelab.trainers.replay import table_space

    class Logged(SimulatedExecutor):
        """The simulated executor, noting every epoch's validation metric in the order epochs are charged."""

        def __init__(self) -> None:
            super().__init__(1)
            self.log: list[float] = []

        def wait(self, on_epoch: Any, timeout: float | None = None) -> list[Any]:
            def relay(trial_id: int, epoch: Any) -> None:
                self.log.append(epoch.val_metric)
                on_epoch(trial_id, epoch)

            return super().wait(relay, timeout)

    replay = _replay(table)
    factory = _strategies().get(strategy)
    made = factory(seed) if factory is not None else _peer(strategy, seed)
    executor = Logged()
    with tempfile.TemporaryDirectory() as tmp:
        study = studies.create(f"{strategy}-{seed}", f"sqlite:///{tmp}/replay.db", space=table_space(replay),
                               trainer=replay, strategy=made)
        t0 = time.perf_counter()
        try:
            study.optimize(epochs=budget * replay.epochs, executor=executor, progress=False)
        finally:
            close = getattr(made, "close", None)
            if close is not None:
                close()
        wall = time.perf_counter() - t0
        trials = len(study.trials)
        nearest = sum(1 for t in study.trials if (t.results or {}).get("replay"))
    sign = 1.0 if replay.workload.direction == "maximize" else -1.0
    best, curve = -math.inf, []
    for v in executor.log:
        if math.isfinite(v):
            best = max(best, sign * v)
        curve.append(sign * best if math.isfinite(best) else None)
    return {"table": table, "strategy": strategy, "seed": seed, "curve": curve, "trials": trials,
            "wall_s": wall, "epochs_per_run": replay.epochs, "nearest_answers": nearest,
            "simulated_s": executor.clock()}


def _task(args: tuple[str, str, int]) -> str:
    table, strategy, seed = args
    out = RESULTS / table / f"{strategy}-{seed}.json"
    if out.exists():
        return f"{out.name}: done before"
    try:
        import torch

        torch.set_num_threads(1)
        result = run_one(table, strategy, seed)
    except Exception as err:  # one broken study must not stop the leaderboard; the report names it
        result = {"table": table, "strategy": strategy, "seed": seed, "error": f"{type(err).__name__}: {err}"}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result))
    return f"{table} {strategy} seed {seed}: {result.get('trials', '-')} trials, {result.get('wall_s', 0):.1f} s"


def run(tables: list[str], strategies: list[str], seeds: int, jobs: int) -> None:
    # cheap strategies first for every seed, then the ones whose decisions cost seconds: a run cut short
    # still has every strategy on some seeds and the cheap ones on all
    tasks = [(t, s, seed) for slow in (False, True) for seed in range(seeds) for t in tables for s in strategies
             if (s in SLOW) == slow]
    t0 = time.perf_counter()
    if jobs == 1:
        for task in tasks:
            print(_task(task), flush=True)
    else:
        with mp.get_context("spawn").Pool(jobs) as pool:
            for line in pool.imap_unordered(_task, tasks):
                print(line, flush=True)
    print(f"{len(tasks)} studies in {time.perf_counter() - t0:.0f} s with {jobs} processes")


# ---------------------------------------------------------------------- report
def _reference(table: str) -> tuple[float, float, str]:
    """(best at any epoch of any recorded run, median final, direction) of a table's seed-0 runs."""
    from tunelab.trainers.replay import ReplayTable

    t = ReplayTable.load(table_path(table))
    sign = 1.0 if t.header.direction == "maximize" else -1.0
    peaks = [max(sign * e.val_metric for e in c.epochs if math.isfinite(e.val_metric))
             for c in t.curves if c.seed == 0 and any(math.isfinite(e.val_metric) for e in c.epochs)]
    finals = t.finals(0)
    finals = sign * finals[np.isfinite(finals)]
    return float(max(peaks)), float(np.median(finals)), t.header.direction


def _regret(curve: list[float | None], at: int, best: float, median: float, sign: float) -> float:
    found = curve[min(at, len(curve)) - 1] if curve else None
    if found is None:  # nothing finite seen yet: a median configuration's regret
        return 1.0
    return max(0.0, (best - sign * found) / (best - median))


def _reach_random(by: dict, name: str, seeds: list[int], sign: float) -> dict[str, float]:
    """Epochs `name` needs to reach Random's final result on the same seed, as a share of the budget.

    Returns the median share over seeds (inf where never reached) and the share of seeds reached
    within a fifth of the budget.
    """
    shares = []
    for s in seeds:
        rand = by.get(("random", s))
        if rand is None or not rand["curve"]:
            continue
        budget = max(BUDGETS) * rand["epochs_per_run"]
        target = rand["curve"][min(budget, len(rand["curve"])) - 1]
        curve = by[(name, s)]["curve"]
        hit = next((i + 1 for i, v in enumerate(curve) if v is not None and target is not None
                    and sign * v >= sign * target - 1e-12), None)
        shares.append(hit / budget if hit is not None else math.inf)
    if not shares:
        return {}
    return {"median_share": float(np.median(shares)), "within_fifth": float(np.mean([x <= 0.2 for x in shares])),
            "seeds": len(shares)}


def report() -> dict[str, Any]:
    from scipy.stats import kendalltau, rankdata

    from tunelab.studies.compare.stats import mean_interval

    out: dict[str, Any] = {"budgets": list(BUDGETS), "tables": {}}
    for folder in sorted(p for p in RESULTS.iterdir() if p.is_dir()):
        table = folder.name
        best, median, direction = _reference(table)
        sign = 1.0 if direction == "maximize" else -1.0
        runs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
        errors = [r for r in runs if "error" in r]
        runs = [r for r in runs if "error" not in r]
        names = sorted({r["strategy"] for r in runs})
        by = {(r["strategy"], r["seed"]): r for r in runs}
        own = {n: sorted(s for (m, s) in by if m == n) for n in names}
        # ranks and the halves' tau: among the strategies that ran the most seeds, on their common seeds
        # (a strategy run on fewer seeds, such as a surrogate under selection, gets regrets but no rank)
        most = max(len(v) for v in own.values())
        ranked = [n for n in names if len(own[n]) == most]
        common = sorted(set.intersection(*(set(own[n]) for n in ranked)))
        entry: dict[str, Any] = {"best": best, "median_final": median, "seeds_common": len(common), "strategies": {},
                                 "errors": [f"{r['strategy']} seed {r['seed']}: {r['error']}" for r in errors]}

        def regret_of(n: str, s: int, b: int, by: dict = by, ref: tuple = (best, median, sign)) -> float:
            r = by[(n, s)]
            return _regret(r["curve"], b * r["epochs_per_run"], *ref)

        for b in BUDGETS:
            grid = np.array([[regret_of(n, s, b) for s in common] for n in ranked])  # strategies x common seeds
            ranks = np.apply_along_axis(rankdata, 0, grid)
            half = len(common) // 2
            tau = (kendalltau(grid[:, :half].mean(1), grid[:, half:].mean(1)).statistic if half >= 2 else math.nan)
            entry.setdefault("kendall_tau", {})[str(b)] = float(tau)
            for n in names:
                m, _, lo, hi = mean_interval(np.array([regret_of(n, s, b) for s in own[n]]))
                e = entry["strategies"].setdefault(n, {"regret": {}, "rank": {}, "seeds": len(own[n])})
                e["regret"][str(b)] = [float(m), float(lo), float(hi)]
                e["rank"][str(b)] = float(ranks[ranked.index(n)].mean()) if n in ranked else math.nan
        for n in names:
            mine = [by[(n, s)] for s in own[n]]
            entry["strategies"][n]["reach_random"] = _reach_random(by, n, own[n], sign)
            entry["strategies"][n]["trials"] = float(np.mean([r["trials"] for r in mine]))
            entry["strategies"][n]["driver_ms_per_trial"] = float(
                1000 * np.sum([r["wall_s"] for r in mine]) / np.sum([r["trials"] for r in mine]))
            entry["strategies"][n]["study_s"] = float(np.mean([r["wall_s"] for r in mine]))
            entry["strategies"][n]["nearest_answers"] = int(np.sum([r.get("nearest_answers", 0) for r in mine]))
        out["tables"][table] = entry
    RESULTS.with_suffix(".json").write_text(json.dumps(out, indent=1))
    _plot(out)
    _print(out)
    return out


def _plot(out: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = list(out["tables"])
    fig, axes = plt.subplots(1, len(tables), figsize=(5 * len(tables), 4), squeeze=False)
    for ax, table in zip(axes[0], tables, strict=True):
        for name, s in sorted(out["tables"][table]["strategies"].items()):
            m = [s["regret"][str(b)][0] for b in BUDGETS]
            lo = [s["regret"][str(b)][1] for b in BUDGETS]
            hi = [s["regret"][str(b)][2] for b in BUDGETS]
            line = ax.plot(BUDGETS, m, marker="o", label=name, ls="-" if name in OURS else "--")[0]
            ax.fill_between(BUDGETS, lo, hi, color=line.get_color(), alpha=0.12)
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_xticks(BUDGETS, [str(b) for b in BUDGETS])
        ax.set_title(f"{table} ({out['tables'][table]['seeds_common']}+ seeds)")
        ax.set_xlabel("budget (full trainings)")
        ax.set_ylabel("normalised regret (mean, 95% CI)")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    default = RESULTS == HERE / "results" / "replay"  # the published figure lives with the documentation
    fig.savefig(HERE.parent / "docs" / "replay.png" if default else RESULTS.with_suffix(".png"), dpi=110)


def _print(out: dict[str, Any]) -> None:
    for table, entry in out["tables"].items():
        print(f"\n{table}: ranks and Kendall tau on the {entry['seeds_common']} seeds every strategy ran; tau between "
              "the two halves of them " + ", ".join(f"{b}x {entry['kendall_tau'][str(b)]:.2f}" for b in BUDGETS))
        print("| strategy | seeds | " + " | ".join(f"regret @{b}x" for b in BUDGETS) + " | rank @5x | rank @20x | "
              "trials | s / study | reaches Random's final: median share of budget, seeds within 1/5 |")
        print("|---|---:|" + "---:|" * (len(BUDGETS) + 5))
        order = sorted(entry["strategies"].items(), key=lambda kv: (math.isnan(kv[1]["rank"]["20"]),
                                                                   kv[1]["rank"]["20"], kv[1]["regret"]["20"][0]))
        for name, s in order:
            cells = [f"{s['regret'][str(b)][0]:.3f} ({s['regret'][str(b)][1]:.3f}-{s['regret'][str(b)][2]:.3f})"
                     for b in BUDGETS]
            shown = name if name in OURS else f"*{name}*"
            reach = s.get("reach_random") or {}
            reached = (f"{reach['median_share']:.2f}, {100 * reach['within_fifth']:.0f}%" if reach else "-")
            print(f"| {shown} | {s['seeds']} | " + " | ".join(cells) + f" | {s['rank']['5']:.2f} | "
                  f"{s['rank']['20']:.2f} | {s['trials']:.0f} | {s['study_s']:.1f} | {reached} |")
        for e in entry["errors"]:
            print(f"  error: {e}")


def overhead(trials: int = 2000) -> dict[str, Any]:
    """Driver-side cost of replay: `Replay.fit` alone, with the simulated executor, and a whole replayed study."""
    from tunelab import studies, trainers
    from tunelab.search import Random
    from tunelab.studies.executors import SimulatedExecutor, Work
    from tunelab.trainers.replay import table_space

    replay = trainers.Replay(table_path("mnist1d_mlp"))
    configs = replay.table.configs()
    rng = np.random.default_rng(0)
    picks = [configs[i] for i in rng.choice(len(configs), trials)]
    t0 = time.perf_counter()
    for c in picks:
        replay.fit(c, report=lambda e: None)
    fit_ms = 1000 * (time.perf_counter() - t0) / trials
    executor = SimulatedExecutor(4)
    t0 = time.perf_counter()
    for i, c in enumerate(picks):
        if executor.busy == executor.capacity:
            executor.wait(lambda tid, e: None)
        executor.submit(Work(i, i, c, 0, None, None, checkpoint_seconds=None), replay)
    while executor.busy:
        executor.wait(lambda tid, e: None)
    executor_ms = 1000 * (time.perf_counter() - t0) / trials
    n = 200
    with tempfile.TemporaryDirectory() as tmp:
        study = studies.create("overhead", f"sqlite:///{tmp}/o.db", space=table_space(replay), trainer=replay,
                               strategy=Random(seed=0))
        t0 = time.perf_counter()
        study.optimize(trials=n, executor="simulated", progress=False)
        study_ms = 1000 * (time.perf_counter() - t0) / n
    out = {"epochs_per_trial": replay.epochs, "replay_fit_ms": fit_ms, "with_simulated_executor_ms": executor_ms,
           "whole_study_ms_per_trial": study_ms, "study_trials": n}
    (HERE / "results" / "replay_overhead.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return out


def versus(before: Path, strategies: list[str], reference: str = "random") -> dict[str, Any]:
    """Two versions of some strategies on the same tables and seeds, in one report.

    `before` is a results folder of an older version (for example the unpacked
    `results/replay-studies.tar.gz`); this version's runs are those in `RESULTS`. Writes a folder
    `<RESULTS>-versus` holding this version's runs of `strategies`, the older ones renamed
    `<name>_before`, and `reference`'s runs from `before`, then reports on it
    (`<RESULTS>-versus.json` and `.png`).
    """
    global RESULTS
    target = RESULTS.with_name(RESULTS.name + "-versus")
    for table_dir in sorted(p for p in RESULTS.iterdir() if p.is_dir()):
        out = target / table_dir.name
        out.mkdir(parents=True, exist_ok=True)
        for name in strategies:
            for path in table_dir.glob(f"{name}-*.json"):
                (out / path.name).write_text(path.read_text())
            for path in (before / table_dir.name).glob(f"{name}-*.json"):
                r = json.loads(path.read_text())
                r["strategy"] = f"{name}_before"
                (out / f"{name}_before-{r['seed']}.json").write_text(json.dumps(r))
        for path in (before / table_dir.name).glob(f"{reference}-*.json"):
            (out / path.name).write_text(path.read_text())
    RESULTS = target
    return report()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("run", "report", "overhead", "versus"))
    parser.add_argument("--before", type=Path, help="versus: the results folder of an older version")
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--strategies", nargs="+", default=list(OURS),
                        help=f"tunelab's ({', '.join(OURS)}) and peers' (see benchmarks/peers)")
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    if args.action == "run":
        run(args.tables, args.strategies, args.seeds, args.jobs)
    elif args.action == "overhead":
        overhead()
    elif args.action == "versus":
        versus(args.before, args.strategies)
    else:
        report()


if __name__ == "__main__":
    main()
