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

    python benchmarks/population.py --out benchmarks/results/population.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--study-rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/population.json"))
    parser.add_argument("--case", nargs=2, help=argparse.SUPPRESS)  # internal: one case in this process
    args = parser.parse_args()
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
