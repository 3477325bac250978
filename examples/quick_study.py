"""Launch a study from Python, kill it whenever you like, and run this file again to finish it.

    python examples/quick_study.py            # ~2 minutes on 2 CPU cores; a second run trains nothing
    tunelab show --storage sqlite:///quick_study.db
"""

from tunelab import search, spaces, studies, trainers

space = spaces.optimizers(["adamw", "sgd"]) | spaces.schedules(["constant", "cosine"]) | spaces.mlp()
trainer = trainers.Trainer(trainers.workloads.mnist1d(), epochs=20, seed=0)
study = studies.create(
    "quick-mlp",
    storage="sqlite:///quick_study.db",
    space=space,
    trainer=trainer,
    strategy=search.Bayesian(seed=0),
)
best = study.optimize(trials=16)  # a total: a rerun after Ctrl-C or a crash finishes the same 16
print(f"best validation accuracy {best.value:.4f} (trial {best.number}); test {best.test_metric:.4f}")
print(best.config)
print(study.dataframe()[["number", "state", "value", "epochs", "seconds", "params.optimizer"]])
