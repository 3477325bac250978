"""Search quality at equal trials: Random vs Bayesian (BoTorch) vs Optuna's TPE on MNIST-1D.

For each space (MLP and CNN, each with optimizer, lr schedule, weight decay and width/depth) and
each seed, one tunelab study per strategy runs N trials into one SQLite file; the script is
resumable (rerun it and finished studies are skipped). Reported: the best validation accuracy
after N trials, median and interquartile range over seeds, plus the best-so-far curves.

    python benchmarks/search_quality.py --seeds 5 --trials 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from tunelab import search, spaces, studies, trainers

STRATEGIES = {
    "random": lambda seed: search.Random(seed=seed),
    "bayesian": lambda seed: search.Bayesian(seed=seed),
    "tpe": lambda seed: search.OptunaSampler("tpe", seed=seed),
}


def make_space(model: str) -> spaces.Space:
    arch = spaces.mlp() if model == "mlp" else spaces.cnn(dim=1)
    return spaces.optimizers(["sgd", "adamw"]) | spaces.schedules(["constant", "cosine"]) | arch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    ap.add_argument("--epochs", type=int, nargs=2, default=[15, 10], help="epochs per trial: MLP, CNN")
    ap.add_argument("--storage", default="sqlite:///benchmarks/results/search_quality.db")
    ap.add_argument("--out", default="benchmarks/results/search_quality.json")
    ap.add_argument("--plot", default="docs/search_quality.png")
    args = ap.parse_args()

    workload = trainers.workloads.mnist1d()
    results: dict = {}
    for model in args.models:
        epochs = args.epochs[0] if model == "mlp" else args.epochs[1]
        trainer = trainers.Trainer(workload, epochs=epochs, seed=0)
        for name, make in STRATEGIES.items():
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                study = studies.create(f"{model}-{name}-{seed}", args.storage, space=make_space(model),
                                       trainer=trainer, strategy=make(seed))
                study.optimize(trials=args.trials, progress=False)
                vals = [t.value if t.state == "complete" else 0.0 for t in study.trials[: args.trials]]
                best = study.best
                results.setdefault(model, {}).setdefault(name, []).append(
                    {"seed": seed, "curve": list(np.maximum.accumulate(vals)), "best_val": max(vals),
                     "test_of_best": best.test_metric if best else None}
                )
                print(f"{model} {name:8s} seed {seed}: best val {max(vals):.4f} ({time.perf_counter() - t0:.0f} s)",
                      flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    report(results, args.trials, args.plot)


def report(results: dict, n: int, plot: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    print(f"\n| space | strategy | best val acc after {n} trials: median | IQR | min-max | test acc of best |")
    print("|---|---|---:|---:|---:|---:|")
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, (model, by) in zip(axes[0], results.items(), strict=True):
        for name, runs in by.items():
            b = np.array([r["best_val"] for r in runs])
            t = np.array([r["test_of_best"] for r in runs if r["test_of_best"] is not None])
            q1, q3 = np.percentile(b, [25, 75])
            print(f"| {model} | {name} | {np.median(b):.4f} | {q1:.4f}-{q3:.4f} | {b.min():.4f}-{b.max():.4f} | "
                  f"{np.median(t):.4f} |")
            curves = np.array([r["curve"] for r in runs])
            x = np.arange(1, curves.shape[1] + 1)
            med = np.median(curves, axis=0)
            lo, hi = np.percentile(curves, [25, 75], axis=0)
            ax.plot(x, med, label=name)
            ax.fill_between(x, lo, hi, alpha=0.2)
        ax.set_title(f"MNIST-1D, {model.upper()} space ({len(runs)} seeds)")
        ax.set_xlabel("trials")
        ax.set_ylabel("best validation accuracy so far")
        ax.legend()
    fig.tight_layout()
    Path(plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot, dpi=110)
    print(f"\nplot: {plot}")


if __name__ == "__main__":
    main()
