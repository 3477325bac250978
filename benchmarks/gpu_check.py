"""The CUDA path in one short run (under 5 minutes on one GPU), results in one JSON file.

1. Plain trainer vs a hand-written loop on CUDA (`benchmarks/trainer_speed.py`'s pairing): median
   epoch time of `Trainer.fit` and of the plain loop, MLP and CNN, fp32 and bf16 autocast (the
   plain loop always runs in fp32, so a bf16 row measures what autocast gains).
2. Population throughput: trials per second of K = 1, 8, 32, 128 members of the width-128 MLP
   (5 epochs) against sequential `Trainer.fit` of up to 8 of the same configs; peak GPU memory
   of each population (`torch.cuda.max_memory_allocated`).
3. A 20-trial random-search study on CUDA (population=16), its wall time and best value.
4. Latency fronts (issue 33): the inference latency (`trainers.latency`, batch 1, CUDA-synchronised)
   of the 1-D cell networks of a 16-trial NSGA-II study (accuracy against `latency_ms`), and the
   same networks timed on the CPU, with the Spearman correlation of the two rankings: CPU and
   GPU fronts differ, and by how much is the point of hardware-aware search.

    python benchmarks/gpu_check.py --out gpu_check.json          # on a GPU machine
    python benchmarks/gpu_check.py --device cpu --quick          # a dry run of the script here
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from population import configs
from trainer_speed import CONFIGS, paired_epochs

from tunelab import search, spaces, studies, trainers
from tunelab.trainers.population import Member, Population


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trainer_vs_loop(device: torch.device, epochs: int, rounds: int) -> list[dict]:
    workload = trainers.workloads.mnist1d()
    rows = []
    for precision in ("fp32", "bf16"):
        for name, config in CONFIGS.items():
            trainer = trainers.Trainer(workload, epochs=epochs, device=device, precision=precision)
            paired_epochs(config, trainer, 0)
            t_tr, t_pl = [], []
            for r in range(rounds):
                a, b = paired_epochs(config, trainer, r)
                t_tr += a
                t_pl += b
            rows.append({"model": name, "precision": precision, "plain_precision": "fp32",
                         "trainer_s_per_epoch": statistics.median(t_tr),
                         "plain_s_per_epoch": statistics.median(t_pl),
                         "ratio": statistics.median(t_tr) / statistics.median(t_pl)})
            print(rows[-1], flush=True)
    return rows


def populations(device: torch.device, ks: list[int], epochs: int) -> list[dict]:
    trainer = trainers.Trainer(trainers.workloads.mnist1d(), epochs=epochs, device=device, precision="fp32")
    rows = []
    Population(trainer).fit([Member(c, seed=i) for i, c in enumerate(configs("mlp128", 2))])
    for k in ks:
        cfgs = configs("mlp128", k)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sync(device)
        t0 = time.perf_counter()
        Population(trainer).fit([Member(c, seed=i) for i, c in enumerate(cfgs)])
        sync(device)
        pop = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        few = cfgs[: min(k, 8)]
        t0 = time.perf_counter()
        for i, c in enumerate(few):
            trainer.fit(c, seed=i)
        sync(device)
        seq = (time.perf_counter() - t0) / len(few) * k
        rows.append({"model": "mlp128", "k": k, "population_s": pop, "sequential_s": seq, "speedup": seq / pop,
                     "trials_per_s": k / pop, "peak_gpu_mb": peak})
        print(rows[-1], flush=True)
    return rows


def study(device: torch.device, trials: int, epochs: int) -> dict:
    space = (spaces.optimizers(["sgd", "adamw"]) | spaces.schedules(["constant", "cosine"])
             | spaces.mlp(width=128, depth=2, dropout=0.0, activation="relu"))
    trainer = trainers.Trainer(trainers.workloads.mnist1d(), epochs=epochs, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        s = studies.create("gpu", f"sqlite:///{Path(tmp) / 'g.db'}", space=space, trainer=trainer,
                           strategy=search.Random(seed=0))
        t0 = time.perf_counter()
        s.optimize(trials=trials, population=16, progress=False)
        wall = time.perf_counter() - t0
        devices = {t.user_attrs.get("device") for t in s.optuna.trials}  # where each trial trained
        return {"trials": len(s.trials), "wall_s": wall, "best": s.best.value if s.best else None,
                "states": sorted({str(t.state) for t in s.trials}), "devices": sorted(map(str, devices))}


def latency_fronts(device: torch.device, trials: int, epochs: int) -> dict:
    """An NSGA-II study of accuracy vs latency on `device`; its networks timed on the CPU too."""
    from scipy.stats import spearmanr

    from tunelab.trainers.latency import LatencyCache

    space = (spaces.Space(optimizer=spaces.Fixed("adamw"), schedule=spaces.Fixed("cosine"),
                          **{"adamw.lr": spaces.Fixed(3e-3)}) | spaces.cells(dim=1, channels=16, cells_per_stage=1))
    trainer = trainers.Trainer(trainers.workloads.mnist1d(), epochs=epochs, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        s = studies.create("lat", f"sqlite:///{Path(tmp) / 'l.db'}", space=space, trainer=trainer,
                           strategy=search.Evolution(seed=0, method="nsga2", population=8),
                           objectives={"accuracy": "maximize", "latency_ms": "minimize"})
        s.optimize(trials=trials, progress=False)
        cpu = LatencyCache()
        rows = [{"number": t.number, "genotype": t.genotype, "accuracy": t.values[0], "latency_ms": t.values[1],
                 "cpu_latency_ms": cpu.get(t.config, trainer.input_shape, trainer.n_outputs, torch.device("cpu"))}
                for t in s.trials if t.values is not None]
        front = [t.number for t in s.pareto_front]
    rho = spearmanr([r["latency_ms"] for r in rows], [r["cpu_latency_ms"] for r in rows]).statistic if rows else None
    return {"trials": rows, "front": front, "spearman_device_vs_cpu": rho}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check that the script runs")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    args = parser.parse_args()
    device = trainers.resolve_device(args.device)
    quick = args.quick
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    t0 = time.perf_counter()
    result["trainer_vs_loop"] = trainer_vs_loop(device, epochs=2 if quick else 4, rounds=1 if quick else 3)
    result["populations"] = populations(device, [1, 8] if quick else [1, 8, 32, 128], epochs=1 if quick else 5)
    result["study"] = study(device, trials=4 if quick else 20, epochs=1 if quick else 5)
    result["latency_fronts"] = latency_fronts(device, trials=4 if quick else 16, epochs=1 if quick else 3)
    result["seconds"] = time.perf_counter() - t0
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["study"]), f"written to {args.out}")


if __name__ == "__main__":
    main()
