"""Population training against sequential `Trainer.fit`, on MNIST-1D.

1. Throughput: trials per second of K = 1, 4, 16, 64 members trained as one population
   (`trainers.Population`), for MLPs of width 32, 128 and 512 (depth 2) and the 1-D CNN (depth 3,
   25 channels), 5 epochs each, against `Trainer.fit` of the same configs one after another.
   Rounds alternate population and sequential runs in one process; the ratio is the median over
   rounds. Sequential time is measured on up to 8 of the K configs (trials are independent, so
   trials/s = configs / time). Each case runs in a fresh process, whose peak resident memory is
   reported (the population's: a sequential run holds one model).
2. A 32-trial random-search study of a width-64 MLP (SGD / AdamW, two schedules), with
   `population=16` against `population=1`: wall time of `optimize`, alternating, median.
3. `--realistic`: a random-search study on the space users write,
   `spaces.optimizers(["adamw", "sgd"]) | spaces.mlp(depth=2, width=64)` with its default dropout
   and activation ranges: trials per second of `optimize(population=16)` against
   `population=1` (one in-process worker, 1 torch thread), alternating, median over rounds, with
   the sizes of the populations the planner formed and a check that both made the same trials.

    python benchmarks/population.py --out benchmarks/results/population.json
    OMP_NUM_THREADS=1 python benchmarks/population.py --realistic \
        --out benchmarks/results/population_realistic_after.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tunelab import search, spaces, studies, trainers
from tunelab.trainers.population import Member, Population

MODELS = {
    "mlp32": {"model": "mlp", "model.width": 32, "model.depth": 2, "model.activation": "relu", "model.dropout": 0.0},
    "mlp128": {"model": "mlp", "model.width": 128, "model.depth": 2, "model.activation": "relu", "model.dropout": 0.0},
    "mlp512": {"model": "mlp", "model.width": 512, "model.depth": 2, "model.activation": "relu", "model.dropout": 0.0},
    "cnn": {"model": "cnn", "model.dim": 1, "model.depth": 3, "model.channels": 25, "model.kernel": 5,
            "model.norm": "none", "model.dropout": 0.0, "model.activation": "relu"},
}


def configs(model: str, k: int) -> list[dict]:
    """K configs of one architecture: AdamW and SGD with learning rates and schedules drawn at random."""
    rng = np.random.default_rng(k)
    space = spaces.optimizers(["adamw", "sgd"]) | spaces.schedules(["constant", "cosine"])
    return [{**space.sample(rng), **MODELS[model]} for _ in range(k)]


def case(model: str, k: int, epochs: int, rounds: int) -> dict:
    trainer = trainers.Trainer(trainers.workloads.mnist1d(), epochs=epochs, seed=0)
    cfgs = configs(model, k)
    members = [Member(c, seed=i) for i, c in enumerate(cfgs)]
    sequential = cfgs[: min(k, 8)]
    Population(trainer).fit(members[:2])  # warm-up (first calls of each kernel)
    trainer.fit(cfgs[0], seed=0)
    pop_s, seq_s = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        Population(trainer).fit(members)
        pop_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i, c in enumerate(sequential):
            trainer.fit(c, seed=i)
        seq_s.append((time.perf_counter() - t0) / len(sequential) * k)
    ratios = [s / p for s, p in zip(seq_s, pop_s, strict=True)]
    return {"model": model, "k": k, "epochs": epochs, "population_s": statistics.median(pop_s),
            "sequential_s": statistics.median(seq_s), "trials_per_s": k / statistics.median(pop_s),
            "sequential_trials_per_s": k / statistics.median(seq_s), "speedup": statistics.median(ratios),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def study(population: int, trials: int, epochs: int) -> float:
    space = (spaces.optimizers(["sgd", "adamw"]) | spaces.schedules(["constant", "cosine"])
             | spaces.mlp(width=64, depth=2, dropout=0.0, activation="relu"))
    trainer = trainers.Trainer(trainers.workloads.mnist1d(), epochs=epochs, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        s = studies.create("population", f"sqlite:///{Path(tmp) / 'p.db'}", space=space, trainer=trainer,
                           strategy=search.Random(seed=0))
        t0 = time.perf_counter()
        s.optimize(trials=trials, population=population, progress=False)
        return time.perf_counter() - t0


REALISTIC = "spaces.optimizers(['adamw', 'sgd']) | spaces.mlp(depth=2, width=64)"


def realistic_study(population: int, trials: int, epochs: int) -> dict:
    """One study on the realistic space: its trials per second and the populations it trained."""
    import tunelab.trainers.population as module

    sizes: list[int] = []

    class Counted(module.Population):
        def fit(self, members, **kwargs):  # type: ignore[no-untyped-def]
            sizes.append(len(members))
            return super().fit(members, **kwargs)

    space = spaces.optimizers(["adamw", "sgd"]) | spaces.mlp(depth=2, width=64)
    trainer = trainers.Trainer(trainers.workloads.mnist1d(), epochs=epochs, seed=0)
    original, module.Population = module.Population, Counted  # what run_population builds
    try:
        with tempfile.TemporaryDirectory() as tmp:
            s = studies.create("realistic", f"sqlite:///{Path(tmp) / 'r.db'}", space=space, trainer=trainer,
                               strategy=search.Random(seed=0))
            t0 = time.perf_counter()
            s.optimize(trials=trials, population=population, progress=False, threads=1)
            wall = time.perf_counter() - t0
            configs = [t.config for t in s.trials]
    finally:
        module.Population = original
    return {"wall_s": wall, "trials_per_s": len(configs) / wall, "populations": sizes,
            "trials_alone": len(configs) - sum(sizes), "configs": json.dumps(configs, sort_keys=True)}


def realistic(trials: int, epochs: int, rounds: int, k: int) -> dict:
    """K against 1 on the realistic space (`--realistic`), alternating rounds, medians."""
    realistic_study(k, 4, 1)  # warm-up
    runs: dict[int, list[dict]] = {k: [], 1: []}
    for _ in range(rounds):
        for population in (k, 1):
            runs[population].append(realistic_study(population, trials, epochs))
            r = runs[population][-1]
            print(f"population={population:>2}: {r['trials_per_s']:6.2f} trials/s ({r['wall_s']:.1f} s), "
                  f"populations {r['populations']}, alone {r['trials_alone']}", flush=True)
    same = len({r["configs"] for rs in runs.values() for r in rs}) == 1
    ratios = [a["trials_per_s"] / b["trials_per_s"] for a, b in zip(runs[k], runs[1], strict=True)]
    return {"space": REALISTIC, "trials": trials, "epochs": epochs, "rounds": rounds, "k": k,
            "trials_per_s_k": statistics.median(r["trials_per_s"] for r in runs[k]),
            "trials_per_s_1": statistics.median(r["trials_per_s"] for r in runs[1]),
            "speedup": statistics.median(ratios), "speedups": ratios,
            "populations_k": runs[k][0]["populations"], "trials_alone_k": runs[k][0]["trials_alone"],
            "same_trials": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--study-rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/population.json"))
    parser.add_argument("--realistic", action="store_true", help="only the realistic-space study (K vs 1)")
    parser.add_argument("--trials", type=int, default=64, help="trials of each --realistic study")
    parser.add_argument("--k", type=int, default=16, help="population of the --realistic study")
    parser.add_argument("--case", nargs=2, help=argparse.SUPPRESS)  # internal: one case in this process
    args = parser.parse_args()
    if args.realistic:
        torch.set_num_threads(1)
        summary = realistic(args.trials, args.epochs, args.study_rounds, args.k)
        print(json.dumps({k: v for k, v in summary.items() if k != "populations_k"}, indent=1))
        result = {"command": " ".join(["python", "benchmarks/population.py", *sys.argv[1:]]),
                  "machine": f"{platform.machine()}, python {platform.python_version()}, 1 torch thread",
                  "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%d"), **summary}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        return
    if args.case:
        print(json.dumps(case(args.case[0], int(args.case[1]), args.epochs, args.rounds)))
        return
    rows = []
    for model in args.models:
        for k in args.ks:
            done = subprocess.run([sys.executable, __file__, "--case", model, str(k), "--epochs", str(args.epochs),
                                   "--rounds", str(args.rounds)], capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{model:>7} K={k:>3}: {row['trials_per_s']:7.2f} trials/s vs {row['sequential_trials_per_s']:6.2f} "
                  f"sequential, {row['speedup']:5.2f}x, peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)
    walls: dict[int, list[float]] = {1: [], 16: []}
    study(16, 4, 1)  # warm-up
    for _ in range(args.study_rounds):
        for population in (16, 1):
            walls[population].append(study(population, 32, args.epochs))
    summary = {"study_wall_k1_s": statistics.median(walls[1]), "study_wall_k16_s": statistics.median(walls[16]),
               "study_k16_over_k1": statistics.median([a / b for a, b in zip(walls[16], walls[1], strict=True)])}
    print(json.dumps(summary, indent=1))
    result = {"command": " ".join(["python", "benchmarks/population.py", *sys.argv[1:]]),
              "machine": f"{platform.machine()}, python {platform.python_version()}", "date": time.strftime("%Y-%m-%d"),
              "rows": rows, "study": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
