"""The Ray executor against the local process pool and the in-process executor, on one machine.

For each executor (in process with 1 worker; the process pool and a local Ray instance with
`--workers` each), on the same fixed-seed study (random search over optimizer and MLP space on
MNIST-1D, `--trials` trials of `--epochs` epochs):

- start-up: opening the executor (for Ray: `ray.init` of a local instance and the actors'
  start) plus a 2-trial warm-up study that sends the trainer to the workers;
- per-trial overhead: (wall time x worker slots - training time) / trials on the measured
  study, where training time is what the workers report (`TrialRecord.seconds`); the ratio to
  the process pool's;
- the driver's own CPU time per trial (`time.process_time` of this process while only the
  workers train: decisions, database writes, relaying epochs), and from it how many busy
  workers one driver can keep fed: trial duration / driver CPU per trial;
- whether every trial's config, value and curve equal the in-process study's, bit for bit. The
  in-process study runs with the workers' torch thread count (`cores // workers`): a float sum
  split over another number of threads rounds differently, so a study's values depend on it
  with every executor (the in-process study at this process's own thread count is measured too).

    python benchmarks/ray_executor.py --trials 20 --epochs 5 --workers 2 --out benchmarks/results/ray_executor.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from tunelab import search, spaces, studies, trainers
from tunelab.studies.executors import LocalExecutor, ProcessExecutor


def space() -> spaces.Space:
    return spaces.optimizers(["sgd", "adamw"]) | spaces.schedules(["constant", "cosine"]) | spaces.mlp()


def open_executor(kind: str, workers: int):
    if kind.startswith("in-process"):
        return LocalExecutor()
    if kind == "pool":
        return ProcessExecutor(workers)
    from tunelab.studies.executors.ray_cluster import RayExecutor

    return RayExecutor(workers)


def measure(kind: str, workers: int, trials: int, epochs: int, folder: Path) -> dict:
    threads = torch.get_num_threads()
    if kind == "in-process":  # the reference: the thread count every pool or Ray worker uses
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    try:
        return _measure(kind, workers, trials, epochs, folder)
    finally:
        torch.set_num_threads(threads)


def _measure(kind: str, workers: int, trials: int, epochs: int, folder: Path) -> dict:
    trainer = trainers.Trainer(trainers.workloads.mnist1d(), epochs=epochs, seed=0)
    url = f"sqlite:///{folder / f'{kind}-{torch.get_num_threads()}.db'}"
    t0 = time.perf_counter()
    executor = open_executor(kind, workers)
    opened = time.perf_counter() - t0
    try:
        warm = studies.create("warm-up", url, space=space(), trainer=trainer, strategy=search.Random(seed=1))
        warm.optimize(trials=2, executor=executor, progress=False)
        started = time.perf_counter() - t0
        study = studies.create("measured", url, space=space(), trainer=trainer, strategy=search.Random(seed=0))
        cpu0, t1 = time.process_time(), time.perf_counter()
        study.optimize(trials=trials, executor=executor, progress=False)
        wall, cpu = time.perf_counter() - t1, time.process_time() - cpu0
    finally:
        executor.close()
    records = study.trials
    slots = 1 if kind.startswith("in-process") else executor.capacity
    training = sum(t.seconds or 0.0 for t in records)
    threads = torch.get_num_threads() if kind.startswith("in-process") else max(1, (os.cpu_count() or 1) // workers)
    out = {
        "executor": kind, "workers": slots, "torch_threads": threads, "trials": len(records),
        "open_s": opened, "startup_s": started,
        "wall_s": wall, "training_s": training, "trial_s": training / len(records),
        "overhead_per_trial_s": (wall * slots - training) / len(records),
        "non_training_share": (wall * slots - training) / (wall * slots),
        "values": [t.value for t in records], "configs": [t.config for t in records],
        "curves": [t.curve for t in records],
    }
    if not kind.startswith("in-process"):  # the driver only drives: its CPU time is all driver work
        out["driver_cpu_per_trial_s"] = cpu / len(records)
        out["driver_cpu_per_epoch_s"] = cpu / sum(t.epochs for t in records)
        out["max_busy_workers"] = out["trial_s"] / out["driver_cpu_per_trial_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ray_executor.json"))
    args = parser.parse_args()
    import ray

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("in-process", "pool", "ray"):
            rows[kind] = measure(kind, args.workers, args.trials, args.epochs, Path(tmp))
            r = rows[kind]
            print(f"{kind:>10}: start-up {r['startup_s']:.1f} s (open {r['open_s']:.1f} s), {r['trials']} trials in "
                  f"{r['wall_s']:.1f} s, training {r['trial_s']:.2f} s/trial, overhead "
                  f"{r['overhead_per_trial_s']:.3f} s/trial ({100 * r['non_training_share']:.1f}%)", flush=True)
        own = measure("in-process-own-threads", args.workers, args.trials, args.epochs, Path(tmp))
    reference = rows["in-process"]
    summary = {
        "ray_over_pool_overhead_per_trial": rows["ray"]["overhead_per_trial_s"] / rows["pool"]["overhead_per_trial_s"],
        "ray_over_pool_wall": rows["ray"]["wall_s"] / rows["pool"]["wall_s"],
        "ray_extra_startup_s": rows["ray"]["startup_s"] - rows["pool"]["startup_s"],
    }
    for kind in ("pool", "ray"):
        summary[f"{kind}_bit_equal_to_in_process"] = all(
            rows[kind][k] == reference[k] for k in ("configs", "values", "curves"))
    summary["in_process_at_own_threads"] = {
        "torch_threads": own["torch_threads"],
        "values_differing": sum(a != b for a, b in zip(own["values"], reference["values"], strict=True)),
    }
    for row in rows.values():
        del row["configs"], row["curves"]
    result = {
        "command": f"python benchmarks/ray_executor.py --trials {args.trials} --epochs {args.epochs} "
                   f"--workers {args.workers}",
        "machine": f"{platform.machine()}, {platform.processor() or '?'}, python {platform.python_version()}, "
                   f"ray {ray.__version__}",
        "date": time.strftime("%Y-%m-%d"), "rows": rows, "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(summary, indent=1))
    print(f"ray: driver CPU {rows['ray']['driver_cpu_per_trial_s'] * 1000:.1f} ms per trial "
          f"({rows['ray']['driver_cpu_per_epoch_s'] * 1000:.1f} ms per epoch) -> one driver keeps about "
          f"{rows['ray']['max_busy_workers']:.0f} workers busy with {rows['ray']['trial_s']:.1f}-s trials")


if __name__ == "__main__":
    main()
