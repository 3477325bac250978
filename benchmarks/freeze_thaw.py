"""Anytime search quality at equal epochs: FreezeThaw vs ASHA vs Hyperband vs Random vs Bayesian.

Workload: MNIST-1D, an MLP trained for 20 epochs per full run; space: optimizer (SGD-momentum or
AdamW, with lr, momentum, weight decay), lr schedule (constant or cosine, warm-up), width, depth,
activation, dropout. Every strategy gets the same budget in epochs (summed over trials; a
paused-and-resumed trial counts each epoch once). For each (strategy, seed) one study runs into
its own SQLite file, and a trainer subclass records the validation accuracy of every epoch in
the order epochs are trained, which gives the anytime curve: the best validation accuracy seen
after e epochs of total training, at any epoch of any trial.

Reported (median over seeds): the anytime curves (plot), each strategy's final best, the epochs
FreezeThaw needs to reach Random's final result, and the strategies' decision cost (seconds per
`ask`, the surrogate's cost for FreezeThaw and Bayesian). Rerunning skips (strategy, seed) pairs
already in the results file.

    python benchmarks/freeze_thaw.py --seeds 5 --epochs 600
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import ClassVar

import numpy as np

from tunelab import search, spaces, studies, trainers

STRATEGIES = {
    "freeze_thaw": lambda seed: search.FreezeThaw(seed=seed),
    "freeze_thaw_swersky": lambda seed: search.FreezeThaw(seed=seed, surrogate="swersky"),
    "asha": lambda seed: search.ASHA(seed=seed),
    "hyperband": lambda seed: search.Hyperband(seed=seed),
    "random": lambda seed: search.Random(seed=seed),
    "bayesian": lambda seed: search.Bayesian(seed=seed),
}


class RecordingTrainer(trainers.Trainer):
    """A Trainer that appends every epoch's validation metric, in training order, to `log`."""

    log: ClassVar[list[float]] = []

    def fit(self, *args, report=None, **kwargs):
        def recording(epoch):
            RecordingTrainer.log.append(float(epoch.val_metric) if np.isfinite(epoch.val_metric) else 0.0)
            return report(epoch) if report else None

        return super().fit(*args, report=recording, **kwargs)


def space() -> spaces.Space:
    return spaces.optimizers(["sgd", "adamw"]) | spaces.schedules(["constant", "cosine"]) | spaces.mlp()


def run_one(name: str, seed: int, budget: int, run_epochs: int, workload) -> dict:
    trainer = RecordingTrainer(workload, epochs=run_epochs, seed=0)
    strategy = STRATEGIES[name](seed)
    asks: list[float] = []
    ask = strategy.ask

    def timed_ask(history):
        t = time.perf_counter()
        try:
            return ask(history)
        finally:
            asks.append(time.perf_counter() - t)

    strategy.ask = timed_ask  # the instance attribute leaves the stored spec alone
    RecordingTrainer.log = []
    with tempfile.TemporaryDirectory() as tmp:
        study = studies.create(f"{name}-{seed}", f"sqlite:///{tmp}/s.db", space=space(), trainer=trainer,
                               strategy=strategy)
        t0 = time.perf_counter()
        study.optimize(epochs=budget, progress=False)
        wall = time.perf_counter() - t0
        states: dict[str, int] = {}
        for t in study.trials:
            states[str(t.state)] = states.get(str(t.state), 0) + 1
        best = study.best
    curve = np.maximum.accumulate(RecordingTrainer.log).tolist()
    return {"seed": seed, "anytime": curve, "trained": len(curve), "final": curve[-1], "wall": wall, "asks": len(asks),
            "ask_median_s": float(np.median(asks)) if asks else 0.0, "ask_total_s": float(np.sum(asks)),
            "states": states, "best_complete": best.value if best else None,
            "test_of_best_complete": best.test_metric if best else None}


def reach(curve: list[float], target: float) -> int | None:
    """Epochs (1-based) after which `curve` first reaches `target`."""
    for i, v in enumerate(curve):
        if v >= target - 1e-12:
            return i + 1
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=600, help="budget in epochs per study")
    ap.add_argument("--run-epochs", type=int, default=20, help="epochs of a full training run")
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    ap.add_argument("--out", default="benchmarks/results/freeze_thaw.json")
    ap.add_argument("--plot", default="docs/freeze_thaw.png")
    args = ap.parse_args()

    out = Path(args.out)
    results: dict = json.loads(out.read_text()) if out.exists() else {}
    workload = trainers.workloads.mnist1d()
    for seed in range(args.seeds):
        for name in args.strategies:
            done = {r["seed"] for r in results.get(name, [])}
            if seed in done:
                continue
            r = run_one(name, seed, args.epochs, args.run_epochs, workload)
            results.setdefault(name, []).append(r)
            out.write_text(json.dumps(results))
            print(f"{name:12s} seed {seed}: best val {r['final']:.4f}  wall {r['wall']:.0f} s  "
                  f"ask {r['ask_median_s'] * 1000:.0f} ms x {r['asks']}  {r['states']}", flush=True)
    summarise(results, args.epochs, args.plot)


def summarise(results: dict, budget: int, plot: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for runs in results.values():
        for r in runs:
            r.setdefault("trained", len(r["anytime"]))
    for runs in results.values():  # a strategy that stopped early (a promotion did not fit) keeps its best
        for r in runs:
            r["anytime"] = (r["anytime"] + r["anytime"][-1:] * budget)[:budget]
    med = {name: np.median(np.array([r["anytime"] for r in runs]), axis=0) for name, runs in results.items()}
    print(f"\n| strategy | best val acc after {budget} epochs: median (min-max) | at {budget // 3} epochs | "
          f"epochs trained | wall s (median) | decision cost ms: median / mean |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        finals = [r["anytime"][budget - 1] for r in runs]
        third = [r["anytime"][budget // 3 - 1] for r in runs]
        spread = f"({min(finals):.4f}-{max(finals):.4f})"
        print(f"| {name} | {np.median(finals):.4f} {spread} | {np.median(third):.4f} | "
              f"{np.median([r['trained'] for r in runs]):.0f} | {np.median([r['wall'] for r in runs]):.0f} | "
              f"{np.median([r['ask_median_s'] for r in runs]) * 1000:.0f} / "
              f"{np.median([r['ask_total_s'] / max(r['asks'], 1) for r in runs]) * 1000:.0f} |")
    if "random" in med and "freeze_thaw" in med:
        target = float(med["random"][-1])
        e = reach(list(med["freeze_thaw"]), target)
        print(f"\nRandom's final (median curve): {target:.4f}; FreezeThaw's median curve reaches it after "
              f"{e} epochs = {e / budget:.2f} of the budget" if e else "\nFreezeThaw's median never reaches Random's")
        per_seed = {r["seed"]: r for r in results["random"]}
        for r in results["freeze_thaw"]:
            if r["seed"] in per_seed:
                rr = reach(r["anytime"], per_seed[r["seed"]]["anytime"][budget - 1])
                print(f"  seed {r['seed']}: FreezeThaw reaches that seed's Random final after {rr} epochs")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curve in med.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, label=name)
    ax.set_xlabel("epochs trained (all trials)")
    ax.set_ylabel("best validation accuracy (median over seeds)")
    ax.set_title("MNIST-1D MLP: anytime best validation accuracy at equal epochs")
    lo = min(float(c[len(c) // 20]) for c in med.values())
    ax.set_ylim(lo, None)
    ax.grid(alpha=0.3)
    ax.legend()
    Path(plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot, dpi=120, bbox_inches="tight")
    print(f"plot: {plot}")


if __name__ == "__main__":
    main()
