"""The character-LM replay table (`benchmarks/tables/char_lm.json.gz`): a workload with its own loss and metric."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from tunelab import search, studies, trainers
from tunelab.trainers.replay import table_space

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "benchmarks" / "tables" / "char_lm.json.gz"


def _record_tables():
    spec = importlib.util.spec_from_file_location("record_tables_for_test", ROOT / "benchmarks" / "record_tables.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_grid_lies_in_its_space_and_has_at_least_200_configurations():
    rt = _record_tables()
    configs, space = rt.char_lm_configs(), rt.char_lm_space()
    assert len(configs) >= 200
    assert len({tuple(sorted(c.items())) for c in configs}) == len(configs)
    for config in configs:
        assert space.validate(config) == config


@pytest.mark.skipif(not TABLE.exists(), reason="the char_lm table is not recorded in this checkout")
def test_the_recorded_table_holds_every_configuration_for_20_epochs_and_replays_minimised(tmp_path):
    replay = trainers.Replay(TABLE)
    assert replay.epochs == 20 and (replay.workload.metric, replay.workload.direction) == ("bpc", "minimize")
    seed0 = [c for c in replay.table.curves if c.seed == 0]
    assert len(seed0) >= 200 and all(len(c.epochs) == 20 for c in seed0 if c.status == "complete")
    finals = sorted(c.epochs[-1].val_metric for c in seed0 if c.status == "complete")
    assert finals[0] < finals[len(finals) // 2] - 0.1  # configurations differ: the search has something to find
    study = studies.create("lm", f"sqlite:///{tmp_path / 'lm.db'}", space=table_space(replay), trainer=replay,
                           strategy=search.Random(seed=0))
    study.optimize(trials=5, executor="simulated", progress=False)
    assert len(study.trials) == 5 and math.isfinite(study.best.value)
    assert study.best.value == min(t.value for t in study.trials if t.value is not None)
