"""Optuna's multi-objective samplers on a NAS-Bench-201 table exported by `benchmarks/multi_objective.py`.

Runs in the optuna peer environment (`make_envs.sh optuna`): it imports nothing of tunelab, reads
the exported table (`.npz`: the error, latency and size of every cell, and the operations), and
runs one Optuna study with two minimised objectives: NSGAIISampler, TPESampler (multi-objective,
Ozaki et al. 2020) or GPSampler (Optuna's GP with log-EHVI). It prints, as one JSON line, the
objective vectors of every evaluation in order.

    python mo_peer.py TABLE.npz {nsga2|tpe|gp} SEED BUDGET {latency|size_mb}
"""

from __future__ import annotations

import json
import sys

import numpy as np
import optuna


def main() -> None:
    path, sampler_name, seed, budget, second = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    table = np.load(path)
    ops = [str(o) for o in table["ops"]]
    error, other = table["error"], table[second]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = {"nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
               "tpe": lambda: optuna.samplers.TPESampler(seed=seed, multivariate=True),
               "gp": lambda: optuna.samplers.GPSampler(seed=seed)}[sampler_name]()
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    out = []
    for _ in range(budget):
        trial = study.ask()
        index = [ops.index(trial.suggest_categorical(f"Op{i}", ops)) for i in range(6)]
        flat = int(np.ravel_multi_index(index, (len(ops),) * 6))
        values = [float(error[flat]), float(other[flat])]
        study.tell(trial, values)
        out.append(values)
    print(json.dumps({"optuna": optuna.__version__, "values": out}))


if __name__ == "__main__":
    main()
