"""Seconds per ask of `search.Bayesian` against Optuna's GPSampler, on the same histories, in one run.

The space is a realistic conditional one, `spaces.optimizers(["adamw", "sgd"]) |
spaces.schedules() | spaces.mlp()` (13 searchable parameters, some of them conditional and
categorical). A history of `n` finished trials is made once per size from random
configurations and a smooth made-up objective (what the GP sees is what matters for its cost,
not where the values come from); each strategy then answers the same `ask` several times (the
median is reported). tunelab's Bayesian is timed with a cold GP fit (the first fit of a study,
or a fit before `warm_after` trials) and warm (from the previous fit's hyperparameters, what a
study does every ask after the first once `warm_after` trials are in); GPSampler reuses its last
kernel parameters as it does in a study.

    python benchmarks/bayesian_ask.py [--sizes 50 200] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunelab import search, spaces
from tunelab.search import History
from tunelab.search.base import TrialView


def space() -> spaces.Space:
    return spaces.optimizers(["adamw", "sgd"]) | spaces.schedules() | spaces.mlp()


def objective(config: dict[str, Any]) -> float:
    """A smooth made-up loss over the space's numbers and choices."""
    lr = next((v for k, v in config.items() if k.endswith(".lr")), 1e-3)
    value = (math.log10(lr) + 2.5) ** 2 + 0.3 * (config.get("model.depth", 2) - 2) ** 2
    value += 0.2 * abs(math.log2(config.get("model.width", 128) / 128)) + config.get("model.dropout", 0.0)
    return value + (0.3 if config.get("optimizer") == "sgd" else 0.0) + 0.1 * (config.get("schedule") == "constant")


def history(n: int, seed: int = 0) -> History:
    rng = np.random.default_rng(seed)
    sp = space()
    trials = []
    for i in range(n):
        config = sp.sample(rng)
        trials.append(TrialView(number=i, state="complete", config=config, value=objective(config), epochs=1))
    return History(sp, tuple(trials), max_epochs=1)


def _time(strategy: Any, hist: History, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        strategy.ask(hist)
        out.append(time.perf_counter() - t0)
    return out


def with_fit(hist: History, strategy: search.Bayesian) -> History:
    """The history with the GP fit of one ask stored on its last trial, as a study stores it."""
    from tunelab.search.gp_fit import FIT

    request = strategy.ask(hist)
    last = hist.trials[-1]
    stored = TrialView(number=last.number, state=last.state, config=last.config, value=last.value, epochs=1,
                       attrs={FIT: request.attrs[FIT]})
    return History(hist.space, (*hist.trials[:-1], stored), max_epochs=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bayesian_ask.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows: dict[str, Any] = {}
    for n in args.sizes:
        hist = history(n)
        cold = search.Bayesian(seed=0, warm_after=10**9)
        warm = search.Bayesian(seed=0, warm_after=1)
        gp = search.OptunaSampler("gp", seed=0)
        gp.ask(hist)  # GPSampler keeps its last kernel parameters: the timed asks are warm, as in a study
        warm_hist = with_fit(hist, warm)
        times = {"bayesian_cold": _time(cold, hist, args.repeats),
                 "bayesian_warm": _time(warm, warm_hist, args.repeats), "optuna_gp": _time(gp, hist, args.repeats)}
        median = {k: statistics.median(v) for k, v in times.items()}
        rows[str(n)] = {"seconds": times, "median_s": median,
                        "ratio_to_gpsampler": {k: median[k] / median["optuna_gp"] for k in median}}
        print(f"n={n}: " + ", ".join(f"{k} {v:.2f} s ({v / median['optuna_gp']:.1f}x)" for k, v in median.items()),
              flush=True)
    out = {"space_dims": len(space().names), "threads": args.threads, "sizes": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
