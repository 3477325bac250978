"""How the driver's cost grows with a study's size: per-trial bookkeeping, adding a trial, reading a study.

A Random study on the replayed `digits_mlp` table (`trainers.Replay`, the simulated executor:
training costs nothing, so what is measured is tunelab's own work) grows to each size in
`--sizes`; at each size the script measures, in one process and one run:

- the driver's time per trial over the last `--window` trials (ms; O(1) means flat in size);
- `optimize(trials=n + 1)` on the study of n trials (s): opening, refreshing, one trial, closing;
- `study.trials` (s) against `optuna.load_study(...).trials` on the same database (s), the
  anchor, and their ratio;
- `Driver.create_trial` (ms, median over the window).

    python benchmarks/scale.py --sizes 500 1000 2000      # -> results/scale.json

The numbers are ratios within one run on one machine; the README gives them with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def measure(sizes: list[int], window: int) -> list[dict[str, float]]:
    import optuna

    import search
    import studies
    import trainers
    from studies.driver import Driver
    from trainers.replay import table_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    replay = trainers.Replay(HERE / "tables" / "digits_mlp.json.gz")
    creates: list[float] = []
    original = Driver.create_trial

    def timed(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            creates.append(time.perf_counter() - t)

    Driver.create_trial = timed
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/scale.db"
        study = studies.create("scale", url, space=table_space(replay), trainer=replay,
                               strategy=search.Random(seed=0))
        for n in sizes:
            start = max(0, n - window)
            if len(study.trials) < start:
                study.optimize(trials=start, executor="simulated", progress=False)
            creates.clear()
            t0 = time.perf_counter()
            study.optimize(trials=n, executor="simulated", progress=False)
            per_trial = (time.perf_counter() - t0) / max(1, n - start)
            t0 = time.perf_counter()
            study.optimize(trials=n + 1, executor="simulated", progress=False)
            add_one = time.perf_counter() - t0
            t0 = time.perf_counter()
            got = len(studies.load("scale", url, trainer=replay).trials)
            ours = time.perf_counter() - t0
            t0 = time.perf_counter()
            theirs_n = len(optuna.load_study(study_name="scale", storage=url).trials)
            theirs = time.perf_counter() - t0
            row = {"trials": got, "optuna_trials": theirs_n, "driver_ms_per_trial": 1000 * per_trial,
                   "optimize_add_one_s": add_one, "study_trials_s": ours, "optuna_trials_s": theirs,
                   "trials_ratio": ours / theirs, "create_trial_ms": 1000 * float(np.median(creates))}
            print(json.dumps(row), flush=True)
            rows.append(row)
    Driver.create_trial = original
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000])
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--out", default=str(HERE / "results" / "scale.json"))
    args = ap.parse_args()
    rows = measure(sorted(args.sizes), args.window)
    Path(args.out).write_text(json.dumps({"sizes": args.sizes, "window": args.window, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
