"""The shipped learning-curve PFN on the replay tables: its calibration and the cost of a decision.

    python benchmarks/curve_pfn.py calibration --draws 300    # 50% / 90% coverage of held-out curve ends
    python benchmarks/curve_pfn.py cost                       # FreezeThaw decision time at 100-500 observed epochs
    python benchmarks/curve_pfn.py scale --seeds 20           # A/B: the value scale anchored at the median seen
    # the leaderboard (regret at 1, 5, 20 full trainings; the pruner's epochs to Random's result):
    python benchmarks/replay.py run --strategies freeze_thaw_pfn random_pruned --seeds 20 --jobs 2
    python benchmarks/replay.py report

Calibration: each draw takes one recorded table run as the held-out curve, observed for its
first `k ~ U{1..T-1}` epochs, and 20 other runs of the table as context, each observed for a
random prefix (a third of them not at all); the PFN predicts the held-out run's value at its last
epoch, and a central interval of level q (the (1-q)/2 and (1+q)/2 predictive quantiles) covers
the recorded value or not. A calibrated model covers at rate q. Results in
`benchmarks/results/curve_pfn.json`.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
RESULTS = HERE / "results" / "curve_pfn.json"
TABLES = ("mnist1d_mlp", "digits_mlp", "mnist1d_cells", "char_lm")
LEVELS = (0.5, 0.9)


def _save(key: str, value: Any) -> None:
    out = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    out[key] = value
    out["machine"] = f"{platform.machine()}, python {platform.python_version()}, torch {torch.__version__}, 1 thread"
    out["date"] = time.strftime("%Y-%m-%d")
    from tunelab.search import pfn

    out["weights"] = {k: pfn.manifest()[k] for k in ("prior_version", "steps", "seed", "held_out_loss")}
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")


def calibration(draws: int, seed: int = 0) -> dict[str, Any]:
    """Coverage of central predictive intervals of the final value, per table."""
    from tunelab.search.pfn import PFNCurves, features
    from tunelab.trainers.replay import ReplayTable

    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for table in TABLES:
        t = ReplayTable.load(HERE / "tables" / f"{table}.json.gz")
        sign = -1.0 if t.header.direction == "maximize" else 1.0  # to "lower is better", as a History has it
        runs = [c for c in t.curves if c.seed == 0 and len(c.epochs) == t.header.epochs
                and all(np.isfinite(e.val_metric) for e in c.epochs)]
        T = t.header.epochs
        hits = {q: 0 for q in LEVELS}
        widths: dict[float, list[float]] = {q: [] for q in LEVELS}
        quantiles = sorted({(1 - q) / 2 for q in LEVELS} | {(1 + q) / 2 for q in LEVELS})
        for _ in range(draws):
            pick = rng.choice(len(runs), size=21, replace=False)
            target, context = runs[pick[0]], [runs[i] for i in pick[1:]]
            k = int(rng.integers(1, T))
            seen = [0 if rng.random() < 1 / 3 else int(rng.integers(1, T + 1)) for _ in context]
            configs = [target.config] + [c.config for c, s in zip(context, seen, strict=True) if s]
            curves = [[sign * e.val_metric for e in target.epochs[:k]]] + [
                [sign * e.val_metric for e in c.epochs[:s]] for c, s in zip(context, seen, strict=True) if s]
            model = PFNCurves(T).condition(features(t.space, configs), curves)
            qs = dict(zip(quantiles, model.quantiles([0], [T], quantiles)[0], strict=True))
            truth = sign * target.epochs[-1].val_metric
            for q in LEVELS:
                lo, hi = qs[(1 - q) / 2], qs[(1 + q) / 2]
                hits[q] += int(lo <= truth <= hi)
                widths[q].append(hi - lo)
        out[table] = {f"coverage_{int(q * 100)}": round(hits[q] / draws, 4) for q in LEVELS}
        out[table].update({f"median_width_{int(q * 100)}": round(float(np.median(widths[q])), 5) for q in LEVELS})
        out[table]["draws"] = draws
        print(table, out[table], flush=True)
    return out


def cost(rounds: int = 5) -> dict[str, Any]:
    """Process seconds of one FreezeThaw decision at about 100, 250 and 500 observed epochs (median of rounds).

    The candidate pool (2,048 Sobol configurations, encoded) is built once per process, as in a
    running study; each timed decision builds its surrogate from scratch (the power laws: a fit
    from scratch, an upper bound of what a decision between refits costs).
    """
    from tunelab import search, studies, trainers
    from tunelab.trainers.replay import table_space

    torch.set_num_threads(1)
    replay = trainers.Replay(HERE / "tables" / "mnist1d_mlp.json.gz")
    out: dict[str, Any] = {}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        study = studies.create("cost", f"sqlite:///{tmp}/c.db", space=table_space(replay), trainer=replay,
                               strategy=search.FreezeThaw(seed=0, surrogate="pfn"))
        for epochs in (100, 250, 500):
            study.optimize(epochs=epochs, executor="simulated", progress=False)
            history = study.history()
            observed = sum(t.epochs for t in history.trials)
            row = {}
            for surrogate in ("pfn", "power_law"):
                strategy = search.FreezeThaw(seed=0, surrogate=surrogate)
                strategy.ask(history)  # builds the candidate pool once per process, as a running study has it
                times = []
                for _ in range(rounds):
                    strategy._cache = strategy._base = strategy._refined = None  # the model from scratch each time
                    t0 = time.process_time()
                    strategy.ask(history)
                    times.append(time.process_time() - t0)
                row[surrogate] = round(float(np.median(times)), 4)
            out[str(observed)] = row
            print(observed, row, flush=True)
    return out


def scale(seeds: int) -> dict[str, Any]:
    """Paired A/B on every replay table: `FreezeThaw(surrogate="pfn")` with `pfn.SCALE_ANCHOR` "worst" and "median".

    The "worst" runs are the leaderboard's (`results/replay/<table>/freeze_thaw_pfn-<seed>.json`,
    run here when missing); returns the mean normalised regret at 5 and 20 full trainings of both,
    and on how many seeds "median" is better / worse.
    """
    sys.path.insert(0, str(HERE))
    import replay

    from tunelab.search import pfn

    out: dict[str, Any] = {}
    for table in TABLES:
        best, median, direction = replay._reference(table)
        sign = 1.0 if direction == "maximize" else -1.0
        rows = []
        for seed in range(seeds):
            stored = replay.RESULTS / table / f"freeze_thaw_pfn-{seed}.json"
            base = json.loads(stored.read_text()) if stored.exists() else replay.run_one(table, "freeze_thaw_pfn", seed)
            pfn.SCALE_ANCHOR = "median"
            try:
                variant = replay.run_one(table, "freeze_thaw_pfn", seed)
            finally:
                pfn.SCALE_ANCHOR = "worst"
            E = base["epochs_per_run"]
            rows.append([replay._regret(r["curve"], k * E, best, median, sign)
                         for r in (base, variant) for k in (5, 20)])
        a = np.array(rows)
        out[table] = {"seeds": seeds, "worst": {"5": float(a[:, 0].mean()), "20": float(a[:, 1].mean())},
                      "median": {"5": float(a[:, 2].mean()), "20": float(a[:, 3].mean())},
                      "median_better_worse": {"5": [int((a[:, 2] < a[:, 0]).sum()), int((a[:, 2] > a[:, 0]).sum())],
                                              "20": [int((a[:, 3] < a[:, 1]).sum()), int((a[:, 3] > a[:, 1]).sum())]}}
        print(table, out[table], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("calibration", "cost", "scale"))
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=20, help="scale: seeds per table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.action == "calibration":
        _save("calibration", calibration(args.draws))
    elif args.action == "scale":
        _save("scale_anchor", scale(args.seeds))
    else:
        _save("decision_seconds", cost())


if __name__ == "__main__":
    main()
