"""The driver's mirror of a study, re-read incrementally, equals a full read however drivers interleave."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tunelab import search, spaces, studies, trainers
from tunelab.studies.driver import Budget, Driver, row_of
from tunelab.studies.driver.views import view_of
from tunelab.studies.executors import Flag, run_work
from tunelab.studies.storage.lock import LIVE
from tunelab.trainers.replay import Curve, ReplayTable, TableHeader, table_space

FIELDS = ("state", "epochs", "config", "target", "owner", "paused_by", "superseded", "attrs", "value", "lease",
          "metrics", "retries", "stored_steps", "seconds", "grad_evals", "proposal", "error")  # checkpoint: below


def table(n: int = 24, epochs: int = 9) -> ReplayTable:
    space = spaces.Space(x=spaces.Categorical(tuple(range(n))))
    rng = np.random.default_rng(0)
    curves = []
    for i in range(n):
        rate = rng.uniform(0.1, 1.0)
        values = [float(1 - np.exp(-rate * (e + 1))) for e in range(epochs)]
        curves.append(Curve({"x": i}, 0, tuple(trainers.EpochResult(e + 1, 1.0, 1.0, v, 0.1, 1.0, e + 1)
                                               for e, v in enumerate(values)), test_metric=values[-1]))
    header = TableHeader("mirror", json.loads(space.to_json()), "accuracy", "maximize", epochs,
                         {"name": "mirror", "task": "classification", "input_shape": [2], "n_outputs": 2,
                          "batch_size": 4, "steps_per_epoch": 1})
    return ReplayTable(header, curves)


def view(row) -> tuple:
    return tuple(getattr(row, f) for f in FIELDS)


def check_totals(d: Driver) -> None:
    """The mirror's running totals equal what a walk over every row computes."""
    rows = list(d.rows.values())
    proposals = sorted((r for r in rows if not r.superseded),
                       key=lambda r: (r.proposal if r.proposal is not None else 10**9, r.number))
    assert [r.trial_id for r in d.proposals()] == [r.trial_id for r in proposals]
    assert d.mirror.n_proposals() == len(proposals)
    finished = ("complete", "pruned", "failed")
    assert d.finished_proposals() == sum(r.state.value in finished for r in proposals)
    assert d.mirror.totals() == (sum(r.epochs for r in rows), sum(r.grad_evals for r in rows))
    done = [(r.number, float(r.value)) for r in rows if r.state.value == "complete" and r.value is not None]
    assert d.study_best() == (max(done, key=lambda t: t[1]) if done else None)
    assert [r.number for r in d.mirror.unfinished()] == sorted(
        r.number for r in rows if r.state.value not in finished)
    assert all(d.ctx.row_of_number(r.number) is r for r in rows)
    # the history's views, rebuilt only for changed rows, equal views built afresh
    assert d.planner.history().trials == tuple(view_of(r, d.ctx.sign) for r in proposals)


@pytest.mark.parametrize("seed", [0, 1])
def test_incremental_mirror_equals_a_full_read_after_random_interleavings(tmp_path, seed):
    replay = trainers.Replay(table())
    study = studies.create("mirror", f"sqlite:///{tmp_path / 'm.db'}", space=table_space(replay), trainer=replay,
                           strategy=search.Hyperband(seed=seed))  # starts, pauses, resumes and retires trials
    drivers = []
    for _ in range(2):
        d = Driver(study, Budget(trials=40), n_workers=2, executor="local", progress=False, checkpoint_seconds=None,
                   max_failures=3, flush_seconds=0.0)
        d.load()
        LIVE.add(d.owner)  # alive as if running: their running trials are theirs, not orphans to recover
        drivers.append(d)
    queues: list[list] = [[], []]
    quiet = 0
    rng = np.random.default_rng(seed)
    try:
        for _ in range(120):
            i = int(rng.integers(2))
            d, queue = drivers[i], queues[i]
            if queue and (len(queue) == 2 or rng.random() < 0.5):
                work = queue.pop(int(rng.integers(len(queue))))
                d.finish(run_work(replay, work, d.on_epoch, Flag()))
            else:
                work = d.next_work()
                if work is not None:
                    queue.append(work)
            full = {t._trial_id: row_of(t) for t in study.storage.get_all_trials(study.study_id, deepcopy=False)}
            for d in drivers:
                if rng.random() < 0.5:  # a driver may hold the lock several times in a row (then it reads less)
                    continue
                with d.lock:
                    quiet += not d.lock.others_since()
                    d.planner.refresh()
                check_totals(d)
                mirror = {tid: r for tid, r in d.rows.items() if tid not in d.in_flight}
                assert {tid: view(r) for tid, r in mirror.items()} == {
                    tid: view(r) for tid, r in full.items() if tid not in d.in_flight}
                # the one change a finished trial may get: the best's checkpoint registration goes when a better
                # trial displaces it and its file is deleted (another driver's mirror may still name the file)
                assert all(r.checkpoint == full[tid].checkpoint or (r.state.value in ("complete", "pruned") and
                                                                    full[tid].checkpoint is None)
                           for tid, r in mirror.items())
            for r in full.values():  # a stored checkpoint name names a file that exists
                assert r.checkpoint is None or r.state.value == "running" or (
                    study.artifacts / r.checkpoint).exists(), (r.number, r.state, r.checkpoint)
        assert len(full) > 10 and any(r.state.value == "paused" for r in full.values())
        assert quiet > 10  # the incremental path (no other driver since) was taken
    finally:
        for d in drivers:
            LIVE.discard(d.owner)
