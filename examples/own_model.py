"""Your own `nn.Module` on tunelab's shared trainer: from data, to a registered model, to a space, to a study.

Four steps, each a few lines:

1. **Data** as a `trainers.Workload` (here scikit-learn's 8x8 digits, as `(N, 1, 8, 8)` images).
2. **The model**: a builder `build(hp, input_shape, n_outputs) -> nn.Module`, registered under
   a family name with `spaces.models.register(name, spaces.ModelSpec(build))`. `hp` holds the
   configuration's `model.*` values without the prefix.
3. **The space**: `spaces.model_space(name, **params)` puts `model=name` and `model.<param>` in
   a space; join it with optimizer and schedule spaces with `|`.
4. **The study**: `studies.create(...)` and `optimize(...)` as for a built-in network.

    python examples/own_model.py
    tunelab show --storage sqlite:///own_model.db

A stored study names its workload's factory (`own_model:digits`) and the family; reopening it in
another process imports this file, so `tunelab resume` needs `--trust own_model` (run from this
folder): nothing a database names is imported without your say-so.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from sklearn.datasets import load_digits
from torch import nn

from tunelab import search, spaces, studies, trainers


# 1. the data
def digits() -> trainers.Workload:
    """scikit-learn's handwritten digits as 8x8 single-channel images (a fifth held out for validation)."""
    x, y = load_digits(return_X_y=True)
    images = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    return trainers.Workload.from_tensors(images, torch.tensor(y), name="digits_images", batch_size=64,
                                          max_epochs=15, recipe={"factory": "own_model:digits", "kwargs": {}})


# 2. the model, and its registration under a family name
class SmallConvNet(nn.Module):
    """`layers` 3x3 convolutions of `channels` channels, global average pooling and a linear read-out."""

    def __init__(self, in_channels: int, channels: int, layers: int, dropout: float, n_outputs: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks += [nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1), nn.BatchNorm2d(channels),
                       nn.ReLU()]
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.head = nn.Linear(channels, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images `(B, C, H, W)` -> logits `(B, n_outputs)`."""
        return self.head(self.features(x))


def build(hp: Mapping[str, Any], input_shape: Sequence[int], n_outputs: int) -> nn.Module:
    """The builder tunelab calls: `hp` is the config's `model.*` part, `input_shape` one example's shape."""
    if len(input_shape) != 3:
        raise spaces.ConfigError(f"small_convnet takes (channels, height, width) images, got shape {input_shape}")
    return SmallConvNet(input_shape[0], int(hp["channels"]), int(hp["layers"]), float(hp["dropout"]), n_outputs)


if "small_convnet" not in spaces.models:
    spaces.models.register("small_convnet", spaces.ModelSpec(build, reference="tunelab's own-model example"))

# 3. the space: optimizer, schedule and the model's own parameters
SPACE = (spaces.optimizers(["adamw", "sgd"]) | spaces.schedules(["cosine"])
         | spaces.model_space("small_convnet", channels=spaces.Int(8, 64, log=True), layers=spaces.Int(1, 3),
                              dropout=spaces.Float(0.0, 0.5)))


# 4. the study
def main(argv: Sequence[str] | None = None) -> studies.TrialRecord | None:
    """Run (or continue) the study; return its best trial."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs-per-trial", type=int, default=10)
    parser.add_argument("--storage", default="sqlite:///own_model.db")
    args = parser.parse_args(argv)
    trainer = trainers.Trainer(digits(), epochs=args.epochs_per_trial, seed=0)
    study = studies.create("digits-convnet", args.storage, space=SPACE, trainer=trainer,
                           strategy=search.Bayesian(seed=0))
    best = study.optimize(trials=args.trials)
    if best is not None:
        print(f"best validation accuracy {best.value:.4f}: {best.config}")
    return best


if __name__ == "__main__":
    main()
