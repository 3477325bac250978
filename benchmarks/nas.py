"""Architecture + hyperparameter search on MNIST-1D: Evolution vs Random vs Bayesian at equal trials.

Space: the 1-D NAS-Bench-201-style cell (`spaces.cells(dim=1)`: 6 edges, each one of none, skip,
conv1x1, conv3x3, avgpool3x3; 15,625 genotypes) in the benchmark's fixed skeleton (16 channels,
one cell per stage, as NAS-Bench-201 fixes its macro skeleton), trained with AdamW under a
cosine schedule; searched jointly with AdamW's learning rate and weight decay. Every trial
trains `--epochs` epochs on tunelab's MNIST-1D split (3200 train / 800 validation / 1000 test);
each strategy gets `--trials` trials per study, one study per (strategy, seed), each in its own
SQLite file under benchmarks/results/nas/ (rerunning skips finished pairs and resumes broken
ones).

Then the searched architecture is retrained from scratch: the best configuration (validation)
of the Evolution studies, trained `--retrain-epochs` epochs on fresh seeds (100, 101, ...), and
its test accuracy reported against the published MNIST-1D CNN baseline (94%, Greydanus & Kobak
2024). The same is done for Random search's best, for comparison.

Reported in benchmarks/results/nas.json and docs/nas.png: the median over seeds of the best
validation accuracy after n trials, per strategy; the retrained test accuracies (mean, sd,
min, max); the searched genotype and its size; the search cost in CPU minutes (user + system
time of the process that ran the study).

    python benchmarks/nas.py --seeds 5 --trials 30 --epochs 4 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from tunelab import search, spaces, studies, trainers

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "nas.json"
DBS = ROOT / "results" / "nas"
PLOT = ROOT.parent / "docs" / "nas.png"
BASELINE = 0.94  # published MNIST-1D CNN test accuracy (Greydanus & Kobak 2024)

STRATEGIES = {
    "evolution": lambda seed: search.Evolution(seed=seed),
    "random": lambda seed: search.Random(seed=seed),
    "bayesian": lambda seed: search.Bayesian(seed=seed),
    "evolution-de": lambda seed: search.Evolution(seed=seed, method="differential"),
}


def space() -> spaces.Space:
    """The searched space: the cell, AdamW's lr and weight decay; the rest fixed."""
    return (
        spaces.Space(
            optimizer=spaces.Fixed("adamw"),
            **{
                "adamw.lr": spaces.Float(1e-4, 1e-1, log=True, default=3e-3),
                "adamw.weight_decay": spaces.Float(1e-6, 1e-1, log=True, default=1e-4),
                "adamw.beta1": spaces.Fixed(0.9),
            },
            schedule=spaces.Fixed("cosine"),
        )
        | spaces.cells(dim=1, channels=16, cells_per_stage=1)
    )


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_study(name: str, seed: int, trials: int, epochs: int, threads: int) -> dict:
    """One study; returns its per-trial values and the best trial."""
    import torch

    torch.set_num_threads(threads)
    DBS.mkdir(parents=True, exist_ok=True)
    workload = trainers.workloads.mnist1d()
    trainer = trainers.Trainer(workload, epochs=epochs, seed=0)
    strategy = STRATEGIES[name](seed)
    url = f"sqlite:///{DBS / f'{name}-{seed}.db'}"
    study = studies.create(f"{name}-{seed}", url, space=space(), trainer=trainer, strategy=strategy)
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    study.optimize(trials=trials, progress=False)
    cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - t0
    done = [t for t in study.trials if t.state == "complete"]
    values = [t.value if t.state == "complete" else 0.0 for t in study.trials]
    best = study.best
    return {
        "strategy": name,
        "seed": seed,
        "values": values,
        "best_value": best.value,
        "best_config": best.config,
        "genotype": best.genotype,
        "params": best.n_params,
        "flops": best.flops,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "complete": len(done),
    }


def retrain(config: dict, seeds: list[int], epochs: int) -> dict:
    """Train `config` from scratch on fresh seeds; test accuracy per seed."""
    trainer = trainers.Trainer(trainers.workloads.mnist1d(), epochs=epochs)
    accs = [float(trainer.fit(config, seed=s).test_metric) for s in seeds]
    return {"seeds": seeds, "test": accs, "mean": statistics.mean(accs),
            "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0, "min": min(accs), "max": max(accs)}


def anytime(values: list[float], n: int) -> np.ndarray:
    best = np.maximum.accumulate(np.asarray(values[:n], dtype=float))
    return np.pad(best, (0, n - len(best)), mode="edge")


def plot(results: dict, strategies: list[str], trials: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(1, trials + 1)
    for name in strategies:
        runs = [anytime(r["values"], trials) for r in results["studies"] if r["strategy"] == name]
        if not runs:
            continue
        curves = np.stack(runs)
        med = np.median(curves, axis=0)
        ax.plot(x, med, label=f"{name} (median of {len(runs)})")
        ax.fill_between(x, np.quantile(curves, 0.25, axis=0), np.quantile(curves, 0.75, axis=0), alpha=0.2)
    ax.set_xlabel("trials")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title("MNIST-1D cell + lr/wd search (interquartile bands)")
    lows = [np.median(np.stack([anytime(r["values"], trials) for r in results["studies"]
                                if r["strategy"] == s]), axis=0)[min(9, trials - 1)]
            for s in strategies if any(r["strategy"] == s for r in results["studies"])]
    ax.set_ylim(min(lows) - 0.02, None)
    ax.legend()
    ax.grid(alpha=0.3)
    PLOT.parent.mkdir(exist_ok=True)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=1, help="studies run in parallel (one torch thread each)")
    parser.add_argument("--strategies", nargs="+", default=["evolution", "random", "bayesian"],
                        choices=list(STRATEGIES))
    parser.add_argument("--retrain-epochs", type=int, default=20)
    parser.add_argument("--retrain-seeds", type=int, default=5)
    args = parser.parse_args()

    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    setting = {"trials": args.trials, "epochs": args.epochs}
    if results.get("setting") != setting:
        results = {"setting": setting, "studies": []}
    done = {(r["strategy"], r["seed"]) for r in results["studies"]}
    todo = [(s, seed) for seed in range(args.seeds) for s in args.strategies if (s, seed) not in done]
    threads = 1 if args.jobs > 1 else max(1, os.cpu_count() or 1)
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_study, s, seed, args.trials, args.epochs, threads) for s, seed in todo]
        for f in futures:
            r = f.result()
            results["studies"].append(r)
            RESULTS.write_text(json.dumps(results, indent=1))
            print(f"{r['strategy']:13s} seed {r['seed']}: best val {r['best_value']:.4f} {r['genotype']} "
                  f"({r['params']} params) in {r['cpu_seconds'] / 60:.1f} CPU min", flush=True)

    print(f"\nbest validation accuracy after n trials, median over seeds ({args.trials} trials of {args.epochs} "
          "epochs per study)")
    summary = {}
    for name in args.strategies:
        runs = [r for r in results["studies"] if r["strategy"] == name]
        if not runs:
            continue
        curves = np.stack([anytime(r["values"], args.trials) for r in runs])
        med = np.median(curves, axis=0)
        summary[name] = {
            "median_best": float(med[-1]),
            "median_best_at_half": float(med[args.trials // 2 - 1]),
            "per_seed_best": [float(c[-1]) for c in curves],
            "cpu_minutes_median": statistics.median(r["cpu_seconds"] for r in runs) / 60,
        }
        print(f"  {name:13s} after {args.trials // 2}: {med[args.trials // 2 - 1]:.4f}   after {args.trials}: "
              f"{med[-1]:.4f}   per seed {np.round(curves[:, -1], 4).tolist()}   "
              f"CPU min/study {summary[name]['cpu_minutes_median']:.1f}")
    results["summary"] = summary

    for name in ("evolution", "random"):
        runs = [r for r in results["studies"] if r["strategy"] == name]
        if not runs:
            continue
        top = max(runs, key=lambda r: r["best_value"])
        key = f"retrained_{name}"
        seeds = list(range(100, 100 + args.retrain_seeds))
        if results.get(key, {}).get("config") != top["best_config"] or results[key].get("seeds") != seeds:
            t0 = cpu_seconds()
            results[key] = {"config": top["best_config"], "genotype": top["genotype"], "params": top["params"],
                            "flops": top["flops"], "from_study": f"{name}-{top['seed']}",
                            **retrain(top["best_config"], seeds, args.retrain_epochs),
                            "epochs": args.retrain_epochs, "cpu_minutes": (cpu_seconds() - t0) / 60}
            RESULTS.write_text(json.dumps(results, indent=1))
        r = results[key]
        print(f"\n{name}'s best architecture retrained ({r['epochs']} epochs, seeds {r['seeds']}): test "
              f"{r['mean']:.4f} +- {r['sd']:.4f} (min {r['min']:.4f}, max {r['max']:.4f}) vs published CNN "
              f"{BASELINE}\n  genotype {r['genotype']}, {r['params']} params, {r['flops']} FLOPs/example, "
              f"lr {r['config']['adamw.lr']:.3g}, wd {r['config']['adamw.weight_decay']:.3g}")
    RESULTS.write_text(json.dumps(results, indent=1))
    plot(results, args.strategies, args.trials)
    print(f"\nresults: {RESULTS}\nplot: {PLOT}")


if __name__ == "__main__":
    main()
