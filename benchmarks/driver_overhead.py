"""Driver overhead of a study, and the Bayesian strategy's own ask time.

1. A 40-trial MNIST-1D study (random search over optimizer, schedule and MLP space, 60-epoch
   trials, SQLite): overhead = (wall time of `optimize` - time inside `Trainer.fit`) / wall time.
   Everything the study layer does counts: database writes (also those made from the per-epoch
   callback inside `fit`), leases, the strategy's asks, bookkeeping. Checkpoint writes happen
   inside `fit` and count as training. Target (DESIGN section 7): <= 2%.
   With `--population K` the study trains up to K trials at once as one population
   (`optimize(population=K)`): training time is then the time inside `Population.fit`, less its
   per-member `report` callbacks (driver work), and the overhead is the non-training share
   (target, issue 32: <= 5%).
2. `search.Bayesian().ask(history)` on synthetic histories of 25, 50 and 100 finished trials
   of the same space (median of 3 asks each).

    python benchmarks/driver_overhead.py --trials 40
    python benchmarks/driver_overhead.py --trials 32 --epochs 5 --population 16
    python benchmarks/driver_overhead.py --trials 64 --epochs 5 --population 16 --realistic --no-ask
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from tunelab import search, spaces, studies, trainers


class TimedTrainer(trainers.Trainer):
    """A Trainer that adds up the wall time spent training inside `fit`.

    The study's per-epoch `report` callback runs inside `fit` but is driver work (it records
    the epoch and writes the database): its time is subtracted from the training time.
    """

    fit_seconds = 0.0

    def fit(self, *args, report=None, **kwargs):
        spent_in_report = 0.0

        def timed_report(epoch):
            nonlocal spent_in_report
            t = time.perf_counter()
            try:
                return report(epoch)
            finally:
                spent_in_report += time.perf_counter() - t

        t0 = time.perf_counter()
        try:
            return super().fit(*args, report=timed_report if report else None, **kwargs)
        finally:
            TimedTrainer.fit_seconds += time.perf_counter() - t0 - spent_in_report


class TimedPopulation(trainers.Population):
    """A Population that adds up the wall time spent training inside `fit` (its reports are driver work)."""

    def fit(self, members, *, report=None, **kwargs):
        spent_in_report = 0.0

        def timed_report(i, epoch):
            nonlocal spent_in_report
            t = time.perf_counter()
            try:
                return report(i, epoch)
            finally:
                spent_in_report += time.perf_counter() - t

        t0 = time.perf_counter()
        try:
            return super().fit(members, report=timed_report if report else None, **kwargs)
        finally:
            TimedTrainer.fit_seconds += time.perf_counter() - t0 - spent_in_report


class Timed:
    """Adds up the wall time of calls to some functions (outermost calls only) and counts them."""

    def __init__(self) -> None:
        self.seconds, self.calls, self.depth = 0.0, 0, 0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            if self.depth:
                return fn(*args, **kwargs)
            self.depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1
                self.seconds += time.perf_counter() - t0
                self.calls += 1

        return timed


def timing_the_database() -> tuple[Timed, Timed, list]:
    """Time every public function of the storage writer (each one transaction) and the study lock's acquire
    and release; returns the timers and what to restore."""
    import inspect

    from tunelab.studies.storage import lock, writer

    writes, locks, restore = Timed(), Timed(), []
    for name, fn in inspect.getmembers(writer, inspect.isfunction):
        if not name.startswith("_") and fn.__module__ == writer.__name__:
            restore.append((writer, name, fn))
            setattr(writer, name, writes.wrap(fn))
    for name in ("acquire", "release"):
        fn = getattr(lock.StudyLock, name)
        restore.append((lock.StudyLock, name, fn))
        setattr(lock.StudyLock, name, locks.wrap(fn))
    return writes, locks, restore


def space(fixed_model: bool = False, realistic: bool = False) -> spaces.Space:
    """The benchmark's space; with `fixed_model` one MLP architecture (width 64, depth 2), so trials share it.

    `realistic`: the space of issue 32, `spaces.optimizers(["adamw", "sgd"]) | spaces.mlp(depth=2,
    width=64)` with its default dropout and activation ranges (one shape, so trials share it too).
    """
    if realistic:
        return spaces.optimizers(["adamw", "sgd"]) | spaces.mlp(depth=2, width=64)
    model = spaces.mlp(width=64, depth=2, dropout=0.0, activation="relu") if fixed_model else spaces.mlp()
    return spaces.optimizers(["sgd", "adamw"]) | spaces.schedules(["constant", "cosine"]) | model


def overhead(trials: int, epochs: int, progress: bool, population: int = 1, realistic: bool = False) -> dict:
    trainer = TimedTrainer(trainers.workloads.mnist1d(), epochs=epochs, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        study = studies.create("overhead", f"sqlite:///{Path(tmp) / 'o.db'}", space=space(population > 1, realistic),
                               trainer=trainer, strategy=search.Random(seed=0))
        TimedTrainer.fit_seconds = 0.0
        writes, locks, restore = timing_the_database()
        t0 = time.perf_counter()
        if population > 1:
            import tunelab.trainers.population as module

            module.Population, original = TimedPopulation, module.Population  # what run_population builds
            try:
                study.optimize(trials=trials, progress=progress, population=population)
            finally:
                module.Population = original
        else:
            study.optimize(trials=trials, progress=progress)
        wall = time.perf_counter() - t0
        for owner, name, fn in restore:
            setattr(owner, name, fn)
        n = len(study.trials)
    return {"trials": n, "wall_s": wall, "fit_s": TimedTrainer.fit_seconds,
            "overhead": (wall - TimedTrainer.fit_seconds) / wall, "writes_s": writes.seconds,
            "writes": writes.calls, "lock_s": locks.seconds, "locks": locks.calls}


def ask_times(sizes: list[int]) -> dict:
    sp = space()
    rng = np.random.default_rng(0)
    out = {}
    for n in sizes:
        trials = []
        for i in range(n):
            config = sp.sample(rng)
            lr = next(v for k, v in config.items() if k.endswith(".lr"))
            value = -0.9 + 0.05 * (math.log10(lr) + 2.5) ** 2 + 0.02 * rng.normal()
            trials.append(search.TrialView(i, "complete", config, value=value, curve=(value,), epochs=1))
        history = search.History(sp, tuple(trials), max_epochs=1)
        times = []
        for k in range(3):
            strategy = search.Bayesian(seed=k)
            t0 = time.perf_counter()
            strategy.ask(history)
            times.append(time.perf_counter() - t0)
        out[n] = float(np.median(times))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--population", type=int, default=1)
    ap.add_argument("--no-ask", action="store_true", help="skip the Bayesian ask times")
    ap.add_argument("--realistic", action="store_true", help="the space of issue 32 (dropout, activation vary)")
    args = ap.parse_args()
    r = overhead(args.trials, args.epochs, args.progress, args.population, args.realistic)
    inside = "Trainer.fit" if args.population == 1 else f"Population.fit (population={args.population})"
    target = 2 if args.population == 1 else 5
    print(f"{r['trials']}-trial study, {args.epochs} epochs per trial: wall {r['wall_s']:.1f} s, inside "
          f"{inside} {r['fit_s']:.1f} s, driver overhead {100 * r['overhead']:.2f}% (target <= {target}%)")
    rest = r["wall_s"] - r["fit_s"] - r["writes_s"] - r["lock_s"]
    print(f"  of the wall time: database writes {100 * r['writes_s'] / r['wall_s']:.1f}% ({r['writes']} calls, "
          f"{1000 * r['writes_s'] / max(r['writes'], 1):.1f} ms each), study lock "
          f"{100 * r['lock_s'] / r['wall_s']:.1f}% ({r['locks']} calls), the rest {100 * rest / r['wall_s']:.1f}%")
    if args.no_ask:
        return
    for n, s in ask_times([25, 50, 100]).items():
        print(f"Bayesian ask with {n} finished trials: {s:.2f} s (median of 3)")


if __name__ == "__main__":
    main()
