"""DARTS on the MNIST-1D cell space of benchmarks/nas.py: first order, second order and DARTS-PT.

For each variant and seed, one study with `search.Darts(searches=1)`: a search trial (the
supernet, `--epochs` search epochs, then DARTS-PT's selection epochs where it applies) and
the ordinary 4-epoch retraining trial of its genotype that the strategy asks for next, the
same kind of trial as Evolution's and Random's in benchmarks/nas.py. The space is nas.py's
(16 channels, one cell per stage, AdamW under a cosine schedule); Darts holds AdamW's learning
rate and weight decay at the space's defaults (3e-3, 1e-4) instead of searching them.

Reported per search: CPU seconds and epochs of the search (also as a multiple of one 4-epoch
training of a candidate, the unit Evolution's 40 trials are made of), the genotype, the share
of parameter-free operations in it (collapse), the seconds per search epoch (second order vs
first order), and the retrained test accuracy: each distinct selected genotype trained
`--retrain-epochs` epochs from scratch on seeds 100-104 with the fixed recipe (AdamW 3e-3, wd
1e-4, cosine). Evolution's best genotype from nas.json is retrained with the same recipe, so
the architectures are compared under one training recipe; `--reference` also reruns one
40-trial Evolution study of nas.py in this run, to measure its cost beside DARTS' on today's
machine (ratios within one run).

    python benchmarks/darts.py --seeds 5 --jobs 2 --reference
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "results" / "darts.json"  # --out moves both (a smoke run must not touch the recorded results)
DBS = ROOT / "results" / "darts"
PLOT = ROOT.parent / "docs" / "darts.png"
RECIPE = {"optimizer": "adamw", "adamw.lr": 3e-3, "adamw.weight_decay": 1e-4, "adamw.beta1": 0.9,
          "schedule": "cosine", "model": "cells", "model.dim": 1, "model.channels": 16, "model.cells_per_stage": 1}

VARIANTS = {
    "darts-1": {"order": 1, "selection": "argmax"},
    "darts-2": {"order": 2, "selection": "argmax"},
    "darts-pt": {"order": 1, "selection": "pt"},
}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def darts_strategy(variant: str, seed: int, args: argparse.Namespace):
    from tunelab import search

    return search.Darts(seed=seed, epochs=args.epochs, pt_interval=args.pt_interval, arch_lr=args.arch_lr,
                        channels=args.channels, **VARIANTS[variant])


def run_search(variant: str, seed: int, args: argparse.Namespace, dbs: Path) -> dict:
    import torch
    from nas import space

    from tunelab import studies, trainers

    torch.set_num_threads(1)
    dbs.mkdir(parents=True, exist_ok=True)
    trainer = trainers.Trainer(trainers.workloads.mnist1d(), epochs=4, seed=0)
    url = f"sqlite:///{dbs / f'{variant}-{seed}.db'}"
    study = studies.create(f"{variant}-{seed}", url, space=space(), trainer=trainer,
                           strategy=darts_strategy(variant, seed, args))
    cpu0 = cpu_seconds()
    study.optimize(trials=1, progress=False)  # the search
    search_cpu = cpu_seconds() - cpu0
    cpu0 = cpu_seconds()
    study.optimize(trials=2, progress=False)  # the retraining trial the strategy asks for next
    retrain_cpu = cpu_seconds() - cpu0
    search_trial, retrained = study.trials[0], study.trials[-1]
    results = search_trial.results
    n_search = args.epochs
    seconds = search_trial.metrics["seconds"]
    return {
        "variant": variant, "seed": seed, "state": str(search_trial.state), "error": search_trial.error,
        "genotype": results.get("genotype"), "argmax_genotype": results.get("argmax_genotype"),
        "parameter_free_share": results.get("parameter_free_share"), "collapsed": results.get("collapsed"),
        "search_epochs": search_trial.epochs, "search_cpu_seconds": search_cpu,
        "seconds_per_search_epoch": statistics.median(seconds[:n_search]) if seconds else None,
        "supernet_val_metric": search_trial.value,
        "retrain_trial_value": retrained.value if retrained.routine == "train" else None,
        "retrain_trial_test": retrained.test_metric if retrained.routine == "train" else None,
        "candidate_cpu_seconds": retrain_cpu, "alphas": results.get("alphas"), "scores": results.get("scores"),
    }


def run_reference(seed: int, dbs: Path) -> dict:
    """One 40-trial Evolution study of nas.py, in this run, for its cost."""
    import torch
    from nas import space

    from tunelab import search, studies, trainers

    torch.set_num_threads(1)
    dbs.mkdir(parents=True, exist_ok=True)
    trainer = trainers.Trainer(trainers.workloads.mnist1d(), epochs=4, seed=0)
    url = f"sqlite:///{dbs / f'evolution-ref-{seed}.db'}"
    study = studies.create(f"evolution-{seed}", url, space=space(), trainer=trainer,
                           strategy=search.Evolution(seed=seed))
    cpu0 = cpu_seconds()
    study.optimize(trials=40, progress=False)
    best = study.best
    return {"seed": seed, "cpu_seconds": cpu_seconds() - cpu0, "best_value": best.value, "genotype": best.genotype,
            "trial_cpu_seconds": statistics.median(t.seconds for t in study.trials if t.state == "complete")}


def retrain(genotype: str, seeds: list[int], epochs: int) -> dict:
    import torch

    from tunelab import spaces, trainers

    torch.set_num_threads(1)
    config = {**RECIPE, **spaces.Genotype.from_string(genotype).to_config()}
    trainer = trainers.Trainer(trainers.workloads.mnist1d(), epochs=epochs)
    accs = [float(trainer.fit(config, seed=s).test_metric) for s in seeds]
    return {"genotype": genotype, "seeds": seeds, "test": accs, "mean": statistics.mean(accs),
            "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0}


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results["searches"] if r["variant"] == "darts-pt" and r.get("alphas")]
    if not runs:
        return
    run = min(runs, key=lambda r: r["seed"])
    alphas = np.asarray(run["alphas"])  # epochs x edges x ops
    ops = ["none", "skip", "conv1x1", "conv3x3", "avgpool3x3"]
    edges = ["0_1", "0_2", "1_2", "0_3", "1_3", "2_3"]
    fig, axes = plt.subplots(2, 3, figsize=(10, 5.5), sharex=True, sharey=True)
    for e, ax in enumerate(axes.flat):
        for k, op in enumerate(ops):
            ax.plot(np.arange(1, len(alphas) + 1), alphas[:, e, k], label=op)
        ax.set_title(f"edge {edges[e]}")
        ax.axvline(results["setting"]["epochs"] + 0.5, color="0.6", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.supxlabel("epoch (search, then DARTS-PT selection)")
    fig.supylabel("softmax(alpha)")
    fig.suptitle(f"DARTS-PT alphas on MNIST-1D, seed {run['seed']}: {run['genotype']}", fontsize=9)
    fig.tight_layout()
    PLOT.parent.mkdir(exist_ok=True)
    fig.savefig(PLOT, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=8, help="search epochs")
    parser.add_argument("--pt-interval", type=int, default=1)
    parser.add_argument("--arch-lr", type=float, default=3e-3)
    parser.add_argument("--channels", type=int, default=8, help="channels of the proxy supernet")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--reference", action="store_true", help="rerun Evolution seed 0 (40 trials) for its cost")
    parser.add_argument("--retrain-epochs", type=int, default=20)
    parser.add_argument("--retrain-seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    global RESULTS, DBS
    if args.out is not None:
        RESULTS, DBS = args.out / "darts.json", args.out / "darts"

    setting = {"epochs": args.epochs, "pt_interval": args.pt_interval, "arch_lr": args.arch_lr,
               "channels": args.channels, "retrain_epochs": args.retrain_epochs, "retrain_seeds": args.retrain_seeds}
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if results.get("setting") != setting:
        results = {"setting": setting, "searches": [], "retrained": {}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["variant"], r["seed"]) for r in results["searches"]}
    todo = [(v, s) for s in range(args.seeds) for v in args.variants if (v, s) not in done]
    ctx = multiprocessing.get_context("spawn")
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
        ref = pool.submit(run_reference, 0, DBS) if args.reference and "reference" not in results else None
        for f in [pool.submit(run_search, v, s, args, DBS) for v, s in todo]:
            r = f.result()
            results["searches"].append(r)
            RESULTS.write_text(json.dumps(results, indent=1))
            print(f"{r['variant']:9s} seed {r['seed']}: {r['genotype']} (free share {r['parameter_free_share']}) "
                  f"search {r['search_cpu_seconds']:.0f} CPU s, {r['search_epochs']} epochs, "
                  f"{r['seconds_per_search_epoch']:.2f} s/epoch; 4-epoch retrain val {r['retrain_trial_value']}",
                  flush=True)
        if ref is not None:
            results["reference"] = ref.result()
            RESULTS.write_text(json.dumps(results, indent=1))

    nas = json.loads((ROOT / "results" / "nas.json").read_text())
    evolution = nas.get("retrained_evolution", {})
    genotypes = sorted({r["genotype"] for r in results["searches"] if r["genotype"]} |
                       ({evolution["genotype"]} if evolution.get("genotype") else set()))
    seeds = list(range(100, 100 + args.retrain_seeds))
    todo_g = [g for g in genotypes if g not in results["retrained"]]
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
        for g, f in [(g, pool.submit(retrain, g, seeds, args.retrain_epochs)) for g in todo_g]:
            results["retrained"][g] = f.result()
            RESULTS.write_text(json.dumps(results, indent=1))
            print(f"retrained {g}: {results['retrained'][g]['mean']:.4f} +- {results['retrained'][g]['sd']:.4f}",
                  flush=True)
    results["wall_seconds_this_run"] = time.time() - t0

    recorded = 60 * nas["summary"]["evolution"]["cpu_minutes_median"]  # nas.py's run: another day, another load
    evo_cpu = results.get("reference", {}).get("cpu_seconds") or recorded
    cand_cpu = statistics.median(r["candidate_cpu_seconds"] for r in results["searches"])
    summary = {}
    for v in args.variants:
        runs = [r for r in results["searches"] if r["variant"] == v]
        if not runs:
            continue
        tests = [results["retrained"][r["genotype"]]["mean"] for r in runs if r["genotype"] in results["retrained"]]
        summary[v] = {
            "search_cpu_seconds_median": statistics.median(r["search_cpu_seconds"] for r in runs),
            "search_epochs": runs[0]["search_epochs"],
            "seconds_per_search_epoch_median": statistics.median(r["seconds_per_search_epoch"] for r in runs),
            "parameter_free_share_mean": statistics.mean(r["parameter_free_share"] or 0 for r in runs),
            "collapsed": sum(bool(r["collapsed"]) for r in runs),
            "retrained_test_mean_over_seeds": statistics.mean(tests) if tests else None,
            "retrained_test_sd_over_seeds": statistics.stdev(tests) if len(tests) > 1 else None,
            "retrained_test_best_seed": max(tests) if tests else None,
        }
        s = summary[v]
        s["cost_vs_evolution"] = s["search_cpu_seconds_median"] / evo_cpu
        s["cost_vs_evolution_recorded_in_nas_json"] = s["search_cpu_seconds_median"] / recorded
        s["cost_in_candidate_trainings"] = s["search_cpu_seconds_median"] / cand_cpu
        print(f"{v:9s}: search {s['search_cpu_seconds_median']:.0f} CPU s ({s['cost_vs_evolution']:.2f} x "
              f"Evolution's 40 trials, {s['cost_in_candidate_trainings']:.1f} candidate trainings), "
              f"{s['seconds_per_search_epoch_median']:.2f} s/epoch, free share {s['parameter_free_share_mean']:.2f}, "
              f"retrained test {s['retrained_test_mean_over_seeds']}")
    if "darts-1" in summary and "darts-2" in summary:  # CPU seconds per search epoch: wall time depends on the load
        summary["second_vs_first_order_epoch_cpu"] = (
            summary["darts-2"]["search_cpu_seconds_median"] / summary["darts-2"]["search_epochs"]
        ) / (summary["darts-1"]["search_cpu_seconds_median"] / summary["darts-1"]["search_epochs"])
    summary["evolution_cpu_seconds"] = evo_cpu
    summary["candidate_cpu_seconds"] = cand_cpu
    if evolution.get("genotype") in results["retrained"]:
        summary["evolution_genotype_same_recipe"] = results["retrained"][evolution["genotype"]]
    results["summary"] = summary
    RESULTS.write_text(json.dumps(results, indent=1))
    if args.out is None:
        plot(results)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
