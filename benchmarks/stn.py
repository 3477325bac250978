"""Self-tuning networks on MNIST-1D: STN and Delta-STN against fixed grids, Bayesian and Random search.

Setting (stated in the README): MNIST-1D (3200 train / 800 validation / 1000 test), trained long
enough to overfit, Adam at a constant learning rate; the regularisation hyperparameters tuned
are the dropout after each hidden layer or block, input dropout, Gaussian input noise and a
random shift of the signal (discrete, up to 8 positions). Two networks: the MLP 40-256-256-10
(`--mlp-epochs`) and the 1-D CNN of 3 blocks of 25 channels (`--cnn-epochs`).

For each network and paired seed (the trainer's seed; strategies' seeds equal it):
- `stn` / `delta-stn`: one `search.SelfTuning` study (one STN run, then its schedule replayed
  in a plain network trained from scratch);
- `fixed-grid`: the same STN network with its hyperparameters held fixed (no hyperparameter
  step: `warmup` = the whole run), at 6 points of a grid (every hyperparameter at the same
  fraction of its range: 0.02, 0.1, 0.2, 0.35, 0.5, 0.7); its best point by validation loss;
- `bayesian` / `random`: the plain network tuned over the same hyperparameters and ranges,
  20 trials each; the best trial by validation accuracy (the study's objective);
- `stn-from-<f>` (with `--methods`): STN started with every hyperparameter at fraction f of its
  range instead of the default start, to see whether runs from different starts converge.

Reported: test accuracy and final validation loss of each method (mean and sd over seeds), wall
time and epochs, the STN's wall time as a multiple of one plain training in the same run, the
learned trajectories, and the replayed schedule's result.

    python benchmarks/stn.py --seeds 3 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "stn.json"
DBS = ROOT / "results" / "stn"
PLOT = ROOT.parent / "docs" / "stn.png"
TUNE = ["model.dropout", "model.input_dropout", "model.input_noise", "model.shift"]
GRID = (0.02, 0.1, 0.2, 0.35, 0.5, 0.7)


def space(net: str):
    from tunelab import spaces

    regs = {"dropout": spaces.Float(0.0, 0.8, default=0.05), "input_dropout": spaces.Float(0.0, 0.5, default=0.05),
            "input_noise": spaces.Float(0.0, 1.0, default=0.05), "shift": spaces.Int(0, 8, default=1)}
    opt = spaces.Space(optimizer=spaces.Fixed("adam"), schedule=spaces.Fixed("constant"),
                       **{"adam.lr": spaces.Fixed(1e-3)})
    if net == "mlp":
        return opt | spaces.mlp(depth=2, width=256, activation="relu", **regs)
    return opt | spaces.cnn(dim=1, depth=3, channels=25, kernel=5, norm="none", activation="relu", **regs)


def grid_config(net: str, fraction: float) -> dict:
    sp = space(net)
    out = {}
    for name in TUNE:
        p = sp[name]
        value = p.low + fraction * (p.high - p.low)
        out[name] = round(value) if name == "model.shift" else float(value)
    return out


def run(net: str, method: str, seed: int, epochs: int, dbs: Path) -> dict:
    import torch

    from tunelab import search, studies, trainers

    torch.set_num_threads(1)
    dbs.mkdir(parents=True, exist_ok=True)
    trainer = trainers.Trainer(trainers.workloads.mnist1d(), epochs=epochs, seed=seed)
    url = f"sqlite:///{dbs / f'{net}-{method}-{seed}.db'}"
    t0 = time.perf_counter()
    out: dict = {"net": net, "method": method, "seed": seed, "epochs": epochs}
    if method in ("stn", "delta-stn") or method.startswith("stn-from-"):
        start = grid_config(net, float(method.rsplit("-", 1)[1])) if method.startswith("stn-from-") else None
        strategy = search.SelfTuning(seed=seed, tune=TUNE, delta=method == "delta-stn", warmup=warmup_epochs(epochs),
                                     config=start)
        study = studies.create(f"{net}-{method}-{seed}", url, space=space(net), trainer=trainer, strategy=strategy)
        study.optimize(trials=2, progress=False)
        stn, replay = study.trials[0], study.trials[1]
        out.update(test=stn.test_metric, val_loss=stn.metrics["val_loss"][-1], val_metric=stn.value,
                   seconds=stn.seconds, trial_epochs=stn.epochs, schedule=stn.results.get("schedule"),
                   scales=stn.results.get("scales"), replay_test=replay.test_metric, replay_val=replay.value,
                   replay_val_loss=replay.metrics["val_loss"][-1], replay_seconds=replay.seconds, error=stn.error)
    elif method == "fixed-grid":
        points = []
        for i, f in enumerate(GRID):
            strategy = search.SelfTuning(seed=seed, tune=TUNE, warmup=epochs, replay=False, config=grid_config(net, f))
            study = studies.create(f"{net}-grid{i}-{seed}", url, space=space(net), trainer=trainer, strategy=strategy)
            study.optimize(trials=1, progress=False)
            t = study.trials[0]
            points.append({"fraction": f, "test": t.test_metric, "val_loss": t.metrics["val_loss"][-1],
                           "val_metric": t.value, "seconds": t.seconds})
        best = min(points, key=lambda p: p["val_loss"])
        out.update(test=best["test"], val_loss=best["val_loss"], val_metric=best["val_metric"], points=points,
                   seconds=sum(p["seconds"] for p in points), best_fraction=best["fraction"])
    else:
        strategy = search.Bayesian(seed=seed) if method == "bayesian" else search.Random(seed=seed)
        study = studies.create(f"{net}-{method}-{seed}", url, space=space(net), trainer=trainer, strategy=strategy)
        study.optimize(trials=20, progress=False)
        best = study.best
        done = [t for t in study.trials if t.state == "complete"]
        out.update(test=best.test_metric, val_loss=best.metrics["val_loss"][-1], val_metric=best.value,
                   seconds=sum(t.seconds for t in study.trials),
                   one_training=statistics.median(t.seconds for t in done),
                   best_config={k: best.config[k] for k in TUNE if k in best.config})
    out["wall_seconds"] = time.perf_counter() - t0
    return out


def warmup_epochs(epochs: int) -> int:
    """The paper's 5 warm-up epochs, scaled: 5% of the run, at least 2."""
    return max(2, epochs // 20)


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results["runs"] if r["method"] == "stn" and r.get("schedule")]
    starts = [r for r in results["runs"] if r["method"].startswith("stn-from-") and r.get("schedule")]
    if not runs:
        return
    nets = sorted({r["net"] for r in runs})
    rows = [(net, [r for r in runs if r["net"] == net], "seeds") for net in nets]
    if starts:
        rows.append(("mlp", [r for r in runs if r["net"] == "mlp" and r["seed"] == 0] + starts, "starts"))
    names = list(runs[0]["schedule"])
    fig, axes = plt.subplots(len(rows), len(names), figsize=(3.0 * len(names), 2.8 * len(rows)), squeeze=False)
    for row, (net, group, kind) in enumerate(rows):
        for col, name in enumerate(names):
            ax = axes[row, col]
            for k, r in enumerate(group):
                values = r["schedule"].get(name, [])
                label = f"seed {r['seed']}" if kind == "seeds" else r["method"].replace("stn-from-", "start at ")
                label = "default start" if label == "stn" else label
                ax.plot(np.arange(1, len(values) + 1), values, color=f"C{k}", alpha=0.85, label=label)
            ax.set_title(f"{net}: {name}", fontsize=8)
            ax.grid(alpha=0.3)
            if col == 0:
                ax.legend(fontsize=6)
    fig.supxlabel("epoch")
    fig.tight_layout()
    PLOT.parent.mkdir(exist_ok=True)
    fig.savefig(PLOT, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--nets", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--methods", nargs="+", default=["stn", "delta-stn", "fixed-grid", "bayesian", "random"])
    parser.add_argument("--mlp-epochs", type=int, default=100)
    parser.add_argument("--cnn-epochs", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    global RESULTS, DBS
    if args.out is not None:
        RESULTS, DBS = args.out / "stn.json", args.out / "stn"
    epochs = {"mlp": args.mlp_epochs, "cnn": args.cnn_epochs}
    setting = {"epochs": epochs, "grid": list(GRID), "tune": TUNE}
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if results.get("setting") != setting:
        results = {"setting": setting, "runs": []}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["net"], r["method"], r["seed"]) for r in results["runs"]}
    todo = [(n, m, s) for n in args.nets for s in range(args.seeds) for m in args.methods if (n, m, s) not in done]
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run, n, m, s, epochs[n], DBS) for n, m, s in todo]
        for f in futures:
            r = f.result()
            results["runs"].append(r)
            RESULTS.write_text(json.dumps(results, indent=1))
            replay = f", replay test {r['replay_test']:.4f}" if "replay_test" in r else ""
            print(f"{r['net']} {r['method']:10s} seed {r['seed']}: test {r['test']:.4f}, val loss {r['val_loss']:.4f}, "
                  f"{r['seconds']:.0f} s training{replay}", flush=True)
    summary: dict = {}
    for net in sorted({r["net"] for r in results["runs"]}):
        one = [r["one_training"] for r in results["runs"] if r["net"] == net and "one_training" in r]
        base = statistics.median(one) if one else None
        summary[net] = {"one_training_seconds": base}
        for m in dict.fromkeys(r["method"] for r in results["runs"] if r["net"] == net):
            rs = [r for r in results["runs"] if r["net"] == net and r["method"] == m]
            if not rs:
                continue
            tests, losses = [r["test"] for r in rs], [r["val_loss"] for r in rs]
            row = {"test_mean": statistics.mean(tests), "test_sd": statistics.stdev(tests) if len(tests) > 1 else 0.0,
                   "val_loss_mean": statistics.mean(losses),
                   "val_loss_sd": statistics.stdev(losses) if len(losses) > 1 else 0.0,
                   "training_seconds_median": statistics.median(r["seconds"] for r in rs), "seeds": len(rs)}
            if base:
                row["training_seconds_vs_one_training"] = row["training_seconds_median"] / base
            if "replay_test" in rs[0]:
                rt = [r["replay_test"] for r in rs]
                row["replay_test_mean"] = statistics.mean(rt)
                row["replay_test_sd"] = statistics.stdev(rt) if len(rt) > 1 else 0.0
            summary[net][m] = row
    results["summary"] = summary
    RESULTS.write_text(json.dumps(results, indent=1))
    if args.out is None:
        plot(results)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
