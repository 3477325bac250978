"""What sharing a study between drivers costs per decision: the study lock and the incremental re-read.

Every decision of a driver (which trial to run next) takes the study lock, re-reads the trials
that other drivers may have changed, and gives the lock back. This measures those three steps
on an SQLite study of N trials, all finished (one driver alone: nothing to re-read) or with one
in 50 running under another driver, against creating one trial, which every decision that
starts a trial pays anyway.

    python benchmarks/driver_lock.py --trials 200 1000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from optuna.trial import TrialState as OTS

from tunelab import search, spaces, studies, trainers
from tunelab.studies.driver import Budget, Driver
from tunelab.studies.records import TrialState


def _median_ms(fn, repeats: int = 30) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def measure(n_trials: int, folder: Path, open_every: int = 0) -> dict[str, float]:
    space = spaces.optimizers(["adamw", "sgd"]) | spaces.mlp(width=spaces.Int(8, 64, log=True), depth=1)
    trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=2), epochs=2, seed=0)
    study = studies.create(f"lock{n_trials}", f"sqlite:///{folder / f'{n_trials}-{open_every}.db'}", space=space,
                           trainer=trainer, strategy=search.Random(seed=0))
    driver = Driver(study, Budget(trials=n_trials), n_workers=1, executor="local", progress=False,
                    checkpoint_seconds=None, max_failures=1, flush_seconds=0.0)
    driver.load()
    rng = __import__("numpy").random.default_rng(0)
    for i in range(n_trials):
        state = TrialState.RUNNING if open_every and i % open_every == 0 else TrialState.PENDING
        row = driver.recorder.create_trial(space.sample(rng), proposal=i, target=2, attrs={}, state=state)
        if state == TrialState.PENDING:
            study.storage.set_trial_state_values(row.trial_id, OTS.COMPLETE, values=[0.5])
        driver.in_flight.discard(row.trial_id)
    driver.load()

    def lock_cycle() -> None:
        with driver.lock:
            pass

    def refresh() -> None:
        driver.planner.refresh()

    def create() -> None:
        row = driver.recorder.create_trial(space.sample(rng), proposal=n_trials, target=2, attrs={},
                                           state=TrialState.PENDING)
        driver.rows.pop(row.trial_id)

    return {"trials": n_trials, "open": sum(r.state != "complete" for r in driver.rows.values()),
            "lock_ms": _median_ms(lock_cycle), "refresh_ms": _median_ms(refresh),
            "create_trial_ms": _median_ms(create)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[200, 1000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.trials:
            for open_every in (0, 50):
                r = measure(n, Path(tmp), open_every)
                print(f"{r['trials']:6d} trials ({r['open']:3d} others'): lock acquire+release {r['lock_ms']:.2f} ms, "
                      f"re-read {r['refresh_ms']:.2f} ms (medians of 30), create_trial {r['create_trial_ms']:.2f} ms")

if __name__ == "__main__":
    main()
