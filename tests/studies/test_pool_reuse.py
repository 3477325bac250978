"""A process pool's workers serve the next `optimize` call and stop on `studies.close_workers()`."""

from __future__ import annotations

import pytest
from conftest import small_space

from tunelab import search, studies
from tunelab.studies.executors import pool as pool_module


@pytest.mark.slow  # ~15 s; test_compare's shared-pool test covers reuse by default
def test_workers_serve_the_next_optimize_call_and_stop_on_close_workers(tmp_path, small_trainer):
    studies.close_workers()  # start without idle pools of other tests
    url = f"sqlite:///{tmp_path / 'p.db'}"
    study = studies.create("p", url, space=small_space(), trainer=small_trainer, strategy=search.Random(seed=0))
    study.optimize(trials=2, n_workers=2, threads=1, progress=False)
    (pool,) = pool_module._IDLE[(2, 1)]  # idle pools by (workers, threads per worker)
    workers = dict(pool._pool._processes)
    assert len(workers) >= 1 and all(p.is_alive() for p in workers.values())

    other = studies.create("q", url, space=small_space(), trainer=small_trainer, strategy=search.Random(seed=1))
    other.optimize(trials=2, n_workers=2, threads=1, progress=False)  # another study (a comparison's next arm)
    study.optimize(trials=4, n_workers=2, threads=1, progress=False)
    assert pool_module._IDLE[(2, 1)] == [pool] and dict(pool._pool._processes) == workers  # the same processes
    assert [t.state for t in study.trials] == ["complete"] * 4 and len(other.trials) == 2

    small_trainer.epochs = 1  # a trainer changed between calls reaches the workers changed
    try:
        study.optimize(trials=5, n_workers=2, threads=1, progress=False)
    finally:
        small_trainer.epochs = 2
    assert study.trials[-1].epochs == 1
    study.optimize(trials=6, n_workers=2, threads=2, progress=False)  # other threads per worker: another pool
    assert pool_module._IDLE[(2, 1)] == [pool] and len(pool_module._IDLE[(2, 2)]) == 1

    studies.close_workers()
    assert not pool_module._IDLE
    assert all(not p.is_alive() for p in workers.values())
