"""Train one configuration on MNIST-1D, pause it half way, and continue it from its checkpoint.

    python examples/train_and_resume.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tunelab import spaces, trainers

space = spaces.optimizers(["adamw"]) | spaces.schedules(["warmup_cosine"]) | spaces.cnn(dim=1)
config = space.default() | {"adamw.lr": 3e-3}
trainer = trainers.Trainer(trainers.workloads.mnist1d(), epochs=20, seed=0)

with tempfile.TemporaryDirectory() as tmp:
    checkpoint = Path(tmp) / "run.pt"
    first = trainer.fit(config, checkpoint=checkpoint, report=lambda e: "pause" if e.epoch == 10 else "continue")
    print(f"{first.status} after {len(first.epochs)} epochs, val accuracy {first.val_metric:.3f}")
    final = trainer.fit(config, checkpoint=checkpoint)  # continues at epoch 11, same numbers as one run
    print(f"{final.status} after {len(final.epochs)} epochs, val {final.val_metric:.3f}, test {final.test_metric:.3f}")
    print("learning curve:", " ".join(f"{v:.2f}" for v in final.curve))
