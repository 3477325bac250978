"""Write `study-0.2.0.db` with tunelab 0.2.0: the layout before the curve was stored once.

Run from a checkout of 0.2.0 (commit d53033a), e.g. a git worktree:

    git worktree add /tmp/v020 d53033a
    python tests/studies/data/make_study_0_2_0.py /tmp/v020 study-0.2.0.db study-0.2.0.json

It writes a Hyperband study on a small replayed table (one curve has a non-finite epoch, which
0.2.0 left out of the intermediate values) and a JSON file of what 0.2.0 read back from it.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, sys.argv[1])

import optuna

import search
import spaces
import studies
import trainers
from trainers.replay import Curve, ReplayTable, TableHeader, table_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
space = spaces.Space(x=spaces.Categorical(tuple(range(6))))
curves = []
for i in range(6):
    vals = [0.1 * (i + 1) * (e + 1) / 4 for e in range(4)]
    if i == 2:
        vals[1] = float("nan")  # a diverged validation epoch: 0.2.0 left it out of the intermediate values
    epochs = tuple(trainers.EpochResult(e + 1, 1.0 / (e + 1), 2.0 / (e + 1), v, 0.01, 0.5, 10 * (e + 1))
                   for e, v in enumerate(vals))
    curves.append(Curve({"x": i}, 0, epochs, test_metric=vals[-1]))
header = TableHeader("old", json.loads(space.to_json()), "accuracy", "maximize", 4,
                     {"name": "old", "task": "classification", "input_shape": [2], "n_outputs": 2,
                      "batch_size": 4, "steps_per_epoch": 1})
replay = trainers.Replay(ReplayTable(header, curves))
study = studies.create("old", f"sqlite:///{sys.argv[2]}", space=table_space(replay), trainer=replay,
                       strategy=search.Hyperband(seed=0))
study.optimize(epochs=30, executor="simulated", progress=False)
records = [{"number": t.number, "state": str(t.state), "value": t.value, "epochs": t.epochs, "config": t.config,
            "curve": [None if v != v else v for v in t.curve], "metrics": t.metrics} for t in study.trials]
Path(sys.argv[3]).write_text(json.dumps(records, indent=1))
print(len(records), [r["state"] for r in records])
