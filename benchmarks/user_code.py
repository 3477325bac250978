"""What tunelab costs around your own code: `trainers.Function` vs the same loop called directly, and `Objective`.

**Function.** One training loop, a 5-epoch MLP on MNIST-1D written in plain PyTorch (index
permutation, forward, backward, step, a validation pass per epoch), runs three ways, alternating
in rotating order so that machine noise and cache effects hit each alike:

- `direct`: `loop(config, None)`, the function called as a user would without tunelab;
- `function`: `Function(loop).fit(config)`: `run.report` every epoch (no checkpoint file);
- `function+save`: the same with a checkpoint file, as in a study (`checkpoint_seconds=30`:
  `run.save` writes the file when the run ends or pauses, and at most every 30 s before).

Each of the two tunelab ways alternates with its own `direct` runs (in rotating order; the
saving phase apart, so its disk writes slow nothing else), and the ratio of median run times to
`direct` is printed (target: at most 1.02 for `function`).

**Objective.** `Objective(fn).fit(config)` against calling `fn(config)` (the wrapper's own
bookkeeping, in microseconds), and the wall time per evaluation of a study of a trivial
objective with Random search (the driver and the database per trial; `benchmarks/scale.py`
breaks that down).

    python benchmarks/user_code.py [--rounds 7] [--threads 1] [--out benchmarks/results/user_code.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tunelab import search, spaces, studies, trainers

CONFIG = {"optimizer": "adam", "adam.lr": 1e-3, "adam.beta1": 0.9, "adam.weight_decay": 1e-6}
DATA: dict[str, torch.Tensor] = {}


def loop(config: dict[str, Any], run: trainers.Run | None, epochs: int = 5) -> None:
    """A plain 5-epoch MLP loop; with a `run`, it reports and saves every epoch as tunelab asks."""
    x, y, xv, yv = DATA["x"], DATA["y"], DATA["xv"], DATA["yv"]
    model = torch.nn.Sequential(torch.nn.Linear(40, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128),
                                torch.nn.ReLU(), torch.nn.Linear(128, 10))
    optimizer = spaces.build_optimizer(config, model)
    gen = torch.Generator().manual_seed(0)
    start, until = (run.start_epoch, run.until_epoch) if run is not None else (0, epochs)
    for _ in range(start + 1, until + 1):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 100):
            idx = order[i:i + 100]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_loss = float(F.cross_entropy(model(xv), yv))
        if run is not None:
            decision = run.report(val_loss=val_loss)
            run.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()})
            if decision != "continue":
                return


def trivial(config: dict[str, Any]) -> float:
    """An objective that costs nothing."""
    return float(config["x"]) ** 2


def _alternate(ways: dict[str, Any], rounds: int) -> dict[str, list[float]]:
    """Seconds of each way per round, the ways run in rotating order."""
    for way in ways.values():  # warm-up
        way()
    times: dict[str, list[float]] = {k: [] for k in ways}
    names = list(ways)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            ways[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def time_function(rounds: int, folder: Path) -> dict[str, Any]:
    """Two phases, each against its own direct runs: `function`, then `function+save` (disk writes apart)."""
    fn = trainers.Function(loop, epochs=5, metric="val_loss", direction="minimize")
    direct = lambda: loop(CONFIG, None)  # noqa: E731
    plain = _alternate({"direct": direct, "function": lambda: fn.fit(CONFIG)}, rounds)
    saving = _alternate({"direct": direct, "function+save": lambda: fn.fit(
        CONFIG, checkpoint=folder / f"run-{time.perf_counter_ns()}.pt", checkpoint_seconds=30.0)}, rounds)
    median = {"direct": statistics.median(plain["direct"]), "function": statistics.median(plain["function"]),
              "direct (save phase)": statistics.median(saving["direct"]),
              "function+save": statistics.median(saving["function+save"])}
    return {"seconds": {"phase 1": plain, "phase 2": saving}, "median_s": median,
            "ratio": {"function": median["function"] / median["direct"],
                      "function+save": median["function+save"] / median["direct (save phase)"]}}


def time_objective(rounds: int, folder: Path, trials: int = 200) -> dict[str, Any]:
    objective = trainers.Objective(trivial)
    config = {"x": 0.5}
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        trivial(config)
    direct = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in range(n):
        objective.fit(config)
    wrapped = (time.perf_counter() - t0) / n
    per_eval = []
    space = spaces.Space(x=spaces.Float(-1.0, 1.0))
    for r in range(rounds):
        study = studies.create(f"o{r}", f"sqlite:///{folder / f'o{r}.db'}", space=space, trainer=objective,
                               strategy=search.Random(seed=r))
        t0 = time.perf_counter()
        study.optimize(trials=trials, progress=False)
        per_eval.append((time.perf_counter() - t0) / trials)
    return {"fit_overhead_us": (wrapped - direct) * 1e6, "study_ms_per_eval": [s * 1e3 for s in per_eval],
            "study_ms_per_eval_median": statistics.median(per_eval) * 1e3, "trials": trials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "user_code.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workload = trainers.workloads.mnist1d()
    DATA.update(x=workload.train.x, y=workload.train.y, xv=workload.val.x, yv=workload.val.y)
    with tempfile.TemporaryDirectory() as tmp:
        function = time_function(args.rounds, Path(tmp))
        objective = time_objective(3, Path(tmp))
    out = {"threads": args.threads, "rounds": args.rounds, "function": function, "objective": objective}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"Function / direct loop, 5-epoch MLP, median of {args.rounds}: "
          + ", ".join(f"{k} {v:.3f}x" for k, v in function["ratio"].items())
          + f" (direct {function['median_s']['direct']:.2f} s)")
    print(f"Objective.fit bookkeeping: {objective['fit_overhead_us']:.0f} us per evaluation; a study of a trivial "
          f"objective: {objective['study_ms_per_eval_median']:.1f} ms per evaluation (median of 3 x "
          f"{objective['trials']} trials)")


if __name__ == "__main__":
    main()
