"""trainers.Replay: a recorded table answers `fit` like the trainer that recorded it."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tunelab import search, spaces, studies, trainers
from tunelab.spaces import Categorical, Fixed
from tunelab.studies.driver import SECONDS_SPENT
from tunelab.trainers.replay import Curve, ReplayTable, TableError, TableHeader, table_space

ROOT = Path(__file__).resolve().parents[2]


def grid_space() -> spaces.Space:
    optim = spaces.optimizers(["sgd", "adamw"]).replace(**{
        "sgd.lr": Categorical((0.01, 0.3)), "sgd.momentum": Fixed(0.9),
        "sgd.nesterov": Fixed(False),
        "sgd.weight_decay": Fixed(0.0), "adamw.lr": Categorical((1e-3, 1e-2)), "adamw.beta1": Fixed(0.9),
        "adamw.weight_decay": Fixed(0.0)})
    model = spaces.mlp(width=Categorical((8, 16)), depth=1, dropout=0.0, activation="relu")
    return optim | spaces.schedules(["constant"]) | model


def grid_configs(space: spaces.Space) -> list[dict]:
    configs = []
    for optimizer, lrs in (("sgd", (0.01, 0.3)), ("adamw", (1e-3, 1e-2))):
        for lr in lrs:
            for width in (8, 16):
                configs.append(space.complete({"optimizer": optimizer, f"{optimizer}.lr": lr, "model.width": width}))
    return configs


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A real study of the 8 configurations of a small grid (4 epochs), and its table file."""
    folder = tmp_path_factory.mktemp("record")
    workload = trainers.workloads.mnist1d(n_train=256, max_epochs=4)
    trainer = trainers.Trainer(workload, epochs=4, seed=0)
    space = grid_space()
    configs = grid_configs(space)
    study = studies.create("record", f"sqlite:///{folder / 'record.db'}", space=space, trainer=trainer,
                           strategy=search.Enqueue(configs))
    study.optimize(trials=len(configs), progress=False)
    path = studies.to_table(study, folder / "small.json.gz")
    return study, path


def test_a_replayed_study_reports_the_recorded_values_epoch_by_epoch(recorded, tmp_path):
    study, path = recorded
    replay = trainers.Replay(path)
    assert len(replay.table) == 8 and replay.epochs == 4
    again = studies.create("again", f"sqlite:///{tmp_path / 'replay.db'}", space=table_space(replay), trainer=replay,
                           strategy=search.Enqueue([t.config for t in study.trials]))
    again.optimize(trials=8, progress=False)
    original = {json.dumps(t.config, sort_keys=True): t for t in study.trials}
    for t in again.trials:
        o = original[json.dumps(t.config, sort_keys=True)]
        assert t.state == o.state
        assert t.metrics == o.metrics  # every metric of every epoch, seconds and grad_evals included
        assert t.test_metric == o.test_metric
        assert (t.n_params, t.flops) == (o.n_params, o.flops)
    assert again.best.value == study.best.value


def test_pause_resume_and_decisions_through_replay(recorded, tmp_path):
    _, path = recorded
    replay = trainers.Replay(path)
    curve = replay.table.curves[3]
    ckpt = tmp_path / "run.pt"
    first = replay.fit(curve.config, until_epoch=2, checkpoint=ckpt)
    assert first.status == "paused" and [e.epoch for e in first.epochs] == [1, 2] and ckpt.exists()
    assert first.test_metric is None
    stopped = replay.fit(curve.config, checkpoint=ckpt, report=lambda e: "pause" if e.epoch == 3 else None)
    assert stopped.status == "paused" and len(stopped.epochs) == 3
    rest = replay.fit(curve.config, checkpoint=ckpt)
    assert rest.status == "complete" and tuple(rest.epochs) == curve.epochs
    assert rest.test_metric == curve.test_metric
    assert rest.best_val_metric == max(e.val_metric for e in curve.epochs)
    with pytest.raises(studies.CheckpointError, match="another run"):
        replay.fit(replay.table.curves[4].config, checkpoint=ckpt)


def test_multi_fidelity_strategies_see_recorded_prefixes(recorded, tmp_path):
    _, path = recorded
    replay = trainers.Replay(path)
    study = studies.create("hb", f"sqlite:///{tmp_path / 'hb.db'}", space=table_space(replay), trainer=replay,
                           strategy=search.Hyperband(seed=1))
    study.optimize(epochs=40, executor="simulated", n_workers=2, progress=False)
    assert any(t.state == "pruned" or t.epochs < 4 for t in study.trials)
    for t in study.trials:
        if t.epochs:
            recorded_curve = replay.table.get(t.config, 0).epochs
            assert t.curve == [e.val_metric for e in recorded_curve[: t.epochs]]


def test_a_study_becomes_a_table_and_merges(recorded, tmp_path):
    study, path = recorded
    table = ReplayTable.load(path)
    assert table.header.space == json.loads(study.space.to_json())
    assert table.header.workload["steps_per_epoch"] == study.trainer.steps_per_epoch(study.trainer.batch_size)
    half = ReplayTable(table.header, table.curves[:3])
    out = half.write(tmp_path / "t.json.gz")
    merged = ReplayTable.load(studies.to_table(study, out, merge=True))
    assert len(merged) == 8


def test_bad_input_is_named(recorded, tmp_path):
    _, path = recorded
    with pytest.raises(TableError, match="no replay table"):
        trainers.Replay(tmp_path / "missing.json.gz")
    junk = tmp_path / "junk.json.gz"
    with gzip.open(junk, "wt") as f:
        f.write('{"config": {}}\n')
    with pytest.raises(TableError, match="not a tunelab replay table"):
        trainers.Replay(junk)
    replay = trainers.Replay(path)
    outside = {**replay.table.curves[0].config, "model.width": 64}
    with pytest.raises(TableError, match="not in the replay table"):
        replay.fit(outside)
    with pytest.raises(TableError, match="seeds"):
        replay.fit(replay.table.curves[0].config, seed=5)
    with pytest.raises(TableError, match="not the replay table"):
        studies.create("wide", f"sqlite:///{tmp_path / 'w.db'}", space=grid_space().replace(
            **{"model.width": Categorical((8, 16, 64))}), trainer=replay)
    with pytest.raises(TableError, match="outside must be"):
        trainers.Replay(path, outside="guess")
    with pytest.raises(studies.ConfigError, match="holds no data"):
        replay.evaluate(torch.nn.Linear(2, 2))


def test_nearest_answers_are_labelled(recorded, tmp_path):
    _, path = recorded
    full = ReplayTable.load(path)
    wide_only = ReplayTable(full.header, [c for c in full.curves if c.config["model.width"] == 16])
    replay = trainers.Replay(wide_only, outside="nearest")
    narrow = next(c.config for c in full.curves if c.config["model.width"] == 8)
    result = replay.fit(narrow)
    near = result.attrs["replay"]["nearest"]
    assert near == {**narrow, "model.width": 16} and result.status == "complete"
    assert tuple(result.epochs) == wide_only.get(near, 0).epochs
    with pytest.raises(TableError, match="outside the table's space"):
        replay.fit({**narrow, "model.width": 15})
    study = studies.create("near", f"sqlite:///{tmp_path / 'n.db'}", space=table_space(replay), trainer=replay,
                           strategy=search.Enqueue([narrow, {**narrow, "model.width": 16}]))
    study.optimize(trials=2, progress=False)
    labels = [t.results.get("replay") for t in study.trials]
    assert labels == [{"nearest": {**narrow, "model.width": 16}}, None]  # the stored results say which was a surrogate


def test_reopening_a_replayed_study_needs_the_table_from_the_caller(recorded, tmp_path):
    _, path = recorded
    replay = trainers.Replay(path)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    studies.create("r", url, space=table_space(replay), trainer=replay, strategy=search.Random(seed=0))
    with pytest.raises(studies.WorkloadError, match=r"trainers\.Replay"):
        studies.load("r", url)
    again = studies.load("r", url, trainer=trainers.Replay(path))
    again.optimize(trials=3, progress=False)
    assert len(again.trials) == 3
    assert studies.load("r", url, read_only=True).trials[0].state == "complete"


def test_retraining_a_recorded_configuration_reproduces_its_curve():
    """Spot check of the shipped digits table: recorded runs (population-trained) retrained with `Trainer.fit`.

    Without dropout a population member computes `Trainer.fit`'s run, up to float32 rounding of
    its batched matmuls (trainers.population). Measured on 16 random configurations: 11 equal
    epoch for epoch, 4 within 1-2 of the 360 validation examples at some epoch, and one run at
    SGD lr 1.0 (at the edge of divergence, where rounding differences grow) far apart. The check:
    stable configurations (lr below that edge, no dropout) within 3 examples at every epoch, the
    same gradient evaluations, and the test accuracy within 3 examples. With dropout a recording
    is one draw of the population's random stream, equal to a plain run only in distribution.
    """
    path = ROOT / "benchmarks" / "tables" / "digits_mlp.json.gz"
    if not path.exists():
        pytest.skip("the digits table is not in this checkout")
    table = ReplayTable.load(path)
    trainer = trainers.Trainer(trainers.workloads.digits(), epochs=table.header.epochs, seed=0)
    tolerance = 3 / 360 + 1e-9

    def stable(c: Curve) -> bool:
        lr = c.config[f"{c.config['optimizer']}.lr"]
        return c.config["model.dropout"] == 0.0 and lr <= (0.1 if c.config["optimizer"] == "sgd" else 0.01)

    plain = [c for c in table.curves if c.seed == 0 and c.status == "complete" and stable(c)]
    rng = np.random.default_rng(0)
    for i in rng.choice(len(plain), 3, replace=False):
        curve = plain[int(i)]
        run = trainer.fit(curve.config, seed=curve.seed)
        gap = np.abs(np.array(run.curve) - [e.val_metric for e in curve.epochs])
        assert gap.max() <= tolerance, (curve.config, gap)
        assert abs(run.test_metric - curve.test_metric) <= tolerance
        assert [e.grad_evals for e in run.epochs] == [e.grad_evals for e in curve.epochs]


def synthetic_table(seconds: list[float], epochs: int = 2, metric: tuple[str, str] = ("accuracy", "maximize")
                    ) -> ReplayTable:
    """A table of one Categorical parameter `x`: run i takes seconds[i] per epoch and ends at value i / 10."""
    space = spaces.Space(x=Categorical(tuple(range(len(seconds)))))
    curves = [Curve({"x": i}, 0, tuple(trainers.EpochResult(e + 1, 1.0, 1.0, i / 10 * (e + 1) / epochs, 0.1, s,
                                                            (e + 1) * 10) for e in range(epochs)), test_metric=i / 10)
              for i, s in enumerate(seconds)]
    header = TableHeader("synthetic", json.loads(space.to_json()), *metric, epochs,
                         {"name": "synthetic", "task": "classification", "input_shape": [4], "n_outputs": 2,
                          "batch_size": 8, "steps_per_epoch": 10})
    return ReplayTable(header, curves)


def test_a_table_of_a_tasks_own_metric_replays_in_its_direction(tmp_path):
    # a classification workload with its own objective (the character LM's bits per character, minimised)
    table = synthetic_table([1.0] * 4, metric=("bpc", "minimize"))
    replay = trainers.Replay(table)
    assert (replay.workload.metric, replay.workload.direction) == ("bpc", "minimize")
    study = studies.create("own", f"sqlite:///{tmp_path / 'o.db'}", space=table_space(table), trainer=replay,
                           strategy=search.Enqueue([{"x": i} for i in range(4)]))
    study.optimize(trials=4, executor=studies.executors.SimulatedExecutor(1), progress=False)
    assert study.best.config["x"] == 0 and study.best.value == 0.0


def test_the_simulated_clock_orders_asynchronous_completions(tmp_path):
    seconds = [10.0, 1.0, 5.0, 2.0, 7.0, 3.0, 4.0, 0.5]  # per epoch; a run is 2 epochs
    table = synthetic_table(seconds)
    replay = trainers.Replay(table)
    finished: list[tuple[float, int]] = []

    class Watch(studies.executors.SimulatedExecutor):
        def wait(self, on_epoch, timeout=None):
            out = super().wait(on_epoch, timeout)
            finished.extend((self.clock(), o.work.config["x"]) for o in out)
            return out

    executor = Watch(4)
    study = studies.create("clock", f"sqlite:///{tmp_path / 'c.db'}", space=table_space(table), trainer=replay,
                           strategy=search.Enqueue([{"x": i} for i in range(len(seconds))]))
    study.optimize(trials=len(seconds), executor=executor, progress=False)
    # an event simulation of 4 workers taking the queue in order: each starts when the first worker frees
    free, expected = [0.0] * 4, []
    for x, s in enumerate(seconds):
        start = min(free)
        free[free.index(start)] = start + 2 * s
        expected.append((start + 2 * s, x))
    assert finished == sorted(expected)
    assert executor.clock() == max(end for end, _ in expected)
    assert math.isclose(study.attrs()[SECONDS_SPENT], executor.clock())


def test_a_seconds_budget_runs_on_simulated_time(tmp_path):
    table = synthetic_table([3.0] * 8)  # 6 simulated seconds per run
    replay = trainers.Replay(table)
    study = studies.create("secs", f"sqlite:///{tmp_path / 's.db'}", space=table_space(table), trainer=replay,
                           strategy=search.Enqueue([{"x": i} for i in range(8)]))
    study.optimize(seconds=12.0, executor="simulated", n_workers=2, progress=False)
    # at t=0 two runs start, at t=6 two more; at t=12 the budget is spent: 4 runs, whatever the wall time
    assert len(study.trials) == 4
