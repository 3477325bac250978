"""Write `study-0.3.0.db` (and its `study-0.3.0.artifacts/`) with tunelab 0.3.0, the last layout before 0.4.0.

Run from a checkout of 0.3.0 (commit 72a7d52), e.g. a git worktree:

    git worktree add /tmp/v030 72a7d52
    cd /tmp/v030 && python /path/to/make_study_0_3_0.py /abs/out/study-0.3.0.db /abs/out/study-0.3.0.json

It writes an ASHA study on a small MNIST-1D workload that stops with paused trials (their
checkpoints in the artifact root, named by trial id as 0.3.0 named them), completed and pruned
ones, and a JSON file of what 0.3.0 read back from it. 0.4.0 must read it, resume it, and name
its strategy by the class paths of that time.
"""

import json
import sys

sys.path.insert(0, ".")

import optuna

import search
import spaces
import studies
import trainers

optuna.logging.set_verbosity(optuna.logging.WARNING)
space = spaces.optimizers(["adamw", "sgd"]) | spaces.mlp(width=spaces.Int(8, 32, log=True), depth=1)
trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=3), epochs=3, seed=0)
study = studies.create("asha", f"sqlite:///{sys.argv[1]}", space=space, trainer=trainer,
                       strategy=search.ASHA(seed=0))
study.optimize(epochs=7, progress=False)
records = [{"number": t.number, "state": str(t.state), "value": t.value, "epochs": t.epochs, "config": t.config,
            "curve": t.curve} for t in study.trials]
with open(sys.argv[2], "w") as f:
    json.dump(records, f, indent=1)
print(len(records), [r["state"] for r in records])
